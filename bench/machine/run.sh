#!/usr/bin/env bash
# Machine-branch benchmark (see bench/README.md): the pipeline with the study config bench/machine/params.yaml
# (rate-accuracy targets), then the compressed-domain speed comparison on its outputs. Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh --configfile bench/machine/params.yaml "$@"
.venv/bin/python bench/machine/speed.py --results bench/results/machine
