#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/network.sh: figures of the ML2/OVN networking, taken from a stack it
# runs itself (under the machine's real-server lock, torn down at the end):
#   - each OVS/OVN daemon's start to ready (the run log's "NAME: ready in X s");
#   - DevStack's initial networks (private, public, subnets, router1) through the
#     REST client (the run log's "initial networks in X s");
#   - through neutron's API with curl (no CLI start-up): network + subnet + router +
#     router interface creation; a port bound to this host to ACTIVE once a veth on
#     br-int carries its iface-id; a DHCP lease from OVN in a namespace (busybox
#     udhcpc); a floating IP answering ping from devstack-public.
#
# Usage: tools/bench/network.sh            (no local.conf of yours may be in the way)
# Needs: the packages a default stack installs, busybox (busybox-static), curl.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP_DIR"

exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

[[ ! -e local.conf ]] || {
    echo "local.conf exists: this bench stacks the default cloud; move it aside" >&2
    exit 2
}

WORK=$(mktemp -d /tmp/devstack-bench-net.XXXXXX)
NS=bench-guest
teardown() {
    ovs-vsctl --if-exists del-port br-int bench-vif 2>/dev/null || true
    ip link del bench-vif 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ./unstack.sh --all >/dev/null 2>&1 || true
    ./clean.sh >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap teardown EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(now)
./stack.sh >"$WORK/stack.log" 2>&1 || {
    tail -30 "$WORK/stack.log" >&2
    exit 1
}
echo "stack (default cloud with ML2/OVN): $(elapsed "$t0" "$(now)") s"
LOG=${DEST:-/opt/stack}/logs/stack.sh.log
echo "daemon start to ready:"
grep -oE '(ovsdb-server|ovs-vswitchd|ovn-ovsdb-server-nb|ovn-ovsdb-server-sb|ovn-northd|ovn-controller): ready in [0-9.]+ s' "$LOG" |
    sed 's/^/  /'
grep -oE 'initial networks in [0-9.]+ s \([0-9]+ requests\)' "$LOG" | sed 's/^/DevStack /'

# shellcheck source=/dev/null
source ./openrc admin admin >/dev/null
TOKEN=$(openstack token issue -f value -c id)
NEUTRON=http://${SERVICE_HOST:-127.0.0.1}/networking/v2.0
api() {
    local method=$1 path=$2 body=${3:-}
    curl -sf -m 30 -X "$method" -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' \
        ${body:+-d "$body"} "$NEUTRON/$path"
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

t0=$(now)
net=$(api POST networks '{"network":{"name":"bench-net"}}' | field 'd["network"]["id"]')
t1=$(now)
sub=$(api POST subnets "{\"subnet\":{\"name\":\"bench-sub\",\"network_id\":\"$net\",\"ip_version\":4,\"cidr\":\"10.9.0.0/24\"}}" | field 'd["subnet"]["id"]')
t2=$(now)
router=$(api POST routers '{"router":{"name":"bench-router"}}' | field 'd["router"]["id"]')
api PUT "routers/$router/add_router_interface" "{\"subnet_id\":\"$sub\"}" >/dev/null
t3=$(now)
echo "API: network $(elapsed "$t0" "$t1") s, subnet $(elapsed "$t1" "$t2") s, router + interface $(elapsed "$t2" "$t3") s"

sg=$(api POST security-groups '{"security_group":{"name":"bench-sg"}}' | field 'd["security_group"]["id"]')
api POST security-group-rules "{\"security_group_rule\":{\"security_group_id\":\"$sg\",\"direction\":\"ingress\",\"protocol\":\"icmp\"}}" >/dev/null
private=$(api GET 'networks?name=private' | field 'd["networks"][0]["id"]')
t0=$(now)
port_json=$(api POST ports "{\"port\":{\"network_id\":\"$private\",\"binding:host_id\":\"$(hostname)\",\"security_groups\":[\"$sg\"]}}")
port=$(field 'd["port"]["id"]' <<<"$port_json")
mac=$(field 'd["port"]["mac_address"]' <<<"$port_json")
ip netns add "$NS"
ip link add bench-vif type veth peer name bench-eth
ip link set bench-eth netns "$NS"
ip -n "$NS" link set bench-eth address "$mac"
ip -n "$NS" link set bench-eth up
ip link set bench-vif up
ovs-vsctl add-port br-int bench-vif -- set Interface bench-vif "external_ids:iface-id=$port" \
    "external_ids:attached-mac=$mac"
until [[ $(api GET "ports/$port" | field 'd["port"]["status"]') == ACTIVE ]]; do
    sleep 0.1
    (($(awk -v a="$t0" -v b="$(now)" 'BEGIN{print int(b-a)}') < 60)) || {
        echo "port not ACTIVE in 60 s" >&2
        exit 1
    }
done
t1=$(now)
echo "port create + plug to ACTIVE: $(elapsed "$t0" "$t1") s"
cat >"$WORK/udhcpc.sh" <<'EOS'
#!/bin/sh
case $1 in
bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; done
    set -- $staticroutes
    while [ $# -ge 2 ]; do
        [ "$2" = 0.0.0.0 ] || ip route replace "$1" via "$2" dev "$interface"
        shift 2
    done ;;
esac
EOS
chmod +x "$WORK/udhcpc.sh"
t0=$(now)
ip netns exec "$NS" busybox udhcpc -i bench-eth -n -q -t 10 -T 1 -s "$WORK/udhcpc.sh" >/dev/null 2>&1
t1=$(now)
echo "DHCP lease in a namespace port: $(elapsed "$t0" "$t1") s ($(ip -n "$NS" -4 -o addr show bench-eth | awk '{print $4}'))"
t0=$(now)
until printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec "$NS" busybox nc -w 2 169.254.169.254 80 2>/dev/null | head -1 | grep -q '^HTTP/1'; do
    (($(awk -v a="$t0" -v b="$(now)" 'BEGIN{print int(b-a)}') < 60)) || {
        echo "169.254.169.254 does not answer in 60 s" >&2
        exit 1
    }
    sleep 0.2
done
echo "metadata service answers the port's namespace after: $(elapsed "$t0" "$(now)") s"
t0=$(now)
public=$(api GET 'networks?name=public' | field 'd["networks"][0]["id"]')
fip=$(api POST floatingips "{\"floatingip\":{\"floating_network_id\":\"$public\",\"port_id\":\"$port\"}}" | field 'd["floatingip"]["floating_ip_address"]')
until ip netns exec devstack-public busybox ping -c1 -W1 "$fip" >/dev/null 2>&1; do
    (($(awk -v a="$t0" -v b="$(now)" 'BEGIN{print int(b-a)}') < 60)) || {
        echo "floating IP $fip does not answer in 60 s" >&2
        exit 1
    }
done
echo "floating IP create to first ping from devstack-public: $(elapsed "$t0" "$(now)") s"
ip netns exec devstack-public busybox ping -c5 -q "$fip" | tail -1 | sed 's/^/ping through the floating IP: /'
