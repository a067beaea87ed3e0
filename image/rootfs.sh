#!/usr/bin/env bash
# The image's whole filesystem, staged in a directory: the mcp-operator
# binary, the shared libraries `ldd` lists for it (glibc, libgcc_s), CA
# certificates (rustls verifies Redis and apiserver TLS with them) and a
# passwd entry for the unprivileged user 65532. No shell, no package
# manager. `make image` (buildah) and the Dockerfile both build FROM
# scratch on this, so the two images have the same layout.
#
#   image/rootfs.sh BINARY DIR
set -euo pipefail
binary=${1:?usage: rootfs.sh BINARY DIR}
dir=${2:?usage: rootfs.sh BINARY DIR}
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "rootfs.sh: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp"
install -m 0755 "$binary" "$dir/usr/local/bin/mcp-operator"
# Every library at the path the dynamic loader looks for it, as a file
# (the host's symlinks resolved). A static binary lists none.
{ ldd "$binary" || true; } | { grep -o '/[^ ]*' || true; } | sort -u | while read -r lib; do
  mkdir -p "$dir$(dirname "$lib")"
  cp -L "$lib" "$dir$lib"
done
install -m 0644 "$certs" "$dir/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$dir/etc/group"
# glibc resolves names from /etc/hosts (a pod's hostAliases), then DNS.
echo 'hosts: files dns' >"$dir/etc/nsswitch.conf"
chmod 1777 "$dir/tmp"
