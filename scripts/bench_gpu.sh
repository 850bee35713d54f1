#!/usr/bin/env bash
# The device checks of issue 14, in one short run (~3-5 min) on a machine with a GPU and 16 cores:
#   bash scripts/bench_gpu.sh [results/benchmarks.md]
# 1. every method's code path on the GPU (tests/test_gpu.py, incl. a multi-run job looped and stacked);
# 2. the multi-run learner on Pong (A3C net), K = 16 runs on all cores and the GPU, looped and stacked, and as
#    Knowledge Flow students with two teachers, beside 16 single-run CPU jobs at once and the random-action rate of
#    the same vector env (scripts/bench_multirun.py). Targets: >= 25,000 steps/s aggregate, >= 60% of the env's
#    random-action rate; Knowledge Flow >= 0.7x that.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -m pytest -q -m gpu tests/test_gpu.py
CORES=$(nproc)
$PY scripts/bench_multirun.py --game Pong --net a3c --runs 16 --threads "$CORES" --jobs "$CORES" --device cuda \
    --kf-teachers 2 --updates 320 ${OUT:+--out "$OUT"}
