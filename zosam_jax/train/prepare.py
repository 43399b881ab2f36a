"""What a run is built from: its dataset, and its optimizer and state at step 0.

Both are pure functions of the configuration, so :mod:`zosam_jax.train.loop`
(training), :mod:`zosam_jax.train.evaluation` (restoring a checkpoint) and a
K-seed program (one initial state per seed) build them the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import optim
from zosam_jax.train import pipeline
from zosam_jax.train import steps as steps_lib


def run_dataset(cfg: config_lib.TrainConfig,
                dataset: data_lib.Dataset | None = None) -> data_lib.Dataset:
  """The data a run trains, validates and tests on: ``--dataset`` at
  ``--image-size``, cut to ``--train-subset`` with ``--validation-subset``
  held out, with ``--label-noise`` (training labels only).

  Args:
    cfg: the run's configuration.
    dataset: the full dataset if already loaded (else loaded from ``cfg``).

  Returns:
    The :class:`~zosam_jax.train.data.Dataset` of the run (the same for every
    ``--seed``: the subset and the noisy labels have their own fixed seeds).

  Raises:
    ConfigError: if ``--train-subset`` exceeds the training set or
      ``--image-size`` does not divide the images.
  """
  ds = dataset if dataset is not None else data_lib.load_dataset(
      cfg.dataset, cfg.data_dir, download=cfg.download, cifar10_test=cfg.cifar10_test)
  try:
    if cfg.image_size is not None:
      ds = data_lib.average_pool(ds, cfg.image_size)
    if cfg.train_subset is not None or cfg.validation_subset is not None:
      ds = data_lib.stratified_subset(ds, cfg.train_subset,
                                      validation=cfg.validation_subset)
    ds = data_lib.noisy_labels(ds, cfg.label_noise)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  return ds


def check_against_data(cfg: config_lib.TrainConfig, num_train: int,
                       num_steps: int) -> None:
  """Flag values that only the data size can show to be impossible."""
  if cfg.batch_size > num_train:
    raise config_lib.ConfigError(
        f"--batch-size {cfg.batch_size} exceeds the {num_train} training examples")
  if cfg.warmup_steps is not None and cfg.warmup_steps >= num_steps:
    raise config_lib.ConfigError(
        f"--warmup-steps {cfg.warmup_steps} must be less than the run's {num_steps} "
        "steps (the learning rate would never decay)")


def _snip_loss_fn(cfg, model, ds):
  """``params -> loss`` on the run's first minibatch (for ``--sparse-init snip``)."""
  if cfg.sparse_init != "snip":
    return None
  indices = pipeline.BatchOrder(cfg.seed, ds.x_train.shape[0], cfg.batch_size).indices(0)
  images = pipeline.normalize(jnp.asarray(ds.x_train[indices]), ds.mean, ds.std)
  loss_fn = steps_lib.make_loss_fn(model, {}, images, jnp.asarray(ds.y_train[indices]))
  return lambda params: loss_fn(params)[0]


def initial_state(cfg: config_lib.TrainConfig, model: Any, ds: data_lib.Dataset,
                  num_steps: int
                  ) -> tuple[steps_lib.TrainState, optax.GradientTransformation,
                             optax.Schedule]:
  """The run's optimizer and its state at step 0, from ``cfg.seed``.

  The seed enters the initial weights (``fold_in(key(seed), 0)``), the
  initial masks and ZO-SAM's key (both in ``tx.init``); ``tx.update`` does not
  depend on it, so one seed's ``tx`` steps every seed's state.

  Args:
    cfg: the run's configuration.
    model: the model.
    ds: the run's dataset (its image shape; the first minibatch for SNIP).
    num_steps: the run's total steps (schedules).

  Returns:
    ``(state, tx, schedule)``.
  """
  tx, schedule = optim.build_optimizer(cfg, num_steps, _snip_loss_fn(cfg, model, ds))
  example = np.zeros((1,) + ds.x_train.shape[1:], np.float32)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
  return steps_lib.init_train_state(model, tx, example, key), tx, schedule


def augment_key(cfg: config_lib.TrainConfig) -> jax.Array:
  """The run's augmentation key; step ``s`` uses ``fold_in(key, s)``."""
  return jax.random.fold_in(jax.random.key(cfg.seed), 1)
