#!/usr/bin/env bash
# The GPU path verified in one command, on a fresh Linux x86-64 machine with one NVIDIA GPU and this repo:
#   scripts/gpu_check.sh [--out DIR] [--work DIR] [--full] [--runs N] [--budget-s S]  # installs .[tensorrt] first
#   scripts/gpu_check.sh --dry-run [--out DIR]               # CI: no install, no GPU; everything up to the GPU calls
#   scripts/gpu_check.sh --no-install ...                    # use what is installed (PYTHONPATH=. for this repo)
# Offline machines: put the wheels (tensorrt*, onnxruntime-gpu, ...) in a folder and set WHEELS=/path/to/folder;
# pip then installs from it only (--no-index --find-links). Without tensorrt the TensorRT rows say "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
args=()
install=1
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    --dry-run) install=0; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
if [[ $install == 1 ]]; then
  pip_args=()
  if [[ -n "${WHEELS:-}" ]]; then pip_args=(--no-index --find-links "$WHEELS"); fi
  python3 -m pip install "${pip_args[@]}" -q -e ".[tensorrt]" onnxruntime-gpu
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec python3 scripts/gpu_check.py "${args[@]}"
