#!/usr/bin/env bash
# README command 1: install dependencies, build, start a local Strata cluster
# (3 nodes + 1 router on 127.0.0.1) in ./strata-local/, load sample data, and
# print what to try next. Stop it with deploy/local/stop.sh.
#
# Ports (override with env): ROUTER_PORT=8086, nodes 7401/7402, 7411/7412, 7421/7422
# (NODE_PORT_BASE=7400).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DIR="$ROOT/strata-local"
ROUTER_PORT=${ROUTER_PORT:-8086}
BASE=${NODE_PORT_BASE:-7400}

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build strata-node strata-router strata >/dev/null
echo "built: build/node/strata-node build/router/strata-router build/cli/strata"

if [ -f "$DIR/pids" ]; then
  echo "a local cluster seems to be running (strata-local/pids); run deploy/local/stop.sh first" >&2
  exit 1
fi
mkdir -p "$DIR/logs"
for port in "$ROUTER_PORT" $((BASE+1)) $((BASE+2)) $((BASE+11)) $((BASE+12)) $((BASE+21)) $((BASE+22)); do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; set ROUTER_PORT / NODE_PORT_BASE" >&2
    exit 1
  fi
done
cat > "$DIR/cluster.ini" <<EOT
; local demo cluster: 3 nodes, 12 shards, 3 replicas each (see docs/configuration.md)
[cluster]
name               = local
shards             = 12
replication_factor = 3
write_consistency  = quorum

[storage]
wal_durability = periodic
retention      = 30d

[node "n1"]
rpc  = 127.0.0.1:$((BASE+1))
http = 127.0.0.1:$((BASE+2))

[node "n2"]
rpc  = 127.0.0.1:$((BASE+11))
http = 127.0.0.1:$((BASE+12))

[node "n3"]
rpc  = 127.0.0.1:$((BASE+21))
http = 127.0.0.1:$((BASE+22))
EOT

wait_ready() { # url, seconds
  for _ in $(seq $(( $2 * 10 ))); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1 (see $DIR/logs)" >&2
  return 1
}

: > "$DIR/pids"
cleanup_on_error() {
  echo "start failed; stopping what was started (logs in strata-local/logs)" >&2
  deploy/local/stop.sh >/dev/null 2>&1 || true
}
trap cleanup_on_error ERR
for n in 1 2 3; do
  build/node/strata-node --config "$DIR/cluster.ini" --node-id n$n --data-dir "$DIR/data/n$n" \
    </dev/null >"$DIR/logs/n$n.log" 2>&1 &
  echo $! >> "$DIR/pids"
done
for n in 1 2 3; do wait_ready "http://127.0.0.1:$((BASE + (n-1)*10 + 2))/ready" 30; done
build/router/strata-router --config "$DIR/cluster.ini" --listen 127.0.0.1:$ROUTER_PORT \
  </dev/null >"$DIR/logs/router.log" 2>&1 &
echo $! >> "$DIR/pids"
wait_ready "http://127.0.0.1:$ROUTER_PORT/ready" 30

# sample data: 100 hosts x 1 h of devops cpu metrics ending now
NOW=$(date +%s)
python3 tests/bench/gen_sample.py --hosts 100 --hours 1 --start $((NOW - 3600)) --out "$DIR/sample.lp"
curl -sf --data-binary @"$DIR/sample.lp" "http://127.0.0.1:$ROUTER_PORT/write" -o /dev/null -w ''
trap - ERR
R=http://127.0.0.1:$ROUTER_PORT
cat <<EOT

Strata is running: 3 nodes + 1 router on 127.0.0.1 (data and logs in strata-local/).
Loaded $(wc -l < "$DIR/sample.lp") lines of sample data (100 hosts x 1 h, 10 fields each).

Try:
  build/cli/strata status --router $R
  curl -s '$R/cluster'
  curl -s '$R/api/v1/labels'
  curl -s '$R/api/v1/label/hostname/values'
  curl -sg '$R/api/v1/export?match[]=cpu_usage_user{hostname="host_1"}'
  echo 'weather,city=paris temp=21.5' | curl -s --data-binary @- '$R/write'
  curl -sg '$R/api/v1/export?match[]=weather_temp'
  curl -s 'http://127.0.0.1:$((BASE+2))/api/v1/export?shard=0' | head -2   # one node's local data
  curl -s '$R/metrics' | grep strata_router
PromQL (nodes evaluate rates and partial sums; docs/query.md):
  build/cli/strata query --router $R 'sum by (region) (rate(cpu_usage_user[5m]))' --start -1h
  build/cli/strata query --router $R 'topk(3, avg_over_time(cpu_usage_user[10m]))'
  curl -sg '$R/api/v1/query_range?query=max(cpu_usage_user)&start='\$(( \$(date +%s) - 3600 ))'&end='\$(date +%s)'&step=60'
Replication (RF=3, quorum writes): stop a node, keep writing, watch the hints drain:
  kill \$(sed -n 3p $DIR/pids)                       # node n3
  echo 'weather,city=oslo temp=3.5' | curl -s -w '%{http_code}\\n' --data-binary @- '$R/write'
  build/cli/strata status --router $R               # n3 down, hints_pending on it
  build/node/strata-node --config $DIR/cluster.ini --node-id n3 --data-dir $DIR/data/n3 2>>$DIR/logs/n3.log & echo \$! >> $DIR/pids
  build/cli/strata status --router $R               # catching_up, then up
Stop:  deploy/local/stop.sh
EOT
