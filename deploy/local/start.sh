#!/usr/bin/env bash
# README command 1: install dependencies, build, start a local Strata cluster
# (3 nodes + 1 router on 127.0.0.1) in ./strata-local/, load sample data once,
# and print what to try next. Stop it with deploy/local/stop.sh; restart one
# node with deploy/local/restart-node.sh ID.
#
# Ports (override with env): ROUTER_PORT=8086, RESP_PORT=6379 (redis-cli), nodes 7401/7402, 7411/7412, 7421/7422
# (NODE_PORT_BASE=7400). STRATA_LOCAL_DIR puts the cluster elsewhere than
# ./strata-local; STRATA_BUILD_DIR runs the binaries already built there
# (no dependency install, no build). See deploy/local/lib.sh.
#
# The sample data (100 hosts x 1 h of devops cpu metrics ending now, made by
# `strata bench`) is loaded by the first start only: a later start on the
# same data (after stop.sh) finds the marker data/sample-loaded (or, for
# data from before markers, the sample's series through the router) and says
# it does not load it again.
#
# --secure: TLS everywhere. A CA and certificates are made with openssl in
# ./strata-local/tls/ (kept across restarts); the router and node HTTP
# listeners speak https, every RPC link is mutual TLS (rpc_tls = on), and
# the script prints how to use curl --cacert and the CLI (STRATA_CACERT).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"
ROUTER_PORT=${ROUTER_PORT:-8086}
PG_PORT=${PG_PORT:-5432}
BASE=${NODE_PORT_BASE:-7400}
SAMPLE_MARK="$DIR/data/sample-loaded"
SECURE=0
for arg in "$@"; do
  case "$arg" in
    --secure) SECURE=1 ;;
    *) echo "usage: deploy/local/start.sh [--secure]" >&2; exit 2 ;;
  esac
done

if [ "$PREBUILT" = 1 ]; then
  need_binaries
  echo "using the binaries in $BUILD (STRATA_BUILD_DIR: no dependency install, no build)"
else
  scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C build strata-node strata-router strata >/dev/null
  echo "built: build/node/strata-node build/router/strata-router build/cli/strata"
fi
B=$(show "$BUILD")
D=$(show "$DIR")
ENVP=$(env_prefix)

if [ -f "$PIDS" ]; then
  echo "a local cluster seems to be running ($D/pids); run ${ENVP}deploy/local/stop.sh first" >&2
  exit 1
fi
mkdir -p "$DIR/logs" "$DIR/data"
for port in "$ROUTER_PORT" "${RESP_PORT:-6379}" "$PG_PORT" $((BASE+1)) $((BASE+2)) $((BASE+11)) $((BASE+12)) $((BASE+21)) $((BASE+22)); do
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; set ROUTER_PORT / RESP_PORT / PG_PORT / NODE_PORT_BASE" >&2
    exit 1
  fi
done
cat > "$CONFIG" <<EOT
; local demo cluster: 3 nodes, 12 shards, 3 replicas each (see docs/configuration.md)
[cluster]
name               = local
shards             = 12
replication_factor = 3
write_consistency  = quorum

[storage]
wal_durability = periodic
retention      = 30d

[router]
listen = 127.0.0.1:$ROUTER_PORT   ; = the router's --listen; read by strata --config
pg_listen = 127.0.0.1:$PG_PORT    ; PostgreSQL wire protocol (psql, drivers; docs/sql.md)

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
if [ "$SECURE" = 1 ]; then
  make_certs
  cat >> "$CONFIG" <<EOT

[security]
tls_cert = $DIR/tls/tls.crt   ; HTTPS on the router and node HTTP listeners
tls_key  = $DIR/tls/tls.key
rpc_tls  = on                 ; mutual TLS on every RPC link (part of the fingerprint)
rpc_ca   = $DIR/tls/ca.crt
rpc_cert = $DIR/tls/rpc-{id}.crt   ; {id} = n1, n2, n3 or router
rpc_key  = $DIR/tls/rpc-{id}.key
users_file = $DIR/users         ; users and hashed tokens (strata user add|list|remove|rotate)
EOT
  # one admin user, made once; its token is kept (mode 600) so later starts can show it
  if [ ! -s "$DIR/users" ] || [ ! -s "$DIR/tls/admin.token" ]; then
    rm -f "$DIR/users"
    (umask 077; "$BUILD/cli/strata" user add admin --role admin --file "$DIR/users" \
      2>/dev/null > "$DIR/tls/admin.token")
  fi
  export STRATA_TOKEN
  STRATA_TOKEN=$(cat "$DIR/tls/admin.token")
fi
tls_vars
if [ "$SECURE" = 1 ]; then CURL_CA+=(-H "Authorization: Bearer $STRATA_TOKEN"); fi

: > "$PIDS"
for n in 1 2 3; do : > "$DIR/logs/n$n.log"; done
: > "$DIR/logs/router.log"
cleanup_on_error() {
  echo "start failed; stopping what was started (logs in $D/logs)" >&2
  STRATA_LOCAL_DIR="$DIR" deploy/local/stop.sh >/dev/null 2>&1 || true
}
trap cleanup_on_error ERR
for n in 1 2 3; do
  start_node "n$n"
  echo "$STARTED_PID" >> "$PIDS"
done
for n in 1 2 3; do wait_ready "$SCHEME://$(node_http "n$n")/ready" 30; done
"$BUILD/router/strata-router" --config "$CONFIG" --listen "127.0.0.1:$ROUTER_PORT" --resp-listen "127.0.0.1:${RESP_PORT:-6379}" \
  </dev/null >>"$DIR/logs/router.log" 2>&1 &
echo $! >> "$PIDS"
R=$SCHEME://127.0.0.1:$ROUTER_PORT
C=curl  # the curl the printed commands use
if [ "$SECURE" = 1 ]; then
  export STRATA_CACERT="$DIR/tls/ca.crt"
  C="curl --cacert $D/tls/ca.crt -H \"Authorization: Bearer \$STRATA_TOKEN\""
fi
wait_ready "$R/ready" 30

# sample data: 100 hosts x 1 h of devops cpu metrics ending now, written
# through the router by `strata bench` (the generator of docs/cli.md), once
# sample_on_router: the sample's host_0 series holds data of the last 31
# days (data loaded by an older start.sh, which left no marker)
sample_on_router() {
  local j
  j=$(curl -sfg "${CURL_CA[@]}" "$R/api/v1/series?match[]=cpu_usage_user{hostname=\"host_0\"}&start=$(($(date +%s) - 31 * 86400))") || return 1
  [[ "$j" == *'"hostname":"host_0"'* ]]
}
if [ ! -f "$SAMPLE_MARK" ] && sample_on_router; then
  echo "cpu_usage_user{hostname=\"host_0\"} found through the router at $(date -u +%FT%TZ)" \
    "(loaded before there were markers)" > "$SAMPLE_MARK"
fi
if [ -f "$SAMPLE_MARK" ]; then
  SAMPLE="Sample data: NOT loaded again; this cluster's data already holds it
($(cat "$SAMPLE_MARK"); marker $D/data/sample-loaded).
For fresh sample data ending now: ${ENVP}deploy/local/stop.sh && rm -rf $D, then start again."
else
  NOW=$(date +%s)
  "$BUILD/cli/strata" bench --router "$R" --hosts 100 --hours 1 --start $((NOW - 3600)) \
    >"$DIR/logs/sample-load.log" 2>&1
  echo "36000 lines, 100 hosts x 1 h of cpu metrics from $(date -u -d @$((NOW - 3600)) +%FT%TZ)" \
    "to $(date -u -d @"$NOW" +%FT%TZ), loaded $(date -u +%FT%TZ)" > "$SAMPLE_MARK"
  SAMPLE="Loaded 36000 lines of sample data (100 hosts x 1 h ending now, 10 fields each;
a later start on this data will not load it again)."
fi
trap - ERR
SECURE_NOTE=""
if [ "$SECURE" = 1 ]; then
  SECURE_NOTE="

Secure: HTTPS on the router and the nodes, mutual TLS between them (CA and
certificates in $D/tls/; rotate: replace tls.crt/tls.key, then kill -HUP the PIDs).
curl needs --cacert $D/tls/ca.crt; the CLI reads the CA from STRATA_CACERT:
  export STRATA_CACERT=$D/tls/ca.crt
  openssl s_client -connect 127.0.0.1:$ROUTER_PORT -CAfile $D/tls/ca.crt -brief </dev/null
Authentication is on ([security] users_file = $D/users). The admin token is in
$D/tls/admin.token; curl and the CLI take it from STRATA_TOKEN:
  export STRATA_TOKEN=\$(cat $D/tls/admin.token)
  redis-cli -p ${RESP_PORT:-6379} --tls --cacert $D/tls/ca.crt --no-auth-warning -a \$STRATA_TOKEN TS.MRANGE - + COUNT 2 FILTER hostname=host_0 __name__=cpu_usage_user
  PGPASSWORD=\$STRATA_TOKEN psql \"host=localhost port=$PG_PORT user=admin sslmode=verify-full sslrootcert=$D/tls/ca.crt\" -c 'SHOW TABLES'
  ${B}/cli/strata user add reader --role read --file $D/users && kill -HUP \$(cat $D/pids)"
fi
cat <<EOT

Strata is running: 3 nodes + 1 router on 127.0.0.1 (data and logs in $D/).
$SAMPLE$SECURE_NOTE

Try:
  $B/cli/strata status --router $R
  $C -s '$R/cluster'
  $C -s '$R/api/v1/labels'
  $C -s '$R/api/v1/label/hostname/values'
  $C -sg '$R/api/v1/export?match[]=cpu_usage_user{hostname="host_1"}'
  echo 'weather,city=paris temp=21.5' | $C -s --data-binary @- '$R/write'
  $C -sg '$R/api/v1/export?match[]=weather_temp'
  $C -s '$SCHEME://$(node_http n1)/api/v1/export?shard=0' | head -2   # one node's local data
  $C -s '$R/metrics' | grep strata_router
PromQL (nodes evaluate rates and partial sums; docs/query.md):
  $B/cli/strata query --router $R 'sum by (region) (rate(cpu_usage_user[5m]))' --start -1h
  $B/cli/strata query --router $R 'topk(3, avg_over_time(cpu_usage_user[10m]))'
  $C -sg '$R/api/v1/query_range?query=max(cpu_usage_user)&start='\$(( \$(date +%s) - 3600 ))'&end='\$(date +%s)'&step=60'
SQL (docs/sql.md): HTTP /sql, and the PostgreSQL protocol at 127.0.0.1:$PG_PORT:
  $C -s --data-binary "SELECT hostname, max(usage_user) FROM cpu GROUP BY hostname ORDER BY 2 DESC LIMIT 3" '$R/sql'
  $C -s -H 'Accept: text/csv' --data-binary "SELECT time_bucket('5 minutes', time) AS t, avg(usage_user) FROM cpu GROUP BY t ORDER BY t" '$R/sql'
  psql -h 127.0.0.1 -p $PG_PORT -U strata -c '\\dt' -c "SELECT count(*) FROM cpu WHERE time > now() - interval '10 minutes'"
Prometheus world (remote write, imports, files; docs/api.md, docs/migrating.md):
  printf 'http_requests_total{code="200"} 7\\n' | $C -s --data-binary @- '$R/api/v1/import/prometheus'
  $C -sg '$R/api/v1/export?match[]=weather_temp' | $C -s --data-binary @- '$R/api/v1/import'
  $B/cli/strata bench --print --hosts 10 --hours 1 | gzip > $D/more.lp.gz
  $B/cli/strata import --router $R $D/more.lp.gz
  Prometheus or vmagent: remote_write url $R/api/v1/write
Replication (RF=3, quorum writes): stop a node, keep writing, watch the hints drain:
  kill \$(sed -n 3p $D/pids)                       # node n3
  echo 'weather,city=oslo temp=3.5' | $C -s -w '%{http_code}\\n' --data-binary @- '$R/write'
  $B/cli/strata status --router $R               # n3 down, hints_pending on it
  ${ENVP}deploy/local/restart-node.sh n3              # starts n3 again, records its new PID in $D/pids
  $B/cli/strata status --router $R               # catching_up, then up
Stop:  ${ENVP}deploy/local/stop.sh
EOT
