"""ZO-SAM in Flax training steps: BatchNorm, metrics, one backward pass."""

import chex
import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import optax
import pytest

import zosam_jax


class _LinenNet(nn.Module):

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(32)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(nn.relu(x))


def _data(n=64):
  kx, ky = jax.random.split(jax.random.key(0))
  return jax.random.normal(kx, (n, 8)), jax.random.randint(ky, (n,), 0, 3)


def _count_backward_passes(fn):
  """Wraps `fn` so that each backward pass through it is counted at trace time."""
  counter = {"backward": 0}

  @jax.custom_vjp
  def tap(p):
    return p

  def tap_fwd(p):
    return p, None

  def tap_bwd(_, g):
    counter["backward"] += 1
    return (g,)

  tap.defvjp(tap_fwd, tap_bwd)
  return (lambda p, *a, **k: fn(tap(p), *a, **k)), counter


def _linen_train_step(model, tx, loss_tap=lambda p: p):
  # The documented ZO-SAM training step (README): one backward pass.
  def train_step(params, batch_stats, opt_state, x, y):
    def loss_fn(p):
      logits, updates = model.apply(
          {"params": loss_tap(p), "batch_stats": batch_stats}, x, train=True,
          mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, (logits, updates["batch_stats"])

    updates, opt_state = tx.update(params, opt_state, params, value_fn=loss_fn)
    params = optax.apply_updates(params, updates)
    (logits, batch_stats), opt_state = zosam_jax.pop_aux(opt_state)
    metrics = {"loss": opt_state.loss,
               "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
    return params, batch_stats, opt_state, metrics

  return train_step


@pytest.mark.parametrize("estimator", ["central", "forward"])
def test_linen_batchnorm_step_has_exactly_one_backward_pass(estimator):
  model = _LinenNet()
  x, y = _data()
  variables = model.init(jax.random.key(1), x, train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  tx = zosam_jax.zo_sam(optax.sgd(0.1, momentum=0.9), rho=0.05, num_dirs=2,
                        estimator=estimator, has_aux=True)
  opt_state = tx.init(params)
  tap, counter = _count_backward_passes(lambda p: p)
  step = jax.jit(_linen_train_step(model, tx, loss_tap=tap))
  new_params, new_stats, new_state, metrics = step(params, batch_stats,
                                                   opt_state, x, y)
  assert counter["backward"] == 1
  # Batch statistics moved, the state keeps its structure, metrics are there.
  assert not jnp.allclose(new_stats["BatchNorm_0"]["mean"],
                          batch_stats["BatchNorm_0"]["mean"])
  chex.assert_trees_all_equal_structs(opt_state, new_state)
  assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
  # Same structure in, same structure out: the second call does not retrace.
  step(new_params, new_stats, new_state, x, y)
  assert counter["backward"] == 1


def test_sam_step_has_two_backward_passes():
  model = _LinenNet()
  x, y = _data()
  variables = model.init(jax.random.key(1), x, train=False)
  tx = zosam_jax.sam(optax.sgd(0.1), rho=0.05, has_aux=True)
  tap, counter = _count_backward_passes(lambda p: p)
  step = jax.jit(_linen_train_step(model, tx, loss_tap=tap))
  step(variables["params"], variables["batch_stats"],
       tx.init(variables["params"]), x, y)
  assert counter["backward"] == 2


def _flops(fn, *args):
  return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


@pytest.mark.slow  # Compiles the step of every estimator.
def test_compiled_flops_are_sgd_plus_the_counted_forward_passes():
  # Direction sampling costs O(num_params) per direction, a forward pass
  # O(batch * num_params) for an MLP: a realistic batch keeps it small.
  x = jax.random.normal(jax.random.key(0), (1024, 128))
  y = jnp.zeros((1024,), jnp.int32)
  model = nn.Sequential([nn.Dense(256), nn.relu, nn.Dense(256), nn.relu,
                         nn.Dense(10)])
  params = model.init(jax.random.key(1), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  base_tx = optax.sgd(0.1, momentum=0.9)
  base_state = base_tx.init(params)

  def sgd_step(p, s):
    u, s = base_tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  def step_of(tx):
    def step(p, s):
      u, s = tx.update(p, s, p, value_fn=loss)
      return optax.apply_updates(p, u), s
    return step

  forward = _flops(loss, params)
  sgd = _flops(sgd_step, params, base_state)
  for num_dirs, estimator, prior in ((1, "central", None), (4, "central", None),
                                     (4, "forward", None), (0, "central", "gradient")):
    tx = zosam_jax.zo_sam(base_tx, rho=0.05, num_dirs=num_dirs, estimator=estimator,
                          prior=prior)
    zo = _flops(step_of(tx), params, tx.init(params))
    passes = zosam_jax.ascent_forward_passes(num_dirs, estimator, prior)
    expected = sgd + passes * forward
    assert abs(zo - expected) <= 0.1 * expected, (num_dirs, estimator, zo, expected)
  tx = zosam_jax.sam(base_tx, rho=0.05)
  sam = _flops(step_of(tx), params, tx.init(params))
  zo1 = _flops(step_of(zosam_jax.zo_sam(base_tx)), params,
               zosam_jax.zo_sam(base_tx).init(params))
  assert zo1 < sam


class _NnxNet(nnx.Module):

  def __init__(self, rngs):
    self.dense1 = nnx.Linear(8, 32, rngs=rngs)
    self.norm = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
    self.dense2 = nnx.Linear(32, 3, rngs=rngs)

  def __call__(self, x):
    return self.dense2(nnx.relu(self.norm(self.dense1(x))))


_MAKERS = {
    "random": lambda base, **kw: zosam_jax.zo_sam(base, rho=0.05, num_dirs=1, **kw),
    "prior": lambda base, **kw: zosam_jax.zo_sam(base, rho=0.05, prior="gradient",
                                                 num_dirs=0, **kw),
    "prior-cap-refresh": lambda base, **kw: zosam_jax.zo_sam(
        base, rho=0.05, prior="gradient", num_dirs=0, radius_cap=4.0, refresh_every=3, **kw),
    "msam": lambda base, **kw: zosam_jax.msam(base, rho=0.05, **kw),
    "looksam": lambda base, **kw: zosam_jax.looksam(base, rho=0.05, every=3, **kw),
}


@pytest.mark.parametrize("make", list(_MAKERS.values()), ids=list(_MAKERS))
def test_nnx_optimizer_forwards_value_fn_and_batch_stats_come_back(make):
  model = _NnxNet(nnx.Rngs(0))
  x, y = _data()

  def make_loss_fn(graphdef, rest, x, y):
    def loss_fn(p):
      m = nnx.merge(graphdef, p, rest)
      logits = m(x)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, (logits, nnx.state(m, nnx.BatchStat))
    return loss_fn

  # nnx.Optimizer keeps the structure of its state fixed: give it the aux's.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  aux_like = jax.eval_shape(make_loss_fn(graphdef, nnx.as_pure(rest), x, y),
                            nnx.as_pure(params))[1]
  tx = make(optax.sgd(0.1, momentum=0.9), has_aux=True, aux_like=aux_like)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss_fn = make_loss_fn(graphdef, nnx.as_pure(rest), x, y)
    optimizer.update(model, params, value_fn=loss_fn)
    logits, batch_stats = nnx.as_pure(optimizer.opt_state.aux)
    nnx.update(model, batch_stats)
    return optimizer.opt_state.perturbed_loss[...], jnp.mean(jnp.argmax(logits, -1) == y)

  mean_before = model.norm.mean[...].copy()
  losses = [train_step(model, optimizer, x, y)[0] for _ in range(20)]
  assert losses[-1] < losses[0]
  assert not jnp.allclose(model.norm.mean[...], mean_before)


def test_aux_like_needs_has_aux():
  with pytest.raises(ValueError, match="`aux_like` needs `has_aux=True`"):
    zosam_jax.zo_sam(optax.sgd(0.1), aux_like={"a": jnp.zeros(2)})


def test_linen_train_state_trains_with_the_helper_and_reads_batch_stats():
  from flax.training import train_state  # pylint: disable=import-outside-toplevel

  class State(train_state.TrainState):
    batch_stats: dict

  model = _LinenNet()
  x, y = _data()
  variables = model.init(jax.random.key(1), x, train=False)
  tx = zosam_jax.zo_sam(optax.sgd(0.1, momentum=0.9), rho=0.05, has_aux=True)
  state = State.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                       batch_stats=variables["batch_stats"])

  @jax.jit
  def train_step(state):
    def loss_fn(params):
      logits, new_vars = state.apply_fn(
          {"params": params, "batch_stats": state.batch_stats}, x, train=True,
          mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, new_vars["batch_stats"]
    state = zosam_jax.train_state_step(state, loss_fn)
    batch_stats, opt_state = zosam_jax.pop_aux(state.opt_state)
    return state.replace(batch_stats=batch_stats, opt_state=opt_state)

  losses = []
  for _ in range(15):
    state = train_step(state)
    losses.append(float(state.opt_state.loss))
  assert int(state.step) == 15 and losses[-1] < losses[0]
  chex.assert_trees_all_equal_structs(state.batch_stats, variables["batch_stats"])
