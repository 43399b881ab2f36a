"""Tests of the dataset loaders and the on-device batch preparation."""

import json
import pathlib
import pickle
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zosam_jax.train import cli
from zosam_jax.train import config
from zosam_jax.train import data
from zosam_jax.train import load_train_state
from zosam_jax.train import program
from zosam_jax.train import steps as steps_lib
from zosam_jax.train import steps
from zosam_jax.train.models import get_model


def _pickle(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f)


def _fake_images(n, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def make_cifar10(root, per_batch=8):
  """Writes a tiny CIFAR-10 in the official python-pickle layout."""
  folder = root / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  for i in range(1, 6):
    _pickle(folder / f"data_batch_{i}",
            {b"data": _fake_images(per_batch, i),
             b"labels": [(i + j) % 10 for j in range(per_batch)]})
  _pickle(folder / "test_batch", {b"data": _fake_images(per_batch, 0),
                                  b"labels": list(range(per_batch))})
  return folder


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("ZOSAM_DATA", str(tmp_path / "cache"))


def test_cifar10_pickles_are_read_as_nhwc_uint8(tmp_path):
  make_cifar10(tmp_path)
  ds = data.load_dataset("cifar10", tmp_path, download=False)
  assert ds.x_train.shape == (40, 32, 32, 3) and ds.x_train.dtype == np.uint8
  assert ds.x_test.shape == (8, 32, 32, 3) and ds.num_classes == 10 and ds.augment
  # Row-major CHW in the pickle: red plane first, then green, then blue.
  raw = _fake_images(8, 1)[3]
  np.testing.assert_array_equal(ds.x_train[3, 0, 1], raw[[1, 1024 + 1, 2048 + 1]])
  np.testing.assert_array_equal(ds.y_train[:8], [(1 + j) % 10 for j in range(8)])
  np.testing.assert_allclose(ds.mean / 255, [0.4914, 0.4822, 0.4465])


class _Payload:
  """A pickle whose ``__reduce__`` would call a function when unpickled: here
  one that creates a file (what a crafted data file could do)."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _Other:
  """An object of a class no CIFAR archive holds."""


@pytest.mark.parametrize("content", ["reduce", "instance", "object_array", "not_a_dict"])
def test_a_crafted_cifar_batch_is_refused_and_runs_nothing(tmp_path, capsys, content):
  folder = make_cifar10(tmp_path)
  marker = tmp_path / "ran"
  labels = list(range(8))
  crafted = {
      "reduce": {b"data": _fake_images(8, 1), b"labels": labels, b"x": _Payload(marker)},
      "instance": {b"data": _fake_images(8, 1), b"labels": labels, b"x": _Other()},
      "object_array": {b"data": _fake_images(8, 1), b"labels": np.array(labels, object)},
      "not_a_dict": [_fake_images(8, 1), labels],
  }[content]
  _pickle(folder / "data_batch_3", crafted)
  with pytest.raises(data.DataNotFoundError, match="data_batch_3 holds .*was not read"
                     if content != "not_a_dict" else "data_batch_3 holds a list"):
    data.load_dataset("cifar10", tmp_path, download=False)
  assert not marker.exists()
  # The program: one line naming the file, a non-zero exit, nothing run.
  code = cli.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download",
                   "--steps", "2", "--no-progress", "--workdir", str(tmp_path / "run")])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1 and "data_batch_3" in err[0] and not marker.exists()


def test_a_cifar_batch_pickled_with_every_protocol_still_loads(tmp_path):
  folder = make_cifar10(tmp_path)
  for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
    with open(folder / "data_batch_2", "wb") as f:
      pickle.dump({b"data": _fake_images(8, 2), b"labels": np.arange(8),
                   b"batch_label": b"training batch 2 of 5",
                   b"filenames": [b"a.png"] * 8}, f, protocol=protocol)
    ds = data.load_dataset("cifar10", tmp_path, download=False)
    np.testing.assert_array_equal(ds.y_train[8:16], np.arange(8))


def make_cifar10_archive(root, monkeypatch, truncate=False):
  """A tiny ``cifar-10-python.tar.gz`` whose md5 is made the official one."""
  folder = make_cifar10(root / "src")
  archive = root / "cifar-10-python.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname="cifar-10-batches-py")
  if truncate:
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
  url, _, name = data.CIFAR_ARCHIVES["cifar10"]
  monkeypatch.setitem(data.CIFAR_ARCHIVES, "cifar10", (url, data.file_digest(archive, "md5"), name))
  return archive


def test_cifar10_archive_is_extracted(tmp_path, monkeypatch):
  make_cifar10_archive(tmp_path, monkeypatch)
  ds = data.load_dataset("cifar10", tmp_path, download=False)
  assert ds.x_train.shape[0] == 40
  assert (tmp_path / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar100_reads_fine_labels(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  _pickle(folder / "train", {b"data": _fake_images(6, 1),
                             b"fine_labels": [99, 0, 5, 7, 42, 3],
                             b"coarse_labels": [0] * 6})
  _pickle(folder / "test", {b"data": _fake_images(4, 2),
                            b"fine_labels": [1, 2, 3, 98], b"coarse_labels": [0] * 4})
  ds = data.load_dataset("cifar100", folder, download=False)
  assert ds.num_classes == 100
  np.testing.assert_array_equal(ds.y_train, [99, 0, 5, 7, 42, 3])
  np.testing.assert_array_equal(ds.y_test, [1, 2, 3, 98])
  assert ds.x_test.shape == (4, 32, 32, 3)


def test_missing_cifar_says_where_to_put_it(tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset("cifar100", tmp_path, download=False)
  message = str(e.value)
  assert "--data-dir" in message and "cifar-100-python.tar.gz" in message
  assert "eb9058c3a382ffc7106e4002c42a8d85" in message


def test_missing_cifar_exits_with_status_1(tmp_path, capsys):
  code = cli.main(["--dataset", "cifar100", "--data-dir", str(tmp_path),
                   "--no-download", "--workdir", str(tmp_path / "run")])
  assert code == 1
  assert "cifar-100-python" in capsys.readouterr().err


def test_training_on_cifar_format_with_augmentation(tmp_path):
  make_cifar10(tmp_path / "data")
  code = cli.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                   "--model", "mlp", "--optimizer", "sgd", "--batch-size", "16",
                   "--steps", "4", "--eval-every", "2", "--no-progress",
                   "--workdir", str(tmp_path / "run")])
  assert code == 0


def test_digits_split_is_deterministic_and_stratified():
  a, b = data.load_dataset("digits"), data.load_dataset("digits")
  np.testing.assert_array_equal(a.x_test, b.x_test)
  assert np.bincount(a.y_test).min() >= 35  # About 36 test images per class.
  assert a.x_train.dtype == np.uint8 and a.x_train.max() == 16


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
  p = data.epoch_permutation(3, 7, 100)
  np.testing.assert_array_equal(p, data.epoch_permutation(3, 7, 100))
  np.testing.assert_array_equal(np.sort(p), np.arange(100))
  assert not np.array_equal(p, data.epoch_permutation(3, 8, 100))
  assert not np.array_equal(p, data.epoch_permutation(4, 7, 100))


def test_batch_order_visits_each_example_once_per_epoch():
  order = data.BatchOrder(seed=0, num_examples=50, batch_size=10)
  epoch = np.concatenate([order.indices(s) for s in range(5)])
  np.testing.assert_array_equal(np.sort(epoch), np.arange(50))
  fresh = data.BatchOrder(seed=0, num_examples=50, batch_size=10)
  np.testing.assert_array_equal(fresh.indices(7), order.indices(7))


def test_repeated_batches_take_each_minibatch_for_k_consecutive_steps():
  once = data.BatchOrder(seed=0, num_examples=50, batch_size=10)
  thrice = data.BatchOrder(seed=0, num_examples=50, batch_size=10, repeat=3)
  for step in range(40):  # Two epochs and more.
    np.testing.assert_array_equal(thrice.indices(step), once.indices(step // 3))
  assert thrice.steps_per_epoch == 15
  assert [thrice.epoch(s) for s in (14, 15, 29, 30)] == [0, 1, 1, 2]
  epoch = np.concatenate([thrice.indices(s) for s in range(0, 15, 3)])
  np.testing.assert_array_equal(np.sort(epoch), np.arange(50))


@pytest.mark.parametrize("repeat", [1, 2])
def test_repeated_batches_repeat_their_augmentation(repeat):
  # At learning rate 0 the params stay put, so two steps on the same indices
  # give the same loss exactly when they crop and flip the images alike.
  model = get_model("mlp", 10)
  tx = optax.sgd(0.0)
  state = steps.init_train_state(model, tx, np.zeros((1, 8, 8, 1), np.float32),
                                 jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype(np.uint8)
  step_fn = jax.jit(steps.make_train_step(
      model, tx, optimizer="sgd", mean=np.array([128.0]), std=np.array([64.0]),
      augment=True, augment_key=jax.random.key(1), crop_pad=2, repeat_batches=repeat))
  losses = []
  for _ in range(4):
    before = float(state.metrics.loss)
    state = step_fn(state, jnp.asarray(images), jnp.arange(16) % 10, np.arange(16))
    losses.append(float(state.metrics.loss) - before)
  assert (losses[0] == losses[1]) == (repeat == 2)
  assert losses[1] != losses[2]  # A new minibatch's augmentation either way.


def test_repeated_batches_scale_the_epochs_steps(tmp_path):
  assert program.total_steps(config.TrainConfig(epochs=2, batch_size=10), 50) == 10
  assert program.total_steps(config.TrainConfig(epochs=2, batch_size=10,
                                               repeat_batches=2), 50) == 20


def test_random_crop_flip_cuts_windows_of_the_padded_image(key):
  images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1) + 1
  out = np.asarray(jax.jit(steps_lib.random_crop_flip, static_argnums=2)(
      key, images, 2))
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(2):
    windows = [padded[i, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(out[i], w) for w in windows)


def test_normalize_uses_per_channel_statistics():
  x = jnp.full((1, 2, 2, 3), 10, jnp.uint8)
  out = steps_lib.normalize(x, jnp.array([10.0, 0.0, 5.0]), jnp.array([1.0, 2.0, 5.0]))
  np.testing.assert_allclose(out[0, 0, 0], [0.0, 5.0, 1.0])


def _write_idx(path, array):
  import gzip  # pylint: disable=import-outside-toplevel
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(folder, n=30):
  """The four idx files with tiny contents; returns their sha256 table."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28)),
            "train-labels-idx1-ubyte.gz": np.arange(n) % 10,
            "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)),
            "t10k-labels-idx1-ubyte.gz": np.arange(10)}
  for name, a in arrays.items():
    _write_idx(folder / name, a)
  return {name: data.file_digest(folder / name) for name in arrays}


@pytest.fixture
def no_system_fashion_mnist(monkeypatch, tmp_path):
  monkeypatch.setattr(data.fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
  monkeypatch.setattr(data.fashion_mnist, "shared_data_dirs", lambda: [tmp_path / "no-shared"])


def test_fashion_mnist_idx_files_are_read_from_data_dir(tmp_path, monkeypatch,
                                                        no_system_fashion_mnist):
  monkeypatch.setattr(data.fashion_mnist, "FASHION_MNIST_FILES",
                      make_fashion_mnist(tmp_path / "fm" / "fashion-mnist"))
  ds = data.load_dataset("fashion_mnist", tmp_path / "fm")
  assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
  assert ds.x_train.dtype == np.uint8 and list(ds.y_test) == list(range(10))


def test_fashion_mnist_with_a_wrong_checksum_names_the_file(tmp_path, no_system_fashion_mnist):
  make_fashion_mnist(tmp_path)
  with pytest.raises(data.DataNotFoundError, match="train-images-idx3-ubyte.gz: sha256"):
    data.load_dataset("fashion_mnist", tmp_path)


def test_truncated_idx_file_names_the_file(tmp_path):
  _write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28)))
  raw = (tmp_path / "x.gz").read_bytes()
  (tmp_path / "x.gz").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(data.DataNotFoundError, match="x.gz"):
    data.read_idx(tmp_path / "x.gz")


def test_missing_fashion_mnist_names_files_folders_and_package(tmp_path, capsys,
                                                               no_system_fashion_mnist):
  assert cli.main(["--dataset", "fashion_mnist", "--data-dir", str(tmp_path),
                   "--workdir", str(tmp_path / "run"), "--no-progress"]) == 1
  err = capsys.readouterr().err
  assert "t10k-labels-idx1-ubyte.gz" in err and str(tmp_path) in err
  assert "dataset-fashion-mnist" in err and "Traceback" not in err


def test_stratified_subset_keeps_class_proportions_and_is_seed_independent():
  ds = data.load_dataset("digits")
  a, b = data.stratified_subset(ds, 200), data.stratified_subset(ds, 200)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  counts = np.bincount(a.y_train, minlength=10)
  assert a.x_train.shape[0] == 200 and counts.min() >= 19 and counts.max() <= 21
  assert "subset of 200" in a.note and a.x_test.shape == ds.x_test.shape


def _row_set(images):
  return {bytes(row) for row in images.reshape(images.shape[0], -1)}


@pytest.mark.parametrize("subset", [200, None])
def test_validation_split_is_stratified_disjoint_and_the_same_for_every_seed(subset):
  ds = data.load_dataset("digits")
  a = data.stratified_subset(ds, subset, validation=300)
  b = data.stratified_subset(ds, subset, validation=300)
  np.testing.assert_array_equal(a.x_val, b.x_val)
  counts = np.bincount(a.y_val, minlength=10)
  assert a.x_val.shape[0] == 300 and counts.min() >= 29 and counts.max() <= 31
  assert not _row_set(a.x_val) & _row_set(a.x_train)  # No image in both.
  expected = 200 if subset else ds.x_train.shape[0] - 300
  assert a.x_train.shape[0] == expected and a.x_test.shape == ds.x_test.shape
  if subset:  # The training subset does not change when a split is held out.
    np.testing.assert_array_equal(a.x_train, data.stratified_subset(ds, subset).x_train)


def test_validation_split_is_held_out_and_leaves_the_run_unchanged(tmp_path):
  from zosam_jax.train import TrainConfig, train_seeds  # pylint: disable=import-outside-toplevel

  cfg = TrainConfig(optimizer="sgd", model="mlp", steps=20, eval_every=10, log_every=10,
                    train_subset=300, label_noise=0.4, seeds=(0, 1), progress=False,
                    checkpoint_every=0)
  plain = train_seeds(cfg, tmp_path / "plain")
  held = train_seeds(cfg.replace(validation_subset=400), tmp_path / "held")
  for p, h in zip(plain, held):
    assert h["final_test_accuracy"] == p["final_test_accuracy"]
    assert h["final_train_loss"] == p["final_train_loss"]
    assert p["final_validation_accuracy"] is None
    assert 0 < h["final_validation_accuracy"] <= h["best_validation_accuracy"]
  lines = [json.loads(l) for l in (tmp_path / "held/seed1/metrics.jsonl").open()]
  assert [r["step"] for r in lines if r["split"] == "validation"] == [10, 20]


def test_validation_split_that_does_not_fit_beside_the_subset_is_a_clear_error(tmp_path,
                                                                             capsys):
  assert cli.main(["--train-subset", "1400", "--validation-subset", "100", "--steps", "2",
                   "--no-progress", "--workdir", str(tmp_path)]) == 2
  assert ("--validation-subset must be between 10 (one per class) and the 37 training "
          "examples of digits outside the --train-subset of 1400") in capsys.readouterr().err


def test_train_subset_larger_than_the_training_set_is_a_clear_error(tmp_path, capsys):
  assert cli.main(["--train-subset", "5000", "--steps", "2", "--no-progress",
                   "--workdir", str(tmp_path)]) == 2
  assert "--train-subset must be between 10" in capsys.readouterr().err


def test_truncated_archive_names_itself_and_leaves_no_half_extracted_folder(
    tmp_path, monkeypatch, capsys):
  archive = make_cifar10_archive(tmp_path, monkeypatch, truncate=True)
  argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download",
          "--workdir", str(tmp_path / "run"), "--no-progress"]
  for _ in range(2):  # Still the same clear error the second time.
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert str(archive) in err and "download it again" in err and "Traceback" not in err
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert not list(tmp_path.glob(".extract-*"))


def test_archive_with_a_wrong_md5_is_not_extracted(tmp_path, monkeypatch):
  archive = make_cifar10_archive(tmp_path, monkeypatch)
  url, md5, name = data.CIFAR_ARCHIVES["cifar10"]
  monkeypatch.setitem(data.CIFAR_ARCHIVES, "cifar10", (url, "0" * 32, name))
  with pytest.raises(data.DataNotFoundError, match="md5 .* differs"):
    data.load_dataset("cifar10", tmp_path, download=False)
  assert archive.exists() and not (tmp_path / "cifar-10-batches-py").exists()


def test_damaged_extracted_folder_names_the_file_and_what_to_do(tmp_path):
  folder = make_cifar10(tmp_path)
  (folder / "data_batch_3").write_bytes(b"\x80\x04not a pickle")
  with pytest.raises(data.DataNotFoundError, match="data_batch_3 is damaged.*delete the folder"):
    data.load_dataset("cifar10", tmp_path, download=False)


def _write_cifar10_npz(folder, n=20):
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  for k in range(4):
    np.savez(folder / f"cifar10_train_{k}.npz",
             x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(n) % 10)
  np.savez(folder / "cifar10_test.npz",
           x_test_lossless_1k=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
           y_test_lossless_1k=np.arange(10),
           x_test=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
           y_test=np.arange(30) % 10)


def test_data_dir_holding_the_npz_parts_is_accepted(tmp_path, monkeypatch):
  monkeypatch.setattr(data.cifar, "CIFAR10_NPZ_SHA256", {})
  _write_cifar10_npz(tmp_path)
  ds = data.load_dataset("cifar10", tmp_path, download=False)
  assert ds.x_train.shape == (80, 32, 32, 3) and ds.x_test.shape == (10, 32, 32, 3)


@pytest.mark.parametrize("seeds", [[], ["--seeds", "0-1"]], ids=["one-seed", "seeds"])
def test_truncated_npz_names_the_file(tmp_path, monkeypatch, capsys, seeds):
  monkeypatch.setattr(data.cifar, "CIFAR10_NPZ_SHA256", {})
  _write_cifar10_npz(tmp_path)
  part = tmp_path / "cifar10_train_2.npz"
  part.write_bytes(part.read_bytes()[:500])
  assert cli.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download",
                   "--workdir", str(tmp_path / "run"), "--no-progress"] + seeds) == 1
  err = capsys.readouterr().err
  assert str(part) in err and "Traceback" not in err
  assert not (tmp_path / "run").exists()  # Nothing written before the data loads.


def test_npz_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
  _write_cifar10_npz(tmp_path)
  monkeypatch.setattr(data.cifar, "CIFAR10_NPZ_SHA256", {"cifar10_test.npz": "0" * 64})
  with pytest.raises(data.DataNotFoundError, match="cifar10_test.npz: sha256"):
    data.load_dataset("cifar10", tmp_path, download=False)


def test_image_size_average_pools_cifar_and_names_bad_sizes(tmp_path, capsys):
  make_cifar10(tmp_path / "data")
  full = data.load_dataset("cifar10", tmp_path / "data", download=False)
  pooled = data.average_pool(full, 16)
  assert pooled.x_train.shape == (40, 16, 16, 3) and pooled.x_test.shape == (8, 16, 16, 3)
  block = full.x_train[3, 2:4, 6:8, 1].astype(float).mean()
  assert pooled.x_train[3, 1, 3, 1] == np.rint(block)
  argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp",
          "--optimizer", "sgd", "--batch-size", "16", "--steps", "2", "--no-progress"]
  assert cli.main(argv + ["--image-size", "16", "--workdir", str(tmp_path / "ok")]) == 0
  assert "average-pooled to 16x16" in capsys.readouterr().out
  assert cli.main(argv + ["--image-size", "12", "--workdir", str(tmp_path / "bad")]) == 2
  assert "--image-size 12 must divide the 32x32 images" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "pad"), [
    ([], 4), (["--image-size", "16"], 2), (["--image-size", "8"], 1),
    (["--image-size", "16", "--crop-pad", "4"], 4), (["--crop-pad", "0"], 0)])
def test_crop_padding_scales_with_image_size_unless_given(tmp_path, monkeypatch, flags, pad):
  make_cifar10(tmp_path / "data")
  pads = []
  crop = steps_lib.random_crop_flip
  monkeypatch.setattr(steps_lib, "random_crop_flip",
                      lambda key, x, p: pads.append(p) or crop(key, x, p))
  argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp",
          "--optimizer", "sgd", "--batch-size", "16", "--steps", "1", "--no-progress",
          "--workdir", str(tmp_path / "run")]
  assert cli.main(argv + flags) == 0
  assert pads == [pad]


def test_no_augment_trains_on_the_stored_cifar_images(tmp_path, monkeypatch):
  make_cifar10(tmp_path / "data")
  monkeypatch.setattr(steps_lib, "random_crop_flip",
                      lambda key, x, p: pytest.fail("--no-augment crops nothing"))
  argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp",
          "--optimizer", "sgd", "--batch-size", "16", "--steps", "2", "--no-progress",
          "--no-augment"]
  assert cli.main(argv + ["--workdir", str(tmp_path / "a")]) == 0
  assert cli.main(argv + ["--workdir", str(tmp_path / "b")]) == 0
  a, b = (json.loads((tmp_path / r / "summary.json").read_text()) for r in "ab")
  assert a["final_train_loss"] == b["final_train_loss"]  # Reproducible without it too.
  assert json.loads((tmp_path / "a" / "config.json").read_text())["augment"] is False


def test_a_cifar_run_saved_before_crop_pad_keeps_its_four_pixels(tmp_path, capsys):
  make_cifar10(tmp_path / "data")
  argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp",
          "--optimizer", "sgd", "--batch-size", "16", "--steps", "1", "--no-progress",
          "--image-size", "16", "--workdir", str(tmp_path / "run")]
  assert cli.main(argv) == 0
  path = tmp_path / "run" / "config.json"
  saved = json.loads(path.read_text())
  assert saved.pop("crop_pad") is None
  path.write_text(json.dumps(saved))  # As written before --crop-pad existed.
  assert load_train_state(tmp_path / "run")[2].crop_pad == 4
  capsys.readouterr()
  assert cli.main(argv + ["--resume"]) == 1
  err = capsys.readouterr().err
  assert "--crop-pad (checkpoint: 4, now: None)" in err and "--crop-pad 4" in err


def test_cifar10_test_set_of_the_npz_parts_is_chosen_by_flag(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(data.cifar, "CIFAR10_NPZ_SHA256", {})
  _write_cifar10_npz(tmp_path)
  assert data.load_dataset("cifar10", tmp_path).x_test.shape[0] == 10
  ds = data.load_dataset("cifar10", tmp_path, cifar10_test="jpeg_10k")
  assert ds.x_test.shape[0] == 30 and "JPEG" in ds.note
  with pytest.raises(SystemExit) as e:
    cli.main(["--dataset", "digits", "--cifar10-test", "jpeg_10k",
              "--workdir", str(tmp_path / "run")])
  assert e.value.code == 2
  assert "--cifar10-test jpeg_10k only applies to --dataset cifar10" in capsys.readouterr().err
