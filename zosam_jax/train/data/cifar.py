"""CIFAR-10/100 from the official archives (md5-checked), or the shared ``.npz`` parts."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from zosam_jax.train.data._common import DAMAGED
from zosam_jax.train.data._common import DataNotFoundError
from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import cache_dir
from zosam_jax.train.data._common import damaged
from zosam_jax.train.data._common import file_digest
from zosam_jax.train.data._common import shared_data_dirs

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
#: sha256 of the shared CIFAR-10 ``.npz`` parts (``shared/data/SOURCE.md``).
CIFAR10_NPZ_SHA256 = {
    "cifar10_train_0.npz": "0a91051088d3930c12c1905dd2c1a9541a77cae15e554d64d15363762cafa686",
    "cifar10_train_1.npz": "109d5ee07a7226ff85a1f8bcdc1d76f4d01fdb9eb7b6397fa3812f60592651cd",
    "cifar10_train_2.npz": "e49097d10f30d7615f5ea07b7ffd3266cf89a4c5aec4160d640e2ba212ac168d",
    "cifar10_train_3.npz": "4bcff4d0ff94956faf749b4ff1b95f540ebe69942a35e529686699872d742ab1",
    "cifar10_test.npz": "cc7d8c677cb3b63ba6388e060143c5480115c1ba163df8818d51ad00c652a32f",
}


#: The only globals a CIFAR python archive refers to: NumPy's array
#: reconstruction (NumPy 1's and 2's module names, pickle protocols 2-5), and
#: how Python 3 writes bytes at protocol 2 (``_codecs.encode`` of a str).
_ARRAY_GLOBALS = frozenset({
    (module, name) for prefix in ("numpy.core", "numpy._core")
    for module, name in ((f"{prefix}.multiarray", "_reconstruct"),
                         (f"{prefix}.multiarray", "scalar"),
                         (f"{prefix}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})
_PLAIN = (dict, list, tuple, bytes, str, int, float, bool, type(None))


class UnsafeDataError(DataNotFoundError):
  """A data file holds something a data set never holds (it is not read)."""


class _PlainUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists, bytes, numbers and NumPy arrays only: every
  other global (a function ``__reduce__`` would call, a class) is refused
  before anything is built."""

  def find_class(self, module: str, name: str):
    if (module, name) not in _ARRAY_GLOBALS:
      raise UnsafeDataError(f"{module}.{name}")
    return super().find_class(module, name)


def _check_plain(value, path: Path) -> None:
  """Only what the archives hold: no object arrays or instances of classes."""
  if isinstance(value, np.ndarray):
    if value.dtype.hasobject:
      raise UnsafeDataError("an array of Python objects")
  elif not isinstance(value, _PLAIN) and not (
      isinstance(value, np.generic) and not isinstance(value, np.object_)):
    raise UnsafeDataError(f"an object of type {type(value).__name__}")
  children = (value.items() if isinstance(value, dict)
              else value if isinstance(value, (list, tuple)) else ())
  for child in children:
    _check_plain(child, path)


def _unpickle(path: Path) -> dict:
  """A CIFAR batch file, read without running anything it could hold.

  Raises:
    UnsafeDataError: it refers to anything but NumPy's array reconstruction,
      or holds anything but dicts, lists, bytes, numbers and plain arrays.
  """
  try:
    with open(path, "rb") as f:
      batch = _PlainUnpickler(f, encoding="bytes").load()
    _check_plain(batch, path)
  except UnsafeDataError as e:
    raise UnsafeDataError(
        f"{path} holds {e}, which no CIFAR archive holds: it was not read (unpickling "
        "it could run code). Delete the folder it is in and run again to extract the "
        "md5-checked official archive (or pass --data-dir with a trusted copy)") from None
  if not isinstance(batch, dict):
    raise UnsafeDataError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch "
                          "(a dict); delete the folder it is in and run again")
  return batch


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
    except UnsafeDataError:
      raise
    except DAMAGED as e:
      raise damaged(folder / file, e, f"delete the folder {folder} and run again "
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
  except DAMAGED as e:
    raise damaged(archive, e, "delete it and download it again") from None
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
  except DAMAGED as e:
    raise damaged(path, e, "delete it and copy it again") from None
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
  arrays: tuple[np.ndarray, ...] | None = None
  note = ""
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
    if folder is None:
      raise DataNotFoundError(f"{archive}: the downloaded archive holds no {name} "
                              "batches; delete it and run again to download it anew")
    arrays, note = read_cifar_pickles(folder, name), f"{name} from {folder}"
  mean, std = (np.asarray(v, np.float32) * 255 for v in CIFAR_MEAN_STD[name])
  num_classes = 10 if name == "cifar10" else 100
  x_train, y_train, x_test, y_test = arrays
  return Dataset(name, x_train, y_train, x_test, y_test, num_classes, mean, std, True, note)
