#!/usr/bin/env bash
# The test environment: a real control plane (controlplane.sh), real
# Redis, single node and cluster (redis.sh), the kustomize of every kubectl
# in support (kustomize.sh) and one real node (node.sh). The Makefile's testenv,
# testenv-down and test targets are thin calls of this script.
#
#   testenv.sh up            start what is not running; print the export lines
#   testenv.sh down          stop everything and remove its state
#   testenv.sh status        exit 0 when everything is up
#   testenv.sh run -- CMD    run CMD inside the environment, starting it when
#                            needed and stopping afterwards only what it started
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
components=(controlplane redis kustomize node)

up() {
  for c in "${components[@]}"; do "$here/$c.sh" up; done
}

# Stopped in reverse order: the node's kubelet before the control plane.
reversed() { local i; for ((i = $# ; i > 0; i--)); do echo "${!i}"; done; }

down() {
  local rc=0 c
  for c in $(reversed "${components[@]}"); do "$here/$c.sh" down || rc=$?; done
  return "$rc"
}

run() {
  [ "${1:-}" = "--" ] && shift
  [ "$#" -gt 0 ] || { echo "testenv.sh run: no command given" >&2; exit 2; }
  # Global, not local: the EXIT trap that reads it runs after run() returns.
  started=()
  for c in "${components[@]}"; do
    "$here/$c.sh" status || started+=("$c")
  done
  stop_started() {
    local c
    for c in $(reversed "${started[@]}"); do "$here/$c.sh" down >&2 || true; done
  }
  trap stop_started EXIT
  local c exports
  for c in "${components[@]}"; do
    exports=$("$here/$c.sh" up)
    eval "$exports"
  done
  "$@"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) for c in "${components[@]}"; do "$here/$c.sh" status; done ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 up|down|status|run -- COMMAND" >&2; exit 2 ;;
esac
