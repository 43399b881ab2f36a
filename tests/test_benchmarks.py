"""The step-cost benchmarks run end to end and write their tables and JSON."""

import importlib.util
import json
import pathlib
import runpy

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "step_cost.py"


@pytest.mark.slow  # Compiles eight training steps: about a minute on 2 cores.
def test_step_cost_benchmark_writes_rows_with_ratios_to_sgd(tmp_path, capsys):
  main = runpy.run_path(str(SCRIPT))["main"]
  out = tmp_path / "cost.json"
  main(["--models", "mlp", "--batch-size", "8", "--methods",
        "sam,optax.contrib.sam,zosam m=1 central", "--sparsities", "0,0.9",
        "--steps", "1", "--rounds", "1", "--warmup", "1", "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  methods = {row["method"] for row in rows}
  assert methods == {"sgd", "sam", "optax.contrib.sam", "zosam m=1 central"}
  assert {row["sparsity"] for row in rows} == {0.0, 0.9}
  for row in rows:
    assert row["ms_per_step"] > 0 and row["flops"] > 0
    if row["method"] == "sgd":
      assert row["ratio_to_sgd"] == 1.0
  assert "| mlp | 8 |" in capsys.readouterr().out


def test_step_cost_keeps_the_cells_measured_before_an_interruption(tmp_path, monkeypatch):
  spec = importlib.util.spec_from_file_location("step_cost", SCRIPT)
  step_cost = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(step_cost)
  measure_cell, calls = step_cost.measure_cell, []

  def stopped_at_second_cell(*args, **kwargs):
    calls.append(args)
    if len(calls) == 2:
      raise KeyboardInterrupt  # What a time limit does to a capped run.
    return measure_cell(*args, **kwargs)

  monkeypatch.setattr(step_cost, "measure_cell", stopped_at_second_cell)
  out = tmp_path / "cost.json"
  with pytest.raises(KeyboardInterrupt):
    step_cost.main(["--models", "mlp", "--batch-size", "8", "--methods", "sam",
                    "--sparsities", "0,0.9", "--steps", "1", "--rounds", "1",
                    "--warmup", "1", "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  assert {(row["method"], row["sparsity"]) for row in rows} == {("sgd", 0.0), ("sam", 0.0)}
  assert not (tmp_path / "cost.json.tmp").exists()


@pytest.mark.slow  # Times a 3-seed program against three runs.
def test_seeds_benchmark_times_the_program_against_separate_runs(tmp_path, capsys):
  main = runpy.run_path(str(SCRIPT.parent / "seeds_cost.py"))["main"]
  out = tmp_path / "seeds.json"
  main(["--models", "cnn_digits", "--optimizers", "sgd", "--ks", "1,2", "--steps", "1",
        "--rounds", "1", "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  assert [row["k"] for row in rows] == [1, 2]
  for row in rows:
    assert row["ms_per_step"] > 0 and row["single_ms_per_step"] > 0
    assert row["ratio_to_separate"] == pytest.approx(
        row["ms_per_step"] / (row["k"] * row["single_ms_per_step"]))
  assert "| cnn_digits | sgd | 2 |" in capsys.readouterr().out


def test_cond_benchmark_times_the_gradient_plain_and_nested(tmp_path, capsys):
  main = runpy.run_path(str(SCRIPT.parent / "cond_cost.py"))["main"]
  out = tmp_path / "cond.json"
  main(["--models", "mlp", "--batch-size", "8", "--steps", "1", "--rounds", "1",
        "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  assert [r["nested_in"] for r in rows] == ["plain", "cond", "scan", "while_loop"]
  assert rows[0]["ratio_to_plain"] == 1.0 and all(r["ms"] > 0 for r in rows)
  assert "| mlp | cond |" in capsys.readouterr().out


@pytest.mark.slow  # Compiles seven training steps twice over: about half a minute.
def test_draw_cost_times_hand_written_steps_equal_to_the_library_s(tmp_path, monkeypatch,
                                                                   capsys):
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  monkeypatch.syspath_prepend(str(SCRIPT.parent))
  script = runpy.run_path(str(SCRIPT.parent / "draw_cost.py"))
  out = tmp_path / "draw.json"
  script["main"](["--models", "fashion_mlp", "--batch-size", "8", "--rounds", "1",
                  "--steps", "1", "--warmup", "1", "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  assert [r["step"] for r in rows] == [*script["LIBRARY"], *script["HAND"]]
  assert rows[0]["ratio_to_sgd"] == 1.0 and all(r["ms_per_step"] > 0 for r in rows)
  assert "| fashion_mlp | perturbed + split + cond |" in capsys.readouterr().out
  # The premise: the hand-written step is the library's unprobed prior step.
  step_cost = script["step_cost"]
  spec = next(s for s in step_cost.model_specs("cpu", 8) if s.name == "fashion_mlp")
  x, y, params, stats, masks = step_cost._cell_inputs(spec, 0.9)  # pylint: disable=protected-access
  base = lambda: optax.sgd(0.05, momentum=0.9)
  lib_step, tx = step_cost.make_step(spec, script["LIBRARY"]["library unprobed prior"],
                                     base, masks)
  prior = jax.tree.map(lambda p: np.cos(np.arange(p.size, dtype=np.float32)).reshape(p.shape),
                       params)
  lib_params, _, _ = lib_step(params, stats, tx.init(params)._replace(prior=prior), x, y)
  sgd_tx = script["sparse"].static_sparse(base(), masks=masks)
  hand = script["hand_step"](spec, sgd_tx, masks, split=True, cond=True)
  hand_params, _, _ = hand(params, stats, (sgd_tx.init(params), prior, jax.random.key(0)),
                           x, y)
  for a, b in zip(jax.tree.leaves(lib_params), jax.tree.leaves(hand_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # Whole runs of every option on two models.
def test_schedule_benchmark_times_whole_runs_against_sgd(tmp_path, capsys):
  main = runpy.run_path(str(SCRIPT.parent / "schedule_cost.py"))["main"]
  out = tmp_path / "schedule.json"
  main(["--models", "cnn_digits", "--options", "sam-ascent8-late25,sam-ascent8-late25@cond",
        "--steps", "8", "--rounds", "1", "--window", "3", "--out", str(out)])
  rows = json.loads(out.read_text())["rows"]
  assert [row["option"] for row in rows] == [
      "sgd", "sam-ascent8-late25", "sam-ascent8-late25@cond"]
  assert rows[0]["ratio_to_sgd"] == 1.0 and all(row["ms_per_step"] > 0 for row in rows)
  assert "| cnn_digits | sam-ascent8-late25@cond |" in capsys.readouterr().out
  sgd, late = rows[0]["compiled"]["step"], rows[1]["compiled"]
  assert set(late) == {"ascent=False", "ascent=True"} and rows[2]["compiled"] == {}
  for cost in ("flops", "bytes accessed"):  # The off step compiles to SGD's work ...
    np.testing.assert_allclose(late["ascent=False"][cost], sgd[cost], rtol=1e-4)
  assert late["ascent=True"]["flops"] > 1.05 * sgd["flops"]  # ... the on step to more.


@pytest.mark.slow  # Compiles and times every step variant of two schedules.
def test_a_whole_run_compiles_every_step_variant_before_it_is_timed(tmp_path):
  from zosam_jax.train import TrainConfig  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import program  # pylint: disable=import-outside-toplevel
  cfg = TrainConfig(optimizer="sam", steps=6, ascent_start=4, batch_size=32, progress=False)
  run = program.for_timing(cfg, tmp_path / "run")
  calls = []
  step = run.train_step
  run.train_step = lambda *a, **flags: calls.append(flags) or step(*a, **flags)
  assert program.run_seconds(run) > 0
  assert calls[:2] == [{"ascent": False}, {"ascent": True}]  # Both compiled first ...
  assert calls[2:] == [{"ascent": s >= 4} for s in range(6)]  # ... then the run.
  calls.clear()
  program.run_seconds(run, static=False)
  assert calls == [{}] * 7  # lax.cond: one step variant, the schedule inside it.
  calls.clear()
  program.run_seconds(run, steps=range(3, 5), warm=False)  # A window, already compiled.
  assert calls == [{"ascent": False}, {"ascent": True}]
