#!/usr/bin/env bash
# Build the devstack-rs test image: a cirros-like guest made only from Debian
# packages, because the cirros image DevStack downloads cannot be had offline.
#
#   tools/build-test-image.sh OUTPUT_DIR
#
# The image is one disk (qcow2) that boots by itself: an MBR with syslinux,
# one FAT partition holding the Debian cloud kernel and an initramfs with
# busybox (init, udhcpc, nc, getty) and dropbear. A single self-booting disk
# is what nova+libvirt, tempest and `openstack server create` expect of
# DEFAULT_IMAGE_NAME: no kernel_id/ramdisk_id image properties to keep in
# step. The building needs no loop device, mount, device-mapper or kernel
# module (this host kernel may lack them): mkfs.vfat -C, mtools and the
# mtools flavour of syslinux work on plain files.
#
# Written to OUTPUT_DIR: test-image.qcow2 (upload this), vmlinuz and
# initrd.img (the same kernel and initramfs, for direct kernel boot in
# benchmarks), image.env (format, glance properties, the inputs key).
# The output is keyed by its inputs (guest package versions, syslinux
# version, this script and tools/test-image/*): a second run with the same
# inputs does nothing and says so.
#
# Environment: TEST_IMAGE_KERNEL (default linux-image-cloud-amd64; the
# generic linux-image-amd64 is meant to work too, not tried: larger, and
# the field notes saw it boot ~4 s slower),
# TEST_IMAGE_NAME (default DevStack's cirros-0.6.3-x86_64-disk),
# SOURCE_DATE_EPOCH (timestamps inside the image, default fixed).
set -o errexit -o nounset -o pipefail

if [[ $# -ne 1 || $1 == -* ]]; then
    echo "usage: $0 OUTPUT_DIR" >&2
    exit 2
fi
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/test-image
KERNEL_META=${TEST_IMAGE_KERNEL:-linux-image-cloud-amd64}
IMAGE_NAME=${TEST_IMAGE_NAME:-cirros-0.6.3-x86_64-disk}
# Fixed timestamps make the initramfs and the FAT file system byte-stable
# for the same inputs (dropbear host keys and the random seed still differ).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
# Kernel modules the guest loads: virtio (PCI, net, blk, scsi, rng, console,
# balloon), the IDE cdrom and file systems of a nova config drive, the ACPI
# power button (so `virsh shutdown` works).
MODULES=(virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng virtio_console
    virtio_balloon ata_piix sr_mod sd_mod isofs vfat nls_cp437 nls_iso8859-1 nls_ascii nls_utf8
    button evdev)
# Userland of the guest. dropbear is dynamically linked: its libraries come
# from the same Debian release, not from this host.
GUEST_PKGS=(busybox-static dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1
    libgmp10 zlib1g)
# Host tools, as "command-or-file:package".
HOST_TOOLS=(mkfs.vfat:dosfstools mcopy:mtools syslinux:syslinux
    /usr/lib/syslinux/mbr/mbr.bin:syslinux-common cpio:cpio sfdisk:fdisk
    qemu-img:qemu-utils zstd:zstd gcc:gcc readelf:binutils
    /usr/include/linux/random.h:linux-libc-dev /usr/include/stdio.h:libc6-dev)

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now() { date +%s.%N; }
T0=$(now)

[[ $(uname -m) == x86_64 ]] || die "only x86_64 hosts are supported"

# --- host tools: install what is missing (apt-get update first, as the lists
# may be empty or stale on a fresh machine).
missing=()
for t in "${HOST_TOOLS[@]}"; do
    cmd=${t%%:*} pkg=${t#*:}
    if [[ $cmd == /* ]]; then
        [[ -e $cmd ]] && continue
    else
        command -v "$cmd" >/dev/null 2>&1 && continue
    fi
    missing+=("$pkg")
done
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]} and not root to install them"
    log "installing ${missing[*]}"
    apt-get update -qq
    # qemu-utils may already be there from bookworm-backports; only what is
    # missing is installed, so no downgrade happens.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- inputs: candidate versions of the guest packages, from two apt-cache
# calls (each costs ~0.5-1 s here, so not one per package).
declare -A VERSION
read_versions() {
    local p v
    while read -r p v; do VERSION[$p]=$v; done < <(apt-cache show --no-all-versions "$@" 2>/dev/null |
        awk '/^Package: /{p=$2} /^Version: /{print p, $2}')
}
read_versions "$KERNEL_META" "${GUEST_PKGS[@]}"
if [[ -z ${VERSION[busybox-static]:-} || -z ${VERSION[$KERNEL_META]:-} ]]; then
    log "apt lists lack the guest packages: apt-get update"
    apt-get update -qq
    read_versions "$KERNEL_META" "${GUEST_PKGS[@]}"
fi
# The meta package names the kernel of the day, e.g. linux-image-6.1.0-57-cloud-amd64.
KERNEL_PKG=$(apt-cache show --no-all-versions "$KERNEL_META" | sed -n 's/^Depends: //p' |
    head -n1 | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
[[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel of $KERNEL_META"
KVER=${KERNEL_PKG#linux-image-}
read_versions "$KERNEL_PKG"
inputs=""
for p in "$KERNEL_PKG" "${GUEST_PKGS[@]}"; do
    [[ -n ${VERSION[$p]:-} ]] || die "no candidate version for $p"
    inputs+="$p=${VERSION[$p]}"$'\n'
done
inputs+="syslinux=$(dpkg-query -W -f='${Version}' syslinux-common)"$'\n'
inputs+="modules=${MODULES[*]} epoch=$SOURCE_DATE_EPOCH name=$IMAGE_NAME"$'\n'
# The script and every guest file: a change to either rebuilds.
inputs+=$(cd "$HERE" && sha256sum "$(basename "$0")" test-image/* | sort -k2)
KEY=$(printf '%s' "$inputs" | sha256sum | cut -c1-16)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -f $OUT/image.env && -f $OUT/test-image.qcow2 ]] &&
    grep -qx "TEST_IMAGE_KEY=$KEY" "$OUT/image.env"; then
    log "up to date (inputs key $KEY): nothing to do"
    exit 0
fi
log "building (inputs key $KEY, kernel $KERNEL_PKG ${VERSION[$KERNEL_PKG]})"

# --- work dir beside the output, removed whatever happens.
W=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
R=$W/root

# --- packages: apt-get download into a cache that survives (OUT/.debs),
# extracted with dpkg-deb: nothing is installed on the host.
DEBS=$OUT/.debs
mkdir -p "$DEBS" "$W/x"
want=()
for p in "$KERNEL_PKG" "${GUEST_PKGS[@]}"; do
    v=${VERSION[$p]}
    f="${p}_${v//:/%3a}_amd64.deb"
    want+=("$f")
    [[ -s $DEBS/$f ]] && continue
    (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null) ||
        die "apt-get download $p=$v failed"
done
# Drop the debs of older builds.
for f in "$DEBS"/*.deb; do
    [[ -e $f ]] || continue
    [[ " ${want[*]} " == *" ${f##*/} "* ]] || rm -f "$f"
done
T_DL=$(now)
dpkg-deb -x "$DEBS/${want[0]}" "$W/x/kernel"
for f in "${want[@]:1}"; do dpkg-deb -x "$DEBS/$f" "$W/x/sys"; done

# --- root file system of the initramfs.
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/dropbear,etc/acpi/PWRF,proc,sys,dev,run,tmp,mnt,root,home,var/log,usr/share/udhcpc,lib/x86_64-linux-gnu,lib/modules}
chmod 700 "$R/root"
BB=$W/x/sys/bin/busybox
# setuid root, as cirros's busybox: busybox drops the privilege for every applet but
# the few that need it (ping), and its shell runs applets by re-executing itself, so
# `ping` from an ssh session as cirros (tempest's checks) works.
install -m 4755 "$BB" "$R/bin/busybox"
# One symlink per applet, where busybox itself would put it.
"$BB" --list-full | while read -r a; do
    [[ $a == linuxrc || -e $R/$a || -L $R/$a ]] && continue
    ln -s /bin/busybox "$R/$a"
done
install -m 0755 "$W/x/sys/usr/sbin/dropbear" "$R/usr/sbin/dropbear"
install -m 0755 "$W/x/sys/usr/bin/dropbearkey" "$R/usr/bin/dropbearkey"
# dropbear's client, as cirros has it (ssh from one guest to another).
install -m 0755 "$W/x/sys/usr/bin/dbclient" "$R/usr/bin/dbclient"
ln -s dbclient "$R/usr/bin/ssh"

# Shared libraries: the NEEDED closure of dropbear (and the helpers), found in
# the extracted Debian packages, plus the dynamic loader.
find_lib() {
    local d
    for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
        [[ -e $W/x/sys/$d/$1 ]] && { echo "$W/x/sys/$d/$1"; return 0; }
    done
    return 1
}
copy_libs() {
    local lib path
    for lib in $(readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        [[ -e $R/lib/x86_64-linux-gnu/$lib ]] && continue
        path=$(find_lib "$lib") || die "library $lib of $1 not in the guest packages"
        cp -L "$path" "$R/lib/x86_64-linux-gnu/$lib"
        copy_libs "$R/lib/x86_64-linux-gnu/$lib"
    done
}
cp -L "$(find_lib ld-linux-x86-64.so.2)" "$R/lib/x86_64-linux-gnu/"
ln -s lib "$R/lib64"
ln -s x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib/ld-linux-x86-64.so.2"

# sudo (setuid, root and cirros only) and seed-rng: busybox has neither.
gcc -Os -s -Wall -o "$W/helpers" "$SRC/helpers.c"
install -m 4755 "$W/helpers" "$R/usr/bin/sudo"
install -m 0755 "$W/helpers" "$R/sbin/seed-rng"
for b in "$R/usr/sbin/dropbear" "$R/usr/bin/dropbearkey" "$R/usr/bin/dbclient" "$R/usr/bin/sudo"; do copy_libs "$b"; done
chmod 0755 "$R"/lib/x86_64-linux-gnu/*
ROOTRUN=("$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$R/lib/x86_64-linux-gnu")

# Guest scripts.
install -m 0755 "$SRC/init" "$R/init"
install -m 0755 "$SRC/rcS" "$R/etc/init.d/rcS"
install -m 0755 "$SRC/rcK" "$R/etc/init.d/rcK"
install -m 0755 "$SRC/curl" "$R/usr/bin/curl"
install -m 0755 "$SRC/blkid" "$R/sbin/blkid"
install -m 0644 "$SRC/inittab" "$R/etc/inittab"
install -m 0755 "$SRC/udhcpc.script" "$R/usr/share/udhcpc/default.script"
install -m 0755 "$SRC/acpi-power" "$R/etc/acpi/PWRF/00000080"

# Users: cirros/gocubsgo like cirros; root has no password (sudo is the way).
HASH=$("$BB" mkpasswd -m sha512 -S devstackrs gocubsgo)
cat >"$R/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
cirros:x:1000:1000:cirros:/home/cirros:/bin/sh
EOF
cat >"$R/etc/group" <<EOF
root:x:0:
tty:x:5:
cirros:x:1000:
EOF
cat >"$R/etc/shadow" <<EOF
root:*:19723:0:99999:7:::
cirros:$HASH:19723:0:99999:7:::
EOF
chmod 600 "$R/etc/shadow"
printf '/bin/sh\n/bin/ash\n' >"$R/etc/shells"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$R/etc/nsswitch.conf"
cat >"$R/etc/profile" <<'EOF'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
PS1='$(whoami)@$(hostname):$(pwd)$ '
[ "$(id -u)" = 0 ] && PS1='$(hostname):$(pwd)# '
EOF
printf 'NAME="devstack-rs test image"\nID=cirros\nVERSION_ID=0.6.3\n' >"$R/etc/os-release"
printf '\n' >"$R/etc/issue"

# Dropbear host keys made now: generating them at boot needs entropy that a
# TCG guest may not have for minutes.
for t in ed25519 ecdsa rsa; do
    "${ROOTRUN[@]}" "$R/usr/bin/dropbearkey" -t "$t" -f "$R/etc/dropbear/dropbear_${t}_host_key" >/dev/null 2>&1
done
head -c 256 /dev/urandom >"$R/etc/random-seed"
chmod 600 "$R/etc/random-seed" "$R"/etc/dropbear/*

# Kernel modules: the wanted ones and their dependencies, from a modules.dep
# made by busybox's depmod (the host needs no kmod), then a modules.dep for
# the guest's busybox modprobe.
KM=$W/x/kernel/lib/modules/$KVER
"$BB" depmod -b "$W/x/kernel" "$KVER"
for m in "${MODULES[@]}"; do
    line=$(grep -E "/${m//_/[-_]}\.ko:" "$KM/modules.dep") || die "module $m not in $KERNEL_PKG"
    for f in ${line/:/}; do
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$f")"
        cp "$KM/$f" "$R/lib/modules/$KVER/$f"
    done
done
cp "$KM/modules.builtin" "$R/lib/modules/$KVER/"
"$BB" depmod -b "$R" "$KVER"

# --- initramfs: sorted newc cpio, owner root, fixed mtimes; zstd, which the
# kernel unpacks fast (this matters under TCG).
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$R" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
    zstd -q -15 -T1 >"$W/initrd.img"
cp "$W/x/kernel/boot/vmlinuz-$KVER" "$W/vmlinuz"
T_ROOT=$(now)

# --- boot disk: MBR (syslinux mbr.bin) + one FAT16 partition from 1 MiB.
cat >"$W/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=tty0 console=ttyS0,115200n8 no_timer_check quiet loglevel=4
EOF
touch -d "@$SOURCE_DATE_EPOCH" "$W/syslinux.cfg" "$W/vmlinuz" "$W/initrd.img"
payload=$(($(stat -c %s "$W/vmlinuz") + $(stat -c %s "$W/initrd.img")))
part_mib=$((payload / 1048576 + 3))
rm -f "$W/part.img"
mkfs.vfat -C -F 16 -n CIRROSBOOT -i 5ca1ab1e --invariant "$W/part.img" $((part_mib * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -m -i "$W/part.img" "$W/vmlinuz" "$W/initrd.img" "$W/syslinux.cfg" ::/
syslinux --install "$W/part.img"
disk=$W/disk.raw
truncate -s $(((part_mib + 1) * 1048576)) "$disk"
printf 'label: dos\nlabel-id: 0x5ca1ab1e\nstart=2048, type=6, bootable\n' |
    sfdisk --quiet --no-reread --no-tell-kernel "$disk" >/dev/null
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$W/part.img" of="$disk" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$disk" "$W/test-image.qcow2"
T_DISK=$(now)

# --- publish: files first, image.env (the key) last, so that an interrupted
# build is never taken for a finished one.
rm -f "$OUT/image.env"
mv "$W/test-image.qcow2" "$W/vmlinuz" "$W/initrd.img" "$OUT/"
SIZE=$(stat -c %s "$OUT/test-image.qcow2")
cat >"$W/image.env" <<EOF
# Written by tools/build-test-image.sh; sourced by shell, read by devstack-rs.
TEST_IMAGE_KEY=$KEY
TEST_IMAGE_NAME=$IMAGE_NAME
TEST_IMAGE_FILE=test-image.qcow2
TEST_IMAGE_DISK_FORMAT=qcow2
TEST_IMAGE_CONTAINER_FORMAT=bare
TEST_IMAGE_VISIBILITY=public
# Boots by itself (syslinux in the MBR): no kernel_id/ramdisk_id needed.
# Glance properties (space separated key=value): a virtio RNG feeds the
# guest's entropy; virtio disk and NIC are nova's defaults, said explicitly.
TEST_IMAGE_PROPERTIES="hw_rng_model=virtio hw_disk_bus=virtio hw_vif_model=virtio os_type=linux"
TEST_IMAGE_MIN_RAM_MB=128
TEST_IMAGE_SIZE_BYTES=$SIZE
TEST_IMAGE_SSH_USER=cirros
TEST_IMAGE_PASSWORD=gocubsgo
# The same kernel and initramfs, for direct kernel boot (benchmarks, or aki/ari).
TEST_IMAGE_KERNEL_FILE=vmlinuz
TEST_IMAGE_RAMDISK_FILE=initrd.img
TEST_IMAGE_KERNEL_CMDLINE="console=ttyS0,115200n8 no_timer_check quiet loglevel=4"
TEST_IMAGE_KERNEL_PACKAGE=$KERNEL_PKG=${VERSION[$KERNEL_PKG]}
EOF
mv "$W/image.env" "$OUT/image.env"
log "done in $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s" \
    "(inputs $(awk -v a="$T0" -v b="$T_DL" 'BEGIN{printf "%.1f", b-a}') s," \
    "root fs $(awk -v a="$T_DL" -v b="$T_ROOT" 'BEGIN{printf "%.1f", b-a}') s," \
    "disk $(awk -v a="$T_ROOT" -v b="$T_DISK" 'BEGIN{printf "%.1f", b-a}') s):" \
    "$OUT/test-image.qcow2 $SIZE bytes, initrd $(stat -c %s "$OUT/initrd.img") bytes"
