"""The perturbation ε of a sharpness-aware step from its ascent direction.

SAM's :math:`\\epsilon = \\rho\\, d / \\|d\\|_2`, or adaptive SAM's (ASAM)
:math:`\\rho T^2 d / \\|T d\\|_2`, both zero (not NaN) when :math:`d = 0`.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base


def adaptive_perturbation(
    params: base.Params, direction: base.Params, rho: Any, eta: Any,
) -> tuple[base.Params, jax.Array]:
  r"""The perturbation of adaptive SAM (ASAM): :math:`\rho T^2 d / \|T d\|`.

  Args:
    params: the params :math:`\theta`, leaf shapes ``s_j``.
    direction: the (masked) ascent direction :math:`d`, float32, shapes
      ``s_j``; zero on pruned weights, so :math:`T` acts on active ones only.
    rho: the radius :math:`\rho` (in the scaled coordinates).
    eta: the offset :math:`\eta` in :math:`T = |\theta| + \eta`.

  Returns:
    ``(epsilon, norm)``: float32 arrays of shapes ``s_j`` (zero when
    :math:`d = 0`) and :math:`\|\epsilon\|_2`.

  Examples:
    >>> import jax.numpy as jnp, zosam_jax
    >>> eps, norm = zosam_jax.adaptive_perturbation(
    ...     jnp.array([3.0, 0.0]), jnp.array([1.0, 1.0]), rho=1.0, eta=0.0)
    >>> eps.tolist(), float(norm)
    ([3.0, 0.0], 3.0)

  References:
    Kwon et al., `ASAM: Adaptive Sharpness-Aware Minimization for
    Scale-Invariant Learning of Deep Neural Networks
    <https://arxiv.org/abs/2102.11600>`_, ICML 2021
  """
  scale = jax.tree.map(lambda p: jnp.abs(p.astype(jnp.float32)) + eta, params)
  scaled = jax.tree.map(jnp.multiply, scale, direction)
  norm = optax.tree.norm(scaled)
  factor = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
  epsilon = jax.tree.map(lambda t, x: factor * t * x, scale, scaled)
  return epsilon, optax.tree.norm(epsilon)


def perturbation(params, direction, rho, adaptive, eta):
  """ε = ρ d/‖d‖ (0, not NaN, when d = 0), or ASAM's; with its norm."""
  if adaptive:
    return adaptive_perturbation(params, direction, rho, eta)
  norm = optax.tree.norm(direction)
  scale = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
  return jax.tree.map(lambda d: scale * d, direction), scale * norm
