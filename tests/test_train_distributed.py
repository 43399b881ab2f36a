"""``zosam-train`` on several processes (``jax.distributed``), two on this machine.

Each process is started as a ``python -m zosam_jax.train`` subprocess with one
simulated CPU device, bound to a free port of 127.0.0.1, waited for with a
bound, and ended by its process id.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from zosam_jax.train import cli
from zosam_jax.train import distributed
from zosam_jax.train import load_train_state
from zosam_jax.train import data

FLAGS = ["--model", "mlp", "--steps", "30", "--eval-every", "10", "--log-every", "5",
         "--checkpoint-every", "10", "--optimizer", "zosam", "--zo-prior", "gradient",
         "--num-dirs", "0", "--radius-cap", "4", "--no-progress"]


def launch(workdir, flags=FLAGS, extra=()):
  """The docs' two-process launch line, with a free port of 127.0.0.1; ``extra``
  appended to both processes' flags, or a list of per-process lists."""
  per_process = extra if extra and isinstance(extra[0], list) else [list(extra)] * 2
  return distributed.launch_local([*flags, "--workdir", str(workdir)], 2, extra=per_process,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)


def finish(procs, seconds=240.0) -> list[tuple[int, str]]:
  """Each process's exit status and output, waiting at most ``seconds`` in
  all; a process still running then is killed by its pid (and fails the test)."""
  deadline, out = time.monotonic() + seconds, []
  try:
    for p in procs:
      text, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      out.append((p.returncode, text))
  finally:
    for p in procs:
      if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
  return out


def _records(folder):
  return [{k: v for k, v in r.items() if "second" not in k}
          for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]


def _one_process_two_devices(folder, flags):
  one = subprocess.run(
      [sys.executable, "-m", "zosam_jax.train", *flags, "--devices", "2",
       "--workdir", str(folder)], capture_output=True, text=True, timeout=600,
      env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2"),
      check=False)
  assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-2000:]


@pytest.mark.slow  # Two BatchNorm ResNet-20 runs on two processes and on two devices.
@pytest.mark.parametrize("optimizer", ["sam", "zosam"])
def test_sparse_batchnorm_runs_on_two_processes_like_on_two_devices(tmp_path, optimizer):
  flags = ["--model", "resnet20", "--optimizer", optimizer, "--sparse-method", "rigl",
           "--sparsity", "0.9", "--sparse-update-every", "5", "--steps", "12",
           "--eval-every", "6", "--log-every", "3", "--checkpoint-every", "6",
           "--batch-size", "32", "--no-progress"]
  results = finish(launch(tmp_path / "two", flags), seconds=600)
  assert [code for code, _ in results] == [0, 0], results[0][1][-2000:]
  _one_process_two_devices(tmp_path / "one", flags)
  two, one = _records(tmp_path / "two"), _records(tmp_path / "one")
  assert [r["step"] for r in two] == [r["step"] for r in one]
  for a, b in zip(two, one):
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
  a, b = (load_train_state(tmp_path / d)[0] for d in ("two", "one"))
  chex.assert_trees_all_close(a.batch_stats, b.batch_stats, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # Two processes against one with two devices, each compiling its step.
@pytest.mark.parametrize("schedule", [(), ("--ascent-start", "12", "--ascent-every", "2")],
                         ids=["every-step", "scheduled"])
def test_two_processes_train_like_one_process_with_two_devices(tmp_path, schedule):
  flags = [*FLAGS, *schedule]
  results = finish(launch(tmp_path / "two", flags))
  assert [code for code, _ in results] == [0, 0], results[0][1][-2000:]
  assert "| final_test_accuracy |" in results[0][1]  # Process 0 reports ...
  assert "| final_test_accuracy |" not in results[1][1]  # ... and only it.
  _one_process_two_devices(tmp_path / "one", flags)
  two, single = _records(tmp_path / "two"), _records(tmp_path / "one")
  # Training: the same numbers. Evaluation sums its batches in another order:
  # test losses to 1e-6, the same accuracies.
  assert [r for r in two if r["split"] == "train"] == [
      r for r in single if r["split"] == "train"]
  for a, b in zip(*([r for r in rs if r["split"] == "test"] for rs in (two, single))):
    assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], 1e-6)
  chex.assert_trees_all_close(load_train_state(tmp_path / "two")[0].params,
                              load_train_state(tmp_path / "one")[0].params, atol=1e-6)


def test_processes_started_with_different_flags_are_refused(tmp_path):
  results = finish(launch(tmp_path / "run", extra=[["--lr", "0.1"], ["--lr", "0.2"]]))
  assert [code for code, _ in results] == [2, 2]
  assert "started with different flags" in results[1][1] and "--lr" in results[1][1]
  assert not (tmp_path / "run" / "config.json").exists()


def test_an_unreachable_coordinator_is_a_bounded_wait_and_a_message(tmp_path):
  port = distributed.free_port()  # Nobody listens there.
  start = time.monotonic()
  result = subprocess.run(
      [sys.executable, "-m", "zosam_jax.train", *FLAGS, "--workdir", str(tmp_path),
       "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
       "--distributed-timeout", "3"], capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 1 and time.monotonic() - start < 60
  assert f"could not join the coordinator at 127.0.0.1:{port}" in result.stderr
  assert "within --distributed-timeout 3 s" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2", "--process-id", "2"], "--process-id must be in [0, --num-processes) = [0, 2), got 2"),
    (["--num-processes", "2"], "needs --num-processes N and --process-id I"),
    (["--coordinator", "nowhere"], "--coordinator must be HOST:PORT"),
])
def test_bad_process_flags_name_the_flag(tmp_path, capsys, flags, message):
  flags = (["--coordinator", "127.0.0.1:1"] if flags[0] != "--coordinator" else []) + flags
  with pytest.raises(SystemExit) as exit_info:
    cli.main(FLAGS + flags + ["--workdir", str(tmp_path)])
  assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_process_flags_without_a_coordinator_are_refused(tmp_path, capsys):
  with pytest.raises(SystemExit):
    cli.main(FLAGS + ["--process-id", "1", "--workdir", str(tmp_path)])
  assert "--process-id needs --coordinator HOST:PORT" in capsys.readouterr().err


# Stopped after a plain step, a log point, and a log, evaluation and checkpoint point.
@pytest.mark.parametrize("stop_step", [14] + [pytest.param(s, marks=pytest.mark.slow)
                                              for s in (15, 20)])
def test_sigterm_in_one_process_checkpoints_and_resume_is_bit_identical(tmp_path,
                                                                       monkeypatch,
                                                                       stop_step):
  """One process: SIGTERM (a preemption notice) stops after the step, like Ctrl-C."""
  original = data.BatchOrder.indices
  def indices(self, s):
    if s == stop_step - 1:  # During the step that ends at ``stop_step``.
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self, s)
  monkeypatch.setattr(data.BatchOrder, "indices", indices)
  assert cli.main(FLAGS + ["--workdir", str(tmp_path / "run")]) == 143
  assert load_train_state(tmp_path / "run")[1]["step"] == stop_step
  monkeypatch.setattr(data.BatchOrder, "indices", original)
  assert cli.main(FLAGS + ["--workdir", str(tmp_path / "run"), "--resume"]) == 0
  assert cli.main(FLAGS + ["--workdir", str(tmp_path / "full")]) == 0
  assert _records(tmp_path / "run") == _records(tmp_path / "full")
  chex.assert_trees_all_equal(load_train_state(tmp_path / "run")[0].params,
                              load_train_state(tmp_path / "full")[0].params)


def _wait_for(path, procs, seconds=180.0):
  deadline = time.monotonic() + seconds
  while not path.exists():
    assert all(p.poll() is None for p in procs), "a process ended early"
    assert time.monotonic() < deadline, f"no {path} within {seconds} s"
    time.sleep(0.1)


#: Long enough to be stopped in the middle: 2000 steps, checkpoints every 100.
LONG = [*FLAGS, "--steps", "2000", "--eval-every", "500", "--log-every", "50",
        "--checkpoint-every", "100"]


@pytest.mark.slow  # Three two-process runs of 2000 steps: a few minutes.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_any_process_stops_all_at_one_step_and_resume_is_bit_identical(
    tmp_path, signum):
  procs = launch(tmp_path / "run", LONG)
  _wait_for(tmp_path / "run" / "checkpoints" / "100", procs)
  os.kill(procs[1].pid, signum)
  results = finish(procs)
  # The signalled process: 143 for SIGTERM, 130 for Ctrl-C; the other stops with it (143).
  expected = 143 if signum == signal.SIGTERM else 130
  assert [code for code, _ in results] == [143, expected], results[0][1][-2000:]
  assert "all stopped at this step" in results[0][1]
  stopped = load_train_state(tmp_path / "run")[1]["step"]
  assert 100 < stopped < 2000 and f"step {stopped} is checkpointed" in results[0][1]
  resumed = finish(launch(tmp_path / "run", LONG, extra=["--resume"]))
  assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-2000:]
  full = finish(launch(tmp_path / "full", LONG))
  assert [code for code, _ in full] == [0, 0]
  assert _records(tmp_path / "run") == _records(tmp_path / "full")
  chex.assert_trees_all_equal(load_train_state(tmp_path / "run")[0].params,
                              load_train_state(tmp_path / "full")[0].params)


@pytest.mark.slow  # Two two-process runs of 2000 steps and a heartbeat timeout.
def test_a_killed_peer_ends_the_others_in_bounded_time_and_resume_continues(tmp_path):
  extra = ["--heartbeat-timeout", "5"]
  procs = launch(tmp_path / "run", LONG, extra=extra)
  _wait_for(tmp_path / "run" / "checkpoints" / "100", procs)
  os.kill(procs[1].pid, signal.SIGKILL)
  start = time.monotonic()
  [(code, text)] = finish(procs[:1], seconds=60)
  finish(procs[1:])
  assert code == 1 and time.monotonic() - start < 30  # The heartbeat timeout, 5 s, + margin.
  kept = load_train_state(tmp_path / "run")[1]["step"]  # The last checkpoint restores.
  assert kept >= 100
  # One paragraph first: who died, where this process was, the checkpoint, the
  # command; JAX's own log of it below.
  paragraph, _, runtime_log = text.partition("JAX's runtime log:")
  said = paragraph[paragraph.index("zosam-train: process 1 of this run stopped answering"):]
  step = int(re.search(r"had finished step (\d+)", said).group(1))
  assert step >= kept and f"the last good checkpoint is step {kept} in " in said
  command = said.strip().splitlines()[-1].split()
  assert command[0] == "zosam-train" and command[-1] == "--resume"
  assert "--process-id" in command and "Check failure" not in paragraph
  assert "heartbeat" in runtime_log
  resumed = finish(launch(tmp_path / "run", LONG, extra=extra + ["--resume"]))
  assert [c for c, _ in resumed] == [0, 0], resumed[0][1][-2000:]
  assert f"resumed at step {kept}" in resumed[0][1]
  final = load_train_state(tmp_path / "run")
  assert final[1]["step"] == 2000 and np.isfinite(
      np.asarray(final[0].params["Dense_0"]["kernel"])).all()


@pytest.mark.slow  # Process 0 waits for the missing one: JAX's 30 s collective timeout.
def test_processes_started_with_different_counts_end_with_messages(tmp_path):
  procs = launch(tmp_path / "run", extra=[["--num-processes", "2"], ["--num-processes", "3"]])
  results = finish(procs, seconds=180)
  assert [code for code, _ in results] == [1, 1]
  assert "started with --num-processes 3, but the coordinator" in results[1][1]
  assert "an exchange with the other processes failed" in results[0][1]
  assert "Traceback" not in results[0][1] + results[1][1]


@pytest.mark.slow  # A two-process --seeds program and its one-process twin.
def test_a_seeds_program_on_two_processes_is_the_one_process_program(tmp_path):
  # Without --radius-cap: its division by the probed cosine amplifies float rounding
  # (2e-5 relative after 20 steps on one machine, 2.5e-4 on another); without the cap the
  # losses agree to float rounding, which is what this test is about.
  cap = FLAGS.index("--radius-cap")
  flags = [*FLAGS[:cap], *FLAGS[cap + 2:], "--steps", "20", "--seeds", "0,1"]
  results = finish(launch(tmp_path / "two", flags))
  assert [code for code, _ in results] == [0, 0], results[0][1][-2000:]
  assert "| seed | status |" in results[0][1] and "| seed | status |" not in results[1][1]
  assert cli.main(flags + ["--workdir", str(tmp_path / "one")]) == 0
  for seed in (0, 1):
    two, one = (_records(tmp_path / d / f"seed{seed}") for d in ("two", "one"))
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    for a, b in zip(two, one):
      assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
