"""ZO-SAM and SAM as Optax gradient transformations.

Both compute an ascent direction, step to the worst-case point
:math:`\\theta + \\epsilon` with :math:`\\epsilon = \\rho\\, d / \\|d\\|_2`, take the
one real gradient there and hand it to a base optimizer. They differ only in
the ascent direction :math:`d`: a zeroth-order estimate from forward passes
(ZO-SAM) or the exact gradient at :math:`\\theta` (SAM, a second backward pass).
"""

from collections.abc import Callable
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
from zosam_jax._src import perturbation
from zosam_jax._src import prior as prior_lib
from zosam_jax._src import sharding

# Called with the loss on the current minibatch, the params, the mask (or None),
# a PRNG key, the prior (or None) and the loss's dtype; returns the ascent
# direction (float32, masked) and a float32 estimate of the loss at the params.
_AscentFn = Callable[
    [Callable[[Any], jax.Array], base.Params, Any, jax.Array, Any, Any],
    tuple[base.Params, jax.Array]]



class ZOSAMState(NamedTuple):
  """State of :func:`zo_sam`, :func:`sam`, :func:`msam` and :func:`looksam`.

  Attributes:
    key: the typed PRNG key of the next step's directions.
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
      the last step (zeros initially; the exact ascent gradient after a
      ``refresh_every`` step), in the params' dtypes and sharding; for
      :func:`looksam`, the reused component :math:`g_v`; ``None`` otherwise.
    count: int32, the number of steps taken, with ``refresh_every`` and for
      :func:`looksam` (which step is exact); ``None`` otherwise.
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
                  ) -> ZOSAMState:
  """The first state: zero losses and norms, the prior (zeros) and count if kept."""
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
  return ZOSAMState(
      key=key, base_tx_state=base_tx_state, loss=zero(), perturbed_loss=zero(),
      ascent_norm=zero(), perturbation_norm=zero(), aux=aux,
      prior=jax.tree.map(jnp.zeros_like, params) if prior in ("gradient", "reuse") else None,
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
) -> optax.GradientTransformationExtraArgs:
  """The step shared by ZO-SAM, SAM and MSAM, given how to get the ascent direction.

  With ``refresh_every=k`` every k-th step (the first included) takes SAM's
  exact ascent instead of ``ascent_fn`` and stores it as the next prior; with
  ``radius_cap`` the radius of the other steps is scaled by
  :func:`zosam_jax._src.prior.radius_scale`.
  """
  check_common(has_aux, aux_like, base_tx, rho, mask_fn)
  checks.check_adaptive(adaptive, adaptive_eta)
  key = base.canonicalize_key(key)
  base_tx = optax.with_extra_args_support(base_tx)
  masks_in_base_state = isinstance(mask_fn, str)

  def init_fn(params: base.Params) -> ZOSAMState:
    return initial_state(name, base_tx, params, key, mask_fn, aux_like, prior,
                         counted=refresh_every is not None)

  def ascent(loss_fn, params, mask, state, step_key, loss_dtype, exact):
    """(direction, loss at θ, radius, whether this step is an exact refresh)."""
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
    radius = rho
    if radius_cap is not None:
      active = masking.mask_as_floats(mask, params)
      scale = prior_lib.radius_scale(direction, guess, active, radius_cap)
      radius = rho * jnp.where(refresh, 1.0, scale)
    return direction, loss, radius, refresh

  def update_fn(
      updates: base.Updates,
      state: ZOSAMState,
      params: Optional[base.Params] = None,
      *,
      value_fn: Optional[base.ValueFn] = None,
      zo_value_fn: Optional[base.ValueFn] = None,
      exact: Optional[bool] = None,
      **extra_args: Any,
  ) -> tuple[base.Updates, ZOSAMState]:
    # The incoming updates are not used: the gradient is taken at θ + ε below.
    del updates
    if exact is not None and refresh_every is None:
      raise ValueError(f"{name}: `exact` chooses the exact step of `refresh_every`, "
                       "which is not set")
    ascent_loss, loss_dtype = checked_ascent_loss(name, value_fn, zo_value_fn, params,
                                                  has_aux, axis_name)
    mask = masking.resolve_mask(mask_fn, params, state.base_tx_state)
    next_key, step_key = jax.random.split(state.key)
    direction, loss, radius, refresh = ascent(ascent_loss, params, mask, state,
                                              step_key, loss_dtype, exact)
    epsilon, perturbation_norm = perturbation.perturbation(
        params, direction, radius, adaptive, adaptive_eta)
    value, grads = sharding.mean_value_and_grad(
        value_fn, estimators.perturb(params, epsilon, 1.0), axis_name, has_aux)
    perturbed_loss, aux = value if has_aux else (value, None)
    checks.check_reduced(name, axis_name, loss=loss, perturbed_loss=perturbed_loss)
    new_updates, base_tx_state, grads = base_step(
        base_tx, grads, state.base_tx_state, params, mask, masks_in_base_state, extra_args)
    # The next step's prior (re-masked with that step's mask when used): the
    # gradient at θ + ε, or the exact ascent of a refresh step.
    last = None if prior != "gradient" else jax.tree.map(
        lambda d, g: jnp.where(refresh, d.astype(g.dtype), g), direction, grads)
    return new_updates, ZOSAMState(
        key=next_key,
        base_tx_state=base_tx_state,
        loss=jnp.asarray(loss, jnp.float32),
        perturbed_loss=jnp.asarray(perturbed_loss, jnp.float32),
        ascent_norm=optax.tree.norm(direction).astype(jnp.float32),
        perturbation_norm=perturbation_norm.astype(jnp.float32),
        aux=aux,
        prior=last,
        count=None if state.count is None else state.count + 1)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
    adaptive: bool = False,
    adaptive_eta: Any = 0.01,
    chunk_size: Optional[int] = None,
    ravel: Optional[bool] = None,
    has_aux: bool = False,
    aux_like: Any = None,
    axis_name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Zero-Order Sharpness-Aware Minimization (ZO-SAM).

  Replaces SAM's first backward pass by a zeroth-order estimate from forward
  passes along ``num_dirs`` random directions restricted to the active weights,
  then takes the only backward pass at the perturbed point:

  .. math::
    \hat g = \frac{1}{m} \sum_{i=1}^m
      \frac{L(\theta + \delta u_i) - L(\theta - \delta u_i)}{2 \delta} u_i,
    \quad \epsilon = \rho \frac{\hat g}{\|\hat g\|_2}, \quad
    g = M \odot \nabla L(\theta + \epsilon), \quad
    u = M \odot \mathrm{base}(g)

  where :math:`M` is the mask of active weights and :math:`u_i` are zero where
  :math:`M` is.

  Args:
    base_tx: the optimizer that receives the gradient at the perturbed point,
      any optax transformation (e.g. ``optax.sgd(0.1, momentum=0.9)``,
      ``optax.adamw``, chains with clipping and schedules). A sparse-training
      transformation from :mod:`zosam_jax.sparse` is used with
      ``mask_fn="base_state"``.
    rho: the radius :math:`\rho` of the perturbation (SAM's usual CIFAR value
      0.05); ``rho=0`` gives ``base_tx`` on the true gradient. Can be scheduled
      with ``optax.inject_hyperparams``.
    num_dirs: the number of random directions :math:`m` (the paper uses 1);
      ``0`` is allowed with a ``prior`` (2 forward passes in all).
    mask_fn: which weights are active, in optax's ``MaskOrFn`` convention: a
      pytree of booleans with the params' structure (scalar leaves for whole
      tensors or arrays of the params' shapes), a callable ``params -> such a
      tree``, ``None`` (dense, the default), or ``"base_state"`` to read the
      current masks of a :mod:`zosam_jax.sparse` transformation in
      ``base_tx``'s state (that transformation then masks gradients and
      updates itself and sees the dense gradient at :math:`\theta+\epsilon`).
    key: the PRNG key (or int seed) of the directions; kept in the state and
      split at every step.
    smoothing: the finite-difference step :math:`\delta` (default 1e-3).
    estimator: ``"central"`` (2m forward passes, the paper's),
      ``"forward"`` (m + 1 forward passes) or ``"jvp"`` (exact directional
      derivatives with ``jax.jvp``, for bfloat16, where finite differences
      lose precision); ``None`` (default): ``"jvp"`` when a parameter or the
      loss is of a float type narrower than float32, else ``"central"``
      (:func:`zosam_jax._src.estimators.resolve_estimator`); or ``"random"``: a control, not an
      estimate (:math:`\epsilon` along a random direction without a sign,
      a random weight perturbation of radius :math:`\rho`).
    distribution: the directions' distribution, ``"gaussian"`` (the
      paper's), ``"rademacher"`` or ``"sphere"`` (uniform on the sphere of
      radius :math:`\sqrt{d}`); ``None`` (default): Rademacher on CPU, where
      it is measured several times cheaper to draw, Gaussian on GPU/TPU
      (:func:`zosam_jax._src.directions.resolve_distribution`).
    prior: ``None`` (default, the paper's random directions) or
      ``"gradient"``: spend two forward passes along the previous step's
      gradient at its perturbed point, re-masked with the current mask (a
      central difference, so sign and size come from the loss), plus
      ``num_dirs`` random directions for the rest of the space, weighted as a
      projection onto the probed directions (:mod:`zosam_jax._src.prior`).
      ``"momentum"``: the same along the base optimizer's momentum trace (read
      from its state with ``optax.tree.get(state, "trace")``, no extra memory;
      the central difference checks its sign, which MSAM's :math:`-v` lacks).
      The first step, or a zero prior, falls back to a random direction. The
      prior is kept in ``state.prior`` in the params' dtypes (a direction needs
      no more precision; memory of one parameter copy), averaged over
      ``axis_name``. Measured on a digits MLP, cos(ε, ∇L) rises from
      about 0.01 to about 0.3 (README, "Choosing the ascent direction").
    radius_cap: with ``prior="gradient"``, compensate the prior's cosine: the
      radius becomes :math:`\rho \min(\max(1/\hat c, 1), c_{\max})` with
      ``radius_cap`` :math:`= c_{\max} \ge 1` and :math:`\hat c` the
      cosine of the prior with the gradient, estimated from the probe's two
      losses (:func:`zosam_jax._src.prior.radius_scale`), so that
      :math:`\epsilon`'s component along :math:`\nabla L` is about SAM's
      :math:`\rho`. ``None`` (default): the radius is ``rho``. Can be
      scheduled with ``optax.inject_hyperparams``.
    refresh_every: with ``prior="gradient"``, every ``k``-th step (the first
      included) takes SAM's exact ascent (a second backward pass at
      :math:`\theta`) and stores that gradient as the next step's prior:
      :math:`1 + 1/k` backward passes per step on average. ``None``
      (default): never. Static (list it in ``static_args`` of
      ``optax.inject_hyperparams``); under ``jax.vmap`` over states the two
      branches are both computed (``jax.lax.cond`` becomes a select). An
      ``update(..., exact=True/False)`` (a Python bool) picks the branch at
      trace time instead of the count: XLA:CPU runs a convolution's gradient
      inside ``jax.lax.cond`` several times slower, so a CPU training loop
      compiles the two steps (``zosam-train`` does).
    adaptive: adaptive SAM (ASAM): :math:`\epsilon = \rho T^2 \hat g /
      \|T \hat g\|` with :math:`T = |\theta| + \eta` on active weights
      (:func:`adaptive_perturbation`); ASAM's usual radius is about ten times
      SAM's (e.g. ``rho=0.5``).
    adaptive_eta: :math:`\eta` of ``adaptive`` (default 0.01).
    chunk_size: evaluate at most this many perturbed forward passes at once in
      one ``jax.vmap``, to bound memory on large models; directions are
      regenerated from their keys rather than stored; ``1`` runs them one
      after the other, unbatched. ``None`` (default): all in one ``jax.vmap``
      on GPU/TPU, one after the other on CPU, where batching the weights of a
      convolution is several times slower (``benchmarks/README.md``).
    ravel: work on one raveled float32 vector of all parameters (fast for
      many small leaves) or, with ``False``, leaf by leaf (no concatenated
      copies); ``None`` (default): leaf by leaf on CPU, where it was measured
      as fast or faster, raveled on GPU/TPU, leaf by leaf under explicit
      sharding (:func:`zosam_jax._src.flat.prefers_ravel`). The vector is
      replicated: with sharded (FSDP) params use ``ravel=False``, which draws
      each device's block of the directions only (``ravel=True`` would gather
      every parameter, and raises under explicit sharding).
      ``zosam_jax.can_ravel(params)`` picks it; the two settings draw different
      directions from the same key.
    has_aux: whether ``value_fn`` returns ``(loss, aux)``; the aux at the
      perturbed point (e.g. logits and updated BatchNorm statistics) is then
      stored in the state's ``aux`` field (take it out with :func:`pop_aux`).
    aux_like: with ``has_aux=True``, a pytree of arrays or
      ``jax.ShapeDtypeStruct`` with the structure of the aux (e.g.
      ``jax.eval_shape(value_fn, params)[1]``); the initial state then holds
      zeros of that structure instead of ``None``, so the state's structure
      never changes. Needed by ``flax.nnx.Optimizer``, which cannot change the
      structure of its state; ``None`` (default) otherwise.
    axis_name: inside ``shard_map``/``pmap``, the name (or tuple of names) of
      the data axis over which loss values and the gradient are averaged with
      ``jax.lax.pmean``, so that every device takes the step of the global
      batch; directions are identical on every device (the key in the state is
      replicated). Inside ``shard_map`` a loss that still differs between
      devices raises a ``ValueError`` (not detectable under ``pmap`` or
      ``check_vma=False``). Not needed under ``jax.jit`` with shardings.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`. Its ``update`` is called
    as ``update(updates, state, params, value_fn=loss_fn, **extra_args)``;
    ``updates`` is only a placeholder (pass ``params``); an optional
    ``zo_value_fn`` (same signature as ``value_fn``, e.g. on part of the
    minibatch) is used for the forward passes only; other extra arguments are
    passed on to ``base_tx``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, zosam_jax
    >>> loss_fn = lambda p: jnp.sum((p['w'] - 1.0) ** 2)
    >>> params = {'w': jnp.zeros(3)}
    >>> tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, num_dirs=1)
    >>> state = tx.init(params)
    >>> @jax.jit
    ... def step(params, state):
    ...   updates, state = tx.update(params, state, params, value_fn=loss_fn)
    ...   return optax.apply_updates(params, updates), state
    >>> for _ in range(50):
    ...   params, state = step(params, state)
    >>> bool(loss_fn(params) < 1e-2)
    True

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026

    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021

    Cheng et al., `Improving Black-box Adversarial Attacks with a
    Transfer-based Prior <https://arxiv.org/abs/1906.06919>`_, NeurIPS 2019
    (``prior``)

    Kwon et al., `ASAM: Adaptive Sharpness-Aware Minimization for
    Scale-Invariant Learning of Deep Neural Networks
    <https://arxiv.org/abs/2102.11600>`_, ICML 2021 (``adaptive``)

  .. note::
    BatchNorm and other model state: with ``has_aux=True`` let ``value_fn``
    return ``(loss, (logits, new_batch_stats))``; after ``update`` read them
    with ``aux, state = zosam_jax.pop_aux(state)`` (they come from the forward
    pass at :math:`\theta + \epsilon`, the one with the backward pass) and the
    loss at :math:`\theta` from ``state.loss``: a training step then contains
    exactly one backward pass, and ``pop_aux`` keeps the state's structure
    fixed from step to step.

  .. note::
    bfloat16: a finite difference of a bfloat16 loss, or of a loss at
    parameters rounded to bfloat16 after the step :math:`\delta u`, is mostly
    rounding noise (measured: 39% of the estimates exactly 0 with
    :math:`\delta` = 1e-3). The default estimator is therefore ``"jvp"``
    (exact) when the params or the loss are in a narrower float type.

  .. note::
    ``zo_sam`` must be the outermost transformation: the ``updates`` it
    receives are a placeholder, so anything chained before it
    (``optax.chain(clip, zo_sam(...))``) or wrapping it
    (``optax.MultiSteps(zo_sam(...), k)``) acts on nothing. Put them inside:
    ``zo_sam(optax.chain(clip, sgd))``,
    ``zo_sam(optax.MultiSteps(base, k).gradient_transformation())``.

  .. note::
    With a plain ``mask_fn`` (not ``"base_state"``), pruned weights that are
    not zero stay frozen at their values and still take part in the forward
    pass; zero them first with ``zosam_jax.sparse.apply_masks(params, masks)``.
  """
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
  prior_lib.check_prior_options(prior, radius_cap, refresh_every)
  if ravel is not None and not isinstance(ravel, bool):
    raise TypeError(f"`ravel` must be a bool or None, got {ravel!r}")

  def estimate(f, p, a, k, last_grad, est):
    dist = directions.resolve_distribution(distribution)
    random_estimate = lambda f, p, a, k: estimators.zo_gradient(
        f, p, a, k, num_dirs=num_dirs, smoothing=smoothing,
        estimator=est, distribution=dist, chunk_size=chunk_size,
        axis_name=axis_name)
    if prior is None:
      return random_estimate(f, p, a, k)
    return prior_lib.prior_guided_gradient(
        f, p, a, last_grad, k, num_dirs=num_dirs, smoothing=smoothing,
        distribution=dist, random_estimate=random_estimate,
        axis_name=axis_name)

  def ascent_fn(loss_fn, params, mask, step_key, last_grad, loss_dtype):
    active = masking.mask_as_floats(mask, params)
    est = estimators.resolve_estimator(estimator, params, loss_dtype)
    if not (flat.prefers_ravel(params) if ravel is None else ravel):
      return estimate(loss_fn, params, active, step_key, last_grad, est)
    vector, unravel = flat.ravel(params)
    active_vector = None if active is None else flat.ravel(active)[0]
    prior_vector = None if last_grad is None else flat.ravel(last_grad)[0]
    g_hat, loss = estimate(lambda v: loss_fn(unravel(v)), vector,
                           active_vector, step_key, prior_vector, est)
    return unravel(g_hat, jnp.float32), loss

  return sharpness_aware("zo_sam", base_tx, rho, mask_fn, key, ascent_fn,
                          has_aux, aux_like, axis_name,
                          prior=prior, adaptive=adaptive,
                          adaptive_eta=adaptive_eta, radius_cap=radius_cap,
                          refresh_every=refresh_every)


def sam(
    base_tx: optax.GradientTransformation,
    rho: Any = 0.05,
    mask_fn: Optional[base.MaskOrFn] = None,
    *,
    adaptive: bool = False,
    adaptive_eta: Any = 0.01,
    has_aux: bool = False,
    aux_like: Any = None,
    axis_name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Sharpness-Aware Minimization with two backward passes (the reference).

  The same step and calling convention as :func:`zo_sam`, with the exact
  gradient at :math:`\theta` as ascent direction:

  .. math::
    g_0 = M \odot \nabla L(\theta), \quad
    \epsilon = \rho \frac{g_0}{\|g_0\|_2}, \quad
    u = M \odot \mathrm{base}(M \odot \nabla L(\theta + \epsilon))

  Args:
    base_tx: the optimizer that receives the gradient at the perturbed point.
    rho: the perturbation radius :math:`\rho`.
    mask_fn: which weights are active, as in :func:`zo_sam`.
    adaptive: adaptive SAM (ASAM), :math:`\epsilon = \rho T^2 g_0 /
      \|T g_0\|` with :math:`T = |\theta| + \eta`, as in :func:`zo_sam`.
    adaptive_eta: :math:`\eta` of ``adaptive`` (default 0.01).
    has_aux: whether ``value_fn`` returns ``(loss, aux)``, as in
      :func:`zo_sam`.
    aux_like: the structure of the aux for the initial state, as in
      :func:`zo_sam`.
    axis_name: the data axis to average over inside ``shard_map``/``pmap``,
      as in :func:`zo_sam`.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`, called as
    ``update(updates, state, params, value_fn=loss_fn)``.

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> loss_fn = lambda p: jnp.sum((p - 1.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> tx = zosam_jax.sam(optax.sgd(0.1), rho=0.05)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params, value_fn=loss_fn)
    >>> updates.shape
    (2,)

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021
  """

  def ascent_fn(loss_fn, params, mask, step_key, last_grad, loss_dtype):
    del step_key, last_grad, loss_dtype
    return exact_ascent(loss_fn, params, mask, axis_name)

  return sharpness_aware("sam", base_tx, rho, mask_fn, 0, ascent_fn, has_aux,
                          aux_like, axis_name, adaptive=adaptive,
                          adaptive_eta=adaptive_eta)


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

