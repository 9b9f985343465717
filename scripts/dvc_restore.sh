#!/usr/bin/env bash
# Run a DVC command that restores files (pull, checkout, exp apply ...), then mark the restored
# prepared data and checkpoints up to date in pipeline order, so Snakemake does not retrain because
# the restored files got new, arbitrary modification times.
#   bash scripts/dvc_restore.sh pull
#   bash scripts/dvc_restore.sh exp apply <experiment>
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/dvc "$@"
# the outputs DVC versions together with their inputs (rule `versioned`); --touch only updates times,
# upstream first. The latent classifiers depend on the latent caches, which are recomputed.
exec .venv/bin/snakemake --profile workflow/profiles/local --touch versioned --quiet
