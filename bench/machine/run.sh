#!/usr/bin/env bash
# Machine-branch benchmark (see bench/README.md): the default pipeline (rate-accuracy targets), then the
# compressed-domain speed comparison on its outputs. Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh "$@"
.venv/bin/python bench/machine/speed.py --results results
