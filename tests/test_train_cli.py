"""End-to-end tests of ``zosam-train`` on the bundled digits data."""

import json
import shutil

import chex
import numpy as np
import pytest

from zosam_jax.train import cli
from zosam_jax.train import evaluate_checkpoint
from zosam_jax.train import load_train_state
from zosam_jax.train import report
from zosam_jax.train import validation

# Short runs: 8x8 digits, the MLP, no progress bar.
FAST = ["--model", "mlp", "--steps", "40", "--eval-every", "20", "--log-every", "10",
        "--checkpoint-every", "20", "--batch-size", "64", "--no-progress"]
TIMING_KEYS = ("steps_per_second", "train_seconds")


def _run(workdir, *flags):
  return cli.main([*FAST, "--workdir", str(workdir), *flags])


def _records_without_timings(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS}
          for r in report.read_metrics(workdir / "metrics.jsonl")]


ZO_FLAGS = ["--num-dirs", "2", "--zo-batch-fraction", "0.5"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
  """One ``--compare sgd,sam,zosam`` run: a full run of each optimizer."""
  workdir = tmp_path_factory.mktemp("compare")
  assert _run(workdir, "--compare", "sgd,sam,zosam", *ZO_FLAGS) == 0
  return workdir


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "zosam"])
def test_each_optimizer_trains_digits_and_writes_outputs(compared, optimizer):
  run = compared / optimizer
  summary = json.loads((run / "summary.json").read_text())
  assert summary["optimizer"] == optimizer
  assert summary["status"] == "finished" and summary["steps"] == 40
  assert summary["final_test_accuracy"] > 0.5  # Chance is 0.1.
  records = report.read_metrics(run / "metrics.jsonl")
  assert [r["step"] for r in records if r["split"] == "test"] == [20, 40]
  assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30, 40]
  assert ("sharpness" in records[0]) == (optimizer != "sgd")
  assert (run / "curves.png").stat().st_size > 10_000
  assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()
                if p.name.isdigit()) == [20, 40]
  state, meta, cfg = load_train_state(run)
  assert meta["step"] == 40 and int(state.step) == 40
  assert cfg.num_dirs == (2 if optimizer == "zosam" else 1)


def test_compare_writes_one_table_and_one_figure(compared):
  table = json.loads((compared / "comparison.json").read_text())
  assert [r["optimizer"] for r in table["rows"]] == ["sgd", "sam", "zosam"]
  assert table["rows"][0]["relative_step_time"] == 1.0
  assert (compared / "comparison.md").read_text().startswith("| optimizer |")
  assert (compared / "comparison.png").stat().st_size > 10_000


def test_sparse_rigl_zosam_keeps_the_target_sparsity(tmp_path):
  assert _run(tmp_path, "--sparsity", "0.8", "--sparse-method", "rigl",
              "--sparse-update-every", "10") == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["weight_sparsity"] == pytest.approx(0.8, abs=0.01)
  assert summary["final_test_accuracy"] > 0.5
  state, _, _ = load_train_state(tmp_path)
  masks = state.opt_state.base_tx_state.masks
  kernel = state.params["Dense_1"]["kernel"]
  chex.assert_trees_all_equal(kernel * ~masks["Dense_1"]["kernel"],
                              np.zeros_like(kernel))


def test_resumed_run_matches_uninterrupted_run_exactly(compared, tmp_path):
  # Stopping at 25 is off the log grid: the unlogged metric sums of steps
  # 21..25 must travel in the checkpoint, with the ZO key and the momentum.
  full = compared / "zosam"
  flags = ["--optimizer", "zosam", *ZO_FLAGS]
  assert _run(tmp_path, *flags, "--stop-after", "25") == 0
  assert json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped"
  assert _run(tmp_path, *flags, "--resume") == 0

  full_state, _, _ = load_train_state(full)
  resumed_state, meta, _ = load_train_state(tmp_path)
  assert meta["step"] == 40
  chex.assert_trees_all_equal(full_state, resumed_state)
  assert _records_without_timings(full) == _records_without_timings(tmp_path)


@pytest.mark.parametrize("flags", [
    pytest.param(["--optimizer", "looksam", "--refresh-every", "3"], marks=pytest.mark.slow),
    pytest.param(["--optimizer", "zosam", "--zo-prior", "gradient", "--num-dirs", "0",
                  "--refresh-every", "3", "--radius-cap", "2"], marks=pytest.mark.slow),
    ["--optimizer", "msam", "--rho", "0.1"],
    ["--optimizer", "zosam", "--zo-prior", "gradient", "--num-dirs", "0", "--no-zo-probe"],
    ["--optimizer", "zosam", "--zo-prior", "gradient", "--num-dirs", "0", "--no-zo-probe",
     "--zo-exact-head", "--zo-batch-fraction", "0.5"],
    ["--optimizer", "zosam", "--zo-prior", "gradient", "--num-dirs", "0", "--no-zo-probe",
     "--repeat-batches", "2"],
], ids=["looksam", "zosam-refresh-cap", "msam", "zosam-unprobed", "zosam-exact-head",
        "zosam-unprobed-repeat"])
def test_ascent_variants_train_and_resume_exactly(flags, tmp_path):
  # 25 is not a multiple of the period: the exact steps follow the step count
  # (and it stops between a repeated minibatch's two steps).
  assert _run(tmp_path / "full", *flags) == 0
  assert _run(tmp_path / "resumed", *flags, "--stop-after", "25") == 0
  assert _run(tmp_path / "resumed", *flags, "--resume") == 0
  summary = json.loads((tmp_path / "full" / "summary.json").read_text())
  assert summary["final_test_accuracy"] > 0.5
  chex.assert_trees_all_equal(load_train_state(tmp_path / "full")[0],
                              load_train_state(tmp_path / "resumed")[0])
  records = _records_without_timings(tmp_path / "full")
  assert records == _records_without_timings(tmp_path / "resumed")
  # MSAM and the unprobed prior evaluate no loss at θ: no sharpness recorded
  # (the exact output layer's forward pass evaluates it).
  assert ("sharpness" in records[0]) == ("msam" not in flags and (
      "--no-zo-probe" not in flags or "--zo-exact-head" in flags))


def test_resume_with_different_flags_names_them(compared, tmp_path, capsys):
  shutil.copytree(compared / "sgd", tmp_path / "run")
  assert _run(tmp_path / "run", "--optimizer", "sgd", "--lr", "0.5",
              "--resume") == 1
  assert "--lr (checkpoint: 0.1, now: 0.5)" in capsys.readouterr().err


def test_existing_workdir_needs_resume_or_overwrite(compared, tmp_path, capsys):
  shutil.copytree(compared / "sgd", tmp_path / "run")
  assert _run(tmp_path / "run", "--optimizer", "sgd") == 1
  assert "--resume" in capsys.readouterr().err


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
  code = _run(tmp_path, "--optimizer", "sgd", "--lr", "1e4", "--schedule",
              "constant", "--warmup-steps", "0", "--log-every", "1",
              "--checkpoint-every", "1")
  assert code == 3
  err = capsys.readouterr().err
  assert "NaN or infinite at step" in err
  bad_step = int(err.split("at step ")[1].split(";")[0])
  state, meta, _ = load_train_state(tmp_path)
  assert 0 < meta["step"] < bad_step
  chex.assert_tree_all_finite(state.params)
  assert evaluate_checkpoint(tmp_path)["params_finite"]


@pytest.mark.parametrize("flags, message", [
    (["--sparsity", "0.9"], "--sparse-method"),
    (["--sparsity", "1.2", "--sparse-method", "rigl"],
     "--sparsity must be in [0, 1), got 1.2"),
    (["--sparse-method", "set"], "--sparsity"),
    (["--num-dirs", "0"], "--num-dirs must be a positive integer, got 0"),
    (["--optimizer", "adam"], "--optimizer"),
    (["--model", "resnet7"], "--model"),
    (["--dataset", "imagenet"], "--dataset"),
    (["--steps", "10", "--epochs", "2"], "--epochs"),
    (["--zo-batch-fraction", "0"], "--zo-batch-fraction"),
    (["--optimizer", "sam", "--ascent-batch-fraction", "1.5"],
     "--ascent-batch-fraction must be in (0, 1], got 1.5"),
    (["--optimizer", "zosam", "--ascent-batch-fraction", "0.5"],
     "--ascent-batch-fraction only applies to --optimizer sam"),
    (["--no-zo-probe"], "--no-zo-probe perturbs along the last gradient"),
    (["--zo-prior", "gradient", "--num-dirs", "0", "--radius-cap", "4", "--no-zo-probe"],
     "no --radius-cap"),
    (["--optimizer", "sam", "--no-zo-probe"], "--zo-probe only applies to --optimizer zosam"),
    (["--zo-prior", "gradient", "--num-dirs", "0", "--zo-exact-head"],
     "--zo-exact-head replaces the last gradient"),
    (["--optimizer", "sgd", "--zo-exact-head"], "--zo-exact-head only applies"),
    (["--optimizer", "sgd", "--num-dirs", "4"], "--num-dirs"),
    (["--lr", "-1"], "--lr"),
    (["--compare", "sgd,adam"], "--compare"),
    (["--steps", "10", "--stop-after", "20"], "--stop-after"),
])
def test_invalid_flags_are_rejected_naming_the_flag(flags, message, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(flags)
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_help_lists_every_flag(capsys):
  with pytest.raises(SystemExit):
    cli.main(["--help"])
  out = capsys.readouterr().out
  for flag in ("--zo-batch-fraction", "--sparse-distribution", "--resume",
               "--compare", "--zo-distribution", "--checkpoint-every"):
    assert flag in out


@pytest.mark.slow
def test_one_optimizer_run_reaches_high_accuracy(tmp_path):
  assert cli.main(["--optimizer", "zosam", "--workdir", str(tmp_path), "--no-progress"]) == 0
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["final_test_accuracy"] > 0.9


def test_no_flags_run_the_default_comparison(monkeypatch, capsys):
  ran = []
  monkeypatch.setattr(cli, "_run", lambda cfg: ran.append(cfg) or 0)
  assert cli.main([]) == 0
  [cfg] = ran
  assert cfg.compare == ("sgd", "sam", "zosam", "zosam-prior-head")
  assert (cfg.sparse_method, cfg.sparsity, cfg.dataset) == ("rigl", 0.9, "digits")
  out = capsys.readouterr().out
  assert "zosam-train --compare sgd,sam,zosam,zosam-prior-head" in out
  assert "One optimizer: zosam-train --optimizer zosam" in out
  assert not cfg.resume


def test_no_flags_again_continue_the_default_comparison(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "runs/default").mkdir(parents=True)
  (tmp_path / "runs/default/compare.json").write_text("{}")
  ran = []
  monkeypatch.setattr(cli, "_run", lambda cfg: ran.append(cfg) or 0)
  assert cli.main([]) == 0
  assert ran[0].resume and ran[0].compare == ("sgd", "sam", "zosam", "zosam-prior-head")


def test_a_preset_member_is_its_optimizer_with_its_flags():
  cfg = cli.parse_config(["--compare", "sgd,zosam-prior-head", "--sparsity", "0.9",
                          "--sparse-method", "rigl"])
  head = validation.config_for(cfg, "zosam-prior-head")
  assert (head.optimizer, head.zo_prior, head.num_dirs, head.zo_probe,
          head.zo_exact_head) == ("zosam", "gradient", 0, False, True)
  assert validation.config_for(cfg, "sgd").zo_prior == "none"


@pytest.mark.slow
def test_the_default_run_compares_four_sparse_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert cli.main([]) == 0
  out = capsys.readouterr().out
  result = json.loads((tmp_path / "runs/default/comparison.json").read_text())
  assert [r["optimizer"] for r in result["rows"]] == list(cli.DEFAULT_FLAGS[1].split(","))
  for row in result["rows"]:
    assert row["final_test_accuracy"] > 0.8 and row["relative_step_time"] > 0
    assert row["weight_sparsity"] == pytest.approx(0.9, abs=0.01)
  assert "relative_step_time |" in out  # the table, with step-time ratios
  assert "Final weights of sgd, rigl at 90%" in out and "global" in out
  assert (tmp_path / "runs/default/comparison.png").stat().st_size > 10_000
  assert (tmp_path / "runs/default/zosam-prior-head/sparsity.md").exists()
  assert cli.main([]) == 0  # Again: the finished comparison's table, nothing trained.
  again = capsys.readouterr().out
  assert "nothing to do" in again and "relative_step_time |" in again


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "zosam"])
def test_the_training_state_can_be_donated(optimizer):
  # On GPU/TPU the program donates its state to each step: no buffer twice.
  import numpy as np  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from tests import helpers  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import TrainConfig, get_model, optim, steps  # pylint: disable=import-outside-toplevel
  cfg = TrainConfig(optimizer=optimizer, sparse_method="rigl", sparsity=0.9, steps=10)
  tx, _ = optim.build_optimizer(cfg, 10)
  state = steps.init_train_state(get_model("cnn", 10), tx, np.zeros((1, 8, 8, 1), np.float32),
                                 jax.random.key(0))
  assert helpers.shared_buffers(state) == []
  assert helpers.shared_buffers(steps.MetricSums.zeros()) == []
