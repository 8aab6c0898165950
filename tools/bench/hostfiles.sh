#!/bin/bash
# tools/bench/hostfiles.sh: what watching the host's system directories around hooks
# costs a stack (system::hostfiles).
#
# Stacks an engine-only tree (all services disabled, one extras.d script) against the
# real host (/etc and the rest of the watched list, read only: the copies go to the
# tree's state directory) and sums the time the watcher took at each hook point, from
# its debug event ("host files watched"): a first stack (every watched file copied
# once) and a re-stack (the copies are reused; an engine-only tree runs every hook
# again: it has no process to call its cloud unchanged). A no-op re-stack of a running
# cloud runs no hook after `source`, so it pays for two points only.
#
#   tools/bench/hostfiles.sh [RUNS]       default 7; the best run is reported
#   BENCH_BIN=target/debug/devstack tools/bench/hostfiles.sh   (no release build)

set -o errexit -o nounset -o pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=${1:-7}

[[ -n ${BENCH_BIN:-} ]] || cargo build --release --quiet --manifest-path "$TOP/Cargo.toml" --bin devstack
BIN=${BENCH_BIN:-$TOP/target/release/devstack}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

make_tree() {
    local tree=$1 name
    rm -rf "$tree"
    mkdir -p "$tree/extras.d"
    for name in functions functions-common stackrc inc lib files; do
        [[ -e $TOP/$name ]] && ln -s "$TOP/$name" "$tree/$name"
    done
    printf '[[local|localrc]]\nDEST=%s\ndisable_all_services\n' "$tree/stack" >"$tree/local.conf"
    # shellcheck disable=SC2016  # the $1 belongs to the generated script
    printf 'BENCH_PHASE=$1\n' >"$tree/extras.d/50-bench.sh"
}

# The watcher's seconds in one stack: the sum of its debug events, and the points.
watched() {
    DEVSTACK_LOG=debug "$BIN" --top-dir "$WORK/tree" -q stack 2>&1 >/dev/null |
        sed -n 's/.*host files watched.*seconds=\([0-9.e-]*\).*/\1/p' |
        awk '{ s += $1; n++ } END { printf "%.4f %d\n", s, n }'
}

best_first=9 best_again=9 points=0
for ((i = 0; i < RUNS; i++)); do
    make_tree "$WORK/tree"
    read -r first points < <(watched)
    read -r again _ < <(watched)
    best_first=$(echo "if ($first < $best_first) $first else $best_first" | bc -l)
    best_again=$(echo "if ($again < $best_again) $again else $best_again" | bc -l)
done

printf 'runs: %d (best), binary: %s\n' "$RUNS" "$BIN"
printf 'hook points watched per stack: %d\n' "$points"
printf 'first stack:  %.1f ms watching (copies every watched file once)\n' "$(echo "$best_first * 1000" | bc -l)"
printf 're-stack:     %.1f ms watching (%.2f ms a point)\n' "$(echo "$best_again * 1000" | bc -l)" \
    "$(echo "$best_again * 1000 / $points" | bc -l)"
printf 'copies kept:  %s\n' "$(du -sh "$WORK/tree/.devstack/host-files" | cut -f1)"
