#!/usr/bin/env bash
# Machine-branch benchmark (see bench/README.md): the pipeline with the study config bench/machine/params.yaml
# (rate-accuracy targets), then the compressed-domain speed comparison on its outputs, then the summary
# (bench/results-summary/machine.json) and the README tables generated from it. Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh --configfile bench/machine/params.yaml "$@"
.venv/bin/python bench/machine/speed.py --results bench/results/machine
.venv/bin/python bench/collect.py --results bench/results/machine --dataset test --out bench/results-summary/machine.json
.venv/bin/python bench/summary.py
