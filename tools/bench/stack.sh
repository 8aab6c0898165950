#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/stack.sh: the stack figures a developer feels, on the default cloud of
# this machine, each printed with the stack summary's step profile:
#
#   cold     (BENCH_COLD=1 only) the uv cache, the venv and the test image removed
#            first, so PyPI downloads, the Python install and the image build are
#            paid again; Debian's packages stay installed (removing them would break
#            the machine's other users), so a fresh machine also pays apt on top;
#   warm     ./clean.sh, then ./stack.sh: caches present, fresh databases;
#   no-op    ./stack.sh again over the running, unchanged cloud;
#   change   one [[post-config|$NOVA_CONF]] option changed in local.conf, then
#            ./stack.sh (the option is checked in nova.conf afterwards);
#   unstack  ./unstack.sh --all;   clean  ./clean.sh.
#
# Usage: tools/bench/stack.sh            (as root; takes the one-cloud lock)
# An existing local.conf is kept aside and restored. The machine is left clean.
# The extras.d-only figure (100 scripts at every hook point) is tools/bench/hooks.sh.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP_DIR"

# One real cloud per machine: the same lock as the e2e and the real-server tests.
exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

WORK=$(mktemp -d /tmp/devstack-bench.XXXXXX)
SAVED_LOCALCONF=""
if [[ -e local.conf ]]; then
    SAVED_LOCALCONF=$WORK/local.conf.saved
    mv local.conf "$SAVED_LOCALCONF"
fi
restore() {
    local rc=$?
    ./unstack.sh --all >/dev/null 2>&1 9>&- || true
    ./clean.sh >/dev/null 2>&1 9>&- || true
    rm -f local.conf
    [[ -n $SAVED_LOCALCONF ]] && mv -f "$SAVED_LOCALCONF" local.conf
    rm -rf "$WORK"
    exit "$rc"
}
trap restore EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

RESULTS=()
# measure LABEL COMMAND...: runs it (output kept in $WORK/LABEL.out), prints the
# wall time and the summary's step lines (from "completed in" to the blank end).
measure() {
    local label=$1 t0 t1 out=$WORK/$1.out
    shift
    t0=$(now)
    if ! "$@" >"$out" 2>&1 9>&-; then
        echo "bench: '$label' failed; its last lines:" >&2
        tail -n 30 "$out" >&2
        return 1
    fi
    t1=$(now)
    RESULTS+=("$(printf '%-8s %8s s' "$label" "$(elapsed "$t0" "$t1")")")
    printf '\n== %s: %s s\n' "$label" "$(elapsed "$t0" "$t1")"
    sed -n '/completed in/,/^Keystone:\|^Log:\|^$/p' "$out" | sed 's/^/   /'
}

cargo build --release --quiet --bin devstack

./unstack.sh --all >/dev/null 2>&1 9>&- || true
./clean.sh >/dev/null 2>&1 9>&- || true

if [[ -n ${BENCH_COLD:-} ]]; then
    rm -rf /var/cache/devstack-rs/uv /var/cache/devstack-rs-test/test-image
    measure cold ./stack.sh
    ./clean.sh >/dev/null 2>&1 9>&-
fi

measure warm ./stack.sh
measure no-op ./stack.sh

value="bench-$(date +%s)"
cat >local.conf <<EOF
[[post-config|\$NOVA_CONF]]
[DEFAULT]
instance_name_template = ${value}-%08x
EOF
measure change ./stack.sh
if ! grep -q "^instance_name_template = ${value}-" /etc/nova/nova.conf; then
    echo "bench: the changed option did not reach /etc/nova/nova.conf" >&2
    exit 1
fi

measure unstack ./unstack.sh --all
measure clean ./clean.sh

printf '\n== figures\n'
printf '%s\n' "${RESULTS[@]}"
