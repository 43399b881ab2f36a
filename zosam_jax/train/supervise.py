"""A process of a multi-process run, watched: a dead peer told in one paragraph.

When a process of a run dies without notice (SIGKILL, a lost host), JAX's
coordination service ends every other process after ``--heartbeat-timeout``
seconds by aborting it from C++ (SIGABRT, after its own log and a stack
trace): JAX offers no hook that runs before that abort (the client's
``missed_heartbeat_callback`` cannot be given a Python function on this
jaxlib, and ``jax.distributed.initialize`` does not take one). So each
process of a run (``--coordinator``) runs the training in a child process and
watches it: the child reports its last finished step and checkpoint through a
pipe, its standard error passes through (JAX's runtime log held back once it
starts), and when the child dies of the coordination service's verdict the
parent prints which process stopped answering, the last step finished here,
the last checkpoint and the command that resumes, then the runtime's log.
SIGTERM and SIGINT reach the child (the agreed stop at a step boundary); the
child dies with its parent (Linux's parent-death signal).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from zosam_jax.train import checkpoint as checkpoint_lib
from zosam_jax.train import config as config_lib

#: Set in the child: the file descriptor it reports its progress to.
PROGRESS_FD = "ZOSAM_PROGRESS_FD"
#: A line of JAX's runtime log (absl: severity, date, time) or of its abort.
_RUNTIME_LOG = re.compile(r"^([EF]\d{4} \d\d:\d\d:\d\d|\*\*\* |terminate called|"
                          r"Check failure stack trace|F\d{4} )")
_DEAD_PEER = re.compile(r"heartbeat|unhealthy|Polled an error|coordination service",
                        re.IGNORECASE)
_WHO = (re.compile(r"stopped sending heartbeats\):\s*(\d+)"),
        re.compile(r"Task (\d+) heartbeat timeout"),
        re.compile(r"task:(\d+)"))


def is_child() -> bool:
  """Whether this process is the watched child of a supervising parent."""
  return PROGRESS_FD in os.environ


def report_step(step: int) -> None:
  """Tells the supervising parent, if any, the last step finished here."""
  fd = os.environ.get(PROGRESS_FD)
  if fd is not None:
    os.write(int(fd), f"{step}\n".encode())


def _die_with_parent() -> None:
  """In the child before it runs: SIGKILL when the parent dies (Linux)."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass  # Elsewhere the child outlives a parent killed with SIGKILL.


def _read_progress(fd: int, progress: dict[str, int]) -> None:
  with os.fdopen(fd, "r") as pipe:
    for line in pipe:
      progress["step"] = int(line)


def _pass_through(stream: TextIO, held: list[str]) -> None:
  """Copies the child's standard error to ours; from the first line of JAX's
  runtime log on, holds the lines back (printed after the paragraph, or at
  the end)."""
  for line in stream:
    if held or _RUNTIME_LOG.match(line):
      held.append(line)
    else:
      sys.stderr.write(line)
      sys.stderr.flush()


def run(argv: Sequence[str], cfg: config_lib.TrainConfig) -> int:
  """Runs ``python -m zosam_jax.train ARGV`` as a watched child; its exit status.

  Args:
    argv: this process's flags (``--coordinator`` among them).
    cfg: the configuration they parse to.

  Returns:
    The child's exit status (128 + the signal if it died of one, as a shell
    says), or 1 with the paragraph when the run's coordination service ended it.
  """
  read_end, write_end = os.pipe()
  child = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-m", "zosam_jax.train", *argv], stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, **{PROGRESS_FD: str(write_end)}), pass_fds=(write_end,),
      start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
  os.close(write_end)
  progress: dict[str, int] = {}
  held: list[str] = []
  readers = [threading.Thread(target=_read_progress, args=(read_end, progress), daemon=True),
             threading.Thread(target=_pass_through, args=(child.stderr, held), daemon=True)]
  for t in readers:
    t.start()
  forward = lambda signum, frame: child.send_signal(signum)
  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    code = child.wait()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  for t in readers:
    t.join(timeout=10)
  log = "".join(held)
  if code != 0 and _DEAD_PEER.search(log):
    sys.stderr.write(dead_peer_paragraph(cfg, log, progress) + "\n\nJAX's runtime log:\n")
    code = 1
  sys.stderr.write(log)
  return 128 - code if code < 0 else code


def dead_peer_paragraph(cfg: config_lib.TrainConfig, log: str,
                        progress: dict[str, Any]) -> str:
  """What a survivor says: who stopped answering, where this process was, the
  last checkpoint and the command that resumes.

  Args:
    cfg: the run's configuration (this process's).
    log: JAX's runtime log of the failure.
    progress: ``{"step": the last step finished here}`` as the child
      reported it (missing before the first).

  Returns:
    One paragraph, and the resume command on its own line.
  """
  who = next((m.group(1) for pattern in _WHO for m in [pattern.search(log)] if m), None)
  if who is not None and int(who) != cfg.process_id:
    peer = f"process {who}"
  elif cfg.process_id != 0:
    peer = "process 0 (the coordinator)"
  else:
    peer = "another process"
  step = progress.get("step")
  return (
      f"zosam-train: {peer} of this run stopped answering (killed, crashed or its host "
      f"lost), so JAX's coordination service ended process {cfg.process_id} after "
      f"--heartbeat-timeout {cfg.heartbeat_timeout} s. This process had finished "
      + (f"step {step}" if step is not None else "no step")
      + f"; {checkpoint_lib.last_checkpoint(Path(cfg.workdir))}. Start every process of "
      "the run again (each with its own --process-id) to continue from it:\n  "
      + config_lib.command_line(cfg, resume=True))
