"""Renders ``RESULTS.md`` from ``RESULTS.in.md``, pasting in the generated tables.

A line ``{{include results/NAME.md}}`` is replaced by that file (or a note
that it was not produced), ``{{zo_batch_fraction digits}}`` by the comparison
of ``--zo-batch-fraction`` 1.0 and 0.25 (RigL + ZO-SAM), ``{{quick_tier digits}}`` by
the quick tier's paired differences, ``{{study fashion_mnist}}``
by the tables and verdicts of ``study.py``'s rows (:mod:`study_report`; for
CIFAR-10 with the corruption robustness of :mod:`study_robustness`), ``{{ascents}}``
by the ascent variants' gains and costs (:mod:`ascents_report`). Reads
committed files only.

  python experiments/render_results.py
"""

from __future__ import annotations

import re

import ascents_report
import common
import stats
import study
import study_report
import study_robustness


def zo_batch_fraction_table(dataset: str) -> str:
  full = [r for r in common.read_rows(common.RESULTS / f"grid_{dataset}.jsonl")
          if r["sparse_method"] == "rigl" and r["optimizer"] in ("zosam", "sgd")]
  path = common.RESULTS / f"grid_{dataset}_zobf0.25.jsonl"
  if not path.exists():
    return "(not produced)"
  part = common.read_rows(path)
  rows = [dict(r, variant="SGD" if r["optimizer"] == "sgd" else "ZO-SAM, fraction 1.0")
          for r in full] + [dict(r, variant="ZO-SAM, fraction 0.25") for r in part]
  acc = common.aggregate(rows, ("variant", "sparsity"), "test_accuracy")
  sps = common.aggregate(rows, ("variant", "sparsity"), "seconds_per_step")
  sp = sorted({r["sparsity"] for r in part})
  lines = ["| variant | " + " | ".join(f"{s:.0%} acc. (%)" for s in sp)
           + " | " + " | ".join(f"{s:.0%} ms/step" for s in sp) + " |",
           "|---|" + "---|" * (2 * len(sp))]
  for v in ("SGD", "ZO-SAM, fraction 1.0", "ZO-SAM, fraction 0.25"):
    lines.append(f"| RigL + {v} | " + " | ".join(common.fmt(acc.get((v, s))) for s in sp)
                 + " | " + " | ".join(common.fmt(sps.get((v, s)), 1000, 2) for s in sp)
                 + " |")
  return "\n".join(lines)


_QUICK_PAIRS = (("sam", "sgd"), ("zosam", "sgd"), ("zosam", "sam"))
_QUICK_LABEL = {"sgd": "SGD", "sam": "SAM", "zosam": "ZO-SAM"}


def quick_tier_table(dataset: str) -> str:
  """SAM − SGD, ZO-SAM − SGD and ZO-SAM − SAM of the quick tier's grid, paired by
  seed per (sparse method, sparsity); ZO-SAM − SGD is judged only where SAM
  beats SGD (:func:`stats.verdict`)."""
  rows = [dict(r, variant=r["optimizer"])
          for r in common.read_rows(common.RESULTS / f"grid_{dataset}.jsonl")]
  lines = ["| method | sparsity | comparison | difference (pp) [95% CI], p, n | verdict |",
           "|---|---|---|---|---|"]
  for method, sparsity in sorted({(r["sparse_method"], r["sparsity"]) for r in rows}):
    where = dict(sparse_method=method, sparsity=sparsity)
    control = stats.paired(rows, where, "sam", "sgd")
    for a, b in _QUICK_PAIRS:
      d = stats.paired(rows, where, a, b)
      verdict = stats.verdict(d, control if (a, b) == ("zosam", "sgd") else None)
      lines.append(f"| {method} | {sparsity:.0%} | {_QUICK_LABEL[a]} − {_QUICK_LABEL[b]} | "
                   f"{stats.fmt_diff(d)} | {verdict} |")
  return "\n".join(lines)


def study_section(dataset: str) -> str:
  """The tables and verdicts of ``study.py``'s rows of one dataset."""
  robust = (study_robustness.read_rows() if study.DATASETS[dataset].get("robustness")
            else ())
  return study_report.render(study.read_rows(dataset), dataset, robust)


def render() -> str:
  """RESULTS.md's text, from ``RESULTS.in.md`` and the committed results."""
  text = (common.EXP / "RESULTS.in.md").read_text()

  def include(m):
    path = common.EXP / m.group(1)
    return path.read_text().strip() if path.exists() else f"({m.group(1)}: not produced)"

  text = re.sub(r"\{\{include (\S+)\}\}", include, text)
  text = re.sub(r"\{\{zo_batch_fraction (\S+)\}\}",
                lambda m: zo_batch_fraction_table(m.group(1)), text)
  text = re.sub(r"\{\{study (\S+)\}\}", lambda m: study_section(m.group(1)), text)
  text = re.sub(r"\{\{quick_tier (\S+)\}\}", lambda m: quick_tier_table(m.group(1)), text)
  text = text.replace("{{ascents}}", ascents_report.render(study.read_rows("fashion_mnist")))
  return text


def main() -> None:
  (common.EXP / "RESULTS.md").write_text(render())


if __name__ == "__main__":
  main()
