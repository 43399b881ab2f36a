"""``--compare``: one configuration trained with several optimizers.

Each optimizer runs in ``workdir/<optimizer>/`` with the same data, model,
seed, schedule and sparsity; the results go into one table
(``comparison.md`` and ``comparison.json``) and one figure
(``comparison.png``: test accuracy against the step and against training
wall-clock time).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from zosam_jax.train import config as config_lib
from zosam_jax.train import data as data_lib
from zosam_jax.train import loop
from zosam_jax.train import report

_ZO_FIELDS = ("num_dirs", "estimator", "zo_distribution", "smoothing",
              "zo_prior", "zo_batch_fraction", "chunk_size")


def config_for(cfg: config_lib.TrainConfig, optimizer: str) -> config_lib.TrainConfig:
  """``cfg`` for one optimizer of a comparison (inapplicable flags reset)."""
  defaults = config_lib.TrainConfig()
  changes: dict[str, Any] = {"optimizer": optimizer, "compare": ()}
  if optimizer != "zosam":
    changes.update({k: getattr(defaults, k) for k in _ZO_FIELDS})
  if optimizer == "sgd":
    changes.update(rho=defaults.rho, adaptive=defaults.adaptive)
  return config_lib.validate(dataclasses.replace(cfg, **changes))


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
  workdir.mkdir(parents=True, exist_ok=True)
  dataset = data_lib.load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
  summaries, runs = {}, {}
  for name in cfg.compare:
    run_dir = workdir / name
    summaries[name] = loop.train_and_evaluate(config_for(cfg, name), run_dir,
                                              dataset=dataset)
    runs[name] = report.read_metrics(run_dir / "metrics.jsonl")
  result = report.write_comparison(summaries, runs, workdir)
  return dict(result, summaries=summaries)
