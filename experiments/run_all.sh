#!/usr/bin/env bash
# The whole offline study, in priority order (CPU, about 30-60 min on 2 cores).
# Every step skips the runs it already finished, so the script can be re-run.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-python}
$PY tune.py --dataset digits                                   # results/tuned_digits.json
$PY grid.py --dataset digits --methods rigl --seeds 0 1 2 3 4  # the decisive grid
$PY grid.py --dataset digits --methods dense
$PY robustness.py --dataset digits
$PY grad_variance.py --dataset digits
$PY zo_quality.py --dataset digits
$PY grid.py --dataset digits --methods static set gmp          # the other sparse methods
$PY grid.py --dataset digits --methods rigl --optimizers zosam --zo-batch-fraction 0.25 --tag zobf0.25 --seeds 0 1 2 3 4
$PY robustness.py --dataset digits                             # new rows only
$PY grid.py --dataset digits --methods dense static set rigl gmp --report-only
$PY tune.py --dataset mnist1d --skip-rho
$PY grid.py --dataset mnist1d --methods rigl
