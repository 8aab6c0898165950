#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/frontproxy.sh: the front proxy and the dashboard, measured on this machine
# with throw-away copies (own ports and dirs, nothing of a stack touched):
#   1. Debian's Apache with the front proxy's modules: start to first answer, graceful
#      reload (SIGUSR1) to the new route answering, and 200 requests to a small WSGI
#      app on a uWSGI socket through the proxy against 200 straight to uWSGI's HTTP;
#   2. horizon 27.0.0 into a fresh venv under the project's constraints: cold (empty uv
#      cache) and warm (cache filled); collectstatic + compress (what a stack does at
#      init, skipped when the venv fingerprint is unchanged);
#   3. the login page under uWSGI: first request (Django start) and warm.
#
# Usage: flock /tmp/devstack-rs-layer1-tests.lock tools/bench/frontproxy.sh
# Environment: BENCH_PORT (default 15192; 15100-15199 is ours), SKIP_HORIZON=1,
# ONLY_INSTALL=1 (part 2 alone: it starts no server, so it needs no machine lock).
# Needs: apache2 + libapache2-mod-proxy-uwsgi, uwsgi-core + uwsgi-plugin-python3, curl,
# and uv (the stack's, $DEST/.uv-venv/bin/uv, or on PATH).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${BENCH_PORT:-15192}
WORK=$(mktemp -d /tmp/devstack-bench-proxy.XXXXXX)
CONSTRAINTS=$TOP_DIR/files/constraints/openstack-2026.2.txt
PIDS=()

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# until_up URL: polls every 10 ms until the URL answers (any status).
until_up() {
    local i
    for ((i = 0; i < 3000; i++)); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.01
    done
    echo "no answer from $1" >&2
    return 1
}

plugin=$(find /usr/lib/uwsgi/plugins -name 'python3*_plugin.so' -printf '%f\n' | sort | tail -1)
plugin=${plugin%_plugin.so}

# --- 1. the proxy ---
if [[ -z ${ONLY_INSTALL:-} ]]; then
mkdir -p "$WORK/run" "$WORK/sites" "$WORK/htdocs"
cat >"$WORK/app.py" <<'EOS'
def application(env, start):
    start('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok\n']
EOS
modules=""
for m in mpm_event authz_core authz_host alias env headers mime setenvif proxy proxy_http proxy_uwsgi; do
    modules+="LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so"$'\n'
done
cat >"$WORK/apache2.conf" <<EOS
ServerRoot "$WORK"
ServerName localhost
Listen 127.0.0.1:$PORT
PidFile "$WORK/run/apache2.pid"
DefaultRuntimeDir "$WORK/run"
Mutex file:$WORK/run default
User www-data
Group www-data
$modules
ErrorLog "$WORK/error.log"
TypesConfig /etc/mime.types
DocumentRoot "$WORK/htdocs"
IncludeOptional "$WORK/sites/*.conf"
EOS
uwsgi --plugins-dir /usr/lib/uwsgi/plugins --plugin "$plugin" --wsgi-file "$WORK/app.py" \
    --socket "$WORK/app.socket" --chmod-socket=666 --http-socket "127.0.0.1:$((PORT + 1))" \
    --master --die-on-term --processes 2 --add-header 'Connection: close' >"$WORK/uwsgi.log" 2>&1 &
PIDS+=($!)
echo "ProxyPass \"/app\" \"unix:$WORK/app.socket|uwsgi://uwsgi-uds-app\" retry=0 acquire=1 " >"$WORK/sites/app.conf"
chmod 755 "$WORK"
t0=$(now)
apache2 -f "$WORK/apache2.conf" -DFOREGROUND >"$WORK/apache.log" 2>&1 &
apid=$!
PIDS+=("$apid")
until_up "http://127.0.0.1:$PORT/" || { cat "$WORK/apache.log" "$WORK/error.log" >&2; exit 1; }
t1=$(now)
echo "proxy: apache2 start to first answer: $(elapsed "$t0" "$t1") s"
until_up "http://127.0.0.1:$((PORT + 1))/" || { cat "$WORK/uwsgi.log" >&2; exit 1; }
echo "ProxyPass \"/two\" \"unix:$WORK/app.socket|uwsgi://uwsgi-uds-two\" retry=0 acquire=1 " >"$WORK/sites/two.conf"
t0=$(now)
apache2 -t -f "$WORK/apache2.conf" 2>/dev/null
kill -USR1 "$apid"
for ((i = 0; i < 3000; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/two/") == 200 ]] && break
    sleep 0.01
done
t1=$(now)
echo "proxy: config test + graceful reload to the new route answering: $(elapsed "$t0" "$t1") s"
for target in "http://127.0.0.1:$PORT/app/x" "http://127.0.0.1:$((PORT + 1))/x"; do
    t0=$(now)
    for ((i = 0; i < 200; i++)); do
        curl -s -o /dev/null "$target"
    done
    t1=$(now)
    echo "proxy: 200 sequential GETs (curl each) to $target: $(elapsed "$t0" "$t1") s"
done

fi

[[ -n ${SKIP_HORIZON:-} ]] && exit 0

# --- 2. horizon ---
UV=${UV:-$(command -v uv || echo /opt/stack/.uv-venv/bin/uv)}
# As the product's uv calls: the machine's trust store, PIP_INDEX_URL honoured.
export UV_NATIVE_TLS=1
[[ -n ${UV_INDEX_URL:-} || -z ${PIP_INDEX_URL:-} ]] || export UV_INDEX_URL=$PIP_INDEX_URL
venv=$WORK/venv
"$UV" venv -q --python /usr/bin/python3 "$venv"
t0=$(now)
UV_CACHE_DIR=$WORK/uv-cold "$UV" pip install -q --python "$venv/bin/python3" -c "$CONSTRAINTS" horizon pymemcache
t1=$(now)
echo "horizon: install, cold uv cache: $(elapsed "$t0" "$t1") s ($("$UV" pip list --python "$venv/bin/python3" 2>/dev/null | tail -n +3 | wc -l) packages)"
rm -rf "$venv"
"$UV" venv -q --python /usr/bin/python3 "$venv"
t0=$(now)
UV_CACHE_DIR=$WORK/uv-cold "$UV" pip install -q --python "$venv/bin/python3" -c "$CONSTRAINTS" horizon pymemcache
t1=$(now)
echo "horizon: install, warm uv cache: $(elapsed "$t0" "$t1") s"
local_dir=$(echo "$venv"/lib/python3*/site-packages/openstack_dashboard/local)
cat >"$local_dir/local_settings.py" <<EOS
import os
from horizon.utils import secret_key
DEBUG = True
ALLOWED_HOSTS = ['*']
WEBROOT = '/dashboard/'
LOCAL_PATH = '$WORK/horizon'
SECRET_KEY = secret_key.generate_or_read_from_file(os.path.join(LOCAL_PATH, '.secret_key_store'))
STATIC_ROOT = '$WORK/horizon/static'
COMPRESS_OFFLINE = True
COMPRESS_ENABLED = True
OPENSTACK_KEYSTONE_URL = 'http://127.0.0.1/identity/v3'
EOS
mkdir -p "$WORK/horizon"
export DJANGO_SETTINGS_MODULE=openstack_dashboard.settings
t0=$(now)
"$venv/bin/django-admin" collectstatic --noinput --clear >/dev/null
t1=$(now)
"$venv/bin/django-admin" compress --force >/dev/null
t2=$(now)
echo "horizon: collectstatic $(elapsed "$t0" "$t1") s, compress $(elapsed "$t1" "$t2") s ($(du -sh "$WORK/horizon/static" | cut -f1)); a re-stack with the same venv skips both"

[[ -n ${ONLY_INSTALL:-} ]] && exit 0

# --- 3. the login page ---
# Only --mount (with --module too, uWSGI serves nothing at the mountpoint: a field-notes
# trap).
uwsgi --plugins-dir /usr/lib/uwsgi/plugins --plugin "$plugin" --virtualenv "$venv" \
    --die-on-term --http-socket "127.0.0.1:$((PORT + 2))" \
    --mount "/dashboard=openstack_dashboard.wsgi:application" --manage-script-name \
    --master --processes 2 --lazy-apps --add-header 'Connection: close' \
    --env DJANGO_SETTINGS_MODULE=openstack_dashboard.settings >"$WORK/horizon-uwsgi.log" 2>&1 &
PIDS+=($!)
login=http://127.0.0.1:$((PORT + 2))/dashboard/auth/login/
t0=$(now)
for ((i = 0; i < 6000; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$login") == 200 ]] && break
    sleep 0.01
done
t1=$(now)
echo "horizon: uWSGI start to the login page's first 200: $(elapsed "$t0" "$t1") s"
t0=$(now)
for ((i = 0; i < 20; i++)); do
    curl -s -o /dev/null "$login"
done
t1=$(now)
echo "horizon: login page, warm: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 / 20 }') ms per GET"
