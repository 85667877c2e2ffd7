"""The compiled second pass (fastpath.c) gives exactly what the Python path gives."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pcapy
import pytest

from dissectors.dicom.association import DicomSession
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


@contextlib.contextmanager
def session_counters() -> Iterator[list[Any]]:
    """Every DICOM session's counters as it closes, in order: PDUs, PDVs, fragments, bytes
    by direction, and the framing state (more than the records show)."""
    closed: list[Any] = []
    close = DicomSession.close

    def keep(self: DicomSession, reason: Any, ts: float) -> Any:
        events = close(self, reason, ts)
        closed.append([dataclasses.asdict(c) for c in self.state.counters])
        return events

    DicomSession.close = keep  # type: ignore[method-assign]
    try:
        yield closed
    finally:
        DicomSession.close = close  # type: ignore[method-assign]


def run(paths: list[Path], fast: bool) -> Run:
    records, events = Lines(), Lines()
    pipeline = Pipeline(load_dissectors(), associations=records, events=events)
    pipeline.use_fast = fast
    with session_counters() as sessions:
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
        "sessions": sessions,
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


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_headers_anywhere_in_a_segment(tmp_path: Path, seed: int) -> None:
    """Segments cut at random (1-2,000 bytes): PDU and PDV headers fall anywhere in them,
    whole, split or several in one; the compiled loop crosses what it can, the rest is
    Python's, and every count of every session is the same."""
    files = []
    for name in ("dcmtk-store-11112", "pynetdicom-store-loopback", "dcmtk-find-move-get"):
        cut = tmp_path / f"{name}.pcap"
        if (PCAPS / name / "capture.pcap").exists():
            recut(PCAPS / name / "capture.pcap", cut, seed=seed, most=2000)
            files.append(cut)
    assert len(files) >= 2
    fast, slow = run(files, True), run(files, False)
    assert fast[:3] == slow[:3]
    assert fast[3] > 0


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


def _requestor_stream(frames: list[bytearray]) -> tuple[bytes, list[tuple[int, int, int]]]:
    """The A-ASSOCIATE-RQ sender's bytes in order, and where each came from:
    (stream offset, frame index, payload offset in the frame) per segment."""
    segments: list[tuple[int, int, int, int]] = []  # seq, frame, payload offset, length
    sender = None
    for i, frame in enumerate(frames):
        ip = dpkt.ethernet.Ethernet(bytes(frame)).data
        tcp = ip.data
        if not tcp.data:
            continue
        if sender is None:
            sender = (ip.src, tcp.sport)
        if (ip.src, tcp.sport) == sender:
            segments.append((tcp.seq, i, len(frame) - len(tcp.data), len(tcp.data)))
    base = segments[0][0]
    stream = bytearray()
    where = []
    for seq, i, off, n in sorted(segments):
        if seq - base != len(stream):
            continue  # a retransmission
        where.append((len(stream), i, off))
        stream += frames[i][off : off + n]
    return bytes(stream), where


def _mid_data_set_pdvs(stream: bytes) -> list[tuple[int, int]]:
    """(PDU header offset, PDV header offset) of data-set PDVs that are not their data set's
    first: those a compiled loop would cross into."""
    found = []
    pos, inside = 0, False
    while pos + 6 <= len(stream):
        kind, length = stream[pos], struct.unpack_from(">I", stream, pos + 2)[0]
        if kind == 0x04:
            p = pos + 6
            while p + 6 <= pos + 6 + length:
                vlen, control = struct.unpack_from(">I", stream, p)[0], stream[p + 5]
                if not control & 1 and inside:
                    found.append((pos, p))
                inside = not control & 1 and not control & 2
                p += 4 + vlen
        pos += 6 + length
    return found


def _mutated(src: Path, dst: Path, change: str) -> None:
    """``src`` with one header of a data set's later fragment changed, lengths kept."""
    with src.open("rb") as fh:
        records = [(ts, bytearray(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    frames = [buf for _, buf in records]
    stream, where = _requestor_stream(frames)
    pdvs = _mid_data_set_pdvs(stream)
    assert len(pdvs) >= 3, "the capture has no data set of several fragments"
    pdu, pdv = pdvs[len(pdvs) // 2]
    offset, value = {
        "pdv-reserved-bit": (pdv + 5, stream[pdv + 5] | 0x04),
        "pdv-command-bit": (pdv + 5, stream[pdv + 5] | 0x01),
        "pdv-even-context": (pdv + 4, 0),
        "pdu-reserved-byte": (pdu + 1, 0x01),
        "pdv-last-bit": (pdv + 5, stream[pdv + 5] | 0x02),
        "pdv-other-context": (pdv + 4, stream[pdv + 4] + 2),
        "pdv-length-past-pdu": (pdv, 0x7F),
        "pdv-length-one-less": (pdv + 3, (stream[pdv + 3] - 1) & 0xFF),
        "pdu-length-past-limit": (pdu + 2, 0x7F),
        "pdu-length-one-more": (pdu + 5, (stream[pdu + 5] + 1) & 0xFF),
        "pdu-type-abort": (pdu, 0x07),
    }[change]
    start, i, off = max(w for w in where if w[0] <= offset)
    frames[i][off + offset - start] = value
    with dst.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for ts, buf in records:
            writer.writepkt(bytes(buf), ts)


FLAGGED = ["pdv-reserved-bit", "pdv-command-bit", "pdv-even-context", "pdu-reserved-byte"]
# Changes that move the framing (a data set cut short, a length off by one, another PDU
# type, another context): whatever Python makes of them, the compiled loop makes the same.
REFRAMED = [
    "pdv-last-bit",
    "pdv-other-context",
    "pdv-length-past-pdu",
    "pdv-length-one-less",
    "pdu-length-past-limit",
    "pdu-length-one-more",
    "pdu-type-abort",
]


@pytest.mark.parametrize("change", FLAGGED + REFRAMED)
def test_a_changed_header_inside_a_data_set(tmp_path: Path, change: str) -> None:
    """A header the compiled loop would cross, changed (crafted: no real peer sends these):
    it leaves the header to Python, which flags it, and nothing else differs."""
    path = tmp_path / f"{change}.pcap"
    _mutated(PCAPS / "dcmtk-store-11112" / "capture.pcap", path, change)
    fast, slow = run([path], True), run([path], False)
    assert fast[:3] == slow[:3]
    assert fast[3] > 0
    if change in FLAGGED:
        assert slow[2]["anomalies"], "the change is one the session flags"


def _late_old_ack(src: Path, dst: Path) -> None:
    """``src`` with an acceptor's old ACK arriving again after a newer one (ACKs reordered on
    a span port), then a retransmission of the requestor's bytes between the two, one byte
    changed (crafted: an evasion). The receiver already acknowledged those bytes, so the
    copy it drops is not compared; the old ACK must not make them unacknowledged again."""
    with src.open("rb") as fh:
        records = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    packets = [dpkt.ethernet.Ethernet(buf) for _, buf in records]
    requestor = (packets[0].data.src, packets[0].data.data.sport)  # the SYN's sender
    sent: dict[int, int] = {}  # end sequence number of a requestor data segment -> its index
    old: int | None = None  # an acceptor's pure ACK below the segment that is acknowledged
    for i, eth in enumerate(packets):
        tcp = eth.data.data
        if (eth.data.src, tcp.sport) == requestor:
            if tcp.data:
                sent[(tcp.seq + len(tcp.data)) & 0xFFFFFFFF] = i
            continue
        if tcp.data or tcp.flags != dpkt.tcp.TH_ACK:
            continue
        seg = sent.get(tcp.ack)
        if seg is not None and old is not None and packets[old].data.data.ack < tcp.ack:
            break
        old = i
    else:
        raise AssertionError("no acknowledged requestor segment after an earlier ACK")
    again = packets[seg]
    tcp = again.data.data
    tcp.data = tcp.data[:-1] + bytes([tcp.data[-1] ^ 0x5A])
    tcp.sum = again.data.sum = 0
    again.data.len = 0
    ts = records[i][0]
    records[i + 1 : i + 1] = [(ts + 1e-4, records[old][1]), (ts + 2e-4, bytes(again))]
    with dst.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for ts, buf in records:
            writer.writepkt(buf, ts)


def test_an_old_ack_after_a_newer_one(tmp_path: Path) -> None:
    """Between messages the compiled loop absorbs the flow's pure ACKs: what it reports is
    the highest ACK it saw, as Python keeps it, not the last (which here is the older)."""
    path = tmp_path / "late-ack.pcap"
    _late_old_ack(PCAPS / "dcmtk-echo-104" / "capture.pcap", path)
    fast, slow = run([path], True), run([path], False)
    assert fast[:3] == slow[:3]
    assert fast[3] > 0
    assert "overlap-mismatch" not in slow[2]["anomalies"]


def _receiver_seen_late(src: Path, dst: Path, k: int) -> None:
    """``src`` with none of the acceptor's packets before the requestor's ``k``-th full-sized
    data segment (a capture that saw one direction first), and a copy of the requestor's
    segment two later with one byte changed (crafted: an evasion), right after it."""
    with src.open("rb") as fh:
        records = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    packets = [dpkt.ethernet.Ethernet(buf) for _, buf in records]
    requestor = (packets[0].data.src, packets[0].data.data.sport)  # the SYN's sender
    sent = [(eth.data.src, eth.data.data.sport) == requestor for eth in packets]
    full = [i for i, eth in enumerate(packets) if sent[i] and len(eth.data.data.data) > 1000]
    cut, again = full[k], full[k + 2]
    copy = packets[again]
    tcp = copy.data.data
    tcp.data = tcp.data[:100] + bytes([tcp.data[100] ^ 0x33]) + tcp.data[101:]
    tcp.sum = copy.data.sum = 0
    with dst.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
        for i, (ts, buf) in enumerate(records):
            if sent[i] or i > cut:
                writer.writepkt(buf, ts)
            if i == again:
                writer.writepkt(bytes(copy), ts)


def test_the_receiver_seen_late(tmp_path: Path) -> None:
    """Nothing is kept to compare before the peer's first ACK: an entry made then keeps
    nothing, so that ACK is Python's (which keeps copies from then on, and a new entry
    does). A changed copy of bytes sent after it is flagged alike, wherever it falls."""
    src = PCAPS / "dcmtk-store-11112" / "capture.pcap"
    flagged = 0
    for k in range(5, 105, 3):
        path = tmp_path / f"late{k}.pcap"
        _receiver_seen_late(src, path, k)
        fast, slow = run([path], True), run([path], False)
        assert fast[:3] == slow[:3], k
        assert fast[3] > 0
        flagged += slow[2]["anomalies"].get("overlap-mismatch", 0)
    assert flagged > 0
