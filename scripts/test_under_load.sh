#!/usr/bin/env bash
# The whole suite N times in a row (default 3) while two busy-loop processes hog the cores, as on a busy CI
# machine. Prints each run's result and exits non-zero if any run failed.
#   scripts/test_under_load.sh [runs]
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1 HF_HUB_OFFLINE=1
hogs=()
for _ in 1 2; do python3 -c "while True: pass" & hogs+=($!); done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
failed=0
for run in $(seq 1 "$runs"); do
  export ROS_DOMAIN_ID=$((1 + RANDOM % 100))
  start=$(date +%s)
  if python3 -m pytest -q -p no:cacheprovider > "/tmp/depthfm_load_run_$run.log" 2>&1; then status=passed; else
    status=FAILED; failed=1; fi
  echo "run $run/$runs: $status in $(( $(date +%s) - start )) s: $(tail -n 1 "/tmp/depthfm_load_run_$run.log")"
done
exit "$failed"
