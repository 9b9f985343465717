#!/usr/bin/env bash
# Kodak benchmark (see bench/README.md). Needs ../shared beside the project. Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
exec .venv/bin/snakemake --profile workflow/profiles/local --configfile bench/kodak/params.yaml "$@"
