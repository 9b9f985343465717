#!/usr/bin/env bash
# Which way the Kodak study chains its λ sweep (bench/README.md, "Which way to chain, on the photos"), measured on
# the photos' validation split, never on Kodak: trains the study's sweep (bench/kodak/params.yaml) and an overlay's
# (default bench/kodak/chain-up.yaml, the other chain) side by side, one job at a time each (about 2 h on 2 cores),
# evaluates both and the classical codecs on the validation split, and writes bench/results-summary/kodak-val.json
# and kodak-<overlay>-val.json.
#   bash bench/kodak/chains.sh [overlay]
set -euo pipefail
cd "$(dirname "$0")/../.."
overlay=${1:-bench/kodak/chain-up.yaml}
[ -f "$overlay" ] || { echo "error: overlay $overlay does not exist" >&2; exit 2; }
bash scripts/setup.sh
results_of() { .venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["results_dir"])' "$1"; }
study=$(results_of bench/kodak/params.yaml)
other=$(results_of "$overlay")
# --nolock: two Snakemake runs started at once in one folder race on its lock files (FileNotFoundError on
# .snakemake/locks); the two write disjoint results_dirs, each held by taskcodec's own lock on it (run_lock.py)
run() { .venv/bin/snakemake --profile workflow/profiles/local --cores 1 --nolock "$@"; }
run --configfile bench/kodak/params.yaml -- "$study/report/val" & first=$!
run --configfile bench/kodak/params.yaml "$overlay" -- "$other/report/val" & second=$!
status=0
wait $first || status=$?
wait $second || status=$?
[ $status -eq 0 ] || { echo "error: a chain's run failed (its log above)" >&2; exit $status; }
.venv/bin/python bench/collect.py --results "$study" --dataset val --out bench/results-summary/kodak-val.json
.venv/bin/python bench/collect.py --results "$other" --dataset val \
    --out "bench/results-summary/kodak-$(basename "$overlay" .yaml)-val.json"
.venv/bin/python bench/summary.py
