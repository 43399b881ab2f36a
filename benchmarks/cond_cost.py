"""A gradient inside ``jax.lax.cond`` / ``scan`` / ``while_loop`` against the same
gradient outside one, on XLA:CPU (why ``update(..., exact=)`` exists).

For the digits CNN and the MLP at batch 128: the median time of a jitted
``jax.grad`` of the loss, plain and wrapped in each nested computation (one
iteration, the predicate a traced value), interleaved in one run.

Usage::

  python benchmarks/cond_cost.py
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from zosam_jax.train import models

SHAPES = {"cnn_digits": ((8, 8, 1), "cnn"), "mlp": ((28, 28, 1), "mlp")}


def wrappers(grad_fn):
  """``name -> params -> grads``: the gradient plain and in nested computations."""
  def in_cond(p, flag):
    return jax.lax.cond(flag, grad_fn, lambda q: jax.tree.map(jnp.zeros_like, q), p)

  def in_scan(p, flag):
    del flag
    return jax.lax.scan(lambda c, _: (c, grad_fn(c)), p, None, length=1)[1]

  def in_while(p, flag):
    del flag
    body = lambda c: (c[0] + 1, grad_fn(c[1]))
    return jax.lax.while_loop(lambda c: c[0] < 1, body, (0, p))[1]

  return {"plain": lambda p, flag: grad_fn(p), "cond": in_cond, "scan": in_scan,
          "while_loop": in_while}


def measure(name: str, batch: int, steps: int, rounds: int) -> dict[str, float]:
  shape, model_name = SHAPES[name]
  model = models.get_model(model_name, 10)
  x = jax.random.normal(jax.random.key(0), (batch,) + shape)
  y = jnp.arange(batch) % 10
  params = model.init(jax.random.key(1), x[:1], train=False)["params"]
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": p}, x, train=False), y).mean()
  fns = {k: jax.jit(f) for k, f in wrappers(jax.grad(loss)).items()}
  flag = jnp.asarray(True)
  for f in fns.values():
    jax.block_until_ready(f(params, flag))
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, f in fns.items():
      for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(f(params, flag))
        times[k].append(time.perf_counter() - start)
  return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="cnn_digits,mlp")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results/cond_cost_cpu.json")
  args = parser.parse_args(argv)
  print("| model | nested in | ms per gradient | × plain |")
  print("|---|---|---|---|")
  rows = []
  for name in args.models.split(","):
    ms = measure(name, args.batch_size, args.steps, args.rounds)
    for k, v in ms.items():
      rows.append({"model": name, "nested_in": k, "ms": v, "ratio_to_plain": v / ms["plain"]})
      print(f"| {name} | {k} | {v:.1f} | {v / ms['plain']:.2f} |", flush=True)
  header = {"backend": jax.default_backend(), "jax": jax.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "batch_size": args.batch_size}
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"header": header, "rows": rows}, f, indent=1)
  print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
