"""The code blocks of the training program's README section run."""

import pathlib
import re

import pytest

SECTION = (pathlib.Path(__file__).parents[1] / "zosam_jax" / "train"
           / "README_SECTION.md")
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION.read_text(), re.S)


def test_readme_has_linen_and_nnx_steps():
  assert len(BLOCKS) == 3
  assert "model.apply(" in BLOCKS[0] and "nnx.Optimizer" in BLOCKS[1]


@pytest.mark.slow  # Three compilations of ZO-SAM steps: about 30 s on CPU.
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, capsys):
  exec(compile(BLOCKS[index], f"README_SECTION.md[{index}]", "exec"), {})
