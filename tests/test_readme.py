"""The README and the documentation pages: their Python examples run as
written, the README stays a front door (at most 200 lines) and its links lead
to files that exist."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]
README = ROOT / "README.md"
# The README and every guide of the docs site; a block that defines what a
# later block uses holds its own imports, so each block runs alone. Not
# multi_device.md: its snippets are fragments for 8 devices and several hosts
# (tests/test_sharding.py and test_train_distributed.py run what they show).
PAGES = [README, *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "multi_device.md")]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]
RUNNABLE = [b for b in BLOCKS if "import " in b[2]]


def test_readme_has_the_quickstart_and_the_sparse_example():
  blocks = [b for page, _, b in BLOCKS if page == README]
  assert "zosam_jax.zo_sam(" in blocks[0]
  assert any("sparse.rigl(" in block for block in blocks)


def test_the_moved_examples_are_on_their_pages():
  pages = {page.name for page, _, _ in RUNNABLE}
  assert {"README.md", "getting_started.md", "choosing.md"} <= pages


@pytest.mark.parametrize("page,index,block", RUNNABLE,
                         ids=[f"{p.relative_to(ROOT)}[{i}]" for p, i, _ in RUNNABLE])
def test_python_block_runs(page, index, block):
  exec(compile(block, f"{page.name}[{index}]", "exec"), {})  # pylint: disable=exec-used


def test_readme_is_a_front_door():
  assert len(README.read_text().splitlines()) <= 200


def test_readme_links_lead_to_files_that_exist():
  links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
  local = [link for link in links if "://" not in link]
  assert local, "the README links to its documentation pages"
  missing = [link for link in local if not (ROOT / link).exists()]
  assert not missing, f"README links to files that do not exist: {missing}"
