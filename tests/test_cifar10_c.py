"""The CIFAR-10-C corruptions against their published severity parameters."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import cifar10_c  # noqa: E402

GREY = np.full((64, 32, 32, 3), 128, np.uint8)  # Mid-grey: no clipping anywhere.


def _pattern(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(40, 216, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_gaussian_noise_has_the_published_standard_deviation(severity):
  out = cifar10_c.corrupt(GREY, "gaussian_noise", severity).astype(np.float64)
  c = cifar10_c.PARAMS["gaussian_noise"][severity - 1]
  # uint8 truncation lowers the mean by about half a level.
  assert np.std(out / 255) == pytest.approx(c, rel=0.03)
  assert np.mean(out) == pytest.approx(127.5, abs=0.6)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_shot_noise_variance_is_x_over_c(severity):
  out = cifar10_c.corrupt(GREY, "shot_noise", severity).astype(np.float64) / 255
  c = cifar10_c.PARAMS["shot_noise"][severity - 1]
  assert np.var(out) == pytest.approx((128 / 255) / c, rel=0.06)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_impulse_noise_hits_the_published_fraction_half_salt_half_pepper(severity):
  out = cifar10_c.corrupt(GREY, "impulse_noise", severity)
  c = cifar10_c.PARAMS["impulse_noise"][severity - 1]
  assert np.mean(out != 128) == pytest.approx(c, rel=0.08)
  assert np.mean(out == 255) == pytest.approx(np.mean(out == 0), rel=0.2)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_contrast_scales_deviations_from_the_image_mean(severity):
  x = _pattern()
  out = cifar10_c.corrupt(x, "contrast", severity).astype(np.float64)
  c = cifar10_c.PARAMS["contrast"][severity - 1]
  dev = x - x.mean(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(out.std(axis=(1, 2)), c * dev.std(axis=(1, 2)), atol=0.6)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_brightness_adds_c_to_the_value_channel(severity):
  out = cifar10_c.corrupt(GREY[:2], "brightness", severity).astype(np.float64)
  c = cifar10_c.PARAMS["brightness"][severity - 1]
  assert np.all(np.abs(out - np.floor((128 / 255 + c) * 255)) <= 1)


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_defocus_blur_applies_the_published_disk(severity):
  radius, alias = cifar10_c.PARAMS["defocus_blur"][severity - 1]
  kernel = cifar10_c.disk_kernel(radius, alias)
  assert kernel.shape == (17, 17) and kernel.sum() == pytest.approx(1.0)
  image = np.zeros((1, 32, 32, 3), np.uint8)
  image[0, 16, 16] = 255
  out = cifar10_c.corrupt(image, "defocus_blur", severity)[0, ..., 0].astype(np.float64)
  expected = np.floor(255 * kernel[8 - 3:8 + 4, 8 - 3:8 + 4])
  np.testing.assert_allclose(out[13:20, 13:20], expected, atol=1)
  assert out[16, 16] < 255 and (out[16, 16] / 255) > 0.1  # Blurred, not erased.


@pytest.mark.parametrize("severity", cifar10_c.SEVERITIES)
def test_pixelate_leaves_32c_blocks(severity):
  x = _pattern(2)
  out = cifar10_c.corrupt(x, "pixelate", severity)
  c = cifar10_c.PARAMS["pixelate"][severity - 1]
  # Box-downsampling to floor(32c) and back repeats columns: 32 - floor(32c) repeats.
  repeated = np.all(out[:, :, 1:] == out[:, :, :-1], axis=(1, 3)).sum(axis=1)
  assert np.all(repeated >= 32 - int(32 * c))


def test_jpeg_error_grows_as_the_published_quality_falls():
  x = _pattern(4)
  errors = [np.abs(cifar10_c.corrupt(x, "jpeg_compression", s).astype(float) - x).mean()
            for s in cifar10_c.SEVERITIES]
  assert all(a < b for a, b in zip(errors, errors[1:])) and errors[0] > 0


@pytest.mark.parametrize("name", cifar10_c.CORRUPTIONS)
def test_deterministic_uint8_and_stronger_with_severity(name):
  x = _pattern(4)
  outs = [cifar10_c.corrupt(x, name, s, seed=1) for s in cifar10_c.SEVERITIES]
  assert all(o.dtype == np.uint8 and o.shape == x.shape for o in outs)
  np.testing.assert_array_equal(outs[2], cifar10_c.corrupt(x, name, 3, seed=1))
  dist = [np.abs(o.astype(float) - x).mean() for o in outs]
  assert dist[-1] > dist[0] > 0


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="unknown corruption"):
    cifar10_c.corrupt(GREY, "fog", 1)
  with pytest.raises(ValueError, match="severity"):
    cifar10_c.corrupt(GREY, "contrast", 6)
  with pytest.raises(ValueError, match="uint8"):
    cifar10_c.corrupt(GREY.astype(np.float32), "contrast", 1)


@pytest.mark.slow  # Trains and evaluates study cells under corruptions: about a minute.
def test_robustness_rows_evaluate_each_finished_cell_once(tmp_path, monkeypatch):
  import study_robustness  # pylint: disable=import-outside-toplevel
  from tests.test_train_data import make_cifar10  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import (TrainConfig, evaluate_checkpoint,  # pylint: disable=import-outside-toplevel
                               load_dataset, train_and_evaluate)
  monkeypatch.setenv("ZOSAM_DATA", str(tmp_path / "cache"))
  make_cifar10(tmp_path / "data")
  cfg = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "data"), download=False,
                    model="mlp", image_size=16, optimizer="sgd", steps=3, batch_size=8,
                    progress=False)
  train_and_evaluate(cfg, tmp_path / "runs" / "a")
  ds = load_dataset("cifar10", tmp_path / "data", download=False)
  row = dict(cell="a", setting="s", model="mlp", sparsity=0.9, variant="sgd", seed=0,
             test_set="t", workdir="runs/a", config=dict(image_size=16))
  no_checkpoint = dict(row, cell="b", workdir="runs/b")
  rows_path = tmp_path / "rob.jsonl"
  evaluate = study_robustness.Evaluator(ds.x_test, ds.y_test, path=rows_path, root=tmp_path,
                                        cache=tmp_path / "sets")
  [out] = evaluate([row, no_checkpoint])
  assert "jpeg_check" not in out
  # The clean set goes through the run's own pooling and normalisation.
  assert out["clean"] == evaluate_checkpoint(tmp_path / "runs" / "a")["accuracy"]
  assert set(out["corrupted"]) == set(cifar10_c.CORRUPTIONS)
  assert all(len(v) == 5 and all(0 <= a <= 1 for a in v) for v in out["corrupted"].values())
  assert out["corruption_accuracy"] == pytest.approx(
      np.mean([a for v in out["corrupted"].values() for a in v]))
  assert evaluate([row, no_checkpoint]) == []  # Done cells are skipped.
  # With lossless first images, a row without the JPEG check is evaluated again.
  positions = np.array([5, 2, 7, 0])  # Where the lossless copies sit in the test set.
  lossless = (ds.x_test[positions] // 2, ds.y_test[positions], positions)
  evaluate = study_robustness.Evaluator(ds.x_test, ds.y_test, lossless, rows_path,
                                        root=tmp_path, cache=None)
  [again] = evaluate([row])
  assert again["jpeg_check"]["images"] == 4
  assert again["jpeg_check"]["test_set"] == pytest.approx(np.mean(
      np.asarray(_predictions(tmp_path, ds.x_test[positions])) == ds.y_test[positions]))
  assert again["jpeg_check"]["lossless"] == pytest.approx(np.mean(
      np.asarray(_predictions(tmp_path, lossless[0])) == ds.y_test[positions]))
  assert evaluate([row]) == []
  assert study_robustness.read_rows(rows_path) == [again]  # The last row of a cell wins.
  with pytest.raises(ValueError, match="do not match the test set"):
    study_robustness.Evaluator(ds.x_test, ds.y_test, (lossless[0], lossless[1], positions[::-1]))


def _predictions(tmp_path, x32):
  """The trained run's predicted classes of 32x32 images (pooled to 16x16)."""
  import analysis  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import normalize  # pylint: disable=import-outside-toplevel
  from zosam_jax.train.data import pool_images  # pylint: disable=import-outside-toplevel
  run = analysis.load_run(str(tmp_path / "runs" / "a"))
  variables = {"params": run.params, "batch_stats": run.batch_stats}
  logits = run.model.apply(variables, normalize(pool_images(x32, 16), run.ds.mean, run.ds.std))
  return logits.argmax(-1)


def test_corrupted_test_sets_are_pooled_after_corruption():
  import study_robustness  # pylint: disable=import-outside-toplevel
  from zosam_jax.train.data import pool_images  # pylint: disable=import-outside-toplevel
  x = _pattern(4)
  sets = study_robustness.corrupted_test_sets(x, 16)
  assert len(sets) == 1 + 5 * len(cifar10_c.CORRUPTIONS)
  assert all(v.shape == (4, 16, 16, 3) and v.dtype == np.uint8 for v in sets.values())
  np.testing.assert_array_equal(sets["contrast/5"],
                                pool_images(cifar10_c.corrupt(x, "contrast", 5), 16))


@pytest.mark.slow  # A BatchNorm run and every analysis of it: a few minutes.
def test_analyses_evaluate_a_batchnorm_run_with_its_own_statistics(tmp_path, monkeypatch):
  import analysis  # pylint: disable=import-outside-toplevel
  import bn_statistics  # pylint: disable=import-outside-toplevel
  from tests.test_train_data import make_cifar10  # pylint: disable=import-outside-toplevel
  from zosam_jax.train import (TrainConfig, evaluate_checkpoint,  # pylint: disable=import-outside-toplevel
                               make_eval_step, normalize, train_and_evaluate)
  monkeypatch.setenv("ZOSAM_DATA", str(tmp_path / "cache"))
  make_cifar10(tmp_path / "data")
  cfg = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "data"), download=False,
                    model="resnet20", image_size=8, optimizer="sgd", steps=2, batch_size=8,
                    eval_batch_size=1000, progress=False)
  train_and_evaluate(cfg, tmp_path / "run")
  run = analysis.load_run(str(tmp_path / "run"))
  assert run.batch_stats  # ResNet-20 has BatchNorm.
  loss = analysis.make_loss(run.model, run.ds.mean, run.ds.std)
  x, y = run.ds.x_test, run.ds.y_test
  assert float(loss(run.params, x, y, run.batch_stats)) == pytest.approx(
      evaluate_checkpoint(tmp_path / "run")["loss"], rel=1e-5)
  eval_step = jax.jit(make_eval_step(run.model, run.ds.mean, run.ds.std))
  assert analysis.accuracy(eval_step, run.params, run.batch_stats, x, y, 3) == (
      evaluate_checkpoint(tmp_path / "run")["accuracy"])
  # Statistics re-estimated from the whole (unaugmented) training set, batch after
  # batch, are that set's batch statistics: inference then equals training mode.
  stats = bn_statistics.reestimate(run, None, 200, batch_size=run.ds.x_train.shape[0])
  images = normalize(run.ds.x_train, run.ds.mean, run.ds.std)
  train_mode, _ = run.model.apply({"params": run.params, "batch_stats": run.batch_stats},
                                  images, train=True, mutable=["batch_stats"])
  inference = run.model.apply({"params": run.params, "batch_stats": stats}, images,
                              train=False)
  np.testing.assert_allclose(inference, train_mode, rtol=1e-4, atol=1e-4)


def test_corrupted_test_sets_are_built_once_and_read_back(tmp_path, monkeypatch):
  import study_robustness  # pylint: disable=import-outside-toplevel
  x, built = _pattern(4), []
  def corrupted_test_sets(images, size):
    built.append(size)
    return {"clean": images[:, :size, :size] + len(built), "contrast/5": images[:, :size, :size]}
  monkeypatch.setattr(study_robustness, "corrupted_test_sets", corrupted_test_sets)
  first = study_robustness.cached_test_sets(x, 16, tmp_path)
  again = study_robustness.cached_test_sets(x, 16, tmp_path)
  assert built == [16] and set(again) == {"clean", "contrast/5"}
  for name in first:
    np.testing.assert_array_equal(again[name], first[name])
  study_robustness.cached_test_sets(x, None, tmp_path)  # Another size: its own file.
  study_robustness.cached_test_sets(x[::-1], 16, tmp_path)  # Other images too.
  study_robustness.cached_test_sets(x, 16, None)  # None: nothing kept.
  assert built == [16, None, 16, 16]
  assert len(list(tmp_path.glob("cifar10_c_*.npz"))) == 3
  assert not list(tmp_path.glob("*.partial"))
