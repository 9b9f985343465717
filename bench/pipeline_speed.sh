#!/usr/bin/env bash
# Time the default pipeline from scratch, then a no-op rerun (targets: <= 10 min and <= 5 s on 2 cores).
# Results go to bench/results/pipeline_speed/ (git-ignored); per-job times come from Snakemake's benchmark: files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=bench/results/pipeline_speed
rm -rf "$out" && mkdir -p "$out"
run() { .venv/bin/snakemake --profile workflow/profiles/local --config "results_dir=$out" "$@"; }

start=$(date +%s%N)
run > "$out/full_run.log" 2>&1
full_ms=$(( ($(date +%s%N) - start) / 1000000 ))
start=$(date +%s%N)
run > "$out/noop_run.log" 2>&1
noop_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "Nothing to be done" "$out/noop_run.log" || { echo "the rerun was not a no-op"; exit 1; }

echo "full run: $((full_ms / 1000)).$((full_ms % 1000 / 100)) s"
echo "no-op rerun: $((noop_ms / 1000)).$((noop_ms % 1000 / 100)) s"
.venv/bin/python - "$out" <<'PY'
import sys
from pathlib import Path
import pandas as pd
rows = []
for tsv in Path(sys.argv[1], "benchmarks").rglob("*.tsv"):
    rule = tsv.relative_to(Path(sys.argv[1], "benchmarks")).parts[0].removesuffix(".tsv")
    rows.append({"rule": rule, "seconds": pd.read_csv(tsv, sep="\t")["s"].iloc[0]})
table = pd.DataFrame(rows).groupby("rule")["seconds"].agg(["count", "sum", "max"]).round(1)
print("per-rule job wall time (s), from Snakemake benchmark files:")
print(table.to_string())
PY
