"""Test configuration: a hardened JAX and shared fixtures."""

import os

# Eight simulated CPU devices for the multi-device tests; must be set before
# JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
  return jax.random.key(0)
