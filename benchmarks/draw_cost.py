"""What a key split and a conditional cost an SGD-priced step on XLA:CPU (issue 34).

The unprobed prior (``zo_sam(..., prior="gradient", num_dirs=0, probe=False)``)
adds only elementwise work to SGD's step, yet took 1.08-1.11x SGD's time while
its steps split the state's key and branched (``jax.lax.cond``) on a zero
prior. This times, interleaved in one run on the study's models (90% static
ERK masks, SGD with momentum, buffers donated), hand-written steps that add
one thing at a time to SGD's:

- ``sgd``: the gradient at θ;
- ``perturbed``: the gradient at θ + ρ·Mp/‖Mp‖, p the last gradient (the
  unprobed prior written out);
- ``perturbed + split``: and a ``jax.random.split`` of a key in the state;
- ``perturbed + cond``: and the direction behind ``jax.lax.cond(‖Mp‖ > 0, …)``
  with a constant fallback (no random bits);
- ``perturbed + split + cond``;

and the library's unprobed prior and SAM. Run it again with
``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` to see
whether the scheduler is where the time goes.

Usage::

  python benchmarks/draw_cost.py --out benchmarks/results/draw_cost_cpu.json
"""

import argparse
import json
import os
import platform
import statistics

import jax
import jax.numpy as jnp
import optax

import step_cost
from zosam_jax import sparse

#: The hand-written steps: name -> (splits a key, branches on the prior's norm).
HAND = {"perturbed": (False, False), "perturbed + split": (True, False),
        "perturbed + cond": (False, True), "perturbed + split + cond": (True, True)}
LIBRARY = {"sgd": step_cost.Method("sgd", "sgd"),
           "library unprobed prior": step_cost.Method(
               "zosam prior m=0 probe=False", "zosam", 0, prior="gradient", probe=False),
           "library sam": step_cost.Method("sam", "sam")}


def hand_step(spec, tx, masks, split: bool, cond: bool, rho: float = 0.05):
  """``step(params, stats, state, x, y)`` of SGD at θ + ρ·Mp/‖Mp‖, its state
  ``(base state, p, key)``; with ``split`` it splits the key, with ``cond`` the
  direction comes through a conditional."""
  def step(params, stats, state, x, y):
    opt_state, prior, key = state
    if split:
      key, _ = jax.random.split(key)
    masked = jax.tree.map(lambda p, m: p * m.astype(p.dtype), prior, masks)
    norm = optax.tree.norm(masked)
    unit = lambda t: jax.tree.map(lambda a: a / norm, t)
    direction = (jax.lax.cond(norm > 0, unit, lambda t: jax.tree.map(jnp.ones_like, t),
                              masked) if cond else unit(masked))
    loss = lambda p: step_cost._loss_fn(spec.module, stats, x, y)(p)[0]  # pylint: disable=protected-access
    grads = jax.grad(loss)(jax.tree.map(lambda p, d: p + rho * d, params, direction))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, (opt_state, grads, key)
  return step


def measure(spec, rounds: int, steps: int, warmup: int) -> list[dict]:
  """Every step of one model, timed interleaved: one row per step."""
  x, y, params, stats, masks = step_cost._cell_inputs(spec, 0.9)  # pylint: disable=protected-access
  base = lambda: optax.sgd(0.05, momentum=0.9)
  runs = {}
  for name, method in LIBRARY.items():
    step, tx = step_cost.make_step(spec, method, base, masks)
    runs[name] = step_cost.compiled_run(step, [None], (params, stats, tx.init(params)),
                                        x, y, warmup)
  tx = sparse.static_sparse(base(), masks=masks)
  first = jax.tree.map(jnp.ones_like, params)
  for name, (split, cond) in HAND.items():
    state = (tx.init(params), first, jax.random.key(0))
    runs[name] = step_cost.compiled_run(hand_step(spec, tx, masks, split, cond), [None],
                                        (params, stats, state), x, y, warmup)
  step_cost.time_interleaved(list(runs.values()), x, y, rounds, steps)
  ms = {name: 1e3 * statistics.median(run["times"]) for name, run in runs.items()}
  return [{"model": spec.name, "batch_size": spec.batch_size, "step": name,
           "ms_per_step": t, "ratio_to_sgd": t / ms["sgd"],
           "ratio_to_sam": t / ms["library sam"]} for name, t in ms.items()]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="fashion_cnn,fashion_mlp")
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--out", default="benchmarks/results/draw_cost_cpu.json")
  args = parser.parse_args(argv)
  wanted = args.models.split(",")
  rows = []
  print("| model | step | ms/step | ×SGD | ×SAM |\n|---|---|---|---|---|")
  for spec in step_cost.model_specs("cpu", args.batch_size):
    if spec.name in wanted:
      for row in measure(spec, args.rounds, args.steps, args.warmup):
        rows.append(row)
        print(f"| {row['model']} | {row['step']} | {row['ms_per_step']:.1f} | "
              f"{row['ratio_to_sgd']:.2f} | {row['ratio_to_sam']:.2f} |", flush=True)
  header = {"backend": jax.default_backend(), "jax": jax.__version__,
            "python": platform.python_version(), "rounds": args.rounds, "steps": args.steps,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
  with open(args.out, "w") as f:
    json.dump({"header": header, "rows": rows}, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
