#!/usr/bin/env bash
# Regenerate the HL7 v2 / MLLP captures (pcaps/hl7-*/) with REAL MLLP peers (python-hl7).
#
#   sudo PATH=/tmp/v/bin:$PATH bash pcaps/hl7-mllp/generate.sh          # all three cases
#   sudo PATH=/tmp/v/bin:$PATH bash pcaps/hl7-mllp/generate.sh CASE...  # only these
#
# Needs root (a private network namespace, tcpdump), python3 with python-hl7 0.4.x
# (`pip install hl7`: hl7.mllp and its `mllp_send` script) on PATH, tcpdump, tshark, iproute2.
#
# All traffic stays inside one private network namespace created here, on its own loopback
# interface; nothing is sent anywhere else. All patient data is SYNTHETIC (peers.py), with
# PHI canary strings in PID, NK1 and OBX that no sensor output may ever contain.
#
# Each case is captured into a scratch folder, its expected.json is built from the
# listener's own log (python-hl7's parse of every message received and ACK sent), checked
# against the client's log and against tshark's HL7 dissector, and only then moved into
# pcaps/<case>/ (mllp.pcap, expected.json). READMEs are written by hand.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PCAPS="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
ALL_CASES=(hl7-mllp hl7-two-listeners hl7-2575)
if [ "$#" -gt 0 ]; then CASES=("$@"); else CASES=("${ALL_CASES[@]}"); fi

die() { printf 'generate.sh: ERROR: %b\n' "$*" >&2; exit 1; }
log() { echo "== $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespace, tcpdump)"
for cmd in "$PY" tcpdump tshark ip mllp_send; do
  command -v "$cmd" >/dev/null 2>&1 || die "missing command: $cmd"
done
"$PY" -c 'import hl7.mllp' 2>/dev/null || die "python-hl7 missing: pip install hl7"

NS="hl7gen-$$"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

wait_for() {  # wait_for FILE TEXT: until TEXT appears in FILE (max 10 s)
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "timed out waiting for '$2' in $1"
}

# run_case CASE PORT... -- CLIENT-COMMANDS (one per line on stdin, run in order)
run_case() {
  local case="$1"; shift
  local ports=("$@")
  local dir="$WORK/$case"; mkdir -p "$dir"
  local filter="tcp and ($(printf 'port %s or ' "${ports[@]}" | sed 's/ or $//'))"
  log "$case: ports ${ports[*]}"
  # Started directly (not through a shell function), so that $! is the process itself:
  # `ip netns exec` execs its command.
  ip netns exec "$NS" tcpdump -i lo -n -s 0 -U --immediate-mode -w "$dir/mllp.pcap" "$filter" \
    2>"$dir/tcpdump.err" </dev/null &
  local tpid=$!; PIDS+=("$tpid")
  wait_for "$dir/tcpdump.err" "listening on"
  ip netns exec "$NS" "$PY" "$HERE/peers.py" listen "$dir/listener.jsonl" "${ports[@]}" \
    >"$dir/listener.out" 2>&1 </dev/null &
  local lpid=$!; PIDS+=("$lpid")
  wait_for "$dir/listener.out" "listening"
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    echo "   client: $line"
    (cd "$dir" && eval "in_ns $line") </dev/null >>"$dir/client.out" 2>&1 || die "client failed: $line\n$(cat "$dir/client.out")"
    sleep 0.2
  done
  sleep 0.5
  kill -TERM "$lpid"; wait "$lpid" || true
  sleep 0.5
  kill -TERM "$tpid"; wait "$tpid" || true
  "$PY" "$HERE/peers.py" expected "$dir/listener.jsonl" "$dir/expected.json"
  check_case "$case" "$dir" "${ports[@]}"
  mkdir -p "$PCAPS/$case"
  cp "$dir/mllp.pcap" "$dir/expected.json" "$PCAPS/$case/"
  log "$case: $(tshark -r "$dir/mllp.pcap" 2>/dev/null | wc -l) packets -> $PCAPS/$case/"
}

check_case() {  # the listener's view must agree with the client's and with tshark's
  local case="$1" dir="$2"; shift 2
  local decode=()
  for p in "$@"; do decode+=(-d "tcp.port==$p,hl7"); done
  tshark -r "$dir/mllp.pcap" "${decode[@]}" -Y hl7 -T fields -e tcp.srcport -e hl7.message.type \
    -e hl7.event.type >"$dir/tshark.tsv" 2>/dev/null
  PYTHONDONTWRITEBYTECODE=1 PEERS_DIR="$HERE" "$PY" - "$dir" "$@" <<'PYEOF'
import json, os, sys
from pathlib import Path
d = Path(sys.argv[1]); ports = {int(p) for p in sys.argv[2:]}
exp = json.loads((d / "expected.json").read_text())
msgs = [(c["server_port"], m) for c in exp["connections"] for m in c["messages"]]
if not msgs:
    sys.exit("no messages logged")
# Every message got an ACK with the code planned, acknowledging its control id.
sys.path.insert(0, os.environ["PEERS_DIR"])  # peers.py, for its ACK_PLAN
from peers import ACK_PLAN
for c in exp["connections"]:
    ms = c["messages"]
    for req, ack in zip(ms[0::2], ms[1::2]):
        if req["direction"] != "client" or ack["direction"] != "server":
            sys.exit(f"not request/ACK pairs: {ms}")
        if ack["acknowledged_control_id"] != req["message_control_id"]:
            sys.exit(f"ACK does not acknowledge {req['message_control_id']}")
        if ack["ack_code"] != ACK_PLAN.get(req["message_control_id"], "AA"):
            sys.exit(f"ACK code {ack['ack_code']} is not the one planned")
# The client saw the same ACKs: the asyncio client logs them (client.jsonl); mllp_send
# prints them (client.out).
acks = [m["message_control_id"] for _, m in msgs if m["direction"] == "server"]
client = d / "client.jsonl"
if client.exists():
    got = [json.loads(l)["message_control_id"] for l in client.read_text().splitlines()]
    if got != acks:
        sys.exit(f"client and listener disagree on ACKs: {got} != {acks}")
else:
    printed = (d / "client.out").read_text()
    if not all(a in printed for a in acks):
        sys.exit("mllp_send did not print every ACK the listener sent")
# tshark's HL7 dissector: one row per message (message type, trigger), in the same order per side.
rows = [l.split("\t") for l in (d / "tshark.tsv").read_text().splitlines() if l.strip()]
theirs = [(int(r[0]) in ports, r[1], r[2]) for r in rows]
ours = [(m["direction"] == "server", m["message_type"], m["trigger_event"]) for _, m in msgs]
if theirs != ours:
    sys.exit(f"tshark's HL7 messages differ from the peers' logs:\n{theirs}\n{ours}")
print(f"   checked: {len(msgs)} messages; tshark rows: {len(rows)}")
PYEOF
  for canary in CANARY-MRN-551 CANARYPID CANARY-OBX-RESULT; do
    grep -qa "$canary" "$dir/mllp.pcap" || die "$case: canary $canary not in the capture"
  done
}

for case in "${CASES[@]}"; do
  case "$case" in
    hl7-mllp)
      # One connection, three messages: ADT^A01 (AA), ORM^O01 (AA), ORU^R01 (AE).
      run_case hl7-mllp 42575 <<CLIENTS
"$PY" "$HERE/peers.py" send client.jsonl 42575 adt_a01 orm_o01 oru_r01
CLIENTS
      ;;
    hl7-two-listeners)
      # Two listeners in one process; one client each, one after the other:
      # ADT^A08 + ADT^A03 (AA, AA; processing id T) to 42576; ORU^R01 with custom
      # separators (field '#', component '$') to 42577, answered AR.
      run_case hl7-two-listeners 42576 42577 <<CLIENTS
"$PY" "$HERE/peers.py" send client.jsonl 42576 adt_a08 adt_a03
"$PY" "$HERE/peers.py" send client.jsonl 42577 oru_r01_custom
CLIENTS
      ;;
    hl7-2575)
      # The well-known MLLP port; python-hl7's own mllp_send script (one connection,
      # messages read from a file, last segment sent without its CR): ADT^A04 (AA) and a
      # v2.3 ORU^R01 without a message structure, answered CA (enhanced mode).
      "$PY" "$HERE/peers.py" write "$WORK/messages.hl7" adt_a04 oru_r01_v23
      run_case hl7-2575 2575 <<CLIENTS
mllp_send --loose --file "$WORK/messages.hl7" --port 2575 127.0.0.1
CLIENTS
      ;;
    *) die "unknown case: $case" ;;
  esac
done
log "done"
