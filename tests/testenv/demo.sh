#!/usr/bin/env bash
# `make demo` and `make demo-down`: the whole system on this machine, with
# real parts and no Docker. A control plane and Redis (the testenv, on ports
# of its own), three operator replicas sharing the shards, the examples of
# manifests/examples, the sample backend and two routers for the example
# MCPServer, all as local processes that stay up until `demo.sh down`.
#
#   demo.sh up     build, start everything, make one real MCP tools/call
#   demo.sh down   stop everything the demo started and remove its state
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state="$root/.demo"
namespace=mcp-examples # set by manifests/examples
router_ports=(18080 18081)
# The sample backend listens where the Service of manifests/examples says
# (port 8080), on a loopback address of its own so nothing else on this
# machine's 8080 is in the way.
backend_address=127.0.0.2
backend_port=8080

# The demo's own testenv, so it runs beside `make testenv` or `make test`.
export TESTENV_DIR="$state/testenv"
export TESTENV_APISERVER_PORT=56443 TESTENV_CONTROLLER_MANAGER_PORT=56446
export TESTENV_SCHEDULER_PORT=56447 TESTENV_KWOK_PORT=56448
export TESTENV_REDIS_PORT=56379 TESTENV_REDIS_CLUSTER_BASE_PORT=51000

binary="${CARGO_TARGET_DIR:-$root/target}/debug/mcp-operator"
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

up() {
  if [ -s "$state/pids" ]; then
    echo "demo: already running (make demo-down stops it)" >&2
    exit 1
  fi
  mkdir -p "$state/logs"

  step "Building mcp-operator (cargo build; the first build takes a few minutes)"
  cargo build --bin mcp-operator

  step "Starting a Kubernetes control plane and Redis on loopback (first start builds them)"
  local exports
  exports=$("$root/tests/testenv/testenv.sh" up) || fail "the control plane or Redis did not start"
  eval "$exports"
  export KUBECONFIG

  step "Installing the operator's namespace, CRDs and RBAC (manifests/overlays/dev)"
  "$kubectl" apply --server-side -k "$root/manifests/overlays/dev" >/dev/null

  step "Starting 3 operator replicas (16 shards, Leases in mcp-operator-system)"
  for i in 1 2 3; do
    spawn "operator-$i" env -u MCP_REDIS_CLUSTER_URLS "$binary" controller \
      --redis-url "$MCP_REDIS_URL" \
      --lease-namespace mcp-operator-system \
      --identity "demo-operator-$i" \
      --metrics-listen "127.0.0.1:1909$i"
  done
  for i in 1 2 3; do wait_http "http://127.0.0.1:1909$i/metrics" "operator-$i"; done

  step "Starting the sample backend on $backend_address:$backend_port"
  spawn backend python3 "$root/manifests/examples/backend/server.py" --host "$backend_address" --port "$backend_port"
  wait_http "http://$backend_address:$backend_port/healthz" backend

  step "Applying manifests/examples (namespace $namespace)"
  "$kubectl" apply --server-side -k "$root/manifests/examples"
  "$kubectl" wait -n "$namespace" --for=condition=Ready --timeout=120s \
    mcptools --all >/dev/null || fail "tools did not become Ready"
  "$kubectl" wait -n "$namespace" --for=condition=Ready --timeout=120s \
    mcpservers --all >/dev/null || fail "the MCPServer did not become Ready"
  "$kubectl" get -n "$namespace" mcptools,mcpprompts,mcpresources,mcpservers

  local server
  server=$("$kubectl" get -n "$namespace" mcpservers -o jsonpath='{.items[0].metadata.name}')
  step "Starting 2 routers for MCPServer $namespace/$server"
  # Backend Services resolve inside a cluster; here they are the local
  # sample backend, so the routers map every backend host to loopback.
  local hosts
  hosts=$("$kubectl" get -n "$namespace" mcptools -o jsonpath='{range .items[*]}{.status.resolvedEndpoint}{"\n"}{end}' |
    sed -E 's#^https?://([^:/]+).*#\1#' | sort -u)
  local resolve=()
  for host in $hosts; do resolve+=(--resolve "$host=$backend_address"); done
  # The keys the routers verify the catalog with, from the Deployment the
  # operator made for them, as a router pod gets them.
  local public_keys
  public_keys=$("$kubectl" get -n "$namespace" deployment "$server" \
    -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MCP_CATALOG_PUBLIC_KEYS")].value}')
  [ -n "$public_keys" ] || fail "the router Deployment has no MCP_CATALOG_PUBLIC_KEYS"
  # The routers' own Redis user (it reaches only this server's keys), from
  # the Secret the operator wrote, as the kubelet would pass it.
  local secret="$server-router-redis" redis_username redis_password
  redis_username=$("$kubectl" get -n "$namespace" secret "$secret" -o jsonpath='{.data.username}' | base64 -d)
  redis_password=$("$kubectl" get -n "$namespace" secret "$secret" -o jsonpath='{.data.password}' | base64 -d)
  for port in "${router_ports[@]}"; do
    spawn "router-$port" env -u MCP_REDIS_CLUSTER_URLS \
      MCP_REDIS_USERNAME="$redis_username" MCP_REDIS_PASSWORD="$redis_password" "$binary" router \
      --server "$namespace/$server" \
      --listen "127.0.0.1:$port" \
      --redis-url "$MCP_REDIS_URL" \
      --catalog-public-keys "$public_keys" \
      "${resolve[@]}"
  done
  for port in "${router_ports[@]}"; do wait_http "http://127.0.0.1:$port/readyz" "router-$port"; done

  step "A real MCP session: initialize on one router, tools/call on the other"
  local headers session tool
  headers="$state/initialize.headers"
  rpc "${router_ports[0]}" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"make-demo","version":"1"}}}' \
    -D "$headers" >/dev/null || fail "initialize failed"
  session=$(awk 'tolower($1)=="mcp-session-id:"{print $2}' "$headers" | tr -d '\r')
  [ -n "$session" ] || fail "the router returned no Mcp-Session-Id"
  rpc "${router_ports[1]}" '{"jsonrpc":"2.0","method":"notifications/initialized"}' -H "Mcp-Session-Id: $session" >/dev/null ||
    fail "notifications/initialized failed"
  echo "tools/list:" >&2
  rpc "${router_ports[1]}" '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' -H "Mcp-Session-Id: $session" |
    response |
    python3 -c 'import json,sys; [print("  -", t["name"] + ":", t.get("description", "")) for t in json.load(sys.stdin)["result"]["tools"]]'
  echo "tools/call forecast {\"city\": \"Oslo\", \"days\": 2}:" >&2
  rpc "${router_ports[1]}" '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Oslo","days":2}}}' \
    -H "Mcp-Session-Id: $session" | response | python3 -m json.tool ||
    fail "tools/call failed"

  cat >&2 <<EOF

$(printf '\033[1m')mcp-operator demo is up.$(printf '\033[0m')

  MCP endpoint (Streamable HTTP):  http://127.0.0.1:${router_ports[0]}/mcp
                                   http://127.0.0.1:${router_ports[1]}/mcp (same server; sessions work on either)

  Connect a client:
    MCP Inspector:  npx @modelcontextprotocol/inspector   (transport "Streamable HTTP", the URL above)
    Python SDK:     pip install mcp==2.3.0, then
                      from mcp import Client
                      async with Client("http://127.0.0.1:${router_ports[0]}/mcp") as client:
                          print(await client.call_tool("forecast", {"city": "Oslo"}))
    Claude Code:    claude mcp add --transport http demo http://127.0.0.1:${router_ports[0]}/mcp

  Change the catalog and watch clients get list_changed:
    export TESTENV_DIR=$TESTENV_DIR   # the demo's control plane, for kubectl.sh
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
