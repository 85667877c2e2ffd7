"""Hypothesis properties: nothing escapes the session, and chunking never changes the result."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissectors.base import CloseReason, Direction
from dissectors.hl7 import (
    Anomaly,
    GapDetected,
    HL7Error,
    HL7Message,
    HL7Session,
    Limits,
    Reason,
    parse_msa,
    parse_msh,
    probe,
)
from dissectors.hl7.probe import PROBE_MAX

from . import vectors as v

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ORIGIN, PEER = Direction.ORIGIN, Direction.PEER
DIRECTION = st.sampled_from([ORIGIN, PEER])
# Real frames to splice into random bytes, so random walks reach the deeper states.
PIECES = [
    v.ADT_A01, v.ACK_AA, v.ORU_R01, v.ACK_AE, v.ORM_CUSTOM, v.ACK_CUSTOM_AR,
    v.ADT_A04_NO_FINAL_CR, v.ADT_CRLF, v.NO_MSH, v.MSH_BAD_SEPARATOR, v.MSH_BAD_ENCODING,
    v.MSH_NO_TYPE, v.ACK_BAD_CODE, v.ADT_END_WITHOUT_CR, v.ADT_MISSING_END, v.EMPTY_FRAME,
    b"\x0b", b"\x1c", b"\x1c\r", b"\r", b"\x0bMSH|", b"MSA|AA|",
]  # fmt: skip
CLEAN = [v.ADT_A01, v.ACK_AA, v.ORU_R01, v.ACK_AE, v.ORM_CUSTOM, v.ACK_CUSTOM_AR,
         v.ADT_A04_NO_FINAL_CR, v.ADT_CRLF, v.NO_MSH, v.ACK_BAD_CODE]  # fmt: skip
CHUNK = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(PIECES),
    st.tuples(st.sampled_from(PIECES), st.integers(0, 300)).map(lambda p: p[0][: p[1]]),
    st.tuples(st.sampled_from(PIECES), st.integers(0, 300), st.binary(min_size=1, max_size=4)).map(
        lambda p: p[0][: p[1]] + p[2] + p[0][p[1] + len(p[2]) :]
    ),
)
STREAM = st.lists(CHUNK, max_size=12).map(b"".join)
SMALL = Limits(max_message_bytes=150, max_msh_bytes=64, max_msa_bytes=16, max_anomaly_events=20)
LIMITS = st.sampled_from([Limits(), SMALL])


def feed_all(session: HL7Session, direction: Direction, data: bytes, cuts: list[int]) -> list[Any]:
    """Feed ``data`` cut at ``cuts`` following the contract; return every event (ts fixed)."""
    events: list[Any] = []
    pending = b""
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        buf = pending + data[prev:cut]
        prev = cut
        consumed, evs = session.feed(direction, buf, 1.0)
        assert 0 <= consumed <= len(buf)
        # Bounded: what the caller must keep is never more than a probe's worth of bytes.
        assert len(buf) - consumed <= PROBE_MAX
        pending = buf[consumed:]
        events += evs
    return events


def check_event(e: Any) -> None:
    assert isinstance(e, HL7Message | Anomaly | GapDetected)
    if isinstance(e, Anomaly):
        assert isinstance(e.reason, Reason)


@PROPERTY
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("feed"), DIRECTION, CHUNK),
            st.tuples(st.just("gap"), DIRECTION, st.one_of(st.none(), st.integers(0, 1 << 33))),
        ),
        max_size=20,
    ),
    LIMITS,
)
def test_arbitrary_steps_never_raise(steps: list[tuple[Any, ...]], limits: Limits) -> None:
    s = HL7Session(limits=limits)
    pending = {ORIGIN: b"", PEER: b""}
    events: list[Any] = []
    for step in steps:
        if step[0] == "feed":
            _, direction, chunk = step
            buf = pending[direction] + chunk
            consumed, evs = s.feed(direction, buf, 1.0)
            assert 0 <= consumed <= len(buf)
            assert len(buf) - consumed <= PROBE_MAX
            pending[direction] = buf[consumed:]
            events += evs
        else:
            events += s.gap(step[1], step[2], 1.0)
        for d in s._dirs:  # bounded memory: at most one capped MSH/MSA segment kept
            assert len(d.keep) <= max(limits.max_msh_bytes, limits.max_msa_bytes)
    events += s.close(CloseReason.CAPTURE_ENDED, 2.0)
    for e in events:
        check_event(e)
    summary = s.summary()
    json.dumps(summary)
    assert len(summary["hl7"]["messages"]) <= limits.max_message_kinds + 1
    assert len(summary["hl7"]["control_ids"]) <= limits.max_control_ids
    repr(s)


@PROPERTY
@given(STREAM, st.lists(st.integers(0, 2000), max_size=10), LIMITS, DIRECTION)
def test_any_split_gives_the_same_events(
    data: bytes, cuts: list[int], limits: Limits, direction: Direction
) -> None:
    whole = HL7Session(limits=limits)
    split = HL7Session(limits=limits)
    a = feed_all(whole, direction, data, []) + whole.close(CloseReason.CAPTURE_ENDED, 2.0)
    b = feed_all(split, direction, data, [c for c in cuts if c <= len(data)])
    b += split.close(CloseReason.CAPTURE_ENDED, 2.0)
    assert a == b
    assert whole.summary() == split.summary()


@PROPERTY
@given(STREAM, LIMITS)
def test_byte_at_a_time_gives_the_same_events(data: bytes, limits: Limits) -> None:
    whole = HL7Session(limits=limits)
    bytewise = HL7Session(limits=limits)
    a = feed_all(whole, ORIGIN, data, []) + whole.close(CloseReason.CAPTURE_ENDED, 2.0)
    b = feed_all(bytewise, ORIGIN, data, list(range(len(data))))
    b += bytewise.close(CloseReason.CAPTURE_ENDED, 2.0)
    assert a == b


@PROPERTY
@given(
    st.lists(st.tuples(DIRECTION, st.sampled_from(CLEAN)), max_size=10),
    st.lists(st.integers(0, 3000), max_size=6),
    st.lists(st.tuples(DIRECTION, st.integers(0, 3000)), max_size=3),
)
def test_phi_canaries_never_leave_the_session(
    frames: list[tuple[Direction, bytes]],
    cuts: list[int],
    gaps: list[tuple[Direction, int]],
) -> None:
    # Whole, well-formed frames (PHI in PID, NK1, OBX, MSA-3, MSH-7, MSH-8), cut anywhere,
    # with gaps that drop bytes: nothing the session says may hold a canary.
    s = HL7Session()
    events: list[Any] = []
    pending = {ORIGIN: b"", PEER: b""}

    def feed(direction: Direction, data: bytes) -> None:
        buf = pending[direction] + data
        consumed, evs = s.feed(direction, buf, 1.0)
        pending[direction] = buf[consumed:]
        events.extend(evs)

    for i, (direction, frame) in enumerate(frames):
        at = cuts[i] % (len(frame) + 1) if i < len(cuts) else len(frame)
        feed(direction, frame[:at])
        for gd, gat in gaps:
            if gat % 5 == i:
                pending[gd] = b""  # the bytes held for that direction are lost with the gap
                events.extend(s.gap(gd, None, 1.0))
        feed(direction, frame[at:])
    events += s.close(CloseReason.CONNECTION_CLOSED, 2.0)
    text = (repr(events) + repr(s) + json.dumps(s.summary())).encode()
    for canary in v.CANARIES:
        assert canary not in text


@PROPERTY
@given(st.binary(max_size=64))
def test_probe_and_parsers_never_raise_anything_else(data: bytes) -> None:
    probe(data)
    probe(memoryview(data))
    for parse in (lambda: parse_msh(b"MSH" + data), lambda: parse_msa(data, 124, 94)):
        with contextlib.suppress(HL7Error):
            parse()


MLLP_LIKE = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=12).map(lambda b: b"\x0bMSH" + b),
    st.tuples(st.sampled_from(b"|#!^~&$"), st.binary(max_size=8)).map(
        lambda p: b"\x0bMSH" + bytes((p[0],)) + bytes(c for c in p[1] if c > 0x20) + bytes((p[0],))
    ),
)


@PROPERTY
@given(MLLP_LIKE)
def test_probe_verdict_is_stable_as_bytes_arrive(data: bytes) -> None:
    # Once a prefix gives MATCH or NO_MATCH, every longer prefix gives the same answer.
    decided = None
    for i in range(len(data) + 1):
        verdict = probe(data[:i]).verdict
        if decided is not None:
            assert verdict is decided
        elif verdict.name != "NEED_MORE":
            decided = verdict
