"""Paired-by-seed comparisons: mean difference, 95% t-interval, p-value, verdicts.

Two optimizers are compared on the same cells (setting, sparsity) and the same
seeds, hence the same data order, initialisation and initial masks; only seeds
present for both enter. No unpaired rule is used anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


def paired(rows: Sequence[dict[str, Any]], where: dict[str, Any], a: str, b: str,
           value: str = "test_accuracy") -> dict[str, Any] | None:
  """``a − b`` over the seeds both variants have in the rows matching ``where``.

  Returns:
    ``None`` with fewer than 2 pairs, else ``{"n", "mean", "low", "high", "p",
    "seeds", "diffs"}``: the mean difference, its 95% t-interval, the two-sided
    p-value of the paired t-test, and every seed's difference.
  """
  match = [r for r in rows if r.get("variant") in (a, b) and r.get(value) is not None
           and all(r.get(k) == v for k, v in where.items())]
  by = {v: {r["seed"]: float(r[value]) for r in match if r["variant"] == v} for v in (a, b)}
  seeds = sorted(set(by[a]) & set(by[b]))
  if len(seeds) < 2:
    return None
  d = np.array([by[a][s] - by[b][s] for s in seeds])
  mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
  half = float(scipy_stats.t.ppf(0.975, len(d) - 1)) * sem
  p = 1.0 if sem == 0 and mean == 0 else (
      0.0 if sem == 0 else float(2 * scipy_stats.t.sf(abs(mean) / sem, len(d) - 1)))
  return {"n": len(d), "mean": mean, "low": mean - half, "high": mean + half, "p": p,
          "seeds": seeds, "diffs": d.tolist()}


def verdict(diff: dict[str, Any] | None, control: dict[str, Any] | None = None) -> str:
  """A verdict from the numbers: better / worse / no significant difference.

  With ``control`` (SAM − SGD in the same cell), a comparison against SGD is
  only judged where the control's interval lies above 0.
  """
  if diff is None:
    return "not run"
  if control is not None and not (control["low"] > 0):
    return "inconclusive (no positive control: SAM does not beat SGD here)"
  if diff["low"] > 0:
    return "better"
  if diff["high"] < 0:
    return "worse"
  return "no significant difference"


def fmt_diff(diff: dict[str, Any] | None, scale: float = 100.0) -> str:
  """``+0.41 [+0.10, +0.72] pp, p=0.02, n=6``."""
  if diff is None:
    return "—"
  return (f"{scale * diff['mean']:+.2f} [{scale * diff['low']:+.2f}, "
          f"{scale * diff['high']:+.2f}], p={diff['p']:.3f}, n={diff['n']}")
