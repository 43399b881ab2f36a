"""zo_sam and sam on 8 simulated devices: jit with shardings, FSDP, shard_map."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import optax
import pytest

import zosam_jax
from tests import helpers
from zosam_jax._src import directions
from zosam_jax._src import sharding

STEPS = 20
METHODS = ("central", "jvp", "sam")


def _problem():
  """A masked two-layer MLP whose dimensions the 8 devices divide (but b2)."""
  keys = jax.random.split(jax.random.key(0), 4)
  params = {"w1": jax.random.normal(keys[0], (16, 32)) * 0.3,
            "b1": jnp.zeros(32),
            "w2": jax.random.normal(keys[1], (32, 3)) * 0.3,
            "b2": jnp.zeros(3)}
  batch = (jax.random.normal(keys[2], (64, 16)),
           jax.random.normal(keys[3], (64, 3)))
  mask = helpers.random_mask(params, density=0.5)
  params = jax.tree.map(lambda p, m: p * m, params, mask)
  return params, batch, mask


def _loss(params, batch, replicate=lambda p: p):
  x, y = batch
  p = jax.tree.map(replicate, params)
  h = jnp.tanh(x @ p["w1"] + p["b1"][None, :])
  return jnp.mean((h @ p["w2"] + p["b2"][None, :] - y) ** 2)


def _tx(method, ravel=True, axis_name=None, mask=None):
  if method == "sam":
    return zosam_jax.sam(optax.adam(1e-2), rho=0.05, mask_fn=mask,
                         axis_name=axis_name)
  # jvp evaluates its 2 directions in one vmap (the GPU default), central one
  # after the other (the CPU default): both code paths run sharded.
  # Gaussian: drawn shard by shard under FSDP (packed Rademacher signs are
  # drawn whole, then sharded).
  return zosam_jax.zo_sam(optax.adam(1e-2), rho=0.05, num_dirs=2,
                          mask_fn=mask, key=3, estimator=method,
                          distribution="gaussian",
                          smoothing=1e-2, ravel=ravel, axis_name=axis_name,
                          chunk_size=2 if method == "jvp" else 1)


def _loss_step(tx, replicate=lambda p: p):
  return lambda p, s, b: tx.update(
      p, s, p, value_fn=lambda q: _loss(q, b, replicate))


def _train(tx, step_fn, params, batch):
  """STEPS steps in one jit; returns the stacked updates and the last state."""

  @jax.jit
  def run(params, batch):
    def body(carry, _):
      params, state = carry
      updates, state = step_fn(params, state, batch)
      return (optax.apply_updates(params, updates), state), updates

    (_, state), updates = jax.lax.scan(body, (params, tx.init(params)),
                                       length=STEPS)
    return updates, state

  return run(params, batch)


@functools.cache
def _single_device(method, ravel=True):
  params, batch, mask = _problem()
  tx = _tx(method, ravel, mask=mask)
  return jax.device_get(_train(tx, _loss_step(tx), params, batch))


def _assert_same_sharding(tree, like, stacked=False):
  for x, p in zip(jax.tree.leaves(tree), jax.tree.leaves(like)):
    expected = p.sharding
    if stacked:  # a leading axis of steps
      expected = NamedSharding(expected.mesh, P(None, *expected.spec))
    assert x.sharding.is_equivalent_to(expected, x.ndim), (x.sharding,
                                                           expected)


@pytest.mark.parametrize(("layout", "method"), [  # FSDP's: by default in the explicit test.
    *(("data_parallel", m) for m in METHODS),
    *(pytest.param("fsdp", m, marks=pytest.mark.slow) for m in METHODS)])
def test_jit_with_named_shardings_matches_one_device(layout, method):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  params, batch, mask = _problem()
  if layout == "fsdp":
    param_sharding = sharding.fsdp_sharding(params, mesh)
  else:
    param_sharding = jax.tree.map(lambda _: NamedSharding(mesh, P()), params)
  params = jax.device_put(params, param_sharding)
  batch = jax.device_put(batch, sharding.data_sharding(mesh))
  ravel = sharding.can_ravel(params)
  assert ravel == (layout == "data_parallel")

  tx = _tx(method, ravel, mask=mask)
  updates, state = _train(tx, _loss_step(tx), params, batch)
  expected, expected_state = _single_device(method, ravel)

  chex.assert_trees_all_close(updates, expected, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(state.loss, expected_state.loss, rtol=1e-5)
  _assert_same_sharding(updates, params, stacked=True)
  _assert_same_sharding(state.base_tx_state[0].mu, params)
  _assert_same_sharding(state.base_tx_state[0].nu, params)


@pytest.mark.parametrize("method", ("central", "jvp"))
def test_fsdp_directions_are_drawn_per_shard_not_gathered(method):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  params, batch, _ = _problem()
  params = jax.device_put(params, sharding.fsdp_sharding(params, mesh))
  batch = jax.device_put(batch, sharding.data_sharding(mesh))
  tx = _tx(method, ravel=False)
  step = jax.jit(_loss_step(tx))
  hlo = step.lower(params, tx.init(params), batch).compile().as_text()
  # The Gaussian sampler's erf_inv runs on each device's block of each leaf
  # (vmapped lanes first, if any): w1 (16, 32) -> (16, 4), b1 -> (4,),
  # w2 (32, 3) -> (4, 3), and b2 (3,) is replicated.
  shapes = {s.split(",", int(method == "jvp"))[-1] for s in re.findall(
      r"= f32\[([\d,]*)\]\S* fusion\(.*erf_inv", hlo)}
  assert shapes and shapes <= {"16,4", "4", "4,3", "3"}, shapes


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher", "sphere"])
def test_explicit_sharding_draws_directions_with_the_params_sharding(
    distribution):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    like = jax.device_put(jnp.zeros((16, 32)), P(None, "data"))
    draw = jax.jit(lambda k, p: directions.sample_direction(
        k, p, None, distribution))
    u = draw(jax.random.key(0), like)
  assert u.sharding.spec == P(None, "data")
  chex.assert_trees_all_close(
      u, directions.sample_direction(jax.random.key(0), jnp.zeros((16, 32)),
                                     None, distribution), rtol=1e-6)


def test_explicit_fsdp_matches_one_device():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    params, batch, mask = _problem()
    specs = jax.tree.map(lambda s: s.spec, sharding.fsdp_sharding(params, mesh))
    params = jax.device_put(params, specs)
    batch = jax.device_put(batch, P("data"))
    tx = _tx("central", ravel=False, mask=mask)
    # Under explicit sharding the model gathers its FSDP weights itself.
    step = _loss_step(tx, lambda p: jax.sharding.reshard(p, P()))
    updates, state = _train(tx, step, params, batch)
  expected, _ = _single_device("central", ravel=False)
  chex.assert_trees_all_close(updates, expected, rtol=1e-4, atol=1e-6)
  _assert_same_sharding(updates, params, stacked=True)
  _assert_same_sharding(state.base_tx_state[0].mu, params)


def test_ravel_with_explicitly_sharded_params_raises_a_clear_error():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    params = jax.device_put({"w": jnp.zeros((16, 8))}, P("data"))
    tx = zosam_jax.zo_sam(optax.sgd(0.1), ravel=True)
    with pytest.raises(ValueError, match="pass `ravel=False`"):
      jax.jit(lambda p, s: tx.update(p, s, p, value_fn=lambda q: jnp.sum(
          jax.sharding.reshard(q["w"], P()) ** 2)))(params, tx.init(params))


def _shard_map_step(tx, mesh):
  def step(params, state, batch):
    return tx.update(params, state, params,
                     value_fn=lambda q: _loss(q, batch))
  return jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P(), P()))


@pytest.mark.parametrize("method", METHODS)
def test_shard_map_with_axis_name_matches_one_device(method):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  params, batch, mask = _problem()
  batch = jax.device_put(batch, sharding.data_sharding(mesh))
  tx = _tx(method, axis_name="data", mask=mask)
  updates, state = _train(tx, _shard_map_step(tx, mesh), params, batch)
  expected, expected_state = _single_device(method)
  chex.assert_trees_all_close(updates, expected, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(
      (state.loss, state.perturbed_loss),
      (expected_state.loss, expected_state.perturbed_loss), rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_shard_map_without_axis_name_raises_a_clear_error(method):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  params, batch, _ = _problem()
  batch = jax.device_put(batch, sharding.data_sharding(mesh))
  tx = _tx(method)
  with pytest.raises(ValueError, match="Pass `axis_name='data'`"):
    jax.jit(_shard_map_step(tx, mesh))(params, tx.init(params), batch)


def test_pmap_with_axis_name_matches_one_device():
  # pmap tracks no replication: the per-device gradient path of check_vma=False.
  params, batch, mask = _problem()
  tx = _tx("central", axis_name="batch", mask=mask)
  step = jax.pmap(_loss_step(tx), axis_name="batch", in_axes=(None, None, 0),
                  out_axes=None)
  shards = jax.tree.map(lambda x: x.reshape(8, -1, x.shape[-1]), batch)
  state = tx.init(params)
  expected_updates = _single_device("central")[0]
  for i in range(3):
    expected = jax.tree.map(lambda u, i=i: u[i], expected_updates)
    updates, state = step(params, state, shards)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(updates, expected, rtol=1e-4, atol=1e-6)


def test_fsdp_sharding_splits_the_largest_divisible_dimension():
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  shardings = sharding.fsdp_sharding(
      {"conv": jnp.zeros((3, 3, 16, 64)), "bias": jnp.zeros(64),
       "head": jnp.zeros((10,)), "small": jnp.zeros(16)}, mesh, min_size=32)
  assert {k: s.spec for k, s in shardings.items()} == {
      "conv": P(None, None, None, "data"), "bias": P("data"), "head": P(),
      "small": P()}
