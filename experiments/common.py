"""Shared pieces of the experiment scripts: where things live, rows files, figures.

Every run goes through the training program (``zosam_jax.train``); a study
cell's row is appended to a JSON-lines file under ``experiments/results``
(:func:`append_row`), its run folder lives under ``runs/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments"
RESULTS = Path(os.environ.get("ZOSAM_RESULTS", EXP / "results"))
FIGURES = Path(os.environ.get("ZOSAM_FIGURES", EXP / "figures"))


def pyplot():
  """matplotlib's pyplot on the Agg backend (files only, also on headless machines)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def append_row(path: Path, row: dict[str, Any]) -> None:
  """Appends ``row`` as one JSON line, under an exclusive lock of the file:
  several processes (shards, or cells on one GPU) may share a rows file."""
  import fcntl  # pylint: disable=import-outside-toplevel

  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(json.dumps(row) + "\n")
    f.flush()


def read_rows_any(path: Path) -> list[dict[str, Any]]:
  """Reads a JSON-lines file, keeping every row; under a shared lock of the
  file, so never a row that :func:`append_row` is still writing."""
  import fcntl  # pylint: disable=import-outside-toplevel

  with open(path) as f:
    fcntl.flock(f, fcntl.LOCK_SH)
    text = f.read()
  return [json.loads(line) for line in text.splitlines() if line.strip()]
