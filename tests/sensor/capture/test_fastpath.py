"""The compiled second pass (fastpath.c) gives exactly what the Python path gives."""

from __future__ import annotations

import importlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pcapy
import pytest

from dissectors.registry import load_dissectors
from sensor.capture import fastread
from sensor.capture.offline import OfflineCapture
from sensor.pipeline import Pipeline

from .tiny import recut

ROOT = Path(__file__).resolve().parents[3]
PCAPS = ROOT / "pcaps"


class Lines:
    """A sink that keeps what is written."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, obj: dict[str, Any]) -> None:
        self.lines.append(json.loads(json.dumps(obj, default=str)))


Run = tuple[list[Any], list[Any], dict[str, Any], int]


def run(paths: list[Path], fast: bool) -> Run:
    records, events = Lines(), Lines()
    pipeline = Pipeline(load_dissectors(), associations=records, events=events)
    pipeline.use_fast = fast
    for path in paths:
        pipeline.read(OfflineCapture(str(path)))
    pipeline.finish()
    stats = pipeline.engine.stats
    counters = {
        "packets": stats.packets,
        "payload_bytes": stats.payload_bytes,
        "gaps": stats.stream.gaps,
        "dimse": dict(pipeline.counters.dimse),
        "anomalies": dict(pipeline.counters.anomalies),
    }
    return records.lines, events.lines, counters, stats.fast_packets


def classic_ethernet(path: Path) -> bool:
    return path.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4") and (
        pcapy.open_offline(str(path)).datalink() == 1
    )


CASES = [p for p in sorted(PCAPS.glob("**/capture.pcap")) if classic_ethernet(p)]


def test_the_compiled_reader_is_built() -> None:
    """make setup builds it; without it every figure in bench/ is the Python path's."""
    assert fastread.available()


@pytest.mark.parametrize("capture", CASES, ids=[str(c.parent.relative_to(PCAPS)) for c in CASES])
def test_same_records_events_and_counts(capture: Path) -> None:
    assert run([capture], True)[:3] == run([capture], False)[:3]


def test_tiny_segments_and_several_files(tmp_path: Path) -> None:
    cut = tmp_path / "tiny.pcap"
    recut(PCAPS / "dcmtk-store-11112" / "capture.pcap", cut, seed=5)
    files = [cut, PCAPS / "dcmtk-find-move-get" / "capture.pcap", cut]
    assert run(files, True)[:3] == run(files, False)[:3]


def imaging_capture(tmp_path: Path, seed: int, packets: int) -> Path:
    """A small imaging-VLAN capture from bench/generate.py (every real peer's traffic)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    generate = importlib.import_module("generate")
    path = tmp_path / "imaging.pcap"
    argv = ["--imaging", "--seed", str(seed), "--packets", str(packets), "--out", str(path)]
    assert generate.main(argv) == 0
    return path


def test_an_imaging_vlan_capture(tmp_path: Path) -> None:
    """Many concurrent C-STOREs: most segments absorbed in C, the same records and counts."""
    path = imaging_capture(tmp_path, 3, 40000)
    fast = run([path], True)
    slow = run([path], False)
    assert fast[:3] == slow[:3]
    assert len(fast[0]) >= 100
    assert slow[3] == 0 and fast[3] > fast[2]["packets"] // 10  # many never reached Python


def test_scanner_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    sll = next(p for p in sorted(PCAPS.glob("**/capture.pcap")) if not classic_ethernet(p))
    with pytest.raises(ValueError):
        fastread.FastReader(str(sll), set(), set())
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(ValueError):
        fastread.FastReader(str(junk), set(), set())


def test_a_file_cut_mid_packet_says_so(tmp_path: Path) -> None:
    data = (PCAPS / "dcmtk-echo-104" / "capture.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 20])
    reader = fastread.FastReader(str(cut), set(), set())
    assert list(reader.packets(lambda report, final: None)) == []
    assert reader.error is not None and "cut" in reader.error


def test_keys_match_the_c_side() -> None:
    """Python's key for a flow is the one C builds from its packets (lower endpoint first)."""
    a = fastread.endpoint("10.0.0.2", 104)
    b = fastread.endpoint("10.0.0.10", 50000)
    key, a_lower = fastread.flow_key(a, b, None)
    assert a_lower and key == a + b + b"\xff\xff"
    key6, _ = fastread.flow_key(fastread.endpoint("::1", 1), fastread.endpoint("::2", 2), 7)
    assert len(key6) == 38 and key6.endswith(b"\x00\x07")


def _with_cut_frames(src: Path, dst: Path, every: int) -> int:
    """Copy a classic pcap, keeping only the first 100 bytes of every ``every``-th large frame
    (its original length kept): a snaplen cut in the middle of absorbed data-set segments."""
    data = src.read_bytes()
    out = bytearray(data[:24])
    pos, n, cut = 24, 0, 0
    while pos + 16 <= len(data):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if caplen > 1000:
            n += 1
            if n % every == 0:
                frame = frame[:100]
                cut += 1
        out += struct.pack("<IIII", sec, usec, len(frame), wire) + frame
    dst.write_bytes(bytes(out))
    return cut


def test_snaplen_cut_frames_between_absorbed_segments(tmp_path: Path) -> None:
    """A frame the C loop hands over whole (cut by the snaplen) comes after what it absorbed."""
    for every in (3, 7):
        path = tmp_path / f"cut{every}.pcap"
        assert _with_cut_frames(PCAPS / "dcmtk-store-11112" / "capture.pcap", path, every) > 0
        fast, slow = run([path], True), run([path], False)
        assert fast[:3] == slow[:3]
        assert fast[3] > 0
