"""``--seeds``: K seeds of one configuration as one jax.vmap-ed program."""

import json
import shlex

import chex
import jax
import numpy as np
import pytest

from zosam_jax.train import ConfigError
from zosam_jax.train import TrainConfig
from zosam_jax.train import cli
from zosam_jax.train import load_train_state
from zosam_jax.train import parse_seeds
from zosam_jax.train import data
from zosam_jax.train import train_and_evaluate
from zosam_jax.train import train_seeds
from zosam_jax.train import validate
from zosam_jax.train import seeds as seeds_lib

FLAGS = ["--model", "mlp", "--steps", "30", "--eval-every", "10", "--log-every", "5",
         "--checkpoint-every", "20", "--batch-size", "64", "--no-progress"]
# ZO-SAM's prior with SET: per-seed init, masks, random regrowth, data order and
# directions all enter the run.
ZO_SET = TrainConfig(model="mlp", optimizer="zosam", zo_prior="gradient", steps=20,
                     eval_every=10, log_every=5, checkpoint_every=20, batch_size=64,
                     sparse_method="set", sparsity=0.8, sparse_update_every=10,
                     progress=False)
# BatchNorm statistics per seed, RigL's mask updates, SAM's two passes. Few
# steps at a small learning rate: at lr 0.1 this run amplifies rounding from its
# third step on (a 1e-7 change of its initial weights grows to 1e-2 within 8
# steps), so no tolerance could tell the program from a different run there.
SAM_RIGL_BN = TrainConfig(model="resnet20", optimizer="sam", steps=4, lr=0.01,
                          eval_every=2, log_every=2, checkpoint_every=2, batch_size=32,
                          sparse_method="rigl", sparsity=0.9, sparse_update_every=2,
                          progress=False)
# The program computes the K steps as one batched step: equal to float
# rounding (measured on CPU: 3e-8 after 30 steps of ZO_SET, now 20 steps; after 4 steps of
# SAM_RIGL_BN, 1.7e-5 on 1 of 18,432 weights of a kernel, 2.5e-6 elsewhere).
TOLERANCE = dict(rtol=1e-4, atol=1e-5)
TOLERANCE_BN = dict(rtol=1e-3, atol=1e-4)


def _close(a, b, tolerance):
  chex.assert_trees_all_close(jax.tree.map(np.asarray, (a.params, a.batch_stats)),
                              jax.tree.map(np.asarray, (b.params, b.batch_stats)),
                              **tolerance)


# SGD on RigL: the plain step, its mask updates under the shared count.
SGD_RIGL = ZO_SET.replace(optimizer="sgd", zo_prior="none", sparse_method="rigl")
# SAM on RigL in the late phase, every other step: both compiled steps, mapped.
SAM_LATE = SGD_RIGL.replace(optimizer="sam", ascent_start=0.5, ascent_every=2)


@pytest.mark.slow  # Each config trains as a program and as separate runs.
@pytest.mark.parametrize("cfg", [ZO_SET, SGD_RIGL, SAM_LATE, SAM_RIGL_BN],
                         ids=["zosam-prior-set", "sgd-rigl", "sam-late-rigl", "sam-rigl-bn"])
def test_each_seed_of_a_program_is_its_single_seed_run(tmp_path, cfg):
  seeds = (3, 5) if cfg is SAM_RIGL_BN else (0, 1, 2)
  program = train_seeds(cfg.replace(seeds=seeds), tmp_path / "program")
  for seed, summary in zip(seeds, program):
    single = train_and_evaluate(cfg.replace(seed=seed), tmp_path / f"single{seed}")
    _close(load_train_state(tmp_path / "program" / f"seed{seed}")[0],
           load_train_state(tmp_path / f"single{seed}")[0],
           TOLERANCE_BN if cfg is SAM_RIGL_BN else TOLERANCE)
    assert summary["final_test_accuracy"] == pytest.approx(
        single["final_test_accuracy"], abs=1 / 360)
    assert summary["seed"] == seed and summary["program_seeds"] == list(seeds)
  # The seeds differ from one another (nothing shared by accident).
  first, second = (load_train_state(tmp_path / "program" / f"seed{s}")[0] for s in seeds[:2])
  assert not np.allclose(jax.tree.leaves(first.params)[-1],
                         jax.tree.leaves(second.params)[-1])


def test_each_seed_has_the_usual_files_and_its_own_config(tmp_path):
  assert cli.main(FLAGS + ["--seeds", "0-1", "--workdir", str(tmp_path)]) == 0
  for seed in (0, 1):
    folder = tmp_path / f"seed{seed}"
    assert {p.name for p in folder.iterdir()} >= {
        "config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints"}
    saved = json.loads((folder / "config.json").read_text())
    assert saved["seed"] == seed and saved["seeds"] == []
    assert saved["workdir"] == str(folder)


def _interrupt_at(monkeypatch, step):
  original = data.BatchOrder.indices

  def indices(self, s):
    if s == step:
      raise KeyboardInterrupt
    return original(self, s)

  monkeypatch.setattr(data.BatchOrder, "indices", indices)
  return lambda: monkeypatch.setattr(data.BatchOrder, "indices", original)


def test_an_interrupted_program_resumes_every_seed(tmp_path, capsys, monkeypatch):
  argv = FLAGS + ["--optimizer", "zosam", "--seeds", "0,2"]
  assert cli.main(argv + ["--workdir", str(tmp_path / "full")]) == 0
  undo = _interrupt_at(monkeypatch, 25)
  assert cli.main(argv + ["--workdir", str(tmp_path / "int")]) == 130
  line = next(l for l in capsys.readouterr().err.splitlines()
              if l.startswith("  zosam-train"))
  command = shlex.split(line)[1:]
  assert "--seeds" in command and "0,2" in command and command[-1] == "--resume"
  undo()
  # A damaged seed: its newest checkpoint gone; every seed restarts from the
  # newest step they all have (20), and still ends where the full run did.
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.rmtree(tmp_path / "int" / "seed2" / "checkpoints" / "25")
  assert cli.main(command) == 0
  assert "resumed at step 20" in capsys.readouterr().out
  for seed in (0, 2):
    a = load_train_state(tmp_path / "int" / f"seed{seed}")[0]
    b = load_train_state(tmp_path / "full" / f"seed{seed}")[0]
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-7)
    records = [json.loads(l) for l in
               (tmp_path / "int" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "test"] == [10, 20, 30]
  assert cli.main(command) == 0
  assert "already finished" in capsys.readouterr().out


def test_resume_without_a_common_checkpoint_says_what_to_do(tmp_path, capsys):
  argv = FLAGS + ["--steps", "20", "--seeds", "0-1", "--workdir", str(tmp_path)]
  assert cli.main(argv + ["--stop-after", "20"]) == 0
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.rmtree(tmp_path / "seed1" / "checkpoints")
  (tmp_path / "seed0" / "summary.json").unlink()
  assert cli.main(argv + ["--resume"]) == 1
  err = capsys.readouterr().err
  assert "share no checkpoint step" in err and "--overwrite" in err


@pytest.mark.parametrize(("text", "seeds"), [
    ("0-5", (0, 1, 2, 3, 4, 5)), ("0,1,2", (0, 1, 2)), ("0-2,7", (0, 1, 2, 7)),
    (" 4 ", (4,)), ("3-3", (3,))])
def test_seed_lists(text, seeds):
  assert parse_seeds(text) == seeds


@pytest.mark.parametrize(("flags", "message"), [
    (["--seeds", ""], "--seeds needs at least one seed"),
    (["--seeds", ","], "--seeds needs at least one seed"),
    (["--seeds", "0,0"], "--seeds lists seed 0 more than once"),
    (["--seeds", "0-3,2"], "--seeds lists seed 2 more than once"),
    (["--seeds", "3-1"], "got '3-1'"),
    (["--seeds", "a"], "got 'a'"),
    (["--seeds", "-1"], "got '-1'"),
    (["--seeds", "0-2", "--compare", "sgd,sam"], "--seeds and --compare cannot be combined"),
    (["--seeds", "0-2", "--seed", "4"], "--seed 4 and --seeds are exclusive"),
    (["--seeds", "0-2", "--devices", "2"], "drop --devices 2"),
])
def test_bad_seeds_are_refused_before_anything_is_written(tmp_path, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(FLAGS + flags + ["--workdir", str(tmp_path / "run")])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def test_the_python_entry_points_say_which_to_call(tmp_path):
  with pytest.raises(ConfigError, match="call train_seeds"):
    train_and_evaluate(ZO_SET.replace(seeds=(0, 1)), tmp_path)
  with pytest.raises(ConfigError, match="needs config.seeds"):
    train_seeds(ZO_SET, tmp_path)
  with pytest.raises(ConfigError, match="more than once"):
    validate(ZO_SET.replace(seeds=(1, 1)))  # replace copies; the programs validate.


def test_shared_step_counters_stay_unmapped():
  states = [seeds_lib.steps_lib.TrainState(
      np.int32(5), {"w": np.full(3, float(s))}, {}, (np.int32(7), np.int32(s)),
      seeds_lib.steps_lib.MetricSums.zeros()) for s in range(3)]
  axes = seeds_lib.state_axes(states)
  assert axes.step is None and axes.opt_state == (None, 0) and axes.params["w"] == 0
  assert all(a == 0 for a in axes.metrics)  # Each seed's own first non-finite step.
  stacked = seeds_lib.stack(states, axes)
  assert stacked.params["w"].shape == (3, 3) and np.shape(stacked.step) == ()
  np.testing.assert_array_equal(seeds_lib.select(stacked, axes, 2).params["w"], [2.0] * 3)


def test_a_nonfinite_loss_stops_the_program_and_every_seed_keeps_a_finite_checkpoint(
    tmp_path, capsys):
  argv = FLAGS + ["--seeds", "0-1", "--optimizer", "sgd", "--lr", "1e4", "--schedule",
                  "constant", "--warmup-steps", "0", "--log-every", "1",
                  "--checkpoint-every", "1", "--workdir", str(tmp_path)]
  assert cli.main(argv) == 3
  err = capsys.readouterr().err
  assert "NaN or infinite at step" in err and str(tmp_path / "seed0") in err
  bad_step = int(err.split("at step ")[1].split(";")[0])
  for seed in (0, 1):
    state, meta, _ = load_train_state(tmp_path / f"seed{seed}")
    assert 0 < meta["step"] < bad_step
    chex.assert_tree_all_finite(state.params)
