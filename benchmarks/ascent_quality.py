"""How well does each ascent point uphill? cos(ε, ∇L), sharpness, SAM's correction.

Trains the digits MLP (64-128-128-10, batch 128, SGD momentum 0.9, lr 0.05)
with each ascent and, at every step of a window (default 50-300), compares
what it does with SAM at the same θ and minibatch (g = M ⊙ ∇L(θ)):

* ``cos``: cos(ε, g), mean over the window (0 on LookSAM's steps in between,
  which take no ε);
* ``sharpness_ratio``: mean of L(θ+ε) − L(θ) over mean of SAM's
  L(θ + ρ g/‖g‖) − L(θ);
* ``correction_cos``: cos(h − g, h_SAM − g), h the gradient the base
  optimizer receives and h_SAM SAM's: how well the step recovers SAM's change
  to the gradient (LookSAM's reused component included); ``correction_ratio``:
  ‖h − g‖ / ‖h_SAM − g‖.

ε is read exactly: ``value_fn`` returns the point it was called at as aux;
h is recorded by a transformation in front of the base optimizer.
Prints a table and writes ``benchmarks/results/ascent_quality.json``.

  python benchmarks/ascent_quality.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import zosam_jax

OUT = pathlib.Path(__file__).parent / "results" / "ascent_quality.json"
_ZO = lambda **kw: (lambda base, rho, mask_fn, key: zosam_jax.zo_sam(
    base, rho=rho, mask_fn=mask_fn, key=key, has_aux=True, distribution="gaussian", **kw))
_PRIOR = dict(prior="gradient", num_dirs=0)
#: The ascents compared: name -> (base, rho, mask_fn, key) -> transformation.
ASCENTS: dict[str, Any] = {
    "random m=1 (paper)": _ZO(num_dirs=1),
    "prior=gradient, m=0": _ZO(**_PRIOR),
    "prior=gradient, m=1": _ZO(prior="gradient", num_dirs=1),
    "prior=momentum, m=0": _ZO(prior="momentum", num_dirs=0),
    "prior=gradient, radius_cap=4": _ZO(**_PRIOR, radius_cap=4.0),
    "prior=gradient, refresh_every=5": _ZO(**_PRIOR, refresh_every=5),
    "MSAM rho=0.05": lambda base, rho, mask_fn, key: zosam_jax.msam(
        base, rho=rho, mask_fn=mask_fn, has_aux=True),
    "MSAM rho=0.3": lambda base, rho, mask_fn, key: zosam_jax.msam(
        base, rho=0.3, mask_fn=mask_fn, has_aux=True),
    "LookSAM k=5": lambda base, rho, mask_fn, key: zosam_jax.looksam(
        base, rho=rho, mask_fn=mask_fn, every=5, has_aux=True),
}


class Seen(NamedTuple):
  """The gradient the base optimizer received in the last step."""
  grads: Any


def record_gradient() -> optax.GradientTransformation:
  """Passes the gradient on unchanged and keeps it in its :class:`Seen` state."""
  return optax.GradientTransformation(
      lambda params: Seen(jax.tree.map(jnp.zeros_like, params)),
      lambda updates, state, params=None: (updates, Seen(updates)))


def _digits():
  from zosam_jax.train import load_dataset
  ds = load_dataset("digits")
  x = (ds.x_train.astype(np.float32) - ds.mean) / ds.std
  return x.reshape(x.shape[0], -1), ds.y_train


def _cos(a, b):
  """cos(a, b) of two trees; NaN where b = 0 (undefined), 0 where only a is."""
  norms = optax.tree.norm(a) * optax.tree.norm(b)
  return jnp.where(optax.tree.norm(b) > 0,
                   optax.tree.vdot(a, b) / jnp.where(norms > 0, norms, 1.0), jnp.nan)


def measure(make: Any, sparsity: float, *, steps: int = 300, window_start: int = 50,
            rho: float = 0.05, seed: int = 0) -> dict[str, float]:
  """The window's mean cos(ε, g), sharpness ratio and correction to SAM's."""
  x, y = _digits()
  model = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(128), nn.relu, nn.Dense(10)])
  params = model.init(jax.random.key(seed), x[:1])
  base = optax.chain(record_gradient(), optax.sgd(0.05, momentum=0.9))
  if sparsity:
    base = zosam_jax.sparse.static_sparse(base, sparsity=sparsity, key=seed)
  tx = make(base, rho, "base_state" if sparsity else None, seed)
  state = tx.init(params)
  masks = (optax.tree.get(state, "StaticSparseState").masks if sparsity
           else jax.tree.map(lambda p: jnp.ones(p.shape, bool), params))
  apply = lambda tree: jax.tree.map(lambda m, d: jnp.where(m, d, 0.0), masks, tree)

  @jax.jit
  def step(params, state, xb, yb):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, xb), yb).mean()
    g = apply(jax.grad(loss)(params))
    updates, state = tx.update(params, state, params,
                               value_fn=lambda p: (loss(p), p))
    eps = jax.tree.map(jnp.subtract, state.aux, params)
    g_norm = jnp.where(optax.tree.norm(g) > 0, optax.tree.norm(g), 1.0)
    sam_point = jax.tree.map(lambda p, d: p + rho * d / g_norm, params, g)
    sam_change = jax.tree.map(jnp.subtract, apply(jax.grad(loss)(sam_point)), g)
    change = jax.tree.map(jnp.subtract, apply(optax.tree.get(state, "Seen").grads), g)
    at = loss(params)
    metrics = (_cos(eps, g), loss(jax.tree.map(jnp.add, params, eps)) - at,
               loss(sam_point) - at, _cos(change, sam_change),
               optax.tree.norm(change) / optax.tree.norm(sam_change))
    return optax.apply_updates(params, updates), state._replace(aux=None), metrics

  rng = np.random.default_rng(seed)
  rows = []
  for s in range(steps):
    idx = rng.choice(x.shape[0], 128, replace=False)
    params, state, metrics = step(params, state, x[idx], y[idx])
    if s >= window_start:
      rows.append([float(v) for v in metrics])
  cos, zo_sharp, sam_sharp, c_cos, c_ratio = np.nanmean(np.asarray(rows), axis=0)
  return {"cos": float(cos), "sharpness": float(zo_sharp),
          "sam_sharpness": float(sam_sharp), "sharpness_ratio": float(zo_sharp / sam_sharp),
          "correction_cos": float(c_cos), "correction_ratio": float(c_ratio)}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.9])
  p.add_argument("--out", default=str(OUT))
  args = p.parse_args(argv)
  rows = []
  print("| ascent | sparsity | cos(ε, ∇L) | L(θ+ε)−L(θ) | SAM's | ratio to SAM "
        "| cos to SAM's correction | its size ÷ SAM's |")
  print("|---|---|---|---|---|---|---|---|")
  for name, make in ASCENTS.items():
    for sparsity in args.sparsities:
      r = dict(ascent=name, sparsity=sparsity, **measure(make, sparsity, steps=args.steps))
      rows.append(r)
      print(f"| {name} | {sparsity:.0%} | {r['cos']:.3f} | {r['sharpness']:.2e} | "
            f"{r['sam_sharpness']:.2e} | {r['sharpness_ratio']:.2f} | "
            f"{r['correction_cos']:.2f} | {r['correction_ratio']:.2f} |", flush=True)
  pathlib.Path(args.out).write_text(json.dumps({"steps": args.steps, "rows": rows},
                                               indent=1))


if __name__ == "__main__":
  main()
