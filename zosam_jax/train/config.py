"""The training configuration: one frozen dataclass, one field per CLI flag.

Every field of :class:`TrainConfig` is a command-line flag of ``zosam-train``
with the underscores written as dashes (``num_dirs`` is ``--num-dirs``), so a
validation error can always name the flag the user typed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from zosam_jax.train import files
from zosam_jax.train.choices import OPTIMIZERS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import SAM_LIKE  # noqa: F401  (the config's API)
from zosam_jax.train.choices import ESTIMATORS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import ZO_DISTRIBUTIONS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import SPARSE_METHODS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import SPARSE_DISTRIBUTIONS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import SPARSE_INITS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import ZO_PRIORS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import SCHEDULES  # noqa: F401  (the config's API)
from zosam_jax.train.choices import CIFAR10_TEST_SETS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import DATASETS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import MODELS  # noqa: F401  (the config's API)
from zosam_jax.train.choices import ConfigError  # noqa: F401  (the config's API)
from zosam_jax.train.choices import flag  # noqa: F401  (the config's API)
from zosam_jax.train.validation import APPLIES_TO  # noqa: F401  (the config's API)
from zosam_jax.train.validation import validate

#: LookSAM's period without ``--refresh-every`` (the authors' k).
LOOKSAM_EVERY = 5


def exact_period(cfg: "TrainConfig") -> int | None:
  """The period of the run's exact steps (ZO-SAM's refresh, LookSAM), or None."""
  if cfg.optimizer == "looksam":
    return cfg.refresh_every or LOOKSAM_EVERY
  return cfg.refresh_every if cfg.optimizer == "zosam" else None


def ascent_fraction(cfg: "TrainConfig") -> float:
  """The fraction of the minibatch (its first examples) the ascent sees:
  ``--zo-batch-fraction`` for ZO-SAM's forward passes, ``--ascent-batch-fraction``
  for SAM's first gradient, the whole minibatch otherwise."""
  return {"zosam": cfg.zo_batch_fraction, "sam": cfg.ascent_batch_fraction}.get(
      cfg.optimizer, 1.0)


def evaluates_loss_at_theta(cfg: "TrainConfig") -> bool:
  """Whether a step evaluates the loss at θ besides θ+ε (so its sharpness
  L(θ+ε) − L(θ) is known): not SGD, MSAM, or ZO-SAM's unprobed prior (unless
  its output layer takes the current gradient, whose forward pass gives it)."""
  if cfg.optimizer == "zosam":
    return cfg.zo_probe or cfg.zo_exact_head
  return cfg.optimizer not in ("sgd", "msam")


def ascent_schedule(cfg: "TrainConfig", num_steps: int) -> dict[str, int | None]:
  """The run's ascent schedule as the transformations take it:
  ``{"ascent_start": step or None, "ascent_every": k or None}``.
  ``--ascent-start`` below 1 is a fraction of the run's steps (rounded to a
  step), from 1 on a step."""
  start = cfg.ascent_start
  if start is not None and start < 1:
    start = round(start * num_steps)
  return {"ascent_start": None if start is None else int(start),
          "ascent_every": cfg.ascent_every}


#: Number of steps when neither ``--steps`` nor ``--epochs`` is given.
DEFAULT_STEPS = 400


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run.

  Fields map one to one onto the flags of ``zosam-train`` (see
  :func:`zosam_jax.train.cli.build_parser` for the help text of each).
  """

  # Data and model.
  dataset: str = "digits"
  train_subset: int | None = None
  validation_subset: int | None = None
  label_noise: float = 0.0
  image_size: int | None = None
  crop_pad: int | None = None
  augment: bool = True
  cifar10_test: str = "lossless_1k"
  data_dir: str | None = None
  download: bool = True
  model: str = "cnn"
  # Optimizer: SGD / SAM / ZO-SAM on top of SGD with momentum.
  optimizer: str = "zosam"
  rho: float = 0.05
  num_dirs: int = 1
  estimator: str = "central"
  zo_distribution: str = "gaussian"
  smoothing: float = 1e-3
  zo_prior: str = "none"
  radius_cap: float | None = None
  refresh_every: int | None = None
  zo_probe: bool = True
  zo_exact_head: bool = False
  looksam_alpha: float = 0.7
  adaptive: bool = False
  zo_batch_fraction: float = 1.0
  ascent_batch_fraction: float = 1.0
  ascent_start: float | None = None
  ascent_every: int | None = None
  chunk_size: int | None = None
  lr: float = 0.1
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "cosine"
  warmup_steps: int | None = None
  batch_size: int = 128
  repeat_batches: int = 1
  steps: int | None = None
  epochs: float | None = None
  # Sparse training.
  sparsity: float = 0.0
  sparse_method: str = "dense"
  sparse_distribution: str = "erk"
  sparse_init: str = "random"
  sparse_update_every: int = 100
  drop_fraction: float = 0.3
  dense_first_last: bool = False
  # Bookkeeping.
  seed: int = 0
  seeds: tuple[int, ...] = ()
  devices: str = "1"
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  distributed_timeout: int = 300
  heartbeat_timeout: int = 100
  eval_every: int = 100
  log_every: int = 10
  eval_batch_size: int = 1000
  checkpoint_every: int = 200
  workdir: str = "runs/default"
  resume: bool = False
  overwrite: bool = False
  stop_after: int | None = None
  progress: bool = True
  compare: tuple[str, ...] = ()

  def replace(self, **changes: Any) -> TrainConfig:
    """Returns a copy with ``changes`` applied (and validated)."""
    return validate(dataclasses.replace(self, **changes))

  def to_dict(self) -> dict[str, Any]:
    """Returns the config as a JSON-serialisable dict."""
    d = dataclasses.asdict(self)
    d["compare"], d["seeds"] = list(self.compare), list(self.seeds)
    return d


def from_dict(saved: dict[str, Any]) -> TrainConfig:
  """The :class:`TrainConfig` of a saved ``config.json`` (lists back to tuples)."""
  return TrainConfig(**dict(saved, compare=tuple(saved.get("compare", ())),
                            seeds=tuple(saved.get("seeds", ()))))


def read_saved(path: Path) -> dict[str, Any] | None:
  """A run's saved ``config.json`` (or a comparison's ``compare.json``); None
  when absent (:class:`~zosam_jax.train.files.DamagedFileError` when it
  cannot be parsed). Fields added since it was written get the values its run used:
  before ``--crop-pad``, CIFAR's crop padding was 4 pixels at every
  ``--image-size``."""
  saved = files.read_json(path)
  if saved is None:
    return None
  if "crop_pad" not in saved and str(saved.get("dataset", "")).startswith("cifar"):
    saved["crop_pad"] = 4
  return saved


#: Fields that may differ between a run and its ``--resume`` continuation.
RESUME_FREE_FIELDS: frozenset[str] = frozenset(
    {"resume", "overwrite", "stop_after", "progress", "workdir", "data_dir",
     "download", "eval_batch_size", "compare", "devices", "coordinator",
     "num_processes", "process_id", "distributed_timeout", "heartbeat_timeout"})


#: Fields never written into a command line (bookkeeping of one invocation).
_NOT_IN_COMMAND = frozenset({"resume", "overwrite", "progress", "stop_after"})


def command_line(cfg: TrainConfig | dict[str, Any], *, resume: bool = False,
                 always: tuple[str, ...] = ()) -> str:
  """The ``zosam-train`` command that runs ``cfg``: every non-default flag.

  Args:
    cfg: a configuration, or a dict of some of its fields (in flag order).
    resume: append ``--resume`` (the command that continues the run).
    always: fields written even at their default value (for readers).

  Returns:
    e.g. ``zosam-train --steps 6000 --workdir runs/int --resume``.

  Examples:
    >>> command_line(TrainConfig(steps=6000, compare=("sgd", "zosam"),
    ...                          workdir="runs/c"), resume=True)
    'zosam-train --steps 6000 --compare sgd,zosam --workdir runs/c --resume'
  """
  fields = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
  default = TrainConfig().to_dict()
  parts = ["zosam-train"]
  for name, value in fields.items():
    if name in _NOT_IN_COMMAND or name == "workdir" or (
        value == default.get(name) and name not in always):
      continue
    if isinstance(value, bool):
      parts.append(flag(name) if value else "--no-" + flag(name)[2:])
    elif isinstance(value, (list, tuple)):
      parts.append(f"{flag(name)} {','.join(map(str, value))}")
    else:
      parts.append(f"{flag(name)} {value}")
  parts.append(f"--workdir {fields.get('workdir', default['workdir'])}")
  return " ".join(parts + (["--resume"] if resume else []))


def total_steps(cfg: TrainConfig, num_train_examples: int) -> int:
  """Returns the number of optimizer steps of the run.

  Args:
    cfg: the configuration.
    num_train_examples: size of the training set.

  Returns:
    ``cfg.steps``, or ``ceil(cfg.epochs * steps_per_epoch)`` when the run is
    given in epochs, or :data:`DEFAULT_STEPS` when neither is set.
  """
  if cfg.steps is not None:
    return cfg.steps
  if cfg.epochs is not None:
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(
        num_train_examples, cfg.batch_size, cfg.repeat_batches)))
  return DEFAULT_STEPS


def steps_per_epoch(num_examples: int, batch_size: int, repeat: int = 1) -> int:
  """Steps per epoch: ``num_examples // batch_size`` full minibatches (at least
  one; the last partial batch is dropped), each used for ``repeat`` steps (the
  rule of ``--epochs`` and of :class:`zosam_jax.train.pipeline.BatchOrder`)."""
  return max(1, num_examples // batch_size) * repeat


def num_devices(cfg: TrainConfig, available: int) -> int:
  """The number of devices a run uses, checked against what is available.

  Args:
    cfg: the configuration.
    available: ``jax.device_count()``.

  Returns:
    The device count of this process (all of them for ``--devices all``);
    with ``--num-processes`` every process uses as many.

  Raises:
    ConfigError: if more devices are asked for than exist, or the batch size
      does not split evenly over them.
  """
  n = available if cfg.devices == "all" else int(cfg.devices)
  if n > available:
    raise ConfigError(f"--devices {cfg.devices} asks for {n} devices, but"
                      f" only {available} are available")
  processes = cfg.num_processes or 1
  if cfg.batch_size % (n * processes):
    raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the"
                      f" number of devices ({n * processes}, from --devices {cfg.devices}"
                      + (f" in each of --num-processes {processes}" if processes > 1 else "")
                      + ")")
  return n
