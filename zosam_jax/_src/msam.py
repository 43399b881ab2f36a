"""Momentum-SAM (MSAM): the perturbation along the negative momentum, no extra pass.

MSAM takes the perturbation from what the base optimizer already holds: its
momentum trace :math:`v` (optax's ``trace``, the running sum of gradients),
:math:`\\epsilon = -\\rho\\, M v / \\|M v\\|`, then the one gradient at
:math:`\\theta + \\epsilon` as SAM does. A step costs what an SGD step costs
(one forward and one backward pass); the loss at :math:`\\theta` is not
evaluated (``state.loss`` is NaN). Its perturbation points along the last
updates, downhill on average, not uphill: the authors relate it to Nesterov's
look-ahead, and report SAM-like generalization on CIFAR at larger radii.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import masking
from zosam_jax._src import sharpness


def msam(
    base_tx: optax.GradientTransformation,
    rho: Any = 0.3,
    mask_fn: Optional[base.MaskOrFn] = None,
    *,
    has_aux: bool = False,
    aux_like: Any = None,
    axis_name: Optional[str] = None,
    ascent_start: Optional[int] = None,
    ascent_every: Optional[int] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Momentum-SAM: SAM's step with :math:`\epsilon` along the negative momentum.

  .. math::
    \epsilon = -\rho \frac{M \odot v}{\|M \odot v\|_2}, \quad
    u = M \odot \mathrm{base}(M \odot \nabla L(\theta + \epsilon))

  with :math:`v` the momentum trace of ``base_tx`` before this step (zero at
  the first step, which then takes no perturbation).

  Args:
    base_tx: the optimizer receiving the gradient at the perturbed point; it
      must hold a momentum trace (``optax.sgd(lr, momentum=0.9)``,
      ``optax.trace``), read with ``optax.tree.get(state, "trace")``.
    rho: the radius :math:`\rho` (the authors' CIFAR values are several times
      SAM's; default 0.3). Can be scheduled with ``optax.inject_hyperparams``.
    mask_fn: which weights are active, as in :func:`zosam_jax.zo_sam`.
    has_aux: whether ``value_fn`` returns ``(loss, aux)``, as in ``zo_sam``.
    aux_like: the structure of the aux for the initial state, as in ``zo_sam``.
    axis_name: the data axis to average over inside ``shard_map``/``pmap``.
    ascent_start: the first step with the perturbation, as in :func:`zosam_jax.sam`.
    ascent_every: the period of the steps with it, as in :func:`zosam_jax.sam`.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs`, called as
    ``update(updates, state, params, value_fn=loss_fn)``; its state is a
    :class:`zosam_jax.ZOSAMState` with ``loss`` NaN (not evaluated).

  Raises:
    ValueError: at ``init``, when ``base_tx`` has no momentum trace.

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> loss_fn = lambda p: jnp.sum((p - 1.0) ** 2)
    >>> tx = zosam_jax.msam(optax.sgd(0.1, momentum=0.9), rho=0.05)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   updates, state = tx.update(params, state, params, value_fn=loss_fn)
    ...   params = optax.apply_updates(params, updates)
    >>> round(float(state.perturbation_norm), 3)
    0.05

  References:
    Becker, Altrock and Risse, `Momentum-SAM: Sharpness Aware Minimization
    without Computational Overhead <https://arxiv.org/abs/2401.12033>`_, 2024
  """

  def ascent_fn(loss_fn, params, mask, step_key, trace, loss_dtype):
    del loss_fn, step_key, loss_dtype
    direction = jax.tree.map(lambda v: -v.astype(jnp.float32),
                             masking.apply_mask(trace, mask))
    return direction, jnp.full((), jnp.nan, jnp.float32)

  return sharpness.sharpness_aware(
      "msam", base_tx, rho, mask_fn, 0, ascent_fn, has_aux, aux_like, axis_name,
      prior="momentum", draws=False, ascent_start=ascent_start,
      ascent_every=ascent_every)
