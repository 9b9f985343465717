#!/usr/bin/env bash
# Set up .venv and run the test suite (the 15 slowest tests are listed at the end, to keep CI's time in view).
# Without arguments the workflow tests (tests/workflow: Snakemake runs, in file order) and the unit tests run side
# by side in two pytest processes, since neither keeps both cores busy; the workflow tests' report follows the unit
# tests'. With arguments, one pytest run of them (e.g. a test file, or -k).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pytest=(.venv/bin/python -m pytest --durations=15)
if [ $# -gt 0 ]; then
    exec "${pytest[@]}" "$@"
fi
workflow_log=$(mktemp)
trap 'rm -f "$workflow_log"' EXIT
"${pytest[@]}" tests/workflow > "$workflow_log" 2>&1 &
workflow=$!
unit_status=0
"${pytest[@]}" --ignore=tests/workflow || unit_status=$?
workflow_status=0
wait "$workflow" || workflow_status=$?
echo "=== tests/workflow (ran beside the unit tests) ==="
cat "$workflow_log"
exit $(( unit_status != 0 ? unit_status : workflow_status ))
