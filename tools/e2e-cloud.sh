#!/bin/bash
# shellcheck shell=bash
#
# tools/e2e-cloud.sh: the end-to-end test of the default cloud, on this machine, from
# the project's own files only. Exits non-zero on the first failure; prints each step
# with its wall time.
#
#   1. ./clean.sh (best effort), then ./stack.sh with a local.conf that keeps the
#      default services and enables a plugin fixture (a git repo made here) that, at
#      `stack extra`, registers its own service user, service and endpoint through
#      the bash library (create_service_user, get_or_create_service,
#      get_or_create_endpoint), and a [[post-config|$NOVA_CONF]] section that the
#      created server must show (its instance name);
#   2. with the real `openstack` client and the generated openrc: token issue; service
#      list (identity, image, placement, network, compute, and the fixture's); compute
#      service list (conductor, scheduler, compute up); hypervisor list (fake); an
#      image upload; a flavor; `server create --nic none --wait` ACTIVE; delete it;
#   3. a second ./stack.sh over the unchanged cloud skips init and start, and the cloud
#      still answers;
#   4. ./unstack.sh --all, then ./clean.sh: no process and no database of ours left;
#   5. (VIRT_DRIVER=libvirt, while fake stays the default) a second cloud with a
#      local.conf setting VIRT_DRIVER=libvirt: the default image boots on the default
#      flavor (`--nic none`), `login:` shows in `openstack console log show`, the server
#      is deleted; after unstack no QEMU process, after clean no libvirt domain of ours.
#
# Options (environment): E2E_KEEP_LOCALCONF=1 keeps an existing local.conf (it is
# moved aside and restored otherwise); E2E_NO_CLEAN=1 skips the first clean (a warm
# re-stack over a running cloud); E2E_LIBVIRT=0 skips phase 5, E2E_LIBVIRT_ONLY=1 runs
# only phase 5; E2E_KEEP_ON_FAILURE=1 leaves a failed cloud running (by default a
# failure ends with unstack --all and clean).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP_DIR"

# One real cloud per machine at a time: the layer-1 and keystone tests take the same
# lock (they share the ports, DEST and /etc with this run).
exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

WORK=$(mktemp -d /tmp/devstack-e2e.XXXXXX)
SAVED_LOCALCONF=""
T_START=$(date +%s.%N)

say() {
    printf '\n=== %s\n' "$*"
}

elapsed() {
    local t0=$1 t1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

# step NAME COMMAND...: runs it, prints its wall time, fails the test when it fails.
step() {
    local name=$1 t0 rc=0
    shift
    say "$name"
    t0=$(date +%s.%N)
    # Without fd 9 (the lock): the daemons a stack starts must not hold the lock
    # after this script ends.
    "$@" 9>&- || rc=$?
    printf -- '--- %s: %s s (exit %d)\n' "$name" "$(elapsed "$t0")" "$rc"
    if [[ $rc -ne 0 ]]; then
        echo "FAIL: $name" >&2
        exit "$rc"
    fi
}

# retry SECONDS COMMAND...: until it succeeds or the time is up.
retry() {
    local limit=$1 t0
    shift
    t0=$(date +%s)
    until "$@"; do
        if (($(date +%s) - t0 >= limit)); then
            echo "gave up after ${limit} s: $*" >&2
            return 1
        fi
        sleep 3
    done
}

cleanup() {
    local rc=$?
    # A failed run still leaves the machine as it found it (unless asked not to).
    if [[ $rc -ne 0 && -z ${E2E_KEEP_ON_FAILURE:-} ]]; then
        say "teardown after the failure"
        ./unstack.sh --all 9>&- || true
        ./clean.sh 9>&- || true
    fi
    if [[ -n $SAVED_LOCALCONF && -f $SAVED_LOCALCONF ]]; then
        mv -f "$SAVED_LOCALCONF" "$TOP_DIR/local.conf"
    elif [[ -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        rm -f "$TOP_DIR/local.conf"
    fi
    rm -rf "$WORK"
    printf '\ne2e total: %s s, exit %d\n' "$(elapsed "$T_START")" "$rc"
}
trap cleanup EXIT

# --- the plugin fixture -------------------------------------------------------------

make_fixture() {
    local repo=$WORK/e2e-fixture
    mkdir -p "$repo/devstack"
    cat >"$repo/devstack/settings" <<'EOS'
# shellcheck shell=bash
E2E_FIXTURE_PORT=${E2E_FIXTURE_PORT:-9999}
EOS
    cat >"$repo/devstack/plugin.sh" <<'EOS'
# shellcheck shell=bash
# The e2e fixture: registers its own service account, service and endpoint through
# DevStack's bash functions, and records the ids it got.
if [[ $1 == stack && $2 == extra ]]; then
    e2e_user=$(create_service_user e2efixture)
    e2e_service=$(get_or_create_service e2efixture e2e-fixture "devstack-rs e2e fixture")
    e2e_endpoint=$(get_or_create_endpoint e2e-fixture "$REGION_NAME" \
        "http://$SERVICE_HOST:$E2E_FIXTURE_PORT/")
    echo "e2e fixture: user $e2e_user service $e2e_service endpoint $e2e_endpoint"
    [[ -n $e2e_user && -n $e2e_service && -n $e2e_endpoint ]]
fi
EOS
    git -C "$repo" init -q
    git -C "$repo" add -A
    git -C "$repo" -c user.name=e2e -c user.email=e2e@example.com commit -q -m fixture
    echo "$repo"
}

write_localconf() {
    local fixture=$1
    if [[ -f $TOP_DIR/local.conf && -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        SAVED_LOCALCONF=$WORK/local.conf.saved
        cp -f "$TOP_DIR/local.conf" "$SAVED_LOCALCONF"
    fi
    if [[ -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        cat >"$TOP_DIR/local.conf" <<EOS
[[local|localrc]]
# The default services, plus the e2e plugin fixture.
enable_plugin e2e-fixture file://$fixture

# Merged into the real nova.conf after 'stack post-config', before nova starts: the
# server created below must carry this name.
[[post-config|\$NOVA_CONF]]
[DEFAULT]
instance_name_template = e2e-%08x
EOS
    fi
}

# --- checks against the cloud -------------------------------------------------------

os_admin() {
    (
        # shellcheck source=/dev/null
        source "$TOP_DIR/openrc" admin admin >/dev/null
        openstack "$@"
    )
}

# Plain `source openrc` (demo/demo): sourced with no positional parameters, as from
# an interactive shell (a bare `source` would pass this function's own on).
os_demo() {
    local args=("$@")
    (
        set --
        # shellcheck source=/dev/null
        source "$TOP_DIR/openrc" >/dev/null
        openstack "${args[@]}"
    )
}

check_services() {
    local list
    list=$(os_admin service list -f value -c Type)
    echo "$list"
    for t in identity image placement network compute e2e-fixture; do
        grep -qx "$t" <<<"$list" || {
            echo "service type $t is missing" >&2
            return 1
        }
    done
    os_admin user show e2efixture -f value -c name
}

compute_services_up() {
    local list
    list=$(os_admin compute service list -f value -c Binary -c State)
    echo "$list"
    for b in nova-conductor nova-scheduler nova-compute; do
        grep -q "^$b up$" <<<"$list" || return 1
    done
}

hypervisor_fake() {
    local list
    list=$(os_admin hypervisor list -f value -c "Hypervisor Type" -c State)
    echo "$list"
    grep -q "^fake up$" <<<"$list"
}

upload_image() {
    head -c 1048576 /dev/zero >"$WORK/e2e.img"
    os_admin image create --disk-format raw --container-format bare --public \
        --file "$WORK/e2e.img" e2e-image -f value -c status
    [[ $(os_admin image show e2e-image -f value -c status) == active ]]
}

create_flavor() {
    os_admin flavor create --ram 512 --disk 1 --vcpus 1 e2e.tiny -f value -c name
}

create_server() {
    local status
    os_admin server create --flavor e2e.tiny --image e2e-image --nic none --wait e2e-vm \
        -f value -c status
    status=$(os_admin server show e2e-vm -f value -c status)
    echo "server status: $status"
    [[ $status == ACTIVE ]] || return 1
    # The [[post-config|$NOVA_CONF]] section reached nova.
    local name
    name=$(os_admin server show e2e-vm -f value -c OS-EXT-SRV-ATTR:instance_name)
    echo "instance name: $name (from local.conf's post-config section)"
    [[ $name == e2e-* ]] || return 1
    # nova-compute's own config is derived from nova.conf after the merge, as DevStack's.
    grep -q '^instance_name_template = e2e-%08x' /etc/nova/nova-cpu.conf
}

delete_server() {
    os_admin server delete --wait e2e-vm
}

# No password (generated, kept 0600 in $DATA_DIR) may appear in any log: ours or
# the services' own.
no_password_in_logs() {
    local dest=${DEST:-/opt/stack} name value found=0
    local pwfile=$dest/data/.devstack-passwords logdir=$dest/logs
    [[ -r $pwfile ]] || {
        echo "no passwords file at $pwfile" >&2
        return 1
    }
    while IFS='=' read -r name value; do
        [[ -n $value ]] || continue
        if grep -rlF -- "$value" "$logdir"; then
            echo "$name appears in the files above" >&2
            found=1
        fi
    done <"$pwfile"
    ((found == 0)) && echo "no password in $logdir"
}

# A second ./stack.sh over the unchanged, running cloud skips initialisation and
# start (the hooks still run), and the cloud still answers.
restack_unchanged() {
    local out
    out=$(./stack.sh 2>&1) || {
        echo "$out" >&2
        return 1
    }
    echo "$out" | grep -E 'skipped|completed in'
    grep -q '\[skipped\] start services' <<<"$out" || {
        echo "init and start were not skipped" >&2
        return 1
    }
    os_admin token issue -f value -c expires
}

nothing_of_ours_left() {
    local procs dbs
    # uwsgi, nova, mysqld/mariadbd, beam (rabbit), memcached that we started (zombies
    # are not running: PID 1 here may be slow to reap them).
    # shellcheck disable=SC2009 # one pattern over whole command lines
    procs=$(ps -eo pid,stat,args | awk '$2 !~ /^Z/' | grep -E 'uwsgi --ini /etc/|nova-(conductor|scheduler|compute)|mariadbd|mysqld|beam\.smp|/usr/bin/memcached|/usr/sbin/(libvirtd|virtlogd)|qemu-system' |
        grep -v -E 'grep|devstack-rs-test' || true)
    if [[ -n $procs ]]; then
        echo "processes left:" >&2
        echo "$procs" >&2
        return 1
    fi
    # MariaDB keeps a database as a directory of its datadir: checked with the server
    # stopped too (unstack --all stopped it).
    local db
    for db in keystone glance placement neutron nova_api nova_cell0 nova_cell1; do
        if [[ -d /var/lib/mysql/$db ]]; then
            echo "database $db left in /var/lib/mysql" >&2
            return 1
        fi
    done
    if command -v mariadb >/dev/null && [[ -S /run/mysqld/mysqld.sock ]]; then
        dbs=$(mariadb -u root -N -e 'SHOW DATABASES' 2>/dev/null |
            grep -E '^(keystone|glance|placement|neutron|nova_api|nova_cell0|nova_cell1)$' || true)
        if [[ -n $dbs ]]; then
            echo "databases left: $dbs" >&2
            return 1
        fi
    fi
    [[ ! -e $TOP_DIR/openrc ]] || {
        echo "openrc left" >&2
        return 1
    }
    echo "no process, database or credentials file of ours left"
}

# --- phase 5: real guests (libvirt) -------------------------------------------------

DEFAULT_IMAGE=cirros-0.6.3-x86_64-disk

write_libvirt_localconf() {
    if [[ -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        cat >"$TOP_DIR/local.conf" <<EOS
[[local|localrc]]
VIRT_DRIVER=libvirt
EOS
    fi
}

hypervisor_qemu() {
    local list
    list=$(os_admin hypervisor list -f value -c "Hypervisor Type" -c State)
    echo "$list"
    grep -q "^QEMU up$" <<<"$list"
}

default_image_and_flavors() {
    os_admin image show "$DEFAULT_IMAGE" -f value -c status -c visibility -c disk_format
    [[ $(os_admin image show "$DEFAULT_IMAGE" -f value -c status) == active ]] || return 1
    local flavors
    flavors=$(os_admin flavor list --all -f value -c Name | sort | tr '\n' ' ')
    echo "flavors: $flavors"
    for f in m1.tiny m1.small m1.medium m1.large m1.xlarge cirros256 ds512M ds1G ds2G ds4G; do
        grep -qw -- "$f" <<<"$flavors" || {
            echo "flavor $f is missing" >&2
            return 1
        }
    done
}

create_libvirt_server() {
    os_admin server create --flavor m1.tiny --image "$DEFAULT_IMAGE" --nic none --wait \
        e2e-lv -f value -c status
    [[ $(os_admin server show e2e-lv -f value -c status) == ACTIVE ]] || return 1
    local inst
    inst=$(os_admin server show e2e-lv -f value -c OS-EXT-SRV-ATTR:instance_name)
    echo "instance $inst"
    # A real QEMU process runs the guest.
    pgrep -af "qemu-system-x86_64 .*guest=$inst" | cut -c1-160
}

console_login() {
    os_admin console log show e2e-lv 2>/dev/null | grep -m1 'login:'
}

delete_libvirt_server() {
    os_admin server delete --wait e2e-lv
}

no_qemu_left() {
    if pgrep -a qemu-system; then
        echo "QEMU processes left after unstack" >&2
        return 1
    fi
    if pgrep -ax 'libvirtd|virtlogd'; then
        echo "libvirt daemons left after unstack" >&2
        return 1
    fi
    echo "no QEMU process, no libvirtd or virtlogd"
}

# libvirtd is stopped here: its persistent domain definitions are files.
no_domain_of_ours_left() {
    local left
    left=$(grep -l 'http://openstack.org/xmlns/libvirt/nova/' /etc/libvirt/qemu/*.xml 2>/dev/null || true)
    if [[ -n $left ]]; then
        echo "libvirt domains of ours left: $left" >&2
        return 1
    fi
    echo "no libvirt domain of ours left"
}

libvirt_phase() {
    write_libvirt_localconf
    say "clean (best effort)"
    ./clean.sh 9>&- || echo "(clean before the libvirt phase failed; going on)"
    local t0
    t0=$(date +%s.%N)
    step "stack (VIRT_DRIVER=libvirt)" ./stack.sh
    LIBVIRT_STACK_TIME=$(elapsed "$t0")
    step "hypervisor list (QEMU)" retry 90 hypervisor_qemu
    step "default image and DevStack's flavors" default_image_and_flavors
    t0=$(date +%s.%N)
    step "server create --nic none --wait (libvirt)" create_libvirt_server
    step "login prompt in the console log" retry 180 console_login
    LIBVIRT_BOOT_TIME=$(elapsed "$t0")
    step "server delete (libvirt)" delete_libvirt_server
    step "unstack --all (libvirt)" ./unstack.sh --all
    step "no QEMU process left" no_qemu_left
    step "clean (libvirt)" ./clean.sh
    step "no libvirt domain of ours left" no_domain_of_ours_left
    step "nothing of ours left (libvirt)" nothing_of_ours_left
    printf '\nlibvirt phase: stack %s s, server create to login prompt %s s\n' \
        "$LIBVIRT_STACK_TIME" "$LIBVIRT_BOOT_TIME"
}

# --- the run ------------------------------------------------------------------------

if [[ -n ${E2E_LIBVIRT_ONLY:-} ]]; then
    if [[ -f $TOP_DIR/local.conf && -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        SAVED_LOCALCONF=$WORK/local.conf.saved
        cp -f "$TOP_DIR/local.conf" "$SAVED_LOCALCONF"
    fi
    libvirt_phase
    echo "e2e: PASS"
    exit 0
fi

FIXTURE=$(make_fixture)
write_localconf "$FIXTURE"

if [[ -z ${E2E_NO_CLEAN:-} ]]; then
    say "clean (best effort)"
    ./clean.sh 9>&- || echo "(clean before the test failed; going on)"
fi

STACK_T0=$(date +%s.%N)
step "stack" ./stack.sh
STACK_TIME=$(elapsed "$STACK_T0")

step "token issue" os_admin token issue -f value -c expires
step "service list" check_services
step "compute service list (up, bounded wait)" retry 120 compute_services_up
step "hypervisor list (fake)" retry 60 hypervisor_fake
step "image upload" upload_image
step "flavor create" create_flavor
step "server create --nic none --wait" create_server
step "demo user sees the catalog" os_demo catalog list -f value -c Type
step "server delete" delete_server
step "no password in any log" no_password_in_logs
step "re-stack of the unchanged cloud" restack_unchanged

UNSTACK_T0=$(date +%s.%N)
step "unstack --all" ./unstack.sh --all
UNSTACK_TIME=$(elapsed "$UNSTACK_T0")
CLEAN_T0=$(date +%s.%N)
step "clean" ./clean.sh
CLEAN_TIME=$(elapsed "$CLEAN_T0")
step "nothing of ours left" nothing_of_ours_left

printf '\nwall times: stack %s s, unstack %s s, clean %s s\n' \
    "$STACK_TIME" "$UNSTACK_TIME" "$CLEAN_TIME"
if [[ ${E2E_LIBVIRT:-1} != 0 ]]; then
    libvirt_phase
fi
echo "e2e: PASS"
