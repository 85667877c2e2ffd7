#!/usr/bin/env bash
# Regenerate the zone-policy captures under pcaps/zones/ with REAL DICOM peers.
#
#   sudo PATH=/tmp/v/bin:$PATH bash pcaps/zones/generate.sh              # every scenario
#   sudo PATH=/tmp/v/bin:$PATH bash pcaps/zones/generate.sh perimeter    # only these scenarios
#
# Needs root (network namespaces, tc, tcpdump), DCMTK (called by full path: pynetdicom puts
# apps of the same names on PATH), python3 with pydicom + pynetdicom on PATH, tcpdump,
# tshark, iproute2, ethtool; nmap (with dicom-ping.nse) for the scanner probe.
#
# A small hospital, built from network namespaces that stand for zones. Every zone is its
# own subnet, routed by one "core" namespace; the core's ports are mirrored (tc mirred, the
# ingress of every host-facing port) to a span port, where one tcpdump records each packet
# exactly once, the way a SPAN/TAP on a core switch would:
#
#   dszone-ext       198.51.100.10  2001:db8:100::10   internet host / attacker ("internet")
#   dszone-guest     10.60.0.41     fd00:60::41        guest Wi-Fi client     (trust external)
#   dszone-modality  10.20.0.11     fd00:20::11        CT modality            (radiology VLAN)
#   dszone-radws     10.20.0.12     fd00:20::12        radiology workstation  (radiology VLAN)
#   dszone-pacs      10.30.0.5      fd00:30::5         PACS (dcmqrscp)        (DMZ, radiology)
#   dszone-ward      10.40.0.21     fd00:40::21        clinical ward viewer   (ward)
#   dszone-office    10.50.0.31     fd00:50::31        office PC / shadow SCP (office)
#   dszone-core      x.x.x.1 on every subnet: bridges br-<zone>, IPv4/IPv6 forwarding,
#                    span0 -> span1 (tcpdump -i span1)
#
# Nothing leaves these namespaces; the "public" addresses exist only inside them.
# All DICOM objects are generated here and hold SYNTHETIC patient data only.
#
# Per scenario the script checks the peers' logs (what they did, their exit codes), decodes
# the capture with tshark (counts of A-ASSOCIATE-RQ/-AC/-RJ), and writes capture.pcap,
# config.yaml, README.md and expected_alerts.json into pcaps/zones/<scenario>/.
# expected_alerts.json is written from the scenario's specification and the peers' logs
# (e.g. the number of rejections the brute-forcer got), never from the sensor's output.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ALL=(normal-workflow perimeter shadow-pacs brute-force credentials-move-query sweep bulk-outbound)
if [ "$#" -gt 0 ]; then SCEN=("$@"); else SCEN=("${ALL[@]}"); fi
for s in "${SCEN[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; exit 2 ;; esac
done

die() { printf 'zones/generate.sh: ERROR: %b\n' "$*" >&2; exit 1; }
log() { echo "== $*"; }

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, tc, tcpdump)"
for cmd in python3 tshark tcpdump ip tc ss ethtool; do
  command -v "$cmd" >/dev/null 2>&1 || die "missing command: $cmd"
done
python3 -c 'import pydicom, pynetdicom' 2>/dev/null \
  || die "python3 ($(command -v python3)) lacks pydicom/pynetdicom (run with PATH=/tmp/v/bin:\$PATH)"
# DCMTK by full path: pynetdicom installs apps named echoscu, storescu, ... into the venv.
for t in echoscu storescu storescp findscu movescu dcmqrscp dcmqridx; do
  { "/usr/bin/$t" --version 2>&1 || true; } | grep -q '^\$dcmtk: '"$t" || die "DCMTK's /usr/bin/$t not found"
done
ECHOSCU=/usr/bin/echoscu; STORESCU=/usr/bin/storescu; STORESCP=/usr/bin/storescp
FINDSCU=/usr/bin/findscu; MOVESCU=/usr/bin/movescu; DCMQRSCP=/usr/bin/dcmqrscp; DCMQRIDX=/usr/bin/dcmqridx
NMAP=""
if command -v nmap >/dev/null 2>&1 && [ -f /usr/share/nmap/scripts/dicom-ping.nse ]; then
  NMAP="$(command -v nmap)"
fi

# ---------------------------------------------------------------- address plan
P=dszone
CORE=$P-core
HOSTS=(ext guest modality radws pacs ward office)
declare -A ZONE=([ext]=internet [guest]=guest [modality]=radiology [radws]=radiology
                 [pacs]=pacs [ward]=ward [office]=office)
declare -A V4=([ext]=198.51.100.10 [guest]=10.60.0.41 [modality]=10.20.0.11 [radws]=10.20.0.12
               [pacs]=10.30.0.5 [ward]=10.40.0.21 [office]=10.50.0.31)
declare -A V6=([ext]=2001:db8:100::10 [guest]=fd00:60::41 [modality]=fd00:20::11
               [radws]=fd00:20::12 [pacs]=fd00:30::5 [ward]=fd00:40::21 [office]=fd00:50::31)
# per zone: gateway addresses in the core namespace
declare -A GW4=([internet]=198.51.100.1 [guest]=10.60.0.1 [radiology]=10.20.0.1 [pacs]=10.30.0.1
                [ward]=10.40.0.1 [office]=10.50.0.1)
declare -A GW6=([internet]=2001:db8:100::1 [guest]=fd00:60::1 [radiology]=fd00:20::1
                [pacs]=fd00:30::1 [ward]=fd00:40::1 [office]=fd00:50::1)
EXT=${V4[ext]}; GUEST=${V4[guest]}; MOD=${V4[modality]}; RADWS=${V4[radws]}
PACS=${V4[pacs]}; WARD=${V4[ward]}; OFFICE=${V4[office]}
PACS6=${V6[pacs]}; WARD6=${V6[ward]}
CANARY=CANARY-ZONES-PASS

WORK="$(mktemp -d /tmp/dszone.XXXXXX)"
# shellcheck source=../netns.sh
. "$HERE/../netns.sh"   # PIDS, cleanup trap, in_, bgrun, stop, wait_listen
must_grep() { # pattern file [count]
  local n
  n="$(grep -ac -- "$1" "$2" || true)"
  if [ -n "${3:-}" ]; then
    [ "$n" -eq "$3" ] || die "expected $3 x '$1' in $(basename "$2"), found $n:\n$(cat "$2")"
  else
    [ "$n" -ge 1 ] || die "expected '$1' in $(basename "$2"):\n$(cat "$2")"
  fi
}

# ---------------------------------------------------------------- topology
log "building the hospital: namespaces, bridges, routes, span port"
for h in "${HOSTS[@]}" core; do ip netns del "$P-$h" 2>/dev/null || true; done
ip netns add "$CORE"
ip -n "$CORE" link set lo up
ip netns exec "$CORE" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
  net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
# the span port: mirrored packets leave span0 and are captured as they arrive on span1
ip -n "$CORE" link add span0 type veth peer name span1
ip netns exec "$CORE" sysctl -qw net.ipv6.conf.span0.disable_ipv6=1 net.ipv6.conf.span1.disable_ipv6=1
ip -n "$CORE" link set span0 up
ip -n "$CORE" link set span1 up
for z in "${!GW4[@]}"; do
  ip -n "$CORE" link add "br-$z" type bridge
  ip -n "$CORE" addr add "${GW4[$z]}/24" dev "br-$z"
  ip -n "$CORE" addr add "${GW6[$z]}/64" dev "br-$z" nodad
  ip -n "$CORE" link set "br-$z" up
done
for h in "${HOSTS[@]}"; do
  ns="$P-$h"; z="${ZONE[$h]}"
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv4.ip_local_port_range="50000 60999"
  ip -n "$ns" link set lo up
  ip link add "zh-$h" netns "$CORE" type veth peer name eth0 netns "$ns"
  ip -n "$ns" addr add "${V4[$h]}/24" dev eth0
  ip -n "$ns" addr add "${V6[$h]}/64" dev eth0 nodad
  ip -n "$ns" link set eth0 mtu 1500 up
  ip -n "$CORE" link set "zh-$h" master "br-$z" mtu 1500 up
  ip -n "$ns" route add default via "${GW4[$z]}"
  ip -n "$ns" -6 route add default via "${GW6[$z]}"
  # wire-like segments and real checksums
  ip netns exec "$ns" ethtool -K eth0 tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip netns exec "$CORE" ethtool -K "zh-$h" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  # SPAN: every packet a host sends is mirrored once, as it enters the core
  ip netns exec "$CORE" tc qdisc add dev "zh-$h" clsact
  ip netns exec "$CORE" tc filter add dev "zh-$h" ingress u32 match u32 0 0 \
    action mirred egress mirror dev span0
done
for z in "${!GW4[@]}"; do
  ip netns exec "$CORE" ethtool -K "br-$z" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
done
# ---------------------------------------------------------------- helper programs
mkdir -p "$WORK/py" "$WORK/data" "$WORK/out" "$WORK/logs"

cat >"$WORK/py/mkdata.py" <<'PYEOF'
"""Write deterministic SYNTHETIC DICOM objects (no real patient data)."""
import sys
import uuid
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SEED = "dicom-sensor synthetic zone capture data v1"


def uid(*parts):
    return "2.25.%d" % uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, (SEED, *parts)))).int


def image(path, sop_class, modality, name, pid, study, number, rows=64, cols=64):
    sop_uid = uid(study, number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = uid(study)
    ds.SeriesInstanceUID = uid(study, "series")
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "SYNACC%s" % pid[-2:]
    ds.StudyDescription = "SYNTHETIC TEST STUDY"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(((i * 7 + number) & 0xFF) if i % 2 == 0 else (i >> 9) & 0x0F
                         for i in range(2 * rows * cols))
    ds.save_as(path, enforce_file_format=True)
    return ds


out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
objs = [
    ("ct_delta_1.dcm", CT, "CT", "SYNTHETIC^DELTA", "SYN0004", "study-delta", 1),
    ("ct_delta_2.dcm", CT, "CT", "SYNTHETIC^DELTA", "SYN0004", "study-delta", 2),
    ("mr_echo_1.dcm", MR, "MR", "SYNTHETIC^ECHO", "SYN0005", "study-echo", 1),
    ("mr_echo_2.dcm", MR, "MR", "SYNTHETIC^ECHO", "SYN0005", "study-echo", 2),
]
for f, cls, mod, name, pid, study, num in objs:
    ds = image(out / f, cls, mod, name, pid, study, num)
    print(f, (out / f).stat().st_size, ds.SOPInstanceUID, ds.StudyInstanceUID)
# bulk-outbound: five 600 x 512 CT slices (614,400 pixel bytes each)
for num in range(1, 6):
    f = "ct_foxtrot_%d.dcm" % num
    ds = image(out / f, CT, "CT", "SYNTHETIC^FOXTROT", "SYN0006", "study-foxtrot", num, 600, 512)
    print(f, (out / f).stat().st_size, ds.SOPInstanceUID, ds.StudyInstanceUID)
PYEOF

cat >"$WORK/py/pyscp.py" <<'PYEOF'
"""pynetdicom Verification SCP (the PACS's IPv6 gateway); logs user identities, never secrets."""
import argparse
import logging

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--aet", required=True)
a = p.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
log = logging.getLogger("pyscp")
log.setLevel(logging.INFO)


def on_user_id(event):
    log.info("user identity type %s username %r passcode_present %s",
             event.user_id_type, event.primary_field, bool(event.secondary_field))
    return True, None


def on_echo(event):
    log.info("C-ECHO-RQ from %s", event.assoc.requestor.ae_title)
    return 0x0000


ae = AE(ae_title=a.aet)
ae.add_supported_context(Verification)
log.info("listening on [%s]:%d as %s", a.host, a.port, a.aet)
ae.start_server((a.host, a.port), block=True,
                evt_handlers=[(evt.EVT_USER_ID, on_user_id), (evt.EVT_C_ECHO, on_echo)])
PYEOF

cat >"$WORK/py/pyscu.py" <<'PYEOF'
"""pynetdicom SCU: user identity type 2 (username + passcode) then C-ECHO, release."""
import argparse
import sys

from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import Verification

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--aet", required=True)
p.add_argument("--aec", required=True)
p.add_argument("--username", required=True)
p.add_argument("--passcode", required=True)
a = p.parse_args()

ae = AE(ae_title=a.aet)
ae.add_requested_context(Verification)
u = UserIdentityNegotiation()
u.user_identity_type = 2
u.primary_field = a.username.encode()
u.secondary_field = a.passcode.encode()
u.positive_response_requested = False
assoc = ae.associate(a.host, a.port, ae_title=a.aec, ext_neg=[u])
if not assoc.is_established:
    print("ASSOCIATION not established")
    sys.exit(3)
st = assoc.send_c_echo()
print("C-ECHO status 0x%04X" % st.Status)
assoc.release()
print("ASSOCIATION released=%s" % assoc.is_released)
sys.exit(0 if st.Status == 0 else 4)
PYEOF

cat >"$WORK/py/pyports.py" <<'PYEOF'
"""pynetdicom Verification SCP listening on several ports at once (a node's DICOM services)."""
import argparse
import logging
import signal

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--aet", required=True)
p.add_argument("ports", type=int, nargs="+")
a = p.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
log = logging.getLogger("pyports")
log.setLevel(logging.INFO)


def on_echo(event):
    log.info("C-ECHO-RQ from %s on port %d", event.assoc.requestor.ae_title,
             event.assoc.acceptor.port)
    return 0x0000


ae = AE(ae_title=a.aet)
ae.require_called_aet = False  # answers whatever called AE title it is asked for
ae.add_supported_context(Verification)
for port in a.ports:
    ae.start_server((a.host, port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    log.info("listening on %s:%d as %s", a.host, port, a.aet)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
PYEOF

# ---------------------------------------------------------------- versions (provenance)
DCMTK_VER="$( ("$STORESCP" --version 2>/dev/null || true) | head -1 | sed 's/^\$dcmtk: //; s/ \$$//')"
PYND_VER="$(python3 -c 'import pynetdicom; print(pynetdicom.__version__)')"
PYDI_VER="$(python3 -c 'import pydicom; print(pydicom.__version__)')"
TSHARK_VER="$( (tshark --version 2>/dev/null || true) | head -1)"
TCPDUMP_VER="$( (tcpdump --version 2>&1 || true) | head -1)"
NMAP_VER="not installed"
[ -n "$NMAP" ] && NMAP_VER="$("$NMAP" --version | head -1)"
KERNEL_VER="$(uname -sr)"

log "making synthetic DICOM objects"
python3 "$WORK/py/mkdata.py" "$WORK/data" >"$WORK/logs/mkdata.log"
cat "$WORK/logs/mkdata.log"
D="$WORK/data"
STUDY_DELTA="$(awk '$1=="ct_delta_1.dcm"{print $4}' "$WORK/logs/mkdata.log")"
STUDY_ECHO="$(awk '$1=="mr_echo_1.dcm"{print $4}' "$WORK/logs/mkdata.log")"

# ---------------------------------------------------------------- the zone config
# One config for the whole hospital (every scenario gets a copy): deploy/zones.example.yaml
# explains each field; this one only fits the address plan above.
cat >"$WORK/config.yaml" <<'EOF'
# Zone config for the pcaps/zones address plan (written by pcaps/zones/generate.sh).
# The same file is copied into every scenario folder.
zones:
  radiology:          # modalities and radiology workstations
    cidrs: [10.20.0.0/24, "fd00:20::/64"]
    radiology: true
    trust: internal
  pacs:               # PACS / DICOM DMZ
    cidrs: [10.30.0.0/24, "fd00:30::/64"]
    radiology: true
    trust: dmz
  ward:               # clinical wards: image viewers
    cidrs: [10.40.0.0/24, "fd00:40::/64"]
    radiology: false
    trust: internal
  office:             # administration PCs
    cidrs: [10.50.0.0/24, "fd00:50::/64"]
    radiology: false
    trust: internal
  guest:              # guest Wi-Fi: treated like the internet
    cidrs: [10.60.0.0/24, "fd00:60::/64"]
    radiology: false
    trust: external
  teleradiology:      # VPN pool of the teleradiology readers (no host in these captures)
    cidrs: [10.70.0.0/24]
    radiology: true
    trust: dmz
default_zone:         # everything else, e.g. 198.51.100.10
  name: internet
  trust: external
rules:
  radiology-boundary:
    allow:
      # ward viewers query and retrieve from the PACS ...
      - {source_zone: ward, destination_zone: pacs}
      # ... and the PACS sends the retrieved images back to them (C-MOVE sub-associations)
      - {source_zone: pacs, destination_zone: ward}
alerts:
  fold_window: 300
EOF

# ---------------------------------------------------------------- per-scenario plumbing
newscen() {
  S="$1"; O="$WORK/out/$S"; L="$WORK/logs/$S"
  mkdir -p "$O" "$L"
  log "scenario $S"
}
cap_start() {
  local i
  ip netns exec "$CORE" tcpdump -i span1 -n -s 0 -B 65536 -U --immediate-mode -Z root -w "$O/capture.pcap" tcp \
    >"$L/tcpdump.log" 2>&1 &
  CAPPID=$!
  PIDS+=("$CAPPID")
  for i in $(seq 1 100); do
    grep -q "listening on" "$L/tcpdump.log" 2>/dev/null && return 0
    sleep 0.1
  done
  die "tcpdump did not start: $(cat "$L/tcpdump.log")"
}
cap_stop() {
  sleep 1; stop "$CAPPID" INT
  # a capture that lost packets would show gaps no peer made
  grep -q "^0 packets dropped by kernel" "$L/tcpdump.log" \
    || die "tcpdump lost packets: $(cat "$L/tcpdump.log")"
}

# dcmqrscp as the PACS (AE title PACS, port 104): a fresh database per scenario, holding study
# SYNTHETIC^DELTA; it answers only to the called AE title PACS (others: A-ASSOCIATE-RJ
# reason 7) and knows two move destinations, RADWS and WARDVIEW.
start_pacs() {
  local db="$L/qrdb/PACS"
  mkdir -p "$db"
  cp "$D/ct_delta_1.dcm" "$D/ct_delta_2.dcm" "$db/"
  "$DCMQRIDX" "$db" "$db/ct_delta_1.dcm" "$db/ct_delta_2.dcm"
  cat >"$L/dcmqrscp.cfg" <<EOF
NetworkTCPPort  = 104
MaxPDUSize      = 16384
MaxAssociations = 32

HostTable BEGIN
radws    = (RADWS, $RADWS, 11113)
wardview = (WARDVIEW, $WARD, 11114)
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
PACS     $db     RW  (200, 64mb)  ANY
AETable END
EOF
  bgrun "$L/dcmqrscp.log" pacs "$DCMQRSCP" -v -dhl -c "$L/dcmqrscp.cfg" 104
  PACSPID=$LASTPID
  wait_listen pacs 104
}

# tshark's count of association PDUs: "RQ AC RJ"
pdu_counts() {
  local f
  local extra=() p
  for p in ${EXTRA_PORTS:-}; do extra+=(-d "tcp.port==$p,dicom"); done
  f="$(tshark -n -r "$O/capture.pcap" -d tcp.port==104,dicom -d tcp.port==11112,dicom \
        -d tcp.port==11113,dicom -d tcp.port==11114,dicom "${extra[@]}" -Y dicom -T fields -e dicom.pdu.type \
        | tr ',' '\n')"
  printf '%s %s %s' "$(grep -c '^0x0*1$' <<<"$f" || true)" "$(grep -c '^0x0*2$' <<<"$f" || true)" \
    "$(grep -c '^0x0*3$' <<<"$f" || true)"
}
check_pdus() { # "RQ AC RJ"
  local got
  got="$(pdu_counts)"
  [ "$got" = "$1" ] || die "scenario $S: tshark decodes RQ/AC/RJ = $got, expected $1"
  echo "tshark: A-ASSOCIATE-RQ/AC/RJ = $got"
}
# expected_alerts.json from "rule src dst action count" lines on stdin
write_expected() {
  python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    if line.strip():
        rule, src, dst, action, count = line.split()
        rows.append({"rule_id": rule, "source_ip": src, "destination_ip": dst,
                     "action": action, "count": int(count)})
json.dump(rows, sys.stdout, indent=2)
print()' >"$O/expected_alerts.json"
}
# README: title, then body from stdin, then environment
write_readme() {
  {
    echo "# zones/$S: $1"
    echo
    cat
    echo
    echo "## Environment"
    echo
    echo "- DCMTK: $DCMTK_VER; pynetdicom $PYND_VER, pydicom $PYDI_VER; nmap: $NMAP_VER"
    echo "- capture: $TCPDUMP_VER, \`tcpdump -i span1 -n -s 0 -B 65536 -U --immediate-mode -w capture.pcap tcp\`"
    echo "  in the core namespace; span1 receives a mirror (tc mirred) of every packet entering"
    echo "  the core from a host, so each packet is in the capture once, with the sending"
    echo "  host's MAC addresses and TTL 64 (before routing)"
    echo "- checked with: $TSHARK_VER; kernel $KERNEL_VER"
    echo "- veths: MTU 1500, TSO/GSO/GRO and checksum offloads off; ephemeral ports 50000-60999"
    echo "- all patient data is SYNTHETIC (generated by generate.sh with pydicom)"
    echo "- topology and address plan: ../README.md; zone config: config.yaml"
  } >"$O/README.md"
}

# ================================================================ scenarios
scen_normal_workflow() {
  newscen normal-workflow
  mkdir -p "$L/radws-in" "$L/ward-in"
  cap_start
  start_pacs
  # the modality sends a new study to the PACS
  in_ modality "$STORESCU" -v -aet CT01 -aec PACS "$PACS" 104 "$D/mr_echo_1.dcm" "$D/mr_echo_2.dcm" \
    >"$L/storescu.log" 2>&1 || die "modality storescu failed: $(cat "$L/storescu.log")"
  # the radiology workstation finds it and retrieves it to itself (2 s later: phases of the
  # day are seconds apart, so a test can set a 1 s learning period and see what comes after)
  sleep 2
  in_ radws "$FINDSCU" -v -S -aet RADWS -aec PACS "$PACS" 104 \
    -k QueryRetrieveLevel=STUDY -k PatientID=SYN0005 -k StudyInstanceUID -k StudyDescription \
    >"$L/findscu-radws.log" 2>&1 || die "radws findscu failed: $(cat "$L/findscu-radws.log")"
  in_ radws "$MOVESCU" -v -dhl -S -aet RADWS -aec PACS -aem RADWS +P 11113 -od "$L/radws-in" "$PACS" 104 \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY_ECHO" \
    >"$L/movescu-radws.log" 2>&1 || die "radws movescu failed: $(cat "$L/movescu-radws.log")"
  # a ward viewer (allow-listed for the radiology boundary) looks at the older study
  sleep 2
  in_ ward "$FINDSCU" -v -S -aet WARDVIEW -aec PACS "$PACS" 104 \
    -k QueryRetrieveLevel=STUDY -k PatientID=SYN0004 -k StudyInstanceUID -k StudyDescription \
    >"$L/findscu-ward.log" 2>&1 || die "ward findscu failed: $(cat "$L/findscu-ward.log")"
  in_ ward "$MOVESCU" -v -dhl -S -aet WARDVIEW -aec PACS -aem WARDVIEW +P 11114 -od "$L/ward-in" "$PACS" 104 \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY_DELTA" \
    >"$L/movescu-ward.log" 2>&1 || die "ward movescu failed: $(cat "$L/movescu-ward.log")"
  cap_stop; stop "$PACSPID"
  must_grep "Received Store Response (Success)" "$L/storescu.log" 2
  must_grep "Received Final Find Response (Success)" "$L/findscu-radws.log" 1
  must_grep "Received Final Find Response (Success)" "$L/findscu-ward.log" 1
  [ "$(ls "$L/radws-in" | wc -l)" -eq 2 ] || die "RADWS did not receive 2 objects: $(cat "$L/movescu-radws.log")"
  [ "$(ls "$L/ward-in" | wc -l)" -eq 2 ] || die "WARDVIEW did not receive 2 objects: $(cat "$L/movescu-ward.log")"
  # 7 associations: store, find, move + sub-association, find, move + sub-association
  check_pdus "7 7 0"
  write_expected </dev/null
  write_readme "a normal radiology day: no alerts" <<EOF
Seven associations, all accepted and released, all DCMTK, in three phases 2 s apart
(1; 2-4; 5-7):

1. modality CT01 ($MOD, radiology) -> PACS ($PACS:104, pacs): C-STORE of two MR images of
   SYNTHETIC^ECHO (SYN0005);
2. workstation RADWS ($RADWS, radiology) -> PACS: study root C-FIND for SYN0005;
3. RADWS -> PACS: C-MOVE of that study to RADWS itself (movescu listens on 11113);
4. the C-MOVE sub-association PACS -> RADWS $RADWS:11113: 2 C-STOREs;
5. ward viewer WARDVIEW ($WARD, ward) -> PACS: C-FIND for SYN0004 (SYNTHETIC^DELTA, in the
   PACS database from the start);
6. WARDVIEW -> PACS: C-MOVE of that study to WARDVIEW (listener on 11114);
7. the sub-association PACS -> WARDVIEW $WARD:11114: 2 C-STOREs.

## Expected alerts: none (expected_alerts.json is \`[]\`)

- radiology <-> pacs: both zones are radiology zones, both inside: no segmentation rule
  applies, nothing crosses the perimeter, the requestors of C-FIND/C-MOVE are in an internal
  zone (query-retrieve-untrusted needs a requestor outside the internal zones);
- ward <-> pacs (associations 5-7) would be \`radiology-boundary\` findings, but config.yaml
  allow-lists both directions: \`{source_zone: ward, destination_zone: pacs}\` and
  \`{source_zone: pacs, destination_zone: ward}\`;
- the C-MOVE destinations RADWS and WARDVIEW are the requestors' own calling AE titles,
  and the sensor decides each move at its sub-association's A-ASSOCIATE-AC (associations 4
  and 7, from the PACS, calling PACS): answered from the internal zones radiology and
  ward, so known (\`dicom_move_decisions_total{reason="answered-internal"}\` 2);
- new-node / new-ae-title / new-port stay quiet: everything happens within the default
  learning period (24 h from the first association the sensor sees).

## Commands

    # pacs ($PACS):  dcmqrscp -v -dhl -c dcmqrscp.cfg 104   (AE PACS, HostTable RADWS, WARDVIEW)
    # modality:      storescu -aet CT01 -aec PACS $PACS 104 mr_echo_1.dcm mr_echo_2.dcm
    # radws:         findscu -S -aet RADWS -aec PACS $PACS 104 -k QueryRetrieveLevel=STUDY -k PatientID=SYN0005 ...
    #                movescu -S -aet RADWS -aec PACS -aem RADWS +P 11113 $PACS 104 -k StudyInstanceUID=<SYN0005 study>
    # ward:          findscu -S -aet WARDVIEW -aec PACS $PACS 104 -k PatientID=SYN0004 ...
    #                movescu -S -aet WARDVIEW -aec PACS -aem WARDVIEW +P 11114 $PACS 104 -k StudyInstanceUID=<SYN0004 study>
EOF
}

scen_perimeter() {
  newscen perimeter
  mkdir -p "$L/ext-in"
  cap_start
  start_pacs
  bgrun "$L/storescp-ext.log" ext "$STORESCP" -v -dhl -aet CLOUDARCHIVE -od "$L/ext-in" 104; local extscp=$LASTPID
  wait_listen ext 104
  # internet host: verification and a store, both accepted by the PACS
  in_ ext "$ECHOSCU" -v -aet EXTSCU -aec PACS "$PACS" 104 >"$L/echoscu-ok.log" 2>&1 \
    || die "ext echoscu failed: $(cat "$L/echoscu-ok.log")"
  in_ ext "$STORESCU" -v -aet EXTSCU -aec PACS "$PACS" 104 "$D/mr_echo_1.dcm" >"$L/storescu-ext.log" 2>&1 \
    || die "ext storescu failed: $(cat "$L/storescu-ext.log")"
  # ... and once with a wrong called AE title: rejected
  if in_ ext "$ECHOSCU" -v -aet EXTSCU -aec PACS-TEST "$PACS" 104 >"$L/echoscu-rej.log" 2>&1; then
    die "echoscu with a wrong called AE title was accepted"
  fi
  # the PACS pushes a study out to an archive on the internet
  in_ pacs "$STORESCU" -v -aet PACS -aec CLOUDARCHIVE "$EXT" 104 "$D/ct_delta_1.dcm" "$D/ct_delta_2.dcm" \
    >"$L/storescu-pacs.log" 2>&1 || die "pacs storescu failed: $(cat "$L/storescu-pacs.log")"
  cap_stop; stop "$PACSPID"; stop "$extscp"
  must_grep "Received Echo Response (Success)" "$L/echoscu-ok.log" 1
  must_grep "Received Store Response (Success)" "$L/storescu-ext.log" 1
  must_grep "Called AE Title Not Recognized" "$L/echoscu-rej.log" 1
  must_grep "Received Store Response (Success)" "$L/storescu-pacs.log" 2
  [ "$(ls "$L/ext-in" | wc -l)" -eq 2 ] || die "external storescp did not store 2 objects"
  check_pdus "4 3 1"
  write_expected <<EOF
perimeter-inbound $EXT $PACS detected 1
perimeter-inbound-probe $EXT $PACS detected 1
perimeter-outbound $PACS $EXT detected 1
perimeter-inbound $EXT $PACS folded 1
EOF
  write_readme "DICOM across the perimeter, both ways" <<EOF
Four associations between the internet host $EXT (zone \`internet\`, the default zone,
trust external) and the PACS $PACS (zone \`pacs\`, trust dmz), all DCMTK:

1. EXTSCU -> PACS:104 C-ECHO, accepted, released;
2. EXTSCU -> PACS:104 C-STORE of one MR image (SYNTHETIC^ECHO), accepted, released;
3. EXTSCU -> PACS-TEST at $PACS:104: A-ASSOCIATE-RJ (1, 1, 7: called AE title not recognized);
4. the PACS (calling PACS) -> CLOUDARCHIVE, a DCMTK storescp on the internet host $EXT:104:
   C-STORE of two CT images (SYNTHETIC^DELTA), accepted, released.

## Expected alerts (expected_alerts.json)

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
| perimeter-inbound | $EXT -> $PACS | detected | 1 | association 1: an external requestor accepted by a node inside (on the A-ASSOCIATE-AC) |
| perimeter-inbound-probe | $EXT -> $PACS | detected | 1 | association 3: an inbound attempt that was rejected |
| perimeter-outbound | $PACS -> $EXT | detected | 1 | association 4: a node inside asks an external node for an association |
| perimeter-inbound | $EXT -> $PACS | folded | 1 | association 2 repeats (rule, source, destination) of association 1 within the fold window (300 s): one folded event, dicom.alert.count 1 = the repeat (the first finding is the detected event) |

Not expected: \`radiology-boundary\` (it ignores external peers: the perimeter rules cover
them), \`query-retrieve-untrusted\` (no C-FIND/C-MOVE/C-GET), \`ae-brute-force\` (one
rejection, threshold 5), \`bulk-outbound\` (about 17 KB, threshold 100 MB), \`scanner-probe\`
(AE titles are not ANY-SCP/ECHOSCU).

## Commands

    # pacs ($PACS):  dcmqrscp -v -dhl -c dcmqrscp.cfg 104
    # ext ($EXT):    storescp -v -aet CLOUDARCHIVE 104
    #                echoscu -aet EXTSCU -aec PACS $PACS 104
    #                storescu -aet EXTSCU -aec PACS $PACS 104 mr_echo_1.dcm
    #                echoscu -aet EXTSCU -aec PACS-TEST $PACS 104      # rejected
    # pacs:          storescu -aet PACS -aec CLOUDARCHIVE $EXT 104 ct_delta_1.dcm ct_delta_2.dcm
EOF
}

scen_shadow_pacs() {
  newscen shadow-pacs
  mkdir -p "$L/office-in"
  cap_start
  bgrun "$L/storescp-office.log" office "$STORESCP" -v -dhl -aet OFFICEPACS -od "$L/office-in" 11112
  local scp=$LASTPID
  wait_listen office 11112
  in_ ward "$ECHOSCU" -v -aet WARDVIEW -aec OFFICEPACS "$OFFICE" 11112 >"$L/echoscu.log" 2>&1 \
    || die "ward echoscu failed: $(cat "$L/echoscu.log")"
  in_ ward "$STORESCU" -v -aet WARDVIEW -aec OFFICEPACS "$OFFICE" 11112 "$D/ct_delta_1.dcm" "$D/ct_delta_2.dcm" \
    >"$L/storescu.log" 2>&1 || die "ward storescu failed: $(cat "$L/storescu.log")"
  cap_stop; stop "$scp"
  must_grep "Received Echo Response (Success)" "$L/echoscu.log" 1
  must_grep "Received Store Response (Success)" "$L/storescu.log" 2
  [ "$(ls "$L/office-in" | wc -l)" -eq 2 ] || die "office storescp did not store 2 objects"
  check_pdus "2 2 0"
  write_expected <<EOF
non-radiology-association $WARD $OFFICE detected 1
non-radiology-association $WARD $OFFICE folded 1
EOF
  write_readme "a shadow PACS on an office PC" <<EOF
An office PC ($OFFICE, zone \`office\`, not radiology, internal) runs DCMTK storescp as
OFFICEPACS on port 11112: a DICOM archive nobody registered. The ward viewer ($WARD, zone
\`ward\`, not radiology, internal) uses it:

1. WARDVIEW -> OFFICEPACS C-ECHO, accepted, released;
2. WARDVIEW -> OFFICEPACS C-STORE of two CT images (SYNTHETIC^DELTA), accepted, released.

## Expected alerts (expected_alerts.json)

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
| non-radiology-association | $WARD -> $OFFICE | detected | 1 | association 1: neither side is in a radiology zone and both are inside (a shadow DICOM node) |
| non-radiology-association | $WARD -> $OFFICE | folded | 1 | association 2 repeats it within the fold window: dicom.alert.count 1 (the repeat) |

The ward's allow entries in config.yaml are for ward <-> pacs under \`radiology-boundary\`
only; they do not cover this pair or this rule. The node inventory lists $OFFICE as an SCP
(AE title OFFICEPACS, port 11112): how a hospital finds its shadow archives.

## Commands

    # office ($OFFICE): storescp -v -aet OFFICEPACS 11112
    # ward ($WARD):     echoscu -aet WARDVIEW -aec OFFICEPACS $OFFICE 11112
    #                   storescu -aet WARDVIEW -aec OFFICEPACS $OFFICE 11112 ct_delta_1.dcm ct_delta_2.dcm
EOF
}

scen_brute_force() {
  newscen brute-force
  cap_start
  start_pacs
  local nmap_rej=0 nmap_line="nmap not installed: no scanner probe in this capture"
  if [ -n "$NMAP" ]; then
    # nmap's own DICOM ping from the internet host, against the PACS only
    in_ ext "$NMAP" -Pn -n -p 104 --script dicom-ping "$PACS" >"$L/nmap.log" 2>&1 \
      || die "nmap failed: $(cat "$L/nmap.log")"
    must_grep "Called AET check enabled" "$L/nmap.log" 1
    nmap_rej=1
    nmap_line="\`nmap -Pn -n -p 104 --script dicom-ping $PACS\` said: $(grep -a -E '^(104/tcp|\|)' "$L/nmap.log" | tr -s ' ' | paste -sd ' ')"
    sleep 0.5
  fi
  # guessing the PACS's called AE title: 20 wrong guesses, then the right one
  local guesses=(PACS1 ARCHIVE STORESCP DCM4CHEE ORTHANC CONQUESTSRV1 SERVER PACS_SCP IMPAX SYNAPSE
                 CENTRICITY AGFA QRSCP DICOM STORE MAIN_PACS RADIOLOGY HOSPITAL PACSSRV VNA)
  local g i=0
  for g in "${guesses[@]}"; do
    i=$((i + 1))
    if in_ ext "$ECHOSCU" -v -aec "$g" "$PACS" 104 >"$L/echoscu-$i.log" 2>&1; then
      die "guess $g was accepted"
    fi
    must_grep "Called AE Title Not Recognized" "$L/echoscu-$i.log" 1
  done
  in_ ext "$ECHOSCU" -v -aec PACS "$PACS" 104 >"$L/echoscu-hit.log" 2>&1 \
    || die "the right guess was not accepted: $(cat "$L/echoscu-hit.log")"
  cap_stop; stop "$PACSPID"
  must_grep "Received Echo Response (Success)" "$L/echoscu-hit.log" 1
  local rejections=$(( ${#guesses[@]} + nmap_rej ))
  local threshold=5
  local findings=$(( rejections - threshold + 1 ))
  check_pdus "$(( rejections + 1 )) 1 $rejections"
  {
    [ "$nmap_rej" -eq 1 ] && echo "scanner-probe $EXT $PACS detected 1"
    echo "perimeter-inbound-probe $EXT $PACS detected 1"
    echo "ae-brute-force $EXT $PACS detected 1"
    echo "perimeter-inbound $EXT $PACS detected 1"
    echo "perimeter-inbound-probe $EXT $PACS folded $(( rejections - 1 ))"
    echo "ae-brute-force $EXT $PACS folded $(( findings - 1 ))"
  } | write_expected
  local nmap_row="" nmap_step=""
  if [ "$nmap_rej" -eq 1 ]; then
    nmap_row="| scanner-probe | $EXT -> $PACS | detected | 1 | the nmap association: called ANY-SCP, calling ECHOSCU, Verification only, implementation 1.2.276.0.7230010.3.0.3.6.2 / OFFIS_DCMTK_362 (nmap impersonates DCMTK 3.6.2): dicom.scanner.nmap_fingerprint true |
"
    nmap_step="1. nmap 7.93 \`dicom-ping\` from $EXT (TCP SYN scan of port 104, then one association
   ECHOSCU -> ANY-SCP): rejected (1, 1, 7); nmap reports \"Called AET check enabled\";"
  fi
  write_readme "called AE title brute force (and nmap's dicom-ping)" <<EOF
The internet host $EXT (default zone \`internet\`, external) goes after the PACS $PACS:104
(dcmqrscp, which answers only to the called AE title PACS):

${nmap_step:-0. ($nmap_line)}
2. DCMTK echoscu (calling AE ECHOSCU, its default) 20 times with guessed called AE titles
   ${guesses[*]}: each rejected with A-ASSOCIATE-RJ (1, 1, 7);
3. echoscu with the called AE title PACS: accepted, C-ECHO, released.

$rejections rejections with reason 7 from one source within a few seconds (window 60 s,
threshold 5, the defaults). nmap: $nmap_line

## Expected alerts (expected_alerts.json)

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
${nmap_row}| perimeter-inbound-probe | $EXT -> $PACS | detected | 1 | the first rejected inbound attempt |
| ae-brute-force | $EXT -> $PACS | detected | 1 | the 5th rejection for an unknown called AE title within 60 s (threshold 5) |
| perimeter-inbound | $EXT -> $PACS | detected | 1 | the final guess, accepted |
| perimeter-inbound-probe | $EXT -> $PACS | folded | $(( rejections - 1 )) | the $rejections rejected inbound attempts after the first (the detected event), folded into one event |
| ae-brute-force | $EXT -> $PACS | folded | $(( findings - 1 )) | rejections $threshold..$rejections each give a brute-force finding: $rejections - $threshold + 1 = $findings, the first detected, the other $(( findings - 1 )) folded into one event |

Not expected: \`association-sweep\` (one host, one port), \`scanner-probe\` for the echoscu
loop (called AE titles are not ANY-SCP), \`new-*\` (learning period).

## Commands

    # pacs ($PACS): dcmqrscp -v -dhl -c dcmqrscp.cfg 104
    # ext ($EXT):   nmap -Pn -n -p 104 --script dicom-ping $PACS
    #               for g in ${guesses[*]}; do echoscu -aec \$g $PACS 104; done
    #               echoscu -aec PACS $PACS 104
EOF
}

scen_credentials_move_query() {
  newscen credentials-move-query
  mkdir -p "$L/exfil-in"
  cap_start
  start_pacs
  bgrun "$L/pyscp.log" pacs python3 "$WORK/py/pyscp.py" --host "$PACS6" --port 11112 --aet PACSGW6
  local gw=$LASTPID
  wait_listen pacs 11112
  # ward: user identity type 2 with a passcode, in clear, over IPv6
  in_ ward python3 "$WORK/py/pyscu.py" --host "$PACS6" --port 11112 --aet WARDVIEW --aec PACSGW6 \
    --username synth_ward_user --passcode "$CANARY" >"$L/pyscu.log" 2>&1 \
    || die "pynetdicom SCU failed: $(cat "$L/pyscu.log")"
  # ward: C-MOVE of a study to an AE title nobody knows
  if in_ ward "$MOVESCU" -v -dhl -S -aet WARDVIEW -aec PACS -aem EXFIL "$PACS" 104 \
      -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY_DELTA" >"$L/movescu-exfil.log" 2>&1; then
    echo "(movescu exit 0)" >>"$L/movescu-exfil.log"
  fi
  # guest Wi-Fi: a C-FIND against the PACS
  in_ guest "$FINDSCU" -v -S -aet GUESTFIND -aec PACS "$PACS" 104 \
    -k QueryRetrieveLevel=STUDY -k PatientName='SYNTHETIC*' -k PatientID -k StudyInstanceUID \
    >"$L/findscu-guest.log" 2>&1 || die "guest findscu failed: $(cat "$L/findscu-guest.log")"
  cap_stop; stop "$PACSPID"; stop "$gw"
  must_grep "C-ECHO status 0x0000" "$L/pyscu.log" 1
  must_grep "user identity type 2 username b'synth_ward_user' passcode_present True" "$L/pyscp.log" 1
  must_grep "Received Final Move Response (Refused: MoveDestinationUnknown)" "$L/movescu-exfil.log"
  must_grep "Received Final Find Response (Success)" "$L/findscu-guest.log" 1
  grep -aq "$CANARY" "$O/capture.pcap" || die "the passcode canary is not in the capture"
  check_pdus "3 3 0"
  write_expected <<EOF
cleartext-credentials $WARD6 $PACS6 detected 1
move-unknown-destination $WARD $PACS detected 1
perimeter-inbound $GUEST $PACS detected 1
query-retrieve-untrusted $GUEST $PACS detected 1
EOF
  write_readme "cleartext credentials, C-MOVE to an unknown AE, query from guest Wi-Fi" <<EOF
Three associations against the PACS, all accepted and released:

1. over **IPv6**: the ward viewer [$WARD6] (zone \`ward\`) -> PACSGW6, a pynetdicom
   Verification SCP on the PACS host [$PACS6]:11112 (zone \`pacs\`). The A-ASSOCIATE-RQ
   carries a user identity sub-item type 2: username \`synth_ward_user\`, passcode
   \`$CANARY\` (a canary: it is in capture.pcap and must appear in no output of the sensor);
   C-ECHO, release;
2. WARDVIEW ($WARD) -> PACS ($PACS:104): study root C-MOVE of study SYNTHETIC^DELTA to the
   move destination **EXFIL**, an AE title no node uses; dcmqrscp does not know it either
   and answers C-MOVE-RSP 0xA801 (refused: move destination unknown), but the request is
   on the wire (the sensor decides the move at that final response, 44 ms after the
   request: no sub-association was answered);
3. GUESTFIND from the guest Wi-Fi ($GUEST, zone \`guest\`, trust external) -> PACS:104:
   study root C-FIND for PatientName SYNTHETIC*, one match, success.

## Expected alerts (expected_alerts.json)

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
| cleartext-credentials | $WARD6 -> $PACS6 | detected | 1 | association 1: a passcode in a user identity, no TLS |
| move-unknown-destination | $WARD -> $PACS | detected | 1 | association 2: EXFIL is neither the requestor's AE title nor any AE title in the inventory or baseline, and no sub-association answered; decided at the final C-MOVE-RSP 0xA801: \`dicom.move.reason\` = \`refused\`, severity medium (nothing was moved) |
| perimeter-inbound | $GUEST -> $PACS | detected | 1 | association 3: the guest zone has trust external, and the PACS accepted it |
| query-retrieve-untrusted | $GUEST -> $PACS | detected | 1 | association 3: C-FIND from a requestor outside the internal zones |

Not expected: \`radiology-boundary\` for ward -> pacs (allow-listed in config.yaml, for both
address families: the zones have IPv4 and IPv6 CIDRs), \`radiology-boundary\` for
guest -> pacs (external peers are the perimeter rules' business),
\`query-retrieve-untrusted\` for the ward's C-MOVE (the ward is internal).

## Commands

    # pacs:  dcmqrscp -v -dhl -c dcmqrscp.cfg 104      (HostTable: RADWS, WARDVIEW; no EXFIL)
    #        python3 pyscp.py --host $PACS6 --port 11112 --aet PACSGW6
    # ward:  python3 pyscu.py --host $PACS6 --port 11112 --aet WARDVIEW --aec PACSGW6 \\
    #            --username synth_ward_user --passcode $CANARY
    #        movescu -S -aet WARDVIEW -aec PACS -aem EXFIL $PACS 104 -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=<SYN0004 study>
    # guest: findscu -S -aet GUESTFIND -aec PACS $PACS 104 -k QueryRetrieveLevel=STUDY -k PatientName=SYNTHETIC* ...

pyscp.py and pyscu.py are written by generate.sh (heredocs).
EOF
}

scen_sweep() {
  newscen sweep
  # two radiology nodes, each answering DICOM on six ports (pynetdicom, any called AE title)
  local ports=(104 11112 4242 1104 5104 8104)
  bgrun "$L/pyports-modality.log" modality python3 "$WORK/py/pyports.py" --host "$MOD" --aet CT01 "${ports[@]}"
  local scp1=$LASTPID
  bgrun "$L/pyports-pacs.log" pacs python3 "$WORK/py/pyports.py" --host "$PACS" --aet PACS "${ports[@]}"
  local scp2=$LASTPID
  local p h
  for p in "${ports[@]}"; do wait_listen modality "$p"; wait_listen pacs "$p"; done
  cap_start
  # the radiology workstation, compromised, walks host:port pairs with DCMTK echoscu
  local order=() i=0
  for p in "${ports[@]}"; do
    for h in "$MOD" "$PACS"; do
      i=$((i + 1))
      in_ radws "$ECHOSCU" -v -aet RADWS -aec ANY-SCP "$h" "$p" >"$L/echoscu-$i.log" 2>&1 \
        || die "echoscu to $h:$p failed: $(cat "$L/echoscu-$i.log")"
      must_grep "Received Echo Response (Success)" "$L/echoscu-$i.log" 1
      order+=("$h:$p")
    done
  done
  cap_stop; stop "$scp1"; stop "$scp2"
  must_grep "C-ECHO-RQ from RADWS" "$L/pyports-modality.log" "${#ports[@]}"
  must_grep "C-ECHO-RQ from RADWS" "$L/pyports-pacs.log" "${#ports[@]}"
  local n=${#order[@]} threshold=10
  EXTRA_PORTS="4242 1104 5104 8104" check_pdus "$n $n 0"
  # association-sweep fires on every A-ASSOCIATE-RQ from the one whose distinct host:port
  # pair is the 10th (threshold 10, window 300 s) on; folded per source.
  local findings=$(( n - threshold + 1 ))
  local first="${order[$((threshold - 1))]}"
  {
    echo "association-sweep $RADWS ${first%:*} detected 1"
    echo "association-sweep $RADWS ${first%:*} folded $(( findings - 1 ))"
  } | write_expected
  write_readme "an association sweep across hosts and ports" <<EOF
The radiology workstation RADWS ($RADWS, zone \`radiology\`), taken over, walks the DICOM
services of its network with DCMTK echoscu (calling RADWS, called ANY-SCP): two radiology
nodes, the CT modality $MOD and the PACS $PACS, each run a pynetdicom Verification SCP
(pyports.py, written by generate.sh) answering on ports ${ports[*]}. echoscu asks them in
this order, one association each, every one accepted, C-ECHO, released:

$(for i in "${!order[@]}"; do echo "$((i + 1)). ${order[$i]}"; done)

$n associations from one source to $n distinct host:port pairs within a few seconds.

## Expected alerts (expected_alerts.json)

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
| association-sweep | $RADWS -> ${first%:*} | detected | 1 | association $threshold (${first}): the $threshold-th distinct host:port pair one source asked within 300 s (threshold \`ports\` 10, the default) |
| association-sweep | $RADWS -> ${first%:*} | folded | $(( findings - 1 )) | associations $((threshold + 1))..$n each give a finding (the count stays at or above 10): $n - $threshold + 1 = $findings findings; the sweep is folded per source, so the later ones fold into the first one's alert |

Not expected: zone rules (radiology <-> radiology and pacs: both radiology zones, inside),
\`scanner-probe\` (calling AE RADWS, not ECHOSCU), \`dicom-on-tls-port\` (no port 2762),
\`new-*\` (learning period). The hosts count stays at 2 (threshold \`hosts\` 10).

Made to check that a sweep is seen whole when \`capture --workers N\` spreads its
connections over workers (tests/sensor/test_one_sensor.py).

## Commands

    # modality ($MOD): python3 pyports.py --host $MOD --aet CT01 ${ports[*]}
    # pacs ($PACS):    python3 pyports.py --host $PACS --aet PACS ${ports[*]}
    # radws ($RADWS):  for p in ${ports[*]}; do for h in $MOD $PACS; do
    #                      echoscu -aet RADWS -aec ANY-SCP \$h \$p; done; done
EOF
}

scen_bulk_outbound() {
  newscen bulk-outbound
  mkdir -p "$L/ext-in"
  local per_assoc=400000 per_window=2000000 window=3600
  # this scenario's config: the hospital's, with bulk-outbound thresholds a test can reach
  awk -v a="$per_assoc" -v w="$per_window" -v s="$window" '
    /^alerts:/ {
      print "  bulk-outbound:      # low thresholds, so that a few MB are \"bulk\" (this scenario only)"
      print "    bytes_per_association: " a
      print "    bytes_per_window: " w
      print "    window: " s
    }
    { sub(/^# The same file is copied into every scenario folder\./,
          "# The hospital config of every scenario folder, with bulk-outbound thresholds lowered."); print }
  ' "$WORK/config.yaml" >"$O/config.yaml"
  cap_start
  bgrun "$L/storescp-ext.log" ext "$STORESCP" -v -dhl -aet CLOUDARCHIVE -od "$L/ext-in" 104; local extscp=$LASTPID
  wait_listen ext 104
  # the PACS pushes a study out to an archive on the internet, one image per association
  local n=0 f sizes=()
  for f in "$D"/ct_foxtrot_*.dcm; do
    n=$((n + 1))
    in_ pacs "$STORESCU" -v -aet PACS -aec CLOUDARCHIVE "$EXT" 104 "$f" >"$L/storescu-$n.log" 2>&1 \
      || die "pacs storescu $n failed: $(cat "$L/storescu-$n.log")"
    must_grep "Received Store Response (Success)" "$L/storescu-$n.log" 1
  done
  cap_stop; stop "$extscp"
  [ "$n" -eq 5 ] || die "expected 5 bulk images, made $n"
  [ "$(ls "$L/ext-in" | wc -l)" -eq "$n" ] || die "external storescp did not store $n objects"
  check_pdus "$n $n 0"
  # What the PACS sends per association: the file's data set (the file less its preamble
  # and meta header, a few hundred bytes) plus P-DATA-TF and PDV headers (12 bytes per
  # 16 KB PDU): within 1 KB of the file's size, far from every threshold below.
  for f in "$D"/ct_foxtrot_*.dcm; do sizes+=("$(stat -c %s "$f")"); done
  # The rule looks at the bytes sent at each DIMSE message (C-STORE-RQ: the command;
  # C-STORE-RSP: the data set before it). A message fires if its association's bytes reach
  # bytes_per_association (once per association) or the source's bytes within the window
  # reach bytes_per_window (every message with new bytes from then on).
  local findings
  findings="$(python3 -c '
import sys
per_assoc, per_window = int(sys.argv[1]), int(sys.argv[2])
total, findings = 0, 0
for size in map(int, sys.argv[3:]):
    # C-STORE-RQ: the command (a few hundred bytes) is new; C-STORE-RSP: all of it is.
    total += 1
    if total >= per_window:
        findings += 1
    total += size - 1
    if size >= per_assoc or total >= per_window:
        findings += 1
print(findings)' "$per_assoc" "$per_window" "${sizes[@]}")"
  write_expected <<EOF
perimeter-outbound $PACS $EXT detected 1
bulk-outbound $PACS $EXT detected 1
perimeter-outbound $PACS $EXT folded $(( n - 1 ))
bulk-outbound $PACS $EXT folded $(( findings - 1 ))
EOF
  write_readme "bulk DICOM leaving the hospital" <<EOF
The PACS $PACS (zone \`pacs\`, dmz) pushes a study of five 600 x 512 CT slices
(SYNTHETIC^FOXTROT, SYN0006, about 615 KB each) to CLOUDARCHIVE, a DCMTK storescp on the
internet host $EXT:104 (zone \`internet\`, external): DCMTK storescu, one image per
association, five associations, all accepted and released. The files are ${sizes[*]}
bytes: each association carries about as many P-DATA-TF bytes (the data set, without the
file's preamble and meta header, plus PDU and PDV headers).

This folder's config.yaml is the hospital's with lower \`bulk-outbound\` thresholds, so a
few MB count as bulk: bytes_per_association $per_assoc, bytes_per_window $per_window,
window $window s.

## Expected alerts (expected_alerts.json)

The rule looks at the bytes the inside side has sent at each DIMSE message: a C-STORE-RQ
adds its command, a C-STORE-RSP the data set sent before it. A message is a finding when
its association has reached bytes_per_association (once per association) or the source's
bytes within the window have reached bytes_per_window (every message with new bytes from
then on). Each association reaches $per_assoc at its C-STORE-RSP (5 findings); the source
passes $per_window within association 4, so association 5's C-STORE-RQ is a finding too:
$findings findings.

| rule | source -> destination | action | count | why |
|---|---|---|---|---|
| perimeter-outbound | $PACS -> $EXT | detected | 1 | association 1: a node inside asks an external node for an association |
| bulk-outbound | $PACS -> $EXT | detected | 1 | association 1's C-STORE-RSP: about 615 KB sent, at least $per_assoc |
| perimeter-outbound | $PACS -> $EXT | folded | $(( n - 1 )) | associations 2-$n |
| bulk-outbound | $PACS -> $EXT | folded | $(( findings - 1 )) | the other $(( findings - 1 )) findings, as computed above |

Not expected: \`radiology-boundary\` (external peers are the perimeter rules' business).

Made to check that bulk per window is counted whole when \`capture --workers N\` spreads
the associations over workers (tests/sensor/test_one_sensor.py).

## Commands

    # ext ($EXT):   storescp -v -aet CLOUDARCHIVE 104
    # pacs ($PACS): for f in ct_foxtrot_{1..5}.dcm; do storescu -aet PACS -aec CLOUDARCHIVE $EXT 104 \$f; done
EOF
}

# ---------------------------------------------------------------- run
for s in "${SCEN[@]}"; do
  "scen_${s//-/_}"
  # the hospital's config, unless the scenario wrote its own
  [ -f "$WORK/out/$s/config.yaml" ] || cp "$WORK/config.yaml" "$WORK/out/$s/config.yaml"
done

# the canary only in the credentials capture (and its README)
for s in "${SCEN[@]}"; do
  for f in "$WORK/out/$s"/*; do
    case "$s/$(basename "$f")" in
      credentials-move-query/capture.pcap|credentials-move-query/README.md) continue ;;
    esac
    if grep -aq "$CANARY" "$f"; then die "passcode canary leaked into $s/$(basename "$f")"; fi
  done
done

for s in "${SCEN[@]}"; do
  rm -rf "${HERE:?}/$s"
  mv "$WORK/out/$s" "$HERE/$s"
  chmod 0644 "$HERE/$s"/*
done
log "done"
du -ab "$HERE" | sort -k2
