"""--alert-pcap: one redacted pcap per alerting association, read back as the same one."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main
from sensor.outputs.alertpcap import DicomStream, Hl7Stream

ROOT = Path(__file__).resolve().parents[3]
PERIMETER = ROOT / "pcaps/zones/perimeter/capture.pcap"
CREDENTIALS = ROOT / "pcaps/zones/credentials-move-query/capture.pcap"
CANARY = ROOT / "pcaps/phi-canary/capture.pcap"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _read(captures: list[Path], tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    args = ["read", *map(str, captures), "--associations", str(out / "a.jsonl"),
            "--events", str(out / "e.jsonl"), "--metrics", str(out / "m.prom"), "-q"]  # fmt: skip
    assert main([*args, *extra]) == 0
    return {
        "records": _jsonl(out / "a.jsonl"),
        "events": _jsonl(out / "e.jsonl"),
        "metrics": (out / "m.prom").read_text(),
    }


def _same(record: dict[str, Any]) -> dict[str, Any]:
    dicom = record["dicom"]
    return {
        "source": record["source"],
        "destination": record["destination"],
        "community_id": record["network"]["community_id"],
        "calling": dicom["calling_ae_title"],
        "called": dicom["called_ae_title"],
        "result": dicom["association"]["result"],
        "end": dicom["association"]["end"],
        "dimse": dicom["dimse"],
        "contexts": dicom.get("presentation_contexts"),
        "user_identity": dicom.get("user_identity"),
        "detected_by": dicom["detected_by"],
    }


@pytest.mark.parametrize("capture", [PERIMETER, CREDENTIALS, CANARY], ids=lambda p: p.parent.name)
def test_each_alerting_association_reads_back_as_itself(capture: Path, tmp_path: Path) -> None:
    pcaps = tmp_path / "pcaps"
    first = _read([capture], tmp_path, "--alert-pcap", str(pcaps))
    alerts = [e for e in first["events"] if e["event"]["kind"] == "alert"]
    alerted = {e["network"]["community_id"] for e in alerts if e["network"]["protocol"] == "dicom"}
    index = _jsonl(pcaps / "index.jsonl")
    # Every alerting association has its pcap (folded repeats too, so the index may hold more).
    assert alerted and alerted <= {entry["community_id"] for entry in index}
    by_cid = {r["network"]["community_id"]: r for r in first["records"]}
    for entry in index:
        pcap = pcaps / entry["file"]
        assert pcap.exists()
        again_dir = tmp_path / entry["file"]
        again_dir.mkdir()
        again = _read([pcap], again_dir)["records"]
        assert len(again) == 1
        assert _same(again[0]) == _same(by_cid[entry["community_id"]])
        assert entry["rules"]
    assert f"dicom_sensor_alert_pcap_files_total {float(len(index))}" in first["metrics"]


def test_pcap_keeps_the_links_type_and_time_name(tmp_path: Path) -> None:
    pcaps = tmp_path / "pcaps"
    _read([PERIMETER], tmp_path, "--alert-pcap", str(pcaps))
    for entry in _jsonl(pcaps / "index.jsonl"):
        data = (pcaps / entry["file"]).read_bytes()
        assert struct.unpack_from("<I", data, 20)[0] == 1  # Ethernet, as the capture
        cid = entry["community_id"][2:].replace("+", "-").replace("/", "_").rstrip("=")
        assert entry["file"].endswith(f"-{cid}.pcap")
        assert entry["file"][:8] == entry["start"][:10].replace("-", "")


def test_bounds_bite_and_are_counted(tmp_path: Path) -> None:
    pcaps = tmp_path / "pcaps"
    got = _read([CANARY], tmp_path, "--alert-pcap", str(pcaps), "--alert-pcap-max-files", "2",
                "--alert-pcap-max-association-kb", "1")  # fmt: skip
    index = _jsonl(pcaps / "index.jsonl")
    assert len(index) == 2
    assert all(entry["truncated"] for entry in index)
    for entry in index:
        assert (pcaps / entry["file"]).stat().st_size < 1024 + 2000  # one packet over, at most
    metrics = got["metrics"]
    assert 'dicom_sensor_alert_pcap_limited_total{bound="files"} 3.0' in metrics
    assert 'dicom_sensor_alert_pcap_limited_total{bound="association-bytes"}' in metrics
    assert 'dicom_sensor_alert_pcap_limited_total{bound="association-bytes"} 0.0' not in metrics


def test_total_bytes_bound(tmp_path: Path) -> None:
    pcaps = tmp_path / "pcaps"
    got = _read([CANARY], tmp_path, "--alert-pcap", str(pcaps),
                "--alert-pcap-max-total-mb", "1")  # fmt: skip
    assert 'dicom_sensor_alert_pcap_limited_total{bound="total-bytes"} 0.0' in got["metrics"]
    total = sum(p.stat().st_size for p in pcaps.glob("*.pcap"))
    assert total <= (1 << 20) + 24 * 10


def _stdin(capture: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sensor.cli", "read", "-", *args],
        input=capture.read_bytes(), capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("capture", [PERIMETER, CREDENTIALS, CANARY], ids=lambda p: p.parent.name)
def test_standard_input_keeps_packets_as_they_pass(capture: Path, tmp_path: Path) -> None:
    # Read once, kept as they pass (as live): the same files, byte for byte, and index.
    offline, stdin = tmp_path / "offline", tmp_path / "stdin"
    _read([capture], tmp_path, "--alert-pcap", str(offline))
    run = _stdin(capture, "--alert-pcap", str(stdin), "-q")
    assert run.returncode == 0, run.stderr
    files = sorted(p.name for p in offline.glob("*.pcap"))
    assert files and sorted(p.name for p in stdin.glob("*.pcap")) == files
    for name in files:
        assert (stdin / name).read_bytes() == (offline / name).read_bytes()
    lines = sorted((offline / "index.jsonl").read_text().splitlines())
    assert sorted((stdin / "index.jsonl").read_text().splitlines()) == lines


def test_standard_input_buffer_bound_keeps_heads(tmp_path: Path) -> None:
    # 1 MiB of buffers cannot hold the canary capture's associations whole: what does not fit
    # is counted, and every alerting association still gets a pcap of its head.
    stdin = tmp_path / "stdin"
    metrics = tmp_path / "m.prom"
    run = _stdin(CANARY, "--alert-pcap", str(stdin), "--alert-pcap-max-buffer-mb", "1",
                 "--metrics", str(metrics), "-q")  # fmt: skip
    assert run.returncode == 0, run.stderr
    text = metrics.read_text()
    assert "dicom_sensor_alert_pcap_buffer_bytes 0.0" in text  # all released at the end
    limited = [ln for ln in text.splitlines() if ln.startswith("dicom_sensor_alert_pcap_limited")]
    assert any('bound="buffer-bytes"' in ln for ln in limited)
    assert len(list(stdin.glob("*.pcap"))) >= 5


def test_a_late_decision_finds_the_ended_association(tmp_path: Path) -> None:
    # An association that carried a C-MOVE-RQ keeps its packets after it ends, for
    # decide_within seconds: a finding made then (move-unknown-destination decided late)
    # writes its pcap; an association without a C-MOVE is dropped at its end.
    from types import SimpleNamespace

    from dissectors.registry import load_dissectors
    from sensor.capture.bpf import all_tcp_filter
    from sensor.capture.offline import OfflineCapture, ReadResult
    from sensor.pipeline import Pipeline

    capture = ROOT / "pcaps/dcmtk-find-move-get/capture.pcap"
    pipeline = Pipeline(load_dissectors())
    live = pipeline.keep_alert_packets(str(tmp_path / "pcaps"))
    records: list[dict[str, Any]] = []
    pipeline.record_sinks.append(records.append)
    pipeline.policy_config.rules["move-unknown-destination"].params["decide_within"] = 30.0
    source = OfflineCapture(str(capture))
    pipeline.follow_all()  # as a live source: every TCP packet, once, through feed()
    pipeline.feed(source.packets(all_tcp_filter(source.linktype), ReadResult()), source.decoder())
    movers = [r for r in records if "C-MOVE-RQ" in r["dicom"]["dimse"]]
    assert movers and len(records) > len(movers)
    held = len(live._held)
    assert held == len(movers)
    mover = movers[0]
    view = SimpleNamespace(
        requestor_ip=mover["source"]["ip"], requestor_port=mover["source"]["port"],
        acceptor_ip=mover["destination"]["ip"], acceptor_port=mover["destination"]["port"],
    )  # fmt: skip
    assert live.alerted_late(view, "move-unknown-destination")
    live.expire(pipeline.last_ts + 31 + 30)  # past decide_within and the teardown
    assert not live._held
    pipeline.finish()
    [entry] = _jsonl(tmp_path / "pcaps" / "index.jsonl")
    assert entry["rules"] == ["move-unknown-destination"]
    assert entry["community_id"] == mover["network"]["community_id"]
    again = _read([tmp_path / "pcaps" / entry["file"]], tmp_path)["records"]
    assert [_same(r) for r in again] == [_same(mover)]


# -- the redactors, byte by byte ------------------------------------------------------


def _associate_rq(identity_type: int, primary: bytes, secondary: bytes) -> bytes:
    """A-ASSOCIATE-RQ: header, fixed fields, one user information item with identity 0x58."""
    ident = bytes([identity_type, 0]) + struct.pack("!H", len(primary)) + primary
    ident += struct.pack("!H", len(secondary)) + secondary
    sub = b"\x58\x00" + struct.pack("!H", len(ident)) + ident
    sub += b"\x51\x00\x00\x04" + struct.pack("!I", 16384)
    user = b"\x50\x00" + struct.pack("!H", len(sub)) + sub
    body = b"\x00\x01\x00\x00" + b"CALLED".ljust(16) + b"CALLING".ljust(16) + bytes(32) + user
    return b"\x01\x00" + struct.pack("!I", len(body)) + body


def _kept(stream: DicomStream | Hl7Stream, data: bytes) -> bytes:
    """The stream as it would be written: cut bytes as '.', zeroed bytes as zeros."""
    out = bytearray(b"." * len(data))
    for a, b in stream.spans.kept_in(0, len(data)):
        out[a:b] = data[a:b]
    for a, b in stream.spans.zero:
        out[a:b] = bytes(b - a)
    return bytes(out)


@pytest.mark.parametrize("split", [1, 7, 50, 1000])
def test_passcode_is_zeroed_username_kept(split: int) -> None:
    pdu = _associate_rq(2, b"alice", b"SECRET-PASS")
    stream = DicomStream()
    for i in range(0, len(pdu), split):
        stream.feed(pdu[i : i + split])
    kept = _kept(stream, pdu)
    assert b"alice" in kept and b"SECRET" not in kept
    at = pdu.index(b"SECRET-PASS")
    assert kept == pdu[:at] + bytes(11) + pdu[at + 11 :]  # same length, only the secret


@pytest.mark.parametrize("kind", [3, 4, 5, 9])
def test_tokens_are_zeroed(kind: int) -> None:
    pdu = _associate_rq(kind, b"TOKEN-BYTES-123", b"")
    stream = DicomStream()
    stream.feed(pdu)
    assert b"TOKEN" not in _kept(stream, pdu)


def test_oversize_associate_is_cut_whole_so_its_passcode_never_leaves() -> None:
    """An A-ASSOCIATE-RQ past the 64 KiB cap: its tail (user information) is not kept either."""
    small = _associate_rq(2, b"alice", b"SECRET-PASS")
    filler = b"".join(b"\x20\x00" + struct.pack("!H", 16000) + bytes(16000) for _ in range(5))
    body = small[6:74] + filler + small[74:]
    pdu = b"\x01\x00" + struct.pack("!I", len(body)) + body
    assert len(body) > 65536
    stream = DicomStream()
    for i in range(0, len(pdu), 1460):
        stream.feed(pdu[i : i + 1460])
    assert b"SECRET" not in _kept(stream, pdu)


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, tag, len(value)) + value


@pytest.mark.parametrize("split", [1, 5, 13, 1000])
def test_error_comment_text_is_zeroed_its_length_kept(split: int) -> None:
    """Error Comment (0000,0902) is free text and may name a patient (issue 14)."""
    rest = (
        _element(0x0100, b"\x01\x80")
        + _element(0x0902, b"DOE^JANE MRN")
        + _element(0x0900, b"\x10\xa7")
    )
    command = _element(0x0000, struct.pack("<I", len(rest))) + rest
    cut = command.index(b"JANE")  # two command fragments, split inside the comment
    pdvs = struct.pack("!IBB", cut + 2, 1, 0x01) + command[:cut]
    pdvs += struct.pack("!IBB", len(command) - cut + 2, 1, 0x03) + command[cut:]
    pdu = b"\x04\x00" + struct.pack("!I", len(pdvs)) + pdvs
    stream = DicomStream()
    for i in range(0, len(pdu) * 2, split):
        stream.feed((pdu + pdu)[i : i + split])
    kept = _kept(stream, pdu + pdu)
    assert b"DOE" not in kept and b"JANE" not in kept and b"MRN" not in kept
    # Everything else is kept byte for byte: the comment's length, the PDV header between
    # its two fragments, the status after it, and the next command set alike.
    expected = (pdu + pdu).replace(b"DOE^", bytes(4)).replace(b"JANE MRN", bytes(8))
    assert kept == expected


def test_data_set_is_cut_command_kept() -> None:
    command = b"\x00\x00\x00\x01" + b"CMD-SET-BYTES"
    data_set = b"PATIENT^NAME^DATA"
    pdvs = struct.pack("!IBB", len(command) + 2, 1, 0x03) + command
    pdvs += struct.pack("!IBB", len(data_set) + 2, 1, 0x02) + data_set
    pdu = b"\x04\x00" + struct.pack("!I", len(pdvs)) + pdvs
    release = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    stream = DicomStream()
    stream.feed(pdu + release)
    kept = _kept(stream, pdu + release)
    assert b"CMD-SET-BYTES" in kept and b"PATIENT" not in kept
    assert kept.endswith(release)  # framing after the data set survives
    at = pdu.index(data_set)
    assert kept == pdu[:at] + b"." * len(data_set) + pdu[at + len(data_set) :] + release


def test_hl7_keeps_msh_only() -> None:
    message = b"\x0bMSH|^~\\&|LAB|HOSP|||20260101||ORU^R01|42|P|2.5\rPID|1||SECRET-PID\r\x1c\r"
    stream = Hl7Stream()
    stream.feed(message[:30])
    stream.feed(message[30:])
    kept = _kept(stream, message * 1)
    assert kept.startswith(b"\x0bMSH|") and b"ORU^R01" in kept
    assert b"SECRET" not in kept and b"PID" not in kept
    assert kept.endswith(b"\x1c\r")
