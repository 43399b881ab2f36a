"""When to perturb (issue 48): whole-run cost against SAM's gain, from the rows.

Issue 48's methods (:data:`cells.SCHEDULED`) run issue 34's protocol unchanged
(:mod:`best_radius`); this module judges them against the issue's goal: at most
``COST_LIMIT`` × SGD's whole-run step time on both of the study's models
(``benchmarks/results/schedule_cost_cpu.json``,
:func:`ascents_report.whole_run_cost`), at
least ``SHARE`` of tuned SAM's gain over SGD and the difference to SAM's 95%
interval above −``MARGIN`` on every setting with a positive control; and says
what to use at each cost level. Every verdict is generated from the numbers.
"""

from __future__ import annotations

import ascents_report
import best_report
import cells

#: The goal, declared in the issue, and its stretch (≤ 1.02 ×, or ≥ 100% at ≤ 1.05 ×).
SHARE, MARGIN = best_report.SHARE, best_report.MARGIN
COST_LIMIT, STRETCH_COST = best_report.SGD_COST_LIMIT, best_report.SGD_STRETCH_COST
#: The cost levels of "what to use", as the issue names them (× SGD's whole-run time).
LEVELS = (("about SGD's (≤ 1.02 ×)", 1.02), ("about 1.05 ×", 1.05), ("about 1.2 ×", 1.25),
          ("SAM's (about 2 ×)", None))


def _cost(method: str) -> float | None:
  """The larger of the method's whole-run costs on the two models (None: not timed)."""
  costs = [ascents_report.whole_run_cost(method, m) for m in ("cnn", "mlp")]
  return None if None in costs else max(costs)


def _rows_of(rows, method: str) -> tuple[list[dict | None], list[str]]:
  """The method's complete row per judged setting, and the settings judged."""
  judged = [best_report._judged(rows, a) for a in cells.BEST_ATTEMPTS]
  return ([best_report._complete_row(rows, s, method) for s in judged],
          [best_report.setting_label(best_report._reported(rows, a))
           for a in cells.BEST_ATTEMPTS])


def verdict(rows, method: str) -> str:
  """The goal's verdict for one method: met, not met (by how much), or not judged."""
  per, labels = _rows_of(rows, method)
  cost = _cost(method)
  far = [] if cost is None or cost <= COST_LIMIT else [
      f"{cost:.3f} × SGD's whole-run step time (goal ≤ {COST_LIMIT})"]
  for r, label in zip(per, labels):
    if r is None:
      continue
    misses = []
    if r["share"] is None or r["share"] < SHARE:
      misses.append(("—" if r["share"] is None else f"{100 * r['share']:.0f}%")
                    + " of SAM's gain")
    if r["to_sam"]["low"] < -MARGIN:
      misses.append(f"− SAM {best_report._interval(r['to_sam'])} pp")
    if misses:
      far.append(f"{label}: " + ", ".join(misses))
  missing = [label for r, label in zip(per, labels) if r is None]
  if far:
    return "**not met**: " + "; ".join(far)
  if missing or cost is None:
    return "not judged yet (" + "; ".join(
        (["not timed"] if cost is None else [])
        + ([f"runs missing: {', '.join(missing)}"] if missing else [])) + ")"
  stretch = cost <= STRETCH_COST or all(r["share"] >= 1.0 for r in per)
  return f"**met** ({cost:.3f} × SGD" + ("; the stretch too)" if stretch else ")")


def table(rows) -> str:
  """Per method: its whole-run cost on both models, per setting its chosen ρ,
  share of SAM's gain and − SAM (paired), and the goal's verdict."""
  _, labels = _rows_of(rows, "sam")
  lines = ["| method | whole run ÷ SGD (CNN, MLP) | " + " | ".join(labels) + " | goal |",
           "|---|---|" + "---|" * (len(labels) + 1)]
  for method in ("sam", "sam-ascent8", *cells.SCHEDULED):
    costs = [ascents_report.whole_run_cost(method, m) for m in ("cnn", "mlp")]
    cost = ", ".join("—" if c is None else f"{c:.3f}" for c in costs)
    cells_text = [best_report._summary_cell(rows, best_report._reported(rows, a), method)
                  for a in cells.BEST_ATTEMPTS]
    goal = "the reference" if method == "sam" else verdict(rows, method)
    lines.append(f"| {best_report.LABEL[method]} | {cost} | " + " | ".join(cells_text)
                 + f" | {goal} |")
  return "\n".join(lines)


def pick(rows, limit: float | None, over: list[int] | None = None):
  """``(share, method, rows per setting, cost)`` of the option (any tuned
  method) within ``limit`` × SGD's whole-run time whose smallest share of SAM's
  gain over the judged settings (those at the indices ``over`` of
  :data:`cells.BEST_ATTEMPTS`; default: all) is the largest; ``None`` while
  none within it is complete on every one of them."""
  pool = []
  for method in cells.TUNED:
    per, _ = _rows_of(rows, method)
    per = [r for i, r in enumerate(per) if over is None or i in over]
    cost = _cost(method)
    if all(per) and cost is not None and (limit is None or cost <= limit) and (
        method == "sam" or all(r["share"] is not None for r in per)):
      pool.append((min(1.0 if method == "sam" else r["share"] for r in per), method,
                   per, cost))
  return max(pool, key=lambda p: p[0]) if pool else None


def _complete_settings(rows) -> list[int]:
  """The indices (of :data:`cells.BEST_ATTEMPTS`) of the judged settings where
  every tuned method's six fresh seeds are in."""
  per = [_rows_of(rows, method)[0] for method in cells.TUNED]
  return [i for i in range(len(cells.BEST_ATTEMPTS)) if all(p[i] for p in per)]


def winner(rows) -> str | None:
  """The option the GPU protocol compares too (declared 2026-12-07, before any
  GPU run of it): the cheapest method that meets the goal, else the pick at
  about 1.05 × SGD's cost (:func:`pick`); ``None`` while there is neither."""
  met = [m for m in cells.TUNED
         if m != "sam" and verdict(rows, m).startswith("**met**")]
  if met:
    return min(met, key=_cost)
  chosen = pick(rows, COST_LIMIT)
  return None if chosen is None else chosen[1]


def _may_overtake(rows, limit: float | None, score: float) -> bool:
  """Whether an option within ``limit`` whose runs are not all in could still
  beat ``score``: its smallest share so far above it (more settings can only
  lower a smallest share), or no share yet."""
  for method in cells.TUNED:
    per, _ = _rows_of(rows, method)
    cost = _cost(method)
    if all(per) or cost is None or (limit is not None and cost > limit):
      continue
    shares = [r["share"] for r in per if r is not None]
    if not shares or None in shares or min(shares) > score:
      return True
  return False


def _use_line(title: str, chosen, labels: list[str] | None = None) -> str:
  """One "what to use" line; ``labels``: the settings of a provisional pick."""
  _, method, per, cost = chosen
  radii = ", ".join(r["variant"].rsplit("rho", 1)[1] for r in per)
  keeps = ("the reference" if method == "sam" else ", ".join(
      f"{100 * r['share']:.0f}%" for r in per) + " of SAM's gain")
  so_far = "" if labels is None else (
      f"so far, over the settings where every option's runs are in ({'; '.join(labels)}): ")
  return (f"- {title}: {so_far}{best_report.LABEL[method]}, ρ = {radii} (the settings in "
          f"order), {cost:.3f} × SGD, keeps {keeps}.")


def what_to_use(rows) -> str:
  """One line per cost level: the option (any tuned method) within it whose
  smallest share of SAM's gain over the judged settings is the largest
  (:func:`pick`), its radii and what it keeps; while some settings' runs are
  missing, the same pick over the settings where every method is complete,
  said to be provisional; generated."""
  _, labels = _rows_of(rows, "sam")
  complete = _complete_settings(rows)
  timed = {m: c for m in cells.TUNED if (c := _cost(m)) is not None}
  lines = []
  for title, limit in LEVELS:
    chosen = pick(rows, limit)
    if chosen is not None and not _may_overtake(rows, limit, chosen[0]):
      lines.append(_use_line(title, chosen))
    elif limit is not None and timed and min(timed.values()) > limit:
      cheapest = min(timed, key=timed.get)
      lines.append(f"- {title}: no option costs that little on both models (the cheapest, "
                   f"{best_report.LABEL[cheapest]}, {timed[cheapest]:.3f} × SGD).")
    elif complete and (partial := pick(rows, limit, complete)) is not None:
      lines.append(_use_line(title, partial, [labels[i] for i in complete]))
    else:
      lines.append(f"- {title}: no option complete on every judged setting yet.")
  return "\n".join(lines)


def render(rows) -> str:
  """RESULTS.md's section for issue 48."""
  return "\n\n".join([
      f"### Goal (issue 48): ≤ {COST_LIMIT} × SGD's whole-run step time on both models, "
      f"≥ {100 * SHARE:.0f}% of SAM's gain over SGD and − SAM's 95% interval above "
      f"−{100 * MARGIN:.1f} pp on every setting (stretch: ≤ {STRETCH_COST} ×, or ≥ 100% at "
      f"≤ {COST_LIMIT} ×)",
      table(rows),
      "### What to use, by cost (generated: at each level the option whose smallest "
      "share of SAM's gain over the judged settings is the largest)",
      what_to_use(rows)])
