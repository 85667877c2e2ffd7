"""Retransmitted copies of bytes already delivered in order are compared with the decoded copy.

The reassembler keeps delivered bytes until the peer's ACK passes them (within a cap), so a
retransmission that carries different bytes is an ``overlap-mismatch`` like an overlap of
held bytes; through the engine it is one event per segment, and the association's total.
"""

from __future__ import annotations

from typing import Any

from dissectors.base import CloseReason, Direction
from dissectors.dicom import DICOM
from sensor.capture.decode import TH_FIN, TH_SYN, Segment
from sensor.flow.engine import FlowEngine
from sensor.flow.stream import (
    KEPT_RUN_OVERHEAD,
    Chunk,
    OverlapMismatch,
    ReassemblyStats,
    StreamReassembler,
)
from sensor.flow.table import EngineConfig
from tests.sensor.flow.test_skip import MSS, conversation

ISN = 4_294_967_000  # the stream wraps past 2**32 within a few segments


def stream(**caps: int) -> StreamReassembler:
    """A reassembler whose peer's ACKs are seen (the SYN-ACK acknowledged the SYN)."""
    r = StreamReassembler(**caps)
    r.add(ISN, b"", 0.0, TH_SYN)
    r.release(ISN + 1)
    return r


def joined(chunks: list[Chunk]) -> bytes:
    out = b""
    for chunk in chunks:
        assert isinstance(chunk, bytes)
        out += chunk
    return out


def seq(offset: int) -> int:
    return (ISN + 1 + offset) & 0xFFFFFFFF


def test_differing_copy_of_delivered_bytes_is_a_mismatch_and_the_first_is_kept() -> None:
    r = stream()
    assert joined(r.add(seq(0), b"MOVE TO EXFIL...", 1.0)) == b"MOVE TO EXFIL..."
    assert joined(r.add(seq(16), b"tail", 1.1)) == b"tail"
    assert r.add(seq(0), b"MOVE TO EVIL....", 1.2) == []  # nothing delivered twice
    assert (r.stats.retransmissions, r.stats.overlap_mismatches, r.mismatches) == (1, 1, 1)
    assert r.stats.uncompared_bytes == 0
    assert r.offset == 20


def test_identical_copy_is_a_plain_retransmission() -> None:
    r = stream()
    r.add(seq(0), b"0123456789", 1.0)
    r.add(seq(10), b"abcdefghij", 1.1)
    r.add(seq(0), b"0123456789", 1.2)
    r.add(seq(5), b"56789abcde", 1.3)  # straddles two delivered segments
    assert (r.stats.retransmissions, r.stats.overlap_mismatches, r.mismatches) == (2, 0, 0)
    assert r.stats.uncompared_bytes == 0


def test_copy_reaching_past_the_delivered_end_is_compared_and_its_new_bytes_delivered() -> None:
    r = stream()
    r.add(seq(0), b"0123456789", 1.0)
    assert joined(r.add(seq(6), b"6XY9NEW", 1.1)) == b"NEW"
    assert (r.stats.overlaps, r.stats.overlap_mismatches) == (1, 1)
    # The same straddle with the right bytes is no mismatch.
    assert joined(r.add(seq(11), b"EWmore", 1.2)) == b"more"
    assert r.stats.overlap_mismatches == 1


def test_acknowledged_bytes_are_released_and_not_compared() -> None:
    r = stream()
    r.add(seq(0), b"a" * 100, 1.0)
    r.add(seq(100), b"b" * 100, 1.1)
    assert r.kept_bytes == 200
    r.release(seq(150))  # half of the second run: its acknowledged head goes
    assert r.kept_bytes == 50
    assert r.stats.kept_memory == 50 + KEPT_RUN_OVERHEAD
    r.release(seq(100))  # an older ACK changes nothing
    assert r.kept_bytes == 50
    # The receiver has the first copy of [0, 150): a changed copy of it is dropped there.
    r.add(seq(0), b"X" * 100, 1.2)
    assert r.stats.overlap_mismatches == 0 and r.stats.uncompared_bytes == 0
    r.add(seq(150), b"b" * 49 + b"X", 1.3)
    assert r.stats.overlap_mismatches == 1
    r.release(seq(500))  # past what was delivered (overtook its data): everything
    assert r.kept_bytes == 0
    r.add(seq(100), b"Y" * 100, 1.4)
    assert r.stats.overlap_mismatches == 1 and r.stats.uncompared_bytes == 0


def test_the_cap_lets_the_oldest_go_and_counts_what_could_not_be_compared() -> None:
    stats = ReassemblyStats()
    r = stream(max_unacked_bytes=100, stats=stats)
    for i in range(3):
        r.add(seq(60 * i), bytes([0x41 + i]) * 60, 1.0 + i)
    # The oldest bytes go first, a run cut where the cap falls: [80, 180) stays.
    assert r.kept_bytes == 100
    assert stats.unacked_dropped_bytes == 80
    r.add(seq(0), b"Z" * 60, 2.0)  # let go at the cap: cannot be compared
    assert (stats.overlap_mismatches, stats.uncompared_bytes) == (0, 60)
    r.add(seq(70), b"B" * 20, 2.1)  # 10 bytes let go, 10 kept (and the same)
    assert (stats.overlap_mismatches, stats.uncompared_bytes) == (0, 70)
    r.add(seq(110), b"Z" * 20, 2.2)  # kept, and different
    assert (stats.overlap_mismatches, stats.uncompared_bytes) == (1, 70)
    assert r.let_go(30) == 30 and r.kept_bytes == 70
    assert stats.kept_memory == 70 + 2 * KEPT_RUN_OVERHEAD


def test_the_segment_cap_bounds_the_runs_kept() -> None:
    r = stream(max_unacked_segments=8)
    for i in range(100):
        r.add(seq(i), b"x", 1.0)
    assert r.kept_bytes == 8
    assert r.stats.unacked_dropped_bytes == 92


def test_the_total_cap_over_every_stream_bounds_what_is_kept() -> None:
    stats = ReassemblyStats()
    total = 2 * (100 + KEPT_RUN_OVERHEAD)
    a = stream(stats=stats, max_unacked_total=total)
    b = stream(stats=stats, max_unacked_total=total)
    a.add(seq(0), b"a" * 100, 1.0)
    b.add(seq(0), b"b" * 100, 1.0)
    assert stats.kept_memory == total
    a.add(seq(100), b"c" * 100, 1.1)  # no room left: not kept, counted
    assert (a.kept_bytes, stats.unacked_dropped_bytes) == (100, 100)
    a.add(seq(100), b"X" * 100, 1.2)
    assert stats.uncompared_bytes == 100 and stats.overlap_mismatches == 0
    b.release(seq(100))
    assert stats.kept_memory == 100 + KEPT_RUN_OVERHEAD
    a.discard()
    assert stats.kept_memory == 0


def test_nothing_is_kept_before_an_ack_of_the_peer_is_seen() -> None:
    r = StreamReassembler()
    r.add(ISN, b"", 0.0, TH_SYN)  # one-sided capture: the peer's packets are not seen
    r.add(seq(0), b"0123456789", 1.0)
    assert r.kept_bytes == 0
    r.add(seq(0), b"X123456789", 1.1)
    assert (r.stats.overlap_mismatches, r.stats.uncompared_bytes) == (0, 10)


def test_skipped_and_absorbed_bytes_are_kept_too() -> None:
    r = stream()
    r.add(seq(0), b"head", 1.0)
    assert r.skip(seq(4), 6, 1.1, b"skip-1")
    # The compiled reader absorbed 20 more bytes and kept the last 12 of them.
    assert r.skip(seq(10), 20, 1.2)
    r.absorbed(b"absorbed-set")
    assert r.kept_bytes == 4 + 6 + 12
    r.add(seq(4), b"skip-X", 1.3)
    r.add(seq(18), b"absorbed-set", 1.4)
    r.add(seq(10), b"12345678", 1.5)  # never kept: the reader let it go
    assert r.stats.overlap_mismatches == 1 and r.stats.uncompared_bytes == 8


def test_discard_drops_what_is_kept() -> None:
    r = stream()
    r.add(seq(0), b"x" * 50, 1.0)
    r.discard()
    assert r.kept_bytes == 0


# ---- through the engine ---------------------------------------------------------------------


def with_copy(segments: list[Segment], at: int, change: bool) -> list[Segment]:
    """``segments`` with a copy of segment ``at`` (its bytes changed or not) sent right after."""
    orig = segments[at]
    payload = bytes(b ^ 0x5A for b in orig.payload) if change else orig.payload
    copy = Segment(
        orig.ts, orig.src, orig.dst, orig.sport, orig.dport, orig.seq, orig.ack, orig.flags, payload
    )
    return [*segments[: at + 1], copy, *segments[at + 1 :]]


def run(segments: list[Segment], skipping: bool = True) -> tuple[list[Any], Any]:
    events: list[Any] = []
    infos: list[Any] = []

    def on_event(info: Any, session: Any, event: Any) -> None:
        if isinstance(event, OverlapMismatch):
            events.append(event)

    def on_close(info: Any, session: Any, reason: CloseReason) -> None:
        infos.append(info)

    engine = FlowEngine([DICOM], on_event, on_close, EngineConfig())
    engine.skipping = skipping
    for segment in segments:
        engine.process(segment)
    engine.finish(segments[-1].ts + 1.0)
    return events, (infos, engine.stats.stream)


def data_segments(segments: list[Segment]) -> list[int]:
    return [i for i, s in enumerate(segments) if len(s.payload) == MSS and not s.flags & TH_FIN]


def test_engine_flags_a_differing_copy_of_a_skipped_data_set_segment_once() -> None:
    segments = conversation(MSS)
    data = data_segments(segments)
    mid = data[len(data) // 2]
    changed = with_copy(with_copy(segments, mid, True), data[3], True)
    for skipping in (True, False):
        events, (infos, stats) = run(changed, skipping)
        assert [(e.direction, e.count, e.total) for e in events] == [
            (Direction.ORIGIN, 1, 1),
            (Direction.ORIGIN, 1, 2),
        ]
        (info,) = infos
        assert info.overlap_mismatches == 2
        assert stats.uncompared_bytes == 0
        assert stats.unacked_dropped_bytes == 0
        assert stats.kept_memory == 0  # every flow closed: nothing kept, nothing leaked


def test_engine_identical_copy_and_acked_copy_are_not_flagged() -> None:
    segments = conversation(MSS)
    data = data_segments(segments)
    events, (_, stats) = run(with_copy(segments, data[5], False))
    assert events == [] and stats.retransmissions == 1
    # A changed copy sent after the receiver acknowledged the original: dropped there.
    at = data[5]
    acked = next(
        i for i in range(at + 1, len(segments)) if not segments[i].payload and segments[i].ack
    )
    late = [*segments[: acked + 1], with_copy(segments, at, True)[at + 1], *segments[acked + 1 :]]
    events, (_, stats) = run(late)
    assert events == [] and stats.retransmissions == 1 and stats.uncompared_bytes == 0


def test_engine_releases_kept_bytes_as_the_acks_pass() -> None:
    segments = conversation(MSS)
    engine = FlowEngine([DICOM], config=EngineConfig())
    peak = 0
    for segment in segments[:-3]:
        engine.process(segment)
        for flow in engine._flows.values():
            peak = max(peak, *(side.reasm.kept_bytes for side in flow.sides))
    # The receiver ACKs every other segment: never more than a few segments are kept.
    assert 0 < peak <= 3 * MSS
    (flow,) = engine._flows.values()
    assert [side.reasm.kept_bytes for side in flow.sides] == [0, 0]
    assert engine.stats.stream.unacked_dropped_bytes == 0
    assert engine.stats.stream.kept_memory == 0


def test_engine_syn_ack_starts_keeping() -> None:
    segments = conversation(MSS)
    engine = FlowEngine([DICOM], config=EngineConfig())
    engine.process(segments[0])
    (flow,) = engine._flows.values()
    assert not any(side.reasm.acks_seen for side in flow.sides)
    engine.process(segments[1])  # the SYN-ACK acknowledges the client's SYN
    # Sides are ordered by address: the server (10.1.0.1) first, the client second.
    assert [side.ip for side in flow.sides] == ["10.1.0.1", "10.1.0.9"]
    assert [side.reasm.acks_seen for side in flow.sides] == [False, True]
