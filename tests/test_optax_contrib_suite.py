"""Optax's contributed-optimizer checks, run against zo_sam.

The checks and targets are those of ``optax/contrib/_common_test.py`` (shipped
in the optax wheel); the targets are imported from it. The suite's step
functions call ``opt.update(grads, state, params, **kw)`` without an objective,
so each check is restated here with the one difference ZO-SAM needs: the
objective is passed as ``value_fn``. Differences, and why:

- Convergence uses ``rho=1e-3``: a SAM-type method minimises the worst loss
  within ``rho`` of the params, whose minimiser is not the target's minimiser
  (on Rosenbrock's narrow curved valley, ``rho=0.01`` with sgd stops near
  (0.93, 0.84)); ``rho=1e-3`` keeps that shift within the suite's tolerance of
  3e-2. The base optimizers use learning rates that make plain sgd/adam
  converge on each target within the suite's 30,000 steps.
- ``test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such``
  does not apply: ``zo_sam`` has no ``learning_rate``; schedules belong to the
  base optimizer (tested in ``test_zo_sam.py`` with a cosine schedule).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import optax
from optax._src import test_utils
from optax.contrib import _common_test as suite
import pytest

import zosam_jax

TARGETS = {
    "parabola": suite._setup_parabola,  # pylint: disable=protected-access
    "rosenbrock": suite._setup_rosenbrock,  # pylint: disable=protected-access
    "matrix_parabola": suite._setup_matrix_parabola,  # pylint: disable=protected-access
    "mixed_tensor": suite._setup_mixed_tensor_target,  # pylint: disable=protected-access
}
BASES = {
    "sgd": lambda: optax.sgd(1e-3, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
}
ESTIMATORS = ("central", "jvp")


def _zo_sam(base, estimator="central", **kwargs):
  return zosam_jax.zo_sam(BASES[base](), rho=kwargs.pop("rho", 1e-3),
                          estimator=estimator, **kwargs)


@pytest.mark.parametrize("base", sorted(BASES))
def test_accepts_extra_args_and_does_not_recompile(base):
  opt = _zo_sam(base)
  initial_params, _, objective = suite._setup_rosenbrock(jnp.float32)  # pylint: disable=protected-access

  @jax.jit
  def step(params, state):
    updates, state = opt.update(
        params, state, params, value_fn=objective,
        unexpected_extra_args_your_optimizer_doesnt_expect=1)
    return optax.apply_updates(params, updates), state

  params, state = initial_params, opt.init(initial_params)
  for _ in range(2):
    params, state = step(params, state)
  params, state = step(initial_params, opt.init(initial_params))
  with test_utils.log_compilations() as compilation_logs:
    step(params, state)
  assert not compilation_logs, "zo_sam recompiles on the second call."


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("base", sorted(BASES))
def test_converges_on_the_suite_targets(base, target, estimator):
  opt = _zo_sam(base, estimator)
  initial_params, final_params, obj_fn = TARGETS[target](jnp.float32)

  @jax.jit
  def run(params, state):
    def f(carry, _):
      p, s = carry
      updates, s = opt.update(p, s, p, value_fn=obj_fn)
      return (optax.apply_updates(p, updates), s), None
    return jax.lax.scan(f, (params, state), length=30_000)[0]

  state = opt.init(initial_params)
  # A no-op change, to verify that tree map works.
  state = optax.tree.map_params(opt, lambda v: v, state)
  params, _ = run(initial_params, state)
  chex.assert_trees_all_close(params, final_params, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("base", sorted(BASES))
def test_can_be_wrapped_in_inject_hyperparams(base):
  factory = functools.partial(zosam_jax.zo_sam, BASES[base]())
  hparams = {"rho": 0.05, "num_dirs": 2, "smoothing": 1e-3, "key": 1}
  opt = factory(**hparams)
  opt_inject = optax.inject_hyperparams(
      factory, static_args=("num_dirs", "mask_fn", "key"))(**hparams)

  params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
  obj_fn = lambda x: optax.tree.norm(x, squared=True)
  updates, new_state = jax.jit(functools.partial(opt.update, value_fn=obj_fn))(
      params, jax.jit(opt.init)(params), params)
  updates_inject, new_state_inject = jax.jit(
      functools.partial(opt_inject.update, value_fn=obj_fn))(
          params, jax.jit(opt_inject.init)(params), params)
  chex.assert_trees_all_close(updates_inject, updates, rtol=1e-5)
  chex.assert_trees_all_close(
      jax.tree.map(jax.random.key_data, new_state_inject.inner_state.key),
      jax.tree.map(jax.random.key_data, new_state.key))
  chex.assert_trees_all_close(new_state_inject.inner_state.base_tx_state,
                              new_state.base_tx_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("base", sorted(BASES))
def test_preserve_dtype(base, dtype):
  opt = _zo_sam(base, rho=0.05)
  fun = lambda x: jnp.sum(x**2)
  params = jnp.array([1.0, 2.0], dtype=jnp.dtype(dtype))
  state = jax.jit(opt.init)(params)
  updates, _ = jax.jit(functools.partial(opt.update, value_fn=fun))(
      params, state, params)
  assert updates.dtype == params.dtype


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("base", sorted(BASES))
def test_gradient_accumulation(base, dtype):
  fun = lambda x: jnp.sum(x**2)
  opt = _zo_sam(base, rho=0.05)
  opt = optax.GradientTransformationExtraArgs(
      opt.init, functools.partial(opt.update, value_fn=fun))
  opt = optax.MultiSteps(opt, every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype=jnp.dtype(dtype))
  grads = jax.grad(fun)(params)
  state = jax.jit(opt.init)(params)
  updates, _ = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal(updates, jnp.zeros_like(grads))


@pytest.mark.parametrize(
    "dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("base", sorted(BASES))
def test_state_shape_dtype_stability(base, dtype):
  with jax.enable_x64(dtype == jnp.float64):
    opt = _zo_sam(base, rho=0.05)
    initial_params, _, objective = suite._setup_parabola(dtype)  # pylint: disable=protected-access

    @jax.jit
    def step(params, state):
      # Defeat compiler optimization, use lax.cond to check for stability.
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      updates, state = jax.lax.cond(
          cond,
          lambda: opt.update(params, state, params, value_fn=objective),
          lambda: (params, state))
      return optax.apply_updates(params, updates), state

    params, state = initial_params, opt.init(initial_params)
    for _ in range(2):
      params, new_state = step(params, state)
      assert jax.tree.leaves(params)[0].dtype == dtype
      chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
      state = new_state
