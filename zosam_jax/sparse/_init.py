"""Initial masks: random, magnitude and SNIP, at given per-layer densities."""

import math
from collections.abc import Callable
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np

from zosam_jax._src import base
from zosam_jax.sparse import _distributions
from zosam_jax.sparse import _masks

InitMethod = Literal["random", "magnitude", "snip"]
INIT_METHODS: tuple[str, ...] = ("random", "magnitude", "snip")


def num_active(density: float, size: int) -> int:
  """The number of active weights in a leaf: ``round(density * size)``."""
  return int(round(float(density) * size))


def _counts(scores: base.Params, densities: base.Params) -> tuple[int, ...]:
  if jax.tree.structure(densities) != jax.tree.structure(scores):  # type: ignore[operator]
    raise ValueError(
        "`densities` must have the structure of the params, got"
        f" {jax.tree.structure(densities)}"
    )
  return tuple(
      num_active(d, math.prod(jnp.shape(x)))
      for x, d in zip(jax.tree.leaves(scores), jax.tree.leaves(densities))
  )


def _masks_from_scores(scores, densities):
  counts = jax.tree.unflatten(
      jax.tree.structure(scores), list(_counts(scores, densities))
  )
  return _masks.top_k_masks(scores, counts)


@jax.jit
def _uniform_scores(key, params):
  leaves, treedef = jax.tree.flatten(params)
  sizes = [math.prod(jnp.shape(x)) for x in leaves]
  noise = jax.random.uniform(key, (sum(sizes),))
  pieces = jnp.split(noise, np.cumsum(sizes)[:-1]) if leaves else []
  return jax.tree.unflatten(
      treedef, [u.reshape(jnp.shape(x)) for u, x in zip(pieces, leaves)]
  )


def random_masks(
    key: base.KeyLike, params: base.Params, densities: base.Params
) -> base.Params:
  """Returns random masks with exactly ``round(density * size)`` active per leaf.

  Args:
    key: an ``int`` seed or a PRNG key.
    params: the parameters (only shapes are read).
    densities: a pytree of floats with the structure of ``params``, e.g. from
      :func:`erk` or :func:`uniform`.

  Returns:
    A pytree of ``bool`` arrays with the structure and shapes of ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> masks = random_masks(0, {"w": jnp.zeros((4, 5))}, {"w": 0.25})
    >>> int(masks["w"].sum())
    5

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  key = base.canonicalize_key(key)
  return _masks_from_scores(_uniform_scores(key, params), densities)


def magnitude_masks(params: base.Params, densities: base.Params) -> base.Params:
  """Returns masks keeping the ``round(density * size)`` largest ``|w|`` per leaf.

  Args:
    params: the parameters.
    densities: a pytree of floats with the structure of ``params``.

  Returns:
    A pytree of ``bool`` arrays with the structure and shapes of ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> magnitude_masks({"w": jnp.array([0.1, -3.0, 2.0, 0.5])}, {"w": 0.5})
    {'w': Array([False,  True,  True, False], dtype=bool)}

  References:
    Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning
    for model compression <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  return _masks_from_scores(jax.tree.map(jnp.abs, params), densities)


def snip_masks(
    loss_fn: Callable[[base.Params], jax.Array],
    params: base.Params,
    densities: base.Params,
) -> base.Params:
  r"""Returns SNIP masks: the largest connection sensitivities per leaf.

  The sensitivity of weight :math:`w_j` is
  :math:`|w_j \, \partial L / \partial w_j|` on one batch at initialisation;
  each leaf keeps its ``round(density * size)`` most sensitive weights.

  Args:
    loss_fn: ``params -> scalar`` loss on one batch.
    params: the parameters at initialisation.
    densities: a pytree of floats with the structure of ``params``.

  Returns:
    A pytree of ``bool`` arrays with the structure and shapes of ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([1.0, 1.0, 1.0, 1.0])}
    >>> loss_fn = lambda p: jnp.sum(jnp.array([1.0, 4.0, 2.0, 3.0]) * p["w"])
    >>> snip_masks(loss_fn, params, {"w": 0.5})
    {'w': Array([False,  True, False,  True], dtype=bool)}

  References:
    Lee et al., `SNIP: Single-shot Network Pruning based on Connection
    Sensitivity <https://arxiv.org/abs/1810.02340>`_, ICLR 2019
  """
  grads = jax.grad(loss_fn)(params)
  scores = jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)
  return _masks_from_scores(scores, densities)


def init_masks(
    params: base.Params,
    sparsity: float,
    *,
    distribution: _distributions.DistributionName = "erk",
    method: InitMethod = "random",
    key: base.KeyLike = 0,
    loss_fn: Optional[Callable[[base.Params], jax.Array]] = None,
    dense_fn: Optional[_distributions.DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> base.Params:
  """Returns initial masks at a global sparsity, by name of distribution/method.

  Args:
    params: the parameters.
    sparsity: the fraction of prunable weights set to zero, in ``[0, 1)``.
    distribution: ``"erk"`` or ``"uniform"``, how the sparsity is split over
      the layers (:func:`erk`, :func:`uniform`).
    method: ``"random"`` (:func:`random_masks`), ``"magnitude"``
      (:func:`magnitude_masks`) or ``"snip"`` (:func:`snip_masks`).
    key: seed or PRNG key for ``"random"``.
    loss_fn: ``params -> scalar`` on one batch, required by ``"snip"``.
    dense_fn: ``(path, leaf) -> bool``, ``True`` for leaves kept dense; by
      default leaves with ``ndim <= 1``.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last prunable leaf dense.

  Returns:
    A pytree of ``bool`` arrays with the structure and shapes of ``params``;
    all ``True`` on dense leaves.

  Raises:
    ValueError: for a sparsity outside ``[0, 1)``, an unknown name, or
      ``"snip"`` without ``loss_fn``.

  Examples:
    >>> import jax.numpy as jnp
    >>> params = {"b": jnp.zeros(8), "w": jnp.ones((8, 8))}
    >>> masks = init_masks(params, 0.75, distribution="uniform", key=0)
    >>> int(masks["w"].sum()), int(masks["b"].sum())
    (16, 8)

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  if method not in INIT_METHODS:
    raise ValueError(f"`method` must be one of {INIT_METHODS}, got {method!r}")
  if method == "snip" and loss_fn is None:
    raise ValueError("`loss_fn` is required when `method` is 'snip'")
  densities = _distributions.layer_densities(
      params,
      sparsity,
      distribution,
      dense_fn=dense_fn,
      dense_first_layer=dense_first_layer,
      dense_last_layer=dense_last_layer,
  )
  if method == "random":
    return random_masks(key, params, densities)
  if method == "magnitude":
    return magnitude_masks(params, densities)
  return snip_masks(loss_fn, params, densities)  # type: ignore[arg-type]  # Checked above.


def check_mask_args(
    masks, sparsity, distribution, method=None, loss_fn=None
) -> None:
  """Validates the mask arguments shared by the sparse transformations."""
  if masks is None and sparsity is None:
    raise ValueError("one of `masks` or `sparsity` is required, got neither")
  if masks is not None and sparsity is not None:
    raise ValueError(
        "`masks` and `sparsity` are mutually exclusive, got both (sparsity="
        f"{sparsity!r})"
    )
  if sparsity is not None:
    _distributions.check_sparsity(sparsity)
  if distribution not in _distributions.DISTRIBUTIONS:
    raise ValueError(
        f"`distribution` must be one of {_distributions.DISTRIBUTIONS}, got"
        f" {distribution!r}"
    )
  if method is not None and method not in INIT_METHODS:
    raise ValueError(
        f"`init_method` must be one of {INIT_METHODS}, got {method!r}"
    )
  if method == "snip" and sparsity is not None and loss_fn is None:
    raise ValueError("`loss_fn` is required when `init_method` is 'snip'")


def initial_masks(params: base.Params, masks, sparsity, **init_kwargs):
  """Returns the checked bool masks: given, computed by ``masks(params)``, or
  by :func:`init_masks` at ``sparsity``."""
  if not jax.tree.leaves(params):
    # No leaves: an empty model, or optax.tree.map_params's placeholder, whose
    # masks must be the placeholder itself so the field reads as params-shaped.
    return params
  if masks is None:
    masks = init_masks(params, sparsity, **init_kwargs)
  elif callable(masks):
    masks = masks(params)
  _masks.check_masks(masks, params)
  return _masks.as_bool_masks(masks)
