"""ZO-SAM as an Optax gradient transformation: the zeroth-order ascent.

The step of :mod:`zosam_jax._src.sharpness` with the ascent direction
estimated from forward passes along random directions or a prior
(:mod:`zosam_jax._src.estimators`, :mod:`zosam_jax._src.prior`), restricted to
the active weights.
"""

import numbers
from typing import Any, Optional

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
