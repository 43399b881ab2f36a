"""Chooses the step count, learning rate and ρ on a validation split.

The validation set is a stratified 20% of the *training* set (the test set is
never read). Stage 1 picks (steps, lr), shared by all optimizers, by the mean
validation accuracy of SGD, SAM and ZO-SAM with RigL at 95% sparsity (ρ = 0.05).
Stage 2 picks ρ for SAM and for ZO-SAM at those (steps, lr). The choice is
written to ``experiments/results/tuned_<dataset>.json``; the grids read it.

  python experiments/tune.py --dataset digits
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

import common

#: (steps, lr) candidates: three learning rates at the short budget, and a
#: doubled budget at the middle one (the CPU time of this session was limited).
STAGE1 = {"digits": ((400, 0.03), (400, 0.1), (400, 0.3), (800, 0.1)),
          "mnist1d": ((1000, 0.03), (1000, 0.1), (1000, 0.3), (2000, 0.1))}
RHOS = (0.05, 0.1, 0.2)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--dataset", default="digits")
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  p.add_argument("--sparsity", type=float, default=0.95)
  p.add_argument("--skip-rho", action="store_true")
  args = p.parse_args()

  from zosam_jax.train import load_dataset

  ds = common.validation_split(load_dataset(args.dataset))
  base = dict(dataset=args.dataset, model="mlp", sparse_method="rigl", sparsity=args.sparsity,
              eval_every=10**6, log_every=100, checkpoint_every=0)
  out = common.RESULTS / f"tuning_{args.dataset}.jsonl"
  grid = f"tune-{args.dataset}"
  s1 = STAGE1[args.dataset]
  runs = [dict(optimizer=o, steps=st, lr=lr, seed=sd)
          for (st, lr), o, sd in itertools.product(s1, common.OPTIMIZERS, args.seeds)]
  rows = common.run_grid(base, runs, grid, out, dataset=ds)
  score = {}
  for st, lr in s1:
    accs = [r["test_accuracy"] for r in rows if r["steps"] == st and r["lr"] == lr]
    score[(st, lr)] = float(np.mean(accs))
    print(f"steps={st} lr={lr}: mean validation accuracy {score[(st, lr)]:.4f}")
  steps, lr = max(score, key=score.get)
  tuned = {"dataset": args.dataset, "steps": steps, "lr": lr,
           "stage1_validation_accuracy": {f"steps={k[0]},lr={k[1]}": v
                                          for k, v in score.items()},
           "rho": {"sam": 0.05, "zosam": 0.05}}
  if not args.skip_rho:
    runs = [dict(optimizer=o, steps=steps, lr=lr, rho=rho, seed=sd)
            for o, rho, sd in itertools.product(("sam", "zosam"), RHOS, args.seeds)]
    rows = common.run_grid(base, runs, grid, out, dataset=ds)
    tuned["stage2_validation_accuracy"] = {}
    for o in ("sam", "zosam"):
      sc = {rho: float(np.mean([r["test_accuracy"] for r in rows
                                if r["optimizer"] == o and r["rho"] == rho]))
            for rho in RHOS}
      tuned["stage2_validation_accuracy"][o] = {str(k): v for k, v in sc.items()}
      tuned["rho"][o] = max(sc, key=sc.get)
      print(o, sc)
  path = common.RESULTS / f"tuned_{args.dataset}.json"
  path.write_text(json.dumps(tuned, indent=2))
  print(json.dumps(tuned, indent=2))


if __name__ == "__main__":
  main()
