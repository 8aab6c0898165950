#!/bin/bash
# shellcheck shell=bash
# shellcheck disable=SC2317 # check_resource_NAME and the EXIT trap are called by name
#
# tools/plugin-compat.sh: does a real DevStack plugin stack unchanged on devstack-rs?
#
#   tools/plugin-compat.sh [NAME=]DIR...
#
# DIR is a checkout of a plugin's repository (NAME defaults to its last path
# component). For each, in turn, on this machine's real default cloud:
#
#   1. ./stack.sh with a local.conf of `enable_plugin NAME DIR` (plus the lines of
#      KNOWN_LOCALRC for NAME below, and COMPAT_LOCALRC), timed;
#   2. when it stacked: the service the plugin registers answers its own client (the
#      OSC plugin of python-<name>client, in a venv of this script's own): an entry
#      of its type in the catalog, one read call, and for the plugins in
#      KNOWN_CHECKS a resource created until it reaches its final state;
#   3. ./unstack.sh --all and ./clean.sh, then nothing of the plugin left running.
#
# It prints one line per plugin: `NAME: stacked in N s; check: ...`, or the first
# error (`NAME: FAILED at PHASE (FILE:LINE): HEADLINE`), and the logs of each run in
# COMPAT_WORK (default a new /tmp/plugin-compat.XXXXXX). The cloud lock
# (/tmp/devstack-rs-layer1-tests.lock, shared with the real-server tests and the
# e2e) is taken for each plugin and released between two, so other users of the
# machine's cloud interleave.
#
# Environment: COMPAT_LOCALRC extra localrc lines for every plugin (e.g.
# VIRT_DRIVER=fake); COMPAT_KEEP=1 leaves the last cloud stacked (no teardown, the lock
# released); COMPAT_CLIENT_VENV where the clients are installed (default
# /var/cache/devstack-rs/plugin-compat-clients). An existing local.conf is moved aside
# and restored at the end.
#
# Exit status: 0 when every plugin stacked, passed its check and left nothing.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP_DIR"

LOCK=${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock
WORK=${COMPAT_WORK:-$(mktemp -d /tmp/plugin-compat.XXXXXX)}
CLIENT_VENV=${COMPAT_CLIENT_VENV:-/var/cache/devstack-rs/plugin-compat-clients}
CONSTRAINTS=$TOP_DIR/files/constraints/openstack-2026.2.txt
DEST=${DEST:-/opt/stack}
mkdir -p "$WORK"

# What a plugin's documentation asks of localrc where its default cannot work on a
# Debian machine with no extra repository (one line each, `;` between lines).
declare -A KNOWN_LOCALRC=(
    # MongoDB, zaqar's default store, is not in Debian; redis (+ SQL) is its other
    # documented backend.
    [zaqar]="ZAQAR_BACKEND=redis"
)

# The catalog type each plugin registers, its client (PyPI) and one read call.
declare -A SERVICE_TYPE=(
    [aodh]=alarming [barbican]=key-manager [blazar]=reservation [cyborg]=accelerator
    [designate]=dns [mistral]=workflowv2 [watcher]=infra-optim [zaqar]=messaging
    [masakari]=instance-ha [manila]=sharev2 [octavia]=load-balancer
    [magnum]=container-infra [heat]=orchestration [trove]=database [senlin]=clustering
    [ironic]=baremetal [zun]=container [freezer]=backup [vitrage]=rca
)
declare -A CLIENT=(
    [aodh]=aodhclient [barbican]=python-barbicanclient
    [blazar]=python-blazarclient [cyborg]=python-cyborgclient
    [designate]=python-designateclient [mistral]=python-mistralclient
    [watcher]=python-watcherclient [zaqar]=python-zaqarclient
    [masakari]=python-masakariclient [manila]=python-manilaclient
    [octavia]=python-octaviaclient [magnum]=python-magnumclient
    [heat]=python-heatclient [trove]=python-troveclient [senlin]=python-senlinclient
    [ironic]=python-ironicclient [zun]=python-zunclient [vitrage]=python-vitrageclient
)
declare -A READ_CALL=(
    [aodh]="alarm list" [barbican]="secret list" [blazar]="reservation lease list"
    [cyborg]="accelerator device list" [designate]="zone list"
    [mistral]="workflow list" [watcher]="optimize goal list" [zaqar]="queue list"
    [masakari]="segment list" [manila]="share list" [octavia]="loadbalancer list"
    [magnum]="coe cluster list" [heat]="stack list" [trove]="database instance list"
    [senlin]="cluster list" [ironic]="baremetal node list" [zun]="appcontainer list"
    [vitrage]="rca template list"
)
# Plugins with a resource check: a function check_resource_NAME below.
KNOWN_CHECKS=" aodh barbican cyborg designate mistral watcher zaqar blazar "

say() {
    printf '%s\n' "$*"
}

elapsed_since() {
    local t0=$1 t1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }'
}

# --- local.conf: the user's is kept aside for the run --------------------------------
SAVED_LOCALCONF=""
restore_localconf() {
    if [[ -n $SAVED_LOCALCONF ]]; then
        mv -f "$SAVED_LOCALCONF" "$TOP_DIR/local.conf"
    else
        rm -f "$TOP_DIR/local.conf"
    fi
}
if [[ -e $TOP_DIR/local.conf ]]; then
    SAVED_LOCALCONF=$WORK/local.conf.saved
    mv "$TOP_DIR/local.conf" "$SAVED_LOCALCONF"
fi
trap restore_localconf EXIT

# --- the clients ---------------------------------------------------------------------
# uv on PATH, the stack's, else one installed with pip next to the clients' venv.
find_uv() {
    if command -v uv >/dev/null 2>&1; then
        command -v uv
    elif [[ -x $DEST/.uv-venv/bin/uv ]]; then
        echo "$DEST/.uv-venv/bin/uv"
    else
        local tools=$CLIENT_VENV-uv
        if [[ ! -x $tools/bin/uv ]]; then
            /usr/bin/python3 -m venv "$tools" >&2
            "$tools/bin/pip" install -q uv >&2
        fi
        echo "$tools/bin/uv"
    fi
}

# install_clients NAME...: the openstack client and each plugin's own, under the
# project's constraints, into CLIENT_VENV (outside the lock: it touches no cloud).
install_clients() {
    local uv name
    local -a pkgs=(python-openstackclient)
    for name in "$@"; do
        if [[ -n ${CLIENT[$name]:-} ]]; then
            pkgs+=("${CLIENT[$name]}")
        fi
    done
    uv=$(find_uv)
    if [[ ! -x $CLIENT_VENV/bin/python3 ]]; then
        "$uv" venv -q --python /usr/bin/python3 "$CLIENT_VENV"
    fi
    UV_NATIVE_TLS=1 "$uv" pip install -q --python "$CLIENT_VENV/bin/python3" \
        -c "$CONSTRAINTS" "${pkgs[@]}"
}

# os ARGS...: the plugin's client as the cloud's admin (clouds.yaml of the stack).
os() {
    OS_CLOUD=devstack-admin "$CLIENT_VENV/bin/openstack" "$@"
}

# wait_for_value SECONDS WANT COMMAND...: until COMMAND prints WANT (or a state that
# is final and not WANT: ERROR, FAILED, CANCELLED).
wait_for_value() {
    local limit=$1 want=$2 got="" i
    shift 2
    for ((i = 0; i < limit; i++)); do
        got=$("$@" 2>/dev/null || true)
        if [[ $got == "$want" ]]; then
            return 0
        fi
        case $got in
        ERROR | FAILED | CANCELLED) break ;;
        esac
        sleep 1
    done
    echo "state '$got', wanted '$want'" >&2
    return 1
}

# --- resource checks: each creates one resource and waits for its final state --------
# Each prints what it did (one line) and fails on the first thing that does not work.

check_resource_barbican() {
    local href payload
    href=$(os secret store --name compat-secret --payload compat-payload-42 \
        -f value -c 'Secret href')
    payload=$(os secret get "$href" --payload -f value -c Payload)
    [[ $payload == compat-payload-42 ]] || {
        echo "the stored secret's payload came back as '$payload'" >&2
        return 1
    }
    os secret delete "$href"
    echo "secret stored, read back, deleted"
}

check_resource_aodh() {
    local id
    id=$(os alarm create --name compat-alarm --type event \
        --event-type 'compute.instance.update' -f value -c alarm_id)
    os alarm state set --state alarm "$id" >/dev/null
    wait_for_value 30 alarm os alarm state get "$id" -f value -c state
    os alarm delete "$id"
    echo "event alarm created, set to alarm, deleted"
}

check_resource_zaqar() {
    local body
    os messaging queue create compat-queue >/dev/null
    os messaging message post compat-queue '[{"body": {"compat": 42}, "ttl": 300}]'
    body=$(os messaging message list compat-queue --echo -f value -c Body)
    [[ $body == *42* ]] || {
        echo "the posted message came back as '$body'" >&2
        return 1
    }
    os messaging queue delete compat-queue
    echo "queue created, message posted and listed, queue deleted"
}

check_resource_mistral() {
    local wf=$WORK/compat-wf.yaml id
    cat >"$wf" <<'EOF'
---
version: '2.0'
compat_echo:
  tasks:
    say:
      action: std.echo output="compat"
EOF
    os workflow create "$wf" >/dev/null
    id=$(os workflow execution create compat_echo -f value -c ID)
    wait_for_value 120 SUCCESS os workflow execution show "$id" -f value -c State
    os workflow execution delete "$id"
    os workflow delete compat_echo
    echo "workflow created, its execution reached SUCCESS"
}

check_resource_watcher() {
    local id
    os optimize audittemplate create compat-template dummy >/dev/null
    id=$(os optimize audit create -a compat-template -f value -c UUID)
    wait_for_value 180 SUCCEEDED os optimize audit show "$id" -f value -c State
    os optimize audit delete "$id"
    os optimize audittemplate delete compat-template
    echo "audit of the dummy goal reached SUCCEEDED"
}

check_resource_designate() {
    local id
    id=$(os zone create compat.example.org. --email admin@example.org -f value -c id)
    wait_for_value 180 ACTIVE os zone show "$id" -f value -c status
    os zone delete "$id" >/dev/null
    echo "zone created, reached ACTIVE, deleted"
}

check_resource_cyborg() {
    os accelerator device profile create compat-profile \
        '[{"resources:FPGA": "1", "trait:CUSTOM_FPGA_COMPAT": "required"}]' >/dev/null
    os accelerator device profile show compat-profile -f value -c name >/dev/null
    os accelerator device profile delete compat-profile
    echo "device profile created, shown, deleted"
}

check_resource_blazar() {
    local host id start end
    host=$(os hypervisor list -f value -c 'Hypervisor Hostname' | head -1)
    os reservation host create "$host" >/dev/null
    start=$(date -u -d '+1 min' '+%Y-%m-%d %H:%M')
    end=$(date -u -d '+1 hour' '+%Y-%m-%d %H:%M')
    id=$(os reservation lease create --reservation \
        'resource_type=physical:host,min=1,max=1,hypervisor_properties=[],resource_properties=[]' \
        --start-date "$start" --end-date "$end" compat-lease -f value -c id)
    wait_for_value 180 ACTIVE os reservation lease show "$id" -f value -c status
    os reservation lease delete "$id"
    echo "host $host added, a lease of it reached ACTIVE, deleted"
}

# check_service NAME: catalog, one read call, the resource check when there is one.
check_service() {
    local name=$1 type=${SERVICE_TYPE[$1]:-} call=${READ_CALL[$1]:-} what
    local -a read_call
    if [[ -z $type || -z $call ]]; then
        echo "no check known for $name"
        return 0
    fi
    os catalog show "$type" -f value -c endpoints | grep -q http || {
        echo "no '$type' endpoint in the catalog" >&2
        return 1
    }
    read -r -a read_call <<<"$call"
    os "${read_call[@]}" >/dev/null || {
        echo "'openstack $call' failed" >&2
        return 1
    }
    what="catalog $type, '$call'"
    if [[ $KNOWN_CHECKS == *" $name "* ]]; then
        what+=", $("check_resource_$name" | tail -1)"
    fi
    echo "$what"
}

# --- one plugin ----------------------------------------------------------------------

# first_error LOG: the first error of a failed stack, as `PHASE (WHERE): HEADLINE`.
first_error() {
    local log=$1 headline phase where
    headline=$(sed -n 's/^error: //p' "$log" | head -1)
    phase=$(sed -n 's/^ *phase: //p' "$log" | head -1)
    where=$(sed -n 's/^ *where: //p' "$log" | head -1)
    # A failure outside a hook (fetching the plugin, a service's step) has no phase.
    if [[ -z $phase ]]; then
        phase=$(sed -n 's/^\[FAILED\] //p' "$log" | head -1)
    fi
    echo "${phase:-?} (${where:-no file}): ${headline:-see $log}"
}

# leftovers NAME: processes of the plugin (its checkout, its config, its console
# scripts, its uWSGI apps) or of the stack's servers still running after clean. Not
# any process under $DEST: other users of the machine run tools from the venv. Not
# the processes of containers either (their own PID namespace: a systemd container's
# mariadbd and apache2 are not this cloud's).
leftovers() {
    local name=$1 own_ns pid
    own_ns=$(readlink /proc/self/ns/pid)
    # shellcheck disable=SC2009 # one pattern over whole command lines
    ps -eo pid,stat,args | awk '$2 !~ /^Z/' |
        grep -E "$DEST/$name/|/etc/$name/|/bin/$name-|--procname-prefix $name|uwsgi --ini /etc/|mariadbd|beam\.smp|/usr/bin/memcached|/usr/sbin/apache2|ovn-northd|ovsdb-server" |
        grep -v -E 'grep|plugin-compat|devstack-rs-test' |
        while read -r pid _; do
            if [[ $(readlink "/proc/$pid/ns/pid" 2>/dev/null) == "$own_ns" ]]; then
                ps -o pid=,stat=,args= -p "$pid" || true
            fi
        done || true
}

teardown() {
    local log=$1
    ./unstack.sh --all 9>&- >>"$log" 2>&1 || echo "unstack failed (see $log)" >&2
    ./clean.sh 9>&- >>"$log" 2>&1 || echo "clean failed (see $log)" >&2
}

RESULTS=()
FAILED=0

run_one() {
    local name=$1 dir=$2 log=$WORK/$1.log t0 secs line check left extra
    extra=${KNOWN_LOCALRC[$name]:-}
    {
        echo "[[local|localrc]]"
        echo "enable_plugin $name $dir"
        if [[ -n $extra ]]; then
            tr ';' '\n' <<<"$extra"
        fi
        if [[ -n ${COMPAT_LOCALRC:-} ]]; then
            printf '%s\n' "$COMPAT_LOCALRC"
        fi
    } >"$TOP_DIR/local.conf"
    cp "$TOP_DIR/local.conf" "$WORK/$name.local.conf"

    exec 9>"$LOCK"
    flock 9
    say "--- $name: stacking ($(date -u +%H:%M:%S); log $log)"
    t0=$(date +%s.%N)
    if ./stack.sh 9>&- >"$log" 2>&1; then
        secs=$(elapsed_since "$t0")
        # In the background: the checks run under errexit (an `if` would turn it off).
        check_service "$name" >"$log.result" 2>>"$log.check" &
        if wait "$!"; then
            check=$(tail -1 "$log.result")
            line="$name: stacked in $secs s; check: $check"
        else
            line="$name: stacked in $secs s; check FAILED: $(tail -1 "$log.check")"
            FAILED=1
        fi
    else
        secs=$(elapsed_since "$t0")
        line="$name: FAILED after $secs s at $(first_error "$log")"
        FAILED=1
    fi
    if [[ ${COMPAT_KEEP:-} == 1 ]]; then
        line+="; left stacked (COMPAT_KEEP=1)"
    else
        teardown "$log"
        left=$(leftovers "$name")
        if [[ -n $left ]]; then
            line+="; LEFT after clean: $(awk '{ $1 = $2 = ""; print }' <<<"$left" | head -3 | tr '\n' ';')"
            FAILED=1
        fi
    fi
    exec 9>&-
    say "$line"
    RESULTS+=("$line")
}

if [[ $# -eq 0 ]]; then
    sed -n '/^# tools\/plugin-compat.sh/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
fi

declare -a NAMES=() DIRS=()
for arg in "$@"; do
    if [[ $arg == *=* ]]; then
        NAMES+=("${arg%%=*}")
        DIRS+=("$(cd "${arg#*=}" && pwd)")
    else
        DIRS+=("$(cd "$arg" && pwd)")
        NAMES+=("$(basename "${DIRS[-1]}")")
    fi
done

say "installing the clients into $CLIENT_VENV"
install_clients "${NAMES[@]}"
for i in "${!NAMES[@]}"; do
    run_one "${NAMES[$i]}" "${DIRS[$i]}"
done

say ""
say "=== plugin-compat: ${#RESULTS[@]} plugin(s), logs in $WORK"
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"
