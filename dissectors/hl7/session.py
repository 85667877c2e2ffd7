"""Passive HL7 v2 over MLLP session, fed one direction's bytes at a time.

MLLP (HL7 v2.x Implementation Guide, Transport Specification: MLLP release 2) frames each
message as ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D); the message is segments, each
ended by ``<CR>``. The session reads the MSH segment (and the first MSA, for
acknowledgments) of every frame and skips every other segment without keeping a byte.
"""

from __future__ import annotations

import re
from collections import Counter
from enum import IntEnum
from typing import Any

from ..base import CloseReason, Direction
from .constants import CARRIAGE_RETURN, END_BLOCK, LINE_FEED, START_BLOCK
from .errors import HL7Error, Reason
from .events import Anomaly, Event, GapDetected, HL7Message
from .header import Acknowledgment, MessageHeader, parse_msa, parse_msh
from .limits import DEFAULT_LIMITS, Limits
from .probe import DETECTED_BY, frame_start

_SEGMENT_END = re.compile(rb"[\r\n\x0b\x1c]")  # a segment ends at CR (or LF), or its frame does
_FRAME_END = re.compile(rb"[\x0b\x1c]")
_START = re.compile(rb"\x0b")
_BREAKS = frozenset((CARRIAGE_RETURN, LINE_FEED, START_BLOCK, END_BLOCK))
_OTHER_KIND = "other"


class _Mode(IntEnum):
    OUTSIDE = 0  # between frames: the next byte must be a start block
    LOST = 1  # framing lost: searching for a start block followed by an MSH header
    SEGMENT = 2  # inside a frame, at the start of a segment (or at its end block)
    KEEP = 3  # inside MSH or the first MSA: kept (capped) until the segment ends
    SKIP = 4  # inside any other segment: skipped, never kept
    SKIP_FRAME = 5  # nothing more to read in this frame: skipped to its end
    END = 6  # after the end block: a carriage return should follow


_IN_FRAME = frozenset((_Mode.SEGMENT, _Mode.KEEP, _Mode.SKIP, _Mode.SKIP_FRAME))


class _DirectionState:
    """Framing state of one direction; holds at most one MSH or MSA segment's bytes."""

    __slots__ = ("ack", "frame_len", "frame_ts", "header", "keep", "keep_msh", "mode",
                 "msa_done", "oversize", "segments")  # fmt: skip

    def __init__(self) -> None:
        self.keep = bytearray()
        self.reset(_Mode.OUTSIDE)

    def reset(self, mode: _Mode, ts: float = 0.0) -> None:
        """Forget any frame in progress and continue in ``mode``."""
        self.mode = mode
        self.frame_ts = ts
        self.frame_len = 0
        self.segments = 0
        self.header: MessageHeader | None = None
        self.ack: Acknowledgment | None = None
        self.msa_done = False
        self.keep_msh = False
        self.oversize = False
        self.keep.clear()

    def start(self, ts: float) -> None:
        """Begin a frame whose start block arrived at ``ts``."""
        self.reset(_Mode.SEGMENT, ts)


class HL7Session:
    """One TCP connection's HL7 v2 messages over MLLP, decoded passively.

    ``feed`` takes one direction's next bytes and returns how many it consumed and the
    events they completed; the caller keeps the rest and passes it again with more.
    Any split of the byte stream gives the same events; no input raises.
    """

    def __init__(self, detected_by: str = DETECTED_BY, limits: Limits = DEFAULT_LIMITS) -> None:
        self.detected_by = detected_by
        self.limits = limits
        self._dirs = (_DirectionState(), _DirectionState())
        self._closed = False
        self._anomaly_events = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.messages: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.control_ids: list[str] = []
        self.versions: list[str] = []
        self.processing_ids: list[str] = []
        self.bytes = [0, 0]
        self.missing_bytes = [0, 0]
        self.first_request: HL7Message | None = None
        self.first_response: HL7Message | None = None

    def __repr__(self) -> str:
        return (
            f"HL7Session(detected_by={self.detected_by!r}, messages={dict(self.messages)!r}, "
            f"acks={dict(self.acks)!r}, anomalies={dict(self.anomalies)!r})"
        )

    # -- the seam -------------------------------------------------------------------

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Event]]:
        """Consume a prefix of ``data`` from ``direction``; return its length and the events."""
        events: list[Event] = []
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        d = self._dirs[direction]
        n = len(data)
        pos = 0
        while pos < n:
            mode = d.mode
            if mode is _Mode.OUTSIDE:
                if data[pos] == START_BLOCK:
                    d.start(ts)
                    pos += 1
                else:
                    self._anomaly(direction, ts, events, Reason.BAD_FRAME, "data outside a frame")
                    d.mode = _Mode.LOST
            elif mode is _Mode.LOST:
                m = _START.search(data, pos)
                if m is None:
                    pos = n
                    break
                pos = m.start()
                found = frame_start(data, pos)
                if found is None:
                    break  # the caller passes these bytes again with more
                pos += 1
                if found:
                    d.start(ts)
            elif mode is _Mode.SEGMENT:
                byte = data[pos]
                if byte in (CARRIAGE_RETURN, LINE_FEED):
                    pos += 1
                    self._count(d, 1, direction, ts, events)
                elif byte == END_BLOCK:
                    pos += 1
                    d.mode = _Mode.END
                elif byte == START_BLOCK:
                    self._anomaly(
                        direction, ts, events, Reason.BAD_FRAME, "start block inside a frame"
                    )
                    d.start(ts)
                    pos += 1
                elif d.oversize or (d.segments > 0 and (d.header is None or d.msa_done)):
                    d.mode = _Mode.SKIP_FRAME
                else:
                    window = bytes(data[pos : pos + 4])
                    if len(window) < 4 and not _BREAKS.intersection(window):
                        break  # segment id not complete yet
                    self._classify(d, window, direction, ts, events)
            elif mode is _Mode.END:
                self._finish(d, direction, events)
                if data[pos] == CARRIAGE_RETURN:
                    pos += 1
                    d.mode = _Mode.OUTSIDE
                else:
                    self._anomaly(
                        direction, ts, events, Reason.BAD_FRAME, "end block without carriage return"
                    )
                    d.mode = _Mode.LOST  # what follows is suspect: wait for a verified start
            else:
                m = (_FRAME_END if mode is _Mode.SKIP_FRAME else _SEGMENT_END).search(data, pos)
                end = n if m is None else m.start()
                if mode is _Mode.KEEP:
                    cap = self.limits.max_msh_bytes if d.keep_msh else self.limits.max_msa_bytes
                    room = cap - len(d.keep)
                    if room > 0:
                        d.keep += data[pos : min(end, pos + room)]
                crossed = self._count(d, end - pos, direction, ts, events)
                pos = end
                if crossed:
                    d.keep.clear()
                    d.mode = _Mode.SKIP_FRAME
                    continue
                if m is None:
                    break
                if mode is _Mode.KEEP:
                    self._parse_kept(d, direction, ts, events)
                d.mode = _Mode.SEGMENT
        self.bytes[direction] += pos
        return pos, events

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Event]:
        """Account for lost bytes: a frame they cut is dropped; resynchronise at the next MSH."""
        events: list[Event] = []
        d = self._dirs[direction]
        if d.mode is _Mode.END:
            self._finish(d, direction, events)
        lost = d.mode in _IN_FRAME
        if missing is not None:
            self.missing_bytes[direction] += missing
        d.reset(_Mode.LOST)
        self.anomalies[Reason.GAP.value] += 1
        if self._anomaly_events < self.limits.max_anomaly_events:
            self._anomaly_events += 1
            events.append(GapDetected(ts, direction, missing, lost))
        return events

    def close(self, reason: CloseReason, ts: float) -> list[Event]:
        """End the session: a frame still open in either direction was truncated."""
        if self._closed:
            return []
        self._closed = True
        events: list[Event] = []
        for direction in (Direction.ORIGIN, Direction.PEER):
            d = self._dirs[direction]
            if d.mode is _Mode.END:
                self._finish(d, direction, events)
            elif d.mode in _IN_FRAME and not reason.by_sensor:
                self._anomaly(
                    direction, ts, events, Reason.TRUNCATED, "connection ended inside a frame"
                )
            d.reset(_Mode.OUTSIDE)
        return events

    # -- Summarized -----------------------------------------------------------------

    def originator(self) -> Direction | None:
        """The side that sent the first message that is not an acknowledgment (the client)."""
        if self.first_request is not None:
            return self.first_request.direction
        if self.first_response is not None:
            return self.first_response.direction.other
        return None

    def summary(self) -> dict[str, Any]:
        """Counts and routing facts for the connection's record: no PHI, bounded sizes."""
        client = self.originator()
        if client is None:
            client = Direction.ORIGIN
        apps: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
        if self.first_request is not None:
            r = self.first_request
            apps = (r.sending_application, r.sending_facility,
                    r.receiving_application, r.receiving_facility)  # fmt: skip
        elif self.first_response is not None:
            # Only responses seen: they travel server to client, so their routing is swapped.
            r = self.first_response
            apps = (r.receiving_application, r.receiving_facility,
                    r.sending_application, r.sending_facility)  # fmt: skip
        return {
            "hl7": {
                "detected_by": self.detected_by,
                "messages": dict(self.messages),
                "acks": dict(self.acks),
                "sending_application": apps[0],
                "sending_facility": apps[1],
                "receiving_application": apps[2],
                "receiving_facility": apps[3],
                "control_ids": list(self.control_ids),
                "versions": list(self.versions),
                "processing_ids": list(self.processing_ids),
                "anomalies": dict(self.anomalies),
                "bytes": {"client": self.bytes[client], "server": self.bytes[client.other]},
                "missing_bytes": {
                    "client": self.missing_bytes[client],
                    "server": self.missing_bytes[client.other],
                },
            }
        }

    # -- frames and segments --------------------------------------------------------

    def _classify(
        self,
        d: _DirectionState,
        window: bytes,
        direction: Direction,
        ts: float,
        events: list[Event],
    ) -> None:
        """Decide what to do with the segment starting with ``window`` (up to 4 bytes)."""
        first = d.segments == 0
        d.segments += 1
        if first:
            if window[:3] == b"MSH":
                d.mode = _Mode.KEEP
                d.keep_msh = True
            else:
                self._anomaly(
                    direction,
                    ts,
                    events,
                    Reason.BAD_MSH,
                    "frame does not start with an MSH segment",
                )
                d.mode = _Mode.SKIP_FRAME
        elif (
            d.header is not None
            and len(window) == 4
            and window[:3] == b"MSA"
            and window[3] == ord(d.header.field_separator)
        ):
            d.mode = _Mode.KEEP
            d.keep_msh = False
        else:
            d.mode = _Mode.SKIP

    def _parse_kept(
        self, d: _DirectionState, direction: Direction, ts: float, events: list[Event]
    ) -> None:
        """Decode the MSH or MSA segment just kept, then forget its bytes."""
        segment = bytes(d.keep)
        d.keep.clear()
        try:
            if d.keep_msh:
                d.header = parse_msh(segment, self.limits)
            elif d.header is not None:
                d.msa_done = True
                sep = ord(d.header.field_separator)
                comp = ord(d.header.encoding_characters[0])
                d.ack = parse_msa(segment, sep, comp, self.limits)
        except HL7Error as exc:
            self._anomaly(direction, ts, events, exc.reason, exc.detail)

    def _count(
        self, d: _DirectionState, k: int, direction: Direction, ts: float, events: list[Event]
    ) -> bool:
        """Add ``k`` bytes to the frame; True when that just passed the per-message cap."""
        d.frame_len += k
        if not d.oversize and d.frame_len > self.limits.max_message_bytes:
            d.oversize = True
            self._anomaly(direction, ts, events, Reason.TOO_LARGE, "message longer than the cap")
            return True
        return False

    def _finish(self, d: _DirectionState, direction: Direction, events: list[Event]) -> None:
        """The end block arrived: report the message if its MSH was decoded."""
        h = d.header
        if h is None:
            if d.segments == 0:
                self._anomaly(direction, d.frame_ts, events, Reason.BAD_FRAME, "empty frame")
            return
        ack = d.ack
        message = HL7Message(
            ts=d.frame_ts,
            direction=direction,
            message_type=h.message_type,
            trigger_event=h.trigger_event,
            message_structure=h.message_structure,
            message_control_id=h.message_control_id,
            processing_id=h.processing_id,
            version_id=h.version_id,
            sending_application=h.sending_application,
            sending_facility=h.sending_facility,
            receiving_application=h.receiving_application,
            receiving_facility=h.receiving_facility,
            ack_code=None if ack is None else ack.ack_code,
            acknowledged_control_id=None if ack is None else ack.acknowledged_control_id,
            length=d.frame_len,
        )
        d.header = None
        d.ack = None
        events.append(message)
        self._tally(message)

    def _tally(self, message: HL7Message) -> None:
        """Fold a message into the bounded summary."""
        lim = self.limits
        kind = message.kind[:32]
        if kind in self.messages or len(self.messages) < lim.max_message_kinds:
            self.messages[kind] += 1
        else:
            self.messages[_OTHER_KIND] += 1
        if message.ack_code is not None:
            self.acks[message.ack_code.value] += 1
        if message.is_acknowledgment:
            if self.first_response is None:
                self.first_response = message
        else:
            if self.first_request is None:
                self.first_request = message
            if len(self.control_ids) < lim.max_control_ids:
                self.control_ids.append(message.message_control_id)
        for value, seen in ((message.version_id, self.versions),
                            (message.processing_id, self.processing_ids)):  # fmt: skip
            if value and value not in seen and len(seen) < lim.max_versions:
                seen.append(value[:16])

    def _anomaly(
        self,
        direction: Direction,
        ts: float,
        events: list[Event],
        reason: Reason,
        detail: str,
    ) -> None:
        self.anomalies[reason.value] += 1
        if self._anomaly_events < self.limits.max_anomaly_events:
            self._anomaly_events += 1
            events.append(Anomaly(ts, direction, reason, detail))
