"""Step time of K seeds in one program (``--seeds``) against K separate runs.

For each model, optimizer and K: the median wall-clock time of the training
program's own jitted step (:func:`zosam_jax.train.program.set_up`, the step
``zosam-train`` runs) for the K seeds stacked and ``jax.vmap``-ed, against K
times the single-seed step, both measured in interleaved rounds of the same
run (so machine load moves both). ``×separate`` below 1 means the program
pays: one K-seed step takes less than K single steps.

Usage::

  python benchmarks/seeds_cost.py                       # small CNN and ResNet-20, K 1..8
  python benchmarks/seeds_cost.py --models cnn --ks 1,2 --steps 3 --rounds 1

It prints a markdown table and writes JSON (``--out``), rewritten after every
(model, optimizer) cell.
"""

import argparse
import dataclasses
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
from zosam_jax.train import program

#: The benchmark's settings: the study's small CNN and MLP (Fashion-MNIST, 28×28)
#: and its ResNet-20 (CIFAR-10 at 16 px), RigL 90 % as in the study.
MODELS: dict[str, TrainConfig] = {
    "cnn": TrainConfig(dataset="fashion_mnist", model="cnn", train_subset=2000,
                       batch_size=128),
    "mlp": TrainConfig(dataset="fashion_mnist", model="mlp", train_subset=2000,
                       batch_size=128),
    "resnet20": TrainConfig(dataset="cifar10", model="resnet20", image_size=16,
                            train_subset=2000, batch_size=128),
    # Bundled data, for a quick check anywhere.
    "cnn_digits": TrainConfig(dataset="digits", model="cnn", batch_size=64),
}
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": dict(optimizer="sgd"), "sam": dict(optimizer="sam"),
    "zosam": dict(optimizer="zosam"),
}


def measure(cfg: TrainConfig, ks: list[int], steps: int, rounds: int) -> list[dict]:
  """One row per K: the program's and the single run's ms/step (medians over
  ``rounds`` interleaved rounds)."""
  with tempfile.TemporaryDirectory() as tmp:
    single = program.for_timing(cfg, Path(tmp, "single"))
    programs = {k: program.for_timing(cfg.replace(seeds=tuple(range(k))), Path(tmp, f"k{k}"))
                for k in ks}
    for run in [single, *programs.values()]:
      program.step_seconds(run, 2)  # Compilation and warm-up.
    one, many = [], {k: [] for k in ks}
    for _ in range(rounds):
      one.append(program.step_seconds(single, steps))
      for k, run in programs.items():
        many[k].append(program.step_seconds(run, steps))
  t1 = statistics.median(one)
  return [{"k": k, "ms_per_step": 1e3 * statistics.median(many[k]),
           "single_ms_per_step": 1e3 * t1,
           "ratio_to_separate": statistics.median(many[k]) / (k * t1)} for k in ks]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="cnn,resnet20", help=f"of {', '.join(MODELS)}")
  parser.add_argument("--optimizers", default="sgd,sam,zosam")
  parser.add_argument("--ks", default="1,2,4,8")
  parser.add_argument("--sparsity", type=float, default=0.9)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default="benchmarks/results/seeds_cost_cpu.json")
  args = parser.parse_args(argv)
  ks = [int(k) for k in args.ks.split(",")]
  header = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
            "jax": jax.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "steps": args.steps, "rounds": args.rounds}
  print(f"# K seeds in one program on {header['device']} ({header['backend']})")
  print("| model | optimizer | K | ms/step (K seeds) | single ms/step | ×separate |")
  print("|---|---|---|---|---|---|")
  rows = []
  for model in args.models.split(","):
    for name in args.optimizers.split(","):
      cfg = dataclasses.replace(
          MODELS[model], **OPTIMIZERS[name], sparse_method="rigl",
          sparsity=args.sparsity, steps=1000, progress=False)
      print(f"{model} {name}: compiling {len(ks) + 1} programs", file=sys.stderr,
            flush=True)
      for row in measure(cfg, ks, args.steps, args.rounds):
        rows.append(dict(row, model=model, optimizer=name))
        print(f"| {model} | {name} | {row['k']} | {row['ms_per_step']:.1f} | "
              f"{row['single_ms_per_step']:.1f} | {row['ratio_to_separate']:.2f} |",
              flush=True)
      os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
      with open(args.out + ".tmp", "w") as f:
        json.dump({"header": header, "rows": rows}, f, indent=1)
      os.replace(args.out + ".tmp", args.out)
  print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
