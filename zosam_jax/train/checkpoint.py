"""Checkpoints with Orbax: the whole train state plus JSON metadata.

The state (params, BatchNorm statistics, the optimizer state with its PRNG
key and sparse masks, the step and the on-device metric sums) is stored as a
flat dict of arrays, one entry per leaf in ``jax.tree`` order, and restored
into the structure of a freshly initialised state. Storing leaves rather than
the nested NamedTuples keeps the format independent of how Orbax handles
``None``, empty dicts and optax's state classes. Typed PRNG keys are stored as
their raw ``uint32`` data and re-wrapped with the template's implementation.

The data order needs nothing stored: it is a pure function of ``(seed,
epoch)`` (see :mod:`zosam_jax.train.data.order`); the metadata records the seed,
the epoch and the step for inspection.

A checkpoint that cannot be read (a file truncated by a crash or a full disk)
raises :class:`DamagedCheckpointError`; :meth:`Checkpointer.set_aside` moves it
to ``checkpoints.damaged/`` (nothing is deleted) so that the newest readable
one is used. A save that fails (no space, a read-only or vanished folder)
raises :class:`CheckpointWriteError` and leaves no temporary folder behind;
Orbax's temporary folders of an unfinished save are never listed as
checkpoints and are removed when the folder is opened again. Verifying a
checkpoint is reading it: a restore reads every array (Orbax's OCDBT format
checks byte ranges), so a resume pays nothing extra on the good path.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from zosam_jax.train import files


def _is_key(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _leaf_name(index: int) -> str:
  return f"leaf_{index:05d}"


def flatten_state(state: Any) -> tuple[dict[str, jax.Array], list[str]]:
  """Returns ``({leaf_name: array}, [readable path of each leaf])``."""
  path_leaves, _ = jax.tree_util.tree_flatten_with_path(state)
  arrays, paths = {}, []
  for i, (path, leaf) in enumerate(path_leaves):
    arrays[_leaf_name(i)] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    paths.append(jax.tree_util.keystr(path))
  return arrays, paths


def unflatten_state(arrays: dict[str, Any], template: Any) -> Any:
  """Inverse of :func:`flatten_state`, into the structure of ``template``."""
  leaves, treedef = jax.tree.flatten(template)
  restored = []
  for i, leaf in enumerate(leaves):
    value = arrays[_leaf_name(i)]
    if _is_key(leaf):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
    restored.append(value)
  return jax.tree.unflatten(treedef, restored)


class DamagedCheckpointError(RuntimeError):
  """A checkpoint that cannot be read.

  Attributes:
    step: its step.
    directory: the checkpoint folder.
    cause: the reader's error, in one line.
  """

  def __init__(self, step: int, directory: str, cause: BaseException):
    self.step, self.directory, self.cause = step, directory, files.one_line(cause)
    super().__init__(f"checkpoint step {step} in {directory} cannot be read: {self.cause}")


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (disk full, read-only or vanished folder).

  Attributes:
    step: the step being saved.
    directory: the checkpoint folder.
    cause: the writer's error, in one line.
  """

  def __init__(self, step: int, directory: str, cause: BaseException):
    self.step, self.directory, self.cause = step, directory, files.one_line(cause)
    super().__init__(f"writing checkpoint step {step} in {directory} failed: {self.cause}")
    self.errno = getattr(cause, "errno", None)


def _orphaned_io(unraisable: Any) -> bool:
  """Whether an unraisable exception is Orbax I/O left over from a failed
  checkpoint read or write: a read coroutine collected unawaited, or a
  TensorStore callback that finished after the save's or restore's event loop
  had closed (``RuntimeError: Event loop is closed`` in asyncio's
  ``call_soon_threadsafe``)."""
  if "_read_array_index_and_device_put" in repr(unraisable.object):
    return True
  error, frames = unraisable.exc_value, unraisable.exc_traceback
  if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
    return False
  while frames is not None:
    if frames.tb_frame.f_code.co_name == "call_soon_threadsafe":
      return True
    frames = frames.tb_next
  return False


def _drop_orphaned_io() -> None:
  """Keeps the I/O a failed checkpoint read or write leaves behind from
  printing 'Exception ignored in ...' tracebacks (the error itself is reported
  in one line): Python's hook for unraisable exceptions drops those, and only
  those (:func:`_orphaned_io`). Installed once, when the first checkpointer
  opens: TensorStore's threads may report before the failure reaches us."""
  hook = sys.unraisablehook
  if not getattr(hook, "drops_orphaned_io", False):
    def filtered(unraisable):
      if not _orphaned_io(unraisable):
        hook(unraisable)
    filtered.drops_orphaned_io = True  # type: ignore[attr-defined]
    sys.unraisablehook = filtered


class Checkpointer:
  """Saves and restores train states under ``directory/<step>/``.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    _drop_orphaned_io()
    if jax.process_index() == 0:  # The folder's one writer (of a multi-process run too).
      for leftover in _unfinished(self.directory):
        shutil.rmtree(leftover, ignore_errors=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        # Saving synchronously keeps "the last good checkpoint" well defined
        # when a run stops on a NaN right after a save.
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """The step of the newest checkpoint, or ``None``."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of all checkpoints kept."""
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Writes ``state`` and the JSON-serialisable ``meta`` as step ``step``."""
    arrays, paths = flatten_state(state)
    meta = dict(meta, step=int(step), leaf_paths=paths)
    quiet = logging.getLogger("absl")  # Orbax's threads log each write error too.
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
      self._manager.save(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
          force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # TensorStore raises ValueError.
      for leftover in _unfinished(self.directory, int(step)):
        shutil.rmtree(leftover, ignore_errors=True)
      raise CheckpointWriteError(int(step), self.directory, e) from e
    finally:
      quiet.setLevel(level)

  def restore(self, template: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Reads a checkpoint into the structure, dtypes and devices of ``template``.

    Args:
      template: a state of the same structure (e.g. a fresh initial state).
      step: which checkpoint; the latest when ``None``.

    Returns:
      ``(state, meta)``.

    Raises:
      FileNotFoundError: if there is no checkpoint.
      DamagedCheckpointError: if it cannot be read.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    arrays, _ = flatten_state(template)
    abstract = {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype,
                                        sharding=getattr(v, "sharding", None))
                for k, v in arrays.items()}
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      return unflatten_state(restored["state"], template), dict(restored["meta"])
    except Exception as e:  # pylint: disable=broad-except  # TensorStore raises ValueError.
      failure = DamagedCheckpointError(step, self.directory, e)
    gc.collect()  # Out of the except block: the reader's coroutines go now, not later.
    raise failure

  def set_aside(self, step: int) -> str:
    """Moves checkpoint ``step`` into ``<directory>.damaged/`` (kept, not
    deleted) and returns its new path; later calls no longer list it."""
    aside = f"{self.directory}.damaged"
    os.makedirs(aside, exist_ok=True)
    target, n = os.path.join(aside, str(step)), 1
    while os.path.exists(target):
      target, n = os.path.join(aside, f"{step}.{n}"), n + 1
    shutil.move(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def restore_newest(self, template: Any, candidates: list[int] | None = None,
                     move_aside: bool = True) -> tuple[Any, dict[str, Any]]:
    """The newest readable checkpoint (of ``candidates``, default all), each
    unreadable newer one reported on stderr in one line and, with
    ``move_aside``, set aside.

    Raises:
      FileNotFoundError: no checkpoint, or none of them readable (naming the folder).
    """
    steps = sorted(self.all_steps() if candidates is None else candidates, reverse=True)
    for step in steps:
      try:
        return self.restore(template, step)
      except DamagedCheckpointError as e:
        warn_damaged(e, self.set_aside(step) if move_aside else None)
    raise FileNotFoundError(f"no readable checkpoint in {self.directory}" + (
        f" (all {len(steps)} damaged, see above)" if steps else ""))

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def warn_damaged(error: DamagedCheckpointError, moved_to: str | None) -> None:
  """One line on stderr: which checkpoint, why, and where it went."""
  where = f"; moved to {moved_to}" if moved_to else ""
  files.warn(f"{error}{where}; trying an older one")


def _unfinished(directory: str, step: int | None = None) -> list[str]:
  """Orbax's temporary folders of an unfinished save of ``step`` (of any step
  when ``None``): never checkpoints, removed when the folder is opened."""
  if not os.path.isdir(directory):
    return []
  return [os.path.join(directory, name) for name in os.listdir(directory)
          if ".orbax-checkpoint-tmp" in name
          and (step is None or name.startswith(f"{step}.orbax-checkpoint-tmp"))]


def resume_point(resume: bool, ckpts: list[Checkpointer], states: list[Any]
                 ) -> tuple[int, list[Any], float]:
  """The step a run continues from, the seeds' states there and the training
  seconds so far: step 0 and ``states``, or with ``resume`` the newest
  checkpoint every seed has and can read. An unreadable one is reported in
  one line and set aside (``checkpoints.damaged/``), and the next one tried."""
  damaged: list[str] = []
  while resume:
    kept = [set(c.all_steps()) for c in ckpts]
    common = set.intersection(*kept)
    if not common and (any(kept) or damaged):
      have = ", ".join(f"{c.directory}: {sorted(k) or 'none'}" for c, k in zip(ckpts, kept))
      raise files.ResumeError(
          f"--resume: the seeds' folders share no checkpoint step that can be read ({have}"
          + (f"; set aside as damaged: {', '.join(damaged)}" if damaged else "")
          + "); pass --overwrite to start the run again")
    if not common:
      break
    step = max(common)
    try:
      restored = [c.restore(s, step) for c, s in zip(ckpts, states)]
    except DamagedCheckpointError as e:
      bad = next(c for c in ckpts if c.directory == e.directory)
      damaged.append(bad.set_aside(step))
      warn_damaged(e, damaged[-1])
      continue
    return step, [state for state, _ in restored], restored[0][1]["train_seconds"]
  return 0, states, 0.0


def checkpoint_steps(workdir: str | Path) -> list[int]:
  """The steps of the checkpoints kept in a run's folder, oldest first.

  Args:
    workdir: the run's folder (with ``checkpoints/``).

  Returns:
    The steps, e.g. ``[200, 400]``; ``[]`` without checkpoints.
  """
  ckpt = Checkpointer(Path(workdir) / "checkpoints")
  try:
    return sorted(ckpt.all_steps())
  finally:
    ckpt.close()


def restore_from(folder: Path, template: Any, step: int | None = None
                 ) -> tuple[Any, dict[str, Any]]:
  """A run's checkpoint at ``step`` (the newest readable one when ``None``; an
  unreadable one is reported and left in place), as ``(state, meta)``."""
  ckpt = Checkpointer(folder / "checkpoints")
  try:
    return (ckpt.restore_newest(template, move_aside=False) if step is None
            else ckpt.restore(template, step))
  finally:
    ckpt.close()


def save_all(ckpts: list[Checkpointer], step: int, states: list[Any],
             metas: list[dict[str, Any]]) -> None:
  """Each seed's state at ``step`` into its folder's checkpoints."""
  for ckpt, state, meta in zip(ckpts, states, metas):
    ckpt.save(step, state, meta)


def last_checkpoint(workdir: Path) -> str:
  """``the last good checkpoint is step N in DIR``: the newest finished
  checkpoint under ``workdir`` (or its seeds' folders), for messages."""
  found = [(int(d.name), d.parent) for c in [workdir, *workdir.glob("*")]
           if (c / "checkpoints").is_dir() for d in (c / "checkpoints").iterdir()
           if d.name.isdigit()]
  if not found:
    return "no checkpoint was written"
  step, where = max(found)
  return f"the last good checkpoint is step {step} in {where}"
