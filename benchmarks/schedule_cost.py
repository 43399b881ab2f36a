"""Whole-run step time of the ascent schedules against SGD, the cost a long run pays.

For each model and option: the mean wall-clock seconds per step of a whole run
of the training program (``zosam_jax.train.program.run_seconds``: every step
of the schedule, on and off, dispatched as ``zosam-train`` dispatches them;
every step variant compiled before anything is timed; evaluation excluded),
divided by SGD's. The run is timed in windows of ``--window`` steps, the
options interleaved window by window (SGD's window 0, each option's window 0,
SGD's window 1, ...), so that machine load moves them alike; each window's time
is the median over ``--rounds`` rounds, and an option's whole run the sum of its
windows. The run is shortened (``--steps``) with the schedule's fractions kept
(the last 25% of 300 steps: steps 225-299); its RigL mask updates every 100
steps are included.

Usage::

  python benchmarks/schedule_cost.py                        # the study's CNN and MLP
  python benchmarks/schedule_cost.py --models mlp --steps 40 --rounds 1

It prints a markdown table and writes JSON (``--out``), rewritten after each model.

References:
  Zhou et al., `Sharpness-Aware Minimization Efficiently Selects Flatter Minima
  Late in Training <https://arxiv.org/abs/2410.10373>`_, ICLR 2025
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax

from zosam_jax.train import TrainConfig
from zosam_jax.train import optim
from zosam_jax.train import program

#: The study's Fashion-MNIST CNN and MLP, RigL 90 % (its recipe's batch and
#: schedule); ``digits``: bundled data, for a quick check anywhere.
MODELS: dict[str, TrainConfig] = {
    name: TrainConfig(dataset=dataset, model=model, batch_size=128, lr=0.05,
                      sparse_method="rigl", sparsity=0.9, progress=False)
    for name, dataset, model in (("cnn", "fashion_mnist", "cnn"),
                                 ("mlp", "fashion_mnist", "mlp"),
                                 ("cnn_digits", "digits", "cnn"))
}
_ASCENT8 = dict(optimizer="sam", ascent_batch_fraction=0.125)
_HEAD = dict(optimizer="zosam", zo_prior="gradient", num_dirs=0, zo_probe=False,
             zo_exact_head=True)
#: The options of issue 48 (named as in ``experiments/cells.py``) and their references.
OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": dict(optimizer="sgd"),
    "sam": dict(optimizer="sam"),
    "sam-ascent8": _ASCENT8,
    "sam-ascent8-late25": dict(_ASCENT8, ascent_start=0.75),
    "sam-ascent8-late10": dict(_ASCENT8, ascent_start=0.9),
    "sam-ascent8-every4": dict(_ASCENT8, ascent_every=4),
    # Every step off (the schedule's start past the run's end): the off step alone.
    "sam-ascent8-off": dict(_ASCENT8, ascent_start=10**9),
    "sam-late25": dict(optimizer="sam", ascent_start=0.75),
    "msam": dict(optimizer="msam"),
    "zosam-prior-noprobe-head": _HEAD,
    "zosam-prior-noprobe-head-late25": dict(_HEAD, ascent_start=0.75),
}
#: An option's name with this suffix: its schedule's step chosen by ``jax.lax.cond``
#: inside one compiled step (what a user who jits a single step gets).
COND = "@cond"


def compiled_costs(run: program.Program) -> dict[str, dict[str, float]]:
  """XLA's FLOPs and bytes accessed of each step variant of the run's schedule
  (``cost_analysis`` of the compiled step), keyed by its flags (``ascent=False``;
  ``step``: the one variant); an off step compiled to SGD's shows SGD's numbers."""
  costs = {}
  for flags in optim.step_variants(run.cfg, run.num_steps):
    compiled = run.train_step.lower(run.state, *run.inputs(0), **flags).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    costs[" ".join(f"{k}={v}" for k, v in flags.items()) or "step"] = {
        k: float(analysis.get(k, 0.0)) for k in ("flops", "bytes accessed")}
  return costs


def measure(cfg: TrainConfig, options: list[str], rounds: int, window: int) -> list[dict]:
  """One row per option: its whole-run ms/step and ×SGD (windows interleaved,
  each window's median over rounds)."""
  windows = [range(a, min(a + window, cfg.steps)) for a in range(0, cfg.steps, window)]
  with tempfile.TemporaryDirectory() as tmp:
    runs = {name: program.for_timing(cfg.replace(**OPTIONS[name.removesuffix(COND)]),
                                     Path(tmp, name))
            for name in ["sgd", *options]}
    static = {name: not name.endswith(COND) for name in runs}
    costs = {name: compiled_costs(run) if static[name] else {} for name, run in runs.items()}
    for name, run in runs.items():  # Every step variant compiled first.
      program.run_seconds(run, static[name], range(0))
    times = {name: [[] for _ in windows] for name in runs}
    for _ in range(rounds):
      for i, steps in enumerate(windows):
        for name, run in runs.items():
          times[name][i].append(program.run_seconds(run, static[name], steps, warm=False))
  total = {name: sum(statistics.median(t) for t in times[name]) for name in runs}
  return [{"option": name, "ms_per_step": 1e3 * total[name] / cfg.steps,
           "ratio_to_sgd": total[name] / total["sgd"],
           "window_medians_ms": [1e3 * statistics.median(t) for t in times[name]],
           "compiled": costs[name]}
          for name in runs]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="cnn,mlp", help=f"of {', '.join(MODELS)}")
  parser.add_argument("--options", default=",".join(
      [o for o in OPTIONS if o != "sgd"] + ["sam-ascent8-late25" + COND]),
                      help=f"of {', '.join(OPTIONS)}, each also with the suffix {COND} "
                           "(SGD is always measured)")
  parser.add_argument("--steps", type=int, default=300, help="steps of the timed run")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--window", type=int, default=25, help="steps per timed window")
  parser.add_argument("--out", default="benchmarks/results/schedule_cost_cpu.json")
  args = parser.parse_args(argv)
  options = [o for o in args.options.split(",") if o != "sgd"]
  unknown = [o for o in options if o.removesuffix(COND) not in OPTIONS] + [
      m for m in args.models.split(",") if m not in MODELS]
  if unknown:
    parser.error(f"unknown option or model {unknown}: see --help")
  out = {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
         "machine": platform.machine(), "cpus": os.cpu_count(), "steps": args.steps,
         "rounds": args.rounds, "window": args.window, "command": " ".join(sys.argv),
         "rows": []}
  print("| model | option | ms/step (whole run) | ×SGD |\n|---|---|---|---|")
  for model in args.models.split(","):
    cfg = MODELS[model].replace(steps=args.steps, sparse_update_every=min(100, args.steps))
    for row in measure(cfg, options, args.rounds, args.window):
      out["rows"].append(dict(row, model=model))
      print(f"| {model} | {row['option']} | {row['ms_per_step']:.1f} | "
            f"{row['ratio_to_sgd']:.3f} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
