"""Best against best (issue 34): every method at the radius its validation split chooses.

For each setting of :data:`cells.BEST_ATTEMPTS`, in order:

1. SAM's radius grid (:data:`cells.RADII`, grown at an edge while the best
   radius is there, :func:`radii`) on the selection seeds
   (:data:`cells.SELECTION_SEEDS`); its radius is the one of highest mean final
   validation accuracy (:func:`chosen_radius`);
2. SGD and SAM at that radius on the six fresh :data:`cells.SEEDS`: the
   positive control (SAM − SGD, paired by seed, 95% interval above 0); if it
   fails, the setting's next attempt, if any, else the setting stops there;
3. for every other method of :data:`cells.TUNED`, in declared order, the same
   grid, then the method at its own chosen radius on the six seeds (and the
   controls declared with it, :data:`cells.TUNED_CONTROLS`, on the same seeds).

Only validation accuracy chooses; test accuracy is reported, never read here
except by the control's verdict, which compares the chosen SAM with SGD on
seeds that chose nothing. With ``shard=(i, n)``, n processes share each step
and wait for each other's rows before choosing; a process that would wait
runs cells the next step needs whatever the choice: SGD's during SAM's grid,
the next method's first grid during a method's (never a ZO cell before the
positive control has passed).

  python experiments/study.py best --shard 0/2 & python experiments/study.py best --shard 1/2
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

import cells


def variant(method: str, rho: float) -> str:
  """The variant name of ``method`` at radius ``rho``, e.g. ``sam-rho0.1``."""
  return f"{method}-rho{rho}"


def grid(setting: str, variants) -> list[tuple[str, float, str, int]]:
  """The selection cells of ``variants``: each on every selection seed."""
  return [(setting, 0.9, v, seed) for seed in cells.SELECTION_SEEDS for v in variants]


def first_grid(setting: str, method: str) -> list[tuple[str, float, str, int]]:
  """The selection cells of one method's grid before it grows (:data:`cells.RADII`)."""
  return grid(setting, [variant(method, rho) for rho in cells.RADII])


def radii(rows, setting: str, method: str) -> tuple[float, ...]:
  """The method's grid: :data:`cells.RADII`, and while its best radius is the
  smallest (largest) of the grid, half (twice) that one too, at most
  :func:`cells.edge_steps` each way. Stops at the first radius still running."""
  out = list(cells.RADII)
  down, up = cells.edge_steps(method)
  while True:
    means = validation_means(rows, setting, method, out)
    if any(v is None for v in means.values()):
      return tuple(out)
    best = _best(means)
    if best == out[0] and out.index(cells.RADII[0]) < down:
      out.insert(0, out[0] / 2)
    elif best == out[-1] and len(out) - 1 - out.index(cells.RADII[-1]) < up:
      out.append(out[-1] * 2)
    else:
      return tuple(out)


def _best(means: dict[float, float]) -> float:
  """The radius of highest mean (the smaller on a tie)."""
  return max(means, key=lambda rho: (means[rho], -rho))


class Rows(tuple):
  """The protocol's rows (dicts), frozen: what :func:`per_rows` computes from
  them is kept with them (a report asks for chosen radii thousands of times,
  a grid process a few, on rows it has just read)."""


def per_rows(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn(rows, *args)`` computed once per :class:`Rows` and ``args`` (the
  rows are frozen, so the answer cannot go stale); anew for any other rows.
  Its answers are shared: callers read them, never change them."""

  @functools.wraps(fn)
  def cached(rows, *args):
    if not isinstance(rows, Rows):
      return fn(rows, *args)
    memo = rows.__dict__.setdefault("_answers", {})
    key = (fn.__qualname__, *args)
    if key not in memo:
      memo[key] = fn(rows, *args)
    return memo[key]

  return cached


@per_rows
def selection_accuracies(rows) -> dict[tuple[str, str], list[float]]:
  """The selection seeds' final validation accuracies by ``(setting, variant)``."""
  index: dict[tuple[str, str], list[float]] = {}
  for r in rows:
    if r["seed"] in cells.SELECTION_SEEDS:
      index.setdefault((r["setting"], r["variant"]), []).append(r["validation_accuracy"])
  return index


def validation_means(rows, setting: str, method: str, grid_radii=None
                     ) -> dict[float, float | None]:
  """Mean final validation accuracy over the selection seeds, per radius of
  ``grid_radii`` (default: :func:`radii`); ``None`` until every selection
  seed of that radius is in."""
  values = selection_accuracies(rows)
  means = {}
  for rho in radii(rows, setting, method) if grid_radii is None else grid_radii:
    found = values.get((setting, variant(method, rho)), [])
    means[rho] = float(np.mean(found)) if len(found) == len(cells.SELECTION_SEEDS) else None
  return means


@per_rows
def chosen_radius(rows, setting: str, method: str) -> float | None:
  """The radius of highest mean validation accuracy (the smaller on a tie), or
  ``None`` while the grid is incomplete."""
  means = validation_means(rows, setting, method)
  if any(v is None for v in means.values()):
    return None
  return _best(means)


def finals(setting: str, method: str, rho: float) -> list[tuple[str, float, str, int]]:
  """The six paired test cells of ``method`` at its chosen radius."""
  return [(setting, 0.9, variant(method, rho), seed) for seed in cells.SEEDS]


def sgd_cells(setting: str) -> list[tuple[str, float, str, int]]:
  return [(setting, 0.9, "sgd", seed) for seed in cells.SEEDS]


def control_variant(control: str, sam_rho: float) -> str:
  """A declared control's variant: SAM's chosen radius appended where it runs there."""
  return variant(control, sam_rho) if control in cells.AT_SAM_RADIUS else control


def control_cells(setting: str, method: str, sam_rho: float
                  ) -> list[tuple[str, float, str, int]]:
  """The six fresh seeds of each control declared with ``method``
  (:data:`cells.TUNED_CONTROLS`), if any."""
  return [(setting, 0.9, control_variant(control, sam_rho), seed)
          for control in cells.TUNED_CONTROLS.get(method, ()) for seed in cells.SEEDS]


def tune(methods, setting: str, run) -> dict[str, float]:
  """The methods' chosen radii, once ``run(variants)`` has run (and returned
  the rows of) the selection seeds of every variant of their grids: the grids
  of :func:`radii`, grown at an edge while the best radius is there, one
  ``run`` per growth. Shared by the CPU protocol (cells) and the GPU one
  (``--seeds`` programs, :mod:`gpu_protocol`)."""
  ran, rows = set(), list(cells.all_rows().values())
  while True:
    todo = [variant(m, rho) for m in methods for rho in radii(rows, setting, m)
            if variant(m, rho) not in ran]
    if not todo:
      return {m: chosen_radius(rows, setting, m) for m in methods}
    rows = run(todo)
    ran.update(todo)


def _tune(methods, setting: str, dataset, shard, ahead=()) -> dict[str, float]:
  """:func:`tune` with cells (sharing the shards). While it waits for another
  process's cells, it runs those of ``ahead`` (:func:`cells.wait_for_rows`)."""
  def run(variants):
    todo = grid(setting, variants)
    cells.run_cells(todo, dataset, shard=shard)
    cells.wait_for_rows(todo, dataset, ahead=ahead)
    return list(cells.all_rows().values())
  return tune(methods, setting, run)


def control_passes(rows, setting: str, sam_rho: float) -> bool | None:
  """SAM at its chosen radius − SGD over the six seeds: interval above 0?
  ``None`` while seeds are missing."""
  return cells.control_passes(rows, setting, 0.9, sam=variant("sam", sam_rho))


def run_setting(attempts: tuple[str, ...], shard=(0, 1)) -> str | None:
  """Runs one setting's protocol (steps 1-3); the attempt that passed, or None."""
  from zosam_jax.train import load_dataset  # pylint: disable=import-outside-toplevel

  for setting in attempts:
    ds = load_dataset(cells.SETTINGS[setting]["dataset"], cifar10_test="jpeg_10k")
    sam_rho = _tune(("sam",), setting, ds, shard, ahead=sgd_cells(setting))["sam"]
    control = sgd_cells(setting) + finals(setting, "sam", sam_rho)
    cells.run_cells(control, ds, shard=shard)
    if not control_passes(cells.wait_for_rows(control, ds), setting, sam_rho):
      print(f"{setting}: SAM at rho {sam_rho} does not beat SGD: no positive control",
            flush=True)
      continue
    others = [m for m in cells.TUNED if m != "sam"]  # In declared order.
    for method, after in zip(others, [*others[1:], None]):
      rho = _tune((method,), setting, ds, shard,
                  ahead=first_grid(setting, after) if after else ())[method]
      cells.run_cells(finals(setting, method, rho) + control_cells(setting, method, sam_rho),
                      ds, shard=shard)
    return setting
  return None


def run(shard=(0, 1), setting: str | None = None) -> list[str | None]:
  """Every setting of :data:`cells.BEST_ATTEMPTS`, in order; or only the one
  whose attempts include ``setting`` (the settings' protocols are independent:
  no choice in one reads another's rows)."""
  return [run_setting(attempts, shard) for attempts in cells.BEST_ATTEMPTS
          if setting is None or setting in attempts]


def chosen(rows) -> list[dict[str, Any]]:
  """Per (setting, method) with a complete grid: the validation means and the
  chosen radius (for RESULTS.md)."""
  out = []
  for attempts in cells.BEST_ATTEMPTS:
    for setting in attempts:
      for method in cells.TUNED:
        means = validation_means(rows, setting, method)
        if any(v is not None for v in means.values()):
          out.append(dict(setting=setting, method=method, means=means,
                          rho=chosen_radius(rows, setting, method)))
  return out
