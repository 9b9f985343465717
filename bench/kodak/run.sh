#!/usr/bin/env bash
# Kodak benchmark (see bench/README.md): train on ../shared/data/photos, evaluate the 24 Kodak images with
# real bitstreams beside the classical codecs, then write bench/results-summary/<name>.json and the README
# numbers generated from it. Needs ../shared beside the project.
#   bash bench/kodak/run.sh                       # the CPU study, bench/kodak/params.yaml (~2.3 h on 2 cores)
#   bash bench/kodak/run.sh bench/kodak/gpu.yaml  # the same recipe scaled for one GPU
#   bash bench/kodak/run.sh bench/kodak/independent.yaml  # an overlay: a file without a prepare section changes
#                                                 # only its keys of bench/kodak/params.yaml (Snakemake merges them);
#                                                 # it names its own results_dir
# Extra args after the params file go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/kodak/common.sh
params=${1:-bench/kodak/params.yaml}
shift $(( $# > 0 ? 1 : 0 ))
[ -f "$params" ] || { echo "error: params file $params does not exist" >&2; exit 2; }
bash scripts/setup.sh
kind=$(.venv/bin/python -c 'import sys, yaml
params = yaml.safe_load(open(sys.argv[1])) or {}
print("study" if "prepare" in params else "overlay" if "results_dir" in params else "")' "$params")
case $kind in
    study) files=("$params") ;;
    overlay) files=(bench/kodak/params.yaml "$params") ;;  # an overlay of the CPU study
    *) echo "error: $params is neither a whole params file (with a prepare section) nor an overlay naming its own" \
            "results_dir; add results_dir so the overlay does not write into the study's results" >&2; exit 2 ;;
esac
.venv/bin/snakemake --profile workflow/profiles/local --configfile "${files[@]}" "$@"
results=$(results_of "$params")
name=$(basename "$params" .yaml)
[ "$name" = params ] && name=kodak || name=kodak-$name
.venv/bin/python bench/collect.py --results "$results" --dataset kodak --references ../shared/reference/compressai-kodak \
    --out "bench/results-summary/$name.json"
.venv/bin/python bench/summary.py
echo "table: bench/results-summary/$name.json; plots: $results/report/kodak/rd_psnr.png, rd_ms_ssim.png"
