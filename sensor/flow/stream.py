"""One direction of one TCP connection, put back in order, with every loss said out loud."""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass
from enum import StrEnum

from dissectors.base import Direction

from ..capture.decode import TH_FIN, TH_SYN

_SEQ_MASK = 0xFFFFFFFF
_SEQ_HALF = 1 << 31
_SEQ_SPACE = 1 << 32

DEFAULT_MAX_BUFFER_BYTES = 1 << 20
DEFAULT_MAX_BUFFER_SEGMENTS = 1024
# Delivered bytes kept until the peer acknowledges them, to compare retransmitted copies with
# (Suricata keeps a segment until the receiver ACKs it, for the same check). On a LAN the
# bytes in flight are a few tens of KiB; past the cap the oldest are let go and counted.
DEFAULT_MAX_UNACKED_BYTES = 64 * 1024
# Over all reassemblers that share one ReassemblyStats (one engine): the memory that kept
# bytes may take, each kept run costed with the Python objects that hold it.
DEFAULT_MAX_UNACKED_TOTAL = 8 << 20
# A run's Python objects: a tuple (72 with its GC header), an int (32), the bytes header (33),
# its list slot with over-allocation (about 12) and a share of the list itself; rounded up.
KEPT_RUN_OVERHEAD = 192


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of the stream that will never arrive; ``missing`` is its exact length in bytes."""

    missing: int


Chunk = bytes | Gap


class StreamAnomaly(StrEnum):
    """What the reassembler counts; the value doubles as a metric label."""

    RETRANSMISSION = "retransmission"
    OVERLAP = "overlap"
    OVERLAP_MISMATCH = "overlap-mismatch"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class OverlapMismatch:
    """Copies of the same stream bytes differed; the first copy was kept and decoded.

    The engine hands it to the session's event sink like a dissector's event, once per
    segment that showed a difference: ``count`` differing overlaps in that segment,
    ``total`` in the association so far (both directions).
    """

    ts: float
    direction: Direction
    count: int
    total: int

    @property
    def first(self) -> bool:
        """Whether this is the association's first difference."""
        return self.count == self.total


@dataclass(slots=True)
class ReassemblyStats:
    """Counters that any number of reassemblers may share."""

    retransmissions: int = 0
    overlaps: int = 0
    overlap_mismatches: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    # Delivered bytes let go (or never kept) unacknowledged because a cap bit: the
    # per-direction cap, or the total over every stream.
    unacked_dropped_bytes: int = 0
    # Memory the kept delivered bytes take now, over every stream (bytes and object costs).
    kept_memory: int = 0
    # Retransmitted bytes of delivered stream that could not be compared with the copy
    # decoded: let go at the cap, or never kept (no ACK of the peer seen, a gap).
    uncompared_bytes: int = 0

    def by_reason(self) -> dict[StreamAnomaly, int]:
        """The anomaly counts keyed by their closed reason."""
        return {
            StreamAnomaly.RETRANSMISSION: self.retransmissions,
            StreamAnomaly.OVERLAP: self.overlaps,
            StreamAnomaly.OVERLAP_MISMATCH: self.overlap_mismatches,
            StreamAnomaly.GAP: self.gaps,
        }


def _piece(start: int, data: bytes, missing: int, lo: int, hi: int) -> tuple[bytes, int]:
    """The part [lo, hi) of a run at ``start`` made of ``data`` then ``missing`` lost bytes."""
    size = len(data)
    a = min(lo - start, size)
    b = min(hi - start, size)
    return data[a:b], (hi - lo) - (b - a)


class StreamReassembler:
    """One direction of a TCP connection: segments in, in-order chunks and gaps out.

    Offsets count stream bytes from the first one (unbounded, so 32-bit sequence wraparound
    never reaches the buffer); a held run is its captured bytes followed by ``missing`` bytes
    that the snaplen cut off, which come out as a Gap when their turn comes.

    Delivered bytes are kept until the peer's ACK passes them (``release``), at most
    ``max_unacked_bytes`` and ``max_unacked_segments`` of them, so that a retransmitted copy
    of bytes already delivered in order is compared with the copy that was decoded. Nothing
    is kept before the peer's first ACK is seen: on a one-sided capture none ever comes, and
    its retransmissions are counted as not compared rather than held forever.
    """

    __slots__ = (
        "_acked",
        "_base",
        "_buffered",
        "_fin",
        "_hole_acked",
        "_kept",
        "_max_bytes",
        "_max_segments",
        "_max_unacked",
        "_max_unacked_segments",
        "_max_unacked_total",
        "_next",
        "_runs",
        "_starts",
        "acks_seen",
        "fin_reached",
        "kept_bytes",
        "last_ts",
        "mismatches",
        "started",
        "stats",
        "syn_seen",
    )

    def __init__(
        self,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        max_buffer_segments: int = DEFAULT_MAX_BUFFER_SEGMENTS,
        stats: ReassemblyStats | None = None,
        max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES,
        max_unacked_segments: int = DEFAULT_MAX_BUFFER_SEGMENTS,
        max_unacked_total: int = DEFAULT_MAX_UNACKED_TOTAL,
    ) -> None:
        caps = (
            max_buffer_bytes,
            max_buffer_segments,
            max_unacked_bytes,
            max_unacked_segments,
            max_unacked_total,
        )
        if min(caps) < 0:
            raise ValueError("reassembly caps must not be negative")
        self._max_bytes = max_buffer_bytes
        self._max_segments = max_buffer_segments
        self._max_unacked = max_unacked_bytes
        self._max_unacked_segments = max_unacked_segments
        self._max_unacked_total = max_unacked_total
        self.stats = stats if stats is not None else ReassemblyStats()
        self._base = 0  # sequence number of stream offset 0
        self._next = 0  # stream offset of the next byte to deliver
        self._starts: list[int] = []  # sorted offsets of held runs
        self._runs: dict[int, tuple[bytes, int]] = {}  # offset -> (bytes, missing tail)
        self._buffered = 0
        self._fin: int | None = None  # stream offset the FIN occupies
        self._hole_acked = -1  # stream offset of a hole one ACK has already covered
        self.started = False
        self.syn_seen = False
        self.fin_reached = False
        self.last_ts = 0.0
        self.mismatches = 0  # this direction's overlaps whose copies differed
        # Delivered runs (stream offset, bytes) the peer has not acknowledged yet, oldest first.
        # (A list made on the first run kept and dropped when all is acknowledged: an idle
        # or fully acknowledged stream pays nothing for it.)
        self._kept: list[tuple[int, bytes]] | None = None
        self.kept_bytes = 0
        self._acked = 0  # stream offset below which the peer acknowledged everything
        self.acks_seen = False  # whether an ACK of the peer was seen: only then is data kept

    @property
    def offset(self) -> int:
        """Stream offset of the next byte to deliver (SYN and FIN not counted)."""
        return self._next

    @property
    def fin_seen(self) -> bool:
        """Whether a FIN has been seen, in order or not."""
        return self._fin is not None

    @property
    def buffered_bytes(self) -> int:
        """Captured bytes held out of order."""
        return self._buffered

    @property
    def buffered_segments(self) -> int:
        """Runs held out of order."""
        return len(self._starts)

    def add(
        self, seq: int, payload: bytes, ts: float, flags: int = 0, truncated_by: int = 0
    ) -> list[Chunk]:
        """Take one segment; return what became deliverable in order, gaps included."""
        self.last_ts = ts
        if flags & TH_SYN:
            seq = (seq + 1) & _SEQ_MASK  # the SYN takes one sequence number; data follows
            if not self.started:
                self._start(seq)
                self.syn_seen = True
        fin = flags & TH_FIN
        if not payload and not truncated_by and not fin:
            return []
        if not self.started:
            # Mid-stream: the first segment with data (or a FIN) defines offset 0.
            self._start(seq)
        delta = (seq - self._base - self._next) & _SEQ_MASK
        if delta >= _SEQ_HALF:
            delta -= _SEQ_SPACE
        start = self._next + delta
        end = start + len(payload) + truncated_by
        out: list[Chunk] = []
        if fin and self._fin is None and end >= self._next:
            self._fin = end
            self._clip_held(end)
        if self._fin is not None and end > self._fin:
            # Bytes past the FIN are not part of this stream.
            payload, truncated_by = _piece(
                start, payload, truncated_by, start, max(start, self._fin)
            )
            end = max(start, self._fin)
        if end > start:
            self._take(start, payload, truncated_by, out)
        self._reach_fin()
        return out

    def next_seq(self) -> int | None:
        """The sequence number of the next byte, if the stream stands plainly in order there."""
        if self._starts or self._fin is not None or not self.started:
            return None
        return (self._base + self._next) & _SEQ_MASK

    def skip(self, seq: int, n: int, ts: float, payload: bytes | None = None) -> bool:
        """Take the in-order segment at ``seq`` by its length ``n`` alone; False if it is not one.

        Only a segment that starts exactly where the stream stands, with nothing held out of
        order and no FIN known, qualifies: then ``add`` would deliver it whole, untouched and
        uncounted, and its bytes need not be copied. Anything else goes through ``add``.
        ``payload``, when given, is kept (not copied) until acknowledged, as ``add`` keeps it.
        """
        if self._starts or self._fin is not None or not self.started:
            return False
        if (seq - self._base - self._next) & _SEQ_MASK:
            return False
        self.last_ts = ts
        if payload is not None and self.acks_seen:
            # _keep, inlined: this is the path of nearly every data-set segment.
            stats = self.stats
            cost = n + KEPT_RUN_OVERHEAD
            if stats.kept_memory + cost <= self._max_unacked_total:
                kept = self._kept
                if kept is None:
                    kept = self._kept = []
                kept.append((self._next, payload))
                stats.kept_memory += cost
                self.kept_bytes += n
                if self.kept_bytes > self._max_unacked or len(kept) > self._max_unacked_segments:
                    self._trim_kept()
            else:
                stats.unacked_dropped_bytes += n
        self._next += n
        return True

    def absorbed(self, data: bytes) -> None:
        """The compiled reader's copy of the last bytes it absorbed, not yet acknowledged.

        ``data`` ends where the stream stands (``skip`` accounted it already).
        """
        if data and self.acks_seen:
            at = self._next - len(data)
            kept = self._kept
            while kept and kept[-1][0] + len(kept[-1][1]) > at:
                # Cannot happen when the reader took over at the stream's end; never keep
                # two copies of one offset.
                gone = len(kept.pop()[1])
                self.kept_bytes -= gone
                self.stats.kept_memory -= gone + KEPT_RUN_OVERHEAD
            self._keep(data, at)

    def release(self, ack: int) -> None:
        """The peer acknowledged up to ``ack``: kept delivered bytes below it are let go."""
        self.acks_seen = True
        if not self.started:
            return
        nxt = self._next
        delta = (ack - self._base - nxt) & _SEQ_MASK
        if delta < _SEQ_HALF:
            # At or past what was delivered (an ACK may overtake its data on a span port).
            self._acked = nxt
            self._forget_kept()
            return
        to = nxt + delta - _SEQ_SPACE
        if to <= self._acked:
            return
        self._acked = to
        kept = self._kept
        freed = runs = 0
        if not kept:
            return
        for at, data in kept:
            if at + len(data) > to:
                break
            freed += len(data)
            runs += 1
        del kept[:runs]
        cut = 0
        if kept and kept[0][0] < to:
            # A run acknowledged in part: its acknowledged head goes (rare: ACKs fall on
            # segment ends), so that what is kept is exactly the unacknowledged bytes.
            at, data = kept[0]
            cut = to - at
            kept[0] = (to, data[cut:])
        if runs or cut:
            self.kept_bytes -= freed + cut
            self.stats.kept_memory -= freed + cut + KEPT_RUN_OVERHEAD * runs

    def acked(self, ack: int) -> list[Chunk]:
        """The peer acknowledged up to ``ack``: bytes below it that never came were lost.

        Only acts when data is held past a hole, so an ACK that overtakes its data on a
        span port does not declare a gap by itself.
        """
        if not self._starts or not self.started:
            return []
        delta = (ack - self._base - self._next) & _SEQ_MASK
        if delta == 0 or delta >= _SEQ_HALF:
            return []
        # One ACK may overtake its data on a span port; a second one past the hole may not.
        if self._hole_acked != self._next:
            self._hole_acked = self._next
            return []
        out: list[Chunk] = []
        self._jump(min(self._next + delta, self._starts[0]), out)
        self._reach_fin()
        return out

    def flush(self) -> list[Chunk]:
        """Give up waiting: declare every hole a gap and deliver everything held."""
        out: list[Chunk] = []
        while self._starts:
            self._jump(self._starts[0], out)
        if self._fin is not None and not self.fin_reached:
            self._jump(self._fin, out)
            self._reach_fin()
        return out

    def discard(self) -> None:
        """Drop everything held; the stream is no longer of interest."""
        self._starts.clear()
        self._runs.clear()
        self._buffered = 0
        self._forget_kept()

    def _clip_held(self, limit: int) -> None:
        """Forget held bytes at or past ``limit`` (they came after the FIN)."""
        starts = self._starts
        while starts and starts[-1] >= limit:
            data, _ = self._runs.pop(starts.pop())
            self._buffered -= len(data)
        if starts:
            at = starts[-1]
            data, missing = self._runs[at]
            if at + len(data) + missing > limit:
                self._buffered -= len(data)
                data, missing = _piece(at, data, missing, at, limit)
                self._runs[at] = (data, missing)
                self._buffered += len(data)

    def _start(self, seq: int) -> None:
        """Make ``seq`` stream offset 0."""
        self._base = seq
        self._next = 0
        self._acked = 0
        self._forget_kept()
        self.started = True

    def _take(self, start: int, data: bytes, missing: int, out: list[Chunk]) -> None:
        """Deliver, trim or hold the run [start, start + len(data) + missing)."""
        nxt = self._next
        end = start + len(data) + missing
        if end <= nxt:
            self.stats.retransmissions += 1
            self._compare(start, data)
            return
        if start < nxt:
            # Partly seen already: the first copy wins; compare with it while it is kept.
            self.stats.overlaps += 1
            self._compare(start, data)
            data, missing = _piece(start, data, missing, nxt, end)
            start = nxt
        if start == nxt and not self._starts:
            self._deliver(data, missing, out)
            return
        self._hold(start, data, missing)
        self._drain(out)
        while self._buffered > self._max_bytes or len(self._starts) > self._max_segments:
            self._jump(self._starts[0], out)

    def _compare(self, start: int, data: bytes) -> None:
        """Compare a copy at ``start`` with the kept delivered bytes it covers.

        Bytes the peer acknowledged are not looked at: the receiver already has (and kept)
        the first copy, and drops this one. Delivered bytes no longer or never kept are
        counted as not compared.
        """
        hi = min(start + len(data), self._next)
        lo = max(start, self._acked)
        if hi <= lo:
            return
        covered = 0
        differs = False
        # Newest first: retransmissions are of recent bytes.
        for at, kept in reversed(self._kept or ()):
            if at >= hi:
                continue
            kend = at + len(kept)
            if kend <= lo:
                break
            a = max(lo, at)
            b = min(hi, kend)
            covered += b - a
            if not differs and data[a - start : b - start] != kept[a - at : b - at]:
                differs = True
        if covered < hi - lo:
            self.stats.uncompared_bytes += hi - lo - covered
        if differs:
            self.stats.overlap_mismatches += 1
            self.mismatches += 1

    def _keep(self, data: bytes, at: int | None = None) -> None:
        """Keep delivered bytes (at the stream's current offset) until they are acknowledged."""
        stats = self.stats
        cost = len(data) + KEPT_RUN_OVERHEAD
        if stats.kept_memory + cost > self._max_unacked_total:
            stats.unacked_dropped_bytes += len(data)  # every stream together is at its cap
            return
        kept = self._kept
        if kept is None:
            kept = self._kept = []
        kept.append((self._next if at is None else at, data))
        self.kept_bytes += len(data)
        stats.kept_memory += cost
        if self.kept_bytes > self._max_unacked or len(kept) > self._max_unacked_segments:
            self._trim_kept()

    def _trim_kept(self) -> None:
        """Let the oldest kept bytes go, unacknowledged, while over a cap; count them."""
        stats = self.stats
        excess = self.kept_bytes - self._max_unacked
        if excess > 0:
            stats.unacked_dropped_bytes += self.let_go(excess)
        kept = self._kept
        while kept and len(kept) > self._max_unacked_segments:
            data = kept.pop(0)[1]
            self.kept_bytes -= len(data)
            stats.kept_memory -= len(data) + KEPT_RUN_OVERHEAD
            stats.unacked_dropped_bytes += len(data)

    def let_go(self, n: int) -> int:
        """Let the oldest ``n`` kept bytes go (a run is cut where they end); how many went.

        Not counted here: the per-direction cap counts them, or the compiled reader did.
        """
        kept = self._kept
        stats = self.stats
        gone = 0
        while kept and gone < n:
            at, data = kept[0]
            size = len(data)
            if gone + size <= n:
                del kept[0]
                gone += size
                stats.kept_memory -= size + KEPT_RUN_OVERHEAD
            else:
                cut = n - gone
                kept[0] = (at + cut, data[cut:])
                gone += cut
                stats.kept_memory -= cut
        self.kept_bytes -= gone
        return gone

    def _forget_kept(self) -> None:
        """Let every kept byte go (the stream restarts or is no longer of interest)."""
        kept = self._kept
        if kept is not None:
            self.stats.kept_memory -= self.kept_bytes + KEPT_RUN_OVERHEAD * len(kept)
            self._kept = None
            self.kept_bytes = 0

    def _hold(self, start: int, data: bytes, missing: int) -> None:
        """Keep the parts of a run that no held run covers; compare the parts that one does."""
        end = start + len(data) + missing
        starts = self._starts
        runs = self._runs
        i = bisect_right(starts, start) - 1
        if i < 0:
            i = 0
        pos = start
        fresh: list[tuple[int, bytes, int]] = []
        overlapped = False
        while i < len(starts) and starts[i] < end:
            other = starts[i]
            odata, omissing = runs[other]
            oend = other + len(odata) + omissing
            i += 1
            if oend <= pos:
                continue
            if other > pos:
                fresh.append((pos, *_piece(start, data, missing, pos, other)))
            lo = max(pos, other)
            hi = min(end, oend)
            mine, _ = _piece(start, data, missing, lo, hi)
            theirs, _ = _piece(other, odata, omissing, lo, hi)
            common = min(len(mine), len(theirs))
            if mine[:common] != theirs[:common]:
                self.stats.overlap_mismatches += 1
                self.mismatches += 1
            overlapped = True
            pos = oend
        if pos < end:
            fresh.append((pos, *_piece(start, data, missing, pos, end)))
        if not fresh:
            self.stats.retransmissions += 1
            return
        if overlapped:
            self.stats.overlaps += 1
        for at, piece, lost in fresh:
            insort(starts, at)
            runs[at] = (piece, lost)
            self._buffered += len(piece)

    def _drain(self, out: list[Chunk]) -> None:
        """Deliver held runs while the first one starts where the stream stands."""
        starts = self._starts
        while starts and starts[0] <= self._next:
            at = starts.pop(0)
            data, missing = self._runs.pop(at)
            self._buffered -= len(data)
            end = at + len(data) + missing
            if end <= self._next:
                continue
            if at < self._next:
                data, missing = _piece(at, data, missing, self._next, end)
            self._deliver(data, missing, out)

    def _jump(self, to: int, out: list[Chunk]) -> None:
        """Declare [next, to) lost, then deliver whatever held runs follow."""
        if to > self._next:
            self._lose(to - self._next, out)
        self._drain(out)

    def _deliver(self, data: bytes, missing: int, out: list[Chunk]) -> None:
        """Emit in-order bytes and the lost bytes after them."""
        if data:
            out.append(data)
            if self.acks_seen:
                self._keep(data)
            self._next += len(data)
        if missing:
            self._lose(missing, out)

    def _lose(self, missing: int, out: list[Chunk]) -> None:
        """Emit a gap and move past it."""
        out.append(Gap(missing))
        self._next += missing
        self.stats.gaps += 1
        self.stats.gap_bytes += missing

    def _reach_fin(self) -> None:
        """Step over the FIN once everything before it was delivered."""
        if self._fin is not None and not self.fin_reached and self._next >= self._fin:
            self._next = self._fin + 1
            self.fin_reached = True
