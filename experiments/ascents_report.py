"""The ascent variants (issue 25): gain over SGD against step cost, from the rows.

For each declared setting with a positive control (:data:`SETTINGS`) and each
variant of :data:`VARIANTS`: the paired difference to SGD and to SAM (95%
t-interval, p, n), the fraction of SAM's gain it recovers, its step time ÷
SGD's and ÷ SAM's, and the goal's verdict. Accuracies come from
``results/study_fashion_mnist.jsonl``; step times from
``benchmarks/results/step_cost_ascents_cpu.json`` (and ``..._sam_ascent_cpu.json``
for SAM's ascent on part of the minibatch; the study's two models at its
batch, every method timed interleaved in one process on this machine: the
training runs' own seconds per step were measured under whatever load each
session had, so they do not compare). Its figure now shows each method at its
chosen radius (:mod:`best_report`).
"""

from __future__ import annotations

import json

import common
import stats
import cells

#: The issue's two settings (Fashion-MNIST, RigL 90%), in the figure's order.
SETTINGS = (("cnn-10k-noise40", 0.9), ("mlp-10k", 0.9))
#: The benchmark's model of each setting, and its method of each variant.
#: Each method's ratio comes from the first file that times both methods.
COSTS = tuple(common.REPO / "benchmarks" / "results" / f"step_cost_{name}_cpu.json"
              for name in ("ascents", "sam_ascent"))
COST_MODEL = {"cnn-10k-noise40": "fashion_cnn", "mlp-10k": "fashion_mlp"}
COST_METHOD = {"sgd": "sgd", "sam": "sam", "zosam": "zosam m=1 central gaussian ravel=True",
               "zosam-prior": "zosam prior m=0",
               "zosam-prior-cap4": "zosam prior m=0 radius_cap=4",
               "zosam-prior-cap4-half": "zosam prior m=0 radius_cap=4 zo_batch_fraction=0.5",
               "zosam-prior-noprobe": "zosam prior m=0 probe=False",
               "zosam-prior-noprobe-head": "zosam prior m=0 probe=False exact_head",
               # The same compiled step: --repeat-batches changes only its indices.
               "zosam-prior-noprobe-repeat2": "zosam prior m=0 probe=False",
               "zosam-prior-refresh5": "zosam prior m=0 refresh_every=5",
               "looksam-k5": "looksam k=5", "msam-rho0.3": "msam", "msam-rho0.05": "msam",
               "sam-ascent8": "sam ascent_batch=1/8"}
#: The points: the paper's ZO-SAM, the prior, the ascent variants, SAM.
VARIANTS = ("zosam", "zosam-prior") + cells.ASCENT_VARIANTS + ("sam",)
LABEL = {"sgd": "SGD", "sam": "SAM", "zosam": "ZO-SAM m=1 (paper)",
         "zosam-prior": "prior=gradient", "zosam-prior-cap4": "prior, radius_cap=4",
         "zosam-prior-refresh5": "prior, refresh_every=5", "looksam-k5": "LookSAM k=5",
         "msam-rho0.3": "MSAM ρ=0.3", "msam-rho0.05": "MSAM ρ=0.05"}
#: The goal, declared in the issue: ZO − SAM's interval contains 0 or lies
#: above −0.5 pp on both settings, at most 0.7 × SAM's step time on the CNN.
MARGIN, COST_LIMIT, COST_SETTING = 0.005, 0.7, "cnn-10k-noise40"


def cost_ratio(setting: str, sparsity: float, a: str, b: str) -> float | None:
  """``a``'s benchmarked step time ÷ ``b``'s on the setting's model, from the
  first of :data:`COSTS` that times both (None: not timed)."""
  if a not in COST_METHOD or b not in COST_METHOD:
    return None  # Issue 48's options: timed over whole runs (schedule_report).
  for path in (p for p in COSTS if p.exists()):
    ms = {r["method"]: r["ms_per_step"] for r in json.loads(path.read_text())["rows"]
          if r["model"] == COST_MODEL[setting] and r["sparsity"] == sparsity}
    if COST_METHOD[a] in ms and COST_METHOD[b] in ms:
      return ms[COST_METHOD[a]] / ms[COST_METHOD[b]]
  return None


#: Whole-run step times (issue 48: every step of a schedule, on and off).
WHOLE_RUN_COSTS = common.REPO / "benchmarks" / "results" / "schedule_cost_cpu.json"


def whole_run_cost(method: str, model: str) -> float | None:
  """``method``'s whole-run step time ÷ SGD's on ``model`` (``cnn``, ``mlp``:
  the study's Fashion models), from ``benchmarks/schedule_cost.py``; ``None``
  where it was not timed."""
  if not WHOLE_RUN_COSTS.exists():
    return None
  return next((r["ratio_to_sgd"] for r in json.loads(WHOLE_RUN_COSTS.read_text())["rows"]
               if r["model"] == model and r["option"] == method), None)


def variant_row(rows, setting: str, sparsity: float, variant: str) -> dict | None:
  """One variant's numbers in one setting (None when it has no paired seed yet)."""
  where = dict(setting=setting, sparsity=sparsity)
  gain = stats.paired(rows, where, variant, "sgd")
  if gain is None:
    return None
  control = stats.paired(rows, where, "sam", "sgd")
  to_sam = None if variant == "sam" else stats.paired(rows, where, variant, "sam")
  return dict(variant=variant, setting=setting, sparsity=sparsity, gain=gain,
              control=control, to_sam=to_sam,
              cost=cost_ratio(setting, sparsity, variant, "sgd"),
              cost_to_sam=cost_ratio(setting, sparsity, variant, "sam"),
              recovered=gain["mean"] / control["mean"] if control and control["mean"] else None,
              near_sam=to_sam is not None and (to_sam["low"] > -MARGIN or to_sam["high"] >= 0))


def table(rows) -> str:
  """The markdown table: one line per setting and variant."""
  lines = ["| setting | variant | − SGD (pp) [95% CI], p, n | verdict | − SAM (pp) [95% CI], "
           "p, n | SAM's gain recovered | step time ÷ SGD | ÷ SAM |",
           "|---|---|---|---|---|---|---|---|"]
  for setting, sparsity in SETTINGS:
    for v in VARIANTS:
      r = variant_row(rows, setting, sparsity, v)
      if r is None:
        lines.append(f"| {study_label(setting)} | {LABEL[v]} | not run yet | | | | | |")
        continue
      recovered = "—" if r["recovered"] is None or v == "sam" else f"{100 * r['recovered']:.0f}%"
      lines.append(
          f"| {study_label(setting)} | {LABEL[v]} | {stats.fmt_diff(r['gain'])} | "
          f"{stats.verdict(r['gain'], r['control'] if v != 'sam' else None)} | "
          f"{stats.fmt_diff(r['to_sam'])} | {recovered} | {_ratio(r['cost'])} | "
          f"{_ratio(r['cost_to_sam'])} |")
  return "\n".join(lines)


def _ratio(value: float | None) -> str:
  return "not timed" if value is None else f"{value:.2f}"


def study_label(setting: str) -> str:
  return f"{cells.SETTINGS[setting]['model'].upper()}" + (
      ", 40% label noise" if cells.SETTINGS[setting].get("label_noise") else "")


def goal(rows) -> str:
  """The goal's verdict per variant, generated: met, or how far it is."""
  lines = []
  for v in VARIANTS[:-1]:
    found = {s: variant_row(rows, s, sp, v) for s, sp in SETTINGS}
    if any(r is None or r["to_sam"] is None for r in found.values()):
      lines.append(f"- {LABEL[v]}: not judged yet (runs missing in "
                   + ", ".join(study_label(s) for s, r in found.items()
                               if r is None or r["to_sam"] is None) + ")")
      continue
    cnn, complete = found[COST_SETTING], lambda r: r["to_sam"]["n"] >= len(cells.SEEDS)
    # A setting judges only with every seed; the cost judges at once.
    far = [f"{study_label(s)} − SAM {stats.fmt_diff(r['to_sam'])}"
           for s, r in found.items() if complete(r) and not r["near_sam"]]
    cost_ok = cnn["cost_to_sam"] is not None and cnn["cost_to_sam"] <= COST_LIMIT
    missing = [f"{study_label(s)} n={r['to_sam']['n']}" for s, r in found.items()
               if not complete(r)]
    if far or not cost_ok:
      verdict = "**not met**: " + "; ".join(
          far + ([] if cost_ok else [f"step time {cnn['cost_to_sam']:.2f} × SAM's on the CNN "
                                    f"(limit {COST_LIMIT})"]))
    elif missing:
      verdict = (f"not judged yet ({', '.join(missing)} of {len(cells.SEEDS)} seeds; so far "
                 + "; ".join(f"{study_label(s)} − SAM {stats.fmt_diff(r['to_sam'])}"
                             for s, r in found.items()) + ")")
    else:
      verdict = "**met**"
    lines.append(f"- {LABEL[v]}: {verdict}")
  return "\n".join(lines)


def render(rows) -> str:
  """The section's markdown: table, then the goal's verdicts."""
  return "\n\n".join([table(rows), "Goal (issue 25): ZO − SAM's 95% interval contains 0 or "
                      f"lies above −{100 * MARGIN:.1f} pp on both settings, at ≤ "
                      f"{COST_LIMIT} × SAM's step time on the CNN:", goal(rows)])
