"""Renders ``RESULTS.md`` from ``RESULTS.in.md``, pasting in the generated tables.

A line ``{{include results/NAME.md}}`` is replaced by that file (or a note
that it was not produced), ``{{study fashion_mnist}}``
by the tables and verdicts of the study's rows (:mod:`study_report`; for
CIFAR-10 with the corruption robustness of :mod:`study_robustness`), ``{{ascents}}``
by the ascent variants' gains and costs (:mod:`ascents_report`). Reads
committed files only.

  python experiments/render_results.py
"""

from __future__ import annotations

import re

import ascents_report
import best_report
import common
import cells
import study_report
import study_robustness


def study_section(dataset: str) -> str:
  """The tables and verdicts of the study's rows of one dataset."""
  robust = (study_robustness.read_rows() if cells.DATASETS[dataset].get("robustness")
            else ())
  rows = [r for r in cells.read_rows(dataset) if r["setting"] not in cells.BEST_SETTINGS]
  return study_report.render(rows, dataset, robust)


def render() -> str:
  """RESULTS.md's text, from ``RESULTS.in.md`` and the committed results."""
  text = (common.EXP / "RESULTS.in.md").read_text()

  def include(m):
    path = common.EXP / m.group(1)
    return path.read_text().strip() if path.exists() else f"({m.group(1)}: not produced)"

  text = re.sub(r"\{\{include (\S+)\}\}", include, text)
  text = re.sub(r"\{\{study (\S+)\}\}", lambda m: study_section(m.group(1)), text)
  text = text.replace("{{ascents}}", ascents_report.render(cells.read_rows("fashion_mnist")))
  text = text.replace("{{best}}", best_report.render(best_report.all_rows()))
  return text


def main() -> None:
  (common.EXP / "RESULTS.md").write_text(render())


if __name__ == "__main__":
  main()
