"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
# Blocks that define functions used by a later block run together with it.
RUNNABLE = [i for i, block in enumerate(BLOCKS) if "import " in block]


def test_readme_has_the_quickstart_and_the_sparse_example():
  assert "zosam_jax.zo_sam(" in BLOCKS[0]
  assert any("sparse.rigl(" in block for block in BLOCKS)


@pytest.mark.parametrize("index", RUNNABLE)
def test_readme_python_block_runs(index):
  exec(compile(BLOCKS[index], f"README.md[{index}]", "exec"), {})  # pylint: disable=exec-used
