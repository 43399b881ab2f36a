"""How well does ZO-SAM's perturbation point uphill? cos(ε, ∇L) and sharpness.

Trains the digits MLP (64-128-128-10, batch 128, SGD momentum 0.9, lr 0.05)
with ``zo_sam`` and, at every step of a window (default 50-300), compares the
perturbation ε it takes with the exact masked gradient g = M ⊙ ∇L(θ) on the
same minibatch:

* ``cos``: cos(ε, g), mean over the window;
* ``sharpness_ratio``: mean of L(θ+ε) − L(θ) over mean of SAM's
  L(θ + ρ g/‖g‖) − L(θ), at the same θ and minibatch.

ε is read exactly: ``value_fn`` returns the point it was called at as aux.
Prints a table and writes ``benchmarks/results/ascent_quality.json``.

  python benchmarks/ascent_quality.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import zosam_jax

OUT = pathlib.Path(__file__).parent / "results" / "ascent_quality.json"
#: The ascents compared: name -> zo_sam keyword arguments.
ASCENTS: dict[str, dict[str, Any]] = {
    "random m=1 (paper)": dict(num_dirs=1, distribution="gaussian"),
    "prior=gradient, m=0": dict(prior="gradient", num_dirs=0, distribution="gaussian"),
    "prior=gradient, m=1": dict(prior="gradient", num_dirs=1, distribution="gaussian"),
    "prior=momentum, m=0": dict(prior="momentum", num_dirs=0, distribution="gaussian"),
}


def _digits():
  from zosam_jax.train import load_dataset
  ds = load_dataset("digits")
  x = (ds.x_train.astype(np.float32) - ds.mean) / ds.std
  return x.reshape(x.shape[0], -1), ds.y_train


def measure(ascent: dict[str, Any], sparsity: float, *, steps: int = 300,
            window_start: int = 50, rho: float = 0.05, seed: int = 0) -> dict[str, float]:
  """Mean cos(ε, g) and sharpness ratio to SAM over steps [window_start, steps)."""
  x, y = _digits()
  model = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(10)])
  params = model.init(jax.random.key(seed), x[:1])
  base = optax.sgd(0.05, momentum=0.9)
  if sparsity:
    base = zosam_jax.sparse.static_sparse(base, sparsity=sparsity, key=seed)
  tx = zosam_jax.zo_sam(base, rho=rho, mask_fn="base_state" if sparsity else None,
                        key=seed, has_aux=True, **ascent)
  state = tx.init(params)
  masks = (optax.tree.get(state, "StaticSparseState").masks if sparsity
           else jax.tree.map(lambda p: jnp.ones(p.shape, bool), params))

  @jax.jit
  def step(params, state, xb, yb):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, xb), yb).mean()
    g = jax.tree.map(lambda m, d: jnp.where(m, d, 0.0), masks, jax.grad(loss)(params))
    updates, state = tx.update(params, state, params,
                               value_fn=lambda p: (loss(p), p))
    eps = jax.tree.map(jnp.subtract, state.aux, params)
    # A minibatch whose loss rounds to 0 has g = 0: cos is undefined there (NaN,
    # skipped); an ε of 0 where g ≠ 0 does not point uphill (cos 0).
    norms = optax.tree.norm(eps) * optax.tree.norm(g)
    cos = jnp.where(optax.tree.norm(g) > 0,
                    optax.tree.vdot(eps, g) / jnp.where(norms > 0, norms, 1.0), jnp.nan)
    g_norm = jnp.where(optax.tree.norm(g) > 0, optax.tree.norm(g), 1.0)
    sam_point = jax.tree.map(lambda p, d: p + rho * d / g_norm, params, g)
    at = loss(params)
    metrics = (cos, loss(jax.tree.map(jnp.add, params, eps)) - at, loss(sam_point) - at)
    return optax.apply_updates(params, updates), state._replace(aux=None), metrics

  rng = np.random.default_rng(seed)
  rows = []
  for s in range(steps):
    idx = rng.choice(x.shape[0], 128, replace=False)
    params, state, metrics = step(params, state, x[idx], y[idx])
    if s >= window_start:
      rows.append([float(v) for v in metrics])
  cos, zo_sharp, sam_sharp = np.nanmean(np.asarray(rows), axis=0)
  return {"cos": float(cos), "sharpness": float(zo_sharp),
          "sam_sharpness": float(sam_sharp), "sharpness_ratio": float(zo_sharp / sam_sharp)}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.9])
  p.add_argument("--out", default=str(OUT))
  args = p.parse_args(argv)
  rows = []
  print("| ascent | sparsity | cos(ε, ∇L) | L(θ+ε)−L(θ) | SAM's | ratio to SAM |")
  print("|---|---|---|---|---|---|")
  for name, ascent in ASCENTS.items():
    for sparsity in args.sparsities:
      r = dict(ascent=name, sparsity=sparsity, **measure(ascent, sparsity, steps=args.steps))
      rows.append(r)
      print(f"| {name} | {sparsity:.0%} | {r['cos']:.3f} | {r['sharpness']:.2e} | "
            f"{r['sam_sharpness']:.2e} | {r['sharpness_ratio']:.2f} |", flush=True)
  pathlib.Path(args.out).write_text(json.dumps({"steps": args.steps, "rows": rows},
                                               indent=1))


if __name__ == "__main__":
  main()
