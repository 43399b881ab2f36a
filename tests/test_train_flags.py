"""Flags for data-parallel training (`--devices`) and dense first/last layers."""

import chex
import jax
import optax
import pytest

from zosam_jax.train import cli
from zosam_jax.train import loop

FLAGS = ["--steps", "12", "--batch-size", "64", "--eval-every", "12",
         "--log-every", "6", "--checkpoint-every", "0", "--no-progress",
         "--optimizer", "zosam", "--sparsity", "0.9", "--sparse-method", "rigl",
         "--sparse-update-every", "5"]


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_all_devices_train_like_one_device(tmp_path):
  assert cli.main(FLAGS + ["--devices", "1", "--workdir", str(tmp_path / "one")]) == 0
  assert cli.main(FLAGS + ["--devices", "all", "--workdir",
                           str(tmp_path / "all")]) == 0
  one, _, _ = loop.load_train_state(tmp_path / "one")
  many, _, cfg = loop.load_train_state(tmp_path / "all")
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
  state, _, _ = loop.load_train_state(tmp_path)
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
