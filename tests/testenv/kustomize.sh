#!/usr/bin/env bash
# The kustomize of every kubectl still in support, so the tests can build
# each overlay with each (tests/manifests.rs): kubectl 1.32 embeds kustomize
# v5.5.0, 1.33 v5.6.0, 1.34 and 1.35 v5.7.1; 1.36's is the testenv's own
# kubectl. Each is `go install`ed once at its pinned version into the cache.
#
#   kustomize.sh up      install what is missing; print `export TESTENV_KUSTOMIZE=...`
#                        (the binaries, separated by spaces)
#   kustomize.sh down    nothing to stop: the binaries stay cached
#   kustomize.sh status  exit 0 when every version is installed
set -euo pipefail
cache="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-operator}"
versions=(v5.5.0 v5.6.0 v5.7.1)

binary() { echo "$cache/kustomize-$1/kustomize"; }

up() {
  local v bins=()
  for v in "${versions[@]}"; do
    if [ ! -x "$(binary "$v")" ]; then
      echo "kustomize.sh: installing kustomize $v" >&2
      GOBIN="$cache/kustomize-$v" CGO_ENABLED=0 go install "sigs.k8s.io/kustomize/kustomize/v5@$v" >&2
    fi
    bins+=("$(binary "$v")")
  done
  echo "export TESTENV_KUSTOMIZE='${bins[*]}'"
}

status() {
  local v
  for v in "${versions[@]}"; do [ -x "$(binary "$v")" ] || return 1; done
}

case "${1:-}" in
  up) up ;;
  down) ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
