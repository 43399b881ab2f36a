"""What every data source shares: the :class:`Dataset`, its errors, the folders searched."""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
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
    x_val: ``(V, H, W, C)`` held-out training examples (``--validation-subset``),
      or ``None``.
    y_val: their ``(V,)`` int32 labels (never noised), or ``None``.
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
  x_val: np.ndarray | None = None
  y_val: np.ndarray | None = None


class DataNotFoundError(FileNotFoundError):
  """A dataset is neither on disk nor downloadable."""


def cache_dir() -> Path:
  """The download cache: ``$ZOSAM_DATA`` or ``~/.cache/zosam_jax``."""
  return Path(os.environ.get("ZOSAM_DATA", Path.home() / ".cache" / "zosam_jax"))


#: Set to 1 to hide the ``shared/data`` folders from the loaders: the program
#: then sees what a user's fresh clone sees (CI runs the default tests so).
NO_SHARED_DATA = "ZOSAM_NO_SHARED_DATA"


def shared_data_dirs() -> list[Path]:
  """Candidate ``shared/data`` folders next to the repository checkout (none
  with ``$ZOSAM_NO_SHARED_DATA=1``)."""
  if os.environ.get(NO_SHARED_DATA, "") not in ("", "0"):
    return []
  here = Path(__file__).resolve()
  return [Path.cwd().parent / "shared" / "data", here.parents[4] / "shared" / "data"]


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = x.astype(np.float64)
  return (x.mean(axis=(0, 1, 2)).astype(np.float32),
          x.std(axis=(0, 1, 2)).astype(np.float32))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
  """The hex digest of a file (``"sha256"``, or ``"md5"`` for the CIFAR archives)."""
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


DAMAGED = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
            pickle.UnpicklingError, zipfile.BadZipFile, tarfile.TarError)


def damaged(path: Path, error: BaseException, what_to_do: str) -> DataNotFoundError:
  reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
  return DataNotFoundError(f"{path} is damaged or not what was expected ({reason}); "
                           f"{what_to_do}")
