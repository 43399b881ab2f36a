"""The training configuration: one frozen dataclass, one field per CLI flag.

Every field of :class:`TrainConfig` is a command-line flag of ``zosam-train``
with the underscores written as dashes (``num_dirs`` is ``--num-dirs``), so a
validation error can always name the flag the user typed. A leaf: it imports
nothing of the trainer; the rules of a config are
:mod:`zosam_jax.train.validation`'s, the behaviour it selects its users'.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

#: Each choice flag's values.
OPTIMIZERS: tuple[str, ...] = ("sgd", "sam", "zosam", "msam", "looksam")
#: The optimizers that take ``--rho`` (all but SGD).
SAM_LIKE: tuple[str, ...] = OPTIMIZERS[1:]
ESTIMATORS: tuple[str, ...] = ("central", "forward", "jvp", "random")
ZO_DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "rademacher", "sphere")
SPARSE_METHODS: tuple[str, ...] = ("dense", "static", "set", "rigl", "gmp")
SPARSE_DISTRIBUTIONS: tuple[str, ...] = ("erk", "uniform")
SPARSE_INITS: tuple[str, ...] = ("random", "snip", "magnitude")
ZO_PRIORS: tuple[str, ...] = ("none", "gradient", "momentum")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")
CIFAR10_TEST_SETS: tuple[str, ...] = ("lossless_1k", "jpeg_10k")
DATASETS: tuple[str, ...] = ("digits", "mnist1d", "fashion_mnist", "cifar10",
                             "cifar100")
MODELS: tuple[str, ...] = (
    "mlp", "cnn", "resnet20", "resnet32", "resnet56",
    "vgg11", "vgg16", "vgg19", "vit",
)


class ConfigError(ValueError):
  """An invalid flag value or an impossible combination of flags."""


def flag(name: str) -> str:
  """Returns the command-line spelling of a config field, e.g. ``--num-dirs``."""
  return "--" + name.replace("_", "-")


#: Members of ``--compare`` besides the optimizers: an optimizer with some of
#: its flags set. ``zosam-prior-head`` is the one-backward option the study's
#: "what to use" names at about SGD's step time (issue 34: the unprobed prior
#: along the last gradient, the output layer along the current one).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "zosam-prior-head": ("zosam", {"zo_prior": "gradient", "num_dirs": 0,
                                   "zo_probe": False, "zo_exact_head": True}),
}


#: LookSAM's period without ``--refresh-every`` (the authors' k).
LOOKSAM_EVERY = 5


#: Number of steps when neither ``--steps`` nor ``--epochs`` is given.
DEFAULT_STEPS = 400


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run.

  Fields map one to one onto the flags of ``zosam-train`` (see
  ``zosam-train --help`` for the help text of each).
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
  estimator: Literal["central", "forward", "jvp", "random"] = "central"
  zo_distribution: Literal["gaussian", "rademacher", "sphere"] = "gaussian"
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
  sparse_distribution: Literal["erk", "uniform"] = "erk"
  sparse_init: Literal["random", "snip", "magnitude"] = "random"
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
    """Returns a copy with ``changes`` applied (not validated: the programs
    validate at entry, :func:`zosam_jax.train.validation.validate`)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    """Returns the config as a JSON-serialisable dict."""
    d = dataclasses.asdict(self)
    d["compare"], d["seeds"] = list(self.compare), list(self.seeds)
    return d


def from_dict(saved: dict[str, Any]) -> TrainConfig:
  """The :class:`TrainConfig` of a saved ``config.json`` (lists back to tuples)."""
  return TrainConfig(**dict(saved, compare=tuple(saved.get("compare", ())),
                            seeds=tuple(saved.get("seeds", ()))))


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
