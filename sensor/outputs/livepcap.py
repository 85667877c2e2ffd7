"""``--alert-pcap`` where the packets cannot be read again: live capture and standard input.

Offline, a further pass over the file finds an alerting association's packets
(:class:`~sensor.outputs.alertpcap.AlertPcaps`). Live, each followed association's packets
are kept as they pass, redacted at once by the same code (data-set bytes cut, identity
secrets zeroed), head first:

- a connection still being probed keeps its first packets (handshake, first payloads) in a
  short list; when it turns out DICOM or HL7 they go to its buffer, when it does not they
  are dropped;
- when the association raises an alert its pcap is written (named by start time and
  Community ID, as offline) and every later packet is appended, until the association has
  ended and its teardown passed (``LINGER``);
- when it ends without an alert its buffer is dropped, unless it carried a C-MOVE-RQ: a
  rule may decide on a C-MOVE's destination up to ``decide_within`` seconds later
  (``move-unknown-destination``), so the buffer waits that long for a finding about it.

Bounds (each bite counted by bound in ``dicom_sensor_alert_pcap_limited_total``): files,
bytes per association (the head is kept first), total bytes written, bytes held in memory
by associations not alerting (``buffer-bytes``) and ended associations waiting for a late
decision (``held-associations``, the oldest dropped first).

Under ``capture --workers`` the worker that follows an association keeps its packets, but
the parent judges it (``sensor/commands/workers.py``): the parent sends each verdict back
(:meth:`LiveAlertPcaps.verdict`) with the time up to which it has judged every worker's
inputs (:meth:`LiveAlertPcaps.judged_to`). An ended association's buffer is therefore held
in a worker until the parent's judged time has passed its end (a short grace, counted
with the C-MOVE holds against ``held-associations``), and a C-MOVE's hold runs on the
judged time too. Index lines go to the parent, the only writer of ``index.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..capture.decode import Segment
from ..flow.table import CLOSED, MATCHED, PROBING
from .alertpcap import (
    INDEX,
    LINGER,
    PCAP_HEADER,
    AlertPcapLimits,
    AlertPcapStats,
    AlertTarget,
    AssociationPcap,
    Bound,
    index_entry,
    pcap_header,
)

Key4 = tuple[str, int, str, int]
PROBE_PACKETS = 16  # packets kept for a connection the probe has not decided yet
OVERHEAD = 160  # bytes of Python objects per kept packet, counted with its frame
BUFFER_OVERHEAD = 2048  # bytes of one association's buffer before any packet


TICK = 1.0  # the parent makes late decisions at most this long after their time


class Ends(NamedTuple):
    """An association's endpoints as a finding names them (what a verdict carries)."""

    requestor_ip: str
    requestor_port: int
    acceptor_ip: str
    acceptor_port: int


def ends_key(a: tuple[str, int], b: tuple[str, int]) -> Key4:
    """The :func:`key4` of a connection between ``a`` and ``b``."""
    return (*a, *b) if a <= b else (*b, *a)


def append_index(directory: Path, entries: list[dict[str, Any]]) -> None:
    """Append index lines (one write per line); raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / INDEX).open("a", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(entry) + "\n")


def key4(seg: Segment) -> Key4:
    """Both ends of a segment's connection, lower (ip, port) first (the engine's order)."""
    src, dst = seg.src, seg.dst
    if src < dst or (src == dst and seg.sport <= seg.dport):
        return (src, seg.sport, dst, seg.dport)
    return (dst, seg.dport, src, seg.sport)


@dataclass(slots=True)
class _Buffer:
    """One followed association's packets, redacted, and what became of it."""

    pcap: AssociationPcap
    first_ts: float
    cost: int = BUFFER_OVERHEAD  # bytes charged against max_buffer_bytes while not alerting
    session: int = 0  # id() of the session, once matched
    moved: bool = False  # carried a C-MOVE-RQ
    writing: bool = False  # alerted: its pcap is on disk and grows
    ended_at: float | None = None  # the association ended; linger or wait until...
    judged_by: float = 0.0  # --workers: the parent's verdicts on it are all sent by then
    packets: int = 0
    refused: bool = False  # the files bound bit for it (counted once)
    rules: set[str] = field(default_factory=set)


class LiveAlertPcaps:
    """Per-association packet buffers that become pcaps when their association alerts."""

    def __init__(
        self,
        directory: str,
        limits: AlertPcapLimits | None = None,
        community_id: Callable[[str, int, str, int], str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.limits = limits if limits is not None else AlertPcapLimits()
        self.stats = AlertPcapStats()
        self.linktype = 1
        self.decide_within = 30.0
        self.index_now = True  # capture: index lines as files complete; read: at the end
        self.entries: list[dict[str, Any]] = []
        self.buffered = 0  # bytes charged by buffers not alerting
        self._community_id = community_id
        self._probing: dict[Key4, list[tuple[Segment, bytes, int]]] = {}
        self._buffers: dict[Key4, _Buffer] = {}
        self._by_session: dict[int, Key4] = {}
        self._held: OrderedDict[Key4, _Buffer] = OrderedDict()  # ended, waiting for a decision
        self._ending: dict[Key4, _Buffer] = {}  # ended and written: the teardown is appended
        self._failed = False
        self._alerts: dict[int, tuple[set[str], Any]] = {}  # alerts before the buffer existed
        # capture --workers: the parent judges; the time up to which it has (None: here)
        self.judged: float | None = None
        self._grace: OrderedDict[Key4, _Buffer] = OrderedDict()  # ended, verdict on its way
        # capture --workers: index lines go to the parent (the one writer of index.jsonl)
        self.index_sink: Callable[[list[dict[str, Any]]], None] | None = None
        # --workers: the order of the worker's latest policy input (its end's is no later)
        self.order: Callable[[], float] | None = None
        self.report: Callable[[str], None] | None = None
        self.failures: Counter[str] | None = None  # the pipeline's output failures

    @property
    def held_bytes(self) -> int:
        """Bytes charged by every buffer not written (a gauge)."""
        return self.buffered

    # -- packets -------------------------------------------------------------------------

    def packet(self, seg: Segment, data: bytes, wire: int, flow: Any) -> None:
        """One packet the engine just processed; ``flow`` is its flow entry (or None)."""
        if flow is None:
            return
        state = flow.state
        key = key4(seg)
        if state == PROBING:
            kept = self._probing.get(key)
            if kept is None:
                kept = self._probing[key] = []
            if len(kept) >= PROBE_PACKETS:
                # The probe decides within its own caps; a head cut finer is counted.
                self.stats.limited[Bound.PROBE_PACKETS] += 1
                return
            if self.buffered >= self.limits.max_buffer_bytes:
                self.stats.limited[Bound.BUFFER_BYTES] += 1
                return
            kept.append((seg, data, wire))
            self.buffered += len(data) + OVERHEAD
            return
        if state == MATCHED:
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._start(key, flow)
                if buf is None:
                    return
                for old in self._unprobe(key):
                    self._add(buf, *old)
                alert = self._alerts.pop(buf.session, None)
                if alert is not None:
                    self._write(buf, *alert)
            self._add(buf, seg, data, wire)
            if self._alerts:
                self._alerts.clear()  # alerts of sessions that have no buffer (not followed)
            return
        if state == CLOSED:
            buf = self._ending.get(key) or self._held.get(key) or self._grace.get(key)
            if buf is not None and seg.ts <= (buf.ended_at or seg.ts) + LINGER:
                self._add(buf, seg, data, wire)

    def _start(self, key: Key4, flow: Any) -> _Buffer | None:
        """A buffer for a connection that has just turned out DICOM or HL7."""
        protocol = flow.protocol
        if protocol not in ("dicom", "hl7"):
            self._unprobe(key)
            return None
        kept = self._probing.get(key)
        first = kept[0][0] if kept else None
        if first is not None and first.flags & 0x02 and first.flags & 0x10:
            side0 = (first.dst, first.dport)  # a SYN-ACK first: the client is the other end
        elif first is not None:
            side0 = (first.src, first.sport)
        else:
            side0 = (key[0], key[1])
        other = (key[2], key[3]) if side0 == (key[0], key[1]) else (key[0], key[1])
        first_ts = first.ts if first is not None else flow.first_ts
        target = AlertTarget(protocol, side0, other, first_ts, first_ts, "")
        buf = _Buffer(AssociationPcap(target, self.linktype, side0), first_ts)
        if flow.session is not None:
            buf.session = id(flow.session)
            self._by_session[buf.session] = key
        self._buffers[key] = buf
        self.buffered += buf.cost
        return buf

    def _unprobe(self, key: Key4) -> list[tuple[Segment, bytes, int]]:
        """Take a probed connection's kept packets back (and their charge)."""
        kept = self._probing.pop(key, None)
        if not kept:
            return []
        self.buffered -= sum(len(data) + OVERHEAD for _, data, _ in kept)
        return kept

    def _add(self, buf: _Buffer, seg: Segment, data: bytes, wire: int) -> None:
        pcap, limits, stats = buf.pcap, self.limits, self.stats
        if pcap.full:
            self._left_out(buf, Bound.ASSOCIATION_BYTES)
            return
        if pcap.bytes >= limits.max_association_bytes:
            pcap.full = True
            self._left_out(buf, Bound.ASSOCIATION_BYTES)
            return
        if buf.writing:
            if stats.bytes >= limits.max_total_bytes:
                self._left_out(buf, Bound.TOTAL_BYTES)
                return
        elif self.buffered >= limits.max_buffer_bytes:
            # Memory for associations that have not alerted is spent: this one keeps its
            # head; the rest of its packets are counted and left out.
            self._left_out(buf, Bound.BUFFER_BYTES)
            return
        size = pcap.add(seg, data, wire)
        buf.packets += 1
        buf.pcap.target.last_ts = max(buf.pcap.target.last_ts, seg.ts)
        if buf.writing:
            stats.packets += 1
            self._flush(buf)
        else:
            charge = size + OVERHEAD
            buf.cost += charge
            self.buffered += charge

    def _left_out(self, buf: _Buffer, bound: str) -> None:
        self.stats.limited[bound] += 1

    # -- what the pipeline tells --------------------------------------------------------

    def moved(self, session: object) -> None:
        """The session sent a C-MOVE-RQ: its buffer waits for a late decision at its end."""
        key = self._by_session.get(id(session))
        if key is not None and key in self._buffers:
            self._buffers[key].moved = True

    def alerted(self, session: object, rules: set[str], view: Any | None) -> None:
        """An association raised an alert: write its pcap and keep appending.

        ``view`` names its endpoints (None: the buffer's own, its first sender requesting).
        """
        key = self._by_session.get(id(session))
        buf = self._buffers.get(key) if key is not None else None
        if buf is not None:
            self._write(buf, rules, view)
        elif view is not None and any(self.alerted_late(view, rule) for rule in rules):
            return
        else:
            # It matched in the packet being processed: its buffer starts right after.
            had = self._alerts.get(id(session))
            self._alerts[id(session)] = ((had[0] | rules) if had else set(rules), view)

    def alerted_late(self, view: Any, rule: str) -> bool:
        """A finding about an ended association (a late decision): True if its pcap was kept."""
        ends = (view.requestor_ip, view.requestor_port, view.acceptor_ip, view.acceptor_port)
        key = (*ends[:2], *ends[2:]) if ends[:2] <= ends[2:] else (*ends[2:], *ends[:2])
        buf = self._held.pop(key, None) or self._grace.pop(key, None)
        if buf is None:
            written = self._ending.get(key)
            if written is not None:
                written.rules.add(rule)
                return True
            return False
        self._write(buf, {rule}, view)
        self._written_or_dropped(key, buf)
        return True

    def _written_or_dropped(self, key: Key4, buf: _Buffer) -> None:
        """An ended buffer that alerted: its teardown is appended (unless a bound refused it)."""
        if buf.writing:
            self._ending[key] = buf
        else:
            self._drop(buf)

    def ended(self, session: object, ts: float) -> None:
        """The association ended: finish its pcap, hold its buffer, or drop it."""
        key = self._by_session.pop(id(session), None)
        if key is None:
            return
        buf = self._buffers.pop(key, None)
        if buf is None:
            return
        buf.ended_at = ts
        # An association closed by a timer is judged at the timer's time, not its last packet's.
        buf.judged_by = ts if self.order is None else max(ts, self.order())
        if buf.writing:
            self._ending[key] = buf
        elif buf.moved or self.judged is not None:
            # A C-MOVE waits for a late decision; under --workers every association waits
            # for the parent's verdict (until its judged time passes the end).
            if len(self._held) + len(self._grace) >= self.limits.max_held:
                older = self._grace if self._grace else self._held
                _, oldest = older.popitem(last=False)
                self._drop(oldest)
                self.stats.limited[Bound.HELD] += 1
            (self._held if buf.moved else self._grace)[key] = buf
        else:
            self._drop(buf)

    def verdict(self, key: Key4, session: int, rules: set[str], view: Ends | None) -> None:
        """The workers' parent says the association ``key`` (session id ``session`` here)
        raised ``rules``: write its pcap, whether it is still open or held after its end."""
        buf = self._buffers.get(key)
        if buf is not None and buf.session == session:
            self._write(buf, rules, view)
            return
        for held in (self._grace, self._held):
            buf = held.get(key)
            if buf is not None and buf.session == session:
                del held[key]
                self._write(buf, rules, view)
                self._written_or_dropped(key, buf)
                return
        buf = self._ending.get(key)
        if buf is not None and buf.session == session:
            self._write(buf, rules, view)

    def judged_to(self, ts: float) -> None:
        """The workers' parent has judged every input up to ``ts``: an association that
        ended by then without a verdict will get none (a C-MOVE's waits in expire)."""
        if self.judged is None or ts <= self.judged:
            return
        self.judged = ts
        for key, buf in list(self._grace.items()):
            if buf.judged_by < ts:
                del self._grace[key]
                self._drop(buf)

    def forget(self, key: Key4) -> None:
        """The engine stopped looking at a connection (not DICOM, or it ended)."""
        self._unprobe(key)
        buf = self._buffers.pop(key, None)
        if buf is not None:
            # Its session ended without a word to us (it cannot be told apart here).
            self._by_session.pop(buf.session, None)
            if buf.writing:
                buf.ended_at = buf.pcap.target.last_ts
                self._ending[key] = buf
            else:
                self._drop(buf)

    def expire(self, now: float) -> None:
        """Drop held buffers whose decision time passed; finish pcaps whose teardown passed."""
        self._alerts.clear()  # alerts waiting for a buffer wait one packet at most
        if self.judged is not None:
            now = min(now, self.judged - TICK)  # the parent decides on its judged time
        for key, buf in list(self._held.items()):
            if now > (buf.ended_at or now) + self.decide_within + LINGER:
                del self._held[key]
                self._drop(buf)
            else:
                break  # oldest first
        for key, buf in list(self._ending.items()):
            if now > (buf.ended_at or now) + LINGER:
                del self._ending[key]
                self._finish(buf)

    def finish(self) -> None:
        """End of input: finish every written pcap; drop every other buffer."""
        for buf in self._ending.values():
            self._finish(buf)
        for buf in self._buffers.values():
            if buf.writing:
                self._finish(buf)
        self._ending.clear()
        self._buffers.clear()
        self._held.clear()
        self._grace.clear()
        self._probing.clear()
        self._by_session.clear()
        self._alerts.clear()
        self.buffered = 0

    # -- files ---------------------------------------------------------------------------

    def _drop(self, buf: _Buffer) -> None:
        if not buf.writing:
            self.buffered -= buf.cost
            buf.cost = 0
        buf.pcap.held.clear()

    def _write(self, buf: _Buffer, rules: set[str], view: Any | None) -> None:
        """Name the association from the finding (else its first sender), write its pcap."""
        buf.rules |= rules
        if buf.writing:
            return
        if self.stats.files >= self.limits.max_files:
            if not buf.refused:
                buf.refused = True
                self.stats.limited[Bound.FILES] += 1
            return
        target = buf.pcap.target
        if view is not None:
            target.requestor = (view.requestor_ip, view.requestor_port)
            target.acceptor = (view.acceptor_ip, view.acceptor_port)
        if self._community_id is not None:
            target.community_id = self._community_id(*target.requestor, *target.acceptor)
        buf.writing = True
        self.buffered -= buf.cost
        buf.cost = 0
        self.stats.files += 1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with (self.directory / target.name).open("wb") as fh:
                fh.write(pcap_header(buf.pcap.linktype))
        except OSError as exc:
            self._failure(exc)
            return
        self.stats.bytes += PCAP_HEADER.size
        self.stats.packets += len(buf.pcap.held)
        self._flush(buf)

    def _flush(self, buf: _Buffer) -> None:
        """Append the held packets whose bytes are settled."""
        pcap = buf.pcap
        n = pcap.settled()
        if not n:
            return
        records = pcap.take(n)
        try:
            with (self.directory / pcap.target.name).open("ab") as fh:
                for record in records:
                    fh.write(record)
        except OSError as exc:
            self._failure(exc)
            return
        self._failed = False
        self.stats.bytes += sum(len(r) for r in records)

    def _finish(self, buf: _Buffer) -> None:
        """The association's pcap is complete: write what is left, and its index entry."""
        pcap = buf.pcap
        records = pcap.take(len(pcap.held))
        target = pcap.target
        try:
            with (self.directory / target.name).open("ab") as fh:
                for record in records:
                    fh.write(record)
        except OSError as exc:
            self._failure(exc)
        self.stats.bytes += sum(len(r) for r in records)
        end = buf.ended_at if buf.ended_at is not None else target.last_ts
        entry = index_entry(target, buf.first_ts, end, buf.rules, buf.packets, pcap.full)
        if self.index_now:
            self._index([entry])
        else:
            self.entries.append(entry)

    def write_index(self) -> None:
        """Append the index entries kept for the end (read from standard input)."""
        self._index(self.entries)
        self.entries = []

    def _index(self, entries: list[dict[str, Any]]) -> None:
        if self.index_sink is not None:
            self.index_sink(entries)
            return
        try:
            append_index(self.directory, entries)
        except OSError as exc:
            self._failure(exc)

    def _failure(self, exc: OSError) -> None:
        """A pcap the sensor could not write: counted as a files failure, said once."""
        if self.failures is not None:
            self.failures["files"] += 1
        if not self._failed and self.report is not None:
            self.report(f"--alert-pcap {self.directory}: {exc.strerror or exc}")
        self._failed = True
