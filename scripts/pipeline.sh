#!/usr/bin/env bash
# Set up .venv and run the whole pipeline with the local profile.
# Extra arguments go to snakemake, e.g. `bash scripts/pipeline.sh --dry-run` or `--config results_dir=out`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/snakemake --profile workflow/profiles/local "$@"
