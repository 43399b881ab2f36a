"""Datasets for the training program, loaded into host memory as NumPy arrays.

* ``digits`` (default): scikit-learn's bundled 8x8 handwritten digits (1797
  images, real data, nothing to download), split 80/20 stratified with a
  fixed seed.
* ``mnist1d``: the MNIST-1D benchmark, generated offline by the ``mnist1d``
  package with its default arguments (4000 train / 1000 test signals of
  length 40, stored as ``(N, 40, 1, 1)`` images).
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

import hashlib
import os
import pickle
import tarfile
import urllib.request
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
  if name == "cifar10":
    train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test, key = _unpickle(folder / "test_batch"), b"labels"
  else:
    train, test, key = [_unpickle(folder / "train")], _unpickle(folder / "test"), (
        b"fine_labels")
  x_tr = np.concatenate([_images(b) for b in train])
  y_tr = np.concatenate([np.asarray(b[key], np.int32) for b in train])
  return x_tr, y_tr, _images(test), np.asarray(test[key], np.int32)


def md5sum(path: Path) -> str:
  """The hex md5 digest of a file."""
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _extract(archive: Path, dest: Path) -> None:
  with tarfile.open(archive, "r:gz") as tar:
    if hasattr(tarfile, "data_filter"):
      tar.extractall(dest, filter="data")
    else:  # Python < 3.11.4 has no extraction filters.
      tar.extractall(dest)  # noqa: S202


def _find_extracted(root: Path, name: str) -> Path | None:
  """Returns the extracted CIFAR folder under ``root``, extracting an archive."""
  url, _, folder_name = CIFAR_ARCHIVES[name]
  marker = "test_batch" if name == "cifar10" else "test"
  for candidate in (root / folder_name, root):
    if (candidate / marker).is_file():
      return candidate
  archive = root / url.rsplit("/", 1)[-1]
  if archive.is_file():
    _extract(archive, root)
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
  got = md5sum(partial)
  if got != md5:
    partial.unlink()
    raise DataNotFoundError(f"{url}: md5 {got} does not match the official {md5}")
  partial.rename(archive)
  return archive


def _load_shared_cifar10() -> tuple[tuple[np.ndarray, ...], str] | None:
  for folder in shared_data_dirs():
    parts = [folder / f"cifar10_train_{k}.npz" for k in range(4)]
    if all(p.is_file() for p in parts) and (folder / "cifar10_test.npz").is_file():
      train = [np.load(p) for p in parts]
      test = np.load(folder / "cifar10_test.npz")
      arrays = (np.concatenate([t["x_train"] for t in train]),
                np.concatenate([t["y_train"] for t in train]).astype(np.int32),
                test["x_test_lossless_1k"], test["y_test_lossless_1k"].astype(np.int32))
      return arrays, (f"CIFAR-10 from {folder} (.npz parts; test set = the first "
                      "1000 official test images, lossless)")
  return None


def _missing_message(name: str, searched: list[Path]) -> str:
  url, md5, folder = CIFAR_ARCHIVES[name]
  where = ", ".join(str(p) for p in searched)
  return (f"{name} not found (looked in {where}). Download {url} (md5 {md5}) and "
          f"put the archive or its extracted {folder}/ folder in --data-dir DIR or "
          f"in {cache_dir()} (set $ZOSAM_DATA to change it).")


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, *,
               download: bool = True) -> Dataset:
  """Loads CIFAR-10 or CIFAR-100 from the official python archives.

  Args:
    name: ``cifar10`` or ``cifar100``.
    data_dir: a folder holding the archive (``cifar-10-python.tar.gz``) or
      the extracted folder (``cifar-10-batches-py/``), or that folder itself.
    download: download into the cache directory when nothing is found.

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
  if arrays is None and name == "cifar10" and data_dir is None:
    found = _load_shared_cifar10()
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
                 download: bool = True) -> Dataset:
  """Loads a dataset by name.

  Args:
    name: ``digits``, ``mnist1d``, ``cifar10`` or ``cifar100``.
    data_dir: where to look for CIFAR archives first.
    download: whether CIFAR may be downloaded when not found.

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
  if name in CIFAR_ARCHIVES:
    return load_cifar(name, data_dir, download=download)
  raise ValueError(f"unknown dataset {name!r}; choose digits, mnist1d, cifar10 "
                   "or cifar100")
