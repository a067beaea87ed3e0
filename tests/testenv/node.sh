#!/usr/bin/env bash
# One real node beside kwok's fake ones: containerd and runc (Debian's) and
# a kubelet (the testenv binary's `kubelet`, the control plane's version)
# that registers with the testenv's apiserver and runs pods for real.
#
#   node.sh up      install what is missing, start what is not running, wait
#                   until the node is Ready; import the OCI archives in
#                   TESTENV_NODE_IMAGES; print the export lines
#   node.sh down    stop every process, remove every mount, cgroup, bridge
#                   and file it made
#   node.sh status  exit 0 when the node's daemons run
#
# The node is labelled and tainted kubemcp.io/testenv-node=real:NoSchedule,
# so kwok-bound pods (the load test's thousands of routers) stay off it. A
# namespace annotated as manifests/overlays/testenv/node/namespace.yaml is (the
# apiserver's PodNodeSelector and PodTolerationRestriction plugins) runs
# its pods on it.
#
# Isolation, so that two testenvs share a machine and leave nothing behind:
# containerd, its shims and the kubelet run in a private mount namespace
# (a holder process keeps it), where /run, /var/lib and /var/log are the
# node's own and the three VM-wide sysctls the kubelet would write are
# files; every mount goes with that namespace. The pod network is a bridge
# of the node's own with a /26 of 100.64.0.0/10 and no masquerading (no
# packet filter rules); cgroups live under a root of the node's own. By
# default all of them derive from TESTENV_APISERVER_PORT, which already
# differs between environments.
#
# Configuration:
#   TESTENV_DIR              state root (default: <repo>/.testenv)
#   TESTENV_APISERVER_PORT   the control plane's port (default 16443)
#   TESTENV_REDIS_PORT       Redis, forwarded to the node IP's 6379 (default 16379)
#   TESTENV_NODE_CIDR        the pod network (default: a /26 from the port)
#   TESTENV_NODE_BRIDGE      its bridge (default mcp-node-<port>)
#   TESTENV_NODE_CGROUP      the kubelet's cgroup root (default /mcp-testenv-<port>)
#   TESTENV_KUBELET_PORT     kubelet API on the node IP (default 10250; the
#                            healthz port is the next one)
#   TESTENV_NODE_IMAGES      OCI archives to import into containerd on `up`
#   TESTENV_CACHE            built binaries (default ~/.cache/mcp-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root="$(mkdir -p "${TESTENV_DIR:-$here/../../.testenv}" && cd "${TESTENV_DIR:-$here/../../.testenv}" && pwd)"
state="$root/node"
controlplane="$root/controlplane"
apiserver_port="${TESTENV_APISERVER_PORT:-16443}"
redis_port="${TESTENV_REDIS_PORT:-16379}"
cache="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-operator}"
kubelet_port="${TESTENV_KUBELET_PORT:-10250}"
bridge="${TESTENV_NODE_BRIDGE:-mcp-node-$apiserver_port}"
cgroup="${TESTENV_NODE_CGROUP:-/mcp-testenv-$apiserver_port}"
node_name=testenv-node
node_label=kubemcp.io/testenv-node
daemons=(proxy containerd kubelet)

log() { echo "node.sh: $*" >&2; }

# The default pod network: the port's own /26 of 100.64.0.0/10 (16 bits of
# port, 6 of host), so two environments never share addresses.
default_cidr() {
  local n=$(((100 << 24 | 64 << 16) + (apiserver_port << 6)))
  echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))/26"
}
cidr="${TESTENV_NODE_CIDR:-$(default_cidr)}"
# The node IP is the bridge's (the pods' gateway): the kubelet serves on it,
# and the proxy serves DNS and the forwards on it.
node_ip() {
  local base=${cidr%/*} a b c d
  IFS=. read -r a b c d <<<"$base"
  echo "$a.$b.$c.$((d + 1))"
}
ip=$(node_ip)

install() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v unshare >/dev/null || missing+=(util-linux)
  [ "${#missing[@]}" -eq 0 ] && return
  log "installing Debian's ${missing[*]}"
  debian_install "${missing[@]}"
}

testenv_binary() { "$here/controlplane.sh" binary; }

# The images of this directory's small programs: pause (containerd's
# sandbox_image) and echo (the end-to-end test's backend), each FROM
# scratch as testenv.local/NAME:1, as an OCI archive keyed by the hash of
# its source. No registry is reachable to pull such images from.
program_archive() {
  local name=$1 hash
  hash=$(cd "$here" && cat go.mod "$name"/*.go | sha256sum | cut -c1-16)
  local archive="$cache/$name-$hash.oci.tar"
  if [ ! -f "$archive" ]; then
    log "building the $name image"
    local work
    work=$(mktemp -d)
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$work/rootfs/$name" "./$name") >&2
    printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\nENTRYPOINT ["/%s"]\n' "$name" >"$work/Containerfile"
    local storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
    buildah "${storage[@]}" bud --quiet --timestamp 0 -f "$work/Containerfile" -t "$(program_image "$name")" "$work" >/dev/null
    buildah "${storage[@]}" push --quiet "$(program_image "$name")" "oci-archive:$archive.tmp:$(program_image "$name")"
    buildah "${storage[@]}" rmi --all >/dev/null 2>&1 || true
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
  fi
  echo "$archive"
}
program_image() { echo "testenv.local/$1:1"; }

# alive, start, wait_for
. "$here/processes.sh"
. "$here/debian.sh"

# in_node COMMAND...: COMMAND in the node's mount namespace.
in_node() { nsenter --target "$(cat "$state/holder.pid")" --mount -- "$@"; }

ctr_() { ctr --address "$state/containerd.sock" --namespace k8s.io "$@"; }
containerd_ready() { ctr_ version >/dev/null 2>&1; }
kubectl_() { "$(testenv_binary)" kubectl --kubeconfig "$controlplane/kubeconfig" "$@"; }
node_ready() {
  [ "$(kubectl_ get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

status() {
  local d
  alive holder || return 1
  for d in "${daemons[@]}"; do alive "$d" || return 1; done
  node_ready
}

# The v1 hierarchies (the host may also mount cgroup2 beside them).
cgroup_hierarchies() {
  local dir
  for dir in /sys/fs/cgroup/*/; do
    [ -f "$dir/cgroup.procs" ] && echo "${dir%/}"
  done
}

make_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h$cgroup"
    # A new cpuset has no CPUs or memory nodes until given its parent's.
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h$cgroup/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$cgroup/cpuset.mems"
    fi
  done
}

# Kills every process left in the node's cgroups (the pods' containers),
# then removes the cgroups, deepest first.
remove_cgroups() {
  local h pid
  for h in $(cgroup_hierarchies); do
    [ -d "$h$cgroup" ] || continue
    for pid in $(find "$h$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
  for h in $(cgroup_hierarchies); do
    [ -d "$h$cgroup" ] || continue
    for _ in $(seq 1 50); do
      find "$h$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h$cgroup" ] || break
      sleep 0.1
    done
    [ -d "$h$cgroup" ] && log "could not remove the cgroup $h$cgroup"
  done
  return 0
}

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  local d pid
  for d in kubelet proxy; do alive "$d" && stop_pid "$(cat "$state/$d.pid")"; done
  # The pods' processes, then containerd and the shims it started (they
  # outlive it, found by the socket path only this node's containerd has).
  remove_cgroups
  alive containerd && stop_pid "$(cat "$state/containerd.pid")"
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $state/containerd.sock" || true); do
    stop_pid "$pid"
  done
  remove_cgroups
  # The mount namespace, and every mount in it, goes with its last process.
  alive holder && stop_pid "$(cat "$state/holder.pid")"
  ip link delete "$bridge" 2>/dev/null || true
  rm -rf "$state"
}

write_configs() {
  mkdir -p "$state/cni" "$state/kubelet" "$state/log" "$state/sysctl" "$state/pki" "$state/volume-plugins"
  cat >"$state/containerd.toml" <<EOF
version = 2
root = "$state/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$state/containerd.sock"
[ttrpc]
  address = "$state/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(program_image pause)"
  # Root here lacks CAP_SYS_RESOURCE: no score below containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni"
EOF
  cat >"$state/cni/10-testenv.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "testenv",
  "plugins": [{
    "type": "bridge",
    "bridge": "$bridge",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$cidr", "gateway": "$ip"}]],
      "dataDir": "$state/cni-ipam"
    }
  }]
}
EOF
  cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: $((kubelet_port + 1))
# Reached only on the node IP by this testenv's apiserver.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$state/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $cgroup
# This host runs the hybrid cgroup v1 layout.
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
maxOpenFiles: 20000
protectKernelDefaults: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
clusterDNS: [$ip]
resolvConf: ""
volumePluginDir: $state/volume-plugins
registerWithTaints:
  - {key: $node_label, value: real, effect: NoSchedule}
# A shared, busy machine whose disk others fill too: no evictions (the
# kubelet refuses 0, hence the least absolute amounts), no pressure
# lingering for minutes, no image collection (the images are imported,
# there is no registry to pull them from again).
evictionHard: {memory.available: "1Mi", nodefs.available: "1Mi", imagefs.available: "1Mi", nodefs.inodesFree: "1", imagefs.inodesFree: "1"}
evictionPressureTransitionPeriod: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Mounted Secrets follow a rotation within seconds.
syncFrequency: 5s
serializeImagePulls: false
EOF
  # The values the kubelet wants, so it has nothing to write to the VM.
  echo 1 >"$state/sysctl/overcommit_memory"
  echo 10 >"$state/sysctl/panic"
  echo 1 >"$state/sysctl/panic_on_oops"
}

start_all() {
  local bin=$1
  down
  mkdir -p "$state"
  write_configs
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$ip/${cidr#*/}" dev "$bridge"
    ip link set "$bridge" up
  fi
  make_cgroups
  start holder unshare --mount --propagation private sleep infinity
  for _ in $(seq 1 50); do
    [ "$(readlink "/proc/$(cat "$state/holder.pid")/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] && break
    sleep 0.1
  done
  in_node sh -euc "
    mount -t tmpfs -o mode=0755 tmpfs /run
    mount --bind '$state/log' /var/log
    mount -t tmpfs -o mode=0755 tmpfs /var/lib
    mkdir /var/lib/kubelet
    mount --bind '$state/kubelet' /var/lib/kubelet
    mount --bind '$state/sysctl/overcommit_memory' /proc/sys/vm/overcommit_memory
    mount --bind '$state/sysctl/panic' /proc/sys/kernel/panic
    mount --bind '$state/sysctl/panic_on_oops' /proc/sys/kernel/panic_on_oops
  "
  start containerd nsenter --target "$(cat "$state/holder.pid")" --mount -- containerd --config "$state/containerd.toml"
  wait_for 60 containerd containerd_ready
  local program
  for program in pause echo; do ctr_ images import "$(program_archive "$program")" >&2; done
  start proxy "$bin" proxy --dir "$controlplane" --listen "$ip" \
    --forward "443=127.0.0.1:$apiserver_port" --forward "6379=127.0.0.1:$redis_port"
  start kubelet nsenter --target "$(cat "$state/holder.pid")" --mount -- "$bin" kubelet \
    --config "$state/kubelet.yaml" \
    --kubeconfig "$controlplane/kubeconfig" \
    --hostname-override "$node_name" \
    --node-ip "$ip" \
    --node-labels "$node_label=real" \
    --cert-dir "$state/pki"
  wait_for 120 kubelet node_ready
}

up() {
  [ -f "$controlplane/kubeconfig" ] || { log "the control plane is not up"; exit 1; }
  install
  local bin archive
  bin=$(testenv_binary)
  status || start_all "$bin"
  for archive in ${TESTENV_NODE_IMAGES:-}; do
    log "importing $archive"
    ctr_ images import "$archive" >&2
  done
  echo "export TESTENV_NODE=$node_name"
  echo "export TESTENV_NODE_IP=$ip"
  echo "export TESTENV_NODE_LABEL=$node_label=real"
  echo "export TESTENV_NODE_ECHO_IMAGE=$(program_image echo)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
