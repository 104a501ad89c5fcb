#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine for the tests (as root; no systemd): a munge key and munged, a
# localhost slurm.conf (this host as controller and node, process tracking by process group, no cgroups, no
# accounting), then slurmctld and slurmd. Prints the slurm.conf path; tests find the cluster through SLURM_CONF.
# Usage: .ci/slurm-up.sh [STATE_DIR]   (idempotent: a running cluster in STATE_DIR is left as it is)
set -euo pipefail
state="${1:-/tmp/tl-slurm}"
conf="$state/slurm.conf"
if [ -f "$conf" ] && SLURM_CONF="$conf" scontrol ping >/dev/null 2>&1 && SLURM_CONF="$conf" sinfo -h -o %T 2>/dev/null | grep -qx idle; then
  echo "$conf"
  exit 0
fi
command -v slurmctld >/dev/null && command -v munged >/dev/null || { echo "slurm-wlm and munge are not installed" >&2; exit 1; }
mkdir -p "$state"/{spool,state,log} /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force
host="$(hostname -s)"
node="$(slurmd -C | head -n1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")"
cat > "$conf" <<CONF
ClusterName=tl
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
slurmctld -f "$conf"
slurmd -f "$conf"
for _ in $(seq 1 30); do
  if SLURM_CONF="$conf" sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "$conf"
    exit 0
  fi
  sleep 1
done
echo "slurm did not come up; see $state/log" >&2
SLURM_CONF="$conf" sinfo >&2 || true
exit 1
