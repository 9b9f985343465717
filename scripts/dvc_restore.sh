#!/usr/bin/env bash
# Run a DVC command that restores files (pull, checkout, exp apply ...), then mark the restored
# prepared data and checkpoints up to date in pipeline order, so Snakemake does not retrain because
# the restored files got new, arbitrary modification times.
#   bash scripts/dvc_restore.sh pull
#   bash scripts/dvc_restore.sh exp apply <experiment>
# Without dvc.lock (a fresh clone: the repository commits no run) pull and checkout restore only the data of
# the .dvc files, and nothing is marked: outputs made from other data must be remade.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m taskcodec.run_lock results  # not while a pipeline run writes there
targets=()
if [[ ! -f dvc.lock && " pull checkout " == *" ${1:-} "* ]]; then
    mapfile -t targets < <(git ls-files '*.dvc')
    echo "taskcodec: no dvc.lock, so no pipeline run to restore: dvc $1 restores the data of ${#targets[@]} .dvc file(s)"
    (( ${#targets[@]} )) || exit 0
fi
.venv/bin/dvc "$@" "${targets[@]}"
[[ -f dvc.lock ]] || exit 0
# the outputs DVC versions together with their inputs (rule `versioned`); --touch only updates the times of
# outdated ones, upstream first. The latent classifiers depend on the latent caches, which are recomputed.
exec .venv/bin/snakemake --profile workflow/profiles/local --touch versioned --quiet
