"""The optimizer of a run (SGD, SAM or ZO-SAM, dense or sparse), what it selects
(its exact and on/off steps, the passes they spend) and the state at step 0.

The layers, from the inside out:

1. the base optimizer: SGD with momentum and (PyTorch-style, coupled) weight
   decay, on a cosine learning-rate schedule with linear warm-up;
2. for ``--sparse-method`` other than ``dense``, a :mod:`zosam_jax.sparse`
   transformation around it that owns the masks (in its state);
3. for ``--optimizer sam`` or ``zosam``, :func:`zosam_jax.sam` or
   :func:`zosam_jax.zo_sam` around that, reading the masks from the sparse
   transformation's state (``mask_fn="base_state"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import zosam_jax
from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import steps as steps_lib
from zosam_jax.train.config import TrainConfig

#: The optimizers that take an ascent schedule (``--ascent-start``, ``--ascent-every``).
SCHEDULED = ("sam", "zosam", "msam")


def learning_rate_schedule(cfg: TrainConfig, num_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step.

  Args:
    cfg: the run's configuration (``lr``, ``schedule``, ``warmup_steps``).
    num_steps: total number of steps of the run.

  Returns:
    ``--schedule cosine``: linear warm-up from 0 to ``lr`` over
    ``warmup_steps`` (default 5% of the run), then cosine decay to 0 at
    ``num_steps``. ``--schedule constant``: warm-up, then ``lr``.
  """
  warmup = cfg.warmup_steps
  if warmup is None:
    warmup = num_steps // 20
  warmup = min(warmup, max(num_steps - 1, 0))
  if cfg.schedule == "constant":
    if warmup == 0:
      return optax.constant_schedule(cfg.lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, warmup), optax.constant_schedule(cfg.lr)],
        [warmup])
  return optax.warmup_cosine_decay_schedule(
      0.0, cfg.lr, warmup_steps=warmup, decay_steps=max(num_steps, warmup + 1),
      end_value=0.0)


def base_optimizer(cfg: TrainConfig, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """SGD with momentum and weight decay added to the gradient (as in PyTorch)."""
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay),
      optax.sgd(schedule, momentum=cfg.momentum or None),
  )


def sparse_wrapper(cfg: TrainConfig, inner: optax.GradientTransformation,
                   num_steps: int, seed: int,
                   snip_loss_fn: Callable[[Any], jax.Array] | None = None
                   ) -> optax.GradientTransformation:
  """Wraps ``inner`` in the :mod:`zosam_jax.sparse` method of ``cfg``.

  Args:
    cfg: the configuration (``sparse_method``, ``sparsity``,
      ``sparse_distribution``, ``sparse_update_every``, ``drop_fraction``,
      ``dense_first_last``).
    inner: the base optimizer.
    num_steps: total steps (drop-fraction and pruning schedules end at 75%
      of the run, as in RigL).
    seed: seed of the random initial masks.
    snip_loss_fn: ``params -> scalar`` loss on one batch, for
      ``--sparse-init snip``.

  Returns:
    ``inner`` itself for ``dense``, else the sparse transformation.
  """
  if cfg.sparse_method == "dense":
    return inner
  from zosam_jax import sparse  # Imported lazily: optional for dense runs.

  end_step = max(1, int(0.75 * num_steps))
  common: dict[str, Any] = dict(sparsity=cfg.sparsity, distribution=cfg.sparse_distribution,
                dense_first_layer=cfg.dense_first_last,
                dense_last_layer=cfg.dense_first_last)
  if cfg.sparse_method == "static":
    return sparse.static_sparse(inner, key=seed, init_method=cfg.sparse_init,
                                loss_fn=snip_loss_fn, **common)
  if cfg.sparse_method in ("set", "rigl"):
    factory = sparse.set_sparse if cfg.sparse_method == "set" else sparse.rigl
    return factory(inner, key=seed, update_every=cfg.sparse_update_every,
                   drop_fraction=cfg.drop_fraction, end_step=end_step, **common)
  return sparse.gmp(inner, update_every=cfg.sparse_update_every,
                    end_step=end_step, **common)


def build_optimizer(cfg: TrainConfig, num_steps: int,
                    snip_loss_fn: Callable[[Any], jax.Array] | None = None
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the run's optimizer.

  Args:
    cfg: the configuration.
    num_steps: total number of steps.
    snip_loss_fn: ``params -> scalar`` on the first batch, needed by
      ``--sparse-init snip``.

  Returns:
    ``(tx, schedule)``. For ``sgd``, ``tx.update(grads, state, params)``; for
    ``sam`` and ``zosam``, ``tx.update(params, state, params,
    value_fn=loss_fn)`` with ``loss_fn: params -> (loss, (logits,
    batch_stats))``.
  """
  schedule = learning_rate_schedule(cfg, num_steps)
  tx: Any = sparse_wrapper(cfg, base_optimizer(cfg, schedule), num_steps, cfg.seed,
                           snip_loss_fn)
  mask_fn = None if cfg.sparse_method == "dense" else zosam_jax.MASKS_FROM_BASE_STATE
  when = ascent_schedule(cfg, num_steps)
  if cfg.optimizer == "sam":
    tx = zosam_jax.sam(tx, rho=cfg.rho, mask_fn=mask_fn, adaptive=cfg.adaptive,
                       has_aux=True, **when)
  elif cfg.optimizer == "zosam":
    tx = zosam_jax.zo_sam(
        tx, rho=cfg.rho, num_dirs=cfg.num_dirs, mask_fn=mask_fn,
        key=jax.random.fold_in(jax.random.key(cfg.seed), 2), smoothing=cfg.smoothing, estimator=cfg.estimator,
        distribution=cfg.zo_distribution,
        prior=None if cfg.zo_prior == "none" else cfg.zo_prior,
        radius_cap=cfg.radius_cap, refresh_every=cfg.refresh_every,
        probe=cfg.zo_probe,
        exact_leaves=zosam_jax.output_layer if cfg.zo_exact_head else None,
        adaptive=cfg.adaptive, chunk_size=cfg.chunk_size,
        # Pinned (the library's default depends on the backend): the same
        # directions from the same seed as every committed run of the program.
        ravel=True, has_aux=True, **when)
  elif cfg.optimizer == "msam":
    tx = zosam_jax.msam(tx, rho=cfg.rho, mask_fn=mask_fn, has_aux=True, **when)
  elif cfg.optimizer == "looksam":
    every = exact_period(cfg) or config_lib.LOOKSAM_EVERY
    tx = zosam_jax.looksam(tx, rho=cfg.rho, mask_fn=mask_fn, every=every,
                           alpha=cfg.looksam_alpha, has_aux=True)
  return tx, schedule


def step_flags(cfg: TrainConfig, step: int, num_steps: int,
               static: bool = True) -> dict[str, bool]:
  """The static flags of the run's step ``step``: ``exact`` for an optimizer
  with a periodic exact step, ``ascent`` for one with an ascent schedule
  (chosen here, one compiled step per branch: XLA:CPU runs convolutions'
  gradients inside ``jax.lax.cond`` several times slower, and an off step
  then costs SGD's; ``static=False``: not chosen here, the transformation's
  ``jax.lax.cond`` chooses inside one step); nothing otherwise."""
  flags = {}
  every = exact_period(cfg)
  if every is not None:
    flags["exact"] = step % every == 0
  when = ascent_schedule(cfg, num_steps)
  if static and cfg.optimizer in SCHEDULED and any(v is not None for v in when.values()):
    flags["ascent"] = zosam_jax.ascent_on(step, start=when["ascent_start"],
                                          every=when["ascent_every"])
  return flags


def step_variants(cfg: TrainConfig, num_steps: int, static: bool = True
                  ) -> list[dict[str, bool]]:
  """The distinct :func:`step_flags` of a run's steps (one compiled step each),
  in the order the run first takes them (``static`` as in :func:`step_flags`)."""
  flags = (tuple(step_flags(cfg, s, num_steps, static).items()) for s in range(num_steps))
  return [dict(f) for f in dict.fromkeys(flags)]


def run_passes(cfg: TrainConfig, steps: int, num_steps: int) -> tuple[int, int]:
  """``(backward, forward)`` passes spent by steps ``0 .. steps - 1`` of a
  run of ``num_steps``: :func:`zosam_jax.step_passes` per step on the ascent
  schedule, SGD's one and one per step off it."""
  backward, forward = zosam_jax.step_passes(
      cfg.optimizer, cfg.num_dirs, cfg.estimator, cfg.zo_prior, exact_period(cfg),
      cfg.zo_probe, cfg.zo_exact_head)
  on = steps
  if cfg.optimizer in SCHEDULED:
    on = zosam_jax.ascent_steps(steps, **{k[len("ascent_"):]: v for k, v in
                                          ascent_schedule(cfg, num_steps).items()})
  return round(on * backward + steps - on), round(on * forward + steps - on)


def exact_period(cfg: TrainConfig) -> int | None:
  """The period of the run's exact steps (ZO-SAM's refresh, LookSAM), or None."""
  if cfg.optimizer == "looksam":
    return cfg.refresh_every or config_lib.LOOKSAM_EVERY
  return cfg.refresh_every if cfg.optimizer == "zosam" else None


def ascent_fraction(cfg: TrainConfig) -> float:
  """The fraction of the minibatch (its first examples) the ascent sees:
  ``--zo-batch-fraction`` for ZO-SAM's forward passes, ``--ascent-batch-fraction``
  for SAM's first gradient, the whole minibatch otherwise."""
  return {"zosam": cfg.zo_batch_fraction, "sam": cfg.ascent_batch_fraction}.get(
      cfg.optimizer, 1.0)


def evaluates_loss_at_theta(cfg: TrainConfig) -> bool:
  """Whether a step evaluates the loss at θ besides θ+ε (so its sharpness
  L(θ+ε) − L(θ) is known): not SGD, MSAM, or ZO-SAM's unprobed prior (unless
  its output layer takes the current gradient, whose forward pass gives it)."""
  if cfg.optimizer == "zosam":
    return cfg.zo_probe or cfg.zo_exact_head
  return cfg.optimizer not in ("sgd", "msam")


def ascent_schedule(cfg: TrainConfig, num_steps: int) -> dict[str, Any]:
  """The run's ascent schedule as the transformations take it:
  ``{"ascent_start": step or None, "ascent_every": k or None}``.
  ``--ascent-start`` below 1 is a fraction of the run's steps (rounded to a
  step), from 1 on a step."""
  start = cfg.ascent_start
  if start is not None and start < 1:
    start = round(start * num_steps)
  return {"ascent_start": None if start is None else int(start),
          "ascent_every": cfg.ascent_every}


def _snip_loss_fn(cfg, model, ds):
  """``params -> loss`` on the run's first minibatch (for ``--sparse-init snip``)."""
  if cfg.sparse_init != "snip":
    return None
  indices = data_lib.BatchOrder(cfg.seed, ds.x_train.shape[0], cfg.batch_size).indices(0)
  images = steps_lib.normalize(jnp.asarray(ds.x_train[indices]), ds.mean, ds.std)
  loss_fn = steps_lib.make_loss_fn(model, {}, images, jnp.asarray(ds.y_train[indices]))
  return lambda params: loss_fn(params)[0]


def initial_state(cfg: TrainConfig, model: Any, ds: data_lib.Dataset,
                  num_steps: int
                  ) -> tuple[steps_lib.TrainState, optax.GradientTransformation,
                             optax.Schedule]:
  """The run's optimizer and its state at step 0, from ``cfg.seed``.

  The seed enters the initial weights (``fold_in(key(seed), 0)``), the
  initial masks and ZO-SAM's key (both in ``tx.init``); ``tx.update`` does not
  depend on it, so one seed's ``tx`` steps every seed's state.

  Args:
    cfg: the run's configuration.
    model: the model.
    ds: the run's dataset (its image shape; the first minibatch for SNIP).
    num_steps: the run's total steps (schedules).

  Returns:
    ``(state, tx, schedule)``.
  """
  tx, schedule = build_optimizer(cfg, num_steps, _snip_loss_fn(cfg, model, ds))
  example = np.zeros((1,) + ds.x_train.shape[1:], np.float32)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
  return steps_lib.init_train_state(model, tx, example, key), tx, schedule


def augment_key(cfg: TrainConfig) -> jax.Array:
  """The run's augmentation key; step ``s`` uses ``fold_in(key, s)``."""
  return jax.random.fold_in(jax.random.key(cfg.seed), 1)
