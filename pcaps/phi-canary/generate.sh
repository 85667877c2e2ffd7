#!/usr/bin/env bash
# Regenerate pcaps/phi-canary/capture.pcap with REAL pynetdicom peers on 127.0.0.1.
#
#   sudo PATH=/tmp/v/bin:$PATH bash pcaps/phi-canary/generate.sh
#
# Needs root (tcpdump on lo), tcpdump, python3 with pydicom + pynetdicom on PATH.
# Writes capture.pcap (classic pcap, Ethernet-framed loopback, full snap length, filtered to
# the SCP's port), canaries.json (every canary string the peers sent) and expected.json (the
# associations, from peers.py's plan), then checks that each canary is really in the
# capture. All data is synthetic.
set -euo pipefail
export LC_ALL=C
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${PORT:-41777}"
[ "$(id -u)" = 0 ] || { echo "generate.sh: must run as root (tcpdump)" >&2; exit 1; }

TMP="$(mktemp -d)"
DUMP=""
trap '[ -n "$DUMP" ] && kill "$DUMP" 2>/dev/null; rm -rf "$TMP"' EXIT
tcpdump -i lo -U -s 0 -w "$TMP/capture.pcap" "tcp port $PORT" 2>"$TMP/tcpdump.log" &
DUMP=$!
for _ in $(seq 50); do grep -q "listening on" "$TMP/tcpdump.log" && break; sleep 0.1; done
python3 "$HERE/peers.py" "$PORT" "$TMP"
sleep 1
kill -INT "$DUMP"
wait "$DUMP" || true
DUMP=""
cp "$TMP/capture.pcap" "$HERE/capture.pcap"
cp "$TMP/canaries.json" "$TMP/expected.json" "$HERE/"
python3 - "$HERE" <<'EOF'
import json, sys
from pathlib import Path
here = Path(sys.argv[1])
data = (here / "capture.pcap").read_bytes()
canaries = json.loads((here / "canaries.json").read_text())["canaries"]
missing = [k for k, v in canaries.items() if v.encode() not in data]
if missing:
    sys.exit(f"generate.sh: canaries not in the capture: {missing}")
print(f"generate.sh: {len(data)} bytes, all {len(canaries)} canaries present")
EOF
