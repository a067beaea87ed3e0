#!/usr/bin/env bash
# `make image`: the container image without Docker. buildah (Debian's,
# installed when missing) builds image/Containerfile FROM scratch on the
# filesystem image/rootfs.sh stages, with every timestamp at 0 so that the
# same binary always gives the same image digest, and exports it as an OCI
# archive (`ctr images import`, `podman load`, `skopeo copy` read it).
# buildah's storage is a scratch directory beside the archive, not the
# machine's, removed with the build.
#
#   image/build.sh BINARY IMAGE ARCHIVE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:?usage: build.sh BINARY IMAGE ARCHIVE}
image=${2:?usage: build.sh BINARY IMAGE ARCHIVE}
archive=${3:?usage: build.sh BINARY IMAGE ARCHIVE}

if ! command -v buildah >/dev/null; then
  echo "build.sh: installing Debian's buildah" >&2
  . "$here/../tests/testenv/debian.sh"
  debian_install buildah
fi

out=$(mkdir -p "$(dirname "$archive")" && cd "$(dirname "$archive")" && pwd)
work="$out/build"
scratch="$out/buildah"
storage=(--root "$scratch/root" --runroot "$scratch/run" --storage-driver vfs)
rm -rf "$work" "$scratch"
"$here/rootfs.sh" "$binary" "$work/rootfs"
buildah "${storage[@]}" bud --quiet --timestamp 0 --layers=false \
  -f "$here/Containerfile" -t "$image" "$work" >/dev/null
# An OCI layout directory, archived with fixed names, owners and times so
# that the archive, too, is the same file on every build.
buildah "${storage[@]}" push --quiet "$image" "oci:$scratch/layout:$image"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -C "$scratch/layout" -cf "$archive.tmp" . && mv "$archive.tmp" "$archive"
digest=$(buildah "${storage[@]}" inspect --format '{{.FromImageDigest}}' "$image")
rm -rf "$work" "$scratch"
echo "build.sh: $image ($digest) in $archive" >&2
