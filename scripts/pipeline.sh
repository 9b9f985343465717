#!/usr/bin/env bash
# Set up .venv and run the whole pipeline: on this machine (workflow/profiles/local, the default), or on a SLURM
# cluster from its login node with `--profile workflow/profiles/slurm` (README: Running on a SLURM cluster).
# Extra arguments go to snakemake, e.g. `bash scripts/pipeline.sh --dry-run` or `--config results_dir=out`.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
case " ${args[*]} " in
    *" --profile "*|*" --profile="*) ;;  # the caller's profile replaces the local one
    *) args=(--profile workflow/profiles/local "${args[@]}") ;;
esac
bash scripts/setup.sh
# a SLURM run: stop without sbatch or when a job does not fit its partition; add the status-check arguments the
# cluster needs (preflight checks with .venv's Python, hence after setup)
slurm_args=$(bash scripts/slurm/preflight.sh "${args[@]}")
# shellcheck disable=SC2086 # preflight prints plain words
exec .venv/bin/snakemake "${args[@]}" $slurm_args
