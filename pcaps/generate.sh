#!/usr/bin/env bash
# Regenerate every capture under pcaps/ with REAL DICOM peers (DCMTK and pynetdicom).
#
#   sudo PATH=.venv/bin:$PATH bash pcaps/generate.sh            # all cases (what `make pcaps` runs)
#   sudo PATH=.venv/bin:$PATH bash pcaps/generate.sh CASE...    # only these case folders
#
# Needs root (network namespaces, tcpdump), python3 with pydicom + pynetdicom on PATH,
# DCMTK, tcpdump, tshark, iproute2 (ip, tc, ss); ethtool is installed through apt if missing.
#
# All traffic stays on this machine: two private network namespaces joined by a veth pair
# (10.10.0.1 / fd00:10::1 = client side, 10.10.0.2 / fd00:10::2 = server side), plus the
# loopback interface *inside* the server namespace. Nothing is ever sent anywhere else.
# All DICOM objects are generated here and hold SYNTHETIC patient data only.
#
# Every case is captured into a scratch folder, decoded with tshark, checked against what
# the peers are known to have done (peer logs + a per-case association spec), and only
# then moved into pcaps/<case>/ (capture.pcap, expected.json, README.md). A failing check
# stops the script with a non-zero exit and leaves the previous captures untouched.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ALL_CASES=(
  dcmtk-echo-104
  dcmtk-store-11112
  dcmtk-find-move-get
  dcmtk-reject-called-ae
  abort-by-requestor
  abort-by-acceptor
  killed-mid-transfer
  pynetdicom-user-identity
  pynetdicom-ipv6
  pynetdicom-store-loopback
  pynetdicom-128-contexts
)
if [ "$#" -gt 0 ]; then CASES=("$@"); else CASES=("${ALL_CASES[@]}"); fi
for c in "${CASES[@]}"; do
  case " ${ALL_CASES[*]} " in *" $c "*) ;; *) echo "unknown case: $c" >&2; exit 2 ;; esac
done

die() { printf 'generate.sh: ERROR: %b\n' "$*" >&2; exit 1; }
log() { echo "== $*"; }

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, tcpdump)"
for cmd in python3 tshark tcpdump ip tc ss; do
  command -v "$cmd" >/dev/null 2>&1 || die "missing command: $cmd"
done
# pynetdicom installs its own apps named echoscu, storescu, storescp, findscu, movescu and
# getscu into the venv, which comes first on PATH: pick the DCMTK binaries explicitly.
dcmtk_tool() { # name -> path of the DCMTK binary of that name
  local p
  for p in $(type -ap "$1") /usr/bin/"$1" /usr/local/bin/"$1"; do
    if [ -x "$p" ] && { "$p" --version 2>&1 || true; } | grep -q '^\$dcmtk: '"$1"; then
      echo "$p"; return 0
    fi
  done
  die "DCMTK's $1 not found (apt-get install dcmtk)"
}
ECHOSCU="$(dcmtk_tool echoscu)"; STORESCU="$(dcmtk_tool storescu)"; STORESCP="$(dcmtk_tool storescp)"
FINDSCU="$(dcmtk_tool findscu)"; MOVESCU="$(dcmtk_tool movescu)"; GETSCU="$(dcmtk_tool getscu)"
DCMQRSCP="$(dcmtk_tool dcmqrscp)"; DCMQRIDX="$(dcmtk_tool dcmqridx)"
python3 -c 'import pydicom, pynetdicom' 2>/dev/null \
  || die "python3 ($(command -v python3)) lacks pydicom/pynetdicom (run: PATH=.venv/bin:\$PATH)"
if ! command -v ethtool >/dev/null 2>&1; then
  log "ethtool missing: installing it through apt (needed to switch veth offloads off)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ethtool >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ethtool >/dev/null 2>&1; } \
    || echo "WARNING: could not install ethtool: veth offloads stay on (segments may exceed the MTU)" >&2
fi

NS_C=dcmsens-gen-cli          # client namespace (requestors)
NS_S=dcmsens-gen-srv          # server namespace (acceptors, capture point)
IF_C=dsgen-c0
IF_S=dsgen-s0
C4=10.10.0.1; S4=10.10.0.2
C6=fd00:10::1; S6=fd00:10::2

WORK="$(mktemp -d /tmp/dicom-pcaps.XXXXXX)"
PIDS=()

cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null; fi
  done
  sleep 0.3
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
    wait "$p" 2>/dev/null
  done
  ip netns del "$NS_C" 2>/dev/null
  ip netns del "$NS_S" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -n "${KEEP_WORK:-}" ]; then
    echo "work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inc() { ip netns exec "$NS_C" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

# Start a background process inside a namespace; its pid (ip netns exec execs the command,
# so it is the command's own pid) goes to LASTPID and to the cleanup list.
bgrun() { # logfile ns cmd...
  local logf="$1" ns="$2"; shift 2
  ip netns exec "$ns" "$@" >"$logf" 2>&1 &
  LASTPID=$!
  PIDS+=("$LASTPID")
}
stop() { # pid [signal]
  local p="$1" sig="${2:-TERM}"
  kill -"$sig" "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
wait_listen() { # ns port
  local ns="$1" port="$2" i
  for i in $(seq 1 100); do
    if ip netns exec "$ns" ss -Hltn "sport = :$port" | grep -q LISTEN; then return 0; fi
    sleep 0.1
  done
  die "nothing listening on port $port in $ns"
}

# tcpdump: pcap (not pcapng), full snap length, packet-buffered output, immediate delivery
# (without --immediate-mode the last packets can be lost when tcpdump is stopped).
cap_start() { # ns iface outfile filter
  local ns="$1" ifc="$2" out="$3" filter="$4" i
  ip netns exec "$ns" tcpdump -i "$ifc" -n -s 0 -U --immediate-mode -Z root -w "$out" "$filter" \
    >"$out.tcpdump.log" 2>&1 &
  CAPPID=$!
  PIDS+=("$CAPPID")
  for i in $(seq 1 100); do
    grep -q "listening on" "$out.tcpdump.log" 2>/dev/null && return 0
    sleep 0.1
  done
  die "tcpdump did not start: $(cat "$out.tcpdump.log")"
}
cap_stop() {
  sleep 1
  stop "$CAPPID" INT
}

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
SEED = "dicom-sensor synthetic capture data v1"


def uid(*parts: str) -> str:
    # deterministic UUID-derived UID (2.25.<uuid5 as integer>, PS3.5 B.2)
    return "2.25.%d" % uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, (SEED, *parts)))).int


def image(path, sop_class, modality, name, pid, study, series, number, rows, cols):
    sop_uid = uid(study, series, str(number))
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
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "SYNACC" + pid[-4:]
    ds.Modality = modality
    ds.Manufacturer = "SYNTHETIC"
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.StudyDescription = "SYNTHETIC TEST STUDY"
    ds.SeriesDescription = "SYNTHETIC " + modality + " SERIES"
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid(study)
    ds.SeriesInstanceUID = uid(study, series)
    ds.StudyID = "1"
    ds.SeriesNumber = series
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    n = rows * cols
    ramp = b"".join(bytes([(i * 7 + number) & 0xFF, (i >> 8) & 0x0F]) for i in range(4096))
    ds.PixelData = (ramp * (n // 4096 + 1))[: 2 * n]
    ds.save_as(path, enforce_file_format=True)
    return ds


out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
objs = [
    # file name, class, modality, patient name, id, study key, series, instance, rows, cols
    ("ct_alpha_1.dcm", CT, "CT", "SYNTHETIC^ALPHA", "SYN0001", "study-alpha", 1, 1, 64, 64),
    ("ct_alpha_2.dcm", CT, "CT", "SYNTHETIC^ALPHA", "SYN0001", "study-alpha", 1, 2, 64, 64),
    ("mr_bravo_1.dcm", MR, "MR", "SYNTHETIC^BRAVO", "SYN0002", "study-bravo", 1, 1, 64, 64),
    ("mr_bravo_big.dcm", MR, "MR", "SYNTHETIC^BRAVO", "SYN0002", "study-bravo", 2, 1, 256, 256),
    ("ct_charlie_huge.dcm", CT, "CT", "SYNTHETIC^CHARLIE", "SYN0003", "study-charlie", 1, 1, 1024, 2048),
]
for f, cls, mod, name, pid, study, series, num, rows, cols in objs:
    ds = image(out / f, cls, mod, name, pid, study, series, num, rows, cols)
    print(f, (out / f).stat().st_size, ds.SOPInstanceUID, ds.StudyInstanceUID)
PYEOF

cat >"$WORK/py/pyscp.py" <<'PYEOF'
"""pynetdicom acceptor: Verification + storage, optional A-ABORT from the acceptor side."""
import argparse
import logging

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--aet", required=True)
p.add_argument("--abort-on-echo", action="store_true", help="send A-ABORT instead of C-ECHO-RSP")
a = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("pyscp")
log.setLevel(logging.INFO)


def on_echo(event):
    log.info("C-ECHO-RQ from %s", event.assoc.requestor.ae_title)
    if a.abort_on_echo:
        log.info("aborting association (acceptor side A-ABORT)")
        event.assoc.abort()
    return 0x0000


def on_store(event):
    ds = event.dataset
    log.info("C-STORE-RQ %s %d bytes", ds.SOPInstanceUID, len(ds.PixelData))
    return 0x0000


def on_user_id(event):
    # never log the passcode itself, only whether one came
    log.info("user identity type %s username %r passcode_present %s",
             event.user_id_type, event.primary_field, bool(event.secondary_field))
    return True, None


def on_any(event):
    log.info("event %s", event.event.name)


ae = AE(ae_title=a.aet)
ae.supported_contexts = StoragePresentationContexts
ae.add_supported_context(Verification)
handlers = [(evt.EVT_C_ECHO, on_echo), (evt.EVT_C_STORE, on_store), (evt.EVT_USER_ID, on_user_id),
            (evt.EVT_ACCEPTED, on_any), (evt.EVT_RELEASED, on_any), (evt.EVT_ABORTED, on_any),
            (evt.EVT_CONN_CLOSE, on_any)]
log.info("listening on [%s]:%d as %s", a.host, a.port, a.aet)
ae.start_server((a.host, a.port), block=True, evt_handlers=handlers)
PYEOF

cat >"$WORK/py/pyscu.py" <<'PYEOF'
"""pynetdicom requestor: optional user identity, C-ECHO, C-STOREs, then release or A-ABORT."""
import argparse
import sys
import time

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import Verification

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--aet", required=True)
p.add_argument("--aec", required=True)
p.add_argument("--echo", action="store_true")
p.add_argument("--store", nargs="*", default=[])
p.add_argument("--end", choices=["release", "abort"], default="release")
p.add_argument("--uid-type", type=int, choices=[1, 2])
p.add_argument("--username", default="")
p.add_argument("--passcode", default="")
p.add_argument("--expect-peer-abort", action="store_true")
a = p.parse_args()

ae = AE(ae_title=a.aet)
ae.add_requested_context(Verification)
datasets = [dcmread(f) for f in a.store]
for cls in sorted({str(ds.SOPClassUID) for ds in datasets}):
    ae.add_requested_context(cls, ExplicitVRLittleEndian)
ext = []
if a.uid_type:
    u = UserIdentityNegotiation()
    u.user_identity_type = a.uid_type
    u.primary_field = a.username.encode()
    if a.uid_type == 2:
        u.secondary_field = a.passcode.encode()
    u.positive_response_requested = False
    ext.append(u)

assoc = ae.associate(a.host, a.port, ae_title=a.aec, ext_neg=ext or None)
if not assoc.is_established:
    print("ASSOCIATION not established (rejected=%s aborted=%s)" % (assoc.is_rejected, assoc.is_aborted))
    sys.exit(3)
print("ASSOCIATION accepted")
ok = True
if a.echo:
    st = assoc.send_c_echo()
    if "Status" in st:
        print("C-ECHO status 0x%04X" % st.Status)
        ok &= st.Status == 0
    else:
        for _ in range(50):  # the A-ABORT may be processed just after send_c_echo() returns
            if assoc.is_aborted or not assoc.is_alive():
                break
            time.sleep(0.1)
        print("C-ECHO no response (aborted=%s)" % assoc.is_aborted)
        ok &= a.expect_peer_abort and assoc.is_aborted
for ds in datasets:
    st = assoc.send_c_store(ds)
    if "Status" in st:
        print("C-STORE %s status 0x%04X" % (ds.SOPInstanceUID, st.Status))
        ok &= st.Status == 0
    else:
        print("C-STORE no response")
        ok = False
if assoc.is_established:
    if a.end == "abort":
        assoc.abort()
        print("ASSOCIATION aborted by us")
    else:
        assoc.release()
        print("ASSOCIATION released=%s" % assoc.is_released)
elif assoc.is_aborted:
    print("ASSOCIATION aborted by peer")
sys.exit(0 if ok else 4)
PYEOF

cat >"$WORK/py/analyze.py" <<'PYEOF'
"""Decode a capture with tshark (PDML) and list its DICOM associations.

usage: analyze.py capture.pcap --ports P,P.. --spec spec.json --require-pdu 0x01,0x02 \
                  --out expected.json --summary summary.md

Writes the associations as tshark decodes them, then checks them against the spec
(a list, one partial dict per association, same order): any mismatch exits non-zero.
"""
import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter, OrderedDict

CMD = {0x0001: "C-STORE", 0x0010: "C-GET", 0x0020: "C-FIND", 0x0021: "C-MOVE", 0x0030: "C-ECHO",
       0x0100: "N-EVENT-REPORT", 0x0110: "N-GET", 0x0120: "N-SET", 0x0130: "N-ACTION",
       0x0140: "N-CREATE", 0x0150: "N-DELETE", 0x0FFF: "C-CANCEL"}
PDU = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
       5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}

ap = argparse.ArgumentParser()
ap.add_argument("pcap")
ap.add_argument("--ports", default="")
ap.add_argument("--spec", required=True)
ap.add_argument("--require-pdu", default="")
ap.add_argument("--out", required=True)
ap.add_argument("--summary", required=True)
args = ap.parse_args()

tshark = ["tshark", "-n", "-r", args.pcap]
for port in filter(None, args.ports.split(",")):
    tshark += ["-d", f"tcp.port=={port},dicom"]

# 1) the plain check asked for: PDU types as tshark lists them
fields = subprocess.run(tshark + ["-Y", "dicom", "-T", "fields", "-e", "dicom.pdu.type"],
                        check=True, capture_output=True, text=True).stdout
seen_types = Counter(t for line in fields.split() for t in line.split(",") if t)
npackets = int(subprocess.run(tshark + ["-T", "fields", "-e", "frame.number"], check=True,
                              capture_output=True, text=True).stdout.split()[-1])

# 2) full decode
pdml = subprocess.run(tshark + ["-T", "pdml"], check=True, capture_output=True).stdout
root = ET.fromstring(pdml)


def le16(hexval: str) -> int:
    b = bytes.fromhex(hexval[-4:])
    return b[0] | (b[1] << 8)


streams: "OrderedDict[int, dict]" = OrderedDict()
for pkt in root.iter("packet"):
    protos = {p.get("name"): p for p in pkt.findall("proto")}
    tcp = protos.get("tcp")
    if tcp is None:
        continue
    tf = {f.get("name"): f.get("show") for f in tcp.iter("field") if f.get("name")}
    ipp = protos.get("ip") or protos.get("ipv6")
    ipf = {f.get("name"): f.get("show") for f in ipp.iter("field") if f.get("name")}
    ipver = 4 if "ip" in protos else 6
    src = ipf.get("ip.src") or ipf.get("ipv6.src")
    dst = ipf.get("ip.dst") or ipf.get("ipv6.dst")
    sid = int(tf["tcp.stream"])
    sport, dport = int(tf["tcp.srcport"]), int(tf["tcp.dstport"])
    st = streams.setdefault(sid, {"ipver": ipver, "syn_from": None, "pdus": [], "fin": [], "rst": [],
                                  "first_end": None, "eps": set()})
    ep = (src, sport)
    st["eps"].add(ep)
    if tf.get("tcp.flags.syn") == "1" and tf.get("tcp.flags.ack") == "0":
        st["syn_from"] = ep
        st["syn_to"] = (dst, dport)
    for flag, key in (("tcp.flags.fin", "fin"), ("tcp.flags.reset", "rst")):
        if tf.get(flag) == "1":
            st[key].append(ep)
            if st["first_end"] is None:
                st["first_end"] = (ep, key)
    # DICOM PDUs of this frame, in document order
    for dproto in pkt.findall("proto"):
        if dproto.get("name") != "dicom":
            continue
        cur = None
        for f in dproto.iter("field"):
            name, show, value = f.get("name"), f.get("show") or "", f.get("value") or ""
            if name == "dicom.pdu.type":
                cur = {"type": int(show, 16), "from": ep, "to": (dst, dport), "items": {},
                       "uid": {}, "cmds": [], "pctx": 0, "pctx_ok": 0}
                st["pdus"].append(cur)
            elif cur is None:
                continue
            elif name in ("dicom.assoc.ae.called", "dicom.assoc.ae.calling",
                          "dicom.assoc.reject.result", "dicom.assoc.reject.source",
                          "dicom.assoc.reject.reason", "dicom.assoc.abort.source",
                          "dicom.assoc.abort.reason", "dicom.userinfo.uid",
                          "dicom.userinfo.version", "dicom.max_pdu_len"):
                cur["items"][name] = show.strip()
            elif name.startswith("dicom.userinfo.user_identify."):
                cur["uid"][name.rsplit(".", 1)[1]] = show
            elif name == "dicom.assoc.item.type" and show in ("0x20", "0x21"):
                cur["pctx"] += 1
            elif name == "dicom.pctx.result":
                cur["pctx_ok"] += show in ("0", "0x00")
            elif name == "" and show.startswith("(0000,0100)"):
                cur["cmds"].append({"field": le16(value)})
            elif name == "" and show.startswith("(0000,0900)") and cur["cmds"]:
                cur["cmds"][-1]["status"] = le16(value)

assocs = []
for sid, st in streams.items():
    rq = next((p for p in st["pdus"] if p["type"] == 1), None)
    if rq is None:
        continue  # not a DICOM association (should not happen: captures are filtered)
    req_ep, acc_ep = rq["from"], rq["to"]
    types = [p["type"] for p in st["pdus"]]
    ac = next((p for p in st["pdus"] if p["type"] == 2), None)
    rj = next((p for p in st["pdus"] if p["type"] == 3), None)
    ab = next((p for p in st["pdus"] if p["type"] == 7), None)
    dimse: Counter = Counter()
    statuses: dict = {}
    for p in st["pdus"]:
        for c in p["cmds"]:
            fld = c["field"]
            name = CMD.get(fld & 0x7FFF, f"0x{fld & 0x7FFF:04X}") + ("-RSP" if fld & 0x8000 else "-RQ")
            dimse[name] += 1
            if "status" in c:
                statuses.setdefault(name, Counter())[f"0x{c['status']:04X}"] += 1
    if ab is not None:
        end = "aborted"
    elif 5 in types and 6 in types:
        end = "released"
    else:
        end = "connection-closed"
    ui = rq["uid"]
    user_identity = None
    if "type" in ui:
        user_identity = {"type": int(ui["type"]), "username": ui.get("primary_field", ""),
                         "passcode_present": int(ui.get("secondary_field_length", "0")) > 0}
    first_end = st["first_end"]
    assocs.append({
        "requestor_port_is_ephemeral": req_ep[1] >= 32768 and req_ep[1] != acc_ep[1],
        "acceptor_port": acc_ep[1],
        "calling_ae_title": rq["items"].get("dicom.assoc.ae.calling", ""),
        "called_ae_title": rq["items"].get("dicom.assoc.ae.called", ""),
        "result": "accepted" if ac else ("rejected" if rj else "none"),
        "end": end,
        "abort_by": None if ab is None else ("requestor" if ab["from"] == req_ep else "acceptor"),
        "reject": None if rj is None else {
            k: int(rj["items"][f"dicom.assoc.reject.{k}"]) for k in ("result", "source", "reason")},
        "dimse": dict(sorted(dimse.items())),
        "user_identity": user_identity,
        # extra facts, also decoded by tshark
        "ip_version": st["ipver"],
        "requestor_ip": req_ep[0],
        "acceptor_ip": acc_ep[0],
        "abort": None if ab is None else {
            "source": int(ab["items"]["dicom.assoc.abort.source"]),
            "reason": int(ab["items"]["dicom.assoc.abort.reason"])},
        "dimse_status": {k: dict(sorted(v.items())) for k, v in sorted(statuses.items())},
        "pdu_counts": {f"0x{t:02x}": n for t, n in sorted(Counter(types).items())},
        "presentation_contexts": {"proposed": rq["pctx"],
                                  "accepted": ac["pctx_ok"] if ac else 0},
        "implementation": {
            "requestor": {"class_uid": rq["items"].get("dicom.userinfo.uid"),
                          "version": rq["items"].get("dicom.userinfo.version")},
            "acceptor": None if ac is None else {
                "class_uid": ac["items"].get("dicom.userinfo.uid"),
                "version": ac["items"].get("dicom.userinfo.version")}},
        "tcp_end": "rst" if st["rst"] else ("fin" if st["fin"] else "open"),
        "tcp_closed_first_by": None if first_end is None else
            ("requestor" if first_end[0] == req_ep else "acceptor"),
    })

with open(args.out, "w") as fh:
    json.dump(assocs, fh, indent=2)
    fh.write("\n")

# 3) checks
errors = []
required = [t for t in args.require_pdu.split(",") if t]
for t in required:
    if f"0x{int(t, 16):02x}" not in seen_types:
        errors.append(f"PDU type {t} not seen by tshark (seen: {dict(seen_types)})")
spec = json.load(open(args.spec))
if len(spec) != len(assocs):
    errors.append(f"{len(assocs)} associations decoded, spec expects {len(spec)}")
ROOTS = {"dcmtk": "1.2.276.0.7230010.3.", "pynetdicom": "1.2.826.0.1.3680043.9.3811."}
for i, (want, got) in enumerate(zip(spec, assocs)):
    for k, v in want.items():
        if k == "_impl":  # ["dcmtk"|"pynetdicom", same or null]: implementation class UID roots
            for role, sw in zip(("requestor", "acceptor"), v):
                info = got["implementation"][role]
                have = (info or {}).get("class_uid") or ""
                if sw is not None and not have.startswith(ROOTS[sw]):
                    errors.append(f"association {i}: {role} implementation {have!r} is not {sw}")
        elif got.get(k) != v:
            errors.append(f"association {i}: {k} = {got.get(k)!r}, expected {v!r}")

with open(args.summary, "w") as fh:
    fh.write(f"- packets: {npackets}\n")
    fh.write(f"- DICOM associations: {len(assocs)}\n")
    fh.write("- PDU types tshark decodes (`-Y dicom -T fields -e dicom.pdu.type`): "
             + ", ".join(f"{t} {PDU[int(t, 16)]} x{n}" for t, n in sorted(seen_types.items())) + "\n")
    fh.write("\n| # | requestor -> acceptor | calling -> called | result | end | DIMSE |\n"
             "|---|---|---|---|---|---|\n")
    for i, a in enumerate(assocs):
        rej = f" {a['reject']}" if a["reject"] else ""
        ab = f" by {a['abort_by']}" if a["abort_by"] else ""
        dm = ", ".join(f"{k} x{v}" for k, v in a["dimse"].items()) or "-"
        fh.write(f"| {i} | {a['requestor_ip']}:ephemeral -> {a['acceptor_ip']}:{a['acceptor_port']}"
                 f" | {a['calling_ae_title']} -> {a['called_ae_title']} | {a['result']}{rej}"
                 f" | {a['end']}{ab} (TCP {a['tcp_end']}) | {dm} |\n")

print(open(args.summary).read())
if errors:
    print("CHECK FAILED for " + args.pcap, file=sys.stderr)
    for e in errors:
        print("  - " + e, file=sys.stderr)
    sys.exit(1)
print("check ok: " + args.pcap)
PYEOF

# ---------------------------------------------------------------- versions (provenance)
DCMTK_VER="$( ("$STORESCP" --version 2>/dev/null || true) | head -1 | sed 's/^\$dcmtk: //; s/ \$$//')"
PYND_VER="$(python3 -c 'import pynetdicom; print(pynetdicom.__version__)')"
PYDI_VER="$(python3 -c 'import pydicom; print(pydicom.__version__)')"
PY_VER="$(python3 -c 'import platform; print(platform.python_version())')"
TSHARK_VER="$( (tshark --version 2>/dev/null || true) | head -1)"
TCPDUMP_VER="$( (tcpdump --version 2>&1 || true) | head -1)"
KERNEL_VER="$(uname -sr)"

# ---------------------------------------------------------------- synthetic data
log "making synthetic DICOM objects"
python3 "$WORK/py/mkdata.py" "$WORK/data" >"$WORK/logs/mkdata.log"
cat "$WORK/logs/mkdata.log"
D="$WORK/data"
STUDY_ALPHA="$(awk '$1=="ct_alpha_1.dcm"{print $4}' "$WORK/logs/mkdata.log")"
STUDY_BRAVO="$(awk '$1=="mr_bravo_1.dcm"{print $4}' "$WORK/logs/mkdata.log")"
BIG_SIZE="$(stat -c %s "$D/mr_bravo_big.dcm")"
[ "$BIG_SIZE" -gt 65536 ] || die "mr_bravo_big.dcm is not over 64 KiB"

# ---------------------------------------------------------------- network namespaces
log "creating namespaces $NS_C <-> $NS_S"
ip netns del "$NS_C" 2>/dev/null || true
ip netns del "$NS_S" 2>/dev/null || true
ip netns add "$NS_C"
ip netns add "$NS_S"
ip link add "$IF_C" netns "$NS_C" type veth peer name "$IF_S" netns "$NS_S"
for ns in "$NS_C" "$NS_S"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  # ephemeral (requestor) ports well above every acceptor port used here
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
  ip -n "$ns" link set lo up
done
ip -n "$NS_C" addr add "$C4/24" dev "$IF_C"
ip -n "$NS_S" addr add "$S4/24" dev "$IF_S"
ip -n "$NS_C" addr add "$C6/64" dev "$IF_C" nodad
ip -n "$NS_S" addr add "$S6/64" dev "$IF_S" nodad
ip -n "$NS_C" link set "$IF_C" mtu 1500 up
ip -n "$NS_S" link set "$IF_S" mtu 1500 up
OFFLOADS="unknown"
if command -v ethtool >/dev/null 2>&1; then
  # no TSO/GSO/GRO: every captured segment is at most MSS sized, as on a wire;
  # no checksum offload: captured checksums are real.
  inc ethtool -K "$IF_C" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ins ethtool -K "$IF_S" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  OFFLOADS="off (tso gso gro tx-checksum rx-checksum, ethtool -K)"
fi
for i in $(seq 1 50); do
  ins ip -6 addr show dev "$IF_S" | grep -q tentative || break; sleep 0.1
done

# ---------------------------------------------------------------- per-case plumbing
# finish_case CASE PORTS REQUIRED_PDUS SPEC_JSON : decode, check, write expected.json + README
finish_case() {
  local case="$1" ports="$2" req="$3" spec="$4" o="$WORK/out/$1"
  printf '%s\n' "$spec" >"$o/spec.json"
  python3 "$WORK/py/analyze.py" "$o/capture.pcap" --ports "$ports" --spec "$o/spec.json" \
    --require-pdu "$req" --out "$o/expected.json" --summary "$o/summary.md" \
    || die "case $case: tshark check failed"
  rm -f "$o/spec.json"
}
# write_readme CASE TITLE ; body from stdin (markdown), summary appended
write_readme() {
  local case="$1" title="$2" o="$WORK/out/$1"
  {
    echo "# $case: $title"
    echo
    cat
    echo
    echo "## Environment"
    echo
    echo "- DCMTK: $DCMTK_VER; pynetdicom $PYND_VER, pydicom $PYDI_VER, Python $PY_VER"
    echo "- capture: $TCPDUMP_VER, \`tcpdump -n -s 0 -U --immediate-mode -w capture.pcap '<filter>'\`"
    echo "- decoded with: $TSHARK_VER; kernel $KERNEL_VER"
    echo "- veth: MTU 1500, offloads $OFFLOADS; client namespace $C4 / $C6,"
    echo "  server namespace $S4 / $S6; ephemeral ports 50000-60999 in both namespaces"
    echo "- all patient data is SYNTHETIC (generated by generate.sh with pydicom)"
    echo
    echo "## What tshark decodes (checked by generate.sh, details in expected.json)"
    echo
    cat "$o/summary.md"
  } >"$o/README.md"
  rm -f "$o/summary.md"
}
newcase() { mkdir -p "$WORK/out/$1" "$WORK/logs/$1"; O="$WORK/out/$1"; L="$WORK/logs/$1"; log "case $1"; }
must_grep() { # pattern file [count]
  local n
  n="$(grep -ac -- "$1" "$2" || true)"
  if [ -n "${3:-}" ]; then
    [ "$n" -eq "$3" ] || die "expected $3 x '$1' in $(basename "$2"), found $n:\n$(cat "$2")"
  else
    [ "$n" -ge 1 ] || die "expected '$1' in $(basename "$2"):\n$(cat "$2")"
  fi
}

# ================================================================ cases
case_dcmtk_echo_104() {
  newcase dcmtk-echo-104
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 104"
  bgrun "$L/storescp.log" "$NS_S" "$STORESCP" -v -aet ANY-SCP 104; local scp=$LASTPID
  wait_listen "$NS_S" 104
  inc "$ECHOSCU" -v -aet ECHOSCU -aec ANY-SCP "$S4" 104 >"$L/echoscu.log" 2>&1 || die "echoscu failed: $(cat "$L/echoscu.log")"
  cap_stop; stop "$scp"
  must_grep "Received Echo Response.*Success" "$L/echoscu.log" 1
  finish_case dcmtk-echo-104 104 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 104, "calling_ae_title": "ECHOSCU",
     "called_ae_title": "ANY-SCP", "result": "accepted", "end": "released", "abort_by": null,
     "reject": null, "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}, "user_identity": null,
     "ip_version": 4, "dimse_status": {"C-ECHO-RSP": {"0x0000": 1}}}]'
  write_readme dcmtk-echo-104 "DCMTK C-ECHO on port 104" <<EOF
One association over the veth pair (IPv4): DCMTK echoscu verifies DCMTK storescp on the
historical well-known port 104, then releases.

## Commands

    # server namespace ($S4)
    storescp -v -aet ANY-SCP 104
    # client namespace ($C4)
    echoscu -v -aet ECHOSCU -aec ANY-SCP $S4 104

capture filter: \`tcp port 104\` on the server end of the veth.

## Expected

1 association, ECHOSCU -> ANY-SCP, accepted; C-ECHO-RQ / C-ECHO-RSP (status 0x0000 Success);
A-RELEASE-RQ / A-RELEASE-RP; then TCP FIN. Both sides are DCMTK (implementation class UID
root 1.2.276.0.7230010.3., version OFFIS_DCMTK_367).
EOF
}

case_dcmtk_store_11112() {
  newcase dcmtk-store-11112
  mkdir -p "$L/in"
  local files=("$D/ct_alpha_1.dcm" "$D/ct_alpha_2.dcm" "$D/mr_bravo_1.dcm" "$D/mr_bravo_big.dcm")
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 11112"
  bgrun "$L/storescp.log" "$NS_S" "$STORESCP" -v -aet STORESCP -od "$L/in" 11112; local scp=$LASTPID
  wait_listen "$NS_S" 11112
  inc "$STORESCU" -v -aet STORESCU -aec STORESCP "$S4" 11112 "${files[@]}" >"$L/storescu.log" 2>&1 \
    || die "storescu failed: $(cat "$L/storescu.log")"
  cap_stop; stop "$scp"
  must_grep "Received Store Response (Success)" "$L/storescu.log" 4
  [ "$(ls "$L/in" | wc -l)" -eq 4 ] || die "storescp did not store 4 objects"
  finish_case dcmtk-store-11112 11112 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 11112, "calling_ae_title": "STORESCU",
     "called_ae_title": "STORESCP", "result": "accepted", "end": "released", "abort_by": null,
     "reject": null, "dimse": {"C-STORE-RQ": 4, "C-STORE-RSP": 4}, "user_identity": null,
     "ip_version": 4, "dimse_status": {"C-STORE-RSP": {"0x0000": 4}}}]'
  write_readme dcmtk-store-11112 "DCMTK C-STORE of 4 objects on port 11112" <<EOF
One association over the veth pair (IPv4): DCMTK storescu sends four synthetic images to
DCMTK storescp on IANA's DICOM port 11112, then releases.

Objects (Explicit VR Little Endian, synthetic): ct_alpha_1.dcm and ct_alpha_2.dcm (CT, 64x64,
SYNTHETIC^ALPHA / SYN0001), mr_bravo_1.dcm (MR, 64x64, SYNTHETIC^BRAVO / SYN0002) and
mr_bravo_big.dcm (MR, 256x256 16-bit, $BIG_SIZE bytes: its data set spans many 16 KiB P-DATA PDUs
and many TCP segments).

## Commands

    # server namespace ($S4)
    storescp -v -aet STORESCP -od <tmp> 11112
    # client namespace ($C4)
    storescu -v -aet STORESCU -aec STORESCP $S4 11112 ct_alpha_1.dcm ct_alpha_2.dcm mr_bravo_1.dcm mr_bravo_big.dcm

capture filter: \`tcp port 11112\`.

## Expected

1 association STORESCU -> STORESCP, accepted (storescu, as by default, proposes 128 presentation
contexts: 64 storage SOP classes, each twice; storescp accepts them all); 4 x C-STORE-RQ with data set, 4 x C-STORE-RSP
status 0x0000; A-RELEASE-RQ / A-RELEASE-RP; TCP FIN.
EOF
}

case_dcmtk_find_move_get() {
  newcase dcmtk-find-move-get
  local db="$WORK/qrdb/PACS"
  mkdir -p "$db" "$L/moved" "$L/got"
  cp "$D/ct_alpha_1.dcm" "$D/ct_alpha_2.dcm" "$D/mr_bravo_1.dcm" "$db/"
  "$DCMQRIDX" "$db" "$db/ct_alpha_1.dcm" "$db/ct_alpha_2.dcm" "$db/mr_bravo_1.dcm"
  cat >"$WORK/dcmqrscp.cfg" <<EOF
# dcmqrscp configuration written by pcaps/generate.sh
NetworkTCPPort  = 40123
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
movescu_dest    = (MOVESCU, $C4, 40124)
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
PACS     $db     RW  (100, 64mb)  ANY
AETable END
EOF
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40123 or tcp port 40124"
  bgrun "$L/dcmqrscp.log" "$NS_S" "$DCMQRSCP" -v -dhl -c "$WORK/dcmqrscp.cfg" 40123; local scp=$LASTPID
  wait_listen "$NS_S" 40123
  inc "$FINDSCU" -v -P -aet FINDSCU -aec PACS "$S4" 40123 \
    -k QueryRetrieveLevel=PATIENT -k PatientName='SYNTHETIC*' -k PatientID -k PatientBirthDate \
    >"$L/findscu-patient.log" 2>&1 || die "findscu -P failed: $(cat "$L/findscu-patient.log")"
  inc "$FINDSCU" -v -S -aet FINDSCU -aec PACS "$S4" 40123 \
    -k QueryRetrieveLevel=STUDY -k PatientID=SYN0001 -k StudyInstanceUID -k StudyDate -k StudyDescription \
    >"$L/findscu-study.log" 2>&1 || die "findscu -S failed: $(cat "$L/findscu-study.log")"
  inc "$MOVESCU" -v -S -aet MOVESCU -aec PACS -aem MOVESCU +P 40124 -od "$L/moved" "$S4" 40123 \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY_ALPHA" \
    >"$L/movescu.log" 2>&1 || die "movescu failed: $(cat "$L/movescu.log")"
  inc "$GETSCU" -v -S -aet GETSCU -aec PACS -od "$L/got" "$S4" 40123 \
    -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$STUDY_BRAVO" \
    >"$L/getscu.log" 2>&1 || die "getscu failed: $(cat "$L/getscu.log")"
  cap_stop; stop "$scp"
  must_grep "Received Final Find Response (Success)" "$L/findscu-patient.log" 1
  must_grep "Received Final Find Response (Success)" "$L/findscu-study.log" 1
  [ "$(ls "$L/moved" | wc -l)" -eq 2 ] || die "movescu did not receive 2 objects: $(cat "$L/movescu.log")"
  [ "$(ls "$L/got" | wc -l)" -eq 1 ] || die "getscu did not receive 1 object: $(cat "$L/getscu.log")"
  local npat nstudy
  npat="$(grep -ac "Find Response: [0-9]* (Pending)" "$L/findscu-patient.log" || true)"
  nstudy="$(grep -ac "Find Response: [0-9]* (Pending)" "$L/findscu-study.log" || true)"
  [ "$npat" -eq 2 ] && [ "$nstudy" -eq 1 ] || die "unexpected C-FIND match counts: patient $npat study $nstudy"
  finish_case dcmtk-find-move-get 40123,40124 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40123, "calling_ae_title": "FINDSCU",
     "called_ae_title": "PACS", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-FIND-RQ": 1, "C-FIND-RSP": 3}, "user_identity": null,
     "dimse_status": {"C-FIND-RSP": {"0x0000": 1, "0xFF00": 2}}},
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40123, "calling_ae_title": "FINDSCU",
     "called_ae_title": "PACS", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-FIND-RQ": 1, "C-FIND-RSP": 2}, "user_identity": null,
     "dimse_status": {"C-FIND-RSP": {"0x0000": 1, "0xFF00": 1}}},
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40123, "calling_ae_title": "MOVESCU",
     "called_ae_title": "PACS", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-MOVE-RQ": 1, "C-MOVE-RSP": 3}, "user_identity": null,
     "dimse_status": {"C-MOVE-RSP": {"0x0000": 1, "0xFF00": 2}}},
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40124, "calling_ae_title": "PACS",
     "called_ae_title": "MOVESCU", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-STORE-RQ": 2, "C-STORE-RSP": 2}, "user_identity": null,
     "dimse_status": {"C-STORE-RSP": {"0x0000": 2}}},
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40123, "calling_ae_title": "GETSCU",
     "called_ae_title": "PACS", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-GET-RQ": 1, "C-GET-RSP": 2, "C-STORE-RQ": 1, "C-STORE-RSP": 1}, "user_identity": null,
     "dimse_status": {"C-GET-RSP": {"0x0000": 1, "0xFF00": 1}, "C-STORE-RSP": {"0x0000": 1}}}]'
  cp "$WORK/dcmqrscp.cfg" "$O/dcmqrscp.cfg"
  sed -i "s#$db#/tmp/dicom-pcaps.XXXXXX/qrdb/PACS#" "$O/dcmqrscp.cfg"
  write_readme dcmtk-find-move-get "DCMTK C-FIND, C-MOVE (with reverse sub-association) and C-GET against dcmqrscp" <<EOF
Five associations over the veth pair (IPv4), all DCMTK. dcmqrscp (AE title PACS, port 40123,
default mode: one forked child per association; DCMTK 3.6.7's \`--single-process\` mode
segfaults after the first association, so it is not used) holds three synthetic objects: ct_alpha_1/2 (SYNTHETIC^ALPHA, SYN0001,
one CT study) and mr_bravo_1 (SYNTHETIC^BRAVO, SYN0002, one MR study). Its configuration is
dcmqrscp.cfg beside this file (storage path shown as a placeholder). The move destination
MOVESCU is in its host table as ($C4, port 40124), where movescu listens itself.

## Commands (in this order)

    # server namespace ($S4)
    dcmqridx <db>/PACS ct_alpha_1.dcm ct_alpha_2.dcm mr_bravo_1.dcm     # before the capture
    dcmqrscp -v -dhl -c dcmqrscp.cfg 40123
    # client namespace ($C4)
    findscu -v -P -aet FINDSCU -aec PACS $S4 40123 -k QueryRetrieveLevel=PATIENT -k PatientName='SYNTHETIC*' -k PatientID -k PatientBirthDate
    findscu -v -S -aet FINDSCU -aec PACS $S4 40123 -k QueryRetrieveLevel=STUDY -k PatientID=SYN0001 -k StudyInstanceUID -k StudyDate -k StudyDescription
    movescu -v -S -aet MOVESCU -aec PACS -aem MOVESCU +P 40124 -od <tmp> $S4 40123 -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=$STUDY_ALPHA
    getscu  -v -S -aet GETSCU  -aec PACS -od <tmp> $S4 40123 -k QueryRetrieveLevel=STUDY -k StudyInstanceUID=$STUDY_BRAVO

capture filter: \`tcp port 40123 or tcp port 40124\`.

## Expected (association order = TCP stream order)

0. FINDSCU -> PACS, Patient Root C-FIND (PATIENT level, PatientName SYNTHETIC*): 1 C-FIND-RQ,
   2 pending C-FIND-RSP (0xFF00, one per synthetic patient) + final 0x0000; released.
1. FINDSCU -> PACS, Study Root C-FIND (STUDY level, PatientID SYN0001): 1 C-FIND-RQ, 1 pending
   + final 0x0000; released.
2. MOVESCU -> PACS, Study Root C-MOVE of study SYNTHETIC^ALPHA, move destination MOVESCU:
   1 C-MOVE-RQ, 2 pending C-MOVE-RSP (0xFF00) + final 0x0000; released after the sub-association.
3. the C-MOVE sub-association, opened by dcmqrscp from its own ephemeral port to movescu's
   listener $C4:40124: PACS -> MOVESCU, 2 C-STORE-RQ / C-STORE-RSP 0x0000; released. It
   overlaps association 2 in time.
4. GETSCU -> PACS, Study Root C-GET of study SYNTHETIC^BRAVO (getscu proposes storage SOP
   classes with SCP role selection, item 0x54): 1 C-GET-RQ, C-STORE-RQ/RSP on the same
   association (dcmqrscp is the requestor of that C-STORE), 1 pending + final C-GET-RSP; released.
EOF
}

case_dcmtk_reject_called_ae() {
  newcase dcmtk-reject-called-ae
  local db="$WORK/qrdb-reject/PACS"
  mkdir -p "$db"
  cat >"$WORK/dcmqrscp-reject.cfg" <<EOF
NetworkTCPPort  = 40123
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
PACS     $db     RW  (100, 64mb)  ANY
AETable END
EOF
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40123"
  bgrun "$L/dcmqrscp.log" "$NS_S" "$DCMQRSCP" -v -dhl -c "$WORK/dcmqrscp-reject.cfg" 40123; local scp=$LASTPID
  wait_listen "$NS_S" 40123
  if inc "$ECHOSCU" -v -aet ECHOSCU -aec WRONG-AE "$S4" 40123 >"$L/echoscu.log" 2>&1; then
    die "echoscu with a wrong called AE title was not rejected"
  fi
  cap_stop; stop "$scp"
  must_grep "Association Rejected" "$L/echoscu.log"
  must_grep "Called AE Title Not Recognized" "$L/echoscu.log"
  finish_case dcmtk-reject-called-ae 40123 0x01,0x03 '[
    {"_impl": ["dcmtk", null], "requestor_port_is_ephemeral": true, "acceptor_port": 40123, "calling_ae_title": "ECHOSCU",
     "called_ae_title": "WRONG-AE", "result": "rejected", "end": "connection-closed", "abort_by": null,
     "reject": {"result": 1, "source": 1, "reason": 7}, "dimse": {}, "user_identity": null,
     "ip_version": 4}]'
  write_readme dcmtk-reject-called-ae "A-ASSOCIATE-RJ, called AE title not recognized" <<EOF
One association attempt over the veth pair (IPv4): DCMTK echoscu asks for called AE title
WRONG-AE; DCMTK dcmqrscp only knows the AE title PACS and checks the called AE title, so it
answers A-ASSOCIATE-RJ result 1 (rejected-permanent), source 1 (service user), reason 7
(called AE title not recognized). Then the TCP connection closes. No P-DATA.

## Commands

    # server namespace ($S4), AETable: "PACS <db> RW (100, 64mb) ANY"
    dcmqrscp -v -dhl -c dcmqrscp.cfg 40123
    # client namespace ($C4)
    echoscu -v -aet ECHOSCU -aec WRONG-AE $S4 40123     # exits non-zero: rejected

capture filter: \`tcp port 40123\`.

## Expected

1 association request ECHOSCU -> WRONG-AE; A-ASSOCIATE-RJ (1, 1, 7); no DIMSE; TCP FIN.
In expected.json: result "rejected", end "connection-closed".
EOF
}

case_abort_by_requestor() {
  newcase abort-by-requestor
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40410"
  bgrun "$L/storescp.log" "$NS_S" "$STORESCP" -v -aet ABORTSCP 40410; local scp=$LASTPID
  wait_listen "$NS_S" 40410
  inc "$ECHOSCU" -v --abort -aet ECHOSCU -aec ABORTSCP "$S4" 40410 >"$L/echoscu.log" 2>&1 \
    || die "echoscu --abort failed: $(cat "$L/echoscu.log")"
  inc python3 "$WORK/py/pyscu.py" --host "$S4" --port 40410 --aet PYABORTSCU --aec ABORTSCP --echo --end abort \
    >"$L/pyscu.log" 2>&1 || die "pynetdicom SCU failed: $(cat "$L/pyscu.log")"
  cap_stop; stop "$scp"
  must_grep "Aborting Association" "$L/echoscu.log"
  must_grep "ASSOCIATION aborted by us" "$L/pyscu.log"
  finish_case abort-by-requestor 40410 0x01,0x02,0x04,0x07 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40410, "calling_ae_title": "ECHOSCU",
     "called_ae_title": "ABORTSCP", "result": "accepted", "end": "aborted", "abort_by": "requestor",
     "reject": null, "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}, "user_identity": null,
     "abort": {"source": 0, "reason": 0}},
    {"_impl": ["pynetdicom", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40410, "calling_ae_title": "PYABORTSCU",
     "called_ae_title": "ABORTSCP", "result": "accepted", "end": "aborted", "abort_by": "requestor",
     "reject": null, "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}, "user_identity": null,
     "abort": {"source": 0, "reason": 0}}]'
  write_readme abort-by-requestor "A-ABORT sent by the requestor (DCMTK and pynetdicom)" <<EOF
Two associations over the veth pair (IPv4) to DCMTK storescp (AE ABORTSCP, port 40410). Each
requestor does one successful C-ECHO and then, instead of releasing, sends A-ABORT
(source 0 service user, reason 0) and closes the connection.

## Commands

    # server namespace ($S4)
    storescp -v -aet ABORTSCP 40410
    # client namespace ($C4)
    echoscu -v --abort -aet ECHOSCU -aec ABORTSCP $S4 40410
    python3 pyscu.py --host $S4 --port 40410 --aet PYABORTSCU --aec ABORTSCP --echo --end abort
        # pynetdicom: associate, send_c_echo(), assoc.abort()

pyscu.py is written by generate.sh (heredoc). capture filter: \`tcp port 40410\`.

## Expected

0. ECHOSCU (DCMTK) -> ABORTSCP: C-ECHO-RQ/RSP 0x0000, A-ABORT from the requestor.
1. PYABORTSCU (pynetdicom) -> ABORTSCP: C-ECHO-RQ/RSP 0x0000, A-ABORT from the requestor.
No A-RELEASE PDU in the capture.
EOF
}

case_abort_by_acceptor() {
  newcase abort-by-acceptor
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40420 or tcp port 40421"
  bgrun "$L/storescp.log" "$NS_S" "$STORESCP" -v --abort-after -aet ABORTSCP 40420; local scp1=$LASTPID
  bgrun "$L/pyscp.log" "$NS_S" python3 "$WORK/py/pyscp.py" --host "$S4" --port 40421 --aet PYABORTSCP --abort-on-echo
  local scp2=$LASTPID
  wait_listen "$NS_S" 40420; wait_listen "$NS_S" 40421
  if inc "$STORESCU" -v -aet STORESCU -aec ABORTSCP "$S4" 40420 "$D/ct_alpha_1.dcm" >"$L/storescu.log" 2>&1; then
    echo "note: storescu exited 0 although the acceptor aborted" >>"$L/storescu.log"
  fi
  inc python3 "$WORK/py/pyscu.py" --host "$S4" --port 40421 --aet PYECHOSCU --aec PYABORTSCP --echo \
    --expect-peer-abort >"$L/pyscu.log" 2>&1 || die "pynetdicom SCU failed: $(cat "$L/pyscu.log")"
  cap_stop; stop "$scp1"; stop "$scp2"
  must_grep "ASSOCIATION aborted by peer" "$L/pyscu.log"
  must_grep "aborting association" "$L/pyscp.log"
  must_grep "Abort" "$L/storescu.log"
  finish_case abort-by-acceptor 40420,40421 0x01,0x02,0x04,0x07 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40420, "calling_ae_title": "STORESCU",
     "called_ae_title": "ABORTSCP", "result": "accepted", "end": "aborted", "abort_by": "acceptor",
     "reject": null, "dimse": {"C-STORE-RQ": 1}, "user_identity": null},
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 40421, "calling_ae_title": "PYECHOSCU",
     "called_ae_title": "PYABORTSCP", "result": "accepted", "end": "aborted", "abort_by": "acceptor",
     "reject": null, "dimse": {"C-ECHO-RQ": 1}, "user_identity": null,
     "abort": {"source": 0, "reason": 0}}]'
  write_readme abort-by-acceptor "A-ABORT sent by the acceptor (DCMTK and pynetdicom)" <<EOF
Two associations over the veth pair (IPv4), each ended by an A-ABORT from the acceptor.

## Commands

    # server namespace ($S4)
    storescp -v --abort-after -aet ABORTSCP 40420      # DCMTK: abort after receiving a C-STORE-RQ, before the RSP
    python3 pyscp.py --host $S4 --port 40421 --aet PYABORTSCP --abort-on-echo
        # pynetdicom AE whose EVT_C_ECHO handler calls event.assoc.abort()
    # client namespace ($C4)
    storescu -v -aet STORESCU -aec ABORTSCP $S4 40420 ct_alpha_1.dcm   # exits non-zero
    python3 pyscu.py --host $S4 --port 40421 --aet PYECHOSCU --aec PYABORTSCP --echo

pyscp.py / pyscu.py are written by generate.sh (heredocs). capture filter:
\`tcp port 40420 or tcp port 40421\`.

## Expected

0. STORESCU (DCMTK) -> ABORTSCP (DCMTK storescp --abort-after): accepted, one C-STORE-RQ with
   its data set (synthetic CT, SYNTHETIC^ALPHA), no C-STORE-RSP, A-ABORT from the acceptor.
1. PYECHOSCU (pynetdicom) -> PYABORTSCP (pynetdicom): accepted, C-ECHO-RQ, no C-ECHO-RSP,
   A-ABORT (source 0, reason 0) from the acceptor.
No A-RELEASE PDU in the capture. Both A-ABORTs carry source 0 (service user), reason 0.
EOF
}

case_killed_mid_transfer() {
  newcase killed-mid-transfer
  mkdir -p "$L/in"
  # slow link and small socket buffers on the client side, so that the kill lands mid
  # transfer and the kernel has little queued data left to flush after it
  # (netem if the kernel has it, else a token bucket filter)
  local shaper="netem rate 2mbit limit 1000"
  if ! inc tc qdisc add dev "$IF_C" root netem rate 2mbit limit 1000 2>/dev/null; then
    shaper="tbf rate 2mbit burst 16kb latency 500ms"
    inc tc qdisc add dev "$IF_C" root tbf rate 2mbit burst 16kb latency 500ms \
      || die "cannot rate limit the veth (neither netem nor tbf qdisc available)"
  fi
  inc sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536" net.ipv4.tcp_limit_output_bytes=65536
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40500 or tcp port 40501"
  bgrun "$L/storescp.log" "$NS_S" "$STORESCP" -v -aet STORESCP -od "$L/in" 40500; local scp1=$LASTPID
  bgrun "$L/pyscp.log" "$NS_S" python3 "$WORK/py/pyscp.py" --host "$S4" --port 40501 --aet PYSTORESCP
  local scp2=$LASTPID
  wait_listen "$NS_S" 40500; wait_listen "$NS_S" 40501
  local port aec scu i
  for port in 40500 40501; do
    if [ "$port" = 40500 ]; then aec=STORESCP; else aec=PYSTORESCP; fi
    bgrun "$L/storescu-$port.log" "$NS_C" "$STORESCU" -v -aet KILLEDSCU -aec "$aec" "$S4" "$port" "$D/ct_charlie_huge.dcm"
    scu=$LASTPID
    # wait until the C-STORE data is flowing, then SIGKILL the sender
    for i in $(seq 1 100); do
      grep -q "Sending Store Request" "$L/storescu-$port.log" && break; sleep 0.05
    done
    sleep 1.2
    kill -0 "$scu" 2>/dev/null || die "storescu finished before it could be killed"
    kill -KILL "$scu"; wait "$scu" 2>/dev/null || true
    sleep 1.5
  done
  cap_stop; stop "$scp1"; stop "$scp2"
  inc tc qdisc del dev "$IF_C" root
  inc sysctl -qw net.ipv4.tcp_wmem="4096 16384 4194304" net.ipv4.tcp_limit_output_bytes=1048576
  [ "$(ls "$L/in" | wc -l)" -eq 0 ] || die "storescp stored the object: the kill came too late"
  must_grep "DUL network closed" "$L/storescp.log"
  if grep -q "C-STORE-RQ" "$L/pyscp.log"; then die "pynetdicom SCP received the whole object"; fi
  local size
  size="$(stat -c %s "$O/capture.pcap")"
  [ "$size" -lt 1572864 ] || die "killed-mid-transfer capture too big ($size bytes)"
  finish_case killed-mid-transfer 40500,40501 0x01,0x02,0x04 '[
    {"_impl": ["dcmtk", "dcmtk"], "requestor_port_is_ephemeral": true, "acceptor_port": 40500,
     "calling_ae_title": "KILLEDSCU", "called_ae_title": "STORESCP", "result": "accepted",
     "end": "aborted", "abort_by": "acceptor", "reject": null, "dimse": {"C-STORE-RQ": 1},
     "user_identity": null, "tcp_closed_first_by": "requestor", "tcp_end": "rst"},
    {"_impl": ["dcmtk", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 40501,
     "calling_ae_title": "KILLEDSCU", "called_ae_title": "PYSTORESCP", "result": "accepted",
     "end": "connection-closed", "abort_by": null, "reject": null, "dimse": {"C-STORE-RQ": 1},
     "user_identity": null, "tcp_closed_first_by": "requestor", "tcp_end": "fin"}]'
  write_readme killed-mid-transfer "requestor killed (SIGKILL) in the middle of a C-STORE" <<EOF
Two associations over the veth pair (IPv4). Each time DCMTK storescu starts sending a 4 MiB
synthetic CT (ct_charlie_huge.dcm, 2048x1024 16-bit, SYNTHETIC^CHARLIE / SYN0003) and is
killed with SIGKILL about 1.2 s into the data set; no release, no A-ABORT from the requestor.
The kernel closes the dead process's socket with a FIN once its (small) send queue is out;
the last P-DATA-TF PDU is cut short (its declared PDU length runs past the end of the
stream) and the C-STORE-RQ data set never completes. What follows depends on the acceptor:

0. KILLEDSCU -> STORESCP (DCMTK storescp, port 40500): storescp reads the FIN in the middle
   of the PDU ("DIMSE Read PDV failed", "DUL network closed") and then still *sends an
   A-ABORT* into the half-closed connection; the dead requestor's kernel answers it with a
   TCP RST. So the association does end with an A-ABORT from the acceptor, after the
   requestor's FIN (expected.json: end "aborted", abort_by "acceptor", abort source 0
   reason 0, tcp_end "rst").
1. KILLEDSCU -> PYSTORESCP (pynetdicom, port 40501): pynetdicom just closes its side (FIN):
   no A-ABORT, no release, TCP FIN both ways (end "connection-closed").

The client side of the veth is rate limited to 2 Mbit/s
(\`tc qdisc add dev $IF_C root $shaper\`) and its socket buffers are small (tcp_wmem max
64 KiB, tcp_limit_output_bytes 64 KiB) so that the kill lands mid transfer and the capture
stays small. Exact byte and packet counts vary from run to run (timing).

## Commands

    # client namespace: tc qdisc add dev $IF_C root $shaper
    #                   sysctl net.ipv4.tcp_wmem="4096 16384 65536" net.ipv4.tcp_limit_output_bytes=65536
    # server namespace ($S4)
    storescp -v -aet STORESCP -od <tmp> 40500
    python3 pyscp.py --host $S4 --port 40501 --aet PYSTORESCP
    # client namespace ($C4), for each of (40500, STORESCP) and (40501, PYSTORESCP):
    storescu -v -aet KILLEDSCU -aec <AE> $S4 <port> ct_charlie_huge.dcm &
    sleep 1.2; kill -KILL <storescu pid>

capture filter: \`tcp port 40500 or tcp port 40501\`.
EOF
}

case_pynetdicom_user_identity() {
  newcase pynetdicom-user-identity
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40600"
  bgrun "$L/pyscp.log" "$NS_S" python3 "$WORK/py/pyscp.py" --host "$S4" --port 40600 --aet UIDSCP; local scp=$LASTPID
  wait_listen "$NS_S" 40600
  inc python3 "$WORK/py/pyscu.py" --host "$S4" --port 40600 --aet UIDSCU2 --aec UIDSCP --echo \
    --uid-type 2 --username synth_user --passcode CANARY-PASSCODE-7f3a >"$L/pyscu2.log" 2>&1 \
    || die "user identity type 2 SCU failed: $(cat "$L/pyscu2.log")"
  inc python3 "$WORK/py/pyscu.py" --host "$S4" --port 40600 --aet UIDSCU1 --aec UIDSCP --echo \
    --uid-type 1 --username synth_user >"$L/pyscu1.log" 2>&1 \
    || die "user identity type 1 SCU failed: $(cat "$L/pyscu1.log")"
  cap_stop; stop "$scp"
  must_grep "user identity type 2 username b'synth_user' passcode_present True" "$L/pyscp.log" 1
  must_grep "user identity type 1 username b'synth_user' passcode_present False" "$L/pyscp.log" 1
  # the canary must be in the capture (that is what it is for) and nowhere else in pcaps/
  grep -aq "CANARY-PASSCODE-7f3a" "$O/capture.pcap" || die "passcode canary not found in the capture"
  finish_case pynetdicom-user-identity 40600 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 40600, "calling_ae_title": "UIDSCU2",
     "called_ae_title": "UIDSCP", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1},
     "user_identity": {"type": 2, "username": "synth_user", "passcode_present": true}},
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 40600, "calling_ae_title": "UIDSCU1",
     "called_ae_title": "UIDSCP", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1},
     "user_identity": {"type": 1, "username": "synth_user", "passcode_present": false}}]'
  write_readme pynetdicom-user-identity "user identity negotiation (types 2 and 1), pynetdicom" <<EOF
Two associations over the veth pair (IPv4), pynetdicom on both ends. The A-ASSOCIATE-RQ
carries a User Identity sub-item (0x58) in its user information item:

0. UIDSCU2 -> UIDSCP: type 2 (username + passcode), username \`synth_user\`, passcode
   \`CANARY-PASSCODE-7f3a\` (a canary: a sensor must never log, store or export it; it
   appears in this capture and nowhere else in the captures), positive response not requested.
1. UIDSCU1 -> UIDSCP: type 1 (username only), username \`synth_user\`, no secondary field.

The acceptor's EVT_USER_ID handler accepts both (no 0x59 response item, since none was
requested). Each association does one C-ECHO (0x0000) and is released.

## Commands

    # server namespace ($S4)
    python3 pyscp.py --host $S4 --port 40600 --aet UIDSCP
    # client namespace ($C4)
    python3 pyscu.py --host $S4 --port 40600 --aet UIDSCU2 --aec UIDSCP --echo --uid-type 2 --username synth_user --passcode CANARY-PASSCODE-7f3a
    python3 pyscu.py --host $S4 --port 40600 --aet UIDSCU1 --aec UIDSCP --echo --uid-type 1 --username synth_user

pyscp.py / pyscu.py are written by generate.sh (heredocs). capture filter: \`tcp port 40600\`.
EOF
}

case_pynetdicom_ipv6() {
  newcase pynetdicom-ipv6
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 11112"
  bgrun "$L/pyscp.log" "$NS_S" python3 "$WORK/py/pyscp.py" --host "$S6" --port 11112 --aet PYSCP6; local scp=$LASTPID
  wait_listen "$NS_S" 11112
  # DCMTK 3.6.7 cannot do it: `echoscu fd00:10::2 11112` fails with
  # "Attempt to connect to unknown host" (its network layer is IPv4 only); recorded in the README.
  if inc "$ECHOSCU" -aet ECHOSCU -aec PYSCP6 "$S6" 11112 >"$L/echoscu-v6.log" 2>&1; then
    echo "note: DCMTK echoscu managed IPv6" >>"$L/echoscu-v6.log"
  fi
  inc python3 "$WORK/py/pyscu.py" --host "$S6" --port 11112 --aet PYSCU6 --aec PYSCP6 --echo \
    --store "$D/ct_alpha_1.dcm" "$D/mr_bravo_big.dcm" >"$L/pyscu.log" 2>&1 \
    || die "pynetdicom IPv6 SCU failed: $(cat "$L/pyscu.log")"
  cap_stop; stop "$scp"
  local dcmtk_v6="no (DCMTK 3.6.7: $(head -1 "$L/echoscu-v6.log" | sed 's/^F: //'))"
  grep -q "managed IPv6" "$L/echoscu-v6.log" && dcmtk_v6="yes"
  must_grep "C-STORE .* status 0x0000" "$L/pyscu.log" 2
  local spec='[
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 11112, "calling_ae_title": "PYSCU6",
     "called_ae_title": "PYSCP6", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1, "C-STORE-RQ": 2, "C-STORE-RSP": 2}, "user_identity": null,
     "ip_version": 6, "requestor_ip": "fd00:10::1", "acceptor_ip": "fd00:10::2"}]'
  if [ "$dcmtk_v6" = yes ]; then die "DCMTK did IPv6 after all: update the pynetdicom-ipv6 spec"; fi
  finish_case pynetdicom-ipv6 11112 0x01,0x02,0x04,0x05,0x06 "$spec"
  write_readme pynetdicom-ipv6 "DICOM over IPv6 (pynetdicom)" <<EOF
One association over the veth pair, **IPv6** ($C6 -> [$S6]:11112), pynetdicom on both ends:
C-ECHO, then C-STORE of ct_alpha_1.dcm (CT 64x64) and mr_bravo_big.dcm (MR 256x256, over 64 KiB),
all status 0x0000, then release.

DCMTK 3.6.7 cannot be used here: its network layer resolves hosts with IPv4 only, and
\`echoscu $S6 11112\` fails with "Attempt to connect to unknown host" (no connection is made,
so nothing of it is in the capture). DCMTK IPv6 support: $dcmtk_v6.

## Commands

    # server namespace
    python3 pyscp.py --host $S6 --port 11112 --aet PYSCP6
    # client namespace
    python3 pyscu.py --host $S6 --port 11112 --aet PYSCU6 --aec PYSCP6 --echo --store ct_alpha_1.dcm mr_bravo_big.dcm

pyscp.py / pyscu.py are written by generate.sh (heredocs). capture filter: \`tcp port 11112\`.

## Expected

1 association PYSCU6 -> PYSCP6 over IPv6, accepted; C-ECHO-RQ/RSP, 2 x C-STORE-RQ/RSP, all
0x0000; A-RELEASE-RQ/RP; TCP FIN.
EOF
}

case_pynetdicom_store_loopback() {
  newcase pynetdicom-store-loopback
  cap_start "$NS_S" lo "$O/capture.pcap" "tcp port 41104"
  bgrun "$L/pyscp.log" "$NS_S" python3 "$WORK/py/pyscp.py" --host 127.0.0.1 --port 41104 --aet PYSTORESCP; local scp=$LASTPID
  wait_listen "$NS_S" 41104
  ins python3 "$WORK/py/pyscu.py" --host 127.0.0.1 --port 41104 --aet PYSTORESCU --aec PYSTORESCP --echo \
    --store "$D/ct_alpha_1.dcm" "$D/ct_alpha_2.dcm" "$D/mr_bravo_1.dcm" "$D/mr_bravo_big.dcm" >"$L/pyscu.log" 2>&1 \
    || die "pynetdicom loopback SCU failed: $(cat "$L/pyscu.log")"
  cap_stop; stop "$scp"
  must_grep "C-STORE .* status 0x0000" "$L/pyscu.log" 4
  finish_case pynetdicom-store-loopback 41104 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 41104, "calling_ae_title": "PYSTORESCU",
     "called_ae_title": "PYSTORESCP", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1, "C-STORE-RQ": 4, "C-STORE-RSP": 4}, "user_identity": null,
     "ip_version": 4, "requestor_ip": "127.0.0.1", "acceptor_ip": "127.0.0.1",
     "dimse_status": {"C-ECHO-RSP": {"0x0000": 1}, "C-STORE-RSP": {"0x0000": 4}}}]'
  write_readme pynetdicom-store-loopback "pynetdicom C-ECHO + 4 x C-STORE on loopback" <<EOF
One association on the loopback interface (127.0.0.1 -> 127.0.0.1:41104; the \`lo\` of the
server namespace, so no other traffic of this machine can mix in). pynetdicom on both ends:
C-ECHO, then C-STORE of ct_alpha_1, ct_alpha_2 (CT 64x64, SYNTHETIC^ALPHA), mr_bravo_1 (MR
64x64) and mr_bravo_big (MR 256x256, over 64 KiB, SYNTHETIC^BRAVO), all 0x0000, then release.
Loopback has a 64 KiB MTU, so TCP segments here are much larger than on the veth captures.

## Commands

    # server namespace, loopback
    python3 pyscp.py --host 127.0.0.1 --port 41104 --aet PYSTORESCP
    python3 pyscu.py --host 127.0.0.1 --port 41104 --aet PYSTORESCU --aec PYSTORESCP --echo --store ct_alpha_1.dcm ct_alpha_2.dcm mr_bravo_1.dcm mr_bravo_big.dcm

pyscp.py / pyscu.py are written by generate.sh (heredocs). capture filter: \`tcp port 41104\` on \`lo\`.

## Expected

1 association PYSTORESCU -> PYSTORESCP, accepted; C-ECHO-RQ/RSP; 4 x C-STORE-RQ/RSP 0x0000;
A-RELEASE-RQ/RP; TCP FIN.
EOF
}

case_pynetdicom_128_contexts() {
  newcase pynetdicom-128-contexts
  cap_start "$NS_S" "$IF_S" "$O/capture.pcap" "tcp port 40128"
  bgrun "$L/scp.log" "$NS_S" python3 "$HERE/pynetdicom_128.py" scp "$S4" 40128; local scp=$LASTPID
  wait_listen "$NS_S" 40128
  inc python3 "$HERE/pynetdicom_128.py" scu "$S4" 40128 >"$L/scu.log" 2>&1 \
    || die "128-context SCU failed: $(cat "$L/scu.log")"
  cap_stop; stop "$scp"
  must_grep "accepted contexts 128 echo status 0x0000" "$L/scu.log" 1
  finish_case pynetdicom-128-contexts 40128 0x01,0x02,0x04,0x05,0x06 '[
    {"_impl": ["pynetdicom", "pynetdicom"], "requestor_port_is_ephemeral": true, "acceptor_port": 40128, "calling_ae_title": "MODALITY128",
     "called_ae_title": "ARCHIVE", "result": "accepted", "end": "released", "abort_by": null, "reject": null,
     "dimse": {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}, "user_identity": null, "ip_version": 4,
     "dimse_status": {"C-ECHO-RSP": {"0x0000": 1}}, "presentation_contexts": {"proposed": 128, "accepted": 128}}]'
  write_readme pynetdicom-128-contexts "pynetdicom A-ASSOCIATE-RQ with 128 presentation contexts" <<EOT
One association over the veth pair (IPv4), pynetdicom on both ends: MODALITY128 proposes 128
presentation contexts (Verification and the first 127 storage SOP classes of pynetdicom's
AllStoragePresentationContexts, each with pynetdicom's default transfer syntaxes), the most
an A-ASSOCIATE-RQ can carry; ARCHIVE accepts all 128. One C-ECHO (0x0000), release. The
A-ASSOCIATE-RQ spans a dozen TCP segments. bench/live_flood.py floods the sensor with copies
of this association between 20,000 client and 20,000 server addresses.

## Commands

    # server namespace ($S4)
    python3 pcaps/pynetdicom_128.py scp $S4 40128
    # client namespace ($C4)
    python3 pcaps/pynetdicom_128.py scu $S4 40128

capture filter: \`tcp port 40128\`.

## Expected

1 association MODALITY128 -> ARCHIVE, accepted, 128 contexts proposed and accepted;
C-ECHO-RQ/RSP; A-RELEASE-RQ/RP; TCP FIN.
EOT
}

# ---------------------------------------------------------------- run
for c in "${CASES[@]}"; do
  "case_${c//-/_}"
done

# canary check: the passcode appears only in the user identity case
for c in "${CASES[@]}"; do
  if [ "$c" != pynetdicom-user-identity ] && grep -raq "CANARY-PASSCODE" "$WORK/out/$c"; then
    die "passcode canary leaked into case $c"
  fi
done
if grep -q "CANARY-PASSCODE" "$WORK/out/pynetdicom-user-identity/expected.json" 2>/dev/null; then
  die "passcode written into expected.json"
fi

# install the results (only now: a failed run leaves the previous captures as they were)
for c in "${CASES[@]}"; do
  rm -f "$WORK/out/$c/capture.pcap.tcpdump.log"
  rm -rf "${HERE:?}/$c"
  mv "$WORK/out/$c" "$HERE/$c"
  chmod 0644 "$HERE/$c"/*
done
log "done"
du -a "$HERE" | sort -k2

# derived edge-case captures (pcaps/derived-*/), rewritten from the captures above
python3 "$(dirname "$0")/derive.py"
