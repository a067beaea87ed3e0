#!/usr/bin/env bash
# `make demo` and `make demo-down`: the whole system on this machine, as it
# deploys, without Docker. A control plane, Redis and one real node (the
# testenv, on ports of its own); the image `make image` builds, imported
# into the node; the operator installed from manifests/overlays/testenv as
# a real 3-replica Deployment; and manifests/examples applied on the node,
# so the example server's two routers and its backend are real pods. The
# MCP URL it prints is a port-forward, through the apiserver and the
# kubelet, to the router Service.
#
#   demo.sh up     build, start everything, make one real MCP tools/call
#   demo.sh down   stop everything the demo started and remove its state
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/testenv/debian.sh"
state="$root/.demo"
namespace=mcp-examples # set by manifests/examples
server=weather         # manifests/examples/server.yaml
local_port=18080

# The demo's own testenv, so it runs beside `make testenv` or `make test`.
export TESTENV_DIR="$state/testenv"
export TESTENV_APISERVER_PORT=56443 TESTENV_CONTROLLER_MANAGER_PORT=56446
export TESTENV_SCHEDULER_PORT=56447 TESTENV_KWOK_PORT=56448
export TESTENV_REDIS_PORT=56379 TESTENV_REDIS_CLUSTER_BASE_PORT=51000

cache="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-operator}"
archive="${CARGO_TARGET_DIR:-$root/target}/image/mcp-operator.oci.tar"
kubectl="$root/tests/testenv/kubectl.sh"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() {
  echo "demo: $*" >&2
  echo "demo: logs are in $state/logs; stop with 'make demo-down'" >&2
  exit 1
}

# Starts a background process that outlives this script; its pid goes to
# $state/pids so that `down` can stop it.
spawn() {
  local name=$1
  shift
  setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$state/pids"
}

# Waits until a URL answers 2xx, or fails naming the log to read.
wait_http() {
  local url=$1 log=$2
  for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.5
  done
  fail "$url did not answer in 60 s; see $state/logs/$log.log"
}

# The JSON-RPC response in a body that is either JSON or an SSE stream.
response() {
  python3 -c '
import json, sys
body = sys.stdin.read()
data = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
messages = [json.loads(d) for d in data if d] if data else [json.loads(body)]
print(json.dumps([m for m in messages if "id" in m][-1]))'
}

# One JSON-RPC request to a router; prints the response body (SSE or JSON).
rpc() {
  local port=$1 body=$2
  shift 2
  curl -fsS "http://127.0.0.1:$port/mcp" \
    -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2025-11-25' \
    "$@" -d "$body"
}

# The examples' backend image: Debian's python3, its standard library and
# the shared libraries they load, FROM scratch; keyed by the interpreter,
# built once.
python_archive() {
  local python stdlib hash
  [ -x /usr/bin/python3 ] || debian_install python3
  python=$(readlink -f /usr/bin/python3)
  stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
  hash=$(sha256sum "$python" | cut -c1-16)
  local archive="$cache/python-$hash.oci.tar"
  if [ ! -f "$archive" ]; then
    local work
    work=$(mktemp -d)
    mkdir -p "$work/rootfs/usr/bin"
    cp "$python" "$work/rootfs/usr/bin/python3"
    tar -C / --exclude=test --exclude=tests --exclude=idlelib --exclude=tkinter --exclude=ensurepip \
      -cf - "${stdlib#/}" | tar -C "$work/rootfs" -xf -
    { ldd "$python"; find "$stdlib/lib-dynload" -name '*.so' -exec ldd {} \; ; } 2>/dev/null |
      grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$work/rootfs$(dirname "$lib")"
        cp -L "$lib" "$work/rootfs$lib"
      done
    printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\nENTRYPOINT ["/usr/bin/python3"]\n' >"$work/Containerfile"
    local storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
    buildah "${storage[@]}" bud --quiet --timestamp 0 -f "$work/Containerfile" -t testenv.local/python:1 "$work" >/dev/null
    buildah "${storage[@]}" push --quiet testenv.local/python:1 "oci-archive:$archive.tmp:testenv.local/python:1"
    buildah "${storage[@]}" rmi --all >/dev/null 2>&1 || true
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
  fi
  echo "$archive"
}

up() {
  if [ -s "$state/pids" ]; then
    echo "demo: already running (make demo-down stops it)" >&2
    exit 1
  fi
  mkdir -p "$state/logs"

  step "Building the image (make image: a release build, then buildah; the first build takes several minutes)"
  make -C "$root" --no-print-directory image IMAGE_ARCHIVE="$archive"
  step "Building the examples' Python image from this machine's python3"
  local python
  python=$(python_archive)

  step "Starting a control plane, Redis and a real node (containerd, kubelet) on this machine"
  local exports
  exports=$(TESTENV_NODE_IMAGES="$archive $python" "$root/tests/testenv/testenv.sh" up) ||
    fail "the control plane, Redis or the node did not start"
  eval "$exports"
  export KUBECONFIG
  "$kubectl" get nodes

  step "Installing the operator from manifests/overlays/testenv (3 replicas on the real node)"
  "$kubectl" apply --server-side -f "$root/manifests/base/namespace.yaml" >/dev/null
  # The operator's Redis settings (Secret mcp-operator-redis, as the
  # overlay reads it): the testenv's Redis, which the node forwards to its
  # IP for pods, and the testenv's admin user, which may make each
  # server's routers a Redis user of their own.
  local redis_url=${MCP_REDIS_URL/127.0.0.1:$TESTENV_REDIS_PORT/$TESTENV_NODE_IP:6379}
  "$kubectl" -n mcp-operator-system create secret generic mcp-operator-redis \
    --from-literal=url="$redis_url" \
    --from-literal=username="$MCP_REDIS_USERNAME" --from-literal=password="$MCP_REDIS_PASSWORD" \
    --dry-run=client -o yaml | "$kubectl" apply --server-side -f - >/dev/null
  "$kubectl" apply --server-side -k "$root/manifests/overlays/testenv" >/dev/null
  "$kubectl" -n mcp-operator-system rollout status deployment/mcp-operator --timeout=300s ||
    fail "the operator Deployment did not become available"

  step "Applying manifests/examples (namespace $namespace, on the real node, enabled for the confined operator)"
  "$kubectl" apply --server-side -k "$root/tests/testenv/demo"
  "$kubectl" wait -n "$namespace" --for=condition=Ready --timeout=120s \
    mcptools --all >/dev/null || fail "tools did not become Ready"
  "$kubectl" wait -n "$namespace" --for=condition=Ready --timeout=120s \
    mcpservers --all >/dev/null || fail "the MCPServer did not become Ready"
  for deployment in weather-backend "$server"; do
    "$kubectl" -n "$namespace" rollout status "deployment/$deployment" --timeout=300s ||
      fail "deployment $deployment did not become available"
  done
  "$kubectl" get -n "$namespace" mcptools,mcpprompts,mcpresources,mcpservers
  "$kubectl" get -n "$namespace" pods -o wide

  step "Forwarding 127.0.0.1:$local_port to the router Service $namespace/$server"
  spawn port-forward "$kubectl" -n "$namespace" port-forward --address 127.0.0.1 "svc/$server" "$local_port:80"
  wait_http "http://127.0.0.1:$local_port/readyz" port-forward

  step "A real MCP session with the router pods"
  local headers session
  headers="$state/initialize.headers"
  rpc "$local_port" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"make-demo","version":"1"}}}' \
    -D "$headers" >/dev/null || fail "initialize failed"
  session=$(awk 'tolower($1)=="mcp-session-id:"{print $2}' "$headers" | tr -d '\r')
  [ -n "$session" ] || fail "the router returned no Mcp-Session-Id"
  rpc "$local_port" '{"jsonrpc":"2.0","method":"notifications/initialized"}' -H "Mcp-Session-Id: $session" >/dev/null ||
    fail "notifications/initialized failed"
  echo "tools/list:" >&2
  rpc "$local_port" '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' -H "Mcp-Session-Id: $session" |
    response |
    python3 -c 'import json,sys; [print("  -", t["name"] + ":", t.get("description", "")) for t in json.load(sys.stdin)["result"]["tools"]]'
  echo "tools/call forecast {\"city\": \"Oslo\", \"days\": 2}:" >&2
  rpc "$local_port" '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Oslo","days":2}}}' \
    -H "Mcp-Session-Id: $session" | response | python3 -m json.tool ||
    fail "tools/call failed"

  cat >&2 <<EOF

$(printf '\033[1m')mcp-operator demo is up.$(printf '\033[0m')

  MCP endpoint (Streamable HTTP):  http://127.0.0.1:$local_port/mcp
                                   (kubectl port-forward to the Service $namespace/$server; its two
                                   router pods run on the real node testenv-node)

  Connect a client:
    MCP Inspector:  npx @modelcontextprotocol/inspector   (transport "Streamable HTTP", the URL above)
    Python SDK:     pip install mcp==2.3.0, then
                      from mcp import Client
                      async with Client("http://127.0.0.1:$local_port/mcp") as client:
                          print(await client.call_tool("forecast", {"city": "Oslo"}))
    Claude Code:    claude mcp add --transport http demo http://127.0.0.1:$local_port/mcp

  Look around, change the catalog and watch clients get list_changed:
    export TESTENV_DIR=$TESTENV_DIR   # the demo's control plane, for kubectl.sh
    $kubectl -n mcp-operator-system get pods -o wide      # the operator's replicas
    $kubectl -n $namespace logs deployment/$server          # a router's log
    $kubectl -n $namespace get mcptools,mcpprompts,mcpresources,mcpservers
    $kubectl -n $namespace label mcptool current-time catalog-   # drops it from the server

  Logs: $state/logs    Stop: make demo-down
EOF
}

down() {
  if [ -f "$state/pids" ]; then
    local pid name
    while read -r pid name; do
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done <"$state/pids"
    for _ in $(seq 1 40); do
      local alive=0
      while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$state/pids"
      [ "$alive" -eq 0 ] && break
      sleep 0.25
    done
    while read -r pid name; do kill -KILL -- "-$pid" 2>/dev/null || true; done <"$state/pids"
  fi
  "$root/tests/testenv/testenv.sh" down || true
  rm -rf "$state"
  echo "demo: stopped" >&2
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
