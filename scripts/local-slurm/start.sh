#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for tests/test_slurm.py and for trying profiles/slurm locally.
# Runs as root (Debian/Ubuntu): installs slurm-wlm + munge with apt when missing, writes slurm.conf/gres.conf for
# this host with LRMREPRO_FAKE_GPUS (default 2) fake GPUs, starts munged/slurmctld/slurmd, waits until the node
# is idle. Fake GPUs are character devices with /dev/null's numbers (mknod c 1 3): SLURM schedules `--gpus=N`
# against them and sets CUDA_VISIBLE_DEVICES, no GPU is needed. Idempotent; stop with scripts/local-slurm/stop.sh.
set -euo pipefail
BASE=${LRMREPRO_SLURM_BASE:-/tmp/lrmrepro-slurm}; RUN=$BASE/run; CONF=/etc/slurm
GPUS=${LRMREPRO_FAKE_GPUS:-2}
HOST=$(hostname -s); CPUS=$(nproc)
MEM=$(awk '/MemTotal/{print int($2/1024*0.8)}' /proc/meminfo)   # MiB; below the real value or slurmd drains
[ "$(id -u)" = 0 ] || { echo "start.sh must run as root (it installs packages and starts daemons)" >&2; exit 1; }
running() { local p; p=$(cat "$1" 2>/dev/null) && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$2" ]; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
[ -d /run/systemd/system ] && systemctl stop slurmctld slurmd 2>/dev/null || true   # packaged units would clash
mkdir -p "$BASE"/{state/ctld,state/d,log,run,dev} "$CONF"

gpu_files=""
for ((i = 0; i < GPUS; i++)); do
  [ -c "$BASE/dev/gpu$i" ] || mknod "$BASE/dev/gpu$i" c 1 3
  gpu_files+="${gpu_files:+,}$BASE/dev/gpu$i"
done
{ echo "AutoDetect=off"; if [ "$GPUS" -gt 0 ]; then echo "NodeName=$HOST Name=gpu Type=fake File=$gpu_files"; fi; } > "$CONF/gres.conf.new"
gres=""; [ "$GPUS" -gt 0 ] && gres=" Gres=gpu:fake:$GPUS"
cat > "$CONF/slurm.conf.new" <<CONF
ClusterName=lrmrepro
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
KillWait=5
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM$gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
for f in slurm.conf gres.conf; do
  if cmp -s "$CONF/$f.new" "$CONF/$f"; then rm "$CONF/$f.new"; else mv "$CONF/$f.new" "$CONF/$f"; changed=1; fi
done
if [ $changed = 1 ] && { running "$RUN/slurmctld.pid" slurmctld || running "$RUN/slurmd.pid" slurmd; }; then
  echo "configuration changed: restarting the daemons"; "$(dirname "$0")/stop.sh"
fi

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1024 count=1 status=none > /etc/munge/munge.key
    chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- munged
  cp /run/munge/munged.pid "$RUN/munged.pid"      # stop.sh stops munged only when we started it
fi
running "$RUN/slurmctld.pid" slurmctld || slurmctld
running "$RUN/slurmd.pid" slurmd || slurmd

state=""
for _ in $(seq 120); do                            # up to ~60 s for the node to become usable
  state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    *drain*|inval*|down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
sinfo -N -o "%N %T %c %m %G"
case "$state" in idle|mixed|allocated) ;; *) echo "node $HOST is '$state', see $BASE/log" >&2; exit 1 ;; esac
timeout 60 srun -t 1 true
echo "local SLURM cluster is up (partition debug, $GPUS fake GPUs of type 'fake')"
