#!/usr/bin/env bash
# Install the Debian packages Strata needs to build and test, if any are missing.
# Safe to run repeatedly; runs apt-get only when something is absent.
set -euo pipefail
# prometheus (+ promtool): the reference for tests/integration/test_promql_compare.py
# and tests/bench/query_bench.py (the tests start their own on 127.0.0.1).
# victoria-metrics (vmagent, victoria-metrics): tests/integration/test_remote_write.py
# sends with vmagent; tests/bench/remote_write_bench.py compares with VictoriaMetrics.
# nodejs + npm: the build bundles the router's web console (router/console, npm ci
# from its lockfile); chromium: tests/integration/test_console.py drives it headless.
# postgresql-client (psql), python3-psycopg2: tests/integration/test_sql.py's clients;
# influxdb (influxd 1.x): tests/bench/sql_bench.py compares with InfluxQL.
PKGS=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
      libuv1-dev libprotobuf-c-dev protobuf-c-compiler liblz4-dev libinih-dev libcmocka-dev
      libhttp-parser-dev zlib1g-dev libxxhash-dev libpcre2-dev libsnappy-dev libjansson-dev libssl-dev openssl
      python3 curl procps prometheus victoria-metrics nodejs npm chromium
      python3-redis redis-tools postgresql-client python3-psycopg2 influxdb)
# Packages wanted for a command: present when the command is (a machine may have
# it from elsewhere, e.g. NodeSource's nodejs, which ships npm and conflicts with
# Debian's npm package; psql from postgresql-client-15).
declare -A CMD_OF=([nodejs]=node [npm]=npm [chromium]=chromium [postgresql-client]=psql
                   [redis-tools]=redis-cli [influxdb]=influxd)
missing=()
for p in "${PKGS[@]}"; do
  if [ -n "${CMD_OF[$p]:-}" ] && command -v "${CMD_OF[$p]}" >/dev/null 2>&1; then
    continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
