"""One direction of a TCP stream put back in order: reordering, overlaps, wraparound, gaps."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.decode import TH_ACK, TH_FIN, TH_SYN
from sensor.flow.stream import Chunk, Gap, ReassemblyStats, StreamAnomaly, StreamReassembler

ISN = 1000


def opened(
    isn: int = ISN, max_buffer_bytes: int = 1 << 20, max_buffer_segments: int = 1024
) -> StreamReassembler:
    """A reassembler that saw the SYN at ``isn``: stream byte 0 is sequence number isn + 1."""
    r = StreamReassembler(max_buffer_bytes, max_buffer_segments)
    assert r.add(isn, b"", 0.0, TH_SYN) == []
    assert r.syn_seen
    return r


def replay(chunks: list[Chunk], stream: bytes) -> int:
    """Check chunks against the stream they came from; return how many bytes they covered."""
    at = 0
    for chunk in chunks:
        if isinstance(chunk, Gap):
            assert chunk.missing > 0
            at += chunk.missing
        else:
            assert chunk == stream[at : at + len(chunk)]
            at += len(chunk)
    return at


def test_in_order() -> None:
    r = opened()
    assert r.add(ISN + 1, b"hello ", 1.0, TH_ACK) == [b"hello "]
    assert r.add(ISN + 7, b"world", 2.0, TH_ACK) == [b"world"]
    assert r.offset == 11
    assert r.last_ts == 2.0


def test_empty_segments_deliver_nothing() -> None:
    r = opened()
    assert r.add(ISN + 1, b"", 1.0, TH_ACK) == []
    assert r.offset == 0


def test_out_of_order_is_held_then_released() -> None:
    r = opened()
    assert r.add(ISN + 1 + 6, b"world", 1.0) == []
    assert r.add(ISN + 1 + 11, b"!", 1.0) == []
    assert (r.buffered_bytes, r.buffered_segments) == (6, 2)
    assert r.add(ISN + 1, b"hello ", 2.0) == [b"hello ", b"world", b"!"]
    assert (r.buffered_bytes, r.buffered_segments) == (0, 0)


def test_retransmission_before_the_current_point_is_dropped_and_counted() -> None:
    r = opened()
    r.add(ISN + 1, b"hello", 1.0)
    assert r.add(ISN + 1, b"hello", 2.0) == []
    assert r.add(ISN + 2, b"ell", 2.0) == []
    assert r.stats.retransmissions == 2


def test_retransmission_of_held_data_is_counted() -> None:
    r = opened()
    r.add(ISN + 6, b"world", 1.0)
    assert r.add(ISN + 6, b"world", 1.0) == []
    assert r.stats.retransmissions == 1
    assert r.buffered_bytes == 5


def test_partial_overlap_with_delivered_data_is_trimmed() -> None:
    r = opened()
    r.add(ISN + 1, b"hello", 1.0)
    assert r.add(ISN + 4, b"LO world", 2.0) == [b" world"]
    assert r.stats.overlaps == 1


def test_overlap_with_held_data_first_copy_wins() -> None:
    r = opened()
    r.add(ISN + 1 + 5, b"ABCDE", 1.0)  # bytes 5..9
    r.add(ISN + 1 + 3, b"xxabcDEyy", 1.0)  # bytes 3..11: 5..9 differ in case
    assert r.stats.overlaps == 1
    assert r.stats.overlap_mismatches == 1
    assert r.add(ISN + 1, b"012", 2.0) == [b"012", b"xx", b"ABCDE", b"yy"]


def test_identical_overlap_is_not_a_mismatch() -> None:
    r = opened()
    r.add(ISN + 1 + 5, b"56789", 1.0)
    r.add(ISN + 1 + 3, b"3456789ab", 1.0)
    assert (r.stats.overlaps, r.stats.overlap_mismatches) == (1, 0)
    chunks = r.add(ISN + 1, b"012", 2.0)
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == b"0123456789ab"


def test_segment_spanning_several_held_runs() -> None:
    r = opened()
    r.add(ISN + 1 + 2, b"22", 1.0)
    r.add(ISN + 1 + 6, b"66", 1.0)
    r.add(ISN + 1, b"0XX3456XX9", 1.0)
    assert r.stats.overlap_mismatches == 2
    assert r.offset == 10
    assert r.buffered_segments == 0


def test_sequence_wraparound() -> None:
    isn = 2**32 - 4  # stream byte 0 is 2**32 - 3; the sequence space wraps after byte 2
    r = opened(isn)
    assert r.add(2**32 - 3, b"abc", 1.0) == [b"abc"]
    assert r.add(0, b"def", 1.0) == [b"def"]
    assert r.add(2**32 - 2, b"bc", 1.0) == []  # a retransmission from before the wrap
    assert r.stats.retransmissions == 1
    assert r.offset == 6


def test_wraparound_out_of_order() -> None:
    r = opened(2**32 - 2)
    assert r.add(3, b"world", 1.0) == []  # stream bytes 4..8, after the wrap
    assert r.add(2**32 - 1, b"hell", 1.0) == [b"hell", b"world"]


def test_syn_wraps_too() -> None:
    r = opened(2**32 - 1)  # the SYN takes the last number; data starts at 0
    assert r.add(0, b"x", 1.0) == [b"x"]


def test_mid_stream_start_from_first_data() -> None:
    r = StreamReassembler()
    assert r.add(777, b"", 0.5, TH_ACK) == []  # a bare ACK does not fix the position
    assert not r.started
    assert r.add(5000, b"abc", 1.0) == [b"abc"]
    assert not r.syn_seen
    assert r.add(5003, b"def", 1.0) == [b"def"]


def test_gap_on_byte_cap() -> None:
    r = opened(max_buffer_bytes=8)
    assert r.add(ISN + 1 + 10, b"AAAA", 1.0) == []
    assert r.add(ISN + 1 + 14, b"BBBB", 1.0) == []
    # The ninth held byte breaks the cap: bytes 0..9 are given up, exactly ten of them.
    assert r.add(ISN + 1 + 20, b"C", 1.0) == [Gap(10), b"AAAA", b"BBBB"]
    assert r.offset == 18
    assert r.buffered_bytes == 1
    assert (r.stats.gaps, r.stats.gap_bytes) == (1, 10)
    # The stream goes on after the gap.
    assert r.add(ISN + 1 + 18, b"xx", 2.0) == [b"xx", b"C"]


def test_gap_on_segment_cap() -> None:
    r = opened(max_buffer_segments=2)
    r.add(ISN + 1 + 3, b"a", 1.0)
    r.add(ISN + 1 + 5, b"b", 1.0)
    # Three held runs break the cap of two: only the first hole is given up.
    assert r.add(ISN + 1 + 7, b"c", 1.0) == [Gap(3), b"a"]
    assert r.buffered_segments == 2


def test_flush_declares_every_hole() -> None:
    r = opened()
    r.add(ISN + 1, b"ab", 1.0)
    r.add(ISN + 1 + 5, b"fg", 1.0)
    r.add(ISN + 1 + 10, b"k", 1.0)
    assert r.flush() == [Gap(3), b"fg", Gap(3), b"k"]
    assert r.flush() == []
    assert r.stats.gap_bytes == 6


def test_fin_takes_one_sequence_number() -> None:
    r = opened()
    assert r.add(ISN + 1, b"bye", 1.0, TH_FIN | TH_ACK) == [b"bye"]
    assert r.fin_seen and r.fin_reached
    assert r.offset == 4  # three bytes and the FIN
    # A retransmitted FIN is old news.
    assert r.add(ISN + 1, b"bye", 2.0, TH_FIN) == []


def test_fin_before_missing_data() -> None:
    r = opened()
    assert r.add(ISN + 1 + 3, b"def", 1.0, TH_FIN) == []
    assert r.fin_seen and not r.fin_reached
    assert r.add(ISN + 1, b"abc", 2.0) == [b"abc", b"def"]
    assert r.fin_reached


def test_flush_reaches_a_fin_behind_a_hole() -> None:
    r = opened()
    r.add(ISN + 1 + 4, b"", 1.0, TH_FIN)
    assert r.flush() == [Gap(4)]
    assert r.fin_reached


def test_data_after_the_fin_is_not_stream() -> None:
    r = opened()
    r.add(ISN + 1 + 10, b"late", 1.0)  # held: past where the FIN will be
    r.add(ISN + 1 + 3, b"", 1.0, TH_FIN)  # FIN at byte 3
    assert r.buffered_bytes == 0
    assert r.add(ISN + 1, b"abcdef", 2.0) == [b"abc"]
    assert r.fin_reached


def test_bare_fin_mid_stream() -> None:
    r = StreamReassembler()
    assert r.add(9, b"", 1.0, TH_FIN | TH_ACK) == []
    assert r.fin_reached


def test_truncated_tail_becomes_a_gap() -> None:
    r = opened()
    assert r.add(ISN + 1, b"abc", 1.0, truncated_by=7) == [b"abc", Gap(7)]
    assert r.add(ISN + 1 + 10, b"next", 1.0) == [b"next"]


def test_truncated_segment_held_out_of_order() -> None:
    r = opened()
    assert r.add(ISN + 1 + 2, b"cd", 1.0, truncated_by=3) == []
    assert r.add(ISN + 1 + 7, b"hi", 1.0) == []
    assert r.add(ISN + 1, b"ab", 1.0) == [b"ab", b"cd", Gap(3), b"hi"]


def test_shared_stats_and_reasons() -> None:
    stats = ReassemblyStats()
    a = StreamReassembler(stats=stats)
    b = StreamReassembler(stats=stats)
    a.add(1, b"x", 0.0)
    a.add(1, b"x", 0.0)
    b.add(1, b"y", 0.0)
    b.add(1, b"y", 0.0)
    assert stats.by_reason()[StreamAnomaly.RETRANSMISSION] == 2


def test_discard_frees_held_bytes() -> None:
    r = opened()
    r.add(ISN + 10, b"x" * 100, 0.0)
    r.discard()
    assert (r.buffered_bytes, r.buffered_segments) == (0, 0)


@st.composite
def shuffled_segments(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, bytes]]]:
    """A stream, an ISN, and its segments reordered, duplicated and overlapping."""
    stream = draw(st.binary(min_size=1, max_size=300))
    isn = draw(st.integers(0, 2**32 - 1))
    inner = st.integers(1, max(1, len(stream) - 1))
    cuts = sorted(draw(st.sets(inner, max_size=20 if len(stream) > 1 else 0)))
    bounds = [0, *cuts, len(stream)]
    segs = [(a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
    # Retransmissions that straddle the original boundaries, with the same bytes.
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.integers(0, len(stream) - 1))
        b = draw(st.integers(a + 1, len(stream)))
        segs.append((a, stream[a:b]))
    segs = draw(st.permutations(segs))
    return stream, isn, [((isn + 1 + at) % 2**32, data) for at, data in segs]


@given(shuffled_segments())
@settings(max_examples=300)
def test_any_order_yields_the_stream(sample: tuple[bytes, int, list[tuple[int, bytes]]]) -> None:
    stream, isn, segs = sample
    r = opened(isn)
    out: list[Chunk] = []
    for seq, data in segs:
        out += r.add(seq, data, 0.0)
    assert b"".join(c for c in out if isinstance(c, bytes)) == stream
    assert r.stats.overlap_mismatches == 0
    assert r.buffered_segments == 0


@given(shuffled_segments(), st.integers(1, 40), st.integers(1, 4))
@settings(max_examples=300)
def test_small_caps_account_for_every_byte(
    sample: tuple[bytes, int, list[tuple[int, bytes]]], cap_bytes: int, cap_segments: int
) -> None:
    stream, isn, segs = sample
    r = opened(isn, max_buffer_bytes=cap_bytes, max_buffer_segments=cap_segments)
    out: list[Chunk] = []
    for seq, data in segs:
        out += r.add(seq, data, 0.0)
        assert r.buffered_bytes <= cap_bytes
        assert r.buffered_segments <= cap_segments
    out += r.flush()
    # Every chunk sits where it belongs; data plus gaps cover the stream exactly.
    assert replay(out, stream) == len(stream)


# ---- skip: an exactly in-order segment taken by its length alone ---------------------------


def test_skip_takes_the_next_segment_by_its_length() -> None:
    r = opened()
    assert r.skip(ISN + 1, 1000, 1.0)
    assert (r.offset, r.last_ts) == (1000, 1.0)
    assert r.add(ISN + 1 + 1000, b"after", 2.0) == [b"after"]
    assert r.stats == ReassemblyStats()


def test_skip_refuses_what_add_would_not_deliver_whole_at_once() -> None:
    r = opened()
    assert not r.skip(ISN + 2, 10, 1.0)  # one byte ahead: a hole before it
    assert not r.skip(ISN, 10, 1.0)  # one byte behind: partly seen already
    assert r.offset == 0
    r.add(ISN + 1 + 20, b"held", 1.0)
    assert not r.skip(ISN + 1, 20, 1.0)  # held data must be drained after it, by add
    assert r.add(ISN + 1, b"x" * 20, 2.0) == [b"x" * 20, b"held"]
    r.add(ISN + 1 + 30, b"", 3.0, TH_FIN)
    assert not r.skip(ISN + 1 + 24, 6, 3.0)  # a FIN is known: add clips past it
    assert r.last_ts == 3.0 and r.offset == 24
    fresh = StreamReassembler()
    assert not fresh.skip(ISN, 10, 1.0)  # not started: add would make it offset 0
    assert fresh.offset == 0 and not fresh.started


def test_skip_across_sequence_wraparound() -> None:
    r = opened(2**32 - 5)
    assert r.skip(2**32 - 4, 10, 1.0)
    assert r.add(6, b"next", 2.0) == [b"next"]
    assert r.offset == 14


@given(shuffled_segments())
@settings(max_examples=300)
def test_skipping_whenever_allowed_yields_the_stream_and_the_same_stats(
    sample: tuple[bytes, int, list[tuple[int, bytes]]],
) -> None:
    stream, isn, segs = sample
    plain = opened(isn)
    fast = opened(isn)
    plain_out: list[Chunk] = []
    fast_out: list[bytes] = []
    skipped = 0
    for seq, data in segs:
        plain_out += plain.add(seq, data, 0.0)
        at = fast.offset
        if fast.skip(seq, len(data), 0.0):
            fast_out.append(stream[at : at + len(data)])
            skipped += 1
        else:
            fast_out += [c for c in fast.add(seq, data, 0.0) if isinstance(c, bytes)]
        assert fast.offset == plain.offset
    assert b"".join(fast_out) == stream
    assert fast.stats == plain.stats
    assert fast.buffered_segments == 0
    if segs[0][0] == (isn + 1) % 2**32:
        assert skipped > 0
