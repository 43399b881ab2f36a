"""Zeroth-order (random gradient) estimates of a loss gradient.

All estimators evaluate a loss along ``m`` random directions :math:`u_i` and
combine the directional derivatives :math:`c_i \\approx u_i^\\top \\nabla L`:

.. math::
  \\hat g = \\frac{1}{m} \\sum_{i=1}^m c_i u_i, \\qquad
  c_i = \\begin{cases}
    \\frac{L(\\theta + \\delta u_i) - L(\\theta - \\delta u_i)}{2\\delta}
      & \\text{central (2m forward passes)} \\\\
    \\frac{L(\\theta + \\delta u_i) - L(\\theta)}{\\delta}
      & \\text{forward (m + 1 forward passes)} \\\\
    u_i^\\top \\nabla L(\\theta) \\text{ by } \\texttt{jax.jvp}
      & \\text{jvp (exact, forward mode)}
  \\end{cases}
"""

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp

from zosam_jax._src import base
from zosam_jax._src import directions


def perturb(params: base.Params, direction: base.Params,
            scale: jax.Array) -> base.Params:
  """Returns ``params + scale * direction``, formed in float32 (or wider).

  Args:
    params: a pytree of arrays (any float dtype).
    direction: a pytree of arrays with the same shapes.
    scale: a scalar.

  Returns:
    A pytree like ``params``, in the params' dtypes.
  """
  def add(p, d):
    dtype = jnp.promote_types(p.dtype, jnp.float32)
    return (p.astype(dtype) + scale * d.astype(dtype)).astype(p.dtype)

  return jax.tree.map(add, params, direction)


def _lanes(estimator: str, num_dirs: int,
           smoothing: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Direction index and signed step of each perturbed evaluation."""
  idx = jnp.arange(num_dirs)
  step = jnp.full((num_dirs,), smoothing, jnp.float32)
  if estimator == "central":
    return jnp.concatenate([idx, idx]), jnp.concatenate([step, -step])
  # forward: the last lane, with a zero step, evaluates L(θ) itself.
  return (jnp.concatenate([idx, jnp.zeros((1,), idx.dtype)]),
          jnp.concatenate([step, jnp.zeros((1,), jnp.float32)]))


def _coefficients(estimator: str, num_dirs: int, values: jax.Array,
                  smoothing: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Directional-derivative estimates ``(m,)`` and the loss at θ from values."""
  if estimator == "central":
    plus, minus = values[:num_dirs], values[num_dirs:]
    return (plus - minus) / (2 * smoothing), jnp.mean(values)
  return (values[:num_dirs] - values[num_dirs]) / smoothing, values[num_dirs]


def zo_gradient(
    loss_fn: Callable[[Any], jax.Array],
    params: base.Params,
    active: Optional[base.Params],
    key: jax.Array,
    *,
    num_dirs: int,
    smoothing: jax.Array,
    estimator: base.Estimator,
    distribution: base.Distribution,
    chunk_size: Optional[int] = None,
    axis_name: Optional[str] = None,
) -> tuple[base.Params, jax.Array]:
  """Estimates the gradient of ``loss_fn`` at ``params`` from forward passes.

  Direction ``i`` is drawn from ``jax.random.fold_in(key, i)``, so the
  directions never have to be held at once: with ``chunk_size=k`` only ``k``
  perturbed copies of the params exist at a time and the directions are
  regenerated to form :math:`\\hat g`. Without ``chunk_size`` all evaluations
  run in one ``jax.vmap``, which is fastest on launch-bound models.

  Args:
    loss_fn: ``params -> scalar`` loss on the current minibatch.
    params: a pytree of arrays with leaf shapes ``s_j`` (a single flat vector
      is the fast path).
    active: ``None`` or a pytree of float32 0/1 arrays of shapes ``s_j``; the
      directions, hence :math:`\\hat g`, are zero where it is 0.
    key: a typed PRNG key.
    num_dirs: the number of directions ``m``.
    smoothing: the finite-difference step :math:`\\delta` (unused by
      ``"jvp"``).
    estimator: ``"central"``, ``"forward"`` or ``"jvp"``.
    distribution: ``"gaussian"``, ``"rademacher"`` or ``"sphere"``.
    chunk_size: evaluate at most this many perturbed losses at once
      (``None``: all at once).
    axis_name: if given, the loss values (or directional derivatives) are
      averaged over this mapped axis with ``jax.lax.pmean`` so that every device
      uses the global minibatch loss.

  Returns:
    ``(g_hat, loss)``: ``g_hat`` is a pytree of float32 arrays of shapes
    ``s_j``; ``loss`` is a float32 scalar estimate of ``loss_fn(params)``
    (exact for ``"forward"`` and ``"jvp"``, :math:`O(\\delta^2)` for
    ``"central"``), obtained without any extra evaluation.

  References:
    Nesterov & Spokoiny, `Random Gradient-Free Minimization of Convex
    Functions <https://doi.org/10.1007/s10208-015-9296-2>`_, 2017

    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, 2026
  """
  direction = lambda i: directions.sample_direction(
      jax.random.fold_in(key, i), params, active, distribution)
  f32_loss = lambda p: jnp.asarray(loss_fn(p), jnp.float32)
  all_at_once = chunk_size is None or chunk_size >= 2 * num_dirs

  if estimator == "jvp":
    def derivative(u):
      u = jax.tree.map(lambda d, p: d.astype(p.dtype), u, params)
      return jax.jvp(f32_loss, (params,), (u,))

    if all_at_once:
      dirs = jax.vmap(direction)(jnp.arange(num_dirs))
      values, coeffs = jax.vmap(derivative)(dirs)
    else:
      values, coeffs = jax.lax.map(lambda i: derivative(direction(i)),
                                   jnp.arange(num_dirs), batch_size=chunk_size)
    loss = values[0]
    if axis_name is not None:
      coeffs, loss = jax.lax.pmean((coeffs, loss), axis_name)
  else:
    idx, steps = _lanes(estimator, num_dirs, smoothing)
    if all_at_once:
      dirs = jax.vmap(direction)(jnp.arange(num_dirs))
      lane_dirs = jax.tree.map(lambda d: d[idx], dirs)
      values = jax.vmap(lambda u, s: f32_loss(perturb(params, u, s)))(
          lane_dirs, steps)
    else:
      values = jax.lax.map(
          lambda i_s: f32_loss(perturb(params, direction(i_s[0]), i_s[1])),
          (idx, steps), batch_size=chunk_size)
    if axis_name is not None:
      values = jax.lax.pmean(values, axis_name)
    coeffs, loss = _coefficients(estimator, num_dirs, values, smoothing)

  if all_at_once:
    g_hat = jax.tree.map(lambda d: jnp.tensordot(coeffs, d, axes=1), dirs)
  else:
    g_hat = jax.lax.fori_loop(
        0, num_dirs,
        lambda i, acc: jax.tree.map(lambda a, d: a + coeffs[i] * d, acc,
                                    direction(i)),
        jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params))
  g_hat = jax.tree.map(lambda g: g / num_dirs, g_hat)
  return g_hat, loss
