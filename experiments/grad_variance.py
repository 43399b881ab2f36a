"""Minibatch-gradient variance at fixed parameters, SGD vs SAM vs ZO-SAM.

For the checkpoints (middle and end of training) of the RigL runs of
``results/grid_<dataset>.jsonl`` (and dense runs when present), computes on
the training set, over the active weights only:

* ``var``: :math:`\\frac{1}{K}\\sum_k \\|m \\odot (g_k - g)\\|^2`, the mean squared
  deviation of K = 64 minibatch gradients (batch 128, as in training) from
  the full-batch gradient g, all at the same parameters;
* ``var_per_weight``: ``var`` divided by the number of active weights;
* ``rel_var``: ``var / ||m ⊙ g||²`` (noise-to-signal ratio).

Writes ``results/grad_variance_<dataset>.jsonl`` and ``.md`` and
``figures/grad_variance_<dataset>.png``.

  python experiments/grad_variance.py --dataset digits
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from zosam_jax.train import checkpoint_steps

import analysis
import common


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--dataset", default="digits")
  p.add_argument("--num-batches", type=int, default=64)
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--methods", nargs="+", default=["dense", "rigl"])
  args = p.parse_args()

  rows = [r for r in common.read_rows(common.RESULTS / f"grid_{args.dataset}.jsonl")
          if r["sparse_method"] in args.methods]
  out = common.RESULTS / f"grad_variance_{args.dataset}.jsonl"
  done = ({(r["workdir"], r["step"]) for r in common.read_rows_any(out)}
          if out.exists() else set())
  fns = {}
  for r in rows:
    for step in checkpoint_steps(r["workdir"]):
      if (r["workdir"], step) in done:
        continue
      run = analysis.load_run(r["workdir"], step)
      cfg, ds = run.cfg, run.ds
      if cfg.model not in fns:
        loss = analysis.make_loss(run.model, ds.mean, ds.std)
        grad = jax.grad(loss)

        @jax.jit
        def stats(params, active, batch_stats, x, y, xb, yb, grad=grad):
          mask = lambda g: jax.tree.map(lambda a, b: a * b, g, active)
          full = mask(grad(params, x, y, batch_stats))
          per = jax.vmap(lambda xi, yi: mask(grad(params, xi, yi, batch_stats)))(xb, yb)
          sq = sum(jnp.sum((b - a[None]) ** 2) for a, b in zip(
              jax.tree.leaves(full), jax.tree.leaves(per))) / xb.shape[0]
          norm2 = sum(jnp.sum(a ** 2) for a in jax.tree.leaves(full))
          n_active = sum(jnp.sum(a) for a in jax.tree.leaves(active))
          return sq, norm2, n_active

        fns[cfg.model] = stats
      idx = analysis.sample_batches(ds.x_train.shape[0], args.batch_size,
                                    args.num_batches, seed=0)
      sq, norm2, n_active = (float(v) for v in fns[cfg.model](
          run.params, run.active, run.batch_stats, ds.x_train, ds.y_train,
          ds.x_train[idx], ds.y_train[idx]))
      res = {k: r[k] for k in ("dataset", "sparse_method", "optimizer", "sparsity",
                               "seed", "workdir", "steps")}
      res.update(step=step, phase="final" if step == r["steps"] else "mid",
                 var=sq, var_per_weight=sq / n_active, grad_norm2=norm2,
                 rel_var=sq / norm2, active_weights=int(n_active))
      common.append_row(out, res)
      print(f"{r['sparse_method']} {r['optimizer']} {r['sparsity']} seed{r['seed']} "
            f"step {step}: var {sq:.4g} rel {sq / norm2:.3g}", flush=True)
  print(report(args.dataset))


def report(dataset: str) -> str:
  res = common.read_rows_any(common.RESULTS / f"grad_variance_{dataset}.jsonl")
  sp = sorted({r["sparsity"] for r in res})
  text = []
  for phase in ("mid", "final"):
    for value, label in (("var", "‖m⊙(g_k − g)‖² (sum over active weights)"),
                         ("var_per_weight", "per active weight (×1e-6)"),
                         ("rel_var", "relative: ÷ ‖m⊙g‖²")):
      sub = [dict(r, sparse_method="rigl" if r["sparse_method"] == "dense" else
                  r["sparse_method"]) for r in res if r["phase"] == phase]
      scale = 1e6 if value == "var_per_weight" else 1.0
      text += [f"### Minibatch-gradient variance, {label}, {phase} checkpoint "
               "(RigL; 0% = dense)", "",
               common.paper_table(sub, ["rigl"], sp, value=value, scale=scale,
                                  digits=3), ""]
  md = "\n".join(text)
  (common.RESULTS / f"grad_variance_{dataset}.md").write_text(md)
  plot(res, sp, common.FIGURES / f"grad_variance_{dataset}.png")
  return md


def plot(res, sparsities, path):
  plt = common.pyplot()

  fig, axes = plt.subplots(1, 3, figsize=(10, 3))
  for ax, value, title in zip(axes, ("var", "var_per_weight", "rel_var"),
                              ("total over active weights", "per active weight",
                               "relative to ‖full-batch grad‖²")):
    for o in common.OPTIMIZERS:
      for phase, ls in (("mid", "--"), ("final", "-")):
        pts = []
        for s in sparsities:
          v = [r[value] for r in res if r["optimizer"] == o and r["sparsity"] == s
               and r["phase"] == phase]
          if v:
            pts.append((100 * s, np.mean(v), np.std(v)))
        if pts:
          x, m, e = zip(*pts)
          ax.errorbar(x, m, yerr=e, ls=ls, capsize=2, alpha=0.8,
                      marker={"sgd": "s", "sam": "o", "zosam": "^"}[o],
                      markerfacecolor="none" if o == "sgd" else None,
                      label=f"{common.OPT_LABEL[o]} ({phase})",
                      color={"sgd": "C0", "sam": "C1", "zosam": "C2"}[o])
    ax.set_yscale("log")
    ax.set_xlabel("sparsity (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("minibatch gradient variance\n(SGD hollow squares)")
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
