"""``--alert-pcap DIR``: the packets of every association that raised an alert, redacted.

One pcap per association, named by its start time and Community ID, in the capture's
own link type, from its first packet (the TCP handshake) to its end. What could identify
a patient or open a door stays in the process:

- DICOM: each P-DATA-TF keeps its PDU and PDV headers and its command sets; data set
  bytes are cut. A packet whose tail is data set is truncated after the last header or
  command byte (the pcap record keeps the original length, so readers see a snaplen
  cut); data set bytes between kept bytes in one packet are zeroed, so the PDUs after
  them still frame. The user identity passcode, Kerberos ticket, SAML assertion or JWT
  in an A-ASSOCIATE-RQ, and the server response in an A-ASSOCIATE-AC, are overwritten
  with zeros of the same length; the rest of the A-ASSOCIATE PDUs is kept.
- HL7 over MLLP: each message keeps its start block and MSH segment and its end block;
  everything after the MSH segment is cut.
- Bytes the redactor cannot place (after a lost segment, after framing it cannot
  follow) are cut too.

Bounds: files, bytes per association (the head of the association is kept first) and
total bytes; each bite is counted by bound in ``dicom_sensor_alert_pcap_limited_total``.
"""

from __future__ import annotations

import bisect
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..capture.decode import TH_ACK, TH_SYN, Segment
from ..timefmt import iso

PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
PCAP_MAGIC = 0xA1B2C3D4
PCAP_SNAPLEN = 262144
_TCP_PORTS_SEQ_ACK = struct.Struct("!HHII")
_PDU_HEADER = struct.Struct("!BxI")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ELEMENT = struct.Struct("<HHI")  # a command element header: group 0000 is implicit VR LE
# Command elements whose value is free text that may name a patient: zeroed, length kept.
_FREE_TEXT = frozenset({(0x0000, 0x0902)})  # Error Comment
_SEQ_MOD = 1 << 32
# User information sub-items that hold no secret (PS3.7 D.3.3): max length, implementation
# class UID and version, asynchronous operations, role selection, extended negotiation.
_PLAIN_SUB_ITEMS = frozenset({0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57})
MAX_ASSOCIATE_BYTES = 64 * 1024  # an A-ASSOCIATE PDU longer than this is cut, not parsed
LINGER = 30.0  # the TCP teardown after the association's last packet, unless a new SYN
INDEX = "index.jsonl"


class Bound:
    """Which bound bit; the values are the metric's closed label set."""

    FILES = "files"
    ASSOCIATION_BYTES = "association-bytes"
    TOTAL_BYTES = "total-bytes"
    # Live and standard input only: what the buffers of associations not (yet) alerting
    # may hold in memory, and how many ended associations wait for a late decision.
    BUFFER_BYTES = "buffer-bytes"
    HELD = "held-associations"
    # Packets of a connection still being probed beyond the first PROBE_PACKETS (a head
    # cut into tiny segments): left out of its pcap's head.
    PROBE_PACKETS = "probe-packets"
    ALL = (FILES, ASSOCIATION_BYTES, TOTAL_BYTES, BUFFER_BYTES, HELD, PROBE_PACKETS)


@dataclass(frozen=True, slots=True)
class AlertPcapLimits:
    """How much ``--alert-pcap`` may write."""

    max_files: int = 1000
    max_association_bytes: int = 4 << 20
    max_total_bytes: int = 256 << 20
    # Live and standard input: packets are kept in memory until their association alerts.
    max_buffer_bytes: int = 32 << 20
    max_held: int = 1024  # ended associations kept for a late decision (a C-MOVE's) or verdict


@dataclass(slots=True)
class AlertPcapStats:
    """What ``--alert-pcap`` wrote and where a bound bit (label: a :class:`Bound` value)."""

    files: int = 0
    packets: int = 0
    bytes: int = 0
    limited: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class AlertTarget:
    """An association that raised an alert: its endpoints and the span of its packets."""

    protocol: str  # dicom or hl7
    requestor: tuple[str, int]
    acceptor: tuple[str, int]
    first_ts: float
    last_ts: float
    community_id: str
    rules: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        """File name: start time (UTC) and the Community ID in URL-safe base64."""
        when = datetime.fromtimestamp(self.first_ts, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        cid = self.community_id.split(":", 1)[-1].replace("+", "-").replace("/", "_")
        return f"{when}-{cid.rstrip('=')}.pcap"


# -- which bytes of a stream are kept ------------------------------------------------


class Spans:
    """Kept and zeroed byte ranges of one direction's stream, in stream offsets."""

    def __init__(self) -> None:
        self.keep_starts: list[int] = []
        self.keep_ends: list[int] = []
        self.zero: list[tuple[int, int]] = []

    def keep(self, start: int, end: int) -> None:
        """Mark [start, end) as kept (ranges come in increasing order)."""
        if end <= start:
            return
        if self.keep_ends and self.keep_ends[-1] == start:
            self.keep_ends[-1] = end
        else:
            self.keep_starts.append(start)
            self.keep_ends.append(end)

    def kept_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """The kept ranges inside [start, end), clipped."""
        i = bisect.bisect_right(self.keep_ends, start)
        out = []
        while i < len(self.keep_starts) and self.keep_starts[i] < end:
            out.append((max(start, self.keep_starts[i]), min(end, self.keep_ends[i])))
            i += 1
        return out


class DicomStream:
    """Follows one direction's DICOM PDUs and marks what may be written.

    Kept: PDU headers, PDV headers, command set fragments, A-ASSOCIATE PDUs (their user
    identity secrets zeroed), the other small PDUs. Cut: data set fragments, and
    everything after framing is lost.
    """

    def __init__(self) -> None:
        self.spans = Spans()
        self.parsed = 0  # the stream offset up to which bytes have been classified
        self.lost = False
        self._header = bytearray()  # a PDU or PDV header being gathered
        self._pdu_type = 0
        self._pdu_left = 0  # body bytes left in the current PDU
        self._pdv_left = 0  # value bytes left in the current PDV
        self._pdv_kept = False
        self._pdv_last = False
        self._keep_body = False  # the current A-ASSOCIATE/short PDU is within the cap, whole
        self._element = bytearray()  # a command element header being gathered
        self._element_left = 0  # value bytes left in the current command element
        self._element_zero = False
        self._associate = bytearray()  # an A-ASSOCIATE body being gathered
        self._associate_at = 0

    @property
    def pending(self) -> int | None:
        """Where an A-ASSOCIATE body still incomplete starts (its secrets are not yet known)."""
        return self._associate_at if self._associate else None

    def feed(self, data: bytes) -> None:
        """Classify the next bytes of the stream (in order)."""
        pos, n = 0, len(data)
        while pos < n and not self.lost:
            at = self.parsed + pos
            if self._pdu_left == 0:
                take = min(6 - len(self._header), n - pos)
                self._header += data[pos : pos + take]
                self.spans.keep(at, at + take)
                pos += take
                if len(self._header) == 6:
                    self._pdu_type, self._pdu_left = _PDU_HEADER.unpack(self._header)
                    self._header.clear()
                    self._pdv_left = 0
                    # Decided on the whole PDU, never on what is left of it: the tail of an
                    # oversize A-ASSOCIATE holds its user identity.
                    self._keep_body = self._pdu_left <= MAX_ASSOCIATE_BYTES
                    if not 1 <= self._pdu_type <= 7:
                        self.lost = True
                    elif self._pdu_type in (1, 2):
                        self._associate.clear()
                        self._associate_at = self.parsed + pos
                continue
            if self._pdu_type == 4:
                pos += self._pdata(data, pos, at)
            elif self._pdu_type in (1, 2):
                take = min(self._pdu_left, n - pos)
                if self._keep_body:
                    self._associate += data[pos : pos + take]
                    self.spans.keep(at, at + take)
                pos += take
                self._pdu_left -= take
                if self._pdu_left == 0 and self._associate:
                    self._mark_secrets()
            else:
                take = min(self._pdu_left, n - pos)
                if self._keep_body:
                    self.spans.keep(at, at + take)
                pos += take
                self._pdu_left -= take
        self.parsed += n

    def _pdata(self, data: bytes, pos: int, at: int) -> int:
        """Consume P-DATA-TF body bytes from ``pos``; how many were used."""
        n = len(data)
        if self._pdv_left == 0:
            if self._pdu_left < 6 and not self._header:
                # Not room for a PDV header: odd framing; the rest of the PDU is cut.
                take = min(self._pdu_left, n - pos)
                self._pdu_left -= take
                return take
            take = min(6 - len(self._header), n - pos, self._pdu_left)
            self._header += data[pos : pos + take]
            self.spans.keep(at, at + take)
            self._pdu_left -= take
            if len(self._header) == 6:
                (length,) = _U32.unpack_from(self._header)
                self._pdv_kept = bool(self._header[5] & 1)  # command set
                self._pdv_last = bool(self._header[5] & 2)
                self._header.clear()
                self._pdv_left = max(0, min(length - 2, self._pdu_left))
            return take
        take = min(self._pdv_left, n - pos)
        if self._pdv_kept:
            self._command(data, pos, take, at)
        self._pdv_left -= take
        self._pdu_left -= take
        if self._pdv_left == 0 and self._pdv_kept and self._pdv_last:
            self._element.clear()  # the command set ends: the next one starts afresh
            self._element_left = 0
        return take

    def _command(self, data: bytes, pos: int, take: int, at: int) -> None:
        """Keep command-set bytes, element by element, zeroing free-text values."""
        self.spans.keep(at, at + take)
        i = 0
        while i < take:
            if self._element_left == 0:
                got = min(8 - len(self._element), take - i)
                self._element += data[pos + i : pos + i + got]
                i += got
                if len(self._element) == 8:
                    group, element, length = _ELEMENT.unpack(self._element)
                    self._element.clear()
                    self._element_left = length
                    self._element_zero = (group, element) in _FREE_TEXT
                continue
            got = min(self._element_left, take - i)
            if self._element_zero:
                self.spans.zero.append((at + i, at + i + got))
            self._element_left -= got
            i += got

    def _mark_secrets(self) -> None:
        """Zero the user identity secret of a complete A-ASSOCIATE-RQ or -AC body."""
        body = bytes(self._associate)
        base = self._associate_at
        self._associate.clear()
        pos = 68  # protocol version, reserved, AE titles, reserved
        while pos + 4 <= len(body):
            item_type = body[pos]
            (length,) = _U16.unpack_from(body, pos + 2)
            end = min(len(body), pos + 4 + length)
            if item_type == 0x50:
                self._user_information(body, pos + 4, end, base)
            pos = end
        self._associate_at = 0

    def _user_information(self, body: bytes, pos: int, end: int, base: int) -> None:
        while pos + 4 <= end:
            sub_type = body[pos]
            (length,) = _U16.unpack_from(body, pos + 2)
            value, stop = pos + 4, min(end, pos + 4 + length)
            if sub_type == 0x58 and value + 4 <= stop:
                identity_type = body[value]
                (primary,) = _U16.unpack_from(body, value + 2)
                p_start = value + 4
                p_end = min(stop, p_start + primary)
                if identity_type not in (1, 2):  # Kerberos, SAML, JWT: the primary is a token
                    self.spans.zero.append((base + p_start, base + p_end))
                if p_end + 2 <= stop:
                    (secondary,) = _U16.unpack_from(body, p_end)
                    s_start = p_end + 2
                    self.spans.zero.append((base + s_start, base + min(stop, s_start + secondary)))
            elif sub_type == 0x59 and value + 2 <= stop:
                self.spans.zero.append((base + value + 2, base + stop))
            elif sub_type not in _PLAIN_SUB_ITEMS:
                # A sub-item no standard defines could hold anything: its value is zeroed.
                self.spans.zero.append((base + value, base + stop))
            pos = stop


class Hl7Stream:
    """Follows one direction's MLLP frames: start block, MSH segment and end block kept."""

    def __init__(self) -> None:
        self.spans = Spans()
        self.parsed = 0
        self.lost = False
        self._state = 0  # 0 between frames, 1 in the MSH segment, 2 after it, 3 after 0x1C

    @property
    def pending(self) -> int | None:
        """Nothing waits in HL7: every byte is decided when it is seen."""
        return None

    def feed(self, data: bytes) -> None:
        """Classify the next bytes of the stream (in order)."""
        pos, n, base = 0, len(data), self.parsed
        while pos < n:
            if self._state == 0:
                start = data.find(b"\x0b", pos)
                if start < 0:
                    break
                self.spans.keep(base + start, base + start + 1)
                pos, self._state = start + 1, 1
            elif self._state == 1:
                stops = [i for i in (data.find(b"\r", pos), data.find(b"\x1c", pos)) if i >= 0]
                if not stops:  # the MSH segment goes on in the next segment
                    self.spans.keep(base + pos, base + n)
                    break
                stop = min(stops)
                if data[stop] == 0x0D:
                    self.spans.keep(base + pos, base + stop + 1)
                    pos, self._state = stop + 1, 2
                else:
                    self.spans.keep(base + pos, base + stop)
                    pos, self._state = stop, 2
            elif self._state == 2:
                stop = data.find(b"\x1c", pos)
                if stop < 0:
                    break
                self.spans.keep(base + stop, base + stop + 1)
                pos, self._state = stop + 1, 3
            else:
                if data[pos] == 0x0D:
                    self.spans.keep(base + pos, base + pos + 1)
                    pos += 1
                self._state = 0
        self.parsed += n


# -- one association's packets -------------------------------------------------------


def payload_offset(frame: bytes, seg: Segment) -> int | None:
    """Where the TCP payload starts in the frame (found from the TCP header's first words)."""
    key = _TCP_PORTS_SEQ_ACK.pack(seg.sport, seg.dport, seg.seq, seg.ack)
    tcp_at = frame.find(key)
    if tcp_at < 0 or tcp_at + 13 > len(frame):
        return None
    return tcp_at + ((frame[tcp_at + 12] >> 4) << 2)


@dataclass(slots=True)
class _Side:
    stream: DicomStream | Hl7Stream
    base: int | None = None  # the sequence number of stream offset 0


@dataclass(slots=True)
class _Held:
    ts: float
    wire: int
    frame: bytearray
    side: int
    payload_at: int
    start: int  # stream offset of the first payload byte (-1: no payload kept)


class AssociationPcap:
    """Collects and redacts one alerting association's packets."""

    def __init__(
        self, target: AlertTarget, linktype: int, side0: tuple[str, int] | None = None
    ) -> None:
        self.target = target
        self.linktype = linktype
        # The endpoint whose packets are side 0 (live: the first sender, before anyone knows
        # who requested; the target may be named later).
        self.side0 = side0 if side0 is not None else target.requestor
        make = DicomStream if target.protocol == "dicom" else Hl7Stream
        self.sides = (_Side(make()), _Side(make()))
        self.held: list[_Held] = []
        self.bytes = 0
        self.full = False
        self.closed = False  # a new connection on the same ports began
        self.syn_seen = [False, False]

    def add(self, seg: Segment, frame: bytes, wire: int) -> int:
        """Take one packet (redacted at once); the bytes it will add to the file."""
        side_index = 0 if (seg.src, seg.sport) == self.side0 else 1
        side = self.sides[side_index]
        if seg.flags & TH_SYN:
            side.base = (seg.seq + 1) % _SEQ_MOD
        payload_at = payload_offset(frame, seg)
        payload = seg.payload
        if payload_at is None:
            payload_at = len(frame) - len(payload)
        if not payload:
            kept = bytearray(frame[:payload_at])
            record = _Held(seg.ts, wire, kept, side_index, payload_at, -1)
        else:
            if side.base is None:
                side.base = seg.seq
            start = (seg.seq - side.base) % _SEQ_MOD
            if start >= 1 << 31:
                start = -1  # before the stream's first byte: cut
            stream = side.stream
            if start >= 0 and start <= stream.parsed < start + len(payload):
                stream.feed(payload[stream.parsed - start :])
            record = self._redact(frame, payload_at, payload, start, stream)
            record.side = side_index
        record.ts, record.wire = seg.ts, wire
        self.held.append(record)
        size = PCAP_RECORD.size + len(record.frame)
        self.bytes += size
        return size

    @staticmethod
    def _redact(
        frame: bytes, payload_at: int, payload: bytes, start: int, stream: DicomStream | Hl7Stream
    ) -> _Held:
        """The frame up to its last kept payload byte, the cut bytes before it zeroed."""
        if start < 0:
            return _Held(0.0, 0, bytearray(frame[:payload_at]), 0, payload_at, -1)
        end = min(start + len(payload), stream.parsed)
        kept = stream.spans.kept_in(start, end)
        if not kept:
            return _Held(0.0, 0, bytearray(frame[:payload_at]), 0, payload_at, -1)
        last = kept[-1][1]
        out = bytearray(frame[: payload_at + (last - start)])
        cursor = start
        for a, b in kept:
            if a > cursor:
                out[payload_at + cursor - start : payload_at + a - start] = bytes(a - cursor)
            cursor = b
        return _Held(0.0, 0, out, 0, payload_at, start)

    def records(self) -> Iterable[bytes]:
        """The pcap records, secrets zeroed (they are known once their PDU was complete)."""
        for held in self.held:
            yield self._record(held)

    def settled(self) -> int:
        """How many held packets, from the first, can be written now.

        A packet inside an A-ASSOCIATE PDU still incomplete waits: its secrets are not
        placed yet (at the end, :meth:`records` zeroes such bytes whole).
        """
        n = 0
        for held in self.held:
            if held.start >= 0:
                pending = self.sides[held.side].stream.pending
                if pending is not None and held.start + len(held.frame) - held.payload_at > pending:
                    break
            n += 1
        return n

    def take(self, n: int) -> list[bytes]:
        """The first ``n`` held packets as pcap records, no longer held."""
        out = [self._record(held) for held in self.held[:n]]
        del self.held[:n]
        return out

    def _record(self, held: _Held) -> bytes:
        """One held packet as a pcap record, secrets and unplaceable bytes zeroed."""
        frame = held.frame
        if held.start >= 0:
            stream = self.sides[held.side].stream
            stop = held.start + len(frame) - held.payload_at
            for a, b in stream.spans.zero:
                lo, hi = max(a, held.start), min(b, stop)
                if lo < hi:
                    at = held.payload_at + lo - held.start
                    frame[at : at + hi - lo] = bytes(hi - lo)
            pending = stream.pending
            if pending is not None:
                # An A-ASSOCIATE PDU never completed: its bytes cannot be checked.
                lo = max(pending, held.start)
                if lo < stop:
                    at = held.payload_at + lo - held.start
                    frame[at:] = bytes(len(frame) - at)
        sec = int(held.ts)
        usec = min(999_999, round((held.ts - sec) * 1e6))
        header = PCAP_RECORD.pack(sec, usec, len(frame), max(held.wire, len(frame)))
        return header + bytes(frame)


def pcap_header(linktype: int) -> bytes:
    """A classic little-endian, microsecond pcap file header."""
    return PCAP_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, PCAP_SNAPLEN, linktype)


# -- the whole job -------------------------------------------------------------------


class AlertPcaps:
    """Finds the alerting associations' packets in a further pass and writes their pcaps."""

    def __init__(self, directory: str, limits: AlertPcapLimits | None = None) -> None:
        self.directory = Path(directory)
        self.limits = limits if limits is not None else AlertPcapLimits()
        self.stats = AlertPcapStats()
        self.targets: list[AlertTarget] = []
        self._open: dict[tuple[str, int, str, int], list[int]] = {}
        self._pcaps: dict[int, AssociationPcap] = {}

    def add_target(self, target: AlertTarget) -> None:
        """An association that raised an alert (beyond the file bound, counted and left)."""
        if len(self.targets) >= self.limits.max_files:
            self.stats.limited[Bound.FILES] += 1
            return
        index = len(self.targets)
        self.targets.append(target)
        (a, p), (b, q) = target.requestor, target.acceptor
        self._open.setdefault((a, p, b, q), []).append(index)
        self._open.setdefault((b, q, a, p), []).append(index)

    def __bool__(self) -> bool:
        return bool(self.targets)

    def feed(
        self, packets: Iterable[tuple[float, bytes, int]], decode: Callable[[float, bytes], Any],
        linktype: int,
    ) -> None:  # fmt: skip
        """One pass over a capture: keep the packets of the targets."""
        lookup = self._open
        limits, stats = self.limits, self.stats
        for ts, data, wire in packets:
            seg = decode(ts, data)
            if seg.__class__ is not Segment:
                continue
            indexes = lookup.get((seg.src, seg.sport, seg.dst, seg.dport))
            if indexes is None:
                continue
            for index in indexes:
                target = self.targets[index]
                if ts < target.first_ts or ts > target.last_ts + LINGER:
                    continue
                pcap = self._pcaps.get(index)
                if pcap is None:
                    pcap = self._pcaps[index] = AssociationPcap(target, linktype)
                if pcap.full or pcap.closed or linktype != pcap.linktype:
                    continue
                if ts > target.last_ts and seg.flags & TH_SYN and not seg.flags & TH_ACK:
                    pcap.closed = True  # the ports were reused by a new connection
                    continue
                if pcap.bytes >= limits.max_association_bytes:
                    pcap.full = True
                    stats.limited[Bound.ASSOCIATION_BYTES] += 1
                    continue
                if stats.bytes >= limits.max_total_bytes:
                    pcap.full = True
                    stats.limited[Bound.TOTAL_BYTES] += 1
                    continue
                stats.bytes += pcap.add(seg, data, wire)
                stats.packets += 1

    def write(self) -> list[dict[str, Any]]:
        """Write the pcaps and ``index.jsonl``; the index entries."""
        self.directory.mkdir(parents=True, exist_ok=True)
        entries = []
        for index, target in enumerate(self.targets):
            pcap = self._pcaps.get(index)
            if pcap is None or not pcap.held:
                continue
            path = self.directory / target.name
            with path.open("wb") as fh:
                fh.write(pcap_header(pcap.linktype))
                for record in pcap.records():
                    fh.write(record)
            self.stats.files += 1
            self.stats.bytes += PCAP_HEADER.size
            entries.append(
                index_entry(target, target.first_ts, target.last_ts, target.rules,
                            len(pcap.held), pcap.full)
            )  # fmt: skip
        with (self.directory / INDEX).open("w", encoding="utf-8") as fh:
            for entry in entries:
                fh.write(json.dumps(entry) + "\n")
        return entries


def index_entry(
    target: Any, first_ts: float, end_ts: float, rules: Iterable[str], packets: int,
    truncated: bool,
) -> dict[str, Any]:  # fmt: skip
    """One line of ``index.jsonl`` for an alert pcap (offline and live alike)."""
    return {
        "file": target.name,
        "community_id": target.community_id,
        "protocol": target.protocol,
        "start": iso(first_ts),
        "end": iso(end_ts),
        "source": {"ip": target.requestor[0], "port": target.requestor[1]},
        "destination": {"ip": target.acceptor[0], "port": target.acceptor[1]},
        "rules": sorted(rules),
        "packets": packets,
        "truncated": truncated,
    }
