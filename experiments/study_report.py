"""Markdown tables and verdicts of the paired-seed study, from its rows only.

Every number comes from ``results/study_<dataset>.jsonl`` (committed); every
verdict is computed here from paired differences (:mod:`stats`), never typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import stats
import cells

LABEL = {"sgd": "SGD", "sam": "SAM", "zosam": "ZO-SAM (m=1, paper)",
         "zosam-random-eps": "random ε (no sign)", "zosam-m16": "ZO-SAM m=16",
         "zosam-rho0.1": "ZO-SAM ρ=0.1", "zosam-rho0.2": "ZO-SAM ρ=0.2",
         "zosam-prior": "ZO-SAM prior=gradient, m=0",
         "zosam-prior-cap4": "prior, radius_cap=4", "zosam-prior-refresh5": "prior, refresh_every=5",
         "looksam-k5": "LookSAM k=5", "msam-rho0.3": "MSAM ρ=0.3", "msam-rho0.05": "MSAM ρ=0.05"}
DATASET_LABEL = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
#: Equivalence margin for "ZO-SAM matches SAM", declared before any run.
MATCH_MARGIN = 0.005
#: Second convergence measure, added while the MLP grid was running (the
#: absolute targets are reached within the first few evaluations): steps to
#: this fraction of SGD's mean final accuracy in the same cell (the paper's
#: "epochs to 90%" is about 97% of its final accuracy). It depends on SGD only.
RELATIVE_TARGET = 0.99


def _cells(rows) -> list[tuple[str, float]]:
  return sorted({(r["setting"], r["sparsity"]) for r in rows})


def _label(setting: str) -> str:
  s = cells.SETTINGS[setting]
  label = f"{s['model'].upper()}, {s['train_subset'] // 1000}k subset"
  if s.get("image_size"):
    label += f", {s['image_size']}×{s['image_size']}"
  if s.get("crop_pad") is not None:
    label += f", crop pad {s['crop_pad']}"
  if s.get("label_noise"):
    label += f", {s['label_noise']:.0%} label noise"
  if s["sparse_method"] != "rigl":
    label += f", {s.get('sparse_init', 'random').upper()} {s['sparse_method']}"
  return label


def steps_to_target(row: dict[str, Any]) -> int | None:
  """The first evaluated step with test accuracy ≥ the model's target."""
  target = cells.TARGET_ACCURACY[row["model"]]
  return next((int(s) for s, a in row["curve"] if a >= target), None)


def _with_steps(rows):
  """Rows with ``steps_to_target`` and ``steps_to_relative`` (None: never reached)."""
  sgd_final = {}
  for r in rows:
    if r["variant"] == "sgd":
      sgd_final.setdefault((r["setting"], r["sparsity"]), []).append(r["test_accuracy"])
  out = []
  for r in rows:
    finals = sgd_final.get((r["setting"], r["sparsity"]))
    target = RELATIVE_TARGET * float(np.mean(finals)) if finals else None
    relative = None if target is None else next(
        (int(s) for s, a in r["curve"] if a >= target), None)
    out.append(dict(r, steps_to_target=steps_to_target(r), steps_to_relative=relative))
  return out


def _mean_std(rows, where, variant, value, scale=100.0, digits=2) -> str:
  v = [r[value] for r in rows if r["variant"] == variant and r.get(value) is not None
       and all(r[k] == x for k, x in where.items())]
  if not v:
    return "—"
  sd = f" ± {scale * np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else ""
  return f"{scale * np.mean(v):.{digits}f}{sd} (n={len(v)})"


def control_table(rows, models) -> str:
  lines = ["| attempt | setting | sparsity | SAM − SGD (pp) [95% CI], p, n | passed |",
           "|---|---|---|---|---|"]
  attempts = [(i, a) for model in models
              for i, a in enumerate(cells.CONTROL_ATTEMPTS[model], 1)]
  for i, (setting, sparsity) in attempts:
    d = stats.paired(rows, dict(setting=setting, sparsity=sparsity), "sam", "sgd")
    if d is None:
      started = any((r["setting"], r["sparsity"]) == (setting, sparsity) for r in rows)
      lines.append(f"| {i} | {_label(setting)} | {sparsity:.0%} | "
                   f"{'fewer than 2 paired seeds' if started else 'not run'} | "
                   f"{'running' if started else '—'} |")
      continue
    done = d["n"] >= len(cells.SEEDS)
    verdict = ("yes" if d["low"] > 0 else "no") if done else f"running ({d['n']} seeds)"
    lines.append(f"| {i} | {_label(setting)} | {sparsity:.0%} | {stats.fmt_diff(d)} | "
                 f"{verdict} |")
  return "\n".join(lines)


def accuracy_table(rows, variants: Sequence[str], value: str = "test_accuracy") -> str:
  head = "| setting | sparsity | " + " | ".join(LABEL[v] for v in variants) + " |"
  lines = [head, "|---|---|" + "---|" * len(variants)]
  for setting, sp in _cells(rows):
    where = dict(setting=setting, sparsity=sp)
    means = [_mean_std(rows, where, v, value) for v in variants]
    if any(c != "—" for c in means):
      lines.append(f"| {_label(setting)} | {sp:.0%} | " + " | ".join(means) + " |")
  return "\n".join(lines)


def paired_table(rows, pairs: Sequence[tuple[str, str]], value="test_accuracy",
                 scale=100.0) -> str:
  lines = ["| setting | sparsity | comparison | difference [95% CI], p, n | verdict |",
           "|---|---|---|---|---|"]
  for setting, sp in _cells(rows):
    where = dict(setting=setting, sparsity=sp)
    control = stats.paired(rows, where, "sam", "sgd", value)
    for a, b in pairs:
      d = stats.paired(rows, where, a, b, value)
      if d is None:
        continue
      v = stats.verdict(d, control if b == "sgd" and a != "sam" else None)
      lines.append(f"| {_label(setting)} | {sp:.0%} | {LABEL[a]} − {LABEL[b]} | "
                   f"{stats.fmt_diff(d, scale)} | {v} |")
  return "\n".join(lines)


def seeds_table(rows) -> str:
  variants = [v for v in cells.VARIANTS if any(r["variant"] == v for r in rows)]
  lines = ["| setting | sparsity | seed | " + " | ".join(LABEL[v] for v in variants) + " |",
           "|---|---|---|" + "---|" * len(variants)]
  for setting, sp in _cells(rows):
    for seed in cells.SEEDS:
      acc = {r["variant"]: r["test_accuracy"] for r in rows if r["setting"] == setting
             and r["sparsity"] == sp and r["seed"] == seed}
      if acc:
        lines.append(f"| {_label(setting)} | {sp:.0%} | {seed} | " + " | ".join(
            f"{100 * acc[v]:.2f}" if v in acc else "—" for v in variants) + " |")
  return "\n".join(lines)


def measures_table(rows, variants: Sequence[str]) -> str:
  """Convergence, variance, sharpness and cost per variant (mean ± std)."""
  rows = _with_steps(rows)
  lines = ["| setting | sparsity | optimizer | steps to target: absolute / relative "
           "(reached/n) | "
           "grad. variance ÷ ‖ḡ‖² | L(θ+ε) − L(θ) (×1e-3) | s/step (ms) | wall s/run | "
           "backward / forward passes |", "|---|---|---|---|---|---|---|---|---|"]
  for setting, sp in _cells(rows):
    for v in variants:
      sub = [r for r in rows if (r["setting"], r["sparsity"], r["variant"]) == (setting, sp, v)]
      if not sub:
        continue
      where = dict(setting=setting, sparsity=sp)
      steps = " / ".join(_reached(sub, k) for k in ("steps_to_target", "steps_to_relative"))
      lines.append(
          f"| {_label(setting)} | {sp:.0%} | {LABEL[v]} | {steps} | "
          f"{_mean_std(rows, where, v, 'grad_var_rel', 1.0, 2)} | "
          f"{_mean_std(rows, where, v, 'sharpness', 1e3, 2)} | "
          f"{_mean_std(rows, where, v, 'seconds_per_step', 1e3, 2)} | "
          f"{np.mean([r['wall_seconds'] for r in sub]):.0f} | "
          f"{sub[0]['backward_passes']} / {sub[0]['forward_passes']} |")
  return "\n".join(lines)


def _reached(sub, key) -> str:
  reached = [r[key] for r in sub if r[key] is not None]
  return (f"{np.mean(reached):.0f} ({len(reached)}/{len(sub)})" if reached
          else f"— (0/{len(sub)})")


def _same_step(rows, where, key) -> int | None:
  """The step, if every ZO-SAM and SGD run of the cell reached its target at the
  same evaluation (then steps cannot separate them), else None."""
  steps = {r[key] for r in rows if r["variant"] in ("sgd", "zosam")
           and all(r[k] == v for k, v in where.items())}
  return next(iter(steps)) if len(steps) == 1 and None not in steps else None


def _unjudged(rows, models) -> str:
  """The verdict of a claim that no cell judges: final once every declared
  positive-control attempt of ``models`` and every other cell in the rows has
  all its seeds and SAM beat SGD in none."""
  attempts = [a for m in models for a in cells.CONTROL_ATTEMPTS[m]]
  if all(cells.control_passes(rows, setting, sp) is False
         for setting, sp in attempts + _cells(rows)):
    return (f"inconclusive: SAM beat SGD in none of the {len(attempts)} declared "
            "positive-control attempts nor in any other cell, so no cell can judge it")
  return "inconclusive: no cell could judge it yet"


def _claim(diffs, good, bad, unjudged: str) -> str:
  """Summarises per-cell verdicts into one verdict per claim (``unjudged``
  where no cell judges it)."""
  if not diffs:
    return unjudged
  verdicts = [v for _, v in diffs]
  where = "; ".join(f"{c}: {v}" for c, v in diffs)
  if all(v == good for v in verdicts):
    return f"**reproduced** ({where})"
  if any(v == bad for v in verdicts) or all(v != good for v in verdicts):
    return f"**not reproduced** ({where})"
  return f"**partly reproduced** ({where})"


def verdicts(rows, dataset: str, robustness: bool = False) -> str:
  rows = _with_steps(rows)
  models = cells.DATASETS[dataset]["models"]
  no_cell = _unjudged(rows, models)
  claim = lambda diffs, good, bad: _claim(diffs, good, bad, no_cell)
  acc, match, conv, var, rand, prior, unjudged = [], [], [], [], [], [], []
  for setting, sp in _cells(rows):
    where, cell = dict(setting=setting, sparsity=sp), f"{_label(setting)} {sp:.0%}"
    control = stats.paired(rows, where, "sam", "sgd")
    d = stats.paired(rows, where, "zosam", "sgd")
    if (d is None or control is None or control["low"] <= 0
        or d["n"] < len(cells.SEEDS)):
      continue
    acc.append((f"{cell} {stats.fmt_diff(d)}", stats.verdict(d, control)))
    m = stats.paired(rows, where, "zosam", "sam")
    if m is not None:
      v = ("matches" if m["low"] > -MATCH_MARGIN else
           f"worse by more than {100 * MATCH_MARGIN:.1f} pp" if m["high"] < -MATCH_MARGIN
           else "inconclusive")
      match.append((f"{cell} {stats.fmt_diff(m)}", v))
    s = stats.paired([r for r in rows if r["steps_to_relative"] is not None], where,
                     "zosam", "sgd", "steps_to_relative")
    same = _same_step(rows, where, "steps_to_relative")
    if same is not None:
      unjudged.append(f"{cell}: every run reached it at step {same}")
    elif s is not None:
      conv.append((f"{cell} {stats.fmt_diff(s, 1.0)} steps",
                   {"better": "slower", "worse": "faster"}.get(stats.verdict(s), stats.verdict(s))))
    g = stats.paired(rows, where, "zosam", "sgd", "grad_var_rel")
    if g is not None:
      var.append((f"{cell} {stats.fmt_diff(g, 1.0)}",
                  {"better": "higher", "worse": "lower"}.get(stats.verdict(g), stats.verdict(g))))
    r = stats.paired(rows, where, "zosam", "zosam-random-eps")
    if r is not None:
      rand.append((f"{cell} {stats.fmt_diff(r)}", stats.verdict(r)))
    p = stats.paired(rows, where, "zosam-prior", "sgd")
    if p is not None:
      prior.append((f"{cell} {stats.fmt_diff(p)}", stats.verdict(p, control)))
  return "\n".join([
      f"| paper claim | verdict on {DATASET_LABEL[dataset]} (cells with a positive control) |",
      "|---|---|",
      f"| ZO-SAM beats SGD in sparse training (+0.4 to +2.5 pp) | {claim(acc, 'better', 'worse')} |",
      f"| ZO-SAM matches SAM (95% interval of ZO-SAM − SAM above −{100 * MATCH_MARGIN:.1f} pp, "
      f"margin declared in advance) | {claim(match, 'matches', 'worse by more than 0.5 pp')} |",
      f"| ZO-SAM converges faster than SGD (steps to {100 * RELATIVE_TARGET:.0f}% of SGD's "
      f"final accuracy) | {claim(conv, 'faster', 'slower')}"
      + (f" (not judged, {'; '.join(unjudged)})" if unjudged else "") + " |",
      f"| ZO-SAM lowers the gradient variance | {claim(var, 'lower', 'higher')} |",
      f"| (mechanism) ZO-SAM's loss differences matter: beats a random ε of the same radius "
      f"| {claim(rand, 'better', 'worse')} |",
      f"| (this library, not the paper) `prior=\"gradient\"` beats SGD "
      f"| {claim(prior, 'better', 'worse')} |"] + (robustness_verdicts(rows, models) if robustness
                                                      else []))


def with_robustness(rows, robust_rows) -> list[dict[str, Any]]:
  """Study rows with their cell's mean corrupted accuracy (over 8 corruptions ×
  5 severities) and ``corruption_change`` = that − clean (higher: smaller drop)."""
  by = {r["cell"]: r for r in robust_rows}
  return [dict(r, corruption_accuracy=by[r["cell"]]["corruption_accuracy"],
               corruption_change=by[r["cell"]]["corruption_accuracy"] - by[r["cell"]]["clean"])
          if r["cell"] in by else r for r in rows]


def per_corruption_table(rows, robust_rows) -> str:
  """Per corruption (mean over severities) and per severity: SGD, SAM, ZO-SAM
  (%) and ZO-SAM − SGD paired by seed."""
  import cifar10_c  # pylint: disable=import-outside-toplevel
  views = {name: lambda r, n=name: float(np.mean(r["corrupted"][n]))
           for name in cifar10_c.CORRUPTIONS}
  views.update({f"severity {s}": lambda r, s=s: float(np.mean(
      [v[s - 1] for v in r["corrupted"].values()])) for s in cifar10_c.SEVERITIES})
  lines = ["| setting | sparsity | corruption / severity | SGD | SAM | ZO-SAM | "
           "ZO-SAM − SGD (pp) [95% CI], p, n |",
           "|---|---|---|---|---|---|---|"]
  for setting, sp in _cells(robust_rows):
    sub = [r for r in robust_rows if (r["setting"], r["sparsity"]) == (setting, sp)]
    for label, view in views.items():
      vrows = [dict(r, value=view(r)) for r in sub]
      where = dict(setting=setting, sparsity=sp)
      accs = [_mean_std(vrows, where, v, "value") for v in ("sgd", "sam", "zosam")]
      d = stats.paired(vrows, where, "zosam", "sgd", "value")
      lines.append(f"| {_label(setting)} | {sp:.0%} | {label} | " + " | ".join(accs)
                   + f" | {stats.fmt_diff(d)} |")
  return "\n".join(lines)


def robustness_verdicts(rows, models=cells.DATASETS["cifar10"]["models"]) -> list[str]:
  """Verdict lines for the paper's CIFAR-10-C claims (control: SAM − SGD on the
  same measure in the same cell; ``models`` name the declared controls)."""
  lines, no_cell = [], _unjudged(rows, models)
  for value, claim in (("corruption_accuracy", "ZO-SAM is more accurate than SGD under "
                        "CIFAR-10-C corruptions (+3.10 pp, SNIP 90%)"),
                       ("corruption_change", "ZO-SAM loses less than SGD from clean to "
                        "corrupted")):
    found = []
    for setting, sp in _cells(rows):
      where = dict(setting=setting, sparsity=sp)
      control = stats.paired(rows, where, "sam", "sgd", value)
      d = stats.paired(rows, where, "zosam", "sgd", value)
      if d is not None and control is not None and control["low"] > 0 and d["n"] >= len(
          cells.SEEDS):
        found.append((f"{_label(setting)} {sp:.0%} {stats.fmt_diff(d)}", stats.verdict(d)))
    lines.append(f"| {claim} | {_claim(found, 'better', 'worse', no_cell)} |")
  return lines


def jpeg_check(robust_rows) -> str:
  """The JPEG test set against the lossless first test images, paired by cell."""
  checked = [r for r in robust_rows if "jpeg_check" in r]
  if not checked:
    return "JPEG check: not measured yet."
  pairs = [dict(seed=r["cell"], variant=v, test_accuracy=r["jpeg_check"][k])
           for r in checked for v, k in (("lossless", "lossless"), ("jpeg", "test_set"))]
  d = stats.paired(pairs, {}, "lossless", "jpeg")
  mean = lambda k: 100 * np.mean([r["jpeg_check"][k] for r in checked])
  return (f"JPEG check: on the first {checked[0]['jpeg_check']['images']} official test "
          f"images, accuracy on the lossless originals − on their JPEG-decoded copies in "
          f"the test set above (pp), paired over {len(checked)} cells: {stats.fmt_diff(d)} "
          f"(lossless {mean('lossless'):.2f}%, JPEG {mean('test_set'):.2f}%).")


def robustness_section(rows, robust_rows) -> list[str]:
  """The CIFAR-10-C tables (:mod:`study_robustness`)."""
  grid = ("sgd", "sam", "zosam")
  pairs = [("sam", "sgd"), ("zosam", "sgd"), ("zosam", "sam")]
  return [
      "### Corruption robustness (CIFAR-10-C corruptions of the same test images: "
      + "; ".join(sorted({r["test_set"] for r in robust_rows})) + ")",
      "Eight corruptions with the published severity parameters (`cifar10_c.py`), severities "
      "1–5, applied at 32×32 before the run's own pooling to 16×16 (which averages away part "
      "of the pixel noise); final weights of each cell. Mean accuracy over the 40 corrupted "
      "sets (%), mean ± std over seeds:",
      accuracy_table(rows, grid, "corruption_accuracy"),
      "Paired differences (pp) of the mean corrupted accuracy; a comparison with SGD is "
      "judged only where SAM beats SGD on the same measure:",
      paired_table(rows, pairs, "corruption_accuracy"),
      "Paired differences (pp) of corrupted − clean accuracy (higher: a smaller drop), "
      "judged the same way:",
      paired_table(rows, pairs, "corruption_change"),
      "Per corruption (mean over severities) and per severity (mean over corruptions):",
      per_corruption_table(rows, robust_rows),
      jpeg_check(robust_rows),
  ]


def _convergence_note(rows, models) -> str:
  rows = _with_steps(rows)
  uninformative = [m.upper() for m in models if (sub := [r for r in rows if r["model"] == m])
                   and all(r["steps_to_target"] == r["curve"][0][0] for r in sub)]
  return (
      "Steps to target: the first evaluation (every 200 steps) at or above "
      + ", ".join(f"{100 * cells.TARGET_ACCURACY[m]:.0f}% ({m.upper()})" for m in models)
      + " test accuracy (declared before the runs"
      + (f"; every {'/'.join(uninformative)} run reached it at the first evaluation, so "
         "it cannot separate them there" if uninformative else "") + "), and at or above "
      f"{100 * RELATIVE_TARGET:.0f}% of SGD's mean final accuracy in the cell (added while "
      "the MLP grid was running, defined by SGD alone); gradient variance: (1/K)Σ‖m⊙(g_k − ḡ)‖² ÷ ‖ḡ‖² over K = 16 "
      "minibatches of 128 at the final weights; sharpness: mean over training of the "
      "logged L(θ+ε) − L(θ) on the minibatch.")


def render(rows, dataset: str = "fashion_mnist", robust_rows=()) -> str:
  """The markdown of one dataset's study; ``robust_rows`` are its corruption
  robustness rows (:mod:`study_robustness`) where it has them."""
  models = cells.DATASETS[dataset]["models"]
  robustness = bool(cells.DATASETS[dataset].get("robustness"))
  rows = with_robustness(rows, robust_rows)
  grid = ("sgd", "sam", "zosam")
  controls = tuple(v for v in cells.CONTROL_VARIANTS if any(r["variant"] == v for r in rows))
  on = "; ".join(sorted({r["test_set"] for r in rows})) or cells.DATASETS[dataset]["test_set"]
  return "\n\n".join([
      "### Positive control: SAM − SGD, paired by seed, in the declared order",
      control_table(rows, models),
      "### Verdicts, generated from the paired differences",
      verdicts(rows, dataset, robustness),
      f"### Final test accuracy (%), mean ± std over seeds ({on})",
      accuracy_table(rows, grid + controls),
      f"### Paired differences (pp): same seeds, data order, initialisation and masks ({on})",
      paired_table(rows, [("sam", "sgd"), ("zosam", "sgd"), ("zosam", "sam")]
                   + [(v, "sgd") for v in controls] + [(v, "zosam") for v in controls]),
      f"### Every seed: final test accuracy (%) ({on})",
      seeds_table(rows),
      "### Convergence, gradient variance, realised sharpness and cost",
      _convergence_note(rows, models),
      measures_table(rows, grid + controls),
  ] + (robustness_section(rows, robust_rows) if robustness and robust_rows else []))
