"""zo_sam + sparse training: masks read from the base optimizer's state."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import zosam_jax
from zosam_jax import sparse
from tests import helpers_sparse


def largest_pruned_magnitude(tree, masks):
  return jnp.max(jnp.stack([
      jnp.max(jnp.where(m, 0.0, jnp.abs(x)))
      for x, m in zip(jax.tree.leaves(tree), jax.tree.leaves(masks))
  ]))


def test_no_direction_perturbation_or_update_touches_a_pruned_weight():
  params = helpers_sparse.mlp_params()
  x, y = helpers_sparse.mlp_batch()
  loss = lambda p: helpers_sparse.mlp_loss(p, x, y)
  inner = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.05, momentum=0.9))
  tx = zosam_jax.zo_sam(
      sparse.rigl(inner, sparsity=0.8, update_every=2, end_step=8, drop_fraction=0.5),
      rho=0.05, num_dirs=2, mask_fn="base_state", key=0,
  )
  state = tx.init(params)
  params = sparse.apply_masks(params, state)
  seen = []

  @jax.jit
  def step(params, state):
    masks = optax.tree.get(state, "masks")

    def value_fn(p):
      # Every point zo_sam evaluates (θ ± δu and θ + ε) is zero where pruned.
      jax.debug.callback(seen.append, largest_pruned_magnitude(p, masks))
      return loss(p)

    updates, state = tx.update(params, state, params, value_fn=value_fn)
    return optax.apply_updates(params, updates), state, updates, masks

  initial_masks = optax.tree.get(state, "masks")
  losses = []
  for _ in range(10):
    params, state, updates, old_masks = step(params, state)
    new_masks = optax.tree.get(state, "masks")
    losses.append(float(state.perturbed_loss))
    # Pruned weights stay exactly zero; the update is zero wherever a weight
    # is pruned both before and after the step.
    assert float(largest_pruned_magnitude(params, new_masks)) == 0.0
    active_before_or_after = jax.tree.map(jnp.logical_or, old_masks, new_masks)
    assert float(largest_pruned_magnitude(updates, active_before_or_after)) == 0.0
  jax.effects_barrier()
  assert len(seen) >= 10 * 5  # 2 directions x 2 points + the perturbed point
  assert max(float(v) for v in seen) == 0.0
  final_masks = optax.tree.get(state, "masks")
  # RigL moved the masks and kept the per-layer counts.
  assert not bool(jnp.array_equal(final_masks["layer_1"]["kernel"],
                                  initial_masks["layer_1"]["kernel"]))
  chex.assert_trees_all_equal(
      jax.tree.map(jnp.sum, final_masks), jax.tree.map(jnp.sum, initial_masks)
  )
  assert np.mean(losses[-3:]) < np.mean(losses[:3])
