"""The prior-guided ascent (``prior="gradient"``) and adaptive SAM (ASAM)."""

import pathlib
import runpy

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zosam_jax
from tests import helpers

BENCH = runpy.run_path(str(pathlib.Path(__file__).parents[1] / "benchmarks"
                           / "ascent_quality.py"))


def _with_prior(tx, params, prior):
  return tx.init(params)._replace(prior=prior)


def _perturbed_point(tx, state, params, loss):
  """θ + ε of one step: ``value_fn`` returns the point it was called at."""
  _, state = tx.update(params, state, params, value_fn=lambda p: (loss(p), p))
  return state.aux, state


def test_default_is_the_papers_random_directions():
  params, _ = helpers.mlp_problem()
  assert zosam_jax.zo_sam(optax.sgd(0.1)).init(params).prior is None


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(num_dirs=0), "num_dirs"),
    (dict(prior="nesterov"), "prior"),
    (dict(prior="gradient", num_dirs=-1), "num_dirs"),
    (dict(adaptive=1), "adaptive"),
    (dict(adaptive=True, adaptive_eta=-1.0), "adaptive_eta"),
    (dict(probe=False), "prior='gradient' and num_dirs=0"),
    (dict(prior="gradient", num_dirs=1, probe=False), "num_dirs=0"),
    (dict(prior="momentum", num_dirs=0, probe=False), "prior='gradient'"),
    (dict(prior="gradient", num_dirs=0, radius_cap=4.0, probe=False), "radius_cap"),
    (dict(prior="gradient", num_dirs=0, probe=0), "static_args"),
    (dict(prior="gradient", num_dirs=0, exact_leaves=zosam_jax.output_layer), "probe=False"),
    (dict(prior="gradient", num_dirs=0, probe=False, exact_leaves={"w": jnp.ones(2, bool)}),
     "Python bools"),
    (dict(prior="gradient", num_dirs=0, probe=False, exact_leaves={"w": False}),
     "chooses no leaf"),
])
def test_bad_prior_arguments_fail_at_construction(kwargs, match):
  with pytest.raises((ValueError, TypeError), match=match):
    zosam_jax.zo_sam(optax.sgd(0.1), **kwargs)


@pytest.mark.parametrize("ravel", [True, False])
def test_exact_gradient_prior_gives_sams_perturbation(ravel):
  params, loss = helpers.mlp_problem()
  g = jax.grad(loss)(params)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, prior="gradient", num_dirs=0,
                        ravel=ravel, has_aux=True)
  for prior in (g, jax.tree.map(jnp.negative, g)):  # The sign comes from the loss.
    point, _ = _perturbed_point(tx, _with_prior(tx, params, prior), params, loss)
    sam_point = jax.tree.map(lambda p, d: p + 0.05 * d / optax.tree.norm(g), params, g)
    chex.assert_trees_all_close(point, sam_point, atol=1e-5)


def test_first_step_falls_back_to_a_random_direction_and_stores_the_gradient():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, prior="gradient", num_dirs=0,
                        has_aux=True)
  state = tx.init(params)
  chex.assert_trees_all_equal(state.prior, jax.tree.map(jnp.zeros_like, params))
  point, state = _perturbed_point(tx, state, params, loss)
  assert float(state.perturbation_norm) == pytest.approx(0.05, rel=1e-4)
  assert float(state.perturbed_loss) > float(loss(params))  # Uphill, by its sign.
  chex.assert_trees_all_close(state.prior, jax.grad(loss)(point), rtol=1e-5)


@pytest.mark.parametrize("ravel", [True, False])
def test_unprobed_prior_perturbs_along_the_masked_prior_without_a_forward_pass(ravel):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  prior = jax.tree.map(jnp.negative, jax.grad(loss)(params))  # Downhill: kept as given.
  calls = {True: 0, False: 0}
  def step(probe):
    def value_fn(p):
      calls[probe] += 1  # Traced once per evaluation of the loss.
      return loss(p), p
    tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, prior="gradient", num_dirs=0,
                          probe=probe, mask_fn=mask, ravel=ravel, has_aux=True)
    return tx.update(params, _with_prior(tx, params, prior), params, value_fn=value_fn)[1]
  step(True)
  state = step(False)
  masked = jax.tree.map(lambda g, m: g * m, prior, mask)
  expected = jax.tree.map(lambda p, g: p + 0.05 * g / optax.tree.norm(masked), params, masked)
  chex.assert_trees_all_close(state.aux, expected, atol=1e-6)
  assert calls[True] - calls[False] == 2 and np.isnan(float(state.loss))
  chex.assert_trees_all_close(state.prior, jax.tree.map(
      lambda g, m: g * m, jax.grad(loss)(state.aux), mask), rtol=1e-5, atol=1e-7)


def test_unprobed_prior_costs_sgds_passes():
  assert zosam_jax.step_passes("zosam", 0, prior="gradient", probe=False) == (
      zosam_jax.step_passes("sgd"))
  assert zosam_jax.ascent_forward_passes(0, prior="gradient", probe=False) == 0
  assert zosam_jax.step_passes("zosam", 0, prior="gradient", probe=False,
                               exact_leaves=True) == (1.0, 2.0)


def _primitives(jaxpr) -> set:
  """The names of the primitives of a jaxpr and of the jaxprs inside it."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      names |= _primitives(sub)
  return names


@pytest.mark.parametrize("ravel", [True, False])
def test_unprobed_prior_draws_its_first_direction_at_init(ravel):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  make = lambda key=3: zosam_jax.zo_sam(
      optax.sgd(0.1), rho=0.05, prior="gradient", num_dirs=0, probe=False, mask_fn=mask,
      ravel=ravel, key=key, has_aux=True)
  tx = make()
  state = tx.init(params)
  first = state.prior
  assert float(optax.tree.norm(first)) > 0
  for leaf, m in zip(jax.tree.leaves(first), jax.tree.leaves(mask)):
    assert not bool(jnp.any(jnp.where(m, 0.0, leaf)))  # Zero on pruned weights.
  chex.assert_trees_all_equal(make().init(params).prior, first)
  assert not jnp.allclose(make(key=4).init(params).prior["dense1"]["kernel"],
                          first["dense1"]["kernel"])
  point, state = _perturbed_point(tx, state, params, loss)
  chex.assert_trees_all_close(point, jax.tree.map(
      lambda p, d: p + 0.05 * d / optax.tree.norm(first), params, first), atol=1e-6)
  chex.assert_trees_all_equal(jax.random.key_data(state.key),
                              jax.random.key_data(tx.init(params).key))
  chex.assert_trees_all_close(state.prior, jax.tree.map(
      lambda g, m: g * m, jax.grad(loss)(point), mask), rtol=1e-5, atol=1e-7)


def test_unprobed_prior_perturbs_nothing_along_a_zero_prior():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0, probe=False,
                        has_aux=True)
  zeros = jax.tree.map(jnp.zeros_like, params)
  point, state = _perturbed_point(tx, _with_prior(tx, params, zeros), params, loss)
  chex.assert_trees_all_equal(point, params)
  assert float(state.perturbation_norm) == 0.0


@pytest.mark.parametrize("name", ["unprobed", "exact-head", "sam", "msam"])
def test_steps_that_need_no_random_direction_draw_none(name):
  params, loss = helpers.mlp_problem()
  base_tx = optax.sgd(0.1, momentum=0.9)
  tx = {"unprobed": lambda: zosam_jax.zo_sam(base_tx, prior="gradient", num_dirs=0,
                                              probe=False),
        "exact-head": lambda: zosam_jax.zo_sam(base_tx, prior="gradient", num_dirs=0,
                                                probe=False, exact_leaves=_HEAD),
        "sam": lambda: zosam_jax.sam(base_tx),
        "msam": lambda: zosam_jax.msam(base_tx)}[name]()
  step = lambda s: tx.update(params, s, params, value_fn=loss)[1]
  state = tx.init(params)
  used = _primitives(jax.make_jaxpr(step)(state).jaxpr)
  assert not used & {"random_split", "random_bits", "random_fold_in", "threefry2x32", "cond"}
  chex.assert_trees_all_equal(jax.random.key_data(jax.jit(step)(state).key),
                              jax.random.key_data(state.key))
  # The paper's random directions do draw, and advance the key.
  probed = zosam_jax.zo_sam(base_tx, num_dirs=1)
  assert "random_split" in _primitives(jax.make_jaxpr(
      lambda s: probed.update(params, s, params, value_fn=loss)[1])(probed.init(params)).jaxpr)


_HEAD = {"dense1": {"bias": False, "kernel": False}, "dense2": {"bias": True, "kernel": True}}


@pytest.mark.parametrize("exact_leaves", [_HEAD, zosam_jax.output_layer], ids=["tree", "fn"])
@pytest.mark.parametrize("ravel", [True, False])
def test_exact_leaves_take_this_minibatchs_gradient_and_the_prior_elsewhere(exact_leaves,
                                                                            ravel):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  prior = jax.tree.map(jnp.negative, jax.grad(loss)(params))
  tx = zosam_jax.zo_sam(optax.sgd(0.1), rho=0.05, prior="gradient", num_dirs=0,
                        probe=False, exact_leaves=exact_leaves, mask_fn=mask, ravel=ravel,
                        has_aux=True)
  point, state = _perturbed_point(tx, _with_prior(tx, params, prior), params, loss)
  d = {"dense1": prior["dense1"], "dense2": jax.grad(loss)(params)["dense2"]}
  d = jax.tree.map(lambda g, m: g * m, d, mask)
  chex.assert_trees_all_close(point, jax.tree.map(
      lambda p, g: p + 0.05 * g / optax.tree.norm(d), params, d), atol=1e-6)
  assert float(state.loss) == pytest.approx(float(loss(params)), rel=1e-6)


def test_exact_leaves_backward_pass_stops_at_them():
  params, loss = helpers.mlp_problem()
  tap, counts = helpers.pass_counter()
  body_tapped = lambda p: loss(dict(p, dense1=tap(p["dense1"])))
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0, probe=False,
                        exact_leaves=_HEAD)
  jax.jit(lambda p, s: tx.update(p, s, p, value_fn=body_tapped))(params, tx.init(params))
  # Two forward passes (θ, θ+ε), one backward pass through the body (at θ+ε).
  assert counts == {"forward": 2, "backward": 1}


def test_exact_leaves_of_the_wrong_structure_are_named():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0, probe=False,
                        exact_leaves={"dense2": True})
  with pytest.raises(ValueError, match="`exact_leaves` must have the tree structure"):
    tx.update(params, tx.init(params), params, value_fn=loss)


@pytest.mark.parametrize(("name", "shape", "layer"), [
    ("mlp", (1, 28, 28, 1), "Dense_2"), ("cnn", (1, 28, 28, 1), "Dense_1"),
    ("resnet20", (1, 16, 16, 3), "Dense_0")])
def test_output_layer_is_the_classifier_of_the_programs_models(name, shape, layer):
  from zosam_jax.train.models import get_model  # pylint: disable=import-outside-toplevel
  params = jax.eval_shape(lambda: get_model(name, 10).init(
      jax.random.key(0), jnp.zeros(shape)))["params"]
  chosen = [jax.tree_util.keystr(path) for path, f in
            jax.tree_util.tree_leaves_with_path(zosam_jax.output_layer(params)) if f]
  assert chosen == [f"['{layer}']['bias']", f"['{layer}']['kernel']"]
  with pytest.raises(ValueError, match="no params leaf has two or more dimensions"):
    zosam_jax.output_layer({"b": jnp.zeros(3)})


def test_prior_is_remasked_with_the_current_mask():
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0, mask_fn=mask,
                        has_aux=True)
  dense_prior = jax.tree.map(jnp.ones_like, params)
  point, _ = _perturbed_point(tx, _with_prior(tx, params, dense_prior), params, loss)
  moved = jax.tree.map(lambda a, b: a != b, point, params)
  assert not any(bool(jnp.any(m & ~k)) for m, k in
                 zip(jax.tree.leaves(moved), jax.tree.leaves(mask)))


def test_random_directions_are_added_orthogonally_and_chunking_agrees():
  params, loss = helpers.mlp_problem()
  g = jax.grad(loss)(params)
  results = []
  for chunk_size in (1, 2, 8):
    tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=4,
                          chunk_size=chunk_size, has_aux=True)
    point, state = _perturbed_point(tx, _with_prior(tx, params, g), params, loss)
    results.append(point)
  for other in results[1:]:
    chex.assert_trees_all_close(results[0], other, atol=1e-6)
  eps = jax.tree.map(jnp.subtract, results[0], params)
  cos = optax.tree.vdot(eps, g) / (optax.tree.norm(eps) * optax.tree.norm(g))
  assert 0.5 < float(cos) < 1.0  # Mostly the prior, a little of the rest.
  assert float(state.ascent_norm) > 0


def test_bfloat16_prior_is_stored_in_the_params_dtype():
  params, loss = helpers.mlp_problem()
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0)
  _, state = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))(params, tx.init(params))
  assert {x.dtype for x in jax.tree.leaves(state.prior)} == {jnp.dtype(jnp.bfloat16)}
  assert float(state.perturbation_norm) > 0


def test_scan_inject_hyperparams_and_fixed_state_structure():
  params, loss = helpers.mlp_problem()
  tx = optax.inject_hyperparams(zosam_jax.zo_sam, static_args=("num_dirs", "prior", "key"))(
      optax.sgd(0.1), rho=0.05, num_dirs=0, prior="gradient")
  state = tx.init(params)
  new_state, losses = helpers.scanned_steps(tx, params, state, loss, 20)
  chex.assert_trees_all_equal_structs(state, new_state)
  assert losses[-1] < losses[0]
  assert float(optax.tree.norm(optax.tree.get(new_state, "prior"))) > 0


@pytest.mark.slow  # zo_sam's state round-trips in the default suite (test_zo_sam).
def test_prior_round_trips_through_an_orbax_checkpoint(tmp_path):
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=1)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  _, state = step(params, tx.init(params))
  restored = helpers.orbax_round_trip(state, tmp_path / "state")
  chex.assert_trees_all_equal(step(params, restored)[0], step(params, state)[0])


@pytest.mark.parametrize("exact_leaves", [None, _HEAD], ids=["probed", "exact-head"])
def test_under_pmap_the_prior_is_the_averaged_gradient_on_every_device(exact_leaves):
  params, _ = helpers.mlp_problem()
  x, y, loss_on = helpers.device_batches()
  options = {} if exact_leaves is None else dict(probe=False, exact_leaves=exact_leaves)
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0,
                        axis_name="data", has_aux=True, **options)

  def step(state, xb, yb):
    _, state = tx.update(params, state, params,
                         value_fn=lambda p: (loss_on(p, xb, yb), p))
    return state

  state = jax.pmap(step, axis_name="data", in_axes=(None, 0, 0))(tx.init(params), x, y)
  point = jax.tree.map(lambda a: a[0], state.aux)
  full_grad_at = jax.grad(lambda p: jnp.mean(jax.vmap(
      lambda xb, yb: loss_on(p, xb, yb))(x, y)))
  for leaf, want in zip(jax.tree.leaves(state.prior), jax.tree.leaves(full_grad_at(point))):
    np.testing.assert_allclose(leaf, np.broadcast_to(want, leaf.shape), atol=1e-5)
  if exact_leaves is not None:  # The first step: ε along the whole batch's head gradient.
    head = dict(jax.tree.map(jnp.zeros_like, params), dense2=full_grad_at(params)["dense2"])
    want = jax.tree.map(lambda p, g: p + 0.05 * g / optax.tree.norm(head), params, head)
    for leaf, w in zip(jax.tree.leaves(state.aux), jax.tree.leaves(want)):
      np.testing.assert_allclose(leaf, np.broadcast_to(w, leaf.shape), atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda **kw: zosam_jax.sam(optax.sgd(0.1), **kw),
    lambda **kw: zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0, **kw),
], ids=["sam", "zo_sam"])
def test_adaptive_matches_the_asam_formula_on_a_masked_tree(make):
  params = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, -0.1], [2.0, 1.0]])}
  c = {"a": jnp.array([0.5, 1.0, -1.0]), "b": jnp.array([[1.0, 2.0], [-0.5, 0.2]])}
  loss = lambda p: jnp.sum(c["a"] * p["a"]) + jnp.sum(c["b"] * p["b"]) + 0.1 * jnp.sum(
      p["a"] ** 2)
  mask = {"a": jnp.array([True, False, True]), "b": jnp.array([[True, True], [False, True]])}
  rho, eta = 0.3, 0.01
  g = jax.tree.map(lambda d, m: d * m, jax.grad(loss)(params), mask)
  t = jax.tree.map(lambda p: jnp.abs(p) + eta, params)
  tg_norm = jnp.sqrt(sum(jnp.sum((ti * gi) ** 2) for ti, gi in
                         zip(jax.tree.leaves(t), jax.tree.leaves(g))))
  want = jax.tree.map(lambda p, ti, gi: p + rho * ti ** 2 * gi / tg_norm, params, t, g)
  tx = make(rho=rho, adaptive=True, adaptive_eta=eta, mask_fn=mask, has_aux=True)
  state = tx.init(params)
  if state.prior is not None:
    state = state._replace(prior=jax.grad(loss)(params))
  point, state = _perturbed_point(tx, state, params, loss)
  chex.assert_trees_all_close(point, want, atol=1e-5)
  assert float(state.perturbation_norm) == pytest.approx(
      float(optax.tree.norm(jax.tree.map(jnp.subtract, want, params))), rel=1e-4)


def test_momentum_prior_reads_the_base_trace_and_needs_one():
  params, loss = helpers.mlp_problem()
  with pytest.raises(ValueError, match="prior='momentum'.*no"):
    zosam_jax.zo_sam(optax.sgd(0.1), prior="momentum", num_dirs=0).init(params)
  tx = zosam_jax.zo_sam(optax.sgd(0.1, momentum=0.9), prior="momentum", num_dirs=0)
  state = tx.init(params)
  assert state.prior is None  # Nothing copied: the trace is read where it is.
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  for _ in range(3):
    _, state = step(params, state)
  assert float(state.perturbation_norm) == pytest.approx(0.05, rel=1e-4)
  assert float(state.perturbed_loss) > float(loss(params))


@pytest.mark.slow  # Trains the digits MLP with each prior.
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_momentum_prior_points_uphill_less_than_the_gradient(sparsity):
  measure = BENCH["measure"]
  momentum = measure(BENCH["ASCENTS"]["prior=momentum, m=0"], sparsity)
  assert momentum["cos"] >= 0.15 and momentum["sharpness_ratio"] >= 0.15


@pytest.mark.slow  # Trains the digits MLP and compares each step's prior with the gradient.
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_prior_points_uphill_on_the_digits_mlp(sparsity):
  measure = BENCH["measure"]
  with_prior = measure(BENCH["ASCENTS"]["prior=gradient, m=0"], sparsity)
  paper = measure(BENCH["ASCENTS"]["random m=1 (paper)"], sparsity)
  assert with_prior["cos"] >= 0.25 and with_prior["sharpness_ratio"] >= 0.30
  assert paper["cos"] <= 0.03


def _flops_and_memory(fn, *args):
  compiled = jax.jit(fn).lower(*args).compile()
  mem = compiled.memory_analysis()
  return compiled.cost_analysis()["flops"], mem.temp_size_in_bytes


@pytest.mark.slow  # Compiles a step of every prior option on three models.
def test_flops_and_memory_of_the_prior_options():
  """The probe: two forward passes more than SGD and one copy of the params;
  unprobed: SGD's FLOPs; with the output layer exact: one forward pass more."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  x = jax.random.normal(jax.random.key(0), (1024, 128))
  y = jnp.zeros((1024,), jnp.int32)
  model = nn.Sequential([nn.Dense(256), nn.relu, nn.Dense(256), nn.relu, nn.Dense(10)])
  params = model.init(jax.random.key(1), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  base_tx = optax.sgd(0.1, momentum=0.9)
  counter = {"backward": 0}

  @jax.custom_vjp
  def tap(p):
    return p

  def tap_bwd(_, g):
    counter["backward"] += 1
    return (g,)

  tap.defvjp(lambda p: (p, None), tap_bwd)

  def step_of(tx, value_fn=loss):
    def step(p, s):
      u, s = tx.update(p, s, p, value_fn=value_fn)
      return optax.apply_updates(p, u), s
    return step

  def sgd_step(p, s):
    u, s = base_tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  forward, _ = _flops_and_memory(loss, params)
  sgd, _ = _flops_and_memory(sgd_step, params, base_tx.init(params))
  tx = zosam_jax.zo_sam(base_tx, prior="gradient", num_dirs=0)
  flops, memory = _flops_and_memory(step_of(tx), params, tx.init(params))
  assert abs(flops - (sgd + 2 * forward)) <= 0.1 * (sgd + 2 * forward)
  unprobed = zosam_jax.zo_sam(base_tx, prior="gradient", num_dirs=0, probe=False)
  flops, _ = _flops_and_memory(step_of(unprobed), params, unprobed.init(params))
  assert abs(flops - sgd) <= 0.1 * sgd
  head = zosam_jax.zo_sam(base_tx, prior="gradient", num_dirs=0, probe=False,
                         exact_leaves=zosam_jax.output_layer)
  flops, _ = _flops_and_memory(step_of(head), params, head.init(params))
  assert abs(flops - (sgd + forward)) <= 0.1 * (sgd + forward)
  sam = zosam_jax.sam(base_tx)
  _, sam_memory = _flops_and_memory(step_of(sam), params, sam.init(params))
  param_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(params))
  assert memory <= sam_memory + param_bytes
  jax.jit(step_of(tx, lambda p: loss(tap(p))))(params, tx.init(params))
  assert counter["backward"] == 1


@pytest.mark.slow  # Compiles the prior under FSDP (test_sharding covers FSDP by default).
def test_under_explicit_fsdp_sharding_the_prior_keeps_the_params_sharding():
  from jax.sharding import AxisType, PartitionSpec as P  # pylint: disable=import-outside-toplevel
  from tests import test_sharding  # pylint: disable=import-outside-toplevel
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    params, batch, mask = test_sharding._problem()  # pylint: disable=protected-access
    params = jax.device_put(params, jax.tree.map(
        lambda s: s.spec, zosam_jax.fsdp_sharding(params, mesh)))
    batch = jax.device_put(batch, P("data"))
    tx = zosam_jax.zo_sam(optax.adam(1e-2), prior="gradient", num_dirs=1,
                          mask_fn=mask, ravel=False)
    loss = lambda q: test_sharding._loss(  # pylint: disable=protected-access
        q, batch, lambda p: jax.sharding.reshard(p, P()))
    step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
    _, state = step(params, tx.init(params))
    _, state = step(params, state)
  for leaf, p in zip(jax.tree.leaves(state.prior), jax.tree.leaves(params)):
    assert leaf.sharding.is_equivalent_to(p.sharding, leaf.ndim)
  assert float(state.perturbation_norm) == pytest.approx(0.05, rel=1e-4)
