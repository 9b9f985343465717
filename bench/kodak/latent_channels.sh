#!/usr/bin/env bash
# Did the flat top of the Kodak study's curve with M = 64 come from its latent's capacity (bench/README.md, "Twice the
# latent channels"; M = 128 won, and is the study's codec now)? Trains the study's largest λ from scratch twice side by
# side, one core each, for the study's CPU budget: with N = 48, M = 64 latent channels (bench/kodak/m64.yaml) and with
# twice the latent channels (M = 128, bench/kodak/m128.yaml), the first link of each one's chain. Writes
# bench/results-summary/kodak-latent-channels.json (both, on the photos' validation split). If M = 128's validation loss
# is lower by more than the largest difference between two runs of the study's recipe (kodak-m64.json and
# kodak-chain-down-val.json: 2.3 %, at λ 0.025), both chains then go on down side by side and are evaluated on the
# validation split (bench/kodak/chains.sh m64 m128: kodak-m64-val.json, kodak-m128-val.json); otherwise they stop there.
# About 30 min, then 1.5 h, on 2 cores.
#   bash bench/kodak/latent_channels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/kodak/common.sh
bash scripts/setup.sh
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed training stops the other
study=bench/kodak/params.yaml
sides=(bench/kodak/m64.yaml bench/kodak/m128.yaml)  # narrow, then wide
spread=0.023
# the model.pt of the study's largest λ trained by each overlay, in its own results_dir
paths=$(.venv/bin/python - "$study" "${sides[@]}" <<'PY'
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
mapfile -t models <<< "$paths"
for i in 0 1; do
    .venv/bin/snakemake --profile workflow/profiles/local --cores 1 --nolock --configfile "$study" "${sides[$i]}" \
        -- "${models[$i]}" &
done
wait -n; wait -n  # the first failure ends the script, and the trap stops the other training
status=0
.venv/bin/python - "$study" "$(results_of "${sides[0]}")" "$spread" "${models[@]}" <<'PY' || status=$?
import json, sys
from pathlib import Path
import pandas as pd
import yaml
study, narrow, spread, models = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), [Path(p) for p in sys.argv[4:]]
side = yaml.safe_load(open(study))["prepare"]["image_size"]
val_images = int((pd.read_csv(narrow / "prepared/manifest.csv")["split"] == "val").sum())
arms = []
for model in models:
    metrics = json.loads((model.parent / "metrics.json").read_text())
    arms.append({"codec": f"{metrics['arch']}/{model.parent.parent.name}", "steps": metrics["steps"],
                 "train_seconds": metrics["train_seconds"], "val": metrics["val"]})
summary = {"study": study, "lmbda": metrics["lmbda"], "split": "val", "val_images": val_images,
           "image_size": f"{side}×{side}", "arms": arms}
Path("bench/results-summary/kodak-latent-channels.json").write_text(json.dumps(summary, indent=1) + "\n")
gain = 1 - arms[1]["val"]["loss"] / arms[0]["val"]["loss"]
print(f"latent_channels.sh: M = 128's validation loss is {100 * gain:.1f} % lower than M = 64's at λ "
      f"{metrics['lmbda']:g}")
sys.exit(0 if gain > spread else 3)
PY
case $status in
    0) bash bench/kodak/chains.sh m64 m128 ;;  # their largest λ is trained: each chain goes on from it
    3) echo "latent_channels.sh: not beyond the spread of two runs ($spread): the chains stop at their first link"
       .venv/bin/python bench/summary.py ;;
    *) exit "$status" ;;
esac
