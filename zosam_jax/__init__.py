"""zosam_jax: Zero-Order Sharpness-Aware Minimization for sparse training.

References:
  Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
  Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
"""

from zosam_jax import sparse
from zosam_jax._src.base import MASKS_FROM_BASE_STATE
from zosam_jax._src.cost import step_passes
from zosam_jax._src.estimators import ascent_forward_passes
from zosam_jax._src.estimators import zo_gradient
from zosam_jax._src.looksam import looksam
from zosam_jax._src.msam import msam
from zosam_jax._src.perturbation import adaptive_perturbation
from zosam_jax._src.prior import prior_guided_gradient
from zosam_jax._src.prior import output_layer
from zosam_jax._src.prior import prior_with_exact_leaves
from zosam_jax._src.sam import sam
from zosam_jax._src.schedule import ascent_on
from zosam_jax._src.schedule import ascent_steps
from zosam_jax._src.sharding import can_ravel
from zosam_jax._src.sharding import data_sharding
from zosam_jax._src.sharding import fsdp_sharding
from zosam_jax._src.sharpness import pop_aux
from zosam_jax._src.sharpness import ZOSAMState
from zosam_jax._src.train_state import train_state_step
from zosam_jax._src.zo_sam import zo_sam

__version__ = "0.1.0"

__all__ = (
    "MASKS_FROM_BASE_STATE",
    "adaptive_perturbation",
    "ascent_on",
    "ascent_steps",
    "ascent_forward_passes",
    "can_ravel",
    "data_sharding",
    "fsdp_sharding",
    "looksam",
    "msam",
    "output_layer",
    "pop_aux",
    "prior_guided_gradient",
    "prior_with_exact_leaves",
    "sam",
    "sparse",
    "step_passes",
    "train_state_step",
    "zo_gradient",
    "zo_sam",
    "ZOSAMState",
)
