#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/tempest.sh: how long OpenStack's own test suite takes against the
# default cloud on this machine, through `devstack test`. Stacks the default cloud
# itself (under the machine's real-server lock), runs each selection, prints its wall
# time and tempest's counts, and tears the cloud down at the end.
#
#   - the smoke set (what the e2e runs);
#   - with BENCH_TEMPEST_API=1, the API tests of identity, image, network and volume
#     (and compute with BENCH_TEMPEST_COMPUTE=1: long under TCG).
#
# Usage: tools/bench/tempest.sh           (no local.conf of yours may be in the way)
#        BENCH_KEEP=1 keeps the cloud (and stacks only when none runs).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP_DIR"

exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

[[ ! -e local.conf ]] || {
    echo "local.conf exists: this bench stacks the default cloud; move it aside" >&2
    exit 2
}

teardown() {
    if [[ -z ${BENCH_KEEP:-} ]]; then
        ./unstack.sh --all >/dev/null 2>&1 || true
        ./clean.sh >/dev/null 2>&1 || true
    fi
}
trap teardown EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t0=$(now)
./stack.sh 9>&- >/dev/null
printf '%-58s %8s s\n' "stack (default cloud)" "$(since "$t0")"

# bench NAME ARGS...: one `devstack test` run, its wall time and tempest's counts.
bench() {
    local name=$1 out t
    shift
    t=$(now)
    out=$(target/release/devstack --top-dir "$TOP_DIR" test "$@" 2>&1) || true
    printf '%-58s %8s s  %s\n' "$name" "$(since "$t")" \
        "$(grep -m1 '^tempest: ' <<<"$out" || echo 'tempest: no summary (see its workspace logs)')"
    grep '^  FAILED ' <<<"$out" || true
}

bench "smoke set, concurrency 2" --concurrency 2
if [[ -n ${BENCH_TEMPEST_API:-} ]]; then
    bench "API tests: identity, image, network, volume (concurrency 2)" \
        --api --concurrency 2 identity image network volume
fi
if [[ -n ${BENCH_TEMPEST_COMPUTE:-} ]]; then
    bench "API tests: compute (concurrency 2)" --api --concurrency 2 compute
fi
