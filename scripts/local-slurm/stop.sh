#!/usr/bin/env bash
# Stop the daemons that scripts/local-slurm/start.sh started (by PID file; nothing else is touched).
# --purge also removes the state, logs, fake devices and the slurm.conf/gres.conf it wrote.
set -uo pipefail
BASE=${LRMREPRO_SLURM_BASE:-/tmp/lrmrepro-slurm}; RUN=$BASE/run
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
if [ -s "$RUN/slurmctld.pid" ] && command -v squeue >/dev/null; then   # cancel jobs so their steps end too
  ids=$(squeue -h -o %A 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    scancel $ids
    for _ in $(seq 40); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi
stop_pid "$RUN/slurmd.pid" slurmd
stop_pid "$RUN/slurmctld.pid" slurmctld
stop_pid "$RUN/munged.pid" munged
if [ "${1:-}" = --purge ]; then rm -rf "$BASE"/{state,log,dev} /etc/slurm/slurm.conf /etc/slurm/gres.conf; fi
exit 0
