"""Statistical properties of the random directions, and the defaults' choice."""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from zosam_jax._src import directions
from zosam_jax._src import flat

# The default on this backend (Rademacher on CPU), and the paper's.
DISTRIBUTIONS = (directions.resolve_distribution(None), "gaussian")
SIZE = 1 << 16


def _draw(key, distribution, like=None):
  like = jnp.zeros(SIZE) if like is None else like
  return np.asarray(directions.sample_direction(key, like, None, distribution))


def test_default_is_rademacher_on_cpu_and_explicit_choices_are_kept(monkeypatch):
  for backend, default in (("cpu", "rademacher"), ("gpu", "gaussian"), ("tpu", "gaussian")):
    monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
    assert directions.resolve_distribution(None) == default
  for name in ("gaussian", "rademacher", "sphere"):
    assert directions.resolve_distribution(name) == name


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_mean_zero_and_unit_second_moment(distribution):
  u = _draw(jax.random.key(0), distribution)
  # Standard errors for 65k entries: mean 0.004, second moment 0.006 (Gaussian).
  assert abs(u.mean()) < 0.02 and abs((u ** 2).mean() - 1.0) < 0.03
  if distribution == "rademacher":
    assert set(np.unique(u)) == {-1.0, 1.0}
    # Every bit position of the packed words is used, evenly (5 standard errors).
    assert np.abs(u.reshape(-1, 32).mean(axis=0)).max() < 5 / np.sqrt(SIZE // 32)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_independent_across_steps_and_chunks(distribution):
  key = jax.random.key(1)
  next_key, step_key = jax.random.split(key)
  draws = [_draw(step_key, distribution), _draw(jax.random.split(next_key)[1], distribution)]
  # Directions i of one step come from fold_in(step_key, i) (chunks regenerate them).
  draws += [_draw(jax.random.fold_in(step_key, i), distribution) for i in range(3)]
  corr = np.corrcoef(np.stack(draws))
  off_diagonal = corr[~np.eye(len(draws), dtype=bool)]
  assert np.abs(off_diagonal).max() < 5 / np.sqrt(SIZE)


# conftest simulates 8 CPU devices; one GPU is one device.
needs_8_devices = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")


@needs_8_devices
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_device_blocks_of_a_sharded_direction_are_independent(distribution):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    like = jax.device_put(jnp.zeros((8, SIZE // 8)), P("data"))
    u = jax.jit(lambda k, p: directions.sample_direction(k, p, None, distribution))(
        jax.random.key(2), like)
  assert tuple(u.sharding.spec)[0] == "data"
  blocks = np.asarray(u)  # Row r lives on device r.
  corr = np.corrcoef(blocks)
  assert np.abs(corr[~np.eye(8, dtype=bool)]).max() < 5 / np.sqrt(SIZE // 8)
  np.testing.assert_allclose(blocks, _draw(jax.random.key(2), distribution,
                                           jnp.zeros((8, SIZE // 8))), rtol=1e-6)


@needs_8_devices
def test_leaf_by_leaf_on_cpu_and_under_explicit_sharding(monkeypatch):
  params = {"w1": jnp.zeros((784, 512)), "b1": jnp.zeros(512)}
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert not flat.prefers_ravel(params)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert flat.prefers_ravel(params)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    sharded = {"w": jax.device_put(jnp.zeros((8, 4)), P("data"))}
    assert not flat.prefers_ravel(sharded)
