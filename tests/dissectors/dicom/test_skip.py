"""The skip seam: bytes inside a data set are accounted unseen, exactly as feeding them would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.base import CloseReason, Direction, Skipping, skipper_of
from dissectors.dicom import DicomSession, Limits
from dissectors.dicom.events import Anomaly, DimseMessage

from . import vectors as v
from .framing import (
    COMMAND_LAST,
    DATA,
    DATA_LAST,
    DATA_SET,
    ORIGIN,
    PEER,
    STORE_PDU_COMMAND,
    STORE_PDU_RSP,
    STREAMS,
    Feeder,
    Segment,
    pdata,
    pdv,
    runs,
    split,
)

MSS = 1448

# Synthetic pixel data (no PDU start patterns, no PHI): large enough to span many segments.
BIG = bytes((i * 13 + 0x30) & 0x7F | 0x20 for i in range(20_000))
# A C-STORE whose 20000-byte data set comes in three PDVs of two PDUs (8000 | 4000, 8000).
BIG_PDU_1 = pdata(pdv(1, DATA, BIG[:8000]))
BIG_PDU_2 = pdata(pdv(1, DATA, BIG[8000:12000]), pdv(1, DATA_LAST, BIG[12000:]))
BIG_STREAM: list[Segment] = [
    (ORIGIN, v.RQ_STORE),
    (PEER, v.AC_STORE),
    (ORIGIN, STORE_PDU_COMMAND),
    (ORIGIN, BIG_PDU_1),
    (ORIGIN, BIG_PDU_2),
    (PEER, STORE_PDU_RSP),
    (ORIGIN, v.RELEASE_RQ),
    (PEER, v.RELEASE_RP),
]
ALL_STREAMS = {**STREAMS, "big": BIG_STREAM}


class SkipFeeder(Feeder):
    """The engine's rule: with nothing pending, skip what the session says it need not see.

    ``greedy`` also skips the skippable prefix of a longer chunk and feeds the rest, which
    the engine never does but the session's contract allows.
    """

    def __init__(self, session: DicomSession, greedy: bool = False) -> None:
        super().__init__(session)
        self.greedy = greedy
        self.skipped = 0

    def feed(self, direction: Direction, chunk: bytes, ts: float = 1.0) -> list[Any]:
        if self.pending[direction] or not chunk:
            return super().feed(direction, chunk, ts)
        n = self.session.skippable(direction)
        if n >= len(chunk) or (self.greedy and n):
            n = min(n, len(chunk))
            events = self.session.skip(direction, n, ts)
            self.skipped += n
            self.events.extend(events)
            if n < len(chunk):
                events = events + super().feed(direction, chunk[n:], ts)
            return events
        return super().feed(direction, chunk, ts)


def segments(stream: list[Segment], size: int = MSS) -> list[Segment]:
    """Each direction's run cut into TCP-like segments of ``size`` bytes."""
    return [(d, data[i : i + size]) for d, data in runs(stream) for i in range(0, len(data), size)]


def outcome(feeder: Feeder, stream: list[Segment]) -> tuple[Any, ...]:
    events = feeder.run(stream, 5.0)
    events += feeder.session.close(CloseReason.CONNECTION_CLOSED, 6.0)
    return events, feeder.session.state, feeder.pending


def plain(stream: list[Segment], detected_by: str = "associate-rq") -> tuple[Any, ...]:
    return outcome(Feeder(DicomSession(detected_by)), stream)


def skipping(
    stream: list[Segment], greedy: bool = False, detected_by: str = "associate-rq"
) -> tuple[tuple[Any, ...], int]:
    feeder = SkipFeeder(DicomSession(detected_by), greedy)
    return outcome(feeder, stream), feeder.skipped


def at_big_data_set() -> DicomSession:
    """A session that has just read the PDU and PDV headers of BIG_PDU_1 (8000 bytes left)."""
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    feeder.run([(ORIGIN, v.RQ_STORE), (PEER, v.AC_STORE), (ORIGIN, STORE_PDU_COMMAND)])
    feeder.feed(ORIGIN, BIG_PDU_1[:12])  # P-DATA header 04 00 <len>, PDV header <len> 01 00
    assert feeder.pending == {ORIGIN: b"", PEER: b""}
    return session


# ---- the seam -------------------------------------------------------------------------


def test_dicom_session_is_skipping() -> None:
    session = DicomSession("associate-rq")
    assert isinstance(session, Skipping)
    assert skipper_of(session) is session


def test_sessions_without_the_methods_are_not_skipping() -> None:
    class Plain:
        def feed(self, direction: Direction, data: bytes, ts: float) -> tuple[int, list[Any]]:
            return len(data), []

        def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Any]:
            return []

        def close(self, reason: CloseReason, ts: float) -> list[Any]:
            return []

    assert skipper_of(Plain()) is None


# ---- skippable: where it is and is not positive ----------------------------------------


def test_skippable_is_the_rest_of_a_data_set_pdv() -> None:
    session = at_big_data_set()
    assert session.skippable(ORIGIN) == 8000
    assert session.skippable(PEER) == 0  # PEER stands at a PDU boundary
    session.feed(ORIGIN, BIG[:100], 1.0)
    assert session.skippable(ORIGIN) == 7900
    assert session.skip(ORIGIN, 7900, 1.0) == []
    # The PDU ended with its only PDV: the next byte is a PDU header.
    assert session.skippable(ORIGIN) == 0


def test_not_skippable_at_a_boundary_in_headers_or_in_a_command() -> None:
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    assert session.skippable(ORIGIN) == 0
    feeder.run([(ORIGIN, v.RQ_STORE[:20])])  # inside an associate RQ
    assert session.skippable(ORIGIN) == 0
    feeder.run([(ORIGIN, v.RQ_STORE[20:]), (PEER, v.AC_STORE)])
    # P-DATA header only: the PDV header is still to come.
    feeder.feed(ORIGIN, STORE_PDU_COMMAND[:6])
    assert session.skippable(ORIGIN) == 0
    # Inside the command PDV's value: commands are parsed, never skipped.
    feeder.feed(ORIGIN, STORE_PDU_COMMAND[6:20])
    assert session.skippable(ORIGIN) == 0
    feeder.feed(ORIGIN, STORE_PDU_COMMAND[20:])
    # Between the PDV headers of BIG_PDU_2: the second header is not skippable.
    feeder.feed(ORIGIN, BIG_PDU_1)
    feeder.feed(ORIGIN, BIG_PDU_2[: 12 + 4000])
    assert session.skippable(ORIGIN) == 0


def test_not_skippable_while_framing_is_lost() -> None:
    session = DicomSession("mid-stream")
    assert session.skippable(PEER) == 0  # a mid-stream PEER starts searching for a PDU
    session.feed(PEER, b"\x00" * 40, 1.0)
    assert session.skippable(PEER) == 0


# ---- skip: the same accounting as feeding ----------------------------------------------


def test_large_pdv_skipped_gives_identical_events_and_counters() -> None:
    stream = segments(BIG_STREAM)
    (events, state, pending), skipped = skipping(stream)
    assert (events, state, pending) == plain(stream) == plain(BIG_STREAM)
    # Most of the 20000 data set bytes went by unseen.
    assert skipped > 15_000
    c = state.counters[ORIGIN]
    assert (c.data_set_fragments, c.data_set_bytes, c.data_sets) == (3, 20_000, 1)
    assert c.pdata_bytes == len(STORE_PDU_COMMAND) + len(BIG_PDU_1) + len(BIG_PDU_2)
    assert [e.command.name for e in events if isinstance(e, DimseMessage)] == [
        "C-STORE-RQ",
        "C-STORE-RSP",
    ]


def test_skipping_the_last_fragment_ends_the_data_set() -> None:
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    feeder.run([(ORIGIN, v.RQ_STORE), (PEER, v.AC_STORE), (ORIGIN, STORE_PDU_COMMAND)])
    feeder.feed(ORIGIN, BIG_PDU_1)
    feeder.feed(ORIGIN, BIG_PDU_2[: 12 + 4000 + 6])  # up to the last PDV's header
    c = session.state.counters[ORIGIN]
    assert session.skippable(ORIGIN) == 8000
    assert (c.data_sets, c.data_set_fragments) == (0, 3)
    assert session.skip(ORIGIN, 8000, 2.0) == []
    assert c.data_sets == 1
    assert session.state.last_ts == 2.0
    # The next PDU is parsed as usual.
    [message] = feeder.feed(PEER, STORE_PDU_RSP)
    assert isinstance(message, DimseMessage) and message.command.name == "C-STORE-RSP"


def test_pdv_boundary_inside_a_segment_is_not_skipped() -> None:
    session = DicomSession("associate-rq")
    feeder = Feeder(session)
    feeder.run([(ORIGIN, v.RQ_STORE), (PEER, v.AC_STORE), (ORIGIN, STORE_PDU_COMMAND)])
    feeder.feed(ORIGIN, BIG_PDU_1)
    feeder.feed(ORIGIN, BIG_PDU_2[: 12 + 3000])  # 1000 bytes left in the first PDV
    segment = BIG_PDU_2[12 + 3000 : 12 + 3000 + MSS]  # its end, the next PDV header, data
    assert session.skippable(ORIGIN) == 1000 < len(segment)
    before = (repr(session.state), session.skippable(ORIGIN))
    with pytest.raises(ValueError):
        session.skip(ORIGIN, len(segment), 1.0)
    assert (repr(session.state), session.skippable(ORIGIN)) == before
    # So the segment is fed, and the second PDV's header is read from it.
    feeder.feed(ORIGIN, segment)
    assert session.state.counters[ORIGIN].data_set_fragments == 3
    assert session.skippable(ORIGIN) == 8000 - (MSS - 1000 - 6)


@pytest.mark.parametrize("n", [-1, 8001, 1 << 40])
def test_skip_of_a_wrong_length_raises_and_changes_nothing(n: int) -> None:
    session = at_big_data_set()
    before = repr(session.state)
    with pytest.raises(ValueError):
        session.skip(ORIGIN, n, 1.0)
    with pytest.raises(ValueError):
        session.skip(PEER, 1, 1.0)  # nothing skippable there
    assert repr(session.state) == before
    assert session.skippable(ORIGIN) == 8000


def test_skip_of_nothing_is_a_no_op_but_for_the_time() -> None:
    session = at_big_data_set()
    counters = repr(session.state.counters)
    assert session.skip(ORIGIN, 0, 9.0) == []
    assert session.skip(PEER, 0, 9.0) == []
    assert repr(session.state.counters) == counters
    assert session.state.last_ts == 9.0
    assert session.skippable(ORIGIN) == 8000


def test_connection_ending_inside_a_skipped_pdv_is_truncated() -> None:
    # Truncated: the connection ends 3000 bytes into the 8000-byte PDV. (Had the capture
    # ended there instead, nothing would be truncated: the peers did not stop.)
    fed = at_big_data_set()
    fed.feed(ORIGIN, BIG[:3000], 1.0)
    skipped = at_big_data_set()
    skipped.skip(ORIGIN, 3000, 1.0)
    assert fed.state == skipped.state
    fed_end = fed.close(CloseReason.CONNECTION_CLOSED, 2.0)
    skipped_end = skipped.close(CloseReason.CONNECTION_CLOSED, 2.0)
    assert fed_end == skipped_end
    assert any(isinstance(e, Anomaly) and e.reason.value == "truncated" for e in skipped_end)
    assert fed.state == skipped.state


@pytest.mark.parametrize("missing", [0, 100, 4999, 5000, 5001, 20_000, None])
def test_gap_after_a_skip_same_as_after_feeding(missing: int | None) -> None:
    fed = at_big_data_set()
    fed.feed(ORIGIN, BIG[:3000], 1.0)
    skipped = at_big_data_set()
    skipped.skip(ORIGIN, 3000, 1.0)
    assert fed.gap(ORIGIN, missing, 2.0) == skipped.gap(ORIGIN, missing, 2.0)
    assert fed.state == skipped.state
    assert fed.skippable(ORIGIN) == skipped.skippable(ORIGIN)


def test_pdv_longer_than_its_pdu_skips_the_rest_of_the_pdu() -> None:
    # Wrong length: P-DATA of 10 bytes whose PDV says 0x46: framing of the PDU is lost and
    # its remaining bytes are skipped, by feeding or by skip alike.
    stream: list[Segment] = [(ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)]
    fed = DicomSession("associate-rq")
    Feeder(fed).run(stream)
    skipped = DicomSession("associate-rq")
    Feeder(skipped).run(stream)
    head = v.PDATA_PDV_TOO_LONG[:12]
    assert fed.feed(ORIGIN, head, 1.0) == skipped.feed(ORIGIN, head, 1.0)
    assert skipped.skippable(ORIGIN) == 4 == len(v.PDATA_PDV_TOO_LONG) - 12
    fed.feed(ORIGIN, v.PDATA_PDV_TOO_LONG[12:], 1.0)
    assert skipped.skip(ORIGIN, 4, 1.0) == []
    assert fed.state == skipped.state
    assert skipped.skippable(ORIGIN) == 0
    # Both stand at a PDU boundary again.
    assert fed.feed(ORIGIN, v.RELEASE_RQ, 1.0) == skipped.feed(ORIGIN, v.RELEASE_RQ, 1.0)
    assert fed.state == skipped.state


def test_oversized_associate_pdu_rest_is_skippable() -> None:
    # Too large for the limits: after its fixed part the RQ's items are skipped unseen.
    limits = Limits(max_associate_pdu=100)
    rq = v.RQ_STORE
    fed = DicomSession("associate-rq", limits)
    skipped = DicomSession("associate-rq", limits)
    head = rq[: 6 + 68]
    assert fed.feed(ORIGIN, head, 1.0) == skipped.feed(ORIGIN, head, 1.0)
    rest = len(rq) - len(head)
    assert rest > 100 - 68
    assert skipped.skippable(ORIGIN) == rest
    fed.feed(ORIGIN, rq[len(head) :], 1.0)
    skipped.skip(ORIGIN, rest, 1.0)
    assert fed.state == skipped.state
    assert skipped.skippable(ORIGIN) == 0


# ---- any split, with the skip path on, gives the plain path's events --------------------

WHOLE = {name: plain(stream) for name, stream in ALL_STREAMS.items()}


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(sorted(ALL_STREAMS)),
    cuts=st.lists(st.integers(0, 25_000), max_size=40),
    greedy=st.booleans(),
)
def test_any_split_with_skipping_same_events(name: str, cuts: list[int], greedy: bool) -> None:
    (events, state, pending), _ = skipping(split(ALL_STREAMS[name], cuts), greedy)
    whole_events, whole_state, whole_pending = WHOLE[name]
    assert events == whole_events
    assert state == whole_state
    assert pending == whole_pending == {ORIGIN: b"", PEER: b""}


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 9000), greedy=st.booleans())
def test_any_segment_size_with_skipping_same_events(size: int, greedy: bool) -> None:
    (events, state, _), skipped = skipping(segments(BIG_STREAM, size), greedy)
    assert (events, state) == WHOLE["big"][:2]
    if size <= 4000:
        # Every PDV is at least two such segments long: some segment lies wholly inside one.
        assert skipped > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["store", "big"]),
    flips=st.lists(st.tuples(st.integers(0, 25_000), st.integers(1, 255)), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 25_000), max_size=30),
    greedy=st.booleans(),
)
def test_any_split_with_skipping_same_events_on_damaged_streams(
    name: str, flips: list[tuple[int, int]], cuts: list[int], greedy: bool
) -> None:
    stream = [(d, bytearray(data)) for d, data in runs(ALL_STREAMS[name])]
    total = sum(len(data) for _, data in stream)
    for at, xor in flips:
        at %= total
        for _, data in stream:
            if at < len(data):
                data[at] ^= xor
                break
            at -= len(data)
    damaged: list[Segment] = [(d, bytes(data)) for d, data in stream]
    whole = plain(damaged)
    (events, state, _), _ = skipping(split(damaged, cuts), greedy)
    assert events == whole[0]
    assert state == whole[1]


def test_mid_stream_session_skips_once_it_has_framing() -> None:
    # Picked up mid-stream at the command PDU: the data set PDVs after it are skippable.
    stream = segments(BIG_STREAM[2:])
    (events, state, _), skipped = skipping(stream, detected_by="mid-stream")
    assert (events, state) == plain(stream, detected_by="mid-stream")[:2]
    assert skipped > 15_000


def test_the_command_constants_are_what_the_streams_use() -> None:
    # Guard against a vacuous stream: the PDVs carry the controls the tests name.
    assert STORE_PDU_COMMAND[11] == COMMAND_LAST
    assert BIG_PDU_1[11] == DATA
    assert BIG_PDU_2[12 + 4000 + 5] == DATA_LAST
    assert len(DATA_SET) < len(BIG)
