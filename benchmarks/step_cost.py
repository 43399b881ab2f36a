"""Step cost of ZO-SAM against SGD and SAM, measured in one run.

For each model and method: the median wall-clock time of a jitted training
step (after warm-up, synchronised with ``block_until_ready``, params and
optimizer state donated), its compiled FLOPs from XLA's cost analysis, the
compiled memory footprint, and the device's peak memory where the backend
reports it. Every ratio is taken against SGD measured in the same run.

Usage::

  python benchmarks/step_cost.py --preset cpu   # this machine, minutes
  python benchmarks/step_cost.py --preset gpu   # the full grid of the issue

It prints a markdown table and writes JSON (``--out``), rewritten after every
(model, sparsity) cell: a run stopped by a time limit keeps the cells it measured.

References:
  Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
  Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
"""

import argparse
import dataclasses
import fnmatch
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

import zosam_jax
from zosam_jax import sparse
from zosam_jax.train import models


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A benchmark model: a flax module and the shape of one batch."""
  name: str
  module: Any
  input_shape: tuple[int, ...]
  batch_size: int
  num_classes: int = 10


@dataclasses.dataclass(frozen=True)
class Method:
  """One optimizer configuration of the grid."""
  name: str
  kind: str  # "sgd", "sam", "optax_sam", "zosam", "msam", "looksam"
  num_dirs: int = 0
  estimator: str = "central"
  chunk_size: Optional[int] = None
  zo_batch_fraction: float = 1.0
  # None: the library's defaults (by backend and leaf sizes).
  distribution: Optional[str] = None
  ravel: Optional[bool] = None
  prior: Optional[str] = None
  radius_cap: Optional[float] = None
  # The period of an exact step (zo_sam's refresh_every, LookSAM's every).
  refresh_every: Optional[int] = None
  probe: bool = True
  # zo_sam's exact_leaves=zosam_jax.output_layer (with the unprobed prior).
  exact_head: bool = False

  @property
  def forward_passes(self) -> float:
    """Forward passes per step beyond SGD's one (the ascent's, the paper's
    count, for ZO-SAM; the exact steps' share for a periodic method)."""
    if self.kind in ("sgd", "sam", "optax_sam"):
      return 0
    return zosam_jax.step_passes(self.kind, self.num_dirs, self.estimator, self.prior,
                                 self.refresh_every, self.probe, self.exact_head)[1] - 1


def model_specs(preset: str, batch_override: Optional[int]) -> list[ModelSpec]:
  """The models of the grid; `cpu` uses smaller batches."""
  small = preset == "cpu"
  b = lambda gpu, cpu: batch_override or (cpu if small else gpu)
  specs = [
      ModelSpec("cnn_digits", models.get_model("cnn", 10), (8, 8, 1), b(128, 128)),
      ModelSpec("resnet32", models.get_model("resnet32", 10), (32, 32, 3),
                b(128, 32)),
      ModelSpec("mlp", models.get_model("mlp", 10, features=(512, 512)),
                (28, 28, 1), b(256, 256)),
      ModelSpec("vit", models.get_model("vit", 10, hidden_dim=128, depth=4,
                                        num_heads=4, mlp_dim=256),
                (32, 32, 3), b(128, 32)),
      # The Fashion-MNIST study's two models at its batch (experiments/study.py).
      ModelSpec("fashion_cnn", models.get_model("cnn", 10), (28, 28, 1), b(128, 128)),
      ModelSpec("fashion_mlp", models.get_model("mlp", 10), (28, 28, 1), b(128, 128)),
      ModelSpec("wide_resnet32",
                models.CifarResNet(10, blocks_per_stage=5,
                                   widths=(64, 128, 256)),
                (32, 32, 3), b(256, 16)),
  ]
  return specs


def methods(preset: str) -> list[Method]:
  """The optimizer grid; `cpu` keeps the rows the CPU table needs."""
  rows = [Method("sgd", "sgd"), Method("sam", "sam"),
          Method("optax.contrib.sam", "optax_sam")]
  if preset == "cpu":
    dirs, estimators = (1, 4), ("central", "forward", "jvp")
  else:
    dirs, estimators = (1, 2, 4, 8, 16), ("central", "forward", "jvp")
  for estimator in estimators:
    for m in dirs:
      rows.append(Method(f"zosam m={m} {estimator}", "zosam", m, estimator))
  rows.append(Method("zosam m=1 central chunk=1", "zosam", 1, "central",
                     chunk_size=1))
  rows.append(Method("zosam m=4 central chunk=2", "zosam", 4, "central",
                     chunk_size=2))
  rows.append(Method("zosam m=1 central zo_batch=0.25", "zosam", 1, "central",
                     zo_batch_fraction=0.25))
  # The explicit settings behind the defaults (the paper's Gaussian first).
  for dist in ("gaussian", "rademacher"):
    for ravel in (True, False):
      rows.append(Method(f"zosam m=1 central {dist} ravel={ravel}", "zosam", 1,
                         "central", distribution=dist, ravel=ravel))
  rows.append(Method("zosam prior m=0", "zosam", 0, "central", prior="gradient"))
  rows.append(Method("zosam prior m=1", "zosam", 1, "central", prior="gradient"))
  # The ascent variants of the study (experiments/study.py, ASCENT_VARIANTS).
  rows.append(Method("zosam prior m=0 radius_cap=4", "zosam", 0, "central",
                     prior="gradient", radius_cap=4.0))
  rows.append(Method("zosam prior m=0 refresh_every=5", "zosam", 0, "central",
                     prior="gradient", refresh_every=5))
  # The best-vs-best protocol's new option (experiments/cells.py, TUNED).
  rows.append(Method("zosam prior m=0 radius_cap=4 zo_batch_fraction=0.5", "zosam", 0,
                     "central", prior="gradient", radius_cap=4.0, zo_batch_fraction=0.5))
  rows.append(Method("zosam prior m=0 probe=False", "zosam", 0, "central",
                     prior="gradient", probe=False))
  rows.append(Method("zosam prior m=0 probe=False exact_head", "zosam", 0, "central",
                     prior="gradient", probe=False, exact_head=True))
  rows.append(Method("msam", "msam"))
  rows.append(Method("looksam k=5", "looksam", refresh_every=5))
  # SAM's ascent gradient on the first 1/k of the minibatch (zo_value_fn).
  for k in (4, 8, 16):
    rows.append(Method(f"sam ascent_batch=1/{k}", "sam", zo_batch_fraction=1 / k))
  return rows


def _loss_fn(module, batch_stats, x, y):
  """The training loss with BatchNorm statistics as aux (flax linen)."""
  def loss(params):
    variables = {"params": params}
    if batch_stats is not None:
      variables["batch_stats"] = batch_stats
      logits, new_vars = module.apply(variables, x, train=True,
                                      mutable=["batch_stats"])
      new_stats = new_vars["batch_stats"]
    else:
      logits, new_stats = module.apply(variables, x, train=True), None
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, new_stats
  return loss


def make_step(spec: ModelSpec, method: Method, base: Callable[[], Any],
              masks: Any) -> tuple[Callable, Any]:
  """Returns ``(step, init_state)`` for a method: step(params, stats, state, x, y)."""
  sparse_base = (lambda: sparse.static_sparse(base(), masks=masks)) if masks is not None else base
  mask_fn = "base_state" if masks is not None else None
  if method.kind == "sgd":
    tx = sparse_base()

    def step(params, stats, state, x, y):
      (_, stats), grads = jax.value_and_grad(
          _loss_fn(spec.module, stats, x, y), has_aux=True)(params)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), stats, state
    return step, tx

  if method.kind == "optax_sam":
    tx = optax.contrib.sam(sparse_base(), optax.chain(
        optax.contrib.normalize(), optax.sgd(0.05)), opaque_mode=True)

    def step(params, stats, state, x, y):
      loss = _loss_fn(spec.module, stats, x, y)
      (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
      grad_fn = lambda p, _: jax.grad(lambda q: loss(q)[0])(p)
      updates, state = tx.update(grads, state, params, grad_fn=grad_fn)
      return optax.apply_updates(params, updates), stats, state
    return step, tx

  if method.kind == "sam":
    tx = zosam_jax.sam(sparse_base(), rho=0.05, mask_fn=mask_fn, has_aux=True)
  elif method.kind == "msam":
    tx = zosam_jax.msam(sparse_base(), rho=0.05, mask_fn=mask_fn, has_aux=True)
  elif method.kind == "looksam":
    tx = zosam_jax.looksam(sparse_base(), rho=0.05, mask_fn=mask_fn,
                           every=method.refresh_every, has_aux=True)
  else:
    tx = zosam_jax.zo_sam(sparse_base(), rho=0.05, num_dirs=method.num_dirs,
                          mask_fn=mask_fn, estimator=method.estimator,
                          distribution=method.distribution,
                          chunk_size=method.chunk_size, ravel=method.ravel,
                          prior=method.prior, radius_cap=method.radius_cap,
                          refresh_every=method.refresh_every, probe=method.probe,
                          exact_leaves=zosam_jax.output_layer if method.exact_head else None,
                          has_aux=True)

  def step(params, stats, state, x, y, exact=None):
    kwargs = {} if exact is None else {"exact": exact}
    if method.zo_batch_fraction < 1.0:
      k = max(1, int(round(method.zo_batch_fraction * x.shape[0])))
      kwargs["zo_value_fn"] = _loss_fn(spec.module, stats, x[:k], y[:k])
    updates, state = tx.update(params, state, params,
                               value_fn=_loss_fn(spec.module, stats, x, y),
                               **kwargs)
    stats, state = zosam_jax.pop_aux(state)
    return optax.apply_updates(params, updates), stats, state
  return step, tx


def _memory(compiled) -> Optional[int]:
  try:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes
               + m.output_size_in_bytes - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def _peak_device_memory() -> Optional[int]:
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def _cell_inputs(spec: ModelSpec, sparsity: float):
  """The batch, params, BatchNorm statistics and masks of one grid cell."""
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (spec.batch_size,) + spec.input_shape)
  y = jax.random.randint(ky, (spec.batch_size,), 0, spec.num_classes)
  variables = spec.module.init(kp, x[:1], train=False)
  params, stats = variables["params"], variables.get("batch_stats")
  masks = None
  if sparsity > 0:
    masks = sparse.init_masks(params, sparsity, distribution="erk",
                              method="random", key=jax.random.key(1))
    params = sparse.apply_masks(params, masks)
  return x, y, params, stats, masks


def compiled_run(step: Callable, cycle: list, carry: tuple, x, y,
                 warmup: int) -> dict[str, Any]:
  """One method ready to time: ``step(params, stats, state, x, y)`` compiled
  for each branch of ``cycle`` (``exact=`` of a periodic method, ``None``
  otherwise) with its buffers donated, run ``warmup`` cycles on its own copy
  of ``carry = (params, stats, state)``."""
  by_branch = {exact: jax.jit(step if exact is None else functools.partial(step, exact=exact),
                              donate_argnums=(0, 1, 2)).lower(*carry, x, y).compile()
               for exact in set(cycle)}
  compiled = [by_branch[exact] for exact in cycle]
  # Donated buffers are deleted: every method runs on its own copies (the
  # masks, for one, are shared by all the states of a cell).
  carry = jax.tree.map(jnp.copy, carry)
  for _ in range(warmup):
    for fn in compiled:
      carry = fn(*carry, x, y)
  jax.block_until_ready(carry)
  return {"compiled": compiled, "carry": carry, "times": []}


def time_interleaved(runs: list[dict[str, Any]], x, y, rounds: int, steps: int,
                     probe: Optional[Callable[[], Any]] = None) -> list[float]:
  """``rounds`` rounds of ``steps`` cycles of every run of :func:`compiled_run`
  in turn (each cycle's seconds per step appended to its ``times``), then
  ``steps`` calls of ``probe`` if given; returns the probe's seconds."""
  probe_times = []
  for _ in range(rounds):
    for run in runs:
      for _ in range(steps):
        start = time.perf_counter()
        for fn in run["compiled"]:
          run["carry"] = fn(*run["carry"], x, y)
        jax.block_until_ready(run["carry"])
        run["times"].append((time.perf_counter() - start) / len(run["compiled"]))
    for _ in range(steps if probe is not None else 0):
      start = time.perf_counter()
      jax.block_until_ready(probe())
      probe_times.append(time.perf_counter() - start)
  return probe_times


def measure_cell(spec: ModelSpec, grid: list[Method], sparsity: float,
                 steps: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
  """Times every method of one (model, sparsity) cell, interleaved.

  Each of ``rounds`` rounds runs ``steps`` steps of every method in turn, so a
  change of machine load affects all methods alike; the time of a method is
  the median over its ``rounds * steps`` steps. One training-mode forward pass
  (the loss) is timed in the same rounds: a ZO step's floor is the SGD step
  plus its forward passes. A periodic method (an exact step every k) is timed
  by whole cycles of k steps, divided by k, with the branch of each step
  chosen at trace time (``update(..., exact=...)``, as ``zosam-train`` does).
  """
  x, y, params, stats, masks = _cell_inputs(spec, sparsity)
  forward = jax.jit(lambda p, s: _loss_fn(spec.module, s, x, y)(p)[0]).lower(
      params, stats).compile()
  base = lambda: optax.sgd(0.05, momentum=0.9)
  runs = []
  for method in grid:
    step, tx = make_step(spec, method, base, masks)
    # A periodic method: its exact and its other step, each compiled (the
    # way zosam-train runs it), one cycle per timed sample.
    cycle = ([None] if method.refresh_every is None
             else [True] + [False] * (method.refresh_every - 1))
    runs.append(dict(compiled_run(step, cycle, (params, stats, tx.init(params)), x, y,
                                  warmup), method=method))
  jax.block_until_ready(forward(params, stats))
  forward_times = time_interleaved(runs, x, y, rounds, steps,
                                   lambda: forward(params, stats))
  rows = []
  for run in runs:
    method = run["method"]
    rows.append({
        "model": spec.name, "batch_size": spec.batch_size,
        "method": method.name, "kind": method.kind,
        "num_dirs": method.num_dirs, "estimator": method.estimator,
        "chunk_size": method.chunk_size,
        "zo_batch_fraction": method.zo_batch_fraction,
        "distribution": method.distribution, "ravel": method.ravel,
        "refresh_every": method.refresh_every,
        "forward_passes": method.forward_passes, "sparsity": sparsity,
        "ms_per_step": 1e3 * statistics.median(run["times"]),
        "forward_ms": 1e3 * statistics.median(forward_times),
        # A cycle's mean FLOPs; the memory of its largest step.
        "flops": statistics.mean(fn.cost_analysis().get("flops") for fn in run["compiled"]),
        "compiled_bytes": max((_memory(fn) or 0 for fn in run["compiled"]), default=None),
        "peak_device_bytes": _peak_device_memory()})
  return rows


def forward_flops(spec: ModelSpec) -> float:
  """FLOPs of one training-mode forward pass (loss included)."""
  x = jnp.zeros((spec.batch_size,) + spec.input_shape)
  y = jnp.zeros((spec.batch_size,), jnp.int32)
  variables = jax.eval_shape(lambda: spec.module.init(jax.random.key(0), x[:1],
                                                      train=False))
  loss = lambda p, s: _loss_fn(spec.module, s, x, y)(p)[0]
  compiled = jax.jit(loss).lower(variables["params"],
                                 variables.get("batch_stats")).compile()
  return compiled.cost_analysis()["flops"]


def target_checks(row: dict[str, Any], sgd: dict[str, Any],
                  sam: Optional[dict[str, Any]], fwd: float) -> list[str]:
  """PASS/FAIL of the issue's targets that apply to a row."""
  out = []
  ratio = row["ms_per_step"] / sgd["ms_per_step"]
  # XLA's cost analysis counts a loop body once: only unrolled rows compare;
  # the floor counts forward passes, not a periodic row's extra backward ones.
  unrolled = (row["chunk_size"] is None and row["num_dirs"] <= 4
              and row.get("refresh_every") is None)
  if row["kind"] == "zosam" and row["estimator"] == "central" and unrolled:
    expected = (sgd["flops"]
                + row["forward_passes"] * fwd * row["zo_batch_fraction"])
    ok = abs(row["flops"] - expected) <= 0.1 * expected
    out.append(f"flops≈sgd+fwd passes {'PASS' if ok else 'FAIL'}")
    if sam is not None and row["num_dirs"] <= 4 and row["compiled_bytes"] and sam["compiled_bytes"]:
      ok = row["compiled_bytes"] <= 1.1 * sam["compiled_bytes"]
      out.append(f"mem≤1.1·SAM {'PASS' if ok else 'FAIL'}")
  limits = {
      ("resnet32", 1, 1.0): 1.6, ("resnet32", 4, 1.0): 1.7,
      ("resnet32", 16, 1.0): 2.5, ("wide_resnet32", 1, 1.0): 1.65,
      ("wide_resnet32", 1, 0.25): 1.3,
  }
  if row["kind"] == "zosam" and row["estimator"] == "central":
    limit = limits.get((row["model"], row["num_dirs"], row["zo_batch_fraction"]))
    if limit is not None:
      out.append(f"≤{limit}×SGD {'PASS' if ratio <= limit else 'FAIL'}")
    if (row["model"] == "resnet32" and row["num_dirs"] == 1 and sam is not None
        and row["zo_batch_fraction"] == 1.0):
      ok = row["ms_per_step"] <= 0.75 * sam["ms_per_step"]
      out.append(f"≤0.75×SAM {'PASS' if ok else 'FAIL'}")
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument("--models", default=None,
                      help="comma-separated subset of cnn_digits,resnet32,mlp,vit,"
                      "fashion_cnn,fashion_mlp,wide_resnet32")
  parser.add_argument("--methods", default=None,
                      help="comma-separated names or glob patterns of methods"
                      " (sgd always runs), e.g. 'sam,zosam m=1 *'")
  parser.add_argument("--sparsities", default="0,0.9,0.98")
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--rounds", type=int, default=None,
                      help="interleaved rounds of --steps steps per method")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--out", default="benchmarks/results/step_cost.json")
  args = parser.parse_args(argv)
  steps = args.steps or (2 if args.preset == "cpu" else 10)
  args.rounds = args.rounds or (3 if args.preset == "cpu" else 5)
  specs = model_specs(args.preset, args.batch_size)
  if args.models:
    wanted = args.models.split(",")
    specs = [s for s in specs if s.name in wanted]
  grid = methods(args.preset)
  if args.methods:
    patterns = args.methods.split(",")
    grid = [m for m in grid if m.kind == "sgd" or any(
        fnmatch.fnmatch(m.name, p) for p in patterns)]
  sparsities = [float(s) for s in args.sparsities.split(",")]

  device = jax.devices()[0]
  header = {"backend": jax.default_backend(), "device": device.device_kind,
            "jax": jax.__version__, "python": platform.python_version(),
            "preset": args.preset, "steps": steps, "rounds": args.rounds}
  print(f"# step cost on {header['device']} ({header['backend']}), jax {jax.__version__}")
  print("| model | batch | sparsity | method | ms/step | ×SGD | ×SAM | ×floor | GFLOPs "
        "| FLOPs ×SGD | MiB (compiled) | targets |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  rows = []
  for spec in specs:
    fwd = forward_flops(spec)
    for sparsity in sparsities:
      print(f"{spec.name} at sparsity {sparsity:g}: compiling {len(grid)} steps, then "
            "timing them", file=sys.stderr, flush=True)
      cell = measure_cell(spec, grid, sparsity, steps, args.rounds, args.warmup)
      for row in with_ratios(cell, fwd):
        rows.append(row)
        print(table_line(spec, row), flush=True)
      # Written after every cell: a run stopped by a time limit keeps its cells.
      write_json(args.out, header, rows)
  print(f"\nwrote {args.out}")


def with_ratios(cell: list[dict[str, Any]], fwd: float) -> list[dict[str, Any]]:
  """The rows of one cell with their ratios to SGD, SAM and the floor, and the
  targets they are checked against."""
  by_name = {row["method"]: row for row in cell}
  sgd, sam = by_name["sgd"], by_name.get("sam")
  for row in cell:
    row["ratio_to_sgd"] = row["ms_per_step"] / sgd["ms_per_step"]
    row["ratio_to_sam"] = row["ms_per_step"] / sam["ms_per_step"] if sam else None
    # The floor: an SGD step plus the ascent's forward passes, both measured.
    row["floor_ms"] = (sgd["ms_per_step"]
                       + row["forward_passes"] * row["forward_ms"]
                       * row["zo_batch_fraction"])
    row["ratio_to_floor"] = row["ms_per_step"] / row["floor_ms"]
    row["flops_ratio_to_sgd"] = row["flops"] / sgd["flops"]
    row["forward_flops"] = fwd
    row["targets"] = target_checks(row, sgd, sam, fwd)
  return cell


def table_line(spec: ModelSpec, row: dict[str, Any]) -> str:
  """One row of the printed markdown table."""
  mib = (row["compiled_bytes"] or 0) / 2**20
  return (f"| {spec.name} | {spec.batch_size} | {row['sparsity']:g} | {row['method']} | "
          f"{row['ms_per_step']:.1f} | {row['ratio_to_sgd']:.2f} | "
          f"{row['ratio_to_sam'] or 0:.2f} | {row['ratio_to_floor']:.2f} | "
          f"{row['flops'] / 1e9:.2f} | {row['flops_ratio_to_sgd']:.2f} | "
          f"{mib:.0f} | {', '.join(row['targets'])} |")


def write_json(path: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
  """Replaces ``path`` by the header and rows (through a temporary file, so a
  run killed while writing leaves the previous version)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump({"header": header, "rows": rows}, f, indent=1)
  os.replace(path + ".tmp", path)


if __name__ == "__main__":
  main()
