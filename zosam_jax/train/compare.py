"""``--compare``: one configuration trained with several optimizers.

Each optimizer runs in ``workdir/<optimizer>/`` with the same data, model,
seed, schedule and sparsity; the results go into one table
(``comparison.md`` and ``comparison.json``) and one figure
(``comparison.png``: test accuracy against the step and against training
wall-clock time).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import lock as lock_lib
from zosam_jax.train import loop
from zosam_jax.train import report
from zosam_jax.train import workdir as workdir_lib


def config_for(cfg: config_lib.TrainConfig, optimizer: str) -> config_lib.TrainConfig:
  """``cfg`` for one optimizer of a comparison (inapplicable flags reset)."""
  defaults = config_lib.TrainConfig()
  changes: dict[str, Any] = {"optimizer": optimizer, "compare": ()}
  changes.update({k: getattr(defaults, k) for k, applies in config_lib.APPLIES_TO.items()
                  if optimizer not in applies})
  return config_lib.validate(dataclasses.replace(cfg, **changes))


def _check_compare_folder(cfg: config_lib.TrainConfig, workdir: Path) -> None:
  """``--resume`` needs this comparison's flags; a new one, an unused folder."""
  path = workdir / "compare.json"
  saved = config_lib.read_saved(path)
  if cfg.resume and saved is None:
    raise workdir_lib.ResumeError(f"no --compare run to resume in {workdir} (no "
                           "compare.json there); check --workdir")
  if cfg.resume:
    differ = [k for k, v in saved.items() if k not in config_lib.RESUME_FREE_FIELDS
              | {"compare"} and cfg.to_dict().get(k) != v]
    if saved["compare"] != list(cfg.compare) or differ:
      raise workdir_lib.ResumeError(
          f"--resume needs the flags of the interrupted comparison; continue it "
          f"with: {config_lib.command_line(dict(saved, workdir=cfg.workdir), resume=True)}")
  elif (saved is not None or any((workdir / n).exists() for n in cfg.compare)) and (
      not cfg.overwrite):
    raise FileExistsError(f"{workdir} already holds a comparison; pass --resume to "
                          "continue it, --overwrite to start it again, or another "
                          "--workdir")


def run_comparison(cfg: config_lib.TrainConfig, workdir: str | Path | None = None
                   ) -> dict[str, Any]:
  """Trains ``cfg`` once per optimizer in ``cfg.compare`` and compares them.

  Args:
    cfg: the configuration; ``cfg.compare`` lists the optimizers.
    workdir: output folder (``cfg.workdir`` when ``None``).

  Returns:
    ``{"rows": [one summary row per optimizer], "table": markdown,
    "summaries": {optimizer: summary}}``.
  """
  cfg = config_lib.validate(cfg)
  workdir = Path(workdir if workdir is not None else cfg.workdir)
  lock_lib.refuse_if_held([workdir])
  _check_compare_folder(cfg, workdir)
  dataset = data_lib.load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download,
                                  cifar10_test=cfg.cifar10_test)
  with lock_lib.RunLock(workdir):  # One writer; checked again under the lock.
    _check_compare_folder(cfg, workdir)
    return _compare(cfg, workdir, dataset)


def _compare(cfg: config_lib.TrainConfig, workdir: Path, dataset: data_lib.Dataset
             ) -> dict[str, Any]:
  """Trains each optimizer of the comparison in turn; writes the table."""
  (workdir / "compare.json").write_text(json.dumps(cfg.to_dict(), indent=2))
  summaries, runs = {}, {}
  for name in cfg.compare:
    run_dir = workdir / name
    member = config_for(cfg, name)
    if cfg.resume and not (run_dir / "config.json").exists():
      member = dataclasses.replace(member, resume=False)  # Not started yet.
    try:
      summaries[name] = loop.train_and_evaluate(member, run_dir, dataset=dataset)
    except loop.Interrupted as e:  # Continue the comparison, not one member.
      raise loop.Interrupted(e.step, config_lib.command_line(cfg, resume=True)) from None
    runs[name] = report.read_metrics(run_dir / "metrics.jsonl")
  result = report.write_comparison(summaries, runs, workdir)
  return dict(result, summaries=summaries)
