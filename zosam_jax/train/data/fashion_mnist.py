"""Fashion-MNIST from its four original gzipped idx files, sha256-checked."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from zosam_jax.train.data._common import DataNotFoundError
from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import channel_stats
from zosam_jax.train.data._common import file_digest
from zosam_jax.train.data._common import shared_data_dirs

FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
#: Where Debian's package ``dataset-fashion-mnist`` installs the idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
  """Reads a gzipped idx file (LeCun's MNIST format) into a NumPy array.

  Args:
    path: an ``*-idx{1,3}-ubyte.gz`` file: a big-endian header (two zero
      bytes, the type code 0x08 for uint8, the number of dimensions, one
      uint32 per dimension) followed by the data.

  Returns:
    A ``uint8`` array of the header's shape, e.g. ``(60000, 28, 28)``.

  Raises:
    DataNotFoundError: if the file is not a complete idx file; the message
      names it.
  """
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataNotFoundError(f"{path} is not a readable gzip file ({e}); delete "
                            "it and download it again") from e
  ndim = raw[3] if len(raw) > 4 else 0
  header = 4 + 4 * ndim
  if len(raw) < header or raw[:3] != b"\0\0\x08" or ndim == 0:
    raise DataNotFoundError(f"{path} is not a uint8 idx file; delete it and "
                            "download it again")
  shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  if len(raw) - header != int(np.prod(shape)):
    raise DataNotFoundError(f"{path} holds {len(raw) - header} bytes of data, its "
                            f"header says {shape}; delete it and download it again")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def fashion_mnist_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
  """The folders searched for Fashion-MNIST, in order."""
  dirs = [] if data_dir is None else [Path(data_dir), Path(data_dir) / "fashion-mnist"]
  return dirs + [DEBIAN_FASHION_MNIST] + [d / "fashion-mnist" for d in shared_data_dirs()]


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
  """Loads Fashion-MNIST from its four original gzipped idx files.

  Args:
    data_dir: a folder holding the four files (or a ``fashion-mnist/``
      folder with them), searched before Debian's folder and the shared data.

  Returns:
    A :class:`Dataset` with ``uint8`` images of shape ``(N, 28, 28, 1)``:
    60,000 training and the full 10,000 test images.

  Raises:
    DataNotFoundError: if no folder holds all four files (the message names
      them, the folders searched and the Debian package), or a file's sha256
      differs from the published one.

  References:
    Xiao, Rasul, Vollgraf, `Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms <https://arxiv.org/abs/1708.07747>`_,
    2017
  """
  searched = fashion_mnist_dirs(data_dir)
  folder = next((d for d in searched
                 if all((d / f).is_file() for f in FASHION_MNIST_FILES)), None)
  if folder is None:
    raise DataNotFoundError(
        f"fashion_mnist not found: need {', '.join(FASHION_MNIST_FILES)} in one of "
        f"{', '.join(str(d) for d in searched)}. Install Debian's package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or "
        f"download the four files from {FASHION_MNIST_URL} into --data-dir DIR.")
  for name, expected in FASHION_MNIST_FILES.items():
    got = file_digest(folder / name)
    if got != expected:
      raise DataNotFoundError(
          f"{folder / name}: sha256 {got} differs from the published {expected}; "
          "delete it and download it again")
  x_tr, y_tr, x_te, y_te = (read_idx(folder / name) for name in FASHION_MNIST_FILES)
  x_tr, x_te = x_tr[..., None], x_te[..., None]
  mean, std = channel_stats(x_tr)
  return Dataset("fashion_mnist", x_tr, y_tr.astype(np.int32), x_te,
                 y_te.astype(np.int32), 10, mean, std, False,
                 f"Fashion-MNIST from {folder} (sha256 checked); full 10k test set")
