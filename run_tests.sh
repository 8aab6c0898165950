#!/bin/bash
# run_tests.sh: installs what the tests need (Debian packages, as root) and runs every
# test: unit tests, the CLI/engine tests against the real binary, and the layer-1
# tests against real MariaDB, PostgreSQL, RabbitMQ and memcached.
#
#   ./run_tests.sh                 everything (the default suite, < 15 min on 2 cores)
#   ./run_tests.sh FILTER...       only tests matching (passed to the test runner)
#
# The full real-cloud end-to-end run is separate: tools/e2e-cloud.sh (CI runs both).

set -o errexit -o nounset -o pipefail
TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$TOP_DIR"

# Packages the tests use: shellcheck for the shell files we ship, git for plugin
# fixtures, the layer-1 servers (the tests start and stop them themselves), and what a
# stack installs before its first hook and with its prerequisites (DevStack's
# files/debs/general: packages::GENERAL and BUILD), so that tests stacking in parallel
# find them there.
TEST_PACKAGES=(shellcheck git sudo mariadb-server mariadb-client postgresql postgresql-client rabbitmq-server memcached python3-pika python3-venv uwsgi-core uwsgi-plugin-python3 curl busybox-static apache2 libapache2-mod-proxy-uwsgi chromium chromium-driver openssh-client
    uuid-runtime bc gawk iputils-ping lsof openssl psmisc tar unzip wget
    gcc g++ pkg-config python3-dev libffi-dev libssl-dev libxml2-dev libxslt1-dev libyaml-dev zlib1g-dev)

missing=()
for pkg in "${TEST_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "run_tests.sh: these packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "run_tests.sh: installing ${missing[*]}"
    # Containers ship a policy-rc.d that keeps maintainer scripts from starting
    # servers; without one, make sure the tests' servers are not started by apt.
    policy_added=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    apt-get -q update
    DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends "${missing[@]}"
    [[ -n $policy_added ]] && rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi

# The house rules, mechanically: formatting and clippy (pedantic, warnings denied).
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

cargo build --locked --all-targets
# The real-server tests (real MariaDB, PostgreSQL, RabbitMQ, memcached, keystone) are
# #[ignore]d so that a plain `cargo test` passes on a laptop without root; this
# script runs them too. They share ports: they serialise themselves with a lock, so
# the default parallelism is safe.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast --run-ignored all "$@"
else
    cargo test --locked --no-fail-fast -- --include-ignored "$@"
fi
