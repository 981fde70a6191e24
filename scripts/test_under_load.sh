#!/usr/bin/env bash
# The whole suite RUNS times in a row (default 5) while BUSY busy-loop processes (default 3) hog the cores, as on
# a busy CI machine. Prints each run's result and time and exits non-zero if any run failed; each run's log is
# run_N.log in a new folder under /tmp (printed). ROS_DOMAIN_ID: DEPTHFM_TEST_DOMAIN, else drawn per run; the suite's
# xdist workers take the domains after it (test/conftest.py). Extra arguments go to pytest (e.g. a test file to repeat alone).
#   scripts/test_under_load.sh [runs [busy [pytest args...]]]
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
busy="${2:-3}"
shift $(( $# < 2 ? $# : 2 ))
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1 HF_HUB_OFFLINE=1
hogs=()
for _ in $(seq 1 "$busy"); do python3 -c "while True: pass" & hogs+=($!); done
trap '[ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null' EXIT
logs=$(mktemp -d /tmp/depthfm_load.XXXXXX)
echo "$(nproc) core(s), $busy busy loop(s), $runs run(s); logs in $logs"
failed=0
for run in $(seq 1 "$runs"); do
  export ROS_DOMAIN_ID="${DEPTHFM_TEST_DOMAIN:-$((1 + RANDOM % 100))}"
  start=$(date +%s)
  if python3 -m pytest -q -p no:cacheprovider "$@" > "$logs/run_$run.log" 2>&1; then status=passed; else
    status=FAILED; failed=1; fi
  echo "run $run/$runs: $status in $(( $(date +%s) - start )) s: $(tail -n 1 "$logs/run_$run.log")"
done
exit "$failed"
