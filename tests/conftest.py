"""Test configuration: a hardened JAX and shared fixtures."""

import os
import shutil
import tempfile
import urllib.request

# Eight simulated CPU devices for the multi-device tests; must be set before
# JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# One JAX compilation cache for the whole session, new and empty at its start:
# a step that one test compiles, the next one (in any xdist worker or
# zosam-train process, which inherit the environment) loads. Most tests
# compile the same few training steps; this about halves the suite's time.
# Removed at the end of the session; a cache the caller set is left alone.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="zosam-tests-jax-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_sessionfinish(session):
  """The session's compilation cache removed, by the process that made it (the
  xdist controller, or the one process without xdist)."""
  if _OWN_CACHE and not hasattr(session.config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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
