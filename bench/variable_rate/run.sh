#!/usr/bin/env bash
# Variable-rate benchmark (seed 001, see bench/README.md "One model, many rates"): the feature-pyramid codec in the
# seed's ablations and CompressAI's variable-rate models, each one model for four rates, against four single-rate
# hyperpriors with the same total CPU budget, trained on ../shared/data/photos and evaluated on the 24 Kodak images
# beside the classical codecs; then bench/results-summary/variable-rate[-<overlay>].json and the README numbers
# generated from it. Needs ../shared beside the project.
#   bash bench/variable_rate/run.sh                                      # bench/variable_rate/params.yaml
#   bash bench/variable_rate/run.sh bench/variable_rate/budget4x.yaml    # an overlay: changes only its keys of
#                                                   # params.yaml (Snakemake merges them), names its own results_dir
# Extra args after the overlay go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=(bench/variable_rate/params.yaml)
name=variable-rate
if [ $# -gt 0 ] && [[ $1 == *.yaml ]]; then
    [ -f "$1" ] || { echo "error: overlay $1 does not exist" >&2; exit 2; }
    files+=("$1")
    name=variable-rate-$(basename "$1" .yaml)
    shift
fi
bash scripts/setup.sh
results=$(.venv/bin/python -c 'import sys, yaml
print((yaml.safe_load(open(sys.argv[1])) or {}).get("results_dir") or "")' "${files[-1]}")
[ -n "$results" ] || { echo "error: ${files[-1]} names no results_dir; add one so it does not write into the" \
    "benchmark's results" >&2; exit 2; }
.venv/bin/snakemake --profile workflow/profiles/local --configfile "${files[@]}" "$@"
# the single-rate reference: the Kodak study's chain with the variable-rate models' latent width (M = 64; the committed
# summaries name it kodak.json, its name before the study moved to M = 128)
.venv/bin/python bench/collect.py --results "$results" --dataset kodak \
    --references ../shared/reference/compressai-kodak --single-rate bench/results-summary/kodak-m64.json \
    --out "bench/results-summary/$name.json"
.venv/bin/python bench/summary.py
echo "table: bench/results-summary/$name.json; plots: $results/report/kodak/rd_psnr.png"
