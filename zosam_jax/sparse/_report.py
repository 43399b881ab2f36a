"""A per-layer sparsity report, as data and as a table."""

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from zosam_jax._src import base
from zosam_jax.sparse import _distributions


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
  """One leaf of a :class:`SparsityReport`.

  Attributes:
    path: the ``/``-separated key path, e.g. ``"Conv_0/kernel"``.
    shape: the leaf's shape.
    num_active: number of nonzero (params) or ``True`` (masks) entries.
    size: number of entries.
    density: ``num_active / size``.
  """

  path: str
  shape: tuple[int, ...]
  num_active: int
  size: int
  density: float


@dataclasses.dataclass(frozen=True)
class SparsityReport:
  """Per-layer and global density; ``str(report)`` is a table.

  Attributes:
    layers: one :class:`LayerSparsity` per reported leaf.
    num_active: active entries over all reported leaves.
    size: entries over all reported leaves.
    global_density: ``num_active / size``.
  """

  layers: tuple[LayerSparsity, ...]
  num_active: int
  size: int
  global_density: float

  def as_dict(self) -> dict[str, Any]:
    """Returns the report as JSON-serialisable Python data."""
    return {
        "layers": [
            dict(dataclasses.asdict(layer), shape=list(layer.shape))
            for layer in self.layers
        ],
        "num_active": self.num_active,
        "size": self.size,
        "global_density": self.global_density,
    }

  def __str__(self) -> str:
    rows = [
        (
            layer.path,
            str(layer.shape),
            f"{layer.density:.4f}",
            f"{layer.num_active}/{layer.size}",
        )
        for layer in self.layers
    ]
    rows.append((
        "global",
        "",
        f"{self.global_density:.4f}",
        f"{self.num_active}/{self.size}",
    ))
    header = ("path", "shape", "density", "active")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])


def sparsity_report(
    tree: base.Params,
    *,
    include_fn: Optional[Callable[[str, Any], bool]] = None,
) -> SparsityReport:
  """Reports the density of masks (bool leaves) or params (nonzeros).

  Args:
    tree: a mask pytree (``True`` = active) or a params pytree (an entry is
      active when nonzero); bool and numeric leaves may be mixed.
    include_fn: ``(path, leaf) -> bool`` selecting the leaves to report, e.g.
      ``lambda path, x: x.ndim > 1`` for weight matrices and kernels only;
      by default every leaf.

  Returns:
    A :class:`SparsityReport`; ``print(report)`` shows a table and
    ``report.as_dict()`` gives the same numbers as JSON-serialisable data.

  Examples:
    >>> import jax.numpy as jnp
    >>> masks = {"b": jnp.ones(2, bool), "w": jnp.array([[True, False]] * 2)}
    >>> report = sparsity_report(masks)
    >>> report.global_density
    0.6666666666666666
    >>> print(report)
    path    shape   density  active
    ------  ------  -------  ------
    b       (2,)    1.0000   2/2
    w       (2, 2)  0.5000   2/4
    ------  ------  -------  ------
    global          0.6667   4/6

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  layers = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = _distributions.leaf_path(path)
    if include_fn is not None and not include_fn(name, leaf):
      continue
    array = np.asarray(leaf)
    num_active = int(np.count_nonzero(array))
    layers.append(
        LayerSparsity(
            path=name,
            shape=tuple(int(d) for d in array.shape),
            num_active=num_active,
            size=int(array.size),
            density=num_active / array.size if array.size else 1.0,
        )
    )
  num_active = sum(layer.num_active for layer in layers)
  size = sum(layer.size for layer in layers)
  return SparsityReport(
      layers=tuple(layers),
      num_active=num_active,
      size=size,
      global_density=num_active / size if size else 1.0,
  )
