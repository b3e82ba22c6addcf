#!/usr/bin/env bash
# Stop the local cluster started by deploy/local/start.sh: SIGTERM every PID
# in strata-local/pids that is still this cluster's strata-node/strata-router
# (checked on /proc/PID/cmdline, see lib.sh), wait up to 15 s, then SIGKILL.
# Entries that are not (a node already killed, a PID reused by another
# program) are reported and never signalled. Data stays in strata-local/data.
set -uo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"
D=$(show "$DIR")
[ -f "$PIDS" ] || { echo "no local cluster running ($D/pids missing)"; exit 0; }
mapfile -t pids < "$PIDS"
entries=()
for i in "${!pids[@]}"; do
  [ -n "${pids[i]}" ] || continue
  entries+=("${pids[i]} ${PID_NAMES[i]:-any}")
done
stop_ours "${entries[@]}"
rm -f "$PIDS"
echo "stopped (data kept in $D/data; rm -rf $D to start fresh)"
