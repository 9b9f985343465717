#!/usr/bin/env bash
# Visual question answering benchmark of seed 000 (bench/vqa/params.yaml): the pipeline with it; the seed's tables
# are in bench/results/vqa/report/machine/test/ (rate_accuracy.csv, tradeoff.csv, bd_rate_accuracy.csv,
# bits_for_accuracy.csv, qualitative.png). Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh --configfile bench/vqa/params.yaml "$@"
