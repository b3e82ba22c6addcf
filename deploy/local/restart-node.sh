#!/usr/bin/env bash
# Restart one node of the local cluster started by deploy/local/start.sh:
#   deploy/local/restart-node.sh n3      (or 3)
# If the PID recorded for the node still runs it (lib.sh is_ours), SIGTERM it
# and wait; then start the node again with the arguments start.sh used, put
# its new PID in place of the old one in strata-local/pids (so stop.sh stops
# it) and wait for its /ready.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"
D=$(show "$DIR")
[ $# -eq 1 ] || { echo "usage: deploy/local/restart-node.sh n1|n2|n3" >&2; exit 2; }
id=$1
[[ "$id" =~ ^[0-9]+$ ]] && id=n$id
case "$id" in n1 | n2 | n3) ;; *) echo "unknown node '$1' (n1, n2 or n3)" >&2; exit 2 ;; esac
[ -f "$PIDS" ] || { echo "no local cluster running ($D/pids missing); start it with deploy/local/start.sh" >&2; exit 1; }
need_binaries
line=${id#n}
old=$(sed -n "${line}p" "$PIDS")
if is_ours "$old" "$id"; then
  echo "stopping $id (PID $old)"
  stop_ours "$old $id"
fi
start_node "$id"
tmp=$(mktemp "$PIDS.XXXXXX")
awk -v n="$line" -v pid="$STARTED_PID" 'NR == n { $0 = pid } { print }' "$PIDS" > "$tmp"
mv "$tmp" "$PIDS"
tls_vars
wait_ready "$SCHEME://$(node_http "$id")/ready" 30
echo "$id started: PID $STARTED_PID (was ${old:-none}; recorded in $D/pids)"
