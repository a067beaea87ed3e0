# Sourced by every script of the project that installs Debian packages (the
# testenv's Redis and node, the image build, the demo, the router
# benchmark): `debian_install PACKAGE...` installs them quietly, with sudo
# when not root, and waits for another apt-get's lock instead of failing
# (a CI run once died at a lock held by a concurrent install). Callers
# check first what is missing.
debian_install() {
  local sudo=() lock=(-o DPkg::Lock::Timeout=300)
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get "${lock[@]}" update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get "${lock[@]}" install -y -qq \
    --no-install-recommends "$@" >&2
}
