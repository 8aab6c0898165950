#!/bin/bash
# tools/bench/scale.sh: how devstack-rs's settings read-back and local.conf merge
# scale (issue 8, item 12). Prints one line per size:
#   - `devstack plan` with N localrc variables (the read-back of every variable),
#   - `devstack plan` with a localrc of about 10 MB (few variables, long values),
#   - `devstack stack` (all services disabled) merging a [[post-config|FILE]] of N keys.
#
#   tools/bench/scale.sh [SIZES...]      default sizes: 1000 5000 20000 50000
#
# Uses target/debug/devstack when BENCH_BIN is unset and no release binary exists.

set -o errexit -o nounset -o pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(1000 5000 20000 50000)
BIN=${BENCH_BIN:-$TOP/target/release/devstack}
[[ -x $BIN ]] || BIN=$TOP/target/debug/devstack

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

make_tree() {
    local tree=$1 name
    mkdir -p "$tree/extras.d"
    for name in functions functions-common stackrc inc lib files; do
        [[ -e $TOP/$name ]] && ln -s "$TOP/$name" "$tree/$name"
    done
}

# seconds COMMAND...: wall time of one run, or "failed".
seconds() {
    local t0 t1
    t0=$EPOCHREALTIME
    if ! "$@" >/dev/null 2>&1; then
        echo failed
        return
    fi
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

tree=$WORK/tree
make_tree "$tree"
header() { printf '[[local|localrc]]\nDEST=%s\ndisable_all_services\n' "$WORK/stack"; }

echo "localrc variables (devstack plan: every variable read back after each settings phase)"
for n in 0 "${SIZES[@]}"; do
    { header; seq "$n" | awk '{ printf "BENCH_VAR_%d=value_%d\n", $1, $1 }'; } >"$tree/local.conf"
    printf '  %6d variables  %s s\n' "$n" "$(seconds "$BIN" --top-dir "$tree" plan)"
done

echo "a 10 MB localrc (1000 variables of 10 kB each)"
{
    header
    value=$(head -c 10000 /dev/zero | tr '\0' x)
    for i in $(seq 1000); do printf 'BENCH_BIG_%d=%s\n' "$i" "$value"; done
} >"$tree/local.conf"
printf '  %6s bytes      %s s\n' "$(stat -c %s "$tree/local.conf")" "$(seconds "$BIN" --top-dir "$tree" plan)"

echo "[[post-config|FILE]] keys (devstack stack, all services disabled)"
for n in "${SIZES[@]}"; do
    conf=$WORK/merged-$n.conf
    {
        header
        printf '[[post-config|%s]]\n[DEFAULT]\n' "$conf"
        seq "$n" | awk '{ printf "key_%d = value_%d\n", $1, $1 }'
    } >"$tree/local.conf"
    secs=$(seconds "$BIN" --top-dir "$tree" stack)
    keys=$(grep -c '^key_' "$conf" 2>/dev/null || echo 0)
    printf '  %6d keys  %s s (%s keys written)\n' "$n" "$secs" "$keys"
    "$BIN" --top-dir "$tree" clean >/dev/null 2>&1 || true
done
