"""Is SAM's loss on CIFAR-10 a BatchNorm artefact? Running statistics re-estimated.

A SAM step keeps the BatchNorm statistics of its forward pass at the perturbed
point θ+ε (``zosam_jax.train.steps``). This re-estimates each study run's
running statistics at its final weights θ, from ``--batches`` minibatches of
128 training images (BatchNorm momentum 0.9: the stored statistics keep a
weight of 0.9**60 ≈ 0.002), once augmented as in training (the run's own crop
padding) and once unaugmented, and evaluates the test set with each. Were SAM's
loss due to its perturbed statistics, the re-estimate would help SAM and not
SGD. The unaugmented re-estimate measures how far the augmented training
batches are from the test images.

  python experiments/bn_statistics.py --setting r20-10k-16px

Prints and writes ``results/bn_statistics_<setting>.md``.
"""

from __future__ import annotations

import argparse

import jax

from zosam_jax.train import make_eval_step, steps

import analysis
import common
import stats
import cells


def reestimate(run: analysis.Run, pad: int | None, num_batches: int, batch_size: int = 128,
               seed: int = 0):
  """BatchNorm running statistics of ``run`` at its weights, from ``num_batches``
  training minibatches of ``batch_size`` (crop-and-flip with ``pad`` pixels;
  None: none)."""

  @jax.jit
  def update(batch_stats, x_all, y_all, indices, key):
    images, labels = steps.prepare_batch(key, x_all, y_all, indices, run.ds.mean,
                                            run.ds.std, pad is not None, pad or 0)
    _, (_, new) = steps.make_loss_fn(run.model, batch_stats, images, labels)(run.params)
    return new

  batch_stats = run.batch_stats
  indices = analysis.sample_batches(run.ds.x_train.shape[0], batch_size, num_batches, seed)
  for i, idx in enumerate(indices):
    batch_stats = update(batch_stats, run.ds.x_train, run.ds.y_train, idx, jax.random.key(i))
  return batch_stats


def row(workdir: str, num_batches: int) -> dict[str, float]:
  """Test accuracy of one run with its stored and its re-estimated statistics."""
  run = analysis.load_run(str(common.REPO / workdir))
  eval_step = jax.jit(make_eval_step(run.model, run.ds.mean, run.ds.std))
  pad = steps.scaled_crop_pad(run.ds.x_train.shape[1], run.cfg.crop_pad)

  def accuracy(batch_stats):
    return analysis.accuracy(eval_step, run.params, batch_stats, run.ds.x_test,
                             run.ds.y_test)

  return dict(stored=accuracy(run.batch_stats),
              augmented=accuracy(reestimate(run, pad, num_batches)),
              unaugmented=accuracy(reestimate(run, None, num_batches)))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--setting", default="r20-10k-16px", choices=tuple(cells.SETTINGS))
  p.add_argument("--sparsity", type=float, default=0.9)
  p.add_argument("--seeds", type=int, nargs="+", default=list(cells.SEEDS))
  p.add_argument("--batches", type=int, default=60)
  args = p.parse_args()
  rows = {(r["variant"], r["seed"]): r for r in cells.read_rows(
      cells.SETTINGS[args.setting]["dataset"])
          if r["setting"] == args.setting and r["sparsity"] == args.sparsity}
  lines = [f"Test accuracy (%), {args.setting} {args.sparsity:.0%}: BatchNorm statistics "
           f"stored by training vs re-estimated at the final weights ({args.batches} "
           "minibatches of 128)", "",
           "| optimizer | seed | stored | re-estimated, augmented | re-estimated, unaugmented |",
           "|---|---|---|---|---|"]
  gains = []
  for variant in ("sgd", "sam"):
    for seed in args.seeds:
      if (variant, seed) not in rows:
        raise SystemExit(f"bn_statistics.py: no row for {args.setting} {variant} seed "
                         f"{seed} in results/; run its cell first (study.py)")
      acc = row(rows[variant, seed]["workdir"], args.batches)
      gains.append(dict(variant=variant, seed=seed, gain=acc["augmented"] - acc["stored"]))
      lines.append(f"| {variant} | {seed} | {100 * acc['stored']:.2f} | "
                   f"{100 * acc['augmented']:.2f} | {100 * acc['unaugmented']:.2f} |")
      print(lines[-1], flush=True)
  lines += ["", "Gain of the re-estimate (augmented − stored), SAM − SGD paired by seed (pp): "
            + stats.fmt_diff(stats.paired(gains, {}, "sam", "sgd", "gain"))]
  out = common.RESULTS / f"bn_statistics_{args.setting}.md"
  out.write_text("\n".join(lines) + "\n")
  print(f"wrote {out.relative_to(common.REPO)}")


if __name__ == "__main__":
  main()
