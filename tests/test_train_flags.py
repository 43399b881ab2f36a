"""Flags for data-parallel training (`--devices`), dense first/last layers, the
ascent options and their schedule."""

import json

import chex
import numpy as np
import jax
import optax
import pytest

from zosam_jax.train import TrainConfig
from zosam_jax.train import cli
from zosam_jax.train import optim
from zosam_jax.train import load_train_state
from zosam_jax.train import run_dataset

FLAGS = ["--steps", "12", "--batch-size", "64", "--eval-every", "12",
         "--log-every", "6", "--checkpoint-every", "0", "--no-progress",
         "--optimizer", "zosam", "--sparsity", "0.9", "--sparse-method", "rigl",
         "--sparse-update-every", "5"]


@pytest.mark.slow  # One run on 8 simulated devices and its one-device twin.
@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_all_devices_train_like_one_device(tmp_path):
  assert cli.main(FLAGS + ["--devices", "1", "--workdir", str(tmp_path / "one")]) == 0
  assert cli.main(FLAGS + ["--devices", "all", "--workdir",
                           str(tmp_path / "all")]) == 0
  one, _, _ = load_train_state(tmp_path / "one")
  many, _, cfg = load_train_state(tmp_path / "all")
  assert cfg.devices == "all"
  chex.assert_trees_all_close(many.params, one.params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_equal(optax.tree.get(many.opt_state, "masks"),
                              optax.tree.get(one.opt_state, "masks"))


@pytest.mark.parametrize(("devices", "batch", "match"), [
    ("0", "64", "--devices must be 'all' or a positive integer"),
    ("two", "64", "--devices must be 'all' or a positive integer"),
    ("3", "64", "--batch-size 64 must be divisible"),
    ("1000", "64", "--devices 1000 asks for 1000 devices"),
])
def test_bad_devices_flag_names_the_flag(tmp_path, capsys, devices, batch, match):
  argv = ["--devices", devices, "--batch-size", batch, "--steps", "2",
          "--no-progress", "--workdir", str(tmp_path)]
  try:
    code = cli.main(argv)
  except SystemExit as e:
    code = e.code
  assert code == 2
  assert match in capsys.readouterr().err


def test_dense_first_last_keeps_the_first_and_last_layers_dense(tmp_path):
  argv = ["--steps", "3", "--batch-size", "32", "--no-progress",
          "--sparsity", "0.9", "--sparse-method", "static",
          "--dense-first-last", "--workdir", str(tmp_path)]
  assert cli.main(argv) == 0
  state, _, _ = load_train_state(tmp_path)
  masks = optax.tree.get(state.opt_state, "masks")
  kernels = [m for m in jax.tree.leaves(masks) if m.ndim > 1]
  assert kernels[0].all() and kernels[-1].all()
  assert not all(m.all() for m in kernels[1:-1])


def test_dense_first_last_needs_a_sparse_method(tmp_path, capsys):
  try:
    code = cli.main(["--dense-first-last", "--workdir", str(tmp_path)])
  except SystemExit as e:
    code = e.code
  assert code == 2
  assert "--dense-first-last needs a --sparse-method" in capsys.readouterr().err


def _exit_code(argv):
  try:
    return cli.main(argv)
  except SystemExit as e:
    return e.code


@pytest.mark.parametrize("init", [pytest.param("snip", marks=pytest.mark.slow), "magnitude"])
def test_sparse_init_builds_static_masks_by_that_criterion(tmp_path, init):
  base = ["--steps", "2", "--batch-size", "32", "--no-progress", "--sparsity", "0.9",
          "--sparse-method", "static", "--optimizer", "sgd"]
  assert cli.main(base + ["--workdir", str(tmp_path / "random")]) == 0
  assert cli.main(base + ["--sparse-init", init, "--workdir", str(tmp_path / init)]) == 0
  masks = [optax.tree.get(load_train_state(tmp_path / name)[0].opt_state, "masks")
           for name in ("random", init)]
  densities = [[float(m.mean()) for m in jax.tree.leaves(t)] for t in masks]
  assert densities[0] == pytest.approx(densities[1], abs=0.01)
  assert any(bool((a != b).any()) for a, b in zip(*map(jax.tree.leaves, masks)))


@pytest.mark.parametrize(("flags", "message"), [
    (["--sparse-init", "snip", "--sparse-method", "rigl", "--sparsity", "0.9"],
     "--sparse-init snip needs --sparse-method static"),
    (["--sparse-init", "grasp"], "invalid choice"),
    (["--zo-prior", "gradient", "--optimizer", "sgd"], "--zo-prior only applies"),
    (["--adaptive", "--optimizer", "sgd"], "--adaptive only applies"),
    (["--num-dirs", "0"], "--num-dirs must be a positive integer"),
    (["--zo-prior", "momentum", "--momentum", "0"], "--zo-prior momentum reads"),
    (["--train-subset", "3"], "--train-subset must be an integer of at least 10"),
    (["--validation-subset", "5"], "--validation-subset must be an integer of at least 10"),
    (["--label-noise", "1.0"], "--label-noise must be a fraction in [0, 1)"),
    (["--label-noise", "-0.1"], "--label-noise must be a fraction in [0, 1)"),
    (["--dataset", "cifar10", "--crop-pad", "-1"], "--crop-pad must be a non-negative integer"),
    (["--crop-pad", "2"], "--crop-pad only applies to the CIFAR datasets"),
    (["--no-augment"], "--no-augment only applies to the CIFAR datasets"),
    (["--dataset", "cifar10", "--no-augment", "--crop-pad", "2"],
     "drop it with --no-augment"),
    (["--ascent-start", "0.5", "--optimizer", "sgd"], "--ascent-start only applies"),
    (["--ascent-every", "2", "--optimizer", "looksam"], "--ascent-every only applies"),
    (["--ascent-start", "2.5"], "--ascent-start must be a fraction of the run in (0, 1)"),
    (["--ascent-start", "-1"], "--ascent-start must be a fraction of the run in (0, 1)"),
    (["--ascent-every", "0"], "--ascent-every must be a positive integer"),
])
def test_new_flags_reject_bad_values_naming_the_flag(tmp_path, capsys, flags, message):
  assert _exit_code(flags + ["--workdir", str(tmp_path)]) == 2
  assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags", [
    ["--zo-prior", "gradient", "--num-dirs", "0"],
    ["--zo-prior", "momentum", "--num-dirs", "0"],
    ["--adaptive", "--rho", "0.5"],
    ["--estimator", "random"],
    ["--optimizer", "sam", "--adaptive", "--rho", "0.5"],
])
def test_ascent_options_train(tmp_path, flags):
  argv = ["--steps", "4", "--batch-size", "32", "--no-progress", "--log-every", "2",
          "--workdir", str(tmp_path)] + flags
  assert cli.main(argv) == 0
  state, _, cfg = load_train_state(tmp_path)
  assert bool(jax.tree.reduce(lambda a, b: a & b, jax.tree.map(
      lambda p: jax.numpy.isfinite(p).all(), state.params)))
  if cfg.zo_prior == "gradient":
    assert float(optax.tree.norm(optax.tree.get(state.opt_state, "prior"))) > 0


def test_label_noise_flips_the_same_training_labels_for_every_seed_and_not_the_test_set():
  from zosam_jax.train import config as config_lib  # pylint: disable=import-outside-toplevel
  clean = run_dataset(config_lib.TrainConfig(dataset="digits"))
  runs = [run_dataset(config_lib.TrainConfig(dataset="digits", label_noise=0.4, seed=s))
          for s in (0, 1)]
  flipped = runs[0].y_train != clean.y_train
  assert flipped.mean() == pytest.approx(0.4, abs=1 / clean.y_train.shape[0])
  np.testing.assert_array_equal(runs[0].y_train, runs[1].y_train)
  np.testing.assert_array_equal(runs[0].y_test, clean.y_test)
  assert set(np.unique(runs[0].y_train)) == set(range(10))
  assert "40% of the training labels" in runs[0].note


@pytest.mark.parametrize(("flags", "on_steps"), [
    (["--ascent-start", "0.75"], 5),          # The last quarter of 20 steps.
    (["--ascent-start", "12", "--ascent-every", "3"], 3),   # Steps 12, 15, 18.
    (["--ascent-every", "4"], 5),
])
def test_the_ascent_schedule_is_spent_as_flagged_and_counted_in_the_summary(
    tmp_path, flags, on_steps):
  argv = ["--optimizer", "sam", "--steps", "20", "--batch-size", "32", "--no-progress",
          "--log-every", "1", "--eval-every", "20", "--workdir", str(tmp_path)] + flags
  assert cli.main(argv) == 0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  # An off step evaluates no perturbed point: its sharpness is exactly 0.
  perturbed = [r["step"] - 1 for r in records if r["split"] == "train" and r["sharpness"]]
  cfg = TrainConfig(optimizer="sam", steps=20, **{
      "ascent_start": float(flags[1]) if flags[0] == "--ascent-start" else None,
      "ascent_every": int(flags[-1]) if "--ascent-every" in flags else None})
  expected = [t for t in range(20) if optim.step_flags(cfg, t, 20)["ascent"]]
  assert perturbed == expected and len(expected) == on_steps
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert (summary["backward_passes"], summary["forward_passes"]) == (
      20 + on_steps, 20 + on_steps)
