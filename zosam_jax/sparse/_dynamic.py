"""Dynamic sparse training: SET and RigL, one drop/grow rule, two grow scores."""

from collections.abc import Callable
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax.sparse import _distributions
from zosam_jax.sparse import _init
from zosam_jax.sparse import _masks
from zosam_jax.sparse import _schedules

#: ``(dense_grads, key) -> scores``: where to regrow (largest first).
GrowScoreFn = Callable[[base.Updates, jax.Array], base.Updates]


class DynamicSparseState(NamedTuple):
  """State of :func:`set_sparse` and :func:`rigl`.

  Attributes:
    count: number of ``update`` calls so far (int32).
    key: typed PRNG key, split at every step (SET's random regrowth).
    masks: bool pytree with the params' structure, ``True`` = active.
    inner_state: the state of the wrapped transformation.
  """

  count: jax.Array  # type: ignore[assignment]  # A field, not tuple.count.
  key: jax.Array
  masks: base.Params
  inner_state: base.OptState


def drop_and_grow(
    masks: base.Params,
    params: base.Params,
    grow_scores: base.Updates,
    drop_fraction: jax.Array,
) -> base.Params:
  r"""Returns new masks: drop the smallest active ``|w|``, regrow the top scores.

  Per leaf with :math:`n` active weights, the :math:`k = \lfloor \alpha n
  \rfloor` active weights of smallest magnitude are dropped and the :math:`k`
  positions that were inactive before the drop with the largest
  ``grow_scores`` are activated (ties broken by position), so the active count
  is unchanged. :math:`k` is capped by the number of inactive positions (a
  dense leaf never changes).

  Args:
    masks: the current bool masks.
    params: the weights whose magnitudes decide the drop.
    grow_scores: a pytree of scores with the params' structure.
    drop_fraction: :math:`\alpha`, a scalar in ``[0, 1]`` (may be traced).

  Returns:
    The new bool masks.

  Examples:
    >>> import jax.numpy as jnp
    >>> masks = {"w": jnp.array([True, True, False, False])}
    >>> params = {"w": jnp.array([0.1, 2.0, 0.0, 0.0])}
    >>> scores = {"w": jnp.array([0.0, 0.0, 1.0, 5.0])}
    >>> drop_and_grow(masks, params, scores, 0.5)
    {'w': Array([False,  True, False,  True], dtype=bool)}

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020

    Mocanu et al., `Scalable training of artificial neural networks with
    adaptive sparse connectivity inspired by network science
    <https://arxiv.org/abs/1707.04780>`_, Nature Communications 2018
  """
  neg_inf = jnp.float32(-jnp.inf)
  n_active = jax.tree.map(lambda m: jnp.sum(m, dtype=jnp.int32), masks)

  def num_drop(m, n):
    n_drop = jnp.floor(drop_fraction * n.astype(jnp.float32)).astype(jnp.int32)
    return jnp.minimum(n_drop, m.size - n)

  n_drop = jax.tree.map(num_drop, masks, n_active)
  keep_scores = jax.tree.map(
      lambda m, w: jnp.where(m, jnp.abs(w).astype(jnp.float32), neg_inf),
      masks,
      params,
  )
  grow_scores = jax.tree.map(
      lambda m, s: jnp.where(m, neg_inf, s.astype(jnp.float32)),
      masks,
      grow_scores,
  )
  # Both selections in one sort (top_k_masks ranks each leaf separately).
  keep, grow = _masks.top_k_masks(
      (keep_scores, grow_scores),
      (jax.tree.map(jnp.subtract, n_active, n_drop), n_drop),
  )
  return jax.tree.map(jnp.logical_or, keep, grow)


def random_grow_scores(grads: base.Updates, key: jax.Array) -> base.Updates:
  """SET's grow score: uniform noise (regrowth at random)."""
  keys = optax.tree.split_key_like(key, grads)
  return jax.tree.map(
      lambda g, k: jax.random.uniform(k, jnp.shape(g)), grads, keys
  )


def gradient_grow_scores(grads: base.Updates, key: jax.Array) -> base.Updates:
  """RigL's grow score: the dense gradient's magnitude."""
  del key
  return jax.tree.map(jnp.abs, grads)


def _drop_grow(
    inner: optax.GradientTransformation,
    grow_score_fn: GrowScoreFn,
    drop_fraction_fn: _schedules.Schedule,
    update_every: int,
    end_step: int,
    masks: Any,
    sparsity: Optional[float],
    distribution: str,
    key: jax.Array,
    init_kwargs: dict[str, Any],
) -> optax.GradientTransformationExtraArgs:
  """The transformation shared by SET and RigL."""
  inner = optax.with_extra_args_support(inner)
  mask_key, state_key = jax.random.split(key)

  def init_fn(params):
    initial = _init.initial_masks(
        params,
        masks,
        sparsity,
        distribution=distribution,
        method="random",
        key=mask_key,
        **init_kwargs,
    )
    return DynamicSparseState(
        count=jnp.zeros([], jnp.int32),
        key=state_key,
        masks=initial,
        inner_state=inner.init(_masks.apply_masks(params, initial)),
    )

  def update_fn(updates, state, params=None, **extra_args: Any):
    params = _masks.require_params(params, "update")
    key, subkey = jax.random.split(state.key)
    is_update = _schedules.is_update_step(
        state.count, update_every, end_step=end_step
    )
    drop_fraction = drop_fraction_fn(state.count)
    new_masks_fn = lambda stepped: drop_and_grow(
        state.masks, stepped, grow_score_fn(updates, subkey), drop_fraction
    )
    updates, new_masks, inner_state = _masks.masked_step_with_mask_update(
        inner,
        updates,
        state.inner_state,
        params,
        state.masks,
        is_update,
        new_masks_fn,
        **extra_args,
    )
    return updates, DynamicSparseState(
        count=optax.safe_increment(state.count),
        key=key,
        masks=new_masks,
        inner_state=inner_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _checked_drop_grow(inner, grow_score_fn, end_step, sparsity, masks, drop_fraction,
                       update_every, total_steps, distribution, key, init_kwargs):
  """:func:`set_sparse` or :func:`rigl` (by ``grow_score_fn``), arguments checked."""
  _init.check_mask_args(masks, sparsity, distribution)
  _schedules.check_positive_int(update_every, "update_every")
  end_step = _schedules.resolve_end_step(end_step, total_steps)
  if callable(drop_fraction):
    drop_fraction_fn = drop_fraction
  else:
    _schedules.check_drop_fraction(drop_fraction)
    drop_fraction_fn = _schedules.cosine_drop_fraction(drop_fraction, end_step)
  return _drop_grow(inner, grow_score_fn, drop_fraction_fn, update_every, end_step,
                    masks, sparsity, distribution, base.canonicalize_key(key),
                    init_kwargs)


def set_sparse(
    inner: optax.GradientTransformation,
    *,
    end_step: Union[int, float],
    sparsity: Optional[float] = None,
    masks: Optional[Any] = None,
    drop_fraction: Union[float, _schedules.Schedule] = 0.3,
    update_every: int = 100,
    total_steps: Optional[int] = None,
    distribution: _distributions.DistributionName = "erk",
    key: base.KeyLike = 0,
    dense_fn: Optional[_distributions.DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Sparse Evolutionary Training: drop by magnitude, regrow at random.

  Every ``update_every`` steps, each layer drops the fraction
  :math:`\alpha_t` of its active weights with the smallest magnitude and
  activates as many weights at random among those that were inactive, so the
  active count per layer stays constant (:func:`drop_and_grow`). Between
  updates it behaves as :func:`static_sparse`. A float ``drop_fraction`` is
  cosine-decayed as in Evci et al.'s SET baseline; SET's original constant
  fraction is ``drop_fraction=sparse.constant_drop_fraction(0.3)``.

  Args:
    inner: the wrapped optimizer, e.g. ``optax.sgd(0.1, momentum=0.9)``.
    end_step: last step of mask updates, exclusive: an int, or a float in
      ``(0, 1]`` read as a fraction of ``total_steps`` (RigL uses 0.75).
    sparsity: sparsity of the prunable weights in ``[0, 1)``; random masks at
      this sparsity are drawn in ``init``. Exclusive with ``masks``.
    masks: initial bool masks (``True`` = active), or ``params -> masks``.
    drop_fraction: :math:`\alpha` in ``(0, 1]``, cosine-decayed to 0 at
      ``end_step`` (:func:`cosine_drop_fraction`); or a schedule
      ``step -> fraction`` used as is.
    update_every: :math:`\Delta T`, steps between mask updates.
    total_steps: the number of training steps, when ``end_step`` is a fraction.
    distribution: ``"erk"`` or ``"uniform"`` per-layer split of ``sparsity``.
    key: seed or PRNG key (initial masks and the key held in the state).
    dense_fn: ``(path, leaf) -> bool``, leaves kept dense; by default those
      with ``ndim <= 1``.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last prunable leaf dense.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` (state
    :class:`DynamicSparseState`; ``update`` requires ``params``, passes extra
    keyword arguments on to ``inner``). Masks change at steps ``0 < t <
    end_step`` with ``t % update_every == 0`` (:func:`is_update_step`): the
    inner step runs on the old masks, the drop reads the stepped weights.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from zosam_jax import sparse
    >>> params = {"w": jnp.ones((8, 8))}
    >>> tx = sparse.set_sparse(optax.sgd(0.1), sparsity=0.5, end_step=10,
    ...                        update_every=2)
    >>> state, update = tx.init(params), jax.jit(tx.update)
    >>> for _ in range(3):
    ...   updates, state = update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> int(state.masks["w"].sum())
    32

  References:
    Mocanu et al., `Scalable training of artificial neural networks with
    adaptive sparse connectivity inspired by network science
    <https://arxiv.org/abs/1707.04780>`_, Nature Communications 2018

  .. note::
    With ``optax.inject_hyperparams`` only ``drop_fraction`` can be a traced
    hyperparameter: pass ``static_args=("sparsity", "end_step",
    "update_every", "total_steps", "key")``.
  """
  return _checked_drop_grow(
      inner, random_grow_scores, end_step, sparsity, masks, drop_fraction, update_every,
      total_steps, distribution, key,
      dict(dense_fn=dense_fn, dense_first_layer=dense_first_layer,
           dense_last_layer=dense_last_layer))


def rigl(
    inner: optax.GradientTransformation,
    *,
    end_step: Union[int, float],
    sparsity: Optional[float] = None,
    masks: Optional[Any] = None,
    drop_fraction: Union[float, _schedules.Schedule] = 0.3,
    update_every: int = 100,
    total_steps: Optional[int] = None,
    distribution: _distributions.DistributionName = "erk",
    key: base.KeyLike = 0,
    dense_fn: Optional[_distributions.DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""RigL: drop by magnitude, regrow where the dense gradient is largest.

  Every ``update_every`` steps, each layer drops the fraction
  :math:`\alpha_t = \frac{\alpha}{2}(1 + \cos(\pi t / T_{end}))` of its active
  weights with the smallest magnitude and activates as many of the
  previously inactive weights with the largest dense-gradient magnitude
  :math:`|g|` (``updates`` as received, e.g. ``zo_sam``'s gradient at
  :math:`\theta + \epsilon`). Grown weights start at exactly zero, and the
  inner optimizer's moments are reset wherever the mask changed.

  Args:
    inner: the wrapped optimizer. It and every other argument (``end_step``,
      ``sparsity``, ``masks``, ``drop_fraction``, ``update_every``,
      ``total_steps``, ``distribution``, ``key``, ``dense_fn``,
      ``dense_first_layer``, ``dense_last_layer``) as in :func:`set_sparse`;
      only the regrowth differs.

  Returns:
    As :func:`set_sparse`: an :class:`optax.GradientTransformationExtraArgs`
    whose state is a :class:`DynamicSparseState`, masks changing at the same
    steps.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from zosam_jax import sparse
    >>> params = {"w": jnp.ones((8, 8))}
    >>> tx = sparse.rigl(optax.sgd(0.1), sparsity=0.5, end_step=10,
    ...                  update_every=2)
    >>> state, update = tx.init(params), jax.jit(tx.update)
    >>> for _ in range(3):
    ...   updates, state = update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> int(state.masks["w"].sum()), int((params["w"] != 0).sum()) <= 32
    (32, True)

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020

  .. note::
    With ``optax.inject_hyperparams``: as for :func:`set_sparse`.
  """
  return _checked_drop_grow(
      inner, gradient_grow_scores, end_step, sparsity, masks, drop_fraction, update_every,
      total_steps, distribution, key,
      dict(dense_fn=dense_fn, dense_first_layer=dense_first_layer,
           dense_last_layer=dense_last_layer))

