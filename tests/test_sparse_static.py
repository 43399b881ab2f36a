"""Static sparse training: fixed masks held in the optimizer state."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from zosam_jax import sparse
from tests import helpers_sparse

OPTIMIZERS = {
    "sgd_momentum_decay": lambda: optax.chain(
        optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9)
    ),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-2),
}


def pruned_entries_are_zero(tree, masks):
  return all(
      bool(jnp.all(jnp.where(m, True, x == 0)))
      for x, m in zip(jax.tree.leaves(tree), jax.tree.leaves(masks))
  )


def moments_are_zero_where_pruned(inner, inner_state, masks):
  checks = optax.tree.map_params(
      inner,
      lambda v, m: jnp.all(jnp.where(m, True, v == 0)),
      inner_state,
      masks,
      transform_non_params=lambda _: jnp.array(True),
  )
  return all(bool(c) for c in jax.tree.leaves(checks))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_masks_survive_200_steps_with_momentum_and_weight_decay(name):
  params = helpers_sparse.mlp_params()
  inner = OPTIMIZERS[name]()
  tx = sparse.static_sparse(inner, sparsity=0.8, key=0)
  masks = tx.init(params).masks
  (new_params, state), _ = helpers_sparse.train_mlp(tx, params, 200)
  chex.assert_tree_all_finite(new_params)
  chex.assert_trees_all_equal(state.masks, masks)
  assert pruned_entries_are_zero(new_params, masks)
  assert moments_are_zero_where_pruned(inner, state.inner_state, masks)
  # Active weights did train.
  k = "layer_1"
  moved = new_params[k]["kernel"] != params[k]["kernel"]
  assert bool(jnp.any(moved & masks[k]["kernel"]))


def test_first_update_zeroes_pruned_weights_of_dense_params():
  params = helpers_sparse.mlp_params()
  tx = sparse.static_sparse(optax.sgd(0.1), sparsity=0.9, key=1)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  new_params = optax.apply_updates(params, updates)
  assert pruned_entries_are_zero(new_params, state.masks)
  expected = jax.tree.map(
      lambda p, m: jnp.where(m, p - 0.1, 0.0), params, state.masks
  )
  chex.assert_trees_all_close(new_params, expected)


def test_masks_given_as_tree_or_callable():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5, distribution="uniform", key=2)
  from_tree = sparse.static_sparse(optax.sgd(0.1), masks=masks).init(params)
  from_fn = sparse.static_sparse(
      optax.sgd(0.1),
      masks=lambda p: sparse.init_masks(p, 0.5, distribution="uniform", key=2),
  ).init(params)
  chex.assert_trees_all_equal(from_tree.masks, masks)
  chex.assert_trees_all_equal(from_fn.masks, masks)


def test_init_method_snip_and_magnitude():
  params = helpers_sparse.mlp_params()
  x, y = helpers_sparse.mlp_batch()
  loss_fn = lambda p: helpers_sparse.mlp_loss(p, x, y)
  for method, kwargs in (("magnitude", {}), ("snip", {"loss_fn": loss_fn})):
    state = sparse.static_sparse(
        optax.sgd(0.1), sparsity=0.7, init_method=method, **kwargs
    ).init(params)
    expected = sparse.init_masks(params, 0.7, method=method, **kwargs)
    chex.assert_trees_all_equal(state.masks, expected)


def test_extra_args_are_forwarded_to_inner():
  seen = {}

  def update_fn(updates, state, params=None, *, value=None, **extra):
    del params, extra
    seen["value"] = value
    return updates, state

  inner = optax.GradientTransformationExtraArgs(
      lambda p: optax.EmptyState(), update_fn
  )
  params = helpers_sparse.mlp_params()
  tx = sparse.static_sparse(inner, sparsity=0.5)
  tx.update(params, tx.init(params), params, value=3.0, unknown_arg=1)
  assert seen["value"] == 3.0


def test_state_has_masks_field_found_by_tree_get_and_map_params():
  params = helpers_sparse.mlp_params()
  tx = optax.chain(
      optax.clip(1.0), sparse.static_sparse(optax.adam(1e-3), sparsity=0.5)
  )
  state = tx.init(params)
  masks = optax.tree.get(state, "masks")
  chex.assert_trees_all_equal_shapes(masks, params)
  # map_params initialises with a placeholder: it must find `masks` as a
  # params-shaped tree (e.g. for sharding specs).
  specs = optax.tree.map_params(
      tx, lambda _: "spec", state, transform_non_params=lambda _: None
  )
  assert jax.tree.leaves(optax.tree.get(specs, "masks")) == ["spec"] * 6


def test_update_compiles_once():
  params = helpers_sparse.mlp_params()
  tx = sparse.static_sparse(optax.sgd(0.1, momentum=0.9), sparsity=0.5)
  update = jax.jit(chex.assert_max_traces(tx.update, n=1))
  state = tx.init(params)
  for _ in range(3):
    updates, state = update(params, state, params)
    params = optax.apply_updates(params, updates)


def test_masks_and_sparsity_are_exclusive():
  with pytest.raises(ValueError, match="`masks` and `sparsity` are mutually exclusive"):
    sparse.static_sparse(optax.sgd(0.1), masks={}, sparsity=0.5)
  with pytest.raises(ValueError, match="one of `masks` or `sparsity` is required"):
    sparse.static_sparse(optax.sgd(0.1))


@pytest.mark.parametrize("sparsity", [-0.5, 1.0])
def test_bad_sparsity_raises(sparsity):
  with pytest.raises(ValueError, match="`sparsity` must be in \\[0, 1\\)"):
    sparse.static_sparse(optax.sgd(0.1), sparsity=sparsity)


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="`distribution` must be one of"):
    sparse.static_sparse(optax.sgd(0.1), sparsity=0.5, distribution="erdos")
  with pytest.raises(ValueError, match="`init_method` must be one of"):
    sparse.static_sparse(optax.sgd(0.1), sparsity=0.5, init_method="lth")


def test_mismatched_masks_raise_at_init():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5)
  masks["layer_2"]["kernel"] = jnp.ones((3, 3), bool)
  tx = sparse.static_sparse(optax.sgd(0.1), masks=masks)
  with pytest.raises(ValueError, match="`masks` must have the shapes of the params"):
    tx.init(params)
  tx = sparse.static_sparse(optax.sgd(0.1), masks={"layer_0": masks["layer_0"]})
  with pytest.raises(ValueError, match="`masks` must have the structure"):
    tx.init(params)


def test_update_without_params_raises():
  params = helpers_sparse.mlp_params()
  tx = sparse.static_sparse(optax.sgd(0.1), sparsity=0.5)
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(params, tx.init(params))
