# The testenv's daemons as processes with a pid and a log in the sourcing
# script's state directory ($state), which also defines log(). Sourced by
# controlplane.sh and node.sh.

# alive NAME: its process runs.
alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

# start NAME COMMAND...: run COMMAND detached from this shell, so that it
# outlives `make testenv`, with its log and pid in the state directory.
start() {
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

# wait_for SECONDS NAME COMMAND...: poll COMMAND, failing early when the
# component's process has died.
wait_for() {
  local deadline=$((SECONDS + $1)) name=$2
  shift 2
  until "$@"; do
    if ! alive "$name"; then
      log "$name exited; last lines of $state/$name.log:"
      tail -20 "$state/$name.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for $name; see $state/$name.log"
      return 1
    fi
    sleep 0.5
  done
}
