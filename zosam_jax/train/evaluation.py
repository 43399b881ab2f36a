"""The test and validation sets: evaluating a state (every process its rows)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import zosam_jax

from zosam_jax.train import data as data_lib
from zosam_jax.train import distributed
from zosam_jax.train import steps as steps_lib


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int, mesh: Any = None
                 ) -> list[Any]:
  """The test set padded to whole batches of one shape, with 0/1 weights.

  Args:
    x: ``(n, ...)`` inputs; y: ``(n,)`` labels.
    batch_size: examples per batch (rounded up to a multiple of the mesh's
      devices when the batches are split over several processes).
    mesh: with several processes, the run's mesh: each batch becomes a
      global array split over it, of which this process reads its rows.

  Returns:
    ``[x, y, weights]`` of shapes ``(num, batch) + x.shape[1:]``, ``(num,
    batch)`` and ``(num, batch)``, on the default device; with several
    processes, ``num`` such triples of global ``(batch, ...)`` arrays.
  """
  n = x.shape[0]
  batch_size = min(batch_size, n)
  if mesh is not None:
    batch_size = -(-batch_size // mesh.size) * mesh.size
  num = math.ceil(n / batch_size)
  pad = num * batch_size - n
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  y = np.concatenate([y, np.zeros(pad, y.dtype)])
  shape = (num, batch_size)
  arrays = [a.reshape(shape + a.shape[1:]) for a in (x, y, weights)]
  if mesh is None:
    return [jax.device_put(a) for a in arrays]
  sharding = zosam_jax.data_sharding(mesh)
  return [distributed.global_batch(sharding, tuple(a[i] for a in arrays))
          for i in range(num)]


def evaluator(model: Any, ds: data_lib.Dataset, eval_batch_size: int,
              split: str = "test", mesh: Any = None
              ) -> Callable[[Any, Any], tuple[float, float]]:
  """``evaluate(params, batch_stats) -> (mean loss, accuracy)`` on one split.

  Args:
    model: the model.
    ds: the run's dataset.
    eval_batch_size: examples per evaluation batch.
    split: ``"test"``, or ``"validation"`` (``ds.x_val``, ``ds.y_val``).
    mesh: with several processes, the run's mesh: every example is evaluated
      exactly once, each process its rows of every batch.
  """
  eval_step = jax.jit(steps_lib.make_eval_step(model, ds.mean, ds.std))
  x, y = (ds.x_test, ds.y_test) if split == "test" else (ds.x_val, ds.y_val)
  if x is None or y is None:
    raise ValueError(f"{ds.name}: no {split} split (--validation-subset holds one out)")
  mesh = mesh if jax.process_count() > 1 else None
  batches = eval_batches(x, y, eval_batch_size, mesh)
  batches = list(zip(*batches)) if mesh is None else batches

  def evaluate(params, batch_stats):
    loss_sum, correct = 0.0, 0.0
    for xb, yb, wb in batches:
      l, c = eval_step(params, batch_stats, xb, yb, wb)
      loss_sum, correct = loss_sum + l, correct + c
    n = x.shape[0]
    return (float(distributed.host_value(loss_sum)) / n,
            float(distributed.host_value(correct)) / n)

  return evaluate


def split_evaluators(model: Any, ds: data_lib.Dataset, eval_batch_size: int,
                     mesh: Any = None
                     ) -> dict[str, Callable[[Any, Any], tuple[float, float]]]:
  """An evaluator per split of the run: ``"test"``, and ``"validation"`` when
  the dataset holds one (``--validation-subset``)."""
  splits = ("test",) if ds.x_val is None else ("test", "validation")
  return {split: evaluator(model, ds, eval_batch_size, split, mesh) for split in splits}
