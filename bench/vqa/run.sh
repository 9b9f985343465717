#!/usr/bin/env bash
# Visual question answering benchmark of seed 000 (bench/vqa/params.yaml): the pipeline with it; the seed's tables
# are in bench/results/vqa/report/machine/vqa/ (rate_accuracy.csv, tradeoff.csv, bd_rate_accuracy.csv,
# bits_for_accuracy.csv, qualitative.png). Then the blind baseline: the same VQA model and training with the image
# taken away (tasks.vqa.model.blind), its test accuracy in bench/results/vqa/blind/metrics.json; and the summary
# (bench/results-summary/vqa.json). Extra args go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/pipeline.sh --configfile bench/vqa/params.yaml "$@"
blind=$(.venv/bin/python -c 'import json, yaml
task = yaml.safe_load(open("bench/vqa/params.yaml"))["tasks"]["vqa"]
task["model"]["blind"] = True
print(json.dumps({key: task[key] for key in ("model", "train")}))')
threads=$(.venv/bin/python -c 'import yaml; print(yaml.safe_load(open("bench/vqa/params.yaml"))["resources"]["train_task"]["threads"])')
if [ ! -f bench/results/vqa/blind/model.pt ]; then
    .venv/bin/python -m taskcodec.stages.train_task --task vqa --params "$blind" --threads "$threads" \
        --manifest bench/results/vqa/prepared/manifest.csv --out bench/results/vqa/blind/model.pt
fi
.venv/bin/python bench/collect.py --results bench/results/vqa --dataset test --out bench/results-summary/vqa.json
.venv/bin/python bench/summary.py
