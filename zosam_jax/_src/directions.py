"""Random directions for zeroth-order gradient estimates."""

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from zosam_jax._src import base
from zosam_jax._src import sharding


def resolve_distribution(distribution: Optional[base.Distribution]) -> base.Distribution:
  """The directions' distribution; ``None`` picks by backend.

  Rademacher directions from packed bits (:func:`packed_rademacher`: 32 signs
  per PRNG word) cost about a tenth of a Gaussian draw on CPU, where drawing a
  Gaussian direction costs about one forward pass of a parameter-heavy MLP;
  on convolutional nets the two are equally fast there
  (``benchmarks/README.md``). On GPU/TPU the paper's Gaussian is kept.
  Both satisfy :math:`\\mathbb{E}[u]=0`, :math:`\\mathbb{E}[u u^\\top]=I`, so the
  estimators are unbiased with either; Rademacher has the smaller variance
  (:math:`\\mathbb{E}[u_i^4] = 1` against 3).

  Args:
    distribution: ``None``, ``"gaussian"``, ``"rademacher"`` or ``"sphere"``.

  Returns:
    ``distribution``, or for ``None`` ``"rademacher"`` on CPU and
    ``"gaussian"`` on other backends.
  """
  if distribution is None:
    return "rademacher" if jax.default_backend() == "cpu" else "gaussian"
  return distribution


def sample_direction(key: jax.Array, like: base.Params, active: base.Params,
                     distribution: base.Distribution) -> base.Params:
  """Draws one random direction with the structure and shapes of ``like``.

  Every distribution is scaled so that :math:`\\mathbb{E}[u u^\\top] = I` on the
  active coordinates, which makes
  :math:`\\mathbb{E}[(u^\\top g) u] = g` for the estimators in
  :mod:`zosam_jax._src.estimators`:

  - ``"gaussian"``: :math:`u \\sim \\mathcal{N}(0, I)`;
  - ``"rademacher"``: independent :math:`\\pm 1` entries;
  - ``"sphere"``: uniform on the sphere of radius :math:`\\sqrt{d}`, where
    :math:`d` is the number of active coordinates.

  Args:
    key: a typed PRNG key; the same key gives the same direction, so a
      direction can be regenerated instead of stored.
    like: a pytree of arrays; leaf ``j`` has shape ``s_j``.
    active: ``None`` (dense) or a pytree of float32 arrays of shapes ``s_j``,
      1 where a weight is active and 0 where it is pruned.
    distribution: one of ``"gaussian"``, ``"rademacher"``, ``"sphere"``.

  Returns:
    A pytree of float32 arrays of shapes ``s_j``, zero where ``active`` is 0.

  References:
    Nesterov & Spokoiny, `Random Gradient-Free Minimization of Convex
    Functions <https://doi.org/10.1007/s10208-015-9296-2>`_, 2017

    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, 2026
  """
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, len(leaves))

  def draw(k, x):
    # Under explicit sharding, draw each device's block of the direction only
    # (random bits do not depend on the sharding); elsewhere XLA propagates the
    # params' sharding to the direction.
    explicit = sharding.explicit_axes(x)
    if distribution == "rademacher":
      # Packed signs depend on the flat layout: draw them whole, then shard,
      # so that every layout gets the same direction from the same key.
      u = packed_rademacher(k, jnp.shape(x))
      return jax.sharding.reshard(u, jax.typeof(x).sharding) if explicit else u
    if explicit:
      return jax.random.normal(k, jnp.shape(x), jnp.float32,
                               out_sharding=jax.typeof(x).sharding)
    return jax.random.normal(k, jnp.shape(x), jnp.float32)

  u = jax.tree.unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])
  if active is not None:
    u = jax.tree.map(jnp.multiply, u, active)
  if distribution == "sphere":
    if active is None:
      dim: Any = sum(math.prod(jnp.shape(x)) for x in leaves)
    else:
      dim = sum(jnp.sum(a) for a in jax.tree.leaves(active))
    norm = optax.tree.norm(u)
    scale = jnp.where(norm > 0, jnp.sqrt(dim) / jnp.where(norm > 0, norm, 1.0),
                      0.0)
    u = jax.tree.map(lambda x: scale * x, u)
  return u


def packed_rademacher(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Independent :math:`\\pm 1` entries, 32 from each random 32-bit word.

  Drawing one word per entry (``jax.random.rademacher``) makes the PRNG the
  main cost of a direction on CPU; unpacking the bits of each word costs 32
  times fewer PRNG calls.

  Args:
    key: a typed PRNG key.
    shape: the output shape.

  Returns:
    A float32 array of ``shape`` with entries in ``{-1, 1}``.

  Examples:
    >>> import jax
    >>> from zosam_jax._src.directions import packed_rademacher
    >>> u = packed_rademacher(jax.random.key(0), (3, 5))
    >>> u.shape, bool(((u == 1) | (u == -1)).all())
    ((3, 5), True)

  References:
    Spall, `Multivariate Stochastic Approximation Using a Simultaneous
    Perturbation Gradient Approximation <https://doi.org/10.1109/9.119632>`_,
    1992
  """
  size = math.prod(shape)
  words = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
  # Entry i is bit i % 32 of word i // 32, indexed directly: unpacking through
  # a (words, 32) array and a reshape was measured 7-10% slower on a ViT step.
  index = jnp.arange(size, dtype=jnp.uint32)
  bits = (words[index >> 5] >> (index & 31)) & 1
  return (2.0 * bits.astype(jnp.float32) - 1.0).reshape(shape)
