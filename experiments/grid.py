"""Accuracy grid: sparse method × optimizer × sparsity × seed (the paper's tables).

Reads the step count, learning rate and ρ chosen on validation data by
``tune.py`` (``results/tuned_<dataset>.json``), trains every configuration
in this process with ``zosam_jax.train.train_and_evaluate``, appends one JSON
line per run to ``results/grid_<dataset>[_<tag>].jsonl`` and writes the table
``results/table_<dataset>[_<tag>].md`` and the figure
``figures/accuracy_<dataset>[_<tag>].png``. Finished runs are not retrained.

  python experiments/grid.py --dataset digits --methods rigl
  python experiments/grid.py --dataset digits --methods static set gmp
  python experiments/grid.py --dataset digits --methods rigl --optimizers zosam \
      --zo-batch-fraction 0.25 --tag zobf0.25
  python experiments/grid.py --dataset digits --report-only

Paper scale (CIFAR-10/100, ResNet-32, 160 epochs, batch 128, SGD momentum 0.9,
lr 0.1 cosine, weight decay 5e-4, ρ = 0.05; needs a GPU/TPU):

  python experiments/grid.py --preset paper --dataset cifar10 \
      --methods static set rigl gmp --seeds 0 1 2
  python experiments/grid.py --preset paper --dataset cifar10 --print-commands
"""

from __future__ import annotations

import argparse
import itertools
import json

import common


#: The paper's CIFAR recipe (PAPER.md): no tuning, ρ = 0.05 for SAM and ZO-SAM.
PAPER_BASE = dict(model="resnet32", epochs=160, batch_size=128, lr=0.1, momentum=0.9,
                  weight_decay=5e-4, schedule="cosine", eval_every=1000,
                  log_every=100, checkpoint_every=5000, dense_first_last=True)


def load_tuned(dataset: str, preset: str) -> dict:
  if preset == "paper":
    return {"rho": {"sam": 0.05, "zosam": 0.05}}
  path = common.RESULTS / f"tuned_{dataset}.json"
  return json.loads(path.read_text())


def base_config(args, tuned) -> dict:
  if args.preset == "paper":
    return dict(PAPER_BASE, dataset=args.dataset)
  steps = tuned["steps"]
  # The quick tier's model: the MLP (the program's default is now the CNN).
  return dict(dataset=args.dataset, model="mlp", steps=steps, lr=tuned["lr"], eval_every=steps,
              log_every=50, checkpoint_every=steps // 2)


def cli_command(cfg: dict, workdir: str) -> str:
  """The ``zosam-train`` command line equivalent to a config dict."""
  from zosam_jax.train.config import command_line

  shown = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "schedule")
  shown += ("rho",) if cfg.get("optimizer") != "sgd" else ()
  return command_line(dict(sorted(dict(cfg, workdir=workdir).items())), always=shown)


def configs(args, tuned):
  seen = set()
  for method, sparsity, opt, seed in itertools.product(
      args.methods, args.sparsities, args.optimizers, args.seeds):
    if method == "dense":
      sparsity = 0.0
    if (method, sparsity, opt, seed) in seen:
      continue
    seen.add((method, sparsity, opt, seed))
    o = dict(sparse_method=method, sparsity=sparsity, optimizer=opt, seed=seed)
    if opt != "sgd":
      o["rho"] = tuned["rho"][opt]
    if opt == "zosam" and args.zo_batch_fraction != 1.0:
      o["zo_batch_fraction"] = args.zo_batch_fraction
    if opt == "zosam" and args.num_dirs != 1:
      o["num_dirs"] = args.num_dirs
    yield o


def report(dataset: str, tag: str, sparsities) -> str:
  suffix = f"_{tag}" if tag else ""
  rows = common.read_rows(common.RESULTS / f"grid_{dataset}{suffix}.jsonl")
  methods = [m for m in ("dense", "static", "set", "rigl", "gmp")
             if any(r["sparse_method"] == m for r in rows)]
  sp = sorted({r["sparsity"] for r in rows if r["sparsity"] > 0})
  text = [f"### Test accuracy (%), {dataset}{' ' + tag if tag else ''}: mean ± std over seeds",
          "", common.paper_table(rows, [m for m in methods if m != "dense"], sp), ""]
  if "dense" in methods:
    text += ["Dense reference (sparsity 0):", "",
             common.paper_table(rows, ["dense"], [0.0]), ""]
  text += ["### Cost per run", "", common.cost_table(rows, methods, sp + [0.0]), ""]
  md = "\n".join(text)
  (common.RESULTS / f"table_{dataset}{suffix}.md").write_text(md)
  plot(rows, methods, sp, common.FIGURES / f"accuracy_{dataset}{suffix}.png", dataset)
  return md


def plot(rows, methods, sparsities, path, dataset):
  plt = common.pyplot()

  stats = common.aggregate(rows, ("sparse_method", "optimizer", "sparsity"),
                           "test_accuracy")
  methods = [m for m in methods if m != "dense"]
  fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3),
                           squeeze=False, sharey=True)
  for ax, m in zip(axes[0], methods):
    for o in common.OPTIMIZERS:
      pts = [(s, stats[(m, o, s)]) for s in sparsities if (m, o, s) in stats]
      if not pts:
        continue
      x = [100 * s for s, _ in pts]
      ax.errorbar(x, [100 * st["mean"] for _, st in pts],
                  yerr=[100 * st["std"] for _, st in pts], marker="o", capsize=3,
                  label=common.OPT_LABEL[o])
    ax.set_title(common.METHOD_LABEL[m])
    ax.set_xlabel("sparsity (%)")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(f"{dataset} test accuracy (%)")
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="digits")
  p.add_argument("--methods", nargs="+", default=["rigl"])
  p.add_argument("--optimizers", nargs="+", default=list(common.OPTIMIZERS))
  p.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--zo-batch-fraction", type=float, default=1.0)
  p.add_argument("--num-dirs", type=int, default=1)
  p.add_argument("--tag", default="")
  p.add_argument("--report-only", action="store_true")
  p.add_argument("--preset", choices=("offline", "paper"), default="offline",
                 help="offline: tuned steps/lr from results/tuned_<dataset>.json; "
                      "paper: the CIFAR ResNet-32 recipe")
  p.add_argument("--print-commands", action="store_true",
                 help="print the equivalent zosam-train commands and exit")
  args = p.parse_args()
  tuned = load_tuned(args.dataset, args.preset)
  suffix = f"_{args.tag}" if args.tag else ""
  base = base_config(args, tuned)
  if args.print_commands:
    for o in configs(args, tuned):
      grid = f"grid-{args.dataset}"
      print(cli_command(dict(base, **o), f"runs/experiments/{grid}/"
                        f"{common.run_name(o, base)}"))
    return
  if not args.report_only:
    from zosam_jax.train import load_dataset
    ds = load_dataset(args.dataset)
    common.run_grid(base, configs(args, tuned), f"grid-{args.dataset}",
                    common.RESULTS / f"grid_{args.dataset}{suffix}.jsonl", dataset=ds)
  print(report(args.dataset, args.tag, args.sparsities))


if __name__ == "__main__":
  main()
