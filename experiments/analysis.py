"""Helpers shared by the gradient analyses: checkpoints, masks, losses."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def find_masks(opt_state: Any) -> Any | None:
  """The sparse masks held somewhere in an optimizer state (``None`` if dense).

  ``zo_sam``/``sam`` keep the sparse method's state in ``base_tx_state``; the
  sparse states (static, SET/RigL, GMP) have a ``masks`` field.
  """
  if hasattr(opt_state, "masks"):
    return opt_state.masks
  if isinstance(opt_state, (tuple, list)):
    for child in opt_state:
      found = find_masks(child)
      if found is not None:
        return found
  return None


def active_mask(params: Any, masks: Any | None) -> Any:
  """A float32 0/1 pytree shaped like ``params`` (ones where dense)."""
  if masks is None:
    return jax.tree.map(lambda p: jnp.ones(p.shape, jnp.float32), params)
  return jax.tree.map(lambda p, m: jnp.broadcast_to(jnp.asarray(m, jnp.float32), p.shape),
                      params, masks)


class Run(NamedTuple):
  """A run's checkpoint, restored by :func:`load_run`."""
  params: Any
  active: Any  # float32 0/1, shaped like params (ones where dense)
  batch_stats: Any  # BatchNorm running statistics ({} without BatchNorm)
  cfg: Any  # the run's TrainConfig
  model: Any
  ds: Any  # its Dataset


def load_run(workdir: str, step: int | None = None) -> Run:
  """The :class:`Run` of a run's checkpoint (the latest when ``step`` is None)."""
  from zosam_jax.train import get_model, load_train_state, run_dataset

  state, _, cfg = load_train_state(workdir, step)
  ds = run_dataset(cfg)
  return Run(state.params, active_mask(state.params, find_masks(state.opt_state)),
             state.batch_stats, cfg, get_model(cfg.model, ds.num_classes), ds)


def make_loss(model, mean, std):
  """``loss(params, x, y, batch_stats=None)``: the training program's evaluation
  loss (mean cross-entropy, BatchNorm in inference mode with ``batch_stats``)
  on raw (storage-scale) inputs ``x`` of shape ``(B, ...)``."""
  from zosam_jax.train import make_eval_step
  eval_step = make_eval_step(model, mean, std)

  def loss(params, x, y, batch_stats=None):
    loss_sum, _ = eval_step(params, batch_stats or {}, x, y, jnp.ones(y.shape, jnp.float32))
    return loss_sum / y.shape[0]

  return loss


def variance_fn(model, mean, std):
  """Jitted ``(params, active, batch_stats, xb, yb) -> (var, ‖ḡ‖², active count)``.

  ``var`` is :math:`\\frac{1}{K}\\sum_k \\|m \\odot (g_k - \\bar g)\\|^2` over the
  K minibatch gradients ``g_k`` of ``xb``/``yb`` (shapes ``(K, B, ...)``, ``(K, B)``)
  at the same params, with :math:`\\bar g` their mean, on the active weights.
  """
  grad = jax.grad(make_loss(model, mean, std))

  @jax.jit
  def stats(params, active, batch_stats, xb, yb):
    per = jax.vmap(lambda xi, yi: jax.tree.map(
        jnp.multiply, grad(params, xi, yi, batch_stats), active))(xb, yb)
    mean_g = jax.tree.map(lambda b: b.mean(0), per)
    sq = sum(jnp.sum((b - a[None]) ** 2) for a, b in zip(
        jax.tree.leaves(mean_g), jax.tree.leaves(per))) / xb.shape[0]
    norm2 = sum(jnp.sum(a ** 2) for a in jax.tree.leaves(mean_g))
    return sq, norm2, sum(jnp.sum(a) for a in jax.tree.leaves(active))

  return stats


def accuracy(eval_step, params, batch_stats, x: np.ndarray, y: np.ndarray,
             batch: int = 1000) -> float:
  """Accuracy of ``eval_step`` (the program's :func:`make_eval_step`, jitted)
  on ``x`` ``(N, ...)`` / ``y`` ``(N,)``, in batches of ``batch``."""
  hits = sum(float(eval_step(params, batch_stats, x[i:i + batch], y[i:i + batch],
                             np.ones(len(y[i:i + batch]), np.float32))[1])
             for i in range(0, x.shape[0], batch))
  return hits / x.shape[0]


def sample_batches(num_examples: int, batch_size: int, num_batches: int,
                   seed: int = 0) -> np.ndarray:
  """``(num_batches, batch_size)`` indices, each batch without replacement."""
  rng = np.random.default_rng(seed)
  return np.stack([rng.choice(num_examples, batch_size, replace=False)
                   for _ in range(num_batches)])

