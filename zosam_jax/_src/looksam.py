"""LookSAM: an exact SAM step every k steps, its reusable component in between.

Liu et al. split SAM's gradient :math:`g_s = \\nabla L(\\theta + \\epsilon)`
into its part along the plain gradient :math:`g = \\nabla L(\\theta)` and the
rest, :math:`g_v = g_s - \\frac{g_s^\\top g}{\\|g\\|^2} g`, which changes
slowly from step to step. Every ``every``-th step computes SAM exactly (two
backward passes) and stores :math:`g_v`; the steps in between take one
backward pass at :math:`\\theta` and add the stored component:

.. math::
  g_s \\approx g + \\alpha \\frac{\\|g\\|}{\\|g_v\\|} g_v

so a step costs :math:`1 + 1/k` backward passes on average.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import checks
from zosam_jax._src import estimators
from zosam_jax._src import masking
from zosam_jax._src import perturbation
from zosam_jax._src import sharding
from zosam_jax._src import sharpness


def orthogonal_component(g_s: base.Params, g: base.Params) -> base.Params:
  """:math:`g_s - (g_s^\\top g / \\|g\\|^2)\\, g` (``g_s`` itself when ``g = 0``).

  Args:
    g_s: the gradient at the perturbed point, float32 leaves of shapes ``s_j``.
    g: the gradient at the params, float32 leaves of shapes ``s_j``.

  Returns:
    float32 leaves of shapes ``s_j``, orthogonal to ``g``.
  """
  norm2 = sum(jnp.sum(x * x) for x in jax.tree.leaves(g))
  dot = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g)))
  coeff = jnp.where(norm2 > 0, dot / jnp.where(norm2 > 0, norm2, 1.0), 0.0)
  return jax.tree.map(lambda a, b: a - coeff * b, g_s, g)


def looksam(
    base_tx: optax.GradientTransformation,
    rho: Any = 0.05,
    mask_fn: Optional[base.MaskOrFn] = None,
    *,
    every: int = 5,
    alpha: Any = 0.7,
    has_aux: bool = False,
    aux_like: Any = None,
    axis_name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LookSAM: SAM every ``every`` steps, the reused component in between.

  Args:
    base_tx: the optimizer that receives the (approximate) SAM gradient.
    rho: the radius :math:`\rho` of the exact steps.
    mask_fn: which weights are active, as in :func:`zosam_jax.zo_sam`;
      :math:`g` and :math:`g_v` are masked with the current mask.
    every: :math:`k`, the exact step's period (the first step is exact; the
      authors' default 5). Static. ``update(..., exact=True/False)`` (a
      Python bool) picks the step at trace time instead of the count, as in
      :func:`zosam_jax.zo_sam`'s ``refresh_every`` (for XLA:CPU).
    alpha: :math:`\alpha`, the weight of the reused component (the authors'
      0.7). Can be scheduled with ``optax.inject_hyperparams``.
    has_aux: whether ``value_fn`` returns ``(loss, aux)``; the aux comes from
      the pass with the backward pass that reaches ``base_tx`` (at
      :math:`\theta + \epsilon` on exact steps, at :math:`\theta` otherwise).
    aux_like: the structure of the aux for the initial state, as in ``zo_sam``.
    axis_name: the data axis to average over inside ``shard_map``/``pmap``.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`, called as
    ``update(updates, state, params, value_fn=loss_fn)``; its state is a
    :class:`zosam_jax.ZOSAMState` with :math:`g_v` in ``prior`` and the step
    in ``count`` (``perturbed_loss`` equals ``loss`` on the steps in between).

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> loss_fn = lambda p: jnp.sum((p - 1.0) ** 2) + jnp.sum(p ** 4)
    >>> tx = zosam_jax.looksam(optax.sgd(0.1), rho=0.05, every=2)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   updates, state = tx.update(params, state, params, value_fn=loss_fn)
    ...   params = optax.apply_updates(params, updates)
    >>> int(state.count), round(float(state.perturbation_norm), 3)
    (3, 0.05)

  References:
    Liu et al., `Towards Efficient and Scalable Sharpness-Aware Minimization
    <https://arxiv.org/abs/2203.02714>`_, CVPR 2022
  """
  sharpness.check_common(has_aux, aux_like, base_tx, rho, mask_fn)
  checks.check_positive_int(every, "every", allow_none=False)
  checks.check_nonnegative(alpha, "alpha", strict=False)
  base_tx = optax.with_extra_args_support(base_tx)
  key = base.canonicalize_key(0)
  masks_in_base_state = isinstance(mask_fn, str)

  def init_fn(params):
    return sharpness.initial_state("looksam", base_tx, params, key, mask_fn,
                                    aux_like, "reuse", counted=True)

  def update_fn(updates, state, params=None, *, value_fn=None, exact=None, **extra_args):
    del updates
    sharpness.checked_ascent_loss("looksam", value_fn, None, params, has_aux, axis_name)
    mask = masking.resolve_mask(mask_fn, params, state.base_tx_state)
    value, grads = sharding.mean_value_and_grad(value_fn, params, axis_name, has_aux)
    g = _f32(masking.apply_mask(grads, mask))
    (value_s, g_s, g_v, norm), _ = sharpness.periodic(
        exact, state.count, every,
        lambda: _exact_step(value_fn, params, g, mask, rho, axis_name, has_aux),
        lambda: _reuse(value, grads, g, state.prior, mask, alpha))
    loss = value[0] if has_aux else value
    perturbed_loss, aux = value_s if has_aux else (value_s, None)
    checks.check_reduced("looksam", axis_name, loss=loss, perturbed_loss=perturbed_loss)
    new_updates, base_tx_state, _ = sharpness.base_step(
        base_tx, g_s, state.base_tx_state, params, mask, masks_in_base_state, extra_args)
    return new_updates, sharpness.ZOSAMState(
        key=state.key, base_tx_state=base_tx_state,
        loss=jnp.asarray(loss, jnp.float32),
        perturbed_loss=jnp.asarray(perturbed_loss, jnp.float32),
        ascent_norm=optax.tree.norm(g).astype(jnp.float32),
        perturbation_norm=norm.astype(jnp.float32), aux=aux,
        prior=jax.tree.map(lambda v, p: v.astype(p.dtype), g_v, state.prior),
        count=state.count + 1)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _f32(tree):
  """``tree`` in float32."""
  return jax.tree.map(lambda x: x.astype(jnp.float32), tree)


def _exact_step(value_fn, params, g, mask, rho, axis_name, has_aux):
  """SAM's gradient at θ + ρ g/‖g‖ and its new component g_v."""
  epsilon, norm = perturbation.perturbation(params, g, rho, False, 0.0)
  value, g_s = sharding.mean_value_and_grad(
      value_fn, estimators.perturb(params, epsilon, 1.0), axis_name, has_aux)
  g_v = orthogonal_component(_f32(masking.apply_mask(g_s, mask)), g)
  return value, g_s, g_v, norm


def _reuse(value, grads, g, g_v, mask, alpha):
  """g + α ‖g‖/‖g_v‖ g_v with the stored g_v, re-masked."""
  g_v = _f32(masking.apply_mask(g_v, mask))
  v_norm = optax.tree.norm(g_v)
  scale = jnp.where(v_norm > 0, alpha * optax.tree.norm(g) / jnp.where(
      v_norm > 0, v_norm, 1.0), 0.0)
  g_s = jax.tree.map(lambda d, v: (d + scale * v).astype(d.dtype), grads, g_v)
  return value, g_s, g_v, jnp.zeros((), jnp.float32)
