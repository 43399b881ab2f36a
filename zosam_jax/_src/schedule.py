"""When to perturb: the ascent schedule of the sharpness-aware transformations.

A step is "on" (the sharpness-aware step: ascent, ε, the gradient at θ+ε) or
"off" (the base optimizer alone on the gradient at θ: one backward pass,
nothing else, bit for bit what ``base_tx`` does). ``start`` (a step) leaves
every step before it off, SAM in the late phase only (Zhou et al. 2025);
``every`` turns on one step in ``every`` (the first at ``start``), MosaicML
composer's SAM ``interval``; the two compose.
"""

import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp

from zosam_jax._src import checks


def ascent_on(count: Any, *, start: Any = None, every: Any = None) -> Any:
  r"""Whether step ``count`` of an ascent schedule takes the sharpness-aware step.

  .. math::
    \mathrm{on}(t) = [t \ge s_0] \wedge [(t - s_0) \bmod k = 0]

  with :math:`s_0` = ``start`` (0 when ``None``) and :math:`k` = ``every``
  (1 when ``None``). Python integers give a Python bool, which a training
  loop passes as the static ``update(..., ascent=...)`` flag (one compiled
  step per branch); arrays give a scalar bool array, which the
  transformations use under ``jax.lax.cond`` when no flag is passed.

  Args:
    count: the step, counted from 0 (the transformation's ``state.count``);
      a Python int or an integer array of shape ``()``.
    start: :math:`s_0`, the first step that may be on; ``None``: 0.
    every: :math:`k`, the period of the on steps from ``start``; ``None``: 1.

  Returns:
    A Python bool for Python ints, else a bool array of shape ``()``.

  Examples:
    >>> from zosam_jax import ascent_on
    >>> [t for t in range(10) if ascent_on(t, start=4, every=3)]
    [4, 7]
    >>> bool(ascent_on(3, start=4)), bool(ascent_on(9, every=3))
    (False, True)

  References:
    Zhou et al., `Sharpness-Aware Minimization Efficiently Selects Flatter
    Minima Late in Training <https://arxiv.org/abs/2410.10373>`_, ICLR 2025
  """
  first = 0 if start is None else start
  period = 1 if every is None else every
  if all(isinstance(x, numbers.Integral) for x in (count, first, period)):
    return bool(count >= first and (count - first) % period == 0)
  count = jnp.asarray(count)
  return jnp.logical_and(count >= first, (count - first) % period == 0)


def ascent_steps(num_steps: int, *, start: Optional[int] = None,
                 every: Optional[int] = None) -> int:
  """The number of on steps among the first ``num_steps`` steps of a schedule.

  Args:
    num_steps: the steps of the run.
    start: as in :func:`ascent_on`.
    every: as in :func:`ascent_on`.

  Returns:
    An int, ``num_steps`` without a schedule.

  Examples:
    >>> from zosam_jax import ascent_steps
    >>> ascent_steps(10, start=4, every=3), ascent_steps(10), ascent_steps(3, start=5)
    (2, 10, 0)

  References:
    Foret et al., `Sharpness-Aware Minimization for Efficiently Improving
    Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021
  """
  first = 0 if start is None else start
  period = 1 if every is None else every
  remaining = num_steps - first
  return 0 if remaining <= 0 else -(-remaining // period)


def check_schedule(start: Any, every: Any) -> None:
  """``ascent_start`` a non-negative int, ``ascent_every`` a positive one (or
  ``None``; arrays, as under ``optax.inject_hyperparams``, are not checked)."""
  if isinstance(start, numbers.Integral) and not isinstance(start, bool):
    if start < 0:
      raise ValueError(f"`ascent_start` must be a step >= 0 (or None), got {start!r}")
  elif start is not None and not isinstance(start, jax.Array):
    raise TypeError(f"`ascent_start` must be an int step (or None), got {start!r}")
  if not isinstance(every, jax.Array):
    checks.check_positive_int(every, "ascent_every", allow_none=True)


def check_flag(name: str, ascent: Optional[bool], scheduled: bool) -> None:
  """``update(..., ascent=...)`` is a Python bool, and only with a schedule."""
  if ascent is None:
    return
  if not isinstance(ascent, bool):
    raise TypeError(f"{name}: `ascent` must be a Python bool or None (it is static), "
                    f"got {ascent!r}")
  if not scheduled:
    raise ValueError(f"{name}: `ascent` chooses the on or off step of an ascent "
                     "schedule, which is not set: pass `ascent_start=` or "
                     "`ascent_every=` to the transformation")
