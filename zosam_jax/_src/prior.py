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
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import directions
from zosam_jax._src import estimators
from zosam_jax._src import sharding

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
  f32_loss = lambda p: sharding.mean_over(jnp.asarray(loss_fn(p), jnp.float32),
                                          axis_name)
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


def check_prior_options(prior: Optional[str], radius_cap: Any, refresh_every: Any,
                        probe: Any = True, num_dirs: Any = 0) -> None:
  """``radius_cap``, ``refresh_every`` and ``probe=False`` are options of
  ``prior="gradient"`` (``probe=False`` with ``num_dirs=0`` and no ``radius_cap``)."""
  for name, value in (("radius_cap", radius_cap), ("refresh_every", refresh_every)):
    if value is not None and prior != "gradient":
      raise ValueError(f"`{name}` is an option of prior='gradient', got prior={prior!r}; "
                       f"add prior='gradient' (e.g. with num_dirs=0) or drop `{name}`")
  if refresh_every is not None and (isinstance(refresh_every, bool) or not isinstance(
      refresh_every, numbers.Integral) or refresh_every < 1):
    raise ValueError(f"`refresh_every` must be a positive int (the exact ascent every "
                     f"k steps) or None, got {refresh_every!r} (with "
                     "`optax.inject_hyperparams`, list 'refresh_every' in `static_args`)")
  if isinstance(radius_cap, (bool, str)) or (
      isinstance(radius_cap, numbers.Real) and not 1 <= radius_cap < math.inf):
    raise ValueError(f"`radius_cap` must be a finite number >= 1 (the largest radius "
                     f"as a multiple of rho) or None, got {radius_cap!r}")
  _check_probe(probe, prior, num_dirs, radius_cap)


def _check_probe(probe: Any, prior: Optional[str], num_dirs: Any, radius_cap: Any) -> None:
  """``probe`` is a bool; ``False`` needs ``prior="gradient"``, no random
  directions and no ``radius_cap`` (whose cosine comes from the probe)."""
  if not isinstance(probe, bool):
    raise TypeError(f"`probe` must be a Python bool, got {probe!r} (with "
                    "`optax.inject_hyperparams`, list 'probe' in `static_args`)")
  if probe:
    return
  if prior != "gradient" or num_dirs != 0:
    raise ValueError(f"`probe=False` perturbs along the last gradient without forward "
                     f"passes: it needs prior='gradient' and num_dirs=0, got "
                     f"prior={prior!r}, num_dirs={num_dirs!r}")
  if radius_cap is not None:
    raise ValueError("`radius_cap` scales the radius by the cosine the probe measures; "
                     "with `probe=False` there is none: drop `radius_cap` or the probe "
                     "stays (probe=True)")


def radius_scale(direction: base.Params, prior: base.Params,
                 active: Optional[base.Params], cap: Any) -> jax.Array:
  r"""The radius factor compensating a prior's cosine with the gradient.

  The probe along :math:`v = M p / \|M p\|` measures :math:`c \approx v^\top
  \nabla L`, the component of the gradient along the prior; with the prior's
  own norm standing for the unknown :math:`\|\nabla L\|` (the last gradient,
  on another minibatch), :math:`\hat c = |c| / \|M p\| = |\hat g^\top M p| /
  \|M p\|^2`. A perturbation of radius :math:`\rho / \hat c` along
  :math:`v` then climbs about as far along :math:`\nabla L` as SAM's.

  Args:
    direction: the ascent estimate :math:`\hat g` (float32, leaf shapes ``s_j``).
    prior: the prior :math:`p` the probe was taken along (shapes ``s_j``).
    active: ``None`` or float32 0/1 arrays of shapes ``s_j``.
    cap: :math:`c_{\max} \ge 1`, the largest factor.

  Returns:
    float32 scalar :math:`\min(\max(1/\hat c, 1), c_{\max})`; 1 when the
    masked prior is zero (the first step's random fallback).

  Examples:
    >>> import jax.numpy as jnp
    >>> from zosam_jax._src.prior import radius_scale
    >>> float(radius_scale(jnp.array([0.5, 0.0]), jnp.array([1.0, 1.0]), None, 4.0))
    4.0
    >>> float(radius_scale(jnp.array([1.0, 1.0]), jnp.array([2.0, 0.0]), None, 4.0))
    2.0

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021 (the radius
    along the gradient that SAM's first-order solution takes)
  """
  masked = jax.tree.map(lambda p: p.astype(jnp.float32), prior)
  if active is not None:
    masked = jax.tree.map(jnp.multiply, masked, active)
  norm2 = sum(jnp.sum(m * m) for m in jax.tree.leaves(masked))
  along = jnp.abs(sum(jnp.sum(d * m) for d, m in zip(jax.tree.leaves(direction),
                                                       jax.tree.leaves(masked))))
  inverse = jnp.where(along > 0, norm2 / jnp.where(along > 0, along, 1.0), jnp.inf)
  return jnp.where(norm2 > 0, jnp.clip(inverse, 1.0, cap), 1.0).astype(jnp.float32)
