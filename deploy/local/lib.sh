# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are used by the scripts that source it
# Shared by deploy/local/start.sh, stop.sh and restart-node.sh (sourced, not run).
#
# What: where the local cluster lives, which binaries run it, how a node is
# started, and how a PID listed in the pids file is checked before anything
# signals it. Why: the pids file outlives the processes (a node killed by
# hand, a reboot), and a PID the kernel has since given to another program
# must never be signalled. How: a PID counts as ours only while
# /proc/PID/cmdline is strata-node (with the expected --node-id) or
# strata-router, started with --config <this cluster's cluster.ini>.
#
# Environment:
#   STRATA_LOCAL_DIR  cluster dir (config, pids, data, logs); default <repo>/strata-local
#   STRATA_BUILD_DIR  use the binaries already built there (no dependency install,
#                     no build); default <repo>/build, built by start.sh
#
# The pids file holds one PID per line, in the order n1, n2, n3, router.
# Lines after the fourth (older start.sh versions told users to append a
# restarted node's PID) may be any strata-node/strata-router of this cluster.

LOCAL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# resolve relative paths against the caller's directory, before the cd below
if [ -n "${STRATA_LOCAL_DIR:-}" ]; then
  DIR=$(realpath -m -- "$STRATA_LOCAL_DIR")
else
  DIR="$LOCAL_ROOT/strata-local"
fi
if [ -n "${STRATA_BUILD_DIR:-}" ]; then
  BUILD=$(realpath -m -- "$STRATA_BUILD_DIR")
  PREBUILT=1
else
  BUILD="$LOCAL_ROOT/build"
  PREBUILT=0
fi
cd "$LOCAL_ROOT" || exit 1
CONFIG="$DIR/cluster.ini"
PIDS="$DIR/pids"
PID_NAMES=(n1 n2 n3 router)
STOP_WAIT_S=15

# show PATH: PATH relative to the repository root when inside it (commands
# printed for the user are run from there)
show() {
  case "$1" in
    "$LOCAL_ROOT"/*) printf '%s\n' "${1#"$LOCAL_ROOT"/}" ;;
    *) printf '%s\n' "$1" ;;
  esac
}

# env_prefix: the STRATA_* settings a printed command needs to reach this
# cluster ("" for the defaults)
env_prefix() {
  local p=""
  [ -n "${STRATA_LOCAL_DIR:-}" ] && p+="STRATA_LOCAL_DIR=$DIR "
  [ "$PREBUILT" = 1 ] && p+="STRATA_BUILD_DIR=$BUILD "
  printf '%s' "$p"
}

# is_ours PID NAME: PID runs this cluster's NAME (n1/n2/n3: strata-node
# --node-id NAME; router: strata-router; any: either), with --config $CONFIG
is_ours() {
  local pid=$1 name=$2 args=() i want_exe config_ok=0 id_ok=0
  [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
  mapfile -d '' -t args 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [ ${#args[@]} -gt 0 ] || return 1 # exited (zombie) or a kernel thread
  case "$name" in
    router) want_exe=strata-router id_ok=1 ;;
    n[0-9]*) want_exe=strata-node ;;
    any) want_exe="${args[0]##*/}" id_ok=1 ;;
    *) return 1 ;;
  esac
  case "$want_exe" in strata-node | strata-router) ;; *) return 1 ;; esac
  [ "${args[0]##*/}" = "$want_exe" ] || return 1
  for ((i = 1; i + 1 < ${#args[@]}; i++)); do
    [ "${args[i]}" = --config ] && [ "${args[i + 1]}" = "$CONFIG" ] && config_ok=1
    [ "${args[i]}" = --node-id ] && [ "${args[i + 1]}" = "$name" ] && id_ok=1
  done
  [ $config_ok = 1 ] && [ $id_ok = 1 ]
}

# stop_ours "PID NAME" ...: SIGTERM each PID that is ours (is_ours), wait up
# to STOP_WAIT_S seconds for them to exit, SIGKILL what is left (checked
# again first). Entries that are not ours are reported and skipped.
stop_ours() {
  local e pid name live=() alive
  for e in "$@"; do
    pid=${e%% *} name=${e#* }
    if is_ours "$pid" "$name"; then
      kill -TERM "$pid" 2>/dev/null && live+=("$e")
    else
      echo "skipping PID $pid ($name): no longer this cluster's $name (stale entry, not signalled)"
    fi
  done
  for _ in $(seq $((STOP_WAIT_S * 10))); do
    alive=0
    for e in "${live[@]}"; do is_ours "${e%% *}" "${e#* }" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for e in "${live[@]}"; do
    if is_ours "${e%% *}" "${e#* }"; then
      echo "killing PID ${e%% *} (${e#* }): still running after ${STOP_WAIT_S} s"
      kill -KILL "${e%% *}" 2>/dev/null || true
    fi
  done
  return 0
}

# node_http ID: the node's http address from cluster.ini
node_http() {
  awk -v id="$1" '
    /^\[/ { in_node = ($0 == "[node \"" id "\"]") }
    in_node && $1 == "http" { print $3; exit }' "$CONFIG"
}

# A cluster started with --secure ([security] in cluster.ini) speaks https
# with the CA in $DIR/tls; tls_vars sets SCHEME (http|https) and CURL_CA
# (curl's --cacert option, or nothing) from the config.
SCHEME=http
CURL_CA=()
tls_vars() {
  if [ -f "$CONFIG" ] && grep -q '^\[security\]' "$CONFIG"; then
    SCHEME=https
    CURL_CA=(--cacert "$DIR/tls/ca.crt")
  else
    SCHEME=http
    CURL_CA=()
  fi
}

# make_certs: a CA and certificates (EC P-256, SAN 127.0.0.1 and localhost)
# in $DIR/tls (mode 700, keys 600): tls.crt for the HTTPS listeners and
# rpc-ID.crt per process (n1 n2 n3 router) for mutual TLS on RPC. An RPC
# certificate names its process (CN and DNS subjectAltName = the node id,
# or "router"): a peer refuses a HELLO whose node id the certificate does
# not name. Kept when they exist already (a restart keeps the same CA);
# RPC certificates made before that rule are made again.
make_certs() {
  local t="$DIR/tls" name id
  mkdir -p "$t"
  chmod 700 "$t"
  (
    umask 077
    if [ ! -f "$t/ca.crt" ]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -keyout "$t/ca.key" -out "$t/ca.crt" -subj "/CN=strata-local CA" 2>/dev/null
    fi
    for name in tls rpc-n1 rpc-n2 rpc-n3 rpc-router; do
      id=${name#rpc-}
      [ "$name" = tls ] && id="strata-local listener"
      if [ -f "$t/$name.crt" ] && { [ "$name" = tls ] ||
           openssl x509 -in "$t/$name.crt" -noout -ext subjectAltName 2>/dev/null |
             grep -q "DNS:$id\(,\|\$\)"; }; then
        continue
      fi
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$([ "$name" = tls ] || echo ",DNS:$id")" > "$t/leaf.ext"
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$t/$name.key" -out "$t/$name.csr" -subj "/CN=$id" 2>/dev/null
      openssl x509 -req -in "$t/$name.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
        -days 365 -out "$t/$name.crt" -extfile "$t/leaf.ext" 2>/dev/null
      rm -f "$t/$name.csr"
    done
  )
  chmod 644 "$t"/*.crt
}

# wait_ready URL SECONDS
wait_ready() {
  for _ in $(seq $(($2 * 10))); do
    curl -sf "${CURL_CA[@]}" "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1 (see $(show "$DIR/logs"))" >&2
  return 1
}

# start_node ID: start strata-node ID in the background (log appended to
# logs/ID.log); its PID is left in STARTED_PID
start_node() {
  "$BUILD/node/strata-node" --config "$CONFIG" --node-id "$1" --data-dir "$DIR/data/$1" \
    </dev/null >>"$DIR/logs/$1.log" 2>&1 &
  STARTED_PID=$!
}

# need_binaries: fail unless the binaries in $BUILD exist
need_binaries() {
  local b
  for b in node/strata-node router/strata-router cli/strata; do
    if [ ! -x "$BUILD/$b" ]; then
      echo "missing $BUILD/$b (STRATA_BUILD_DIR=${STRATA_BUILD_DIR:-<unset>}); build first" >&2
      return 1
    fi
  done
}
