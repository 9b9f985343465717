#!/usr/bin/env bash
# Stop the Slurm daemons that scripts/slurm/start.sh started (by the pids it recorded), after cancelling the jobs
# still on that cluster. Daemons it did not start are left alone. TASKCODEC_SLURM_STATE as for start.sh.
set -euo pipefail
STATE=${TASKCODEC_SLURM_STATE:-/run/taskcodec-slurm}
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

pid_of() {  # the recorded pid of daemon $1 if that process still runs it
    local pid
    pid=$(cat "$STATE/started/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

if pid_of slurmctld >/dev/null; then
    # jobs left over (e.g. from an interrupted test) would outlive slurmd as orphaned job steps
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 40); do [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
fi
stopped=()
for daemon in slurmd slurmctld munged; do
    pid=$(pid_of "$daemon") || { rm -f "$STATE/started/$daemon.pid"; continue; }
    kill -TERM "$pid"
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid"
    rm -f "$STATE/started/$daemon.pid"
    stopped+=("$daemon")
done
echo "slurm/stop.sh: stopped ${stopped[*]:-nothing (no daemon started by scripts/slurm/start.sh is running)}"
