#!/bin/bash
# tools/bench/hooks.sh: how much devstack-rs's engine costs per hook.
#
# Runs `devstack stack` (all services disabled) over N trivial extras.d scripts through
# every phase, against plain bash sourcing the same N scripts for the same phases, and
# `devstack stack` with no scripts (the fixed start-up) and with one script (start-up
# plus the fixed cost of one batch per hook point). Prints the figures.
#
#   tools/bench/hooks.sh [N] [RUNS]      defaults: 100 scripts, 9 runs (best reported:
#   on a shared 2-core machine the minimum is the figure least disturbed by others)

set -o errexit -o nounset -o pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${1:-100}
RUNS=${2:-9}

[[ -n ${BENCH_BIN:-} ]] || cargo build --release --quiet --manifest-path "$TOP/Cargo.toml" --bin devstack
BIN=${BENCH_BIN:-$TOP/target/release/devstack}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A DevStack tree with the project's library linked in.
make_tree() {
    local tree=$1 count=$2 i
    mkdir -p "$tree/extras.d"
    for name in functions functions-common inc lib files; do
        [[ -e $TOP/$name ]] && ln -s "$TOP/$name" "$tree/$name"
    done
    printf '[[local|localrc]]\nDEST=%s\ndisable_all_services\n' "$tree/stack" >"$tree/local.conf"
    for ((i = 0; i < count; i++)); do
        # shellcheck disable=SC2016  # the $1/$2 belong to the generated script
        printf 'BENCH_LAST=%d\ncase $1 in stack) BENCH_PHASE=$2 ;; *) BENCH_PHASE=$1 ;; esac\n' "$i" \
            >"$tree/extras.d/$(printf '%02d' $((10 + i % 80)))-s$(printf '%03d' "$i").sh"
    done
}

make_tree "$WORK/many" "$N"
make_tree "$WORK/none" 0
make_tree "$WORK/one" 1

PHASES=("override_defaults" "source" "stack pre-install" "stack install" "stack post-config" "stack extra" "stack test-config")

plain_bash() {
    DIR=$1 bash --noprofile --norc -c '
        run_phase() { local f; for f in "$DIR"/extras.d/*.sh; do source "$f" "$@"; done; }
        for p in "$@"; do run_phase $p; done
    ' bench "${PHASES[@]}" 2>/dev/null
}

now() { date +%s.%N; }

# Best of RUNS timings of a command.
measure() {
    local -a times=()
    local i t0 t1
    for ((i = 0; i < RUNS; i++)); do
        t0=$(now)
        "$@" >/dev/null 2>&1
        t1=$(now)
        times+=("$(echo "$t1 - $t0" | bc -l)")
    done
    printf '%s\n' "${times[@]}" | sort -n | head -1
}


plain=$(measure plain_bash "$WORK/many")
startup=$(measure "$BIN" --top-dir "$WORK/none" -q stack)
one=$(measure "$BIN" --top-dir "$WORK/one" -q stack)
engine=$(measure "$BIN" --top-dir "$WORK/many" -q stack)
per_hook=$(echo "($engine - $startup) / ($N * ${#PHASES[@]}) * 1000" | bc -l)
ratio=$(echo "($engine - $startup) / $plain" | bc -l)
# The cost of each further script, against what plain bash spends on one.
marginal=$(echo "($engine - $one) / (($N - 1) * ${#PHASES[@]}) * 1000" | bc -l)
plain_per=$(echo "$plain / ($N * ${#PHASES[@]}) * 1000" | bc -l)

printf 'scripts: %d, phases: %d, runs: %d (best)\n' "$N" "${#PHASES[@]}" "$RUNS"
printf 'plain bash sourcing:           %.3f s\n' "$plain"
printf 'devstack stack, no scripts:    %.3f s   (fixed start-up)\n' "$startup"
printf 'devstack stack, 1 script:      %.3f s   (start-up + one batch per point)\n' "$one"
printf 'devstack stack, %d scripts:   %.3f s\n' "$N" "$engine"
printf 'engine cost per hook call:     %.3f ms (all costs above start-up, / %d calls)\n' "$per_hook" "$((N * ${#PHASES[@]}))"
printf 'each further hook call:        %.3f ms (plain bash: %.3f ms)\n' "$marginal" "$plain_per"
printf 'hooks (minus start-up) / plain bash: %.2fx\n' "$ratio"
