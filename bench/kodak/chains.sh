#!/usr/bin/env bash
# Ways to train the Kodak study's λ sweep, measured on the photos' validation split, never on Kodak: trains the sweep
# as each named overlay of bench/kodak/params.yaml says (bench/kodak/<name>.yaml, each with a results_dir of its own)
# side by side, one job at a time each, evaluates each and the classical codecs on the validation split, and writes
# bench/results-summary/kodak-<name>-val.json. Without names, the two ways of chaining (bench/README.md, "Which way to
# chain, on the full budget"): the study's chain from the largest λ down (chain-down) and from the smallest λ up
# (chain-up), both with the study's former codec (M = 64), about 2 h on 2 cores.
#   bash bench/kodak/chains.sh                 # chain-down and chain-up
#   bash bench/kodak/chains.sh m64 m128        # the chain down with M = 64 and M = 128 latent channels
#   bash bench/kodak/chains.sh m128-guard      # the study's chain with the guard against loss spikes
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/kodak/common.sh
if [ $# -gt 0 ]; then names=("$@"); else names=(chain-down chain-up); fi
for name in "${names[@]}"; do
    overlay=bench/kodak/$name.yaml
    [ -f "$overlay" ] && ! grep -q "^prepare:" "$overlay" || { echo "error: $overlay is not an overlay of" \
        "bench/kodak/params.yaml; name one by its file name without .yaml (e.g. chain-down)" >&2; exit 2; }
done
[ "$(printf '%s\n' "${names[@]}" | sort | uniq -d)" = "" ] || { echo "error: an overlay is named twice" >&2; exit 2; }
bash scripts/setup.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed sweep stops the others
# --nolock: two Snakemake runs started at once in one folder race on its lock files (FileNotFoundError on
# .snakemake/locks); the overlays name disjoint results_dirs (a test checks), each held by taskcodec's run lock
pids=()
for name in "${names[@]}"; do
    results=$(results_of "bench/kodak/$name.yaml")
    .venv/bin/snakemake --profile workflow/profiles/local --cores 1 --nolock \
        --configfile bench/kodak/params.yaml "bench/kodak/$name.yaml" -- "$results/report/val" &
    pids+=($!)
done
for _ in "${pids[@]}"; do wait -n; done  # the first failure ends the script, and the trap stops the others
for name in "${names[@]}"; do
    .venv/bin/python bench/collect.py --results "$(results_of "bench/kodak/$name.yaml")" --dataset val \
        --out "bench/results-summary/kodak-$name-val.json"
done
.venv/bin/python bench/summary.py
