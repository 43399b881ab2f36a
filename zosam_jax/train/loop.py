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
  """``--resume`` that cannot continue: no run there, or different flags."""


class Interrupted(KeyboardInterrupt):
  """Training was interrupted; a checkpoint of the last step was written.

  Attributes:
    step: the step of that checkpoint.
    command: the command line that continues the run.
  """

  def __init__(self, step: int, command: str):
    super().__init__(step, command)
    self.step, self.command = step, command


def _check_resumable(saved: dict[str, Any], cfg: config_lib.TrainConfig) -> None:
  current = cfg.to_dict()
  differ = [k for k, v in saved.items() if k not in config_lib.RESUME_FREE_FIELDS
            and k in current and current[k] != v]
  if differ:
    flags = ", ".join(f"{config_lib.flag(k)} (checkpoint: {saved[k]!r}, now: "
                      f"{current[k]!r})" for k in differ)
    raise ResumeError(f"--resume needs the flags of the interrupted run; differ: "
                      f"{flags}. It continues with: "
                      f"{config_lib.command_line(dict(saved, workdir=cfg.workdir), resume=True)}")


def _read_json(path: Path) -> dict[str, Any] | None:
  return json.loads(path.read_text()) if path.is_file() else None


def _check_workdir(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  """Refuses to overwrite a run by accident, or to resume a run that is not there."""
  saved = config_lib.read_saved(workdir / "config.json")
  compare = config_lib.read_saved(workdir / "compare.json")
  if cfg.resume and saved is None:
    if compare is not None:
      raise ResumeError(
          f"{workdir} holds a --compare run; continue it with: "
          f"{config_lib.command_line(dict(compare, workdir=cfg.workdir), resume=True)}")
    raise ResumeError(f"no run to resume in {workdir} (no config.json there); check "
                      "--workdir, or drop --resume to start a new run")
  if cfg.resume:
    _check_resumable(saved, cfg)
  elif saved is not None and not cfg.overwrite:
    raise FileExistsError(
        f"{workdir} already holds a run; pass --resume to continue it, "
        "--overwrite to start it again, or another --workdir")


def _prepare_workdir(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  if cfg.overwrite:
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    for name in ("metrics.jsonl", "summary.json", "curves.png", "config.json"):
      (workdir / name).unlink(missing_ok=True)
  (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))


def run_dataset(cfg: config_lib.TrainConfig,
                dataset: data_lib.Dataset | None = None) -> data_lib.Dataset:
  """The data a run trains and tests on: ``--dataset`` at ``--image-size``, cut
  to ``--train-subset``, with ``--label-noise``.

  Args:
    cfg: the run's configuration.
    dataset: the full dataset if already loaded (else loaded from ``cfg``).

  Returns:
    The :class:`~zosam_jax.train.data.Dataset` of the run.

  Raises:
    ConfigError: if ``--train-subset`` exceeds the training set or
      ``--image-size`` does not divide the images.
  """
  ds = dataset if dataset is not None else data_lib.load_dataset(
      cfg.dataset, cfg.data_dir, download=cfg.download, cifar10_test=cfg.cifar10_test)
  try:
    if cfg.image_size is not None:
      ds = data_lib.average_pool(ds, cfg.image_size)
    if cfg.train_subset is not None:
      ds = data_lib.stratified_subset(ds, cfg.train_subset)
    ds = data_lib.noisy_labels(ds, cfg.label_noise)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  return ds


def _snip_loss_fn(cfg, model, ds):
  """``params -> loss`` on the run's first minibatch (for ``--sparse-init snip``)."""
  if cfg.sparse_init != "snip":
    return None
  indices = pipeline.BatchOrder(cfg.seed, ds.x_train.shape[0], cfg.batch_size).indices(0)
  images = pipeline.normalize(jnp.asarray(ds.x_train[indices]), ds.mean, ds.std)
  loss_fn = steps_lib.make_loss_fn(model, {}, images, jnp.asarray(ds.y_train[indices]))
  return lambda params: loss_fn(params)[0]


def _check_against_data(cfg: config_lib.TrainConfig, num_train: int,
                        num_steps: int) -> None:
  """Flag values that only the data size can show to be impossible."""
  if cfg.batch_size > num_train:
    raise config_lib.ConfigError(
        f"--batch-size {cfg.batch_size} exceeds the {num_train} training examples")
  if cfg.warmup_steps is not None and cfg.warmup_steps >= num_steps:
    raise config_lib.ConfigError(
        f"--warmup-steps {cfg.warmup_steps} must be less than the run's {num_steps} "
        "steps (the learning rate would never decay)")


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


@dataclasses.dataclass
class _Run:
  """Everything one training run carries between its set-up, loop and report."""

  cfg: config_lib.TrainConfig
  workdir: Path
  ds: data_lib.Dataset
  num_steps: int
  stop: int
  schedule: Any
  state: steps_lib.TrainState
  start_step: int
  train_seconds: float
  ckpt: checkpoint_lib.Checkpointer
  writer: report.MetricsWriter
  order: pipeline.BatchOrder
  train_step: Any
  evaluate: Any
  x_all: Any
  y_all: Any
  num_params: int


def _place_data(cfg, state, ds):
  """Puts the state and the training set on the devices; the batch sharding."""
  num_devices = config_lib.num_devices(cfg, jax.device_count())
  if num_devices == 1:
    return state, jax.device_put(ds.x_train), jax.device_put(ds.y_train), None
  # Data parallel: params, optimizer state and the (small) training set are
  # replicated; each step's minibatch is split over the data axis.
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state, x_all, y_all = jax.device_put((state, ds.x_train, ds.y_train), replicated)
  return state, x_all, y_all, zosam_jax.data_sharding(mesh)


def _evaluator(model, ds, eval_batch_size):
  """``evaluate(params, batch_stats) -> (loss, accuracy)`` on the test set."""
  eval_step = jax.jit(steps_lib.make_eval_step(model, ds.mean, ds.std))
  test_x, test_y, test_w = _eval_batches(ds.x_test, ds.y_test, eval_batch_size)

  def evaluate(params, batch_stats):
    loss_sum, correct = 0.0, 0.0
    for i in range(test_x.shape[0]):
      l, c = eval_step(params, batch_stats, test_x[i], test_y[i], test_w[i])
      loss_sum, correct = loss_sum + l, correct + c
    n = ds.x_test.shape[0]
    return float(loss_sum) / n, float(correct) / n

  return evaluate


def _set_up(cfg: config_lib.TrainConfig, workdir: Path,
            dataset: data_lib.Dataset | None) -> _Run:
  """Checks everything, then builds (or restores) the run; writes config.json."""
  config_lib.num_devices(cfg, jax.device_count())  # Before any data or file.
  _check_workdir(cfg, workdir)
  ds = run_dataset(cfg, dataset)
  num_train = ds.x_train.shape[0]
  num_steps = config_lib.total_steps(cfg, num_train)
  _check_against_data(cfg, num_train, num_steps)
  model = models.get_model(cfg.model, ds.num_classes)
  tx, schedule = optim.build_optimizer(cfg, num_steps, _snip_loss_fn(cfg, model, ds))
  root_key = jax.random.key(cfg.seed)
  example = np.zeros((1,) + ds.x_train.shape[1:], np.float32)
  state = steps_lib.init_train_state(model, tx, example, jax.random.fold_in(root_key, 0))
  _prepare_workdir(cfg, workdir)
  ckpt = checkpoint_lib.Checkpointer(workdir / "checkpoints")
  start_step, train_seconds = 0, 0.0
  if cfg.resume and ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    start_step, train_seconds = int(state.step), meta["train_seconds"]
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
  print(f"{ds.name}: {ds.note}; {num_train} train / {ds.x_test.shape[0]} test; "
        f"{cfg.model} with {num_params:,} parameters; {cfg.optimizer}, "
        f"{cfg.sparse_method} sparsity {cfg.sparsity}; {num_steps} steps"
        + (f", resumed at step {start_step}" if start_step else ""), flush=True)
  state, x_all, y_all, batch_sharding = _place_data(cfg, state, ds)
  train_step = jax.jit(
      steps_lib.make_train_step(
          model, tx, optimizer=cfg.optimizer, mean=ds.mean, std=ds.std,
          augment=ds.augment, augment_key=jax.random.fold_in(root_key, 1),
          crop_pad=pipeline.scaled_crop_pad(ds.x_train.shape[1], cfg.crop_pad),
          zo_batch_fraction=cfg.zo_batch_fraction, batch_sharding=batch_sharding),
      donate_argnums=() if jax.default_backend() == "cpu" else (0,),
      static_argnames="exact")
  return _Run(cfg, workdir, ds, num_steps, min(num_steps, cfg.stop_after or num_steps),
              schedule, state, start_step, train_seconds, ckpt,
              report.MetricsWriter(workdir / "metrics.jsonl",
                                   keep_until_step=start_step if cfg.resume else None),
              pipeline.BatchOrder(cfg.seed, num_train, cfg.batch_size), train_step,
              _evaluator(model, ds, cfg.eval_batch_size), x_all, y_all, num_params)


def _save(run: _Run, step: int) -> None:
  run.ckpt.save(step, run.state, {
      "train_seconds": run.train_seconds, "seed": run.cfg.seed,
      "epoch": run.order.epoch(step), "steps_per_epoch": run.order.steps_per_epoch,
      "data_order": "numpy default_rng([0x5EED, seed, epoch]).permutation"})


def _test_record(run: _Run, step: int) -> dict[str, Any]:
  loss, accuracy = run.evaluate(run.state.params, run.state.batch_stats)
  return {"step": step, "split": "test", "loss": loss, "accuracy": accuracy,
          "train_seconds": round(run.train_seconds, 4)}


def _check_finite(run: _Run, step: int) -> None:
  bad_step = int(run.state.metrics.nonfinite_step)
  if bad_step < 0 and not steps_lib.tree_is_finite(
      (run.state.params, run.state.batch_stats)):
    bad_step = step
  if bad_step >= 0:
    raise NonFiniteLossError(bad_step, run.ckpt.latest_step(), run.ckpt.directory)


def _train_record(run: _Run, step: int, elapsed: float) -> dict[str, Any] | None:
  """The train-metrics record of the window ending at ``step`` (then reset)."""
  m = jax.device_get(run.state.metrics)
  if m.count == 0:
    return None
  record = {"step": step, "split": "train", "loss": float(m.loss) / int(m.count),
            "accuracy": float(m.correct) / int(m.examples),
            "learning_rate": float(run.schedule(step - 1)),
            "steps_per_second": round(int(m.count) / max(elapsed, 1e-9), 3),
            "train_seconds": round(run.train_seconds, 4)}
  if run.cfg.optimizer not in ("sgd", "msam"):  # MSAM evaluates no loss at θ.
    record["sharpness"] = float(m.sharpness) / int(m.count)
  run.state = run.state._replace(metrics=steps_lib.MetricSums.zeros())
  return record


def _exact_step(cfg: config_lib.TrainConfig, step: int) -> dict[str, bool]:
  """``{"exact": ...}`` for an optimizer with a periodic exact step (chosen here,
  one compiled step per branch: XLA:CPU runs convolutions' gradients inside
  ``jax.lax.cond`` several times slower), else nothing."""
  every = config_lib.exact_period(cfg)
  return {} if every is None else {"exact": step % every == 0}


def _train(run: _Run) -> tuple[float, int]:
  """Runs steps ``start_step..stop`` with logging, evaluation and checkpoints.

  Returns:
    The steady-state seconds and steps (the first window, with compilation,
    left out). On an interrupt, checkpoints the last finished step first.
  """
  cfg, steady, steps_done = run.cfg, [0.0, 0], run.start_step
  window_start, first_window, postfix = time.perf_counter(), True, {}
  bar = tqdm(total=run.num_steps, initial=run.start_step, disable=not cfg.progress,
             desc=cfg.optimizer, dynamic_ncols=True, mininterval=0.5)
  try:
    for s in range(run.start_step, run.stop):
      run.state = run.train_step(run.state, run.x_all, run.y_all, run.order.indices(s),
                                 **_exact_step(run.cfg, s))
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
      elapsed = time.perf_counter() - window_start
      run.train_seconds += elapsed
      if not first_window:
        steady[0] += elapsed
        steady[1] += int(run.state.metrics.count)
      record = _train_record(run, step, elapsed) if do_log else None
      if record is not None:
        run.writer.write(record)
        postfix.update(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
        first_window = False
      if do_eval:
        result = _test_record(run, step)
        run.writer.write(result)
        postfix["test_acc"] = f"{result['accuracy']:.3f}"
      if do_ckpt:
        _save(run, step)
      bar.set_postfix(postfix, refresh=False)
      bar.update(step - bar.n)
      window_start = time.perf_counter()
  except KeyboardInterrupt:
    if steps_done > (run.ckpt.latest_step() or 0):
      _save(run, steps_done)
    raise Interrupted(steps_done, config_lib.command_line(cfg, resume=True)) from None
  finally:
    bar.close()
  return tuple(steady)


def _summary(run: _Run, records, step_time: float) -> dict[str, Any]:
  cfg, steps = run.cfg, int(run.state.step)
  tests = [r for r in records if r["split"] == "test"]
  trains = [r for r in records if r["split"] == "train"]
  return {
      "dataset": cfg.dataset, "model": cfg.model, "optimizer": cfg.optimizer,
      "sparse_method": cfg.sparse_method, "sparsity": cfg.sparsity,
      "status": "finished" if steps == run.num_steps else "stopped",
      "steps": steps, "total_steps": run.num_steps,
      "epochs": round(steps / run.order.steps_per_epoch, 3),
      "final_test_accuracy": tests[-1]["accuracy"] if tests else None,
      "best_test_accuracy": max(r["accuracy"] for r in tests) if tests else None,
      "final_test_loss": tests[-1]["loss"] if tests else None,
      "final_train_loss": trains[-1]["loss"] if trains else None,
      "final_train_accuracy": trains[-1]["accuracy"] if trains else None,
      "train_seconds": round(run.train_seconds, 3),
      "seconds_per_step": step_time,
      "steps_per_second": 1.0 / step_time if step_time else None,
      "num_params": run.num_params,
      "weight_sparsity": _weight_sparsity(run.state.params),
      "workdir": str(run.workdir),
  }


def _finish(run: _Run, steady: tuple[float, int]) -> dict[str, Any]:
  """Writes summary.json and curves.png; returns the summary."""
  step_time = steady[0] / steady[1] if steady[1] else (
      run.train_seconds / max(int(run.state.step) - run.start_step, 1))
  summary = _summary(run, report.read_metrics(run.writer.path), step_time)
  (run.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  cfg = run.cfg
  sparse = "dense" if cfg.sparse_method == "dense" else (
      f"{cfg.sparse_method} {cfg.sparsity:.0%} sparse")
  report.plot_curves(report.read_metrics(run.writer.path), run.workdir / "curves.png",
                     title=f"{cfg.model} on {cfg.dataset}, {cfg.optimizer}, {sparse}")
  return summary


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
    config: the run's configuration (validated here).
    workdir: output folder; ``config.workdir`` when ``None``.
    dataset: an already loaded dataset (else loaded from ``config``).

  Returns:
    The summary: final and best test accuracy, final losses, steps, timings,
    parameter counts and the measured weight sparsity.

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
  cfg = config_lib.validate(config)
  workdir = Path(workdir if workdir is not None else cfg.workdir)
  finished = _read_json(workdir / "summary.json")
  if cfg.resume and finished and finished.get("status") == "finished":
    _check_workdir(cfg, workdir)
    print(f"{workdir}: the run has already finished ({finished['steps']} steps); "
          "nothing to do", flush=True)
    return finished
  run = _set_up(cfg, workdir, dataset)
  try:
    steady = _train(run)
    if int(run.state.step) == run.num_steps and not any(
        r["split"] == "test" and r["step"] == run.num_steps
        for r in report.read_metrics(run.writer.path)):
      run.writer.write(_test_record(run, run.num_steps))
  finally:
    run.ckpt.close()
  return _finish(run, steady)


def checkpoint_steps(workdir: str | Path) -> list[int]:
  """The steps of the checkpoints kept in a run's folder, oldest first.

  Args:
    workdir: the run's folder (with ``checkpoints/``).

  Returns:
    The steps, e.g. ``[200, 400]``; ``[]`` without checkpoints.
  """
  ckpt = checkpoint_lib.Checkpointer(Path(workdir) / "checkpoints")
  try:
    return sorted(ckpt.all_steps())
  finally:
    ckpt.close()


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
  saved = config_lib.read_saved(workdir / "config.json")
  if saved is None:
    raise FileNotFoundError(f"{workdir / 'config.json'}: no run there")
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
