"""Passive DICOM association state machine, fed one direction's bytes at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from ..base import CloseReason, Direction
from .constants import CommandField, PDUType, StatusClass
from .dimse import DimseCommand, parse_command
from .errors import DicomError, Reason
from .events import (
    Aborted,
    Anomaly,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationRequested,
    DimseMessage,
    Event,
    GapDetected,
    ReleaseReplied,
    ReleaseRequested,
)
from .limits import DEFAULT_LIMITS, Limits
from .pdu import (
    PDU_HEADER,
    PDU_HEADER_RESERVED,
    PDV_HEADER,
    AAbort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ReleaseRP,
    ReleaseRQ,
    parse_associate_fixed,
    parse_pdu_body,
)
from .probe import DETECTED_BY_AC, DETECTED_BY_MIDSTREAM

MAX_ANOMALY_EVENTS = 100
# Resync looks for PDU starts with a zero reserved byte 1 (what every stock peer sends) by
# these patterns. A sender may set byte 1 (no peer tests it), so a start with a non-zero
# byte 1 is taken too, but only where more of it can be verified: a P-DATA-TF whose first
# PDV starts a command set with its group length element (_COMMAND_START, 8 constant
# bytes at offset 12; its data set PDUs are skipped until the next command), or a release
# or abort found by its constant length 4. Without the zero byte a bare 0x04 would match
# one data set byte in 256.
_RESYNC_PATTERNS = (b"\x04\x00", b"\x05\x00\x00\x00\x00\x04", b"\x06\x00\x00\x00\x00\x04",
                    b"\x07\x00\x00\x00\x00\x04")  # fmt: skip
_RESYNC_NEED = 12  # bytes needed to verify a P-DATA candidate: PDU header and PDV header
_COMMAND_START = b"\x00\x00\x00\x00\x04\x00\x00\x00"  # (0000,0000) UL, length 4 (PS3.7 E.1)
_RESYNC_NEED_RESERVED = 12 + len(_COMMAND_START)  # a P-DATA-TF start with byte 1 set
_RELEASE_LENGTH = b"\x00\x00\x00\x04"
_RESYNC_TAIL = _RESYNC_NEED_RESERVED - 1  # bytes kept while no candidate is found


def _resync_need(data: bytes | memoryview, pos: int, n: int) -> int:
    """Bytes needed to verify the resync candidate at ``pos``: a release or abort is 10."""
    if data[pos] != PDUType.P_DATA_TF:
        return 10
    return _RESYNC_NEED if pos + 1 < n and data[pos + 1] == 0 else _RESYNC_NEED_RESERVED


def _reserved_short(buf: bytes, i: int, n: int) -> bool:
    """A release or abort with byte 1 set: verified, or too close to the end to verify."""
    short = PDUType.A_RELEASE_RQ <= buf[i] <= PDUType.A_ABORT and buf[i + 1]
    return bool(short) and (n - i < 10 or buf[i + 6 : i + 8] == b"\x00\x00")


def _first_start(
    buf: bytes,
    needle: bytes,
    offset: int,
    pos: int,
    n: int,
    best: int,
    accept: Callable[[bytes, int, int], bool],
) -> int:
    """The first PDU start before ``best`` (-1: none yet) that holds ``needle`` at ``offset``
    and that ``accept`` takes, else ``best``."""
    start = pos + offset
    while True:
        j = buf.find(needle, start, n)
        i = j - offset
        if j < 0 or (best >= 0 and i >= best):
            return best
        if accept(buf, i, n):
            return i
        start = j + 1


class Phase(IntEnum):
    """Where the association is in its life (PS3.8 state machine, as seen from outside)."""

    IDLE = 0
    AWAITING_RESPONSE = 1
    ESTABLISHED = 2
    RELEASING = 3
    RELEASED = 4
    REJECTED = 5
    ABORTED = 6


class _Mode(IntEnum):
    BOUNDARY = 0  # next byte starts a PDU
    PDATA = 1  # inside a P-DATA-TF body
    SKIP = 2  # skipping the rest of a PDU we cannot or will not decode
    LOST = 3  # framing lost: searching for a PDU start we can verify


class _DirectionState:
    """Framing state of one direction."""

    __slots__ = ("cmd", "cmd_ctx", "cmd_overflow", "held", "mode", "pdu_left", "pdv_cmd",
                 "pdv_ctx", "pdv_last", "pdv_left", "skip_left", "skip_pdata")  # fmt: skip

    def __init__(self, mode: _Mode) -> None:
        self.mode = mode
        self.pdu_left = 0
        self.pdv_left = 0
        self.pdv_cmd = False
        self.pdv_last = False
        self.pdv_ctx = 0
        self.skip_left = 0
        self.skip_pdata = False  # the bytes skipped belong to a P-DATA-TF PDU
        self.held = 0  # bytes the caller holds unconsumed (told just before close)
        self.cmd = bytearray()
        self.cmd_ctx = 0
        self.cmd_overflow = False

    def drop_command(self) -> None:
        """Forget a partly received command set."""
        self.cmd.clear()
        self.cmd_overflow = False


@dataclass(slots=True)
class DirectionCounters:
    """What one direction sent, counted."""

    pdus: int = 0
    pdata_pdus: int = 0
    pdata_bytes: int = 0
    pdvs: int = 0
    command_fragments: int = 0
    data_set_fragments: int = 0
    data_set_bytes: int = 0
    data_sets: int = 0
    missing_bytes: int = 0


@dataclass(slots=True)
class AssociationState:
    """Everything the association has shown so far (no data set content, no secrets)."""

    detected_by: str
    phase: Phase = Phase.IDLE
    requestor: Direction | None = None
    request: AssociateRQ | None = None
    accept: AssociateAC | None = None
    reject: AssociateRJ | None = None
    abort: AAbort | None = None
    abort_by: Direction | None = None
    release_requested_by: Direction | None = None
    released: bool = False
    first_ts: float | None = None
    last_ts: float | None = None
    counters: tuple[DirectionCounters, DirectionCounters] = field(
        default_factory=lambda: (DirectionCounters(), DirectionCounters())
    )
    dimse: Counter[str] = field(default_factory=Counter)
    dimse_status: Counter[str] = field(default_factory=Counter)
    move_destinations: list[str] = field(default_factory=list)
    # Responses that failed or warned, or carried failure details (Error ID, Offending
    # Element, Attribute Identifier List, Error Comment length): the first few kept.
    failures: list[DimseCommand] = field(default_factory=list)
    failure_count: int = 0
    sop_classes: set[str] = field(default_factory=set)
    anomalies: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    end: str | None = None

    @property
    def result(self) -> str:
        """accepted, rejected or no-response."""
        if self.reject is not None:
            return "rejected"
        if self.accept is not None or self.detected_by in (DETECTED_BY_MIDSTREAM, DETECTED_BY_AC):
            return "accepted"
        return "no-response"


class DicomSession:
    """One TCP connection's DICOM association, decoded passively.

    ``feed`` takes one direction's next bytes and returns how many it consumed and the
    events they completed; the caller keeps the rest and passes it again with more.
    Any split of the byte stream gives the same events.
    """

    def __init__(self, detected_by: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.state = AssociationState(detected_by)
        midstream = detected_by == DETECTED_BY_MIDSTREAM
        # The side that matched starts at a PDU boundary; mid-stream, its peer need not.
        self._dirs = (
            _DirectionState(_Mode.BOUNDARY),
            _DirectionState(_Mode.LOST if midstream else _Mode.BOUNDARY),
        )
        self._accepted_contexts: set[int] | None = None
        self._requestor_strength = 0
        self._anomaly_events = 0
        self._release_rq_sides = 0
        if midstream:
            self.state.phase = Phase.ESTABLISHED
        elif detected_by == DETECTED_BY_AC:
            self.state.phase = Phase.AWAITING_RESPONSE
            self.state.requestor = Direction.PEER

    # -- the seam -------------------------------------------------------------------

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Event]]:
        """Consume a prefix of ``data`` from ``direction``; return its length and the events."""
        events: list[Event] = []
        st = self.state
        if st.first_ts is None:
            st.first_ts = ts
        st.last_ts = ts
        d = self._dirs[direction]
        c = st.counters[direction]
        n = len(data)
        pos = 0
        while pos < n:
            mode = d.mode
            if mode is _Mode.PDATA:
                if d.pdv_left == 0:
                    if d.pdu_left == 0:
                        d.mode = _Mode.BOUNDARY
                        continue
                    if d.pdu_left < 6:
                        self._lose_pdv_framing(d, direction, ts, events, "PDV header overruns PDU")
                        continue
                    if n - pos < 6:
                        break
                    length, ctx, control = PDV_HEADER.unpack_from(data, pos)
                    if length < 2 or length + 4 > d.pdu_left:
                        self._lose_pdv_framing(d, direction, ts, events, "PDV header invalid")
                        continue
                    if control > 3:
                        # PS3.8 E.2: bits 2-7 are reserved and receivers (pynetdicom, DCMTK)
                        # do not test them, so neither may we: decode, and say so.
                        self._anomaly(
                            direction, ts, events, Reason.RESERVED_BITS,
                            f"PDV message control header 0x{control:02x}",
                        )  # fmt: skip
                    pos += 6
                    d.pdu_left -= 4 + length
                    d.pdv_left = length - 2
                    d.pdv_cmd = bool(control & 1)
                    d.pdv_last = bool(control & 2)
                    d.pdv_ctx = ctx
                    c.pdvs += 1
                    self._start_pdv(d, c, direction, ts, events)
                    if d.pdv_left == 0:
                        self._end_pdv(d, c, direction, ts, events)
                        if d.pdu_left == 0:
                            d.mode = _Mode.BOUNDARY
                    continue
                take = min(d.pdv_left, n - pos)
                if d.pdv_cmd:
                    if len(d.cmd) + take <= self.limits.max_command_bytes:
                        d.cmd += data[pos : pos + take]
                    else:
                        d.cmd_overflow = True
                else:
                    c.data_set_bytes += take
                pos += take
                d.pdv_left -= take
                if d.pdv_left == 0:
                    self._end_pdv(d, c, direction, ts, events)
                    if d.pdu_left == 0:
                        d.mode = _Mode.BOUNDARY
                continue
            if mode is _Mode.SKIP:
                take = min(d.skip_left, n - pos)
                pos += take
                d.skip_left -= take
                if d.skip_left == 0:
                    d.mode = _Mode.BOUNDARY
                continue
            if mode is _Mode.LOST:
                found = self._resync(data, pos, n)
                if found < 0:
                    # Keep a short tail: a PDU start may straddle this chunk and the next.
                    pos = max(pos, n - _RESYNC_TAIL)
                    break
                pos = found
                if n - pos < _resync_need(data, pos, n):
                    break  # the candidate cannot be verified yet
                d.mode = _Mode.BOUNDARY
                continue
            # At a PDU boundary.
            if n - pos < 6:
                break
            # Byte 1 is reserved: no real peer tests it (pynetdicom, DCMTK), so a PDU that
            # sets it is decoded as usual and carries reserved-bits once, reported when the
            # PDU (its header, for P-DATA-TF) is consumed, whatever the split.
            pdu_type, reserved, length = PDU_HEADER_RESERVED.unpack_from(data, pos)
            if pdu_type == PDUType.P_DATA_TF:
                if length < 6 or length > self.limits.max_pdata_pdu:
                    reason = (
                        Reason.TOO_LARGE
                        if length > self.limits.max_pdata_pdu
                        else Reason.BAD_LENGTH
                    )
                    self._lose_sync(d, direction, ts, events, reason, "P-DATA-TF length")
                    pos += 1
                    continue
                pos += 6
                d.mode = _Mode.PDATA
                d.pdu_left = length
                c.pdus += 1
                c.pdata_pdus += 1
                c.pdata_bytes += 6 + length
                if reserved:
                    self._anomaly(
                        direction, ts, events, Reason.RESERVED_BITS,
                        f"P-DATA-TF header reserved byte 0x{reserved:02x}",
                    )  # fmt: skip
                if st.phase not in (Phase.ESTABLISHED, Phase.RELEASING):
                    self._anomaly(
                        direction,
                        ts,
                        events,
                        Reason.UNEXPECTED_PDU,
                        "P-DATA-TF outside an association",
                    )
                continue
            if pdu_type < PDUType.A_ASSOCIATE_RQ or pdu_type > PDUType.A_ABORT:
                self._lose_sync(
                    d, direction, ts, events, Reason.BAD_TYPE, f"PDU type 0x{pdu_type:02x}"
                )
                pos += 1
                continue
            if pdu_type <= PDUType.A_ASSOCIATE_AC:
                if length < 68:
                    self._lose_sync(
                        d, direction, ts, events, Reason.BAD_LENGTH, "associate PDU length"
                    )
                    pos += 1
                    continue
                if length > self.limits.max_associate_pdu:
                    if n - pos < 6 + 68:
                        break
                    pdu = parse_associate_fixed(
                        pdu_type, bytes(data[pos + 6 : pos + 6 + 68]), self.limits, bool(reserved)
                    )
                    c.pdus += 1
                    pos += 6 + 68
                    d.mode = _Mode.SKIP
                    d.skip_left = length - 68
                    d.skip_pdata = False
                    self._on_pdu(direction, pdu, ts, events)
                    continue
            elif length != 4 and length > 64:
                self._lose_sync(d, direction, ts, events, Reason.BAD_LENGTH, "short PDU length")
                pos += 1
                continue
            if n - pos < 6 + length:
                break
            body = bytes(data[pos + 6 : pos + 6 + length])
            pos += 6 + length
            c.pdus += 1
            if pdu_type > PDUType.A_ASSOCIATE_AC and length != 4:
                # Counted once the whole PDU is here, so any split gives the same events.
                self._anomaly(direction, ts, events, Reason.BAD_LENGTH, "short PDU length")
                if length < 4:
                    if reserved:
                        self._anomaly(
                            direction, ts, events, Reason.RESERVED_BITS,
                            f"{PDUType(pdu_type).label} header reserved byte",
                        )  # fmt: skip
                    continue
                body = body[:4]
            try:
                decoded = parse_pdu_body(pdu_type, body, self.limits, bool(reserved))
            except DicomError as exc:
                self._anomaly(direction, ts, events, exc.reason, f"{PDUType(pdu_type).label}")
                if reserved and exc.reason is not Reason.RESERVED_BITS:
                    self._anomaly(
                        direction, ts, events, Reason.RESERVED_BITS,
                        f"{PDUType(pdu_type).label} header reserved byte",
                    )  # fmt: skip
                continue
            self._on_pdu(direction, decoded, ts, events)
        return pos, events

    def skippable(self, direction: Direction) -> int:
        """Bytes from ``direction``'s position that ``feed`` would only count.

        Inside a data set fragment these are the rest of its PDV value: never a PDU or PDV
        header, never a command set. While skipping an undecodable PDU, the rest of it.
        """
        d = self._dirs[direction]
        mode = d.mode
        if mode is _Mode.PDATA:
            return 0 if d.pdv_cmd else d.pdv_left
        if mode is _Mode.SKIP:
            return d.skip_left
        return 0

    def skip(self, direction: Direction, n: int, ts: float) -> list[Event]:
        """Account ``n`` bytes of ``direction`` unseen, exactly as feeding them would."""
        d = self._dirs[direction]
        mode = d.mode
        if mode is _Mode.PDATA and not d.pdv_cmd:
            left = d.pdv_left
        elif mode is _Mode.SKIP:
            left = d.skip_left
        else:
            left = 0
        if not 0 <= n <= left:
            raise ValueError(f"cannot skip {n} bytes of {direction.name}: {left} skippable")
        events: list[Event] = []
        st = self.state
        if st.first_ts is None:
            st.first_ts = ts
        st.last_ts = ts
        if mode is _Mode.SKIP:
            d.skip_left = left - n
            if d.skip_left == 0:
                d.mode = _Mode.BOUNDARY
            return events
        st.counters[direction].data_set_bytes += n
        d.pdv_left = left - n
        if d.pdv_left == 0 and n:
            self._end_pdv(d, st.counters[direction], direction, ts, events)
            if d.pdu_left == 0:
                d.mode = _Mode.BOUNDARY
        return events

    def framing(self, direction: Direction) -> tuple[int, int, int] | None:
        """How the data set under way in ``direction`` may be followed past ``skippable``.

        (PDU bytes after the current PDV, its presentation context, the largest P-DATA-TF
        length decoded) when a compiled reader may account the coming PDV and PDU headers of
        the same data set itself: only where ``feed`` would take them without an event or
        anomaly (a data fragment that is not the last, on an accepted context, inside an
        association). Such a reader reports what it crossed to ``skip_framed``.
        """
        d = self._dirs[direction]
        # Inside or just past a data fragment that is not the last (a PDV header, or a PDU's
        # if its PDU ended too, is what comes next).
        if d.mode is _Mode.PDATA:
            if d.pdv_cmd or d.pdv_last:
                return None
        elif d.mode is not _Mode.BOUNDARY or d.pdv_left or d.pdu_left or d.pdv_cmd or d.pdv_last:
            return None
        if d.cmd or self.state.phase not in (Phase.ESTABLISHED, Phase.RELEASING):
            return None
        ctx = d.pdv_ctx
        accepted = self._accepted_contexts
        if ctx & 1 == 0 or (accepted is not None and ctx not in accepted):
            return None
        return d.pdu_left, ctx, self.limits.max_pdata_pdu

    def skip_framed(
        self,
        direction: Direction,
        n: int,
        crossed: tuple[int, int, int, int, int, int, int],
        ts: float,
    ) -> list[Event]:
        """Account ``n`` unseen bytes that ran on across headers of the same data set.

        ``crossed``: (header bytes, P-DATA-TF PDUs begun and their length with headers, PDVs
        begun, then the PDU bytes after the current PDV, the bytes left of it, whether it is
        the last fragment), as a reader that checked the headers as ``framing`` asked
        reports them; the same counts and state as feeding the bytes would give.
        """
        headers, pdus, pdu_bytes, pdvs, pdu_left, pdv_left, last = crossed
        if not pdvs:
            return self.skip(direction, n, ts)
        d = self._dirs[direction]
        # Inside a data fragment that is not the last, or just past one (an earlier report
        # ended exactly at its end, maybe with its PDU).
        inside = d.mode is _Mode.PDATA or (d.mode is _Mode.BOUNDARY and d.pdv_left == 0)
        if not inside or d.pdv_cmd or d.pdv_last or n - headers < d.pdv_left:
            raise ValueError(f"cannot cross headers of {direction.name}: not inside a data set")
        st = self.state
        if st.first_ts is None:
            st.first_ts = ts
        st.last_ts = ts
        c = st.counters[direction]
        c.pdus += pdus
        c.pdata_pdus += pdus
        c.pdata_bytes += pdu_bytes
        c.pdvs += pdvs
        c.data_set_fragments += pdvs
        c.data_set_bytes += n - headers
        d.mode = _Mode.PDATA
        d.pdu_left = pdu_left
        d.pdv_left = pdv_left
        d.pdv_last = bool(last)
        events: list[Event] = []
        if pdv_left == 0:
            self._end_pdv(d, c, direction, ts, events)
            if pdu_left == 0:
                d.mode = _Mode.BOUNDARY
        return events

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Event]:
        """Account for lost bytes; keep framing when the loss falls inside a known PDU."""
        events: list[Event] = []
        st = self.state
        st.gaps += 1
        st.anomalies[Reason.GAP.value] += 1
        d = self._dirs[direction]
        c = st.counters[direction]
        resynced = True
        if missing is not None:
            c.missing_bytes += missing
        if (
            missing is not None
            and d.mode is _Mode.PDATA
            and not d.pdv_cmd
            and d.pdv_left >= missing
        ):
            # The hole lies inside a data set fragment: nothing of interest was lost.
            d.pdv_left -= missing
            if d.pdv_left == 0:
                self._end_pdv(d, c, direction, ts, events)
        elif missing is not None and d.mode is _Mode.PDATA and d.pdv_left + d.pdu_left >= missing:
            d.skip_left = d.pdv_left + d.pdu_left - missing
            d.skip_pdata = True
            d.pdv_left = d.pdu_left = 0
            d.drop_command()
            d.mode = _Mode.SKIP if d.skip_left else _Mode.BOUNDARY
        elif missing is not None and d.mode is _Mode.SKIP and d.skip_left >= missing:
            d.skip_left -= missing
            if d.skip_left == 0:
                d.mode = _Mode.BOUNDARY
        else:
            resynced = False
            d.pdv_left = d.pdu_left = d.skip_left = 0
            d.drop_command()
            d.mode = _Mode.LOST
        events.insert(0, GapDetected(ts, direction, missing, resynced))
        return events

    def unconsumed(self, direction: Direction, n: int) -> None:
        """The caller holds ``n`` bytes of ``direction`` that ``feed`` left (see close)."""
        self._dirs[direction].held = n

    def close(self, reason: CloseReason, ts: float) -> list[Event]:
        """End the association; name how it ended.

        ``truncated`` means the connection really ended (FIN, RST, idle timeout) inside a
        PDU: one being framed here, or one whose bytes the caller still holds (``unconsumed``:
        a PDU header, an RQ/AC/RJ, a release or an abort not yet whole). An association
        flushed because the capture ended, or evicted, is never truncated.
        """
        st = self.state
        if st.end is not None:
            return []
        events: list[Event] = []
        ended = reason is CloseReason.CONNECTION_CLOSED or reason is CloseReason.TIMEOUT
        for direction in (Direction.ORIGIN, Direction.PEER):
            d = self._dirs[direction]
            c = st.counters[direction]
            mode = d.mode
            # P-DATA bytes count what arrived, not what a cut PDU's header promised.
            if mode is _Mode.PDATA:
                c.pdata_bytes -= max(0, d.pdu_left + d.pdv_left - d.held)
            elif mode is _Mode.SKIP and d.skip_pdata:
                c.pdata_bytes -= d.skip_left
            if not ended:
                continue
            if mode is _Mode.PDATA or mode is _Mode.SKIP or d.cmd:
                self._anomaly(
                    direction, ts, events, Reason.TRUNCATED, "connection ended inside a PDU"
                )
            elif mode is _Mode.BOUNDARY and d.held:
                detail = "a PDU header" if d.held < 6 else "a PDU"
                self._anomaly(
                    direction, ts, events, Reason.TRUNCATED, f"connection ended inside {detail}"
                )
        if st.abort is not None:
            st.end = "aborted"
        elif st.released:
            st.end = "released"
        else:
            st.end = reason.value
        events.append(AssociationEnded(ts, st.end, st.result))
        return events

    # -- PDUs -----------------------------------------------------------------------

    def _on_pdu(self, direction: Direction, pdu: object, ts: float, events: list[Event]) -> None:
        st = self.state
        if isinstance(pdu, AssociateRQ):
            if st.phase is not Phase.IDLE:
                self._anomaly(
                    direction,
                    ts,
                    events,
                    Reason.UNEXPECTED_PDU,
                    "A-ASSOCIATE-RQ after association start",
                )
                return
            st.request = pdu
            st.requestor = direction
            st.phase = Phase.AWAITING_RESPONSE
            events.append(AssociationRequested(ts, direction, pdu))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-ASSOCIATE-RQ")
        elif isinstance(pdu, AssociateAC):
            if st.phase is not Phase.AWAITING_RESPONSE or direction == st.requestor:
                self._anomaly(direction, ts, events, Reason.UNEXPECTED_PDU, "A-ASSOCIATE-AC")
                if st.accept is not None:
                    return
            st.accept = pdu
            st.phase = Phase.ESTABLISHED
            self._accepted_contexts = {
                pc.context_id for pc in pdu.presentation_contexts if pc.result == 0
            }
            events.append(AssociationAccepted(ts, direction, pdu))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-ASSOCIATE-AC")
        elif isinstance(pdu, AssociateRJ):
            if st.phase is not Phase.AWAITING_RESPONSE or direction == st.requestor:
                self._anomaly(direction, ts, events, Reason.UNEXPECTED_PDU, "A-ASSOCIATE-RJ")
            st.reject = pdu
            st.phase = Phase.REJECTED
            events.append(AssociationRejected(ts, direction, pdu))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-ASSOCIATE-RJ")
        elif isinstance(pdu, AAbort):
            if st.abort is None:
                st.abort = pdu
                st.abort_by = direction
            st.phase = Phase.ABORTED
            events.append(Aborted(ts, direction, pdu))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-ABORT")
        elif isinstance(pdu, ReleaseRQ):
            if st.phase is not Phase.ESTABLISHED and st.phase is not Phase.RELEASING:
                self._anomaly(direction, ts, events, Reason.UNEXPECTED_PDU, "A-RELEASE-RQ")
            if st.release_requested_by is None:
                st.release_requested_by = direction
            self._release_rq_sides |= 1 << direction
            st.phase = Phase.RELEASING
            events.append(ReleaseRequested(ts, direction))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-RELEASE-RQ")
        elif isinstance(pdu, ReleaseRP):
            # After a release collision (PS3.8 9.2.1) both sides send an RP.
            collision = st.phase is Phase.RELEASED and self._release_rq_sides == 3
            if st.phase is not Phase.RELEASING and not collision:
                self._anomaly(direction, ts, events, Reason.UNEXPECTED_PDU, "A-RELEASE-RP")
            else:
                st.released = True
                st.phase = Phase.RELEASED
            events.append(ReleaseReplied(ts, direction))
            self._pdu_anomalies(direction, ts, events, pdu.anomalies, "A-RELEASE-RP")

    # -- P-DATA ---------------------------------------------------------------------

    def _start_pdv(
        self,
        d: _DirectionState,
        c: DirectionCounters,
        direction: Direction,
        ts: float,
        events: list[Event],
    ) -> None:
        accepted = self._accepted_contexts
        if d.pdv_ctx & 1 == 0 or (accepted is not None and d.pdv_ctx not in accepted):
            self._anomaly(direction, ts, events, Reason.BAD_VALUE, "PDV on a context not accepted")
        if d.pdv_cmd:
            c.command_fragments += 1
            if not d.cmd and not d.cmd_overflow:
                d.cmd_ctx = d.pdv_ctx
            elif d.cmd_ctx != d.pdv_ctx:
                self._anomaly(
                    direction, ts, events, Reason.BAD_VALUE, "command fragments on two contexts"
                )
        else:
            c.data_set_fragments += 1
            if d.cmd:
                self._anomaly(
                    direction, ts, events, Reason.BAD_VALUE, "data set inside an unfinished command"
                )
                d.drop_command()

    def _end_pdv(
        self,
        d: _DirectionState,
        c: DirectionCounters,
        direction: Direction,
        ts: float,
        events: list[Event],
    ) -> None:
        if not d.pdv_last:
            return
        if not d.pdv_cmd:
            c.data_sets += 1
            return
        if d.cmd_overflow:
            self._anomaly(direction, ts, events, Reason.TOO_LARGE, "command set")
            d.drop_command()
            return
        try:
            command = parse_command(d.cmd)
        except DicomError as exc:
            self._anomaly(direction, ts, events, exc.reason, "command set")
            d.drop_command()
            return
        d.drop_command()
        self._on_command(direction, d.cmd_ctx, command, ts, events)

    def _on_command(
        self, direction: Direction, ctx: int, command: DimseCommand, ts: float, events: list[Event]
    ) -> None:
        st = self.state
        self._learn_requestor(direction, command)
        st.dimse[command.name] += 1
        status = command.status_class
        if command.is_response and status is not None:
            st.dimse_status[status.label] += 1
        sop = command.sop_class_uid
        if sop and len(st.sop_classes) < self.limits.max_sub_items:
            st.sop_classes.add(sop)
        dest = command.move_destination
        if (
            command.command_field == CommandField.C_MOVE_RQ
            and dest is not None
            and dest not in st.move_destinations
            and len(st.move_destinations) < self.limits.max_move_destinations
        ):
            st.move_destinations.append(dest)
        if command.is_response and (
            command.has_failure_details
            or status is StatusClass.FAILURE
            or status is StatusClass.WARNING
        ):
            st.failure_count += 1
            if len(st.failures) < self.limits.max_failures_kept:
                st.failures.append(command)
        events.append(DimseMessage(ts, direction, ctx, command))
        self._pdu_anomalies(direction, ts, events, command.anomalies, command.name)

    def _learn_requestor(self, direction: Direction, command: DimseCommand) -> None:
        """Mid-stream, tell the requestor from who sends which command."""
        if self.state.detected_by != DETECTED_BY_MIDSTREAM or self._requestor_strength == 2:
            return
        field_ = command.command_field
        store = field_ & 0x7FFF == CommandField.C_STORE_RQ
        # A C-STORE-RQ usually comes from the requestor, but a C-GET's acceptor sends them too.
        strength = 1 if store else 2
        if strength <= self._requestor_strength:
            return
        sender_is_requestor = not command.is_response
        self.state.requestor = direction if sender_is_requestor else direction.other
        self._requestor_strength = strength

    # -- framing trouble ------------------------------------------------------------

    def _lose_pdv_framing(
        self, d: _DirectionState, direction: Direction, ts: float, events: list[Event], detail: str
    ) -> None:
        self._anomaly(direction, ts, events, Reason.BAD_LENGTH, detail)
        d.drop_command()
        d.skip_left = d.pdu_left
        d.skip_pdata = True
        d.pdu_left = d.pdv_left = 0
        d.mode = _Mode.SKIP if d.skip_left else _Mode.BOUNDARY

    def _lose_sync(
        self,
        d: _DirectionState,
        direction: Direction,
        ts: float,
        events: list[Event],
        reason: Reason,
        detail: str,
    ) -> None:
        self._anomaly(direction, ts, events, reason, detail)
        self._anomaly(direction, ts, events, Reason.LOST_SYNC, "searching for a PDU boundary")
        d.drop_command()
        d.mode = _Mode.LOST

    def _resync(self, data: bytes | memoryview, pos: int, n: int) -> int:
        """Index of the first verifiable PDU start in ``data[pos:n]``, else -1.

        A P-DATA-TF candidate is verified by its PDV header (and, with byte 1 set, by the
        command set's first element); a candidate too close to the end to verify is
        returned so the caller waits for more bytes. Whatever the chunking, the first
        candidate that verifies is the one taken: nothing later is accepted while an
        earlier start cannot be decided yet.
        """
        buf = data if isinstance(data, bytes) else bytes(data)
        best = -1
        for pattern in _RESYNC_PATTERNS:
            start = pos
            while True:
                i = buf.find(pattern, start, n)
                if i < 0 or (best >= 0 and i >= best):
                    break
                if n - i < _resync_need(buf, i, n):
                    best = i  # too close to the end to verify: wait for more bytes
                    break
                if pattern[0] == PDUType.P_DATA_TF:
                    ok = self._plausible_pdata(buf, i)
                else:
                    ok = buf[i + 6 : i + 8] == b"\x00\x00"
                if ok:
                    best = i
                    break
                start = i + 1
        # Starts with byte 1 set: a P-DATA-TF command start, found by its first command
        # element 12 bytes in; a release or abort, found by its length 2 bytes in (verified,
        # or too close to the end to verify).
        best = _first_start(buf, _COMMAND_START, 12, pos, n, best, self._reserved_command)
        best = _first_start(buf, _RELEASE_LENGTH, 2, pos, n, best, _reserved_short)
        # A command start with byte 1 set whose first element is not all here yet: it
        # cannot be decided, so nothing after it may be taken before it is.
        limit = n if best < 0 else best
        for i in range(max(pos, n - _RESYNC_TAIL), limit):
            if buf[i] != PDUType.P_DATA_TF or (i + 1 < n and buf[i + 1] == 0):
                continue
            tail = buf[i + 12 : n]
            if _COMMAND_START.startswith(tail):
                return i
        return best

    def _reserved_command(self, buf: bytes, i: int, n: int) -> bool:
        """A P-DATA-TF with byte 1 set whose first PDV is a command fragment (see _resync)."""
        command = buf[i] == PDUType.P_DATA_TF and buf[i + 1] and buf[i + 11] & 1
        return bool(command) and self._plausible_pdata(buf, i)

    def _plausible_pdata(self, buf: bytes, i: int) -> bool:
        _, length = PDU_HEADER.unpack_from(buf, i)
        if not 6 <= length <= self.limits.max_pdata_pdu:
            return False
        # The control header is not tested: a receiver ignores its bits 2-7 (PS3.8 E.2).
        pdv_len, ctx, _ = PDV_HEADER.unpack_from(buf, i + 6)
        if pdv_len < 2 or pdv_len + 4 > length or ctx & 1 == 0:
            return False
        accepted = self._accepted_contexts
        return accepted is None or ctx in accepted

    def _pdu_anomalies(
        self,
        direction: Direction,
        ts: float,
        events: list[Event],
        reasons: tuple[Reason, ...],
        what: str,
    ) -> None:
        for reason in reasons:
            self._anomaly(direction, ts, events, reason, what)

    def _anomaly(
        self, direction: Direction, ts: float, events: list[Event], reason: Reason, detail: str
    ) -> None:
        self.state.anomalies[reason.value] += 1
        if self._anomaly_events < MAX_ANOMALY_EVENTS:
            self._anomaly_events += 1
            events.append(Anomaly(ts, direction, reason, detail))
