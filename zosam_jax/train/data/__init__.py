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
augmentation happen on the accelerator, see :mod:`zosam_jax.train.steps`.
"""

from __future__ import annotations

import os

from zosam_jax.train.data._common import DataNotFoundError
from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import cache_dir
from zosam_jax.train.data._common import file_digest
from zosam_jax.train.data._common import shared_data_dirs
from zosam_jax.train.data.cifar import CIFAR_ARCHIVES
from zosam_jax.train.data.cifar import CIFAR10_NPZ_SHA256
from zosam_jax.train.data.cifar import CIFAR10_NPZ_TEST_SETS
from zosam_jax.train.data.cifar import cifar10_lossless_check
from zosam_jax.train.data.cifar import load_cifar
from zosam_jax.train.data.cifar import read_cifar_pickles
from zosam_jax.train.data.fashion_mnist import FASHION_MNIST_FILES
from zosam_jax.train.data.fashion_mnist import fashion_mnist_dirs
from zosam_jax.train.data.fashion_mnist import load_fashion_mnist
from zosam_jax.train.data.fashion_mnist import read_idx
from zosam_jax.train.data.offline import load_digits
from zosam_jax.train.data.order import BatchOrder
from zosam_jax.train.data.order import epoch_permutation
from zosam_jax.train.data.order import steps_per_epoch
from zosam_jax.train.data.offline import load_mnist1d
from zosam_jax.train.data.transforms import average_pool
from zosam_jax.train.data.transforms import noisy_labels
from zosam_jax.train.data.transforms import pool_images
from zosam_jax.train.data.transforms import stratified_subset


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
