#!/usr/bin/env bash
# Stop the daemons that scripts/local-slurm/start.sh started (by PID file; nothing else is touched).
#   stop.sh [--purge] [slurmd] [slurmctld] [munged]     default: all three
# Naming daemons stops only those (tests stop what they started and leave a cluster that was already up).
# --purge also removes the state, logs, fake devices and the slurm.conf/gres.conf it wrote.
set -uo pipefail
BASE=${LRMREPRO_SLURM_BASE:-/tmp/lrmrepro-slurm}; RUN=$BASE/run
PURGE=0; WHICH=()
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    slurmd|slurmctld|munged) WHICH+=("$a") ;;
    *) echo "usage: $0 [--purge] [slurmd] [slurmctld] [munged]" >&2; exit 2 ;;
  esac
done
[ ${#WHICH[@]} -gt 0 ] || WHICH=(slurmd slurmctld munged)
wanted() { local w; for w in "${WHICH[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
stop_pid() {  # pidfile expected-comm
  local p; p=$(cat "$1" 2>/dev/null) || return 0
  if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$2" ]; then
    kill "$p"
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
    echo "stopped $2 ($p)"
  fi
  rm -f "$1"
}
if wanted slurmd && [ -s "$RUN/slurmctld.pid" ] && command -v squeue >/dev/null; then   # cancel jobs so their steps end too
  ids=$(squeue -h -o %A 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    scancel $ids
    for _ in $(seq 40); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi
for d in slurmd slurmctld munged; do   # in this order: slurmd reports to slurmctld, both authenticate with munged
  if wanted "$d"; then stop_pid "$RUN/$d.pid" "$d"; fi
done
if [ $PURGE = 1 ]; then rm -rf "$BASE"/{state,log,dev} /etc/slurm/slurm.conf /etc/slurm/gres.conf; fi
exit 0
