"""Through ``read``: stream-evasion on crafted overlapping segments, and C-MOVE destinations
decided after the C-MOVE-RQ on the real captures (outputs, metrics and --alert-pcap).

The overlaps are crafted (no real TCP stack sends differing copies): frames of the real
dcmtk-echo-104 capture re-cut with dpkt so that a segment's tail arrives first, then a
copy of it with different bytes, then its head. The C-MOVE captures are the real ones;
one variant rewrites the PACS's final status in place (same length) to keep its move
undecided past the association's end.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import dpkt
import pytest

from dissectors.registry import load_dissectors
from sensor.cli import main
from sensor.outputs.summary import write_summary
from sensor.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "pcaps/dcmtk-echo-104/capture.pcap"
FIND_MOVE_GET = ROOT / "pcaps/dcmtk-find-move-get/capture.pcap"
CREDENTIALS = ROOT / "pcaps/zones/credentials-move-query"
NORMAL = ROOT / "pcaps/zones/normal-workflow"
# C-MOVE-RSP Status (0000,0900), VR length 2, value 0xA801 little endian: dcmqrscp's refusal
A801 = b"\x00\x00\x00\x09\x02\x00\x00\x00\x01\xa8"
PENDING = b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xff"


def _read(tmp_path: Path, capture: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    argv = ["read", str(capture), "-q", "--no-progress", "--associations", str(out / "a.jsonl"),
            "--events", str(out / "e.jsonl"), "--metrics", str(out / "m.prom"), *extra]  # fmt: skip
    assert main(argv) == 0
    lines = [(out / name).read_text().splitlines() for name in ("a.jsonl", "e.jsonl")]
    return {
        "records": [json.loads(x) for x in lines[0]],
        "events": [json.loads(x) for x in lines[1]],
        "metrics": (out / "m.prom").read_text(),
    }


def _metric(text: str, line_start: str) -> float:
    (value,) = [ln.rsplit(" ", 1)[1] for ln in text.splitlines() if ln.startswith(line_start)]
    return float(value)


def _segment(eth: dpkt.ethernet.Ethernet, seq: int, data: bytes) -> bytes:
    """The frame again with another sequence number and payload (lengths, checksums redone)."""
    ip = eth.data
    tcp = ip.data
    tcp.seq = seq & 0xFFFFFFFF
    tcp.data = data
    tcp.sum = 0
    ip.len = ip.__hdr_len__ + len(ip.opts) + len(bytes(tcp))
    ip.sum = 0
    ip.data = tcp
    return bytes(eth)


def _flipped(data: bytes) -> bytes:
    return bytes(b ^ 0x5A for b in data)


def _evasive_echo(path: Path) -> None:
    """dcmtk-echo-104 with two segments re-cut (frames 10 and 14, C-ECHO-RQ and -RSP):

    frame 10 (68 bytes): its tail [30:] first, then a copy of the tail with every byte
    changed (one differing overlap), then its head [:30];
    frame 14 (78 bytes): [40:60] and [60:] first, then one copy of [40:] with every byte
    changed (two differing overlaps, one per held piece), then [:40].
    The first copies are the originals: the stream the sensor decodes is the real one.
    """
    with ECHO.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        frames = list(reader)
    out: list[tuple[float, bytes]] = []
    for number, (ts, buf) in enumerate(frames, 1):
        cuts = {10: ((30, None),), 14: ((40, 60), (60, None))}.get(number)
        if cuts is None:
            out.append((ts, buf))
            continue
        payload = dpkt.ethernet.Ethernet(buf).data.data.data
        seq = dpkt.ethernet.Ethernet(buf).data.data.seq
        lo = cuts[0][0]
        for a, b in cuts:
            part = payload[a:b]
            out.append((ts, _segment(dpkt.ethernet.Ethernet(buf), seq + a, part)))
        out.append((ts, _segment(dpkt.ethernet.Ethernet(buf), seq + lo, _flipped(payload[lo:]))))
        out.append((ts, _segment(dpkt.ethernet.Ethernet(buf), seq, payload[:lo])))
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in out:
            writer.writepkt(buf, ts)


def test_differing_overlaps_give_one_alert_and_the_record_anomaly(tmp_path: Path) -> None:
    capture = tmp_path / "evasive.pcap"
    _evasive_echo(capture)
    got = _read(tmp_path, capture, "--alert-pcap", str(tmp_path / "pcaps"))
    (record,) = got["records"]
    dicom = record["dicom"]
    assert dicom["anomaly_counts"]["overlap-mismatch"] == 3
    assert "overlap-mismatch" in dicom["anomalies"]
    # The first copies were decoded: the C-ECHO went through, nothing else went wrong.
    assert dicom["dimse"]["C-ECHO-RQ"] == 1 and dicom["dimse"]["C-ECHO-RSP"] == 1
    assert set(dicom["anomalies"]) == {"overlap-mismatch"}
    alerts = [e for e in got["events"] if e.get("rule", {}).get("id") == "stream-evasion"]
    assert len(alerts) == 1  # once per association, not once per segment
    (alert,) = alerts
    assert alert["event"]["action"] == "detected" and alert["dicom"]["alert"]["count"] == 1
    assert alert["dicom"]["alert"]["severity"] == "medium"
    assert alert["dicom"]["alert"]["signature_id"] == 9400020
    assert alert["dicom"]["stream"] == {"overlap_mismatches": 1, "sent_by": "requestor"}
    assert alert["rule"]["reference"] == "docs/remediation.md#normalise-tcp-in-front-of-imaging"
    anomalies = [e for e in got["events"] if e["event"]["dataset"] == "dicom.anomaly"]
    assert [e["dicom"]["anomaly"]["reason"] for e in anomalies] == ["overlap-mismatch"]
    metrics = got["metrics"]
    assert _metric(metrics, 'dicom_alerts_total{rule="stream-evasion",severity="medium"}') == 1
    assert _metric(metrics, 'dicom_anomalies_total{reason="overlap-mismatch"}') == 3
    assert _metric(metrics, 'dicom_sensor_stream_anomalies_total{reason="overlap-mismatch"}') == 3
    index = (tmp_path / "pcaps" / "index.jsonl").read_text().splitlines()
    assert any("stream-evasion" in json.loads(line)["rules"] for line in index)


def test_identical_capture_gives_no_stream_evasion(tmp_path: Path) -> None:
    got = _read(tmp_path, ECHO)
    assert "overlap-mismatch" not in got["records"][0]["dicom"].get("anomalies", [])
    assert not [e for e in got["events"] if e.get("rule", {}).get("id") == "stream-evasion"]


@pytest.mark.parametrize(
    ("capture", "config", "moves"),
    [(FIND_MOVE_GET, None, 1), (NORMAL / "capture.pcap", NORMAL / "config.yaml", 2)],
    ids=["dcmtk-find-move-get", "zones-normal-workflow"],
)
def test_real_moves_to_answering_destinations_raise_nothing(
    tmp_path: Path, capture: Path, config: Path | None, moves: int
) -> None:
    """Each requestor moves to itself; dcmqrscp's sub-association to the requestor's
    listener is accepted from an internal zone: decided known at its A-ASSOCIATE-AC."""
    got = _read(tmp_path, capture, *(["-c", str(config)] if config else []))
    decided = 'dicom_move_decisions_total{reason="answered-internal"}'
    assert _metric(got["metrics"], decided) == moves
    rules = {e.get("rule", {}).get("id") for e in got["events"]}
    assert "move-unknown-destination" not in rules


def test_real_refused_move_is_reported_at_the_final_response(tmp_path: Path) -> None:
    """credentials-move-query: EXFIL, refused by dcmqrscp with 0xA801."""
    got = _read(tmp_path, CREDENTIALS / "capture.pcap", "-c", str(CREDENTIALS / "config.yaml"))
    (alert,) = [e for e in got["events"] if e["rule"]["id"] == "move-unknown-destination"]
    move = alert["dicom"]["move"]
    assert (move["destination"], move["reason"], move["status"]) == ("EXFIL", "refused", "0xA801")
    assert alert["dicom"]["alert"]["severity"] == "medium"
    assert move["requested"] < alert["@timestamp"]  # decided at the response, 44 ms later
    assert _metric(got["metrics"], 'dicom_move_decisions_total{reason="refused"}') == 1
    medium = 'dicom_alerts_total{rule="move-unknown-destination",severity="medium"}'
    assert _metric(got["metrics"], medium) == 1


def test_move_undecided_when_its_association_ends_keeps_its_alert_pcap(tmp_path: Path) -> None:
    """The same capture with the final status rewritten to pending: the C-MOVE association
    is released with its move undecided; at the end of the capture it is decided
    (capture-ended) and the association's packets still go to --alert-pcap."""
    data = (CREDENTIALS / "capture.pcap").read_bytes()
    assert data.count(A801) == 1
    capture = tmp_path / "pending.pcap"
    capture.write_bytes(data.replace(A801, PENDING))
    pcaps = tmp_path / "pcaps"
    got = _read(
        tmp_path, capture, "-c", str(CREDENTIALS / "config.yaml"), "--alert-pcap", str(pcaps)
    )
    (alert,) = [e for e in got["events"] if e["rule"]["id"] == "move-unknown-destination"]
    assert alert["dicom"]["move"]["reason"] == "capture-ended"
    assert alert["dicom"]["alert"]["severity"] == "high"
    (record,) = [r for r in got["records"] if r["dicom"].get("move_destinations") == ["EXFIL"]]
    assert record["dicom"]["association"]["end"] == "released"
    index = [json.loads(line) for line in (pcaps / "index.jsonl").read_text().splitlines()]
    cid = record["network"]["community_id"]
    (entry,) = [x for x in index if x["community_id"] == cid]
    assert "move-unknown-destination" in entry["rules"]
    assert (pcaps / entry["file"]).stat().st_size > 24


def test_summary_names_the_pending_cap_when_it_bites() -> None:
    pipeline = Pipeline(load_dissectors())
    assert pipeline.policy.move_decisions is pipeline.counters.move_decisions  # one count
    out = io.StringIO()
    write_summary(pipeline, 1.0, out, {})
    assert "decided early" not in out.getvalue()
    pipeline.counters.move_decisions["limit"] = 3
    write_summary(pipeline, 1.0, out, {})
    assert "C-MOVEs decided early (more than 8,192 awaiting their destination): 3" in (
        out.getvalue()
    )
