"""One float32 vector for a whole parameter pytree.

Working on a single raveled vector turns the per-leaf work of a ZO step (key
splitting, direction sampling, norms, perturbations) into a handful of large
kernels instead of several small kernels per leaf, which is what a small,
launch-bound model needs on an accelerator.
"""

from collections.abc import Callable
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp

from zosam_jax._src import base
from zosam_jax._src import sharding


def prefers_ravel(params: base.Params) -> bool:
  """Whether ``zo_sam(..., ravel=None)`` works on one raveled vector.

  On GPU/TPU a handful of large kernels beats several small ones per leaf
  (launch-bound small models). On CPU, leaf by leaf was measured as fast or
  faster for every benchmark model (no concatenated copies; the raveled
  packed Rademacher draw was 13-17% slower on the MLP and the ViT,
  ``benchmarks/README.md``).

  Args:
    params: a pytree of arrays (or tracers: under explicit sharding, their
      shardings are read).

  Returns:
    ``False`` on CPU or if a leaf is sharded under explicit sharding, else
    ``True``.
  """
  if any(sharding.explicit_axes(x) for x in jax.tree.leaves(params)):
    return False
  return jax.default_backend() != "cpu"


def ravel(tree: base.Params) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
  """Concatenates the leaves of ``tree`` into one float32 (or wider) vector.

  Unlike :func:`jax.flatten_util.ravel_pytree`, the vector is at least float32
  (so that perturbations of bfloat16 parameters are formed in float32; float64
  stays float64) and the inverse casts every leaf back to its own dtype.

  Args:
    tree: a pytree of arrays, leaves of shape ``s_j`` and dtype ``t_j``.

  Raises:
    ValueError: if a leaf is sharded over a mesh axis under explicit sharding.

  Returns:
    ``(vector, unravel)``: ``vector`` has shape ``(sum_j prod(s_j),)`` and dtype
    float32 (float64 if a leaf is); ``unravel(v, dtype=None)`` maps such a vector back to a tree with
    the leaves' shapes, and their own dtypes unless ``dtype`` is given.

  Examples:
    >>> import jax.numpy as jnp
    >>> from zosam_jax._src.flat import ravel
    >>> v, unravel = ravel({'b': jnp.ones(2, jnp.bfloat16), 'w': jnp.zeros((2, 2))})
    >>> v.shape, v.dtype
    ((6,), dtype('float32'))
    >>> unravel(v)['b'].dtype
    dtype(bfloat16)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, 2026
  """
  leaves, treedef = jax.tree.flatten(tree)
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if sharding.explicit_axes(leaf):
      raise ValueError(
          "`ravel=True` concatenates all parameters into one replicated"
          f" vector, but the leaf at {jax.tree_util.keystr(path)} is sharded"
          f" as {jax.typeof(leaf).sharding.spec}; pass `ravel=False` to work"
          " leaf by leaf and keep the params' sharding")
  shapes = [jnp.shape(x) for x in leaves]
  dtypes = [jnp.result_type(x) for x in leaves]
  sizes = [math.prod(s) for s in shapes]
  splits = list(itertools.accumulate(sizes))[:-1]
  dtype = jnp.result_type(jnp.float32, *dtypes)
  if leaves:
    vector = jnp.concatenate([jnp.reshape(x, (-1,)).astype(dtype) for x in leaves])
  else:
    vector = jnp.zeros((0,), dtype)

  def unravel(v: jax.Array, dtype: Any = None) -> Any:
    chunks = jnp.split(v, splits) if leaves else []
    return jax.tree.unflatten(treedef, [
        jnp.reshape(c, s).astype(dtype or t)
        for c, s, t in zip(chunks, shapes, dtypes)])

  return vector, unravel
