#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, for CI and for trying profiles/slurm.
#
#   sudo .ci/slurm-up.sh          # install (Debian/Ubuntu apt), configure, start, wait for idle
#   sudo .ci/slurm-up.sh --down   # stop the daemons this script started
#
# The node is this host with its real CPU count and memory (from `slurmd -C`), in one
# partition `ci` (the default). No accounting database: `sacct` is not usable, so the profile
# queries job status with `squeue` (MinJobAge keeps finished jobs visible for 10 minutes).
# GPUs: with NVIDIA device files (/dev/nvidia0, ...) the node gets a `gpu` GRES bound to them;
# without, FAKE_GPUS (default: one per core) fake `gpu` GRES backed by plain files, so that
# the GPU requests of profiles/slurm (--gpus=1) schedule; such jobs then train on the CPU.
#
# Idempotent: reruns rewrite the config only when it changes and restart only what is down.
# Exits 0 with "slurm-up: SKIP ..." when the cluster cannot be started (no apt-get, no root,
# daemons refuse to start), so a CI job can go on and the live tests skip themselves.
set -uo pipefail

FAKE_GPUS="${FAKE_GPUS:-$(nproc)}"   # fake GPUs when there is no NVIDIA device
CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
WAIT_S="${SLURM_UP_WAIT_S:-60}"

say() { echo "slurm-up: $*"; }
skip() { say "SKIP: $*"; exit 0; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null || skip "needs root or passwordless sudo"
    SUDO="sudo -n"
fi

pid_alive() { [[ -s "$1" ]] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ "${1:-}" == "--down" ]]; then
    for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid" /run/munge/munged.pid; do
        if pid_alive "$pidfile"; then
            say "stopping $(basename "$pidfile" .pid)"
            $SUDO kill "$(cat "$pidfile")"
        fi
    done
    exit 0
fi

# --- packages ------------------------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || skip "slurm is not installed and apt-get is absent"
    say "installing slurm-wlm and munge with apt-get"
    $SUDO apt-get update -qq >/dev/null || skip "apt-get update failed"
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || skip "apt-get install slurm-wlm munge failed"
fi

# --- munge ---------------------------------------------------------------------------------
if ! $SUDO test -s /etc/munge/munge.key; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
        $SUDO mungekey --create --force >/dev/null
    else
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
$SUDO chown munge:munge /etc/munge/munge.key && $SUDO chmod 400 /etc/munge/munge.key
$SUDO install -d -o munge -g munge -m 0755 /run/munge
$SUDO install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! pid_alive /run/munge/munged.pid; then
    say "starting munged"
    $SUDO runuser -u munge -- /usr/sbin/munged || skip "munged did not start"
fi
for _ in $(seq 20); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n </dev/null | unmunge >/dev/null 2>&1 || skip "munge round trip failed"

# --- slurm.conf ----------------------------------------------------------------------------
HOST=$(hostname -s)
# `slurmd -C` prints this host's real layout: NodeName=... CPUs=.. ... RealMemory=..
NODE_LINE=$(slurmd -C 2>/dev/null | head -n1)
[[ "$NODE_LINE" == NodeName=* ]] || skip "slurmd -C gave no node line"
NODE_LINE=$(sed -E "s/^NodeName=[^ ]+/NodeName=$HOST/" <<<"$NODE_LINE")
# keep some memory for the OS so that the node is not drained for having less than declared
REAL_MEM=$(grep -oE 'RealMemory=[0-9]+' <<<"$NODE_LINE" | cut -d= -f2)
NODE_MEM=$(( REAL_MEM * 9 / 10 ))
NODE_LINE=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$NODE_MEM/" <<<"$NODE_LINE")

shopt -s nullglob
NV_DEVS=(/dev/nvidia[0-9]*)
shopt -u nullglob
if (( ${#NV_DEVS[@]} > 0 )); then
    N_GPUS=${#NV_DEVS[@]}
    GRES_LINE="NodeName=$HOST Name=gpu File=/dev/nvidia[0-$(( N_GPUS - 1 ))]"
elif (( FAKE_GPUS > 0 )); then
    # Slurm drops file-less GPUs, so the fake ones get plain files as their "devices"
    N_GPUS=$FAKE_GPUS
    $SUDO install -d -m 0755 "$CONF_DIR/fake-gpu"
    for i in $(seq 0 $(( N_GPUS - 1 ))); do $SUDO touch "$CONF_DIR/fake-gpu/nvidia$i"; done
    GRES_LINE="NodeName=$HOST Name=gpu File=$CONF_DIR/fake-gpu/nvidia[0-$(( N_GPUS - 1 ))]"
else
    N_GPUS=0
    GRES_LINE="# no GPUs"
fi
GRES_NODE=""
(( N_GPUS > 0 )) && GRES_NODE="Gres=gpu:$N_GPUS"

$SUDO install -d -m 0755 "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
TMP_CONF=$(mktemp)
cat >"$TMP_CONF" <<EOF
# written by .ci/slurm-up.sh: a one-node CI cluster; do not use in production
ClusterName=ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue-based status checks need finished jobs to stay visible for a while
MinJobAge=600
KillWait=10
InactiveLimit=0
Waittime=0
$NODE_LINE $GRES_NODE State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
TMP_GRES=$(mktemp)
echo "$GRES_LINE" >"$TMP_GRES"

CHANGED=0
if ! cmp -s "$TMP_CONF" "$CONF_DIR/slurm.conf" || ! cmp -s "$TMP_GRES" "$CONF_DIR/gres.conf"; then
    say "writing $CONF_DIR/slurm.conf ($NODE_LINE $GRES_NODE)"
    $SUDO install -m 0644 "$TMP_CONF" "$CONF_DIR/slurm.conf"
    $SUDO install -m 0644 "$TMP_GRES" "$CONF_DIR/gres.conf"
    CHANGED=1
fi
rm -f "$TMP_CONF" "$TMP_GRES"

# --- daemons -------------------------------------------------------------------------------
if (( CHANGED )); then
    for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"; do
        if pid_alive "$pidfile"; then
            say "config changed: stopping $(basename "$pidfile" .pid)"
            $SUDO kill "$(cat "$pidfile")"
            for _ in $(seq 20); do pid_alive "$pidfile" || break; sleep 0.5; done
        fi
    done
fi
if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    say "starting slurmctld"
    # -i: ignore (possibly stale) saved state from an earlier config
    $SUDO slurmctld -i || skip "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    say "starting slurmd"
    $SUDO slurmd || skip "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

# --- wait for the node ---------------------------------------------------------------------
state=""
for _ in $(seq $(( WAIT_S * 2 ))); do
    state=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|unknown*|"")
            # a node that was down before (e.g. an old config) is brought back explicitly
            [[ "$state" == down* || "$state" == drain* ]] \
                && $SUDO scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated)
        say "up: node $HOST is $state ($NODE_LINE $GRES_NODE)"
        sinfo ;;
    *)
        say "node $HOST did not become idle (state '${state:-none}'); last log lines:"
        $SUDO tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" 2>/dev/null
        skip "cluster not usable" ;;
esac
