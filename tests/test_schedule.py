"""The ascent schedule: ``ascent_start``/``ascent_every`` of sam, zo_sam and msam."""

import chex
import jax
import jax.numpy as jnp
from jax.sharding import AxisType
import optax
import pytest

import helpers
import zosam_jax

SGD = lambda: optax.sgd(0.1, momentum=0.9)
MAKERS = {
    "sam": lambda base, **kw: zosam_jax.sam(base, rho=0.1, **kw),
    "zo_sam": lambda base, **kw: zosam_jax.zo_sam(base, rho=0.1, num_dirs=2, **kw),
    "prior": lambda base, **kw: zosam_jax.zo_sam(base, rho=0.1, num_dirs=0,
                                                 prior="gradient", probe=False, **kw),
    "msam": lambda base, **kw: zosam_jax.msam(base, rho=0.1, **kw),
}
LATE = dict(ascent_start=3)
PERIODIC = dict(ascent_start=2, ascent_every=3)


def test_ascent_on_and_ascent_steps_agree_over_a_grid():
  for start in (None, 0, 1, 5, 12):
    for every in (None, 1, 2, 3, 7):
      on = [t for t in range(12) if zosam_jax.ascent_on(t, start=start, every=every)]
      assert zosam_jax.ascent_steps(12, start=start, every=every) == len(on)
      traced = jax.jit(lambda t, s=start, e=every: zosam_jax.ascent_on(t, start=s, every=e))
      assert [t for t in range(12) if bool(traced(jnp.int32(t)))] == on
      first = start or 0
      assert on == list(range(first, 12, every or 1))


def _run(tx, params, loss, steps, flags=None):
  """``steps`` jitted steps: with ``flags`` the static ``ascent`` of each step,
  else the count chooses (``jax.lax.cond``). Returns the params after each step
  and the last state."""
  update = jax.jit(lambda p, s, ascent: tx.update(p, s, p, value_fn=loss, ascent=ascent),
                   static_argnames="ascent")
  state, history = tx.init(params), []
  for t in range(steps):
    updates, state = update(params, state, None if flags is None else flags[t])
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history, state


def _base_run(params, loss, steps, mask=None):
  """The base optimizer alone (masked as the transformations mask it)."""
  base = SGD()
  apply = (lambda t: t) if mask is None else (
      lambda t: jax.tree.map(lambda x, m: jnp.where(m, x, 0), t, mask))
  step = jax.jit(lambda p, s: base.update(apply(jax.grad(loss)(p)), s, p))
  state, history = base.init(params), []
  for _ in range(steps):
    updates, state = step(params, state)
    params = optax.apply_updates(params, apply(updates))
    history.append(params)
  return history


@pytest.mark.parametrize("masked", [False, True], ids=["dense", "masked"])
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_off_steps_equal_the_base_optimizer_bit_for_bit(name, masked):
  params, loss = helpers.mlp_problem()
  mask = helpers.random_mask(params) if masked else None
  tx = MAKERS[name](SGD(), mask_fn=mask, **LATE)
  for flags in (None, [False] * 3):
    history, state = _run(tx, params, loss, 3, flags)
    chex.assert_trees_all_equal(history, _base_run(params, loss, 3, mask))
    assert float(state.perturbation_norm) == 0.0 and int(state.count) == 3


@pytest.mark.parametrize("name", ["sam", "msam"])
def test_rho_zero_on_steps_equal_the_base_optimizer_bit_for_bit(name):
  params, loss = helpers.mlp_problem()
  make = {"sam": zosam_jax.sam, "msam": zosam_jax.msam}[name]
  history, _ = _run(make(SGD(), rho=0.0, **PERIODIC), params, loss, 6)
  chex.assert_trees_all_equal(history, _base_run(params, loss, 6))


def test_on_steps_are_sams_step_from_the_state_the_off_steps_left():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.sam(SGD(), rho=0.1, **LATE)
  history, _ = _run(tx, params, loss, 3)
  _, state = _run(tx, params, loss, 3)
  expected, _ = helpers.exact_sam_updates(SGD(), state.base_tx_state, history[-1], loss, 0.1)
  updates, _ = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))(history[-1], state)
  chex.assert_trees_all_close(updates, expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_the_static_flag_matches_the_counted_step(name):
  params, loss = helpers.mlp_problem()
  tx = MAKERS[name](SGD(), **PERIODIC)
  flags = [zosam_jax.ascent_on(t, **{k[7:]: v for k, v in PERIODIC.items()})
           for t in range(7)]
  assert flags == [False, False, True, False, False, True, False]
  counted, _ = _run(tx, params, loss, 7)
  chosen, state = _run(tx, params, loss, 7, flags)
  chex.assert_trees_all_close(counted, chosen, atol=1e-6)
  assert int(state.count) == 7


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_one_state_structure_and_a_checkpoint_resumes_across_the_switch(name, tmp_path):
  params, loss = helpers.mlp_problem()
  tx = MAKERS[name](SGD(), **LATE)
  update = jax.jit(lambda p, s: tx.update(p, s, p, value_fn=loss))
  state = tx.init(params)
  p = params
  for _ in range(2):  # Off steps, then a checkpoint before the switch.
    updates, new_state = update(p, state)
    chex.assert_trees_all_equal_structs(state, new_state)
    p, state = optax.apply_updates(p, updates), new_state
  restored = helpers.orbax_round_trip(state, tmp_path / "state")
  p_a = p_b = p
  for _ in range(3):  # Across the switch at step 3.
    (u_a, state), (u_b, restored) = update(p_a, state), update(p_b, restored)
    chex.assert_trees_all_equal_structs(state, restored)
    p_a, p_b = optax.apply_updates(p_a, u_a), optax.apply_updates(p_b, u_b)
  chex.assert_trees_all_equal(p_a, p_b)
  assert float(state.perturbation_norm) > 0


def test_an_off_step_takes_one_backward_pass_an_on_step_sams_two():
  params, loss = helpers.mlp_problem()
  tap, counts = helpers.pass_counter()
  tapped = lambda p: loss(tap(p))
  tx = zosam_jax.sam(SGD(), rho=0.1, **LATE)
  update = jax.jit(lambda p, s, ascent: tx.update(p, s, p, value_fn=tapped, ascent=ascent),
                   static_argnames="ascent")
  state = tx.init(params)
  for ascent, expected in ((False, 1), (True, 2)):
    counts.update(forward=0, backward=0)
    jax.block_until_ready(update(params, state, ascent))
    assert counts == {"forward": expected, "backward": expected}


@pytest.mark.parametrize("static", [True, False], ids=["static", "injected"])
def test_the_schedule_under_inject_hyperparams_and_scan(static):
  params, loss = helpers.mlp_problem()
  kwargs = dict(rho=0.1, ascent_start=2, ascent_every=2)
  statics = ("ascent_start", "ascent_every") if static else ()
  tx = optax.inject_hyperparams(zosam_jax.sam, static_args=statics)(SGD(), **kwargs)
  state = tx.init(params)
  assert ("ascent_start" in state.hyperparams) != static
  new_state, losses = helpers.scanned_steps(tx, params, state, loss, 6)
  chex.assert_trees_all_equal_structs(state, new_state)
  expected, _ = _run(zosam_jax.sam(SGD(), **kwargs), params, loss, 6)
  final = jax.jit(lambda s: s.inner_state.count)(new_state)
  assert int(final) == 6 and losses[-1] < losses[0]
  # The last step's params from the state's own run.
  unrolled, _ = _run(optax.inject_hyperparams(zosam_jax.sam, static_args=statics)(
      SGD(), **kwargs), params, loss, 6)
  chex.assert_trees_all_close(unrolled, expected, atol=1e-6)


def test_the_schedule_under_jit_with_shardings_matches_one_device():
  params, _ = helpers.mlp_problem()
  x, y, loss_on = helpers.device_batches(8)
  x, y = x.reshape(-1, 4), y.reshape(-1, 1)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  batch = jax.device_put((x, y), zosam_jax.data_sharding(mesh))
  tx = zosam_jax.sam(SGD(), rho=0.1, **PERIODIC)
  step = jax.jit(lambda p, s, b, ascent: tx.update(
      p, s, p, value_fn=lambda q: loss_on(q, *b), ascent=ascent), static_argnames="ascent")
  runs = []
  for b, flags in (((x, y), [None] * 5), (batch, [None] * 5), (batch, [
      zosam_jax.ascent_on(t, start=2, every=3) for t in range(5)])):
    p, state = params, tx.init(params)
    for flag in flags:
      updates, state = step(p, state, b, flag)
      p = optax.apply_updates(p, updates)
    runs.append(p)
  chex.assert_trees_all_close(runs[0], runs[1], atol=1e-6)
  chex.assert_trees_all_close(runs[0], runs[2], atol=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(ascent_start=-1), ValueError, "`ascent_start` must be a step >= 0"),
    (dict(ascent_start=0.5), TypeError, "`ascent_start` must be an int"),
    (dict(ascent_every=0), ValueError, "ascent_every"),
    (dict(ascent_every=2.0), TypeError, "ascent_every"),
])
def test_bad_schedules_are_refused_at_construction(kwargs, error, match):
  for make in MAKERS.values():
    with pytest.raises(error, match=match):
      make(SGD(), **kwargs)


def test_the_flag_needs_a_schedule_and_a_python_bool():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.sam(SGD())
  with pytest.raises(ValueError, match="`ascent`.*ascent_start"):
    tx.update(params, tx.init(params), params, value_fn=loss, ascent=False)
  tx = zosam_jax.sam(SGD(), **LATE)
  with pytest.raises(TypeError, match="`ascent` must be a Python bool"):
    tx.update(params, tx.init(params), params, value_fn=loss, ascent=jnp.asarray(True))
