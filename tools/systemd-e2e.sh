#!/bin/bash
# shellcheck shell=bash
#
# tools/systemd-e2e.sh: devstack-rs's systemd backend, for real. Boots a Debian 12
# container whose PID 1 is systemd (tools/systemd-node.sh), stacks a small cloud in it
# (layer 1, keystone, placement under uWSGI, nova's conductor and scheduler as plain
# daemons, and a fixture plugin's run_process service and write_user_unit_file unit),
# then checks what DevStack's users rely on:
#
#   - every service is an active devstack@NAME.service unit, written as DevStack
#     writes it (uWSGI APIs Type=notify, the others plain) and enabled;
#   - journalctl -u devstack@NAME shows the service's own output;
#   - a restart of one unit gives it a new main pid and it comes back active;
#   - ./unstack.sh stops every devstack@ unit; ./clean.sh removes their files.
#
# Skipped (exit 0, with the reason) only when this machine cannot build or boot such
# a container (not root, no systemd-nspawn, no overlayfs, debootstrap failing).
# Prints each step with its wall time. The container is torn down at the end, pass or
# fail: nothing is left on the host but the cached root file system.
#
# Environment: SYSTEMD_E2E_KEEP=1 leaves the container up on failure (tear it down
# with tools/systemd-node.sh down).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE=$TOP_DIR/tools/systemd-node.sh
T_START=$(date +%s.%N)
SKIPPED=""

say() {
    printf '\n=== %s\n' "$*"
}

elapsed() {
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

fail() {
    echo "systemd-e2e: FAILED: $*" >&2
    exit 1
}

# in CMD...: runs CMD in the container, in the copied tree.
in_node() {
    "$NODE" exec bash -c 'cd /opt/devstack-rs && "$@"' in-node "$@"
}

step() {
    local name=$1 t0
    shift
    say "$name"
    t0=$(date +%s.%N)
    "$@"
    echo "--- $name: $(elapsed "$t0") s"
}

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 && -n ${SYSTEMD_E2E_KEEP:-} ]]; then
        echo "systemd-e2e: failed; the container is left up (tools/systemd-node.sh down)" >&2
        return
    fi
    "$NODE" down || true
    local outcome=failed
    if [[ -n $SKIPPED ]]; then
        outcome=skipped
    elif [[ $rc -eq 0 ]]; then
        outcome=passed
    fi
    echo "systemd-e2e: $outcome in $(elapsed "$T_START") s"
}

build() {
    local rc=0
    "$NODE" build || rc=$?
    if [[ $rc -eq 3 ]]; then
        echo "systemd-e2e: SKIPPED: this machine cannot build a container with systemd as PID 1 (above)"
        SKIPPED=1
        exit 0
    fi
    [[ $rc -eq 0 ]] || fail "tools/systemd-node.sh build: exit $rc"
}

# The fixture plugin, written the way plugins are: a run_process worker that prints
# to its output, and a unit of its own with write_user_unit_file, enabled and
# started with $SYSTEMCTL as DevStack's documentation shows.
make_fixture() {
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/devstack"
    cat >"$dir/devstack/settings" <<'EOS'
# shellcheck shell=bash
enable_service sys-worker sys-own
EOS
    cat >"$dir/devstack/plugin.sh" <<'EOS'
# shellcheck shell=bash
if [[ $1 == stack && $2 == extra ]]; then
    run_process sys-worker "/bin/bash -c 'echo sys-worker says hello; while sleep 2; do :; done'"
    write_user_unit_file devstack@sys-own.service \
        "/bin/bash -c 'echo sys-own says hello; exec sleep infinity'" "" "$STACK_USER"
    $SYSTEMCTL enable devstack@sys-own.service
    $SYSTEMCTL start devstack@sys-own.service
elif [[ $1 == unstack ]]; then
    stop_process sys-worker
    $SYSTEMCTL stop devstack@sys-own.service
fi
EOS
    cat >"$dir/local.conf" <<'EOS'
[[local|localrc]]
ENABLED_SERVICES=mysql,rabbit,key,placement-api,n-api,n-cond,n-sch
HOST_IP=10.99.0.2
enable_plugin sysnode-fixture file:///opt/sysnode-fixture
EOS
    tar -C "$dir" -cf - . |
        "$NODE" exec bash -c 'mkdir -p /opt/sysnode-fixture && tar -C /opt/sysnode-fixture -xf -'
    rm -rf "$dir"
    in_node bash -c 'set -e
        mv /opt/sysnode-fixture/local.conf ./local.conf
        cd /opt/sysnode-fixture
        git init -q && git add -A && git -c user.name=t -c user.email=t@example.com commit -q -m fixture'
}

stack() {
    in_node ./stack.sh
}

# unit_of NAME: the unit file's text.
unit_of() {
    in_node cat "/etc/systemd/system/devstack@$1.service"
}

check_units() {
    local svc state text
    for svc in key placement-api n-api n-cond n-sch sys-worker sys-own; do
        state=$(in_node systemctl is-active "devstack@$svc.service" || true)
        echo "devstack@$svc: $state"
        [[ $state == active ]] || fail "devstack@$svc is $state: $(in_node systemctl status "devstack@$svc" --no-pager || true)"
    done
    for svc in key placement-api n-cond n-sch sys-worker sys-own; do
        [[ $(in_node systemctl is-enabled "devstack@$svc.service" || true) == enabled ]] ||
            fail "devstack@$svc is not enabled"
    done
    text=$(unit_of placement-api)
    grep -qx 'Type = notify' <<<"$text" || fail "placement-api's unit is not DevStack's uWSGI unit: $text"
    text=$(unit_of n-cond)
    grep -qx 'TimeoutStopSec = 300' <<<"$text" || fail "n-cond's unit is not DevStack's plain unit: $text"
    grep -q '^ExecStart = .*nova-conductor' <<<"$text" || fail "n-cond's unit runs something else: $text"
    # devstack status: every service running, its log the unit's journal.
    text=$(in_node ./target/release/devstack --top-dir /opt/devstack-rs status) ||
        fail "devstack status: $text"
    echo "$text"
    grep -q 'journalctl -u devstack@n-cond.service' <<<"$text" || fail "status does not point at the journal"
    # Nothing of ours runs outside systemd: no pidfile of the own supervisor.
    if in_node bash -c 'ls /opt/stack/logs/*.pid' 2>/dev/null; then
        fail "pidfiles of the own supervisor under systemd"
    fi
}

check_journal() {
    local out
    out=$(in_node journalctl -u devstack@sys-worker --no-pager)
    grep -q 'sys-worker says hello' <<<"$out" || fail "journalctl -u devstack@sys-worker: $out"
    out=$(in_node journalctl -u devstack@sys-own --no-pager)
    grep -q 'sys-own says hello' <<<"$out" || fail "journalctl -u devstack@sys-own: $out"
    out=$(in_node journalctl -u devstack@n-cond --no-pager)
    grep -qi 'nova' <<<"$out" || fail "journalctl -u devstack@n-cond shows nothing of nova: $out"
    out=$(in_node journalctl -u devstack@placement-api --no-pager)
    grep -qi 'uwsgi\|placement' <<<"$out" || fail "journalctl -u devstack@placement-api: $out"
    echo "journal: each service's output is in its unit's journal"
}

check_restart() {
    local svc before after help
    # Captured first: `grep -q` ending the pipe early fails it under pipefail.
    help=$(in_node ./target/release/devstack --help 2>&1 || true)
    for svc in n-cond sys-worker; do
        before=$(in_node systemctl show -p MainPID --value "devstack@$svc.service")
        if grep -qw restart <<<"$help"; then
            in_node ./target/release/devstack --top-dir /opt/devstack-rs restart "$svc"
        else
            echo "(devstack restart is not in this tree: systemctl restart devstack@$svc)"
            in_node systemctl restart "devstack@$svc.service"
        fi
        after=$(in_node systemctl show -p MainPID --value "devstack@$svc.service")
        [[ $(in_node systemctl is-active "devstack@$svc.service" || true) == active ]] ||
            fail "devstack@$svc is not active after its restart"
        [[ $before != "$after" && $after != 0 ]] || fail "devstack@$svc: main pid $before before, $after after the restart"
        echo "devstack@$svc restarted: pid $before -> $after"
    done
}

# no_warnings NAME OUTPUT: the run's output has no warning (a failed step of
# unstack or clean is only a warning).
no_warnings() {
    if grep -i '^warning' <<<"$2"; then
        fail "$1 warned (above)"
    fi
}

unstack() {
    local out
    out=$(in_node ./unstack.sh 2>&1) || fail "unstack: $out"
    echo "$out"
    no_warnings unstack "$out"
    local svc state
    for svc in key placement-api n-api n-cond n-sch sys-worker sys-own; do
        state=$(in_node systemctl is-active "devstack@$svc.service" || true)
        [[ $state != active && $state != activating ]] || fail "devstack@$svc is $state after unstack"
    done
    echo "every devstack@ unit stopped"
}

clean() {
    local out left
    out=$(in_node ./clean.sh 2>&1) || fail "clean: $out"
    echo "$out"
    no_warnings clean "$out"
    left=$(in_node bash -c 'ls /etc/systemd/system/ | grep "^devstack" || true')
    [[ -z $left ]] || fail "unit files left after clean: $left"
    left=$(in_node bash -c 'systemctl list-units --all --no-legend "devstack@*" | grep -v "not-found" || true')
    [[ -z $left ]] || fail "units still loaded after clean: $left"
    echo "no devstack unit left"
}

trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

step "build the container's root (cached)" build
step "boot it (systemd as PID 1)" "$NODE" up
step "fixture plugin and local.conf" make_fixture
step "stack" stack
step "units active, enabled, DevStack's text" check_units
step "journald" check_journal
step "restart" check_restart
step "unstack" unstack
step "clean" clean
