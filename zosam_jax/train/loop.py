"""The training loop: :func:`train_and_evaluate`.

The loop drives the jitted step from :mod:`zosam_jax.train.steps` with the
minibatch indices of :class:`zosam_jax.train.pipeline.BatchOrder`, and at
fixed step multiples (never at a point that depends on when the run was
started) it logs the training metrics, evaluates, and checkpoints. Because
every one of those points, the data order and all randomness are functions of
the step, a run resumed from its checkpoint reproduces the uninterrupted run
exactly: same parameters, same ``metrics.jsonl`` apart from timings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import zosam_jax
from zosam_jax.train import checkpoint as checkpoint_lib
from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import models
from zosam_jax.train import optim
from zosam_jax.train import pipeline
from zosam_jax.train import report
from zosam_jax.train import steps as steps_lib


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


class ResumeError(ValueError):
  """``--resume`` with flags that differ from the checkpointed run's."""


def _check_resumable(saved: dict[str, Any], cfg: config_lib.TrainConfig) -> None:
  current = cfg.to_dict()
  differ = [k for k, v in saved.items() if k not in config_lib.RESUME_FREE_FIELDS
            and k in current and current[k] != v]
  if differ:
    flags = ", ".join(f"{config_lib.flag(k)} (checkpoint: {saved[k]!r}, now: "
                      f"{current[k]!r})" for k in differ)
    raise ResumeError(f"--resume needs the flags of the interrupted run; differ: "
                      f"{flags}")


def run_dataset(cfg: config_lib.TrainConfig,
                dataset: data_lib.Dataset | None = None) -> data_lib.Dataset:
  """The data a run trains and tests on: ``--dataset``, cut to ``--train-subset``.

  Args:
    cfg: the run's configuration.
    dataset: the full dataset if already loaded (else loaded from ``cfg``).

  Returns:
    The :class:`~zosam_jax.train.data.Dataset` of the run.

  Raises:
    ConfigError: if ``--train-subset`` exceeds the training set.
  """
  ds = dataset if dataset is not None else data_lib.load_dataset(
      cfg.dataset, cfg.data_dir, download=cfg.download)
  if cfg.train_subset is None:
    return ds
  try:
    return data_lib.stratified_subset(ds, cfg.train_subset)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None


def _snip_loss_fn(cfg, model, ds):
  """``params -> loss`` on the run's first minibatch (for ``--sparse-init snip``)."""
  if cfg.sparse_init != "snip":
    return None
  indices = pipeline.BatchOrder(cfg.seed, ds.x_train.shape[0], cfg.batch_size).indices(0)
  images = pipeline.normalize(jnp.asarray(ds.x_train[indices]), ds.mean, ds.std)
  loss_fn = steps_lib.make_loss_fn(model, {}, images, jnp.asarray(ds.y_train[indices]))
  return lambda params: loss_fn(params)[0]


def _prepare_workdir(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  ckpt_dir = workdir / "checkpoints"
  has_old = ckpt_dir.exists() and any(ckpt_dir.iterdir())
  if has_old and not cfg.resume:
    if not cfg.overwrite:
      raise FileExistsError(
          f"{workdir} already holds a run; pass --resume to continue it, "
          "--overwrite to start it again, or another --workdir")
    shutil.rmtree(ckpt_dir)
  if cfg.overwrite:
    for name in ("metrics.jsonl", "summary.json", "curves.png"):
      (workdir / name).unlink(missing_ok=True)


def _eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
  """Pads the test set to whole batches of one shape, with 0/1 weights."""
  n = x.shape[0]
  batch_size = min(batch_size, n)
  num = math.ceil(n / batch_size)
  pad = num * batch_size - n
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  y = np.concatenate([y, np.zeros(pad, y.dtype)])
  shape = (num, batch_size)
  return [jax.device_put(a.reshape(shape + a.shape[1:])) for a in (x, y, weights)]


def _weight_sparsity(params: Any) -> float:
  """Fraction of exact zeros among the weights of rank >= 2 (kernels)."""
  kernels = [np.asarray(p) for p in jax.tree.leaves(params) if np.ndim(p) >= 2]
  total = sum(k.size for k in kernels)
  return float(sum((k == 0).sum() for k in kernels) / total) if total else 0.0


def train_and_evaluate(config: config_lib.TrainConfig,
                       workdir: str | Path | None = None, *,
                       dataset: data_lib.Dataset | None = None) -> dict[str, Any]:
  """Trains and evaluates a model as described by ``config``.

  Writes into ``workdir``: ``config.json``, ``metrics.jsonl`` (one JSON
  record per log line and per evaluation), ``checkpoints/`` (Orbax),
  ``summary.json`` and ``curves.png``.

  Args:
    config: the run's configuration (validated here).
    workdir: output folder; ``config.workdir`` when ``None``.
    dataset: an already loaded dataset (else loaded from ``config``).

  Returns:
    The summary: final and best test accuracy, final losses, steps, timings,
    parameter counts and the measured weight sparsity.

  Raises:
    NonFiniteLossError: when the loss becomes NaN or infinite.
    ResumeError: when ``--resume`` is given with different flags.
    FileExistsError: when ``workdir`` holds a run and neither ``resume`` nor
      ``overwrite`` is set.

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
  cfg = config_lib.validate(config)
  workdir = Path(workdir if workdir is not None else cfg.workdir)
  _prepare_workdir(cfg, workdir)
  ds = run_dataset(cfg, dataset)
  num_train = ds.x_train.shape[0]
  num_steps = config_lib.total_steps(cfg, num_train)
  stop = min(num_steps, cfg.stop_after or num_steps)
  model = models.get_model(cfg.model, ds.num_classes)
  tx, schedule = optim.build_optimizer(cfg, num_steps, _snip_loss_fn(cfg, model, ds))

  root_key = jax.random.key(cfg.seed)
  example = np.zeros((1,) + ds.x_train.shape[1:], np.float32)
  state = steps_lib.init_train_state(model, tx, example, jax.random.fold_in(root_key, 0))
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))

  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  start_step, train_seconds, resumed = 0, 0.0, False
  if cfg.resume and ckpt.latest_step() is not None:
    saved_cfg = json.loads((workdir / "config.json").read_text())
    _check_resumable(saved_cfg, cfg)
    state, meta = ckpt.restore(state)
    start_step, train_seconds, resumed = int(state.step), meta["train_seconds"], True
  (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
  writer = report.MetricsWriter(workdir / "metrics.jsonl",
                                keep_until_step=start_step if resumed else None)
  print(f"{ds.name}: {ds.note}; {num_train} train / {ds.x_test.shape[0]} test; "
        f"{cfg.model} with {num_params:,} parameters; {cfg.optimizer}, "
        f"{cfg.sparse_method} sparsity {cfg.sparsity}; {num_steps} steps"
        + (f", resumed at step {start_step}" if resumed else ""), flush=True)

  num_devices = config_lib.num_devices(cfg, jax.device_count())
  batch_sharding = None
  x_all, y_all = ds.x_train, ds.y_train
  if num_devices > 1:
    # Data parallel: params, optimizer state and the (small) training set are
    # replicated; each step's minibatch is split over the data axis.
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state, x_all, y_all = jax.device_put((state, x_all, y_all), replicated)
    batch_sharding = zosam_jax.data_sharding(mesh)
  x_all, y_all = jax.device_put(x_all), jax.device_put(y_all)
  test_x, test_y, test_w = _eval_batches(ds.x_test, ds.y_test, cfg.eval_batch_size)
  train_step = jax.jit(
      steps_lib.make_train_step(
          model, tx, optimizer=cfg.optimizer, mean=ds.mean, std=ds.std,
          augment=ds.augment, augment_key=jax.random.fold_in(root_key, 1),
          zo_batch_fraction=cfg.zo_batch_fraction,
          batch_sharding=batch_sharding),
      donate_argnums=() if jax.default_backend() == "cpu" else (0,))
  eval_step = jax.jit(steps_lib.make_eval_step(model, ds.mean, ds.std))
  order = pipeline.BatchOrder(cfg.seed, num_train, cfg.batch_size)

  def evaluate(step: int) -> dict[str, Any]:
    loss_sum, correct = 0.0, 0.0
    for i in range(test_x.shape[0]):
      l, c = eval_step(state.params, state.batch_stats, test_x[i], test_y[i], test_w[i])
      loss_sum, correct = loss_sum + l, correct + c
    n = ds.x_test.shape[0]
    return {"step": step, "split": "test", "loss": float(loss_sum) / n,
            "accuracy": float(correct) / n, "train_seconds": round(train_seconds, 4)}

  def check_finite(step: int) -> None:
    bad_step = int(state.metrics.nonfinite_step)
    if bad_step < 0 and not steps_lib.tree_is_finite((state.params, state.batch_stats)):
      bad_step = step
    if bad_step >= 0:
      raise NonFiniteLossError(bad_step, ckpt.latest_step(), ckpt.directory)

  records = report.read_metrics(writer.path)
  last_eval = max((r["step"] for r in records if r["split"] == "test"), default=-1)
  window_start, steady = time.perf_counter(), [0.0, 0]
  first_window = True
  postfix: dict[str, str] = {}
  bar = tqdm(total=num_steps, initial=start_step, disable=not cfg.progress,
             desc=f"{cfg.optimizer}", dynamic_ncols=True, mininterval=0.5)
  try:
    for s in range(start_step, stop):
      state = train_step(state, x_all, y_all, order.indices(s))
      step = s + 1
      do_eval = step % cfg.eval_every == 0 or step == num_steps
      do_ckpt = (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or (
          step in (num_steps, stop))
      do_log = step % cfg.log_every == 0 or do_eval or (
          cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
      if not (do_log or do_ckpt):
        continue
      check_finite(step)  # Also waits for the device: the timing below is real.
      elapsed = time.perf_counter() - window_start
      train_seconds += elapsed
      m = jax.device_get(state.metrics)
      if not first_window:
        steady[0], steady[1] = steady[0] + elapsed, steady[1] + int(m.count)
      if do_log and m.count > 0:
        record = {"step": step, "split": "train",
                  "loss": float(m.loss) / int(m.count),
                  "accuracy": float(m.correct) / int(m.examples),
                  "learning_rate": float(schedule(step - 1)),
                  "steps_per_second": round(int(m.count) / max(elapsed, 1e-9), 3),
                  "train_seconds": round(train_seconds, 4)}
        if cfg.optimizer != "sgd":
          record["sharpness"] = float(m.sharpness) / int(m.count)
        writer.write(record)
        postfix.update(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}",
                       **{"steps/s": f"{record['steps_per_second']:.1f}"})
        state = state._replace(metrics=steps_lib.MetricSums.zeros())
        first_window = False
      if do_eval:
        result = evaluate(step)
        writer.write(result)
        last_eval = step
        postfix["test_acc"] = f"{result['accuracy']:.3f}"
      if do_ckpt:
        ckpt.save(step, state, {
            "train_seconds": train_seconds, "seed": cfg.seed,
            "epoch": order.epoch(step), "steps_per_epoch": order.steps_per_epoch,
            "data_order": "numpy default_rng([0x5EED, seed, epoch]).permutation"})
      bar.set_postfix(postfix, refresh=False)
      bar.update(step - bar.n)
      window_start = time.perf_counter()
    if int(state.step) == num_steps and last_eval != num_steps:
      writer.write(evaluate(num_steps))  # Resuming a run that had finished.
  finally:
    bar.close()
    ckpt.close()

  records = report.read_metrics(writer.path)
  tests = [r for r in records if r["split"] == "test"]
  trains = [r for r in records if r["split"] == "train"]
  step_time = steady[0] / steady[1] if steady[1] else (
      train_seconds / max(int(state.step) - start_step, 1))
  summary = {
      "dataset": cfg.dataset, "model": cfg.model, "optimizer": cfg.optimizer,
      "sparse_method": cfg.sparse_method, "sparsity": cfg.sparsity,
      "status": "finished" if int(state.step) == num_steps else "stopped",
      "steps": int(state.step), "total_steps": num_steps,
      "epochs": round(int(state.step) / order.steps_per_epoch, 3),
      "final_test_accuracy": tests[-1]["accuracy"] if tests else None,
      "best_test_accuracy": max(r["accuracy"] for r in tests) if tests else None,
      "final_test_loss": tests[-1]["loss"] if tests else None,
      "final_train_loss": trains[-1]["loss"] if trains else None,
      "final_train_accuracy": trains[-1]["accuracy"] if trains else None,
      "train_seconds": round(train_seconds, 3),
      "seconds_per_step": step_time,
      "steps_per_second": 1.0 / step_time if step_time else None,
      "num_params": num_params,
      "weight_sparsity": _weight_sparsity(state.params),
      "workdir": str(workdir),
  }
  (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  report.plot_curves(records, workdir / "curves.png",
                     title=f"{cfg.model} on {cfg.dataset}, {cfg.optimizer}")
  return summary


def load_train_state(workdir: str | Path, step: int | None = None
                     ) -> tuple[steps_lib.TrainState, dict[str, Any],
                                config_lib.TrainConfig]:
  """Restores a run's train state from its checkpoint.

  Args:
    workdir: the run's folder (with ``config.json`` and ``checkpoints/``).
    step: the checkpoint; the latest when ``None``.

  Returns:
    ``(state, meta, config)``: the :class:`~zosam_jax.train.steps.TrainState`,
    the checkpoint's metadata and the run's configuration.
  """
  workdir = Path(workdir)
  saved = json.loads((workdir / "config.json").read_text())
  cfg = config_lib.TrainConfig(**dict(saved, compare=tuple(saved["compare"])))
  ds = run_dataset(dataclasses.replace(cfg, download=False))
  model = models.get_model(cfg.model, ds.num_classes)
  tx, _ = optim.build_optimizer(cfg, config_lib.total_steps(cfg, ds.x_train.shape[0]),
                                _snip_loss_fn(cfg, model, ds))
  template = steps_lib.init_train_state(
      model, tx, np.zeros((1,) + ds.x_train.shape[1:], np.float32), jax.random.key(0))
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  try:
    state, meta = ckpt.restore(template, step)
  finally:
    ckpt.close()
  return state, meta, cfg


def evaluate_checkpoint(workdir: str | Path, step: int | None = None) -> dict[str, Any]:
  """Restores a run's checkpoint and evaluates it on the test set.

  Args:
    workdir: the run's folder (with ``config.json`` and ``checkpoints/``).
    step: the checkpoint; the latest when ``None``.

  Returns:
    ``{"step", "loss", "accuracy", "params_finite"}``.
  """
  state, meta, cfg = load_train_state(workdir, step)
  ds = run_dataset(dataclasses.replace(cfg, download=False))
  model = models.get_model(cfg.model, ds.num_classes)
  eval_step = jax.jit(steps_lib.make_eval_step(model, ds.mean, ds.std))
  x, y, w = _eval_batches(ds.x_test, ds.y_test, cfg.eval_batch_size)
  sums = [eval_step(state.params, state.batch_stats, x[i], y[i], w[i])
          for i in range(x.shape[0])]
  n = ds.x_test.shape[0]
  return {"step": meta["step"],
          "loss": float(jnp.sum(jnp.stack([s[0] for s in sums]))) / n,
          "accuracy": float(jnp.sum(jnp.stack([s[1] for s in sums]))) / n,
          "params_finite": steps_lib.tree_is_finite(state.params)}
