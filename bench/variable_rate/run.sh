#!/usr/bin/env bash
# Variable-rate benchmark (seed 001, see bench/README.md "One model, many rates"): the feature-pyramid codec in the
# seed's ablations and CompressAI's variable-rate models, each one model for four rates, against four single-rate
# hyperpriors with the same total CPU budget, trained on ../shared/data/photos and evaluated on the 24 Kodak images
# beside the classical codecs; then bench/results-summary/variable-rate.json and the README numbers generated from it.
# Needs ../shared beside the project. Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
params=bench/variable_rate/params.yaml
bash scripts/setup.sh
.venv/bin/snakemake --profile workflow/profiles/local --configfile "$params" "$@"
.venv/bin/python bench/collect.py --results bench/results/variable_rate --dataset kodak \
    --references ../shared/reference/compressai-kodak --single-rate bench/results-summary/kodak.json \
    --out bench/results-summary/variable-rate.json
.venv/bin/python bench/summary.py
echo "table: bench/results-summary/variable-rate.json; plots: bench/results/variable_rate/report/kodak/rd_psnr.png"
