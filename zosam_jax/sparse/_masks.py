"""Mask plumbing shared by the sparse transformations.

Masks are pytrees of ``bool`` arrays with the structure and shapes of the
parameters (``True`` = active weight). The sparse transformations own the
masking: the inner optimizer sees the masked gradient and the masked
parameters, and every pruned weight receives the update ``-param`` so that
``optax.apply_updates`` alone keeps it at exactly zero.
"""

import math
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zosam_jax._src import base


def check_masks(masks: Any, params: base.Params, name: str = "masks") -> None:
  """Raises ``ValueError`` unless ``masks`` matches ``params`` leaf for leaf."""
  mask_def = jax.tree.structure(masks)
  params_def = jax.tree.structure(params)
  if mask_def != params_def:  # type: ignore[operator]
    raise ValueError(
        f"`{name}` must have the structure of the params, got {mask_def} for"
        f" params {params_def}"
    )
  for (path, m), p in zip(
      jax.tree_util.tree_leaves_with_path(masks), jax.tree.leaves(params)
  ):
    if jnp.shape(m) != jnp.shape(p):
      raise ValueError(
          f"`{name}` must have the shapes of the params, got shape"
          f" {jnp.shape(m)} at {jax.tree_util.keystr(path)} for a param of"
          f" shape {jnp.shape(p)}"
      )


def as_bool_masks(masks: Any) -> base.Params:
  """Returns ``masks`` as a pytree of ``bool`` arrays."""
  return jax.tree.map(lambda m: jnp.asarray(m).astype(bool), masks)


def get_masks(state_or_masks: Any, params: base.Params) -> base.Params:
  """Returns the masks of a sparse state, or the argument if it is a mask tree."""
  if jax.tree.structure(state_or_masks) == jax.tree.structure(params):  # type: ignore[operator]
    return state_or_masks
  masks = optax.tree.get(state_or_masks, "masks")
  if masks is None:
    raise ValueError(
        "`state_or_masks` must be a mask pytree with the structure of the"
        " params or an optimizer state holding a `masks` field"
    )
  return masks


def apply_masks(params: base.Params, state_or_masks: Any) -> base.Params:
  """Zeroes the pruned weights.

  Useful once before training, so that the first forward pass already sees
  the sparse network. (The sparse transformations also zero pruned weights
  through their updates, so this is not required for correctness.)

  Args:
    params: the parameters.
    state_or_masks: a mask pytree (``True`` = active), or an optimizer state
      that holds one in a field named ``masks`` (e.g. the state of
      :func:`static_sparse`, :func:`set_sparse`, :func:`rigl` or :func:`gmp`,
      possibly nested in a chain or in ``zo_sam``'s state).

  Returns:
    The params with every masked-out entry set to zero.

  Examples:
    >>> import jax.numpy as jnp
    >>> apply_masks({"w": jnp.ones(3)}, {"w": jnp.array([True, False, True])})
    {'w': Array([1., 0., 1.], dtype=float32)}

  References:
    Lee et al., `JaxPruner: A concise library for sparsity research
    <https://arxiv.org/abs/2304.14082>`_, 2023
  """
  masks = get_masks(state_or_masks, params)
  check_masks(masks, params, "state_or_masks")
  return jax.tree.map(
      lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks
  )


def top_k_mask(scores: jax.Array, k: Any) -> jax.Array:
  """Returns a bool mask, shaped like ``scores``, of its ``k`` largest entries.

  ``k`` may be traced. Ties are broken by position (earlier first), so exactly
  ``min(k, scores.size)`` entries are ``True``.
  """
  return top_k_masks([scores], [k])[0]


@jax.jit
def top_k_masks(scores: base.Params, counts: base.Params) -> base.Params:
  """Per leaf of ``scores``, a bool mask of its ``counts`` largest entries.

  All leaves are ranked in one sort keyed by (leaf, -score, position), so the
  cost is one compiled sort whatever the number of layers, and the counts
  (ints with the structure of ``scores``) may be traced. Ties go to the
  earlier position; ``-inf`` scores rank last.
  """
  leaves, treedef = jax.tree.flatten(scores)
  if not leaves:
    return scores
  sizes = [math.prod(jnp.shape(x)) for x in leaves]
  flat = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])
  segment = np.repeat(np.arange(len(leaves), dtype=np.int32), sizes)
  offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
  position = jnp.arange(flat.size, dtype=jnp.int32)
  *_, order = jax.lax.sort(
      (jnp.asarray(segment), -flat, position), num_keys=3
  )
  ranks = jnp.zeros_like(position).at[order].set(position)
  k = jnp.stack([
      jnp.asarray(c, jnp.int32) for c in treedef.flatten_up_to(counts)  # type: ignore[attr-defined]
  ])
  active = ranks - offsets[segment] < k[segment]
  pieces = jnp.split(active, np.cumsum(sizes)[:-1])
  return jax.tree.unflatten(
      treedef, [a.reshape(jnp.shape(x)) for a, x in zip(pieces, leaves)]
  )


def require_params(params: Optional[base.Params], name: str) -> base.Params:
  if params is None:
    raise ValueError(
        f"`{name}` needs the params: call `tx.update(grads, state, params)`"
    )
  return params


def masked_inner_update(
    inner: optax.GradientTransformationExtraArgs,
    updates: base.Updates,
    inner_state: base.OptState,
    params: base.Params,
    masks: base.Params,
    **extra_args: Any,
) -> tuple[base.Updates, base.OptState]:
  """Runs ``inner`` on the masked gradient and masked params.

  Returns updates equal to the inner updates on active weights and to
  ``-param`` on pruned ones.
  """
  zero_pruned = lambda x, m: jnp.where(m, x, jnp.zeros_like(x))
  # The inner optimizer sees the sparse params as well, so that weight decay
  # (add_decayed_weights, adamw) cannot leak into its moments at pruned weights.
  masked_grads = jax.tree.map(zero_pruned, updates, masks)
  masked_params = jax.tree.map(zero_pruned, params, masks)
  new_updates, inner_state = inner.update(
      masked_grads, inner_state, masked_params, **extra_args
  )
  new_updates = jax.tree.map(
      lambda u, p, m: jnp.where(m, u, -p).astype(u.dtype),
      new_updates,
      params,
      masks,
  )
  return new_updates, inner_state


class _Pair:
  """Zips two leaves into one (a plain object, hence a pytree leaf)."""

  __slots__ = ("current", "fresh")

  def __init__(self, current, fresh):
    self.current = current
    self.fresh = fresh


def reset_changed(
    inner: optax.GradientTransformation,
    inner_state: base.OptState,
    changed: base.Params,
    params: base.Params,
) -> base.OptState:
  """Resets the inner state where ``changed`` is true, generically.

  Every params-shaped tree in the state (momentum, Adam moments, ...) found by
  ``optax.tree.map_params`` takes, at the changed positions, the value a fresh
  ``inner.init(params)`` would hold (zero for moments); everything else
  (step counts, schedules) is kept.
  """
  fresh = inner.init(params)
  zipped = jax.tree.map(_Pair, inner_state, fresh)

  def reset(pair, c):
    if not isinstance(pair, _Pair):  # e.g. optax.MaskedNode
      return pair
    if jnp.shape(pair.current) != jnp.shape(c):  # e.g. factored statistics
      return pair.current
    return jnp.where(c, pair.fresh, pair.current).astype(pair.current.dtype)

  return optax.tree.map_params(
      inner,
      reset,
      zipped,
      changed,
      transform_non_params=lambda pair: pair.current,
      is_leaf=lambda x: isinstance(x, optax.MaskedNode),
  )


def masked_step_with_mask_update(
    inner: optax.GradientTransformationExtraArgs,
    updates: base.Updates,
    inner_state: base.OptState,
    params: base.Params,
    masks: base.Params,
    is_update: jax.Array,
    new_masks_fn: Callable[[base.Params], base.Params],
    **extra_args: Any,
) -> tuple[base.Updates, base.Params, base.OptState]:
  """One sparse step, then (if ``is_update``) a mask change.

  The inner step runs on the old masks; ``new_masks_fn`` then sees the
  stepped weights (as in RigL's reference code). Weights that leave or enter
  the masks are set to exactly zero by the returned updates, and the inner
  state is reset at their positions.
  """
  stepped_updates, inner_state = masked_inner_update(
      inner, updates, inner_state, params, masks, **extra_args
  )

  def change():
    stepped = optax.apply_updates(params, stepped_updates)
    new_masks = new_masks_fn(stepped)
    changed = jax.tree.map(jnp.not_equal, masks, new_masks)
    new_params = apply_masks(stepped, new_masks)
    return new_masks, reset_changed(
        inner, inner_state, changed, new_params
    )

  new_masks, inner_state = jax.lax.cond(
      is_update, change, lambda: (masks, inner_state)
  )
  # Kept weights take the inner update; dropped, grown (initialised at zero)
  # and pruned weights are set to zero.
  keep = jax.tree.map(jnp.logical_and, masks, new_masks)
  updates = jax.tree.map(
      lambda u, p, k: jnp.where(k, u, -p).astype(u.dtype),
      stepped_updates,
      params,
      keep,
  )
  return updates, new_masks, inner_state
