#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, without Docker: embedded etcd
# and kube-apiserver, kube-controller-manager and kube-scheduler (all from the
# Go module in this directory, one binary), and kwok faking three nodes so
# that Pods become Running. The project's CRDs (manifests/base/crds) are
# installed once the control plane is ready.
#
#   controlplane.sh up      build what is missing, start what is not running,
#                           wait until ready, print `export KUBECONFIG=...`
#   controlplane.sh down    stop every process and remove the state directory
#   controlplane.sh status  exit 0 when every component is up
#   controlplane.sh restart-apiserver
#                           kill -9 the apiserver (and its embedded etcd) and
#                           start it again on the same state: a chaos fault
#   controlplane.sh binary  build the testenv binary when needed; print its path
#   controlplane.sh kubectl ARGS...
#                           kubectl (built into the testenv binary, the
#                           control plane's version) with the admin kubeconfig
#
# Configuration (so that two environments can run at once):
#   TESTENV_DIR                 state root (default: <repo>/.testenv)
#   TESTENV_APISERVER_PORT      apiserver port (default 16443); etcd takes the
#                               next two ports
#   TESTENV_CONTROLLER_MANAGER_PORT, TESTENV_SCHEDULER_PORT, TESTENV_KWOK_PORT
#                               health ports (defaults 16446, 16447, 16448)
#   TESTENV_CACHE               built binaries (default ~/.cache/mcp-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state="$(mkdir -p "${TESTENV_DIR:-$here/../../.testenv}" && cd "${TESTENV_DIR:-$here/../../.testenv}" && pwd)/controlplane"
apiserver_port="${TESTENV_APISERVER_PORT:-16443}"
kcm_port="${TESTENV_CONTROLLER_MANAGER_PORT:-16446}"
scheduler_port="${TESTENV_SCHEDULER_PORT:-16447}"
kwok_port="${TESTENV_KWOK_PORT:-16448}"
cache="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-operator}"
kwok_version=v0.7.0
components=(apiserver controller-manager scheduler kwok)

log() { echo "controlplane.sh: $*" >&2; }

# The binary is keyed by a hash of its sources, so it is rebuilt exactly when
# they change and two checkouts share one build.
testenv_binary() {
  # The real node's kubelet reports this version (the build has no git
  # metadata of Kubernetes' own).
  local ldflags="-X k8s.io/component-base/version.gitVersion=v1.36.3" hash
  hash=$( (cd "$here" && cat go.mod go.sum ./*.go && echo "$ldflags") | sha256sum | cut -c1-16)
  local bin="$cache/testenv-$hash"
  if [ ! -x "$bin" ]; then
    log "building the control plane and the kubelet (v1.36; the first build takes several minutes)"
    mkdir -p "$cache"
    (cd "$here" && CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$bin.tmp.$$" .) >&2
    mv "$bin.tmp.$$" "$bin"
  fi
  echo "$bin"
}

kwok_binary() {
  local bin="$cache/kwok-$kwok_version/kwok"
  if [ ! -x "$bin" ]; then
    log "installing kwok $kwok_version"
    GOBIN="$cache/kwok-$kwok_version" CGO_ENABLED=0 go install "sigs.k8s.io/kwok/cmd/kwok@$kwok_version" >&2
  fi
  echo "$bin"
}

# alive, start, wait_for
. "$here/processes.sh"

apiserver_ready() {
  [ -f "$state/admin.token" ] &&
    [ "$(curl -sf --max-time 2 --cacert "$state/ca.crt" -H "Authorization: Bearer $(cat "$state/admin.token")" \
      "https://127.0.0.1:$apiserver_port/readyz" 2>/dev/null)" = ok ]
}

healthy() { [ "$(curl -skf --max-time 2 "https://127.0.0.1:$1/healthz" 2>/dev/null)" = ok ]; }

status() {
  local c
  for c in "${components[@]}"; do alive "$c" || return 1; done
  apiserver_ready && healthy "$kcm_port" && healthy "$scheduler_port"
}

down() {
  local c pid
  for c in "${components[@]}"; do
    alive "$c" || continue
    pid=$(cat "$state/$c.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$state"
}

up() {
  local bin
  bin=$(testenv_binary)
  status || start_all "$bin"
  # The project's committed CRDs, so that `kubectl get crds` lists them;
  # applied on every `up`, so that a regenerated CRD reaches a running cluster.
  "$bin" crds --dir "$state" "$here"/../../manifests/base/crds/*.yaml >&2
  echo "export KUBECONFIG=$state/kubeconfig"
  echo "export TESTENV_KUBECTL=$here/kubectl.sh"
}

# The machine needs no kubectl of its own: tests build and apply the
# Kustomize overlays with this one.
kubectl() {
  [ -f "$state/kubeconfig" ] || { log "the control plane is not up: run \`make testenv\` first"; exit 1; }
  exec "$(testenv_binary)" kubectl --kubeconfig "$state/kubeconfig" "$@"
}

restart_apiserver() {
  local bin pid
  bin=$(testenv_binary)
  if alive apiserver; then
    pid=$(cat "$state/apiserver.pid")
    kill -KILL "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  start apiserver "$bin" apiserver --dir "$state" --port "$apiserver_port"
  wait_for 120 apiserver apiserver_ready
}

start_all() {
  local bin=$1 kwok
  kwok=$(kwok_binary)
  # A partly running control plane (a killed run) is rebuilt from scratch.
  down
  mkdir -p "$state"
  start apiserver "$bin" apiserver --dir "$state" --port "$apiserver_port"
  wait_for 120 apiserver apiserver_ready
  start controller-manager "$bin" controller-manager --dir "$state" --port "$kcm_port"
  start scheduler "$bin" scheduler --dir "$state" --port "$scheduler_port"
  # Node Leases as heartbeats: without them kwok updates node status only
  # about once a minute, past the node monitor's grace period, so every
  # node turns NotReady for a few seconds a minute and the pods caught in
  # that window stay NotReady (their Deployments never become Available).
  start kwok "$kwok" --kubeconfig "$state/kubeconfig" \
    --node-lease-duration-seconds=40 \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --server-address="127.0.0.1:$kwok_port"
  wait_for 60 controller-manager healthy "$kcm_port"
  wait_for 60 scheduler healthy "$scheduler_port"
  "$bin" nodes --dir "$state" --count 3 >&2 || { log "fake nodes did not become Ready; see $state/kwok.log"; return 1; }
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart-apiserver) restart_apiserver ;;
  binary) testenv_binary ;;
  kubectl) shift; kubectl "$@" ;;
  *) echo "usage: $0 up|down|status|restart-apiserver|binary|kubectl ARGS..." >&2; exit 2 ;;
esac
