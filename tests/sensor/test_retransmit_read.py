"""Through ``read``: a changed copy of data-set bytes already delivered in order.

Crafted from the real dcmtk-store-11112 capture (no real TCP stack retransmits different
bytes): a copy of frame 28, a segment inside the C-STORE data set, is sent again with
every byte changed right after frame 29, before the SCP's ACK of it (frame 33). Those
segments are the ones the compiled reader absorbs, so its kept copy is what the changed
copy is compared with; the same records come out with the compiled reader off and with
skipping off. A copy sent after the ACK is not flagged (the SCP dropped it); on a
one-sided capture (the SCP's packets cut away) nothing is kept, and the copy is counted
as not compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dpkt
import pytest

from sensor.cli import main
from sensor.flow.engine import FlowEngine

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "pcaps/dcmtk-store-11112/capture.pcap"
COPIED = 28  # frame numbers in the capture, from 1
AFTER = 29
ACKED = 33  # the SCP's first ACK covering frame 28


def _frames() -> list[tuple[float, bytes]]:
    with STORE.open("rb") as fh:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]


def _changed(buf: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(buf)
    tcp = eth.data.data
    tcp.data = bytes(b ^ 0x5A for b in tcp.data)
    tcp.sum = 0
    eth.data.sum = 0
    return bytes(eth)


def _write(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in frames:
            writer.writepkt(buf, ts)
    return path


def _variant(path: Path, after: int, change: bool = True, one_sided: bool = False) -> Path:
    frames = _frames()
    copy = frames[COPIED - 1][1]
    copy = _changed(copy) if change else copy
    out = [*frames[:after], (frames[after - 1][0], copy), *frames[after:]]
    if one_sided:
        out = [f for f in out if dpkt.ethernet.Ethernet(f[1]).data.data.sport != 11112]
    return _write(path, out)


def _read(tmp_path: Path, capture: Path, tag: str, capsys: Any) -> dict[str, Any]:
    out = tmp_path / tag
    out.mkdir()
    argv = ["read", str(capture), "--no-progress", "--associations", str(out / "a.jsonl"),
            "--events", str(out / "e.jsonl"), "--metrics", str(out / "m.prom")]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    lines = [(out / name).read_text().splitlines() for name in ("a.jsonl", "e.jsonl")]
    metrics = {
        ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
        for ln in (out / "m.prom").read_text().splitlines()
        if ln and not ln.startswith("#")
    }
    return {
        "records": [json.loads(x) for x in lines[0]],
        "alerts": [json.loads(x) for x in lines[1] if '"stream-evasion"' in x],
        "metrics": metrics,
        "summary": capsys.readouterr().err,
    }


def _stable(got: dict[str, Any]) -> Any:
    """What must not depend on the compiled reader or on skipping."""
    metrics = {
        k: v
        for k, v in got["metrics"].items()
        if "fast_path" not in k and "prefilter_installs" not in k
    }
    return got["records"], got["alerts"], metrics


def test_changed_copy_of_absorbed_data_set_bytes_is_flagged_once(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = _variant(tmp_path / "changed.pcap", AFTER)
    got = _read(tmp_path, capture, "fast", capsys)
    (record,) = got["records"]
    dicom = record["dicom"]
    assert dicom["anomaly_counts"]["overlap-mismatch"] == 1
    assert set(dicom["anomalies"]) == {"overlap-mismatch"}
    # The first copy was decoded: the stores went through as in the original capture.
    (original,) = _read(tmp_path, STORE, "original", capsys)["records"]
    assert dicom["dimse"] == original["dicom"]["dimse"] and dicom["dimse"]["C-STORE-RSP"] == 4
    (alert,) = got["alerts"]
    assert alert["dicom"]["stream"] == {"overlap_mismatches": 1, "sent_by": "requestor"}
    metrics = got["metrics"]
    assert metrics['dicom_sensor_stream_anomalies_total{reason="overlap-mismatch"}'] == 1
    assert metrics['dicom_sensor_stream_anomalies_total{reason="retransmission"}'] == 1
    assert metrics["dicom_sensor_reassembly_uncompared_bytes_total"] == 0
    assert metrics["dicom_sensor_reassembly_unacked_dropped_bytes_total"] == 0
    assert metrics["dicom_sensor_reassembly_kept_bytes"] == 0  # all let go, none leaked
    # The compiled reader absorbed segments of this data set (frames 27-29 among them).
    assert metrics["dicom_sensor_fast_path_packets_total"] > 0
    assert "not compared" not in got["summary"]
    monkeypatch.setenv("DICOM_SENSOR_NO_FASTPATH", "1")
    assert _stable(_read(tmp_path, capture, "python", capsys)) == _stable(got)
    monkeypatch.setattr(FlowEngine, "skipping", False)
    assert _stable(_read(tmp_path, capture, "plain", capsys)) == _stable(got)


def test_identical_copy_and_copy_after_the_ack_are_not_flagged(tmp_path: Path, capsys: Any) -> None:
    original = _read(tmp_path, STORE, "original", capsys)
    for tag, capture in (
        ("same", _variant(tmp_path / "same.pcap", AFTER, change=False)),
        ("late", _variant(tmp_path / "late.pcap", ACKED)),
    ):
        got = _read(tmp_path, capture, tag, capsys)
        assert got["records"][0]["dicom"] == original["records"][0]["dicom"]
        assert got["alerts"] == []
        metrics = got["metrics"]
        assert metrics['dicom_sensor_stream_anomalies_total{reason="retransmission"}'] == 1
        assert metrics["dicom_sensor_reassembly_uncompared_bytes_total"] == 0


def test_one_sided_capture_counts_the_copy_as_not_compared(tmp_path: Path, capsys: Any) -> None:
    capture = _variant(tmp_path / "one-sided.pcap", AFTER, one_sided=True)
    got = _read(tmp_path, capture, "one", capsys)
    assert got["alerts"] == []
    metrics = got["metrics"]
    assert metrics['dicom_sensor_stream_anomalies_total{reason="overlap-mismatch"}'] == 0
    assert metrics["dicom_sensor_reassembly_uncompared_bytes_total"] == 1448
    assert "retransmitted bytes not compared with the decoded copy: 1,448" in got["summary"]
