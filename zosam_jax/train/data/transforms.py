"""Changes of a loaded dataset: a stratified subset, label noise, average pooling."""

from __future__ import annotations

import numpy as np

from zosam_jax.train.data._common import Dataset
from zosam_jax.train.data._common import channel_stats


def _stratified_pick(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Sorted positions of ``size`` of ``labels`` with their class proportions."""
  if size == labels.shape[0]:
    return np.arange(size)
  from sklearn.model_selection import train_test_split  # Imported lazily: slow.

  pick, _ = train_test_split(np.arange(labels.shape[0]), train_size=size,
                             random_state=seed, stratify=labels)
  return np.sort(pick)


def stratified_subset(ds: Dataset, size: int | None, seed: int = 0, *,
                      validation: int | None = None) -> Dataset:
  """Keeps ``size`` training examples with the class proportions of the set,
  and holds out ``validation`` others as a validation split.

  The choice depends only on ``size``, ``validation`` and ``seed`` (not on the
  run's seed), so every optimizer and seed of a study trains on the same
  examples and is validated on the same others; the normalisation statistics
  are recomputed on the training examples; the test set is untouched. The
  validation examples, stratified too, are drawn from the training examples
  outside the subset (seed ``seed + 1``), so the subset is the same with or
  without them; without a subset (``size=None``) they are drawn first and the
  rest trains.

  Args:
    ds: a :class:`Dataset`.
    size: the number of training examples to keep, at most the training set
      (``None``: all but the validation examples).
    seed: the seed of the choice.
    validation: the number of validation examples (``None``: no split).

  Returns:
    A :class:`Dataset` whose ``note`` records the subset, with ``x_val`` and
    ``y_val`` of shapes ``(validation, H, W, C)`` and ``(validation,)`` when
    asked for.

  Raises:
    ValueError: if ``size`` is not in ``[num_classes, len(x_train)]`` or the
      validation examples do not fit beside it.

  Examples:
    >>> from zosam_jax.train.data import load_dataset
    >>> ds = stratified_subset(load_dataset("digits"), 100, validation=200)
    >>> ds.x_train.shape[0], int((ds.y_train == 0).sum()), ds.x_val.shape[0]
    (100, 10, 200)
  """
  n = ds.x_train.shape[0]
  if size is not None and not ds.num_classes <= size <= n:
    raise ValueError(f"--train-subset must be between {ds.num_classes} (one per "
                     f"class) and the {n} training examples of {ds.name}, got {size}")
  outside = n - (size or 0)
  if validation is not None and not ds.num_classes <= validation <= outside - (
      0 if size else ds.num_classes):
    where = f"outside the --train-subset of {size}" if size else "(some must train)"
    raise ValueError(f"--validation-subset must be between {ds.num_classes} (one per "
                     f"class) and the {outside} training examples of {ds.name} {where}, "
                     f"got {validation}")
  keep = np.arange(n) if size is None else _stratified_pick(ds.y_train, size, seed)
  val = None
  if validation is not None:
    rest = np.setdiff1d(np.arange(n), keep) if size else np.arange(n)
    val = rest[_stratified_pick(ds.y_train[rest], validation, seed + 1)]
    keep = keep if size else np.setdiff1d(keep, val)
  if keep.shape[0] == n:
    return ds
  x_tr = ds.x_train[keep]
  mean, std = (ds.mean, ds.std) if ds.augment else channel_stats(x_tr)
  note = (f"; stratified training subset of {keep.shape[0]}" if size else "") + (
      f"; {validation} held-out validation examples" if val is not None else "")
  return ds._replace(
      x_train=x_tr, y_train=ds.y_train[keep], mean=mean, std=std,
      x_val=None if val is None else ds.x_train[val],
      y_val=None if val is None else ds.y_train[val], note=ds.note + note)


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
