#!/bin/bash
# shellcheck shell=bash
#
# tools/systemd-node.sh: a Debian 12 container whose PID 1 is systemd, for testing
# devstack-rs's systemd backend on a machine whose own PID 1 is not systemd.
#
#   tools/systemd-node.sh build     the root file system (debootstrap from Debian's
#                                   mirror), cached in $NODE_CACHE; exit 3 when this
#                                   machine cannot build or boot one (the caller skips)
#   tools/systemd-node.sh up        boots it: a copy-on-write overlay of the cached
#                                   root, the project tree copied to /opt/devstack-rs
#                                   (with a built devstack binary), a network namespace
#                                   of its own, systemd-nspawn --boot
#   tools/systemd-node.sh exec CMD  runs CMD inside (all of the container's namespaces,
#                                   root, a login-like environment with the registry
#                                   proxy set); its exit status is CMD's
#   tools/systemd-node.sh down      powers it off and removes everything `up` made: no
#                                   process, mount, network namespace or cgroup is left
#                                   (the cached root stays)
#
# The recipe and its traps: the project's nodes-on-one-machine notes. In short: the
# host has no D-Bus or machined and /run is not tmpfs, so nspawn runs with
# --register=no --keep-unit; --private-network next to --network-namespace-path, or
# nspawn gives the container the host's sysfs and drops CAP_NET_ADMIN; the container is
# started from a cgroup of its own (with --keep-unit nspawn puts it under the caller's).
#
# Network: the container's namespace has lo and an interface (eth0) with
# $NODE_HOST_IP (the stack's HOST_IP) and no route out; nothing is added to the host's
# root namespace. The package registries are reached through tools/registry-proxy.py,
# which listens on a unix socket on the host; the socket is bind-mounted in and a socat
# unit inside turns it into 127.0.0.1:3128 (apt's proxy and http(s)_proxy for `exec`).
#
# Environment: NODE_CACHE (default /var/cache/devstack-rs-test/systemd-node),
# NODE_RUN (default /var/tmp/devstack-rs-systemd-node: the overlay and logs),
# DEVSTACK_BIN (the devstack binary to put in the tree; default: built with cargo).
#
# Several nodes (tools/multinode-e2e.sh): each with its own NODE_NAME, NODE_RUN and
# NODE_HOST_IP, and NODE_FABRIC naming a network namespace with a bridge br0
# (NODE_FABRIC_CIDR, made when missing): eth0's peer then joins br0 there, so the
# nodes reach each other (and the fabric's address), still with no route out.
# NODE_HOSTS: more /etc/hosts lines; NODE_AUTHORIZED_KEY: a public key file for
# root's authorized_keys; NODE_NO_TREE=1: no tree copied (Ansible places it);
# NODE_BINDS: more --bind= arguments (space-separated SRC[:DEST]).

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_CACHE=${NODE_CACHE:-/var/cache/devstack-rs-test/systemd-node}
NODE_RUN=${NODE_RUN:-/var/tmp/devstack-rs-systemd-node}
NODE_NAME=${NODE_NAME:-dsrs-sysnode}
NODE_NETNS=${NODE_NETNS:-$NODE_NAME}
NODE_HOST_IP=${NODE_HOST_IP:-10.99.0.2}
NODE_FABRIC=${NODE_FABRIC:-}
NODE_FABRIC_CIDR=${NODE_FABRIC_CIDR:-10.20.0.1/24}
NODE_CGROUPS="/sys/fs/cgroup/systemd/$NODE_NAME /sys/fs/cgroup/unified/$NODE_NAME"
ROOTFS=$NODE_CACHE/rootfs
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# What the base needs to boot and to be driven: systemd, and what the stack's own
# scripts assume of a Debian host before they install anything.
BASE_PACKAGES=systemd,systemd-sysv,dbus,python3,iproute2,sudo,procps,less,ca-certificates,socat,git,curl,lsb-release,gnupg
PROXY_PORT=3128
# Baked into the cached root (as run_tests.sh installs them on the host): what every
# stack installs first (packages::GENERAL and BUILD), the layer-1 servers and the
# APIs' front proxy and uWSGI. Installing them at each boot cost minutes of dpkg on
# an overlay; a stack finds them installed. A changed list re-bakes the cache.
BAKE_PACKAGES=(uuid-runtime bc curl gawk git iputils-ping lsof openssl psmisc sudo tar unzip wget
    gcc g++ pkg-config python3-dev libffi-dev libssl-dev libxml2-dev libxslt1-dev libyaml-dev zlib1g-dev
    python3-venv mariadb-server mariadb-client rabbitmq-server memcached
    apache2 libapache2-mod-proxy-uwsgi uwsgi-core uwsgi-plugin-python3)

die() {
    echo "systemd-node: $*" >&2
    exit 1
}

# cannot REASON: this machine cannot have such a container (exit 3: callers skip).
cannot() {
    echo "systemd-node: cannot build a systemd container here: $*" >&2
    exit 3
}

log() {
    echo "systemd-node: $*" >&2
}

# ---------------------------------------------------------------------------------
# build

debootstrap_cmd() {
    if command -v debootstrap >/dev/null 2>&1; then
        echo debootstrap
        return
    fi
    # Not installed: unpacked from its package, without taking the host's dpkg lock
    # (a stack running on the host may be using apt).
    local tools=$NODE_CACHE/tools
    if [[ ! -x $tools/root/usr/sbin/debootstrap ]]; then
        mkdir -p "$tools"
        (cd "$tools" && apt-get download debootstrap >/dev/null && dpkg -x debootstrap_*.deb root) ||
            cannot "debootstrap is not installed and could not be downloaded"
    fi
    export DEBOOTSTRAP_DIR=$tools/root/usr/share/debootstrap
    echo "$tools/root/usr/sbin/debootstrap"
}

customise_rootfs() {
    local root=$1
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
    # apt inside goes through the registry proxy (the container has no route out).
    cat >"$root/etc/apt/apt.conf.d/90registry-proxy" <<EOF
Acquire::http::Proxy "http://127.0.0.1:$PROXY_PORT";
Acquire::https::Proxy "http://127.0.0.1:$PROXY_PORT";
EOF
    cat >"$root/etc/systemd/system/registry-proxy.service" <<EOF
[Unit]
Description=127.0.0.1:$PROXY_PORT to the host's registry proxy (tools/registry-proxy.py)

[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:/var/lib/registry-proxy/proxy.sock

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/registry-proxy.service \
        "$root/etc/systemd/system/multi-user.target.wants/registry-proxy.service"
    mkdir -p "$root/var/lib/registry-proxy"
    # Identity is per boot (the overlay's upper layer), never shared by every copy.
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
    echo "$NODE_NAME" >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n%s %s\n' "$NODE_HOST_IP" "$NODE_NAME" >"$root/etc/hosts"
    printf 'nameserver 127.0.0.1\n' >"$root/etc/resolv.conf"
    local unit
    for unit in e2scrub_reap.service systemd-timesyncd.service apt-daily.timer \
        apt-daily-upgrade.timer systemd-networkd.service systemd-resolved.service; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    chroot "$root" apt-get clean
}

cmd_build() {
    [[ $EUID -eq 0 ]] || cannot "not root"
    if ! command -v systemd-nspawn >/dev/null 2>&1 || ! command -v socat >/dev/null 2>&1; then
        # What a fresh CI machine may lack (as run_tests.sh installs its packages).
        log "installing systemd-container and socat"
        DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
            systemd-container socat >&2 || true
    fi
    command -v systemd-nspawn >/dev/null 2>&1 || cannot "systemd-nspawn is not installed (package systemd-container)"
    command -v socat >/dev/null 2>&1 || cannot "socat is not installed"
    grep -qw overlay /proc/filesystems || cannot "the kernel has no overlayfs"
    mkdir -p "$NODE_CACHE"
    exec 8>"$NODE_CACHE/build.lock"
    flock 8
    if [[ ! -x $ROOTFS/usr/lib/systemd/systemd ]]; then
        debootstrap_root
    fi
    bake_packages
    exec 8>&-
}

debootstrap_root() {
    local debootstrap tmp=$NODE_CACHE/rootfs.tmp
    debootstrap=$(debootstrap_cmd)
    rm -rf "$tmp"
    log "debootstrap $SUITE into $tmp (log: $NODE_CACHE/debootstrap.log)"
    "$debootstrap" --variant=minbase --include="$BASE_PACKAGES" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$tmp" "$MIRROR" >"$NODE_CACHE/debootstrap.log" 2>&1 ||
        cannot "debootstrap failed (see $NODE_CACHE/debootstrap.log)"
    customise_rootfs "$tmp"
    mv "$tmp" "$ROOTFS"
}

# bake_packages: installs BAKE_PACKAGES into the cached root, from the host (chroot,
# the host's connection; maintainer scripts start no server: policy-rc.d).
bake_packages() {
    local marker=$ROOTFS/var/lib/devstack-rs-baked
    [[ -f $marker && $(cat "$marker") == "${BAKE_PACKAGES[*]}" ]] && return 0
    if grep -q "lowerdir=${ROOTFS}[,:]" /proc/mounts; then
        die "the cached root is in use by a running container; not baking"
    fi
    log "baking ${#BAKE_PACKAGES[@]} packages into the cached root"
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
    chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
    mount -t proc proc "$ROOTFS/proc"
    # The host's resolver while apt runs from here (the root's own points at nothing).
    cp "$ROOTFS/etc/resolv.conf" "$NODE_CACHE/resolv.conf.node"
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    local rc=0
    {
        chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::http::Proxy=false update &&
            chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
                -o Acquire::http::Proxy=false install --no-install-recommends "${BAKE_PACKAGES[@]}" &&
            chroot "$ROOTFS" apt-get clean
    } >"$NODE_CACHE/bake.log" 2>&1 || rc=$?
    umount "$ROOTFS/proc"
    mv "$NODE_CACHE/resolv.conf.node" "$ROOTFS/etc/resolv.conf"
    rm -f "$ROOTFS/usr/sbin/policy-rc.d"
    # debootstrap worked, so the mirror is reachable: this is a failure, not a skip.
    [[ $rc -eq 0 ]] || die "installing packages into the root failed (see $NODE_CACHE/bake.log)"
    echo "${BAKE_PACKAGES[*]}" >"$marker"
}

# ---------------------------------------------------------------------------------
# up / exec / down

nspawn_pid() {
    local pid
    pid=$(cat "$NODE_RUN/nspawn.pid" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q systemd-nspawn "/proc/$pid/cmdline" && echo "$pid"
}

# The container's PID 1: the child of nspawn running systemd.
leader_pid() {
    local nspawn
    nspawn=$(nspawn_pid) || return 1
    ps -o pid=,comm= --ppid "$nspawn" | awk '$2 == "systemd" { print $1 }' || true
}

# The devstack binary that goes into the copied tree.
devstack_binary() {
    if [[ -n ${DEVSTACK_BIN:-} ]]; then
        echo "$DEVSTACK_BIN"
        return
    fi
    if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
        # shellcheck source=/dev/null
        source "$HOME/.cargo/env"
    fi
    (cd "$TOP_DIR" && cargo build --locked --quiet --bin devstack) >&2
    echo "${CARGO_TARGET_DIR:-$TOP_DIR/target}/debug/devstack"
}

copy_tree() {
    local dest=$1 bin
    bin=$(devstack_binary)
    [[ -x $bin ]] || die "no devstack binary at $bin"
    mkdir -p "$dest"
    # The tracked files as they are in the work tree (edits included), no build output.
    (cd "$TOP_DIR" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -cf -) | tar -C "$dest" -xf -
    mkdir -p "$dest/target/release"
    cp "$bin" "$dest/target/release/devstack"
    # Newer than every source: tools/devstack-bin.sh then runs it without cargo.
    touch "$dest/target/release/devstack"
}

cmd_up() {
    cmd_build
    if nspawn_pid >/dev/null; then
        die "already up (tools/systemd-node.sh down first)"
    fi
    # A failed `up` leaves nothing behind either (proxy, netns, mount, cgroups).
    trap 'cmd_down' EXIT
    mkdir -p "$NODE_RUN"/{upper,work,merged,proxy,logs}
    # The registry proxy, on the host side of the socket.
    setsid python3 "$TOP_DIR/tools/registry-proxy.py" "$NODE_RUN/proxy/proxy.sock" \
        >"$NODE_RUN/logs/registry-proxy.log" 2>&1 </dev/null &
    echo $! >"$NODE_RUN/proxy.pid"
    # The network namespace: lo and eth0 with HOST_IP, no route out.
    if [[ ! -e /run/netns/$NODE_NETNS ]]; then
        ip netns add "$NODE_NETNS"
        ip -n "$NODE_NETNS" link set lo up
        if [[ -n $NODE_FABRIC ]]; then
            fabric_up
            # The peer on the fabric's bridge, where the other nodes are.
            ip -n "$NODE_NETNS" link add eth0 type veth peer name "ve-$NODE_NAME" netns "$NODE_FABRIC"
            ip -n "$NODE_FABRIC" link set "ve-$NODE_NAME" master br0 up
        else
            # A veth pair with both ends inside (this kernel has no dummy driver).
            ip -n "$NODE_NETNS" link add eth0 type veth peer name eth0-peer
            ip -n "$NODE_NETNS" link set eth0-peer up
        fi
        ip -n "$NODE_NETNS" addr add "$NODE_HOST_IP/24" dev eth0
        ip -n "$NODE_NETNS" link set eth0 up
    fi
    mountpoint -q "$NODE_RUN/merged" ||
        mount -t overlay "overlay-$NODE_NAME" \
            -o "lowerdir=$ROOTFS,upperdir=$NODE_RUN/upper,workdir=$NODE_RUN/work" "$NODE_RUN/merged"
    tr -d - </proc/sys/kernel/random/uuid >"$NODE_RUN/merged/etc/machine-id"
    # Identity in the node's own layer.
    echo "$NODE_NAME" >"$NODE_RUN/merged/etc/hostname"
    printf '127.0.0.1 localhost\n%s %s\n%s' "$NODE_HOST_IP" "$NODE_NAME" "${NODE_HOSTS:-}" \
        >"$NODE_RUN/merged/etc/hosts"
    if [[ -n ${NODE_AUTHORIZED_KEY:-} ]]; then
        install -d -m 0700 "$NODE_RUN/merged/root/.ssh"
        install -m 0600 "$NODE_AUTHORIZED_KEY" "$NODE_RUN/merged/root/.ssh/authorized_keys"
    fi
    # The host's own CAs (a TLS-inspecting egress proxy, a local mirror): the registries
    # are reached through the host's connection, so they are trusted as the host trusts.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$NODE_RUN/merged/usr/local/share/ca-certificates/"
        chroot "$NODE_RUN/merged" update-ca-certificates >/dev/null 2>&1
    fi
    [[ -n ${NODE_NO_TREE:-} ]] || copy_tree "$NODE_RUN/merged/opt/devstack-rs"
    local binds=() bind
    for bind in ${NODE_BINDS:-}; do binds+=("--bind=$bind"); done
    if [[ -n $NODE_FABRIC ]]; then
        # OVS's userspace datapath and libvirt's guests need tap devices.
        binds+=(--bind=/dev/net/tun --capability=CAP_NET_ADMIN)
    fi
    local cg
    for cg in $NODE_CGROUPS; do mkdir -p "$cg"; done
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid sh -c 'for cg in $1; do echo $$ >"$cg/cgroup.procs"; done; shift; exec systemd-nspawn "$@"' \
        nspawn-in-cgroup "$NODE_CGROUPS" \
        --boot --directory="$NODE_RUN/merged" --machine="$NODE_NAME" \
        --network-namespace-path="/run/netns/$NODE_NETNS" --private-network \
        --register=no --keep-unit --console=read-only --resolv-conf=off \
        --bind="$NODE_RUN/proxy:/var/lib/registry-proxy" "${binds[@]}" \
        >"$NODE_RUN/logs/console.log" 2>&1 </dev/null &
    echo $! >"$NODE_RUN/nspawn.pid"
    local state="" i
    for i in $(seq 300); do
        if [[ -n $(leader_pid) ]]; then
            state=$(cmd_exec systemctl is-system-running 2>/dev/null || true)
            case $state in running | degraded) break ;; esac
        fi
        nspawn_pid >/dev/null || die "systemd-nspawn exited (see $NODE_RUN/logs/console.log)"
        sleep 0.2
        [[ $i -eq 300 ]] && die "not booted after 60 s (state '$state'; see $NODE_RUN/logs/console.log)"
    done
    trap - EXIT
    log "up: systemd is PID 1 ($state); tree in /opt/devstack-rs, HOST_IP $NODE_HOST_IP"
}

# The fabric: a network namespace with bridge br0 holding NODE_FABRIC_CIDR (ssh and
# Ansible reach the nodes from there); nothing in the host's root namespace.
fabric_up() {
    [[ -e /run/netns/$NODE_FABRIC ]] && return 0
    ip netns add "$NODE_FABRIC"
    ip -n "$NODE_FABRIC" link set lo up
    ip -n "$NODE_FABRIC" link add br0 type bridge
    ip -n "$NODE_FABRIC" addr add "$NODE_FABRIC_CIDR" dev br0
    ip -n "$NODE_FABRIC" link set br0 up
}

# The host's CA bundle settings (the same paths inside, see cmd_up).
CA_ENV=()
for var in SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE PIP_CERT CURL_CA_BUNDLE GIT_SSL_CAINFO; do
    [[ -n ${!var:-} ]] && CA_ENV+=("$var=${!var}")
done

cmd_exec() {
    local leader
    leader=$(leader_pid) || true
    [[ -n $leader ]] || die "not up"
    nsenter -t "$leader" -m -u -i -n -p -- /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        http_proxy="http://127.0.0.1:$PROXY_PORT" https_proxy="http://127.0.0.1:$PROXY_PORT" \
        no_proxy="localhost,127.0.0.1,$NODE_HOST_IP${NODE_NO_PROXY:+,$NODE_NO_PROXY}" \
        "${CA_ENV[@]}" "$@"
}

cmd_down() {
    local pid i
    if pid=$(nspawn_pid); then
        # TERM: nspawn asks the container's systemd for an orderly poweroff.
        kill -TERM "$pid"
        for i in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "nspawn $pid still alive after 30 s: KILL"
            kill -KILL "$pid"
            for i in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
        fi
    fi
    rm -f "$NODE_RUN/nspawn.pid"
    if pid=$(cat "$NODE_RUN/proxy.pid" 2>/dev/null) && [[ -n $pid ]] &&
        grep -q registry-proxy "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
    fi
    rm -f "$NODE_RUN/proxy.pid"
    if mountpoint -q "$NODE_RUN/merged" 2>/dev/null; then
        umount "$NODE_RUN/merged"
    fi
    if [[ -e /run/netns/$NODE_NETNS ]]; then
        ip netns del "$NODE_NETNS"
    fi
    local cg
    for cg in $NODE_CGROUPS; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    # nspawn cannot remove these itself here (/run is not tmpfs).
    if [[ -n $NODE_FABRIC && -e /run/netns/$NODE_FABRIC ]]; then
        ip -n "$NODE_FABRIC" link del "ve-$NODE_NAME" 2>/dev/null || true
    fi
    rm -rf "/run/systemd/nspawn/propagate/$NODE_NAME"
    [[ -d /run/systemd/nspawn ]] && find /run/systemd/nspawn -depth -type d -empty -delete
    rm -rf "$NODE_RUN"
    return 0
}

case ${1:-} in
    build) cmd_build ;;
    up) cmd_up ;;
    exec)
        shift
        cmd_exec "$@"
        ;;
    down) cmd_down ;;
    *)
        echo "usage: tools/systemd-node.sh build|up|exec CMD...|down" >&2
        exit 2
        ;;
esac
