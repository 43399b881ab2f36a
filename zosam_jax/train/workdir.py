"""A run's folder and its rules: one writer (an OS lock), never overwritten by
accident, a ``--resume`` checked against what the folder holds.

A folder holds one run (``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``summary.json``, ``curves.png``) or one ``--compare`` comparison
(``compare.json`` and a folder per optimizer). A K-seed program
(``--seeds``) is K runs, one folder per seed, each checked here on its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from zosam_jax.train import config as config_lib
from zosam_jax.train import files
from zosam_jax.train.files import ResumeError  # noqa: F401  (the folder's error)

#: The files a new run (or ``--overwrite``) starts without.
RUN_FILES: tuple[str, ...] = ("metrics.jsonl", "summary.json", "curves.png",
                              "config.json")




def finished_summary(path: Path) -> dict[str, Any] | None:
  """A run's ``summary.json``; ``None`` when absent, or damaged (with a
  warning: it is written again when the run finishes)."""
  try:
    return files.read_json(path)
  except files.DamagedFileError as e:
    files.warn(f"{e.path} is damaged ({e.detail}); it is written again when the run "
               "finishes")
    return None


def _check_resumable(saved: dict[str, Any], cfg: config_lib.TrainConfig,
                     what: str = "run") -> None:
  """The resume diff: the flags a continuation must share with its folder's
  saved config (a run's ``config.json``, a comparison's ``compare.json``)."""
  current = cfg.to_dict()
  free = config_lib.RESUME_FREE_FIELDS - ({"compare"} if what == "comparison" else set())
  differ = [k for k, v in saved.items() if k not in free and k in current
            and current[k] != v]
  if differ:
    flags = ", ".join(f"{config_lib.flag(k)} (checkpoint: {saved[k]!r}, now: "
                      f"{current[k]!r})" for k in differ)
    raise ResumeError(f"--resume needs the flags of the interrupted {what}; differ: "
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
  saved = read_saved(workdir / "config.json")
  compare = read_saved(workdir / "compare.json")
  if cfg.resume and saved is None:
    if compare is not None:
      raise ResumeError(
          f"{workdir} holds a --compare run; continue it with: "
          f"{config_lib.command_line(dict(compare, workdir=cfg.workdir), resume=True)}")
    raise ResumeError(f"no run to resume in {workdir} (no config.json there); check "
                      "--workdir, or drop --resume to start a new run")
  if cfg.resume and saved is not None:
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


def check_compare_folder(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  """``--resume`` needs this comparison's flags; a new one, an unused folder."""
  path = workdir / "compare.json"
  saved = read_saved(path)
  if cfg.resume and saved is None:
    raise ResumeError(f"no --compare run to resume in {workdir} (no "
                           "compare.json there); check --workdir")
  if cfg.resume and saved is not None:
    _check_resumable(saved, cfg, "comparison")
  elif (saved is not None or any((workdir / n).exists() for n in cfg.compare)) and (
      not cfg.overwrite):
    raise FileExistsError(f"{workdir} already holds a comparison; pass --resume to "
                          "continue it, --overwrite to start it again, or another "
                          "--workdir")


# One writer per run folder: an OS lock on ``<folder>/.zosam-train.lock``.
#
# A program takes the lock of each folder it writes (a run's, a ``--seeds``
# program's parent and each seed's, a ``--compare`` folder) before it reads or
# changes anything there, and releases it when it ends. The lock is
# ``fcntl.flock`` on the file: the operating system drops it when the process
# dies, however it dies, so a lock can never outlive its holder. The file
# holds the holder's host, process id, start time and command line, for the
# message a second program gets; a file still holding them when the lock is
# free was left by a process that died, and is taken over with a warning.

LOCK_NAME = ".zosam-train.lock"


class FolderInUseError(RuntimeError):
  """Another process holds the run folder's lock.

  Attributes:
    folder: the run folder.
    holder: what the holder wrote: ``host``, ``pid``, ``since``, ``command``.
  """

  def __init__(self, folder: Path, holder: dict[str, Any]):
    self.folder, self.holder = folder, holder
    who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since "
           f"{holder.get('since', '?')}: {holder.get('command', '?')})" if holder
           else "another process")
    super().__init__(f"{folder} is in use by {who}; wait for it to finish or stop it, "
                     "or use another --workdir")


class RunLock:
  """The lock of one run folder, held from :meth:`acquire` to :meth:`release`.

  Args:
    folder: the run folder (created if missing).

  Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, RunLock(d) as lock:
    ...   RunLock(d).acquire()
    Traceback (most recent call last):
    ...
    zosam_jax.train.workdir.FolderInUseError: ... is in use by process ...
  """

  def __init__(self, folder: str | os.PathLike):
    self.folder = Path(folder)
    self.path = self.folder / LOCK_NAME
    self._file: Any = None

  def acquire(self) -> RunLock:
    """Takes the lock, or raises :class:`FolderInUseError` at once."""
    self.folder.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(f)
      f.close()
      raise FolderInUseError(self.folder, holder) from None
    left = _read_holder(f)
    if left:
      files.warn(f"{self.folder}: took over the lock left by process {left.get('pid')} on "
                 f"{left.get('host')} (since {left.get('since')}), which ended without "
                 "releasing it")
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "command": " ".join(sys.argv)}))
    f.flush()
    self._file = f
    return self

  def release(self) -> None:
    """Empties the file (a clean exit leaves nothing to take over) and unlocks."""
    if self._file is None:
      return
    try:
      self._file.seek(0)
      self._file.truncate()
    except OSError:  # A vanished or full folder: the OS lock still goes below.
      pass
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    self._file = None

  def __enter__(self) -> RunLock:
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()


def _read_holder(f) -> dict[str, Any]:
  f.seek(0)
  text = f.read().strip()
  try:
    holder = json.loads(text) if text else {}
  except json.JSONDecodeError:
    holder = {"command": text[:80]}
  return holder if isinstance(holder, dict) else {}


def refuse_if_held(folders) -> None:
  """Raises :class:`FolderInUseError` if another process holds one of the
  (existing) folders' locks; takes nothing. Called before any other check,
  so a second program learns first that the folder is in use."""
  for folder in folders:
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
      continue
    with open(path) as f:
      try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
      except BlockingIOError:
        raise FolderInUseError(Path(folder), _read_holder(f)) from None
      fcntl.flock(f, fcntl.LOCK_UN)


class Locks:
  """Several folders' locks taken together (all or none), released together."""

  def __init__(self, folders):
    self._locks = [RunLock(f) for f in folders]

  def acquire(self) -> Locks:
    """Takes every lock, or none (:class:`FolderInUseError` for the first held)."""
    taken = []
    try:
      for lock in self._locks:
        taken.append(lock.acquire())
    except BaseException:
      for lock in taken:
        lock.release()
      raise
    return self

  def release(self) -> None:
    for lock in self._locks:
      lock.release()

  def __enter__(self) -> Locks:
    return self.acquire()

  def __exit__(self, *exc_info) -> None:
    self.release()
