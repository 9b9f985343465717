#!/usr/bin/env bash
# Does the spike guard (codec.train.spike_guard, taskcodec.spike_guard) help where a training diverged? Trains the Kodak
# study's λ 0.013 codec from its chain's λ 0.025 codec, with the codec chain-down.yaml names (M = 64;
# bench/kodak/chains.sh trains that chain; its λ 0.013 training diverged near step 2400) twice side by side, one core
# each, for the study's 1800 CPU-s: without the guard and with it at 10x, validated on the photos' validation split.
# Then replays the guard on the training losses of both chains (and of the default demo's run by
# bench/pipeline_speed.sh, if there is one), which ran without it. Writes bench/results-summary/kodak-spike-guard.json
# (bench/README.md, "A guard against loss spikes"). About 30 min on 2 cores.
#   bash bench/kodak/spikes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed training stops the other
factor=10
study=bench/kodak/params.yaml
source bench/kodak/common.sh
down=$(results_of bench/kodak/chain-down.yaml)
up=$(results_of bench/kodak/chain-up.yaml)
# the chain's codec (chain-down.yaml names it): its name, its architecture, its hyperparameters as JSON
codec=$(.venv/bin/python -c 'import json, sys, yaml
from taskcodec.params import codec_id
(entry,) = yaml.safe_load(open(sys.argv[1]))["codec"]["sweep"]["models"]
print(codec_id(entry), entry["arch"], json.dumps({k: v for k, v in entry.items() if k != "arch"}))' \
    bench/kodak/chain-down.yaml)
read -r name arch hyper <<< "$codec"
start=$down/codecs/$name/lmbda0.025/model.pt
[ -f "$start" ] || { echo "spikes.sh: $start is missing; run bash bench/kodak/chains.sh first"; exit 1; }
out=bench/results/kodak-spike-guard
for guard in null $factor; do
    section=$(.venv/bin/python -c '
import json, sys, yaml
train = yaml.safe_load(open(sys.argv[1]))["codec"]["train"]
print(json.dumps({**train, "spike_guard": json.loads(sys.argv[2])}))' "$study" "$guard")
    mkdir -p "$out/$guard"
    .venv/bin/python -m taskcodec.stages.train_codec --params "$section" --threads 1 --device cpu \
        --arch "$arch" --hyper "$hyper" --lmbda 0.013 --mem-mb 4000 \
        --manifest "$down/prepared/manifest.csv" --init-from "$start" --out "$out/$guard/model.pt" \
        > "$out/$guard/train.log" 2>&1 &
done
wait -n; wait -n  # the first failure ends the script, and the trap stops the other training
.venv/bin/python - "$out" "$study" "$factor" "$name" "$down" "$up" bench/results/pipeline_speed <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
import yaml
from taskcodec.spike_guard import SpikeGuard
out, study, factor, codec = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
runs = [Path(p) for p in sys.argv[5:]]
side = yaml.safe_load(open(study))["prepare"]["image_size"]
val_images = int((pd.read_csv(runs[0] / "prepared/manifest.csv")["split"] == "val").sum())
arms = []
for guard in (None, factor):
    folder = out / ("null" if guard is None else sys.argv[3])
    metrics = json.loads((folder / "metrics.json").read_text())
    log = pd.read_csv(folder / "train_log.csv")
    train, val = log[log["split"] == "train"], log[log["split"] == "val"]
    arms.append({"spike_guard": guard, "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
                 "rollbacks": metrics["rollbacks"], "max_train_loss": float(train["loss"].max()),
                 "worst_val_loss": float(val["loss"].max()), "val": metrics["val"]})
# the guard replayed on the losses of trainings that ran without it (the codec trainings of codec.train,
# scalable.train and variable_rate.train): where it would first have rolled back (until then a guarded run is the
# same run) and the highest ratio of a loss to the median of the previous 100 until then
replayed = []
for run in runs:
    logs = sorted(log for kind in ("codecs", "scalable", "variable_rate")
                  for log in (run / kind).rglob("train_log.csv"))
    if not logs and run != runs[-1]:
        raise SystemExit(f"spikes.sh: no training logs under {run}; run bash bench/kodak/chains.sh first")
    for log_path in logs:
        guard, first, highest = SpikeGuard(factor, {}), None, 0.0
        for step, loss in pd.read_csv(log_path).query("split == 'train'")[["step", "loss"]].itertuples(index=False):
            median = guard.median()
            if guard.check(int(step), float(loss)) is not None:
                first = int(step)
                break
            highest = max(highest, loss / median) if median else highest
        replayed.append({"run": run.name, "training": str(log_path.parent.relative_to(run)), "first_rollback": first,
                         "highest_ratio_before": round(highest, 2)})
summary = {"study": study, "codec": codec, "lmbda": 0.013, "factor": factor,
           "init": "the chain's lmbda0.025 codec", "split": "val", "val_images": val_images,
           "image_size": f"{side}×{side}", "arms": arms, "replayed": replayed}
Path("bench/results-summary/kodak-spike-guard.json").write_text(json.dumps(summary, indent=1) + "\n")
PY
.venv/bin/python bench/summary.py
