"""Gradual magnitude pruning (GMP), the dense-to-sparse baseline."""

from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax.sparse import _distributions
from zosam_jax.sparse import _init
from zosam_jax.sparse import _masks
from zosam_jax.sparse import _schedules


class GMPState(NamedTuple):
  """State of :func:`gmp`.

  Attributes:
    count: number of ``update`` calls so far (int32).
    masks: bool pytree with the params' structure, ``True`` = active.
    inner_state: the state of the wrapped transformation.
  """

  count: jax.Array  # type: ignore[assignment]  # A field, not tuple.count.
  masks: base.Params
  inner_state: base.OptState


def gmp(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    end_step: Union[int, float],
    begin_step: int = 0,
    update_every: int = 100,
    initial_sparsity: float = 0.0,
    total_steps: Optional[int] = None,
    distribution: _distributions.DistributionName = "uniform",
    dense_fn: Optional[_distributions.DenseFn] = None,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Gradual magnitude pruning with Zhu & Gupta's cubic schedule.

  Each prunable layer :math:`l` goes from sparsity :math:`s_i` to its target
  :math:`s_{l}` (``sparsity`` split by ``distribution``) along

  .. math::
    s_{l,t} = s_{l} + (s_i - s_{l})\left(1 - \frac{t - t_0}{n\Delta t}
    \right)^3,

  pruning the smallest active weights at :math:`t = t_0 + j\Delta t \le t_0 +
  n\Delta t` and at ``end_step``. Pruned weights stay pruned (zeroed, the
  inner state reset there); a layer with a target below :math:`s_i` starts at it.

  Args:
    inner: the wrapped optimizer, e.g. ``optax.sgd(0.1, momentum=0.9)``.
    sparsity: :math:`s_f`, the final sparsity of the prunable weights, in
      ``[0, 1)``.
    end_step: :math:`t_0 + n\Delta t`, the last pruning step: an int, or a
      float in ``(0, 1]`` read as a fraction of ``total_steps``.
    begin_step: :math:`t_0`, the first pruning step.
    update_every: :math:`\Delta t`, the steps between prunings.
    initial_sparsity: :math:`s_i`, in ``[0, 1)``; the masks start at this
      sparsity by magnitude (0: dense).
    total_steps: the number of training steps, when ``end_step`` is a fraction.
    distribution: ``"uniform"`` (Zhu & Gupta) or ``"erk"`` split of
      ``sparsity`` over the layers.
    dense_fn: ``(path, leaf) -> bool``, leaves kept dense; by default those
      with ``ndim <= 1``.
    dense_first_layer: keep the first prunable leaf dense.
    dense_last_layer: keep the last one dense.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with a :class:`GMPState`;
    ``update`` requires ``params`` and passes extra arguments on to ``inner``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from zosam_jax import sparse
    >>> params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
    >>> tx = sparse.gmp(optax.sgd(0.0), sparsity=0.75, end_step=4,
    ...                 update_every=2)
    >>> state, update = tx.init(params), jax.jit(tx.update)
    >>> for _ in range(5):
    ...   updates, state = update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> int(state.masks["w"].sum()), float(params["w"][0, 0])
    (4, 0.0)

  References:
    Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning
    for model compression <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  end_step = _check_gmp_args(sparsity, initial_sparsity, distribution, update_every,
                             end_step, total_steps, begin_step)
  inner = optax.with_extra_args_support(inner)
  exclusions = dict(dense_fn=dense_fn, dense_first_layer=dense_first_layer,
                    dense_last_layer=dense_last_layer)

  def layer_schedules(params):
    densities = _distributions.layer_densities(params, sparsity, distribution,
                                               **exclusions)
    return _active_counts(params, densities, initial_sparsity, begin_step, end_step,
                          update_every)

  def init_fn(params):
    masks = _initial_masks(params, layer_schedules)
    return GMPState(count=jnp.zeros([], jnp.int32), masks=masks,
                    inner_state=inner.init(_masks.apply_masks(params, masks)))

  def update_fn(updates, state, params=None, **extra_args: Any):
    params = _masks.require_params(params, "update")
    t, schedules = state.count, layer_schedules(params)
    prune = lambda stepped: _magnitude_prune(state.masks, stepped, schedules, t)
    is_update = _is_pruning_step(t, begin_step, end_step, update_every)
    updates, masks, inner_state = _masks.masked_step_with_mask_update(
        inner, updates, state.inner_state, params, state.masks, is_update, prune,
        **extra_args)
    return updates, GMPState(count=optax.safe_increment(t), masks=masks,
                             inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _initial_masks(params, layer_schedules):
  """The masks at step 0: the largest weights by magnitude, per leaf."""
  if not jax.tree.leaves(params):  # optax.tree.map_params's placeholder
    return params
  counts = jax.tree.map(lambda n_active: n_active(0), layer_schedules(params))
  return _masks.top_k_masks(jax.tree.map(jnp.abs, params), counts)


def _is_pruning_step(t, begin_step, end_step, update_every):
  """Whether GMP prunes at step ``t``: every ``update_every`` steps from
  ``begin_step`` to ``end_step``, and at ``end_step``."""
  on_schedule = (t >= begin_step) & ((t - begin_step) % update_every == 0)
  return (t == end_step) | (on_schedule & (t <= end_step))


def _check_gmp_args(sparsity, initial_sparsity, distribution, update_every, end_step,
                    total_steps, begin_step) -> int:
  """Checks :func:`gmp`'s arguments; returns the resolved ``end_step``."""
  _distributions.check_sparsity(sparsity)
  _distributions.check_sparsity(initial_sparsity, "initial_sparsity")
  _init.check_mask_args(None, sparsity, distribution)
  _schedules.check_positive_int(update_every, "update_every")
  end_step = _schedules.resolve_end_step(end_step, total_steps)
  _schedules.check_non_negative_int(begin_step, "begin_step")
  if end_step <= begin_step:
    raise ValueError(
        f"`end_step` must be greater than `begin_step`, got {end_step!r} <="
        f" {begin_step!r}"
    )
  return end_step


def _active_counts(params, densities, initial_sparsity, begin_step, end_step,
                   update_every):
  """Per leaf, ``step -> number of active weights`` on the cubic schedule to the
  leaf's final density."""

  def leaf(p, density):
    target = 1.0 - density
    schedule = _schedules.cubic_sparsity(
        target,
        initial_sparsity=min(initial_sparsity, target),
        begin_step=begin_step,
        end_step=end_step,
        update_every=update_every,
    )
    size = p.size
    return lambda t: jnp.round((1.0 - schedule(t)) * size).astype(jnp.int32)

  return jax.tree.map(leaf, params, densities)


def _magnitude_prune(masks, stepped, schedules, t):
  """The masks keeping, per leaf, the largest active weights of ``stepped`` up
  to the schedule's count at step ``t`` (never growing a mask)."""
  counts = jax.tree.map(
      lambda m, n_active: jnp.minimum(n_active(t), jnp.sum(m, dtype=jnp.int32)),
      masks,
      schedules,
  )
  scores = jax.tree.map(
      lambda m, w: jnp.where(m, jnp.abs(w).astype(jnp.float32), -jnp.inf),
      masks,
      stepped,
  )
  return _masks.top_k_masks(scores, counts)
