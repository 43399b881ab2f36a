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
import numpy as np
import optax

from zosam_jax._src import base
from zosam_jax._src import directions
from zosam_jax._src import estimators
from zosam_jax._src import sharding

PRIORS: tuple[Optional[str], ...] = (None, "gradient", "momentum")

# (loss_fn, params, active, key) -> (g_hat, loss): the random-direction part.
_RandomEstimate = Callable[[Callable[[Any], jax.Array], Any, Any, jax.Array],
                           tuple[Any, jax.Array]]


def _masked_f32(tree: Any, active: Optional[base.Params]) -> Any:
  """``tree`` in float32, zero where ``active`` is 0 (``None``: all active)."""
  tree = jax.tree.map(lambda x: x.astype(jnp.float32), tree)
  return tree if active is None else jax.tree.map(jnp.multiply, tree, active)


def _num_active(params: base.Params, active: Optional[base.Params]) -> jax.Array:
  """The number ``d`` of active coordinates, float32."""
  if active is None:
    size = sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params))
    return jnp.asarray(size, jnp.float32)
  return jnp.asarray(sum(jnp.sum(a, dtype=jnp.float32) for a in jax.tree.leaves(active)))


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
  masked = _masked_f32(prior, active)
  norm = optax.tree.norm(masked)
  v = jax.lax.cond(
      norm > 0, lambda: masked,
      lambda: directions.sample_direction(key, params, active, distribution))
  return unit_direction(v, None)


def unit_direction(tree: Any, active: Optional[base.Params]) -> Any:
  """``tree`` (leaf shapes ``s_j``) in float32, zero where ``active`` (``None``
  or 0/1 arrays of shapes ``s_j``) is 0, scaled to norm 1; all zero when the
  masked ``tree`` is (no random fallback: a key split or a conditional cost
  XLA:CPU's step about 10%, ``benchmarks/README.md``)."""
  masked = _masked_f32(tree, active)
  norm = optax.tree.norm(masked)
  return jax.tree.map(lambda x: x / jnp.where(norm > 0, norm, 1.0), masked)


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
  if random_estimate is None:
    raise ValueError("`random_estimate` is needed with `num_dirs` > 0 (e.g. "
                     "zosam_jax.zo_gradient with its keyword arguments bound)")
  g_rand, loss_rand = random_estimate(loss_fn, params, active, random_key)
  # The random part's component orthogonal to the unit vector v.
  # (elementwise products: a dot product of sharded vectors needs an out_sharding).
  along = sum(jnp.sum(r * x) for r, x in zip(jax.tree.leaves(g_rand),
                                               jax.tree.leaves(v)))
  weight = num_dirs / jnp.maximum(_num_active(params, active), 1.0)
  g_hat = jax.tree.map(lambda g, r, x: g + weight * (r - along * x), g_hat, g_rand, v)
  return g_hat, (loss + num_dirs * loss_rand) / (1 + num_dirs)


def prior_with_exact_leaves(
    loss_fn: Callable[[Any], jax.Array],
    params: base.Params,
    active: Optional[base.Params],
    prior: base.Params,
    exact: Any,
    axis_name: Any = None,
) -> tuple[base.Params, jax.Array]:
  """The last gradient on most leaves, this minibatch's gradient on a few.

  The unprobed prior (``probe=False``) takes ε along the gradient of the last
  step, on another minibatch; SAM's ascent sees the current one. For the
  leaves chosen by ``exact`` (e.g. the output layer) the gradient of the
  current minibatch is cheap: its backward pass stops at them, so the step
  costs one forward pass and a backward pass through those leaves only. Both
  parts keep their own scale (they are gradients of the same loss), so
  :math:`\\epsilon = \\rho d / \\|d\\|` splits its radius between them as SAM's
  would.

  Args:
    loss_fn: ``params -> scalar`` loss on the current minibatch.
    params: a pytree of arrays with leaf shapes ``s_j``.
    active: ``None`` or float32 0/1 arrays of shapes ``s_j``.
    prior: a pytree like ``params``: the last gradient.
    exact: a pytree of Python bools with the structure of ``params``: ``True``
      for the leaves whose direction is the current gradient.
    axis_name: if given, the loss and gradient are averaged over this axis.

  Returns:
    ``(d, loss)``: float32 arrays of shapes ``s_j``, :math:`M \\odot \\nabla L`
    on the ``exact`` leaves and :math:`M \\odot p` on the others; and the
    (exact) float32 loss at ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from zosam_jax import prior_with_exact_leaves
    >>> loss_fn = lambda p: jnp.sum(p["body"] ** 2) + 3.0 * jnp.sum(p["head"])
    >>> params = {"body": jnp.ones(2), "head": jnp.ones(2)}
    >>> prior = {"body": jnp.array([1.0, -1.0]), "head": jnp.zeros(2)}
    >>> d, loss = prior_with_exact_leaves(loss_fn, params, None, prior,
    ...                                   {"body": False, "head": True})
    >>> d["body"].tolist(), d["head"].tolist(), float(loss)
    ([1.0, -1.0], [3.0, 3.0], 8.0)

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021

    Baek et al., `Why is SAM Robust to Label Noise?
    <https://arxiv.org/abs/2405.03676>`_, ICLR 2024 (the last layer's share
    of SAM's effect)
  """
  leaves, treedef = jax.tree.flatten(params)
  flags = treedef.flatten_up_to(exact)  # type: ignore[attr-defined]
  f32_loss = lambda chosen: jnp.asarray(
      loss_fn(_replace_leaves(treedef, leaves, flags, chosen)), jnp.float32)
  loss, grads = sharding.mean_value_and_grad(
      f32_loss, [x for x, f in zip(leaves, flags) if f], axis_name)
  direction = _masked_f32(
      _replace_leaves(treedef, treedef.flatten_up_to(prior), flags, grads), active)  # type: ignore[attr-defined]
  return direction, loss


def output_layer(params: base.Params) -> Any:
  """The ``exact_leaves`` of a classifier's output layer: the leaves of the
  module holding the last leaf of two or more dimensions.

  Leaves are visited in ``jax.tree.leaves`` order (dict keys sorted), as
  :func:`zosam_jax.sparse.prunable` finds the last layer: flax's ``Dense_0,
  Dense_1, Dense_2`` sort in network order (not past ``Dense_9``).

  Args:
    params: the parameters (arrays or ``jax.ShapeDtypeStruct``).

  Returns:
    A pytree of Python bools with the structure of ``params``.

  Raises:
    ValueError: if no leaf has two or more dimensions.

  Examples:
    >>> import jax.numpy as jnp
    >>> from zosam_jax import output_layer
    >>> params = {"Dense_0": {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)},
    ...           "Dense_1": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}}
    >>> output_layer(params)["Dense_1"], output_layer(params)["Dense_0"]
    ({'bias': True, 'kernel': True}, {'bias': False, 'kernel': False})

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020 (the first and last layer
    found the same way)
  """
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  layers = [path[:-1] for path, x in paths_leaves if len(jnp.shape(x)) >= 2]
  if not layers:
    raise ValueError("output_layer: no params leaf has two or more dimensions (a "
                     "layer's kernel); pass `exact_leaves` as a pytree of bools instead")
  return jax.tree.unflatten(treedef, [path[:-1] == layers[-1] for path, _ in paths_leaves])


def _replace_leaves(treedef, leaves: list, flags: list, chosen: list) -> Any:
  """The tree of ``leaves`` with those where ``flags`` is true replaced, in order,
  by ``chosen``."""
  it = iter(chosen)
  return jax.tree.unflatten(treedef, [next(it) if f else x for x, f in zip(leaves, flags)])


def check_prior_options(prior: Optional[str], radius_cap: Any, refresh_every: Any,
                        probe: Any = True, num_dirs: Any = 0, exact_leaves: Any = None) -> None:
  """``radius_cap``, ``refresh_every``, ``probe=False`` and ``exact_leaves`` are
  options of ``prior="gradient"`` (``probe=False`` with ``num_dirs=0`` and no
  ``radius_cap``; ``exact_leaves`` with ``probe=False``)."""
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
      isinstance(radius_cap, numbers.Real) and not 1 <= float(radius_cap) < math.inf):
    raise ValueError(f"`radius_cap` must be a finite number >= 1 (the largest radius "
                     f"as a multiple of rho) or None, got {radius_cap!r}")
  _check_probe(probe, prior, num_dirs, radius_cap)
  _check_exact_leaves(exact_leaves, probe)


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


def _check_exact_leaves(exact_leaves: Any, probe: bool) -> None:
  """``exact_leaves``: ``None``, a callable, or a pytree of Python bools (whole
  leaves are chosen at trace time); only with the unprobed prior."""
  if exact_leaves is None:
    return
  if probe:
    raise ValueError("`exact_leaves` takes the current gradient of some leaves and the "
                     "last gradient elsewhere, without the probe: add probe=False (with "
                     "prior='gradient', num_dirs=0) or drop `exact_leaves`")
  if not callable(exact_leaves):
    resolve_exact_leaves(exact_leaves, None)


def resolve_exact_leaves(exact_leaves: Any, params: Optional[base.Params]) -> Any:
  """The pytree of Python bools of ``exact_leaves`` for ``params`` (a callable is
  called on them), checked against them when given.

  Raises:
    TypeError: if a leaf is not a Python bool (an array cannot choose leaves).
    ValueError: if the tree does not match ``params`` or chooses no leaf.
  """
  exact = exact_leaves(params) if callable(exact_leaves) else exact_leaves
  flags = jax.tree.leaves(exact)
  if not all(isinstance(f, (bool, np.bool_)) for f in flags):
    kinds = sorted({type(f).__name__ for f in flags if not isinstance(f, (bool, np.bool_))})
    raise TypeError(f"`exact_leaves` must be a pytree of Python bools, one per params "
                    f"leaf (it chooses whole leaves), got leaves of type {', '.join(kinds)}")
  if not any(flags):
    raise ValueError("`exact_leaves` chooses no leaf: mark the leaves of the current "
                     "gradient (e.g. the output layer) True, or drop it")
  if params is not None and jax.tree.structure(exact) != jax.tree.structure(params):  # type: ignore[operator]
    raise ValueError(f"`exact_leaves` must have the tree structure of the params; got "
                     f"{jax.tree.structure(exact)}, expected {jax.tree.structure(params)}")
  return exact


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
  masked = _masked_f32(prior, active)
  norm2 = sum(jnp.sum(m * m) for m in jax.tree.leaves(masked))
  along = jnp.abs(sum(jnp.sum(d * m) for d, m in zip(jax.tree.leaves(direction),
                                                       jax.tree.leaves(masked))))
  inverse = jnp.where(along > 0, norm2 / jnp.where(along > 0, along, 1.0), jnp.inf)
  return jnp.where(norm2 > 0, jnp.clip(inverse, 1.0, cap), 1.0).astype(jnp.float32)
