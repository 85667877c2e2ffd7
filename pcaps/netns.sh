# Shared by pcaps/zones/generate.sh and pcaps/evasion/generate.sh: the life of the network
# namespaces a generator builds, and of the processes it starts in them.
#
# Source it after setting P (namespace prefix: "$P-<host>"), HOSTS (host names; "$P-core"
# is removed too) and WORK (the work folder) and defining die(). It sets PIDS, the EXIT
# trap that stops every started process, deletes the namespaces and removes WORK (kept
# when the run failed and KEEP_WORK is set), and the helpers below.

PIDS=()
cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for h in "${HOSTS[@]}" core; do ip netns del "$P-$h" 2>/dev/null; done
  if [ "$rc" -ne 0 ] && [ -n "${KEEP_WORK:-}" ]; then
    echo "work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_() { local h="$1"; shift; ip netns exec "$P-$h" "$@"; }   # run in a host's namespace
bgrun() { # logfile host cmd...   (pid -> LASTPID and the cleanup list)
  local logf="$1" h="$2"; shift 2
  ip netns exec "$P-$h" "$@" >"$logf" 2>&1 &
  LASTPID=$!
  PIDS+=("$LASTPID")
}
stop() { kill -"${2:-TERM}" "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_listen() { # host port
  local i
  for i in $(seq 1 100); do
    if in_ "$1" ss -Hltn "sport = :$2" | grep -q LISTEN; then return 0; fi
    sleep 0.1
  done
  die "nothing listening on port $2 in $1"
}
