"""Checkpoints with Orbax: the whole train state plus JSON metadata.

The state (params, BatchNorm statistics, the optimizer state with its PRNG
key and sparse masks, the step and the on-device metric sums) is stored as a
flat dict of arrays, one entry per leaf in ``jax.tree`` order, and restored
into the structure of a freshly initialised state. Storing leaves rather than
the nested NamedTuples keeps the format independent of how Orbax handles
``None``, empty dicts and optax's state classes. Typed PRNG keys are stored as
their raw ``uint32`` data and re-wrapped with the template's implementation.

The data order needs nothing stored: it is a pure function of ``(seed,
epoch)`` (see :mod:`zosam_jax.train.pipeline`); the metadata records the seed,
the epoch and the step for inspection.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


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


class Checkpointer:
  """Saves and restores train states under ``directory/<step>/``.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
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
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
        force=True)
    self._manager.wait_until_finished()

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
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    arrays, _ = flatten_state(template)
    abstract = {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype,
                                        sharding=getattr(v, "sharding", None))
                for k, v in arrays.items()}
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return unflatten_state(restored["state"], template), dict(restored["meta"])

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
