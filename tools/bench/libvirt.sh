#!/bin/bash
# shellcheck shell=bash
#
# tools/bench/libvirt.sh: figures for real guests (nova's libvirt driver) on this
# machine, from one VIRT_DRIVER=libvirt cloud:
#   - the test image: build time (a fresh build, packages cached), size, and the
#     time of an up-to-date re-run;
#   - libvirtd's start (from the run log; BENCH_COLD_CAPS=1 empties libvirt's QEMU
#     capabilities cache first, to measure a first start);
#   - ./stack.sh wall time, and the virt type the KVM probe chose;
#   - `openstack server create --wait` (default image, m1.tiny, --nic none) to
#     ACTIVE, and to `login:` in the guest's console log (polled on the file every
#     0.2 s, then checked through `openstack console log show`);
#   - one idle guest: QEMU's RSS and CPU use over 10 s, 20 s after its login prompt;
#   - unstack --all and clean, and that no QEMU process is left.
#
# Takes the machine's real-server lock and always ends with unstack --all and clean.
# Usage: tools/bench/libvirt.sh

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP_DIR"

exec 9>"${TMPDIR:-/tmp}/devstack-rs-layer1-tests.lock"
flock 9

WORK=$(mktemp -d /tmp/devstack-bench-libvirt.XXXXXX)
SAVED=""
IMAGE=cirros-0.6.3-x86_64-disk
DEST=${DEST:-/opt/stack}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '%-52s %s\n' "$1" "$2"; }

os_admin() {
    (
        # shellcheck source=/dev/null
        source "$TOP_DIR/openrc" admin admin >/dev/null
        openstack "$@"
    )
}

finish() {
    local rc=$?
    ./unstack.sh --all >"$WORK/unstack.log" 2>&1 || echo "unstack failed: see $WORK/unstack.log"
    ./clean.sh >"$WORK/clean.log" 2>&1 || echo "clean failed: see $WORK/clean.log"
    if [[ -n $SAVED ]]; then
        mv -f "$SAVED" "$TOP_DIR/local.conf"
    else
        rm -f "$TOP_DIR/local.conf"
    fi
    if pgrep -a qemu-system; then
        echo "QEMU processes left after unstack and clean" >&2
        rc=1
    fi
    rm -rf "$WORK/img"
    echo "bench exit $rc (logs in $WORK)"
}
trap finish EXIT

# --- the test image ---------------------------------------------------------------
t0=$(now)
bash tools/build-test-image.sh "$WORK/img" >"$WORK/build.log" 2>&1
say "test image: fresh build (packages cached)" "$(since "$t0") s"
say "test image: qcow2 size" "$(stat -c %s "$WORK/img/test-image.qcow2") bytes"
t0=$(now)
bash tools/build-test-image.sh "$WORK/img" >>"$WORK/build.log" 2>&1
say "test image: up-to-date re-run" "$(since "$t0") s"

# --- the cloud --------------------------------------------------------------------
if [[ -f local.conf ]]; then
    SAVED=$WORK/local.conf.saved
    cp -f local.conf "$SAVED"
fi
printf '[[local|localrc]]\nVIRT_DRIVER=libvirt\n' >local.conf
./clean.sh >"$WORK/clean0.log" 2>&1 || true
if [[ -n ${BENCH_COLD_CAPS:-} ]]; then
    rm -f /var/cache/libvirt/qemu/capabilities/*.xml
fi
t0=$(now)
./stack.sh >"$WORK/stack.log" 2>&1 9>&- || {
    tail -40 "$WORK/stack.log"
    exit 1
}
say "./stack.sh (VIRT_DRIVER=libvirt)" "$(since "$t0") s"
say "libvirtd start (run log)" "$(grep -ho 'virtlogd and libvirtd answer after [0-9.]* s' \
    "$DEST"/logs/stack.sh*.log 2>/dev/null | tail -n1 | awk '{print $(NF-1), "s"}')"
say "virt type" "$(grep -ho 'libvirt: virt_type .*' "$WORK/stack.log" | head -n1)"

t0=$(now)
os_admin server create --flavor m1.tiny --image "$IMAGE" --nic none --wait bench-vm \
    -f value -c id >"$WORK/id"
say "server create --wait to ACTIVE" "$(since "$t0") s"
id=$(cat "$WORK/id")
log=$DEST/data/nova/instances/$id/console.log
until grep -q 'login:' "$log" 2>/dev/null; do
    if (($(date +%s) - ${t0%.*} > 300)); then
        echo "no login prompt within 300 s" >&2
        exit 1
    fi
    sleep 0.2
done
say "server create to login: in console.log" "$(since "$t0") s"
os_admin console log show bench-vm | grep -m1 'login:' >/dev/null
say "openstack console log show" "has the login prompt"

sleep 20
inst=$(os_admin server show bench-vm -f value -c OS-EXT-SRV-ATTR:instance_name)
pid=$(pgrep -f "qemu-system-x86_64 .*guest=$inst" | head -n1)
say "idle guest (m1.tiny, 512 MB): QEMU RSS" "$(($(ps -o rss= -p "$pid") / 1024)) MiB"
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
a=$(ticks)
sleep 10
b=$(ticks)
say "idle guest: CPU over 10 s" "$(awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f %% of a core", (b - a) / hz / 10 * 100 }')"

t0=$(now)
os_admin server delete --wait bench-vm
say "server delete --wait" "$(since "$t0") s"
t0=$(now)
./unstack.sh --all >"$WORK/unstack.log" 2>&1
say "./unstack.sh --all" "$(since "$t0") s"
if pgrep -a qemu-system; then
    echo "QEMU left after unstack" >&2
    exit 1
fi
say "after unstack" "no QEMU process"
