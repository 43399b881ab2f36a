"""Gradual magnitude pruning (GMP) and its cubic schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zosam_jax import sparse
from tests import helpers_sparse


def test_cubic_schedule_matches_zhu_and_gupta():
  s_i, s_f, t0, end, dt = 0.2, 0.9, 10, 50, 10
  fn = sparse.cubic_sparsity(
      s_f, initial_sparsity=s_i, begin_step=t0, end_step=end, update_every=dt
  )
  steps = np.arange(0, 70)
  last = np.clip(t0 + (steps - t0) // dt * dt, t0, end)
  expected = s_f + (s_i - s_f) * (1 - (last - t0) / (end - t0)) ** 3
  np.testing.assert_allclose(np.asarray(jax.vmap(fn)(steps)), expected, rtol=1e-6)


def test_gmp_prunes_gradually_to_target_and_keeps_pruned_weights_zero():
  params = helpers_sparse.mlp_params()
  inner = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.05, momentum=0.9))
  begin, end, every, target = 2, 12, 2, 0.9
  tx = sparse.gmp(inner, sparsity=target, begin_step=begin, end_step=end,
                  update_every=every)
  (_, state), (_, masks, history, _) = helpers_sparse.train_mlp(tx, params, 16)
  schedule = sparse.cubic_sparsity(target, begin_step=begin, end_step=end,
                                   update_every=every)
  kernel = masks["layer_1"]["kernel"]
  size = kernel[0].size
  counts = np.asarray(kernel.reshape(16, -1).sum(axis=1))
  np.testing.assert_array_equal(
      counts, [round((1 - float(schedule(t))) * size) for t in range(16)]
  )
  assert counts[-1] == round(0.1 * size)
  # Masks only shrink, and weights are zero wherever pruned.
  assert bool(jnp.all(kernel[1:] <= kernel[:-1]))
  for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(history)):
    assert bool(jnp.all(jnp.where(m, True, p == 0)))
  trace = state.inner_state[1][0].trace
  for m, mom in zip(jax.tree.leaves(state.masks), jax.tree.leaves(trace)):
    assert bool(jnp.all(jnp.where(m, True, mom == 0)))
  assert all(bool(state.masks[k]["bias"].all()) for k in state.masks)


def test_gmp_prunes_by_magnitude_on_a_hand_built_layer():
  params = {"w": jnp.array([0.3, -2.0, 0.1, 4.0, -0.5, 1.0, 0.2, 3.0])}
  tx = sparse.gmp(optax.sgd(0.0), sparsity=0.5, end_step=1, update_every=1,
                  dense_fn=lambda path, x: False)
  state, update = tx.init(params), jax.jit(tx.update)
  updates, state = update(params, state, params)  # step 0: still dense
  assert bool(state.masks["w"].all())
  updates, state = update(params, state, params)  # step 1 = end_step
  np.testing.assert_array_equal(
      state.masks["w"], [False, True, False, True, False, True, False, True]
  )
  new_params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new_params["w"], [0, -2.0, 0, 4.0, 0, 1.0, 0, 3.0])


def test_gmp_initial_sparsity_starts_from_magnitude_masks():
  params = helpers_sparse.mlp_params()
  tx = sparse.gmp(optax.sgd(0.1), sparsity=0.9, initial_sparsity=0.5, end_step=10)
  masks = tx.init(params).masks
  expected = sparse.init_masks(params, 0.5, distribution="uniform", method="magnitude")
  jax.tree.map(np.testing.assert_array_equal, masks, expected)


def test_gmp_bad_arguments_raise():
  inner = optax.sgd(0.1)
  with pytest.raises(ValueError, match="`sparsity` must be in \\[0, 1\\)"):
    sparse.gmp(inner, sparsity=1.2, end_step=10)
  with pytest.raises(ValueError, match="`initial_sparsity` must be in \\[0, 1\\)"):
    sparse.gmp(inner, sparsity=0.9, initial_sparsity=-0.1, end_step=10)
  with pytest.raises(ValueError, match="`update_every` must be a positive int"):
    sparse.gmp(inner, sparsity=0.9, end_step=10, update_every=0)
  with pytest.raises(ValueError, match="`end_step` must be greater than `begin_step`"):
    sparse.gmp(inner, sparsity=0.9, begin_step=10, end_step=10)
  with pytest.raises(ValueError, match="`begin_step` must be a non-negative int"):
    sparse.gmp(inner, sparsity=0.9, begin_step=-1, end_step=10)
  with pytest.raises(ValueError, match="`distribution` must be one of"):
    sparse.gmp(inner, sparsity=0.9, end_step=10, distribution="gaussian")
  with pytest.raises(ValueError, match="`total_steps` is required"):
    sparse.gmp(inner, sparsity=0.9, end_step=0.8)
