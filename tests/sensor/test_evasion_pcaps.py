"""Evasion captures (pcaps/evasion/): what a real SCP acted on, the sensor must see and alert on.

Each scenario folder holds a capture in which a real SCP (pynetdicom 3.0.4 as the PACS,
DCMTK 3.6.7 storescp as an archive and as the C-MOVE destination) received what a scripted
attacker sent over a real TCP connection: command PDVs with reserved control bits set, PDUs
whose header's reserved byte 1 is set (and a protocol version of 0x0003), PDU headers split
across TCP segments at every offset, and an overlapping retransmission with different bytes.
expected_records.json and expected_alerts.json were written by pcaps/evasion/generate.sh from
the scenario's specification and the victims' logs (what they acted on), never from the
sensor's output. The sensor must produce exactly those
associations (commands, statuses, anomalies, move destinations) and exactly those alerts:
every rule that depends on a DIMSE command still fires.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVASION = ROOT / "pcaps" / "evasion"
SCENARIOS = sorted(p.parent.name for p in EVASION.glob("*/capture.pcap"))
EXPECTED_SCENARIOS = ["overlap-held", "overlap-retransmit", "reserved-bits", "reserved-header",
                      "split-header"]  # fmt: skip
FILES = ("capture.pcap", "config.yaml", "expected_records.json", "expected_alerts.json",
         "provenance.txt")  # fmt: skip

_RUNS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
_EVENTS: dict[str, list[dict[str, Any]]] = {}  # every event of a scenario's run


def read(scenario: str, out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`dicom-sensor read` of the scenario, as an operator runs it: (records, alert events)."""
    if scenario not in _RUNS:
        folder = EVASION / scenario
        records, events = out / "associations.jsonl", out / "events.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "sensor.cli", "read", str(folder / "capture.pcap"),
             "--config", str(folder / "config.yaml"),
             "--associations", str(records), "--events", str(events)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(x) for x in events.read_text(encoding="utf-8").splitlines()]
        _EVENTS[scenario] = lines
        _RUNS[scenario] = (
            [json.loads(x) for x in records.read_text(encoding="utf-8").splitlines()],
            [e for e in lines if e["event"]["kind"] == "alert"],
        )
    return _RUNS[scenario]


def project(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """A record reduced to the fields expected_records.json names."""
    d = record["dicom"]
    out = {
        "source_ip": record["source"]["ip"],
        "destination_ip": record["destination"]["ip"],
        "destination_port": record["destination"]["port"],
        "calling_ae_title": d["calling_ae_title"],
        "called_ae_title": d["called_ae_title"],
        "result": d["association"]["result"],
        "end": d["association"]["end"],
        "dimse": d["dimse"],
        "dimse_status": d["dimse_status"],
        "anomalies": d.get("anomalies", []),
        "move_destinations": d.get("move_destinations"),
        "extended_negotiations": d.get("extended_negotiations"),
    }
    return {k: v for k, v in out.items() if k in keys}


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_every_scenario_is_here() -> None:
    # a missing folder must fail, not shrink the parametrized tests silently
    assert SCENARIOS == EXPECTED_SCENARIOS
    for scenario in SCENARIOS:
        for name in FILES:
            assert (EVASION / scenario / name).is_file(), f"{scenario}/{name}"
    assert (EVASION / "README.md").is_file() and (EVASION / "generate.sh").is_file()


def test_captures_are_small() -> None:
    sizes = [(EVASION / s / "capture.pcap").stat().st_size for s in SCENARIOS]
    assert max(sizes) < 100_000 and sum(sizes) < 1_000_000


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_records_are_exactly_the_expected_ones(scenario: str, tmp_path: Path) -> None:
    expected = json.loads((EVASION / scenario / "expected_records.json").read_text())
    records, _ = read(scenario, tmp_path)
    keys = set().union(*(set(e) for e in expected))
    projected = []
    for record in records:
        row = project(record, keys)
        # Optional keys are compared where the expectation names them for this association.
        projected.append({k: v for k, v in row.items() if v is not None})
    want = [{k: v for k, v in e.items() if v is not None} for e in expected]
    for row in projected:
        for k in ("move_destinations", "extended_negotiations"):
            if not any(k in w for w in want if w["source_ip"] == row["source_ip"]):
                row.pop(k, None)
    assert canonical(projected) == canonical(want)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_alerts_are_exactly_the_expected_ones(scenario: str, tmp_path: Path) -> None:
    expected = json.loads((EVASION / scenario / "expected_alerts.json").read_text())
    _, alerts = read(scenario, tmp_path)
    got = sorted(
        (a["rule"]["id"], a["source"]["ip"], a["destination"]["ip"], a["event"]["action"],
         a["dicom"]["alert"]["count"])
        for a in alerts
    )  # fmt: skip
    want = sorted(
        (r["rule_id"], r["source_ip"], r["destination_ip"], r["action"], r["count"])
        for r in expected
    )
    assert got == want


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_dimse_rule_fires(scenario: str, tmp_path: Path) -> None:
    """The rules that read DIMSE commands fire on every capture whose scenario has them."""
    _, alerts = read(scenario, tmp_path)
    rules = {a["rule"]["id"] for a in alerts}
    assert "query-retrieve-untrusted" in rules
    if scenario != "split-header":  # the split scenario queries only; the others move
        assert {"move-unknown-destination", "bulk-outbound", "perimeter-outbound"} <= rules


@pytest.mark.parametrize("scenario", ["overlap-held", "overlap-retransmit"])
def test_overlap_decodes_the_copy_the_scp_kept(scenario: str, tmp_path: Path) -> None:
    """Linux kept the first copy (the PACS moved to EXFIL): the sensor decodes that copy."""
    records, alerts = read(scenario, tmp_path)
    (attack,) = [r for r in records if r["source"]["ip"] == "198.51.100.20"]
    assert attack["dicom"]["move_destinations"] == ["EXFIL"]
    rules = [a["rule"]["id"] for a in alerts]
    assert rules.count("move-unknown-destination") == 1


@pytest.mark.parametrize("scenario", ["overlap-held", "overlap-retransmit"])
def test_overlap_is_flagged_once(scenario: str, tmp_path: Path) -> None:
    """The differing copies are an anomaly on the record and one stream-evasion alert.

    overlap-held: the decoy is compared with the copy held out of order; overlap-retransmit:
    with the copy already delivered in order, kept until the PACS acknowledged it.
    """
    records, alerts = read(scenario, tmp_path)
    (attack,) = [r for r in records if r["source"]["ip"] == "198.51.100.20"]
    assert "overlap-mismatch" in attack["dicom"].get("anomalies", [])
    assert attack["dicom"]["anomaly_counts"]["overlap-mismatch"] == 1
    others = [r for r in records if r["source"]["ip"] != "198.51.100.20"]
    assert others and not any("overlap-mismatch" in r["dicom"].get("anomalies", []) for r in others)
    (alert,) = [a for a in alerts if a["rule"]["id"] == "stream-evasion"]
    assert alert["source"]["ip"] == "198.51.100.20"
    assert alert["dicom"]["stream"] == {"overlap_mismatches": 1, "sent_by": "requestor"}


def test_reserved_header_byte_association_found_and_decoded(tmp_path: Path) -> None:
    """Every attacker PDU set byte 1 of its header (pynetdicom and DCMTK acted on them all).

    Offline, pass 1 admits only heads the BPF test passes: a test that required byte 1 to be
    0 (or the protocol version to be exactly 1) never followed these services, and both
    associations, the C-MOVE to EXFIL among them, were lost.
    """
    records, alerts = read("reserved-header", tmp_path)
    attacks = {r["destination"]["ip"]: r for r in records if r["source"]["ip"] == "198.51.100.20"}
    assert set(attacks) == {"10.30.0.5", "10.30.0.6"}
    pacs, archive = attacks["10.30.0.5"]["dicom"], attacks["10.30.0.6"]["dicom"]
    assert pacs["detected_by"] == archive["detected_by"] == "associate-rq"
    assert pacs["move_destinations"] == ["EXFIL"]
    assert pacs["dimse"]["C-STORE-RQ"] == archive["dimse"]["C-STORE-RQ"] == 1
    assert (pacs["association"]["end"], archive["association"]["end"]) == ("released",) * 2
    assert pacs["anomalies"] == archive["anomalies"] == ["reserved-bits"]
    # One anomaly event per attacker PDU (check_capture.py counted them on the wire: to the
    # PACS the RQ, 7 P-DATA-TF and the release; to the archive the RQ, 3 and the release).
    anomalies = [e for e in _EVENTS["reserved-header"] if e["event"]["kind"] == "event"]
    per_dest = [e["destination"]["ip"] for e in anomalies
                if e["dicom"]["anomaly"]["reason"] == "reserved-bits"]  # fmt: skip
    assert (per_dest.count("10.30.0.5"), per_dest.count("10.30.0.6")) == (9, 5)
    rules = [a["rule"]["id"] for a in alerts]
    assert rules.count("move-unknown-destination") == 1
    assert {"query-retrieve-untrusted", "bulk-outbound", "perimeter-outbound"} <= set(rules)


def test_reserved_header_byte_found_mid_stream(tmp_path: Path) -> None:
    """The capture starts after the A-ASSOCIATE-AC: only the P-DATA-TF PDUs can be found.

    Every PDU the attacker sent sets byte 1: a BPF head test, probe or resync pattern that
    required it to be 0 would follow the service only from the PACS's responses and never
    decode a request (the C-MOVE to EXFIL among them).
    """
    import dpkt

    folder = EVASION / "reserved-header"
    cut = tmp_path / "mid.pcap"
    with (folder / "capture.pcap").open("rb") as f, cut.open("wb") as out:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(out, snaplen=reader.snaplen, linktype=reader.datalink())
        started = False
        for ts, buf in reader:
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            payload = bytes(getattr(tcp, "data", b""))
            if started:
                writer.writepkt(buf, ts)
            elif payload[:1] == b"\x04" and payload[1] != 0:  # the attacker's first P-DATA-TF
                started = True
                writer.writepkt(buf, ts)
    records = tmp_path / "associations.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "sensor.cli", "read", str(cut), "--config",
         str(folder / "config.yaml"), "--associations", str(records), "--events",
         str(tmp_path / "events.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in records.read_text(encoding="utf-8").splitlines()]
    (pacs,) = [r["dicom"] for r in rows if r["destination"]["ip"] == "10.30.0.5"]
    assert pacs["detected_by"] == "mid-stream"
    assert pacs["move_destinations"] == ["EXFIL"]
    assert pacs["dimse"]["C-MOVE-RQ"] == pacs["dimse"]["C-FIND-RQ"] == 1
    assert "reserved-bits" in pacs["anomalies"]
