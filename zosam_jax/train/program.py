"""A training program set up from its config or restored from its folder.

:func:`set_up` checks the flags against the machine, the data and each run's
folder, builds (or restores from the checkpoints) the state of every seed,
and jits the step: one seed's, or K seeds' mapped over a leading axis
(:mod:`zosam_jax.train.seeds`). :mod:`zosam_jax.train.train` drives it;
:func:`save` checkpoints every seed, :func:`finish` writes each seed's
summary, curves and sparsity; :func:`restore` rebuilds a run from its folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import zosam_jax
from zosam_jax.train import checkpoint as checkpoint_lib
from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import distributed
from zosam_jax.train import models
from zosam_jax.train import optim
from zosam_jax.train import report
from zosam_jax.train import seeds as seeds_lib
from zosam_jax.train import steps as steps_lib
from zosam_jax.train import workdir as workdir_lib


@dataclasses.dataclass
class Member:
  """One seed's run: its configuration, folder, checkpoints and metrics file."""

  cfg: config_lib.TrainConfig
  workdir: Path
  ckpt: checkpoint_lib.Checkpointer
  writer: report.MetricsWriter
  order: data_lib.BatchOrder


@dataclasses.dataclass
class Program:
  """Everything a program (one seed, or K stacked) carries through set-up,
  loop and report. ``axes`` is ``None`` for one seed, else the seed axis of
  each leaf of the stacked ``state``."""

  cfg: config_lib.TrainConfig
  members: list[Member]
  axes: Any
  ds: data_lib.Dataset
  num_steps: int
  stop: int
  schedule: Any
  state: steps_lib.TrainState
  start_step: int
  train_seconds: float
  train_step: Any
  model: Any
  x_all: Any
  y_all: Any
  num_params: int
  locks: workdir_lib.Locks
  batch_sharding: Any = None
  mesh: Any = None

  def member_state(self, i: int) -> steps_lib.TrainState:
    return self.state if self.axes is None else seeds_lib.select(self.state, self.axes, i)

  def host_metrics(self) -> list[steps_lib.MetricSums]:
    """Each seed's metric sums on the host, read from the device at once."""
    m = jax.tree.map(distributed.host_value, self.state.metrics)
    if self.axes is None:
      return [m]
    return [jax.tree.map(lambda x, i=i: x[i], m) for i in range(len(self.members))]

  def indices(self, step: int) -> np.ndarray:
    if self.axes is None:
      return self.members[0].order.indices(step)
    return np.stack([m.order.indices(step) for m in self.members])

  def inputs(self, step: int) -> tuple[Any, Any, Any]:
    """The step's ``(x, y, indices)``: the device-resident training set and the
    batch's indices, or with several processes the global batch itself, of
    which this process reads only its rows (``indices`` ``None``)."""
    if self.x_all is not None:
      return self.x_all, self.y_all, self.indices(step)
    sharding = self.batch_sharding
    if self.axes is not None:  # (K, B, ...): every seed's batch split on dim 1.
      sharding = jax.sharding.NamedSharding(sharding.mesh,
                                            jax.sharding.PartitionSpec(None, "data"))
    x, y = distributed.global_batch(sharding, (self.ds.x_train, self.ds.y_train),
                                    self.indices(step))
    return x, y, None


def run_dataset(cfg: config_lib.TrainConfig,
                dataset: data_lib.Dataset | None = None) -> data_lib.Dataset:
  """The data a run trains, validates and tests on: ``--dataset`` at
  ``--image-size``, cut to ``--train-subset`` with ``--validation-subset``
  held out, with ``--label-noise`` (training labels only).

  Args:
    cfg: the run's configuration.
    dataset: the full dataset if already loaded (else loaded from ``cfg``).

  Returns:
    The :class:`~zosam_jax.train.Dataset` of the run (the same for every
    ``--seed``: the subset and the noisy labels have their own fixed seeds).

  Raises:
    ConfigError: if ``--train-subset`` exceeds the training set or
      ``--image-size`` does not divide the images.
  """
  ds = dataset if dataset is not None else data_lib.load_dataset(
      cfg.dataset, cfg.data_dir, download=cfg.download, cifar10_test=cfg.cifar10_test)
  try:
    if cfg.image_size is not None:
      ds = data_lib.average_pool(ds, cfg.image_size)
    if cfg.train_subset is not None or cfg.validation_subset is not None:
      ds = data_lib.stratified_subset(ds, cfg.train_subset,
                                      validation=cfg.validation_subset)
    ds = data_lib.noisy_labels(ds, cfg.label_noise)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  return ds


def check_against_data(cfg: config_lib.TrainConfig, num_train: int,
                       num_steps: int) -> None:
  """Flag values that only the data size can show to be impossible."""
  if cfg.batch_size > num_train:
    raise config_lib.ConfigError(
        f"--batch-size {cfg.batch_size} exceeds the {num_train} training examples")
  if cfg.warmup_steps is not None and cfg.warmup_steps >= num_steps:
    raise config_lib.ConfigError(
        f"--warmup-steps {cfg.warmup_steps} must be less than the run's {num_steps} "
        "steps (the learning rate would never decay)")


def total_steps(cfg: config_lib.TrainConfig, num_train_examples: int) -> int:
  """Returns the number of optimizer steps of the run.

  Args:
    cfg: the configuration.
    num_train_examples: size of the training set.

  Returns:
    ``cfg.steps``, or ``ceil(cfg.epochs * steps_per_epoch)`` when the run is
    given in epochs, or :data:`~zosam_jax.train.config.DEFAULT_STEPS` when neither is set.
  """
  if cfg.steps is not None:
    return cfg.steps
  if cfg.epochs is not None:
    return max(1, math.ceil(cfg.epochs * data_lib.steps_per_epoch(
        num_train_examples, cfg.batch_size, cfg.repeat_batches)))
  return config_lib.DEFAULT_STEPS


def member_configs(cfg: config_lib.TrainConfig, workdir: Path
                    ) -> list[tuple[config_lib.TrainConfig, Path]]:
  """``(config, folder)`` of each seed's run: the run itself without
  ``--seeds``, else ``workdir/seed<s>`` with ``--seed s`` for each seed."""
  if not cfg.seeds:
    return [(cfg, workdir)]
  return [(dataclasses.replace(cfg, seed=s, seeds=(), workdir=str(workdir / f"seed{s}")),
           workdir / f"seed{s}") for s in cfg.seeds]


def set_up(cfg: config_lib.TrainConfig, workdir: Path,
            dataset: data_lib.Dataset | None) -> Program:
  """Checks everything, then builds (or restores) the run; process 0 writes
  config.json (and holds the folders' locks)."""
  mesh = distributed.mesh(cfg)  # Checks the devices before any data or file.
  distributed.check_same_config(cfg)
  member_cfgs = member_configs(cfg, workdir)
  for member_cfg, folder in member_cfgs:
    workdir_lib.check_workdir(member_cfg, folder)
  ds = run_dataset(cfg, dataset)
  num_train = ds.x_train.shape[0]
  num_steps = total_steps(cfg, num_train)
  check_against_data(cfg, num_train, num_steps)
  model = models.get_model(cfg.model, ds.num_classes)
  built = [optim.initial_state(c, model, ds, num_steps) for c, _ in member_cfgs]
  folders = [folder for _, folder in member_cfgs]
  # Every check passed: take the folders (one writer each), check them again
  # under the locks, and only then write.
  locks = workdir_lib.Locks(dict.fromkeys([workdir] + folders) if distributed.is_main()
                         else ())
  try:  # Locks taken in _prepare_folders, released on any failure.
    _prepare_folders(member_cfgs, locks)
    ckpts = [checkpoint_lib.Checkpointer(f / "checkpoints") for f in folders]
    start_step, states, train_seconds = checkpoint_lib.resume_point(
        cfg.resume, ckpts, [distributed.place(b[0], mesh) for b in built])
  except BaseException:
    locks.release()
    raise
  keep = start_step if cfg.resume else None
  members = [Member(c, f, ckpt, report.MetricsWriter(f / "metrics.jsonl", keep_until_step=keep,
                                                     to_file=distributed.is_main()),
                    data_lib.BatchOrder(c.seed, num_train, cfg.batch_size, cfg.repeat_batches))
             for (c, f), ckpt in zip(member_cfgs, ckpts)]
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(states[0].params))
  _announce(f"{ds.name}: {ds.note}; {num_train} train / {ds.x_test.shape[0]} test; "
        f"{cfg.model} with {num_params:,} parameters; {cfg.optimizer}, "
        f"{cfg.sparse_method} sparsity {cfg.sparsity}; {num_steps} steps"
        + (f"; seeds {', '.join(map(str, cfg.seeds))} in one program" if cfg.seeds else "")
        + (f", resumed at step {start_step}" if start_step else "")
        + (f"; {jax.process_count()} processes" if jax.process_count() > 1 else ""))
  axes = seeds_lib.state_axes(states) if cfg.seeds else None
  state = states[0] if axes is None else seeds_lib.stack(states, axes)
  x_all, y_all, batch_sharding = distributed.place_data(mesh, ds)
  tx, schedule = built[0][1], built[0][2]  # Any seed's update: the seed is in the state.
  keys = [optim.augment_key(m.cfg) for m in members]
  return Program(cfg, members, axes, ds, num_steps, min(num_steps, cfg.stop_after or num_steps),
              schedule, state, start_step, train_seconds,
              jax.jit(steps_lib.make_train_step(
                  model, tx, optimizer=cfg.optimizer, mean=ds.mean, std=ds.std,
                  augment=ds.augment and cfg.augment,
                  augment_key=keys[0] if axes is None else jnp.stack(keys),
                  crop_pad=steps_lib.scaled_crop_pad(ds.x_train.shape[1], cfg.crop_pad),
                  ascent_fraction=optim.ascent_fraction(cfg),
                  repeat_batches=cfg.repeat_batches, batch_sharding=batch_sharding,
                  state_axes=axes),
                  donate_argnums=() if jax.default_backend() == "cpu" else (0,),
                  static_argnames=("exact", "ascent")),
              model, x_all,
              y_all, num_params, locks, batch_sharding, mesh)


def _prepare_folders(member_cfgs, locks: workdir_lib.Locks) -> None:
  """Under the locks, process 0 checks each folder again and writes its
  config, once every process has checked it (in :func:`set_up`); the others
  wait for that."""
  locks.acquire()
  distributed.barrier("run folders checked")  # By every process, before any write.
  if distributed.is_main():
    for member_cfg, folder in member_cfgs:
      workdir_lib.check_workdir(member_cfg, folder)
      workdir_lib.prepare_workdir(member_cfg, folder)
  distributed.barrier("run folders prepared")


def _announce(line: str) -> None:
  """Prints a line of the run's start (process 0 only)."""
  if distributed.is_main():
    print(line, flush=True)


def for_timing(cfg: config_lib.TrainConfig, workdir: Path,
               dataset: data_lib.Dataset | None = None) -> Program:
  """:func:`set_up` in a scratch ``workdir`` with its checkpointers closed and
  its folders unlocked: a program to time with :func:`step_seconds`, never to save."""
  run = set_up(cfg, workdir, dataset)
  for m in run.members:
    m.ckpt.close()
  run.locks.release()
  return run


def step_seconds(run: Program, steps: int, start: int = 0) -> float:
  """Median wall-clock seconds of the program's step over ``steps`` steps from
  ``start`` (each synchronised; ``run.state`` carried on). Benchmarks and the
  GPU protocol's plan measure with it."""
  times = []
  for s in range(start, start + steps):
    begin = time.perf_counter()
    run.state = run.train_step(run.state, *run.inputs(s), **optim.step_flags(run.cfg, s, run.num_steps))
    jax.block_until_ready(run.state)
    times.append(time.perf_counter() - begin)
  return statistics.median(times)


def run_seconds(run: Program, static: bool = True, steps: range | None = None,
                warm: bool = True) -> float:
  """Wall-clock seconds of steps ``steps`` of the run (default: every step of
  its ascent schedule), dispatched as the loop does, synchronised at the end;
  ``warm``: every step variant compiled and run once first; ``static=False``:
  the schedule's step chosen by ``jax.lax.cond`` instead (benchmarks)."""
  flags = [optim.step_flags(run.cfg, s, run.num_steps, static) for s in range(run.num_steps)]
  if warm:
    for variant in optim.step_variants(run.cfg, run.num_steps, static):  # Compile each.
      run.state = run.train_step(run.state, *run.inputs(0), **variant)
    jax.block_until_ready(run.state)
  begin = time.perf_counter()
  for s in range(run.num_steps) if steps is None else steps:
    run.state = run.train_step(run.state, *run.inputs(s), **flags[s])
  jax.block_until_ready(run.state)
  return time.perf_counter() - begin


def save(run: Program, step: int) -> None:
  """Checkpoints every seed at ``step`` (:func:`checkpoint_lib.save_all`)."""
  checkpoint_lib.save_all(
      [m.ckpt for m in run.members], step,
      [run.member_state(i) for i in range(len(run.members))],
      [{"train_seconds": run.train_seconds, "seed": m.cfg.seed,
        "epoch": m.order.epoch(step), "steps_per_epoch": m.order.steps_per_epoch,
        "data_order": "numpy default_rng([0x5EED, seed, epoch]).permutation"}
       for m in run.members])


def _summary(run: Program, i: int, records, step_time: float, params) -> dict[str, Any]:
  cfg, steps, member = run.cfg, int(run.state.step), run.members[i]
  tests = [r for r in records if r["split"] == "test"]
  vals = [r for r in records if r["split"] == "validation"]
  trains = [r for r in records if r["split"] == "train"]
  summary = {
      "dataset": cfg.dataset, "model": cfg.model, "optimizer": cfg.optimizer,
      "sparse_method": cfg.sparse_method, "sparsity": cfg.sparsity,
      "status": "finished" if steps == run.num_steps else "stopped",
      "steps": steps, "total_steps": run.num_steps,
      "epochs": round(steps / member.order.steps_per_epoch, 3),
      "final_test_accuracy": tests[-1]["accuracy"] if tests else None,
      "best_test_accuracy": max(r["accuracy"] for r in tests) if tests else None,
      "final_test_loss": tests[-1]["loss"] if tests else None,
      "final_validation_accuracy": vals[-1]["accuracy"] if vals else None,
      "best_validation_accuracy": max(r["accuracy"] for r in vals) if vals else None,
      "final_validation_loss": vals[-1]["loss"] if vals else None,
      "final_train_loss": trains[-1]["loss"] if trains else None,
      "final_train_accuracy": trains[-1]["accuracy"] if trains else None,
      "train_seconds": round(run.train_seconds, 3),
      "seconds_per_step": step_time,
      **dict(zip(("backward_passes", "forward_passes"),
                 optim.run_passes(cfg, steps, run.num_steps))),
      "steps_per_second": 1.0 / step_time if step_time else None,
      "num_params": run.num_params,
      "weight_sparsity": report.weight_sparsity(params),
      "workdir": str(member.workdir),
  }
  if run.axes is not None:  # The timings above are the whole program's.
    summary.update(seed=member.cfg.seed, program_seeds=list(cfg.seeds))
  return summary


def finish(run: Program, steady: tuple[float, int]) -> list[dict[str, Any]]:
  """Writes each seed's summary.json, curves.png and, sparse, sparsity.md (the
  per-layer densities of its final weights); returns the summaries."""
  step_time = steady[0] / steady[1] if steady[1] else (
      run.train_seconds / max(int(run.state.step) - run.start_step, 1))
  cfg, summaries = run.cfg, []
  sparse = "dense" if cfg.sparse_method == "dense" else (
      f"{cfg.sparse_method} {cfg.sparsity:.0%} sparse")
  for i, m in enumerate(run.members):
    params = jax.tree.map(distributed.host_value, run.member_state(i).params)
    summaries.append(_summary(run, i, m.writer.records(), step_time, params))
    if not distributed.is_main():
      continue
    if cfg.sparse_method != "dense":
      report.write_sparsity(params, m.workdir / "sparsity.md")
    (m.workdir / "summary.json").write_text(json.dumps(summaries[-1], indent=2))
    report.plot_curves(m.writer.records(), m.workdir / "curves.png",
                       title=f"{cfg.model} on {cfg.dataset}, {cfg.optimizer}, {sparse}"
                       + (f", seed {m.cfg.seed}" if run.axes is not None else ""))
  return summaries


def _saved_run(workdir: Path) -> tuple[config_lib.TrainConfig, data_lib.Dataset, Any]:
  saved = workdir_lib.read_saved(workdir / "config.json")
  if saved is None:
    raise FileNotFoundError(f"{workdir / 'config.json'}: no run there")
  cfg = config_lib.from_dict(saved)
  ds = run_dataset(dataclasses.replace(cfg, download=False))
  return cfg, ds, models.get_model(cfg.model, ds.num_classes)


def restore(workdir: Path, step: int | None):
  """A run restored from its folder: ``(state, meta, cfg, ds, model)`` at the
  checkpoint ``step`` (the newest readable one when ``None``)."""
  cfg, ds, model = _saved_run(workdir)
  template, _, _ = optim.initial_state(
      cfg, model, ds, total_steps(cfg, ds.x_train.shape[0]))
  state, meta = checkpoint_lib.restore_from(workdir, template, step)
  return state, meta, cfg, ds, model


def load_train_state(workdir: str | Path, step: int | None = None
                     ) -> tuple[steps_lib.TrainState, dict[str, Any],
                                config_lib.TrainConfig]:
  """Restores a run's train state from its checkpoint.

  Args:
    workdir: the run's folder (with ``config.json`` and ``checkpoints/``).
    step: the checkpoint; the newest readable one when ``None``.

  Returns:
    ``(state, meta, config)``: the :class:`~zosam_jax.train.steps.TrainState`,
    the checkpoint's metadata and the run's configuration.
  """
  return restore(Path(workdir), step)[:3]
