"""Two perturbed forward passes of ResNet-32: one vmap, lax.map, or unrolled.

Isolates why `zo_sam` evaluates its perturbed passes one after the other on
CPU (`chunk_size=None` -> 1 there): a `jax.vmap` over perturbed weights batches
every convolution kernel. Usage: `python benchmarks/forward_batching.py`.
"""

import time

import jax
import jax.numpy as jnp
import optax

from zosam_jax.train import models


def _time_ms(fn, arg, repeats=3):
  fn = jax.jit(fn)
  jax.block_until_ready(fn(arg))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(arg))
  return (time.perf_counter() - start) / repeats * 1e3


def main():
  model = models.get_model("resnet32", 10)
  x = jax.random.normal(jax.random.key(0), (32, 32, 32, 3))
  y = jnp.zeros(32, jnp.int32)
  variables = model.init(jax.random.key(1), x[:1])
  params, stats = variables["params"], variables["batch_stats"]

  def loss(p):
    logits, _ = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                            mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  two = jax.tree.map(lambda a: jnp.stack([a, a]), params)
  pick = lambda q, i: jax.tree.map(lambda a: a[i], q)
  rows = {
      "one forward pass": (loss, params),
      "one gradient": (jax.grad(loss), params),
      "2 passes, one vmap": (jax.vmap(loss), two),
      "2 passes, lax.map batch_size=1": (
          lambda q: jax.lax.map(loss, q, batch_size=1), two),
      "2 passes, lax.map": (lambda q: jax.lax.map(loss, q), two),
      "2 passes, unrolled": (
          lambda q: jnp.stack([loss(pick(q, i)) for i in range(2)]), two),
  }
  print(f"| ResNet-32 batch 32 on {jax.devices()[0].device_kind} | ms |")
  print("|---|---|")
  for name, (fn, arg) in rows.items():
    print(f"| {name} | {_time_ms(fn, arg):.0f} |", flush=True)


if __name__ == "__main__":
  main()
