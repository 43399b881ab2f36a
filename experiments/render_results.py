"""Renders ``RESULTS.md`` from ``RESULTS.in.md``, pasting in the generated tables.

A line ``{{include results/NAME.md}}`` is replaced by that file (or a note
that it was not produced), ``{{zo_batch_fraction digits}}`` by the comparison
of ``--zo-batch-fraction`` 1.0 and 0.25 (RigL + ZO-SAM).

  python experiments/render_results.py
"""

from __future__ import annotations

import re

import common


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


def sharpness_table(dataset: str) -> str:
  """Measured L(θ+ε) − L(θ) (mean over the logged training windows) per run."""
  import json
  from pathlib import Path

  rows = []
  for r in common.read_rows(common.RESULTS / f"grid_{dataset}.jsonl"):
    if r["optimizer"] == "sgd":
      continue
    recs = [json.loads(line) for line in
            (Path(r["workdir"]) / "metrics.jsonl").read_text().splitlines()]
    sh = [x["sharpness"] for x in recs if x["split"] == "train" and "sharpness" in x]
    half = len(sh) // 2
    rows.append(dict(r, sharp_first=sum(sh[:half]) / max(half, 1),
                     sharp_second=sum(sh[half:]) / max(len(sh) - half, 1)))
  methods = [m for m in ("dense", "static", "set", "rigl", "gmp")
             if any(r["sparse_method"] == m for r in rows)]
  sp = sorted({r["sparsity"] for r in rows})
  out = []
  for key, label in (("sharp_first", "first half of training"),
                     ("sharp_second", "second half of training")):
    out += [f"L(θ+ε) − L(θ) on the training minibatch (×1e-3), {label}:", "",
            common.paper_table(rows, methods, sp, optimizers=("sam", "zosam"),
                               value=key, scale=1e3, digits=3), ""]
  return "\n".join(out)


def main() -> None:
  text = (common.EXP / "RESULTS.in.md").read_text()

  def include(m):
    path = common.EXP / m.group(1)
    return path.read_text().strip() if path.exists() else f"({m.group(1)}: not produced)"

  text = re.sub(r"\{\{include (\S+)\}\}", include, text)
  text = re.sub(r"\{\{zo_batch_fraction (\S+)\}\}",
                lambda m: zo_batch_fraction_table(m.group(1)), text)
  text = re.sub(r"\{\{sharpness (\S+)\}\}", lambda m: sharpness_table(m.group(1)), text)
  (common.EXP / "RESULTS.md").write_text(text)


if __name__ == "__main__":
  main()
