#!/usr/bin/env bash
# Task-weight ablation on the study's pretrained codecs (bench/README.md, machine branch): fine-tunes the
# λ 0.0009 and 0.0018 codecs of bench/results/machine at τ 0.1 once per task weight w given as an argument
# (default: 1 10 30, around the config's 5) into bench/results/machine-w<w>/, then prints bpp and top-1 of each
# on both splits.
# Reuses the study's prepared data, task model, saliency maps and codecs (hard links), so run
# bench/machine/run.sh first. Extra snakemake arguments are not taken.
set -euo pipefail
cd "$(dirname "$0")/../.."
study=bench/results/machine
[ -f "$study/task/classification/model.pt" ] || { echo "no study results in $study: run bash bench/machine/run.sh first"; exit 1; }
weights=("$@"); [ ${#weights[@]} -gt 0 ] || weights=(1 10 30)
tuned=bmshj2018-hyperprior/N32-M48  # the study's codec architecture and latent sizes
lmbdas=(0.0009 0.0018)
tau=0.1
for w in "${weights[@]}"; do
    out=bench/results/machine-w$w
    mkdir -p "$out"
    for part in prepared saliency task codecs; do [ -e "$out/$part" ] || cp -al "$study/$part" "$out/$part"; done
    targets=()
    for lmbda in "${lmbdas[@]}"; do
        for split in test val; do targets+=("$out/eval/finetuned/classification/$tuned/lmbda$lmbda/tau$tau/$split"); done
    done
    # a second config file overrides these keys of the study config (Snakemake merges them)
    printf 'results_dir: %s\nfinetune:\n  sweep: {lmbdas: [%s], taus: [%s]}\n  train: {task_weight: %s}\n' \
        "$out" "$(IFS=,; echo "${lmbdas[*]}")" "$tau" "$w" > "$out/overrides.yaml"
    # the targets come before --configfile, which takes every path after it
    bash scripts/pipeline.sh "${targets[@]}" --configfile bench/machine/params.yaml "$out/overrides.yaml"
done
.venv/bin/python - "${weights[@]}" <<'PY'
import json
import sys
from pathlib import Path

print("w  lambda  split  bpp    top-1")
for w in sys.argv[1:]:
    # each evaluation's classification table: <codec>/lmbda<λ>/tau<τ>/<split>/task/classification/summary.json
    for summary in sorted(Path(f"bench/results/machine-w{w}/eval/finetuned").rglob("task/classification/summary.json")):
        result = json.loads(summary.read_text())
        lmbda, split = summary.parts[-6].removeprefix("lmbda"), summary.parts[-4]
        print(f"{w:<3}{lmbda:<8}{split:<7}{result['bpp']:.3f}  {100 * result['top1']:.1f} %")
PY
