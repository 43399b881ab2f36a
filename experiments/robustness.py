"""Robustness under distribution shift: digits-C (CIFAR-10-C-style corruptions).

For every run of a grid (``results/grid_digits.jsonl``), restores the final
parameters from the run's Orbax checkpoint with
``zosam_jax.train.load_train_state`` and evaluates them on the test set under
each corruption of :mod:`corruptions` at severities 1-5. Writes one JSON line
per run to ``results/robustness_digits.jsonl``, the tables
``results/table_robustness_digits.md`` and the figure
``figures/robustness_digits.png``.

  python experiments/robustness.py --dataset digits
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import common
import corruptions as C

#: Scale of the stored digits (uint8 0..16) to [0, 1].
PIXEL_MAX = {"digits": 16.0, "cifar10": 255.0, "cifar100": 255.0}


def corrupted_sets(x_test: np.ndarray, pixel_max: float):
  """``{(name, severity): images in storage scale}`` plus the clean set."""
  x01 = x_test.astype(np.float32) / pixel_max
  sets = {("clean", 0): x01}
  for name in C.CORRUPTIONS:
    for sev in C.SEVERITIES:
      sets[(name, sev)] = C.corrupt(x01, name, sev, seed=0)
  return {k: v * pixel_max for k, v in sets.items()}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--dataset", default="digits")
  p.add_argument("--tag", default="")
  args = p.parse_args()

  from zosam_jax.train import get_model, load_dataset, load_train_state

  suffix = f"_{args.tag}" if args.tag else ""
  rows = common.read_rows(common.RESULTS / f"grid_{args.dataset}{suffix}.jsonl")
  ds = load_dataset(args.dataset)
  sets = corrupted_sets(ds.x_test, PIXEL_MAX[args.dataset])
  keys = list(sets)
  n = ds.x_test.shape[0]
  x_all = jnp.asarray(np.concatenate([sets[k] for k in keys]))
  y = jnp.asarray(ds.y_test)
  models = {}

  out = common.RESULTS / f"robustness_{args.dataset}{suffix}.jsonl"
  done = {r["workdir"] for r in common.read_rows(out)} if out.exists() else set()
  for r in rows:
    if r["workdir"] in done:
      continue
    state, _, cfg = load_train_state(r["workdir"])
    if cfg.model not in models:
      model = get_model(cfg.model, ds.num_classes)
      mean, std = jnp.asarray(ds.mean), jnp.asarray(ds.std)

      @jax.jit
      def predict(params, batch_stats, x, model=model, mean=mean, std=std):
        variables = {"params": params}
        if batch_stats:
          variables["batch_stats"] = batch_stats
        return model.apply(variables, (x - mean) / std, train=False).argmax(-1)

      models[cfg.model] = predict
    pred = np.asarray(models[cfg.model](state.params, state.batch_stats, x_all))
    correct = (pred.reshape(len(keys), n) == np.asarray(y)[None]).mean(axis=1)
    acc = {f"{name}/{sev}": float(c) for (name, sev), c in zip(keys, correct)}
    per = {name: float(np.mean([acc[f"{name}/{s}"] for s in C.SEVERITIES]))
           for name in C.CORRUPTIONS}
    res = {k: r[k] for k in ("dataset", "sparse_method", "optimizer", "sparsity",
                             "seed", "workdir")}
    res.update(clean=acc["clean/0"], mean_corrupted=float(np.mean(list(per.values()))),
               per_corruption=per, per_severity={
                   str(s): float(np.mean([acc[f"{c}/{s}"] for c in C.CORRUPTIONS]))
                   for s in C.SEVERITIES}, all=acc)
    common.append_row(out, res)
    print(f"{r['sparse_method']} {r['optimizer']} {r['sparsity']} seed{r['seed']}: "
          f"clean {res['clean']:.4f} corrupted {res['mean_corrupted']:.4f}", flush=True)
  print(report(args.dataset, suffix))


def report(dataset: str, suffix: str = "") -> str:
  res = common.read_rows(common.RESULTS / f"robustness_{dataset}{suffix}.jsonl")
  methods = [m for m in ("dense", "static", "set", "rigl", "gmp")
             if any(r["sparse_method"] == m for r in res)]
  sp = sorted({r["sparsity"] for r in res if r["sparsity"] > 0})
  for r in res:
    r["drop"] = r["clean"] - r["mean_corrupted"]
    for c, v in r["per_corruption"].items():
      r[c] = v
  text = [f"### Mean accuracy (%) over {len(C.CORRUPTIONS)} corruptions × 5 severities, "
          f"{dataset}-C: mean ± std over seeds", "",
          common.paper_table(res, methods, sp, value="mean_corrupted"), "",
          "### Clean − corrupted accuracy drop (percentage points)", "",
          common.paper_table(res, methods, sp, value="drop"), ""]
  stats = common.aggregate(res, ("sparse_method", "optimizer", "sparsity"), "mean_corrupted")
  lines = ["| method | sparsity | ZO-SAM − SGD (mean corrupted acc.) | ZO-SAM ≥ SGD? |",
           "|---|---|---|---|"]
  for m in methods:
    for s in sp:
      z, g = stats.get((m, "zosam", s)), stats.get((m, "sgd", s))
      if z and g:
        d = z["mean"] - g["mean"]
        lines.append(f"| {common.METHOD_LABEL[m]} | {s:.0%} | {100 * d:+.2f} | "
                     f"{'yes' if d >= 0 else 'no'} |")
  text += ["### Target: ZO-SAM's mean corrupted accuracy ≥ SGD's", ""] + lines + [""]
  # Per corruption, RigL only.
  per = common.aggregate(res, ("sparse_method", "optimizer", "sparsity"), "clean")
  hdr = "| sparsity | optimizer | clean | " + " | ".join(C.CORRUPTIONS) + " |"
  rl = [hdr, "|" + "---|" * (3 + len(C.CORRUPTIONS))]
  for s in sp:
    for o in common.OPTIMIZERS:
      if ("rigl", o, s) not in per:
        continue
      cells = [common.fmt(per[("rigl", o, s)], 100, 1)]
      for c in C.CORRUPTIONS:
        st = common.aggregate([r for r in res if r["sparse_method"] == "rigl"],
                              ("optimizer", "sparsity"), c).get((o, s))
        cells.append(common.fmt(st, 100, 1))
      rl.append(f"| {s:.0%} | {common.OPT_LABEL[o]} | " + " | ".join(cells) + " |")
  text += ["### RigL: accuracy (%) per corruption (mean over severities)", ""] + rl + [""]
  md = "\n".join(text)
  (common.RESULTS / f"table_robustness_{dataset}{suffix}.md").write_text(md)
  plot(res, sp, common.FIGURES / f"robustness_{dataset}{suffix}.png")
  return md


def plot(res, sparsities, path):
  plt = common.pyplot()

  fig, axes = plt.subplots(1, len(sparsities), figsize=(3.3 * len(sparsities), 3),
                           sharey=True, squeeze=False)
  for ax, s in zip(axes[0], sparsities):
    for o in common.OPTIMIZERS:
      rs = [r for r in res if r["sparse_method"] == "rigl" and r["optimizer"] == o
            and r["sparsity"] == s]
      if not rs:
        continue
      curve = [100 * np.mean([r["clean"] for r in rs])] + [
          100 * np.mean([r["per_severity"][str(k)] for r in rs]) for k in C.SEVERITIES]
      ax.plot(range(6), curve, marker="o", label=common.OPT_LABEL[o])
    ax.set_title(f"RigL {s:.0%}")
    ax.set_xlabel("severity (0 = clean)")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("accuracy (%), mean over corruptions")
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


if __name__ == "__main__":
  main()
