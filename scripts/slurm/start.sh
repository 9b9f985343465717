#!/usr/bin/env bash
# Start a real single-node Slurm on this machine (Debian's packages, as root, no systemd needed): the cluster that
# CI submits the pipeline to (tests/workflow/test_slurm.py), and a way to try workflow/profiles/slurm by hand.
#
#   bash scripts/slurm/start.sh                 # install if needed, start munged, slurmctld, slurmd; wait for an idle node
#   bash scripts/slurm/start.sh --install-only  # only install the packages (what .ci/run does)
#   bash scripts/slurm/stop.sh                  # stop exactly the daemons this script started
#
# One node named `hostname -s` (NodeAddr 127.0.0.1) with the CPUs and memory `slurmd -C` measures, in one partition
# `cpu` without GPUs; no accounting database, so status checks must use squeue (scripts/pipeline.sh passes
# `--slurm-status-command squeue` when `sacct` cannot answer, and MinJobAge here is long enough for that).
# Running again while its daemons run only waits for the node. Environment:
#   TASKCODEC_SLURM_STATE        spool, logs and the recorded pids (default /run/taskcodec-slurm)
#   TASKCODEC_SLURM_MIN_JOB_AGE  seconds a finished job stays visible to squeue (default 1800)
set -euo pipefail
STATE=${TASKCODEC_SLURM_STATE:-/run/taskcodec-slurm}
MIN_JOB_AGE=${TASKCODEC_SLURM_MIN_JOB_AGE:-1800}
CONF=/etc/slurm/slurm.conf
MARK="# written by taskcodec scripts/slurm/start.sh"
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
started=$(date +%s.%N)

die() { echo "slurm/start.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and starts the Slurm daemons)"

# the pid this script recorded for daemon $1, if that process still runs that daemon
running_pid() {
    local pid
    pid=$(cat "$STATE/started/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

install_packages() {
    local missing=0 tool
    for tool in munged slurmctld slurmd sbatch squeue scontrol; do
        command -v "$tool" >/dev/null || missing=1
    done
    [ "$missing" = 0 ] && return 0
    command -v apt-get >/dev/null \
        || die "Slurm is not installed and there is no apt-get here; install slurmctld, slurmd, slurm-client and munge"
    # keep the packages' service scripts from starting daemons we would not know about
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    echo "slurm/start.sh: installing slurmctld slurmd slurm-client munge"
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null; } || rc=$?
    [ -n "$created" ] && rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get could not install the Slurm packages (exit $rc)"
}

# start "$@" detached in its own session with its output in $STATE/<name>.log; record its pid as the daemon's
start_daemon() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 &
    local pid=$!
    echo "$pid" > "$STATE/started/$name.pid"
    sleep 0.2
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || die "$name did not start; see $STATE/$name.log"
}

write_config() {
    local node=$1 cpus memory
    [ ! -e "$CONF" ] || grep -qxF "$MARK" "$CONF" \
        || die "$CONF exists and was not written by this script; this machine has its own Slurm: use it instead"
    # the hardware as slurmd sees it; declaring more memory than this would drain the node
    local hw
    hw=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [ -n "$cpus" ] && [ -n "$memory" ] || die "could not read CPUs and RealMemory from 'slurmd -C': $hw"
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<EOF
$MARK
ClusterName=taskcodec
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pidfile
SlurmdPidFile=$STATE/slurmd.pidfile
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# no cgroups: processes are tracked by parentage, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# finished jobs stay visible to squeue (the status command without accounting) this long
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
# a job asking more than a node has is rejected at submission (Snakemake reports sbatch's message), not left pending
EnforcePartLimits=ALL
SlurmctldTimeout=30
SlurmdTimeout=30
# scancel --signal=TERM, then this many seconds before SIGKILL
KillWait=30
# a GPU cluster adds: GresTypes=gpu, Gres=gpu:<model>:<count> on its NodeName lines, a gres.conf, and a partition
# of those nodes; the profile then names that partition for the GPU rules (README: Running on a SLURM cluster)
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
# without DefMemPerCPU a job without --mem would take the node's whole memory
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$((memory / cpus / 2))
EOF
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged already answers (ours from before, or the machine's own): use it
    fi
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    fi
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
    local i
    for i in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged does not answer; see $STATE/munged.log"
}

node_state() { sinfo -h -N -n "$1" -o %T 2>/dev/null | head -1; }

install_packages
[ "${1:-}" != --install-only ] || exit 0
node=$(hostname -s)
mkdir -p "$STATE/started" "$STATE/ctld" "$STATE/spool"

if running_pid slurmctld >/dev/null && running_pid slurmd >/dev/null; then
    echo "slurm/start.sh: already running (pids in $STATE/started)"
else
    for daemon in slurmctld slurmd; do
        running_pid "$daemon" >/dev/null && die "$daemon from an earlier start still runs; run scripts/slurm/stop.sh first"
        other=$(pidof "$daemon" || true)
        [ -z "$other" ] || die "a $daemon this script did not start is running (pid $other); stop it or use that cluster"
    done
    write_config "$node"
    start_munge
    start_daemon slurmctld slurmctld -D -c -f "$CONF"  # -c: no jobs or node state from an earlier start
    start_daemon slurmd slurmd -D -f "$CONF" -N "$node"
fi

state=""
for i in $(seq 120); do
    state=$(node_state "$node")
    case "$state" in
        idle|mixed|allocated) break ;;
        drain*|down*|fail*)
            # an earlier run's state (e.g. after a restart) that ReturnToService has not cleared yet
            scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated) ;;
    *) die "node $node is '${state:-unknown}' after 60 s: $(scontrol show node "$node" 2>&1 | grep -o 'Reason=.*' \
        || true); logs in $STATE" ;;
esac
printf 'slurm/start.sh: node %s is %s (partition cpu, %s CPUs) after %.1f s; stop with scripts/slurm/stop.sh\n' \
    "$node" "$state" "$(sinfo -h -n "$node" -o %c)" "$(awk "BEGIN { print $(date +%s.%N) - $started }")"
