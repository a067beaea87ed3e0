#!/usr/bin/env bash
# Real Redis for the tests, from Debian's redis-server: one single node and
# one 6-node Redis Cluster (3 primaries, 3 replicas), on loopback, without
# persistence. Every node requires authentication: the default user is off,
# and the admin user `mcp-operator` has a random password generated into the
# state directory (exported as MCP_REDIS_USERNAME / MCP_REDIS_PASSWORD; the
# URLs carry no credentials). Replicas authenticate to their primaries as
# that user (masteruser/masterauth). The operator creates each MCPServer's
# own user on every node. One more single node and a 3-node cluster (3
# primaries) speak only TLS, with a certificate for localhost and 127.0.0.1
# signed by a CA generated here (exported as MCP_REDIS_TLS_URL,
# MCP_REDIS_TLS_CLUSTER_URLS and MCP_REDIS_TLS_CA_FILE).
#
#   redis.sh up      start (installing redis-server first if missing), wait
#                    until ready, print the export lines on stdout
#   redis.sh down    stop every node and remove the state directory
#   redis.sh status  exit 0 when the single node and the whole cluster are up
#   redis.sh kill-primary
#                    a chaos fault: kill -9 a random cluster primary, wait
#                    until its replica has taken over, start the node again
#                    (it rejoins as a replica) and wait until the cluster is
#                    whole; prints the port it killed
#
# Ports and state are configurable so that two environments can run at once:
#   TESTENV_DIR                      state root (default: <repo>/.testenv)
#   TESTENV_REDIS_PORT               single node (default 16379)
#   TESTENV_REDIS_CLUSTER_BASE_PORT  first of six cluster ports (default 17000);
#                                    each node also takes port + 10000 (cluster
#                                    bus); the TLS cluster takes the next three
#   TESTENV_REDIS_TLS_PORT           the TLS node (default: single node + 1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/debian.sh"
state="${TESTENV_DIR:-$here/../../.testenv}/redis"
single_port="${TESTENV_REDIS_PORT:-16379}"
base="${TESTENV_REDIS_CLUSTER_BASE_PORT:-17000}"
tls_port="${TESTENV_REDIS_TLS_PORT:-$((single_port + 1))}"
cluster_ports=()
for i in 0 1 2 3 4 5; do cluster_ports+=($((base + i))); done
tls_cluster_ports=()
for i in 6 7 8; do tls_cluster_ports+=($((base + i))); done

log() { echo "redis.sh: $*" >&2; }

admin=mcp-operator
password_file="$state/password"
password() { cat "$password_file" 2>/dev/null || true; }

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  log "installing Debian's redis-server and redis-tools"
  debian_install redis-server redis-tools
}

# The password travels in REDISCLI_AUTH, not on a command line.
cli() { REDISCLI_AUTH=$(password) redis-cli --user "$admin" -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# The ACL and replication credentials every node starts with, in a file
# (not on the command line, where ps would show the password).
write_auth_config() {
  umask 077
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$password_file"
  cat >"$state/auth.conf" <<CONF
user default off
user $admin on >$(password) ~* &* +@all
masteruser $admin
masterauth $(password)
CONF
}

start_node() {
  local port=$1 dir="$state/$1"
  shift
  mkdir -p "$dir"
  redis-server "$state/auth.conf" --bind 127.0.0.1 --port "$port" --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save '' --appendonly no "$@" >&2
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for $what (logs in $state/*/redis.log)"
      return 1
    fi
    sleep 0.2
  done
}

single_up() { [ "$(cli "$single_port" ping)" = PONG ]; }

tls_cli() { cli "$1" --tls --cacert "$state/tls/ca.crt" --sni localhost "${@:2}"; }
tls_up() { [ "$(tls_cli "$tls_port" ping)" = PONG ]; }

# TLS on the client port and on the cluster bus; no plain port.
tls_node_args() {
  echo --port 0 --tls-port "$1" --tls-auth-clients no --tls-cluster yes \
    --tls-cert-file "$state/tls/server.crt" --tls-key-file "$state/tls/server.key" \
    --tls-ca-cert-file "$state/tls/ca.crt"
}

tls_nodes_answer() {
  local port
  for port in "${tls_cluster_ports[@]}"; do [ "$(tls_cli "$port" ping)" = PONG ] || return 1; done
}

tls_cluster_up() {
  local port
  for port in "${tls_cluster_ports[@]}"; do
    tls_cli "$port" cluster info | grep -q '^cluster_state:ok' || return 1
    tls_cli "$port" cluster info | grep -q '^cluster_known_nodes:3' || return 1
  done
}

# A CA and a certificate for localhost that it signs.
write_tls_files() {
  local dir="$state/tls"
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=mcp-operator testenv CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
}

cluster_up() {
  local port
  for port in "${cluster_ports[@]}"; do
    cli "$port" cluster info | grep -q '^cluster_state:ok' || return 1
    cli "$port" cluster info | grep -q '^cluster_known_nodes:6' || return 1
    # Replicas must have finished their first sync, or a test that reads a
    # replica right away sees an empty node.
    if cli "$port" info replication | grep -q '^role:slave'; then
      cli "$port" info replication | grep -q '^master_link_status:up' || return 1
    fi
  done
}

nodes_answer() {
  local port
  for port in "${cluster_ports[@]}"; do [ "$(cli "$port" ping)" = PONG ] || return 1; done
}

cluster_node_args() {
  echo --cluster-enabled yes --cluster-config-file "$state/$1/nodes.conf" --cluster-node-timeout 2000
}

# Every other node has marked `port` failed and serves all slots again.
failed_over() {
  local dead=$1 port
  for port in "${cluster_ports[@]}"; do
    [ "$port" = "$dead" ] && continue
    cli "$port" cluster nodes | grep ":$dead@" | grep -q fail || return 1
    cli "$port" cluster info | grep -q '^cluster_state:ok' || return 1
  done
}

kill_primary() {
  local victim="" port
  for port in "${cluster_ports[@]}"; do
    victim=$(cli "$port" cluster nodes |
      awk '$3 ~ /master/ && $3 !~ /fail/ && $9 != "" { split($2, a, "[:@]"); print a[2] }' | shuf -n 1)
    [ -n "$victim" ] && break
  done
  [ -n "$victim" ] || { log "no live primary found"; return 1; }
  kill -KILL "$(cat "$state/$victim/redis.pid")"
  wait_until 60 "a replica to take over from $victim" failed_over "$victim"
  # shellcheck disable=SC2046 # the arguments are words by design
  start_node "$victim" $(cluster_node_args "$victim")
  wait_until 60 "the cluster to be whole again" cluster_up
  echo "$victim"
}

exports() {
  local urls=() port
  for port in "${cluster_ports[@]}"; do urls+=("redis://127.0.0.1:$port"); done
  echo "export MCP_REDIS_URL=redis://127.0.0.1:$single_port"
  echo "export MCP_REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")"
  echo "export MCP_REDIS_TLS_URL=rediss://localhost:$tls_port"
  urls=()
  for port in "${tls_cluster_ports[@]}"; do urls+=("rediss://127.0.0.1:$port"); done
  echo "export MCP_REDIS_TLS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")"
  echo "export MCP_REDIS_TLS_CA_FILE=$state/tls/ca.crt"
  echo "export MCP_REDIS_USERNAME=$admin"
  echo "export MCP_REDIS_PASSWORD=$(password)"
}

status() { command -v redis-cli >/dev/null && single_up && tls_up && cluster_up && tls_cluster_up; }

down() {
  local port
  for port in "$tls_port" "${tls_cluster_ports[@]}"; do
    if [ -f "$state/$port/redis.pid" ]; then
      kill "$(cat "$state/$port/redis.pid")" 2>/dev/null || true
    fi
  done
  for port in "$single_port" "${cluster_ports[@]}"; do
    if [ -f "$state/$port/redis.pid" ] || [ "$(cli "$port" ping)" = PONG ]; then
      # A node of an older environment may not know the password.
      cli "$port" shutdown nosave >/dev/null ||
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
  done
  for port in "$single_port" "$tls_port" "${cluster_ports[@]}" "${tls_cluster_ports[@]}"; do
    wait_until 10 "port $port to close" bash -c "! (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null"
  done
  rm -rf "$state"
}

up() {
  if status; then exports; return; fi
  install
  # A half-started environment (a killed run, a node that crashed) is
  # rebuilt from scratch rather than repaired.
  down
  mkdir -p "$state"
  write_auth_config
  write_tls_files
  start_node "$single_port"
  local port
  # shellcheck disable=SC2046 # the arguments are words by design
  start_node "$tls_port" $(tls_node_args "$tls_port")
  for port in "${cluster_ports[@]}"; do
    # shellcheck disable=SC2046
    start_node "$port" $(cluster_node_args "$port")
  done
  for port in "${tls_cluster_ports[@]}"; do
    # shellcheck disable=SC2046
    start_node "$port" $(tls_node_args "$port") $(cluster_node_args "$port")
  done
  wait_until 30 "the single node" single_up
  wait_until 30 "the TLS node" tls_up
  wait_until 30 "the cluster nodes" nodes_answer
  local addrs=()
  for port in "${cluster_ports[@]}"; do addrs+=("127.0.0.1:$port"); done
  REDISCLI_AUTH=$(password) redis-cli --user "$admin" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$state/cluster-create.log" 2>&1 ||
    { log "cluster create failed: $(tail -5 "$state/cluster-create.log")"; return 1; }
  wait_until 60 "cluster_state:ok on every node" cluster_up
  wait_until 30 "the TLS cluster nodes" tls_nodes_answer
  addrs=()
  for port in "${tls_cluster_ports[@]}"; do addrs+=("127.0.0.1:$port"); done
  REDISCLI_AUTH=$(password) redis-cli --user "$admin" --tls --cacert "$state/tls/ca.crt" \
    --cluster create "${addrs[@]}" --cluster-yes >"$state/tls-cluster-create.log" 2>&1 ||
    { log "TLS cluster create failed: $(tail -5 "$state/tls-cluster-create.log")"; return 1; }
  wait_until 60 "cluster_state:ok on every TLS node" tls_cluster_up
  exports
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill-primary) kill_primary ;;
  *) echo "usage: $0 up|down|status|kill-primary" >&2; exit 2 ;;
esac
