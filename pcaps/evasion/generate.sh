#!/usr/bin/env bash
# Regenerate the evasion captures (pcaps/evasion/<scenario>/) with REAL victims:
# a pynetdicom 3.0.4 SCP (the PACS) and DCMTK 3.6.7 storescp (an archive, and the C-MOVE
# destination EXFIL), attacked by attacker.py, a scripted SCU on a real TCP connection.
#
#   sudo PATH=/work/main/.venv/bin:$PATH bash pcaps/evasion/generate.sh              # all
#   sudo PATH=/work/main/.venv/bin:$PATH bash pcaps/evasion/generate.sh overlap-held # some
#
# Needs root (namespaces, tc, tcpdump, a raw socket), python3 with pydicom, pynetdicom, dpkt
# and scapy first on PATH, DCMTK's storescp at /usr/bin (pynetdicom installs an app of the
# same name into the venv), tcpdump, iproute2 (u32 classifier, mirred action), ethtool.
#
# Namespaces dsev-* stand for a small hospital and the internet, routed by dsev-core, whose
# host-facing ports are mirrored to a span port where tcpdump writes the capture: every
# packet once, as its sender put it on the wire (the injected copies of the overlap
# scenarios too). All addresses exist only inside these namespaces; nothing leaves them.
#
#   dsev-ext      198.51.100.20  zone internet (external)   the attacker (attacker.py)
#   dsev-pacs     10.30.0.5      zone pacs (dmz, radiology)  pynetdicom SCP, AE PACS, :11112
#   dsev-archive  10.30.0.6      zone pacs                   DCMTK storescp, AE ARCHIVE, :104
#   dsev-exfil    203.0.113.7    zone internet               DCMTK storescp, AE EXFIL, :11112
#
# Each scenario is checked before it is kept: the victims' logs must show that they acted
# on what the attacker sent, check_capture.py must find the evasion on the wire, and
# expect.py writes expected_records.json / expected_alerts.json from the scenario's
# specification and those logs (never from the sensor's output).
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(reserved-bits reserved-header split-header overlap-held overlap-retransmit)
if [ "$#" -gt 0 ]; then SCEN=("$@"); else SCEN=("${ALL[@]}"); fi
for s in "${SCEN[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; exit 2 ;; esac
done

die() { printf 'evasion/generate.sh: ERROR: %b\n' "$*" >&2; exit 1; }
log() { echo "== $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, tc, tcpdump, raw sockets)"
for cmd in python3 tcpdump ip tc ss ethtool; do
  command -v "$cmd" >/dev/null 2>&1 || die "missing command: $cmd"
done
python3 -c 'import pydicom, pynetdicom, dpkt, scapy' 2>/dev/null \
  || die "python3 ($(command -v python3)) lacks pydicom/pynetdicom/dpkt/scapy (PATH=.venv/bin:\$PATH)"
STORESCP=/usr/bin/storescp
{ "$STORESCP" --version 2>&1 || true; } | grep -q '^\$dcmtk: storescp' || die "DCMTK's $STORESCP not found"
PYND_VER="$(python3 -c 'import pynetdicom; print(pynetdicom.__version__)')"
DCMTK_VER="$("$STORESCP" --version 2>&1 | sed -n 's/^\$dcmtk: storescp \(v[^ ]*\).*/\1/p')"

P=dsev
CORE=$P-core
HOSTS=(ext pacs archive exfil)
declare -A NET=([ext]=internet [pacs]=pacs [archive]=pacs [exfil]=far)
declare -A V4=([ext]=198.51.100.20 [pacs]=10.30.0.5 [archive]=10.30.0.6 [exfil]=203.0.113.7)
declare -A GW=([internet]=198.51.100.1 [pacs]=10.30.0.1 [far]=203.0.113.1)
EXT=${V4[ext]}; PACS=${V4[pacs]}; ARCHIVE=${V4[archive]}; EXFIL=${V4[exfil]}

WORK="$(mktemp -d /tmp/dsev.XXXXXX)"
# shellcheck source=../netns.sh
. "$HERE/../netns.sh"   # PIDS, cleanup trap, in_, bgrun, stop, wait_listen

# ---------------------------------------------------------------- topology
log "namespaces, bridges, routes, span port"
for h in "${HOSTS[@]}" core; do ip netns del "$P-$h" 2>/dev/null || true; done
ip netns add "$CORE"
ip -n "$CORE" link set lo up
ip netns exec "$CORE" sysctl -qw net.ipv4.ip_forward=1
ip -n "$CORE" link add span0 type veth peer name span1
for i in span0 span1; do
  ip netns exec "$CORE" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1"
  ip -n "$CORE" link set "$i" up
done
for n in "${!GW[@]}"; do
  ip -n "$CORE" link add "br-$n" type bridge
  ip -n "$CORE" addr add "${GW[$n]}/24" dev "br-$n"
  ip -n "$CORE" link set "br-$n" up
  ip netns exec "$CORE" ethtool -K "br-$n" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
done
for h in "${HOSTS[@]}"; do
  ns="$P-$h"; n="${NET[$h]}"
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="50000 60999" \
    net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
  ip link add "ev-$h" netns "$CORE" type veth peer name eth0 netns "$ns"
  ip -n "$ns" addr add "${V4[$h]}/24" dev eth0
  ip -n "$ns" link set eth0 mtu 1500 up
  ip -n "$CORE" link set "ev-$h" master "br-$n" mtu 1500 up
  ip -n "$ns" route add default via "${GW[$n]}"
  # wire-like segments (no TSO/GSO super-packets) and real checksums
  in_ "$h" ethtool -K eth0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip netns exec "$CORE" ethtool -K "ev-$h" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip netns exec "$CORE" tc qdisc add dev "ev-$h" clsact
  ip netns exec "$CORE" tc filter add dev "ev-$h" ingress u32 match u32 0 0 \
    action mirred egress mirror dev span0
done

mkdir -p "$WORK/data"
python3 "$HERE/mkdata.py" "$WORK/data/ct.dcm"

# ---------------------------------------------------------------- one scenario
run() { # scenario
  local s="$1" d="$WORK/$s"
  mkdir -p "$d/exfil-store" "$d/archive-store"
  log "$s"
  bgrun "$d/tcpdump.log" core tcpdump -i span1 -U -s 0 -w "$d/capture.pcap" tcp
  local tcpdump_pid=$LASTPID
  bgrun "$d/pacs.err" pacs python3 "$HERE/pacs_scp.py" --port 11112 --aet PACS \
    --image "$WORK/data/ct.dcm" --dest "EXFIL=$EXFIL:11112" --log "$d/pacs.log"
  local pacs_pid=$LASTPID
  bgrun "$d/exfil.log" exfil "$STORESCP" -d -aet EXFIL -od "$d/exfil-store" 11112
  local exfil_pid=$LASTPID
  local archive_pid=""
  if [ "$s" = reserved-bits ] || [ "$s" = reserved-header ]; then
    bgrun "$d/archive.log" archive "$STORESCP" -d -aet ARCHIVE -od "$d/archive-store" 104
    archive_pid=$LASTPID
    wait_listen archive 104
  fi
  wait_listen pacs 11112
  wait_listen exfil 11112
  sleep 1  # tcpdump ready
  local image="$WORK/data/ct.dcm"
  case "$s" in
    reserved-bits)
      in_ ext python3 "$HERE/attacker.py" reserved-bits --host "$PACS" --port 11112 \
        --image "$image" >"$d/attacker.log" 2>&1 || die "attacker failed:\n$(cat "$d/attacker.log")"
      in_ ext python3 "$HERE/attacker.py" reserved-bits --host "$ARCHIVE" --port 104 \
        --called ARCHIVE --commands echo,store --image "$image" >>"$d/attacker.log" 2>&1 \
        || die "attacker failed:\n$(cat "$d/attacker.log")" ;;
    reserved-header)
      # byte 1 of every PDU header set; to DCMTK also protocol version 0x0003 (bit 0 set:
      # DCMTK accepts it; pynetdicom rejects any version but 1, so the PACS gets 1)
      in_ ext python3 "$HERE/attacker.py" reserved-header --host "$PACS" --port 11112 \
        --reserved 0xa5 --image "$image" >"$d/attacker.log" 2>&1 \
        || die "attacker failed:\n$(cat "$d/attacker.log")"
      in_ ext python3 "$HERE/attacker.py" reserved-header --host "$ARCHIVE" --port 104 \
        --called ARCHIVE --commands echo,store --reserved 0xff --version 0x0003 \
        --image "$image" >>"$d/attacker.log" 2>&1 \
        || die "attacker failed:\n$(cat "$d/attacker.log")" ;;
    split-header)
      in_ ext python3 "$HERE/attacker.py" split --host "$PACS" --port 11112 \
        --image "$image" >"$d/attacker.log" 2>&1 || die "attacker failed:\n$(cat "$d/attacker.log")" ;;
    overlap-held|overlap-retransmit)
      in_ ext python3 "$HERE/attacker.py" overlap --mode "${s#overlap-}" --host "$PACS" \
        --port 11112 --iface eth0 --image "$image" >"$d/attacker.log" 2>&1 \
        || die "attacker failed:\n$(cat "$d/attacker.log")" ;;
  esac
  sleep 1
  stop "$pacs_pid"; stop "$exfil_pid"
  [ -n "$archive_pid" ] && stop "$archive_pid"
  sleep 0.5
  stop "$tcpdump_pid"
  cat "$d/attacker.log"
  grep -v '^READY$' "$d/pacs.log" | sed 's/^/   pacs: /'
  python3 "$HERE/check_capture.py" "$s" "$d/capture.pcap" 198.51.100. | tee "$d/check.log" \
    || die "$s: the capture does not hold the evasion:\n$(cat "$d/check.log")"
  python3 "$HERE/expect.py" "$s" "$d" "$d/out" || die "$s: the victims' logs do not match the scenario"
}

for s in "${SCEN[@]}"; do run "$s"; done

# ---------------------------------------------------------------- keep the results
for s in "${SCEN[@]}"; do
  dest="$HERE/$s"
  mkdir -p "$dest"
  cp "$WORK/$s/capture.pcap" "$dest/capture.pcap"
  cp "$WORK/$s/out/expected_records.json" "$WORK/$s/out/expected_alerts.json" "$dest/"
  cp "$HERE/config.yaml" "$dest/config.yaml"
  { echo "# made by generate.sh: pynetdicom $PYND_VER, DCMTK storescp $DCMTK_VER"
    echo "# attacker.py's own log:"; sed 's/^/#   /' "$WORK/$s/attacker.log"
    echo "# the victim PACS's log (pacs_scp.py):"; grep -v '^READY$' "$WORK/$s/pacs.log" | sed 's/^/#   /'
    if [ -f "$WORK/$s/archive.log" ]; then
      echo "# the DCMTK archive's log (storescp -d), what it acted on:"
      grep -E 'Association (Received|Acknowledged|Release)|Received (Echo|Store) Request|Protocol|Unsupported' \
        "$WORK/$s/archive.log" | sed 's/^/#   /'
    fi
    echo "# check_capture.py, on the wire:"; sed 's/^/#   /' "$WORK/$s/check.log"
  } >"$dest/provenance.txt"
  log "$s: $(stat -c %s "$dest/capture.pcap") bytes -> $dest"
done
