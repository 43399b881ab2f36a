"""Multi-device helpers: data-parallel and FSDP shardings, and choosing ``ravel``.

:func:`~zosam_jax.zo_sam` needs no change to run on many devices: under
``jax.jit`` with sharded inputs every device draws the same directions from
the replicated key and XLA averages the loss over the global batch. These
helpers build the usual shardings and say whether ``ravel=True`` is safe.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from zosam_jax._src import base


def explicit_axes(x: Any) -> tuple[str, ...]:
  """The mesh axes named in the traced (explicit-mode) sharding of ``x``.

  Args:
    x: an array or tracer.

  Returns:
    The axis names in ``jax.typeof(x).sharding.spec``; empty outside explicit
    sharding (automatic or no mesh, or inside ``shard_map``).
  """
  spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None) or ()
  names: list[str] = []
  for entry in spec:
    names.extend(entry if isinstance(entry, tuple) else
                 () if entry is None else (entry,))
  return tuple(names)


def varying_axes(x: Any) -> frozenset:
  """The ``shard_map`` axes over which ``x`` may differ from device to device.

  Args:
    x: an array, tracer or ``jax.ShapeDtypeStruct``.

  Returns:
    The manual axes ``x`` varies over, as tracked by ``shard_map`` with
    ``check_vma=True``; empty elsewhere (``pmap``, ``check_vma=False``).
  """
  aval = x if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x)
  manual = getattr(aval, "manual_axis_type", None)
  if manual is not None:
    return frozenset(manual.varying)
  return frozenset(getattr(aval, "vma", ()))


def manual_axes() -> tuple[str, ...]:
  """The mesh axes of the enclosing ``shard_map`` (empty outside one)."""
  return tuple(getattr(jax.sharding.get_abstract_mesh(), "manual_axes", ()))


def can_ravel(params: base.Params) -> bool:
  """Whether ``zo_sam(..., ravel=True)`` keeps the params' sharding.

  ``ravel=True`` concatenates all parameters into one vector, which is fast but
  replicated: with sharded (FSDP) params it gathers every parameter on every
  device (and fails under explicit sharding). Call this on the concrete params,
  outside ``jit``.

  Args:
    params: a pytree of arrays.

  Returns:
    ``True`` if every leaf is on one device or fully replicated, ``False`` if
    some leaf is sharded (then pass ``ravel=False``).

  Examples:
    >>> import jax.numpy as jnp, optax, zosam_jax
    >>> from zosam_jax._src.sharding import can_ravel
    >>> params = {'w': jnp.zeros((4, 4))}
    >>> tx = zosam_jax.zo_sam(optax.sgd(0.1), ravel=can_ravel(params))
    >>> can_ravel(params)
    True

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  for leaf in jax.tree.leaves(params):
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None and not sharding.is_fully_replicated:
      return False
  return True


def fsdp_sharding(params: base.Params, mesh: jax.sharding.Mesh,
                  axis: str = "data", min_size: int = 0) -> Any:
  """FSDP shardings: each parameter split along one dimension over ``axis``.

  Every leaf is split along its largest dimension that the size of ``axis``
  divides (the last such on ties); leaves with no such dimension, or with
  fewer than ``min_size`` elements, are replicated.

  Args:
    params: a pytree of arrays (or ``jax.ShapeDtypeStruct``).
    mesh: the device mesh.
    axis: the mesh axis to shard over (usually the data axis).
    min_size: leaves smaller than this stay replicated (e.g. biases).

  Returns:
    A pytree of :class:`jax.sharding.NamedSharding` with the structure of
    ``params``, for ``jax.device_put`` or ``jax.jit(out_shardings=...)``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from zosam_jax._src.sharding import fsdp_sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> fsdp_sharding({'w': jnp.zeros((3, 8))}, mesh)['w'].spec
    P(None, 'data')

  References:
    Zhao et al., `PyTorch FSDP: Experiences on Scaling Fully Sharded Data
    Parallel <https://arxiv.org/abs/2304.11277>`_, VLDB 2023
  """
  size = mesh.shape[axis]

  def spec(leaf):
    shape = np.shape(leaf) if not hasattr(leaf, "shape") else leaf.shape
    dims = [d for d, n in enumerate(shape) if n % size == 0 and n >= size]
    if not dims or int(np.prod(shape)) < min_size:
      return NamedSharding(mesh, PartitionSpec())
    dim = max(dims, key=lambda d: (shape[d], d))
    return NamedSharding(
        mesh, PartitionSpec(*[axis if d == dim else None
                              for d in range(len(shape))]))

  return jax.tree.map(spec, params)


def data_sharding(mesh: jax.sharding.Mesh, axis: str = "data"
                  ) -> NamedSharding:
  """The sharding of a batch split along its first dimension over ``axis``.

  Args:
    mesh: the device mesh.
    axis: the data axis of ``mesh``.

  Returns:
    ``NamedSharding(mesh, PartitionSpec(axis))``; use it with
    ``jax.device_put`` on one host, or with
    ``jax.make_array_from_process_local_data`` on many.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from zosam_jax._src.sharding import data_sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> jax.device_put(jnp.zeros((4, 2)), data_sharding(mesh)).shape
    (4, 2)

  References:
    Ji et al., `ZO-SAM: Zero-Order Sharpness-Aware Minimization for Efficient
    Sparse Training <https://arxiv.org/abs/2603.13115>`_, CVPR 2026
  """
  return NamedSharding(mesh, PartitionSpec(axis))


def mean_value_and_grad(
    fn: Callable[[Any], Any], params: base.Params, axis_name: Any,
    has_aux: bool = False,
) -> tuple[Any, base.Params]:
  """``jax.value_and_grad`` of ``fn`` averaged over the mapped ``axis_name``."""
  if axis_name is None:
    return jax.value_and_grad(fn, has_aux=has_aux)(params)
  # Under shard_map's replication checking (check_vma=True) the gradient with
  # respect to replicated params comes out already summed over the axis;
  # differentiating at a per-device ("varying") copy gives the local gradient
  # in every mode (also pmap and check_vma=False), and its pmean is the
  # gradient of the global mean loss.
  names = axis_names(axis_name)

  def as_varying(x):
    missing = tuple(sorted(names - varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x

  value, grads = jax.value_and_grad(fn, has_aux=has_aux)(
      jax.tree.map(as_varying, params))
  loss, aux = value if has_aux else (value, None)
  loss, grads = jax.lax.pmean((loss, grads), axis_name)
  return ((loss, aux) if has_aux else loss), grads


def mean_over(x: Any, axis_name: Any) -> Any:
  """``x`` (a pytree) averaged with ``jax.lax.pmean`` over ``axis_name``, or
  ``x`` itself when ``axis_name`` is ``None``."""
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def axis_names(axis_name: Any) -> frozenset:
  """The mapped axis names of ``axis_name`` (a name, a tuple of names or None)."""
  if axis_name is None:
    return frozenset()
  return frozenset(axis_name if isinstance(axis_name, tuple) else (axis_name,))
