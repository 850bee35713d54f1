#!/usr/bin/env bash
# Install the project into ./.venv (created if absent): torch first, then the package with its test extras.
# torch: kept if already installed; on a machine without an NVIDIA GPU the CPU build is taken from the
# PyTorch CPU index (a plain `pip install torch` on Linux downloads a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" "torch>=2.3"
  else
    "${PIP[@]}" "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${PIP[@]}" -e ".[test]"
.venv/bin/python -c "import torch, stable_baselines3, ale_py, snakemake; print(f'installed: torch {torch.__version__}, SB3 {stable_baselines3.__version__}, ale-py {ale_py.__version__}, snakemake {snakemake.__version__}')"
