#!/bin/sh
# nova-compute's `mount`, first on its PATH only (written by devstack-rs where cinder's
# NFS share is a directory of this host: no NFS server or kernel client is needed or
# used). nova's libvirt volume driver runs `mount -t nfs [OPTIONS] SHARE POINT` before
# it attaches a volume of that share: here that is a bind mount of the directory, once
# per POINT (nova checks with os.path.ismount, which does not see a bind mount of the
# same file system, so it asks again at every attach). Any other mount is the
# system's, unchanged.
share='@SHARE@'
export_dir='@EXPORT@'
device=''
point=''
for arg in "$@"; do
    device=$point
    point=$arg
done
if [ "${1-}" = -t ] && [ "${2-}" = nfs ] && [ "$device" = "$share" ] && [ -d "$export_dir" ]; then
    if awk -v p="$point" '$2 == p { found = 1 } END { exit !found }' /proc/mounts; then
        exit 0
    fi
    exec /bin/mount --bind "$export_dir" "$point"
fi
exec /bin/mount "$@"
