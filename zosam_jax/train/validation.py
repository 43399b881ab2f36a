"""Every rule of a :class:`~zosam_jax.train.config.TrainConfig`: each field and
each combination of fields, every error naming the flag the user typed; and
the config of one optimizer of a comparison."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from zosam_jax.train.config import CIFAR10_TEST_SETS
from zosam_jax.train.config import DATASETS
from zosam_jax.train.config import ConfigError
from zosam_jax.train.config import ESTIMATORS
from zosam_jax.train.config import MODELS
from zosam_jax.train.config import OPTIMIZERS
from zosam_jax.train.config import PRESETS
from zosam_jax.train.config import SAM_LIKE
from zosam_jax.train.config import SCHEDULES
from zosam_jax.train.config import SPARSE_DISTRIBUTIONS
from zosam_jax.train.config import SPARSE_INITS
from zosam_jax.train.config import SPARSE_METHODS
from zosam_jax.train.config import ZO_DISTRIBUTIONS
from zosam_jax.train.config import ZO_PRIORS
from zosam_jax.train.config import TrainConfig
from zosam_jax.train.config import flag



def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
  value = getattr(cfg, name)
  if value not in choices:
    raise ConfigError(
        f"{flag(name)} must be one of {', '.join(choices)}, got {value!r}")


def _positive(cfg: TrainConfig, name: str, *, allow_none: bool = False,
              allow_zero: bool = False) -> None:
  value = getattr(cfg, name)
  if value is None and allow_none:
    return
  bound = "a non-negative" if allow_zero else "a positive"
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
    raise ConfigError(f"{flag(name)} must be {bound} number, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
  """Checks every field and the combinations of fields.

  Args:
    cfg: the configuration to check.

  Returns:
    ``cfg`` itself, so that ``validate(TrainConfig(...))`` can be chained.

  Raises:
    ConfigError: naming the offending flag, e.g.
      ``--sparsity must be in [0, 1), got 1.2``.
  """
  _check_choices(cfg)
  _check_ranges(cfg)
  _check_combinations(cfg)
  _check_seeds(cfg)
  _check_processes(cfg)
  return cfg


def _check_processes(cfg: TrainConfig) -> None:
  """``--coordinator`` with ``--num-processes`` and ``--process-id`` (or ``auto``)."""
  for name in ("distributed_timeout", "heartbeat_timeout"):
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{flag(name)} must be a positive number of seconds, got {value!r}")
  given = [n for n in ("num_processes", "process_id") if getattr(cfg, n) is not None]
  if cfg.coordinator is None:
    if given:
      raise ConfigError(f"{flag(given[0])} needs --coordinator HOST:PORT (process 0's "
                        "address), or --coordinator auto on a TPU pod or SLURM cluster")
    return
  if cfg.coordinator != "auto":
    host, _, port = cfg.coordinator.rpartition(":")
    if not host or not port.isdigit():
      raise ConfigError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234) or auto, "
                        f"got {cfg.coordinator!r}")
    if len(given) < 2:
      raise ConfigError("--coordinator HOST:PORT needs --num-processes N and --process-id I "
                        "(0 <= I < N) in every process")
  n, i = cfg.num_processes, cfg.process_id
  if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
    raise ConfigError(f"--num-processes must be a positive integer, got {n!r}")
  if i is not None and (isinstance(i, bool) or not isinstance(i, int)
                        or not 0 <= i < (n or i + 1)):
    raise ConfigError(f"--process-id must be in [0, --num-processes) = [0, {n}), got {i!r}")
  if cfg.compare:
    raise ConfigError("--compare with several processes is not supported yet: run one "
                      "multi-process run per optimizer")


def _check_seeds(cfg: TrainConfig) -> None:
  """``--seeds``: distinct non-negative integers, one program on one device."""
  if not cfg.seeds:
    return
  bad = [s for s in cfg.seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
  if bad:
    raise ConfigError(f"--seeds must be non-negative integers, got {bad[0]!r}")
  repeated = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
  if repeated:
    raise ConfigError(f"--seeds lists seed {repeated[0]} more than once; each seed is "
                      "one run (one folder), give it once")
  if cfg.compare:
    raise ConfigError("--seeds and --compare cannot be combined: --seeds trains one "
                      "optimizer; run one --seeds program per optimizer")
  if cfg.seed != 0:
    raise ConfigError(f"--seed {cfg.seed} and --seeds are exclusive: --seeds gives "
                      "every seed of the program")
  if cfg.devices != "1":
    raise ConfigError(f"--seeds runs its seeds as one program on one device; drop "
                      f"--devices {cfg.devices}")


def _check_choices(cfg: TrainConfig) -> None:
  """Every choice flag is one of its choices, and what a choice needs is there."""
  _choice(cfg, "dataset", DATASETS)
  _choice(cfg, "model", MODELS)
  _choice(cfg, "optimizer", OPTIMIZERS)
  _choice(cfg, "estimator", ESTIMATORS)
  _choice(cfg, "zo_distribution", ZO_DISTRIBUTIONS)
  _choice(cfg, "schedule", SCHEDULES)
  _choice(cfg, "sparse_method", SPARSE_METHODS)
  _choice(cfg, "sparse_distribution", SPARSE_DISTRIBUTIONS)
  _choice(cfg, "sparse_init", SPARSE_INITS)
  _choice(cfg, "zo_prior", ZO_PRIORS)
  _choice(cfg, "cifar10_test", CIFAR10_TEST_SETS)
  if cfg.cifar10_test != "lossless_1k" and cfg.dataset != "cifar10":
    raise ConfigError(f"--cifar10-test {cfg.cifar10_test} only applies to "
                      "--dataset cifar10")
  if cfg.crop_pad is not None and not cfg.dataset.startswith("cifar"):
    raise ConfigError(f"--crop-pad only applies to the CIFAR datasets (the ones with "
                      f"crop-and-flip augmentation), not --dataset {cfg.dataset}")
  if not cfg.augment and not cfg.dataset.startswith("cifar"):
    raise ConfigError(f"--no-augment only applies to the CIFAR datasets (the ones with "
                      f"crop-and-flip augmentation); --dataset {cfg.dataset} has none")
  if not cfg.augment and cfg.crop_pad is not None:
    raise ConfigError("--crop-pad sets the augmentation's padding: drop it with "
                      "--no-augment")
  if cfg.zo_prior == "momentum" and cfg.momentum == 0:
    raise ConfigError("--zo-prior momentum reads SGD's momentum buffer; it needs "
                      "--momentum > 0")
  if cfg.optimizer == "msam" and cfg.momentum == 0:
    raise ConfigError("--optimizer msam perturbs along SGD's momentum buffer; it needs "
                      "--momentum > 0")
  if cfg.sparse_init != "random" and cfg.sparse_method != "static":
    raise ConfigError(
        f"--sparse-init {cfg.sparse_init} needs --sparse-method static (SET, RigL "
        "and GMP start from random or dense masks)")


def _check_ranges(cfg: TrainConfig) -> None:
  """Every number has its type and lies in its range."""
  if cfg.image_size is not None and (
      isinstance(cfg.image_size, bool) or not isinstance(cfg.image_size, int)
      or cfg.image_size < 1):
    raise ConfigError(f"--image-size must be a positive integer, got {cfg.image_size!r}")
  if cfg.crop_pad is not None and (
      isinstance(cfg.crop_pad, bool) or not isinstance(cfg.crop_pad, int)
      or cfg.crop_pad < 0):
    raise ConfigError(f"--crop-pad must be a non-negative integer (pixels), got "
                      f"{cfg.crop_pad!r}")
  for name in ("train_subset", "validation_subset"):
    value = getattr(cfg, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 10):
      raise ConfigError(f"{flag(name)} must be an integer of at least 10 (one example "
                        f"per class), got {value!r}")
  if (isinstance(cfg.label_noise, bool) or not isinstance(cfg.label_noise, (int, float))
      or not 0 <= cfg.label_noise < 1):
    raise ConfigError(f"--label-noise must be a fraction in [0, 1), got {cfg.label_noise!r}")
  for name in ("num_dirs", "batch_size", "eval_every", "log_every",
               "eval_batch_size", "sparse_update_every"):
    value = getattr(cfg, name)
    if name == "num_dirs" and cfg.zo_prior != "none" and value == 0:
      continue  # With a prior, m = 0 random directions is allowed.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{flag(name)} must be a positive integer, got {value!r}")
  for name in ("rho", "lr", "smoothing"):
    _positive(cfg, name)
  _positive(cfg, "looksam_alpha", allow_zero=True)
  if cfg.radius_cap is not None and (isinstance(cfg.radius_cap, bool) or not isinstance(
      cfg.radius_cap, (int, float)) or not 1 <= cfg.radius_cap < math.inf):
    raise ConfigError(f"--radius-cap must be a number >= 1 (a multiple of --rho), got "
                      f"{cfg.radius_cap!r}")
  for name in ("momentum", "weight_decay"):
    _positive(cfg, name, allow_zero=True)
  if cfg.momentum >= 1:
    raise ConfigError(f"--momentum must be in [0, 1), got {cfg.momentum!r}")
  for name in ("steps", "warmup_steps", "checkpoint_every", "stop_after",
               "chunk_size", "seed", "refresh_every", "repeat_batches", "ascent_every"):
    value = getattr(cfg, name)
    allow_zero = name in ("warmup_steps", "checkpoint_every", "seed")
    if value is None and name not in ("checkpoint_every", "seed"):
      continue
    if (isinstance(value, bool) or not isinstance(value, int)
        or value < (0 if allow_zero else 1)):
      kind = "a non-negative" if allow_zero else "a positive"
      raise ConfigError(f"{flag(name)} must be {kind} integer, got {value!r}")
  if cfg.devices != "all" and not (cfg.devices.isdigit() and int(cfg.devices) >= 1):
    raise ConfigError(
        f"--devices must be 'all' or a positive integer, got {cfg.devices!r}")
  _positive(cfg, "epochs", allow_none=True)
  if cfg.steps is not None and cfg.epochs is not None:
    raise ConfigError("--steps and --epochs are mutually exclusive; give one")
  start = cfg.ascent_start
  if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float))
                            or not (0 < start < 1 or (start >= 1 and start == int(start)))):
    raise ConfigError("--ascent-start must be a fraction of the run in (0, 1) (0.75: the "
                      f"last quarter) or a step >= 1 (an integer), got {start!r}")
  for name in ("zo_batch_fraction", "ascent_batch_fraction"):
    if not 0.0 < getattr(cfg, name) <= 1.0:
      raise ConfigError(f"{flag(name)} must be in (0, 1], got {getattr(cfg, name)!r}")
  if not 0.0 <= cfg.sparsity < 1.0:
    raise ConfigError(f"--sparsity must be in [0, 1), got {cfg.sparsity!r}")
  if not 0.0 < cfg.drop_fraction < 1.0:
    raise ConfigError(
        f"--drop-fraction must be in (0, 1), got {cfg.drop_fraction!r}")


#: The optimizers each optimizer-specific flag applies to.
APPLIES_TO: dict[str, tuple[str, ...]] = {
    **{name: ("zosam",) for name in ("num_dirs", "estimator", "zo_distribution",
                                     "smoothing", "zo_prior", "zo_batch_fraction",
                                     "chunk_size", "radius_cap", "zo_probe",
                                     "zo_exact_head")},
    "refresh_every": ("zosam", "looksam"), "looksam_alpha": ("looksam",),
    "ascent_batch_fraction": ("sam",),
    **{name: ("sam", "zosam", "msam") for name in ("ascent_start", "ascent_every")},
    "rho": SAM_LIKE, "adaptive": ("sam", "zosam"),
}


def _check_applies(cfg: TrainConfig) -> None:
  """A flag given to an optimizer it does not apply to is most likely a typo'd
  ``--optimizer`` (``--compare`` runs reset them per optimizer instead)."""
  defaults = TrainConfig()
  for name, optimizers in APPLIES_TO.items():
    if cfg.optimizer not in optimizers and getattr(cfg, name) != getattr(defaults, name):
      raise ConfigError(f"{flag(name)} only applies to --optimizer "
                        f"{' or '.join(optimizers)}, got --optimizer {cfg.optimizer}")


def _check_combinations(cfg: TrainConfig) -> None:
  """Flags that only make sense together, or never together."""
  if cfg.sparse_method == "dense" and cfg.sparsity > 0:
    raise ConfigError(
        f"--sparsity {cfg.sparsity} needs a --sparse-method other than dense "
        f"(one of {', '.join(SPARSE_METHODS[1:])})")
  if cfg.sparse_method != "dense" and cfg.sparsity == 0:
    raise ConfigError(
        f"--sparse-method {cfg.sparse_method} needs --sparsity > 0")
  if cfg.dense_first_last and cfg.sparse_method == "dense":
    raise ConfigError("--dense-first-last needs a --sparse-method other than "
                      "dense")
  # A ZO-only flag given to another optimizer is most likely a typo'd
  # --optimizer; --compare runs reset these per optimizer instead.
  if not cfg.compare:
    _check_applies(cfg)
  if cfg.optimizer == "zosam" and cfg.zo_prior != "gradient":
    for name in ("radius_cap", "refresh_every"):
      if getattr(cfg, name) is not None:
        raise ConfigError(f"{flag(name)} is an option of --zo-prior gradient, got "
                          f"--zo-prior {cfg.zo_prior}")
  if cfg.optimizer == "zosam" and not cfg.zo_probe and (
      cfg.zo_prior != "gradient" or cfg.num_dirs != 0 or cfg.radius_cap is not None
      or (cfg.zo_batch_fraction != 1.0 and not cfg.zo_exact_head)):
    raise ConfigError("--no-zo-probe perturbs along the last gradient without forward "
                      "passes: it needs --zo-prior gradient --num-dirs 0, and no "
                      "--radius-cap or --zo-batch-fraction (they act on the probe; "
                      "--zo-batch-fraction may size --zo-exact-head's forward pass)")
  if cfg.optimizer == "zosam" and cfg.zo_exact_head and cfg.zo_probe:
    raise ConfigError("--zo-exact-head replaces the last gradient by the current one on "
                      "the output layer of the unprobed prior: add --zo-prior gradient "
                      "--num-dirs 0 --no-zo-probe")
  for name in cfg.compare:
    if name not in OPTIMIZERS and name not in PRESETS:
      raise ConfigError(
          f"--compare takes a comma-separated list of {', '.join(OPTIMIZERS + tuple(PRESETS))}, "
          f"got {name!r}")
  if cfg.resume and cfg.overwrite:
    raise ConfigError("--resume and --overwrite are mutually exclusive")
  if cfg.warmup_steps is not None and cfg.steps is not None and (
      cfg.warmup_steps >= cfg.steps):
    raise ConfigError(f"--warmup-steps {cfg.warmup_steps} must be less than --steps "
                      f"{cfg.steps} (the learning rate would never decay)")
  if cfg.stop_after is not None and cfg.steps is not None and (
      cfg.stop_after > cfg.steps):
    raise ConfigError(
        f"--stop-after must be at most --steps ({cfg.steps}), got {cfg.stop_after}")


def config_for(cfg: TrainConfig, member: str) -> TrainConfig:
  """``cfg`` for one member of a ``--compare`` comparison, an optimizer or a
  preset (:data:`~zosam_jax.train.config.PRESETS`): the flags that do not apply
  to its optimizer (:data:`APPLIES_TO`) reset to their defaults, then the
  preset's flags set; validated."""
  defaults = TrainConfig()
  optimizer, preset = PRESETS.get(member, (member, {}))
  changes: dict[str, Any] = {"optimizer": optimizer, "compare": ()}
  changes.update({k: getattr(defaults, k) for k, applies in APPLIES_TO.items()
                  if optimizer not in applies})
  changes.update(preset)
  return validate(dataclasses.replace(cfg, **changes))
