#!/usr/bin/env bash
# Stop the local cluster started by deploy/local/start.sh (SIGTERM by PID,
# wait up to 15 s, then SIGKILL). Data stays in strata-local/data.
set -uo pipefail
cd "$(dirname "$0")/../.."
PIDS=strata-local/pids
[ -f "$PIDS" ] || { echo "no local cluster running (strata-local/pids missing)"; exit 0; }
mapfile -t pids < "$PIDS"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for _ in $(seq 150); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.1
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { echo "killing $p"; kill -KILL "$p"; }; done
rm -f "$PIDS"
echo "stopped (data kept in strata-local/data; rm -rf strata-local to start fresh)"
