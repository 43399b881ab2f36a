"""Test configuration: a hardened JAX and shared fixtures."""

import os
import urllib.request

# Eight simulated CPU devices for the multi-device tests; must be set before
# JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
  """No test downloads: a test that would is a failure that names it (a user's
  fresh clone has no ``shared/data`` and may have no network)."""
  def refuse(url, *args, **kwargs):
    del args, kwargs
    pytest.fail(f"a test tried to download {url}: give it synthetic or bundled data, "
                "or skip it where it is about real data")
  monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def key():
  return jax.random.key(0)
