"""`dicom-sensor read` over the derived edge-case captures (pcaps/derived-*/, made by
pcaps/derive.py from the real-peer captures).

Three oracles: each case's expected.json (copied from the source case's tshark- and
peer-log-derived expectations, or computed by derive.py's own PDU decoder where bytes were
removed); the sensor's own records for the untouched source capture (a re-segmented,
reordered, re-tagged or re-encapsulated capture must give the same records, field by field,
but for addresses, ports, timestamps and VLAN); and tshark on the derived capture itself.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
CASES = sorted(p.parent for p in PCAPS.glob("derived-*/expected.json"))
IDS = [c.name.removeprefix("derived-") for c in CASES]

# Derived case -> the real captures it was made from, when the DICOM byte streams are intact.
SAME_AS_SOURCE = {
    "split-pdus": ["dcmtk-store-11112"],
    "reordered-retransmitted": ["dcmtk-store-11112"],
    "ack-before-data": ["dcmtk-find-move-get"],
    "gap": ["dcmtk-store-11112"],  # but for the gap's own fields
    "vlan": ["dcmtk-find-move-get"],
    "qinq": ["abort-by-acceptor"],
    "ipv6-vlan": ["pynetdicom-ipv6"],
    "sll": ["dcmtk-store-11112"],
    "sll2": ["dcmtk-find-move-get"],
    "pcapng": ["dcmtk-find-move-get"],
    "parallel": [
        "dcmtk-find-move-get",
        "dcmtk-echo-104",
        "dcmtk-reject-called-ae",
        "abort-by-acceptor",
    ],
}
# What the gap case is allowed to differ in from its source.
GAP_FIELDS = ("gaps", "missing_bytes", "anomalies", "anomaly_counts")

Record = dict[str, Any]


def capture_of(case: Path) -> Path:
    return next(case.glob("capture.pcap*"))


def read_capture(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str] | None = None
) -> tuple[list[Record], list[Record], str]:
    """Run `read` (with its stderr summary) and return (records, events, stderr)."""
    out = tmp_path / capture.parent.name
    out.mkdir(parents=True, exist_ok=True)
    assoc, events = out / "assoc.jsonl", out / "events.jsonl"
    argv = ["read", str(capture), "--associations", str(assoc), "--events", str(events)]
    rc = main([*argv, "--no-progress"] if capsys is not None else [*argv, "-q"])
    err = capsys.readouterr().err if capsys is not None else ""
    assert rc == 0, err
    records = [json.loads(line) for line in assoc.read_text().splitlines()]
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    return records, evs, err


def _key(rec: Record) -> tuple[str, str, int, str, str, str]:
    return (
        rec["calling_ae_title"] or "",
        rec["called_ae_title"] or "",
        rec["acceptor_port"],
        rec["result"],
        json.dumps(rec["dimse"], sort_keys=True),
        rec["requestor_ip"],
    )


CORE = (
    "calling_ae_title",
    "called_ae_title",
    "acceptor_port",
    "requestor_ip",
    "acceptor_ip",
    "result",
    "end",
    "abort_by",
    "reject",
    "dimse",
    "user_identity",
    "detected_by",
    "anomalies",
)


def _ours(record: Record) -> Record:
    dicom = record["dicom"]
    abort = dicom.get("abort")
    reject = dicom.get("reject")
    identity = dicom.get("user_identity")
    return {
        "calling_ae_title": dicom["calling_ae_title"],
        "called_ae_title": dicom["called_ae_title"],
        "acceptor_port": record["destination"]["port"],
        "requestor_ip": record["source"]["ip"],
        "acceptor_ip": record["destination"]["ip"],
        "result": dicom["association"]["result"],
        "end": dicom["association"]["end"],
        "abort_by": abort["by"] if abort else None,
        "reject": {k: reject[k] for k in ("result", "source", "reason")} if reject else None,
        "dimse": dicom["dimse"],
        "user_identity": (
            {k: identity.get(k) for k in ("type", "username", "passcode_present")}
            if identity
            else None
        ),
        "detected_by": dicom["detected_by"],
        "anomalies": dicom.get("anomaly_counts", {}),
        "vlan_id": record["network"].get("vlan", {}).get("id"),
        "gaps": dicom.get("gaps", 0),
        "missing_bytes": dicom.get("missing_bytes", 0),
    }


def _theirs(exp: Record, keys: tuple[str, ...]) -> Record:
    out = {k: exp.get(k) for k in CORE}
    out["detected_by"] = exp.get("detected_by", "associate-rq")
    for k in keys:
        out[k] = exp.get(k, 0 if k in ("gaps", "missing_bytes") else None)
    return out


def _expected(case: Path) -> list[Record]:
    return json.loads((case / "expected.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_records_match_expected(case: Path, tmp_path: Path) -> None:
    records, _, _ = read_capture(capture_of(case), tmp_path)
    keys = ("vlan_id", "gaps", "missing_bytes")
    ours = sorted(
        ({k: v for k, v in _ours(r).items() if k in CORE + keys} for r in records), key=_key
    )
    theirs = sorted((_theirs(e, keys) for e in _expected(case)), key=_key)
    assert ours == theirs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dimse_statuses_match_expected(case: Path, tmp_path: Path) -> None:
    """Each response's status counts, where expected.json lists them."""
    records, _, _ = read_capture(capture_of(case), tmp_path)
    ours = {_key(_ours(r)): r["dicom"].get("dimse_status", {}) for r in records}
    for exp in _expected(case):
        got = ours.get(_key(_theirs(exp, ())))
        if got is None:
            continue  # test_records_match_expected reports the missing association
        total: Counter[str] = Counter()
        for name, by_status in exp.get("dimse_status", {}).items():
            total[name] += sum(by_status.values())
        # The sensor counts statuses by class (success, pending, ...), tshark by code.
        assert sum(got.values()) == sum(total.values())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_anomaly_events_match_records(case: Path, tmp_path: Path) -> None:
    """One anomaly event per anomaly the records count (and none for the clean cases)."""
    records, events, _ = read_capture(capture_of(case), tmp_path)
    in_events = Counter(
        e["dicom"]["anomaly"]["reason"] for e in events if e["event"]["dataset"] == "dicom.anomaly"
    )
    expected: Counter[str] = Counter()
    for exp in _expected(case):
        expected.update(exp.get("anomalies") or {})
    assert in_events == expected
    in_records: Counter[str] = Counter()
    for r in records:
        in_records.update(r["dicom"].get("anomaly_counts", {}))
    assert in_records == expected


def test_gap_event_names_the_requestor(tmp_path: Path) -> None:
    records, events, _ = read_capture(capture_of(PCAPS / "derived-gap"), tmp_path)
    gaps = [
        e
        for e in events
        if e["event"]["dataset"] == "dicom.anomaly" and e["dicom"]["anomaly"]["reason"] == "gap"
    ]
    assert len(gaps) == 1
    assert gaps[0]["dicom"]["anomaly"]["sent_by"] == "requestor"
    assert gaps[0]["dicom"]["calling_ae_title"] == "STORESCU"
    (exp,) = _expected(PCAPS / "derived-gap")
    assert f"{exp['missing_bytes']} bytes lost" in gaps[0]["dicom"]["anomaly"]["detail"]
    (record,) = records
    assert record["dicom"]["gaps"] == 1
    assert record["dicom"]["missing_bytes"] == exp["missing_bytes"]


# --------------------------------------------------------------------------- vs. the source


def _comparable(record: Record, drop: tuple[str, ...] = ()) -> Record:
    """A record without what a rewrite may change: addresses, ports, times, VLAN, and what is
    derived from them (the Community ID, related addresses, the content hash)."""
    out = json.loads(json.dumps(record))
    for key in ("@timestamp", "source", "destination", "related"):
        out.pop(key, None)
    for key in ("start", "end", "duration", "id"):
        out["event"].pop(key, None)
    out["network"].pop("vlan", None)
    out["network"].pop("community_id", None)
    for key in drop:
        out["dicom"].pop(key, None)
    if drop:
        out["dicom"]["pdata"].pop("data_set_bytes", None)  # the hole's bytes were never seen
    return out


def _order(record: Record) -> str:
    d = record["dicom"]
    return json.dumps([d["calling_ae_title"], d["called_ae_title"], d["dimse"], d["association"]])


@pytest.mark.parametrize("name", sorted(SAME_AS_SOURCE))
def test_records_equal_the_source_records(name: str, tmp_path: Path) -> None:
    derived, _, _ = read_capture(capture_of(PCAPS / f"derived-{name}"), tmp_path)
    source: list[Record] = []
    for src in SAME_AS_SOURCE[name]:
        source += read_capture(PCAPS / src / "capture.pcap", tmp_path / "src")[0]
    drop = GAP_FIELDS if name == "gap" else ()
    ours = sorted((_comparable(r, drop) for r in derived), key=_order)
    theirs = sorted((_comparable(r, drop) for r in source), key=_order)
    assert len(ours) == len(theirs)
    for mine, want in zip(ours, theirs, strict=True):
        assert mine == want


# --------------------------------------------------------------------------- vs. tshark

TSHARK = shutil.which("tshark")
# Cases where tshark legitimately sees less than the sensor must, and why.
TSHARK_SEES_LESS = {
    # tshark's DICOM heuristic needs the A-ASSOCIATE-RQ's first 10 bytes in one segment.
    "split-pdus",
    # No A-ASSOCIATE-RQ in the capture: tshark never recognises a mid-stream association.
    "mid-association",
    "mid-association-pdata-header",
    # tshark's reassembly waits for the hole's bytes and drops the rest of that PDU's data.
    "gap",
}


TSHARK_SEES_MORE = {"not-dicom"}


def _le16(hexval: str) -> int:
    b = bytes.fromhex(hexval[-4:])
    return b[0] | (b[1] << 8)


COMMANDS = {
    0x0001: "C-STORE",
    0x0010: "C-GET",
    0x0020: "C-FIND",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0FFF: "C-CANCEL",
}


def tshark_associations(capture: Path) -> list[Record]:
    """The associations tshark decodes: AE titles, acceptor port, result, DIMSE counts."""
    assert TSHARK is not None
    pdml = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(capture),
            "-o",
            "tcp.reassemble_out_of_order:TRUE",
            "-Y",
            "dicom",
            "-T",
            "pdml",
        ],
        capture_output=True,
        check=False,
    ).stdout
    streams: dict[int, Record] = {}
    for pkt in ET.fromstring(pdml).iter("packet"):
        protos = {p.get("name"): p for p in pkt.findall("proto")}
        tcp = {f.get("name"): f.get("show") for f in protos["tcp"].iter("field")}
        st = streams.setdefault(
            int(tcp["tcp.stream"] or 0), {"dimse": Counter(), "rq": None, "result": "no-response"}
        )
        for proto in pkt.findall("proto"):
            if proto.get("name") != "dicom":
                continue
            pdu = 0
            for f in proto.iter("field"):
                name, show = f.get("name"), f.get("show") or ""
                if name == "dicom.pdu.type":
                    pdu = int(show, 16)
                    if pdu == 1:
                        st["rq"] = {"port": int(tcp["tcp.dstport"] or 0)}
                    elif pdu == 2:
                        st["result"] = "accepted"
                    elif pdu == 3:
                        st["result"] = "rejected"
                elif pdu == 1 and name in ("dicom.assoc.ae.calling", "dicom.assoc.ae.called"):
                    st["rq"][name.rsplit(".", 1)[1]] = show.strip()
                elif name == "" and show.startswith("(0000,0100)"):
                    fld = _le16(f.get("value") or "")
                    kind = COMMANDS.get(fld & 0x7FFF, f"0x{fld & 0x7FFF:04X}")
                    st["dimse"][kind + ("-RSP" if fld & 0x8000 else "-RQ")] += 1
    out = []
    for st in streams.values():
        if st["rq"] is None:
            continue
        out.append(
            {
                "calling_ae_title": st["rq"].get("calling"),
                "called_ae_title": st["rq"].get("called"),
                "acceptor_port": st["rq"]["port"],
                "result": st["result"],
                "dimse": dict(sorted(st["dimse"].items())),
            }
        )
    return out


def _tshark_view(record: Record) -> Record:
    d = record["dicom"]
    return {
        "calling_ae_title": d["calling_ae_title"],
        "called_ae_title": d["called_ae_title"],
        "acceptor_port": record["destination"]["port"],
        "result": d["association"]["result"],
        "dimse": d["dimse"],
    }


def _tkey(r: Record) -> str:
    return json.dumps(r, sort_keys=True)


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tshark_agrees(case: Path, tmp_path: Path) -> None:
    name = case.name.removeprefix("derived-")
    records, _, _ = read_capture(capture_of(case), tmp_path)
    ours = sorted((_tshark_view(r) for r in records), key=_tkey)
    theirs = sorted(tshark_associations(capture_of(case)), key=_tkey)
    if name in TSHARK_SEES_MORE:
        # tshark's heuristic takes any 0x01 0x00 ... header with protocol version 1 for an
        # A-ASSOCIATE-RQ; AE titles that are not text make it not DICOM for the sensor.
        extra = [t for t in theirs if t not in ours]
        assert extra
        assert all(not all(" " <= c <= "~" for c in t["calling_ae_title"] or "") for t in extra)
        theirs = [t for t in theirs if t in ours]
    if name not in TSHARK_SEES_LESS:
        assert ours == theirs
        return
    # tshark sees a subset: every association it decodes must be ours (same AE titles,
    # port, result); its DIMSE counts are a lower bound of ours.
    assert len(theirs) <= len(ours)
    for t in theirs:
        same = [
            o
            for o in ours
            if {k: o[k] for k in t if k != "dimse"} == {k: v for k, v in t.items() if k != "dimse"}
        ]
        assert same, f"tshark decodes {t}, the sensor does not"
        assert any(all(o["dimse"].get(k, 0) >= n for k, n in t["dimse"].items()) for o in same)


# --------------------------------------------------------------------------- stdin


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stdin_gives_the_same_records(case: Path, tmp_path: Path) -> None:
    capture = capture_of(case)
    from_file, _, _ = read_capture(capture, tmp_path)
    assoc = tmp_path / "stdin.jsonl"
    with open(capture, "rb") as fh:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sensor.cli",
                "read",
                "-",
                "--associations",
                str(assoc),
                "-q",
                "--no-progress",
            ],
            stdin=fh,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    from_stdin = [json.loads(line) for line in assoc.read_text().splitlines()]
    assert sorted(map(_tkey, from_stdin)) == sorted(map(_tkey, from_file))


# --------------------------------------------------------------------------- a cut file


def _whole_packets(capture: Path) -> int:
    """Packet records wholly present in a classic little-endian pcap file."""
    raw = capture.read_bytes()
    pos, n = 24, 0
    while pos + 16 <= len(raw):
        (caplen,) = struct.unpack_from("<I", raw, pos + 8)
        if pos + 16 + caplen > len(raw):
            break
        pos += 16 + caplen
        n += 1
    return n


def test_cut_capture_reads_up_to_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = capture_of(PCAPS / "derived-cut-mid-packet")
    whole = _whole_packets(capture)
    assert whole * 60 < capture.stat().st_size  # the file really ends inside a record
    records, _, err = read_capture(capture, tmp_path, capsys)
    assert "capture cut off" in err
    assert len(records) == len(_expected(PCAPS / "derived-cut-mid-packet"))
    metrics = tmp_path / "metrics.prom"
    assert main(["read", str(capture), "--metrics", str(metrics), "-q"]) == 0
    line = next(
        x for x in metrics.read_text().splitlines() if x.startswith("dicom_sensor_packets_total")
    )
    assert float(line.split()[-1]) == whole


# --------------------------------------------------------------------------- exit codes


def _one_line_failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _one_line_failure(["read", str(tmp_path / "nope.pcap"), "-q"], capsys)
    assert "nope.pcap" in err


def test_text_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\nsecond line\n")
    err = _one_line_failure(["read", str(text), "-q"], capsys)
    assert "notes.txt" in err


def test_directory_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _one_line_failure(["read", str(tmp_path), "-q"], capsys)
    assert str(tmp_path) in err


def test_text_on_stdin_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "read", "-", "-q", "--no-progress"],
        input=b"GET / HTTP/1.1\r\n\r\n",
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.decode().splitlines()) == 1, proc.stderr
