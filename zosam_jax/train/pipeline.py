"""The input pipeline: data order on the host, augmentation on the accelerator.

The order in which training examples are visited is a pure function of
``(seed, epoch)`` (:func:`epoch_permutation`), and the augmentation key of a
step is a pure function of ``(seed, step // repeat)`` (``--repeat-batches``). A run resumed from a checkpoint
at step ``k`` therefore sees exactly the minibatches the uninterrupted run
saw, with nothing to store but the step.

The training set lives on the device; each step receives only the indices
of its minibatch, gathers the examples, and crops, flips and normalises them
inside the jitted step (:func:`prepare_batch`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zosam_jax.train import config

#: Salt that separates the data-order stream from the other uses of ``seed``.
_ORDER_SALT = 0x5EED


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which an epoch visits the training set.

  Args:
    seed: the run's seed.
    epoch: zero-based epoch number.
    num_examples: size of the training set.

  Returns:
    An ``int32`` permutation of ``range(num_examples)``; the same for the same
    arguments on every machine (NumPy's PCG64 stream).

  Examples:
    >>> epoch_permutation(0, 3, 5).tolist() == epoch_permutation(0, 3, 5).tolist()
    True
  """
  rng = np.random.default_rng([_ORDER_SALT, seed, epoch])
  return rng.permutation(num_examples).astype(np.int32)


class BatchOrder:
  """Minibatch indices of step ``s``, caching the current epoch's permutation.

  With ``repeat`` K > 1 each minibatch is used for K consecutive steps (step
  ``s`` takes the minibatch the one-repeat order gives step ``s // K``), so an
  epoch, every example once, takes K times as many steps.

  Args:
    seed: the run's seed.
    num_examples: size of the training set.
    batch_size: examples per minibatch; an epoch has ``num_examples //
      batch_size`` minibatches and the remainder is skipped.
    repeat: consecutive steps that use the same minibatch.

  Examples:
    >>> order = BatchOrder(0, 10, 2, repeat=2)
    >>> bool((order.indices(2) == BatchOrder(0, 10, 2).indices(1)).all())
    True
    >>> order.steps_per_epoch, order.epoch(9), order.epoch(10)
    (10, 0, 1)
  """

  def __init__(self, seed: int, num_examples: int, batch_size: int, repeat: int = 1):
    self.seed, self.num_examples, self.batch_size = seed, num_examples, batch_size
    self.repeat = repeat
    self.batches_per_epoch = config.steps_per_epoch(num_examples, batch_size)
    self.steps_per_epoch = config.steps_per_epoch(num_examples, batch_size, repeat)
    self._epoch, self._perm = -1, None

  def epoch(self, step: int) -> int:
    """The zero-based epoch that step ``step`` (zero-based) belongs to."""
    return step // self.steps_per_epoch

  def indices(self, step: int) -> np.ndarray:
    """Indices of the examples of the zero-based step ``step``."""
    epoch = self.epoch(step)
    if epoch != self._epoch:
      self._epoch = epoch
      self._perm = epoch_permutation(self.seed, epoch, self.num_examples)
    start = (step // self.repeat % self.batches_per_epoch) * self.batch_size
    idx = self._perm[start:start + self.batch_size]
    if idx.shape[0] < self.batch_size:  # Batch larger than the dataset.
      idx = np.resize(self._perm, self.batch_size)
    return idx


def random_crop_flip(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """The standard CIFAR augmentation: pad-and-crop plus horizontal flip.

  Each image is zero-padded by ``pad`` pixels on each side, a random window of
  the original size is cut out of it, and it is mirrored left-right with
  probability 1/2. Runs on the accelerator, vectorised over the batch.

  Args:
    key: a PRNG key.
    images: ``(B, H, W, C)`` images (any dtype; padding uses 0 as in
      torchvision, i.e. black before normalisation).
    pad: padding on each side.

  Returns:
    Augmented images with the shape and dtype of ``images``.
  """
  batch, height, width, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
  return jnp.where(flip, cropped[:, :, ::-1, :], cropped)


def scaled_crop_pad(image_size: int, pad: int | None = None) -> int:
  """The pad-and-crop padding for ``image_size``-pixel images.

  The standard CIFAR augmentation pads 32-pixel images by 4 pixels; at another
  resolution (``--image-size``) the same relative shift is ``4 * size / 32``
  pixels (2 at 16x16), unless ``pad`` is given.

  References:
    He et al., *Deep Residual Learning for Image Recognition*, CVPR 2016, §4.2.
  """
  return round(4 * image_size / 32) if pad is None else pad


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """``(images - mean) / std`` per channel, in float32."""
  shape = (1, 1, 1, images.shape[-1])
  return (images.astype(jnp.float32) - jnp.reshape(mean, shape)) / jnp.reshape(
      std, shape)


def prepare_batch(key: jax.Array, x_all: jax.Array, y_all: jax.Array,
                  indices: jax.Array, mean: jax.Array, std: jax.Array,
                  augment: bool, pad: int = 4) -> tuple[jax.Array, jax.Array]:
  """Gathers, augments and normalises one training minibatch (jit-friendly).

  Args:
    key: the step's augmentation key.
    x_all: the whole training set on the device, or the minibatch itself
      (``(B, H, W, C)``) when ``indices`` is ``None``.
    y_all: its labels.
    indices: ``(B,)`` indices of the minibatch, or ``None``.
    mean: per-channel mean.
    std: per-channel standard deviation.
    augment: apply :func:`random_crop_flip` (a Python bool).
    pad: its padding in pixels (a Python int).

  Returns:
    ``(images, labels)``: normalised float32 images and int32 labels.
  """
  images, labels = x_all, y_all  # Already the batch (several processes).
  if indices is not None:
    images, labels = jnp.take(x_all, indices, axis=0), jnp.take(y_all, indices, axis=0)
  if augment:
    images = random_crop_flip(key, images, pad)
  return normalize(images, mean, std), labels
