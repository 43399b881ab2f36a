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
      & \\text{jvp (exact, forward mode)} \\\\
    1 & \\text{random (a control: no loss difference, no sign)}
  \\end{cases}

``"random"`` is not an estimate of the gradient: it gives a random weight
perturbation of the same radius as ZO-SAM's, the control that tells whether
the loss differences matter at all (one forward pass, for the loss at θ).
"""

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp

from zosam_jax._src import base
from zosam_jax._src import directions
from zosam_jax._src import sharding


def perturb(params: base.Params, direction: base.Params,
            scale: jax.Array | float) -> base.Params:
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


#: Loss evaluations (batched lanes) of each estimator for ``m`` directions.
_NUM_LANES = {"central": lambda m: 2 * m, "forward": lambda m: m + 1,
              "jvp": lambda m: m, "random": lambda m: 1}


def ascent_forward_passes(num_dirs: int, estimator: str = "central",
                          prior: Optional[str] = None, probe: bool = True,
                          exact_leaves: bool = False) -> int:
  """Forward passes of one zeroth-order ascent, the paper's unit of cost.

  Counts what :func:`zo_gradient` (and ``zo_sam``'s prior probe) evaluate:
  central ``2m``, forward ``m + 1``, jvp ``2m`` (each ``jax.jvp`` costs about
  two forward passes), random ``1`` (the loss at θ); a ``prior`` adds the two
  of its probe (none with ``probe=False``); ``exact_leaves`` one (the
  backward pass through those leaves alone is not counted). The real gradient
  at the perturbed point (one forward and one backward pass) is not included.

  Args:
    num_dirs: ``m``, the number of random directions.
    estimator: ``"central"``, ``"forward"``, ``"jvp"`` or ``"random"``.
    prior: ``None``/``"none"``, ``"gradient"`` or ``"momentum"``.
    probe: whether the prior is probed (``zo_sam``'s ``probe``).
    exact_leaves: whether ``zo_sam`` has ``exact_leaves``.

  Returns:
    The number of forward passes.

  Raises:
    ValueError: for an unknown estimator.

  Examples:
    >>> ascent_forward_passes(1), ascent_forward_passes(4, "forward")
    (2, 5)
    >>> ascent_forward_passes(0, prior="gradient"), ascent_forward_passes(
    ...     0, prior="gradient", probe=False)
    (2, 0)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, 2026
  """
  if estimator not in _NUM_LANES:
    raise ValueError(f"estimator must be one of {tuple(_NUM_LANES)}, got {estimator!r}")
  lanes = _NUM_LANES[estimator](num_dirs) * (2 if estimator == "jvp" else 1)
  return lanes + (2 if probe and prior not in (None, "none") else 0) + int(exact_leaves)


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

  Direction ``i`` is drawn from ``jax.random.fold_in(key, i)``: with
  ``chunk_size=k`` only ``k`` perturbed copies exist at a time and the
  directions are regenerated to form :math:`\\hat g`; a ``chunk_size`` of
  all evaluations is one ``jax.vmap`` (GPU/TPU), ``1`` unbatched (CPU).

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
    estimator: ``"central"``, ``"forward"``, ``"jvp"`` or ``"random"`` (the
      control: the mean of the directions, coefficients 1).
    distribution: ``"gaussian"``, ``"rademacher"`` or ``"sphere"``.
    chunk_size: at most this many perturbed losses at once in one
      ``jax.vmap``; ``None`` by backend (``resolve_chunk_size``).
    axis_name: the mapped axis over which loss values (or directional
      derivatives) are averaged with ``jax.lax.pmean``.

  Returns:
    ``(g_hat, loss)``: ``g_hat`` is a pytree of float32 arrays of shapes
    ``s_j``; ``loss`` is a float32 scalar estimate of ``loss_fn(params)``
    (exact for ``"forward"`` and ``"jvp"``, :math:`O(\\delta^2)` for
    ``"central"``), obtained without any extra evaluation.

  Examples:
    >>> import jax, jax.numpy as jnp, zosam_jax
    >>> loss_fn = lambda p: jnp.sum(p ** 2)
    >>> g_hat, loss = zosam_jax.zo_gradient(
    ...     loss_fn, jnp.ones(3), None, jax.random.key(0), num_dirs=2000,
    ...     smoothing=1e-3, estimator="central", distribution="gaussian",
    ...     chunk_size=4000)
    >>> g_hat.shape, bool(jnp.allclose(g_hat, 2.0, atol=0.4))
    ((3,), True)

  References:
    Nesterov & Spokoiny, `Random Gradient-Free Minimization of Convex
    Functions <https://doi.org/10.1007/s10208-015-9296-2>`_, 2017

    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, 2026
  """
  direction = lambda i: directions.sample_direction(
      jax.random.fold_in(key, i), params, active, distribution)
  f32_loss = lambda p: jnp.asarray(loss_fn(p), jnp.float32)
  mean = lambda g_hat: jax.tree.map(lambda g: g / num_dirs, g_hat)
  if estimator == "random":
    loss = f32_loss(params)
    g_hat = _weighted_sum(jnp.ones(num_dirs), direction, params)
    return mean(g_hat), sharding.mean_over(loss, axis_name)
  num_lanes = _NUM_LANES[estimator](num_dirs)
  chunk_size = resolve_chunk_size(chunk_size, num_lanes)
  if chunk_size == 1:
    g_hat, loss = _sequential(f32_loss, params, direction, num_dirs=num_dirs,
                              smoothing=smoothing, estimator=estimator,
                              axis_name=axis_name)
    return mean(g_hat), loss
  # All directions at once (they are then held), or chunks regenerated.
  dirs = (jax.vmap(direction)(jnp.arange(num_dirs))
          if chunk_size >= num_lanes else None)
  if estimator == "jvp":
    coeffs, loss = _jvp_coefficients(f32_loss, params, direction, dirs,
                                     num_dirs, chunk_size)
    coeffs, loss = sharding.mean_over((coeffs, loss), axis_name)
  else:
    values = _difference_values(f32_loss, params, direction, dirs, estimator,
                                num_dirs, smoothing, chunk_size)
    coeffs, loss = _coefficients(estimator, num_dirs,
                                 sharding.mean_over(values, axis_name), smoothing)
  if dirs is not None:
    return mean(jax.tree.map(lambda d: jnp.tensordot(coeffs, d, axes=1),
                             dirs)), loss
  return mean(_weighted_sum(coeffs, direction, params)), loss


def _weighted_sum(coeffs, direction, params):
  """Σᵢ cᵢ uᵢ, regenerating direction ``i`` from its index."""
  return jax.lax.fori_loop(
      0, coeffs.shape[0],
      lambda i, acc: jax.tree.map(lambda a, d: a + coeffs[i] * d, acc,
                                  direction(i)),
      jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params))


def _jvp_coefficients(f32_loss, params, direction, dirs, num_dirs, chunk_size):
  """The exact directional derivatives (coefficients) and the loss, with the
  directions ``dirs`` held (one ``jax.vmap``) or regenerated in chunks."""

  def derivative(u):
    return jax.jvp(f32_loss, (params,), (_like(u, params),))

  if dirs is not None:
    values, coeffs = jax.vmap(derivative)(dirs)
  else:
    values, coeffs = jax.lax.map(lambda i: derivative(direction(i)),
                                 jnp.arange(num_dirs), batch_size=chunk_size)
  return coeffs, values[0]


def _difference_values(f32_loss, params, direction, dirs, estimator, num_dirs,
                       smoothing, chunk_size):
  """The perturbed losses of a finite difference, one per lane, with the
  directions ``dirs`` held (one ``jax.vmap``) or regenerated in chunks."""
  idx, steps = _lanes(estimator, num_dirs, smoothing)
  if dirs is not None:
    lane_dirs = jax.tree.map(lambda d: d[idx], dirs)
    return jax.vmap(lambda u, s: f32_loss(perturb(params, u, s)))(
        lane_dirs, steps)
  return jax.lax.map(
      lambda i_s: f32_loss(perturb(params, direction(i_s[0]), i_s[1])),
      (idx, steps), batch_size=chunk_size)


def resolve_estimator(estimator: Optional[str], params: base.Params,
                      loss_dtype: Any) -> str:
  """The estimator; ``None`` picks ``"jvp"`` for low-precision params or loss.

  A finite difference in bfloat16 is mostly rounding: the loss (or the
  parameters after the step :math:`\\delta u`) keeps 8 bits of mantissa, so
  :math:`L(\\theta + \\delta u) - L(\\theta - \\delta u)` is often exactly 0.
  ``jax.jvp`` gives the exact directional derivative at about the cost of the
  two forward passes.

  Args:
    estimator: the user's ``estimator`` (``None`` for automatic).
    params: the params (only their dtypes are read).
    loss_dtype: the dtype of the loss.

  Returns:
    ``estimator``, or for ``None``: ``"jvp"`` if a floating param or the loss
    has fewer than 32 bits, else ``"central"`` (the paper's).
  """
  if estimator is not None:
    return estimator
  dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)] + [loss_dtype]
  narrow = any(jnp.issubdtype(d, jnp.floating) and jnp.finfo(d).bits < 32
               for d in dtypes)
  return "jvp" if narrow else "central"


def resolve_chunk_size(chunk_size: Optional[int], num_lanes: int) -> int:
  """How many perturbed evaluations run at once (``None``: by backend).

  A ``jax.vmap`` over perturbed copies of the weights batches the weights of
  every layer. On GPUs and TPUs that is nearly free for launch-bound models, so
  all evaluations run at once; on CPUs XLA lowers batched-weight convolutions
  to grouped convolutions that cost several times the separate passes
  (``benchmarks/README.md``), so they run one after the other.

  Args:
    chunk_size: the user's ``chunk_size`` (``None`` for automatic).
    num_lanes: the number of perturbed evaluations of the estimator.

  Returns:
    A chunk size in ``[1, num_lanes]``.
  """
  if chunk_size is None:
    return 1 if jax.default_backend() == "cpu" else num_lanes
  return min(chunk_size, num_lanes)


#: Up to this many directions, the sequential path is a straight-line program.
_MAX_UNROLLED = 4


def _like(u: base.Params, params: base.Params) -> base.Params:
  """Casts a float32 direction to the params' dtypes (jvp tangents)."""
  return jax.tree.map(lambda d, p: d.astype(p.dtype), u, params)


def _sequential(f32_loss, params, direction, *, num_dirs, smoothing, estimator,
                axis_name):
  """One direction at a time, unbatched: each direction is drawn once."""
  pmean = lambda x: sharding.mean_over(x, axis_name)
  at_params = pmean(f32_loss(params)) if estimator == "forward" else None

  def body(i, carry):
    g_hat, total = carry
    u = direction(i)
    if estimator == "jvp":
      value, coeff = pmean(jax.jvp(f32_loss, (params,), (_like(u, params),)))
    elif estimator == "central":
      plus = pmean(f32_loss(perturb(params, u, smoothing)))
      minus = pmean(f32_loss(perturb(params, u, -smoothing)))
      value, coeff = (plus + minus) / 2, (plus - minus) / (2 * smoothing)
    else:
      plus = pmean(f32_loss(perturb(params, u, smoothing)))
      value, coeff = at_params, (plus - at_params) / smoothing
    g_hat = jax.tree.map(lambda a, d: a + coeff * d, g_hat, u)
    return g_hat, total + value

  carry = (jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params),
           jnp.zeros((), jnp.float32))
  if num_dirs <= _MAX_UNROLLED:
    # No loop for the few directions of the usual settings: XLA schedules the
    # forward passes together and a CPU while loop's per-iteration overhead
    # is avoided; a loop keeps compile time bounded beyond that.
    for i in range(num_dirs):
      carry = body(i, carry)
  else:
    carry = jax.lax.fori_loop(0, num_dirs, body, carry, unroll=_MAX_UNROLLED)
  g_hat, total = carry
  return g_hat, total / num_dirs
