#!/usr/bin/env bash
# Checks scripts/pipeline.sh runs before a pipeline run that submits to SLURM. Usage:
#   bash scripts/slurm/preflight.sh <the snakemake arguments, --profile included>
# Prints nothing when the run does not use the slurm executor. Otherwise it stops (exit 2, one sentence) on a
# machine without sbatch, and when a job would ask for more than the partition it goes to allows (CPU cores,
# memory, time, GPUs; a GPU rule sent to a partition without GPUs), one sentence per problem naming the key to
# change (taskcodec.slurm_preflight, with .venv's Python: run scripts/setup.sh first). Then it prints the extra
# snakemake arguments the cluster needs, one per line: on a cluster without job accounting (`sacct` cannot
# answer), `--slurm-status-command squeue`, which works only while SLURM keeps finished jobs visible
# (MinJobAge) for at least 3 x the first status-check delay. Messages go to stderr.
set -euo pipefail

executor="" profile="" status_command="" init_delay=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    arg=${args[i]} next=${args[i + 1]:-}
    case "$arg" in
        --executor|-e) executor=$next ;;
        --executor=*) executor=${arg#*=} ;;
        --profile) profile=$next ;;
        --profile=*) profile=${arg#*=} ;;
        --slurm-status-command) status_command=$next ;;
        --slurm-status-command=*) status_command=${arg#*=} ;;
        --slurm-init-seconds-before-status-checks) init_delay=$next ;;
        --slurm-init-seconds-before-status-checks=*) init_delay=${arg#*=} ;;
    esac
done

# a key of the profile's config.yaml (top-level scalar keys only, which is all this needs)
profile_key() {
    [ -n "$profile" ] && [ -f "$profile/config.yaml" ] || return 0
    sed -n "s/^$1:[[:space:]]*\"\{0,1\}\([^\"#[:space:]]*\)\"\{0,1\}.*/\1/p" "$profile/config.yaml" | head -1
}
executor=${executor:-$(profile_key executor)}
[ "$executor" = slurm ] || exit 0

if ! command -v sbatch >/dev/null; then
    echo "taskcodec: the slurm profile submits jobs with sbatch, which this machine does not have; run the command" \
        "on your cluster's login node, or run here without a profile (bash scripts/pipeline.sh uses" \
        "workflow/profiles/local)" >&2
    exit 2
fi

# every job fits its partition, before any is submitted (SLURM would refuse them one at a time, when their turn comes)
python="$(dirname "$0")/../../.venv/bin/python"
if [ ! -x "$python" ]; then
    echo "taskcodec: the checks before a SLURM run need the project's .venv; run bash scripts/setup.sh first" >&2
    exit 2
fi
"$python" -m taskcodec.slurm_preflight "$@" >&2

status_command=${status_command:-$(profile_key slurm-status-command)}
[ -z "$status_command" ] || exit 0  # chosen by the user
if timeout 20 sacct -n -X --starttime now >/dev/null 2>&1; then
    exit 0  # accounting answers: the plugin's default (sacct) works
fi
init_delay=${init_delay:-$(profile_key slurm-init-seconds-before-status-checks)}
init_delay=${init_delay:-40}  # the plugin's default
min_job_age=$(scontrol show config 2>/dev/null | sed -n 's/^MinJobAge *= *\([0-9]*\).*/\1/p')
if [ -z "$min_job_age" ] || [ "$min_job_age" -lt $((3 * init_delay)) ]; then
    echo "taskcodec: this cluster has no job accounting (sacct cannot answer), so Snakemake must follow its jobs" \
        "with squeue, which needs MinJobAge (${min_job_age:-unknown} s in scontrol show config) of at least 3 x" \
        "slurm-init-seconds-before-status-checks ($init_delay s); lower that key in $profile/config.yaml" \
        "to $((${min_job_age:-0} / 3)) or less, or ask your admins for accounting" >&2
    exit 2
fi
printf '%s\n' --slurm-status-command squeue
