"""Masks of active weights: resolving ``mask_fn`` and applying masks.

A mask follows optax's ``MaskOrFn`` convention: a pytree with the structure of
the params whose leaves are booleans, or a callable ``params -> such a tree``.
A leaf may be a scalar (the whole parameter is active or pruned) or a boolean
array of the parameter's shape (element-wise sparsity).
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zosam_jax._src import base


def check_mask_fn(mask_fn: Any, name: str = "mask_fn") -> None:
  """Checks the type of a ``mask_fn`` argument at construction.

  Args:
    mask_fn: ``None``, ``"base_state"``, a callable, or a pytree of booleans.
    name: the argument name used in error messages.

  Raises:
    TypeError: if ``mask_fn`` is none of those.
    ValueError: if ``mask_fn`` is a string other than ``"base_state"``.
  """
  if mask_fn is None or callable(mask_fn):
    return
  if isinstance(mask_fn, str):
    if mask_fn != base.MASKS_FROM_BASE_STATE:
      raise ValueError(
          f"`{name}` must be None, a pytree of booleans, a callable params ->"
          f" pytree of booleans, or {base.MASKS_FROM_BASE_STATE!r}, got"
          f" {mask_fn!r}")
    return
  for leaf in jax.tree.leaves(mask_fn):
    dtype = getattr(leaf, "dtype", None)
    if not (isinstance(leaf, (bool, np.bool_)) or dtype == jnp.bool_):
      raise TypeError(
          f"`{name}` must be a pytree of booleans (or a callable returning"
          f" one), got a leaf of type {type(leaf).__name__}"
          f"{'' if dtype is None else ' and dtype ' + str(dtype)}")


def check_mask_matches(mask: Any, params: base.Params,
                       name: str = "mask_fn") -> None:
  """Checks that a mask tree has the params' structure and leaf shapes.

  Args:
    mask: a pytree of booleans (arrays or ``jax.ShapeDtypeStruct``).
    params: the parameters.
    name: the argument name used in error messages.

  Raises:
    ValueError: if the tree structures differ, or a leaf's shape is neither
      ``()`` nor the shape of the corresponding parameter.
  """
  mask_def = jax.tree.structure(mask)
  params_def = jax.tree.structure(params)
  if mask_def != params_def:  # type: ignore[operator]
    raise ValueError(
        f"`{name}` must have the tree structure of the params; got"
        f" {mask_def}, expected {params_def}")
  for path, m, p in zip(jax.tree_util.tree_leaves_with_path(mask),
                        jax.tree.leaves(mask), jax.tree.leaves(params)):
    if jnp.shape(m) not in ((), jnp.shape(p)):
      raise ValueError(
          f"`{name}` leaf at {jax.tree_util.keystr(path[0])} has shape"
          f" {jnp.shape(m)}, expected () or the parameter's shape"
          f" {jnp.shape(p)}")


def resolve_mask(mask_fn: Any, params: base.Params,
                 base_state: Optional[base.OptState] = None) -> Any:
  """Returns the mask tree for ``params`` (``None`` when dense).

  Args:
    mask_fn: ``None``, a bool pytree, a callable ``params -> bool pytree``, or
      ``"base_state"`` to read the field ``masks`` of a sparse-training state
      held in ``base_state``.
    params: the parameters.
    base_state: the base optimizer's state (only read for ``"base_state"``).

  Returns:
    A pytree of booleans with the structure of ``params``, or ``None``.
  """
  if mask_fn is None:
    return None
  if isinstance(mask_fn, str):
    masks = optax.tree.get(base_state, "masks")
    if masks is None:
      raise ValueError(
          "`mask_fn='base_state'` needs a sparse-training transformation from"
          " `zosam_jax.sparse` as `base_tx` (a state with a field `masks`),"
          " but none was found in the base optimizer's state")
    return masks
  if callable(mask_fn):
    return mask_fn(params)
  return mask_fn


def apply_mask(tree: Any, mask: Any) -> Any:
  """Zeroes the entries of ``tree`` where ``mask`` is False.

  Args:
    tree: a pytree of arrays.
    mask: ``None`` (no-op) or a bool pytree with the structure of ``tree``
      whose leaves are scalars or arrays of the leaves' shapes.

  Returns:
    A tree like ``tree`` (same shapes and dtypes).
  """
  if mask is None:
    return tree
  return jax.tree.map(
      lambda x, m: jnp.where(m, x, jnp.zeros((), x.dtype)), tree, mask)


def mask_as_floats(mask: Any, like: base.Params) -> Any:
  """Broadcasts a mask to float32 arrays of the shapes of ``like``.

  Args:
    mask: ``None`` or a bool pytree matching ``like``.
    like: the parameters.

  Returns:
    A pytree of float32 arrays (ones where active) or ``None``.
  """
  if mask is None:
    return None
  return jax.tree.map(
      lambda m, p: jnp.broadcast_to(jnp.asarray(m, jnp.float32), jnp.shape(p)),
      mask, like)
