"""The GPU protocol (``study.py gpu``): the paper's recipe inside one lease.

Declared before any of its runs (issue 27, 2026-12-03). ResNet-32 on the full
CIFAR-10 training set at 32x32 (setting ``r32-50k-gpu`` of :mod:`cells`:
RigL 90 % with the first and last layer dense, SGD momentum 0.9, lr 0.1
cosine, weight decay 5e-4, batch 128, rho 0.05, crop padding 4), optimizers
:data:`VARIANTS` (SGD, SAM, the paper's ZO-SAM and the best ZO option at
declaration, the prior with ``radius_cap=4``, the one variant still open for
issue 25's goal), seeds :data:`SEEDS`, each optimizer's seeds as one
``--seeds`` program (:func:`zosam_jax.train.train_seeds`).

The epochs are planned before the runs, from step times measured at the start
of the command on its own device: as many of the paper's 160 as fit in
:data:`DEVICE_SECONDS` with :data:`RESERVE` of it held back for compilation
(the measurement's and the runs'), evaluations and checkpoints. Rows are
appended as each program finishes; a program cut by the time limit keeps its
per-epoch checkpoints, and the same command resumes it (same plan: it is
saved in ``runs/study/r32-50k-gpu/plan.json``).

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

import common
import cells

SETTING, SPARSITY = "r32-50k-gpu", 0.9
VARIANTS = ("sgd", "sam", "zosam", "zosam-prior-cap4")
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
            crop_pad=None, dense_first_last=False, batch_size=32, eval_every=44,
            checkpoint_every=44)


def cell_config(variant: str, seed: int, epochs: float, tiny: bool = False) -> dict:
  """One cell's configuration (its row's ``config``), ``epochs`` long."""
  return dict(cells.config_of(SETTING, SPARSITY, variant, seed), epochs=epochs,
              **(TINY if tiny else {}))


def program_config(variant: str, epochs: float, tiny: bool = False):
  """The ``--seeds`` program of one optimizer's cells."""
  from zosam_jax.train import TrainConfig  # pylint: disable=import-outside-toplevel
  return TrainConfig(**dict(cell_config(variant, 0, epochs, tiny), seeds=SEEDS,
                            progress=False))


def measure(variant: str, dataset, tiny: bool = False) -> float:
  """Seconds of one step of the optimizer's K-seed program on this device."""
  from zosam_jax.train import program  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    run = program.for_timing(program_config(variant, 1, tiny), Path(tmp), dataset)
    program.step_seconds(run, 2)  # Compilation and warm-up.
    return program.step_seconds(run, MEASURE_STEPS, start=2)


def plan(step_seconds: dict[str, float], steps_per_epoch: int, backend: str,
         budget: float = DEVICE_SECONDS) -> dict[str, Any]:
  """The epochs that fit: ``floor(budget·(1 − RESERVE) / Σ_v steps·t_v)``,
  at least 1 and at most :data:`PAPER_EPOCHS`."""
  per_epoch = steps_per_epoch * sum(step_seconds.values())
  epochs = max(1, min(PAPER_EPOCHS, math.floor(budget * (1 - RESERVE) / per_epoch)))
  return {"setting": SETTING, "backend": backend, "epochs": epochs,
          "steps_per_epoch": steps_per_epoch, "budget_seconds": budget,
          "expected_train_seconds": round(epochs * per_epoch, 1),
          "step_ms": {v: round(1e3 * t, 2) for v, t in step_seconds.items()},
          "cells": [cells.cell_id(SETTING, SPARSITY, v, s) for v in VARIANTS for s in SEEDS]}


def format_plan(p: dict[str, Any]) -> str:
  """The plan as the lines ``--dry-run`` prints."""
  lines = [f"GPU protocol on {p['backend']}: {len(p['cells'])} cells "
           f"({', '.join(VARIANTS)} x seeds {', '.join(map(str, SEEDS))}), "
           f"{p['epochs']} of {PAPER_EPOCHS} epochs x {p['steps_per_epoch']} steps",
           "| optimizer | ms per step (3 seeds in one program) | seconds |", "|---|---|---|"]
  lines += [f"| {v} | {ms:.1f} | {ms * p['epochs'] * p['steps_per_epoch'] / 1e3:.0f} |"
            for v, ms in p["step_ms"].items()]
  lines.append(f"expected device time: {p['expected_train_seconds']:.0f} s of training "
               f"steps in a {p['budget_seconds']:.0f} s budget ({RESERVE:.0%} held back "
               "for compilation, evaluation and checkpoints)")
  return "\n".join(lines)


def _planned(dataset, tiny: bool, root: Path) -> dict[str, Any]:
  """The saved plan of an interrupted protocol, else a new one (measured)."""
  import jax  # pylint: disable=import-outside-toplevel
  path = root / "runs" / "study" / SETTING / "plan.json"
  if path.is_file() and not tiny:
    return json.loads(path.read_text())
  steps_per_epoch = dataset.x_train.shape[0] // program_config("sgd", 1, tiny).batch_size
  p = plan({v: measure(v, dataset, tiny) for v in VARIANTS}, steps_per_epoch,
           jax.default_backend())
  if not tiny:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(p, indent=1))
  return p


def run(dataset, then=None, dry_run: bool = False, tiny: bool = False,
        root: Path = common.REPO) -> dict[str, Any]:
  """Plans, prints the plan, and (unless ``dry_run``) runs the programs whose
  rows are missing, appending each program's rows (then ``then(rows)``).

  Returns:
    The plan.
  """
  from zosam_jax.train import train_seeds  # pylint: disable=import-outside-toplevel
  p = _planned(dataset, tiny, root)
  print(format_plan(p), flush=True)
  if dry_run:
    return p
  done = cells.all_rows()
  for variant in VARIANTS:
    todo = [(SETTING, SPARSITY, variant, s) for s in SEEDS]
    if all(cells.cell_id(*c) in done for c in todo):
      continue
    rel = f"runs/study/{SETTING}/{cells.SETTINGS[SETTING]['sparse_method']}{SPARSITY}/{variant}"
    cfg = program_config(variant, p["epochs"], tiny)
    resume = (root / rel / f"seed{SEEDS[0]}" / "config.json").is_file()
    start = time.perf_counter()
    summaries = train_seeds(cfg.replace(resume=resume, overwrite=not resume,
                                        workdir=rel), root / rel, dataset=dataset)
    wall = (time.perf_counter() - start) / len(SEEDS)
    rows = [dict(cells.cell_row(*cell, cell_config(variant, cell[3], p["epochs"], tiny),
                                summary, f"{rel}/seed{cell[3]}", wall, root),
                 program_seeds=list(SEEDS))
            for cell, summary in zip(todo, summaries)]
    for row in rows:
      common.append_row(cells.rows_path(cells.SETTINGS[SETTING]["dataset"]), row)
    if then is not None:
      then(rows)
  return p
