#!/usr/bin/env bash
# Set up .venv and run the test suite (the 15 slowest tests are listed at the end, to keep CI's time in view).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest --durations=15 "$@"
