"""Misuse of zo_sam/sam gets a clear error, and the low-precision default is safe."""

import jax
import jax.numpy as jnp
import optax
import pytest

import zosam_jax
from tests import helpers


@pytest.mark.parametrize("make", [zosam_jax.zo_sam, zosam_jax.sam], ids=["zo_sam", "sam"])
@pytest.mark.parametrize(("value_fn", "has_aux", "match"), [
    (lambda p: p["dense1"]["kernel"] ** 2, False, "must be a float scalar.*shape \\(4, 8\\)"),
    (lambda p: {"loss": jnp.sum(p["dense1"]["bias"])}, False, "must be a float scalar.*dict"),
    (lambda p: (jnp.sum(p["dense1"]["bias"]), {"a": 1.0}), False, "pass `has_aux=True`"),
    (lambda p: jnp.sum(p["dense1"]["bias"]), True, "must return a pair \\(loss, aux\\)"),
    (lambda p: (p["dense1"]["bias"], 0.0), True, "must be a float scalar.*shape \\(8,\\)"),
    (lambda p: jnp.sum(p["dense1"]["bias"]).astype(jnp.int32), False, "dtype int32"),
])
def test_a_value_fn_that_is_not_a_scalar_loss_is_named(make, value_fn, has_aux, match):
  params, _ = helpers.mlp_problem()
  tx = make(optax.sgd(0.1), has_aux=has_aux)
  with pytest.raises(ValueError, match=match) as e:
    jax.jit(lambda p, s: tx.update(p, s, p, value_fn=value_fn))(params, tx.init(params))
  assert "value_fn" in str(e.value) and "tx.update(params, state, params" in str(e.value)


def test_a_bad_zo_value_fn_is_named():
  params, loss = helpers.mlp_problem()
  tx = zosam_jax.zo_sam(optax.sgd(0.1))
  with pytest.raises(ValueError, match="`zo_value_fn`"):
    tx.update(params, tx.init(params), params, value_fn=loss,
              zo_value_fn=lambda p: p["dense2"]["bias"])


@pytest.mark.parametrize("rho", [float("inf"), float("nan"), -0.1])
def test_non_finite_or_negative_rho_is_refused(rho):
  with pytest.raises(ValueError, match="`rho`"):
    zosam_jax.zo_sam(optax.sgd(0.1), rho=rho)


def test_low_precision_params_default_to_exact_directional_derivatives():
  params, loss = helpers.mlp_problem()
  bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  low = lambda p: loss(p).astype(jnp.bfloat16)
  default, central = zosam_jax.zo_sam(optax.sgd(0.1)), zosam_jax.zo_sam(
      optax.sgd(0.1), estimator="central")

  def zero_fraction(tx, p, f):
    step = jax.jit(lambda s, k: tx.update(p, s._replace(key=k), p, value_fn=f)[1])
    norms = [float(step(tx.init(p), jax.random.key(i)).perturbation_norm)
             for i in range(40)]
    return sum(n == 0 for n in norms) / len(norms)

  # Finite differences of a bfloat16 loss are often exactly zero; jvp never is.
  assert zero_fraction(central, bf16, low) > 0.2
  assert zero_fraction(default, bf16, low) == 0.0
  assert zero_fraction(default, params, loss) == 0.0  # float32: the paper's central.
