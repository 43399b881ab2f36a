"""SAM with two backward passes: the exact ascent, the reference ZO-SAM is measured against."""

from typing import Any, Optional

import optax

from zosam_jax._src import base
from zosam_jax._src.sharpness import exact_ascent
from zosam_jax._src.sharpness import sharpness_aware


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
    ascent_start: Optional[int] = None,
    ascent_every: Optional[int] = None,
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
    ascent_start: the first step that takes the sharpness-aware step; the
      steps before it are ``base_tx`` alone on the gradient at θ (one backward
      pass: SAM in the late phase only). ``None``: from the first step.
    ascent_every: the sharpness-aware step on every k-th step from
      ``ascent_start``, ``base_tx`` alone between. With either,
      ``update(..., ascent=True/False)`` (a Python bool) picks the step at
      trace time (one compiled step each, an off step at the base optimizer's
      cost); without it ``jax.lax.cond`` picks it from ``state.count``
      (:func:`ascent_on`; docs/zo_sam.md "When to perturb").

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`, called as
    ``update(updates, state, params, value_fn=loss_fn)``; optionally
    ``zo_value_fn=`` a loss whose gradient gives the ascent direction instead
    (e.g. of the first examples of the minibatch: Foret et al.'s m-sharpness,
    a cheaper first backward pass), ``value_fn``'s giving the update.

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
                          adaptive_eta=adaptive_eta, draws=False,
                          ascent_start=ascent_start, ascent_every=ascent_every)
