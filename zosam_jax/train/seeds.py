"""K seeds of one configuration trained as one program (``--seeds``).

The K train states are stacked along a leading seed axis and one jitted step
maps the single-seed step over it with ``jax.vmap``: each seed keeps its own
initial weights, masks, data order, augmentation and ZO-SAM key, so each
seed's run is its single-seed run, computed in a batched program. Step
counters that every seed shares (the step, optax's and the sparse methods'
counts) stay unmapped, so a mask update or schedule branch chosen by
``jax.lax.cond`` on them stays a branch, not a select of both.

References:
  Bradbury et al., "JAX: composable transformations of Python+NumPy
  programs" (``jax.vmap``), 2018.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zosam_jax.train import steps as steps_lib


def parse_seeds(text: str) -> tuple[int, ...]:
  """``"0-5"``, ``"0,1,2"`` or ``"0-2,7"`` as a tuple of seeds.

  Raises:
    ValueError: for an empty list, a part that is not ``N`` or ``N-M`` with
      ``N <= M``, or a seed given twice; the message says what was given.
  """
  seeds: list[int] = []
  parts = [p.strip() for p in text.split(",")]
  if not any(parts):
    raise ValueError("--seeds needs at least one seed, e.g. --seeds 0-5 or 0,1,2")
  for part in parts:
    low, _, high = part.partition("-")
    if not (low.isdigit() and (high.isdigit() or not high)) or (
        high and int(high) < int(low)):
      raise ValueError(f"--seeds takes N, N-M (N <= M) or a comma-separated list of "
                       f"them, e.g. 0-5 or 0,1,2; got {part!r} in {text!r}")
    seeds += range(int(low), int(high or low) + 1)
  repeated = sorted({s for s in seeds if seeds.count(s) > 1})
  if repeated:
    raise ValueError(f"--seeds lists seed {repeated[0]} more than once in {text!r}")
  return tuple(seeds)


def _shared(leaves: Sequence[Any]) -> bool:
  first = leaves[0]
  return (np.ndim(first) == 0 and jnp.issubdtype(first.dtype, jnp.integer)
          and all(int(x) == int(first) for x in leaves[1:]))


def state_axes(states: Sequence[steps_lib.TrainState]) -> steps_lib.TrainState:
  """The seed axis of each leaf: ``None`` for the integer scalars all seeds
  share (step counters), 0 for the rest (the metric sums always mapped: a
  seed's first non-finite step is its own)."""
  axes = jax.tree.map(lambda *xs: None if _shared(xs) else 0, *states)
  return axes._replace(metrics=jax.tree.map(lambda _: 0, states[0].metrics))


def stack(states: Sequence[Any], axes: Any) -> Any:
  """One state (or part of one) with a leading seed axis where ``axes`` says 0."""
  return jax.tree.map(lambda a, *xs: xs[0] if a is None else jnp.stack(xs),
                      axes, *states, is_leaf=lambda a: a is None)


def select(stacked: steps_lib.TrainState, axes: Any, i: int) -> steps_lib.TrainState:
  """Seed ``i``'s state out of a stacked one."""
  return jax.tree.map(lambda a, x: x if a is None else x[i], axes, stacked,
                      is_leaf=lambda a: a is None)
