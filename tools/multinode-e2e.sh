#!/bin/bash
# shellcheck shell=bash
#
# tools/multinode-e2e.sh: a multi-node devstack-rs cloud on this machine, stacked
# through the project's Ansible playbook (devstack cluster): a controller and one
# compute node (MULTINODE_COMPUTES=2 for two), each a Debian 12 container whose PID 1
# is systemd (tools/systemd-node.sh) in its own network namespace, on a bridge in a
# dedicated fabric namespace with no route out; the package registries through the
# registry proxy (a unix socket per node). Then it checks:
#
#   - nova-compute is up on every node (the controller runs one too);
#   - a server asked for on the compute node (--availability-zone nova:HOST) goes
#     ACTIVE there;
#   - devstack cluster clean leaves the nodes with nothing running.
#
# Prints each step with its wall time (node boot, controller stack, compute stack).
# Skipped (exit 0, with the reason) only when this machine cannot build or boot the
# containers. Everything it made is removed at the end, pass or fail (the cached
# root stays); MULTINODE_E2E_KEEP=1 leaves the nodes up on failure.
#
# One multi-node run at a time: the nodes share this machine's cores.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE=$TOP_DIR/tools/systemd-node.sh
RUN=${MULTINODE_RUN:-/var/tmp/devstack-rs-multinode}
FABRIC=dsrs-mnfab
COMPUTES=${MULTINODE_COMPUTES:-1}
CONTROLLER=dsrs-mn-ctl
CONTROLLER_IP=10.20.0.11
# The controller's services: a control plane with a compute of its own, no cinder,
# tempest, horizon or dstat (CPU is what this machine lacks).
CONTROLLER_SERVICES=mysql,rabbit,key,g-api,placement-api,placement-client,q-svc,n-api,n-cond,n-sch,n-cpu,ovn-northd,ovn-controller,ovs-vswitchd,ovsdb-server,q-ovn-agent,n-api-meta
T_START=$(date +%s.%N)
SKIPPED=""
NODES=("$CONTROLLER")
declare -A IP=([$CONTROLLER]=$CONTROLLER_IP)
for i in $(seq "$COMPUTES"); do
    NODES+=("dsrs-mn-cpu$i")
    IP[dsrs-mn-cpu$i]=10.20.0.$((11 + i))
done
COMPUTE1=dsrs-mn-cpu1

say() {
    printf '\n=== %s\n' "$*"
}

elapsed() {
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

fail() {
    echo "multinode-e2e: FAILED: $*" >&2
    exit 1
}

step() {
    local name=$1 t0
    shift
    say "$name"
    t0=$(date +%s.%N)
    "$@"
    echo "--- $name: $(elapsed "$t0") s"
}

# node NAME CMD...: tools/systemd-node.sh for one node of the fabric.
node() {
    local name=$1 hosts="" n
    shift
    for n in "${NODES[@]}"; do hosts+="${IP[$n]} $n"$'\n'; done
    NODE_NAME=$name NODE_RUN=$RUN/nodes/$name NODE_HOST_IP=${IP[$name]} NODE_FABRIC=$FABRIC \
        NODE_HOSTS=$hosts NODE_AUTHORIZED_KEY=$RUN/ssh/id_ed25519.pub NODE_NO_TREE=1 \
        NODE_NO_PROXY=$(all_ips) NODE_BINDS=/var/cache/devstack-rs/uv "$NODE" "$@"
}

all_ips() {
    local n out=""
    for n in "${NODES[@]}"; do out+="${out:+,}${IP[$n]}"; done
    echo "$out"
}

# on NAME CMD...: CMD on a node, in its tree, with the stack's environment.
on() {
    local name=$1
    shift
    node "$name" exec bash -c 'cd /opt/devstack-rs 2>/dev/null || cd /; "$@"' on "$@"
}

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 && -n ${MULTINODE_E2E_KEEP:-} ]]; then
        echo "multinode-e2e: failed; the nodes are left up (MULTINODE_E2E_KEEP)" >&2
        return
    fi
    local n
    for n in "${NODES[@]}"; do node "$n" down || true; done
    if [[ -e /run/netns/$FABRIC ]]; then ip netns del "$FABRIC"; fi
    rm -rf "$RUN"
    local outcome=failed
    if [[ -n $SKIPPED ]]; then
        outcome=skipped
    elif [[ $rc -eq 0 ]]; then
        outcome=passed
    fi
    echo "multinode-e2e: $outcome in $(elapsed "$T_START") s"
}

build() {
    local rc=0
    "$NODE" build || rc=$?
    if [[ $rc -eq 3 ]]; then
        echo "multinode-e2e: SKIPPED: this machine cannot build a container with systemd as PID 1 (above)"
        SKIPPED=1
        exit 0
    fi
    [[ $rc -eq 0 ]] || fail "tools/systemd-node.sh build: exit $rc"
    mkdir -p "$RUN/ssh"
    [[ -f $RUN/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N "" -f "$RUN/ssh/id_ed25519"
    # The binary the playbook ships (devstack cluster sends itself).
    if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
        # shellcheck source=/dev/null
        source "$HOME/.cargo/env"
    fi
    (cd "$TOP_DIR" && cargo build --locked --quiet --bin devstack)
    DEVSTACK="${CARGO_TARGET_DIR:-$TOP_DIR/target}/debug/devstack"
}

boot_one() {
    local name=$1 t0
    t0=$(date +%s.%N)
    node "$name" up
    echo "$name: systemd running after $(elapsed "$t0") s"
    # ssh for Ansible (not in the cached root, which other tests share).
    on "$name" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install \
        --no-install-recommends openssh-server openssh-client >"$RUN/logs/$name-sshd.log" 2>&1 ||
        fail "$name: installing openssh-server (see $RUN/logs/$name-sshd.log)"
    echo "$name: ssh-ready after $(elapsed "$t0") s"
    # The cached root has the layer-1 servers installed (for the single-node e2e), and
    # Debian enabled them: a node starts with none running, as a fresh machine would
    # (the controller's stack starts its own; a compute node runs none).
    on "$name" systemctl disable --now --quiet mariadb rabbitmq-server memcached apache2 2>/dev/null || true
}

boot() {
    mkdir -p "$RUN/logs"
    local n
    # One at a time: they share the fabric's creation and the cached root.
    for n in "${NODES[@]}"; do boot_one "$n"; done
}

inventory() {
    local n proxy=http://127.0.0.1:3128
    # YAML: devstack_environment is a mapping (an INI inventory's group vars are strings).
    {
        echo "all:"
        echo "  vars:"
        echo "    ansible_user: root"
        echo "    ansible_python_interpreter: /usr/bin/python3"
        echo "    ansible_ssh_private_key_file: $RUN/ssh/id_ed25519"
        echo "    ansible_ssh_common_args: >-"
        echo "      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        echo "      -o ProxyCommand=\"ip netns exec $FABRIC socat - TCP:%h:%p\""
        echo "    devstack_controller_services: $CONTROLLER_SERVICES"
        echo "    devstack_environment:"
        echo "      http_proxy: $proxy"
        echo "      https_proxy: $proxy"
        echo "      no_proxy: localhost,127.0.0.1,$(all_ips)"
        echo "  children:"
        echo "    controller:"
        echo "      hosts:"
        echo "        $CONTROLLER:"
        echo "          ansible_host: $CONTROLLER_IP"
        echo "          local_conf_extra: TEST_IMAGE_DIR=/opt/test-image"
        echo "    compute:"
        echo "      hosts:"
        for n in "${NODES[@]:1}"; do
            echo "        $n:"
            echo "          ansible_host: ${IP[$n]}"
        done
    } >"$RUN/inventory.yml"
    # The guest image the controller uploads: this machine's cached build when there
    # is one (else the stack builds it in the node).
    local cached=$TOP_DIR/files/images/test-image
    [[ -f $cached/image.env ]] || cached=/work/main/files/images/test-image
    if [[ -f $cached/image.env ]]; then
        tar -C "$cached" -cf - . | on "$CONTROLLER" bash -c 'mkdir -p /opt/test-image && tar -C /opt/test-image -xf -'
    fi
    cat "$RUN/inventory.yml"
}

cluster() {
    "$DEVSTACK" --top-dir "$TOP_DIR" cluster "$@"
}

ping_all() {
    local n
    for n in "${NODES[@]}"; do
        on "$CONTROLLER" ping -c 1 -W 2 "${IP[$n]}" >/dev/null || fail "$CONTROLLER cannot reach $n"
    done
    echo "the fabric connects every node"
}

# osc ARGS...: the openstack client on the controller, as admin.
osc() {
    on "$CONTROLLER" env OS_CLOUD=devstack-admin /opt/stack/data/venv/bin/openstack "$@"
}

check_computes() {
    local out n i
    for i in $(seq 60); do
        out=$(osc compute service list --service nova-compute -f value -c Host -c State 2>&1 || true)
        local all=1
        for n in "${NODES[@]}"; do grep -q "^$n up$" <<<"$out" || all=""; done
        [[ -n $all ]] && break
        sleep 5
        [[ $i -eq 60 ]] && fail "nova-compute not up on every node: $out"
    done
    echo "$out"
    osc hypervisor list
}

check_server() {
    local status="" host="" i
    # The stack uploads the test image as DEFAULT_IMAGE_NAME (its default here).
    osc server create --flavor m1.tiny --image cirros-0.6.3-x86_64-disk \
        --network private --availability-zone "nova:$COMPUTE1" mn-server1 -f value -c id
    for i in $(seq 120); do
        status=$(osc server show mn-server1 -f value -c status 2>/dev/null || true)
        case $status in ACTIVE | ERROR) break ;; esac
        sleep 5
    done
    host=$(osc server show mn-server1 -f value -c OS-EXT-SRV-ATTR:host || true)
    echo "mn-server1: $status on $host"
    [[ $status == ACTIVE ]] || fail "the server is $status: $(osc server show mn-server1 -f value -c fault || true)"
    [[ $host == "$COMPUTE1" ]] || fail "the server runs on $host, not $COMPUTE1"
    osc server delete --wait mn-server1
}

check_clean() {
    local n left
    for n in "${NODES[@]}"; do
        # [x]: the pattern does not match the pgrep's own command line.
        left=$(on "$n" bash -c 'pgrep -a -f "[n]ova-|[n]eutron-|[o]vn-|[o]vs-vswitchd|[o]vsdb-server|[m]ariadbd|[b]eam.smp|[u]wsgi" || true')
        [[ -z $left ]] || fail "$n still runs after clean: $left"
        left=$(on "$n" systemctl list-units --no-legend --state=active 'devstack@*' || true)
        [[ -z $left ]] || fail "$n has devstack units active after clean: $left"
        # Debian's libvirtd is socket-activated (libvirtd.socket, --timeout 120): a
        # client's connection after clean starts it again, and it exits when idle.
        left=$(on "$n" bash -c 'pgrep -a -f "[l]ibvirtd" | grep -v -- "--timeout" || true')
        [[ -z $left ]] || fail "$n still runs libvirtd outside its socket activation: $left"
    done
    echo "no service process left on any node"
}

trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

step "build the containers' root (cached) and the binary" build
step "boot ${#NODES[@]} nodes (systemd as PID 1, sshd)" boot
step "the fabric" ping_all
step "inventory" inventory
step "playbook: tree, local.conf, ssh keys (every node)" cluster stack -i "$RUN/inventory.yml" -- --tags config,ssh
step "playbook: stack the controller" cluster stack -i "$RUN/inventory.yml" -- --tags stack --limit controller
step "playbook: stack the compute nodes" cluster stack -i "$RUN/inventory.yml" -- --tags stack --limit compute
step "playbook: discover_hosts" cluster stack -i "$RUN/inventory.yml" -- --tags discover --limit controller
step "nova-compute up on every node" check_computes
step "a server on $COMPUTE1" check_server
step "cluster status" cluster status -i "$RUN/inventory.yml"
step "cluster clean" cluster clean -i "$RUN/inventory.yml"
step "nothing left running" check_clean
