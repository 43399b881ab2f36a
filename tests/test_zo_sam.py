"""The zo_sam and sam transformations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zosam_jax
from tests import helpers

ESTIMATORS = ("central", "forward", "jvp")
BASES = {
    "sgd_momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "chain": lambda: optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(5e-4),
        optax.sgd(optax.cosine_decay_schedule(0.1, 100), momentum=0.9)),
}


def _run(tx, params, loss, steps, **update_kwargs):
  @jax.jit
  def step(params, state):
    updates, state = tx.update(params, state, params, value_fn=loss,
                               **update_kwargs)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return params, state


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_rho_zero_equals_base_optimizer_on_true_gradient(estimator, base):
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(BASES[base](), rho=0.0, num_dirs=2,
                        estimator=estimator)
  got, _ = _run(tx, params, loss, steps=5)

  base_tx = BASES[base]()
  expected, state = params, base_tx.init(params)
  for _ in range(5):
    updates, state = base_tx.update(jax.grad(loss)(expected), state, expected)
    expected = optax.apply_updates(expected, updates)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_many_directions_in_low_dimension_equal_exact_sam(estimator):
  params, loss, _ = helpers.quadratic(dim=4)
  base_tx = optax.sgd(0.1, momentum=0.9)
  tx = zosam_jax.zo_sam(base_tx, rho=0.1, num_dirs=20_000,
                        estimator=estimator, chunk_size=5_000)
  got, _ = _run(tx, params, loss, steps=3)

  expected, state = params, base_tx.init(params)
  for _ in range(3):
    updates, state = helpers.exact_sam_updates(base_tx, state, expected, loss,
                                               0.1)
    expected = optax.apply_updates(expected, updates)
  chex.assert_trees_all_close(got, expected, rtol=2e-2, atol=2e-3)


def test_sam_equals_the_hand_written_oracle_with_a_mask():
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  params = jax.tree.map(lambda p, m: p * m, params, mask)
  base_tx = optax.adam(1e-2)
  got, _ = _run(zosam_jax.sam(base_tx, rho=0.05, mask_fn=mask), params, loss,
                steps=4)
  expected, state = params, base_tx.init(params)
  for _ in range(4):
    updates, state = helpers.exact_sam_updates(base_tx, state, expected, loss,
                                               0.05, mask)
    expected = optax.apply_updates(expected, updates)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)


def test_sam_takes_its_ascent_from_zo_value_fn_and_its_descent_from_value_fn():
  # SAM's ascent on part of the minibatch (Foret et al.'s m-sharpness): the
  # direction is the gradient of ``zo_value_fn``, the update the gradient of
  # ``value_fn`` at the point it gives.
  params, loss, _ = helpers.quadratic()
  part = lambda p: jnp.sum(jnp.cos(p))  # Another minibatch's loss.
  tx = zosam_jax.sam(optax.sgd(1.0), rho=0.05, has_aux=True)
  value_fn = lambda p: (loss(p), p)  # The aux is the point: θ + ε.
  _, state = tx.update(params, tx.init(params), params, value_fn=value_fn,
                       zo_value_fn=lambda p: (part(p), p))
  g = jax.grad(part)(params)
  np.testing.assert_allclose(state.aux - params, 0.05 * g / jnp.linalg.norm(g), rtol=1e-5)
  np.testing.assert_allclose(state.loss, part(params), rtol=1e-6)
  np.testing.assert_allclose(state.perturbed_loss, loss(state.aux), rtol=1e-6)


@pytest.mark.parametrize(("estimator", "ravel"), [  # Each estimator, each layout; the rest slow.
    (e, r) if (e, r) in {("central", True), ("forward", False), ("jvp", False)}
    else pytest.param(e, r, marks=pytest.mark.slow) for e in ESTIMATORS for r in (True, False)])
def test_pruned_weights_are_never_touched(estimator, ravel):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  params = jax.tree.map(lambda p, m: p * m, params, mask)
  # value_fn returns the point it is evaluated at, so the state's aux is θ+ε.
  value_fn = lambda p: (loss(p), p)
  tx = zosam_jax.zo_sam(optax.adam(1e-2), rho=0.1, num_dirs=2,
                        mask_fn=lambda p: mask, estimator=estimator,
                        ravel=ravel, has_aux=True)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=value_fn))
  updates, state = step(params, state)
  eps = jax.tree.map(jnp.subtract, state.aux, params)
  mu = optax.tree.get(state, "mu")
  nu = optax.tree.get(state, "nu")
  for tree in (eps, updates, mu, nu):
    for x, m in zip(jax.tree.leaves(tree), jax.tree.leaves(mask)):
      assert jnp.all(x[~m] == 0)
  np.testing.assert_allclose(optax.tree.norm(eps), 0.1, rtol=1e-3)

  for _ in range(99):
    params = optax.apply_updates(params, updates)
    updates, state = step(params, state)
  params = optax.apply_updates(params, updates)
  for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)):
    assert jnp.all(p[~m] == 0)
    assert jnp.all(p[m] != 0)


def test_same_seed_same_trajectory_and_fresh_directions_each_step():
  params, loss = helpers.mlp_problem()
  make = lambda seed: zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, num_dirs=1,
                                       key=seed)
  a, state_a = _run(make(7), params, loss, steps=5)
  b, _ = _run(make(7), params, loss, steps=5)
  c, _ = _run(make(8), params, loss, steps=5)
  chex.assert_trees_all_equal(a, b)
  assert not jnp.allclose(a["dense1"]["kernel"], c["dense1"]["kernel"])

  # Two consecutive steps at the same params use different directions.
  tx = make(7)
  value_fn = lambda p: (loss(p), p)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, key=7, has_aux=True)
  state = tx.init(params)
  _, state1 = tx.update(params, state, params, value_fn=value_fn)
  _, state2 = tx.update(params, state1, params, value_fn=value_fn)
  assert not jnp.allclose(state1.aux["dense1"]["kernel"],
                          state2.aux["dense1"]["kernel"])
  assert not jnp.array_equal(jax.random.key_data(state1.key),
                             jax.random.key_data(state2.key))


def test_zero_estimate_gives_zero_perturbation_not_nan():
  params = jnp.ones(3)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05)
  state = tx.init(params)
  updates, state = tx.update(params, state, params,
                             value_fn=lambda p: jnp.float32(1.0))
  chex.assert_tree_all_finite((updates, state.perturbation_norm))
  assert state.perturbation_norm == 0


def test_diagnostics_report_losses_and_norms():
  params, loss, _ = helpers.quadratic()
  tx = zosam_jax.zo_sam(optax.sgd(0.01), rho=0.05, estimator="forward")
  state = tx.init(params)
  _, state = tx.update(params, state, params, value_fn=loss)
  np.testing.assert_allclose(state.loss, loss(params), rtol=1e-6)
  assert state.ascent_norm > 0
  np.testing.assert_allclose(state.perturbation_norm, 0.05, rtol=1e-5)
  assert state.perturbed_loss != state.loss


def test_zo_value_fn_is_used_for_the_forward_passes_only():
  params, loss, _ = helpers.quadratic()
  tx = zosam_jax.zo_sam(optax.sgd(0.01), rho=0.05, estimator="forward")
  state = tx.init(params)
  _, state = tx.update(params, state, params, value_fn=loss,
                       zo_value_fn=lambda p: 2.0 * loss(p))
  np.testing.assert_allclose(state.loss, 2.0 * loss(params), rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_updates_have_the_params_dtype(estimator, dtype):
  params = {"w": jnp.array([1.0, 2.0], dtype), "b": jnp.ones((2, 2), dtype)}
  loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"].astype(jnp.float32))
  tx = zosam_jax.zo_sam(optax.adam(1e-2), rho=0.05, estimator=estimator)
  state = jax.jit(tx.init)(params)
  updates, new_state = jax.jit(
      lambda p, s: tx.update(p, s, p, value_fn=loss))(params, state)
  for u in jax.tree.leaves(updates):
    assert u.dtype == dtype
  chex.assert_trees_all_equal_dtypes(state, new_state)
  chex.assert_trees_all_equal_shapes(state, new_state)


def test_jit_and_scan_compile_once():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1, momentum=0.9), rho=0.05, num_dirs=2)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, state):
    def body(carry, _):
      p, s = carry
      u, s = tx.update(p, s, p, value_fn=loss)
      return (optax.apply_updates(p, u), s), s.loss
    return jax.lax.scan(body, (params, state), length=10)

  state = tx.init(params)
  (params, state), losses = run(params, state)
  (params, state), losses2 = run(params, state)
  assert losses2[-1] < losses[0]


def test_inject_hyperparams_schedules_rho():
  params, loss = helpers.mlp_problem()
  factory = optax.inject_hyperparams(
      zosam_jax.zo_sam, static_args=("num_dirs", "mask_fn", "key"))
  tx = factory(optax.sgd(0.1), rho=lambda count: 0.05 / (1 + count),
               num_dirs=2, key=3)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  updates, state = step(params, state)
  np.testing.assert_allclose(state.hyperparams["rho"], 0.05)
  np.testing.assert_allclose(state.inner_state.perturbation_norm, 0.05,
                             rtol=1e-5)
  _, state = step(params, state)
  np.testing.assert_allclose(state.inner_state.perturbation_norm, 0.025,
                             rtol=1e-5)
  plain = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, num_dirs=2, key=3)
  expected, _ = plain.update(params, plain.init(params), params,
                             value_fn=loss)
  chex.assert_trees_all_close(updates, expected, rtol=1e-4, atol=1e-6)


def test_multisteps_inside_accumulates_zo_sam_gradients():
  params, loss = helpers.mlp_problem()
  inner = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2)
  tx = zosam_jax.zo_sam(inner.gradient_transformation(), rho=0.05)
  state = tx.init(params)
  updates, state = tx.update(params, state, params, value_fn=loss)
  chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  updates, state = tx.update(params, state, params, value_fn=loss)
  assert optax.tree.norm(updates) > 0


def test_multisteps_outside_is_stable():
  params, loss = helpers.mlp_problem()
  tx = optax.MultiSteps(zosam_jax.zo_sam(optax.sgd(0.1)), every_k_schedule=3)
  state = jax.jit(tx.init)(params)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  for i in range(6):
    updates, new_state = step(params, state)
    chex.assert_trees_all_equal_structs(state, new_state)
    assert (optax.tree.norm(updates) > 0) == (i % 3 == 2)
    state = new_state


def test_unknown_extra_args_are_passed_to_the_base_optimizer():
  params, loss, _ = helpers.quadratic()
  tx = zosam_jax.zo_sam(optax.contrib.reduce_on_plateau(), rho=0.05)
  state = tx.init(params)
  _, state = tx.update(params, state, params, value_fn=loss,
                       value=jnp.float32(1.0), unexpected_argument=1)
  assert optax.tree.get(state, "best_value") == 1.0


def test_map_params_reaches_the_base_state():
  params, _ = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1, momentum=0.9))
  state = tx.init(params)
  mapped = optax.tree.map_params(tx.init, lambda v: v + 1.0, state)
  trace = optax.tree.get(mapped, "trace")
  chex.assert_trees_all_equal(trace, jax.tree.map(jnp.ones_like, params))
  assert mapped.loss == 0


def test_integer_seed_and_raw_key_give_the_same_typed_key():
  a = zosam_jax.zo_sam(optax.sgd(0.1), key=5).init(jnp.ones(2))
  b = zosam_jax.zo_sam(optax.sgd(0.1), key=jax.random.PRNGKey(5)).init(
      jnp.ones(2))
  assert jax.dtypes.issubdtype(a.key.dtype, jax.dtypes.prng_key)
  chex.assert_trees_all_equal(jax.random.key_data(a.key),
                              jax.random.key_data(b.key))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"rho": -0.1}, ValueError, "`rho` must be >= 0"),
    ({"rho": "big"}, TypeError, "`rho`"),
    ({"num_dirs": 0}, ValueError, "`num_dirs` must be a positive int"),
    ({"num_dirs": 1.5}, TypeError, "`num_dirs`"),
    ({"num_dirs": True}, TypeError, "`num_dirs`"),
    ({"num_dirs": jnp.array(2)}, TypeError, "static_args"),
    ({"smoothing": 0.0}, ValueError, "`smoothing` must be > 0"),
    ({"estimator": "backward"}, ValueError, "`estimator` must be one of"),
    ({"distribution": "uniform"}, ValueError, "`distribution` must be one of"),
    ({"chunk_size": 0}, ValueError, "`chunk_size`"),
    ({"mask_fn": "all"}, ValueError, "`mask_fn`"),
    ({"mask_fn": {"w": 1.0}}, TypeError, "`mask_fn` must be a pytree of booleans"),
    ({"key": "seed"}, TypeError, "`key`"),
    ({"ravel": 1}, TypeError, "`ravel`"),
])
def test_bad_arguments_fail_at_construction(kwargs, error, match):
  with pytest.raises(error, match=match):
    zosam_jax.zo_sam(optax.sgd(0.1), **kwargs)


def test_bad_base_optimizer_fails_at_construction():
  with pytest.raises(TypeError, match="`base_tx`"):
    zosam_jax.zo_sam(optax.sgd, rho=0.05)


@pytest.mark.parametrize(("mask", "match"), [
    ({"w": True}, "tree structure"),
    ({"w": jnp.ones(3, bool), "b": jnp.ones((2, 2), bool)}, r"\['w'\].*shape"),
])
def test_mask_that_does_not_match_the_params_fails_at_init(mask, match):
  params = {"w": jnp.ones(4), "b": jnp.ones((2, 2))}
  for mask_fn in (mask, lambda p: mask):
    tx = zosam_jax.zo_sam(optax.sgd(0.1), mask_fn=mask_fn)
    with pytest.raises(ValueError, match=match):
      tx.init(params)


def test_missing_value_fn_shows_the_correct_call():
  params = jnp.ones(2)
  tx = zosam_jax.zo_sam(optax.sgd(0.1))
  with pytest.raises(ValueError, match=r"value_fn=loss_fn"):
    tx.update(params, tx.init(params), params)


def test_base_state_masks_need_a_sparse_base():
  params = jnp.ones(2)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), mask_fn="base_state")
  with pytest.raises(ValueError, match="zosam_jax.sparse"):
    tx.update(params, tx.init(params), params, value_fn=jnp.sum)


def test_state_round_trips_through_an_orbax_checkpoint(tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  tx = zosam_jax.zo_sam(optax.adam(1e-2), rho=0.05, num_dirs=2, mask_fn=mask)
  _, state = _run(tx, params, loss, steps=3)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "state", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(
      tmp_path / "state",
      jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  assert isinstance(restored, zosam_jax.ZOSAMState)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  chex.assert_trees_all_equal(step(params, restored)[0],
                              step(params, state)[0])


@pytest.mark.parametrize("make", [
    lambda base: zosam_jax.zo_sam(base, rho=0.05, num_dirs=2),
    lambda base: zosam_jax.zo_sam(base, rho=0.05, num_dirs=0, prior="gradient"),
    lambda base: zosam_jax.sam(base, rho=0.05)], ids=["zo_sam", "prior", "sam"])
def test_state_holds_each_buffer_once_so_it_can_be_donated(make):
  params, _ = helpers.mlp_problem()
  state = make(optax.sgd(0.1, momentum=0.9)).init(params)
  assert helpers.shared_buffers(state) == []
