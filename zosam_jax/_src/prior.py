"""Prior-guided zeroth-order ascent: forward passes along a known direction.

With ``m`` random directions in ``d`` active weights a zeroth-order estimate
:math:`\\hat g` has :math:`\\cos(\\hat g, \\nabla L) \\approx \\sqrt{m/d}`: for
the paper's ``m = 1`` it is nearly a random perturbation. The masked gradient
at the perturbed point of the previous step, which a ZO-SAM step computes
anyway, is a much better guess. This module spends the forward passes along
that prior :math:`p` instead (a central difference, so the sign and size of
the step come from the loss, never assumed) and, if asked, along random
directions for the rest of the space:

.. math::
  v = \\frac{M \\odot p}{\\|M \\odot p\\|}, \\quad
  c = \\frac{L(\\theta + \\delta v) - L(\\theta - \\delta v)}{2 \\delta}
    \\approx v^\\top \\nabla L, \\quad
  \\hat g = c\\, v + \\frac{m}{d} (I - v v^\\top) \\hat g_{\\mathrm{rand}}

which is the projection of :math:`\\nabla L` onto the span of :math:`v` and the
random directions (each of squared norm about :math:`d`, the number of active
weights): the random part gets the small weight its information deserves. The
step along the unit vector :math:`v` is :math:`\\delta` in weight space, so
the mean of the two losses is the loss at :math:`\\theta` up to
:math:`O(\\delta^2)`. Without a usable prior (the first step, a zero
gradient) :math:`v` is a random unit direction.
"""

from collections.abc import Callable
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import directions
from zosam_jax._src import estimators

PRIORS: tuple[Optional[str], ...] = (None, "gradient", "momentum")

# (loss_fn, params, active, key) -> (g_hat, loss): the random-direction part.
_RandomEstimate = Callable[[Callable[[Any], jax.Array], Any, Any, jax.Array],
                           tuple[Any, jax.Array]]


def _num_active(params: base.Params, active: Optional[base.Params]) -> jax.Array:
  """The number ``d`` of active coordinates, float32."""
  if active is None:
    size = sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params))
    return jnp.asarray(size, jnp.float32)
  return sum(jnp.sum(a, dtype=jnp.float32) for a in jax.tree.leaves(active))


def prior_direction(prior: base.Params, params: base.Params,
                    active: Optional[base.Params], key: jax.Array,
                    distribution: base.Distribution) -> base.Params:
  """The probing direction ``v``: the masked prior scaled to unit norm.

  Args:
    prior: a pytree like ``params`` (any float dtype), e.g. the last gradient.
    params: the parameters, leaf shapes ``s_j``.
    active: ``None`` or float32 0/1 arrays of shapes ``s_j``.
    key: the key of the fallback direction.
    distribution: the fallback direction's distribution.

  Returns:
    float32 arrays of shapes ``s_j``, zero where ``active`` is 0, of norm 1
    (0 if no weight is active); a random direction of ``distribution`` when
    the masked prior is zero (first step, all-zero gradient).
  """
  masked = jax.tree.map(lambda p: p.astype(jnp.float32), prior)
  if active is not None:
    masked = jax.tree.map(jnp.multiply, masked, active)
  norm = optax.tree.norm(masked)
  v = jax.lax.cond(
      norm > 0, lambda: masked,
      lambda: directions.sample_direction(key, params, active, distribution))
  v_norm = optax.tree.norm(v)
  return jax.tree.map(lambda x: x / jnp.where(v_norm > 0, v_norm, 1.0), v)


def prior_guided_gradient(
    loss_fn: Callable[[Any], jax.Array],
    params: base.Params,
    active: Optional[base.Params],
    prior: base.Params,
    key: jax.Array,
    *,
    num_dirs: int,
    smoothing: Any,
    distribution: base.Distribution,
    random_estimate: Optional[_RandomEstimate] = None,
    axis_name: Any = None,
) -> tuple[base.Params, jax.Array]:
  """Estimates the gradient from 2 forward passes along a prior (+ random ones).

  Args:
    loss_fn: ``params -> scalar`` loss on the current minibatch.
    params: a pytree of arrays with leaf shapes ``s_j`` (or one flat vector).
    active: ``None`` or float32 0/1 arrays of shapes ``s_j``.
    prior: a pytree like ``params``: the guess of the gradient's direction,
      re-masked with ``active`` here.
    key: a typed PRNG key (split between the fallback and random directions).
    num_dirs: the number ``m >= 0`` of random directions added.
    smoothing: the finite-difference step :math:`\\delta`.
    distribution: the random directions' distribution.
    random_estimate: ``(loss_fn, params, active, key) -> (g_hat, loss)``, the
      unbiased estimate from the ``m`` random directions (e.g.
      :func:`zosam_jax.zo_gradient`); unused when ``num_dirs == 0``.
    axis_name: if given, loss values are averaged over this mapped axis.

  Returns:
    ``(g_hat, loss)``: float32 arrays of shapes ``s_j`` (the projection of the
    gradient onto the probed directions) and the mean of the perturbed losses,
    an :math:`O(\\delta^2)` estimate of the loss at ``params``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from zosam_jax import prior_guided_gradient
    >>> loss_fn = lambda p: jnp.sum(p ** 2)           # gradient 2p
    >>> params = jnp.array([1.0, 2.0, 0.0])
    >>> g, _ = prior_guided_gradient(loss_fn, params, None, jnp.array([1.0, 1.9, 0.1]),
    ...                              jax.random.key(0), num_dirs=0, smoothing=1e-3,
    ...                              distribution="gaussian")
    >>> bool(jnp.allclose(g / jnp.linalg.norm(g), params / jnp.linalg.norm(params),
    ...                   atol=0.05))
    True

  References:
    Cheng et al., `Improving Black-box Adversarial Attacks with a
    Transfer-based Prior <https://arxiv.org/abs/1906.06919>`_, NeurIPS 2019

    Liu et al., `Towards Efficient and Scalable Sharpness-Aware Minimization
    <https://arxiv.org/abs/2203.02714>`_, CVPR 2022 (LookSAM)
  """
  fallback_key, random_key = jax.random.split(key)
  pmean = ((lambda x: x) if axis_name is None
           else (lambda x: jax.lax.pmean(x, axis_name)))
  f32_loss = lambda p: pmean(jnp.asarray(loss_fn(p), jnp.float32))
  v = prior_direction(prior, params, active, fallback_key, distribution)
  plus = f32_loss(estimators.perturb(params, v, smoothing))
  minus = f32_loss(estimators.perturb(params, v, -smoothing))
  coeff = (plus - minus) / (2 * smoothing)
  g_hat = jax.tree.map(lambda x: coeff * x, v)
  loss = (plus + minus) / 2
  if num_dirs == 0:
    return g_hat, loss
  g_rand, loss_rand = random_estimate(loss_fn, params, active, random_key)
  # The random part's component orthogonal to the unit vector v.
  # (elementwise products: a dot product of sharded vectors needs an out_sharding).
  along = sum(jnp.sum(r * x) for r, x in zip(jax.tree.leaves(g_rand),
                                               jax.tree.leaves(v)))
  weight = num_dirs / jnp.maximum(_num_active(params, active), 1.0)
  g_hat = jax.tree.map(lambda g, r, x: g + weight * (r - along * x), g_hat, g_rand, v)
  return g_hat, (loss + num_dirs * loss_rand) / (1 + num_dirs)
