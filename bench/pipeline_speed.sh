#!/usr/bin/env bash
# Time the default pipeline from scratch, then a no-op rerun (targets: <= 15 min and <= 5 s on 2 cores).
# Results go to bench/results/pipeline_speed/ (git-ignored); per-job times come from Snakemake's benchmark: files.
# Writes bench/results-summary/pipeline-speed.json (times) and demo.json (the demo's test-split
# rate-distortion report), then the README numbers generated from them (bench/summary.py).
# PREVIOUS=<another run's pipeline-speed.json> PREVIOUS_LABEL="<what it ran>": a run made side by side just before
# (e.g. the previous params.yaml, from a git worktree), kept in the summary beside this one (its totals and per-rule
# times) with the ratio of their wall times, which a shared machine's speed on the day does not change as it
# changes absolute times.
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
.venv/bin/python - "$out" "$full_ms" "$noop_ms" <<'PY'
import json, os, sys
from pathlib import Path
import pandas as pd
out, full_ms, noop_ms = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = []
for tsv in (out / "benchmarks").rglob("*.tsv"):
    rule = tsv.relative_to(out / "benchmarks").parts[0].removesuffix(".tsv")
    row = pd.read_csv(tsv, sep="\t").iloc[0]
    rows.append({"rule": rule, "seconds": row["s"], "cpu_s": row["cpu_time"]})
jobs = pd.DataFrame(rows)
table = jobs.groupby("rule", sort=False).agg(count=("seconds", "count"), sum=("seconds", "sum"),
                                              max=("seconds", "max"), cpu=("cpu_s", "sum")).round(1)
print("per-rule job wall and CPU time (s), from Snakemake benchmark files:")
print(table.to_string())
summary = {"full_run_s": round(full_ms / 1000, 1), "noop_run_s": round(noop_ms / 1000, 1), "jobs": len(rows),
           "cpu_s": round(float(jobs["cpu_s"].sum()), 1),
           "rules": [{"rule": rule, "jobs": int(r["count"]), "sum_s": r["sum"], "max_s": r["max"], "cpu_s": r["cpu"]}
                     for rule, r in table.iterrows()]}
if os.environ.get("PREVIOUS"):
    previous = json.loads(Path(os.environ["PREVIOUS"]).read_text())
    summary["previous"] = {"label": os.environ.get("PREVIOUS_LABEL", os.environ["PREVIOUS"]),
                           **{key: previous[key] for key in ("full_run_s", "noop_run_s", "jobs", "cpu_s", "rules")}}
Path("bench/results-summary/pipeline-speed.json").write_text(json.dumps(summary, indent=1) + "\n")
PY
.venv/bin/python bench/collect.py --results "$out" --dataset test --out bench/results-summary/demo.json
.venv/bin/python bench/summary.py
