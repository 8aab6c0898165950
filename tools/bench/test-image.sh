#!/usr/bin/env bash
# Benchmark of the test image (not a test: it prints numbers). Builds the
# image (or reuses it), boots it under QEMU TCG with user-mode networking and
# prints: build time (this run and a cached re-run), sizes, time from QEMU
# start to the serial `login:` prompt and to a working `ssh cirros@`, for the
# config-drive path, the metadata-service path and direct kernel boot, and the
# RSS and CPU use of an idle guest.
#
#   tools/bench/test-image.sh [OUTPUT_DIR]     (default /tmp/devstack-rs-test-image)
#
# Environment: BENCH_COLD=1 forces a rebuild (the downloaded debs are kept),
# BENCH_KVM=1 also tries one boot with -accel kvm (bounded by a timeout),
# BENCH_MEM guest memory in MiB (default 256, like DevStack's cirros256).
#
# The guest network is QEMU's user mode with restrict=on: the guest reaches
# nothing outside QEMU. ssh goes through a hostfwd on 127.0.0.1; the metadata
# service is tools/bench/test-image-metadata.sh run by QEMU per connection
# (guestfwd ...-cmd:), so no port other than the ssh forward is opened.
set -o errexit -o nounset -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
OUT=${1:-/tmp/devstack-rs-test-image}
MEM=${BENCH_MEM:-256}
LOGIN_TIMEOUT=120

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '%-44s %s\n' "$1" "$2"; }

# --- QEMU. The machine's qemu-utils comes from bookworm-backports, and
# bookworm's qemu-system-x86 Breaks it: take qemu-system-x86 from backports
# too (added from the configured Debian mirror when it is not there).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
        if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
            mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "${mirror:-http://deb.debian.org/debian}" >/etc/apt/sources.list.d/bookworm-backports.sources
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports qemu-system-x86 >/dev/null
    else
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            qemu-system-x86 >/dev/null
    fi
fi
command -v ssh >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null
}

# --- build (cold or reused), then the cached path.
[[ ${BENCH_COLD:-0} == 1 ]] && rm -f "$OUT/image.env"
t=$(now)
"$TOP/tools/build-test-image.sh" "$OUT" 2>&1 | sed 's/^/  /'
build_s=$(since "$t")
t=$(now)
"$TOP/tools/build-test-image.sh" "$OUT" >/dev/null 2>&1
cached_s=$(since "$t")
# shellcheck source=/dev/null
. "$OUT/image.env"
IMG=$OUT/$TEST_IMAGE_FILE

# --- scratch dir, ssh key, config drive, metadata files; every QEMU we start
# is killed by its pid on exit.
S=$(mktemp -d /tmp/test-image-bench.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$S"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -C bench -f "$S/key"
mkdir -p "$S/md" "$S/cd/openstack/latest"
echo "metadata-vm.novalocal" >"$S/md/hostname"
cp "$S/key.pub" "$S/md/key"
printf '{"uuid": "00000000-0000-0000-0000-000000000001", "hostname": "configdrive-vm.novalocal", "name": "configdrive-vm", "public_keys": {"bench": "%s\\n"}}\n' \
    "$(cat "$S/key.pub")" >"$S/cd/openstack/latest/meta_data.json"
# nova's vfat config drive (label config-2), made without mounting anything.
mkfs.vfat -C -n config-2 "$S/config.img" 1024 >/dev/null 2>&1
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$S/config.img" "$S/cd/openstack" ::/

free_port() {
    local p
    for p in $(shuf -i 20000-60000 -n 50); do
        ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return 0; }
    done
    return 1
}
SSH_OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=5 -i "$S/key")

# boot NAME ACCEL -- extra qemu args: starts a guest, waits for the login
# prompt and for ssh on PORT (set by the caller, as the -netdev uses it);
# sets LOGIN_S, SSH_S, SSH_OUT, QPID.
boot() {
    local name=$1 accel=$2 t0 deadline
    shift 3
    rm -f "$S/$name.serial"
    t0=$(now)
    qemu-system-x86_64 -accel "$accel" -m "$MEM" -smp 1 -display none -monitor none \
        -serial "file:$S/$name.serial" -pidfile "$S/$name.pid" -daemonize \
        -device virtio-rng-pci \
        "$@" -device virtio-net-pci,netdev=n0
    QPID=$(cat "$S/$name.pid")
    PIDS+=("$QPID")
    LOGIN_S="timeout" SSH_S="timeout" SSH_OUT=""
    deadline=$(($(date +%s) + LOGIN_TIMEOUT))
    while (($(date +%s) < deadline)); do
        if grep -q 'login:' "$S/$name.serial" 2>/dev/null; then
            LOGIN_S=$(since "$t0")
            break
        fi
        sleep 0.1
    done
    [[ $LOGIN_S == timeout ]] && return 0
    while (($(date +%s) < deadline)); do
        if SSH_OUT=$(ssh "${SSH_OPTS[@]}" -p "$PORT" cirros@127.0.0.1 'uname -a; hostname; sudo id -u' 2>/dev/null); then
            SSH_S=$(since "$t0")
            break
        fi
        sleep 0.2
    done
}
stop() {
    kill "$QPID" 2>/dev/null || true
    while kill -0 "$QPID" 2>/dev/null; do sleep 0.1; done
}
netdev() { echo "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:22$1"; }

echo "== test image: $IMG"
say "build, this run (BENCH_COLD=${BENCH_COLD:-0})" "${build_s} s"
say "build, cached re-run (does nothing)" "${cached_s} s"
say "qcow2 file" "$(stat -c %s "$IMG") bytes"
say "virtual disk size" "$(qemu-img info --output=json "$IMG" | awk -F"[:,]" '/"virtual-size"/ { v = $2 } END { print v + 0 }') bytes"
say "kernel / initramfs" "$(stat -c %s "$OUT/$TEST_IMAGE_KERNEL_FILE") / $(stat -c %s "$OUT/$TEST_IMAGE_RAMDISK_FILE") bytes"
say "qemu" "$(qemu-system-x86_64 --version | head -n1)"

# 1. Disk boot (BIOS, syslinux) with a vfat config drive, TCG.
PORT=$(free_port)
boot cfgdrive tcg -- -snapshot -drive "file=$IMG,if=virtio" \
    -drive "file=$S/config.img,if=virtio,format=raw,readonly=on" -netdev "$(netdev "")"
say "TCG disk boot + config drive: login prompt" "${LOGIN_S} s"
say "TCG disk boot + config drive: ssh works" "${SSH_S} s"
printf '  ssh cirros@127.0.0.1 -p %s: %s\n' "$PORT" "$(echo "$SSH_OUT" | tr '\n' '|')"
sleep 10
rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$QPID/status")
c1=$(awk '{ print $14 + $15 }' "/proc/$QPID/stat")
sleep 10
c2=$(awk '{ print $14 + $15 }' "/proc/$QPID/stat")
say "idle guest (-m $MEM): qemu RSS" "${rss} MiB"
say "idle guest: qemu CPU over 10 s" "$(awk -v a="$c1" -v b="$c2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz * 10 }') % of a core"
stop

# 2. Disk boot, no config drive: ssh key and hostname from the metadata
# service at 169.254.169.254 (the user network is put in 169.254.169.0/24 so
# that QEMU accepts the guestfwd address).
PORT=$(free_port)
boot metadata tcg -- -snapshot -drive "file=$IMG,if=virtio" \
    -netdev "$(netdev ",net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:$HERE/test-image-metadata.sh $S/md")"
say "TCG disk boot + metadata: login prompt" "${LOGIN_S} s"
say "TCG disk boot + metadata: ssh works" "${SSH_S} s"
printf '  ssh: %s; metadata requests: %s\n' "$(echo "$SSH_OUT" | tr '\n' '|')" "$(wc -l <"$S/md/requests.log" 2>/dev/null || echo 0)"
stop

# 3. Direct kernel boot (no BIOS disk reads, no syslinux), config drive.
PORT=$(free_port)
boot direct tcg -- -kernel "$OUT/$TEST_IMAGE_KERNEL_FILE" -initrd "$OUT/$TEST_IMAGE_RAMDISK_FILE" \
    -append "$TEST_IMAGE_KERNEL_CMDLINE" \
    -drive "file=$S/config.img,if=virtio,format=raw,readonly=on" -netdev "$(netdev "")"
say "TCG direct kernel boot: login prompt" "${LOGIN_S} s"
say "TCG direct kernel boot: ssh works" "${SSH_S} s"
stop

# 4. Optional: KVM. On this nested host KVM is a paravirtual variant that
# may crawl or fail; the probe is bounded by LOGIN_TIMEOUT.
if [[ ${BENCH_KVM:-0} == 1 ]]; then
    LOGIN_TIMEOUT=${BENCH_KVM_TIMEOUT:-60}
    PORT=$(free_port)
    if [[ -w /dev/kvm ]]; then
        boot kvm kvm -- -snapshot -drive "file=$IMG,if=virtio" \
            -drive "file=$S/config.img,if=virtio,format=raw,readonly=on" -netdev "$(netdev "")" ||
            LOGIN_S="qemu failed"
        say "KVM disk boot: login prompt" "${LOGIN_S} s (timeout ${LOGIN_TIMEOUT} s)"
        say "KVM: serial bytes" "$(stat -c %s "$S/kvm.serial" 2>/dev/null || echo 0)"
        stop
    else
        say "KVM" "no writable /dev/kvm"
    fi
fi
