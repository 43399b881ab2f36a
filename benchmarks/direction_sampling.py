"""Time to draw one direction of 670k entries (the 784-512-512-10 MLP).

For each key implementation of ``jax.random`` (threefry2x32, rbg, unsafe_rbg):
a Gaussian draw, raw bits, ``jax.random.rademacher`` and our packed signs.

Usage: `python benchmarks/direction_sampling.py`.
"""

import time

import jax
import jax.numpy as jnp

from zosam_jax._src import directions

SIZE = 670_000


def _time_ms(fn, impl, repeats=30):
  fn = jax.jit(fn)
  key = jax.random.key(0, impl=impl)
  jax.block_until_ready(fn(key))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(key))
  return (time.perf_counter() - start) / repeats * 1e3


def main():
  rows = {
      "jax.random.normal": lambda k: jax.random.normal(k, (SIZE,)),
      "jax.random.bits": lambda k: jax.random.bits(k, (SIZE,), jnp.uint32),
      "jax.random.rademacher": lambda k: jax.random.rademacher(
          k, (SIZE,), jnp.float32),
      "packed_rademacher (ours)": lambda k: directions.packed_rademacher(
          k, (SIZE,)),
  }
  impls = ("threefry2x32", "rbg", "unsafe_rbg")
  print(f"| {SIZE:,} entries on {jax.devices()[0].device_kind} | "
        + " | ".join(f"{i} ms" for i in impls) + " |")
  print("|---|" + "---|" * len(impls))
  for name, fn in rows.items():
    print(f"| {name} | " + " | ".join(f"{_time_ms(fn, i):.2f}" for i in impls) + " |",
          flush=True)


if __name__ == "__main__":
  main()
