"""Tests of the models, the optimizer builder and the train step."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zosam_jax.train import TrainConfig
from zosam_jax.train import build_optimizer
from zosam_jax.train import get_model
from zosam_jax.train import optim
from zosam_jax.train import steps


def _init_shapes(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


@pytest.mark.parametrize("name, num_params", [
    # The CIFAR ResNets of He et al. (2016) with option-A shortcuts:
    # 0.27M, 0.46M and 0.85M parameters as in the paper's Table 6.
    ("resnet20", 269_722), ("resnet32", 464_154), ("resnet56", 853_018),
])
def test_cifar_resnet_parameter_counts(name, num_params):
  variables = _init_shapes(get_model(name, 10), (1, 32, 32, 3))
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == num_params
  assert "batch_stats" in variables


@pytest.mark.parametrize("name", ["mlp", "resnet20", "vgg11", "vgg19", "vit"])
@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (2, 8, 8, 1), (2, 40, 1, 1)])
def test_models_give_logits_for_every_input_shape(name, shape):
  model = get_model(name, 7)
  variables = _init_shapes(model, shape)
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False),
                       variables)
  assert out.shape == (2, 7)


def test_unknown_model_is_rejected():
  with pytest.raises(ValueError, match="unknown model 'resnet7'"):
    get_model("resnet7", 10)


def test_schedule_warms_up_then_decays_to_zero():
  schedule = optim.learning_rate_schedule(
      TrainConfig(lr=0.2, warmup_steps=10), num_steps=100)
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(0.2)
  assert float(schedule(55)) == pytest.approx(0.1, rel=1e-3)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


class TinyBatchNormNet(nn.Module):
  """Conv, BatchNorm, pooling, dense: the smallest model with batch stats."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


@pytest.mark.parametrize("model_name", [
    "tiny", pytest.param("resnet8", marks=pytest.mark.slow)])
@pytest.mark.parametrize("optimizer", ["sam", "zosam"])
def test_step_with_batchnorm_has_one_compilation_and_updates_stats(
    model_name, optimizer):
  model = TinyBatchNormNet() if model_name == "tiny" else get_model(model_name, 10)
  tx, _ = build_optimizer(TrainConfig(optimizer=optimizer), 10)
  state = steps.init_train_state(model, tx, np.zeros((1, 8, 8, 1), np.float32),
                                 jax.random.key(0))
  x_all = jnp.asarray(np.random.default_rng(0).integers(0, 17, (64, 8, 8, 1)),
                      jnp.uint8)
  y_all = jnp.arange(64, dtype=jnp.int32) % 10
  step_fn = steps.make_train_step(
      model, tx, optimizer=optimizer, mean=np.array([5.0]), std=np.array([6.0]),
      augment=True, augment_key=jax.random.key(1), ascent_fraction=0.5)
  chex.clear_trace_counter()  # Traces are counted per code object.
  step_fn = jax.jit(chex.assert_max_traces(step_fn, n=1))
  new = step_fn(state, x_all, y_all, np.arange(16, dtype=np.int32))
  new = step_fn(new, x_all, y_all, np.arange(16, 32, dtype=np.int32))
  assert int(new.step) == 2 and int(new.metrics.count) == 2
  assert new.opt_state.aux is None
  chex.assert_trees_all_equal_structs(new, state)
  mean_before = state.batch_stats["BatchNorm_0"]["mean"]
  assert not np.allclose(new.batch_stats["BatchNorm_0"]["mean"], mean_before)
  assert int(new.metrics.nonfinite_step) == -1


def test_sam_finds_its_ascent_on_the_first_examples_of_the_minibatch():
  model = get_model("cnn", 10)
  tx, _ = build_optimizer(TrainConfig(optimizer="sam"), 10)
  state = steps.init_train_state(model, tx, np.zeros((1, 8, 8, 1), np.float32),
                                 jax.random.key(0))
  x_all = jnp.asarray(np.random.default_rng(0).integers(0, 17, (64, 8, 8, 1)), jnp.uint8)
  y_all = jnp.arange(64, dtype=jnp.int32) % 10
  def step(fraction, idx):
    return jax.jit(steps.make_train_step(
        model, tx, optimizer="sam", mean=np.array([5.0]), std=np.array([6.0]),
        augment=False, augment_key=jax.random.key(1), ascent_fraction=fraction))(
            state, x_all, y_all, idx)
  idx = np.arange(16, dtype=np.int32)
  quarter, whole = step(0.25, idx), step(1.0, idx)
  # The ascent's loss at θ is that of the first 4 examples; the update differs.
  np.testing.assert_allclose(quarter.opt_state.loss, step(1.0, idx[:4]).opt_state.loss,
                             rtol=1e-6)
  assert not np.isclose(quarter.opt_state.loss, whole.opt_state.loss)
  assert not np.allclose(quarter.params["Dense_0"]["kernel"], whole.params["Dense_0"]["kernel"])
