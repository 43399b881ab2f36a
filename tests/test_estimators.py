"""The zeroth-order estimators and the random directions."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zosam_jax
from zosam_jax._src import directions
from tests import helpers

ESTIMATORS = ("central", "forward", "jvp")
DISTRIBUTIONS = ("gaussian", "rademacher", "sphere")


@functools.partial(jax.jit, static_argnames=(
    "loss", "num_dirs", "estimator", "distribution", "chunk_size"))
def _estimate(loss, params, key, num_dirs, estimator, distribution,
              active=None, chunk_size=None):
  return zosam_jax.zo_gradient(
      loss, params, active, key, num_dirs=num_dirs, smoothing=1e-3,
      estimator=estimator, distribution=distribution, chunk_size=chunk_size)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_mean_estimate_matches_true_gradient(estimator, distribution):
  params, loss, grad = helpers.quadratic(dim=6)
  g = grad(params)
  g_hat, _ = _estimate(loss, params, jax.random.key(0), 4000, estimator,
                       distribution, chunk_size=8000)
  cosine = g_hat @ g / (jnp.linalg.norm(g_hat) * jnp.linalg.norm(g))
  assert cosine > 0.99
  np.testing.assert_allclose(g_hat, g, rtol=0.1, atol=0.1 * jnp.linalg.norm(g))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_relative_error_shrinks_like_inverse_sqrt_num_dirs(estimator):
  params, loss, grad = helpers.quadratic(dim=6)
  g = grad(params)

  def mean_relative_error(num_dirs):
    keys = jax.random.split(jax.random.key(0), 40)
    g_hats = jax.vmap(lambda k: _estimate(loss, params, k, num_dirs, estimator,
                                          "gaussian", chunk_size=512)[0])(keys)
    errors = jnp.linalg.norm(g_hats - g[None, :], axis=1)
    return float(jnp.mean(errors) / jnp.linalg.norm(g))

  small, large = mean_relative_error(16), mean_relative_error(256)
  # sqrt(256 / 16) = 4.
  assert 2.5 < small / large < 6.5


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_loss_at_params_comes_for_free(estimator):
  params, loss, _ = helpers.quadratic()
  _, value = _estimate(loss, params, jax.random.key(0), 2, estimator,
                       "gaussian")
  np.testing.assert_allclose(value, loss(params), rtol=1e-4)


@pytest.mark.parametrize(("estimator", "chunk_size"), [  # Chunks of 3: forward's by default.
    (e, c) if c == 1 or e == "forward" else pytest.param(e, c, marks=pytest.mark.slow)
    for e in ESTIMATORS for c in (1, 3)])
def test_sequential_and_chunked_evaluation_equal_one_vmap(estimator,
                                                          chunk_size):
  params, loss = helpers.mlp_problem()
  full = _estimate(loss, params, jax.random.key(3), 5, estimator, "gaussian",
                   chunk_size=100)
  chunked = _estimate(loss, params, jax.random.key(3), 5, estimator,
                      "gaussian", chunk_size=chunk_size)
  # Batched and unbatched matmuls round differently; a finite difference
  # divides that float32 rounding of the loss (~1e-7) by δ = 1e-3.
  atol = 1e-6 if estimator == "jvp" else 2e-4
  chex.assert_trees_all_close(full, chunked, rtol=1e-5, atol=atol)


def test_automatic_chunk_size_is_sequential_on_cpu_and_batched_elsewhere():
  from zosam_jax._src import estimators  # pylint: disable=import-outside-toplevel
  expected = 1 if jax.default_backend() == "cpu" else 8
  assert estimators.resolve_chunk_size(None, 8) == expected
  assert estimators.resolve_chunk_size(3, 8) == 3
  assert estimators.resolve_chunk_size(16, 8) == 8


@pytest.mark.parametrize("distribution", [  # Rademacher's: in the slow tier.
    pytest.param(d, marks=pytest.mark.slow) if d == "rademacher" else d for d in DISTRIBUTIONS])
def test_directions_are_zero_on_pruned_weights_and_normalised(distribution):
  params = {"a": jnp.zeros((50, 40)), "b": jnp.zeros(30)}
  mask = helpers.random_mask(params, density=0.3)
  active = jax.tree.map(lambda m: m.astype(jnp.float32), mask)
  us = jax.vmap(lambda i: directions.sample_direction(
      jax.random.fold_in(jax.random.key(0), i), params, active,
      distribution))(jnp.arange(64))
  for u, m in zip(jax.tree.leaves(us), jax.tree.leaves(mask)):
    assert jnp.all(u[:, ~m] == 0)
    # E[u_j^2] = 1 on active coordinates.
    np.testing.assert_allclose(jnp.mean(u[:, m] ** 2), 1.0, rtol=0.05)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimate_is_zero_on_pruned_weights(estimator):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params, density=0.5)
  active = jax.tree.map(lambda m: m.astype(jnp.float32), mask)
  g_hat, _ = _estimate(loss, params, jax.random.key(0), 4, estimator,
                       "gaussian", active=active)
  for g, m in zip(jax.tree.leaves(g_hat), jax.tree.leaves(mask)):
    assert jnp.all(g[~m] == 0)
    assert jnp.all(g[m] != 0)


def test_same_key_same_estimate_other_key_other_estimate():
  params, loss = helpers.mlp_problem()
  a = _estimate(loss, params, jax.random.key(1), 2, "central", "gaussian")
  b = _estimate(loss, params, jax.random.key(1), 2, "central", "gaussian")
  c = _estimate(loss, params, jax.random.key(2), 2, "central", "gaussian")
  chex.assert_trees_all_equal(a, b)
  assert not jnp.allclose(a[0]["dense1"]["kernel"], c[0]["dense1"]["kernel"])


def test_ascent_forward_passes_counts_jvp_twice_and_names_bad_estimators():
  assert zosam_jax.ascent_forward_passes(3, "jvp") == 6
  assert zosam_jax.ascent_forward_passes(16, "random") == 1
  assert zosam_jax.ascent_forward_passes(1, "central", "momentum") == 4
  with pytest.raises(ValueError, match="estimator must be one of"):
    zosam_jax.ascent_forward_passes(1, "backward")
