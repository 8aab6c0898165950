#!/bin/bash
# tools/faults.sh: the fault matrix (issue 8). Each fault is injected into a
# `devstack stack` of a temporary tree (all services disabled, one process started
# with run_process, one hook child in the background); then `devstack unstack` and
# `devstack clean` must both exit 0 and leave no process of the run. Prints one line
# per fault; exits 1 if any fault leaves something behind. No servers, no lock needed.
#
#   tools/faults.sh [FAULT...]     default: every fault

set -o nounset -o pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${DEVSTACK_BIN_UNDER_TEST:-$TOP/target/debug/devstack}
[[ -x $BIN ]] || cargo build --quiet --manifest-path "$TOP/Cargo.toml" --bin devstack
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

FAULTS=(hook-fails hook-exits hook-hangs sigkill sigint term-ignored malformed-frame
    broken-local-conf localrc-exit corrupt-state bad-plugin-ref)
[[ $# -gt 0 ]] && FAULTS=("$@")

# procs MARKER: pids of live processes whose command line has MARKER.
procs() {
    local p out=()
    for p in /proc/[0-9]*; do
        [[ -r $p/cmdline ]] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$1" && out+=("${p#/proc/}")
    done
    echo "${out[*]:-}"
}

make_tree() {
    local tree=$1 marker=$2 name
    mkdir -p "$tree/extras.d"
    for name in functions functions-common stackrc inc lib files tools; do
        [[ -e $TOP/$name ]] && ln -s "$TOP/$name" "$tree/$name"
    done
    printf '[[local|localrc]]\nDEST=%s\ndisable_all_services\nenable_service sleeper\n' \
        "$tree/../stack" >"$tree/local.conf"
    # The run's processes: one supervised, one hook child; then the fault.
    cat >"$tree/extras.d/10-proc.sh" <<SH
if [[ "\$*" == "stack install" ]]; then
    run_process sleeper "exec -a $marker-svc /bin/sleep 300"
    (exec -a $marker-child /bin/sleep 300) &
fi
SH
}

fault_hook() {
    local tree=$1 marker=$2 body=$3
    printf 'if [[ "$*" == "stack install" ]]; then\n%s\nfi\n' "$body" >"$tree/extras.d/20-fault.sh"
}

run_fault() {
    local fault=$1 tree=$WORK/$1/devstack marker="ds-fault-$$-$1" rc=0
    make_tree "$tree" "$marker"
    local env=(DEVSTACK_HOOK_TIMEOUT=3)
    case $fault in
        hook-fails) fault_hook "$tree" "$marker" "false_command_for_fault" ;;
        hook-exits) fault_hook "$tree" "$marker" "exit 7" ;;
        hook-hangs) fault_hook "$tree" "$marker" "sleep 300" ;;
        term-ignored) fault_hook "$tree" "$marker" "(trap '' TERM; exec -a $marker-stubborn sleep 300) & sleep 300" ;;
        malformed-frame) fault_hook "$tree" "$marker" "printf 'x\\0bad\\0' >&62; sleep 300" ;;
        sigkill | sigint) fault_hook "$tree" "$marker" "touch $WORK/$fault.started; sleep 300" ;;
        bad-plugin-ref) printf 'enable_plugin p file://%s no-such-ref\n' "$WORK/nowhere" >>"$tree/local.conf" ;;
        *) ;;
    esac
    case $fault in
        sigkill | sigint)
            env "${env[@]}" "$BIN" --top-dir "$tree" stack >/dev/null 2>&1 &
            local pid=$! i
            for ((i = 0; i < 200; i++)); do
                [[ -e $WORK/$fault.started ]] && break
                sleep 0.05
            done
            if [[ $fault == sigkill ]]; then kill -KILL "$pid"; else kill -INT "$pid"; fi
            wait "$pid" 2>/dev/null
            ;;
        *) env "${env[@]}" "$BIN" --top-dir "$tree" stack >/dev/null 2>&1 ;;
    esac
    case $fault in
        broken-local-conf) printf '[[local|localrc\nthis is not a local.conf\n' >"$tree/local.conf" ;;
        localrc-exit) printf '[[local|localrc]]\nexit 0\n' >"$tree/local.conf" ;;
        corrupt-state) printf '{ broken' >"$tree/.devstack/state.json" ;;
        *) ;;
    esac
    local unstack clean left
    "$BIN" --top-dir "$tree" unstack >"$WORK/$fault.unstack" 2>&1
    unstack=$?
    "$BIN" --top-dir "$tree" clean >"$WORK/$fault.clean" 2>&1
    clean=$?
    sleep 0.3
    left=$(procs "$marker")
    if [[ $unstack -ne 0 || $clean -ne 0 || -n $left ]]; then
        rc=1
        printf '%-18s FAIL  unstack=%s clean=%s left running: %s\n' "$fault" "$unstack" "$clean" "${left:-none}"
        sed 's/^/    | /' "$WORK/$fault.unstack" "$WORK/$fault.clean" | tail -20
        # shellcheck disable=SC2086  # a list of pids
        [[ -n $left ]] && kill -KILL $left 2>/dev/null
    else
        printf '%-18s ok    unstack=0 clean=0 nothing left running\n' "$fault"
    fi
    return "$rc"
}

status=0
for fault in "${FAULTS[@]}"; do
    run_fault "$fault" || status=1
done
exit "$status"
