"""Nothing lost, nothing silent: interrupts, resume, compare folders, bad values."""

import json
import shlex

import chex
import pytest

from zosam_jax.train import cli
from zosam_jax.train import load_train_state
from zosam_jax.train import data

FLAGS = ["--model", "mlp", "--steps", "30", "--eval-every", "10", "--log-every", "5",
         "--checkpoint-every", "20", "--batch-size", "64", "--no-progress"]


def _exit_code(argv):
  try:
    return cli.main(argv)
  except SystemExit as e:
    return e.code


def _interrupt_at(monkeypatch, step, occurrence=1):
  """Ctrl-C when the loop asks for the minibatch of ``step`` (zero-based), the
  ``occurrence``-th time (a comparison trains its members one after another)."""
  original = data.BatchOrder.indices
  seen = []

  def indices(self, s):
    if s == step:
      seen.append(s)
      if len(seen) == occurrence:
        raise KeyboardInterrupt
    return original(self, s)

  monkeypatch.setattr(data.BatchOrder, "indices", indices)
  return lambda: monkeypatch.setattr(data.BatchOrder, "indices", original)


def _printed_command(err):
  line = next(l for l in err.splitlines() if l.startswith("  zosam-train"))
  return shlex.split(line)[1:]


def test_interrupt_before_the_first_checkpoint_keeps_it_and_prints_the_command(
    tmp_path, capsys, monkeypatch):
  argv = FLAGS + ["--lr", "0.05", "--workdir", str(tmp_path / "int")]
  undo = _interrupt_at(monkeypatch, 7)
  assert cli.main(argv) == 130
  command = _printed_command(capsys.readouterr().err)
  assert "--lr" in command and "--steps" in command and command[-1] == "--resume"
  assert load_train_state(tmp_path / "int")[1]["step"] == 7
  undo()
  assert cli.main(command) == 0
  assert cli.main(FLAGS + ["--lr", "0.05", "--workdir", str(tmp_path / "full")]) == 0
  resumed, full = (load_train_state(tmp_path / d)[0] for d in ("int", "full"))
  chex.assert_trees_all_close(resumed.params, full.params, rtol=1e-6, atol=1e-7)


def test_a_run_resumed_across_the_ascent_switch_equals_an_uninterrupted_one(
    tmp_path, capsys, monkeypatch):
  argv = FLAGS + ["--optimizer", "sam", "--ascent-start", "0.5", "--ascent-every", "2"]
  undo = _interrupt_at(monkeypatch, 9)  # Off steps until 15, then every other one on.
  assert cli.main(argv + ["--workdir", str(tmp_path / "int")]) == 130
  command = _printed_command(capsys.readouterr().err)
  assert command[command.index("--ascent-start") + 1] == "0.5"
  undo()
  assert cli.main(command) == 0
  assert cli.main(argv + ["--workdir", str(tmp_path / "full")]) == 0
  resumed, full = (load_train_state(tmp_path / d)[0] for d in ("int", "full"))
  chex.assert_trees_all_equal(resumed.params, full.params)
  summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("int", "full")]
  assert summaries[0]["backward_passes"] == summaries[1]["backward_passes"] == 30 + 8


def test_resuming_a_finished_run_leaves_its_files_as_they_were(tmp_path, capsys):
  argv = FLAGS + ["--workdir", str(tmp_path)]
  assert cli.main(argv) == 0
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
  capsys.readouterr()
  assert cli.main(argv + ["--resume"]) == 0
  assert "already finished" in capsys.readouterr().out
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_resume_in_a_folder_without_a_run_fails(tmp_path, capsys):
  assert cli.main(FLAGS + ["--resume", "--workdir", str(tmp_path / "typo")]) == 1
  assert "no run to resume in" in capsys.readouterr().err
  assert not (tmp_path / "typo" / "config.json").exists()


def test_resume_checks_the_flags_even_without_a_checkpoint(tmp_path, capsys):
  (tmp_path / "config.json").write_text(json.dumps(
      dict(json.loads(json.dumps(cli.parse_config(FLAGS).to_dict())), steps=5000)))
  assert cli.main(FLAGS + ["--resume", "--workdir", str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert "--steps (checkpoint: 5000, now: 30)" in err and "--steps 5000" in err


def test_interrupted_compare_resumes_each_unfinished_member(tmp_path, capsys, monkeypatch):
  argv = FLAGS + ["--compare", "sgd,zosam"]
  assert cli.main(argv + ["--workdir", str(tmp_path / "full")]) == 0
  undo = _interrupt_at(monkeypatch, 12, occurrence=2)  # In the second member.
  assert cli.main(argv + ["--workdir", str(tmp_path / "c")]) == 130
  command = _printed_command(capsys.readouterr().err)
  assert "--compare" in command and command[-1] == "--resume"
  undo()
  sgd_before = (tmp_path / "c" / "sgd" / "summary.json").read_bytes()
  assert cli.main(command) == 0
  assert (tmp_path / "c" / "sgd" / "summary.json").read_bytes() == sgd_before
  chex.assert_trees_all_close(load_train_state(tmp_path / "c" / "zosam")[0].params,
                              load_train_state(tmp_path / "full" / "zosam")[0].params,
                              rtol=1e-6, atol=1e-7)
  assert (tmp_path / "c" / "comparison.md").exists()
  # A plain --resume on the comparison folder says what to type.
  assert cli.main(FLAGS + ["--resume", "--workdir", str(tmp_path / "c")]) == 1
  assert "holds a --compare run; continue it with: zosam-train" in capsys.readouterr().err


def test_new_compare_in_a_used_folder_is_refused(tmp_path, capsys):
  argv = FLAGS + ["--steps", "5", "--compare", "sgd", "--workdir", str(tmp_path)]
  assert cli.main(argv) == 0
  assert cli.main(argv) == 1
  assert "already holds a comparison" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--warmup-steps", "30"], "--warmup-steps 30 must be less than --steps 30"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--epochs", "1", "--warmup-steps", "50"], "must be less than the run's 22 steps"),
    (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1437 training examples"),
    (["--devices", "1000"], "--devices 1000 asks for 1000 devices"),
])
def test_impossible_values_are_refused_before_anything_is_written(
    tmp_path, capsys, flags, message):
  workdir = tmp_path / "run"
  base = FLAGS if "--epochs" not in flags else [f for f in FLAGS if f not in ("--steps", "30")]
  assert _exit_code(base + flags + ["--workdir", str(workdir)]) == 2
  assert message in capsys.readouterr().err
  assert not workdir.exists()


def test_plots_and_tables_say_what_they_show(tmp_path, monkeypatch):
  from zosam_jax.train import report  # pylint: disable=import-outside-toplevel
  figures = {}
  monkeypatch.setattr(report, "_finish_figure",
                      lambda fig, axes, title, path: figures.update({path.name: (axes, title)}))
  argv = FLAGS + ["--sparse-method", "rigl", "--sparsity", "0.9", "--compare", "sgd,sam",
                  "--workdir", str(tmp_path)]
  assert cli.main(argv) == 0
  assert "rigl 90% sparse" in figures["curves.png"][1]
  step_axis, time_axis = figures["comparison.png"][0]
  styles = {(l.get_marker(), l.get_linestyle()) for l in step_axis.get_lines()}
  assert len(styles) == 2 and "compilation included" in time_axis.get_xlabel()
  assert "not evaluated" in report.summary_table({"final_test_accuracy": None})
