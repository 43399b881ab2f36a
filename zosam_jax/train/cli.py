"""``zosam-train``: the command line of the training program.

Every flag is a field of :class:`~zosam_jax.train.config.TrainConfig`;
``main`` parses, validates (errors name the flag and exit with status 2),
trains and prints the summary table.

Exit status: 0 success, 1 missing data or an unusable work directory (in
use by another process, a damaged file), 2 invalid flags, 3 the loss became
NaN or infinite, 4 the work directory could not be written or read (disk
full, read-only, vanished, permission denied), 130 interrupted (Ctrl-C), 143
stopped by SIGTERM (a preemption notice; checkpointed like Ctrl-C). Errors are one
message, never a traceback; ``ZOSAM_DEBUG=1`` re-raises them instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
import sys
from pathlib import Path
from typing import Any

import jax
from collections.abc import Sequence

from zosam_jax.train import checkpoint as checkpoint_lib
from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import distributed
from zosam_jax.train import files
from zosam_jax.train import report
from zosam_jax.train import seeds as seeds_lib
from zosam_jax.train import supervise
from zosam_jax.train import train as train_lib
from zosam_jax.train import validation
from zosam_jax.train import workdir as workdir_lib

_HELP = {
    "dataset": "digits (sklearn, offline), mnist1d (generated offline), "
               "fashion_mnist (idx files), cifar10, cifar100",
    "cifar10_test": "CIFAR-10 from the shared .npz parts: test on the lossless first "
                    "1000 official test images or on all 10000 decoded from JPEG",
    "image_size": "average-pool the images to N x N (N must divide the stored "
                  "size, e.g. 16 for CIFAR's 32)",
    "crop_pad": "CIFAR augmentation: pad by N pixels before the random crop "
                "(default: 4 at 32x32, scaled with --image-size, e.g. 2 at 16x16)",
    "augment": "CIFAR: crop-and-flip augmentation of the training images "
               "(--no-augment: train on the stored images as they are)",
    "train_subset": "train on a stratified subset of N training examples (the "
                    "same N examples for every seed and optimizer)",
    "validation_subset": "hold out N other training examples, stratified (outside "
                         "--train-subset; the same for every seed and optimizer), and "
                         "evaluate on them beside the test set: choose hyperparameters "
                         "on these, never on the test set",
    "label_noise": "replace this fraction of the training labels by a different "
                   "random class (the same examples and labels for every seed and "
                   "optimizer; the test set is untouched)",
    "data_dir": "folder with the Fashion-MNIST idx files, the CIFAR archive or "
                "its extracted folder "
                "(else $ZOSAM_DATA or ~/.cache/zosam_jax)",
    "download": "download CIFAR (md5-checked) when it is not found",
    "model": "the network: mlp, cnn (two conv layers), CIFAR ResNets (resnet32 "
             "is the paper's), VGG, ViT",
    "optimizer": "sgd, sam (exact, two backward passes), zosam (one), msam (one: "
                 "epsilon along the negative momentum) or looksam (SAM every "
                 "--refresh-every steps, its reused component in between)",
    "rho": "SAM/ZO-SAM perturbation radius",
    "num_dirs": "ZO-SAM: number of random directions m",
    "estimator": "ZO-SAM: central (2m forward passes), forward (m+1), jvp, or "
                 "random (a control: a random perturbation of radius rho, no sign)",
    "zo_distribution": "ZO-SAM: distribution of the random directions",
    "smoothing": "ZO-SAM: finite-difference step delta",
    "zo_prior": "ZO-SAM: none (the paper's random directions) or gradient (spend "
                "the forward passes along the previous step's gradient) or momentum "
                "(along SGD's momentum buffer)",
    "radius_cap": "ZO-SAM with --zo-prior gradient: scale rho by 1/cos(prior, "
                  "gradient), estimated from the probe, at most by this factor",
    "refresh_every": "ZO-SAM with --zo-prior gradient: SAM's exact ascent every K "
                     "steps (its gradient the next prior); looksam: the exact "
                     "SAM step every K steps (default 5)",
    "zo_probe": "ZO-SAM with --zo-prior gradient --num-dirs 0: --no-zo-probe skips "
                "the prior's two forward passes (epsilon along the last gradient, "
                "SGD's cost)",
    "zo_exact_head": "ZO-SAM with --no-zo-probe: the output layer's epsilon along "
                     "the current minibatch's gradient (one forward pass, a backward "
                     "pass through that layer only), the last gradient elsewhere",
    "looksam_alpha": "LookSAM: weight alpha of the reused component",
    "adaptive": "SAM/ZO-SAM: adaptive SAM (ASAM), epsilon scaled by |theta|",
    "zo_batch_fraction": "ZO-SAM: fraction of the minibatch used for the "
                         "zeroth-order forward passes",
    "ascent_batch_fraction": "SAM: fraction of the minibatch (its first examples) "
                             "whose gradient gives the ascent direction "
                             "(m-sharpness; the update uses the whole minibatch)",
    "ascent_start": "SAM/ZO-SAM/MSAM: the sharpness-aware step only from this point "
                    "on (a fraction of the run in (0, 1), e.g. 0.75 for the last "
                    "quarter, or a step); before it SGD's step alone",
    "ascent_every": "SAM/ZO-SAM/MSAM: the sharpness-aware step every K-th step (from "
                    "--ascent-start), SGD's step alone in between",
    "chunk_size": "ZO-SAM: at most this many perturbed forward passes at once",
    "lr": "peak learning rate",
    "momentum": "SGD momentum (0 for none)",
    "weight_decay": "L2 weight decay added to the gradient",
    "schedule": "cosine (decay to 0) or constant, after a linear warm-up",
    "warmup_steps": "linear warm-up steps (default: 5%% of the run)",
    "batch_size": "training minibatch size",
    "repeat_batches": "use each minibatch (and its augmentation) for K consecutive "
                      "steps (an epoch takes K times the steps); with ZO-SAM's "
                      "--zo-prior gradient, all but a minibatch's first step perturb "
                      "along that minibatch's own last gradient",
    "steps": f"number of optimizer steps (default {config_lib.DEFAULT_STEPS})",
    "epochs": "run length in epochs instead of --steps",
    "sparsity": "fraction of weights fixed at zero, in [0, 1)",
    "sparse_method": "dense, static (fixed random mask), set, rigl or gmp",
    "sparse_distribution": "how sparsity is spread over layers: erk or uniform",
    "sparse_init": "static masks: random, snip (connection sensitivity on the "
                   "first batch) or magnitude",
    "sparse_update_every": "SET/RigL/GMP: steps between mask updates",
    "drop_fraction": "SET/RigL: initial fraction of active weights regrown",
    "dense_first_last": "keep the first and the last layer dense (MEST's and "
                        "RigL's CIFAR setting)",
    "seed": "seed of initialisation, data order, augmentation and directions",
    "seeds": "train these seeds (N-M or a comma-separated list, e.g. 0-5 or 0,1,2) as "
             "one jax.vmap-ed program, each in --workdir/seed<N>/; each seed's run is its "
             "--seed N run (to float tolerance)",
    "devices": "data-parallel over this many local devices ('all' for every "
               "one): the batch is split over them, params are replicated",
    "coordinator": "several processes (jax.distributed): process 0's HOST:PORT, the same "
                   "in every process, or auto (JAX's cluster detection: TPU pods, SLURM, "
                   "Open MPI); each process then uses --devices of its own devices",
    "num_processes": "with --coordinator HOST:PORT: the number of processes",
    "process_id": "with --coordinator HOST:PORT: this process's index, 0 to N-1 "
                  "(process 0 writes the run folder)",
    "distributed_timeout": "seconds to wait for every process to join the coordinator",
    "heartbeat_timeout": "seconds without a heartbeat after which a process counts as "
                         "dead and JAX ends the others (the last checkpoint stays usable)",
    "eval_every": "evaluate on the test set every N steps (and at the end)",
    "log_every": "write a train-metrics record every N steps",
    "eval_batch_size": "evaluation batch size",
    "checkpoint_every": "checkpoint every N steps (0: only at the end)",
    "workdir": "output folder: metrics.jsonl, summary.json, curves.png, "
               "checkpoints/",
    "resume": "continue the run in --workdir from its latest checkpoint",
    "overwrite": "delete a previous run in --workdir and start again",
    "stop_after": "stop after this many steps (checkpointed), as if "
                  "interrupted; the schedule still follows --steps",
    "progress": "show a progress bar",
    "compare": "comma-separated optimizers (e.g. sgd,sam,zosam) to run with the "
               "same configuration; writes comparison.md/.json/.png",
}

_CHOICES = {
    "dataset": config_lib.DATASETS, "model": config_lib.MODELS,
    "optimizer": config_lib.OPTIMIZERS, "estimator": config_lib.ESTIMATORS,
    "zo_distribution": config_lib.ZO_DISTRIBUTIONS,
    "schedule": config_lib.SCHEDULES, "sparse_method": config_lib.SPARSE_METHODS,
    "sparse_distribution": config_lib.SPARSE_DISTRIBUTIONS,
    "sparse_init": config_lib.SPARSE_INITS, "zo_prior": config_lib.ZO_PRIORS,
    "cifar10_test": config_lib.CIFAR10_TEST_SETS,
}


def _comma_list(text: str) -> tuple[str, ...]:
  return tuple(part.strip() for part in text.split(",") if part.strip())


def _seed_list(text: str) -> tuple[int, ...]:
  try:
    return seeds_lib.parse_seeds(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
  """The argument parser: one flag per :class:`TrainConfig` field."""
  parser = argparse.ArgumentParser(
      prog="zosam-train",
      description="Train a Flax model with SGD, SAM or ZO-SAM, dense or sparse.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  for field in dataclasses.fields(config_lib.TrainConfig):
    name, default = field.name, field.default
    kwargs: dict[str, Any] = dict(dest=name, default=default, help=_HELP[name])
    if name == "compare":
      kwargs.update(type=_comma_list, metavar="OPT[,OPT...]", default=())
    elif name == "seeds":
      kwargs.update(type=_seed_list, metavar="N-M|N[,N...]", default=())
    elif isinstance(default, bool):
      if name in ("resume", "overwrite"):
        kwargs["action"] = "store_true"
      else:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif name in _CHOICES:
      kwargs["choices"] = _CHOICES[name]
    elif name in ("steps", "warmup_steps", "stop_after", "chunk_size",
                  "train_subset", "validation_subset", "image_size", "num_processes",
                  "process_id", "crop_pad", "refresh_every", "ascent_every"):
      kwargs["type"] = int
    elif name in ("radius_cap", "ascent_start"):
      kwargs["type"] = float
    elif name == "epochs":
      kwargs["type"] = float
    elif name in ("data_dir", "workdir", "coordinator"):
      kwargs["type"] = str
    else:
      kwargs["type"] = type(default)
    parser.add_argument(config_lib.flag(name), **kwargs)
  return parser


def parse_config(argv: Sequence[str] | None = None) -> config_lib.TrainConfig:
  """Parses and validates flags into a :class:`TrainConfig`.

  Exits with status 2 and a message naming the flag when they are invalid.
  """
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return validation.validate(config_lib.TrainConfig(**vars(args)))
  except config_lib.ConfigError as e:
    parser.error(str(e))
    raise  # Unreachable: parser.error exits.


#: ``zosam-train`` with no flags: what the library is for, on the bundled data.
DEFAULT_FLAGS: tuple[str, ...] = (
    "--compare", "sgd,sam,zosam,zosam-prior-head", "--sparsity", "0.9",
    "--sparse-method", "rigl", "--workdir", "runs/default")
DEFAULT_RUN_SUMMARY = (
    "a small CNN on the bundled 8x8 digits, 90% sparse (RigL, ERK), trained with SGD, "
    "SAM, the paper's ZO-SAM (m = 1) and the study's one-backward option (the unprobed "
    "prior with the output layer exact); about a minute on 2 cores")


#: What to do about an I/O error, by errno (TensorStore's words where it has no errno).
_IO_HINTS = ((errno.ENOSPC, "RESOURCE_EXHAUSTED", "no space left on the device: free some "
              "space (or move --workdir)"),
             (errno.EROFS, "read-only", "the file system is read-only: use a writable "
              "--workdir"),
             (errno.EACCES, "PERMISSION_DENIED", "permission denied: fix the folder's "
              "permissions or use another --workdir"),
             (errno.ENOENT, "NOT_FOUND", "the folder vanished while the run wrote to it"))


def io_error_message(error: OSError, cfg: config_lib.TrainConfig) -> str:
  """One message for an I/O error: the path, what failed, what to do, the last
  good checkpoint and the command that continues the run."""
  text = str(error)
  hint = next((h for code, word, h in _IO_HINTS
               if error.errno == code or word.lower() in text.lower()), "check the folder")
  what = text if error.filename is None else f"{error.strerror}: {error.filename}"
  return (f"{what}\n  {hint}; {checkpoint_lib.last_checkpoint(Path(cfg.workdir))}. Once fixed, continue "
          f"with:\n  {config_lib.command_line(cfg, resume=True)}")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``zosam-train``.

  Args:
    argv: the flags (``sys.argv[1:]`` when ``None``).

  Returns:
    The exit status (see the module docstring).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv:
    print(f"zosam-train with no flags: the default comparison, {DEFAULT_RUN_SUMMARY}:\n"
          f"  zosam-train {' '.join(DEFAULT_FLAGS)}\n"
          "One optimizer: zosam-train --optimizer zosam (or sgd, sam, msam, looksam).",
          flush=True)
    # Run again, it continues the comparison (a finished one: its table again).
    argv = list(DEFAULT_FLAGS) + (["--resume"] if Path(DEFAULT_FLAGS[-1], "compare.json")
                                  .is_file() else [])
  cfg = parse_config(argv)
  if distributed.is_distributed(cfg) and not supervise.is_child():
    # The training runs in a watched child, so a dead peer is told plainly.
    return supervise.run(argv, cfg)
  try:
    return _run(cfg)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get("ZOSAM_DEBUG"):
      raise
    code, message = _failure(e, cfg)
    print(f"zosam-train: error: {message}", file=sys.stderr)
    return code
  except train_lib.Interrupted as e:
    how = ("interrupted" if e.signal_name == "SIGINT" else f"stopped by {e.signal_name}"
           + (" (one of the run's processes; all stopped at this step)"
              if distributed.is_distributed(cfg) else ""))
    print(f"\nzosam-train: {how}; step {e.step} is checkpointed. Continue "
          f"with:\n  {e.command}", file=sys.stderr)
    return 130 if e.signal_name == "SIGINT" else 143
  except KeyboardInterrupt:  # Before training started: nothing to keep.
    print("\nzosam-train: interrupted before training started", file=sys.stderr)
    return 130


def _failure(error: Exception, cfg: config_lib.TrainConfig) -> tuple[int, str]:
  """The exit status and message of an error the program expects; others re-raised."""
  if isinstance(error, train_lib.NonFiniteLossError):
    return 3, str(error)
  if isinstance(error, config_lib.ConfigError):  # Checks that need the machine.
    return 2, str(error)
  if isinstance(error, (data_lib.DataNotFoundError, FileExistsError, workdir_lib.ResumeError,
                        files.DamagedFileError, workdir_lib.FolderInUseError,
                        distributed.DistributedError)):
    return 1, str(error)
  if isinstance(error, OSError):
    return 4, io_error_message(error, cfg)
  if distributed.is_distributed(cfg) and isinstance(error, jax.errors.JaxRuntimeError):
    # JAX repeats its prefix once per nested dispatch: once is enough.
    reason = re.sub(r"(Error dispatching computation: )+", r"\1", files.one_line(error))
    return 1, (f"process {cfg.process_id}: an exchange with the other processes failed "
               f"({reason}); another process failed or was started "
               "differently: see its output")
  raise error


def _run(cfg: config_lib.TrainConfig) -> int:
  distributed.initialize(cfg)  # Before anything else touches JAX.
  if cfg.compare:
    result = train_lib.run_comparison(cfg)
    table = "\n\n".join(filter(None, (result["table"], result["sparsity"])))
    wrote = "comparison.md, comparison.json, comparison.png"
  elif cfg.seeds:
    table = report.seeds_table(train_lib.train_seeds(cfg))
    wrote = "seed<N>/metrics.jsonl, summary.json, curves.png, checkpoints/ for each seed"
  else:
    table = report.summary_table(train_lib.train_and_evaluate(cfg))
    wrote = "metrics.jsonl, summary.json, curves.png, checkpoints/"
  if distributed.is_main():  # Process 0 reports for a multi-process run.
    print("\n" + table)
    print(f"\nwrote {cfg.workdir}/{wrote}")
  return 0
