"""Datasets for the training program, loaded into host memory as NumPy arrays.

* ``digits`` (default): scikit-learn's bundled 8x8 handwritten digits (1797
  images, real data, nothing to download), split 80/20 stratified with a
  fixed seed.
* ``mnist1d``: the MNIST-1D benchmark, generated offline by the ``mnist1d``
  package with its default arguments (4000 train / 1000 test signals of
  length 40, stored as ``(N, 40, 1, 1)`` images).
* ``fashion_mnist``: Zalando's Fashion-MNIST (60k/10k 28x28 grey images) from
  its four original gzipped idx files, checked against their sha256, looked
  up in ``--data-dir``, then Debian's ``/usr/share/datasets/fashion-mnist``
  (package ``dataset-fashion-mnist``), then ``../shared/data/fashion-mnist``.
* ``cifar10`` / ``cifar100``: the official python-pickle archives, looked up
  in this order: ``--data-dir``; the cache directory (``$ZOSAM_DATA`` or
  ``~/.cache/zosam_jax``); for CIFAR-10 only, the ``.npz`` parts of
  ``../shared/data`` (a development fallback; its test set is the first 1000
  official test images); finally a download of the official archive into the
  cache directory, checked against its published md5.

Images keep their storage dtype (``uint8`` for images); normalisation and
augmentation happen on the accelerator, see :mod:`zosam_jax.train.pipeline`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
  """A train/test split held in host memory.

  Attributes:
    name: dataset name.
    x_train: ``(N, H, W, C)`` training inputs in their storage dtype.
    y_train: ``(N,)`` int32 labels.
    x_test: test inputs.
    y_test: test labels.
    num_classes: number of classes.
    mean: ``(C,)`` float32 per-channel mean used for normalisation.
    std: ``(C,)`` float32 per-channel standard deviation.
    augment: whether to apply the CIFAR crop-and-flip augmentation.
    note: where the data came from (printed by the CLI).
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  mean: np.ndarray
  std: np.ndarray
  augment: bool
  note: str = ""


class DataNotFoundError(FileNotFoundError):
  """A dataset is neither on disk nor downloadable."""


CIFAR_ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


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
#: sha256 of the shared CIFAR-10 ``.npz`` parts (``shared/data/SOURCE.md``).
CIFAR10_NPZ_SHA256 = {
    "cifar10_train_0.npz": "0a91051088d3930c12c1905dd2c1a9541a77cae15e554d64d15363762cafa686",
    "cifar10_train_1.npz": "109d5ee07a7226ff85a1f8bcdc1d76f4d01fdb9eb7b6397fa3812f60592651cd",
    "cifar10_train_2.npz": "e49097d10f30d7615f5ea07b7ffd3266cf89a4c5aec4160d640e2ba212ac168d",
    "cifar10_train_3.npz": "4bcff4d0ff94956faf749b4ff1b95f540ebe69942a35e529686699872d742ab1",
    "cifar10_test.npz": "cc7d8c677cb3b63ba6388e060143c5480115c1ba163df8818d51ad00c652a32f",
}
#: Where Debian's package ``dataset-fashion-mnist`` installs the idx files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"


def cache_dir() -> Path:
  """The download cache: ``$ZOSAM_DATA`` or ``~/.cache/zosam_jax``."""
  return Path(os.environ.get("ZOSAM_DATA", Path.home() / ".cache" / "zosam_jax"))


def shared_data_dirs() -> list[Path]:
  """Candidate ``shared/data`` folders next to the repository checkout."""
  here = Path(__file__).resolve()
  return [Path.cwd().parent / "shared" / "data", here.parents[3] / "shared" / "data"]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = x.astype(np.float64)
  return (x.mean(axis=(0, 1, 2)).astype(np.float32),
          x.std(axis=(0, 1, 2)).astype(np.float32))


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
  """Loads scikit-learn's 8x8 digits with a deterministic stratified split.

  Args:
    test_fraction: fraction of the 1797 images held out for testing.
    split_seed: seed of the split (fixed so runs are comparable).

  Returns:
    A :class:`Dataset` with ``uint8`` images of shape ``(N, 8, 8, 1)`` and
    values 0..16.
  """
  from sklearn.datasets import load_digits as _load  # Imported lazily: slow.
  from sklearn.model_selection import train_test_split

  bunch = _load()
  x = bunch.images.astype(np.uint8)[..., None]
  y = bunch.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(
      x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
  mean, std = _channel_stats(x_tr)
  return Dataset("digits", x_tr, y_tr, x_te, y_te, 10, mean, std, False,
                 "scikit-learn digits (bundled), stratified 80/20 split")


def load_mnist1d() -> Dataset:
  """Generates MNIST-1D offline with the ``mnist1d`` package's defaults.

  Returns:
    A :class:`Dataset` with ``float32`` signals of shape ``(N, 40, 1, 1)``.

  Raises:
    DataNotFoundError: if the ``mnist1d`` package is not installed.
  """
  try:
    from mnist1d.data import get_dataset_args, make_dataset
  except ImportError as e:
    raise DataNotFoundError(
        "--dataset mnist1d needs the `mnist1d` package: pip install mnist1d") from e
  data = make_dataset(get_dataset_args())
  x_tr = data["x"].astype(np.float32)[:, :, None, None]
  x_te = data["x_test"].astype(np.float32)[:, :, None, None]
  mean, std = _channel_stats(x_tr)
  return Dataset("mnist1d", x_tr, data["y"].astype(np.int32), x_te,
                 data["y_test"].astype(np.int32), 10, mean, std, False,
                 "mnist1d, generated offline with get_dataset_args()")


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


def file_digest(path: Path, algorithm: str = "sha256") -> str:
  """The hex digest of a file (``"sha256"``, or ``"md5"`` for the CIFAR archives)."""
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


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
  mean, std = _channel_stats(x_tr)
  return Dataset("fashion_mnist", x_tr, y_tr.astype(np.int32), x_te,
                 y_te.astype(np.int32), 10, mean, std, False,
                 f"Fashion-MNIST from {folder} (sha256 checked); full 10k test set")


def stratified_subset(ds: Dataset, size: int, seed: int = 0) -> Dataset:
  """Keeps ``size`` training examples with the class proportions of the set.

  The choice depends only on ``size`` and ``seed`` (not on the run's seed),
  so every optimizer and seed of a study trains on the same examples; the
  normalisation statistics are recomputed on the subset; the test set is
  untouched.

  Args:
    ds: a :class:`Dataset`.
    size: the number of training examples to keep, at most the training set.
    seed: the seed of the choice.

  Returns:
    A :class:`Dataset` whose ``note`` records the subset.

  Raises:
    ValueError: if ``size`` is not in ``[num_classes, len(x_train)]``.

  Examples:
    >>> ds = stratified_subset(load_dataset("digits"), 100)
    >>> ds.x_train.shape[0], int((ds.y_train == 0).sum())
    (100, 10)
  """
  n = ds.x_train.shape[0]
  if not ds.num_classes <= size <= n:
    raise ValueError(f"--train-subset must be between {ds.num_classes} (one per "
                     f"class) and the {n} training examples of {ds.name}, got {size}")
  if size == n:
    return ds
  from sklearn.model_selection import train_test_split  # Imported lazily: slow.

  keep, _ = train_test_split(np.arange(n), train_size=size, random_state=seed,
                             stratify=ds.y_train)
  keep = np.sort(keep)
  x_tr = ds.x_train[keep]
  mean, std = (ds.mean, ds.std) if ds.augment else _channel_stats(x_tr)
  return ds._replace(x_train=x_tr, y_train=ds.y_train[keep], mean=mean, std=std,
                     note=ds.note + f"; stratified training subset of {size}")


def noisy_labels(ds: Dataset, fraction: float, seed: int = 0) -> Dataset:
  """Replaces ``fraction`` of the training labels by a different random class.

  Symmetric label noise, the setting where SAM's gain over SGD is largest in
  Foret et al. The examples and their new labels depend only on ``fraction``
  and ``seed`` (not on the run's seed), so every optimizer and seed of a study
  sees the same noisy set; the test set is untouched.

  Args:
    ds: a :class:`Dataset`.
    fraction: the share of training examples relabelled, in ``[0, 1)``.
    seed: the seed of the choice.

  Returns:
    A :class:`Dataset` whose ``note`` records the noise.

  Raises:
    ValueError: if ``fraction`` is not in ``[0, 1)``.

  Examples:
    >>> ds = load_dataset("digits")
    >>> noisy = noisy_labels(ds, 0.25)
    >>> round(float((noisy.y_train != ds.y_train).mean()), 2)
    0.25

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021
  """
  if not 0 <= fraction < 1:
    raise ValueError(f"--label-noise must be in [0, 1), got {fraction!r}")
  if fraction == 0:
    return ds
  rng = np.random.default_rng(seed)
  n = ds.y_train.shape[0]
  flip = rng.choice(n, size=round(fraction * n), replace=False)
  shift = rng.integers(1, ds.num_classes, size=flip.shape[0])
  y = ds.y_train.copy()
  y[flip] = (y[flip] + shift) % ds.num_classes
  return ds._replace(y_train=y, note=ds.note + f"; {fraction:.0%} of the training "
                     "labels replaced by a different random class")


_DAMAGED = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
            pickle.UnpicklingError, zipfile.BadZipFile, tarfile.TarError)


def _damaged(path: Path, error: BaseException, what_to_do: str) -> DataNotFoundError:
  reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
  return DataNotFoundError(f"{path} is damaged or not what was expected ({reason}); "
                           f"{what_to_do}")


def pool_images(images: np.ndarray, size: int) -> np.ndarray:
  """Shrinks ``(N, H, H, C)`` images to ``(N, size, size, C)`` by averaging blocks.

  Integer images are rounded back to their dtype. ``size`` must divide ``H``
  (checked by :func:`average_pool`, which names the flag).

  Examples:
    >>> import numpy as np
    >>> pool_images(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1), 2)[0, :, :, 0].tolist()
    [[2, 4], [10, 12]]
  """
  side = images.shape[1]
  if size == side:
    return images
  f = side // size
  y = images.reshape(images.shape[0], size, f, size, f, images.shape[-1]).mean(axis=(2, 4))
  if np.issubdtype(images.dtype, np.integer):
    return np.rint(y).astype(images.dtype)
  return y.astype(images.dtype)


def average_pool(ds: Dataset, size: int) -> Dataset:
  """Shrinks every image to ``size x size`` by averaging square blocks.

  Args:
    ds: a :class:`Dataset` of ``(N, H, W, C)`` images with ``H == W``.
    size: the new side; must divide ``H``.

  Returns:
    The dataset with train and test images pooled (:func:`pool_images`) and
    the note extended.

  Raises:
    ValueError: if the images are not square or ``size`` does not divide them.
  """
  side = ds.x_train.shape[1]
  if ds.x_train.shape[1] != ds.x_train.shape[2] or size < 1 or side % size:
    raise ValueError(f"--image-size {size} must divide the {side}x{side} images "
                     f"of {ds.name}")
  if size == side:
    return ds
  return ds._replace(x_train=pool_images(ds.x_train, size),
                     x_test=pool_images(ds.x_test, size),
                     note=ds.note + f"; average-pooled to {size}x{size}")


def _unpickle(path: Path) -> dict:
  with open(path, "rb") as f:
    return pickle.load(f, encoding="bytes")


def _images(batch: dict) -> np.ndarray:
  data = np.asarray(batch[b"data"], dtype=np.uint8)
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def read_cifar_pickles(folder: Path, name: str) -> tuple[np.ndarray, ...]:
  """Reads an extracted CIFAR python archive.

  Args:
    folder: ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``,
      labels under ``b'labels'``) or ``cifar-100-python`` (``train``,
      ``test``, labels under ``b'fine_labels'``).
    name: ``cifar10`` or ``cifar100``.

  Returns:
    ``(x_train, y_train, x_test, y_test)`` with ``uint8`` NHWC images.
  """
  files = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
           if name == "cifar10" else ["train", "test"])
  key = b"labels" if name == "cifar10" else b"fine_labels"
  batches = []
  for file in files:
    try:
      batch = _unpickle(folder / file)
      batches.append((_images(batch), np.asarray(batch[key], np.int32)))
    except _DAMAGED as e:
      raise _damaged(folder / file, e, f"delete the folder {folder} and run again "
                     "(it is extracted again from the archive, or downloaded)") from None
    if batches[-1][0].shape[0] != batches[-1][1].shape[0]:
      raise DataNotFoundError(f"{folder / file}: {batches[-1][0].shape[0]} images but "
                              f"{batches[-1][1].shape[0]} labels; delete {folder} and "
                              "run again")
  *train, test = batches
  return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
          *test)


def _extract(archive: Path, dest: Path, folder_name: str, md5: str) -> None:
  """Checks the archive's md5, extracts it into a temporary folder, then renames.

  An interrupted or failed extraction leaves nothing half-done in ``dest``.
  """
  got = file_digest(archive, "md5")
  if got != md5:
    raise DataNotFoundError(f"{archive}: md5 {got} differs from the official {md5} "
                            "(damaged or incomplete); delete it and download it again")
  tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
  try:
    with tarfile.open(archive, "r:gz") as tar:
      if hasattr(tarfile, "data_filter"):
        tar.extractall(tmp, filter="data")
      else:  # Python < 3.11.4 has no extraction filters.
        tar.extractall(tmp)  # noqa: S202
    if not (tmp / folder_name).is_dir():
      raise DataNotFoundError(f"{archive} holds no {folder_name}/ folder; delete it "
                              "and download it again")
    os.replace(tmp / folder_name, dest / folder_name)
  except _DAMAGED as e:
    raise _damaged(archive, e, "delete it and download it again") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _find_extracted(root: Path, name: str) -> Path | None:
  """Returns the extracted CIFAR folder under ``root``, extracting an archive."""
  url, _, folder_name = CIFAR_ARCHIVES[name]
  marker = "test_batch" if name == "cifar10" else "test"
  for candidate in (root / folder_name, root):
    if (candidate / marker).is_file():
      return candidate
  archive = root / url.rsplit("/", 1)[-1]
  if archive.is_file():
    _extract(archive, root, folder_name, CIFAR_ARCHIVES[name][1])
    if (root / folder_name / marker).is_file():
      return root / folder_name
  return None


def _download(name: str, dest: Path) -> Path:
  url, md5, _ = CIFAR_ARCHIVES[name]
  dest.mkdir(parents=True, exist_ok=True)
  archive = dest / url.rsplit("/", 1)[-1]
  partial = archive.with_suffix(".part")
  print(f"Downloading {url} to {archive} ...", flush=True)
  with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as f:
    while chunk := response.read(1 << 20):
      f.write(chunk)
  got = file_digest(partial, "md5")
  if got != md5:
    partial.unlink()
    raise DataNotFoundError(f"{url}: md5 {got} does not match the official {md5}")
  partial.rename(archive)
  return archive


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  """The arrays ``keys`` of an ``.npz`` file; a damaged file names itself."""
  expected = CIFAR10_NPZ_SHA256.get(path.name)
  if expected is not None and (got := file_digest(path)) != expected:
    raise DataNotFoundError(f"{path}: sha256 {got} differs from the published "
                            f"{expected}; delete it and copy it again")
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in keys}
  except _DAMAGED as e:
    raise _damaged(path, e, "delete it and copy it again") from None
  for k in keys:
    if k.startswith("x_") and (arrays[k].ndim != 4 or arrays[k].shape[1:] != (32, 32, 3)):
      raise DataNotFoundError(f"{path}: {k} has shape {arrays[k].shape}, expected "
                              "(N, 32, 32, 3); delete it and copy it again")
  return arrays


#: The test sets of the shared CIFAR-10 ``.npz`` parts: keys and description.
CIFAR10_NPZ_TEST_SETS = {
    "lossless_1k": (("x_test_lossless_1k", "y_test_lossless_1k"),
                    "the first 1000 official test images, lossless"),
    "jpeg_10k": (("x_test", "y_test"),
                 "all 10000 official test images, decoded from JPEG quality 75"),
}


def cifar10_lossless_check(data_dir: str | os.PathLike | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
  """The lossless test images of the shared CIFAR-10 ``.npz`` parts and where
  their JPEG-decoded copies sit in the ``jpeg_10k`` test set.

  Args:
    data_dir: the folder of the parts; else the shared data folders.

  Returns:
    ``(images, labels, positions)``: ``(1000, 32, 32, 3)`` ``uint8``, ``(1000,)``
    and ``(1000,)`` indices into the JPEG test set, or ``None`` where there are
    no ``.npz`` parts (the official archive's test set is lossless already).
  """
  folders = [Path(data_dir)] if data_dir is not None else shared_data_dirs()
  keys = ("x_test_lossless_1k", "y_test_lossless_1k", "test_lossless_1k_pos_in_x_test")
  for folder in folders:
    if (folder / "cifar10_test.npz").is_file():
      t = _read_npz(folder / "cifar10_test.npz", keys)
      return t[keys[0]], t[keys[1]].astype(np.int32), t[keys[2]].astype(np.int64)
  return None


def _load_cifar10_npz(folders: list[Path], test_set: str
                      ) -> tuple[tuple[np.ndarray, ...], str] | None:
  """CIFAR-10 from the ``.npz`` parts of the shared data, if in one of ``folders``."""
  keys, description = CIFAR10_NPZ_TEST_SETS[test_set]
  for folder in folders:
    parts = [folder / f"cifar10_train_{k}.npz" for k in range(4)]
    if all(p.is_file() for p in parts) and (folder / "cifar10_test.npz").is_file():
      train = [_read_npz(p, ("x_train", "y_train")) for p in parts]
      test = _read_npz(folder / "cifar10_test.npz", keys)
      arrays = (np.concatenate([t["x_train"] for t in train]),
                np.concatenate([t["y_train"] for t in train]).astype(np.int32),
                test[keys[0]], test[keys[1]].astype(np.int32))
      return arrays, (f"CIFAR-10 from {folder} (.npz parts; test set = {description}, "
                      f"--cifar10-test {test_set})")
  return None


def _missing_message(name: str, searched: list[Path]) -> str:
  url, md5, folder = CIFAR_ARCHIVES[name]
  where = ", ".join(str(p) for p in searched)
  return (f"{name} not found (looked in {where}). Download {url} (md5 {md5}) and "
          f"put the archive or its extracted {folder}/ folder in --data-dir DIR or "
          f"in {cache_dir()} (set $ZOSAM_DATA to change it).")


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, *,
               download: bool = True, npz_test_set: str = "lossless_1k") -> Dataset:
  """Loads CIFAR-10 or CIFAR-100 from the official python archives.

  Args:
    name: ``cifar10`` or ``cifar100``.
    data_dir: a folder holding the archive (``cifar-10-python.tar.gz``) or
      the extracted folder (``cifar-10-batches-py/``), or that folder itself.
    download: download into the cache directory when nothing is found.
    npz_test_set: with the shared ``.npz`` parts, which test set
      (:data:`CIFAR10_NPZ_TEST_SETS`); the official archives hold all 10000
      test images losslessly.

  Returns:
    A :class:`Dataset` with ``uint8`` images of shape ``(N, 32, 32, 3)``
    and the standard per-channel mean and std.

  Raises:
    DataNotFoundError: if the data is nowhere and cannot be downloaded; the
      message says where to put the files.
  """
  searched = ([Path(data_dir)] if data_dir is not None else []) + [cache_dir()]
  arrays, note = None, ""
  for root in searched:
    folder = _find_extracted(root, name) if root.is_dir() else None
    if folder is not None:
      arrays, note = read_cifar_pickles(folder, name), f"{name} from {folder}"
      break
  if arrays is None and name == "cifar10":
    # The .npz parts: in --data-dir if given, else in the shared data folder.
    found = _load_cifar10_npz([Path(data_dir)] if data_dir is not None
                              else shared_data_dirs(), npz_test_set)
    if found is not None:
      arrays, note = found
  if arrays is None:
    if not download:
      raise DataNotFoundError(_missing_message(name, searched))
    try:
      archive = _download(name, cache_dir())
    except (OSError, ValueError) as e:
      raise DataNotFoundError(
          f"download failed ({e}). " + _missing_message(name, searched)) from e
    folder = _find_extracted(archive.parent, name)
    arrays, note = read_cifar_pickles(folder, name), f"{name} from {folder}"
  mean, std = (np.asarray(v, np.float32) * 255 for v in CIFAR_MEAN_STD[name])
  num_classes = 10 if name == "cifar10" else 100
  return Dataset(name, *arrays, num_classes, mean, std, True, note)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = True, cifar10_test: str = "lossless_1k") -> Dataset:
  """Loads a dataset by name.

  Args:
    name: ``digits``, ``mnist1d``, ``fashion_mnist``, ``cifar10`` or
      ``cifar100``.
    data_dir: where to look for Fashion-MNIST or CIFAR files first.
    download: whether CIFAR may be downloaded when not found.
    cifar10_test: the test set of the shared CIFAR-10 ``.npz`` parts,
      ``"lossless_1k"`` or ``"jpeg_10k"``.

  Returns:
    A :class:`Dataset`.

  Raises:
    ValueError: for an unknown name.
    DataNotFoundError: when CIFAR is not available.

  Examples:
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    ((1437, 8, 8, 1), (360, 8, 8, 1), 10)
  """
  if name == "digits":
    return load_digits()
  if name == "mnist1d":
    return load_mnist1d()
  if name == "fashion_mnist":
    return load_fashion_mnist(data_dir)
  if name in CIFAR_ARCHIVES:
    return load_cifar(name, data_dir, download=download, npz_test_set=cifar10_test)
  raise ValueError(f"unknown dataset {name!r}; choose digits, mnist1d, "
                   "fashion_mnist, cifar10 or cifar100")
