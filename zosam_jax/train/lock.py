"""One writer per run folder: an OS lock on ``<folder>/.zosam-train.lock``.

A program takes the lock of each folder it writes (a run's, a ``--seeds``
program's parent and each seed's, a ``--compare`` folder) before it reads or
changes anything there, and releases it when it ends. The lock is
``fcntl.flock`` on the file: the operating system drops it when the process
dies, however it dies, so a lock can never outlive its holder. The file
holds the holder's host, process id, start time and command line, for the
message a second program gets; a file still holding them when the lock is
free was left by a process that died, and is taken over with a warning.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from zosam_jax.train import files

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
    zosam_jax.train.lock.FolderInUseError: ... is in use by process ...
  """

  def __init__(self, folder: str | os.PathLike):
    self.folder = Path(folder)
    self.path = self.folder / LOCK_NAME
    self._file = None

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
