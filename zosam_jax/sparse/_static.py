"""Static sparse training: fixed masks kept in the optimizer state."""

from collections.abc import Callable
from typing import Any, NamedTuple, Optional, Union

import jax
import optax

from zosam_jax._src import base
from zosam_jax.sparse import _distributions
from zosam_jax.sparse import _init
from zosam_jax.sparse import _masks

#: Masks, or ``params -> masks``.
MasksOrFn = Union[base.Params, Callable[[base.Params], base.Params]]


class StaticSparseState(NamedTuple):
  """State of :func:`static_sparse`.

  Attributes:
    masks: bool pytree with the params' structure, ``True`` = active.
    inner_state: the state of the wrapped transformation.
  """

  masks: base.Params
  inner_state: base.OptState


def static_sparse(
    inner: optax.GradientTransformation,
    *,
    masks: Optional[MasksOrFn] = None,
    sparsity: Optional[float] = None,
    distribution: _distributions.DistributionName = "erk",
    init_method: _init.InitMethod = "random",
    key: base.KeyLike = 0,
    loss_fn: Optional[Callable[[base.Params], jax.Array]] = None,
    dense_fn: Optional[_distributions.DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Trains a fixed sparse subnetwork: wraps ``inner`` with fixed masks.

  With masks :math:`m` (held in the state), gradient :math:`g` and params
  :math:`\theta`:

  .. math::
    u = m \odot \mathrm{inner}(m \odot g, m \odot \theta)
        - (1 - m) \odot \theta,

  so the inner optimizer never sees a pruned weight (its moments and weight
  decay stay zero there) and ``optax.apply_updates`` alone zeroes the pruned
  weights, from the very first step.

  Args:
    inner: the wrapped optimizer, e.g. ``optax.sgd(0.1, momentum=0.9)``.
    masks: bool pytree with the params' structure (``True`` = active), or a
      callable ``params -> masks`` evaluated in ``init``. Exclusive with
      ``sparsity``.
    sparsity: build masks in ``init`` at this sparsity of the prunable
      weights, in ``[0, 1)``, with :func:`init_masks`.
    distribution: ``"erk"`` or ``"uniform"`` per-layer split of ``sparsity``.
    init_method: ``"random"``, ``"magnitude"`` or ``"snip"``.
    key: seed or PRNG key of the ``"random"`` masks.
    loss_fn: ``params -> scalar`` on one batch, for ``"snip"``.
    dense_fn: ``(path, leaf) -> bool``, leaves kept dense; by default those
      with ``ndim <= 1`` (biases, normalisation scales).
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last one dense.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with a
    :class:`StaticSparseState`; ``update`` requires ``params`` and passes
    extra arguments on to ``inner``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from zosam_jax import sparse
    >>> params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
    >>> tx = sparse.static_sparse(optax.sgd(0.1), sparsity=0.75, key=0)
    >>> state = tx.init(params)
    >>> grads = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> int((params["w"] != 0).sum()), int((params["b"] != 0).sum())
    (4, 4)

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020 (ERK distribution)
  """
  _init.check_mask_args(masks, sparsity, distribution, init_method, loss_fn)
  key = base.canonicalize_key(key)
  inner = optax.with_extra_args_support(inner)
  init_kwargs = dict(distribution=distribution, method=init_method, key=key,
                     loss_fn=loss_fn, dense_fn=dense_fn,
                     dense_first_layer=dense_first_layer,
                     dense_last_layer=dense_last_layer)

  def init_fn(params):
    initial = _init.initial_masks(params, masks, sparsity, **init_kwargs)
    return StaticSparseState(
        masks=initial, inner_state=inner.init(_masks.apply_masks(params, initial)))

  def update_fn(updates, state, params=None, **extra_args: Any):
    params = _masks.require_params(params, "static_sparse")
    updates, inner_state = _masks.masked_inner_update(
        inner, updates, state.inner_state, params, state.masks, **extra_args)
    return updates, StaticSparseState(masks=state.masks, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
