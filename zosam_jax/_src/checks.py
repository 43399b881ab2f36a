"""Argument checks of the sharpness-aware transformations, with errors that say what to do.

Hyperparameters are checked at construction when they are concrete Python
values (a traced or scheduled one, under ``optax.inject_hyperparams``, is not);
the loss function's output and the reduction over mapped axes at trace time,
before XLA meets a wrong shape.
"""

from collections.abc import Callable
import math
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp

from zosam_jax._src import base
from zosam_jax._src import sharding

MISSING_VALUE_FN = (
    "{name}'s `update` needs the minibatch loss as the keyword argument"
    " `value_fn`, a function params -> scalar loss (or -> (loss, aux) with"
    " `has_aux=True`). Call it as\n"
    "    updates, state = tx.update(params, state, params, value_fn=loss_fn)\n"
    "(the first argument is a placeholder: the gradient is taken inside, at the"
    " perturbed point), or with flax.nnx:\n"
    "    optimizer.update(model, grads, value_fn=loss_fn)")


def is_number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_nonnegative(value: Any, name: str, strict: bool) -> None:
  """Validates a float hyperparameter when it is a concrete Python number."""
  if isinstance(value, bool) or isinstance(value, str):
    raise TypeError(f"`{name}` must be a float, got {value!r}")
  if is_number(value) and not (value > 0 if strict else value >= 0):
    raise ValueError(f"`{name}` must be {'>' if strict else '>='} 0, got"
                     f" {value!r}")
  if is_number(value) and not math.isfinite(value):
    raise ValueError(f"`{name}` must be finite, got {value!r}")


def check_value_fn(name: str, fn_name: str, fn: Callable[..., Any],
                    params: base.Params, has_aux: bool) -> jax.ShapeDtypeStruct:
  """Checks the shape of ``fn(params)`` at trace time; returns the loss's."""
  right = (f"\n    tx = zosam_jax.{name}(..., has_aux={has_aux})\n"
           f"    tx.update(params, state, params, {fn_name}=loss_fn)\n"
           "with loss_fn: params -> " + ("(mean loss, aux)" if has_aux else
                                         "the mean minibatch loss, a float scalar"))
  out = jax.eval_shape(fn, params)
  is_pair = isinstance(out, (tuple, list)) and len(out) == 2
  if has_aux and not is_pair:
    raise ValueError(f"{name}: `{fn_name}` must return a pair (loss, aux) with "
                     f"`has_aux=True`, got {describe(out)}; drop `has_aux=True` "
                     f"or return (loss, aux). The right call:{right}")
  loss = out[0] if has_aux else out
  if not has_aux and isinstance(out, (tuple, list)):
    raise ValueError(f"{name}: `{fn_name}` returns a {type(out).__name__} "
                     f"({describe(out)}); if it is (loss, aux), pass "
                     f"`has_aux=True`. The right call:{right}")
  if not (hasattr(loss, "shape") and loss.shape == ()
          and jnp.issubdtype(loss.dtype, jnp.floating)):
    raise ValueError(f"{name}: the loss returned by `{fn_name}` must be a float "
                     f"scalar (e.g. the minibatch mean), got {describe(loss)}. "
                     f"The right call:{right}")
  return loss


def describe(out: Any) -> str:
  if hasattr(out, "shape") and hasattr(out, "dtype"):
    return f"an array of shape {tuple(out.shape)} and dtype {out.dtype}"
  return f"a {type(out).__name__} of {len(out)}" if isinstance(
      out, (tuple, list)) else f"a {type(out).__name__}"


def check_positive_int(value: Any, name: str, allow_none: bool) -> None:
  if value is None and allow_none:
    return
  if not isinstance(value, numbers.Integral) or isinstance(value, bool):
    raise TypeError(
        f"`{name}` must be a positive int{' or None' if allow_none else ''},"
        f" got {value!r} (with `optax.inject_hyperparams`, list {name!r} in"
        " `static_args`)")
  if value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def check_choice(value: Any, name: str, choices: tuple[str | None, ...]) -> None:
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")


def check_base_tx(base_tx: Any) -> None:
  if not (hasattr(base_tx, "init") and hasattr(base_tx, "update")):
    raise TypeError("`base_tx` must be an optax.GradientTransformation, got"
                    f" {type(base_tx).__name__}")


def check_adaptive(adaptive: Any, adaptive_eta: Any) -> None:
  if not isinstance(adaptive, bool):
    raise TypeError(f"`adaptive` must be a bool, got {adaptive!r}")
  check_nonnegative(adaptive_eta, "adaptive_eta", strict=False)



def check_reduced(name: str, axis_name: Any, **losses: Any) -> None:
  """Raises if a loss differs between devices over axes ``axis_name`` misses."""
  for what, loss in losses.items():
    axes = sharding.varying_axes(loss) - sharding.axis_names(axis_name)
    if axes:
      raise ValueError(
          f"{name}: the {what} differs between devices along the mapped"
          f" axes {tuple(sorted(axes))} (each device sees its own part of the"
          " batch), so devices would take different steps. Pass"
          f" `axis_name={tuple(sorted(axes)) if len(axes) > 1 else min(axes)!r}`"
          f" to {name} to average loss values and gradients with"
          " `jax.lax.pmean`"
          + ("" if axis_name is None else
             f" (it is {axis_name!r}, which does not cover all of them)"))


def check_exact(name: str, exact: Optional[bool], every: Optional[int]) -> None:
  """``update(..., exact=...)`` only where there is a periodic exact step."""
  if exact is not None and every is None:
    raise ValueError(f"{name}: `exact` chooses the exact step of `refresh_every`, "
                     "which is not set")
