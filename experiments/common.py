"""Shared pieces of the experiment scripts: grid running, aggregation, tables.

Every run goes through the training program's ``train_and_evaluate`` in this
process (one Python start-up for a whole grid). A run whose ``summary.json``
says ``finished`` is not trained again, so an interrupted grid can be
restarted with the same command. Run folders live under ``$ZOSAM_RUNS``
(default ``runs/experiments``, git-ignored); only the small aggregated
results are written into ``experiments/results``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments"
RESULTS = Path(os.environ.get("ZOSAM_RESULTS", EXP / "results"))
FIGURES = Path(os.environ.get("ZOSAM_FIGURES", EXP / "figures"))
RUNS = Path(os.environ.get("ZOSAM_RUNS", REPO / "runs" / "experiments"))

OPTIMIZERS = ("sgd", "sam", "zosam")
OPT_LABEL = {"sgd": "SGD", "sam": "SAM", "zosam": "ZO-SAM"}
METHOD_LABEL = {"dense": "Dense", "static": "Static (ERK)", "set": "SET",
                "rigl": "RigL", "gmp": "GMP"}
def pyplot():
  """matplotlib's pyplot on the Agg backend (files only, also on headless machines)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def passes_per_step(optimizer: str, num_dirs: int = 1, estimator: str = "central",
                    zo_prior: str = "none", refresh_every: int | None = None,
                    ) -> tuple[float, float]:
  """``(backward, forward)`` passes of one training step: :func:`zosam_jax.step_passes`."""
  from zosam_jax import step_passes

  return step_passes(optimizer, num_dirs, estimator, zo_prior, refresh_every)


def run_name(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> str:
  """A stable folder name, e.g. ``digits-rigl-s0.95-zosam-lr=0.1-seed0``.

  Dataset, sparse method, sparsity and optimizer come from ``base`` updated by
  ``overrides``; the other overridden fields are spelled out.
  """
  full = dict(base or {}, **overrides)
  parts = [full.get("dataset", "digits"), full.get("sparse_method", "dense"),
           f"s{full.get('sparsity', 0.0)}", full.get("optimizer", "zosam")]
  skip = {"dataset", "sparse_method", "sparsity", "optimizer", "seed"}
  for k in sorted(overrides):
    if k not in skip:
      parts.append(f"{k}={overrides[k]}")
  parts.append(f"seed{overrides.get('seed', 0)}")
  return "-".join(str(p) for p in parts)


def run_one(base: dict[str, Any], overrides: dict[str, Any], grid: str,
            dataset=None, runs_root: Path | None = None) -> dict[str, Any]:
  """Trains one configuration (or reads its finished summary) and returns a row."""
  from zosam_jax.train import TrainConfig, train_and_evaluate

  cfg_dict = dict(base, **overrides)
  workdir = (runs_root or RUNS) / grid / run_name(overrides, base)
  summary_path = workdir / "summary.json"
  summary = None
  if summary_path.exists():
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "finished":
      summary = None
  if summary is None:
    cfg = TrainConfig(**dict(cfg_dict, progress=False, overwrite=True,
                             workdir=str(workdir)))
    t0 = time.perf_counter()
    summary = train_and_evaluate(cfg, workdir, dataset=dataset)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    summary_path.write_text(json.dumps(summary, indent=2))
  optimizer = cfg_dict.get("optimizer", "zosam")
  bwd, fwd = passes_per_step(optimizer, cfg_dict.get("num_dirs", 1),
                             cfg_dict.get("estimator", "central"))
  row = {k: cfg_dict.get(k) for k in sorted(cfg_dict)}
  row.update(
      optimizer=optimizer, sparse_method=cfg_dict.get("sparse_method", "dense"),
      sparsity=cfg_dict.get("sparsity", 0.0), seed=cfg_dict.get("seed", 0),
      test_accuracy=summary["final_test_accuracy"],
      test_loss=summary["final_test_loss"],
      train_loss=summary["final_train_loss"],
      train_seconds=summary["train_seconds"],
      seconds_per_step=summary["seconds_per_step"],
      steady_seconds=summary["seconds_per_step"] * summary["steps"],
      steps=summary["steps"], backward_passes=bwd * summary["steps"],
      forward_passes=fwd * summary["steps"],
      weight_sparsity=summary["weight_sparsity"], workdir=_relative(workdir))
  return row


def _relative(path: Path) -> str:
  """``path`` relative to the repository when inside it (rows are committed)."""
  try:
    return str(Path(path).resolve().relative_to(REPO))
  except ValueError:
    return str(path)


def run_grid(base: dict[str, Any], overrides_list: Iterable[dict[str, Any]],
             grid: str, out: Path, dataset=None) -> list[dict[str, Any]]:
  """Runs every configuration, appending each row to ``out`` (JSON lines)."""
  out.parent.mkdir(parents=True, exist_ok=True)
  done = {r["workdir"]: r for r in read_rows(out)} if out.exists() else {}
  rows = []
  for overrides in overrides_list:
    t0 = time.perf_counter()
    row = run_one(base, overrides, grid, dataset=dataset)
    rows.append(row)
    if row["workdir"] not in done:
      append_row(out, row)
      done[row["workdir"]] = row
    print(f"[{grid}] {run_name(overrides, base)}: acc={row['test_accuracy']:.4f} "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
  return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
  """Reads a JSON-lines results file (the last row per workdir wins)."""
  rows: dict[str, dict[str, Any]] = {}
  for line in Path(path).read_text().splitlines():
    if line.strip():
      r = json.loads(line)
      rows[r.get("workdir", str(len(rows)))] = r
  return list(rows.values())


def append_row(path: Path, row: dict[str, Any]) -> None:
  """Appends ``row`` as one JSON line, under an exclusive lock of the file:
  several processes (shards, or cells on one GPU) may share a rows file."""
  import fcntl  # pylint: disable=import-outside-toplevel

  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(json.dumps(row) + "\n")
    f.flush()


def read_rows_any(path: Path) -> list[dict[str, Any]]:
  """Reads a JSON-lines file, keeping every row."""
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def aggregate(rows: Sequence[dict[str, Any]], keys: Sequence[str],
              value: str) -> dict[tuple, dict[str, float]]:
  """Groups ``rows`` by ``keys`` and returns mean, std (ddof=1) and n of ``value``."""
  groups: dict[tuple, list[float]] = {}
  for r in rows:
    if r.get(value) is None:
      continue
    groups.setdefault(tuple(r[k] for k in keys), []).append(float(r[value]))
  stats = {}
  for k, v in groups.items():
    a = np.asarray(v, np.float64)
    stats[k] = {"mean": float(a.mean()),
                "std": float(a.std(ddof=1)) if a.size > 1 else float("nan"),
                "n": int(a.size)}
  return stats


def fmt(stat: dict[str, float] | None, scale: float = 100.0, digits: int = 2) -> str:
  """``mean ± std`` (scaled), or ``—`` when missing."""
  if stat is None:
    return "—"
  std = stat["std"]
  s = f"{stat['mean'] * scale:.{digits}f}"
  return s if math.isnan(std) else f"{s} ± {std * scale:.{digits}f}"


def paper_table(rows: Sequence[dict[str, Any]], methods: Sequence[str],
                sparsities: Sequence[float], optimizers: Sequence[str] = OPTIMIZERS,
                value: str = "test_accuracy", scale: float = 100.0,
                digits: int = 2) -> str:
  """Markdown table in the paper's layout: rows = sparse method (one block per
  optimizer), columns = sparsity."""
  stats = aggregate(rows, ("sparse_method", "optimizer", "sparsity"), value)
  head = "| method | optimizer | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |"
  lines = [head, "|" + "---|" * (2 + len(sparsities))]
  for m in methods:
    for o in optimizers:
      cells = [fmt(stats.get((m, o, s)), scale, digits) for s in sparsities]
      if all(c == "—" for c in cells):
        continue
      lines.append(f"| {METHOD_LABEL.get(m, m)} | {OPT_LABEL.get(o, o)} | "
                   + " | ".join(cells) + " |")
  return "\n".join(lines)


def cost_table(rows: Sequence[dict[str, Any]], methods: Sequence[str],
               sparsities: Sequence[float]) -> str:
  """Markdown table: wall-clock and passes per run, per method and optimizer."""
  lines = ["| method | optimizer | sparsity | train s (incl. compile) | steady s/step (ms) "
           "| backward passes | forward passes |", "|---|---|---|---|---|---|---|"]
  t = aggregate(rows, ("sparse_method", "optimizer", "sparsity"), "train_seconds")
  sps = aggregate(rows, ("sparse_method", "optimizer", "sparsity"), "seconds_per_step")
  for m in methods:
    for o in OPTIMIZERS:
      for s in sparsities:
        key = (m, o, s)
        if key not in t:
          continue
        ex = next(r for r in rows if (r["sparse_method"], r["optimizer"], r["sparsity"]) == key)
        lines.append(f"| {METHOD_LABEL.get(m, m)} | {OPT_LABEL[o]} | {s:.0%} | "
                     f"{fmt(t[key], 1, 1)} | {fmt(sps[key], 1000, 2)} | "
                     f"{ex['backward_passes']} | {ex['forward_passes']} |")
  return "\n".join(lines)


def validation_split(ds, fraction: float = 0.2, seed: int = 0):
  """Carves a stratified validation set out of ``ds``'s training set.

  Returns a :class:`zosam_jax.train.Dataset` whose ``x_test``/``y_test`` are the
  validation examples (the real test set is not touched).
  """
  from sklearn.model_selection import train_test_split

  x_tr, x_va, y_tr, y_va = train_test_split(
      ds.x_train, ds.y_train, test_size=fraction, random_state=seed,
      stratify=ds.y_train)
  xf = x_tr.astype(np.float64)
  mean = xf.mean(axis=(0, 1, 2)).astype(np.float32)
  std = xf.std(axis=(0, 1, 2)).astype(np.float32)
  return ds._replace(x_train=x_tr, y_train=y_tr, x_test=x_va, y_test=y_va,
                     mean=mean, std=std, note=ds.note + f"; validation split {fraction}")
