#!/usr/bin/env bash
# Does the flat top of the Kodak study's curve come from its latent's capacity (bench/README.md, "Twice the latent
# channels")? Trains the study's largest λ from scratch twice side by side, one core each, for the study's CPU budget:
# with N = 48, M = 64 latent channels (bench/kodak/m64.yaml) and with twice the latent channels (M = 128: the first
# link of bench/kodak/m128.yaml's chain). Writes bench/results-summary/kodak-latent-channels.json (both, on the
# photos' validation split). If M = 128's validation loss is lower by more than the run-to-run spread of the study's
# trainings (2.3 %), its chain then goes on down and is evaluated on the validation split (bench/kodak/chains.sh
# m128: kodak-m128-val.json); otherwise it stops there. About 30 min on 2 cores, then about 1.5 h on one.
#   bash bench/kodak/capacity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed training stops the other
study=bench/kodak/params.yaml
sides=(bench/kodak/m64.yaml bench/kodak/m128.yaml)  # narrow, then wide
# the model.pt of the study's largest λ trained by each overlay, in its own results_dir
mapfile -t models < <(.venv/bin/python - "$study" "${sides[@]}" <<'PY'
import sys
import yaml
from taskcodec.params import codec_id, number_id
study, *overlays = (yaml.safe_load(open(path)) for path in sys.argv[1:])
top = number_id(max(study["codec"]["sweep"]["lmbdas"]))
for overlay in overlays:
    (entry,) = overlay["codec"]["sweep"]["models"]
    print(f"{overlay['results_dir']}/codecs/{codec_id(entry)}/lmbda{top}/model.pt")
PY
)
for i in 0 1; do
    .venv/bin/snakemake --profile workflow/profiles/local --cores 1 --nolock --configfile "$study" "${sides[$i]}" \
        -- "${models[$i]}" &
done
wait -n && wait -n  # the first failure ends the script, and the trap stops the other training
status=0
.venv/bin/python - "$study" "${models[@]}" <<'PY' || status=$?
import json, sys
from pathlib import Path
import pandas as pd
import yaml
study, models = sys.argv[1], [Path(path) for path in sys.argv[2:]]
side = yaml.safe_load(open(study))["prepare"]["image_size"]
val_images = int((pd.read_csv(models[0].parents[4] / "prepared/manifest.csv")["split"] == "val").sum())
arms = []
for model in models:
    metrics = json.loads((model.parent / "metrics.json").read_text())
    arms.append({"codec": f"{metrics['arch']}/{model.parent.parent.name}", "steps": metrics["steps"],
                 "train_seconds": metrics["train_seconds"], "val": metrics["val"]})
summary = {"study": study, "lmbda": metrics["lmbda"], "split": "val", "val_images": val_images,
           "image_size": f"{side}×{side}", "arms": arms}
Path("bench/results-summary/kodak-latent-channels.json").write_text(json.dumps(summary, indent=1) + "\n")
gain = 1 - arms[1]["val"]["loss"] / arms[0]["val"]["loss"]
print(f"capacity.sh: M = 128's validation loss is {100 * gain:.1f} % lower than M = 64's at λ {metrics['lmbda']:g}")
sys.exit(0 if gain > 0.023 else 3)
PY
case $status in
    0) bash bench/kodak/chains.sh m128 ;;
    3) echo "capacity.sh: not beyond the run-to-run spread (2.3 %): the chain with M = 128 stops at its first link" ;;
    *) exit "$status" ;;
esac
.venv/bin/python bench/summary.py
