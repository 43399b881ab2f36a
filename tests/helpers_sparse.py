"""Small models for the sparse-training tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cnn_params(seed: int = 0):
  """A hand-made CNN params tree: HWIO conv kernels, dense kernels, norm scales.

  Flattening order (dict keys sorted): BatchNorm_0, Conv_0, Conv_1, Dense_0,
  Dense_1, so the first prunable leaf is Conv_0/kernel and the last
  Dense_1/kernel.
  """
  shapes = {
      "BatchNorm_0": {"scale": (8,), "bias": (8,)},
      "Conv_0": {"kernel": (3, 3, 3, 8), "bias": (8,)},
      "Conv_1": {"kernel": (3, 3, 8, 16), "bias": (16,)},
      "Dense_0": {"kernel": (256, 32), "bias": (32,)},
      "Dense_1": {"kernel": (32, 10), "bias": (10,)},
  }
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(
      treedef, [jnp.asarray(rng.normal(size=s), jnp.float32) for s in leaves]
  )


def mlp_params(sizes=(16, 32, 32, 4), seed: int = 0):
  """An MLP params tree ``{"layer_i": {"kernel", "bias"}}``."""
  rng = np.random.default_rng(seed)
  return {
      f"layer_{i}": {
          "kernel": jnp.asarray(
              rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), jnp.float32
          ),
          "bias": jnp.zeros(n_out),
      }
      for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
  }


def mlp_loss(params, x, y):
  """Mean squared error of a tanh MLP given by :func:`mlp_params`."""
  h = x
  names = sorted(params)
  for i, name in enumerate(names):
    h = h @ params[name]["kernel"] + params[name]["bias"][None, :]
    if i < len(names) - 1:
      h = jnp.tanh(h)
  return jnp.mean((h - y) ** 2)


def mlp_batch(sizes=(16, 32, 32, 4), n: int = 32, seed: int = 1):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, sizes[0]))
  y = rng.normal(size=(n, sizes[-1]))
  return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def active_counts(masks):
  return jax.tree.map(lambda m: int(jnp.sum(m)), masks)


def train_mlp(tx, params, num_steps: int):
  """``num_steps`` of ``tx`` on :func:`mlp_loss` of :func:`mlp_batch`, under scan.

  Returns:
    ``((params, state), (before, masks, after, states))``: the final params and
    state, and per step the params before and after it, ``state.masks`` and
    the state (each stacked along a leading step axis).
  """
  x, y = mlp_batch()
  grad_fn = jax.grad(lambda p: mlp_loss(p, x, y))

  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(grad_fn(params), state, params)
      new_params = optax.apply_updates(params, updates)
      return (new_params, state), (params, state.masks, new_params, state)

    return jax.lax.scan(step, (params, tx.init(params)), length=num_steps)

  return run(params)
