"""The sharpness-aware step shared by every transformation of this library.

A step estimates an ascent direction :math:`d` (the ``ascent_fn`` of each
transformation), steps to :math:`\\theta + \\epsilon` with
:math:`\\epsilon = \\rho\\, d / \\|d\\|_2`, takes the one real gradient there and
hands it to a base optimizer; the state is one :class:`ZOSAMState`.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import checks
from zosam_jax._src import estimators
from zosam_jax._src import masking
from zosam_jax._src import perturbation
from zosam_jax._src import prior as prior_lib
from zosam_jax._src import schedule
from zosam_jax._src import sharding

# Called with the loss on the current minibatch, the params, the mask (or None),
# a PRNG key (None with ``draws=False``), the prior (or None) and the loss's
# dtype; returns the ascent direction (float32, masked) and a float32 estimate
# of the loss at the params.
_AscentFn = Callable[
    [Callable[[Any], jax.Array], base.Params, Any, jax.Array, Any, Any],
    tuple[base.Params, jax.Array]]
# Called with the params, the mask (or None) and the state's key at init;
# returns the first prior (float32, shaped like the params).
_FirstPrior = Callable[[base.Params, Any, jax.Array], base.Params]



class ZOSAMState(NamedTuple):
  """State of :func:`zo_sam`, :func:`sam`, :func:`msam` and :func:`looksam`.

  Attributes:
    key: the typed PRNG key of the next step's directions; kept unchanged by
      the steps that draw none (SAM, MSAM, LookSAM, the unprobed prior).
    base_tx_state: the state of the base optimizer.
    loss: float32, the minibatch loss at the params of the last step, as
      estimated for free by the ascent step (exact for SAM and the ``forward``
      and ``jvp`` estimators, :math:`O(\\delta^2)` for ``central``); with a
      ``zo_value_fn``, the loss of that function (e.g. of the sub-batch).
    perturbed_loss: float32, the minibatch loss at the perturbed point
      :math:`\\theta + \\epsilon` of the last step.
    ascent_norm: float32, :math:`\\|\\hat g\\|_2` (``\\|g\\|_2`` for SAM) of the
      last step.
    perturbation_norm: float32, :math:`\\|\\epsilon\\|_2` of the last step
      (``rho``, or 0 when the ascent direction vanished).
    aux: with ``has_aux=True``, the auxiliary output of ``value_fn`` at the
      perturbed point in the last step (``None`` in the initial state, or
      zeros shaped like ``aux_like``).
    prior: with ``prior="gradient"``, the gradient at the perturbed point of
      the last step (zeros initially, or for the unprobed prior the first
      step's random direction; the exact ascent gradient after a
      ``refresh_every`` step), in the params' dtypes and sharding; for
      :func:`looksam`, the reused component :math:`g_v`; ``None`` otherwise.
    count: int32, the number of steps taken, with ``refresh_every``, an
      ascent schedule (``ascent_start``/``ascent_every``) and for
      :func:`looksam` (which step is exact or on); ``None`` otherwise.
  """

  key: jax.Array
  base_tx_state: base.OptState
  loss: jax.Array
  perturbed_loss: jax.Array
  ascent_norm: jax.Array
  perturbation_norm: jax.Array
  aux: Any = None
  prior: Any = None
  count: Any = None


def exact_ascent(loss_fn: Callable[[Any], jax.Array], params: base.Params, mask: Any,
                 axis_name: Any) -> tuple[base.Params, jax.Array]:
  """SAM's ascent: the masked gradient at θ (a backward pass), float32, and the loss."""
  loss, grads = sharding.mean_value_and_grad(loss_fn, params, axis_name)
  grads = jax.tree.map(lambda g: g.astype(jnp.float32), masking.apply_mask(grads, mask))
  return grads, jnp.asarray(loss, jnp.float32)


def checked_ascent_loss(name: str, value_fn: Any, zo_value_fn: Any, params: Any,
                        has_aux: bool, axis_name: Any) -> tuple[Callable[[Any], Any], Any]:
  """The loss of the ascent (``zo_value_fn`` if given), checked; and its dtype."""
  if value_fn is None or params is None:
    raise ValueError(checks.MISSING_VALUE_FN.format(name=name))
  # One trace of each loss's shape: checked, then reused below.
  shape = checks.check_value_fn(name, "value_fn", value_fn, params, has_aux)
  if zo_value_fn is not None:
    shape = checks.check_value_fn(name, "zo_value_fn", zo_value_fn, params, has_aux)
  if sharding.manual_axes():
    # Inside shard_map, fail with a clear message before the estimator meets
    # per-device losses (only the shape of this forward pass is traced).
    checks.check_reduced(name, axis_name, loss=shape)
  fn = value_fn if zo_value_fn is None else zo_value_fn
  return ((lambda p: fn(p)[0]) if has_aux else fn), shape.dtype


def base_step(base_tx: optax.GradientTransformationExtraArgs, grads: base.Updates,
              base_state: base.OptState, params: base.Params, mask: Any,
              masks_in_base_state: bool, extra_args: dict[str, Any],
              ) -> tuple[base.Updates, base.OptState, base.Updates]:
  """``base_tx`` on ``grads``: the masked updates in the params' dtypes, its new
  state, and the gradient it saw (masked unless the masks live in its state)."""
  # A sparse-training base transformation masks gradients and updates itself
  # and reads the dense gradient (RigL's grow criterion).
  if not masks_in_base_state:
    grads = masking.apply_mask(grads, mask)
  updates, base_state = base_tx.update(grads, base_state, params, **extra_args)
  if not masks_in_base_state:
    updates = masking.apply_mask(updates, mask)
  updates = jax.tree.map(lambda u, p: u.astype(jnp.result_type(p)), updates, params)
  return updates, base_state, grads


def initial_state(name: str, base_tx: Any, params: base.Params, key: jax.Array,
                  mask_fn: Any, aux_like: Any, prior: Optional[str], counted: bool,
                  first_prior: Optional[_FirstPrior] = None) -> ZOSAMState:
  """The first state: zero losses and norms, the prior and count if kept.

  The prior is zeros, or ``first_prior(params, mask, key)`` in the params'
  dtypes where given (a direction the first step perturbs along).
  """
  if mask_fn is not None and not isinstance(mask_fn, str):
    mask_shape = jax.eval_shape(mask_fn, params) if callable(mask_fn) else mask_fn
    masking.check_mask_matches(mask_shape, params)
  # One array per field: a donated state must not hold a buffer twice.
  zero = lambda: jnp.zeros((), jnp.float32)
  base_tx_state = base_tx.init(params)
  if prior == "momentum" and optax.tree.get(base_tx_state, "trace") is None:
    what = "prior='momentum'" if name == "zo_sam" else "the perturbation along the momentum"
    raise ValueError(
        f"{name}: {what} reads the momentum trace of `base_tx`, which has none; use "
        "optax.sgd(..., momentum=0.9) (or optax.trace) inside"
        + (", or prior='gradient'" if name == "zo_sam" else ""))
  aux = None if aux_like is None else jax.tree.map(
      lambda x: jnp.zeros(jnp.shape(x), x.dtype), aux_like)
  kept = None
  if first_prior is not None:
    mask = masking.resolve_mask(mask_fn, params, base_tx_state)
    kept = jax.tree.map(lambda d, p: d.astype(p.dtype), first_prior(params, mask, key),
                        params)
  elif prior in ("gradient", "reuse"):
    kept = jax.tree.map(jnp.zeros_like, params)
  return ZOSAMState(
      key=key, base_tx_state=base_tx_state, loss=zero(), perturbed_loss=zero(),
      ascent_norm=zero(), perturbation_norm=zero(), aux=aux, prior=kept,
      count=jnp.zeros((), jnp.int32) if counted else None)


def periodic(exact: Optional[bool], count: jax.Array, every: int,
             exact_fn: Callable[[], Any], other_fn: Callable[[], Any]) -> tuple[Any, jax.Array]:
  """``exact_fn()`` on every ``every``-th step, else ``other_fn()``; and which ran.

  With ``exact=None`` the step is chosen from ``count`` by ``jax.lax.cond``;
  a Python bool chooses it at trace time instead (one compiled step per
  branch, for XLA:CPU, which runs a convolution's gradient inside a
  conditional several times slower: ``benchmarks/README.md``).
  """
  if exact is None:
    refresh = count % every == 0
    return jax.lax.cond(refresh, exact_fn, other_fn), refresh
  if not isinstance(exact, bool):
    raise TypeError(f"`exact` must be a Python bool or None (it is static), got {exact!r}")
  return (exact_fn() if exact else other_fn()), jnp.asarray(exact)


def check_common(has_aux: Any, aux_like: Any, base_tx: Any, rho: Any, mask_fn: Any) -> None:
  """The checks every sharpness-aware transformation makes at construction."""
  if not isinstance(has_aux, bool):
    raise TypeError(f"`has_aux` must be a bool, got {has_aux!r}")
  if aux_like is not None and not has_aux:
    raise ValueError("`aux_like` needs `has_aux=True`")
  checks.check_base_tx(base_tx)
  checks.check_nonnegative(rho, "rho", strict=False)
  masking.check_mask_fn(mask_fn)


def _ascent(ascent_fn, prior, refresh_every, radius_cap, rho, axis_name, loss_fn, params,
            mask, state, step_key, loss_dtype, exact):
  """One step's ascent: ``(direction, loss at θ, radius, whether this step is an
  exact refresh)``; the first six arguments are :func:`sharpness_aware`'s."""
  # The momentum trace is read where it is (no copy in the state).
  guess = (optax.tree.get(state.base_tx_state, "trace") if prior == "momentum"
           else state.prior)
  estimate = lambda: ascent_fn(loss_fn, params, mask, step_key, guess, loss_dtype)
  if refresh_every is None:
    (direction, loss), refresh = estimate(), jnp.zeros((), bool)
  else:
    (direction, loss), refresh = periodic(
        exact, state.count, refresh_every,
        lambda: exact_ascent(loss_fn, params, mask, axis_name),
        lambda: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), estimate()))
  if radius_cap is None:
    return direction, loss, rho, refresh
  active = masking.mask_as_floats(mask, params)
  scale = prior_lib.radius_scale(direction, guess, active, radius_cap)
  return direction, loss, rho * jnp.where(refresh, 1.0, scale), refresh


def sharpness_aware(
    name: str,
    base_tx: optax.GradientTransformation,
    rho: Any,
    mask_fn: Any,
    key: base.KeyLike,
    ascent_fn: _AscentFn,
    has_aux: bool,
    aux_like: Any,
    axis_name: Optional[str],
    prior: Optional[str] = None,
    adaptive: bool = False,
    adaptive_eta: Any = 0.01,
    radius_cap: Any = None,
    refresh_every: Optional[int] = None,
    draws: bool = True,
    first_prior: Optional[_FirstPrior] = None,
    ascent_start: Any = None,
    ascent_every: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """The step shared by ZO-SAM, SAM and MSAM, given how to get the ascent direction.

  With ``refresh_every=k`` every k-th step (the first included) takes SAM's
  exact ascent instead of ``ascent_fn`` and stores it as the next prior; with
  ``radius_cap`` the radius of the other steps is scaled by
  :func:`zosam_jax._src.prior.radius_scale`. With ``draws=False`` the
  ``ascent_fn`` draws nothing: it gets ``None`` for a key and the state's key
  stays (splitting it cost XLA:CPU's step of the small CNN about 10%,
  ``benchmarks/README.md``); ``first_prior`` is :func:`initial_state`'s. With
  ``ascent_start``/``ascent_every`` the steps off the schedule
  (:func:`zosam_jax._src.schedule.ascent_on`) are ``base_tx`` alone on the
  gradient at θ (:func:`_base_only`).
  """
  check_common(has_aux, aux_like, base_tx, rho, mask_fn)
  checks.check_adaptive(adaptive, adaptive_eta)
  schedule.check_schedule(ascent_start, ascent_every)
  scheduled = ascent_start is not None or ascent_every is not None
  key = base.canonicalize_key(key)
  opts = _StepOptions(
      name, optax.with_extra_args_support(base_tx), has_aux, axis_name, prior,
      refresh_every, adaptive, adaptive_eta, draws, isinstance(mask_fn, str),
      functools.partial(_ascent, ascent_fn, prior, refresh_every, radius_cap, rho, axis_name))

  def init_fn(params: base.Params) -> ZOSAMState:
    return initial_state(name, opts.base_tx, params, key, mask_fn, aux_like, prior,
                         counted=refresh_every is not None or scheduled,
                         first_prior=first_prior)

  def update_fn(
      updates: base.Updates,
      state: ZOSAMState,
      params: Optional[base.Params] = None,
      *,
      value_fn: Optional[base.ValueFn] = None,
      zo_value_fn: Optional[base.ValueFn] = None,
      exact: Optional[bool] = None,
      ascent: Optional[bool] = None,
      **extra_args: Any,
  ) -> tuple[base.Updates, ZOSAMState]:
    # The incoming updates are not used: the gradient is taken at θ + ε below.
    del updates
    checks.check_exact(name, exact, refresh_every)
    schedule.check_flag(name, ascent, scheduled)
    ascent_loss, loss_dtype = checked_ascent_loss(name, value_fn, zo_value_fn, params,
                                                  has_aux, axis_name)
    mask = masking.resolve_mask(mask_fn, params, state.base_tx_state)
    on = lambda: _sharpness_aware_step(opts, state, params, value_fn, ascent_loss,
                                       loss_dtype, mask, exact, extra_args)
    off = lambda: _base_only_step(opts, state, params, value_fn, mask, extra_args)
    if not scheduled or ascent is True:
      return on()
    if ascent is False:
      return off()
    return jax.lax.cond(
        schedule.ascent_on(state.count, start=ascent_start, every=ascent_every), on, off)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class _StepOptions(NamedTuple):
  """What :func:`sharpness_aware` fixes at construction, for its two steps."""
  name: str
  base_tx: optax.GradientTransformationExtraArgs
  has_aux: bool
  axis_name: Optional[str]
  prior: Optional[str]
  refresh_every: Optional[int]
  adaptive: bool
  adaptive_eta: Any
  draws: bool
  masks_in_base_state: bool
  ascent: Callable[..., Any]  # :func:`_ascent` with the first six arguments bound.


def _sharpness_aware_step(opts: _StepOptions, state: ZOSAMState, params, value_fn,
                          ascent_loss, loss_dtype, mask, exact, extra_args
                          ) -> tuple[base.Updates, ZOSAMState]:
  """A step on the ascent schedule: the ascent, ε, the gradient at θ + ε, the
  base optimizer on it."""
  next_key, step_key = jax.random.split(state.key) if opts.draws else (state.key, None)
  direction, loss, radius, refresh = opts.ascent(ascent_loss, params, mask, state,
                                                 step_key, loss_dtype, exact)
  epsilon, perturbation_norm = perturbation.perturbation(
      params, direction, radius, opts.adaptive, opts.adaptive_eta)
  value, grads = sharding.mean_value_and_grad(
      value_fn, estimators.perturb(params, epsilon, 1.0), opts.axis_name, opts.has_aux)
  perturbed_loss, aux = value if opts.has_aux else (value, None)
  checks.check_reduced(opts.name, opts.axis_name, loss=loss, perturbed_loss=perturbed_loss)
  new_updates, base_tx_state, grads = base_step(
      opts.base_tx, grads, state.base_tx_state, params, mask, opts.masks_in_base_state,
      extra_args)
  return new_updates, ZOSAMState(
      key=next_key,
      base_tx_state=base_tx_state,
      loss=jnp.asarray(loss, jnp.float32),
      perturbed_loss=jnp.asarray(perturbed_loss, jnp.float32),
      ascent_norm=optax.tree.norm(direction).astype(jnp.float32),
      perturbation_norm=perturbation_norm.astype(jnp.float32),
      aux=aux,
      prior=_next_prior(opts.prior, opts.refresh_every, refresh, direction, grads),
      count=None if state.count is None else state.count + 1)


def _base_only_step(opts: _StepOptions, state: ZOSAMState, params, value_fn, mask,
                    extra_args) -> tuple[base.Updates, ZOSAMState]:
  """A step off the ascent schedule: the base optimizer on the gradient at θ
  (one backward pass), the key kept, ε = 0 (``perturbed_loss`` is the loss at
  θ); the prior, where kept, becomes that gradient."""
  value, grads = sharding.mean_value_and_grad(value_fn, params, opts.axis_name,
                                              opts.has_aux)
  loss, aux = value if opts.has_aux else (value, None)
  checks.check_reduced(opts.name, opts.axis_name, loss=loss)
  new_updates, base_tx_state, grads = base_step(
      opts.base_tx, grads, state.base_tx_state, params, mask, opts.masks_in_base_state,
      extra_args)
  loss = jnp.asarray(loss, jnp.float32)
  zero = jnp.zeros((), jnp.float32)
  return new_updates, ZOSAMState(
      key=state.key, base_tx_state=base_tx_state, loss=loss, perturbed_loss=loss,
      ascent_norm=zero, perturbation_norm=zero, aux=aux,
      prior=grads if opts.prior == "gradient" else None, count=state.count + 1)


def _next_prior(prior: Optional[str], refresh_every: Optional[int], refresh: jax.Array,
                direction: base.Updates, grads: base.Updates) -> Any:
  """The next step's prior (re-masked with that step's mask when used): the
  gradient at θ + ε, or the exact ascent of a refresh step; ``None`` without
  ``prior="gradient"``."""
  if prior != "gradient":
    return None
  if refresh_every is None:
    return grads
  return jax.tree.map(lambda d, g: jnp.where(refresh, d.astype(g.dtype), g),
                      direction, grads)


def pop_aux(state: base.OptState) -> tuple[Any, base.OptState]:
  """Takes the ``aux`` of the last step out of a (possibly nested) ZO-SAM state.

  Reading the aux and resetting it to ``None`` keeps the optimizer state's
  structure identical from step to step (no recompilation, small checkpoints).

  Args:
    state: the state of :func:`zo_sam` or :func:`sam`, or a state holding one
      (``optax.inject_hyperparams``, ``optax.chain``, ...).

  Returns:
    ``(aux, state)``: the aux returned by ``value_fn`` at the perturbed point
    in the last step, and the state with ``aux=None``.

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> tx = zosam_jax.zo_sam(optax.sgd(0.1), has_aux=True)
    >>> params = jnp.ones(2)
    >>> value_fn = lambda p: (jnp.sum(p ** 2), {'logits': p})
    >>> _, state = tx.update(params, tx.init(params), params, value_fn=value_fn)
    >>> aux, state = zosam_jax.pop_aux(state)
    >>> sorted(aux), state.aux
    (['logits'], None)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  inner = optax.tree.get(state, "ZOSAMState")
  if inner is None:
    raise ValueError("`state` holds no ZOSAMState (from zo_sam or sam)")
  return inner.aux, optax.tree.set(state, ZOSAMState=inner._replace(aux=None))
