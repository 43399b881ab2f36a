"""A run folder's small files, read so that damage is named, never a traceback.

``config.json``, ``summary.json`` and ``compare.json`` are JSON objects;
``metrics.jsonl`` has one JSON record per line, appended as the run goes. A
process killed while appending can leave the last line cut (``{"step": 41``):
:func:`read_jsonl` drops such a torn last line with a warning, since the
records after the last checkpoint are written again on ``--resume``. Any
other damage raises :class:`DamagedFileError` naming the file, the line and
what to do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


class ResumeError(ValueError):
  """``--resume`` that cannot continue: no run there, different flags, or no
  checkpoint the seeds share and can read."""


class DamagedFileError(ValueError):
  """A run-folder file that cannot be parsed.

  Attributes:
    path: the file.
    detail: what is wrong with it.
  """

  def __init__(self, path: Path, detail: str, what_to_do: str):
    self.path, self.detail = path, detail
    super().__init__(f"{path} is damaged ({detail}); {what_to_do}")


def warn(message: str) -> None:
  """One line on stderr, prefixed like the program's errors."""
  print(f"zosam-train: warning: {message}", file=sys.stderr, flush=True)


def one_line(error: BaseException) -> str:
  """``Type: first line of the message`` of the innermost cause (TensorStore's
  and JAX's messages run for pages; the first error says what is wrong)."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def read_json(path: str | os.PathLike,
              what_to_do: str = "restore it, or pass --overwrite to start the run again"
              ) -> dict[str, Any] | None:
  """The JSON object in ``path``; ``None`` when there is no such file.

  Raises:
    DamagedFileError: the file is not a JSON object (cut, overwritten, empty).
  """
  path = Path(path)
  if not path.is_file():
    return None
  try:
    value = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DamagedFileError(path, f"not JSON: {e}", what_to_do) from None
  if not isinstance(value, dict):
    raise DamagedFileError(path, f"a JSON {type(value).__name__}, not an object",
                           what_to_do)
  return value


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of a JSON-lines file (``[]`` if missing); a torn last line
  (no newline after it, not JSON) is dropped with a warning.

  Raises:
    DamagedFileError: a line other than a torn last one is not a JSON object.
  """
  path = Path(path)
  if not path.exists():
    return []
  text = path.read_text(errors="replace")
  lines = text.split("\n")
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      record = None
    if isinstance(record, dict):
      records.append(record)
    elif number == len(lines):  # The last line, with no newline after it.
      warn(f"{path}: its last line was cut mid-write ({line[:40]!r}); dropped it "
           "(the records after the last checkpoint are written again)")
    else:
      raise DamagedFileError(path, f"line {number} is not a JSON record: {line[:60]!r}",
                             "delete the damaged lines, or pass --overwrite to start "
                             "the run again")
  return records
