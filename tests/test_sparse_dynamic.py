"""Dynamic sparse training: SET and RigL."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zosam_jax import sparse
from tests import helpers_sparse

METHODS = {"set": sparse.set_sparse, "rigl": sparse.rigl}


ALPHA, UPDATE_EVERY, END_STEP, NUM_STEPS = 0.4, 3, 16, 20


@pytest.fixture(scope="module", params=sorted(METHODS))
def history(request):
  """One scanned run per method, shared by the tests below (one compile each)."""
  params = helpers_sparse.mlp_params()
  inner = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  tx = METHODS[request.param](
      inner, sparsity=0.5, drop_fraction=ALPHA, update_every=UPDATE_EVERY,
      end_step=END_STEP, dense_first_layer=True,
  )
  initial = tx.init(params).masks
  (final_params, final_state), (_, masks, after, states) = helpers_sparse.train_mlp(
      tx, params, NUM_STEPS
  )
  # masks[t] are the masks after update t; prepend the initial ones.
  masks = jax.tree.map(lambda i, m: jnp.concatenate([i[None], m]), initial, masks)
  # Host copies: the checks below are cheap in NumPy.
  return jax.tree.map(np.asarray, dict(
      masks=masks, after=after, trace=states.inner_state[1][0].trace,
      final_params=final_params, final_masks=final_state.masks))


def test_active_count_per_layer_is_constant(history):
  for m in jax.tree.leaves(history["masks"]):
    counts = np.asarray(m.reshape(m.shape[0], -1).sum(axis=1))
    np.testing.assert_array_equal(counts, counts[0])
  final_masks = history["final_masks"]
  final_params = history["final_params"]
  for p, m in zip(jax.tree.leaves(final_params), jax.tree.leaves(final_masks)):
    assert bool(np.all(np.where(m, True, p == 0)))


def test_mask_updates_happen_only_every_update_every_steps(history):
  m = history["masks"]["layer_1"]["kernel"]
  changed = np.asarray(np.any(m[1:] != m[:-1], axis=(1, 2)))
  expected = [0 < t < END_STEP and t % UPDATE_EVERY == 0 for t in range(NUM_STEPS)]
  np.testing.assert_array_equal(changed, expected)


def test_dense_leaves_never_change(history):
  masks = history["masks"]
  assert bool(masks["layer_0"]["kernel"].all())  # dense_first_layer
  assert all(bool(masks[k]["bias"].all()) for k in masks)


def test_drop_fraction_follows_cosine_schedule_and_stops_at_end_step(history):
  m = history["masks"]["layer_1"]["kernel"]
  num_dropped = np.asarray(np.sum(m[:-1] & ~m[1:], axis=(1, 2)))
  num_grown = np.asarray(np.sum(~m[:-1] & m[1:], axis=(1, 2)))
  n_active = int(m[0].sum())
  for t in range(NUM_STEPS):
    if 0 < t < END_STEP and t % UPDATE_EVERY == 0:
      fraction = np.float32(ALPHA / 2 * (1 + math.cos(math.pi * t / END_STEP)))
      assert num_dropped[t] == math.floor(fraction * np.float32(n_active)), t
    else:
      assert num_dropped[t] == 0, t
  np.testing.assert_array_equal(num_grown, num_dropped)
  fn = sparse.cosine_drop_fraction(ALPHA, END_STEP)
  steps = np.arange(0, 24, 2)
  np.testing.assert_allclose(
      np.asarray(jax.vmap(fn)(steps)),
      np.where(steps < END_STEP, ALPHA / 2 * (1 + np.cos(np.pi * steps / END_STEP)), 0),
      rtol=1e-6, atol=1e-7,
  )


def test_grown_weights_start_at_zero_and_moments_reset(history):
  masks, after = history["masks"], history["after"]
  trace = history["trace"]
  for t in range(UPDATE_EVERY, END_STEP, UPDATE_EVERY):
    leaves = zip(*map(jax.tree.leaves, (masks, after, trace)))
    for m, p, mom in leaves:
      old, new, p, mom = m[t], m[t + 1], p[t], mom[t]
      grown, changed = new & ~old, new != old
      assert bool(np.all(np.where(grown, p == 0, True)))
      assert bool(np.all(np.where(changed, mom == 0, True)))
      assert bool(np.all(np.where(new, True, (p == 0) & (mom == 0))))


def test_rigl_regrows_exactly_the_top_gradient_inactive_positions():
  # One 2x4 layer: 4 active weights, drop fraction 0.5 -> drop 2, grow 2.
  masks = {"w": jnp.array([[True, True, False, False], [True, True, False, False]])}
  params = {"w": jnp.array([[0.5, -3.0, 0.0, 0.0], [0.1, 2.0, 0.0, 0.0]])}
  grads = {"w": jnp.array([[9.0, 9.0, 0.3, -4.0], [9.0, 9.0, 1.0, 0.2]])}
  tx = sparse.rigl(
      optax.sgd(0.0), masks=masks, drop_fraction=lambda t: jnp.float32(0.5),
      update_every=1, end_step=5,
  )
  update = jax.jit(tx.update)
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, grads)
  _, state = update(zeros, state, params)  # step 0: no mask update
  chex.assert_trees_all_equal(state.masks, masks)
  updates, state = update(grads, state, params)  # step 1: drop and grow
  # Dropped: the two smallest |w| among active (0.5 and 0.1); grown: the two
  # largest |g| among the previously inactive (-4.0 and 1.0), even though the
  # dropped positions have larger gradients.
  expected = jnp.array([[False, True, False, True], [False, True, True, False]])
  chex.assert_trees_all_equal(state.masks["w"], expected)
  new_params = optax.apply_updates(params, updates)
  chex.assert_trees_all_equal(
      new_params["w"], jnp.array([[0.0, -3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
  )


def test_set_is_deterministic_given_a_key_and_compiles_once():
  params = helpers_sparse.mlp_params()
  tx = sparse.set_sparse(
      optax.adam(1e-2), sparsity=0.8, update_every=2, end_step=10, key=3
  )
  update = jax.jit(chex.assert_max_traces(tx.update, n=1))

  def run(state):
    p = params
    for _ in range(5):
      updates, state = update(p, state, p)
      p = optax.apply_updates(p, updates)
    return p, state.masks

  first, second = run(tx.init(params)), run(tx.init(params))
  chex.assert_trees_all_equal(first, second)
  # Another key in the state regrows elsewhere.
  other = run(tx.init(params)._replace(key=jax.random.key(4)))
  kernel = lambda masks: masks["layer_1"]["kernel"]
  assert not bool(jnp.array_equal(kernel(first[1]), kernel(other[1])))
  # Another key in the factory draws other initial masks.
  init = lambda key: sparse.set_sparse(
      optax.sgd(0.1), sparsity=0.8, end_step=10, key=key
  ).init(params)
  a, b, c = init(0), init(jax.random.key(0)), init(1)
  chex.assert_trees_all_equal(a.masks, b.masks)
  assert not bool(jnp.array_equal(kernel(a.masks), kernel(c.masks)))


def test_end_step_as_fraction_of_total_steps():
  masks = {"w": jnp.array([True, True, False, False])}
  params = {"w": jnp.array([1.0, 2.0, 0.0, 0.0])}
  tx = sparse.rigl(optax.sgd(0.0), masks=masks, update_every=1, end_step=0.25,
                   total_steps=8, drop_fraction=lambda t: jnp.float32(1.0))
  update = jax.jit(tx.update)
  state = tx.init(params)
  history = []
  for _ in range(4):
    _, state = update({"w": jnp.ones(4)}, state, params)
    history.append(state.masks["w"])
  # end_step = 2: only step 1 updates the masks.
  unchanged = [
      bool(jnp.array_equal(a, b))
      for a, b in zip([masks["w"]] + history, history)
  ]
  assert unchanged == [True, False, True, True]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bad_arguments_raise(method):
  make = METHODS[method]
  inner = optax.sgd(0.1)
  with pytest.raises(ValueError, match="`update_every` must be a positive int, got 0"):
    make(inner, sparsity=0.5, end_step=10, update_every=0)
  with pytest.raises(ValueError, match="`update_every` must be a positive int, got -2"):
    make(inner, sparsity=0.5, end_step=10, update_every=-2)
  with pytest.raises(TypeError, match="`update_every` must be an int"):
    make(inner, sparsity=0.5, end_step=10, update_every=2.5)
  for alpha in (0.0, 1.5, -0.1):
    with pytest.raises(ValueError, match="`drop_fraction` must be in \\(0, 1\\]"):
      make(inner, sparsity=0.5, end_step=10, drop_fraction=alpha)
  with pytest.raises(ValueError, match="`sparsity` must be in \\[0, 1\\)"):
    make(inner, sparsity=1.0, end_step=10)
  with pytest.raises(ValueError, match="`end_step` must be a positive int"):
    make(inner, sparsity=0.5, end_step=0)
  with pytest.raises(ValueError, match="`total_steps` is required"):
    make(inner, sparsity=0.5, end_step=0.75)
  with pytest.raises(ValueError, match="`end_step` as a fraction must be in"):
    make(inner, sparsity=0.5, end_step=1.5, total_steps=100)
  with pytest.raises(ValueError, match="`distribution` must be one of"):
    make(inner, sparsity=0.5, end_step=10, distribution="normal")
  with pytest.raises(ValueError, match="one of `masks` or `sparsity` is required"):
    make(inner, end_step=10)
  with pytest.raises(TypeError, match="`drop_fraction` must be a float"):
    make(inner, sparsity=0.5, end_step=10, drop_fraction="0.3")
  with pytest.raises(TypeError, match="`key` must be an int seed or a jax PRNG key"):
    make(inner, sparsity=0.5, end_step=10, key="seed")


def test_mismatched_masks_raise():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.5)
  masks["layer_0"]["bias"] = jnp.ones((2,), bool)
  with pytest.raises(ValueError, match="`masks` must have the shapes"):
    sparse.rigl(optax.sgd(0.1), masks=masks, end_step=10).init(params)


def test_drop_and_grow_caps_drop_at_inactive_count():
  masks = {"w": jnp.array([True, True, True, False])}
  params = {"w": jnp.array([1.0, 2.0, 3.0, 0.0])}
  new = sparse.drop_and_grow(masks, params, {"w": jnp.ones(4)}, 1.0)
  assert int(new["w"].sum()) == 3
  chex.assert_trees_all_equal(new["w"], jnp.array([False, True, True, True]))


def test_drop_fraction_can_be_injected_as_a_hyperparameter():
  static = ("sparsity", "end_step", "update_every", "total_steps", "key")
  tx = optax.inject_hyperparams(sparse.rigl, static_args=static)(
      optax.sgd(0.1), sparsity=0.5, end_step=10, update_every=1, drop_fraction=0.5
  )
  params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(2):
    _, state = update(params, state, params)
  assert int(optax.tree.get(state, "masks")["w"].sum()) == 8
  assert float(state.hyperparams["drop_fraction"]) == 0.5
