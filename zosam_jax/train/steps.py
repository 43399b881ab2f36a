"""The jitted training and evaluation steps, with the batch preparation they run.

The training set lives on the device; each step receives only the indices of
its minibatch (``zosam_jax.train.data.BatchOrder``), gathers the
examples, and crops, flips and normalises them inside the jitted step
(:func:`prepare_batch`); the augmentation key of a step is a pure function of
``(seed, step // repeat)``.

A SAM or ZO-SAM step contains exactly one backward pass: the loss function
returns ``(loss, (logits, new_batch_stats))`` and the transformation takes the
gradient at the perturbed point itself; logits and the BatchNorm statistics
of that pass are read from ``opt_state.aux`` and ``aux`` is reset to ``None``
so the carried state (and every checkpoint) has one fixed structure.

Training metrics are summed on the device in :class:`MetricSums` and read by
the host only every ``--log-every`` steps, so the accelerator never waits on
Python; the step of the first non-finite loss is recorded there too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

import zosam_jax


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


def normalize(images: jax.Array, mean: ArrayLike, std: ArrayLike) -> jax.Array:
  """``(images - mean) / std`` per channel, in float32."""
  shape = (1, 1, 1, images.shape[-1])
  return (images.astype(jnp.float32) - jnp.reshape(mean, shape)) / jnp.reshape(
      std, shape)


def prepare_batch(key: jax.Array, x_all: jax.Array, y_all: jax.Array,
                  indices: jax.Array, mean: ArrayLike, std: ArrayLike,
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


class MetricSums(NamedTuple):
  """Training metrics summed since the last log line (all on the device).

  Attributes:
    loss: sum of minibatch losses where the gradient was taken (at the params
      for SGD, at the perturbed point for SAM and ZO-SAM).
    correct: number of correctly classified training examples.
    count: number of steps summed.
    examples: number of examples summed.
    sharpness: sum of ``L(θ+ε) - L(θ)`` (0 for SGD).
    nonfinite_step: the first step whose loss was NaN or infinite, or -1.
  """

  loss: jax.Array
  correct: jax.Array
  count: jax.Array  # type: ignore[assignment]  # A field, not tuple.count.
  examples: jax.Array
  sharpness: jax.Array
  nonfinite_step: jax.Array

  @classmethod
  def zeros(cls, nonfinite_step: Any = -1) -> MetricSums:
    # One array per field: a donated state must not hold a buffer twice.
    f, i = lambda: jnp.zeros((), jnp.float32), lambda: jnp.zeros((), jnp.int32)
    return cls(f(), i(), i(), i(), f(), jnp.asarray(nonfinite_step, jnp.int32))

  def add(self, step: jax.Array, loss: jax.Array, logits: jax.Array, labels: jax.Array,
          sharpness: jax.Array) -> MetricSums:
    """The sums with step ``step``'s minibatch added (``logits`` ``(batch,
    classes)``, ``labels`` ``(batch,)``)."""
    bad = ~jnp.isfinite(loss)
    return MetricSums(
        loss=self.loss + loss.astype(jnp.float32),
        correct=self.correct + jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32),
        count=self.count + 1,
        examples=self.examples + labels.shape[0],
        sharpness=self.sharpness + sharpness.astype(jnp.float32),
        nonfinite_step=jnp.where((self.nonfinite_step < 0) & bad, step,
                                 self.nonfinite_step))


class TrainState(NamedTuple):
  """Everything that changes during training (and is checkpointed).

  Attributes:
    step: number of optimizer steps taken (int32).
    params: model parameters.
    batch_stats: BatchNorm running statistics (``{}`` without BatchNorm).
    opt_state: the optimizer state (its PRNG key and sparse masks included).
    metrics: the training metrics summed since the last log line.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  metrics: MetricSums


def init_train_state(model: nn.Module, tx: optax.GradientTransformation,
                     example: np.ndarray, key: jax.Array) -> TrainState:
  """Initialises the model and the optimizer.

  Args:
    model: a model from :func:`zosam_jax.train.models.get_model`.
    tx: the optimizer.
    example: one normalised input batch (only its shape and dtype are used).
    key: the initialisation key.

  Returns:
    The state at step 0.
  """
  # Not jitted: eager initialisation reuses the per-primitive compilation
  # cache, where a jitted init recompiles the random number generation for
  # every new model (seconds on CPU).
  variables = model.init(key, example, train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(jnp.zeros((), jnp.int32), params, batch_stats,
                    tx.init(params), MetricSums.zeros())


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()


def make_loss_fn(model: nn.Module, batch_stats: Any, images: jax.Array,
                 labels: jax.Array) -> Callable[[Any], Any]:
  """``params -> (loss, (logits, new_batch_stats))`` on one minibatch."""

  def loss_fn(params):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    logits, updates = model.apply(variables, images, train=True,
                                  mutable=["batch_stats"])
    return cross_entropy(logits, labels), (logits, updates.get("batch_stats", {}))

  return loss_fn


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                    optimizer: str, mean: ArrayLike, std: ArrayLike,
                    augment: bool, augment_key: jax.Array, crop_pad: int = 4,
                    ascent_fraction: float = 1.0,
                    repeat_batches: int = 1,
                    batch_sharding: Any = None,
                    state_axes: Any = None) -> Callable[..., TrainState]:
  """Returns the (un-jitted) training step.

  Args:
    model: the model.
    tx: the optimizer from :func:`zosam_jax.train.build_optimizer`.
    optimizer: ``sgd``, ``sam`` or ``zosam`` (how ``tx`` is called).
    mean: per-channel input mean.
    std: per-channel input standard deviation.
    augment: apply the CIFAR crop-and-flip augmentation.
    augment_key: the run's augmentation key; step ``s`` uses
      ``fold_in(augment_key, s // repeat_batches)``.
    crop_pad: padding of the crop (pixels on each side).
    ascent_fraction: fraction of the minibatch (its first examples) that
      finds the ascent direction: ZO-SAM's forward passes, SAM's first
      gradient (``zosam_jax.train.optim.ascent_fraction``).
    repeat_batches: consecutive steps that use the same minibatch
      (``zosam_jax.train.data.BatchOrder``): its augmentation too.
    batch_sharding: a sharding of the minibatch over a data axis (e.g.
      ``zosam_jax.data_sharding(mesh)``) for data-parallel training; ``None``
      on one device.
    state_axes: for K seeds in one program, the seed axis of each leaf of the
      stacked state (``zosam_jax.train.seeds.state_axes``); then
      ``augment_key`` holds the K seeds' keys and ``indices`` is ``(K,
      batch)``. ``None``: one seed.

  Returns:
    ``step(state, x_all, y_all, indices, exact=None, ascent=None) -> state``;
    ``exact`` (static) chooses a periodic exact step (:func:`zosam_jax.zo_sam`'s
    ``refresh_every``, LookSAM) at trace time, ``ascent`` (static) an on or off
    step of an ascent schedule (``zosam_jax.train.optim.step_flags``).
  """
  mean, std = jnp.asarray(mean), jnp.asarray(std)

  def one_seed(state: TrainState, key, x_all, y_all, indices, flags) -> TrainState:
    key = jax.random.fold_in(
        key, state.step if repeat_batches == 1 else state.step // repeat_batches)
    images, labels = prepare_batch(key, x_all, y_all, indices, mean,
                                            std, augment, crop_pad)
    if batch_sharding is not None:
      images, labels = jax.lax.with_sharding_constraint((images, labels),
                                                        batch_sharding)
    loss_fn = make_loss_fn(model, state.batch_stats, images, labels)
    if optimizer == "sgd":
      (loss, (logits, batch_stats)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(state.params)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      sharpness = jnp.zeros((), jnp.float32)
    else:
      extra = {k: v for k, v in flags.items() if v is not None}
      if optimizer in ("zosam", "sam") and ascent_fraction < 1.0:
        size = max(1, round(ascent_fraction * images.shape[0]))
        extra["zo_value_fn"] = make_loss_fn(model, state.batch_stats,
                                            images[:size], labels[:size])
      updates, opt_state = tx.update(state.params, state.opt_state, state.params,
                                     value_fn=loss_fn, **extra)
      (logits, batch_stats), opt_state = zosam_jax.pop_aux(opt_state)
      loss = opt_state.perturbed_loss
      # 0 where the loss at θ is not evaluated (MSAM's NaN).
      sharpness = jnp.nan_to_num(opt_state.perturbed_loss - opt_state.loss, nan=0.0)
    params = optax.apply_updates(state.params, updates)
    metrics = state.metrics.add(state.step + 1, loss, logits, labels, sharpness)
    return TrainState(state.step + 1, params, batch_stats, opt_state, metrics)

  def step(state: TrainState, x_all, y_all, indices, exact=None, ascent=None) -> TrainState:
    flags = {"exact": exact, "ascent": ascent}
    if state_axes is None:
      return one_seed(state, augment_key, x_all, y_all, indices, flags)
    if indices is None:  # Each seed's batch given, ``(K, B, ...)`` (several processes).
      return jax.vmap(
          lambda s, k, x, y: one_seed(s, k, x, y, None, flags),
          in_axes=(state_axes, 0, 0, 0), out_axes=state_axes)(state, augment_key, x_all, y_all)
    return jax.vmap(
        lambda s, k, i: one_seed(s, k, x_all, y_all, i, flags),
        in_axes=(state_axes, 0, 0), out_axes=state_axes)(state, augment_key, indices)

  return step


def make_eval_step(model: nn.Module, mean: ArrayLike, std: ArrayLike
                   ) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """Returns ``eval_step(params, batch_stats, x, y, weights)``.

  ``weights`` is 1 for real examples and 0 for the padding of the last batch,
  so every evaluation batch has the same shape (one compilation).

  Returns:
    A function returning ``(loss_sum, correct_sum)`` over the weighted batch.
  """
  mean, std = jnp.asarray(mean), jnp.asarray(std)

  def eval_step(params, batch_stats, x, y, weights):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    logits = model.apply(variables, normalize(x, mean, std), train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y)
    correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
    return jnp.sum(losses * weights), jnp.sum(correct * weights)

  return eval_step
