"""The core install is the library alone; the training program is the ``train`` extra."""

import subprocess
import sys

import pytest

from zosam_jax import train_entry


def test_importing_the_library_loads_none_of_the_trainers_dependencies():
  code = ("import sys, zosam_jax, zosam_jax.sparse; "
          f"print([m for m in {train_entry.TRAIN_EXTRA!r} if m.split('.')[0] in sys.modules])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, check=True).stdout
  assert out.strip() == "[]"


def test_zosam_train_without_the_extra_says_what_to_install(monkeypatch, capsys):
  real = train_entry.importlib.util.find_spec
  monkeypatch.setattr(train_entry.importlib.util, "find_spec",
                      lambda name: None if name in ("sklearn", "tqdm") else real(name))
  assert train_entry.main() == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["zosam-train: error: the training program needs the train extra (sklearn, "
                 "tqdm missing): pip install 'zosam_jax[train]'"]


def test_zosam_train_with_the_extra_runs_the_program(monkeypatch):
  from zosam_jax.train import cli  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cli, "main", lambda: 7)
  assert train_entry.main() == 7


def test_the_core_dependencies_are_the_librarys_imports():
  tomllib = pytest.importorskip("tomllib")
  from pathlib import Path  # pylint: disable=import-outside-toplevel
  project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
  core = {d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
  assert core == {"jax", "optax", "flax", "chex", "numpy"}
  assert project["scripts"]["zosam-train"] == "zosam_jax.train_entry:main"
  assert "zosam_jax[train]" in project["optional-dependencies"]["test"]
