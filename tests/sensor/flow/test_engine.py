"""The flow engine driving a toy line protocol: probing, feeding, gaps, tails, timeouts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.base import (
    NEED_MORE,
    NO_MATCH,
    CloseReason,
    Direction,
    ProbeResult,
    Verdict,
)
from sensor.capture.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, DropReason, Segment
from sensor.flow.engine import FlowEngine
from sensor.flow.table import EngineConfig, FlowInfo

CLIENT = ("10.0.0.9", 50000)
SERVER = ("10.0.0.1", 104)
C_ISN = 1000
S_ISN = 9000
PSH = 0x08


@dataclass
class ToySession:
    """Consumes whole lines; records what it was fed, its gaps and how it ended."""

    detected_by: str
    consume_all: bool = False
    fed: dict[Direction, bytearray] = field(
        default_factory=lambda: {Direction.ORIGIN: bytearray(), Direction.PEER: bytearray()}
    )
    gaps: list[tuple[Direction, int | None]] = field(default_factory=list)
    closed: CloseReason | None = None
    explode_on: bytes | None = None

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Any]]:
        data = bytes(data)
        if self.explode_on is not None and self.explode_on in data:
            raise RuntimeError("dissector bug")
        consumed = len(data) if self.consume_all else data.rfind(b"\n") + 1
        self.fed[direction] += data[:consumed]
        lines = data[:consumed].split(b"\n")[:-1] if not self.consume_all else []
        return consumed, [("line", direction, line) for line in lines]

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Any]:
        self.gaps.append((direction, missing))
        return [("gap", direction, missing)]

    def close(self, reason: CloseReason, ts: float) -> list[Any]:
        self.closed = reason
        return [("close", reason)]


@dataclass
class Toy:
    """Matches a side whose first bytes are ``HELLO``."""

    name: str = "toy"
    consume_all: bool = False
    explode_on: bytes | None = None
    probes: list[bytes] = field(default_factory=list)
    sessions: list[ToySession] = field(default_factory=list)

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        data = bytes(data)
        self.probes.append(data)
        if data.startswith(b"HELLO"):
            return ProbeResult(Verdict.MATCH, "hello")
        if b"HELLO".startswith(data):
            return NEED_MORE
        return NO_MATCH

    def new_session(self, detected_by: str) -> ToySession:
        session = ToySession(detected_by, self.consume_all, explode_on=self.explode_on)
        self.sessions.append(session)
        return session


class Recorder:
    """Collects what the engine hands out."""

    def __init__(self) -> None:
        self.events: list[tuple[FlowInfo, Any]] = []
        self.sessions: list[Any] = []
        self.closes: list[tuple[FlowInfo, Any, CloseReason]] = []

    def on_event(self, info: FlowInfo, session: Any, event: Any) -> None:
        self.events.append((info, event))
        self.sessions.append(session)

    def on_close(self, info: FlowInfo, session: Any, reason: CloseReason) -> None:
        self.closes.append((info, session, reason))

    def lines(self) -> list[tuple[Direction, bytes]]:
        return [(e[1], e[2]) for _, e in self.events if e[0] == "line"]


def make(toy: Toy | None = None, **config: Any) -> tuple[FlowEngine, Toy, Recorder]:
    toy = toy if toy is not None else Toy()
    rec = Recorder()
    engine = FlowEngine([toy], rec.on_event, rec.on_close, EngineConfig(**config))
    return engine, toy, rec


class Conversation:
    """Builds the segments of one connection, tracking both sides' sequence numbers."""

    def __init__(
        self,
        client: tuple[str, int] = CLIENT,
        server: tuple[str, int] = SERVER,
        vlan: int | None = None,
    ) -> None:
        self.ends = {Direction.ORIGIN: client, Direction.PEER: server}
        self.seq = {Direction.ORIGIN: C_ISN + 1, Direction.PEER: S_ISN + 1}
        self.vlan = vlan
        self.ts = 100.0

    def seg(
        self,
        side: Direction,
        payload: bytes = b"",
        flags: int = TH_ACK,
        seq: int | None = None,
        ts: float | None = None,
    ) -> Segment:
        """A segment from ``side`` (ORIGIN: the client here); advances that side's sequence."""
        src, dst = self.ends[side], self.ends[side.other]
        if seq is None:
            seq = self.seq[side]
            self.seq[side] = (seq + len(payload) + (1 if flags & TH_FIN else 0)) % 2**32
        if ts is None:
            self.ts += 0.001
            ts = self.ts
        return Segment(ts, src[0], dst[0], src[1], dst[1], seq, 0, flags, payload, self.vlan)

    def handshake(self) -> list[Segment]:
        return [
            self.seg(Direction.ORIGIN, flags=TH_SYN, seq=C_ISN),
            self.seg(Direction.PEER, flags=TH_SYN | TH_ACK, seq=S_ISN),
            self.seg(Direction.ORIGIN),
        ]

    def closing(self) -> list[Segment]:
        return [
            self.seg(Direction.ORIGIN, flags=TH_FIN | TH_ACK),
            self.seg(Direction.PEER, flags=TH_FIN | TH_ACK),
            self.seg(Direction.ORIGIN),
        ]


C, S = Direction.ORIGIN, Direction.PEER


def run(engine: FlowEngine, segments: list[Segment]) -> None:
    for seg in segments:
        engine.process(seg)
        engine.advance(seg.ts)


def test_matched_flow() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(
        engine,
        [
            *conv.handshake(),
            conv.seg(C, b"HELLO server\n", TH_ACK | PSH),
            conv.seg(S, b"hi client\n", TH_ACK | PSH),
            conv.seg(C, b"bye\n", TH_ACK | PSH),
            *conv.closing(),
        ],
    )
    assert rec.lines() == [(C, b"HELLO server"), (S, b"hi client"), (C, b"bye")]
    [(info, session, reason)] = rec.closes
    assert reason is CloseReason.CONNECTION_CLOSED
    assert session is toy.sessions[0] and session.closed is reason
    assert session.detected_by == "hello"
    assert (info.origin_ip, info.origin_port, info.peer_ip, info.peer_port) == (*CLIENT, *SERVER)
    assert (info.client_ip, info.client_port, info.syn_seen, info.vlan) == (*CLIENT, True, None)
    assert info.first_ts < info.last_ts
    assert rec.events[-1][1] == ("close", CloseReason.CONNECTION_CLOSED)
    stats = engine.stats
    assert (stats.flows_created, stats.flows_matched, stats.flows_active) == (1, 1, 0)
    assert stats.flows_closed == {CloseReason.CONNECTION_CLOSED: 1}
    assert all(s is session for s in rec.sessions)


def test_server_side_match_makes_the_server_origin() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"\x00\x01"), conv.seg(S, b"HELLO\n")])
    [(info, event)] = rec.events
    assert event == ("line", C, b"HELLO")
    assert (info.origin_ip, info.peer_ip, info.client_ip) == (SERVER[0], CLIENT[0], CLIENT[0])
    # The client's NO_MATCH bytes were kept and fed as PEER after the ORIGIN's backlog.
    assert toy.sessions[0].fed[S] == b""  # no whole line among them, left as the PEER tail
    engine.process(conv.seg(C, b"\n"))
    assert rec.lines()[-1] == (S, b"\x00\x01")


def test_probe_needs_more_then_matches() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(
        engine,
        [*conv.handshake(), conv.seg(C, b"HEL"), conv.seg(C, b"LO the"), conv.seg(C, b"re\n")],
    )
    assert toy.probes == [b"HEL", b"HELLO the"]
    assert rec.lines() == [(C, b"HELLO there")]


def test_backlog_of_both_sides_is_fed_origin_first() -> None:
    engine, _toy, rec = make()
    conv = Conversation()
    # The server speaks first with something that is not the protocol, then the client matches.
    run(engine, [*conv.handshake(), conv.seg(S, b"banner\n"), conv.seg(C, b"HELLO\n")])
    assert rec.lines() == [(C, b"HELLO"), (S, b"banner")]


def test_ignored_flow_costs_a_lookup() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(
        engine,
        [*conv.handshake(), conv.seg(C, b"GET / HTTP/1.1\r\n"), conv.seg(S, b"HTTP/1.1 200")],
    )
    assert engine.stats.flows_ignored == 1
    probes = len(toy.probes)
    run(engine, [conv.seg(C, b"HELLO\n"), conv.seg(S, b"more")])
    assert len(toy.probes) == probes
    assert toy.sessions == [] and rec.events == [] and rec.closes == []
    run(engine, conv.closing())
    assert engine.stats.flows_active == 0
    assert engine.stats.flows_closed == {CloseReason.CONNECTION_CLOSED: 1}


def test_ignored_flow_removed_by_rst() -> None:
    engine, _, _ = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"nope"), conv.seg(S, b"nada")])
    engine.process(conv.seg(S, flags=TH_RST))
    assert engine.stats.flows_active == 0


def test_one_side_no_match_and_the_other_silent() -> None:
    engine, _, _ = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(S, b"banner")])
    for _ in range(7):
        engine.process(conv.seg(C))  # bare ACKs: the client says nothing
    assert engine.stats.flows_ignored == 0
    engine.process(conv.seg(C))
    assert engine.stats.flows_ignored == 1


def test_one_sided_capture_is_ignored_eventually() -> None:
    engine, _, _ = make(midstream_probe_segments=2, unanswered_packets=3)
    conv = Conversation()
    for _ in range(3):
        engine.process(conv.seg(S, b"y" * 10))
    assert engine.stats.flows_ignored == 0  # NO_MATCH on the second, then unanswered ones
    engine.process(conv.seg(S, b"y" * 10))
    assert engine.stats.flows_ignored == 1


def test_need_more_is_capped() -> None:
    engine, toy, _ = make(probe_max_segments=3)
    conv = Conversation()
    # The toy probe keeps asking for more on an empty buffer... but each of these is a prefix.
    run(engine, [*conv.handshake(), conv.seg(C, b"H"), conv.seg(C, b"E"), conv.seg(C, b"L")])
    run(engine, [conv.seg(S, b"no")])
    assert engine.stats.flows_ignored == 1
    assert toy.sessions == []


def test_mid_stream_match() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    # No SYN: the capture started inside the connection.
    run(
        engine,
        [
            conv.seg(C, b"tail of an earlier message\n"),
            conv.seg(S, b"reply to it\n"),
            conv.seg(C, b"more old stuff HELLO\n"),
            conv.seg(C, b"HELLO again\n"),
            conv.seg(C, b"next\n"),
        ],
    )
    # Each segment was probed on its own, not as an accumulated buffer.
    assert toy.probes == [
        b"tail of an earlier message\n",
        b"reply to it\n",
        b"more old stuff HELLO\n",
        b"HELLO again\n",
    ]
    # The PEER side starts at its next segment start.
    engine.process(conv.seg(S, b"fresh reply\n"))
    assert rec.lines() == [(C, b"HELLO again"), (C, b"next"), (S, b"fresh reply")]
    info = rec.events[0][0]
    assert (info.syn_seen, info.client_ip, info.origin_ip) == (False, None, CLIENT[0])


def test_mid_stream_gives_up_after_its_segment_budget() -> None:
    engine, toy, _ = make(midstream_probe_segments=4)
    conv = Conversation()
    run(engine, [conv.seg(C, b"x%d\n" % i) for i in range(4)])
    run(engine, [conv.seg(S, b"y%d\n" % i) for i in range(4)])
    assert engine.stats.flows_ignored == 1
    assert len(toy.probes) == 8


def test_gap_reaches_the_session_with_its_size() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\npart")])
    lost = conv.seg(C, b"0123456789")  # never delivered
    run(engine, [conv.seg(C, b"ial\nafter\n"), conv.seg(C, b"more\n", TH_RST | TH_ACK, ts=lost.ts)])
    session = toy.sessions[0]
    # The session hears of every byte it will never consume: the 4-byte tail "part" and the hole.
    assert session.gaps == [(C, 14)]
    # The partial line before the gap was dropped with the tail; the stream resumed after it.
    assert rec.lines() == [(C, b"HELLO"), (C, b"ial"), (C, b"after")]
    assert session.closed is CloseReason.CONNECTION_CLOSED
    assert engine.stats.stream.gaps == 1 and engine.stats.stream.gap_bytes == 10


def test_gap_from_the_buffer_cap() -> None:
    engine, toy, rec = make(reassembly_max_bytes=16)
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    conv.seg(C, b"x" * 7)  # lost
    run(engine, [conv.seg(C, b"line one\n"), conv.seg(C, b"line two\n")])
    assert toy.sessions[0].gaps == [(C, 7)]
    assert rec.lines()[-2:] == [(C, b"line one"), (C, b"line two")]


def test_tail_is_kept_until_a_line_completes() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(
        engine,
        [*conv.handshake(), conv.seg(C, b"HELLO a"), conv.seg(C, b"bc\nde"), conv.seg(C, b"f\n")],
    )
    assert rec.lines() == [(C, b"HELLO abc"), (C, b"def")]
    assert bytes(toy.sessions[0].fed[C]) == b"HELLO abc\ndef\n"


def test_tail_overflow() -> None:
    engine, toy, rec = make(tail_max_bytes=16)
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n"), conv.seg(C, b"a" * 10)])
    assert engine.stats.tail_overflows == 0
    run(engine, [conv.seg(C, b"b" * 10), conv.seg(C, b"ok\n")])
    assert engine.stats.tail_overflows == 1
    assert toy.sessions[0].gaps == [(C, None)]
    assert rec.lines() == [(C, b"HELLO"), (C, b"ok")]


def test_idle_timeout_of_a_matched_flow() -> None:
    engine, _toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    last = conv.ts
    engine.advance(last + 299.0)
    assert len(engine) == 1
    engine.process(conv.seg(S, b"late\n", ts=last + 200.0))  # activity pushes the deadline out
    engine.advance(last + 301.0)
    assert len(engine) == 1
    engine.advance(last + 501.0)
    assert len(engine) == 0
    [(_, _, reason)] = rec.closes
    assert reason is CloseReason.TIMEOUT
    assert engine.stats.flows_closed == {CloseReason.TIMEOUT: 1}


def test_idle_timeout_of_probing_and_ignored_flows() -> None:
    engine, _, _ = make()
    probing = Conversation(client=("10.0.0.5", 1))
    ignored = Conversation(client=("10.0.0.6", 2))
    run(engine, probing.handshake())
    run(engine, [*ignored.handshake(), ignored.seg(C, b"x"), ignored.seg(S, b"y")])
    assert engine.stats.flows_ignored == 1
    engine.advance(ignored.ts + 59.0)
    assert len(engine) == 2
    engine.advance(ignored.ts + 60.5)
    assert len(engine) == 0
    assert engine.stats.flows_closed == {CloseReason.TIMEOUT: 2}


def test_advance_checks_at_most_once_per_interval() -> None:
    engine, _, _ = make(check_interval=10.0)
    conv = Conversation()
    run(engine, conv.handshake())
    engine.advance(conv.ts + 55.0)
    engine.advance(conv.ts + 61.0)  # within ten seconds of the last check: no scan
    assert len(engine) == 1
    engine.advance(conv.ts + 66.0)
    assert len(engine) == 0


def test_half_closed_flow_times_out_as_closed() -> None:
    engine, _, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    conv.seg(C, b"lost\n")
    run(engine, conv.closing())  # both FINs seen, but a hole before the client's
    assert len(engine) == 1
    engine.advance(conv.ts + 61.0)
    assert [r for _, _, r in rec.closes] == [CloseReason.CONNECTION_CLOSED]


def test_finish_flushes_and_closes_everything() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    conv.seg(C, b"12345")  # lost
    run(engine, [conv.seg(C, b"held\n")])
    other = Conversation(client=("10.0.0.7", 7))
    run(engine, other.handshake())
    assert rec.lines() == [(C, b"HELLO")]
    engine.finish(999.0)
    assert rec.lines() == [(C, b"HELLO"), (C, b"held")]
    assert toy.sessions[0].gaps == [(C, 5)]
    assert [r for _, _, r in rec.closes] == [CloseReason.CAPTURE_ENDED]
    assert len(engine) == 0
    assert engine.stats.flows_closed == {CloseReason.CAPTURE_ENDED: 2}


def test_eviction_takes_the_least_recently_active_flow() -> None:
    engine, _toy, rec = make(max_flows=2)
    first = Conversation(client=("10.0.0.5", 1))
    second = Conversation(client=("10.0.0.6", 2))
    third = Conversation(client=("10.0.0.7", 3))
    run(engine, [*first.handshake(), first.seg(C, b"HELLO 1\n")])
    second.ts = first.ts
    run(engine, [*second.handshake(), second.seg(C, b"HELLO 2\n")])
    first.ts = second.ts
    run(engine, [first.seg(C, b"still here\n")])  # the first flow is now the more recent
    third.ts = first.ts
    run(engine, third.handshake())
    assert len(engine) == 2
    [(info, _, reason)] = rec.closes
    assert reason is CloseReason.EVICTED
    assert info.origin_ip == "10.0.0.6"
    assert engine.stats.evicted == 1


def test_rst_closes_the_session() -> None:
    engine, _toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n"), conv.seg(S, flags=TH_RST)])
    assert [r for _, _, r in rec.closes] == [CloseReason.CONNECTION_CLOSED]
    assert engine.stats.flows_active == 0


def test_closed_flow_lingers_to_absorb_stragglers() -> None:
    engine, toy, rec = make(closed_linger=5.0)
    conv = Conversation()
    hello = conv.seg(C, b"HELLO\n")
    run(engine, [*conv.handshake(), hello, *conv.closing()])
    assert (len(engine), engine.stats.flows_active) == (1, 0)
    # A late retransmission of the first segment: no new flow, no second session.
    engine.process(hello)
    assert len(toy.sessions) == 1 and engine.stats.flows_created == 1
    engine.advance(conv.ts + 6.0)
    assert len(engine) == 0
    assert [r for _, _, r in rec.closes] == [CloseReason.CONNECTION_CLOSED]


def test_new_syn_on_a_closed_tuple_starts_a_new_flow() -> None:
    engine, toy, rec = make()
    first = Conversation()
    run(engine, [*first.handshake(), first.seg(C, b"HELLO 1\n"), *first.closing()])
    second = Conversation()
    second.ts = first.ts
    run(engine, [*second.handshake(), second.seg(C, b"HELLO 2\n")])
    assert len(toy.sessions) == 2
    assert engine.stats.flows_created == 2
    assert rec.lines() == [(C, b"HELLO 1"), (C, b"HELLO 2")]


def test_new_syn_on_an_ignored_tuple_starts_a_new_flow() -> None:
    engine, toy, _ = make()
    first = Conversation()
    run(engine, [*first.handshake(), first.seg(C, b"nope"), first.seg(S, b"nada")])
    second = Conversation()
    second.ts = first.ts
    run(engine, [*second.handshake(), second.seg(C, b"HELLO\n")])
    assert len(toy.sessions) == 1
    assert engine.stats.flows_closed == {CloseReason.CONNECTION_CLOSED: 1}


def test_late_ack_after_close_starts_nothing() -> None:
    engine, _, _ = make(closed_linger=1.0)
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n"), *conv.closing()])
    engine.advance(conv.ts + 2.0)
    engine.process(conv.seg(C, ts=conv.ts + 2.0))
    engine.process(conv.seg(S, flags=TH_RST, ts=conv.ts + 2.0))
    assert len(engine) == 0


def test_vlan_separates_flows() -> None:
    engine, _, _ = make()
    run(engine, Conversation(vlan=10).handshake())
    run(engine, Conversation(vlan=20).handshake())
    run(engine, Conversation().handshake())
    assert len(engine) == 3


def test_session_exception_is_contained() -> None:
    engine, _toy, rec = make(Toy(explode_on=b"BOOM"))
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n"), conv.seg(S, b"BOOM\n")])
    assert engine.stats.dissector_errors == 1
    assert engine.stats.flows_ignored == 1
    assert [r for _, _, r in rec.closes] == [CloseReason.EVICTED]
    run(engine, [conv.seg(C, b"more\n"), *conv.closing()])
    assert engine.stats.flows_active == 0


def test_probe_exception_is_contained() -> None:
    class Broken(Toy):
        def probe(self, data: bytes | memoryview) -> ProbeResult:
            raise ValueError("probe bug")

    engine, _, rec = make(Broken())
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    assert engine.stats.dissector_errors == 1
    assert engine.stats.flows_ignored == 1
    assert rec.closes == []


def test_bad_consumed_count_is_a_dissector_error() -> None:
    class Liar(ToySession):
        def feed(
            self, direction: Direction, data: bytes | memoryview, ts: float
        ) -> tuple[int, list[Any]]:
            return len(data) + 1, []

    class LiarToy(Toy):
        def new_session(self, detected_by: str) -> ToySession:
            return Liar(detected_by)

    engine, _, _ = make(LiarToy())
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    assert engine.stats.dissector_errors == 1


def test_counters() -> None:
    engine, _, _ = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    engine.process(conv.seg(C, b"HELLO\n", seq=C_ISN + 1))  # a retransmission
    engine.stats.drop(DropReason.NOT_TCP)
    engine.stats.drop(DropReason.NOT_TCP)
    stats = engine.stats
    assert stats.packets == 5
    assert stats.payload_bytes == 12
    assert stats.dropped == {DropReason.NOT_TCP: 2}
    assert stats.stream.retransmissions == 1
    assert stats.flows_active == 1


def test_truncated_segment_becomes_a_gap() -> None:
    engine, toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    seg = conv.seg(C, b"abc\nde")
    cut = Segment(
        seg.ts, *CLIENT[:1], SERVER[0], CLIENT[1], SERVER[1], seg.seq, 0, TH_ACK, b"abc", None, 3
    )
    conv.seg(C, b"", seq=0)  # keep the builder's sequence numbers as they were
    engine.process(cut)
    engine.process(conv.seg(C, b"next\n", seq=seg.seq + 6))
    # The 3 bytes cut by the snaplen, plus the unconsumed tail "abc" dropped with them.
    assert toy.sessions[0].gaps == [(C, 6)]
    assert engine.stats.truncated_segments == 1
    assert rec.lines()[-1] == (C, b"next")


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        EngineConfig(max_flows=0)


# The property: whatever order the capture shows, the session sees the same bytes.


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, bytes, list[Segment], list[Segment]]:
    """A connection's segments in order, and the same segments reordered and duplicated."""
    c_isn = draw(st.integers(0, 2**32 - 1))
    s_isn = draw(st.integers(0, 2**32 - 1))
    client = b"HELLO" + draw(st.binary(max_size=200))
    server = b"OK" + draw(st.binary(max_size=200))
    segs: list[Segment] = []
    for (src, dst), stream, isn in (
        ((CLIENT, SERVER), client, c_isn),
        ((SERVER, CLIENT), server, s_isn),
    ):
        cuts = sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=10)))
        bounds = [0, *cuts, len(stream)]
        for a, b in itertools.pairwise(bounds):
            seq = (isn + 1 + a) % 2**32
            # No ACK flag: these ack fields mean nothing, and the engine reads real ACKs
            # as proof of capture loss (see test_two_acks_past_a_hole_declare_it_lost).
            segs.append(Segment(0.0, src[0], dst[0], src[1], dst[1], seq, 0, 0, stream[a:b]))
        fin = (isn + 1 + len(stream)) % 2**32
        segs.append(Segment(0.0, src[0], dst[0], src[1], dst[1], fin, 0, TH_FIN, b""))
    syn = Segment(0.0, *CLIENT[:1], SERVER[0], CLIENT[1], SERVER[1], c_isn, 0, TH_SYN, b"")
    synack = Segment(
        0.0, SERVER[0], CLIENT[0], SERVER[1], CLIENT[1], s_isn, 0, TH_SYN | TH_ACK, b""
    )
    shuffled = list(draw(st.permutations(segs)))
    for _ in range(draw(st.integers(0, 4))):
        dup = draw(st.sampled_from(segs))
        shuffled.insert(draw(st.integers(0, len(shuffled))), dup)
    return client, server, [syn, synack, *segs], [syn, synack, *shuffled]


def _delivered(segments: list[Segment]) -> tuple[ToySession, Recorder]:
    engine, toy, rec = make(Toy(consume_all=True))
    for i, seg in enumerate(segments):
        engine.process(Segment(float(i), *[getattr(seg, f) for f in Segment.__slots__[1:]]))
    engine.finish(float(len(segments)))
    [session] = toy.sessions
    return session, rec


@given(conversations())
@settings(max_examples=200, deadline=None)
def test_any_order_delivers_the_same_bytes(
    sample: tuple[bytes, bytes, list[Segment], list[Segment]],
) -> None:
    client, server, in_order, shuffled = sample
    expected, _ = _delivered(in_order)
    got, rec = _delivered(shuffled)
    assert bytes(expected.fed[C]) == client and bytes(expected.fed[S]) == server
    assert bytes(got.fed[C]) == client
    assert bytes(got.fed[S]) == server
    assert got.gaps == []
    assert got.closed is CloseReason.CONNECTION_CLOSED
    assert [r for _, _, r in rec.closes] == [CloseReason.CONNECTION_CLOSED]


def test_two_acks_past_a_hole_declare_it_lost() -> None:
    """The receiver acknowledged bytes the capture never saw: a gap now, not at the end."""
    engine, toy, rec = make()
    conv = Conversation()
    run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n")])
    lost = conv.seg(C, b"lost line\n")  # never delivered to the engine
    after = conv.seg(C, b"after\n")
    acked = (lost.seq + len(lost.payload) + len(after.payload)) % 2**32
    ack1 = Segment(1.0, *SERVER[:1], CLIENT[0], SERVER[1], CLIENT[1], 1, acked, TH_ACK, b"")
    run(engine, [after, ack1])
    # One ACK may have overtaken its data (span ports reorder): nothing declared yet.
    assert toy.sessions[0].gaps == []
    ack2 = Segment(1.1, *SERVER[:1], CLIENT[0], SERVER[1], CLIENT[1], 1, acked, TH_ACK, b"")
    run(engine, [ack2])
    assert toy.sessions[0].gaps == [(C, len(lost.payload))]
    assert rec.lines()[-1] == (C, b"after")


def test_followed_endpoints_lists_open_sessions() -> None:
    engine, _, _ = make()
    matched = Conversation()
    run(engine, [*matched.handshake(), matched.seg(C, b"HELLO\n")])
    probing = Conversation(client=("10.0.0.5", 5))
    run(engine, probing.handshake())
    assert engine.followed_endpoints() == [(SERVER[0], SERVER[1], CLIENT[0], CLIENT[1])]


def test_bookkeeping_stays_bounded_under_churn() -> None:
    engine, _, _ = make(max_flows=50, closed_linger=1.0)
    for i in range(2000):
        conv = Conversation(client=(f"10.1.{i // 250}.{i % 250}", 1000 + i))
        conv.ts = float(i)
        run(engine, [*conv.handshake(), conv.seg(C, b"HELLO\n"), *conv.closing()])
    assert len(engine) <= 50
    assert len(engine._deadlines) <= 2 * len(engine) + 65
    assert len(engine._recency) <= 2 * len(engine) + 65
    assert engine.stats.flows_closed == {CloseReason.CONNECTION_CLOSED: 2000}
