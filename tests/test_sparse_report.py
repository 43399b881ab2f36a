"""The sparsity report, from masks or from params."""

import json

import optax

from zosam_jax import sparse
from tests import helpers_sparse


def test_report_from_masks_counts_active_weights_per_layer():
  params = helpers_sparse.cnn_params()
  masks = sparse.init_masks(params, 0.9, key=0)
  report = sparse.sparsity_report(masks)
  by_path = {layer.path: layer for layer in report.layers}
  conv = by_path["Conv_1/kernel"]
  assert conv.shape == (3, 3, 8, 16)
  assert conv.num_active == int(masks["Conv_1"]["kernel"].sum())
  assert conv.density == conv.num_active / conv.size
  assert by_path["Conv_1/bias"].density == 1.0
  assert report.num_active == sum(layer.num_active for layer in report.layers)
  total = sum(layer.size for layer in report.layers)
  assert report.size == total
  assert report.global_density == report.num_active / total


def test_report_from_params_matches_report_from_masks():
  params = helpers_sparse.mlp_params()
  masks = sparse.init_masks(params, 0.8, key=1)
  sparse_params = sparse.apply_masks(params, masks)
  kernels = lambda path, x: path.endswith("kernel")  # biases start at zero
  from_params = sparse.sparsity_report(sparse_params, include_fn=kernels)
  from_masks = sparse.sparsity_report(masks, include_fn=kernels)
  assert from_params.as_dict() == from_masks.as_dict()


def test_report_is_json_serialisable_and_prints_a_table():
  params = helpers_sparse.mlp_params()
  state = sparse.static_sparse(optax.sgd(0.1), sparsity=0.8).init(params)
  report = sparse.sparsity_report(
      optax.tree.get(state, "masks"), include_fn=lambda path, x: x.ndim > 1
  )
  data = json.loads(json.dumps(report.as_dict()))
  assert [layer["path"] for layer in data["layers"]] == [
      "layer_0/kernel", "layer_1/kernel", "layer_2/kernel"]
  assert abs(data["global_density"] - 0.2) <= 3 / data["size"]
  table = str(report)
  assert "layer_1/kernel" in table and "global" in table
  assert "(32, 32)" in table
