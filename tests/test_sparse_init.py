"""Initial masks: random, magnitude, SNIP; mask helpers and validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zosam_jax import sparse
from tests import helpers_sparse


def test_random_masks_have_exact_counts_and_dense_leaves_all_true():
  params = helpers_sparse.cnn_params()
  densities = sparse.erk(params, 0.9)
  masks = sparse.random_masks(0, params, densities)
  chex.assert_trees_all_equal_shapes(masks, params)
  for m, d in zip(jax.tree.leaves(masks), jax.tree.leaves(densities)):
    assert m.dtype == jnp.bool_
    assert int(m.sum()) == round(d * m.size)
    if d == 1.0:
      assert bool(m.all())


def test_random_masks_are_deterministic_given_a_key():
  params = helpers_sparse.mlp_params()
  densities = sparse.uniform(params, 0.8)
  a = sparse.random_masks(3, params, densities)
  b = sparse.random_masks(jax.random.key(3), params, densities)
  c = sparse.random_masks(4, params, densities)
  chex.assert_trees_all_equal(a, b)
  assert not bool(jnp.array_equal(a["layer_1"]["kernel"], c["layer_1"]["kernel"]))


def test_magnitude_masks_keep_the_largest_weights():
  params = helpers_sparse.mlp_params()
  densities = sparse.uniform(params, 0.75)
  masks = sparse.magnitude_masks(params, densities)
  for m, w in zip(jax.tree.leaves(masks), jax.tree.leaves(params)):
    m, w = np.asarray(m), np.asarray(w)
    if w.ndim > 1:
      assert int(m.sum()) == round(0.25 * w.size)
      assert np.abs(w)[m].min() >= np.abs(w)[~m].max()


def test_snip_masks_rank_connection_sensitivity():
  params = helpers_sparse.mlp_params()
  x, y = helpers_sparse.mlp_batch()
  loss_fn = lambda p: helpers_sparse.mlp_loss(p, x, y)
  densities = sparse.uniform(params, 0.9)
  masks = sparse.snip_masks(loss_fn, params, densities)
  grads = jax.grad(loss_fn)(params)
  kernel = "layer_1"
  score = jnp.abs(params[kernel]["kernel"] * grads[kernel]["kernel"])
  expected = np.argsort(-np.asarray(score).ravel(), kind="stable")[
      : round(0.1 * score.size)
  ]
  np.testing.assert_array_equal(
      np.flatnonzero(np.asarray(masks[kernel]["kernel"]).ravel()),
      np.sort(expected),
  )
  assert bool(masks[kernel]["bias"].all())


def test_init_masks_dispatches_by_name():
  params = helpers_sparse.mlp_params()
  x, y = helpers_sparse.mlp_batch()
  loss_fn = lambda p: helpers_sparse.mlp_loss(p, x, y)
  densities = sparse.erk(params, 0.8)
  chex.assert_trees_all_equal(
      sparse.init_masks(params, 0.8, method="magnitude"),
      sparse.magnitude_masks(params, densities),
  )
  chex.assert_trees_all_equal(
      sparse.init_masks(params, 0.8, method="snip", loss_fn=loss_fn),
      sparse.snip_masks(loss_fn, params, densities),
  )
  chex.assert_trees_all_equal(
      sparse.init_masks(params, 0.8, key=5),
      sparse.random_masks(5, params, densities),
  )


def test_apply_masks_zeroes_pruned_weights_from_masks_or_state():
  import optax

  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5, key=0)
  tx = optax.chain(optax.clip(1.0), sparse.static_sparse(optax.sgd(0.1), masks=masks))
  state = tx.init(params)
  for source in (masks, state):
    zeroed = sparse.apply_masks(params, source)
    for z, m in zip(jax.tree.leaves(zeroed), jax.tree.leaves(masks)):
      assert bool(jnp.all(jnp.where(m, True, z == 0)))


def test_unknown_init_method_raises():
  with pytest.raises(ValueError, match="`method` must be one of"):
    sparse.init_masks(helpers_sparse.mlp_params(), 0.5, method="grasp")


def test_snip_without_loss_fn_raises():
  with pytest.raises(ValueError, match="`loss_fn` is required"):
    sparse.init_masks(helpers_sparse.mlp_params(), 0.5, method="snip")


def test_mask_tree_with_wrong_structure_raises():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5)
  del masks["layer_0"]
  with pytest.raises(ValueError, match="`state_or_masks` must be a mask pytree"):
    sparse.apply_masks(params, masks)


def test_mask_tree_with_wrong_shapes_raises():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5)
  masks["layer_0"]["kernel"] = masks["layer_0"]["kernel"].T
  with pytest.raises(ValueError, match="`state_or_masks` must have the shapes"):
    sparse.apply_masks(params, masks)
