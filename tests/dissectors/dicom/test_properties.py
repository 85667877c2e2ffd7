"""Hypothesis properties: nothing escapes the session, and chunking never changes the result."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.base import CloseReason, Direction
from dissectors.dicom import DEFAULT_LIMITS, DicomError, DicomSession, parse_command, parse_pdu
from dissectors.dicom.events import AssociationEnded
from dissectors.dicom.pdu import parse_pdata

from . import vectors as v
from .framing import (
    ECHO_STREAM,
    ORIGIN,
    PEER,
    STORE_STREAM,
    STREAMS,
    Feeder,
    Segment,
    bytewise,
    feed_all,
    runs,
    split,
)

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DETECTED_BY = st.sampled_from(["associate-rq", "associate-ac", "mid-stream"])
DIRECTION = st.sampled_from([ORIGIN, PEER])
# Real PDUs and command sets to splice into random bytes, so the random walks get past
# the first PDU header often enough to reach the deeper states.
PIECES = [
    v.RQ_ECHO, v.AC_ECHO, v.PDATA_ECHO_RQ, v.PDATA_ECHO_RSP, v.RELEASE_RQ, v.RELEASE_RP,
    v.RJ_CALLED_AE, v.ABORT_USER, v.RQ_STORE, v.AC_STORE, v.RELEASE_RQ_LENGTH_8,
    v.PDATA_PDV_TOO_LONG, v.RQ_LENGTH_64, v.ECHO_RQ_COMMAND,
]  # fmt: skip
CHUNK = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(PIECES),
    st.tuples(st.sampled_from(PIECES), st.integers(0, 300)).map(lambda p: p[0][: p[1]]),
    st.tuples(st.sampled_from(PIECES), st.integers(0, 300), st.binary(min_size=1, max_size=4)).map(
        lambda p: p[0][: p[1]] + p[2] + p[0][p[1] + len(p[2]) :]
    ),
)
STEP = st.one_of(
    st.tuples(st.just("feed"), DIRECTION, CHUNK, st.booleans()),
    st.tuples(st.just("gap"), DIRECTION, st.one_of(st.none(), st.integers(0, 1 << 33))),
)


@PROPERTY
@given(detected_by=DETECTED_BY, steps=st.lists(STEP, max_size=25), close=st.booleans())
def test_arbitrary_bytes_never_raise(
    detected_by: str, steps: list[tuple[Any, ...]], close: bool
) -> None:
    # Anything at all escaping feed/gap/close fails the test, DicomError included.
    session = DicomSession(detected_by)
    feeder = Feeder(session)
    for step in steps:
        if step[0] == "feed":
            _, direction, chunk, as_view = step
            data = feeder.pending[direction] + chunk
            consumed, _ = session.feed(direction, memoryview(data) if as_view else data, 1.0)
            assert 0 <= consumed <= len(data)
            feeder.pending[direction] = data[consumed:]
            # What stays unconsumed is bounded: at most one RQ/AC up to its cap.
            assert len(feeder.pending[direction]) <= DEFAULT_LIMITS.max_associate_pdu + 6
        else:
            _, direction, missing = step
            feeder.gap(direction, missing, 1.0)
    if close:
        final = session.close(CloseReason.CONNECTION_CLOSED, 2.0)
        assert isinstance(final[-1], AssociationEnded)
        assert session.close(CloseReason.TIMEOUT, 3.0) == []


@PROPERTY
@given(data=CHUNK)
def test_parse_pdu_raises_only_dicom_error(data: bytes) -> None:
    try:
        _, size = parse_pdu(data)
    except DicomError:
        return
    assert 6 <= size <= len(data)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=200), st.sampled_from([v.PDATA_ECHO_RQ[6:]])))
def test_parse_pdata_raises_only_dicom_error(data: bytes) -> None:
    with contextlib.suppress(DicomError):
        parse_pdata(data)


COMMANDS = [v.ECHO_RQ_COMMAND, v.ECHO_RSP_COMMAND, v.C_STORE_RQ_MOVE, v.C_MOVE_RSP, v.N_GET_RQ]


@PROPERTY
@given(
    base=st.sampled_from(COMMANDS),
    at=st.integers(0, 200),
    patch=st.binary(max_size=6),
    cut=st.integers(0, 200),
    noise=st.binary(max_size=100),
    pure_noise=st.booleans(),
)
def test_parse_command_raises_only_dicom_error(
    base: bytes, at: int, patch: bytes, cut: int, noise: bytes, pure_noise: bool
) -> None:
    data = noise if pure_noise else (base[:at] + patch + base[at + len(patch) :])[:cut]
    with contextlib.suppress(DicomError):
        parse_command(data)


# ---- splitting a real stream anywhere gives the same events and the same state -------------


def outcome(segments: list[Segment], detected_by: str = "associate-rq") -> tuple[Any, ...]:
    session = DicomSession(detected_by)
    feeder = Feeder(session)
    events = feeder.run(segments, 5.0)
    events += session.close(CloseReason.CONNECTION_CLOSED, 5.0)
    return events, session.state, feeder.pending


WHOLE = {name: outcome(stream) for name, stream in STREAMS.items()}


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(0, 4000), max_size=40))
def test_any_split_same_events(name: str, cuts: list[int]) -> None:
    stream = STREAMS[name]
    events, state, pending = outcome(split(stream, cuts))
    whole_events, whole_state, whole_pending = WHOLE[name]
    assert events == whole_events
    assert state == whole_state
    assert pending == whole_pending == {ORIGIN: b"", PEER: b""}


def test_whole_runs_same_as_segments() -> None:
    # One TCP segment per direction turn (several PDUs each) vs one per PDU.
    for name, stream in STREAMS.items():
        assert outcome(runs(stream))[:2] == WHOLE[name][:2], name


def test_one_byte_at_a_time_same_events() -> None:
    for name, stream in STREAMS.items():
        assert outcome(bytewise(stream))[:2] == WHOLE[name][:2], name


def test_whole_outcomes_are_what_the_streams_are() -> None:
    # Guard against a vacuous property: the reference outcomes hold real messages.
    assert [type(e).__name__ for e in WHOLE["echo"][0]] == [
        "AssociationRequested", "AssociationAccepted", "DimseMessage", "DimseMessage",
        "ReleaseRequested", "ReleaseReplied", "AssociationEnded",
    ]  # fmt: skip
    assert WHOLE["store"][1].counters[ORIGIN].data_set_fragments == 3
    assert WHOLE["rejected"][1].result == "rejected"
    assert WHOLE["aborted"][1].end == "aborted"


# ---- the same on damaged streams: chunking must not change what the dissector reports ----


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["echo", "store"]),
    flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 255)), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 4000), max_size=30),
)
def test_any_split_same_events_on_damaged_streams(
    name: str, flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = [
        (d, bytearray(data)) for d, data in runs(ECHO_STREAM if name == "echo" else STORE_STREAM)
    ]
    total = sum(len(data) for _, data in stream)
    for at, xor in flips:
        at %= total
        for _, data in stream:
            if at < len(data):
                data[at] ^= xor
                break
            at -= len(data)
    damaged: list[Segment] = [(d, bytes(data)) for d, data in stream]
    whole = outcome(damaged)
    chunked = outcome(split(damaged, cuts))
    assert chunked[0] == whole[0]
    assert chunked[1] == whole[1]


@PROPERTY
@given(chunks=st.lists(st.tuples(DIRECTION, st.binary(max_size=64)), max_size=20))
def test_noise_after_real_start_bytewise_same_events(chunks: list[tuple[Direction, bytes]]) -> None:
    # Noise after a real association start: byte by byte gives the same events and state.
    prefix: list[Segment] = [(ORIGIN, v.RQ_ECHO), (PEER, v.AC_ECHO)]
    stream = prefix + list(chunks)
    whole_session = DicomSession("associate-rq")
    whole = feed_all(whole_session, runs(stream), 1.0)
    tiny_session = DicomSession("associate-rq")
    tiny = feed_all(tiny_session, bytewise(runs(stream)), 1.0)
    assert tiny == whole
    assert tiny_session.state == whole_session.state
