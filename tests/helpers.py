"""Small problems and oracles shared by the tests."""

import jax
import jax.numpy as jnp
import optax


def quadratic(dim: int = 6, seed: int = 0):
  """A convex quadratic 0.5 pᵀAp + bᵀp with its params and exact gradient."""
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(k1, (dim, dim))
  a = q @ q.T / dim + jnp.eye(dim)
  b = jax.random.normal(k2, (dim,))
  params = jax.random.normal(k3, (dim,))
  loss = lambda p: 0.5 * p @ a @ p + b @ p
  return params, loss, jax.grad(loss)


def mlp_problem(seed: int = 0, hidden: int = 8, n: int = 32):
  """A two-layer tanh MLP regression: (params, loss_fn)."""
  keys = jax.random.split(jax.random.key(seed), 5)
  params = {
      "dense1": {"kernel": jax.random.normal(keys[0], (4, hidden)) * 0.5,
                 "bias": jnp.zeros(hidden)},
      "dense2": {"kernel": jax.random.normal(keys[1], (hidden, 1)) * 0.5,
                 "bias": jnp.zeros(1)},
  }
  x = jax.random.normal(keys[2], (n, 4))
  y = jnp.sin(x.sum(axis=1, keepdims=True))

  def loss(p):
    h = jnp.tanh(x @ p["dense1"]["kernel"] + p["dense1"]["bias"][None, :])
    out = h @ p["dense2"]["kernel"] + p["dense2"]["bias"][None, :]
    return jnp.mean((out - y) ** 2)

  return params, loss


def device_batches(devices: int = 4):
  """``(x, y, loss_on)``: one regression batch per device, ``(devices, 8, 4)`` and
  ``(devices, 8, 1)``, and ``loss_on(params, xb, yb)`` for :func:`mlp_problem`'s params."""
  x = jax.random.normal(jax.random.key(3), (devices, 8, 4))
  y = jnp.sin(x.sum(-1, keepdims=True))

  def loss_on(p, xb, yb):
    h = jnp.tanh(xb @ p["dense1"]["kernel"] + p["dense1"]["bias"][None, :])
    return jnp.mean((h @ p["dense2"]["kernel"] + p["dense2"]["bias"][None, :] - yb) ** 2)

  return x, y, loss_on


def scanned_steps(tx, params, state, loss, length: int):
  """``length`` steps of ``tx`` under ``jax.lax.scan``: the last state and the
  loss before each step, ``(length,)``."""

  def body(carry, _):
    params, state = carry
    updates, state = tx.update(params, state, params, value_fn=loss)
    return (optax.apply_updates(params, updates), state), loss(params)

  (_, state), losses = jax.lax.scan(body, (params, state), None, length=length)
  return state, losses


def random_mask(params, density: float = 0.5, seed: int = 1):
  """An element-wise boolean mask with about `density` active weights."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [
      jax.random.uniform(k, x.shape) < density for k, x in zip(keys, leaves)])


def exact_sam_updates(base_tx, base_state, params, loss, rho, mask=None):
  """SAM written out by hand: the oracle the transformations are tested against."""
  apply = (lambda t: t) if mask is None else (
      lambda t: jax.tree.map(lambda x, m: x * m, t, mask))
  g = apply(jax.grad(loss)(params))
  norm = optax.tree.norm(g)
  eps = jax.tree.map(lambda x: rho * x / norm, g)
  g_sam = apply(jax.grad(loss)(jax.tree.map(jnp.add, params, eps)))
  updates, base_state = base_tx.update(g_sam, base_state, params)
  return apply(updates), base_state


def shared_buffers(tree) -> list[list[str]]:
  """Paths of the leaves of ``tree`` that share one device buffer, grouped.

  Donating such a tree (``jax.jit(..., donate_argnums=...)``) fails on GPU and
  TPU ("Attempt to donate the same buffer twice"); CPU ignores donation, so
  tests check the buffers themselves.
  """
  groups: dict[int, list[str]] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    groups.setdefault(leaf.unsafe_buffer_pointer(), []).append(jax.tree_util.keystr(path))
  return [paths for paths in groups.values() if len(paths) > 1]


def pass_counter():
  """``(tap, counts)``: ``loss(tap(p))`` counts, as they run, the forward and
  backward passes through it (``jax.debug.callback``: under ``jax.lax.cond``
  only the branch taken counts)."""
  counts = {"forward": 0, "backward": 0}

  def bump(kind):
    def add():
      counts[kind] += 1
    return add

  @jax.custom_vjp
  def tap(p):
    jax.debug.callback(bump("forward"))
    return p

  def tap_fwd(p):
    jax.debug.callback(bump("forward"))
    return p, None

  def tap_bwd(_, g):
    jax.debug.callback(bump("backward"))
    return (g,)

  tap.defvjp(tap_fwd, tap_bwd)
  return tap, counts


def orbax_round_trip(state, directory):
  """``state`` saved with Orbax's ``StandardCheckpointer`` and read back into its
  shapes and dtypes."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory, state)
  checkpointer.wait_until_finished()
  return checkpointer.restore(directory,
                              jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
