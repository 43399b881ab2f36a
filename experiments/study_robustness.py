"""Corruption robustness of the CIFAR-10 study's cells, paired by seed (issue 17).

For every cell of ``results/study_cifar10.jsonl`` whose final checkpoint is on
this machine and which is not yet in ``results/robustness_cifar10.jsonl``, the
final weights are restored (``zosam_jax.train.load_train_state``) and evaluated on the
study's test images under each corruption of :mod:`cifar10_c` at severities
1-5. The corruptions act on the 32x32 images, which then go through the run's
own input pipeline (average pooling to ``--image-size``, the run's
normalisation), as a corrupted photograph would. The noise is drawn once
(seed 0), so every cell is tested on identical images.

Where the study's test images were decoded from JPEG (the shared ``.npz``
parts), 1000 of them are also given losslessly: each row then holds the
accuracy on those images both ways (``jpeg_check``), the issue's check of what
the JPEG test set costs.

``study.py grid --dataset cifar10`` evaluates each cell right after training it,
so a later session needs no checkpoint of this one;
``python study.py robustness --dataset cifar10`` fills in cells that are missing.

References:
  Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
  Corruptions and Perturbations", ICLR 2019.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from zosam_jax.train import get_model, load_train_state, make_eval_step, run_dataset
from zosam_jax.train.data import pool_images

import analysis
import cifar10_c
import common

ROWS = common.RESULTS / "robustness_cifar10.jsonl"
#: Where the corrupted test sets are kept once built (git-ignored).
CACHE = common.REPO / "runs" / "cache"
#: Test images per evaluation batch.
BATCH = 1000


def corrupted_test_sets(x_test: np.ndarray, image_size: int | None) -> dict[str, np.ndarray]:
  """``{"clean": ..., "gaussian_noise/1": ..., ...}``: the 41 test sets.

  Args:
    x_test: ``(N, 32, 32, 3)`` ``uint8`` test images.
    image_size: the run's ``--image-size`` (``None``: unchanged).

  Returns:
    ``(N, s, s, 3)`` ``uint8`` images per set, ``s`` the run's image size.
  """
  size = image_size or x_test.shape[1]
  sets = {"clean": pool_images(x_test, size)}
  for name in cifar10_c.CORRUPTIONS:
    for severity in cifar10_c.SEVERITIES:
      sets[f"{name}/{severity}"] = pool_images(
          cifar10_c.corrupt(x_test, name, severity, seed=0), size)
  return sets


def cached_test_sets(x_test: np.ndarray, image_size: int | None,
                     folder: Path | None = CACHE) -> dict[str, np.ndarray]:
  """:func:`corrupted_test_sets`, saved in ``folder`` when first built and read
  back after (by the test images and :mod:`cifar10_c`'s source); ``None``: not
  saved. Several processes may share the folder: a file is written under a
  temporary name, then renamed."""
  if folder is None:
    return corrupted_test_sets(x_test, image_size)
  key = hashlib.sha256(x_test.tobytes() + Path(cifar10_c.__file__).read_bytes())
  path = Path(folder) / f"cifar10_c_{key.hexdigest()[:16]}_{image_size or x_test.shape[1]}.npz"
  if path.exists():
    with np.load(path) as f:
      return {name: f[name] for name in f.files}
  sets = corrupted_test_sets(x_test, image_size)
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
  with open(partial, "wb") as f:
    np.savez(f, **sets)
  os.replace(partial, path)
  return sets


def robustness_row(study_row: dict[str, Any], sets: dict[str, np.ndarray],
                   labels: dict[str, np.ndarray], root: Path = common.REPO
                   ) -> dict[str, Any]:
  """One cell's accuracy on every set of :func:`corrupted_test_sets`, and on
  ``"lossless"`` and ``"jpeg"`` (the same images from the test set) where
  given; ``labels`` maps a set to its labels, ``"test"`` to the test set's."""
  state, _, cfg = load_train_state(root / study_row["workdir"])
  ds = run_dataset(cfg)
  eval_step = jax.jit(make_eval_step(get_model(cfg.model, ds.num_classes), ds.mean, ds.std))

  def accuracy(name):
    return analysis.accuracy(eval_step, state.params, state.batch_stats, sets[name],
                             labels.get(name, labels["test"]), BATCH)

  per = {name: [accuracy(f"{name}/{s}") for s in cifar10_c.SEVERITIES]
         for name in cifar10_c.CORRUPTIONS}
  keys = ("cell", "setting", "model", "sparsity", "variant", "seed", "test_set")
  row = dict({k: study_row[k] for k in keys}, clean=accuracy("clean"),
             corrupted=per, corruption_accuracy=float(np.mean(list(per.values()))))
  if "lossless" in sets:
    row["jpeg_check"] = {"images": int(sets["lossless"].shape[0]),
                         "lossless": accuracy("lossless"), "test_set": accuracy("jpeg")}
  return row


def read_rows(path: Path = ROWS) -> list[dict[str, Any]]:
  """The robustness rows, the last one of each cell (a re-evaluation replaces)."""
  rows = common.read_rows_any(path) if path.exists() else []
  return list({r["cell"]: r for r in rows}.values())


class Evaluator:
  """Adds the robustness rows of study rows that lack one (sets built once per size).

  Args:
    x_test: the study's ``(N, 32, 32, 3)`` ``uint8`` test images.
    y_test: their ``(N,)`` labels.
    lossless: ``None``, or ``(images, labels, positions)``: some test images
      without JPEG and where they sit in ``x_test``
      (:func:`zosam_jax.train.data.cifar10_lossless_check`); a row without its
      ``jpeg_check`` is then evaluated again.
    path: the robustness rows.
    root: what the study rows' ``workdir`` is relative to.
    cache: where the corrupted test sets are kept (:func:`cached_test_sets`).

  Raises:
    ValueError: if ``lossless`` does not match ``x_test`` at its positions.
  """

  def __init__(self, x_test: np.ndarray, y_test: np.ndarray, lossless=None,
               path: Path = ROWS, root: Path = common.REPO, cache: Path | None = CACHE):
    if lossless is not None and (lossless[0].shape[1:] != x_test.shape[1:] or not
                                 np.array_equal(lossless[1], y_test[lossless[2]])):
      raise ValueError("the lossless images and labels do not match the test set at "
                       "their positions")
    self.x_test, self.y_test, self.lossless = x_test, y_test, lossless
    self.path, self.root, self.cache = path, root, cache
    self._sets: dict[int | None, dict[str, np.ndarray]] = {}

  def pending(self, study_rows) -> list[dict[str, Any]]:
    """Study rows with a checkpoint here and no (complete) robustness row yet."""
    done = {r["cell"] for r in read_rows(self.path)
            if self.lossless is None or "jpeg_check" in r}
    return [r for r in study_rows if r["cell"] not in done
            and (self.root / r["workdir"] / "checkpoints").exists()]

  def sets(self, image_size: int | None) -> dict[str, np.ndarray]:
    if image_size not in self._sets:
      sets = cached_test_sets(self.x_test, image_size, self.cache)
      if self.lossless is not None:
        size = sets["clean"].shape[1]
        sets["lossless"] = pool_images(self.lossless[0], size)
        sets["jpeg"] = sets["clean"][self.lossless[2]]
      self._sets[image_size] = sets
    return self._sets[image_size]

  def labels(self) -> dict[str, np.ndarray]:
    if self.lossless is None:
      return {"test": self.y_test}
    return {"test": self.y_test, "lossless": self.lossless[1], "jpeg": self.lossless[1]}

  def __call__(self, study_rows) -> list[dict[str, Any]]:
    new = []
    for r in self.pending(study_rows):
      row = robustness_row(r, self.sets(r["config"].get("image_size")), self.labels(),
                           self.root)
      common.append_row(self.path, row)
      print(f"{r['cell']}: corrupted {row['corruption_accuracy']:.4f} "
            f"(clean {row['clean']:.4f})", flush=True)
      new.append(row)
    return new
