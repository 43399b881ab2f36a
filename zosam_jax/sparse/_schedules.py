"""Schedules of the sparse transformations, as plain functions of the step.

The step ``t`` is the number of ``update`` calls made before the current one
(0 at the first call). All schedules are jit-friendly: they take and return
arrays and never branch in Python on ``t``.
"""

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

#: ``step -> value``.
Schedule = Callable[[jax.Array], jax.Array]


def check_positive_int(value: Any, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
  if value <= 0:
    raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def check_non_negative_int(value: Any, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
  if value < 0:
    raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")


def check_drop_fraction(value: Any, name: str = "drop_fraction") -> None:
  if isinstance(value, jax.Array):  # traced, e.g. under optax.inject_hyperparams
    return
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(f"`{name}` must be a float, got {type(value).__name__}")
  if not 0.0 < float(value) <= 1.0:
    raise ValueError(f"`{name}` must be in (0, 1], got {value!r}")


def resolve_end_step(
    end_step: Any, total_steps: Optional[int], name: str = "end_step"
) -> int:
  """Returns ``end_step`` as an int; a float in ``(0, 1]`` is a fraction."""
  if isinstance(end_step, bool) or not isinstance(
      end_step, (int, float, np.number)
  ):
    raise TypeError(
        f"`{name}` must be an int or a float fraction of `total_steps`, got"
        f" {type(end_step).__name__}"
    )
  if isinstance(end_step, (float, np.floating)):
    if not 0.0 < end_step <= 1.0:
      raise ValueError(
          f"`{name}` as a fraction must be in (0, 1], got {end_step!r}"
      )
    if total_steps is None:
      raise ValueError(
          f"`total_steps` is required when `{name}` is a fraction, got"
          f" {name}={end_step!r}"
      )
    check_positive_int(total_steps, "total_steps")
    return max(1, int(round(end_step * total_steps)))
  check_positive_int(end_step, name)
  return int(end_step)


def cosine_drop_fraction(drop_fraction: float, end_step: int) -> Schedule:
  r"""Returns RigL's drop-fraction schedule, cosine-decayed to 0 at ``end_step``.

  .. math::
    \alpha_t = \frac{\alpha}{2}\left(1 + \cos\frac{\pi t}{T_{end}}\right)
    \text{ for } t < T_{end}, \qquad \alpha_t = 0 \text{ otherwise}.

  Args:
    drop_fraction: :math:`\alpha`, in ``(0, 1]``.
    end_step: :math:`T_{end}`, a positive int.

  Returns:
    ``step -> drop fraction`` (a float32 array).

  Examples:
    >>> fn = cosine_drop_fraction(0.3, end_step=100)
    >>> [round(float(fn(t)), 3) for t in (0, 50, 99, 100)]
    [0.3, 0.15, 0.0, 0.0]

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  check_drop_fraction(drop_fraction)
  check_positive_int(end_step, "end_step")

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    value = 0.5 * drop_fraction * (1.0 + jnp.cos(jnp.pi * step / end_step))
    return jnp.where(step < end_step, value, 0.0).astype(jnp.float32)

  return schedule


def constant_drop_fraction(
    drop_fraction: float, end_step: Optional[int] = None
) -> Schedule:
  """Returns a constant drop fraction (SET's original schedule), 0 after ``end_step``.

  Args:
    drop_fraction: the fraction, in ``(0, 1]``.
    end_step: the step from which the fraction is 0; ``None`` for never.

  Returns:
    ``step -> drop fraction`` (a float32 array).

  Examples:
    >>> fn = constant_drop_fraction(0.3, end_step=100)
    >>> [round(float(fn(t)), 2) for t in (0, 99, 100)]
    [0.3, 0.3, 0.0]

  References:
    Mocanu et al., `Scalable training of artificial neural networks with
    adaptive sparse connectivity inspired by network science
    <https://arxiv.org/abs/1707.04780>`_, Nature Communications 2018
  """
  check_drop_fraction(drop_fraction)
  if end_step is not None:
    check_positive_int(end_step, "end_step")

  def schedule(step):
    value = jnp.full((), drop_fraction, jnp.float32)
    if end_step is None:
      return value
    return jnp.where(jnp.asarray(step) < end_step, value, 0.0)

  return schedule


def is_update_step(
    step: jax.Array,
    update_every: int,
    *,
    begin_step: int = 0,
    end_step: Optional[int] = None,
) -> jax.Array:
  r"""Whether the masks are updated at ``step``.

  True when ``step`` is a positive multiple of ``update_every`` after
  ``begin_step``, with ``begin_step < step < end_step`` (no update at the very
  first call: the masks were just initialised).

  Args:
    step: the step count (may be traced).
    update_every: :math:`\Delta T`, a positive int.
    begin_step: updates happen strictly after this step.
    end_step: no update at or after this step; ``None`` for never stop.

  Returns:
    A bool scalar array.

  Examples:
    >>> [bool(is_update_step(t, 2, end_step=6)) for t in range(8)]
    [False, False, True, False, True, False, False, False]

  References:
    Evci et al., `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, ICML 2020
  """
  step = jnp.asarray(step)
  result = (step > begin_step) & ((step - begin_step) % update_every == 0)
  if end_step is not None:
    result = result & (step < end_step)
  return result


def cubic_sparsity(
    target_sparsity: Any,
    *,
    initial_sparsity: Any = 0.0,
    begin_step: int,
    end_step: int,
    update_every: int,
) -> Schedule:
  r"""Returns Zhu & Gupta's cubic sparsity schedule (gradual magnitude pruning).

  With :math:`t_0` = ``begin_step``, :math:`n\Delta t` = ``end_step -
  begin_step`` and :math:`t` rounded down to the last pruning step:

  .. math::
    s_t = s_f + (s_i - s_f)\left(1 - \frac{t - t_0}{n \Delta t}\right)^3.

  Args:
    target_sparsity: :math:`s_f` (a float or an array, e.g. per layer).
    initial_sparsity: :math:`s_i`.
    begin_step: :math:`t_0`, the first pruning step.
    end_step: the last pruning step, where :math:`s_t = s_f`.
    update_every: :math:`\Delta t`, the steps between prunings.

  Returns:
    ``step -> sparsity``.

  Examples:
    >>> fn = cubic_sparsity(0.9, begin_step=0, end_step=100, update_every=10)
    >>> [round(float(fn(t)), 4) for t in (0, 15, 50, 100, 200)]
    [0.0, 0.2439, 0.7875, 0.9, 0.9]

  References:
    Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning
    for model compression <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  check_positive_int(update_every, "update_every")
  check_non_negative_int(begin_step, "begin_step")
  check_positive_int(end_step, "end_step")
  if end_step <= begin_step:
    raise ValueError(
        f"`end_step` must be greater than `begin_step`, got {end_step!r} <="
        f" {begin_step!r}"
    )
  span = end_step - begin_step

  def schedule(step):
    step = jnp.asarray(step)
    last = begin_step + (step - begin_step) // update_every * update_every
    last = jnp.where(step >= end_step, end_step, last)
    progress = jnp.clip((last - begin_step) / span, 0.0, 1.0)
    return target_sparsity + (initial_sparsity - target_sparsity) * (
        1.0 - progress
    ) ** 3

  return schedule
