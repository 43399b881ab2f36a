"""Changes of a loaded dataset: a stratified subset, label noise, average pooling."""

from __future__ import annotations

import numpy as np

from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import channel_stats


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
    >>> from zosam_jax.train.data import load_dataset
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
  mean, std = (ds.mean, ds.std) if ds.augment else channel_stats(x_tr)
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
    >>> from zosam_jax.train.data import load_dataset
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
