"""The engine that probes new flows, follows matched ones and feeds their sessions."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
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
    skipper_of,
    tell_unconsumed,
)

from ..capture.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Segment
from ..capture.fastread import Report as FastReport
from ..capture.fastread import endpoint as fast_endpoint
from ..capture.fastread import flow_key as fast_flow_key
from .stream import Chunk, Gap, OverlapMismatch, StreamReassembler
from .table import (
    CLOSED,
    FIN_RST_SYN,
    IGNORED,
    MATCHED,
    NO_MATCH,
    PROBING,
    EngineConfig,
    EngineStats,
    Flow,
    FlowInfo,
    FlowKey,
    Side,
)

EventSink = Callable[[FlowInfo, Session, Any], None]
CloseSink = Callable[[FlowInfo, Session, CloseReason], None]


def _ignore_events(info: FlowInfo, session: Session, event: Any) -> None:
    """Default event sink."""


def _ignore_close(info: FlowInfo, session: Session, reason: CloseReason) -> None:
    """Default close sink."""


class FlowEngine:
    """Tracks TCP flows, probes their first bytes, and feeds matched sessions in order."""

    # Off only to compare the skip fast path with plain feeding (tests, benchmarks).
    skipping = True

    def __init__(
        self,
        dissectors: Sequence[Dissector],
        on_event: EventSink = _ignore_events,
        on_close: CloseSink = _ignore_close,
        config: EngineConfig | None = None,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        # Asked once per new flow: whether to track it at all (the prefilter's exact set).
        self.admit: Callable[[Segment], bool] | None = None
        # Told when a flow stops being looked at (ignored or closed), with its 4-tuple.
        self.forget: Callable[[tuple[str, int, str, int]], None] | None = None
        # The compiled reader of an offline pass (capture/fastread.py), when it is used: the
        # engine registers flows whose coming segments it would only count.
        self.fast: Any = None
        # key -> [flow, side index, next seq, ring bytes reserved in the kept-bytes total]
        self._fast_regs: dict[bytes, list[Any]] = {}
        self.fast_last_ts = 0.0  # the newest packet the compiled reader absorbed
        self.stats = EngineStats()
        self._dissectors = tuple(dissectors)
        self._on_event = on_event
        self._on_close = on_close
        self._flows: dict[FlowKey, Flow] = {}
        self.last_flow: Flow | None = None
        # What a closed flow keeps while it lingers: nothing of its own (its two sides, with
        # their reassemblers, are most of what a flow costs; stragglers need only the state).
        shared = self.stats.stream
        reasm = StreamReassembler(0, 0, shared)
        self._closed_sides = (Side("", 0, reasm), Side("", 0, reasm))
        # Lazy heaps: an entry's time is a lower bound, checked against the flow when popped.
        self._deadlines: list[tuple[float, int, Flow]] = []
        self._recency: list[tuple[float, int, Flow]] = []
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
        # The flow entry of the segment just processed, for --alert-pcap's live buffers.
        self.last_flow = flow
        if flow is None:
            # A flow starts with a SYN or with data: a late ACK, RST or bare FIN starts nothing.
            if not (seg.flags & TH_SYN or seg.payload or seg.truncated_by) or seg.flags & TH_RST:
                return
            if self.admit is not None and not self.admit(seg):
                return
            flow = self.last_flow = self._create(key, idx, seg)
        elif flow.state >= IGNORED:
            flow.last_ts = seg.ts
            if not seg.flags & FIN_RST_SYN or not self._control(flow, idx, seg):
                return
            flow = self.last_flow = self._create(key, idx, seg)
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
            if self._fast_regs:
                self._fast_refresh(flow)
            deadline = flow.last_ts + self._timeout(flow)
            if deadline > now:
                heapq.heappush(heap, (deadline, next(self._tick), flow))
                continue
            reason = CloseReason.CONNECTION_CLOSED if flow.fins == 3 else CloseReason.TIMEOUT
            self._end(flow, reason, now)

    def followed_endpoints(self) -> list[tuple[str, int, str, int]]:
        """Both ends of every flow with an open session, lower (ip, port) first."""
        return [flow.key[:4] for flow in self._flows.values() if flow.state == MATCHED]

    def finish(self, ts: float) -> None:
        """End of capture: deliver what is held and close every flow."""
        for flow in list(self._flows.values()):
            self._end(flow, CloseReason.CAPTURE_ENDED, ts)
        self._deadlines.clear()
        self._recency.clear()

    # Flow lifecycle

    def _create(self, key: FlowKey, idx: int, seg: Segment) -> Flow:
        """A new flow in PROBING state, evicting the least recently active one when full."""
        if len(self._flows) >= self.config.max_flows:
            self._evict(seg.ts)
        cfg = self.config
        shared = self.stats.stream
        ends = ((key[0], key[1]), (key[2], key[3]))
        sides = tuple(
            Side(
                ip,
                port,
                StreamReassembler(
                    cfg.reassembly_max_bytes,
                    cfg.reassembly_max_segments,
                    shared,
                    cfg.reassembly_max_unacked_bytes,
                    max_unacked_total=cfg.reassembly_max_unacked_total,
                ),
            )
            for ip, port in ends
        )
        flow = Flow(key, (sides[0], sides[1]), seg.ts)
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
            if self._fast_regs:
                self._fast_refresh(flow)
            if flow.last_ts > seen:
                heapq.heappush(heap, (flow.last_ts, next(self._tick), flow))
                continue
            self._end(flow, CloseReason.EVICTED, ts)
            return

    def _timeout(self, flow: Flow) -> float:
        """How long this flow may stay silent."""
        state = flow.state
        if state == CLOSED:
            return self.config.closed_linger
        if state == MATCHED and flow.fins != 3:
            return self.config.matched_idle_timeout
        return self.config.idle_timeout

    def _control(self, flow: Flow, idx: int, seg: Segment) -> bool:
        """SYN, FIN or RST on an ignored or closed flow; True when a new connection replaces it."""
        flags = seg.flags
        if flags & TH_SYN and not flags & (TH_ACK | TH_RST):
            # The 5-tuple is being reused: forget the old connection and start afresh.
            self._end(flow, CloseReason.CONNECTION_CLOSED, seg.ts)
            return True
        if flow.state == IGNORED:
            if flags & TH_FIN:
                flow.fins |= 1 << idx
            if flags & TH_RST or flow.fins == 3:
                self._end(flow, CloseReason.CONNECTION_CLOSED, seg.ts, linger=True)
        return False

    def _end(self, flow: Flow, reason: CloseReason, ts: float, linger: bool = False) -> None:
        """Close the flow, then drop it, or with ``linger`` keep it as CLOSED for a while so
        that stragglers (retransmissions, last ACKs) start nothing new."""
        if flow.removed:
            return
        if flow.state != CLOSED:
            self._close(flow, reason, ts)
        if linger:
            deadline = flow.last_ts + self.config.closed_linger
            heapq.heappush(self._deadlines, (deadline, next(self._tick), flow))
        else:
            flow.removed = True
            del self._flows[flow.key]

    def _close(self, flow: Flow, reason: CloseReason, ts: float) -> None:
        """Deliver what the reassemblers hold, close the session, and count the flow closed."""
        if self.fast is not None:
            self._fast_drop(flow)
        stats = self.stats
        stats.flows_active -= 1
        stats.flows_closed[reason] = stats.flows_closed.get(reason, 0) + 1
        if flow.state != IGNORED:
            first = flow.origin if flow.origin >= 0 else 0
            for idx in (first, 1 - first):
                chunks = flow.sides[idx].reasm.flush()
                # Flushed bytes may still complete a probe, or make a dissector fail.
                if chunks and flow.state != IGNORED:
                    self._route(flow, idx, chunks, ts)
            session = flow.session
            if flow.state == MATCHED and session is not None:
                try:
                    # What the session left unconsumed is here, not in the session: a PDU
                    # (or its header) the connection ended inside.
                    for idx in (0, 1):
                        direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
                        tell_unconsumed(session, direction, len(flow.sides[idx].tail))
                    events = session.close(reason, ts)
                except Exception:
                    # A dissector bug must not take the sensor down with it.
                    stats.dissector_errors += 1
                    events = []
                self._emit(flow, session, events)
                self._on_close(self._info(flow), session, reason)
        was_ignored = flow.state == IGNORED
        flow.state = CLOSED
        flow.session = None
        flow.skipper = None
        for side in flow.sides:
            side.forget()
        flow.sides = self._closed_sides
        if self.forget is not None and not was_ignored:
            self.forget(flow.key[:4])

    # Per-segment path

    def _segment(self, flow: Flow, idx: int, seg: Segment) -> None:
        """Reassemble one segment of a probing or matched flow and act on what comes out."""
        if self._fast_regs and flow.fast_key is not None:
            # A packet the C loop could not read (a snaplen cut, IPv6 extension headers)
            # comes after what it absorbed for this flow: account that first.
            self._fast_refresh(flow)
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
        if flags & TH_ACK:
            if other.kept_bytes or not other.acks_seen:
                # The peer has what it acknowledged: no copy of it need be compared any more.
                other.release(seg.ack)
            if other.buffered_segments:
                # The peer has everything below this ACK: a hole under it was lost by the capture.
                lost = other.acked(seg.ack)
                if lost:
                    self._route(flow, 1 - idx, lost, ts)
                    if flow.removed or flow.state == IGNORED:
                        return
        skipper = flow.skipper
        if (
            skipper is not None
            and seg.payload
            and not side.tail
            and not flags & FIN_RST_SYN
            and not seg.truncated_by
            and flow.state == MATCHED
        ):
            # Most segments of an image transfer lie wholly inside a data set: when this one
            # is exactly next in its stream and the session would only count it, account it
            # by its length, with no copy, no chunk list and no feed. Else the plain path.
            n = len(seg.payload)
            direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
            try:
                if skipper.skippable(direction) >= n and side.reasm.skip(
                    seg.seq, n, ts, seg.payload
                ):
                    events = skipper.skip(direction, n, ts)
                    if events:
                        self._emit(flow, skipper, events)
                    if self.fast is not None:
                        self._offer_skip(flow, idx)
                    return
            except Exception:
                self._dissector_error(flow, ts)
                return
        reasm = side.reasm
        mismatches = reasm.mismatches
        chunks = reasm.add(seg.seq, seg.payload, ts, flags, seg.truncated_by)
        if reasm.mismatches != mismatches and flow.state == MATCHED:
            self._mismatch(flow, idx, reasm.mismatches - mismatches, ts)
        if chunks:
            self._route(flow, idx, chunks, ts)
        if flow.state == PROBING:
            self._check_quiet(flow, idx)
        if side.reasm.fin_reached and flow.sides[1 - idx].reasm.fin_reached:
            self._end(flow, CloseReason.CONNECTION_CLOSED, ts, linger=True)
        elif self.fast is not None and flow.skipper is not None and flow.state == MATCHED:
            self._offer_skip(flow, idx)

    def _mismatch(self, flow: Flow, idx: int, count: int, ts: float) -> None:
        """Overlapping copies differed in a followed association: tell its event sink."""
        session = flow.session
        if session is None:
            return
        direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
        total = flow.sides[0].reasm.mismatches + flow.sides[1].reasm.mismatches
        self._emit(flow, session, [OverlapMismatch(ts, direction, count, total)])

    # The compiled reader

    def _offer_skip(self, flow: Flow, idx: int) -> None:
        """Let the compiled reader absorb this direction's coming data-set segments, and the
        flow's pure ACKs.

        The entry's window is the rest of the data-set PDV under way (``skippable``); a
        DICOM session may let it go on across the data set's PDV and PDU headers, checked in
        C as the session would check them (``DicomSession.framing``). With neither, the
        entry absorbs only pure ACKs (the highest of each side is reported), so a flow between
        messages costs Python nothing per ACK; its next data segment comes back here.
        """
        side = flow.sides[idx]
        skipper = flow.skipper
        if skipper is None or side.tail:
            return
        other = flow.sides[1 - idx].reasm
        if other.buffered_segments or other.fin_seen:
            return  # ACKs decide gaps there: Python sees them
        seq = side.reasm.next_seq()
        if seq is None:
            return
        keyed = flow.fast_key
        if keyed is None:
            a = fast_endpoint(flow.key[0], flow.key[1])
            b = fast_endpoint(flow.key[2], flow.key[3])
            keyed = flow.fast_key = fast_flow_key(a, b, flow.key[4])
        key, side0_lower = keyed
        if key in self._fast_regs:
            return
        direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
        n = max(0, skipper.skippable(direction))
        framing = getattr(skipper, "framing", None)
        framed = framing(direction) if framing is not None else None
        # The C side numbers directions by the lower endpoint of the key.
        data_dir = 0 if (idx == 0) == side0_lower else 1
        reasm = side.reasm
        keep = pre = ring = 0
        starved = False
        if n or framed is not None:
            # The reader's copy of what it absorbs: within the per-direction cap with what
            # this side keeps already, its ring reserved in the total cap until let go.
            if reasm.acks_seen:
                room = self.config.reassembly_max_unacked_total - self.stats.stream.kept_memory
                keep = max(0, min(self.config.reassembly_max_unacked_bytes, room))
            pre = min(reasm.kept_bytes, keep)
            ring = keep - pre
            self.stats.stream.kept_memory += ring
            # No room at all (every stream together at its cap): what it absorbs is kept by
            # nobody, and counted as let go, as the Python path counts it.
            starved = reasm.acks_seen and keep == 0
        # Before the peer's first ACK nothing is kept (keep is 0): that ACK is Python's, and
        # the next entry keeps copies, as the Python path does from then on.
        self.fast.register(key, data_dir, seq, seq + n, keep, pre, framed, not reasm.acks_seen)
        self._fast_regs[key] = [flow, idx, seq, ring, starved]

    def fast_report(self, report: FastReport, final: bool) -> None:
        """Account what the compiled reader absorbed for a flow (``final``: it let go)."""
        (
            key,
            nbytes,
            data_packets,
            acks,
            last_ts,
            kept,
            dropped,
            pre_dropped,
            ack_data,
            ack_other,
            crossed,
        ) = report
        reg = self._fast_regs.pop(key, None) if final else self._fast_regs.get(key)
        if reg is None:
            return
        flow, idx, seq, ring, starved = reg
        if final:
            self.stats.stream.kept_memory -= ring  # the ring's reservation
        stats = self.stats
        stats.packets += data_packets + acks
        stats.fast_packets += data_packets + acks
        stats.payload_bytes += nbytes
        if last_ts > flow.last_ts:
            flow.last_ts = last_ts
        if last_ts > self.fast_last_ts:
            self.fast_last_ts = last_ts
        side = flow.sides[idx]
        side.packets += data_packets
        skipper = flow.skipper
        if nbytes and skipper is not None:
            direction = Direction.ORIGIN if idx == flow.origin else Direction.PEER
            if not side.reasm.skip(seq, nbytes, last_ts):
                # The stream no longer stands where the entry began: never count twice.
                if self._fast_regs.pop(key, None) is not None:
                    self.stats.stream.kept_memory -= ring
                self._dissector_error(flow, last_ts)
                return
            reg[2] = (seq + nbytes) & 0xFFFFFFFF
            try:
                if crossed[3]:  # PDVs begun: it went on across headers (framing)
                    events = skipper.skip_framed(direction, nbytes, crossed, last_ts)
                else:
                    events = skipper.skip(direction, nbytes, last_ts)
            except Exception:
                self._dissector_error(flow, last_ts)
                return
            if events:
                self._emit(flow, skipper, events)
        # What the reader kept of the absorbed bytes, and the ACKs it saw, for comparisons:
        # the bytes its cap pushed out of what this side kept go first (the oldest), as
        # this side's own cap would have let them go, then what the peer acknowledged.
        reasm = side.reasm
        self.stats.stream.unacked_dropped_bytes += nbytes if starved else dropped
        if pre_dropped:
            reasm.let_go(pre_dropped)
        if ack_data >= 0:
            reasm.release(ack_data)
        if kept:
            reasm.absorbed(kept)
        if ack_other >= 0:
            flow.sides[1 - idx].reasm.release(ack_other)

    def fast_release(self) -> None:
        """The compiled reader is done: what it still absorbs is accounted, then forgotten."""
        for key in list(self._fast_regs):
            report = self.fast.unregister(key)
            if report is not None:
                self.fast_report(report, True)
        for reg in self._fast_regs.values():
            self.stats.stream.kept_memory -= reg[3]
        self._fast_regs.clear()
        self.fast = None

    def _fast_refresh(self, flow: Flow) -> None:
        """Take back what the compiled reader absorbed for this flow, if it holds an entry."""
        if flow.fast_key is not None and flow.fast_key[0] in self._fast_regs:
            self._fast_drop(flow)

    def _fast_drop(self, flow: Flow) -> None:
        """The flow ends or is ignored: take back what the compiled reader absorbed."""
        if flow.fast_key is not None and flow.fast_key[0] in self._fast_regs:
            report = self.fast.unregister(flow.fast_key[0])
            if report is not None:
                self.fast_report(report, True)
            else:
                reg = self._fast_regs.pop(flow.fast_key[0], None)
                if reg is not None:
                    self.stats.stream.kept_memory -= reg[3]

    def _route(self, flow: Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
        """Send chunks to the probe or the session, whichever the flow's state calls for."""
        if flow.state == MATCHED:
            self._feed(flow, idx, chunks, ts)
        elif flow.state == PROBING:
            self._probe(flow, idx, chunks, ts)

    def _check_quiet(self, flow: Flow, idx: int) -> None:
        """Ignore a flow both sides of which said NO_MATCH, or one did and the other is silent."""
        side = flow.sides[idx]
        other = flow.sides[1 - idx]
        if side.verdict == NO_MATCH and other.verdict == NO_MATCH:
            self._ignore(flow)
            return
        if other.verdict == NO_MATCH and not side.payload_seen:
            flow.quiet += 1
        elif side.verdict == NO_MATCH and not other.payload_seen:
            flow.loud += 1
        else:
            return
        cfg = self.config
        # The silent side's own packets decide; a one-sided capture has none, hence the backstop.
        if flow.quiet >= cfg.silent_peer_packets or flow.loud >= cfg.unanswered_packets:
            self._ignore(flow)

    def _ignore(self, flow: Flow) -> None:
        """Stop looking at a flow; until it ends it costs one lookup per packet."""
        if self.fast is not None:
            self._fast_drop(flow)
        flow.state = IGNORED
        flow.session = None
        flow.skipper = None
        self.stats.flows_ignored += 1
        for side in flow.sides:
            side.forget()
        if self.forget is not None:
            self.forget(flow.key[:4])

    # Probing

    def _probe(self, flow: Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
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
            if side.verdict == NO_MATCH:
                continue
            side.probe_segments += 1
            side.probe_bytes += len(chunk)
            if side.midstream:
                matched = self._probe_midstream(flow, idx, side, chunk, ts)
                if matched is None:
                    return
                if matched:
                    rest = chunks[i + 1 :]
                    if rest and flow.state == MATCHED:
                        self._feed(flow, idx, rest, ts)
                    return
                if (
                    side.probe_segments >= cfg.midstream_probe_segments
                    or side.probe_bytes >= cfg.midstream_probe_bytes
                ):
                    side.verdict = NO_MATCH
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
                if rest and flow.state == MATCHED:
                    self._feed(flow, idx, rest, ts)
                return
            if (
                result.verdict is Verdict.NO_MATCH
                or len(data) >= cfg.probe_max_bytes
                or side.probe_segments >= cfg.probe_max_segments
            ):
                side.verdict = NO_MATCH

    def _probe_midstream(
        self, flow: Flow, idx: int, side: Side, chunk: bytes, ts: float
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
        flow: Flow,
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
        flow.skipper = skipper_of(session) if self.skipping else None
        flow.protocol = dissector.name
        flow.state = MATCHED
        flow.origin = idx
        self.stats.flows_matched += 1
        origin = flow.sides[idx]
        peer = flow.sides[1 - idx]
        origin.history = []
        origin.history_bytes = 0
        for data, when in backlog:
            if flow.state != MATCHED:
                return
            self._feed(flow, idx, [data], when)
        # A mid-stream PEER is fed from its next segment start: nothing was kept for it.
        backlog = peer.history
        peer.history = []
        peer.history_bytes = 0
        for data, when in backlog:
            if flow.state != MATCHED:
                return
            self._feed(flow, 1 - idx, [data], when)
        early = [i for i in (idx, 1 - idx) if flow.sides[i].reasm.mismatches]
        if early and flow.state == MATCHED:
            # Copies differed while the flow was still being probed (in its head).
            total = origin.reasm.mismatches + peer.reasm.mismatches
            self._mismatch(flow, early[0], total, ts)

    # Feeding

    def _feed(self, flow: Flow, idx: int, chunks: list[Chunk], ts: float) -> None:
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

    def _dissector_error(self, flow: Flow, ts: float) -> None:
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

    def _emit(self, flow: Flow, session: Session, events: list[Any]) -> None:
        """Hand a session's events to the sink with the flow's identity."""
        if not events:
            return
        info = self._info(flow)
        sink = self._on_event
        for event in events:
            sink(info, session, event)

    def _info(self, flow: Flow) -> FlowInfo:
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
            origin.reasm.mismatches + peer.reasm.mismatches,
        )
