"""Best against best (issue 34): the radius grids, the chosen radii, the paired test rows.

Everything comes from the committed rows (:mod:`best_radius`'s cells in
``results/study_<dataset>.jsonl``) and the benchmarked step times
(:data:`ascents_report.COSTS`); every verdict is computed here. Validation
accuracy chooses each radius; the test numbers below are of the six fresh
seeds and choose nothing.

  python experiments/best_report.py   # writes figures/ascent_gain_vs_cost.png
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ascents_report
import best_radius
import cells
import common
import stats

LABEL = {"sam": "SAM", "zosam-prior-cap4": "prior, radius_cap=4",
         "zosam-prior": "prior=gradient, m=0",
         "zosam-prior-cap4-half": "prior, radius_cap=4, probe on ½ batch",
         "zosam-prior-noprobe": "prior, probe=False (no forward pass)",
         "zosam-prior-noprobe-head": "prior, probe=False, output layer exact",
         "zosam-prior-noprobe-repeat2": "prior, probe=False, each minibatch twice",
         "sam-ascent8": "SAM, ascent on ⅛ of the minibatch (not ZO)",
         "sgd": "SGD", "sgd-repeat2": "SGD, each minibatch twice",
         "sam-repeat2": "SAM at its ρ, each minibatch twice",
         "sam-ascent8-late25": "SAM, ⅛ ascent, last 25% of steps",
         "sam-ascent8-late10": "SAM, ⅛ ascent, last 10% of steps",
         "sam-late25": "SAM, last 25% of steps",
         "sam-ascent8-every4": "SAM, ⅛ ascent, every 4th step",
         "zosam-prior-noprobe-head-late25": "prior, probe=False, output layer exact, "
                                            "last 25%",
         "msam": "MSAM (grid may grow up to ρ 12.8)"}
#: Issue 34's methods (its goal and recommendation judge these; issue 48's have
#: their own, :mod:`schedule_report`).
ISSUE34 = tuple(m for m in cells.TUNED if m not in cells.SCHEDULED)
#: The goal, declared in the issue: gain over SGD at least 90% of SAM's and
#: ZO − SAM's 95% interval above −0.5 pp on every setting, at most 0.6 × SAM's
#: step time on this CPU's small CNN.
SHARE, MARGIN, COST_LIMIT, COST_SETTING = 0.9, 0.005, 0.6, "cnn-10k-noise40"
#: Issue 48's goal (its options', :mod:`schedule_report`): the same share and
#: margin at most 1.05 × SGD's whole-run step time on both of the study's
#: models; its stretch ≤ 1.02 × (or ≥ 100% of SAM's gain at ≤ 1.05 ×).
SGD_COST_LIMIT, SGD_STRETCH_COST = 1.05, 1.02
FIGURE = common.FIGURES / "ascent_gain_vs_cost.png"
#: Paired contrasts between two options, each tuned one at its chosen radius, and
#: the question each answers: declared with the method that asks it (the
#: probe's with ``probe=False``, the output layer's with ``exact_leaves``, the
#: repeated minibatches' with their SGD control, before any of their runs).
CONTRASTS = (
    ("zosam-prior", "zosam-prior-noprobe", "what the probe's two forward passes buy"),
    ("zosam-prior-noprobe-head", "zosam-prior-noprobe",
     "what the output layer's gradient on the current minibatch buys"),
    ("zosam-prior-noprobe-repeat2", "zosam-prior-noprobe",
     "what using each minibatch for two steps buys the unprobed prior"),
    ("sgd-repeat2", "sgd", "what using each minibatch for two steps does to SGD (its control)"),
    ("zosam-prior-noprobe-repeat2", "sgd-repeat2",
     "the repeated prior's gain over SGD with the same data order"),
    ("sam-repeat2", "sam", "what using each minibatch for two steps does to SAM (its second "
     "control)"),
    ("zosam-prior-noprobe-repeat2", "sam-repeat2",
     "the repeated prior against SAM with the same data order"),
)
#: SGD and the declared controls: not tuned (a control of :data:`cells.AT_SAM_RADIUS`
#: runs at SAM's chosen radius).
UNTUNED = ("sgd", *(c for controls in cells.TUNED_CONTROLS.values() for c in controls))
#: Every final's name, in the tables' column (row) order.
FINAL_NAMES = UNTUNED + tuple(cells.TUNED)


def setting_label(setting: str) -> str:
  s = cells.SETTINGS[setting]
  data = "CIFAR-10" if s["dataset"] == "cifar10" else "Fashion-MNIST"
  return f"{data} {s['model'].upper()}" + (
      f", {s['label_noise']:.0%} label noise" if s.get("label_noise") else "") + (
      ", no augmentation" if s.get("augment") is False else "")


def _tried(rows) -> list[str]:
  """The protocol's settings that have rows, in the declared order."""
  have = {r["setting"] for r in rows}
  return [s for attempts in cells.BEST_ATTEMPTS for s in attempts if s in have]


def _mean_std(values: list[float]) -> str:
  """``85.12 ± 0.20`` (%), with ``(n=k)`` while selection seeds are missing."""
  if not values:
    return "—"
  std = 100 * np.std(values, ddof=1) if len(values) > 1 else 0.0
  return f"{100 * np.mean(values):.2f} ± {std:.2f}" + (
      "" if len(values) == len(cells.SELECTION_SEEDS) else f" (n={len(values)})")


def grid_table(rows) -> str:
  """Every grid point: mean ± std validation accuracy over the selection seeds
  (a column per radius of any method's grid; "·" where a grid has no such radius)."""
  grids = {(s, m): best_radius.radii(rows, s, m) for s in _tried(rows) for m in cells.TUNED}
  columns = sorted({rho for g in grids.values() for rho in g} | set(cells.RADII))
  head = " | ".join(f"ρ={rho}" for rho in columns)
  lines = [f"| setting | method | {head} | chosen ρ |",
           "|---|---|" + "---|" * (len(columns) + 1)]
  for setting in _tried(rows):
    for method in cells.TUNED:
      values = {rho: [r["validation_accuracy"] for r in rows if r["setting"] == setting
                      and r["variant"] == best_radius.variant(method, rho)
                      and r["seed"] in cells.SELECTION_SEEDS] for rho in columns}
      if not any(values.values()):
        continue
      rho_star = best_radius.chosen_radius(rows, setting, method)
      cols = [_mean_std(v) if rho in grids[setting, method] else "·"
              for rho, v in values.items()]
      cols = [f"**{c}**" if rho == rho_star else c for rho, c in zip(columns, cols)]
      lines.append(f"| {setting_label(setting)} | {LABEL[method]} | " + " | ".join(cols)
                   + f" | {rho_star if rho_star is not None else 'grid running'} |")
  return "\n".join(lines)


@best_radius.per_rows
def finals(rows, setting: str) -> dict[str, str]:
  """``method -> variant`` of each method whose radius is chosen, and of each
  untuned variant (:data:`UNTUNED`) with rows in the setting."""
  sam_rho = best_radius.chosen_radius(rows, setting, "sam")
  out = {name: best_radius.control_variant(name, sam_rho) for name in UNTUNED}
  out = {name: v for name, v in out.items()
         if any(r["setting"] == setting and r["variant"] == v for r in rows)}
  for method in cells.TUNED:
    rho = best_radius.chosen_radius(rows, setting, method)
    if rho is not None:
      out[method] = best_radius.variant(method, rho)
  return out


@best_radius.per_rows
def method_row(rows, setting: str, method: str) -> dict | None:
  """A method at its chosen radius against SGD and against SAM at SAM's."""
  chosen = finals(rows, setting)
  if method not in chosen:
    return None
  rows = [r for r in rows if r["seed"] in cells.SEEDS]  # The fresh seeds only.
  where = dict(setting=setting, sparsity=0.9)
  gain = stats.paired(rows, where, chosen[method], "sgd")
  control = stats.paired(rows, where, chosen["sam"], "sgd") if "sam" in chosen else None
  to_sam = (None if method == "sam" or "sam" not in chosen
            else stats.paired(rows, where, chosen[method], chosen["sam"]))
  cost = ascents_report.cost_ratio(COST_SETTING, 0.9, method, "sam")
  return dict(method=method, variant=chosen[method], gain=gain, control=control,
              to_sam=to_sam, cost_to_sam=cost,
              share=(gain["mean"] / control["mean"] if gain and control and control["mean"]
                     else None))


def _named(name: str, variant: str) -> str:
  """A final's label in the tables, with its radius where it has one."""
  return LABEL[name] + (f", ρ={variant.rsplit('-rho', 1)[1]}" if "-rho" in variant else "")


def final_table(rows) -> str:
  """One line per setting and method at its chosen radius (test set, six seeds)."""
  lines = ["| setting | method at chosen ρ | − SGD (pp) [95% CI], p, n | verdict | − SAM at "
           "its ρ (pp) [95% CI], p, n | verdict | SAM's gain reached |",
           "|---|---|---|---|---|---|---|"]
  for setting in _tried(rows):
    for method in cells.TUNED:
      r = method_row(rows, setting, method)
      if r is None or r["gain"] is None:
        continue
      share = "—" if r["share"] is None or method == "sam" else f"{100 * r['share']:.0f}%"
      control = None if method == "sam" else r["control"]
      lines.append(
          f"| {setting_label(setting)} | {_named(method, r['variant'])} | "
          f"{stats.fmt_diff(r['gain'])} | {stats.verdict(r['gain'], control)} | "
          f"{stats.fmt_diff(r['to_sam'])} | "
          f"{stats.verdict(r['to_sam']) if r['to_sam'] else '—'} | {share} |")
  return "\n".join(lines)


def seeds_table(rows) -> str:
  """Every final seed's test accuracy (%): SGD, the controls, each method at its radius."""
  lines = ["| setting | seed | " + " | ".join(LABEL[m] for m in FINAL_NAMES) + " |",
           "|---|---|" + "---|" * len(FINAL_NAMES)]
  for setting in _tried(rows):
    chosen = finals(rows, setting)
    for seed in cells.SEEDS:
      acc = {r["variant"]: r["test_accuracy"] for r in rows
             if r["setting"] == setting and r["seed"] == seed}
      if acc:
        cols = [acc.get(chosen.get(m)) for m in FINAL_NAMES]
        lines.append(f"| {setting_label(setting)} | {seed} | " + " | ".join(
            "—" if a is None else f"{100 * a:.2f}" for a in cols) + " |")
  return "\n".join(lines)


def overtraining_table(rows) -> str:
  """Per setting and final variant: mean final validation accuracy (%) over the
  fresh seeds, and the mean of each run's best evaluation during training.

  The gap is what training past its best evaluation cost (with label noise:
  fitting the noisy labels); the best is read on the same split, so it is an
  optimistic estimate of early stopping, descriptive only (it chooses nothing).
  """
  lines = ["| setting | method | final (%) | best during the run (%) | final − best (pp) | n |",
           "|---|---|---|---|---|---|"]
  for setting in _tried(rows):
    chosen = finals(rows, setting)
    for name in [n for n in FINAL_NAMES if n in chosen]:
      runs = [r for r in rows if r["setting"] == setting and r["variant"] == chosen[name]
              and r["seed"] in cells.SEEDS and "best_validation_accuracy" in r]
      if runs:
        final = 100 * np.mean([r["validation_accuracy"] for r in runs])
        best = 100 * np.mean([r["best_validation_accuracy"] for r in runs])
        lines.append(f"| {setting_label(setting)} | {_named(name, chosen[name])} | "
                     f"{final:.2f} | {best:.2f} | {final - best:+.2f} | {len(runs)} |")
  return "\n".join(lines)


def contrast_table(rows) -> str:
  """Each of :data:`CONTRASTS` per setting, paired over the fresh seeds."""
  lines = ["| setting | question | a − b (pp) [95% CI], p, n | verdict |", "|---|---|---|---|"]
  for setting in _tried(rows):
    chosen = finals(rows, setting)
    fresh = [r for r in rows if r["seed"] in cells.SEEDS]
    for a, b, question in CONTRASTS:
      if a in chosen and b in chosen:
        diff = stats.paired(fresh, dict(setting=setting, sparsity=0.9), chosen[a], chosen[b])
        lines.append(f"| {setting_label(setting)} | {question}: {LABEL[a]} − {LABEL[b]} | "
                     f"{stats.fmt_diff(diff)} | {stats.verdict(diff)} |")
  return "\n".join(lines)


def _misses(r) -> list[str]:
  """How a complete setting's row misses the goal (empty: it meets it)."""
  out = []
  if r["share"] is None or r["share"] < SHARE:
    share = "—" if r["share"] is None else f"{100 * r['share']:.0f}%"
    out.append(f"{share} of SAM's gain (goal {100 * SHARE:.0f}%)")
  if r["to_sam"]["low"] < -MARGIN:
    out.append(f"− SAM {stats.fmt_diff(r['to_sam'])} (goal: interval above −{100 * MARGIN:.1f})")
  return out


@best_radius.per_rows
def _judged(rows, attempts) -> str | None:
  """The setting of a group of attempts that judges: the first with a positive control."""
  return next((s for s in attempts if _control_ok(rows, s)), None)


def _complete_row(rows, setting: str | None, method: str) -> dict | None:
  """``method_row`` where all the fresh seeds are in, else ``None``."""
  r = None if setting is None else method_row(rows, setting, method)
  paired = "gain" if method == "sam" else "to_sam"
  return r if r and r[paired] and r[paired]["n"] >= len(cells.SEEDS) else None


def _goal(rows, method: str) -> tuple[list[str], list[str], float | None]:
  """How ``method`` misses the goal (empty: it does not), the groups of
  attempts whose rows are missing, and its step time ÷ SAM's."""
  missing, far = [], []
  for attempts in cells.BEST_ATTEMPTS:
    setting = _judged(rows, attempts)
    r = _complete_row(rows, setting, method)
    if r is None:
      missing.append(setting_label(_reported(rows, attempts)))
      continue
    far += [f"{setting_label(setting)}: " + ", ".join(_misses(r))] if _misses(r) else []
  cost = ascents_report.cost_ratio(COST_SETTING, 0.9, method, "sam")
  if cost is not None and cost > COST_LIMIT:
    far.append(f"{cost:.2f} × SAM's step time on the Fashion CNN (goal ≤ {COST_LIMIT})")
  return far, missing, cost


def goal(rows) -> str:
  """The goal's verdict per ZO method, generated: met, not met (by how much), or not judged."""
  lines = []
  for method in [m for m in ISSUE34 if m != "sam"]:
    far, missing, cost = _goal(rows, method)
    cost_text = "not timed" if cost is None else f"{cost:.2f} × SAM's step time"
    if far:
      verdict = "**not met**: " + "; ".join(far)
    elif missing:
      verdict = f"not judged yet (runs missing: {', '.join(missing)}); {cost_text}"
    else:
      verdict = f"**met** ({cost_text})"
    lines.append(f"- {LABEL[method]}: {verdict}")
  return "\n".join(lines)


def recommendation(rows) -> str:
  """What the numbers say to use, generated: SAM's chosen radii, and the option
  (every tuned method but SAM) whose smallest share of SAM's gain over the judged settings is the largest,
  within the goal's cost and at any cost, with its chosen radii."""
  judged = [s for s in (_judged(rows, a) for a in cells.BEST_ATTEMPTS) if s is not None]
  if not judged:
    return "- Not judged yet: no setting has a positive control."
  waiting = [setting_label(_reported(rows, a)) for a in cells.BEST_ATTEMPTS
             if _judged(rows, a) is None]
  lines = [f"- Judged on {', '.join(map(setting_label, judged))}"
           + (f" (not yet: {', '.join(waiting)})" if waiting else "") + "."]
  per = {m: [_complete_row(rows, s, m) for s in judged] for m in ISSUE34}
  radii = lambda m: ", ".join(f"{r['variant'].rsplit('rho', 1)[1]} ({setting_label(s)})"
                              for s, r in zip(judged, per[m]))
  if not all(per["sam"]):
    return "\n".join(lines + ["- SAM's finals are not all in yet."])
  lines.append(f"- The accuracy reference, SAM: ρ = {radii('sam')}.")
  zo = [m for m in ISSUE34 if m != "sam" and all(r and r["share"] is not None
                                                  for r in per[m])]
  cost = {m: ascents_report.cost_ratio(COST_SETTING, 0.9, m, "sam") for m in zo}
  for title, pool in (
      (f"Within the goal's cost (≤ {COST_LIMIT} × SAM's step time)",
       [m for m in zo if cost[m] is not None and cost[m] <= COST_LIMIT]),
      ("At any cost", zo)):
    if not pool:
      lines.append(f"- {title}: no option complete on every judged setting.")
      continue
    best = max(pool, key=lambda m: min(r["share"] for r in per[m]))
    shares = ", ".join(f"{100 * r['share']:.0f}%" for r in per[best])
    lines.append(f"- {title}, the largest smallest share of SAM's gain: {LABEL[best]}, "
                 f"{shares} of it (the settings in order), ρ = {radii(best)}.")
  return "\n".join(lines)


def untuned(rows) -> str:
  """The stretch's "radius that needs no tuning", generated from the validation
  grids: per method, the one radius of its grid whose worst gap to tuned SAM
  (the best mean validation accuracy of SAM's grid) over the judged settings
  is the smallest, and whether that gap stays within the goal's margin. On the
  selection seeds' validation means, not a paired test: an estimate."""
  judged = [s for s in (_judged(rows, a) for a in cells.BEST_ATTEMPTS) if s is not None]
  sam = {s: best_radius.validation_means(rows, s, "sam") for s in judged}
  if not judged or any(None in m.values() for m in sam.values()):
    return "- Not judged yet: SAM's grids are not all in."
  lines = []
  for method in cells.TUNED:
    means = {s: best_radius.validation_means(rows, s, method) for s in judged}
    common_radii = [r for r in cells.GRID_RADII
                    if all(means[s].get(r) is not None for s in judged)]
    if not common_radii:
      lines.append(f"- {LABEL[method]}: no radius of its grid complete on every judged setting.")
      continue
    gap = {r: {s: means[s][r] - max(sam[s].values()) for s in judged} for r in common_radii}
    rho = max(common_radii, key=lambda r: min(gap[r].values()))
    worst = min(judged, key=lambda s: gap[rho][s])
    within = "within" if gap[rho][worst] >= -MARGIN else "not within"
    lines.append(f"- {LABEL[method]}: ρ = {rho}, worst {100 * gap[rho][worst]:+.2f} pp "
                 f"({setting_label(worst)}): {within} {100 * MARGIN:.1f} pp of tuned SAM "
                 "everywhere")
  return "\n".join(lines)


def _reported(rows, attempts) -> str:
  """The setting a group of attempts reports: the one with a positive
  control, else the last one tried, else the first."""
  tried = [s for s in _tried(rows) if s in attempts]
  return _judged(rows, attempts) or (tried[-1] if tried else attempts[0])


def _header(rows, attempts, setting: str) -> str:
  """A summary column's title: the reported setting, the earlier attempts that
  had no positive control (so the protocol moved on), and whether its own has one."""
  notes = [f"after {setting_label(a)}: no positive control"
           for a in attempts[:attempts.index(setting)]]
  control = _control(rows, setting)
  if not control:
    notes.append("no positive control" + ("" if control is False else " yet"))
  return setting_label(setting) + (f" ({'; '.join(notes)})" if notes else "")


def _interval(diff) -> str:
  """``+0.89 [+0.51, +1.27]`` (pp)."""
  return f"{100 * diff['mean']:+.2f} [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]"


def _summary_cell(rows, setting: str, method: str) -> str:
  """One method in one setting, for :func:`summary`: its chosen radius and SAM's
  gain over SGD, or the option's share of it and its difference to SAM (with
  ``, n=k`` while fresh seeds are missing)."""
  r = method_row(rows, setting, method)
  if r is None:
    started = any(row["setting"] == setting and row["variant"].startswith(f"{method}-rho")
                  for row in rows)
    return "grid running" if started else "—"
  rho = r["variant"].rsplit("rho", 1)[1]
  diff = r["gain"] if method == "sam" else r["to_sam"]
  if diff is None:
    return f"ρ {rho}: finals running"
  n = "" if diff["n"] >= len(cells.SEEDS) else f", n={diff['n']}"
  if method == "sam":
    return f"ρ {rho}: {_interval(diff)} over SGD{n}"
  share = "" if r["share"] is None else f"{100 * r['share']:.0f}% of its gain, "
  return f"ρ {rho}: {share}− SAM {_interval(diff)}{n}"


def summary(rows) -> str:
  """The best-summary table of ``docs/choosing.md``: per tuned method, its step time ÷ SAM's, its chosen
  radius per setting with SAM's gain over SGD (SAM's row) or the share of it
  the method reaches and its difference to SAM (pp, paired, 95% interval),
  and the goal's verdict; then :func:`recommendation`."""
  settings = [_reported(rows, attempts) for attempts in cells.BEST_ATTEMPTS]
  heads = [_header(rows, attempts, s) for attempts, s in zip(cells.BEST_ATTEMPTS, settings)]
  lines = ["| method | step time ÷ SAM's | " + " | ".join(heads) + " | goal |",
           "|---|---|" + "---|" * (len(settings) + 1)]
  for method in ISSUE34:
    cost = ascents_report.cost_ratio(COST_SETTING, 0.9, method, "sam")
    far, missing, _ = _goal(rows, method) if method != "sam" else ([], [], None)
    verdict = ("the reference" if method == "sam" else "not met" if far
               else "not judged yet" if missing else "met")
    lines.append(f"| {LABEL[method]} | {'—' if cost is None else f'{cost:.2f}'} | "
                 + " | ".join(_summary_cell(rows, s, method) for s in settings)
                 + f" | {verdict} |")
  return "\n".join(lines) + "\n\n" + recommendation(rows)


@best_radius.per_rows
def _control(rows, setting: str) -> bool | None:
  """The setting's positive control at SAM's chosen radius: passes, fails, or
  ``None`` while SAM's grid or its six seeds are incomplete."""
  rho = best_radius.chosen_radius(rows, setting, "sam")
  return None if rho is None else best_radius.control_passes(rows, setting, rho)


def _control_ok(rows, setting: str) -> bool:
  return _control(rows, setting) is True


def _figure_cost(method: str) -> float | None:
  """The figure's x: the whole-run step time ÷ SGD's on the Fashion CNN (issue
  48's benchmark), else the benchmarked step's (the same for a method without
  a schedule: every step of its run is alike)."""
  cost = ascents_report.whole_run_cost(method, "cnn")
  return ascents_report.cost_ratio(COST_SETTING, 0.9, method, "sgd") if cost is None else cost


def figure(rows, path=FIGURE) -> None:
  """Gain over SGD (paired mean, 95% CI) against step time ÷ SGD, each method
  at its chosen radius (one colour and marker per method, its ρ beside it; n
  in the tables), one panel per setting (the attempt each reports: the one with
  the positive control, else the last tried), one legend below them; where SAM's
  positive control holds, the goals' limits as grey lines (the gain's; issue
  34's cost, ≤ 0.6 × SAM's step; issue 48's, ≤ 1.05 × SGD's whole run)."""
  plt = common.pyplot()
  have = set(_tried(rows))
  tried = [_reported(rows, a) for a in cells.BEST_ATTEMPTS if have & set(a)] or [
      cells.BEST_ATTEMPTS[0][0]]
  fig, axes = plt.subplots(1, len(tried), figsize=(5.5 * len(tried), 6.0), squeeze=False)
  legend: dict[str, Any] = {}
  for ax, setting in zip(axes[0], tried):
    legend.update(_panel(ax, rows, setting))
  fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8,
             bbox_to_anchor=(0.5, 0.03))
  fig.text(0.5, 0.005, "x: whole-run step time ÷ SGD's on the Fashion CNN, this CPU "
           "(benchmarks/schedule_cost.py; step_cost.py's step for a method without a "
           "schedule); issue 48 judges the larger of the CNN's and the MLP's (RESULTS.md)",
           ha="center", va="bottom", fontsize=7, color="0.3")
  fig.tight_layout(rect=(0, 0.19, 1, 1))
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _panel(ax, rows, setting: str) -> dict[str, Any]:
  """One setting's panel of :func:`figure`; its legend entries."""
  ax.axhline(0, color="0.6", lw=0.8)
  legend = {"SGD": ax.plot([1], [0], "ks")[0]}
  for i, method in enumerate(cells.TUNED):
    r = method_row(rows, setting, method)
    cost = _figure_cost(method)
    if r is None or r["gain"] is None or cost is None:
      continue
    g = r["gain"]
    legend[LABEL[method]] = ax.errorbar(
        [cost], [100 * g["mean"]], yerr=[[100 * (g["mean"] - g["low"])],
                                         [100 * (g["high"] - g["mean"])]],
        fmt="os^vDPXh"[i % 8], color=f"C{i}", capsize=3)
    ax.annotate(f"ρ={r['variant'].rsplit('rho', 1)[1]}", (cost, 100 * g["mean"]),
                textcoords="offset points", xytext=(6, -3), fontsize=7, color=f"C{i}")
  sam, sam_cost = method_row(rows, setting, "sam"), _figure_cost("sam")
  if sam and sam["gain"] and sam_cost and _control_ok(rows, setting):
    legend[f"goal: ≥ {100 * SHARE:.0f}% of SAM's gain"] = ax.axhline(
        SHARE * 100 * sam["gain"]["mean"], color="0.4", ls="--", lw=0.8)
    legend[f"issue 34's goal: ≤ {COST_LIMIT} × SAM's step time"] = ax.axvline(
        COST_LIMIT * sam_cost, color="0.4", ls=":", lw=0.8)
    legend[f"issue 48's goal: ≤ {SGD_COST_LIMIT} × SGD's whole-run step time"] = ax.axvline(
        SGD_COST_LIMIT, color="0.2", ls="-.", lw=0.8)
  ax.set_title(f"{setting_label(setting)}, RigL 90%:\neach method at its chosen ρ", fontsize=9)
  ax.set_xlabel("whole-run step time ÷ SGD's (Fashion CNN)")
  ax.set_ylabel("test accuracy − SGD (pp), paired mean, 95% CI")
  return legend


def render(rows) -> str:
  """The section's markdown: grids, chosen radii, paired rows, seeds, goal."""
  return "\n\n".join([
      "### Every grid point: final validation accuracy (%), mean ± std over the "
      f"selection seeds {', '.join(map(str, cells.SELECTION_SEEDS))} (chosen in bold)",
      grid_table(rows),
      "### At the chosen radii: test accuracy, paired by seed over the fresh seeds "
      f"{', '.join(map(str, cells.SEEDS))}",
      final_table(rows),
      "### Declared contrasts, each tuned option at its chosen radius (test set, paired by "
      "seed)",
      contrast_table(rows),
      "### Every seed: final test accuracy (%) at the chosen radii",
      seeds_table(rows),
      "### Over-training: validation accuracy at the end and at each run's best "
      "evaluation, mean over the fresh seeds (the best is read on the same split: an "
      "optimistic estimate of early stopping, descriptive, choosing nothing)",
      overtraining_table(rows),
      f"### Goal (issue 34): gain over SGD ≥ {100 * SHARE:.0f}% of SAM's and ZO − SAM's 95% "
      f"interval above −{100 * MARGIN:.1f} pp on every setting, at ≤ {COST_LIMIT} × SAM's "
      "step time on this CPU's Fashion CNN",
      goal(rows),
      "### What the numbers say to use (generated from the paired test rows above, each "
      "method at the radius chosen on validation: the option with the largest smallest "
      "share of SAM's gain over the judged settings)",
      recommendation(rows),
      "### The stretch's radius that needs no tuning (generated from the validation grids "
      "above, over the judged settings: per method, the one radius whose worst gap to tuned "
      "SAM's best validation mean is the smallest; 3 selection seeds, an estimate, not a "
      "paired test)",
      untuned(rows)])


def all_rows() -> best_radius.Rows:
  """The protocol's rows of every dataset."""
  return best_radius.Rows(r for d in cells.DATASETS for r in cells.read_rows(d)
                          if r["setting"] in cells.BEST_SETTINGS)


def main() -> None:
  figure(all_rows())
  print(f"wrote {FIGURE}")


if __name__ == "__main__":
  main()
