#!/bin/sh
# embed_example — the embedding story end to end, as a user would live it:
# install the build into a fresh prefix, compile example.c against that
# prefix alone (pkg-config; no source tree include paths), run it, and check
# what it read back after reopening its store.
# It first checks that docs/embedding.md shows this very program.
#   run_example.sh <build dir> <C compiler> <example.c> <libdir name> <embedding.md>
set -eu
build=$1 cc=$2 src=$3 libdir=$4 doc=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
# the ```c block that follows the "<!-- example.c" marker line
awk '/^<!-- example.c/ { m = 1; next } m == 1 && /^```c$/ { m = 2; next }
     m == 2 && /^```$/ { exit } m == 2 { print }' "$doc" >"$tmp/doc.c"
if ! cmp -s "$src" "$tmp/doc.c"; then
    echo "embed_example: the example in $doc differs from $src:" >&2
    diff "$src" "$tmp/doc.c" >&2 || true
    exit 1
fi
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
PKG_CONFIG_PATH="$tmp/prefix/$libdir/pkgconfig"
export PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs --static strata-engine)
echo "cc example.c $flags"
# shellcheck disable=SC2086 # flags are words
"$cc" -o "$tmp/example" "$src" $flags
"$tmp/example" "$tmp/data" >"$tmp/out"
cat "$tmp/out"
printf '%s\n' '__name__=cpu,host=a 1000:0.5 2000:1.5 3000:2.5' 'series=1 segments=1' >"$tmp/want"
if ! cmp -s "$tmp/want" "$tmp/out"; then
    echo "embed_example: unexpected output; wanted:" >&2
    cat "$tmp/want" >&2
    exit 1
fi
echo "embed_example: ok"
