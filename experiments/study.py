"""The study's command line (Fashion-MNIST, CIFAR-10); its declarations and
cells are in :mod:`cells`, the best-vs-best protocol in :mod:`best_radius`, the
GPU protocol in :mod:`gpu_protocol`. Every command skips the cells already in
the rows, so it continues where it stopped.

  python experiments/study.py control    # SAM vs SGD, attempts in order, until one passes
  python experiments/study.py grid       # MLP and CNN, RigL 90/95/98 %, SGD/SAM/ZO-SAM
  python experiments/study.py controls   # random ε, m = 16, ρ 0.1/0.2, prior, at 90 %
  python experiments/study.py controls --variants zosam-prior   # some of them
  python experiments/study.py ascents    # LookSAM, MSAM, the prior's radius and refresh, at 90 % (issue 25)
  python experiments/study.py best       # every method at its radius chosen on validation (issue 34)
  python experiments/study.py best --setting mlp-10k-val   # one setting's protocol only
  python experiments/study.py grid --dataset cifar10   # ResNet-20: control, RigL 90%, SNIP 90%, 98%
  python experiments/study.py robustness --dataset cifar10   # cells lacking it
  python experiments/study.py grid --shard 0/2 & python experiments/study.py grid --shard 1/2
  python experiments/study.py one --setting mlp-10k --variant sgd --sparsity 0.9 --seed 0
  python experiments/study.py gpu --dataset cifar10   # ResNet-32, 3 seeds per program (gpu_protocol.py)
  python experiments/study.py gpu --dataset cifar10 --dry-run   # its plan: cells, epochs, device time

``python experiments/render_results.py`` turns the rows into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json

import best_radius
import cells
import gpu_protocol


def parse_shard(text: str) -> tuple[int, int]:
  """``"I/N"`` with 0 <= I < N, for ``--shard``."""
  try:
    index, count = (int(v) for v in text.split("/"))
  except ValueError:
    index, count = -1, 0
  if not 0 <= index < count:
    raise argparse.ArgumentTypeError(
        f"--shard must be I/N with 0 <= I < N (e.g. 0/2 and 1/2 for two processes), got {text!r}")
  return index, count


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("what", choices=("control", "grid", "controls", "ascents", "best",
                                  "robustness", "one", "gpu"))
  p.add_argument("--dataset", choices=tuple(cells.DATASETS), default="fashion_mnist")
  p.add_argument("--models", nargs="+", default=None,
                 help="default: the dataset's models")
  p.add_argument("--setting", choices=tuple(cells.SETTINGS))
  p.add_argument("--variant", choices=tuple(cells.VARIANTS))
  named = cells.CONTROL_VARIANTS + cells.ASCENT_VARIANTS
  p.add_argument("--variants", nargs="+", choices=named, metavar="VARIANT",
                 help=f"controls/ascents: the variants to run, of {', '.join(named)} "
                      "(default: the command's own, in this order)")
  p.add_argument("--sparsity", type=float, default=0.9)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dry-run", action="store_true",
                 help="gpu: measure the step times and print the plan, run nothing")
  p.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="I/N",
                 help="run only the cells of shard I of N (one process per core; each "
                      "waits for the others' rows before it judges a control or a grid)")
  return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  if args.what == "one" and (args.setting is None or args.variant is None):
    p.error("one needs --setting and --variant")
  if args.what == "one" and cells.SETTINGS[args.setting]["dataset"] != args.dataset:
    p.error(f"--setting {args.setting} is a {cells.SETTINGS[args.setting]['dataset']} "
            f"setting: add --dataset {cells.SETTINGS[args.setting]['dataset']}")
  if args.what == "gpu" and args.dataset != "cifar10":
    p.error("gpu runs CIFAR-10 cells: add --dataset cifar10")
  if args.dry_run and args.what != "gpu":
    p.error(f"--dry-run prints the GPU protocol's plan: it needs gpu, not {args.what}")


def main() -> None:
  p = _parser()
  args = p.parse_args()
  _check(p, args)
  if args.what == "best":  # Loads each setting's dataset itself.
    print("positive controls passed in", best_radius.run(args.shard, args.setting),
          flush=True)
    return
  from zosam_jax.train import load_dataset  # pylint: disable=import-outside-toplevel

  spec = cells.DATASETS[args.dataset]
  models = args.models or spec["models"]
  ds = load_dataset(args.dataset, cifar10_test="jpeg_10k")
  then = None if args.dry_run else cells.after_each_cell(args.dataset, ds)
  if args.what == "one":
    [row] = cells.run_cells([(args.setting, args.sparsity, args.variant, args.seed)], ds,
                            then)
    print(json.dumps(row))
  elif args.what == "gpu":
    gpu_protocol.run(ds, then, dry_run=args.dry_run)
  elif args.what == "control":
    for m in models:
      print(m, "positive control passed in", cells.run_control(ds, m, then, args.shard))
  elif args.what != "robustness":
    _run_grids(args, ds, then, models, spec)


def _run_grids(args, ds, then, models, spec) -> None:
  """``grid``, ``controls`` and ``ascents``: each model's setting after its control."""
  for m in models:
    setting = cells.study_setting(ds, m, then, args.shard)
    if args.what == "grid":
      todo = [(st, sp, v, s) for st, sp in cells.grid_cells(setting, spec)
              for s in cells.SEEDS for v in cells.GRID_VARIANTS]
    else:
      variants = args.variants or (cells.CONTROL_VARIANTS if args.what == "controls"
                                   else cells.ASCENT_VARIANTS)
      todo = [(setting, 0.9, v, s) for s in cells.SEEDS for v in variants]
    cells.run_cells(todo, ds, then, args.shard)


if __name__ == "__main__":
  main()
