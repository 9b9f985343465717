#!/usr/bin/env bash
# Detection benchmark of seed 002 (see bench/README.md, "Detection"): the pipeline with bench/detection/params.yaml,
# then its summary (bench/results-summary/detection.json). Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh --configfile bench/detection/params.yaml "$@"
.venv/bin/python bench/collect.py --results bench/results/detection --dataset test \
    --out bench/results-summary/detection.json
.venv/bin/python bench/summary.py
