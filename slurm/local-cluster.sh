#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, from Debian's packages (slurmctld, slurmd,
# slurm-client, munge), for testing the workflow's SLURM profile against a scheduler.
#
#   slurm/local-cluster.sh install   # apt-get the packages (root, Debian)
#   slurm/local-cluster.sh start     # write the config, start munged, slurmctld and slurmd
#   slurm/local-cluster.sh status    # sinfo
#   slurm/local-cluster.sh stop
#
# State, spool and logs live under $PARAMDELTA_SLURM_DIR (default /tmp/paramdelta-slurm).
# The configuration goes where every SLURM command looks for it, /etc/slurm/slurm.conf:
# the executor plugin's job step drops SLURM_* variables (SLURM_CONF too) before its srun,
# so a configuration elsewhere would not be found inside jobs. A slurm.conf that this
# script did not write is never overwritten; `stop` removes the one it wrote.
#
# No cgroups (proctrack/linuxproc, task/none) and no accounting daemon: job states come from
# squeue, so finished jobs are kept visible there for an hour (MinJobAge), and the profile
# is run with --slurm-status-command squeue. Needs root (slurmd starts jobs as their user).
set -euo pipefail

DIR=${PARAMDELTA_SLURM_DIR:-/tmp/paramdelta-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# paramdelta local test cluster (slurm/local-cluster.sh)"
NODE=localnode
PARTITION=${PARAMDELTA_SLURM_PARTITION:-debug}

die() { echo "local-cluster: $*" >&2; exit 1; }

install() {
    [ "$(id -u)" = 0 ] || die "installing Debian's SLURM packages needs root"
    command -v apt-get >/dev/null || die "apt-get not found: this script uses Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    # What this machine has, as slurmd sees it; memory is rounded down a little so that
    # slurmd never finds less than the config promises.
    local hw cpus memory
    hw=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    memory=$((memory * 95 / 100))
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$(dirname "$CONF")"
    if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
        die "$CONF exists and was not written by this script: not overwriting a real cluster's configuration"
    fi
    cat >"$CONF" <<EOF
$MARK
ClusterName=paramdelta-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${PARAMDELTA_SLURMCTLD_PORT:-16817}
SlurmdPort=${PARAMDELTA_SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MinJobAge=3600
KillWait=10
InactiveLimit=0
Waittime=0
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    [ "$(id -u)" = 0 ] || die "starting slurmd needs root"
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || die "$tool not found; run: $0 install"
    done
    stop quiet
    write_config
    export SLURM_CONF=$CONF
    if ! munge -n >/dev/null 2>&1; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- /usr/sbin/munged
    fi
    slurmctld -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    # Wait until the node takes jobs.
    for _ in $(seq 60); do
        if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
            echo "SLURM is up: partition $PARTITION, node $NODE ($(sinfo -h -N -o '%c CPUs, %m MB'))"
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "the node did not come up (logs above, in $DIR/log)"
}

stop() {
    local pidfile pid
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
    done
    # Without cgroups (proctrack/linuxproc) a process that left its job's process tree
    # can outlive a cancelled job: end whatever still carries a job id of this cluster.
    for proc in /proc/[0-9]*; do
        if grep -qz '^SLURM_JOB_ID=' "$proc/environ" 2>/dev/null; then kill -9 "${proc#/proc/}" 2>/dev/null || true; fi
    done
    # Jobs and state of an earlier cluster must not leak into the next one.
    rm -rf "$DIR/state" "$DIR/spool"
    if [ -e "$CONF" ] && head -1 "$CONF" | grep -qF "$MARK"; then rm -f "$CONF"; fi
    [ "${1:-}" = quiet ] || echo "SLURM stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF=$CONF sinfo ;;
    *) die "usage: $0 install|start|stop|status" ;;
esac
