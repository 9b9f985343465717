#!/usr/bin/env bash
# Set up .venv and run the test suite (the 15 slowest tests are listed at the end, to keep CI's time in view).
# Without arguments the suite runs in two pytest processes side by side, since neither keeps both cores busy:
# the workflow tests that share the package's one run of the tiny pipeline (conftest.pipeline_run), the SLURM
# tests and the multi-process training tests, in file order; beside them, the unit tests and then the workflow
# tests that make their own runs. The multi-process tests are in the first so that both end at about the same
# time (CI on 2 cores: 1117 s and 1376 s before). The first process's report follows the second's. With
# arguments, one pytest run of them (e.g. a test file, or -k).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pytest=(.venv/bin/python -m pytest --durations=15)
if [ $# -gt 0 ]; then
    exec "${pytest[@]}" "$@"
fi
shared=(tests/workflow/test_dag.py tests/workflow/test_end_to_end.py tests/workflow/test_slurm.py
        tests/workflow/test_slurm_preflight.py  # the two SLURM modules: one cluster at a time
        tests/codecs/test_distributed.py)
shared_log=$(mktemp)
trap 'rm -f "$shared_log"' EXIT
"${pytest[@]}" "${shared[@]}" > "$shared_log" 2>&1 &
shared_run=$!
rest_status=0
"${pytest[@]}" "${shared[@]/#/--ignore=}" || rest_status=$?
shared_status=0
wait "$shared_run" || shared_status=$?
echo "=== ${shared[*]} (ran beside the tests above) ==="
cat "$shared_log"
exit $(( rest_status != 0 ? rest_status : shared_status ))
