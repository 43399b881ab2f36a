"""The GPU protocol (``study.py gpu``): the paper's recipe inside one lease.

Declared before any of its runs (issue 27, 2026-12-03; best against best, issue
34, 2026-12-04, before any run; its ZO method changed on the evening of
2026-12-04, still before any run, when the MLP's grid made the plain prior the
README's one-backward option). ResNet-32 on the CIFAR-10 training set at
32x32 (setting ``r32-50k-gpu`` of :mod:`cells`: RigL 90 % with the first and
last layer dense, SGD momentum 0.9, lr 0.1 cosine, weight decay 5e-4, batch
128, crop padding 4) with :data:`cells.VALIDATION_SUBSET` of the 50k training
images held out as a validation split (so 45k train). Each method of
:data:`TUNED` (SAM, and the prior with a plain radius, the README's
one-backward option when this was declared: ``radius_cap=4`` chose ρ = 0.05
and diverged above it on the Fashion-MNIST MLP; the CPU study's later options
are not in it) runs the radius grid :data:`cells.RADII` on the selection
seeds, one ``--seeds`` program per radius; its radius is the one of highest
mean validation accuracy (:func:`best_radius.chosen_radius`). Then SGD, the
paper's ZO-SAM at its ρ = 0.05 (:data:`FIXED`) and each tuned method at its
radius run on the fresh :data:`SEEDS`, one program each, and those test rows
are the comparison. Issue 48's winner on the CPU study (declared 2026-12-07,
before any GPU run: :func:`schedule_report.winner`, the cheapest option that
meets its goal, else the pick at about 1.05 × SGD's cost) joins :data:`TUNED`
once the CPU rows name one (:func:`tuned`).

The epochs are planned before the runs, from step times measured at the start
of the command on its own device: as many of the paper's 160 as fit all the
programs in :data:`DEVICE_SECONDS` with :data:`RESERVE` of it held back for
compilation (the measurement's and the runs'), evaluations and checkpoints.
Rows are appended as each program finishes; a program cut by the time limit
keeps its per-epoch checkpoints, and the same command resumes it (same plan:
it is saved in ``runs/study/r32-50k-gpu/plan.json``).

  python experiments/study.py gpu --dataset cifar10 --dry-run   # the plan only

References:
  Ji et al., `ZO-SAM <https://arxiv.org/abs/2603.13115>`_, CVPR 2026 (the recipe).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import best_radius
import cells
import common

SETTING, SPARSITY = "r32-50k-gpu", 0.9
#: Tuned on the validation split over :data:`cells.RADII`, then at their radius.
TUNED = ("sam", "zosam-prior")
#: Run at their declared hyperparameters: SGD (lr of the recipe), the paper's ZO-SAM.
FIXED = ("sgd", "zosam")
METHODS = FIXED + TUNED
SEEDS = (0, 1, 2)
PAPER_EPOCHS = 160
#: One command's limit on a lent GPU.
DEVICE_SECONDS = 600
#: The share of :data:`DEVICE_SECONDS` not planned for training steps.
RESERVE = 0.3
#: Timed steps per optimizer for the plan (after two warm-up steps).
MEASURE_STEPS = 5
#: The dry run of the tests: the same protocol at a size any CPU runs in seconds.
TINY = dict(dataset="digits", cifar10_test="lossless_1k", model="cnn", image_size=None,
            crop_pad=None, dense_first_last=False, batch_size=32, eval_every=38,
            checkpoint_every=38, validation_subset=200)


def cell_config(variant: str, seed: int, epochs: float, tiny: bool = False) -> dict:
  """One cell's configuration (its row's ``config``), ``epochs`` long."""
  return dict(cells.config_of(SETTING, SPARSITY, variant, seed), epochs=epochs,
              validation_subset=cells.VALIDATION_SUBSET) | (TINY if tiny else {})


def program_config(variant: str, epochs: float, tiny: bool = False, seeds=SEEDS):
  """The ``--seeds`` program of one variant's cells."""
  from zosam_jax.train import TrainConfig  # pylint: disable=import-outside-toplevel
  return TrainConfig(**dict(cell_config(variant, 0, epochs, tiny), seeds=seeds,
                            progress=False))


def tuned(rows=None) -> tuple[str, ...]:
  """:data:`TUNED`, and issue 48's winner on the CPU study when there is one
  (:func:`schedule_report.winner`, from the committed rows unless ``rows``)."""
  import best_report  # pylint: disable=import-outside-toplevel
  import schedule_report  # pylint: disable=import-outside-toplevel
  won = schedule_report.winner(best_report.all_rows() if rows is None else rows)
  return TUNED + ((won,) if won is not None and won not in TUNED else ())


def methods(tuned_methods: tuple[str, ...]) -> tuple[str, ...]:
  """Every method of the protocol: :data:`FIXED`, then the tuned ones (:func:`tuned`)."""
  return FIXED + tuned_methods


def measure(method: str, dataset, tiny: bool = False, tuned_methods=TUNED) -> float:
  """Seconds of one step of the method's K-seed program on this device (a tuned
  method timed at its first radius: a radius costs nothing)."""
  from zosam_jax.train import program  # pylint: disable=import-outside-toplevel
  variant = best_radius.variant(method, cells.RADII[0]) if method in tuned_methods else method
  with tempfile.TemporaryDirectory() as tmp:
    run = program.for_timing(program_config(variant, 1, tiny), Path(tmp),
                             dataset)
    program.step_seconds(run, 2)  # Compilation and warm-up.
    return program.step_seconds(run, MEASURE_STEPS, start=2)


def programs(tuned_methods: tuple[str, ...] = TUNED) -> list[tuple[str, tuple[int, ...]]]:
  """``(variant, seeds)`` of every program, in order; a tuned method's final
  program is named ``<method>-rho<chosen>`` (known once its grid is in; a grid
  whose best radius is at its edge grows by up to :data:`cells.EDGE_STEPS`
  programs each way, not planned here)."""
  grid = [(best_radius.variant(m, rho), cells.SELECTION_SEEDS) for m in tuned_methods
          for rho in cells.RADII]
  return grid + [(v, SEEDS) for v in FIXED] + [(f"{m}-rho<chosen>", SEEDS)
                                               for m in tuned_methods]


def plan(step_seconds: dict[str, float], steps_per_epoch: int, backend: str,
         budget: float = DEVICE_SECONDS, tuned_methods: tuple[str, ...] = TUNED
         ) -> dict[str, Any]:
  """The epochs that fit every program: ``floor(budget·(1 − RESERVE) / Σ_programs
  steps·t)``, at least 1 and at most :data:`PAPER_EPOCHS`."""
  todo = programs(tuned_methods)
  runs = {m: sum(1 for v, _ in todo if v == m or v.startswith(f"{m}-rho"))
          for m in step_seconds}
  per_epoch = steps_per_epoch * sum(runs[m] * t for m, t in step_seconds.items())
  epochs = max(1, min(PAPER_EPOCHS, math.floor(budget * (1 - RESERVE) / per_epoch)))
  return {"setting": SETTING, "backend": backend, "epochs": epochs,
          "steps_per_epoch": steps_per_epoch, "budget_seconds": budget,
          "expected_train_seconds": round(epochs * per_epoch, 1),
          "step_ms": {m: round(1e3 * t, 2) for m, t in step_seconds.items()},
          "programs": runs, "tuned": list(tuned_methods),
          "cells": [cells.cell_id(SETTING, SPARSITY, v, s) if "<" not in v else
                    f"{SETTING}/rigl{SPARSITY}/{v}/seed{s}"
                    for v, seeds in todo for s in seeds]}


def format_plan(p: dict[str, Any]) -> str:
  """The plan as the lines ``--dry-run`` prints."""
  tuned_methods = tuple(p["tuned"])
  lines = [f"GPU protocol on {p['backend']}: {len(p['cells'])} cells in "
           f"{sum(p['programs'].values())} programs (radius grids {cells.RADII} of "
           f"{', '.join(tuned_methods)} on seeds {', '.join(map(str, cells.SELECTION_SEEDS))}, "
           f"chosen on validation; then {', '.join(methods(tuned_methods))} on seeds "
           f"{', '.join(map(str, SEEDS))}), {p['epochs']} of {PAPER_EPOCHS} epochs x "
           f"{p['steps_per_epoch']} steps",
           "| optimizer | ms per step (3 seeds in one program) | programs | seconds |",
           "|---|---|---|---|"]
  lines += [f"| {m} | {ms:.1f} | {p['programs'][m]} | "
            f"{ms * p['programs'][m] * p['epochs'] * p['steps_per_epoch'] / 1e3:.0f} |"
            for m, ms in p["step_ms"].items()]
  lines.append(f"expected device time: {p['expected_train_seconds']:.0f} s of training "
               f"steps in a {p['budget_seconds']:.0f} s budget ({RESERVE:.0%} held back "
               "for compilation, evaluation and checkpoints)")
  return "\n".join(lines)


def _planned(dataset, tiny: bool, root: Path, tuned_methods: tuple[str, ...]
             ) -> dict[str, Any]:
  """The saved plan of an interrupted protocol, else a new one (measured)."""
  import jax  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import data  # pylint: disable=import-outside-toplevel
  path = root / "runs" / "study" / SETTING / "plan.json"
  if path.is_file() and not tiny:
    return json.loads(path.read_text())
  sgd = program_config("sgd", 1, tiny)
  steps_per_epoch = data.steps_per_epoch(dataset.x_train.shape[0] - sgd.validation_subset,
                                           sgd.batch_size)
  p = plan({m: measure(m, dataset, tiny, tuned_methods) for m in methods(tuned_methods)},
           steps_per_epoch, jax.default_backend(), tuned_methods=tuned_methods)
  if not tiny:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(p, indent=1))
  return p


def _program(variant: str, seeds, p, dataset, then, tiny: bool, root: Path) -> None:
  """Trains one variant's seeds as one program unless its rows are in; appends them."""
  from zosam_jax.train import train_seeds  # pylint: disable=import-outside-toplevel
  todo = [(SETTING, SPARSITY, variant, s) for s in seeds]
  done = cells.all_rows()
  if all(cells.cell_id(*c) in done for c in todo):
    return
  rel = f"runs/study/{SETTING}/{cells.SETTINGS[SETTING]['sparse_method']}{SPARSITY}/{variant}"
  cfg = program_config(variant, p["epochs"], tiny, seeds)
  resume = (root / rel / f"seed{seeds[0]}" / "config.json").is_file()
  start = time.perf_counter()
  summaries = train_seeds(cfg.replace(resume=resume, overwrite=not resume, workdir=rel),
                          root / rel, dataset=dataset)
  wall = (time.perf_counter() - start) / len(seeds)
  rows = [dict(cells.cell_row(*cell, cell_config(variant, cell[3], p["epochs"], tiny),
                              summary, f"{rel}/seed{cell[3]}", wall, root),
               program_seeds=list(seeds))
          for cell, summary in zip(todo, summaries)]
  for row in rows:
    common.append_row(cells.rows_path(cells.SETTINGS[SETTING]["dataset"]), row)
  if then is not None:
    then(rows)


def run(dataset, then=None, dry_run: bool = False, tiny: bool = False,
        root: Path = common.REPO) -> dict[str, Any]:
  """Plans, prints the plan, and (unless ``dry_run``) runs the programs whose
  rows are missing: the grids, then the finals at the chosen radii.

  Returns:
    The plan.
  """
  tuned_methods = tuned()  # The committed rows read once.
  p = _planned(dataset, tiny, root, tuned_methods)
  print(format_plan(p), flush=True)
  if dry_run:
    return p
  def run_grid(variants):
    for variant in variants:
      _program(variant, cells.SELECTION_SEEDS, p, dataset, then, tiny, root)
    return list(cells.all_rows().values())
  radii = best_radius.tune(tuned_methods, SETTING, run_grid)  # Grown at an edge, as on CPU.
  chosen = [best_radius.variant(m, radii[m]) for m in tuned_methods]
  for variant in FIXED + tuple(chosen):
    _program(variant, SEEDS, p, dataset, then, tiny, root)
  return p
