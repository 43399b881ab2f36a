"""The ZO-SAM training program: a Flax/Optax trainer for sparse ZO-SAM.

Run it as ``zosam-train`` or ``python -m zosam_jax.train`` (see ``--help``),
or from Python::

  from zosam_jax.train import TrainConfig, train_and_evaluate
  summary = train_and_evaluate(TrainConfig(optimizer="zosam"), "runs/digits")
  # Seeds 0-5 as one jax.vmap-ed program, one folder per seed:
  summaries = train_seeds(TrainConfig(optimizer="zosam", seeds=(0, 1, 2, 3, 4, 5)),
                          "runs/digits-seeds")

The pieces are usable on their own by benchmarks and experiments:
:func:`get_model`, :func:`load_dataset`, :func:`build_optimizer`,
:func:`make_train_step`.
"""

from zosam_jax.train.checkpoint import checkpoint_steps
from zosam_jax.train.config import ConfigError
from zosam_jax.train.config import TrainConfig
from zosam_jax.train.data import Dataset
from zosam_jax.train.data import DataNotFoundError
from zosam_jax.train.data import load_dataset
from zosam_jax.train.files import ResumeError
from zosam_jax.train.models import get_model
from zosam_jax.train.optim import build_optimizer
from zosam_jax.train.program import load_train_state
from zosam_jax.train.program import run_dataset
from zosam_jax.train.seeds import parse_seeds
from zosam_jax.train.steps import TrainState
from zosam_jax.train.steps import make_eval_step
from zosam_jax.train.steps import make_train_step
from zosam_jax.train.steps import normalize
from zosam_jax.train.steps import random_crop_flip
from zosam_jax.train.train import Interrupted
from zosam_jax.train.train import NonFiniteLossError
from zosam_jax.train.train import evaluate_checkpoint
from zosam_jax.train.train import run_comparison
from zosam_jax.train.train import train_and_evaluate
from zosam_jax.train.train import train_seeds
from zosam_jax.train.validation import validate

__all__ = (
    "ConfigError",
    "DataNotFoundError",
    "Dataset",
    "Interrupted",
    "NonFiniteLossError",
    "ResumeError",
    "TrainConfig",
    "TrainState",
    "build_optimizer",
    "checkpoint_steps",
    "evaluate_checkpoint",
    "get_model",
    "load_dataset",
    "load_train_state",
    "make_eval_step",
    "make_train_step",
    "normalize",
    "parse_seeds",
    "random_crop_flip",
    "run_comparison",
    "run_dataset",
    "train_and_evaluate",
    "train_seeds",
    "validate",
)
