"""One training step of a Flax ``TrainState`` whose ``tx`` is ZO-SAM or SAM."""

from typing import Any

import optax

from zosam_jax._src import base


def train_state_step(state: Any, value_fn: base.ValueFn, **extra_args: Any) -> Any:
  """Applies one ZO-SAM (or SAM) step to a ``flax.training.train_state.TrainState``.

  ``TrainState.apply_gradients(grads=...)`` cannot forward ``value_fn``, and a
  gradient computed first would be thrown away: ZO-SAM takes its only
  gradient at the perturbed point itself. This is ``apply_gradients`` for it.

  Args:
    state: a ``TrainState`` (any flax struct with ``step``, ``params``,
      ``tx``, ``opt_state`` and ``replace``) whose ``tx`` is
      :func:`zosam_jax.zo_sam` or :func:`zosam_jax.sam`, possibly wrapped
      (``optax.inject_hyperparams``).
    value_fn: the minibatch loss, ``params -> loss`` (or ``-> (loss, aux)``
      with ``has_aux=True``; read the aux with
      ``zosam_jax.pop_aux(state.opt_state)``).
    **extra_args: passed on to ``tx.update`` (e.g. ``zo_value_fn``).

  Returns:
    The state after the step (``step + 1``, updated ``params`` and
    ``opt_state``).

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> from flax.training import train_state
    >>> state = train_state.TrainState.create(
    ...     apply_fn=None, params={'w': jnp.zeros(3)},
    ...     tx=zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05))
    >>> loss_fn = lambda p: jnp.sum((p['w'] - 1.0) ** 2)
    >>> state = zosam_jax.train_state_step(state, loss_fn)
    >>> int(state.step), bool(loss_fn(state.params) < 3.0)
    (1, True)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  updates, opt_state = state.tx.update(state.params, state.opt_state, state.params,
                                       value_fn=value_fn, **extra_args)
  return state.replace(step=state.step + 1,
                       params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)
