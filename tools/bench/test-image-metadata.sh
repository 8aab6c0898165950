#!/usr/bin/env bash
# A one-connection stand-in for nova's metadata service, for the test-image
# benchmark: QEMU's user-mode network runs it per guest connection to
# 169.254.169.254:80 (guestfwd=...-cmd:), with the connection on stdin and
# stdout. No port is opened on the host. Serves the two paths the test image
# reads, from files in DIR: hostname and key.
#   test-image-metadata.sh DIR
set -o errexit -o nounset -o pipefail
dir=$1
read -r _method path _ || exit 0
# Drop the request headers (up to the empty line).
while IFS= read -r line; do
    line=${line%$'\r'}
    [[ -z $line ]] && break
done
echo "$(date +%s.%N) GET $path" >>"$dir/requests.log"
case $path in
/latest/meta-data/hostname) file=$dir/hostname ;;
/latest/meta-data/public-keys/0/openssh-key) file=$dir/key ;;
*)
    printf 'HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n'
    exit 0
    ;;
esac
body=$(cat "$file")
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n%s\n' \
    "$((${#body} + 1))" "$body"
