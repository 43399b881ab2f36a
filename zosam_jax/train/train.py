"""Training: :func:`train_and_evaluate`, :func:`train_seeds` for K seeds of one
configuration in one program, :func:`run_comparison` for several optimizers,
:func:`evaluate_checkpoint`; the loop they share.

Each reads top to bottom: set up or restore the program
(:func:`zosam_jax.train.program.set_up`, which jits the step of
:mod:`zosam_jax.train.steps`), the loop that logs, evaluates and checkpoints,
then the summaries.

The loop drives the jitted step from :mod:`zosam_jax.train.steps` with the
minibatch indices of :class:`zosam_jax.train.data.BatchOrder`, and at
fixed step multiples (never at a point that depends on when the run was
started) it logs the training metrics, evaluates, and checkpoints. Because
every one of those points, the data order and all randomness are functions of
the step, a run resumed from its checkpoint reproduces the uninterrupted run
exactly: same parameters, same ``metrics.jsonl`` apart from timings.

A K-seed program (``--seeds``) is K such runs, one folder each
(``workdir/seed<s>/``, the usual files), stepped together by one
``jax.vmap``-ed step (:mod:`zosam_jax.train.seeds`); the timings written are
the program's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import distributed
from zosam_jax.train import evaluation
from zosam_jax.train import optim
from zosam_jax.train import program as program_lib
from zosam_jax.train import report
from zosam_jax.train import seeds as seeds_lib
from zosam_jax.train import steps as steps_lib
from zosam_jax.train import supervise
from zosam_jax.train import validation
from zosam_jax.train import workdir as workdir_lib


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite.

  Attributes:
    step: the first step with a non-finite loss.
    checkpoint_step: the step of the last good checkpoint, or ``None``.
    checkpoint_dir: where the checkpoints are.
  """

  def __init__(self, step: int, checkpoint_step: int | None, checkpoint_dir: str):
    self.step, self.checkpoint_step = step, checkpoint_step
    self.checkpoint_dir = checkpoint_dir
    kept = ("no checkpoint was written before it" if checkpoint_step is None else
            f"the last good checkpoint is step {checkpoint_step} in {checkpoint_dir}")
    super().__init__(
        f"the training loss became NaN or infinite at step {step}; stopped, and "
        f"{kept}. Try a lower --lr or --rho.")


class Interrupted(KeyboardInterrupt):
  """Training was interrupted; a checkpoint of the last step was written.

  Attributes:
    step: the step of that checkpoint.
    command: the command line that continues the run.
    signal_name: ``"SIGINT"`` (Ctrl-C) or ``"SIGTERM"`` (e.g. a preemption notice).
  """

  def __init__(self, step: int, command: str, signal_name: str = "SIGINT"):
    super().__init__(step, command)
    self.step, self.command, self.signal_name = step, command, signal_name


class _Stop(Exception):
  """Every process agreed to stop after this step (:class:`distributed.StopRequest`)."""




def _test_records(run: program_lib.Program, evaluators: dict[str, Any], step: int
                  ) -> list[list[dict[str, Any]]]:
  """Each seed's evaluation records at ``step``: the test set, then the
  validation split where the run holds one out."""
  records: list[list[dict[str, Any]]] = []
  for i in range(len(run.members)):
    state = run.member_state(i)
    records.append([])
    for split, evaluate in evaluators.items():
      loss, accuracy = evaluate(state.params, state.batch_stats)
      records[-1].append({"step": step, "split": split, "loss": loss,
                          "accuracy": accuracy,
                          "train_seconds": round(run.train_seconds, 4)})
  return records


def _check_finite(run: program_lib.Program, step: int) -> None:
  metrics = run.host_metrics()
  if all(m.nonfinite_step < 0 for m in metrics) and tree_is_finite(
      (run.state.params, run.state.batch_stats)):  # One pass over every seed.
    return
  for i, (m, member) in enumerate(zip(metrics, run.members)):
    state, bad_step = run.member_state(i), int(m.nonfinite_step)
    if bad_step < 0 and not tree_is_finite((state.params, state.batch_stats)):
      bad_step = step
    if bad_step >= 0:
      raise NonFiniteLossError(bad_step, member.ckpt.latest_step(), member.ckpt.directory)


def _train_records(run: program_lib.Program, step: int, elapsed: float) -> list[dict[str, Any]]:
  """Each seed's train-metrics record of the window ending at ``step`` (the
  sums then reset); ``[]`` for an empty window."""
  records = []
  for m in run.host_metrics():
    if m.count == 0:
      return []
    record = {"step": step, "split": "train", "loss": float(m.loss) / int(m.count),
              "accuracy": float(m.correct) / int(m.examples),
              "learning_rate": float(run.schedule(step - 1)),
              "steps_per_second": round(int(m.count) / max(elapsed, 1e-9), 3),
              "train_seconds": round(run.train_seconds, 4)}
    if optim.evaluates_loss_at_theta(run.cfg):
      record["sharpness"] = float(m.sharpness) / int(m.count)
    records.append(record)
  zeros = [steps_lib.MetricSums.zeros() for _ in run.members]
  run.state = run.state._replace(metrics=distributed.place(
      zeros[0] if run.axes is None else seeds_lib.stack(zeros, run.axes.metrics), run.mesh))
  return records


def _write(run: program_lib.Program, records: list[Any]) -> None:
  """Writes each seed's record (or list of records) to its metrics file."""
  for m, record in zip(run.members, records):
    for r in record if isinstance(record, list) else [record]:
      m.writer.write(r)


def _train(run: program_lib.Program, evaluators: dict[str, Any]) -> tuple[float, int]:
  """Runs steps ``start_step..stop`` with logging, evaluation and checkpoints.

  Returns:
    The steady-state seconds and steps (the first window, with compilation,
    left out). On an interrupt, checkpoints the last finished step first.
  """
  cfg, steady, steps_done = run.cfg, [0.0, 0], run.start_step
  window_start, first_window = time.perf_counter(), True
  postfix: dict[str, str] = {}
  compiled = set()  # The step variants run so far (a window compiling one is not steady).
  bar = tqdm(total=run.num_steps, initial=run.start_step, desc=cfg.optimizer,
             disable=not (cfg.progress and distributed.is_main()), dynamic_ncols=True,
             mininterval=0.5)
  with distributed.StopRequest(distributed.is_distributed(cfg)) as stop:
    try:
      for s in range(run.start_step, run.stop):
        # Step s is done with its records and checkpoint (a stop before them
        # would lose a log point's record); the same step in every process.
        if s > run.start_step and stop.requested(s):
          raise _Stop
        flags = optim.step_flags(run.cfg, s, run.num_steps)
        if tuple(flags.items()) not in compiled:
          compiled.add(tuple(flags.items()))
          first_window = True
        run.state = run.train_step(run.state, *run.inputs(s), **flags)
        steps_done = step = s + 1
        do_eval = step % cfg.eval_every == 0 or step == run.num_steps
        periodic = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0
        do_ckpt = periodic or step in (run.num_steps, run.stop)
        # Log points are fixed multiples (never where a run happened to stop), so
        # a resumed run writes the records of the uninterrupted one.
        do_log = step % cfg.log_every == 0 or do_eval or periodic
        if not (do_log or do_ckpt):
          continue
        _check_finite(run, step)  # Also waits for the device: the timing is real.
        supervise.report_step(step)
        elapsed = time.perf_counter() - window_start
        run.train_seconds += elapsed
        if not first_window:
          steady[0] += elapsed
          steady[1] += int(np.max(distributed.host_value(run.state.metrics.count)))
        records = _train_records(run, step, elapsed) if do_log else []
        if records:
          _write(run, records)
          postfix.update(loss=f"{records[0]['loss']:.3f}", acc=f"{records[0]['accuracy']:.3f}")
          first_window = False
        if do_eval:
          results = _test_records(run, evaluators, step)
          _write(run, results)
          postfix["test_acc"] = f"{results[0][0]['accuracy']:.3f}"
        if do_ckpt:
          program_lib.save(run, step)
        bar.set_postfix(postfix, refresh=False)
        bar.update(step - bar.n)
        window_start = time.perf_counter()
    except (KeyboardInterrupt, _Stop):
      if steps_done > (run.members[0].ckpt.latest_step() or 0):
        program_lib.save(run, steps_done)
      raise Interrupted(steps_done, config_lib.command_line(cfg, resume=True),
                        stop.signal_name or "SIGINT") from None
    finally:
      bar.close()
  return float(steady[0]), int(steady[1])


def _run_program(cfg: config_lib.TrainConfig, workdir: Path,
                 dataset: data_lib.Dataset | None) -> list[dict[str, Any]]:
  """Set up (or restore), train, finish; one summary per seed. The folders'
  locks are held from set-up to the end (:mod:`zosam_jax.train.workdir`)."""
  folders = [folder for _, folder in program_lib.member_configs(cfg, workdir)]
  if distributed.is_main():  # Process 0 holds the folders of a multi-process run.
    workdir_lib.refuse_if_held([workdir] + folders)
  summaries = [workdir_lib.finished_summary(f / "summary.json") for f in folders]
  finished = [s for s in summaries if s and s.get("status") == "finished"]
  if cfg.resume and len(finished) == len(summaries):
    for member_cfg, folder in program_lib.member_configs(cfg, workdir):
      workdir_lib.check_workdir(member_cfg, folder)
    print(f"{workdir}: the run has already finished ({finished[0]['steps']} steps); "
          "nothing to do", flush=True)
    return finished
  run = program_lib.set_up(cfg, workdir, dataset)
  try:
    evaluators = evaluation.split_evaluators(run.model, run.ds, cfg.eval_batch_size, run.mesh)
    steady = _train(run, evaluators)
    if int(run.state.step) == run.num_steps and not any(
        r["split"] == "test" and r["step"] == run.num_steps
        for r in run.members[0].writer.records()):
      _write(run, _test_records(run, evaluators, run.num_steps))
    return program_lib.finish(run, steady)
  finally:
    for m in run.members:
      m.ckpt.close()
    run.locks.release()


def train_and_evaluate(config: config_lib.TrainConfig,
                       workdir: str | Path | None = None, *,
                       dataset: data_lib.Dataset | None = None) -> dict[str, Any]:
  """Trains and evaluates a model as described by ``config``.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl`` (one JSON
  record per log line and per evaluation), ``checkpoints/`` (Orbax),
  ``summary.json`` and ``curves.png``. Three steps: set up (or restore), train
  with periodic evaluation and checkpoints, finish and report. Resuming a run
  that has finished changes nothing and returns its summary.

  Args:
    config: the run's configuration (validated here; without ``seeds``, see
      :func:`train_seeds`).
    workdir: output folder; ``config.workdir`` when ``None``.
    dataset: an already loaded dataset (else loaded from ``config``).

  Returns:
    The summary, a dict of the final and best test accuracy, final losses,
    steps, timings, parameter counts and the measured weight sparsity.

  Raises:
    NonFiniteLossError: when the loss becomes NaN or infinite.
    ResumeError: when ``--resume`` finds no run or different flags.
    FileExistsError: when ``workdir`` holds a run and neither ``resume`` nor
      ``overwrite`` is set.
    ConfigError: for flags the machine or the data rule out.
    Interrupted: on Ctrl-C, after checkpointing the last step.

  Examples:
    >>> import tempfile
    >>> from zosam_jax.train import TrainConfig, train_and_evaluate
    >>> cfg = TrainConfig(optimizer="sgd", steps=10, eval_every=10, progress=False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...   summary = train_and_evaluate(cfg, d)  # doctest: +ELLIPSIS
    digits: ...
    >>> summary["steps"]
    10
  """
  cfg = validation.validate(config)
  if cfg.seeds:
    raise config_lib.ConfigError("--seeds trains several runs: call train_seeds(config) "
                                 "(one summary per seed), or drop seeds")
  return _run_program(cfg, Path(workdir if workdir is not None else cfg.workdir),
                      dataset)[0]


def train_seeds(config: config_lib.TrainConfig, workdir: str | Path | None = None, *,
                dataset: data_lib.Dataset | None = None) -> list[dict[str, Any]]:
  """Trains the seeds ``config.seeds`` of one configuration as one program.

  Each seed's run is the single-seed run ``config.replace(seed=s)`` (same
  initial weights, masks, data order, augmentation and ZO-SAM directions; equal
  to float tolerance, as the K steps are computed as one batched step) and has
  its own folder ``workdir/seed<s>/`` with the files of
  :func:`train_and_evaluate`. Timings are the program's (all K seeds).

  Args:
    config: the configuration, with ``seeds`` (e.g. ``(0, 1, 2)``).
    workdir: the parent of the seeds' folders; ``config.workdir`` when ``None``.
    dataset: an already loaded dataset (else loaded from ``config``).

  Returns:
    One summary per seed, in the order of ``config.seeds``.

  Raises:
    The errors of :func:`train_and_evaluate`; a non-finite loss in any seed
    stops the program (every seed keeps its last checkpoint).
  """
  cfg = validation.validate(config)
  if not cfg.seeds:
    raise config_lib.ConfigError("train_seeds needs config.seeds (e.g. --seeds 0-2)")
  return _run_program(cfg, Path(workdir if workdir is not None else cfg.workdir),
                      dataset)


def run_comparison(cfg: config_lib.TrainConfig, workdir: str | Path | None = None
                   ) -> dict[str, Any]:
  """Trains ``cfg`` once per optimizer in ``cfg.compare`` and compares them.

  Args:
    cfg: the configuration; ``cfg.compare`` lists the optimizers.
    workdir: output folder (``cfg.workdir`` when ``None``).

  Returns:
    A dict with ``"rows"`` (one summary row per optimizer), ``"table"`` (their
    markdown table) and ``"summaries"`` (each optimizer's summary by name).
  """
  cfg = validation.validate(cfg)
  workdir = Path(workdir if workdir is not None else cfg.workdir)
  workdir_lib.refuse_if_held([workdir])
  workdir_lib.check_compare_folder(cfg, workdir)
  dataset = data_lib.load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download,
                                  cifar10_test=cfg.cifar10_test)
  with workdir_lib.RunLock(workdir):  # One writer; checked again under the lock.
    workdir_lib.check_compare_folder(cfg, workdir)
    return _compare(cfg, workdir, dataset)


def _compare(cfg: config_lib.TrainConfig, workdir: Path, dataset: data_lib.Dataset
             ) -> dict[str, Any]:
  """Trains each optimizer of the comparison in turn; writes the table."""
  (workdir / "compare.json").write_text(json.dumps(cfg.to_dict(), indent=2))
  summaries: dict[str, dict[str, Any]] = {}
  runs: dict[str, Sequence[dict[str, Any]]] = {}
  for name in cfg.compare:
    run_dir = workdir / name
    member = validation.config_for(cfg, name)
    if cfg.resume and not (run_dir / "config.json").exists():
      member = dataclasses.replace(member, resume=False)  # Not started yet.
    try:
      summaries[name] = train_and_evaluate(member, run_dir, dataset=dataset)
    except Interrupted as e:  # Continue the comparison, not one member.
      raise Interrupted(e.step, config_lib.command_line(cfg, resume=True)) from None
    runs[name] = report.read_metrics(run_dir / "metrics.jsonl")
  result = report.write_comparison(summaries, runs, workdir)
  return dict(result, summaries=summaries)


def evaluate_checkpoint(workdir: str | Path, step: int | None = None) -> dict[str, Any]:
  """Restores a run's checkpoint and evaluates it on the test set.

  Args:
    workdir: the run's folder (with ``config.json`` and ``checkpoints/``).
    step: the checkpoint; the newest readable one when ``None``.

  Returns:
    ``{"step", "loss", "accuracy", "params_finite"}``.
  """
  state, meta, cfg, ds, model = program_lib.restore(Path(workdir), step)
  loss, accuracy = evaluation.evaluator(model, ds, cfg.eval_batch_size)(state.params,
                                                              state.batch_stats)
  return {"step": meta["step"], "loss": loss, "accuracy": accuracy,
          "params_finite": tree_is_finite(state.params)}


def tree_is_finite(tree: Any) -> bool:
  """Whether every floating-point leaf of ``tree`` is finite (on the host)."""
  return all(bool(np.isfinite(distributed.host_value(x).astype(np.float32)).all())
             for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact))
