"""A run folder nothing can corrupt: damaged checkpoints, two writers, I/O errors, torn files."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import chex
import pytest

from zosam_jax.train import checkpoint as checkpoint_lib
from zosam_jax.train import cli
from zosam_jax.train import load_train_state
from zosam_jax.train import workdir as lock_lib
from zosam_jax.train import report

FLAGS = ["--model", "mlp", "--steps", "30", "--eval-every", "10", "--log-every", "5",
         "--checkpoint-every", "10", "--batch-size", "64", "--no-progress"]


def _run(folder, *extra):
  return cli.main(FLAGS + ["--workdir", str(folder), *extra])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The run every repaired run must equal: its folder."""
  folder = tmp_path_factory.mktemp("full") / "run"
  assert _run(folder) == 0
  return folder


def _assert_same_run(folder, reference):
  chex.assert_trees_all_equal(load_train_state(folder)[0].params,
                              load_train_state(reference)[0].params)
  strip = lambda rs: [{k: v for k, v in r.items() if "second" not in k} for r in rs]
  assert strip(report.read_metrics(folder / "metrics.jsonl")) == strip(
      report.read_metrics(reference / "metrics.jsonl"))


def _stopped_at_20(tmp_path):
  folder = tmp_path / "run"
  assert _run(folder, "--stop-after", "20") == 0
  return folder


def _truncate_largest(checkpoint_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(checkpoint_dir) for f in fs]
  largest = max(files, key=os.path.getsize)
  os.truncate(largest, 100)


def test_a_damaged_latest_checkpoint_is_set_aside_and_the_older_one_used(
    tmp_path, capsys, uninterrupted):
  folder = _stopped_at_20(tmp_path)
  _truncate_largest(folder / "checkpoints" / "20")
  capsys.readouterr()
  assert _run(folder, "--resume") == 0
  err = capsys.readouterr().err
  [warning] = [l for l in err.splitlines() if "warning" in l]
  assert "checkpoint step 20" in warning and "cannot be read" in warning
  assert "checkpoints.damaged/20" in warning and "Traceback" not in err
  assert (folder / "checkpoints.damaged" / "20").is_dir()  # Kept, not deleted.
  _assert_same_run(folder, uninterrupted)


def test_no_readable_checkpoint_is_a_clear_error_naming_the_folder(tmp_path, capsys):
  folder = _stopped_at_20(tmp_path)
  for step in ("10", "20"):
    _truncate_largest(folder / "checkpoints" / step)
  assert _run(folder, "--resume") == 1
  err = capsys.readouterr().err
  assert "share no checkpoint step that can be read" in err and str(folder) in err
  assert "--overwrite" in err and "Traceback" not in err


def test_an_unfinished_save_is_never_taken_for_a_checkpoint(tmp_path, uninterrupted):
  folder = _stopped_at_20(tmp_path)
  leftover = folder / "checkpoints" / "30.orbax-checkpoint-tmp-1733"
  (leftover / "state").mkdir(parents=True)
  (leftover / "state" / "half").write_bytes(b"\0" * 10)
  assert checkpoint_lib.Checkpointer(folder / "checkpoints").all_steps() == [10, 20]
  assert not leftover.exists()  # Orbax's temporary folder, removed on opening.
  assert _run(folder, "--resume") == 0
  _assert_same_run(folder, uninterrupted)


def test_evaluating_a_damaged_checkpoint_falls_back_without_moving_it(tmp_path, capsys):
  folder = _stopped_at_20(tmp_path)
  _truncate_largest(folder / "checkpoints" / "20")
  assert load_train_state(folder)[1]["step"] == 10
  assert "checkpoint step 20" in capsys.readouterr().err
  assert (folder / "checkpoints" / "20").is_dir()


@pytest.mark.parametrize("extra", [[], ["--resume"], ["--overwrite"]])
def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, extra):
  folder = _stopped_at_20(tmp_path)
  before = (folder / "metrics.jsonl").read_text()
  with lock_lib.RunLock(folder):
    assert _run(folder, *extra) == 1
  err = capsys.readouterr().err
  assert f"is in use by process {os.getpid()}" in err and "another --workdir" in err
  assert (folder / "metrics.jsonl").read_text() == before  # Nothing touched.


def test_seeds_and_compare_folders_have_one_writer_too(tmp_path, capsys):
  with lock_lib.RunLock(tmp_path / "seeds" / "seed1"):
    assert _run(tmp_path / "seeds", "--seeds", "0,1") == 1
  assert "seed1 is in use by process" in capsys.readouterr().err
  assert not (tmp_path / "seeds" / "seed0" / "config.json").exists()  # All or none.
  with lock_lib.RunLock(tmp_path / "cmp"):
    assert _run(tmp_path / "cmp", "--compare", "sgd,sam") == 1
  assert "cmp is in use by process" in capsys.readouterr().err


def _wait_for(predicate, seconds=120.0):
  deadline = time.monotonic() + seconds
  while not predicate():
    if time.monotonic() > deadline:
      raise TimeoutError(f"waited {seconds} s")
    time.sleep(0.2)


def test_another_process_holds_the_folder_and_its_lock_dies_with_it(tmp_path, capsys):
  folder = tmp_path / "run"
  lock_file = folder / lock_lib.LOCK_NAME
  writer = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-m", "zosam_jax.train", "--model", "mlp", "--steps", "100000",
       "--no-progress", "--workdir", str(folder)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _wait_for(lambda: lock_file.exists() and lock_file.read_text().strip())
    assert _run(folder, "--overwrite") == 1
    assert f"in use by process {writer.pid}" in capsys.readouterr().err
  finally:
    os.kill(writer.pid, signal.SIGKILL)  # Dies without releasing anything.
    writer.wait(timeout=60)
  assert _run(folder, "--overwrite") == 0
  err = capsys.readouterr().err
  assert f"took over the lock left by process {writer.pid}" in err
  assert lock_file.read_text() == ""  # Released on exit.


def _fail_checkpoint_save_at(monkeypatch, step, error):
  """The checkpoint save of ``step`` fails as a full disk makes Orbax fail,
  after leaving its temporary folder behind."""
  original = checkpoint_lib.ocp.CheckpointManager.save
  def save(manager, s, *args, **kwargs):
    if s == step:
      (manager.directory / f"{s}.orbax-checkpoint-tmp-99").mkdir()
      raise error
    return original(manager, s, *args, **kwargs)
  monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", save)
  return lambda: monkeypatch.setattr(checkpoint_lib.ocp.CheckpointManager, "save", original)


def test_a_full_disk_is_one_message_and_the_run_resumes_once_space_is_back(
    tmp_path, capsys, monkeypatch, uninterrupted):
  folder = tmp_path / "run"
  undo = _fail_checkpoint_save_at(monkeypatch, 20, ValueError(
      'RESOURCE_EXHAUSTED: Error writing "leaf_00001/0" in OCDBT database: Failed to '
      "write 57396 bytes to file 8: No space left on device [os_error_code='28']\n" * 30))
  assert _run(folder) == 4
  err = capsys.readouterr().err
  assert err.count("\n") == 3 and "Traceback" not in err  # Error, what to do, command.
  assert "writing checkpoint step 20" in err and "no space left on the device" in err
  assert f"the last good checkpoint is step 10 in {folder / 'checkpoints'}" in err
  command = err.splitlines()[-1].split()
  assert command[-1] == "--resume" and not list((folder / "checkpoints").glob("*tmp*"))
  undo()  # Space is back.
  assert cli.main(command[1:]) == 0
  _assert_same_run(folder, uninterrupted)


def test_a_real_full_file_system_is_one_message(tmp_path, capsys):
  mount = tmp_path / "small"
  mount.mkdir()
  if os.geteuid() != 0 or subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
      capture_output=True, check=False).returncode:
    pytest.skip("needs root to mount a 600 KB tmpfs")
  try:
    assert _run(mount / "run") == 4
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert "no checkpoint was written" in err and err.count("\n") <= 4
    assert not list((mount / "run" / "checkpoints").glob("*tmp*"))
  finally:
    subprocess.run(["umount", str(mount)], check=True)


def test_only_orbax_leftovers_of_a_failed_io_are_kept_quiet(tmp_path, monkeypatch):
  import asyncio  # pylint: disable=import-outside-toplevel
  reported = []
  monkeypatch.setattr(sys, "unraisablehook", reported.append)
  checkpoint_lib.Checkpointer(tmp_path / "checkpoints")
  closed = asyncio.new_event_loop()
  closed.close()

  class LateCallback:  # What TensorStore's threads do once the loop is gone.
    def __del__(self):
      closed.call_soon_threadsafe(print)

  class OtherBug:
    def __del__(self):
      raise RuntimeError("Event loop is closed")  # Same words, not asyncio's.

  LateCallback()
  OtherBug()
  assert [str(r.exc_value) for r in reported] == ["Event loop is closed"]
  assert "OtherBug" in repr(reported[0].object)


@pytest.mark.parametrize("code, hint", [
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
    (errno.ENOSPC, "no space left on the device")])
def test_a_failed_metrics_write_is_one_message(tmp_path, capsys, monkeypatch, code, hint):
  folder = tmp_path / "run"
  original = report.MetricsWriter.write
  def write(writer, record):
    if record["step"] == 15:
      raise OSError(code, os.strerror(code), str(writer.path))
    return original(writer, record)
  monkeypatch.setattr(report.MetricsWriter, "write", write)
  assert _run(folder) == 4
  err = capsys.readouterr().err
  assert f"{os.strerror(code)}: {folder / 'metrics.jsonl'}" in err and hint in err
  assert "last good checkpoint is step 10" in err and "Traceback" not in err


def test_a_vanished_folder_is_one_message(tmp_path, capsys, monkeypatch):
  import shutil  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "run"
  original = report.MetricsWriter.write
  def write(writer, record):
    if record["step"] == 15:
      shutil.rmtree(folder)
    return original(writer, record)
  monkeypatch.setattr(report.MetricsWriter, "write", write)
  assert _run(folder) == 4
  err = capsys.readouterr().err
  assert "the folder vanished" in err and "no checkpoint was written" in err
  assert "Traceback" not in err


def test_zosam_debug_shows_the_traceback(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOSAM_DEBUG", "1")
  _fail_checkpoint_save_at(monkeypatch, 10, ValueError("RESOURCE_EXHAUSTED: disk full"))
  with pytest.raises(checkpoint_lib.CheckpointWriteError, match="step 10"):
    _run(tmp_path / "run")


def test_a_torn_last_metrics_line_is_dropped_and_the_run_resumes(tmp_path, capsys,
                                                                 uninterrupted):
  folder = _stopped_at_20(tmp_path)
  with open(folder / "metrics.jsonl", "a") as f:
    f.write('{"step": 41')  # Killed while appending.
  assert _run(folder, "--resume") == 0
  err = capsys.readouterr().err
  assert "its last line was cut mid-write" in err and "Traceback" not in err
  _assert_same_run(folder, uninterrupted)


@pytest.mark.parametrize("name, damage, message", [
    ("metrics.jsonl", lambda t: t.replace('"split"', '"split', 1), "line 1 is not a JSON record"),
    ("config.json", lambda t: t[:40], "config.json is damaged (not JSON"),
    ("config.json", lambda t: "[1, 2]", "a JSON list, not an object"),
])
def test_damaged_run_files_are_named(tmp_path, capsys, name, damage, message):
  folder = _stopped_at_20(tmp_path)
  path = folder / name
  path.write_text(damage(path.read_text()))
  assert _run(folder, "--resume") == 1
  err = capsys.readouterr().err
  assert message in err and str(path) in err and "Traceback" not in err


def test_a_damaged_summary_of_a_finished_run_is_written_again(tmp_path, capsys):
  folder = tmp_path / "run"
  assert _run(folder) == 0
  summary = json.loads((folder / "summary.json").read_text())
  (folder / "summary.json").write_text('{"status": "fini')
  assert _run(folder, "--resume") == 0
  assert "summary.json is damaged" in capsys.readouterr().err
  assert json.loads((folder / "summary.json").read_text())["final_test_accuracy"] == (
      summary["final_test_accuracy"])


def test_a_damaged_compare_file_is_named(tmp_path, capsys):
  folder = tmp_path / "cmp"
  folder.mkdir()
  (folder / "compare.json").write_text("{")
  assert _run(folder, "--compare", "sgd,sam", "--resume") == 1
  err = capsys.readouterr().err
  assert f"{folder / 'compare.json'} is damaged" in err and "Traceback" not in err
