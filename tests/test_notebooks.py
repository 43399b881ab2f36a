"""The notebooks: committed without outputs, and executed top to bottom.

The static checks (badge, parameters cell, no outputs, size) run with the
default test command. Executing the notebooks takes a few minutes on a CPU and
needs the ``notebooks`` extra (nbclient, nbformat, ipykernel)::

  python -m pytest -q -m notebooks tests/test_notebooks.py

Each notebook runs in a fresh ``python3`` kernel of the current interpreter,
in a temporary working directory, with its own small default parameters plus
the overrides below, injected as a cell right after the cell tagged
``parameters`` (as papermill does). Nothing is written back into the
repository.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
#: The one place that names the repository: [project.urls] in pyproject.toml.
REPO_URL = re.search(r'^Repository = "(https://github.com/[^"]+)"',
                     (ROOT / "pyproject.toml").read_text(), re.M).group(1)
COLAB_URL = (f"https://colab.research.google.com/github/"
             f"{REPO_URL.removeprefix('https://github.com/')}/blob/main/notebooks/{{}}.ipynb")
INSTALL = '%pip install -q "zosam_jax @ git+{SOURCE}"'
#: Seconds one cell may take before the test fails (the slowest cell, the
#: three training runs of notebook 02, takes about a minute on 2 cores).
CELL_TIMEOUT = 600
#: A committed notebook above this size probably carries outputs or images.
MAX_BYTES = 40_000

#: Parameters injected after each notebook's parameters cell.
OVERRIDES = {
    # Pin the small preset even when the test machine has an accelerator.
    "02_sparse_resnet_cifar10": {"PRESET": "small"},
}

#: (notebook, number of simulated CPU devices) pairs that are executed. On a
#: CPU, XLA_FLAGS gives the kernel 8 devices for the multi-device notebook, as
#: many as the cores of a TPU v2-8/v3-8; it must also run on one device.
RUNS = [(name, 8 if name.startswith("03_") else 1) for name in NOTEBOOKS]
RUNS.append(("03_multi_device", 1))


def _load(name):
  return json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())


def _source(cell):
  src = cell["source"]
  return src if isinstance(src, str) else "".join(src)


def test_notebooks_exist():
  assert NOTEBOOKS == ["01_quickstart", "02_sparse_resnet_cifar10", "03_multi_device"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
  nb = _load(name)
  for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [], f"cell {i} of {name} has outputs"
      assert cell["execution_count"] is None, f"cell {i} of {name} was executed"
  assert (NOTEBOOK_DIR / f"{name}.ipynb").stat().st_size < MAX_BYTES


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_colab_badge_parameters_and_guarded_install(name):
  nb = _load(name)
  first = _source(nb["cells"][0])
  assert nb["cells"][0]["cell_type"] == "markdown"
  assert f"]({COLAB_URL.format(name)})" in first and "colab-badge.svg" in first
  tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
  assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"
  install = [c for c in nb["cells"] if INSTALL in _source(c)]
  assert len(install) == 1
  assert f'\nSOURCE = "{REPO_URL}"\n' in _source(install[0])  # One line, as pyproject.
  assert "IN_COLAB = \"google.colab\" in sys.modules" in _source(install[0])
  assert "\nif IN_COLAB:\n" in _source(install[0])


def _with_overrides(nb, overrides):
  """Inserts ``NAME = value`` lines after the cell tagged ``parameters``."""
  import nbformat  # noqa: PLC0415  (the notebooks extra)

  index = next(i for i, c in enumerate(nb.cells)
               if "parameters" in c.metadata.get("tags", []))
  lines = ["# Injected by tests/test_notebooks.py"]
  lines += [f"{key} = {value!r}" for key, value in overrides.items()]
  cell = nbformat.v4.new_code_cell("\n".join(lines))
  cell.metadata["tags"] = ["injected-parameters"]
  cell["id"] = "injected-parameters"
  nb.cells.insert(index + 1, cell)
  return nb


def _kernel_env(num_devices):
  env = dict(os.environ)
  env["MPLBACKEND"] = "Agg"  # No display; plt.show() is a no-op.
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env["TQDM_MININTERVAL"] = "5"  # Fewer progress-bar messages to the client.
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  if num_devices > 1:
    flags.append(f"--xla_force_host_platform_device_count={num_devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  # The kernel is this interpreter: jupyter_client replaces the kernelspec's
  # "python" with sys.executable; PATH covers tools started from the kernel.
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  return env


@pytest.mark.notebooks
@pytest.mark.parametrize(("name", "num_devices"), RUNS,
                         ids=[f"{n}-{d}dev" for n, d in RUNS])
def test_notebook_runs_top_to_bottom(name, num_devices, tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
  nb = _with_overrides(nb, OVERRIDES.get(name, {}))
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})  # The kernel's cwd.
  try:
    client.execute(env=_kernel_env(num_devices))
  finally:
    # The executed copy, for a look after a failure; never into notebooks/.
    nbformat.write(nb, tmp_path / f"{name}.executed.ipynb")
  errors = [o for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
