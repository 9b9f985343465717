#!/usr/bin/env bash
# Set up .venv and run the test suite (the 15 slowest tests are listed at the end, to keep CI's time in view).
# Two pytest-xdist workers: the workflow tests in one, in file order (they share the tiny pipeline run and each
# drives both cores with Snakemake), the unit tests in the other. Extra arguments go to pytest (-n 0: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 --dist loadgroup --durations=15 "$@"
