#!/usr/bin/env bash
# What router-bench runs besides the router, from Debian's packages: nginx
# (the reference proxy), wrk (the load generator, a process of its own) and
# the two allocators the router is compared with under LD_PRELOAD. Installs
# whatever is missing, quietly; does nothing when all is there.
#
# nginx's own service is neither started nor left enabled: the harness runs
# its own nginx on loopback with a config of its own. Where no policy-rc.d
# forbids starting services during the install (Docker images ship one), a
# temporary one does, so the package's postinst does not start nginx on
# port 80; the unit it enables is disabled again.
set -euo pipefail

log() { echo "loadtest/router/install.sh: $*" >&2; }

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || missing+=(libjemalloc2)
dpkg -s libmimalloc2.0 >/dev/null 2>&1 || missing+=(libmimalloc2.0)
[ "${#missing[@]}" -eq 0 ] && exit 0

log "installing Debian's ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
. "$(dirname "$0")/../../tests/testenv/debian.sh"
debian_install "${missing[@]}"
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null; then
  "${sudo[@]}" systemctl disable --quiet nginx.service >/dev/null 2>&1 || true
fi
