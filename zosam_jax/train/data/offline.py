"""The offline sources: scikit-learn's digits and MNIST-1D (generated)."""

from __future__ import annotations

import numpy as np

from zosam_jax.train.data._common import DataNotFoundError
from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import channel_stats


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
  mean, std = channel_stats(x_tr)
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
  mean, std = channel_stats(x_tr)
  return Dataset("mnist1d", x_tr, data["y"].astype(np.int32), x_te,
                 data["y_test"].astype(np.int32), 10, mean, std, False,
                 "mnist1d, generated offline with get_dataset_args()")
