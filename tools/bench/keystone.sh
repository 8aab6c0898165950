#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/keystone.sh: DevStack's keystone accounts, services and endpoints for the
# default services (glance, placement, neutron, nova, plus the core admin/service/
# demo/alt_demo layout), created
#   1. through devstack-rs's keystone REST client, in one session
#      (`keystone-create-accounts`, what a run does after keystone's bootstrap), and
#   2. through one `openstack` CLI call per object, as DevStack's lib/keystone does,
# against the same throw-away keystone. Prints both times and the ratio (target >= 20x).
# The CLI run creates its own copies (names suffixed -cli), so both runs create
# everything from scratch; a second (warm, all found) Rust run is timed too.
#
# Usage: tools/bench/keystone.sh
# Environment (all optional):
#   KEYSTONE_VENV   a venv with keystone and python-openstackclient (default: the
#                   tests' cache, /var/cache/devstack-rs-test/keystone-venv, built
#                   with uv and files/constraints/openstack-2026.2.txt if missing)
#   BENCH_PORT      keystone's port (default 15190; 15100-15199 is ours)
#   DEVSTACK_BIN    the devstack binary (default: target/release/devstack, built)
#
# Needs: uv (or pip), /usr/bin/python3, Debian's uwsgi-core + uwsgi-plugin-python3
# (else uWSGI is built from PyPI into the venv), curl.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${DEVSTACK_RS_TEST_CACHE:-/var/cache/devstack-rs-test}
VENV=${KEYSTONE_VENV:-$CACHE/keystone-venv}
PORT=${BENCH_PORT:-15190}
URL=http://127.0.0.1:$PORT
ADMIN_PASSWORD=bench-Admin-pw
SERVICE_PASSWORD=bench-Service-pw
CONSTRAINTS=$TOP_DIR/files/constraints/openstack-2026.2.txt

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- the devstack binary ---
if [[ -z ${DEVSTACK_BIN:-} ]]; then
    DEVSTACK_BIN=$TOP_DIR/target/release/devstack
    (cd "$TOP_DIR" && cargo build --release --quiet --bin devstack)
fi
export DEVSTACK_BIN

# --- the venv (same recipe as tests/it/keystone.rs) ---
if [[ ! -e $VENV/.devstack-rs-ready ]]; then
    echo "building $VENV ..." >&2
    mkdir -p "$(dirname "$VENV")"
    rm -rf "$VENV"
    UV=$(command -v uv || true)
    if [[ -z $UV ]]; then
        /usr/bin/python3 -m venv "$CACHE/uv-venv"
        "$CACHE/uv-venv/bin/pip" install -q uv
        UV=$CACHE/uv-venv/bin/uv
    fi
    # As the product's uv calls: the machine's trust store (a registry behind a
    # TLS-intercepting proxy works), pip's index when only that one is set.
    export UV_NATIVE_TLS=1
    [[ -n ${PIP_INDEX_URL:-} && -z ${UV_INDEX_URL:-} ]] && export UV_INDEX_URL=$PIP_INDEX_URL
    pkgs=(keystone python-openstackclient python-memcached)
    [[ -x /usr/bin/uwsgi_python311 ]] || pkgs+=(uwsgi)
    "$UV" venv -q --python /usr/bin/python3 "$VENV"
    "$UV" pip install -q --python "$VENV/bin/python" -c "$CONSTRAINTS" --offline "${pkgs[@]}" \
        || "$UV" pip install -q --python "$VENV/bin/python" -c "$CONSTRAINTS" "${pkgs[@]}"
    touch "$VENV/.devstack-rs-ready"
fi

# --- a throw-away keystone ---
WORK=$(mktemp -d)
UWSGI_PID=
cleanup() {
    if [[ -n $UWSGI_PID ]]; then
        kill -TERM -- "-$UWSGI_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$UWSGI_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$UWSGI_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/keystone.conf" <<EOF
[DEFAULT]
log_file = $WORK/keystone.log
[database]
connection = sqlite:///$WORK/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = $WORK/fernet-keys
[fernet_receipts]
key_repository = $WORK/fernet-keys
[credential]
key_repository = $WORK/credential-keys
[identity]
password_hash_rounds = 4
# What a stack has with memcached: without a cache keystone spends ~120 ms validating
# the token on every request.
[cache]
enabled = true
backend = dogpile.cache.memory
EOF
unset PYTHONDONTWRITEBYTECODE
manage() { "$VENV/bin/keystone-manage" --config-file "$WORK/keystone.conf" "$@" >>"$WORK/manage.log" 2>&1; }
echo "starting keystone on $URL ..." >&2
manage db_sync
manage fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
manage credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
manage bootstrap --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-username admin \
    --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
    --bootstrap-public-url "$URL"
if [[ -x /usr/bin/uwsgi_python311 ]]; then UWSGI=/usr/bin/uwsgi_python311; else UWSGI=$VENV/bin/uwsgi; fi
OS_KEYSTONE_CONFIG_FILES=$WORK/keystone.conf setsid "$UWSGI" --virtualenv "$VENV" \
    --module keystone.wsgi.api:application --http-socket "127.0.0.1:$PORT" \
    --master --processes 1 --die-on-term --lazy-apps --add-header 'Connection: close' \
    --logto "$WORK/uwsgi.log" \
    </dev/null >/dev/null 2>&1 &
UWSGI_PID=$!
for _ in $(seq 300); do
    curl -fsS -m 2 -o /dev/null "$URL/v3" 2>/dev/null && break
    kill -0 "$UWSGI_PID" 2>/dev/null || { tail -20 "$WORK/uwsgi.log" >&2; exit 1; }
    sleep 0.2
done
curl -fsS -m 2 -o /dev/null "$URL/v3"

# --- 1. devstack-rs: one session ---
rust_accounts() {
    (
        set +o nounset
        export TOP_DIR KEYSTONE_SERVICE_URI=$URL ADMIN_PASSWORD SERVICE_PASSWORD
        export REGION_NAME=RegionOne SERVICE_PROJECT_NAME=service SERVICE_DOMAIN_NAME=Default
        export SERVICE_HOST=127.0.0.1 ENABLED_SERVICES=mysql,rabbit,key,g-api,placement-api,q-svc,n-api,n-cond,n-sch,n-cpu
        # shellcheck source=functions
        source "$TOP_DIR/functions"
        _ds_call "${_DS_KEYSTONE_VARS[@]}" keystone-create-accounts
    )
}
t0=$(now)
rust_out=$(rust_accounts)
t1=$(now)
rust_out2=$(rust_accounts)
t2=$(now)
RUST=$(elapsed "$t0" "$t1")
RUST_WARM=$(elapsed "$t1" "$t2")
echo "$rust_out"
echo "(second run: ${rust_out2##*$'\n'})"

# --- 2. the openstack CLI: one call per object (DevStack's way) ---
export OS_AUTH_URL=$URL/v3 OS_USERNAME=admin OS_PASSWORD=$ADMIN_PASSWORD OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
OSC=$VENV/bin/openstack
"$OSC" --version >/dev/null 2>&1 # warm the bytecode cache, untimed
CALLS=0
cli() {
    CALLS=$((CALLS + 1))
    "$OSC" "$@" >/dev/null
}
s=-cli
t3=$(now)
# create_keystone_accounts
cli project create --or-show --domain default admin
cli user create --or-show --domain default --password "$ADMIN_PASSWORD" admin
cli role create --or-show admin
cli role add --user admin --user-domain default --project admin --project-domain default admin
cli role add --user admin --user-domain default --system all admin
cli domain show Default
cli project create --or-show --domain Default "service$s"
for role in service member reader manager anotherrole; do
    cli role create --or-show "$role$s"
done
cli project create --or-show --domain default "invisible_to_admin$s"
for p in demo alt_demo; do
    cli project create --or-show --domain default "$p$s"
    cli user create --or-show --domain default --password "$ADMIN_PASSWORD" --email "$p@example.com" "$p$s"
    cli user create --or-show --domain default --password "$ADMIN_PASSWORD" "${p}_reader$s"
    cli role add --user "$p$s" --user-domain default --project "$p$s" --project-domain default "member$s"
    cli role add --user admin --user-domain default --project "$p$s" --project-domain default admin
    cli role add --user "$p$s" --user-domain default --project "$p$s" --project-domain default "anotherrole$s"
    cli role add --user "${p}_reader$s" --user-domain default --project "$p$s" --project-domain default "reader$s"
done
cli role add --user "demo$s" --user-domain default --project "invisible_to_admin$s" --project-domain default "member$s"
# identity (from bootstrap)
cli service show identity
cli endpoint list --service identity --interface public --region RegionOne
# each service: create_service_user NAME admin, service, public endpoint
for svc in glance:image:9292 placement:placement:8778 neutron:network:9696/ nova:compute:8774/v2.1; do
    IFS=: read -r name kind port <<<"$svc"
    cli user create --or-show --domain Default --password "$SERVICE_PASSWORD" "$name$s"
    cli role add --user "$name$s" --user-domain Default --project "service$s" --project-domain Default "service$s"
    cli role add --user "$name$s" --user-domain Default --project "service$s" --project-domain Default admin
    cli service create --name "$name$s" --description "$name" "$kind"
    cli endpoint create --region RegionOne "$name$s" public "http://127.0.0.1:$port"
done
t4=$(now)
CLI=$(elapsed "$t3" "$t4")

echo
printf 'devstack-rs REST client: %6.2f s (one session; second run, all found: %.2f s)\n' "$RUST" "$RUST_WARM"
printf 'openstack CLI:           %6.2f s (%d calls, %.2f s per call)\n' "$CLI" "$CALLS" \
    "$(awk -v t="$CLI" -v n="$CALLS" 'BEGIN { print t / n }')"
printf 'ratio:                   %6.1fx (target >= 20x)\n' "$(awk -v c="$CLI" -v r="$RUST" 'BEGIN { print c / r }')"
