"""How a global sparsity is split over the layers: uniform and ERK."""

import math
from collections.abc import Callable
from typing import Any, Literal, Optional

import jax
import numpy as np

from zosam_jax._src import base

#: ``dense_fn(path, leaf) -> bool``: ``True`` for a leaf that stays dense.
#: ``path`` is the leaf's ``/``-separated key path, e.g. ``"Conv_0/kernel"``.
DenseFn = Callable[[str, Any], bool]
#: The per-layer sparsity distributions.
DistributionName = Literal["uniform", "erk"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "erk")


def leaf_path(path) -> str:
  """Returns a key path as a ``/``-separated string, e.g. ``"Conv_0/kernel"``."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def default_dense_fn(path: str, leaf: Any) -> bool:
  """Keeps leaves with ``ndim <= 1`` (biases, normalisation scales) dense.

  Args:
    path: the leaf's ``/``-separated key path (unused).
    leaf: the parameter array.

  Returns:
    ``True`` if the leaf stays dense.

  Examples:
    >>> import jax.numpy as jnp
    >>> default_dense_fn("Dense_0/bias", jnp.zeros(3))
    True

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  del path
  return np.ndim(leaf) <= 1


def check_sparsity(sparsity: Any, name: str = "sparsity") -> None:
  """Raises unless ``sparsity`` is a Python/NumPy number in ``[0, 1)``."""
  if isinstance(sparsity, bool) or not isinstance(
      sparsity, (int, float, np.number)
  ):
    raise TypeError(f"`{name}` must be a float, got {type(sparsity).__name__}")
  if not 0.0 <= float(sparsity) < 1.0:
    raise ValueError(f"`{name}` must be in [0, 1), got {sparsity!r}")


def prunable(
    params: base.Params,
    *,
    dense_fn: Optional[DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> base.Params:
  """Returns a pytree of Python bools: ``True`` for the leaves that are pruned.

  A leaf is prunable unless ``dense_fn(path, leaf)`` is true. The first and
  last layer are the first and last prunable leaves in the order
  ``jax.tree.leaves`` visits them (dict keys sorted: name layers so that they
  sort in network order, e.g. flax's ``Conv_0, Conv_1, Dense_0``).

  Args:
    params: the parameters (arrays or ``jax.ShapeDtypeStruct``).
    dense_fn: ``(path, leaf) -> bool``, ``True`` for leaves kept dense; the
      default keeps leaves with ``ndim <= 1`` (biases, norm scales) dense.
    dense_first_layer: keep the first prunable leaf (e.g. the first conv) dense.
    dense_last_layer: keep the last prunable leaf (e.g. the classifier) dense.

  Returns:
    A pytree of bools with the structure of ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros(3), "c": jnp.zeros((3, 4))}
    >>> prunable(params, dense_last_layer=True)
    {'a': True, 'b': False, 'c': False}

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  dense_fn = default_dense_fn if dense_fn is None else dense_fn
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  flags = [not dense_fn(leaf_path(p), x) for p, x in paths_leaves]
  indices = [i for i, f in enumerate(flags) if f]
  if indices and dense_first_layer:
    flags[indices[0]] = False
  if indices and dense_last_layer:
    flags[indices[-1]] = False
  return jax.tree.unflatten(treedef, flags)


def uniform(
    params: base.Params,
    sparsity: float,
    *,
    dense_fn: Optional[DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> base.Params:
  """Returns per-leaf densities: ``1 - sparsity`` on every prunable leaf.

  Args:
    params: the parameters (only shapes are read).
    sparsity: the fraction of prunable weights set to zero, in ``[0, 1)``.
    dense_fn: ``(path, leaf) -> bool``, see :func:`prunable`.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last prunable leaf dense.

  Returns:
    A pytree of Python floats (densities) with the structure of ``params``;
    ``1.0`` on dense leaves.

  Examples:
    >>> import jax.numpy as jnp
    >>> uniform({"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)}, 0.75)
    {'b': 1.0, 'w': 0.25}

  References:
    Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning
    for model compression <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  check_sparsity(sparsity)
  is_prunable = prunable(
      params,
      dense_fn=dense_fn,
      dense_first_layer=dense_first_layer,
      dense_last_layer=dense_last_layer,
  )
  return jax.tree.map(lambda f: 1.0 - float(sparsity) if f else 1.0, is_prunable)


def erk(
    params: base.Params,
    sparsity: float,
    *,
    dense_fn: Optional[DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
    power_scale: float = 1.0,
) -> base.Params:
  r"""Returns per-leaf densities from the Erdős–Rényi-Kernel rule.

  Each prunable leaf of shape :math:`(n_1, \dots, n_k)` (a dense kernel
  ``(in, out)`` or a conv kernel ``(h, w, in, out)``) gets a density
  proportional to its "perimeter over volume":

  .. math::
    d_l = \epsilon \left(\frac{\sum_i n_i}{\prod_i n_i}\right)^{p},

  with :math:`\epsilon` giving the prunable weights density :math:`1 - s`; a
  leaf whose :math:`d_l` would exceed 1 is made dense and :math:`\epsilon`
  solved again over the others.

  Args:
    params: the parameters (only shapes are read).
    sparsity: the fraction of prunable weights set to zero, in ``[0, 1)``.
    dense_fn: ``(path, leaf) -> bool``, see :func:`prunable`.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last prunable leaf dense.
    power_scale: the exponent :math:`p` (1 is ERK, 0 is uniform).

  Returns:
    A pytree of Python floats (densities) with the structure of ``params``;
    ``1.0`` on dense leaves. The prunable weights' mean density is
    ``1 - sparsity``.

  Examples:
    >>> import jax.numpy as jnp
    >>> params = {"w1": jnp.zeros((8, 64)), "w2": jnp.zeros((64, 64))}
    >>> {k: round(v, 3) for k, v in erk(params, 0.9).items()}
    {'w1': 0.324, 'w2': 0.072}

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  check_sparsity(sparsity)
  is_prunable = prunable(
      params,
      dense_fn=dense_fn,
      dense_first_layer=dense_first_layer,
      dense_last_layer=dense_last_layer,
  )
  flags, treedef = jax.tree.flatten(is_prunable)
  shapes = [np.shape(x) for x in treedef.flatten_up_to(params)]  # type: ignore[attr-defined]
  sizes = [math.prod(s) for s in shapes]
  scores = [
      (sum(s) / math.prod(s)) ** power_scale if f else 0.0
      for s, f in zip(shapes, flags)
  ]
  # Same fixed-point iteration as the RigL reference code: solve for epsilon,
  # make the leaves that would exceed density 1 dense, repeat.
  sparse_idx = [i for i, f in enumerate(flags) if f]
  made_dense: set[int] = set()
  eps = 0.0
  while True:
    free = [i for i in sparse_idx if i not in made_dense]
    if not free:
      break
    budget = sum((1.0 - sparsity) * sizes[i] for i in sparse_idx)
    budget -= sum(sizes[i] for i in made_dense)
    eps = budget / sum(scores[i] * sizes[i] for i in free)
    max_score = max(scores[i] for i in free)
    if eps * max_score <= 1.0:
      break
    made_dense.update(i for i in free if scores[i] == max_score)
  densities = [
      1.0 if (not f or i in made_dense) else float(min(1.0, eps * scores[i]))
      for i, f in enumerate(flags)
  ]
  return jax.tree.unflatten(treedef, densities)


def layer_densities(
    params: base.Params,
    sparsity: float,
    distribution: DistributionName = "erk",
    *,
    dense_fn: Optional[DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> base.Params:
  """Returns per-leaf densities from a distribution given by name.

  Args:
    params: the parameters (only shapes are read).
    sparsity: the fraction of prunable weights set to zero, in ``[0, 1)``.
    distribution: ``"uniform"`` (:func:`uniform`) or ``"erk"`` (:func:`erk`).
    dense_fn: ``(path, leaf) -> bool``, see :func:`prunable`.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last prunable leaf dense.

  Returns:
    A pytree of Python floats with the structure of ``params``.

  Raises:
    ValueError: for an unknown ``distribution``.

  Examples:
    >>> import jax.numpy as jnp
    >>> layer_densities({"w": jnp.zeros((4, 4))}, 0.5, "uniform")
    {'w': 0.5}

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  fns = {"uniform": uniform, "erk": erk}
  if distribution not in fns:
    raise ValueError(
        f"`distribution` must be one of {DISTRIBUTIONS}, got {distribution!r}"
    )
  return fns[distribution](
      params,
      sparsity,
      dense_fn=dense_fn,
      dense_first_layer=dense_first_layer,
      dense_last_layer=dense_last_layer,
  )
