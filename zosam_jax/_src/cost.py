"""Passes per training step of each optimizer, the unit the study's costs use."""

from typing import Optional

from zosam_jax._src import estimators

#: The optimizers :func:`step_passes` knows, by their ``zosam-train`` names.
OPTIMIZERS = ("sgd", "sam", "zosam", "msam", "looksam")


def step_passes(optimizer: str, num_dirs: int = 1, estimator: str = "central",
                prior: Optional[str] = None, refresh_every: Optional[int] = None,
                probe: bool = True, exact_leaves: bool = False) -> tuple[float, float]:
  """``(backward, forward)`` passes of one step, averaged over steps.

  Forward passes count as in :func:`ascent_forward_passes` (one per loss
  evaluation, two per ``jax.jvp``); every backward pass comes with its own
  forward pass. With ``refresh_every=k`` one step in ``k`` is exact (ZO-SAM's
  hybrid: SAM's two forward and two backward passes; LookSAM: the default
  ``k`` is 5).

  Args:
    optimizer: ``"sgd"``, ``"sam"``, ``"zosam"``, ``"msam"`` or ``"looksam"``.
    num_dirs: ZO-SAM's ``m``.
    estimator: ZO-SAM's estimator.
    prior: ZO-SAM's prior (``None``/``"none"``, ``"gradient"``, ``"momentum"``).
    refresh_every: ``k`` of ZO-SAM's ``refresh_every`` or LookSAM's ``every``.
    probe: ZO-SAM's ``probe`` (``False``: the prior without forward passes).
    exact_leaves: whether ZO-SAM has ``exact_leaves`` (one forward pass).

  Returns:
    Floats ``(backward, forward)``.

  Raises:
    ValueError: for an unknown optimizer or estimator.

  Examples:
    >>> from zosam_jax import step_passes
    >>> step_passes("sam"), step_passes("zosam"), step_passes("looksam")
    ((2.0, 2.0), (1.0, 3.0), (1.2, 1.2))
    >>> step_passes("zosam", 0, prior="gradient", refresh_every=4)
    (1.25, 2.75)
    >>> step_passes("zosam", 0, prior="gradient", probe=False)
    (1.0, 1.0)
    >>> step_passes("zosam", 0, prior="gradient", probe=False, exact_leaves=True)
    (1.0, 2.0)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  if optimizer in ("sgd", "msam"):
    return 1.0, 1.0
  if optimizer == "sam":
    return 2.0, 2.0
  if optimizer == "looksam":
    exact = 1 / (refresh_every or 5)
    return 1 + exact, 1 + exact
  exact = 1 / refresh_every if refresh_every else 0.0
  ascent = estimators.ascent_forward_passes(num_dirs, estimator, prior, probe,
                                           exact_leaves)
  return 1 + exact, 1 + (1 - exact) * ascent + exact
