"""Reporting: metrics as JSON lines, summary tables and PNG plots.

Every record of ``metrics.jsonl`` is one JSON object with ``step`` and
``split`` (``train`` or ``test``) plus the metrics of that split; plots and
tables are made from those records only, so they can be redrawn from a
finished run with :func:`plot_curves`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import matplotlib
import numpy as np

from zosam_jax import sparse
from zosam_jax.train import files

matplotlib.use("Agg")  # Files only, no display (also on headless machines).
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads the records of a ``metrics.jsonl`` file (``[]`` if missing; a torn
  last line dropped with a warning, :func:`zosam_jax.train.files.read_jsonl`)."""
  return files.read_jsonl(path)


class MetricsWriter:
  """Appends records to ``metrics.jsonl``.

  Args:
    path: the JSON-lines file.
    keep_until_step: when resuming, records after this step (written by the
      interrupted run after its last checkpoint) are dropped first, so the
      file ends up as if the run had never stopped. ``None`` starts afresh.
    to_file: ``False`` keeps the new records in memory only (the processes
      of a multi-process run other than process 0).
  """

  def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None,
               to_file: bool = True):
    self.path, self.to_file = Path(path), to_file
    self._records: list[dict[str, Any]] = []
    if not to_file:
      return
    kept = []
    if keep_until_step is not None:
      kept = [r for r in read_metrics(self.path) if r["step"] <= keep_until_step]
    with open(self.path, "w") as f:
      for record in kept:
        f.write(json.dumps(record) + "\n")

  def write(self, record: dict[str, Any]) -> None:
    """Appends one record and flushes it to disk."""
    if not self.to_file:
      self._records.append(record)
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")

  def records(self) -> list[dict[str, Any]]:
    """The run's records: the file's (or, not to a file, this process's)."""
    return read_metrics(self.path) if self.to_file else list(self._records)


def _fmt(value: Any) -> str:
  if value is None:
    return "—"
  if isinstance(value, float):
    if math.isnan(value) or math.isinf(value):
      return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
  return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
  """A markdown table of ``rows`` with the given ``columns``."""
  lines = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
  return "\n".join(lines)


def summary_table(summary: dict[str, Any]) -> str:
  """The final summary of a run as a two-column markdown table."""
  rows = [{"metric": k, "value": "not evaluated (stopped before the first "
            "evaluation)" if v is None and "test" in k else v}
          for k, v in summary.items() if not isinstance(v, (dict, list))]
  return format_table(rows, ("metric", "value"))


def seeds_table(summaries: Sequence[dict[str, Any]]) -> str:
  """One row per seed of a ``--seeds`` program (markdown)."""
  return format_table(summaries, ("seed", "status", "steps", "final_test_accuracy",
                                  "best_test_accuracy", "final_train_loss", "workdir"))


def _series(records: Iterable[dict[str, Any]], split: str, key: str, x: str = "step"):
  points = [(r[x], r[key]) for r in records if r["split"] == split and key in r]
  return [p[0] for p in points], [p[1] for p in points]


def plot_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike,
                title: str = "") -> None:
  """Plots train/test loss and accuracy against the step into a PNG.

  Args:
    records: the records of ``metrics.jsonl``.
    path: the ``.png`` file to write.
    title: the figure title.
  """
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  for split, style in (("train", "-"), ("test", "o-")):
    ax_loss.plot(*_series(records, split, "loss"), style, label=split, markersize=3)
    ax_acc.plot(*_series(records, split, "accuracy"), style, label=split,
                markersize=3)
  ax_loss.set(xlabel="step", ylabel="cross-entropy loss", yscale="log")
  ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0, 1))
  _finish_figure(fig, (ax_loss, ax_acc), title, path)


def weight_sparsity(params: Any) -> float:
  """Fraction of exact zeros among the weights of rank >= 2 (kernels) of
  host ``params``."""
  kernels = [p for p in jax.tree.leaves(params) if np.ndim(p) >= 2]
  total = sum(k.size for k in kernels)
  return float(sum((k == 0).sum() for k in kernels) / total) if total else 0.0


def write_sparsity(params: Any, path: str | os.PathLike) -> None:
  """Writes the per-layer density table of host ``params`` (their nonzeros,
  :func:`zosam_jax.sparse.sparsity_report`) to ``path``."""
  Path(path).write_text(f"{sparse.sparsity_report(params)}\n")


COMPARISON_COLUMNS = ("optimizer", "final_test_accuracy", "best_test_accuracy",
                      "final_test_loss", "final_train_loss", "weight_sparsity", "steps",
                      "train_seconds", "steps_per_second", "relative_step_time")


def plot_comparison(runs: dict[str, Sequence[dict[str, Any]]],
                    path: str | os.PathLike, title: str = "") -> None:
  """Test accuracy of several runs against the step and the training time.

  Args:
    runs: optimizer name -> its ``metrics.jsonl`` records.
    path: the ``.png`` file to write.
    title: the figure title.
  """
  fig, (ax_step, ax_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  # Distinct markers and line styles: equal curves stay visible on each other.
  styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]
  for i, (name, records) in enumerate(runs.items()):
    marker, line = styles[i % len(styles)]
    kw = dict(label=name, marker=marker, linestyle=line, markersize=5 - i % 3,
              markerfacecolor="none" if i % 2 else None)
    ax_step.plot(*_series(records, "test", "accuracy"), **kw)
    ax_time.plot(*_series(records, "test", "accuracy", x="train_seconds"), **kw)
  ax_step.set(xlabel="step", ylabel="test accuracy")
  ax_time.set(xlabel="training wall-clock time (s; compilation included, "
                     "evaluation excluded)")
  _finish_figure(fig, (ax_step, ax_time), title, path)


def write_comparison(summaries: dict[str, dict[str, Any]],
                     runs: dict[str, Sequence[dict[str, Any]]],
                     workdir: str | os.PathLike) -> dict[str, Any]:
  """Writes ``comparison.md``, ``comparison.json`` and ``comparison.png``.

  Args:
    summaries: optimizer name -> the summary of its run.
    runs: optimizer name -> its metric records.
    workdir: where to write.

  Returns:
    The comparison as a dict: ``{"rows": [...], "table": markdown,
    "sparsity": the first sparse member's per-layer densities or ""}``.
  """
  workdir = Path(workdir)
  reference = summaries.get("sgd") or next(iter(summaries.values()))
  rows = []
  for name, s in summaries.items():
    row = {"optimizer": name, **{c: s.get(c) for c in COMPARISON_COLUMNS[1:]}}
    if reference.get("seconds_per_step"):
      row["relative_step_time"] = s["seconds_per_step"] / reference["seconds_per_step"]
    rows.append(row)
  table = format_table(rows, COMPARISON_COLUMNS)
  ref_name = "sgd" if "sgd" in summaries else rows[0]["optimizer"]
  sparsity = _sparsity_of(summaries)
  (workdir / "comparison.md").write_text(
      f"{table}\n\nrelative_step_time: seconds per training step relative to "
      f"{ref_name} (compilation excluded).\n" + (f"\n{sparsity}" if sparsity else ""))
  result = {"rows": rows, "table": table, "sparsity": sparsity}
  (workdir / "comparison.json").write_text(json.dumps(result, indent=2))
  plot_comparison(runs, workdir / "comparison.png", title="test accuracy")
  return result


def _sparsity_of(summaries: dict[str, dict[str, Any]]) -> str:
  """The first sparse member's ``sparsity.md``, titled, or ``""``."""
  for name, s in summaries.items():
    path = Path(s.get("workdir", "")) / "sparsity.md"
    if s.get("sparse_method", "dense") != "dense" and path.exists():
      return (f"Final weights of {name}, {s['sparse_method']} at {s['sparsity']:.0%} "
              f"(every member keeps these densities per layer):\n\n{path.read_text()}")
  return ""


def _finish_figure(fig, axes, title: str, path: str | os.PathLike) -> None:
  """Grid and legend on every axis, the title, then writes and closes."""
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
