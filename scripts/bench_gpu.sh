#!/usr/bin/env bash
# The device checks of issue 14, in one short run (~4-6 min) on a machine with a GPU and 16 cores:
#   bash scripts/bench_gpu.sh [results/benchmarks.md]
# 1. every method's code path on the GPU (tests/test_gpu.py, incl. a multi-run job looped and stacked);
# 2. the multi-run learner on Pong (A3C net), K = 16 runs on all cores and the GPU, looped and stacked, and as
#    Knowledge Flow students with two teachers, beside 16 single-run CPU jobs at once and the random-action rate of
#    the same vector env (scripts/bench_multirun.py), and stacked as two overlapped halves (one half's envs step while
#    the other half's nets run). Targets: >= 25,000 steps/s aggregate, >= 60% of the env's
#    random-action rate; Knowledge Flow >= 0.7x that;
# 3. the same on MinAtar Breakout (MinAtar net), the evidence tier's learner: what a converged 10-seed sweep costs.
# PROFILE=FILE appends a cProfile of each K-run job to FILE.
# Each part runs even if an earlier one failed; the exit status says whether all passed.
# Overrides (a quick check of the script itself on a CPU): DEVICE=cpu RUNS=2 JOBS=2 UPDATES=20 SKIP_TESTS=1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-}
DEVICE=${DEVICE:-cuda}
CORES=$(nproc)
RUNS=${RUNS:-16}
JOBS=${JOBS:-$CORES}
UPDATES=${UPDATES:-320}
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch, ale_py, gymnasium; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ale-py', ale_py.__version__)"
if [ -z "${SKIP_TESTS:-}" ]; then
  $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider || status=1
fi
for spec in "Pong a3c loop,stacked,stacked+overlap" "MinAtar/Breakout minatar loop,stacked"; do
  set -- $spec
  $PY scripts/bench_multirun.py --game "$1" --net "$2" --runs "$RUNS" --threads "$CORES" --jobs "$JOBS" \
      --device "$DEVICE" --kf-teachers 2 --updates "$UPDATES" --batch "$3" ${OUT:+--out "$OUT"} \
      ${PROFILE:+--profile "$PROFILE"} || status=1
done
# 4. more runs per job, stacked only: does the GPU's rate keep growing with K?
for spec in "Pong a3c 32" "MinAtar/Breakout minatar 64"; do
  set -- $spec
  $PY scripts/bench_multirun.py --game "$1" --net "$2" --runs "$3" --threads "$CORES" --jobs 0 --batch stacked \
      --device "$DEVICE" --updates "$((UPDATES * 2))" ${OUT:+--out "$OUT"} || status=1
done
exit $status
