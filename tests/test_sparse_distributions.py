"""Per-layer sparsity distributions: uniform and ERK."""

import math

import jax
import numpy as np
import pytest

from zosam_jax import sparse
from tests import helpers_sparse


def erk_by_bisection(shapes, sparsity):
  """ERK written independently: solve sum_l min(1, eps * score_l) n_l = budget."""
  sizes = [math.prod(s) for s in shapes]
  scores = [sum(s) / math.prod(s) for s in shapes]
  budget = (1 - sparsity) * sum(sizes)
  lo, hi = 0.0, 1.0 / min(scores)
  for _ in range(200):
    eps = 0.5 * (lo + hi)
    total = sum(min(1.0, eps * c) * n for c, n in zip(scores, sizes))
    lo, hi = (eps, hi) if total < budget else (lo, eps)
  return [min(1.0, lo * c) for c in scores]


def prunable_leaves(params, densities):
  flat_p = jax.tree.leaves(params)
  flat_d = jax.tree.leaves(densities)
  return [(p, d) for p, d in zip(flat_p, flat_d)]


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.98])
def test_erk_matches_formula_and_redistribution(model, sparsity):
  params = (
      helpers_sparse.cnn_params() if model == "cnn" else helpers_sparse.mlp_params()
  )
  densities = sparse.erk(params, sparsity)
  kernels = [
      (p.shape, d) for p, d in prunable_leaves(params, densities) if p.ndim > 1
  ]
  expected = erk_by_bisection([s for s, _ in kernels], sparsity)
  np.testing.assert_allclose([d for _, d in kernels], expected, rtol=1e-6)
  assert all(0.0 < d <= 1.0 for _, d in kernels)


def test_erk_redistributes_when_a_layer_would_exceed_one():
  params = helpers_sparse.cnn_params()
  densities = sparse.erk(params, 0.5)
  # The first conv's raw ERK density would be > 1: it is made dense and the
  # other layers share the remaining budget.
  assert densities["Conv_0"]["kernel"] == 1.0
  assert densities["Dense_0"]["kernel"] < 0.5
  kernels = [k for k in jax.tree.leaves(params) if k.ndim > 1]
  sizes = [k.size for k in kernels]
  dens = [d for p, d in prunable_leaves(params, densities) if p.ndim > 1]
  assert math.isclose(np.dot(sizes, dens), 0.5 * sum(sizes), rel_tol=1e-9)


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("sparsity", [0.0, 0.7, 0.9, 0.95])
@pytest.mark.parametrize("first,last", [(False, False), (True, True)])
def test_realised_global_density_within_one_weight_per_layer(
    distribution, sparsity, first, last
):
  params = helpers_sparse.cnn_params()
  masks = sparse.init_masks(
      params,
      sparsity,
      distribution=distribution,
      key=0,
      dense_first_layer=first,
      dense_last_layer=last,
  )
  flags = sparse.prunable(params, dense_first_layer=first, dense_last_layer=last)
  pruned = [
      (int(m.sum()), m.size)
      for m, f in zip(jax.tree.leaves(masks), jax.tree.leaves(flags))
      if f
  ]
  active = sum(a for a, _ in pruned)
  total = sum(n for _, n in pruned)
  assert abs(active - (1 - sparsity) * total) <= 0.5 * len(pruned) + 1e-9


def test_default_exclusions_keep_biases_and_norm_scales_dense():
  params = helpers_sparse.cnn_params()
  for densities in (sparse.erk(params, 0.9), sparse.uniform(params, 0.9)):
    for (path, p), d in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(densities)
    ):
      if p.ndim <= 1:
        assert d == 1.0, path
      else:
        assert d < 1.0, path


def test_first_and_last_layer_flags_follow_the_order_of_prunable_leaves():
  params = helpers_sparse.cnn_params()
  densities = sparse.erk(
      params, 0.9, dense_first_layer=True, dense_last_layer=True
  )
  assert densities["Conv_0"]["kernel"] == 1.0
  assert densities["Dense_1"]["kernel"] == 1.0
  assert densities["Conv_1"]["kernel"] < 1.0
  # The target applies to the remaining prunable weights.
  rest = [params["Conv_1"]["kernel"], params["Dense_0"]["kernel"]]
  dens = [densities["Conv_1"]["kernel"], densities["Dense_0"]["kernel"]]
  assert math.isclose(
      sum(d * p.size for d, p in zip(dens, rest)),
      0.1 * sum(p.size for p in rest),
      rel_tol=1e-9,
  )


def test_dense_fn_excludes_leaves_by_path():
  params = helpers_sparse.cnn_params()
  dense_fn = lambda path, x: x.ndim <= 1 or path.startswith("Dense_1")
  densities = sparse.uniform(params, 0.8, dense_fn=dense_fn)
  assert densities["Dense_1"]["kernel"] == 1.0
  assert densities["Dense_0"]["kernel"] == pytest.approx(0.2)


def test_uniform_gives_every_prunable_leaf_the_same_density():
  densities = sparse.uniform(helpers_sparse.mlp_params(), 0.75)
  for name in ("layer_0", "layer_1", "layer_2"):
    assert densities[name]["kernel"] == 0.25
    assert densities[name]["bias"] == 1.0


def test_densities_match_params_structure():
  params = helpers_sparse.cnn_params()
  densities = sparse.layer_densities(params, 0.9, "erk")
  assert jax.tree.structure(densities) == jax.tree.structure(params)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("fn", [sparse.erk, sparse.uniform])
def test_sparsity_outside_unit_interval_raises(fn, sparsity):
  with pytest.raises(ValueError, match="`sparsity` must be in \\[0, 1\\)"):
    fn(helpers_sparse.mlp_params(), sparsity)


def test_sparsity_of_wrong_type_raises():
  with pytest.raises(TypeError, match="`sparsity`"):
    sparse.erk(helpers_sparse.mlp_params(), "0.9")


def test_unknown_distribution_raises():
  with pytest.raises(ValueError, match="`distribution` must be one of"):
    sparse.layer_densities(helpers_sparse.mlp_params(), 0.9, "er")
