"""Type aliases shared by the package.

Reuses optax's aliases and adds only the ones that are specific to ZO-SAM.
"""

from collections.abc import Callable
from typing import Any, Literal, TypeAlias, Union

import jax
import optax

# optax's aliases, spelled out for type checkers (optax ships no type information).
Params: TypeAlias = Any  # optax.Params: a pytree of arrays.
Updates: TypeAlias = Any  # optax.Updates
OptState: TypeAlias = Any  # optax.OptState
MaskOrFn: TypeAlias = Any  # optax.MaskOrFn: a bool pytree or ``params ->`` one, or None.

#: A minibatch objective: ``params -> scalar`` (or ``(scalar, aux)`` with
#: ``has_aux=True``).
ValueFn = Callable[[Params], Any]
#: A PRNG key: a new-style typed key, a raw ``uint32[2]`` key or an ``int`` seed.
KeyLike = Union[jax.Array, int]
#: How the directional derivatives are estimated.
Estimator = Literal["central", "forward", "jvp", "random"]
#: The distribution the random directions are drawn from.
Distribution = Literal["gaussian", "rademacher", "sphere"]

ESTIMATORS: tuple[str, ...] = ("central", "forward", "jvp", "random")
DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "rademacher", "sphere")
#: ``mask_fn`` value that reads the masks of a sparse-training transformation
#: (from :mod:`zosam_jax.sparse`) held in the base optimizer's state.
MASKS_FROM_BASE_STATE = "base_state"


def canonicalize_key(key: KeyLike, name: str = "key") -> jax.Array:
  """Returns a new-style typed PRNG key from an int seed or a (typed/raw) key.

  Args:
    key: an ``int`` seed, a typed key (``jax.random.key``) or a raw
      ``uint32[2]`` key (``jax.random.PRNGKey``).
    name: the argument name used in error messages.

  Returns:
    A scalar typed key.

  Raises:
    TypeError: if ``key`` is none of the above.
  """
  if isinstance(key, bool):
    raise TypeError(f"`{name}` must be an int seed or a jax PRNG key, got {key!r}")
  if isinstance(key, int):
    return jax.random.key(key)
  if isinstance(key, jax.Array):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
      return key
    if key.dtype == jax.numpy.uint32 and key.shape == (2,):
      return jax.random.wrap_key_data(key)
  raise TypeError(
      f"`{name}` must be an int seed or a jax PRNG key, got {type(key).__name__}"
  )
