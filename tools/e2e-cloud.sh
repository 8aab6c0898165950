#!/bin/bash
# shellcheck shell=bash
#
# tools/e2e-cloud.sh: the end-to-end test of the default cloud, on this machine, from
# the project's own files only. Exits non-zero on the first failure; prints each step
# with its wall time.
#
#   1. ./clean.sh (best effort), then ./stack.sh with a local.conf that keeps the
#      default services (VIRT_DRIVER=libvirt, ML2/OVN, cinder on NFS, tempest,
#      horizon) and enables a plugin fixture (a git repo made here) that, at
#      `stack extra`, registers its own service user, service and endpoint through
#      the bash library and serves its API behind the front proxy, and a
#      [[post-config|$NOVA_CONF]] section that the guests must show (their instance
#      name);
#   2. with the real `openstack` client and the generated openrc: DevStack's URL
#      layout, the catalog, compute services up, the QEMU hypervisor, the default
#      image and DevStack's flavors, the initial networks and the OVN chassis;
#   3. as demo, two real guests of the default image on `private` (a key pair, a
#      security group for ICMP and SSH): both reach `login:` in their console logs;
#      the first one's noVNC console URL answers with the noVNC page, and a websocket
#      to it with the URL's token gets the guest's RFB banner;
#      ssh into the first through a floating IP from the devstack-public namespace,
#      with the key it fetched from the metadata service, and ping the second from it;
#      a volume's whole life with an attach the guest sees; tempest's smoke set;
#      the dashboard in a headless browser; no password in any log;
#   4. a second ./stack.sh over the unchanged cloud skips init and start;
#   5. ./unstack.sh --all (no QEMU left), then ./clean.sh: no process, database,
#      libvirt domain, bridge or namespace of ours left;
#   6. the fast API-only cloud (VIRT_DRIVER=fake): a server `--nic none` goes ACTIVE,
#      then unstack and clean leave nothing.
#
# Options (environment): E2E_KEEP_LOCALCONF=1 keeps an existing local.conf (it is
# moved aside and restored otherwise); E2E_NO_CLEAN=1 skips the first clean (a warm
# re-stack over a running cloud); E2E_FAKE=0 skips phase 6, E2E_FAKE_ONLY=1 runs
# only phase 6; E2E_KEEP_ON_FAILURE=1 leaves a failed cloud running (by default a
# failure ends with unstack --all and clean).
# E2E_HORIZON= (empty) skips the dashboard's browser test (default on; horizon is a
# default service): Debian's headless chromium + chromedriver, Selenium from PyPI in a
# venv of the test's own, log in as admin, Project > Compute > Instances lists the
# server, screenshot saved in E2E_ARTIFACTS (default $TOP_DIR/e2e-artifacts).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP_DIR"

# One real cloud per machine at a time: the layer-1 and keystone tests take the same
# lock (they share the ports, DEST and /etc with this run).
exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

WORK=$(mktemp -d /tmp/devstack-e2e.XXXXXX)
E2E_HORIZON=${E2E_HORIZON-1}
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
# COMMAND runs under errexit, so any failing command inside a step function ends
# the run (called as `"$@" || rc=$?`, bash ignores errexit inside the function and
# only its last command counted: a failed volume attach went unnoticed); the EXIT
# trap names the step.
CURRENT_STEP=""
step() {
    local name=$1 t0
    shift
    say "$name"
    CURRENT_STEP=$name
    t0=$(date +%s.%N)
    STEP_T0=$t0
    # Without fd 9 (the lock): the daemons a stack starts must not hold the lock
    # after this script ends.
    "$@" 9>&-
    printf -- '--- %s: %s s (exit 0)\n' "$name" "$(elapsed "$t0")"
    CURRENT_STEP=""
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
    if [[ $rc -ne 0 && -n $CURRENT_STEP ]]; then
        printf -- '--- %s: %s s (exit %d)\n' "$CURRENT_STEP" "$(elapsed "$STEP_T0")" "$rc"
        echo "FAIL: $CURRENT_STEP" >&2
    fi
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
# Killed or interrupted, the run failed (the EXIT trap then sees the status).
trap 'exit 143' TERM
trap 'exit 130' INT

# --- the plugin fixture -------------------------------------------------------------

make_fixture() {
    local repo=$WORK/e2e-fixture
    mkdir -p "$repo/devstack" "$repo/e2efixture"
    # A small WSGI app behind keystonemiddleware's auth_token, as service APIs are.
    cat >"$repo/pyproject.toml" <<'EOS'
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "e2efixture"
version = "1.0"

[tool.setuptools]
packages = ["e2efixture"]
EOS
    cat >"$repo/e2efixture/__init__.py" <<'EOS'
EOS
    cat >"$repo/e2efixture/wsgi.py" <<'EOS'
"""The e2e fixture's API: answers JSON to requests with a valid keystone token."""
import json
import os

from keystonemiddleware import auth_token
from oslo_config import cfg


def _app(environ, start_response):
    body = json.dumps({
        "fixture": "ok",
        "identity": environ.get("HTTP_X_IDENTITY_STATUS"),
        "project": environ.get("HTTP_X_PROJECT_NAME"),
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": environ.get("PATH_INFO"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _make():
    conf = cfg.ConfigOpts()
    conf([], project="e2efixture",
         default_config_files=[os.environ.get("E2E_FIXTURE_CONF",
                                              "/etc/e2efixture/e2efixture.conf")])
    return auth_token.AuthProtocol(_app, {"oslo_config_config": conf})


application = _make()
EOS
    cat >"$repo/devstack/settings" <<'EOS'
# shellcheck shell=bash
# As real service plugins: the service's names, dirs and files, and its services on.
E2E_FIXTURE_DIR=$DEST/e2e-fixture
E2E_FIXTURE_CONF_DIR=/etc/e2efixture
E2E_FIXTURE_CONF=$E2E_FIXTURE_CONF_DIR/e2efixture.conf
E2E_FIXTURE_UWSGI_CONF=$E2E_FIXTURE_CONF_DIR/e2efixture-api-uwsgi.ini
E2E_FIXTURE_STATE=$DATA_DIR/e2efixture
enable_service e2e-api e2e-worker
EOS
    cat >"$repo/devstack/plugin.sh" <<'EOS'
# shellcheck shell=bash
# The e2e fixture, written the way real service plugins are: its WSGI app installed
# with setup_develop, served by uWSGI on a socket behind the front proxy at
# /e2e-fixture (write_uwsgi_config with a URL path), its database, service user,
# catalog entry and auth_token config, and a worker process.
if [[ $1 == stack && $2 == install ]]; then
    setup_develop "$E2E_FIXTURE_DIR"
elif [[ $1 == stack && $2 == post-config ]]; then
    sudo install -d -o "$STACK_USER" "$E2E_FIXTURE_CONF_DIR" "$E2E_FIXTURE_STATE"
    recreate_database e2efixture
    iniset "$E2E_FIXTURE_CONF" database connection "$(database_connection_url e2efixture)"
    configure_keystone_authtoken_middleware "$E2E_FIXTURE_CONF" e2efixture
    setup_logging "$E2E_FIXTURE_CONF"
    write_uwsgi_config "$E2E_FIXTURE_UWSGI_CONF" e2efixture.wsgi:application /e2e-fixture "" e2e-api
    iniset "$E2E_FIXTURE_UWSGI_CONF" uwsgi env "E2E_FIXTURE_CONF=$E2E_FIXTURE_CONF"
elif [[ $1 == stack && $2 == extra ]]; then
    e2e_user=$(create_service_user e2efixture)
    e2e_service=$(get_or_create_service e2efixture e2e-fixture "devstack-rs e2e fixture")
    e2e_endpoint=$(get_or_create_endpoint e2e-fixture "$REGION_NAME" \
        "$SERVICE_PROTOCOL://$SERVICE_HOST/e2e-fixture")
    echo "e2e fixture: user $e2e_user service $e2e_service endpoint $e2e_endpoint"
    [[ -n $e2e_user && -n $e2e_service && -n $e2e_endpoint ]]
    run_process e2e-api "$(command -v uwsgi) --procname-prefix e2e-api --ini $E2E_FIXTURE_UWSGI_CONF"
    run_process e2e-worker "/bin/bash -c 'while sleep 2; do date >$E2E_FIXTURE_STATE/heartbeat; done'"
elif [[ $1 == unstack ]]; then
    stop_process e2e-api
    stop_process e2e-worker
    remove_uwsgi_config "$E2E_FIXTURE_UWSGI_CONF" e2e-api
elif [[ $1 == clean ]]; then
    sudo rm -rf "$E2E_FIXTURE_CONF_DIR" "$E2E_FIXTURE_STATE"
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
# The default services, plus the e2e plugin fixture (re-fetched: an older fixture
# may sit in \$DEST from an earlier run).
enable_plugin e2e-fixture file://$fixture
RECLONE=True


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
    for t in identity image placement network compute block-storage volumev3 e2e-fixture; do
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
    os_admin server create --flavor e2e.tiny --image e2e-image --nic none --wait e2e-vm \
        -f value -c status
    [[ $(os_admin server show e2e-vm -f value -c status) == ACTIVE ]]
}

# wait_status SECONDS WANT KIND NAME: until `openstack KIND show NAME` says WANT
# (an error status fails at once); as admin, or as E2E_OS says (os_demo).
wait_status() {
    local limit=$1 want=$2 t0 status
    shift 2
    t0=$(date +%s)
    while :; do
        # KIND... show NAME: the name is the last argument.
        status=$("${E2E_OS:-os_admin}" "${@:1:$#-1}" show "${!#}" -f value -c status 2>/dev/null || true)
        [[ $status == "$want" ]] && return 0
        if [[ $status == error* ]] || (($(date +%s) - t0 >= limit)); then
            echo "$*: $status (wanted $want)" >&2
            return 1
        fi
        sleep 1
    done
}

snapshot_gone() {
    ! os_demo volume snapshot show e2e-snap >/dev/null 2>&1
}

# As demo: a real volume (a sparse file on the NFS backend), a snapshot, attached to
# the running guest (the guest sees a new disk) and detached again, then deleted.
volume_lifecycle() {
    local E2E_OS=os_demo fip
    os_demo volume create --size 1 e2e-vol -f value -c id
    wait_status 120 available volume e2e-vol
    os_demo volume snapshot create --volume e2e-vol e2e-snap -f value -c id
    wait_status 120 available volume snapshot e2e-snap
    os_demo server add volume e2e-vm1 e2e-vol
    wait_status 120 in-use volume e2e-vol
    fip=$(os_demo floating ip list -f value -c "Floating IP Address" | head -1)
    retry 60 guest_sees_disk "$fip" vdb
    os_demo server remove volume e2e-vm1 e2e-vol
    wait_status 120 available volume e2e-vol
    os_demo volume snapshot delete e2e-snap
    retry 60 snapshot_gone
    os_demo volume delete e2e-vol
    echo "volume: created, snapshotted, attached (the guest saw vdb), detached, deleted"
}

# A user's first requests, the moment ./stack.sh said "stack completed": no wait,
# no retry, an error status fails at once (the first volume used to go to error:
# the scheduler had no backend's capabilities yet). As demo: a volume to available,
# an image upload to active, a network with a subnet; each deleted again.
first_requests() {
    local E2E_OS=os_demo
    os_demo volume create --size 1 e2e-first-vol -f value -c id
    wait_status 120 available volume e2e-first-vol
    head -c 65536 /dev/zero >"$WORK/first.img"
    os_demo image create --disk-format raw --container-format bare \
        --file "$WORK/first.img" e2e-first-image -f value -c status
    [[ $(os_demo image show e2e-first-image -f value -c status) == active ]]
    os_demo network create e2e-first-net -f value -c status
    os_demo subnet create --network e2e-first-net --subnet-range 10.250.0.0/24 \
        e2e-first-subnet -f value -c cidr
    os_demo subnet delete e2e-first-subnet
    os_demo network delete e2e-first-net
    os_demo image delete e2e-first-image
    os_demo volume delete e2e-first-vol
    echo "first requests: volume available, image active, network and subnet created"
}

# The daily loop: `devstack restart` of nova-compute and neutron's API server with
# DevStack's names; both come back (the compute service up again, the network API
# answering), and the state knows their new pids.
restart_services() {
    local before after
    before=$("$TOP_DIR/target/release/devstack" --top-dir "$TOP_DIR" status | awk '$1 == "n-cpu" || $1 == "q-svc" { print $1, $3 }')
    "$TOP_DIR/target/release/devstack" --top-dir "$TOP_DIR" restart n-cpu q-svc
    after=$("$TOP_DIR/target/release/devstack" --top-dir "$TOP_DIR" status | awk '$1 == "n-cpu" || $1 == "q-svc" { print $1, $3 }')
    echo "before: $before / after: $after"
    [[ -n $after && $before != "$after" ]]
    # Not `| grep -q`: under pipefail its early exit can fail the client with SIGPIPE.
    local networks
    networks=$(os_admin network list -f value -c Name)
    grep -qx private <<<"$networks"
    retry 120 compute_services_up
}

guest_sees_disk() {
    guest_ssh "$1" cat /proc/partitions | grep -w "$2"
}

# OpenStack's own test suite against the cloud, through `devstack test`: tempest's
# smoke set (real guests, ssh through floating IPs from the public namespace, volumes,
# the dashboard), 0 failures; E2E_TEMPEST=REGEX runs those tests instead.
tempest_smoke() {
    local select=()
    [[ -z ${E2E_TEMPEST:-} ]] || select=("$E2E_TEMPEST")
    "$TOP_DIR/target/release/devstack" --top-dir "$TOP_DIR" test --concurrency 2 "${select[@]}"
}

delete_server() {
    os_admin server delete --wait e2e-vm
}

# No password (generated, kept 0600 in $DATA_DIR) may appear in any log: ours or
# the services' own.
# DevStack's URL layout: every core API behind the front proxy on port 80, by path.
urls_behind_the_proxy() {
    local urls
    urls=$(os_admin endpoint list --interface public -f value -c URL)
    echo "$urls"
    local path
    for path in /identity /image /placement /networking /compute/v2.1 /volume/v3 /e2e-fixture; do
        grep -q "^http://[^/:]*$path\$" <<<"$urls" || {
            echo "no endpoint at $path on port 80" >&2
            return 1
        }
    done
}

# The fixture's API answers through the proxy's path route: 401 without a token,
# its JSON with an admin token (auth_token confirmed it), with SCRIPT_NAME set.
fixture_api() {
    local url token code body
    url=$(os_admin endpoint list --service e2e-fixture --interface public -f value -c URL)
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/things")
    [[ $code == 401 ]] || {
        echo "without a token: HTTP $code (want 401)" >&2
        return 1
    }
    token=$(os_admin token issue -f value -c id)
    body=$(curl -sf -H "X-Auth-Token: $token" "$url/v1/things") || {
        echo "GET $url/v1/things with a token failed" >&2
        return 1
    }
    echo "$body"
    grep -q '"identity": "Confirmed"' <<<"$body" &&
        grep -q '"script_name": "/e2e-fixture"' <<<"$body" &&
        grep -q '"path_info": "/v1/things"' <<<"$body" &&
        [[ -s ${DEST:-/opt/stack}/data/e2efixture/heartbeat ]]
}

# DATABASE_USER is root, reachable with the password over TCP, and ~/.my.cnf is
# DevStack's (0600).
database_root_login() {
    local pw
    pw=$(sed -n 's/^DATABASE_PASSWORD=//p' "${DEST:-/opt/stack}/data/.devstack-passwords")
    MYSQL_PWD=$pw mariadb --no-defaults -uroot -h127.0.0.1 -N -e 'SELECT CURRENT_USER()' &&
        [[ $(stat -c %a "$HOME/.my.cnf") == 600 ]] &&
        mariadb -N -e 'SELECT 1'
}

# The dashboard in a real browser (E2E_HORIZON=1): tools/horizon-browser-test.py.
dashboard_browser() {
    local venv=$WORK/selenium-venv uv shots=${E2E_ARTIFACTS:-$TOP_DIR/e2e-artifacts}
    uv=$(command -v uv || echo "${DEST:-/opt/stack}/.uv-venv/bin/uv")
    if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
        echo "installing Debian's chromium and chromium-driver"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
            --no-install-recommends chromium chromium-driver >/dev/null
    fi
    # As the product's uv calls: the machine's trust store (a TLS-intercepting proxy
    # to the registry works), PIP_INDEX_URL honoured.
    local -a uv_env=(UV_NATIVE_TLS=1)
    [[ -n ${UV_INDEX_URL:-} || -z ${PIP_INDEX_URL:-} ]] || uv_env+=("UV_INDEX_URL=$PIP_INDEX_URL")
    "$uv" venv -q --python /usr/bin/python3 "$venv"
    env "${uv_env[@]}" "$uv" pip install -q --python "$venv/bin/python3" selenium
    mkdir -p "$shots"
    local project
    project=$(os_admin project show demo -f value -c id)
    ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' "${DEST:-/opt/stack}/data/.devstack-passwords") \
        "$venv/bin/python3" "$TOP_DIR/tools/horizon-browser-test.py" \
        "http://127.0.0.1/dashboard/" "$project" e2e-vm1 "$shots/horizon-instances.png"
}

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

# A second ./stack.sh over the unchanged, running cloud runs nothing after the
# settings (no step's inputs changed), and the cloud still answers. The stack's own
# time (without ./stack.sh's build check) is RESTACK_TIME.
restack_unchanged() {
    local out
    out=$(./stack.sh 2>&1) || {
        echo "$out" >&2
        return 1
    }
    echo "$out"
    grep -q 'nothing to do' <<<"$out" || {
        echo "the re-stack of the unchanged cloud ran its steps again:" >&2
        grep -E '^(every step runs|resuming)' <<<"$out" >&2 || true
        return 1
    }
    # A process that stopped during the run is started again (not a failure of the
    # re-stack): its log's last lines say why it stopped.
    local name
    for name in $(sed -n 's/^started again what had stopped since the last stack: \(.*\) (see its log)$/\1/p' <<<"$out" | tr ',' ' '); do
        echo "--- $name had stopped during the run; its log ends:"
        tail -n 20 "${LOGDIR:-/opt/stack/logs}/$name.log" || true
    done
    RESTACK_TIME=$(sed -n 's/^stack completed in \(.*\)$/\1/p' <<<"$out")
    os_admin token issue -f value -c expires
}

# Keystone's pid as `devstack status` lists it (DevStack's name: key).
keystone_pid() {
    "$TOP_DIR/target/release/devstack" --top-dir "$TOP_DIR" status | awk '$1 == "key" { print $3 }'
}

# One [[post-config|$NOVA_CONF]] option changed: the re-stack starts at the merge,
# the option reaches nova.conf, nova's processes restart and the others are kept
# (keystone's pid is the same), and the cloud answers. Its time is CHANGE_TIME.
restack_one_option() {
    local out keystone_before keystone_after
    keystone_before=$(keystone_pid)
    # shellcheck disable=SC2016 # $NOVA_CONF is for local.conf, expanded by the stack
    printf '\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\nperiodic_fuzzy_delay = 31\n' >>"$TOP_DIR/local.conf"
    out=$(./stack.sh 2>&1) || {
        echo "$out" >&2
        return 1
    }
    echo "$out"
    grep -q 'the stack resumes at' <<<"$out" || {
        echo "the re-stack after one changed option did not start at the merge:" >&2
        grep -E '^(every step runs|resuming)' <<<"$out" >&2 || true
        return 1
    }
    grep -q '^periodic_fuzzy_delay = 31' /etc/nova/nova.conf || {
        echo "the changed option did not reach /etc/nova/nova.conf" >&2
        return 1
    }
    keystone_after=$(keystone_pid)
    [[ -n $keystone_before && $keystone_before == "$keystone_after" ]] || {
        echo "keystone restarted ($keystone_before -> $keystone_after) though its config did not change" >&2
        return 1
    }
    CHANGE_TIME=$(sed -n 's/^stack completed in \(.*\)$/\1/p' <<<"$out")
    os_admin compute service list -f value -c Binary -c State
}

nothing_of_ours_left() {
    local procs dbs
    # uwsgi, nova, mysqld/mariadbd, beam (rabbit), memcached that we started (zombies
    # are not running: PID 1 here may be slow to reap them).
    # shellcheck disable=SC2009 # one pattern over whole command lines
    procs=$(ps -eo pid,stat,args | awk '$2 !~ /^Z/' | grep -E 'uwsgi --ini /etc/|uwsgi --procname-prefix|nova-(conductor|scheduler|compute|novncproxy)|cinder-(scheduler|volume)|mariadbd|mysqld|beam\.smp|/usr/bin/memcached|/usr/bin/etcd |/usr/sbin/(libvirtd|virtlogd)|qemu-system|/usr/sbin/apache2' |
        grep -v -E 'grep|devstack-rs-test' || true)
    if [[ -n $procs ]]; then
        echo "processes left:" >&2
        echo "$procs" >&2
        return 1
    fi
    # MariaDB keeps a database as a directory of its datadir: checked with the server
    # stopped too (unstack --all stopped it).
    local db
    for db in keystone glance placement neutron nova_api nova_cell0 nova_cell1 cinder e2efixture; do
        if [[ -d /var/lib/mysql/$db ]]; then
            echo "database $db left in /var/lib/mysql" >&2
            return 1
        fi
    done
    if command -v mariadb >/dev/null && [[ -S /run/mysqld/mysqld.sock ]]; then
        dbs=$(mariadb -u root -N -e 'SHOW DATABASES' 2>/dev/null |
            grep -E '^(keystone|glance|placement|neutron|nova_api|nova_cell0|nova_cell1|cinder|e2efixture)$' || true)
        if [[ -n $dbs ]]; then
            echo "databases left: $dbs" >&2
            return 1
        fi
    fi
    [[ ! -e $TOP_DIR/openrc ]] || {
        echo "openrc left" >&2
        return 1
    }
    if grep -q ' /opt/stack/data/cinder' /proc/mounts; then
        echo "cinder's NFS bind mount left" >&2
        return 1
    fi
    local left
    for left in /etc/e2efixture "${DEST:-/opt/stack}/data/apache/sites-enabled/e2e-api.conf" \
        "$HOME/.my.cnf" /var/run/uwsgi/e2e-api.socket; do
        if [[ -e $left ]]; then
            echo "$left left" >&2
            return 1
        fi
    done
    echo "no process, database or credentials file of ours left"
}

# --- real guests on OVN (libvirt, the default driver) --------------------------------

DEFAULT_IMAGE=cirros-0.6.3-x86_64-disk
PUBLIC_NS=devstack-public
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5
    -o BatchMode=yes -o LogLevel=ERROR)

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

# As a DevStack user does it, as demo: a key pair, a security group allowing ICMP and
# SSH, two guests of the default image on the default flavor on `private`.
boot_guests() {
    local E2E_OS=os_demo
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/e2e-key"
    os_demo keypair create --public-key "$WORK/e2e-key.pub" e2e-key -f value -c name
    os_demo security group create e2e-sg -f value -c name
    os_demo security group rule create --protocol icmp --ingress e2e-sg -f value -c id >/dev/null
    os_demo security group rule create --protocol tcp --dst-port 22 --ingress e2e-sg \
        -f value -c id >/dev/null
    local vm
    for vm in e2e-vm1 e2e-vm2; do
        os_demo server create --flavor m1.tiny --image "$DEFAULT_IMAGE" --network private \
            --security-group e2e-sg --key-name e2e-key "$vm" -f value -c id
    done
    wait_status 240 ACTIVE server e2e-vm1
    wait_status 240 ACTIVE server e2e-vm2
    local inst
    for vm in e2e-vm1 e2e-vm2; do
        # The instance name is an admin's field; admin finds demo's server by its id.
        inst=$(os_admin server show "$(os_demo server show "$vm" -f value -c id)" \
            -f value -c OS-EXT-SRV-ATTR:instance_name)
        echo "$vm: instance $inst, $(os_demo server show "$vm" -f value -c addresses)"
        # The [[post-config|$NOVA_CONF]] section reached nova.
        [[ $inst == e2e-* ]] || return 1
        # A real QEMU process runs the guest.
        pgrep -af "qemu-system-x86_64 .*guest=$inst" | cut -c1-120
    done
    # nova-compute's own config is derived from nova.conf after the merge, as DevStack's.
    grep -q '^instance_name_template = e2e-%08x' /etc/nova/nova-cpu.conf
}

at_login_prompt() {
    os_demo console log show "$1" 2>/dev/null | grep -m1 'login:'
}

guests_at_login() {
    at_login_prompt e2e-vm1 && at_login_prompt e2e-vm2
}

# The guest's console the way a user opens it: `openstack console url show` gives
# DevStack's noVNC URL (http://SERVICE_HOST:6080/vnc_lite.html?path=...), the page
# answers, and a websocket to the proxy with the URL's token gets the guest's RFB
# banner from QEMU's VNC server (the proxy checks the token with nova and connects
# to the compute host's VNC address).
console_url() {
    local url page
    url=$(os_demo console url show --novnc e2e-vm1 -f value -c url)
    echo "console URL: ${url%%\?*}?..."
    [[ $url =~ ^http://[^/:]+:6080/vnc_lite\.html\? ]] || {
        echo "not DevStack's noVNC URL: $url" >&2
        return 1
    }
    page=$(curl -fsS --max-time 10 "$url")
    grep -q '<title>noVNC</title>' <<<"$page" || {
        echo "the console URL did not answer with the noVNC page" >&2
        return 1
    }
    timeout 30 python3 - "$url" <<'PY'
import base64, os, socket, sys, urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
# noVNC opens ws://HOST:PORT/ + the URL's `path` parameter ("?token=...").
path = "/" + urllib.parse.parse_qs(url.query)["path"][0]
key = base64.b64encode(os.urandom(16)).decode()
sock = socket.create_connection((url.hostname, url.port), timeout=20)
sock.sendall(
    (
        f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
        f"Origin: {url.scheme}://{url.netloc}\r\n\r\n"
    ).encode()
)
data = b""
while b"\r\n\r\n" not in data:
    chunk = sock.recv(4096)
    if not chunk:
        sys.exit(f"the proxy closed the connection: {data!r}")
    data += chunk
head, _, frame = data.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit(f"no websocket upgrade: {head.decode(errors='replace')}")
while len(frame) < 2 + 12:
    chunk = sock.recv(4096)
    if not chunk:
        break
    frame += chunk
# A server frame is unmasked; the banner is short (one length byte).
banner = frame[2 : 2 + (frame[1] & 0x7F)] if len(frame) >= 2 else b""
if not banner.startswith(b"RFB 003."):
    sys.exit(f"no RFB banner from the guest: {frame[:40]!r}")
print("websocket: the guest's VNC server answered", banner.decode().strip())
PY
}

fixed_ip() {
    os_demo server show "$1" -f json -c addresses |
        python3 -c 'import json,sys; print([a for n in json.load(sys.stdin)["addresses"].values() for a in n if ":" not in a][0])'
}

# guest_ssh IP COMMAND: ssh into a guest from the public network's namespace, with
# the key the guest fetched from the metadata service.
GUEST_SSH=(ip netns exec "$PUBLIC_NS" ssh "${SSH_OPTS[@]}" -i "$WORK/e2e-key")
guest_ssh() {
    local ip=$1
    shift
    "${GUEST_SSH[@]}" "cirros@$ip" "$@"
}

# The first guest gets a floating IP; from the public side, ssh into it with the
# key it took from the metadata service (its hostname too), and from there ping the
# second guest's fixed address over the private network.
ssh_through_floating_ip() {
    local fip vm2_ip out
    fip=$(os_demo floating ip create public -f value -c floating_ip_address)
    VM1_FIP=$fip
    os_demo server add floating ip e2e-vm1 "$fip"
    vm2_ip=$(fixed_ip e2e-vm2)
    echo "e2e-vm1: floating IP $fip; e2e-vm2: $vm2_ip"
    local t0
    t0=$(date +%s.%N)
    retry 120 guest_ssh "$fip" true || {
        ip netns exec "$PUBLIC_NS" ip addr >&2 || true
        os_demo console log show e2e-vm1 | tail -20 >&2 || true
        return 1
    }
    echo "ssh through the floating IP answered after $(elapsed "$t0") s"
    out=$(guest_ssh "$fip" "uname -a; hostname; ping -c 3 -W 2 $vm2_ip")
    echo "$out"
    grep -q '^Linux ' <<<"$out" && grep -qx 'e2e-vm1' <<<"$out" &&
        grep -q ' 0% packet loss' <<<"$out"
}

# wall_of COMMAND...: runs it (stdin from /dev/zero cut by the caller) and prints
# its wall time in seconds; fails with it, or after 120 s.
wall_of() {
    local t0
    t0=$(date +%s.%N)
    timeout 120 "$@" >/dev/null || return 1
    elapsed "$t0"
}

# Rough throughput on the userspace datapath (a figure the issue asks for, and a
# check that 4 MiB get through): from the public namespace to the first guest
# through its floating IP, and from the first guest to the second over the private
# network (the guest's own dbclient, cirros's well-known password). Each is the
# wall time of the transfer minus that of the same connection running `true`, so
# ssh's handshakes cancel out; TCG guests spend most of it on ssh's cipher. (This
# step found the public veth's TSO stall: ovn_public.rs.)
throughput() {
    local vm2_ip mib=4 empty full
    local -a to_vm1=("${GUEST_SSH[@]}" "cirros@$VM1_FIP")
    vm2_ip=$(fixed_ip e2e-vm2)
    empty=$(wall_of "${to_vm1[@]}" true </dev/null)
    full=$(head -c "$((mib << 20))" /dev/zero | wall_of "${to_vm1[@]}" 'cat >/dev/null')
    print_rate "public namespace -> e2e-vm1 (floating IP, ssh)" "$mib" "$empty" "$full"
    local to_vm2="DROPBEAR_PASSWORD=gocubsgo dbclient -y -y cirros@$vm2_ip"
    empty=$(wall_of "${to_vm1[@]}" "$to_vm2 true" </dev/null)
    full=$(wall_of "${to_vm1[@]}" "head -c $((mib << 20)) /dev/zero | $to_vm2 'cat >/dev/null'" </dev/null)
    print_rate "e2e-vm1 -> e2e-vm2 (private network, ssh)" "$mib" "$empty" "$full"
}

# print_rate LABEL MIB EMPTY FULL: MIB over the wall time FULL less that of EMPTY.
print_rate() {
    awk -v l="$1" -v m="$2" -v e="$3" -v f="$4" 'BEGIN { d = f - e; if (d < 0.01) d = 0.01;
        printf "%s: %d MiB in %.1f s, %.2f MiB/s\n", l, m, d, m / d }'
}

delete_guests() {
    local fip
    for fip in $(os_demo floating ip list -f value -c ID); do
        os_demo floating ip delete "$fip"
    done
    os_demo server delete --wait e2e-vm1 e2e-vm2
    os_demo security group delete e2e-sg
    os_demo keypair delete e2e-key
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

# --- networking (ML2/OVN) -----------------------------------------------------------

initial_networks() {
    local nets routers
    nets=$(os_admin network list -f value -c Name)
    routers=$(os_admin router list -f value -c Name)
    echo "networks: $(tr '\n' ' ' <<<"$nets"); routers: $routers"
    grep -qx private <<<"$nets" && grep -qx public <<<"$nets" && grep -qx router1 <<<"$routers"
}

chassis_registered() {
    local agents
    agents=$(os_admin network agent list -f value -c "Agent Type" -c Host -c Alive)
    echo "$agents"
    grep -q "^OVN Controller Gateway agent $(hostname) True$" <<<"$agents" &&
        grep -Eq "^OVN (Neutron|Metadata) agent $(hostname) True$" <<<"$agents"
}

no_network_of_ours_left() {
    local left=0
    # The daemons by process name, neutron's by their venv command: a pattern over
    # whole command lines also matched other programs' arguments (lib/neutron-legacy).
    if ps -eo stat=,comm=,args= | awk '$1 !~ /^Z/ &&
        ($2 ~ /^(ovsdb-server|ovs-vswitchd|ovn-northd|ovn-controller|haproxy)$/ || $0 ~ /\/bin\/neutron-/) {
            print; found = 1 } END { exit !found }'; then
        left=1
    fi
    for l in br-int br-ex ovs-netdev ds-pub-br e2e-vif; do
        [[ ! -e /sys/class/net/$l ]] || {
            echo "interface $l left" >&2
            left=1
        }
    done
    if ip netns list | grep -E 'devstack-public|ovnmeta-|e2e-guest'; then
        left=1
    fi
    # The guests' taps (os-vif leaves them on the userspace datapath; unstack
    # removes them).
    local dev
    for dev in /sys/class/net/tap????????-??; do
        [[ -e $dev ]] || continue
        echo "guest tap ${dev##*/} left" >&2
        left=1
    done
    ((left == 0)) && echo "no OVS/OVN daemon, bridge or namespace of ours left"
}

# --- VIRT_DRIVER=fake: the fast API-only cloud --------------------------------------

fake_phase() {
    if [[ -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        printf '[[local|localrc]]\nVIRT_DRIVER=fake\n' >"$TOP_DIR/local.conf"
    fi
    local t0
    t0=$(date +%s.%N)
    step "stack (VIRT_DRIVER=fake)" ./stack.sh
    FAKE_STACK_TIME=$(elapsed "$t0")
    step "hypervisor list (fake)" retry 60 hypervisor_fake
    step "image upload" upload_image
    step "flavor create" create_flavor
    step "server create --nic none --wait (fake)" create_server
    step "server delete (fake)" os_admin server delete --wait e2e-vm
    step "unstack --all (fake)" ./unstack.sh --all
    step "clean (fake)" ./clean.sh
    step "nothing of ours left (fake)" nothing_of_ours_left
    printf '\nfake phase: stack %s s\n' "$FAKE_STACK_TIME"
}

# --- the run ------------------------------------------------------------------------

if [[ -n ${E2E_FAKE_ONLY:-} ]]; then
    if [[ -f $TOP_DIR/local.conf && -z ${E2E_KEEP_LOCALCONF:-} ]]; then
        SAVED_LOCALCONF=$WORK/local.conf.saved
        cp -f "$TOP_DIR/local.conf" "$SAVED_LOCALCONF"
    fi
    fake_phase
    echo "e2e: PASS"
    exit 0
fi

FIXTURE=$(make_fixture)
write_localconf "$FIXTURE"

if [[ -z ${E2E_NO_CLEAN:-} ]]; then
    say "clean (best effort)"
    # The machine's DEST may be owned by another checkout's uncleaned stack: the
    # test starts from nothing, so it takes DEST over (and clean releases it).
    DEVSTACK_TAKEOVER=1 ./clean.sh 9>&- || echo "(clean before the test failed; going on)"
fi
# The fixture is made anew for each run (its commit differs), and enable_plugin with
# RECLONE=True refuses to check out over a commit the remote lacks (a user's work is
# never lost): the previous run's checkout of the test's own fixture goes first.
rm -rf /opt/stack/e2e-fixture   # the default DEST, which the test stacks into

STACK_T0=$(date +%s.%N)
step "stack" ./stack.sh
step "first requests right after the stack (volume, image, network)" first_requests
STACK_TIME=$(elapsed "$STACK_T0")

step "token issue" os_admin token issue -f value -c expires
step "endpoints at DevStack's paths behind the front proxy" urls_behind_the_proxy
step "plugin API through the proxy's path route (keystone token)" fixture_api
step "database root login over TCP, ~/.my.cnf 0600" database_root_login
step "service list" check_services
step "compute service list (up, bounded wait)" retry 120 compute_services_up
step "devstack restart n-cpu q-svc: both come back" restart_services
step "hypervisor list (QEMU)" retry 90 hypervisor_qemu
step "default image and DevStack's flavors" default_image_and_flavors
step "initial networks (private, public, router1)" retry 30 initial_networks
step "OVN chassis and metadata agent" retry 60 chassis_registered
BOOT_T0=$(date +%s.%N)
step "two guests on private (key pair, ICMP and SSH allowed)" boot_guests
step "login prompt in both guests' console logs" retry 240 guests_at_login
step "console URL: the noVNC page, and the guest's RFB banner over its websocket" console_url
BOOT_TIME=$(elapsed "$BOOT_T0")
SSH_T0=$(date +%s.%N)
step "ssh through a floating IP; the first guest pings the second" ssh_through_floating_ip
SSH_TIME=$(elapsed "$SSH_T0")
step "throughput between guests (rough figures)" throughput
step "volume create, snapshot, attach to the guest, detach" volume_lifecycle
step "tempest smoke set (devstack test)" tempest_smoke
if [[ -n ${E2E_HORIZON:-} ]]; then
    step "dashboard: browser login, Instances lists the guest" dashboard_browser
fi
step "demo user sees the catalog" os_demo catalog list -f value -c Type
step "guests deleted" delete_guests
step "no password in any log" no_password_in_logs
step "re-stack of the unchanged cloud" restack_unchanged
# Not yet in the default run: the re-stack after a change has passed only the engine
# tests (tests/it/restack_change.rs), never this real cloud (E2E_CHANGE=1 runs it).
if [[ -n ${E2E_CHANGE:-} ]]; then
    step "re-stack after one changed post-config option" restack_one_option
fi

UNSTACK_T0=$(date +%s.%N)
step "unstack --all" ./unstack.sh --all
UNSTACK_TIME=$(elapsed "$UNSTACK_T0")
step "no QEMU process left" no_qemu_left
CLEAN_T0=$(date +%s.%N)
step "clean" ./clean.sh
CLEAN_TIME=$(elapsed "$CLEAN_T0")
step "no libvirt domain of ours left" no_domain_of_ours_left
step "nothing of ours left" nothing_of_ours_left
step "no network of ours left" no_network_of_ours_left

printf '\nwall times: stack %s s, re-stack unchanged %s, re-stack after one changed option %s, two guests to login prompt %s s, ssh via floating IP %s s, unstack %s s, clean %s s\n' \
    "$STACK_TIME" "${RESTACK_TIME:-?}" "${CHANGE_TIME:-?}" "$BOOT_TIME" "$SSH_TIME" "$UNSTACK_TIME" "$CLEAN_TIME"
if [[ ${E2E_FAKE:-1} != 0 ]]; then
    fake_phase
fi
echo "e2e: PASS"
