"""ZO-SAM as an Optax gradient transformation: the zeroth-order ascent.

The step of :mod:`zosam_jax._src.sharpness` with the ascent direction
estimated from forward passes along random directions or a prior
(:mod:`zosam_jax._src.estimators`, :mod:`zosam_jax._src.prior`), restricted to
the active weights.
"""

import numbers
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import checks
from zosam_jax._src import directions
from zosam_jax._src import estimators
from zosam_jax._src import flat
from zosam_jax._src import masking
from zosam_jax._src import prior as prior_lib
from zosam_jax._src.sharpness import sharpness_aware


def zo_sam(
    base_tx: optax.GradientTransformation,
    rho: Any = 0.05,
    num_dirs: int = 1,
    mask_fn: Optional[base.MaskOrFn] = None,
    *,
    key: base.KeyLike = 0,
    smoothing: Any = 1e-3,
    estimator: Optional[base.Estimator] = None,
    distribution: Optional[base.Distribution] = None,
    prior: Optional[str] = None,
    radius_cap: Any = None,
    refresh_every: Optional[int] = None,
    probe: bool = True,
    exact_leaves: Optional[base.MaskOrFn] = None,
    adaptive: bool = False,
    adaptive_eta: Any = 0.01,
    chunk_size: Optional[int] = None,
    ravel: Optional[bool] = None,
    has_aux: bool = False,
    aux_like: Any = None,
    axis_name: Optional[str] = None,
    ascent_start: Optional[int] = None,
    ascent_every: Optional[int] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Zero-Order Sharpness-Aware Minimization (ZO-SAM).

  SAM's first backward pass replaced by forward passes along ``num_dirs``
  random directions :math:`u_i` on the active weights :math:`M`:
  :math:`\hat g = \frac{1}{m}\sum_i \frac{L(\theta+\delta u_i) -
  L(\theta-\delta u_i)}{2\delta} u_i`, :math:`\epsilon = \rho \hat g /
  \|\hat g\|`, update :math:`M \odot \mathrm{base}(M \odot \nabla
  L(\theta+\epsilon))`. Every option is described at length in
  ``docs/zo_sam.md``; ``docs/choosing.md`` says which to use.

  Args:
    base_tx: the optax transformation given the gradient at θ+ε.
    rho: the radius ρ (``0``: ``base_tx`` on the true gradient); schedulable.
    num_dirs: the number m of random directions; ``0`` only with a ``prior``.
    mask_fn: the active weights, optax's ``MaskOrFn``, ``None`` (dense) or
      ``"base_state"`` (the masks of a :mod:`zosam_jax.sparse` ``base_tx``).
    key: the directions' PRNG key or int seed, kept in the state.
    smoothing: the finite-difference step δ.
    estimator: ``"central"`` (2m forward passes), ``"forward"`` (m + 1),
      ``"jvp"``, ``"random"`` (a control); ``None``: by dtype.
    distribution: ``"gaussian"``, ``"rademacher"``, ``"sphere"``; ``None``: by backend.
    prior: ``"gradient"``/``"momentum"``: two forward passes along the last gradient/trace.
    radius_cap: with ``prior="gradient"``, the cap :math:`c_{\max} \ge 1` of
      the radius compensating the prior's cosine; ``None``: the radius is ρ.
    refresh_every: with ``prior="gradient"``, an exact ascent every k-th step.
    probe: with ``prior="gradient"``, ``num_dirs=0``: ``False`` skips the prior's
      two forward passes (ε along the masked last gradient, SGD's cost;
      ``state.loss`` NaN); not with ``radius_cap``. Static.
    exact_leaves: with ``probe=False``, bools per leaf (or ``params ->`` them, e.g.
      :func:`output_layer`): ε along the current gradient there (one forward pass).
    adaptive: adaptive SAM (ASAM) ε; ``adaptive_eta`` its η.
    chunk_size: at most this many perturbed forward passes at once.
    ravel: one raveled float32 vector or leaf by leaf; ``None``: by backend, sharding.
    has_aux: ``value_fn`` returns ``(loss, aux)``, the aux at θ+ε in ``state.aux``;
      ``aux_like``: its structure, for a state of fixed structure.
    axis_name: the data axis (``shard_map``/``pmap``) averaged over.
    ascent_start: the first step that takes the sharpness-aware step, ``base_tx``
      alone on the gradient at θ before it; ``ascent_every``: every k-th step
      from there. ``update(..., ascent=bool)`` picks the step statically.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`, the outermost
    transformation, called ``update(params, state, params, value_fn=loss_fn)``
    (optionally ``zo_value_fn=`` for the forward passes only).

  Examples:
    >>> import jax, jax.numpy as jnp, optax, zosam_jax
    >>> loss_fn = lambda p: jnp.sum((p['w'] - 1.0) ** 2)
    >>> params = {'w': jnp.zeros(3)}
    >>> tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, num_dirs=1)
    >>> state = tx.init(params)
    >>> for _ in range(50):
    ...   updates, state = tx.update(params, state, params, value_fn=loss_fn)
    ...   params = optax.apply_updates(params, updates)
    >>> bool(loss_fn(params) < 1e-2)
    True

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026

    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021
    (``prior``: Cheng et al. 2019; ``adaptive``: Kwon et al. 2021; see docs/)
  """
  _check_options(prior, num_dirs, smoothing, estimator, distribution, chunk_size,
                 radius_cap, refresh_every, probe, exact_leaves, ravel)
  ascent_fn = _ascent_fn(_AscentOptions(
      num_dirs, smoothing, estimator, distribution, prior, probe, exact_leaves,
      chunk_size, ravel, axis_name))
  return sharpness_aware("zo_sam", base_tx, rho, mask_fn, key, ascent_fn, has_aux, aux_like,
                          axis_name, prior=prior, adaptive=adaptive, adaptive_eta=adaptive_eta,
                          radius_cap=radius_cap, refresh_every=refresh_every, draws=probe,
                          first_prior=_first_direction(probe, exact_leaves, distribution, ravel),
                          ascent_start=ascent_start, ascent_every=ascent_every)


class _AscentOptions(NamedTuple):
  """The options of :func:`zo_sam` that shape its ascent direction."""
  num_dirs: int
  smoothing: Any
  estimator: Optional[base.Estimator]
  distribution: Optional[base.Distribution]
  prior: Optional[str]
  probe: bool
  exact_leaves: Optional[base.MaskOrFn]
  chunk_size: Optional[int]
  ravel: Optional[bool]
  axis_name: Optional[str]


def _check_options(prior, num_dirs, smoothing, estimator, distribution,
                   chunk_size, radius_cap, refresh_every, probe, exact_leaves,
                   ravel) -> None:
  """Raises a ``ValueError``/``TypeError`` naming the first bad argument."""
  checks.check_choice(prior, "prior", prior_lib.PRIORS)
  if not (prior is not None and isinstance(num_dirs, numbers.Integral)
          and not isinstance(num_dirs, bool) and num_dirs == 0):
    checks.check_positive_int(num_dirs, "num_dirs", allow_none=False)
  checks.check_nonnegative(smoothing, "smoothing", strict=True)
  if estimator is not None:
    checks.check_choice(estimator, "estimator", base.ESTIMATORS)
  if distribution is not None:
    checks.check_choice(distribution, "distribution", base.DISTRIBUTIONS)
  checks.check_positive_int(chunk_size, "chunk_size", allow_none=True)
  prior_lib.check_prior_options(prior, radius_cap, refresh_every, probe, num_dirs,
                                exact_leaves)
  if ravel is not None and not isinstance(ravel, bool):
    raise TypeError(f"`ravel` must be a bool or None, got {ravel!r}")


def _estimate(opts: _AscentOptions, f, p, a, k, last_grad, est):
  """ĝ and L(θ) from random directions, or from the prior and them."""
  dist = directions.resolve_distribution(opts.distribution)
  random_estimate = lambda f, p, a, k: estimators.zo_gradient(
      f, p, a, k, num_dirs=opts.num_dirs, smoothing=opts.smoothing,
      estimator=est, distribution=dist, chunk_size=opts.chunk_size,
      axis_name=opts.axis_name)
  if opts.prior is None:
    return random_estimate(f, p, a, k)
  return prior_lib.prior_guided_gradient(
      f, p, a, last_grad, k, num_dirs=opts.num_dirs, smoothing=opts.smoothing,
      distribution=dist, random_estimate=random_estimate,
      axis_name=opts.axis_name)


def _ascent_fn(opts: _AscentOptions):
  """The ``ascent_fn`` of :func:`sharpness_aware`: leaf by leaf or raveled."""

  def ascent_fn(loss_fn, params, mask, step_key, last_grad, loss_dtype):
    active = masking.mask_as_floats(mask, params)
    if opts.exact_leaves is not None:  # No perturbed forward pass: leaf by leaf.
      return prior_lib.prior_with_exact_leaves(
          loss_fn, params, active, last_grad,
          prior_lib.resolve_exact_leaves(opts.exact_leaves, params), opts.axis_name)
    if not opts.probe:  # ε along the last gradient (or the first direction).
      return (prior_lib.unit_direction(last_grad, active),
              jnp.full((), jnp.nan, jnp.float32))
    est = estimators.resolve_estimator(opts.estimator, params, loss_dtype)
    ravel = opts.ravel
    if not (flat.prefers_ravel(params) if ravel is None else ravel):
      return _estimate(opts, loss_fn, params, active, step_key, last_grad, est)
    vector, unravel = flat.ravel(params)
    active_vector = None if active is None else flat.ravel(active)[0]
    prior_vector = None if last_grad is None else flat.ravel(last_grad)[0]
    g_hat, loss = _estimate(opts, lambda v: loss_fn(unravel(v)), vector,
                            active_vector, step_key, prior_vector, est)
    return unravel(g_hat, jnp.float32), loss

  return ascent_fn


def _first_direction(probe: bool, exact_leaves: Any,
                     distribution: Optional[base.Distribution], ravel: Optional[bool]):
  """The unprobed prior's first direction (there is no last gradient yet).

  A random direction drawn at init from the state's key (the first step's
  key had it split: the direction earlier versions drew in that step), so
  the steps draw nothing.

  Returns:
    ``(params, mask, key) -> direction``: float32 arrays shaped like the
    params, zero where the mask is ``False``; ``None`` with the probe or with
    ``exact_leaves`` (their first step needs none).
  """
  if probe or exact_leaves is not None:
    return None

  def first_direction(params, mask, key):
    dist = directions.resolve_distribution(distribution)
    active = masking.mask_as_floats(mask, params)
    step_key = jax.random.split(key)[1]  # The first step's key, had it split.
    if not (flat.prefers_ravel(params) if ravel is None else ravel):
      return directions.sample_direction(step_key, params, active, dist)
    vector, unravel = flat.ravel(params)
    active_vector = None if active is None else flat.ravel(active)[0]
    return unravel(directions.sample_direction(step_key, vector, active_vector, dist),
                   jnp.float32)

  return first_direction
