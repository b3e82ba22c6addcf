#!/usr/bin/env bash
# README command 1: install dependencies, build, and bring up Strata locally
# with sample data, then print what to try next.
#
# The cluster binaries (strata-node, strata-router) are the next milestone;
# until they exist this runs the storage engine on generated sample data in
# ./strata-local/ and reports what it stored.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build >/dev/null
echo "build ok: $(ls build/tests/bench | grep '^strata-' | tr '\n' ' ')"

GEN="$ROOT/../shared/bench/gen_devops.py"
[ -f "$GEN" ] || GEN="$ROOT/tests/bench/gen_sample.py"
DATA="$ROOT/strata-local"
mkdir -p "$DATA"
if [ ! -f "$DATA/sample.lp" ]; then
  python3 "$GEN" --hosts 100 --hours 1 --seed 1 --out "$DATA/sample.lp"
fi
rm -rf "$DATA/engine"
build/tests/bench/strata-engine-bench --file "$DATA/sample.lp" --dir "$DATA/engine" --keep

cat <<EOT

Sample data (100 hosts x 1 h of devops cpu metrics) is stored in $DATA/engine.
Try next:
  ls -R $DATA/engine | head                       # WAL, series.log, partitions, segments
  python3 $GEN --hosts 1000 --hours 3 --out /tmp/h1000_3h.lp
  build/tests/bench/strata-engine-bench --file /tmp/h1000_3h.lp --wal every_write
  scripts/test.sh                                 # every test, as CI runs them
EOT
