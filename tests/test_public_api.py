"""The public API: every exported function is documented the optax way."""

import inspect

import pytest

import zosam_jax
from zosam_jax import sparse

FUNCTIONS = [
    (module, name) for module in (zosam_jax, sparse) for name in module.__all__
    if inspect.isfunction(getattr(module, name))]


def test_public_names_resolve():
  for module in (zosam_jax, sparse):
    for name in module.__all__:
      assert getattr(module, name) is not None


@pytest.mark.parametrize(("module", "name"), FUNCTIONS,
                         ids=[f"{m.__name__}.{n}" for m, n in FUNCTIONS])
def test_public_function_docstring_has_the_optax_sections(module, name):
  doc = inspect.getdoc(getattr(module, name)) or ""
  missing = [s for s in ("Args:", "Returns:", "Examples:", "References:")
             if s not in doc]
  assert not missing, f"{module.__name__}.{name} lacks {missing}"
