#!/usr/bin/env bash
# The GPU path verified in one command, on a fresh Linux x86-64 machine with one NVIDIA GPU and this repo:
#   scripts/gpu_check.sh [--out DIR] [--work DIR] [--full] [--runs N] [--budget-s S]  # installs .[tensorrt] first
#   scripts/gpu_check.sh --dry-run [--out DIR]               # CI: no install, no GPU; everything up to the GPU calls
#   scripts/gpu_check.sh --no-install ...                    # use what is installed (PYTHONPATH=. for this repo)
# --full also runs scripts/bench_cameras.py (issue #26: one node batching 1/2/4 cameras against one node per camera,
# TensorRT and torch, 640x480 at 30 Hz) into OUT/bench_cameras.{md,json}; skipped without rclpy.
# Offline machines: put the wheels (tensorrt*, onnxruntime-gpu, ...) in a folder and set WHEELS=/path/to/folder;
# pip then installs from it only (--no-index --find-links). Without tensorrt the TensorRT rows say "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
args=()
install=1
dry=0
full=0
out=gpu_check_results
work=
prev=
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    --dry-run) install=0; dry=1; args+=("$a") ;;
    --full) full=1; args+=("$a") ;;
    --out=*) out=${a#--out=}; args+=("$a") ;;
    --work=*) work=${a#--work=}; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
  case "$prev" in --out) out=$a ;; --work) work=$a ;; esac
  prev=$a
done
if [[ $install == 1 ]]; then
  pip_args=()
  if [[ -n "${WHEELS:-}" ]]; then pip_args=(--no-index --find-links "$WHEELS"); fi
  python3 -m pip install "${pip_args[@]}" -q -e ".[tensorrt]" onnxruntime-gpu
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ $full == 0 || $dry == 1 ]]; then exec python3 scripts/gpu_check.py "${args[@]}"; fi
rc=0
python3 scripts/gpu_check.py "${args[@]}" || rc=$?
if [[ $rc != 2 ]] && python3 -c "import rclpy" 2>/dev/null; then  # 2: no GPU
  python3 scripts/bench_cameras.py --backend tensorrt torch --width 640 --height 480 --processing-resolution 512 \
      --seconds 10 --warmup 3 --work "${work:-$out}/bench_cameras" --json "$out/bench_cameras.json" \
      > "$out/bench_cameras.md" || rc=$(( rc ? rc : 1 ))
elif [[ $rc != 2 ]]; then
  echo "bench_cameras: skipped (rclpy not installed: pip install '.[ros]')" | tee "$out/bench_cameras.md"
fi
exit $rc
