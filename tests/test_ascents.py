"""The ascent options: ``zo_sam``'s ``radius_cap`` and ``refresh_every``, MSAM, LookSAM."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import zosam_jax
from zosam_jax._src import prior as prior_lib
from tests import helpers

#: Each option, built on a base optimizer: name -> (base, **kwargs) -> tx.
MAKERS = {
    "cap": lambda base, **kw: zosam_jax.zo_sam(base, prior="gradient", num_dirs=0,
                                               radius_cap=4.0, **kw),
    "refresh": lambda base, **kw: zosam_jax.zo_sam(base, prior="gradient", num_dirs=0,
                                                   refresh_every=2, **kw),
    "msam": lambda base, **kw: zosam_jax.msam(base, rho=0.05, **kw),
    "looksam": lambda base, **kw: zosam_jax.looksam(base, rho=0.05, every=2, **kw),
}
SGD = lambda: optax.sgd(0.1, momentum=0.9)
#: The variants, the zo_sam ones (slower to compile) only in ``pytest -m slow``.
SLOW_ZO = [pytest.param(name, marks=pytest.mark.slow) if name in ("cap", "refresh") else name
           for name in MAKERS]


def _step(tx, value_fn):
  def step(params, state):
    updates, state = tx.update(params, state, params, value_fn=value_fn)
    return optax.apply_updates(params, updates), state
  return jax.jit(step)


def _sam_point(params, g, rho=0.05):
  return jax.tree.map(lambda p, d: p + rho * d / optax.tree.norm(g), params, g)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: zosam_jax.zo_sam(optax.sgd(0.1), radius_cap=2.0), "radius_cap.*prior='gradient'"),
    (lambda: zosam_jax.zo_sam(optax.sgd(0.1), prior="momentum", num_dirs=0,
                              refresh_every=2), "refresh_every.*prior='gradient'"),
    (lambda: zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", radius_cap=0.5),
     "radius_cap.*>= 1"),
    (lambda: zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", refresh_every=0),
     "refresh_every.*positive"),
    (lambda: zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", refresh_every=2.0),
     "refresh_every"),
    (lambda: zosam_jax.looksam(optax.sgd(0.1), every=0), "every"),
    (lambda: zosam_jax.looksam(optax.sgd(0.1), alpha=-1.0), "alpha"),
    (lambda: zosam_jax.msam(optax.sgd(0.1), rho=-1.0), "rho"),
    (lambda: zosam_jax.msam(optax.sgd(0.1), aux_like={}), "aux_like"),
])
def test_bad_arguments_fail_at_construction(make, match):
  with pytest.raises((ValueError, TypeError), match=match):
    make()


def test_msam_needs_a_momentum_trace():
  params, _ = helpers.mlp_problem()
  with pytest.raises(ValueError, match="msam: .*momentum trace"):
    zosam_jax.msam(optax.sgd(0.1)).init(params)


def test_radius_scale_is_one_over_the_estimated_cosine_clipped():
  g = jnp.array([3.0, 4.0, 0.0])
  noise = jnp.array([4.0, -3.0, 0.0])  # Orthogonal to g, as long.
  # The probe along the prior p measures c = v.g; g_hat = c v.
  for p, want in ((g, 1.0), (g / 2, 1.0), (g + noise, 2.0), (noise + 0.01 * g, 4.0)):
    v = p / jnp.linalg.norm(p)
    got = prior_lib.radius_scale(jnp.dot(v, g) * v, p, None, 4.0)
    assert float(got) == pytest.approx(want, rel=1e-5), (p, want)
  assert float(prior_lib.radius_scale(g, jnp.zeros(3), None, 4.0)) == 1.0
  # Only the active part of the prior counts.
  active = jnp.array([1.0, 1.0, 0.0])
  assert float(prior_lib.radius_scale(g, g.at[2].set(100.0), active, 4.0)) == 1.0


def test_radius_cap_step_zero_zero_prior_and_compensation():
  params, loss = helpers.mlp_problem()
  tx = MAKERS["cap"](optax.sgd(0.1), rho=0.05)
  step = _step(tx, loss)
  _, state = step(params, tx.init(params))  # Step 0: zero prior, rho.
  assert float(state.perturbation_norm) == pytest.approx(0.05, rel=1e-4)
  g = jax.grad(loss)(params)
  noise = jax.tree.map(lambda x: jax.random.normal(jax.random.key(7), x.shape), g)
  along = optax.tree.vdot(noise, g) / optax.tree.vdot(g, g)
  noise = jax.tree.map(lambda n, d: n - along * d, noise, g)  # Orthogonal to g ...
  noise = jax.tree.map(lambda n: n * optax.tree.norm(g) / optax.tree.norm(noise), noise)
  prior = jax.tree.map(jnp.add, g, noise)                      # ... cos 1/sqrt(2).
  _, state = step(params, tx.init(params)._replace(prior=prior))
  assert float(state.perturbation_norm) == pytest.approx(0.1, rel=2e-2)


def test_refresh_takes_sams_step_every_k_and_stores_the_exact_gradient():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.0), rho=0.05, prior="gradient", num_dirs=1,
                        refresh_every=3, has_aux=True)
  step = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=lambda q: (loss(q), q)))
  g = jax.grad(loss)(params)
  state = tx.init(params)
  for i in range(4):  # lr 0: the same params, so the exact steps agree.
    _, state = step(params, state)
    if i % 3 == 0:
      chex.assert_trees_all_close(state.aux, _sam_point(params, g), atol=1e-6)
      chex.assert_trees_all_close(state.prior, g, atol=1e-6)
    else:  # The probe along the stored prior, then random directions.
      assert not jnp.allclose(jax.tree.leaves(state.aux)[0],
                              jax.tree.leaves(_sam_point(params, g))[0], atol=1e-7)
  assert int(state.count) == 4


@pytest.mark.parametrize(("name", "steps", "backward"), [
    ("refresh", 4, 6), ("looksam", 4, 6), ("msam", 4, 4), ("cap", 4, 4)])
def test_backward_passes_that_run(name, steps, backward):
  params, loss = helpers.mlp_problem()
  tap, counts = helpers.pass_counter()
  tx = MAKERS[name](SGD())
  step = _step(tx, lambda p: loss(tap(p)))
  state = tx.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  jax.effects_barrier()
  assert counts["backward"] == backward
  passes = zosam_jax.step_passes(
      {"cap": "zosam", "refresh": "zosam"}.get(name, name), 0, "central", "gradient",
      2 if name in ("refresh", "looksam") else None)
  assert counts["backward"] == pytest.approx(passes[0] * steps)
  assert counts["forward"] == pytest.approx(passes[1] * steps)


def test_msam_perturbs_along_the_negative_masked_momentum():
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  tx = zosam_jax.msam(SGD(), rho=0.05, mask_fn=mask, has_aux=True)
  state = tx.init(params)
  updates, state = tx.update(params, state, params, value_fn=lambda q: (loss(q), q))
  chex.assert_trees_all_equal(state.aux, params)  # Step 0: zero trace, no move.
  g = jax.tree.map(lambda x, m: x * m, jax.grad(loss)(params), mask)
  chex.assert_trees_all_close(updates, jax.tree.map(lambda x: -0.1 * x, g), atol=1e-7)
  trace = optax.tree.get(state.base_tx_state, "trace")
  masked = jax.tree.map(lambda t, m: t * m, trace, mask)
  _, state = tx.update(params, state, params, value_fn=lambda q: (loss(q), q))
  want = jax.tree.map(lambda p, t: p - 0.05 * t / optax.tree.norm(masked), params, masked)
  chex.assert_trees_all_close(state.aux, want, atol=1e-6)
  assert bool(jnp.isnan(state.loss))  # Not evaluated.


def test_looksam_exact_step_then_reuses_the_orthogonal_component():
  params, loss = helpers.mlp_problem()
  base = optax.sgd(0.1)
  tx = zosam_jax.looksam(base, rho=0.05, every=2, alpha=0.7)
  state = tx.init(params)
  updates, state = tx.update(params, state, params, value_fn=loss)
  want, _ = helpers.exact_sam_updates(base, base.init(params), params, loss, 0.05)
  chex.assert_trees_all_close(updates, want, atol=1e-6)  # Step 0 is SAM's.
  g = jax.grad(loss)(params)
  g_s = jax.grad(loss)(_sam_point(params, g))
  g_v = jax.tree.map(lambda a, b: a - optax.tree.vdot(g_s, g) / optax.tree.vdot(g, g) * b,
                     g_s, g)
  chex.assert_trees_all_close(state.prior, g_v, atol=1e-6)
  assert abs(float(optax.tree.vdot(state.prior, g))) < 1e-6
  updates, state = tx.update(params, state, params, value_fn=loss)
  scale = 0.7 * optax.tree.norm(g) / optax.tree.norm(g_v)
  chex.assert_trees_all_close(
      updates, jax.tree.map(lambda a, b: -0.1 * (a + scale * b), g, g_v), atol=1e-6)
  assert float(state.perturbation_norm) == 0.0
  assert float(state.perturbed_loss) == pytest.approx(float(loss(params)), rel=1e-6)


def test_looksam_with_a_zero_component_is_plain_sgd_between_exact_steps():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.looksam(optax.sgd(0.1), every=4)
  state = tx.init(params)._replace(count=jnp.ones((), jnp.int32))  # Not an exact step.
  updates, _ = tx.update(params, state, params, value_fn=loss)
  chex.assert_trees_all_close(
      updates, jax.tree.map(lambda x: -0.1 * x, jax.grad(loss)(params)), atol=1e-7)


@pytest.mark.parametrize("name", ["refresh", "looksam", "cap"])
def test_a_stored_direction_is_remasked_when_the_mask_changes(name):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params)
  tx = MAKERS[name](optax.sgd(0.1), mask_fn=mask, has_aux=True)
  dense = jax.tree.map(jnp.ones_like, params)  # Stored under another (dense) mask.
  state = tx.init(params)._replace(prior=dense, count=jnp.ones((), jnp.int32))
  updates, state = tx.update(params, state, params, value_fn=lambda q: (loss(q), q))
  for u, a, m in zip(jax.tree.leaves(updates), jax.tree.leaves(state.aux),
                     jax.tree.leaves(mask)):
    assert not bool(jnp.any((u != 0) & ~m))
  moved = jax.tree.map(lambda a, p: a != p, state.aux, params)
  assert not any(bool(jnp.any(mv & ~m)) for mv, m in
                 zip(jax.tree.leaves(moved), jax.tree.leaves(mask)))


@pytest.mark.parametrize("name", SLOW_ZO)
def test_with_rigl_masks_in_the_base_state_pruned_weights_stay_zero(name):
  params, loss = helpers.mlp_problem(hidden=16)
  base = zosam_jax.sparse.rigl(SGD(), sparsity=0.5, update_every=2, end_step=100, key=0)
  tx = MAKERS[name](base, mask_fn="base_state")
  state = tx.init(params)
  params = zosam_jax.sparse.apply_masks(
      params, optax.tree.get(state, "DynamicSparseState").masks)
  step = _step(tx, loss)
  for _ in range(6):  # Three mask updates.
    params, state = step(params, state)
    masks = optax.tree.get(state, "DynamicSparseState").masks
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks)):
      assert not bool(jnp.any((p != 0) & ~m))


@pytest.mark.parametrize("name", SLOW_ZO)
def test_under_pmap_the_step_is_the_global_batchs(name):
  params, _ = helpers.mlp_problem()
  x, y, loss_on = helpers.device_batches()

  def two_steps(tx, loss):
    p, state = params, tx.init(params)
    for _ in range(2):
      updates, state = tx.update(p, state, p, value_fn=loss)
      p = optax.apply_updates(p, updates)
    return p

  mapped = jax.pmap(lambda xb, yb: two_steps(MAKERS[name](SGD(), axis_name="data"),
                                             lambda p: loss_on(p, xb, yb)),
                    axis_name="data")(x, y)
  full = two_steps(MAKERS[name](SGD()), lambda p: loss_on(
      p, x.reshape(-1, 4), y.reshape(-1, 1)))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], mapped), full, atol=2e-4)


@pytest.mark.parametrize(("make", "static"), [
    (lambda: optax.inject_hyperparams(zosam_jax.zo_sam, static_args=(
        "num_dirs", "prior", "key", "refresh_every"))(
            SGD(), rho=0.05, num_dirs=0, prior="gradient", radius_cap=4.0,
            refresh_every=3), "radius_cap"),
    (lambda: optax.inject_hyperparams(zosam_jax.msam)(SGD(), rho=0.05), "rho"),
    (lambda: optax.inject_hyperparams(zosam_jax.looksam, static_args=("every",))(
        SGD(), rho=0.05, every=3, alpha=0.7), "alpha"),
], ids=["zo_sam", "msam", "looksam"])
def test_scan_inject_hyperparams_and_fixed_state_structure(make, static):
  params, loss = helpers.mlp_problem()
  tx = make()
  state = tx.init(params)
  assert static in state.hyperparams
  new_state, losses = helpers.scanned_steps(tx, params, state, loss, 12)
  chex.assert_trees_all_equal_structs(state, new_state)
  assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", SLOW_ZO)
def test_state_round_trips_through_an_orbax_checkpoint(name, tmp_path):
  params, loss = helpers.mlp_problem()
  tx = MAKERS[name](SGD())
  step = _step(tx, loss)
  _, state = step(params, tx.init(params))
  restored = helpers.orbax_round_trip(state, tmp_path / "state")
  for _ in range(2):  # An exact step and a reused one.
    (p1, state), (p2, restored) = step(params, state), step(params, restored)
    chex.assert_trees_all_equal(p1, p2)


def test_msam_costs_what_sgd_costs_in_flops():
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  x = jax.random.normal(jax.random.key(0), (512, 64))
  y = jnp.zeros((512,), jnp.int32)
  model = nn.Sequential([nn.Dense(128), nn.relu, nn.Dense(10)])
  params = model.init(jax.random.key(1), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  base = SGD()
  flops = lambda fn, *args: jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]
  sgd = flops(lambda p, s: base.update(jax.grad(loss)(p), s, p), params, base.init(params))
  tx = zosam_jax.msam(base)
  msam = flops(lambda p, s: tx.update(p, s, p, value_fn=loss), params, tx.init(params))
  assert abs(msam - sgd) <= 0.1 * sgd


@pytest.mark.parametrize("name", ["refresh", "looksam"])
def test_exact_chosen_at_trace_time_matches_the_counted_step(name):
  params, loss = helpers.mlp_problem()
  tx = MAKERS[name](SGD())
  counted = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  chosen = jax.jit(lambda p, s, exact: tx.update(p, s, p, value_fn=loss, exact=exact),
                   static_argnames="exact")
  state_a = state_b = tx.init(params)
  p_a = p_b = params
  for i in range(4):  # every=2: exact, reused, exact, reused.
    u_a, state_a = counted(p_a, state_a)
    u_b, state_b = chosen(p_b, state_b, exact=i % 2 == 0)
    p_a, p_b = optax.apply_updates(p_a, u_a), optax.apply_updates(p_b, u_b)
    chex.assert_trees_all_close(p_a, p_b, atol=1e-6)
  assert int(state_b.count) == 4


def test_exact_needs_a_period_and_a_python_bool():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1), prior="gradient", num_dirs=0)
  with pytest.raises(ValueError, match="`exact`.*refresh_every"):
    tx.update(params, tx.init(params), params, value_fn=loss, exact=True)
  tx = MAKERS["looksam"](optax.sgd(0.1))
  with pytest.raises(TypeError, match="`exact` must be a Python bool"):
    tx.update(params, tx.init(params), params, value_fn=loss, exact=jnp.asarray(True))
