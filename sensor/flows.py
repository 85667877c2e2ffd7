"""The flow table and the engine that finds and feeds dissector sessions."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import count
from typing import Any

from dissectors.base import (
    CloseReason,
    Direction,
    Dissector,
    ProbeResult,
    Session,
    Verdict,
    first_match,
)

from .decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, DropReason, Segment
from .reassembly import Chunk, Gap, ReassemblyStats, StreamReassembler

FlowKey = tuple[str, int, str, int, int | None]
EventSink = Callable[["FlowInfo", Session, Any], None]
CloseSink = Callable[["FlowInfo", Session, CloseReason], None]

_PROBING = 0
_MATCHED = 1
_IGNORED = 2
_CLOSED = 3  # session closed; the entry lingers to absorb stragglers

_UNDECIDED = 0
_NO_MATCH = 1

_FIN_RST_SYN = TH_FIN | TH_RST | TH_SYN


class EngineAnomaly(StrEnum):
    """What the engine itself counts; the value doubles as a metric label."""

    TAIL_OVERFLOW = "tail-overflow"
    DISSECTOR_ERROR = "dissector-error"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Limits and timeouts of the flow engine."""

    max_flows: int = 24_576  # under 200 MB at the worst (every flow a half-open association)
    idle_timeout: float = 60.0  # probing and ignored flows, and flows closed by both FINs
    matched_idle_timeout: float = 300.0
    check_interval: float = 1.0  # advance() looks for idle flows at most this often
    probe_max_bytes: int = 1024
    probe_max_segments: int = 256  # the byte cap bounds work; tiny segments must not starve it
    midstream_probe_segments: int = 64
    midstream_probe_bytes: int = 256 * 1024
    silent_peer_packets: int = 8  # a silent side's packets after the other side's NO_MATCH
    unanswered_packets: int = 64  # a NO_MATCH side's packets while the other stays silent
    probe_history_bytes: int = 64 * 1024
    reassembly_max_bytes: int = 1 << 20
    reassembly_max_segments: int = 1024
    tail_max_bytes: int = (1 << 20) + (64 << 10)
    closed_linger: float = 30.0  # a closed flow's entry absorbs late segments this long

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """Who a session's flow is between; ORIGIN is the side whose bytes matched the probe."""

    origin_ip: str
    origin_port: int
    peer_ip: str
    peer_port: int
    vlan: int | None
    first_ts: float
    last_ts: float
    syn_seen: bool
    client_ip: str | None = None
    client_port: int | None = None
    protocol: str = ""  # the name of the dissector that matched


@dataclass(slots=True)
class EngineStats:
    """Plain counters of the engine's health."""

    packets: int = 0
    payload_bytes: int = 0
    dropped: dict[DropReason, int] = field(default_factory=dict)
    truncated_segments: int = 0
    flows_created: int = 0
    flows_active: int = 0
    flows_matched: int = 0
    flows_ignored: int = 0
    flows_closed: dict[CloseReason, int] = field(default_factory=dict)
    stream: ReassemblyStats = field(default_factory=ReassemblyStats)
    tail_overflows: int = 0
    dissector_errors: int = 0

    def drop(self, reason: DropReason) -> None:
        """Count a frame the decoder turned away."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def evicted(self) -> int:
        """Flows closed to make room."""
        return self.flows_closed.get(CloseReason.EVICTED, 0)


class _Side:
    """One direction of a flow: its reassembler, probe state and unconsumed tail."""

    __slots__ = (
        "history",
        "history_bytes",
        "ip",
        "midstream",
        "packets",
        "payload_seen",
        "pending",
        "port",
        "probe_bytes",
        "probe_segments",
        "reasm",
        "tail",
        "verdict",
    )

    def __init__(self, ip: str, port: int, reasm: StreamReassembler) -> None:
        self.ip = ip
        self.port = port
        self.reasm = reasm
        self.packets = 0
        self.payload_seen = False
        self.verdict = _UNDECIDED
        self.midstream = False
        self.probe_segments = 0
        self.probe_bytes = 0
        # Reassembled bytes kept while probing, to feed once either side matches.
        self.history: list[tuple[bytes, float]] = []
        self.history_bytes = 0
        # Mid-stream: consecutive segments held while the probe asks for more bytes.
        self.pending: list[tuple[bytes, float]] = []
        self.tail = b""

    def forget(self) -> None:
        """Drop every byte held for this side."""
        self.reasm.discard()
        self.history = []
        self.history_bytes = 0
        self.pending = []
        self.tail = b""


class _Flow:
    """One TCP connection in the table."""

    __slots__ = (
        "client",
        "fins",
        "first_ts",
        "key",
        "last_ts",
        "loud",
        "origin",
        "protocol",
        "quiet",
        "removed",
        "session",
        "sides",
        "state",
        "syn_seen",
    )

    def __init__(self, key: FlowKey, sides: tuple[_Side, _Side], ts: float) -> None:
        self.key = key
        self.sides = sides
        self.state = _PROBING
        self.session: Session | None = None
        self.protocol = ""
        self.origin = -1  # index into sides of the ORIGIN direction, once matched
        self.client = -1  # index into sides of the SYN sender, when seen
        self.syn_seen = False
        self.first_ts = ts
        self.last_ts = ts
        self.fins = 0  # bit per side that sent a FIN
        self.quiet = 0  # silent side's packets after the other side said NO_MATCH
        self.loud = 0  # NO_MATCH side's packets while the other side stays silent
        self.removed = False


def _ignore_events(info: FlowInfo, session: Session, event: Any) -> None:
    """Default event sink."""


def _ignore_close(info: FlowInfo, session: Session, reason: CloseReason) -> None:
    """Default close sink."""


class FlowEngine:
    """Tracks TCP flows, probes their first bytes, and feeds matched sessions in order."""

    def __init__(
        self,
        dissectors: Sequence[Dissector],
        on_event: EventSink = _ignore_events,
        on_close: CloseSink = _ignore_close,
        config: EngineConfig | None = None,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        self.stats = EngineStats()
        self._dissectors = tuple(dissectors)
        self._on_event = on_event
        self._on_close = on_close
        self._flows: dict[FlowKey, _Flow] = {}
        # Lazy heaps: an entry's time is a lower bound, checked against the flow when popped.
        self._deadlines: list[tuple[float, int, _Flow]] = []
        self._recency: list[tuple[float, int, _Flow]] = []
        self._tick = count()
        self._next_check = float("-inf")

    def __len__(self) -> int:
        """Flows in the table."""
        return len(self._flows)

    def process(self, seg: Segment) -> None:
        """Account one decoded segment to its flow."""
        stats = self.stats
        stats.packets += 1
        stats.payload_bytes += len(seg.payload)
        src = seg.src
        dst = seg.dst
        if src < dst or (src == dst and seg.sport <= seg.dport):
            key: FlowKey = (src, seg.sport, dst, seg.dport, seg.vlan)
            idx = 0
        else:
            key = (dst, seg.dport, src, seg.sport, seg.vlan)
            idx = 1
        flow = self._flows.get(key)
        if flow is None:
            # A flow starts with a SYN or with data: a late ACK, RST or bare FIN starts nothing.
            if not (seg.flags & TH_SYN or seg.payload or seg.truncated_by) or seg.flags & TH_RST:
                return
            flow = self._create(key, idx, seg)
        elif flow.state >= _IGNORED:
            flow.last_ts = seg.ts
            if not seg.flags & _FIN_RST_SYN or not self._control(flow, idx, seg):
                return
            flow = self._create(key, idx, seg)
        self._segment(flow, idx, seg)

    def advance(self, now: float) -> None:
        """Close flows idle since before ``now`` minus their timeout; cheap when called often."""
        if now < self._next_check:
            return
        self._next_check = now + self.config.check_interval
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, flow = heapq.heappop(heap)
            if flow.removed:
                continue
            deadline = flow.last_ts + self._timeout(flow)
            if deadline > now:
                heapq.heappush(heap, (deadline, next(self._tick), flow))
                continue
            reason = CloseReason.CONNECTION_CLOSED if flow.fins == 3 else CloseReason.TIMEOUT
            self._end(flow, reason, now)

    def followed_endpoints(self) -> list[tuple[str, int, str, int]]:
        """Both ends of every flow with an open session, lower (ip, port) first."""
        return [flow.key[:4] for flow in self._flows.values() if flow.state == _MATCHED]

    def finish(self, ts: float) -> None:
        """End of capture: deliver what is held and close every flow."""
        for flow in list(self._flows.values()):
            self._end(flow, CloseReason.CAPTURE_ENDED, ts)
        self._deadlines.clear()
        self._recency.clear()

    # Flow lifecycle

    def _create(self, key: FlowKey, idx: int, seg: Segment) -> _Flow:
        """A new flow in PROBING state, evicting the least recently active one when full."""
        if len(self._flows) >= self.config.max_flows:
            self._evict(seg.ts)
        cfg = self.config
        shared = self.stats.stream
        ends = ((key[0], key[1]), (key[2], key[3]))
        sides = tuple(
            _Side(
                ip,
                port,
                StreamReassembler(cfg.reassembly_max_bytes, cfg.reassembly_max_segments, shared),
            )
            for ip, port in ends
        )
        flow = _Flow(key, (sides[0], sides[1]), seg.ts)
        self._flows[key] = flow
        self.stats.flows_created += 1
        self.stats.flows_active += 1
        tick = next(self._tick)
        heapq.heappush(self._deadlines, (seg.ts + cfg.idle_timeout, tick, flow))
        heapq.heappush(self._recency, (seg.ts, tick, flow))
        self._compact()
        return flow

    def _compact(self) -> None:
        """Rebuild the heaps when entries of removed flows outnumber live ones."""
        live = len(self._flows)
        if len(self._deadlines) > 2 * live + 64:
            self._deadlines = [e for e in self._deadlines if not e[2].removed]
            heapq.heapify(self._deadlines)
        if len(self._recency) > 2 * live + 64:
            self._recency = [e for e in self._recency if not e[2].removed]
            heapq.heapify(self._recency)

    def _evict(self, ts: float) -> None:
        """Drop the least recently active flow to make room, closing it if still open."""
        heap = self._recency
        while heap:
            seen, _, flow = heapq.heappop(heap)
            if flow.removed:
                continue
            if flow.last_ts > seen:
                heapq.heappush(heap, (flow.last_ts, next(self._tick), flow))
                continue
            self._end(flow, CloseReason.EVICTED, ts)
            return

    def _timeout(self, flow: _Flow) -> float:
        """How long this flow may stay silent."""
        state = flow.state
        if state == _CLOSED:
            return self.config.closed_linger
        if state == _MATCHED and flow.fins != 3:
            return self.config.matched_idle_timeout
        return self.config.idle_timeout

    def _control(self, flow: _Flow, idx: int, seg: Segment) -> bool:
        """SYN, FIN or RST on an ignored or closed flow; True when a new connection replaces it."""
        flags = seg.flags
        if flags & TH_SYN and not flags & (TH_ACK | TH_RST):
            # The 5-tuple is being reused: forget the old connection and start afresh.
            self._end(flow, CloseReason.CONNECTION_CLOSED, seg.ts)
            return True
        if flow.state == _IGNORED:
            if flags & TH_FIN:
                flow.fins |= 1 << idx
            if flags & TH_RST or flow.fins == 3:
                self._end(flow, CloseReason.CONNECTION_CLOSED, seg.ts, linger=True)
        return False

    def _end(self, flow: _Flow, reason: CloseReason, ts: float, linger: bool = False) -> None:
        """Close the flow, then drop it, or with ``linger`` keep it as CLOSED for a while so
        that stragglers (retransmissions, last ACKs) start nothing new."""
        if flow.removed:
            return
        if flow.state != _CLOSED:
            self._close(flow, reason, ts)
        if linger:
            deadline = flow.last_ts + self.config.closed_linger
            heapq.heappush(self._deadlines, (deadline, next(self._tick), flow))
        else:
            flow.removed = True
            del self._flows[flow.key]

    def _close(self, flow: _Flow, reason: CloseReason, ts: float) -> None:
        """Deliver what the reassemblers hold, close the session, and count the flow closed."""
        stats = self.stats
        stats.flows_active -= 1
        stats.flows_closed[reason] = stats.flows_closed.get(reason, 0) + 1
        if flow.state != _IGNORED:
            first = flow.origin if flow.origin >= 0 else 0
            for idx in (first, 1 - first):
                chunks = flow.sides[idx].reasm.flush()
                # Flushed bytes may still complete a probe, or make a dissector fail.
                if chunks and flow.state != _IGNORED:
                    self._route(flow, idx, chunks, ts)
            session = flow.session
            if flow.state == _MATCHED and session is not None:
                try:
                    events = session.close(reason, ts)
                except Exception:
                    # A dissector bug must not take the sensor down with it.
                    stats.dissector_errors += 1
                    events = []
                self._emit(flow, session, events)
                self._on_close(self._info(flow), session, reason)
        flow.state = _CLOSED
        flow.session = None
        for side in flow.sides:
            side.forget()

    # Per-segment path

    def _segment(self, flow: _Flow, idx: int, seg: Segment) -> None:
        """Reassemble one segment of a probing or matched flow and act on what comes out."""
        ts = seg.ts
        flow.last_ts = ts
        side = flow.sides[idx]
        side.packets += 1
        flags = seg.flags
        if flags & TH_SYN:
            flow.syn_seen = True
            if flow.client < 0:
                # The SYN sender is the client; a SYN-ACK comes from the server.
                flow.client = 1 - idx if flags & TH_ACK else idx
        if flags & TH_RST:
            self._end(flow, CloseReason.CONNECTION_CLOSED, ts, linger=True)
            return
        if flags & TH_FIN:
            flow.fins |= 1 << idx
        if seg.payload:
            # Sent something, even if out of order: this side is not silent.
            side.payload_seen = True
        if seg.truncated_by:
            self.stats.truncated_segments += 1
        other = flow.sides[1 - idx].reasm
        if flags & TH_ACK and other.buffered_segments:
            # The peer has everything below this ACK: a hole under it was lost by the capture.
            lost = other.acked(seg.ack)
            if lost:
                self._route(flow, 1 - idx, lost, ts)
                if flow.removed or flow.state == _IGNORED:
                    return
        chunks = side.reasm.add(seg.seq, seg.payload, ts, flags, seg.truncated_by)
        if chunks:
            self._route(flow, idx, chunks, ts)
        if flow.state == _PROBING:
            self._check_quiet(flow, idx)
        if side.reasm.fin_reached and flow.sides[1 - idx].reasm.fin_reached:
            self._end(flow, CloseReason.CONNECTION_CLOSED, ts, linger=True)

    def _route(self, flow: _Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
        """Send chunks to the probe or the session, whichever the flow's state calls for."""
        if flow.state == _MATCHED:
            self._feed(flow, idx, chunks, ts)
        elif flow.state == _PROBING:
            self._probe(flow, idx, chunks, ts)

    def _check_quiet(self, flow: _Flow, idx: int) -> None:
        """Ignore a flow both sides of which said NO_MATCH, or one did and the other is silent."""
        side = flow.sides[idx]
        other = flow.sides[1 - idx]
        if side.verdict == _NO_MATCH and other.verdict == _NO_MATCH:
            self._ignore(flow)
            return
        if other.verdict == _NO_MATCH and not side.payload_seen:
            flow.quiet += 1
        elif side.verdict == _NO_MATCH and not other.payload_seen:
            flow.loud += 1
        else:
            return
        cfg = self.config
        # The silent side's own packets decide; a one-sided capture has none, hence the backstop.
        if flow.quiet >= cfg.silent_peer_packets or flow.loud >= cfg.unanswered_packets:
            self._ignore(flow)

    def _ignore(self, flow: _Flow) -> None:
        """Stop looking at a flow; until it ends it costs one lookup per packet."""
        flow.state = _IGNORED
        flow.session = None
        self.stats.flows_ignored += 1
        for side in flow.sides:
            side.forget()

    # Probing

    def _probe(self, flow: _Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
        """Run the probes on one direction's new in-order bytes."""
        cfg = self.config
        side = flow.sides[idx]
        for i, chunk in enumerate(chunks):
            if isinstance(chunk, Gap):
                # The bytes after a gap do not start at a message boundary.
                side.midstream = True
                side.history = []
                side.history_bytes = 0
                continue
            side.payload_seen = True
            if side.probe_segments == 0 and not side.history and not flow.syn_seen:
                side.midstream = True
            if not side.midstream:
                side.history.append((chunk, ts))
                side.history_bytes += len(chunk)
                if side.history_bytes > cfg.probe_history_bytes:
                    # Too much to keep for a side that may end up PEER: resync there instead.
                    side.midstream = True
                    side.history = []
                    side.history_bytes = 0
            if side.verdict == _NO_MATCH:
                continue
            side.probe_segments += 1
            side.probe_bytes += len(chunk)
            if side.midstream:
                matched = self._probe_midstream(flow, idx, side, chunk, ts)
                if matched is None:
                    return
                if matched:
                    rest = chunks[i + 1 :]
                    if rest and flow.state == _MATCHED:
                        self._feed(flow, idx, rest, ts)
                    return
                if (
                    side.probe_segments >= cfg.midstream_probe_segments
                    or side.probe_bytes >= cfg.midstream_probe_bytes
                ):
                    side.verdict = _NO_MATCH
                    side.pending = []
                continue
            data = b"".join(part for part, _ in side.history)
            try:
                dissector, result = first_match(self._dissectors, data)
            except Exception:
                self._dissector_error(flow, ts)
                return
            if result.verdict is Verdict.MATCH and dissector is not None:
                self._start(flow, idx, dissector, result, side.history, ts)
                rest = chunks[i + 1 :]
                if rest and flow.state == _MATCHED:
                    self._feed(flow, idx, rest, ts)
                return
            if (
                result.verdict is Verdict.NO_MATCH
                or len(data) >= cfg.probe_max_bytes
                or side.probe_segments >= cfg.probe_max_segments
            ):
                side.verdict = _NO_MATCH

    def _probe_midstream(
        self, flow: _Flow, idx: int, side: _Side, chunk: bytes, ts: float
    ) -> bool | None:
        """Probe a segment start mid-stream, joined to held segments while the probe wants more.

        True when a session started, False when not (yet), None after a dissector error.
        """
        side.pending.append((chunk, ts))
        while side.pending:
            data = b"".join(part for part, _ in side.pending)
            try:
                dissector, result = first_match(self._dissectors, data)
            except Exception:
                self._dissector_error(flow, ts)
                return None
            if result.verdict is Verdict.MATCH and dissector is not None:
                backlog = side.pending
                side.pending = []
                self._start(flow, idx, dissector, result, backlog, ts)
                return True
            if result.verdict is Verdict.NEED_MORE and len(data) < self.config.probe_max_bytes:
                return False
            # No message starts at the oldest held segment: try from the next one.
            side.pending = side.pending[1:]
        return False

    def _start(
        self,
        flow: _Flow,
        idx: int,
        dissector: Dissector,
        result: ProbeResult,
        backlog: list[tuple[bytes, float]],
        ts: float,
    ) -> None:
        """Open a session with ``idx`` as ORIGIN and feed it what both sides already sent."""
        try:
            session = dissector.new_session(result.detected_by)
        except Exception:
            self._dissector_error(flow, ts)
            return
        flow.session = session
        flow.protocol = dissector.name
        flow.state = _MATCHED
        flow.origin = idx
        self.stats.flows_matched += 1
        origin = flow.sides[idx]
        peer = flow.sides[1 - idx]
        origin.history = []
        origin.history_bytes = 0
        for data, when in backlog:
            if flow.state != _MATCHED:
                return
            self._feed(flow, idx, [data], when)
        # A mid-stream PEER is fed from its next segment start: nothing was kept for it.
        backlog = peer.history
        peer.history = []
        peer.history_bytes = 0
        for data, when in backlog:
            if flow.state != _MATCHED:
                return
            self._feed(flow, 1 - idx, [data], when)

    # Feeding

    def _feed(self, flow: _Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
        """Give one direction's chunks to the session, keeping what it did not consume."""
        session = flow.session
        if session is None:
            return
        side = flow.sides[idx]
        direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
        for chunk in chunks:
            try:
                if isinstance(chunk, Gap):
                    # The unconsumed tail is lost with the hole: tell the session about both.
                    missing = chunk.missing + len(side.tail)
                    side.tail = b""
                    events = session.gap(direction, missing, ts)
                else:
                    data = side.tail + chunk if side.tail else chunk
                    consumed, events = session.feed(direction, data, ts)
                    if not 0 <= consumed <= len(data):
                        raise ValueError(f"session consumed {consumed} of {len(data)} bytes")
                    tail = data[consumed:]
                    if len(tail) > self.config.tail_max_bytes:
                        self.stats.tail_overflows += 1
                        tail = b""
                        self._emit(flow, session, events)
                        events = session.gap(direction, None, ts)
                    side.tail = tail
            except Exception:
                self._dissector_error(flow, ts)
                return
            self._emit(flow, session, events)

    def _dissector_error(self, flow: _Flow, ts: float) -> None:
        """A dissector raised: count it, close its session as evicted, and ignore the flow."""
        self.stats.dissector_errors += 1
        session = flow.session
        if session is not None and flow.origin >= 0:
            try:
                events = session.close(CloseReason.EVICTED, ts)
            except Exception:
                events = []
            self._emit(flow, session, events)
            self._on_close(self._info(flow), session, CloseReason.EVICTED)
        self._ignore(flow)

    # Output

    def _emit(self, flow: _Flow, session: Session, events: list[Any]) -> None:
        """Hand a session's events to the sink with the flow's identity."""
        if not events:
            return
        info = self._info(flow)
        sink = self._on_event
        for event in events:
            sink(info, session, event)

    def _info(self, flow: _Flow) -> FlowInfo:
        """The flow's identity as the outside world sees it."""
        origin = flow.sides[flow.origin]
        peer = flow.sides[1 - flow.origin]
        client = flow.sides[flow.client] if flow.client >= 0 else None
        return FlowInfo(
            origin.ip,
            origin.port,
            peer.ip,
            peer.port,
            flow.key[4],
            flow.first_ts,
            flow.last_ts,
            flow.syn_seen,
            client.ip if client is not None else None,
            client.port if client is not None else None,
            flow.protocol,
        )
