"""The experiment scripts: study cells, rows, statistics, verdicts, the GPU protocol."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import cifar10_c  # noqa: E402
import common  # noqa: E402
import zosam_jax.train  # noqa: E402
from zosam_jax.train import workdir as lock  # noqa: E402


def test_results_md_is_rendered_from_committed_files_byte_for_byte():
  import render_results  # pylint: disable=import-outside-toplevel
  assert render_results.render() == (common.EXP / "RESULTS.md").read_text()


@pytest.mark.parametrize("index", range(2))
def test_generated_blocks_are_rendered_from_committed_rows(index):
  import render_results  # pylint: disable=import-outside-toplevel
  block = render_results.BLOCKS[index]  # README's what to use, docs/choosing.md's summary
  assert render_results.render_block(block) == block.path.read_text()


def test_committed_rows_hold_no_absolute_paths():
  for path in common.RESULTS.glob("*.jsonl"):
    assert '"/' not in path.read_text(), path


def test_paired_statistics_match_a_hand_computed_t_interval():
  import stats  # pylint: disable=import-outside-toplevel
  rows = [dict(variant=v, seed=s, test_accuracy=a, setting="x")
          for v, accs in (("a", [0.5, 0.6, 0.7]), ("b", [0.4, 0.4, 0.6]))
          for s, a in enumerate(accs)]
  d = stats.paired(rows, dict(setting="x"), "a", "b")
  # Differences 0.1, 0.2, 0.1: mean 0.1333, sd 0.0577, t(0.975, 2) = 4.3027.
  assert d["n"] == 3 and d["mean"] == pytest.approx(0.13333, abs=1e-4)
  assert d["high"] - d["mean"] == pytest.approx(4.3027 * 0.057735 / 3 ** 0.5, rel=1e-3)
  assert d["p"] == pytest.approx(0.0572, abs=1e-3)  # t = 4.0, 2 degrees of freedom.
  assert stats.verdict(d) == "no significant difference"
  assert stats.verdict(dict(d, low=0.01)) == "better"
  assert stats.verdict(dict(d, low=-0.2, high=-0.01)) == "worse"
  assert stats.verdict(dict(d, low=0.01), control=dict(d, low=-0.1)).startswith(
      "inconclusive")


def test_rerunning_a_committed_study_cell_gives_its_numbers(tmp_path):
  import cells  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import DataNotFoundError  # pylint: disable=import-outside-toplevel
  committed = next((r for r in cells.read_rows()
                    if r["cell"] == "mlp-10k/rigl0.9/sgd/seed0"), None)
  if committed is None:
    pytest.skip("the cell is not committed yet")
  try:
    row = cells.run_cell("mlp-10k", 0.9, "sgd", 0, root=tmp_path)
  except DataNotFoundError:
    pytest.skip("Fashion-MNIST is not on this machine")
  # Same code, seeds and data: the same curve, up to XLA's CPU-dependent rounding,
  # which 3,000 steps amplify: up to 0.37 pp on another CPU model (2026-12-03,
  # the same jax, optax and flax; the commit that wrote the row gave the same).
  np.testing.assert_allclose([a for _, a in row["curve"]],
                             [a for _, a in committed["curve"]], atol=5e-3)
  assert row["steps"] == committed["steps"] and row["forward_passes"] == committed[
      "forward_passes"]


def test_positive_control_needs_every_seed_and_an_interval_above_zero():
  import cells  # pylint: disable=import-outside-toplevel
  def rows(gain, seeds):
    return [dict(setting="cnn-10k", sparsity=0.9, variant=v, seed=s,
                 test_accuracy=0.8 + (gain + 0.001 * (s % 2) if v == "sam" else 0.0))
            for s in seeds for v in ("sgd", "sam")]
  assert cells.control_passes(rows(0.01, cells.SEEDS), "cnn-10k", 0.9) is True
  assert cells.control_passes(rows(-0.01, cells.SEEDS), "cnn-10k", 0.9) is False
  assert cells.control_passes(rows(0.01, cells.SEEDS[:3]), "cnn-10k", 0.9) is None
  assert [a[0] for a in cells.CONTROL_ATTEMPTS["cnn"]] == [
      "cnn-10k", "cnn-2k", "cnn-10k-noise40", "cnn-2k"]
  assert cells.config_of("cnn-10k-noise40", 0.9, "sam", 0)["label_noise"] == 0.4


def test_shards_split_a_grid_by_seed_and_a_control_waits_for_all(tmp_path, monkeypatch):
  import cells  # pylint: disable=import-outside-toplevel
  ran = _fake_cell(monkeypatch, tmp_path, lambda variant, seed, split: 0.5 + (
      0.01 + 0.001 * (seed % 2) if variant == "sam" else 0.0))
  todo = [("cnn-10k", 0.9, v, s) for s in cells.SEEDS for v in ("sgd", "sam")]
  assert [r["cell"] for r in cells.run_cells(todo, shard=(0, 2))] == [
      cells.cell_id(*c) for c in todo if c[3] % 2 == 0]
  # Shard 1/2 holds the claims of its cells (as a running process would) and
  # writes their rows while shard 0/2 waits: shard 0/2 runs none of them.
  other = [lock.RunLock(cells.CLAIMS / cells.cell_id(*c)).acquire()
           for c in todo if c[3] % 2 == 1]
  def other_shard_finishes(_):
    for claim in other:
      claim.release()
    cells.run_cells(todo, shard=(1, 2))
  monkeypatch.setattr(cells.time, "sleep", other_shard_finishes)
  assert cells.run_control(None, "cnn", shard=(0, 2)) == ("cnn-10k", 0.9)
  assert [s for _, _, s in ran] == [0, 0, 2, 2, 4, 4, 1, 1, 3, 3, 5, 5]
  monkeypatch.setattr(cells, "_DECLARED", b"# settings as a process read them earlier")
  assert len(cells.run_cells(todo)) == len(todo)  # Nothing left to run: no check.
  with pytest.raises(SystemExit, match="changed since this process started"):
    cells.run_cells(todo + [("cnn-2k", 0.9, "sgd", 0)])
  import study  # pylint: disable=import-outside-toplevel
  assert study.parse_shard("1/2") == (1, 2)
  for bad in ("2/2", "1", "a/b", "-1/2"):
    with pytest.raises(argparse.ArgumentTypeError, match="--shard must be I/N"):
      study.parse_shard(bad)


def test_a_waiting_process_runs_unclaimed_cells_then_cells_ahead(tmp_path, monkeypatch):
  import cells  # pylint: disable=import-outside-toplevel
  ran = _fake_cell(monkeypatch, tmp_path, lambda variant, seed, split: 0.5)
  todo = [("mlp-10k-val", 0.9, "sam-rho0.05", s) for s in cells.SELECTION_SEEDS]
  ahead = [("mlp-10k-val", 0.9, "sgd", s) for s in (0, 1)]
  running = lock.RunLock(cells.CLAIMS / cells.cell_id(*todo[0])).acquire()  # Another process.
  def it_finishes(_):
    row = dict(cell=cells.cell_id(*todo[0]), setting="mlp-10k-val", variant="sam-rho0.05",
               seed=todo[0][3], test_accuracy=0.5, validation_accuracy=0.5)
    common.append_row(cells.rows_path("fashion_mnist"), row)
    running.release()
  monkeypatch.setattr(cells.time, "sleep", it_finishes)
  cells.run_cells(todo, shard=(0, 2))  # Positions 0 (claimed: skipped) and 2.
  rows = cells.wait_for_rows(todo, ahead=ahead)
  # Then the other shard's cell no process had started, then the cells ahead,
  # then it sleeps until the claimed cell's row is in; no cell twice.
  assert [(v, s) for _, v, s in ran] == [
      ("sam-rho0.05", 102), ("sam-rho0.05", 101), ("sgd", 0), ("sgd", 1)]
  assert [r["seed"] for r in rows] == list(cells.SELECTION_SEEDS)
  # A cell whose row landed after this process read the rows is not run again.
  assert not cells.run_free_cell(todo[0], {}) and len(ran) == 4
  assert not cells.run_free_cell(ahead[0], cells.all_rows())
  def folder_in_use(*cell, dataset=None):  # A program running the cell without a claim.
    raise lock.FolderInUseError(tmp_path, {"pid": 1})
  monkeypatch.setattr(cells, "run_cell", folder_in_use)
  assert not cells.run_free_cell(("mlp-10k-val", 0.9, "sgd", 2), {})


def _robustness_rows(gains):
  """Study and robustness rows of the SNIP cell: ``gains[variant]`` added to
  SGD's corrupted accuracy (plus a seed-dependent wobble)."""
  import cells  # pylint: disable=import-outside-toplevel
  rows, robust = [], []
  for seed in cells.SEEDS:
    for variant, gain in gains.items():
      cell = f"snip/{variant}/{seed}"
      rows.append(dict(cell=cell, setting="r20-10k-16px-snip", model="resnet20",
                       sparsity=0.9, variant=variant, seed=seed, test_accuracy=0.6,
                       curve=[[200, 0.6]]))
      acc = 0.5 + gain + 0.002 * (seed % 3)
      robust.append(dict(rows[-1], clean=0.6, corruption_accuracy=acc,
                         corrupted={name: [acc] * 5 for name in cifar10_c.CORRUPTIONS}))
  return rows, robust


def test_robustness_verdicts_follow_the_paired_numbers_and_need_a_control():
  import study_report  # pylint: disable=import-outside-toplevel
  rows, robust = _robustness_rows({"sgd": 0.0, "sam": 0.02, "zosam": 0.03})
  merged = study_report.with_robustness(rows, robust)
  assert merged[1]["corruption_change"] == pytest.approx(0.02 + 0.5 - 0.6)
  accuracy, change = study_report.robustness_verdicts(merged)
  assert ("**reproduced** (RESNET20, 10k subset, 16×16, crop pad 4, SNIP static 90% +3.00"
          in accuracy)
  assert "**reproduced**" in change
  rows, robust = _robustness_rows({"sgd": 0.0, "sam": -0.01, "zosam": 0.03})
  accuracy, _ = study_report.robustness_verdicts(study_report.with_robustness(rows, robust))
  assert "inconclusive: no cell could judge it yet" in accuracy  # SAM does not beat SGD.
  table = study_report.per_corruption_table(rows, robust)
  assert "| contrast | 50.20 ± 0.18 (n=6) | 49.20 ± 0.18 (n=6) | 53.20 ± 0.18 (n=6) | +3.00" in table


def test_convergence_is_not_judged_where_every_run_reaches_the_target_together():
  import cells  # pylint: disable=import-outside-toplevel
  import study_report  # pylint: disable=import-outside-toplevel
  def rows(zosam_curve):
    out = []
    for seed in cells.SEEDS:
      for variant, gain in (("sgd", 0.0), ("sam", 0.02 + 0.001 * seed), ("zosam", 0.0)):
        curve = zosam_curve(seed) if variant == "zosam" else [[200, 0.5], [400, 0.8]]
        out.append(dict(setting="cnn-10k", model="cnn", sparsity=0.9, variant=variant,
                        seed=seed, test_accuracy=0.8 + gain, curve=curve,
                        grad_var_rel=1.0))
    return out
  claim = lambda r: next(line for line in study_report.verdicts(r, "fashion_mnist")
                         .splitlines() if "converges faster" in line)
  together = claim(rows(lambda seed: [[200, 0.5], [400, 0.8]]))
  assert "inconclusive: no cell could judge it yet" in together
  assert "(not judged, CNN, 10k subset 90%: every run reached it at step 400)" in together
  faster = claim(rows(lambda seed: [[200, 0.8], [400, 0.8]] if seed else [[200, 0.5], [400, 0.8]]))
  assert "**reproduced**" in faster and "not judged" not in faster
  assert "-166.67" in faster  # 5 of 6 seeds reach it 200 steps earlier.


def test_cifar10_grid_runs_the_required_cells_before_98_percent():
  import cells  # pylint: disable=import-outside-toplevel
  assert cells.grid_cells("r20-10k-16px", cells.DATASETS["cifar10"]) == [
      ("r20-10k-16px", 0.9), ("r20-10k-16px-snip", 0.9), ("r20-10k-16px", 0.98)]
  noisy = cells.grid_cells("r20-10k-16px-noise40", cells.DATASETS["cifar10"])
  assert noisy[1] == ("r20-10k-16px-noise40-snip", 0.9)  # The SNIP cell follows the grid.
  assert cells.config_of(*noisy[1], "sgd", 0) == dict(
      cells.config_of("r20-10k-16px-noise40", 0.9, "sgd", 0), sparse_method="static",
      sparse_init="snip")
  assert cells.grid_cells("cnn-2k", cells.DATASETS["fashion_mnist"]) == [
      ("cnn-2k", 0.9), ("cnn-2k", 0.95), ("cnn-2k", 0.98)]


def test_jpeg_check_pairs_lossless_and_jpeg_accuracy_by_cell():
  import study_report  # pylint: disable=import-outside-toplevel
  rows = [dict(cell=f"c{i}", jpeg_check=dict(images=1000, lossless=0.6 + 0.01 * i,
                                             test_set=0.59 + 0.01 * i + 0.001 * (i % 2)))
          for i in range(4)] + [dict(cell="old")]
  text = study_report.jpeg_check(rows)
  assert "first 1000 official test images" in text and "paired over 4 cells" in text
  assert "+0.95 [" in text  # Mean of 1.0, 0.9, 1.0, 0.9 pp.
  assert study_report.jpeg_check([dict(cell="old")]) == "JPEG check: not measured yet."


def test_rows_are_appended_under_a_lock(tmp_path):
  import fcntl  # pylint: disable=import-outside-toplevel
  import threading  # pylint: disable=import-outside-toplevel
  path = tmp_path / "rows.jsonl"
  path.write_text("")
  with open(path) as other:  # Another process appending holds the lock.
    fcntl.flock(other, fcntl.LOCK_EX)
    writer = threading.Thread(target=common.append_row, args=(path, {"cell": "a"}))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive() and path.read_text() == ""
    fcntl.flock(other, fcntl.LOCK_UN)
  writer.join()
  common.append_row(path, {"cell": "b"})
  assert [json.loads(line) for line in path.read_text().splitlines()] == [
      {"cell": "a"}, {"cell": "b"}]


def test_gpu_protocol_declares_the_papers_recipe_three_seeds_per_program():
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  assert gpu_protocol.METHODS == ("sgd", "zosam", "sam", "zosam-prior")
  cfg = gpu_protocol.program_config("sam-rho0.2", 7)
  assert (cfg.model, cfg.image_size, cfg.train_subset, cfg.validation_subset, cfg.epochs,
          cfg.steps, cfg.lr, cfg.batch_size, cfg.rho, cfg.sparse_method, cfg.sparsity,
          cfg.dense_first_last, cfg.weight_decay, cfg.momentum, cfg.seeds,
          cfg.checkpoint_every) == (
              "resnet32", None, None, 5000, 7, None, 0.1, 128, 0.2, "rigl", 0.9, True, 5e-4,
              0.9, (0, 1, 2), 391)
  grid = [v for v, seeds in gpu_protocol.programs() if seeds == (100, 101, 102)]
  assert grid == [f"{m}-rho{r}" for m in ("sam", "zosam-prior")
                  for r in (0.05, 0.1, 0.2, 0.4)]


def test_gpu_plan_fits_every_program_in_the_budget():
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  times = {"sgd": 0.01, "zosam": 0.01, "sam": 0.02, "zosam-prior": 0.01}
  p = gpu_protocol.plan(times, 100, "gpu", budget=600)
  # 5 SAM programs (4 radii + the chosen), 5 of the prior, one SGD, one ZO-SAM:
  # 100 x (5 x 0.02 + 5 x 0.01 + 0.01 + 0.01) = 17 s an epoch, 420 s -> 24 epochs.
  assert p["programs"] == {"sgd": 1, "zosam": 1, "sam": 5, "zosam-prior": 5}
  assert p["epochs"] == 24 and p["expected_train_seconds"] == 408
  assert gpu_protocol.plan({"sgd": 1e-6}, 10, "gpu")["epochs"] == 160
  assert gpu_protocol.plan({"sgd": 10.0}, 100, "gpu")["epochs"] == 1
  assert len(p["cells"]) == 8 * 3 + 4 * 3
  assert p["cells"][0] == "r32-50k-gpu/rigl0.9/sam-rho0.05/seed100"


@pytest.mark.slow  # Compiles and times the step of each method of the protocol.
def test_gpu_dry_run_measures_and_prints_the_plan_at_tiny_size(tmp_path, capsys, monkeypatch):
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import load_dataset  # pylint: disable=import-outside-toplevel
  measured, measure = {}, gpu_protocol.measure
  def spy(method, *args, **kwargs):
    measured[method] = measure(method, *args, **kwargs)
    return measured[method]
  monkeypatch.setattr(gpu_protocol, "measure", spy)
  p = gpu_protocol.run(load_dataset("digits"), dry_run=True, tiny=True, root=tmp_path)
  out = capsys.readouterr().out
  assert "GPU protocol on cpu: 36 cells in 12 programs" in out and "chosen on validation" in out
  assert set(measured) == set(p["step_ms"]) == set(gpu_protocol.METHODS)
  assert all(t > 0 for t in measured.values())
  # Planned from the measured times themselves (the plan's ms are rounded for display).
  assert p["epochs"] == gpu_protocol.plan(measured, (1437 - 200) // 32, "cpu")["epochs"]
  assert not (tmp_path / "runs").exists()  # A dry run trains and writes nothing.


def test_gpu_dry_run_compares_issue_48s_winner_once_the_cpu_rows_name_one(
    tmp_path, capsys, monkeypatch):
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  import schedule_report  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import load_dataset  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(schedule_report, "winner", lambda rows: None)
  assert gpu_protocol.tuned() == gpu_protocol.TUNED  # None yet: the declared two.
  monkeypatch.setattr(schedule_report, "winner", lambda rows: "sam-ascent8-late25")
  assert gpu_protocol.tuned() == gpu_protocol.TUNED + ("sam-ascent8-late25",)
  measured = []
  monkeypatch.setattr(gpu_protocol, "measure",
                      lambda method, *a: measured.append(method) or 0.01)
  p = gpu_protocol.run(load_dataset("digits"), dry_run=True, tiny=True, root=tmp_path)
  assert measured == list(gpu_protocol.METHODS) + ["sam-ascent8-late25"]
  out = capsys.readouterr().out
  assert "sam-ascent8-late25" in p["step_ms"] and p["programs"]["sam-ascent8-late25"] == 5
  assert "sam, zosam-prior, sam-ascent8-late25 on seeds" in out
  assert "r32-50k-gpu/rigl0.9/sam-ascent8-late25-rho0.05/seed100" in p["cells"]


def test_issue_48s_winner_is_the_cheapest_option_meeting_the_goal(monkeypatch):
  import schedule_report  # pylint: disable=import-outside-toplevel
  verdicts = {"msam": "**met** (0.99 × SGD)", "sam-ascent8-late10": "**met** (1.02 × SGD)"}
  monkeypatch.setattr(schedule_report, "verdict",
                      lambda rows, m: verdicts.get(m, "**not met**: far"))
  monkeypatch.setattr(schedule_report, "_cost", {"msam": 0.99, "sam-ascent8-late10": 1.02}.get)
  assert schedule_report.winner([]) == "msam"
  verdicts.clear()
  monkeypatch.setattr(schedule_report, "pick", lambda rows, limit: (0.8, "sam-every", [], 1.0))
  assert schedule_report.winner([]) == "sam-every"  # None meets it: the 1.05 x pick.


def test_gpu_plan_is_saved_and_a_resumed_command_keeps_it(tmp_path, monkeypatch):
  import types  # pylint: disable=import-outside-toplevel
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(gpu_protocol, "measure", lambda method, *a: 0.01)
  ds = types.SimpleNamespace(x_train=np.zeros((50000, 1)))
  first = gpu_protocol._planned(ds, False, tmp_path,  # pylint: disable=protected-access
                                gpu_protocol.TUNED)
  assert (tmp_path / "runs/study/r32-50k-gpu/plan.json").is_file()
  # 45k training images: 351 steps; floor(420 s / (351 x 12 x 10 ms)) = 9 epochs.
  assert first["steps_per_epoch"] == 351 and first["epochs"] == 9
  monkeypatch.setattr(gpu_protocol, "measure",
                      lambda *a, **k: pytest.fail("a resumed command measured again"))
  assert gpu_protocol._planned(  # pylint: disable=protected-access
      ds, False, tmp_path, gpu_protocol.TUNED) == first


@pytest.mark.slow  # Eleven 3-seed programs of a few steps: a few minutes.
def test_gpu_protocol_chooses_on_validation_then_runs_the_finals(tmp_path, monkeypatch):
  import gpu_protocol  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import load_dataset  # pylint: disable=import-outside-toplevel
  rows_file = tmp_path / "rows.jsonl"
  monkeypatch.setattr(cells, "rows_path", lambda dataset: rows_file)
  done = {cells.cell_id("r32-50k-gpu", 0.9, "sgd", s): dict(setting="r32-50k-gpu",
                                                            variant="sgd", seed=s)
          for s in gpu_protocol.SEEDS}
  def all_rows():  # SGD's program is done already; the rest as they are written.
    written = common.read_rows_any(rows_file) if rows_file.exists() else []
    return dict(done, **{r["cell"]: r for r in written})
  monkeypatch.setattr(cells, "all_rows", all_rows)
  monkeypatch.setitem(cells.DATASETS, "digits", {"test_set": "digits, 360 images"})
  monkeypatch.setattr(gpu_protocol, "_planned", lambda ds, tiny, root, tuned: dict(
      gpu_protocol.plan({"sgd": 1.0}, 38, "cpu"), epochs=0.1))
  gpu_protocol.run(load_dataset("digits"), tiny=True, root=tmp_path)
  rows = [json.loads(l) for l in rows_file.read_text().splitlines()]
  grid = [r for r in rows if r["seed"] >= 100]
  # Four steps learn nothing: validation ties, the smallest radius wins and each
  # grid grows down by cells.EDGE_STEPS radii.
  import best_radius  # pylint: disable=import-outside-toplevel
  sizes = [len(best_radius.radii(rows, "r32-50k-gpu", m)) for m in gpu_protocol.TUNED]
  assert sizes == [len(cells.RADII) + cells.EDGE_STEPS] * 2
  assert len(grid) == 3 * sum(sizes) and all(r["validation_accuracy"] is not None
                                             for r in grid)
  finals = [(r["variant"], r["seed"]) for r in rows if r["seed"] < 100]
  chosen = [v for v, s in finals if s == 0 and v.startswith(("sam-", "zosam-prior"))]
  assert [v for v, s in finals if s == 0][0] == "zosam" and len(chosen) == 2  # SGD was done.
  assert all(r["steps"] == 4 and r["program_seeds"] in ([0, 1, 2], [100, 101, 102])
             for r in rows)


@pytest.mark.parametrize("argv,message", [
    (["one"], "one needs --setting and --variant"),
    (["one", "--setting", "r32-50k-gpu", "--variant", "sgd"], "add --dataset cifar10"),
    (["gpu"], "gpu runs CIFAR-10 cells: add --dataset cifar10"),
    (["grid", "--dry-run"], "--dry-run prints the GPU protocol's plan: it needs gpu, not grid"),
    (["one", "--setting", "no-such", "--variant", "sgd"], "invalid choice: 'no-such'")])
def test_study_command_errors_name_the_argument(argv, message, monkeypatch, capsys):
  import study  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(sys, "argv", ["study.py"] + argv)
  with pytest.raises(SystemExit):
    study.main()
  assert message in capsys.readouterr().err


def test_unjudged_claims_say_when_no_declared_control_can_pass_any_more():
  import cells  # pylint: disable=import-outside-toplevel
  import study_report  # pylint: disable=import-outside-toplevel
  def attempts(sam_gain, done=len(cells.SEEDS)):
    return [dict(setting=setting, model="resnet20", sparsity=sp, variant=variant, seed=seed,
                 test_accuracy=0.6 + (sam_gain + 0.001 * seed if variant == "sam" else 0.0),
                 curve=[[200, 0.6]], grad_var_rel=1.0)
            for setting, sp in cells.CONTROL_ATTEMPTS["resnet20"]
            for seed in cells.SEEDS[:done] for variant in ("sgd", "sam")]
  claim = lambda rows: next(line for line in study_report.verdicts(rows, "cifar10")
                            .splitlines() if "beats SGD in sparse" in line)
  assert "none of the 5 declared positive-control attempts" in claim(attempts(-0.01))
  assert "no cell could judge it yet" in claim(attempts(-0.01, done=3))  # Still running.
  snip_running = [dict(r, setting="r20-10k-16px-snip") for r in attempts(-0.01, done=3)]
  assert "no cell could judge it yet" in claim(attempts(-0.01) + snip_running)
  assert "no cell could judge it yet" in claim(attempts(0.01))  # Passed: ZO-SAM's cells to run.


def test_ascent_goal_verdict_follows_the_paired_numbers_and_the_cost(monkeypatch):
  import ascents_report  # pylint: disable=import-outside-toplevel
  gains = {"sgd": 0.0, "sam": 0.02, "zosam": -0.01, "zosam-prior": 0.01, "msam-rho0.3": 0.019}
  rows = [dict(setting=setting, sparsity=sp, variant=v, seed=s,
               test_accuracy=0.8 + g + 0.001 * (s % 2) * (v != "sgd"))
          for setting, sp in ascents_report.SETTINGS for v, g in gains.items()
          for s in range(6)]
  cost = {"msam-rho0.3": 0.5, "zosam": 0.65, "zosam-prior": 0.69}
  monkeypatch.setattr(ascents_report, "cost_ratio", lambda setting, sp, a, b: (
      cost.get(a, 1.0) if b == "sam" else 2 * cost.get(a, 0.5)))
  goal = ascents_report.goal(rows)
  assert "- MSAM ρ=0.3: **met**" in goal  # −0.1 pp of SAM on both, at half its cost.
  assert "- prior=gradient: **not met**: CNN, 40% label noise − SAM -1.00" in goal
  assert "- LookSAM k=5: not judged yet (runs missing in CNN, 40% label noise, MLP)" in goal
  table = ascents_report.table(rows)
  assert ("| MLP | prior=gradient | +1.05 [+0.99, +1.11], p=0.000, n=6 | better | "
          "-1.00 [-1.00, -1.00], p=0.000, n=6 | 51% | 1.38 | 0.69 |") in table
  assert "| MLP | LookSAM k=5 | not run yet |" in table
  # A setting judges with all 6 seeds; one that is in already can fail the goal.
  few = [r for r in rows if not (r["variant"] in ("msam-rho0.3", "zosam")
                                 and r["setting"] == "cnn-10k-noise40" and r["seed"] > 2)]
  goal = ascents_report.goal(few)
  assert "- MSAM ρ=0.3: not judged yet (CNN, 40% label noise n=3 of 6 seeds; so far" in goal
  assert "- ZO-SAM m=1 (paper): **not met**: MLP − SAM -3.00" in goal


def _fake_cell(monkeypatch, tmp_path, accuracy):
  """``cells.run_cell`` replaced by a row of ``accuracy(variant, seed, split)``;
  rows go to ``tmp_path``; returns the list of cells run."""
  import cells  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cells, "rows_path", lambda dataset: tmp_path / f"{dataset}.jsonl")
  monkeypatch.setattr(cells, "CLAIMS", tmp_path / "claims")
  ran = []
  def fake_run_cell(setting, sparsity, variant, seed, dataset=None):
    ran.append((setting, variant, seed))
    return dict(cell=cells.cell_id(setting, sparsity, variant, seed), setting=setting,
                sparsity=sparsity, variant=variant, seed=seed, wall_seconds=1.0,
                test_accuracy=accuracy(variant, seed, "test"),
                validation_accuracy=accuracy(variant, seed, "validation"))
  monkeypatch.setattr(cells, "run_cell", fake_run_cell)
  # The protocol loads each setting's data for its cells; these cells are fakes.
  monkeypatch.setattr(zosam_jax.train, "load_dataset", lambda *a, **k: None)
  return ran


def _gains_accuracy(gains, default):
  """A fake cell's accuracy: SGD 0.5; on validation every method peaks at ρ 0.1;
  on the test set 0.5 + the method's gain over SGD (``default`` if unlisted)."""
  def accuracy(variant, seed, split):
    if variant.startswith("sgd"):
      return 0.5
    method, rho = variant.rsplit("-rho", 1)
    if split == "validation":
      return 0.7 - abs(float(rho) - 0.1)
    return 0.5 + gains.get(method, default) + 0.001 * (seed % 3)
  return accuracy


def test_best_radius_chooses_on_validation_only_then_runs_fresh_seeds(tmp_path, monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  # Validation prefers rho 0.2 for SAM and 0.1 for the others; the test numbers
  # prefer 0.4 everywhere (they must not matter).
  best = {"sam": 0.2}
  def accuracy(variant, seed, split):
    if variant.startswith("sgd"):
      return 0.5
    method, rho = variant.rsplit("-rho", 1)
    if split == "test":
      return 0.6 + float(rho) / 10 + 0.001 * (seed % 2)
    return 0.7 - abs(float(rho) - best.get(method, 0.1)) + 0.001 * seed
  ran = _fake_cell(monkeypatch, tmp_path, accuracy)
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (("mlp-10k-val",),))
  monkeypatch.setattr(cells.time, "sleep", lambda _: pytest.fail("one shard waits for none"))
  assert best_radius.run() == ["mlp-10k-val"]
  rows = cells.read_rows("fashion_mnist")
  expected = {m: best.get(m, 0.1) for m in cells.TUNED}
  assert {c["method"]: c["rho"] for c in best_radius.chosen(rows)} == expected
  frozen = best_radius.Rows(rows)  # The reports' rows: indexed once, the same choices.
  assert {c["method"]: c["rho"] for c in best_radius.chosen(frozen)} == expected
  assert best_radius.selection_accuracies(frozen) is best_radius.selection_accuracies(frozen)
  assert best_radius.selection_accuracies(rows) is not best_radius.selection_accuracies(rows)
  calls = []
  counted = best_radius.per_rows(lambda rows, *args: calls.append(args) or len(calls))
  assert [counted(frozen, "sam"), counted(frozen, "sam"), counted(frozen, "msam")] == [1, 1, 2]
  assert counted(rows, "sam") == 3 and counted(rows, "sam") == 4  # A list: asked anew.
  finals = {(v, s) for _, v, s in ran if s in cells.SEEDS}
  assert finals == {(v, s) for s in cells.SEEDS for v in (
      "sgd", "sgd-repeat2", "sam-repeat2-rho0.2", *(f"{m}-rho{rho}" for m, rho in expected.items()))}
  grid = [(v, s) for _, v, s in ran if s in cells.SELECTION_SEEDS]
  assert len(grid) == len(set(grid)) == (
      len(cells.TUNED) * len(cells.RADII) * len(cells.SELECTION_SEEDS))
  assert not set(cells.SEEDS) & set(cells.SELECTION_SEEDS)
  # Each method's grid then its finals, one method after the other, in declared order.
  order = [v.rsplit("-rho", 1)[0] for _, v, _ in ran if v != "sgd"]
  blocks = [m for i, m in enumerate(order) if i == 0 or m != order[i - 1]]
  # ... each declared control right after its method's finals.
  assert blocks == [n for m in cells.TUNED for n in (m, *cells.TUNED_CONTROLS.get(m, ()))]
  assert cells.config_of("cnn-10k-noise40-val", 0.9, "sam-rho0.4", 0)["validation_subset"] == 5000
  import best_report  # pylint: disable=import-outside-toplevel
  row = best_report.method_row(rows, "mlp-10k-val", "zosam-prior")
  assert row["variant"] == "zosam-prior-rho0.1" and row["gain"]["n"] == 6
  assert row["to_sam"]["n"] == 6  # The fresh seeds only, not SAM's grid cells at 0.2.
  text = best_report.render(rows)
  assert "| Fashion-MNIST MLP | SAM | " in text  # The grid ...
  assert "| Fashion-MNIST MLP | prior=gradient, m=0, ρ=0.1 | " in text  # ... and the finals.
  assert ("| Fashion-MNIST MLP | what the output layer's gradient on the current minibatch "
          "buys: prior, probe=False, output layer exact − prior, probe=False (no forward "
          "pass) | +0.00 [+0.00, +0.00], p=1.000, n=6 | no significant difference |") in text
  assert ("| Fashion-MNIST MLP | the repeated prior's gain over SGD with the same data order: "
          "prior, probe=False, each minibatch twice − SGD, each minibatch twice | +11.05 "
          "[+10.99, +11.11], p=0.000, n=6 | better |") in text
  # SAM's control at SAM's chosen radius (0.2), not at the repeated prior's (0.1).
  assert ("the repeated prior against SAM with the same data order: prior, probe=False, "
          "each minibatch twice − SAM at its ρ, each minibatch twice | -1.00 ") in text


def test_best_report_recommends_the_largest_smallest_share_within_the_cost(tmp_path,
                                                                          monkeypatch):
  import ascents_report  # pylint: disable=import-outside-toplevel
  import best_radius  # pylint: disable=import-outside-toplevel
  import best_report  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  # SAM's gain 0.10; others 0.03.
  _fake_cell(monkeypatch, tmp_path, _gains_accuracy(
      {"sam": 0.10, "sam-repeat2": 0.10, "zosam-prior": 0.09, "zosam-prior-noprobe": 0.06},
      0.03))
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (("mlp-10k-val",), ("cnn-10k-noise40-val",)))
  best_radius.run_setting(("mlp-10k-val",))
  rows = cells.read_rows("fashion_mnist")
  text = best_report.recommendation(rows)
  assert "(not yet: Fashion-MNIST CNN, 40% label noise)" in text
  assert "- The accuracy reference, SAM: ρ = 0.1 (Fashion-MNIST MLP)." in text
  # The probed prior has the larger share but is over the goal's cost.
  monkeypatch.setattr(ascents_report, "cost_ratio",
                      lambda setting, sparsity, a, b: 0.7 if a == "zosam-prior" else 0.5)
  text = best_report.recommendation(rows)
  assert ("- Within the goal's cost (≤ 0.6 × SAM's step time), the largest smallest share of "
          "SAM's gain: prior, probe=False (no forward pass), 60% of it (the settings in "
          "order), ρ = 0.1 (Fashion-MNIST MLP).") in text
  assert ("- At any cost, the largest smallest share of SAM's gain: prior=gradient, m=0, 90% "
          "of it") in text
  assert best_report.recommendation([]) == (
      "- Not judged yet: no setting has a positive control.")
  table = best_report.summary(rows)
  assert ("| Fashion-MNIST MLP | Fashion-MNIST CNN, 40% label noise (no positive control "
          "yet) | goal |") in table
  assert ("| SAM | 0.50 | ρ 0.1: +10.10 [+10.01, +10.19] over SGD | — | the reference |"
          in table)
  assert ("| prior=gradient, m=0 | 0.70 | ρ 0.1: 90% of its gain, − SAM -1.00 [-1.00, -1.00] "
          "| — | not met |") in table
  assert table.endswith(text)
  best_report.figure(rows, tmp_path / "figure.png")
  assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"
  assert (tmp_path / "figure.png").stat().st_size > 20_000


def test_best_report_shows_how_far_each_final_ends_below_its_best_evaluation(tmp_path,
                                                                               monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import best_report  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  def accuracy(variant, seed, split):
    return 0.5 if variant.startswith("sgd") else 0.7 - abs(float(variant.rsplit("-rho", 1)[1])
                                                          - 0.2)
  _fake_cell(monkeypatch, tmp_path, accuracy)
  best_radius.run_setting(("mlp-10k-val",))
  rows = cells.read_rows("fashion_mnist")
  assert best_report.overtraining_table(rows).count("\n") == 1  # Rows without the best: none.
  # SGD peaked 8 pp above where it ended; SAM ended at its best.
  rows = [dict(r, best_validation_accuracy=r["validation_accuracy"]
               + (0.08 if r["variant"] == "sgd" else 0.0)) for r in rows]
  table = best_report.overtraining_table(rows)
  assert "| Fashion-MNIST MLP | SGD | 50.00 | 58.00 | -8.00 | 6 |" in table
  assert "| Fashion-MNIST MLP | SAM, ρ=0.2 | 70.00 | 70.00 | +0.00 | 6 |" in table
  assert table.count("| SAM, ρ=") == 1  # The chosen radius's fresh seeds (n = 6) only.
  assert "### Over-training: validation accuracy at the end" in best_report.render(rows)


def test_best_report_names_the_one_radius_nearest_tuned_sam_everywhere(tmp_path, monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import best_report  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  peaks = {"mlp-10k-val": 0.1, "cnn-10k-noise40-val": 0.4}  # The plain prior's, by setting.
  def accuracy(variant, seed, split):
    if variant.startswith("sgd"):
      return 0.5
    if split == "test":
      return 0.6 + 0.001 * (seed % 3)
    method, rho = variant.rsplit("-rho", 1)
    peak = peaks[ran[-1][0]] if method == "zosam-prior" else 0.1
    return 0.8 - abs(float(rho) - peak) / 10
  ran = _fake_cell(monkeypatch, tmp_path, accuracy)
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (("mlp-10k-val",), ("cnn-10k-noise40-val",)))
  rows = cells.read_rows("fashion_mnist")
  assert best_report.untuned(rows) == "- Not judged yet: SAM's grids are not all in."
  best_radius.run()
  text = best_report.untuned(cells.read_rows("fashion_mnist"))
  assert ("- SAM: ρ = 0.1, worst +0.00 pp (Fashion-MNIST MLP): within 0.5 pp of tuned SAM "
          "everywhere") in text
  # Its best single radius, 0.2, is 1 pp off on the MLP and 2 on the CNN.
  assert ("- prior=gradient, m=0: ρ = 0.2, worst -2.00 pp (Fashion-MNIST CNN, 40% label "
          "noise): not within 0.5 pp") in text


def test_best_radius_without_a_positive_control_tries_the_next_attempt(tmp_path, monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  def accuracy(variant, seed, split):  # SAM never beats SGD on the noisy setting.
    return 0.5 + (0.01 + 0.001 * seed if variant.startswith("sam") and split == "test"
                  and "noise" not in ran[-1][0] else 0.0)
  ran = _fake_cell(monkeypatch, tmp_path, accuracy)
  attempts = ("c10cnn-10k-noise40-val", "c10cnn-10k-val")
  assert best_radius.run_setting(attempts) == "c10cnn-10k-val"
  noisy = {v for s, v, _ in ran if s == attempts[0]}
  rows = cells.read_rows("cifar10")
  # Validation ties everywhere: the smallest radius wins, so the grid grows down.
  grid_radii = best_radius.radii(rows, attempts[0], "sam")
  assert grid_radii == (0.0125, 0.025, *cells.RADII)
  assert noisy == {"sgd"} | {f"sam-rho{r}" for r in grid_radii}  # No ZO cell ran there.
  assert best_radius.chosen_radius(rows, attempts[0], "sam") == 0.0125
  import best_report  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (attempts,))
  assert (best_report.setting_label("c10mlp-10k-noise40-noaug-val")
          == "CIFAR-10 MLP, 40% label noise, no augmentation")
  assert cells.config_of("c10mlp-10k-noise40-noaug-val", 0.9, "sgd", 0)["augment"] is False
  noisy_rows = [r for r in rows if r["setting"] == attempts[0]]
  assert ("| CIFAR-10 CNN, 40% label noise (no positive control) | goal |"
          in best_report.summary(noisy_rows))
  running = [r for r in noisy_rows if (r["variant"], r["seed"]) != ("sam-rho0.0125", 5)]
  assert ("| CIFAR-10 CNN, 40% label noise (no positive control yet) | goal |"
          in best_report.summary(running))
  assert ("| CIFAR-10 CNN (after CIFAR-10 CNN, 40% label noise: no positive control) | goal |"
          in best_report.summary(rows))


def test_best_radius_grows_a_grid_whose_best_radius_is_at_its_edge(tmp_path, monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  # Validation: SAM best at 0.02 (below the grid), the others at 0.1; the
  # prior=gradient, m=0 best at 5.0 (above it: two steps up, then it stops).
  best = {"sam": 0.02, "zosam-prior": 5.0}
  def accuracy(variant, seed, split):
    if variant.startswith("sgd"):
      return 0.5
    method, rho = variant.rsplit("-rho", 1)
    if split == "test":
      return 0.6 + 0.001 * (seed % 2)
    return 0.7 - abs(float(rho) - best.get(method, 0.1)) / 10
  ran = _fake_cell(monkeypatch, tmp_path, accuracy)
  best_radius.run_setting(("mlp-10k-val",))
  rows = cells.read_rows("fashion_mnist")
  assert best_radius.radii(rows, "mlp-10k-val", "sam") == (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)
  assert best_radius.chosen_radius(rows, "mlp-10k-val", "sam") == 0.025  # 0.0125 is farther.
  assert best_radius.radii(rows, "mlp-10k-val", "zosam-prior") == (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
  assert best_radius.chosen_radius(rows, "mlp-10k-val", "zosam-prior") == 1.6  # At most 2 up.
  assert best_radius.radii(rows, "mlp-10k-val", "zosam-prior-noprobe") == cells.RADII
  finals = {v for _, v, s in ran if s in cells.SEEDS}
  assert {"sam-rho0.025", "zosam-prior-rho1.6", "zosam-prior-noprobe-rho0.1"} <= finals
  grid = [(v, s) for _, v, s in ran if s in cells.SELECTION_SEEDS]
  assert len(grid) == len(set(grid))  # No cell twice.
  assert cells.config_of("mlp-10k-val", 0.9, "sam-rho0.0125", 100)["rho"] == 0.0125
  # While an added radius is running, nothing is chosen.
  partial = [r for r in rows if r["variant"] != "sam-rho0.0125" or r["seed"] != 100]
  assert best_radius.chosen_radius(partial, "mlp-10k-val", "sam") is None


def test_best_radius_runs_ahead_only_cells_the_next_step_needs(tmp_path, monkeypatch):
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  _fake_cell(monkeypatch, tmp_path, lambda variant, seed, split: 0.5 + (
      0.01 + 0.001 * seed if variant.startswith("sam") and split == "test" else 0.0))
  waits, wait = [], cells.wait_for_rows
  def recording_wait(todo, dataset=None, then=None, ahead=()):
    waits.append((todo[0][2].split("-rho")[0], sorted({c[2] for c in ahead})))
    return wait(todo, dataset, then, ahead)
  monkeypatch.setattr(cells, "wait_for_rows", recording_wait)
  best_radius.run_setting(("mlp-10k-val",))
  others = [m for m in cells.TUNED if m != "sam"]
  # SGD's cells during SAM's grid; nothing while the positive control is
  # judged; the next method's first grid during each method's; the last none.
  expected = [("sam", ["sgd"]), ("sgd", [])] + [
      (m, [f"{n}-rho{r}" for r in cells.RADII] if n else [])
      for m, n in zip(others, [*others[1:], None])]
  # (Validation ties: each grid grows twice, three waits each, the same cells ahead.)
  assert [w for i, w in enumerate(waits) if i == 0 or w != waits[i - 1]] == expected


def test_best_radius_shards_split_the_three_selection_seeds_evenly():
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  todo = best_radius.first_grid("mlp-10k-val", "sam")
  shares = [sum(cells.shard_of(c, todo, 2) == i for c in todo) for i in (0, 1)]
  assert shares == [len(todo) // 2] * 2


def test_schedule_report_judges_whole_run_cost_and_says_what_to_use_by_cost(
    tmp_path, monkeypatch):
  import ascents_report  # pylint: disable=import-outside-toplevel
  import best_radius  # pylint: disable=import-outside-toplevel
  import cells  # pylint: disable=import-outside-toplevel
  import schedule_report  # pylint: disable=import-outside-toplevel
  _fake_cell(monkeypatch, tmp_path, _gains_accuracy(
      {"sam": 0.10, "sam-ascent8": 0.095, "sam-ascent8-late25": 0.096,
       "sam-ascent8-every4": 0.099, "msam": 0.03, "sam-late25": 0.10}, 0.05))
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (("mlp-10k-val",),))
  best_radius.run_setting(("mlp-10k-val",))
  rows = cells.read_rows("fashion_mnist")
  cost = {"sam": 1.9, "sam-ascent8": 1.18, "sam-ascent8-late25": 1.04,
          "sam-ascent8-every4": 1.06, "msam": 1.0}
  monkeypatch.setattr(ascents_report, "whole_run_cost", lambda m, model: cost.get(m))
  assert schedule_report.verdict(rows, "sam-ascent8-late25") == "**met** (1.040 × SGD)"
  assert schedule_report.verdict(rows, "sam-ascent8-every4").startswith(
      "**not met**: 1.060 × SGD's whole-run step time (goal ≤ 1.05)")
  assert "Fashion-MNIST MLP: 31% of SAM's gain, − SAM -7.00" in (
      schedule_report.verdict(rows, "msam"))
  assert schedule_report.verdict(rows, "sam-late25") == "not judged yet (not timed)"
  use = schedule_report.what_to_use(rows).splitlines()
  assert use[0].startswith("- about SGD's (≤ 1.02 ×): MSAM (grid may grow up to ρ 12.8), ρ = 0.1")
  assert use[1].startswith("- about 1.05 ×: SAM, ⅛ ascent, last 25% of steps, ρ = 0.1 (the "
                           "settings in order), 1.040 × SGD, keeps 96% of SAM's gain")
  assert use[2].startswith("- about 1.2 ×: SAM, ⅛ ascent, every 4th step")
  assert use[3].startswith("- SAM's (about 2 ×): SAM, ρ = 0.1") and "the reference" in use[3]
  assert "| SAM, ⅛ ascent, last 25% of steps | 1.040, 1.040 | ρ 0.1: 96% of its gain" in (
      schedule_report.table(rows))


def test_what_to_use_is_provisional_while_runs_are_missing_and_says_when_none_is_that_cheap(
    monkeypatch):
  import cells  # pylint: disable=import-outside-toplevel
  import schedule_report  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cells, "BEST_ATTEMPTS", (("a",), ("b",)))
  share = {"sam": 1.0, "msam": 0.5, "sam-ascent8-every4": 0.9}
  missing = {"b"}  # Settings where only SAM's runs are in.
  def rows_of(rows, method):
    return ([None if s in missing and method != "sam" else
             dict(variant=f"{method}-rho0.1", share=share.get(method, 0.2)) for s in "ab"],
            ["A", "B"])
  monkeypatch.setattr(schedule_report, "_rows_of", rows_of)
  monkeypatch.setattr(schedule_report, "_cost",
                      {"sam": 1.9, "msam": 1.1, "sam-ascent8-every4": 1.15}.get)
  use = schedule_report.what_to_use([]).splitlines()
  assert use[0] == ("- about SGD's (≤ 1.02 ×): no option costs that little on both models "
                    "(the cheapest, MSAM (grid may grow up to ρ 12.8), 1.100 × SGD).")
  assert use[1].startswith("- about 1.05 ×: no option costs that little")
  assert use[2] == ("- about 1.2 ×: so far, over the settings where every option's runs are "
                    "in (A): SAM, ⅛ ascent, every 4th step, ρ = 0.1 (the settings in order), "
                    "1.150 × SGD, keeps 90% of SAM's gain.")
  assert use[3].startswith("- SAM's (about 2 ×): SAM, ρ = 0.1, 0.1 (the settings in order)")
  # MSAM complete on both settings with less than every 4th step's 90% so far:
  monkeypatch.setattr(schedule_report, "_rows_of", lambda rows, method: (
      [dict(variant=f"{method}-rho0.1", share=0.85)] * 2, ["A", "B"]) if method == "msam"
      else rows_of(rows, method))
  assert schedule_report.what_to_use([]).splitlines()[2].startswith(
      "- about 1.2 ×: so far, over the settings where every option's runs are in (A): SAM, ⅛ "
      "ascent, every 4th step")  # not MSAM's final 85%: every 4th step may still beat it.
  monkeypatch.setattr(schedule_report, "_rows_of", rows_of)
  missing.add("a")  # No setting complete for every option: nothing to say yet.
  assert schedule_report.what_to_use([]).splitlines()[2] == (
      "- about 1.2 ×: no option complete on every judged setting yet.")
  missing.clear()  # Every run in: the pick is final, not provisional.
  assert schedule_report.what_to_use([]).splitlines()[2].startswith(
      "- about 1.2 ×: SAM, ⅛ ascent, every 4th step, ρ = 0.1, 0.1")
