"""A run's folder: refusing to overwrite a run, checking a ``--resume``.

A folder holds one run (``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``summary.json``, ``curves.png``) or one ``--compare`` comparison
(``compare.json`` and a folder per optimizer). A K-seed program
(``--seeds``) is K runs, one folder per seed, each checked here on its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from zosam_jax.train import config as config_lib
from zosam_jax.train import files

#: The files a new run (or ``--overwrite``) starts without.
RUN_FILES: tuple[str, ...] = ("metrics.jsonl", "summary.json", "curves.png",
                              "config.json")


class ResumeError(ValueError):
  """``--resume`` that cannot continue: no run there, or different flags."""


def finished_summary(path: Path) -> dict[str, Any] | None:
  """A run's ``summary.json``; ``None`` when absent, or damaged (with a
  warning: it is written again when the run finishes)."""
  try:
    return files.read_json(path)
  except files.DamagedFileError as e:
    files.warn(f"{e.path} is damaged ({e.detail}); it is written again when the run "
               "finishes")
    return None


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


def check_workdir(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  """Refuses to overwrite a run by accident, or to resume a run that is not there.

  Args:
    cfg: the run's configuration (``resume``, ``overwrite`` and the flags a
      resumed run must share with its folder's ``config.json``).
    workdir: the run's folder.

  Raises:
    ResumeError: ``--resume`` without a run there, or with other flags.
    FileExistsError: a new run in a folder that holds one, without
      ``--overwrite``.
  """
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


def prepare_workdir(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  """Creates the folder (emptied of a previous run with ``--overwrite``) and
  writes ``config.json``."""
  workdir.mkdir(parents=True, exist_ok=True)
  if cfg.overwrite:
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    for name in RUN_FILES:
      (workdir / name).unlink(missing_ok=True)
  (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
