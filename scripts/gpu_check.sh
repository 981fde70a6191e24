#!/usr/bin/env bash
# The GPU path verified in one command, on a fresh Linux x86-64 machine with one NVIDIA GPU and this repo:
#   scripts/gpu_check.sh [--out DIR] [--full] [--runs N]     # installs .[tensorrt], then runs scripts/gpu_check.py
#   scripts/gpu_check.sh --dry-run [--out DIR]               # CI: no install, no GPU; everything up to the GPU calls
# Offline machines: put the wheels (tensorrt*, onnxruntime-gpu, ...) in a folder and set WHEELS=/path/to/folder;
# pip then installs from it only (--no-index --find-links).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [[ " $* " != *" --dry-run "* ]]; then
  pip_args=()
  if [[ -n "${WHEELS:-}" ]]; then pip_args=(--no-index --find-links "$WHEELS"); fi
  python3 -m pip install "${pip_args[@]}" -q -e ".[tensorrt]" onnxruntime-gpu
fi
exec python3 scripts/gpu_check.py "$@"
