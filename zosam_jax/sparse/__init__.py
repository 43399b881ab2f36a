"""Sparse training toolkit: masks, ERK, static and dynamic sparse training.

Every sparse method is an optax transformation that wraps an inner optimizer
and keeps the masks in its state, in a field named ``masks`` (so checkpoints
hold them, and ``zo_sam(..., mask_fn="base_state")`` finds them). The
transformations own the masking: the inner optimizer sees masked gradients and
params, and pruned weights receive the update ``-param``, so
``optax.apply_updates`` alone keeps them at exactly zero.
"""

from zosam_jax.sparse._distributions import DenseFn
from zosam_jax.sparse._distributions import default_dense_fn
from zosam_jax.sparse._distributions import erk
from zosam_jax.sparse._distributions import layer_densities
from zosam_jax.sparse._distributions import prunable
from zosam_jax.sparse._distributions import uniform
from zosam_jax.sparse._dynamic import DynamicSparseState
from zosam_jax.sparse._dynamic import drop_and_grow
from zosam_jax.sparse._dynamic import rigl
from zosam_jax.sparse._dynamic import set_sparse
from zosam_jax.sparse._init import init_masks
from zosam_jax.sparse._init import magnitude_masks
from zosam_jax.sparse._init import random_masks
from zosam_jax.sparse._init import snip_masks
from zosam_jax.sparse._masks import apply_masks
from zosam_jax.sparse._pruning import GMPState
from zosam_jax.sparse._pruning import gmp
from zosam_jax.sparse._report import LayerSparsity
from zosam_jax.sparse._report import SparsityReport
from zosam_jax.sparse._report import sparsity_report
from zosam_jax.sparse._schedules import constant_drop_fraction
from zosam_jax.sparse._schedules import cosine_drop_fraction
from zosam_jax.sparse._schedules import cubic_sparsity
from zosam_jax.sparse._schedules import is_update_step
from zosam_jax.sparse._static import StaticSparseState
from zosam_jax.sparse._static import static_sparse

__all__ = (
    "DenseFn",
    "DynamicSparseState",
    "GMPState",
    "LayerSparsity",
    "SparsityReport",
    "StaticSparseState",
    "apply_masks",
    "constant_drop_fraction",
    "cosine_drop_fraction",
    "cubic_sparsity",
    "default_dense_fn",
    "drop_and_grow",
    "erk",
    "gmp",
    "init_masks",
    "is_update_step",
    "layer_densities",
    "magnitude_masks",
    "prunable",
    "random_masks",
    "rigl",
    "set_sparse",
    "snip_masks",
    "sparsity_report",
    "static_sparse",
    "uniform",
)
