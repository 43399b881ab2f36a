"""Quality of the zeroth-order ascent direction ĝ.

At fixed parameters (the mid-training checkpoint of the SGD runs, RigL at
90/95/98% and dense, seed 0), computes the cosine similarity between
``zosam_jax.zo_gradient`` (restricted to the active weights by its ``active``
argument) and the true minibatch gradient restricted to the same weights, on
the same minibatch, for m = num_dirs in {1, 4, 16, 64}, the estimators
central/forward/jvp and the direction distributions gaussian/rademacher/sphere.
Each value is the mean over 4 minibatches × 8 keys (the flags' values used here). The reference curve is
:math:`\\sqrt{m/(m+d)}`, the cosine of an m-direction Gaussian estimate of a
d-dimensional gradient (up to O(1) constants), d = number of active weights.

Writes ``results/zo_quality_<dataset>.jsonl`` and ``.md`` and
``figures/zo_quality_<dataset>.png``.

  python experiments/zo_quality.py --dataset digits
"""

from __future__ import annotations

import argparse
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np

from zosam_jax.train import checkpoint_steps

import analysis
import common
import zosam_jax

NUM_DIRS = (1, 4, 16, 64)
ESTIMATORS = ("central", "forward", "jvp")
DISTRIBUTIONS = ("gaussian", "rademacher", "sphere")
#: The settings measured: the m sweep with the paper's estimator (central,
#: Gaussian), and the other estimators and distributions at m = 16 (every
#: setting is one compilation, which dominates the cost on a shared CPU).
SETTINGS = tuple([(m, "central", "gaussian") for m in NUM_DIRS]
                 + [(16, e, "gaussian") for e in ESTIMATORS[1:]]
                 + [(16, "central", d) for d in DISTRIBUTIONS[1:]])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--dataset", default="digits")
  p.add_argument("--num-batches", type=int, default=8)
  p.add_argument("--num-keys", type=int, default=16)
  p.add_argument("--smoothing", type=float, default=1e-3)
  args = p.parse_args()

  rows = [r for r in common.read_rows(common.RESULTS / f"grid_{args.dataset}.jsonl")
          if r["optimizer"] == "sgd" and r["seed"] == 0
          and r["sparse_method"] in ("dense", "rigl")]
  rows.sort(key=lambda r: r["sparsity"])
  out = common.RESULTS / f"zo_quality_{args.dataset}.jsonl"
  results = []
  cache = {}
  for r in rows:
    step = checkpoint_steps(r["workdir"])[0]  # the mid-training one
    params, active, batch_stats, cfg, model, ds = analysis.load_run(r["workdir"], step)
    loss = analysis.make_loss(model, ds.mean, ds.std)
    idx = analysis.sample_batches(ds.x_train.shape[0], cfg.batch_size,
                                  args.num_batches, seed=1)
    xb, yb = jnp.asarray(ds.x_train[idx]), jnp.asarray(ds.y_train[idx])
    d = int(sum(np.sum(a) for a in jax.tree.leaves(active)))
    for m, est, dist in SETTINGS:
      if (m, est, dist) not in cache:

        @jax.jit
        def cosines(params, active, batch_stats, xb, yb, keys, m=m, est=est, dist=dist):
          def one(x, y, key):
            f = lambda p: loss(p, x, y, batch_stats)
            g = jax.tree.map(lambda a, b: a * b, jax.grad(f)(params), active)
            g_hat, _ = zosam_jax.zo_gradient(
                f, params, active, key, num_dirs=m, smoothing=args.smoothing,
                estimator=est, distribution=dist)
            dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g),
                                                      jax.tree.leaves(g_hat)))
            na = jnp.sqrt(sum(jnp.sum(a ** 2) for a in jax.tree.leaves(g)))
            nb = jnp.sqrt(sum(jnp.sum(b ** 2) for b in jax.tree.leaves(g_hat)))
            return dot / (na * nb)
          per_batch = lambda x, y: jax.vmap(lambda k: one(x, y, k))(keys)
          return jax.lax.map(lambda xy: per_batch(*xy), (xb, yb))

        cache[(m, est, dist)] = cosines
      keys = jax.random.split(jax.random.key(123), args.num_keys)
      c = np.asarray(cache[(m, est, dist)](params, active, batch_stats, xb, yb, keys))
      res = dict(sparsity=r["sparsity"], sparse_method=r["sparse_method"], step=step,
                 num_dirs=m, estimator=est, distribution=dist, active_weights=d,
                 cos_mean=float(c.mean()), cos_std=float(c.std()),
                 reference=float(np.sqrt(m / (m + d))))
      results.append(res)
      print(json.dumps(res), flush=True)
  with open(out, "w") as f:
    for res in results:
      f.write(json.dumps(res) + "\n")
  print(report(args.dataset))


def report(dataset: str) -> str:
  res = common.read_rows_any(common.RESULTS / f"zo_quality_{dataset}.jsonl")
  sp = sorted({r["sparsity"] for r in res})
  act = {r["sparsity"]: r["active_weights"] for r in res}
  get = lambda s, m, e, d: next((r for r in res if (r["sparsity"], r["num_dirs"],
                                                    r["estimator"], r["distribution"])
                                 == (s, m, e, d)), None)
  hdr = ("| m | estimator | distribution | " + " | ".join(
      f"{s:.0%} (d={act[s]})" for s in sp) + " |")
  lines = [hdr, "|" + "---|" * (3 + len(sp))]
  for m, e, d in SETTINGS:
    cells = []
    for s in sp:
      r = get(s, m, e, d)
      cells.append("—" if r is None else f"{r['cos_mean']:.3f}")
    lines.append(f"| {m} | {e} | {d} | " + " | ".join(cells) + " |")
  ref = ["| m | " + " | ".join(f"{s:.0%}" for s in sp) + " |", "|" + "---|" * (1 + len(sp))]
  for m in NUM_DIRS:
    ref.append(f"| {m} | " + " | ".join(f"{np.sqrt(m / (m + act[s])):.3f}" for s in sp) + " |")
  md = "\n".join(["### cos(ĝ, ∇L) on the active weights (mean over 4 batches × 8 keys; "
                  "0% = dense)", ""] + lines + ["", "Reference √(m/(m+d)):", ""] + ref + [""])
  (common.RESULTS / f"zo_quality_{dataset}.md").write_text(md)
  plot(res, sp, common.FIGURES / f"zo_quality_{dataset}.png")
  return md


def plot(res, sparsities, path):
  plt = common.pyplot()

  fig, axes = plt.subplots(1, 3, figsize=(10, 3))
  for s in sparsities:
    rs = sorted([r for r in res if r["sparsity"] == s and r["estimator"] == "central"
                 and r["distribution"] == "gaussian"], key=lambda r: r["num_dirs"])
    if not rs:
      continue
    line, = axes[0].plot([r["num_dirs"] for r in rs], [r["cos_mean"] for r in rs],
                         marker="o", label=f"{s:.0%} (d={rs[0]['active_weights']})")
    axes[0].plot([r["num_dirs"] for r in rs], [r["reference"] for r in rs], ls=":",
                 color=line.get_color())
  axes[0].set(xscale="log", yscale="log", xlabel="m (num_dirs)", ylabel="cos(ĝ, ∇L)",
              title="central, gaussian (dotted: √(m/(m+d)))")
  axes[0].legend(fontsize=7)
  for ax, field, choices, fixed in (
      (axes[1], "estimator", ESTIMATORS, ("distribution", "gaussian")),
      (axes[2], "distribution", DISTRIBUTIONS, ("estimator", "central"))):
    for c in choices:
      pts = sorted([(r["sparsity"], r["cos_mean"]) for r in res if r[field] == c
                    and r[fixed[0]] == fixed[1] and r["num_dirs"] == 16])
      if pts:
        ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], marker="o", label=c)
    ax.set(xlabel="sparsity (%)", title=f"m = 16, {fixed[0]} = {fixed[1]}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
  axes[0].grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
