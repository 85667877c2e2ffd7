"""The compiled loop on live interfaces (fastread.LiveReader) gives what the Python path gives.

libpcap's offline reader stands in for an interface here: its ``next`` is the one a live
handle has (pcapy's Reader), so the packets go through ``LiveSource`` and the pipeline's live
feed exactly as in ``capture``, with the timer's ticks in between; only the clock is the
capture's. tests/sensor/test_one_sensor.py runs the same path on a veth pair.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dpkt
import pcapy
import pytest

from dissectors.registry import load_dissectors
from sensor.capture.decode import decoder_for
from sensor.capture.errors import CaptureError
from sensor.capture.live import LiveSource
from sensor.pipeline import Pipeline
from sensor.policy.config import load_config

from .test_fastpath import (
    CASES,
    FLAGGED,
    PCAPS,
    REFRAMED,
    Lines,
    _late_old_ack,
    _mutated,
    _receiver_seen_late,
    _with_cut_frames,
    imaging_capture,
    session_counters,
)
from .tiny import recut

ZONES = PCAPS / "zones"


class Interface:
    """pcapy's offline reader as a live handle: ``next`` gives (None, b"") when drained.

    ``burst`` packets are waiting at each look (the rest arrive later); ``now`` is the time
    of the newest packet handed out, the clock a tick reads.
    """

    def __init__(self, path: Path, burst: int) -> None:
        self.reader = pcapy.open_offline(str(path))
        self.burst = burst
        self.waiting = 0
        self.ended = False
        self.now = 0.0

    def next(self) -> tuple[Any, bytes]:
        if self.waiting <= 0 or self.ended:
            return None, b""
        header, data = self.reader.next()
        if header is None:
            self.ended = True
            return None, b""
        self.waiting -= 1
        sec, usec = header.getts()
        self.now = sec + usec * 1e-6
        return header, data


Run = tuple[list[Any], list[Any], dict[str, Any], int]


def live_run(paths: list[Path], compiled: bool, burst: int = 300, drain: int = 4096) -> Run:
    records, events = Lines(), Lines()
    pipeline = Pipeline(load_dissectors(), associations=records, events=events)
    pipeline.use_fast = compiled
    pipeline.follow_all()
    assert pipeline.compile_live() == compiled
    with session_counters() as sessions:
        for path in paths:
            handle = Interface(path, burst)
            linktype = handle.reader.datalink()
            source = LiveSource("test0", handle, linktype, decoder_for(linktype), -1)
            while not handle.ended:
                handle.waiting = burst
                while handle.waiting and not handle.ended:
                    pipeline.feed(pipeline.live_packets(source, drain), source.decode)
                pipeline.tick(handle.now)  # the live loop's timer, between looks
        pipeline.finish()
    stats = pipeline.engine.stats
    counters = {
        "packets": stats.packets,
        "payload_bytes": stats.payload_bytes,
        # Not kept_memory (reservations), nor unacked_dropped_bytes: the compiled loop's copy
        # of absorbed bytes is bound by bytes only, Python's also by 1,024 segments, so on
        # tiny segments Python lets more go (offline the same: test_fastpath.py).
        "stream": {
            k: v
            for k, v in dataclasses.asdict(stats.stream).items()
            if k not in ("kept_memory", "unacked_dropped_bytes")
        },
        "dimse": dict(pipeline.counters.dimse),
        "anomalies": dict(pipeline.counters.anomalies),
        "alerts": dict(pipeline.counters.alerts),
        "sessions": sessions,
    }
    return records.lines, events.lines, counters, stats.fast_packets


LIVE_CASES = [c for c in CASES if "evasion" in str(c) or "zones" in str(c) or "dcmtk" in str(c)]


@pytest.mark.parametrize(
    "capture", LIVE_CASES, ids=[str(c.parent.relative_to(PCAPS)) for c in LIVE_CASES]
)
def test_same_records_events_and_counts_live(capture: Path) -> None:
    compiled = live_run([capture], True)
    python = live_run([capture], False)
    assert compiled[:3] == python[:3]
    assert python[3] == 0


def test_the_compiled_loop_absorbs_data_sets_live() -> None:
    """A C-STORE of real images: most of its segments never become Python objects."""
    capture = PCAPS / "dcmtk-store-11112" / "capture.pcap"
    compiled = live_run([capture], True)
    assert compiled[:3] == live_run([capture], False)[:3]
    assert compiled[3] > compiled[2]["packets"] // 3


@pytest.mark.parametrize(("burst", "drain"), [(1, 1), (7, 3), (5000, 4096)])
def test_tiny_segments_any_burst(tmp_path: Path, burst: int, drain: int) -> None:
    """However the packets arrive (one per look, a few, all at once), the same results."""
    cut = tmp_path / "tiny.pcap"
    recut(PCAPS / "dcmtk-store-11112" / "capture.pcap", cut, seed=7)
    files = [cut, PCAPS / "dcmtk-find-move-get" / "capture.pcap"]
    compiled = live_run(files, True, burst, drain)
    assert compiled[:3] == live_run(files, False, burst, drain)[:3]


def test_an_imaging_vlan_live(tmp_path: Path) -> None:
    """Many concurrent C-STOREs on an imaging VLAN, live: the same records and counts."""
    path = imaging_capture(tmp_path, 4, 30000)
    compiled = live_run([path], True)
    python = live_run([path], False)
    assert compiled[:3] == python[:3]
    assert len(compiled[0]) >= 80
    assert compiled[3] > compiled[2]["packets"] // 10


@pytest.mark.parametrize("burst", [1, 50])
def test_headers_anywhere_live(tmp_path: Path, burst: int) -> None:
    """Segments cut at random (1-2,000 bytes), progress reported between any two: the same."""
    cut = tmp_path / "cut.pcap"
    recut(PCAPS / "dcmtk-store-11112" / "capture.pcap", cut, seed=21, most=2000)
    compiled = live_run([cut], True, burst)
    assert compiled[:3] == live_run([cut], False, burst)[:3]
    assert compiled[3] > 0


def test_snaplen_cut_frames_live(tmp_path: Path) -> None:
    """A frame cut by the snaplen between absorbed segments goes to Python, after them."""
    path = tmp_path / "cut.pcap"
    assert _with_cut_frames(PCAPS / "dcmtk-store-11112" / "capture.pcap", path, 5) > 0
    compiled = live_run([path], True)
    assert compiled[:3] == live_run([path], False)[:3]
    assert compiled[3] > 0


def test_an_old_ack_after_a_newer_one_live(tmp_path: Path) -> None:
    """Reordered ACKs between messages, then a changed copy of acknowledged bytes: the
    compiled loop reports the highest ACK it absorbed, and nothing is flagged (as Python)."""
    path = tmp_path / "late-ack.pcap"
    _late_old_ack(PCAPS / "dcmtk-echo-104" / "capture.pcap", path)
    compiled = live_run([path], True)
    assert compiled[:3] == live_run([path], False)[:3]
    assert compiled[3] > 0


@pytest.mark.parametrize("change", FLAGGED + REFRAMED)
def test_a_changed_header_inside_a_data_set_live(tmp_path: Path, change: str) -> None:
    """Changed headers inside a data set (crafted), progress reported every few packets,
    in the middle of what the compiled loop crosses: the same as Python."""
    path = tmp_path / f"{change}.pcap"
    _mutated(PCAPS / "dcmtk-store-11112" / "capture.pcap", path, change)
    compiled = live_run([path], True, burst=3)
    assert compiled[:3] == live_run([path], False, burst=3)[:3]
    assert compiled[3] > 0


def test_the_receiver_seen_late_live(tmp_path: Path) -> None:
    """The peer's first ACK after one direction alone is Python's, live too: a changed copy
    of bytes sent after it is flagged alike, wherever it falls."""
    src = PCAPS / "dcmtk-store-11112" / "capture.pcap"
    for k in range(5, 105, 3):
        path = tmp_path / f"late{k}.pcap"
        _receiver_seen_late(src, path, k)
        compiled = live_run([path], True)
        assert compiled[:3] == live_run([path], False)[:3], k


def _stopped_after(path: Path, compiled: bool) -> tuple[Any, ...]:
    """Every packet at one look, then the sensor stops (no tick between): what it said."""
    records, events, alerts = Lines(), Lines(), Lines()
    config = load_config(str(ZONES / "credentials-move-query" / "config.yaml"))
    pipeline = Pipeline(
        load_dissectors(), associations=records, events=events, policy_config=config
    )
    pipeline.alert_sinks.append(alerts.write)
    pipeline.use_fast = compiled
    pipeline.follow_all()
    pipeline.compile_live()
    handle = Interface(path, 1 << 20)
    handle.waiting = 1 << 20
    source = LiveSource("test0", handle, 1, decoder_for(1), -1)
    while not handle.ended:
        pipeline.feed(pipeline.live_packets(source, 4096), source.decode)
    pipeline.finish()
    last = (pipeline.last_ts, pipeline.counters.last_packet_ts)
    return records.lines, events.lines, alerts.lines, last, pipeline.engine.stats.fast_packets


def test_stopped_between_ticks(tmp_path: Path) -> None:
    """The sensor stops right after pure ACKs the compiled loop absorbed (no tick since):
    its last packet time is theirs, as in Python, so what the end decides (a C-MOVE still
    pending, an association's end) is dated alike."""
    with (ZONES / "credentials-move-query" / "capture.pcap").open("rb") as fh:
        frames = list(dpkt.pcap.Reader(fh))
    absorbed = 0
    for n, (_, buf) in enumerate(frames, 1):
        tcp = dpkt.ethernet.Ethernet(buf).data.data
        if tcp.data or tcp.flags != dpkt.tcp.TH_ACK:
            continue  # a cut after a pure ACK
        path = tmp_path / f"first{n}.pcap"
        with path.open("wb") as fh:
            writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
            for ts, frame in frames[:n]:
                writer.writepkt(frame, ts)
        compiled = _stopped_after(path, True)
        assert compiled[:4] == _stopped_after(path, False)[:4], n
        absorbed += compiled[4]
    assert absorbed > 0


def test_alert_pcap_keeps_every_packet_in_python(tmp_path: Path) -> None:
    """--alert-pcap keeps the packets of alerting associations: nothing is absorbed then."""
    pipeline = Pipeline(load_dissectors())
    pipeline.keep_alert_packets(str(tmp_path / "pcaps"))
    pipeline.follow_all()
    assert not pipeline.compile_live()
    assert pipeline.engine.fast is None


def test_an_interface_error_is_one_line() -> None:
    """libpcap failing under the compiled loop is a CaptureError naming the interface."""

    class Broken:
        def next(self) -> tuple[Any, bytes]:
            raise pcapy.PcapError("The interface went down")

    pipeline = Pipeline(load_dissectors())
    pipeline.follow_all()
    assert pipeline.compile_live()
    source = LiveSource("eth9", Broken(), 1, decoder_for(1), -1)
    with pytest.raises(CaptureError, match="interface eth9: The interface went down"):
        pipeline.feed(pipeline.live_packets(source, 10), source.decode)


def test_other_link_types_take_the_python_path() -> None:
    """The compiled loop reads Ethernet frames; a Linux cooked capture goes through Python."""
    captures = sorted(PCAPS.glob("**/capture.pcap"))
    sll = next(p for p in captures if pcapy.open_offline(str(p)).datalink() != 1)
    compiled = live_run([sll], True)
    assert compiled[:3] == live_run([sll], False)[:3]
    assert compiled[3] == 0
