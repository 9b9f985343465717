#!/usr/bin/env bash
# Which way the Kodak study chains its λ sweep (bench/README.md, "Which way to chain, on the full budget"), measured
# on the photos' validation split, never on Kodak: trains the sweep chained from the largest λ down (the study's,
# bench/kodak/chain-down.yaml) and from the smallest λ up (bench/kodak/chain-up.yaml) side by side, one job at a
# time each (about 2 h on 2 cores), evaluates both and the classical codecs on the validation split, and writes
# bench/results-summary/kodak-chain-down-val.json and kodak-chain-up-val.json.
#   bash bench/kodak/chains.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed chain stops the other
# --nolock: two Snakemake runs started at once in one folder race on its lock files (FileNotFoundError on
# .snakemake/locks); the overlays name disjoint results_dirs (a test checks), each held by taskcodec's run lock
results_of() { .venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["results_dir"])' "$1"; }
pids=()
for chain in down up; do
    results=$(results_of "bench/kodak/chain-$chain.yaml")
    .venv/bin/snakemake --profile workflow/profiles/local --cores 1 --nolock \
        --configfile bench/kodak/params.yaml "bench/kodak/chain-$chain.yaml" -- "$results/report/val" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for chain in down up; do
    .venv/bin/python bench/collect.py --results "$(results_of "bench/kodak/chain-$chain.yaml")" --dataset val \
        --out "bench/results-summary/kodak-chain-$chain-val.json"
done
.venv/bin/python bench/summary.py
