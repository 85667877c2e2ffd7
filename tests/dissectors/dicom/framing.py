"""Test helpers: PDU/PDV framing around real vectors, the feed contract, sample streams.

Framing helpers only put length headers around bytes whose decoding the tests state
explicitly; they are never used as the oracle of a test.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

from dissectors.base import CloseReason, Direction
from dissectors.dicom import DicomSession

from . import vectors as v

ORIGIN = Direction.ORIGIN
PEER = Direction.PEER

Segment = tuple[Direction, bytes]

# PS3.8 message control header values.
DATA = 0x00
DATA_LAST = 0x02
COMMAND = 0x01
COMMAND_LAST = 0x03


def pdv(context_id: int, control: int, fragment: bytes) -> bytes:
    """A PDV item: length (4, BE, counts what follows), context id, control, fragment."""
    return struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment


def pdata(*pdvs: bytes) -> bytes:
    """A P-DATA-TF PDU holding the given PDV items."""
    body = b"".join(pdvs)
    return struct.pack(">BxI", 0x04, len(body)) + body


def item(item_type: int, value: bytes) -> bytes:
    """An item or sub-item: type, reserved, length (2, BE), value."""
    return struct.pack(">BxH", item_type, len(value)) + value


def associate(pdu_type: int, *items: bytes) -> bytes:
    """An RQ (1) or AC (2) with DCMTK's fixed part and the given items."""
    body = v.ASSOCIATE_FIXED + b"".join(items)
    return struct.pack(">BxI", pdu_type, len(body)) + body


def user_info(*sub_items: bytes) -> bytes:
    """A 0x50 user information item holding the given sub-items."""
    return item(0x50, b"".join(sub_items))


EXPLICIT_LE = b"1.2.840.10008.1.2.1"


def associate_as(pdu_type: int, called: str, calling: str, *items: bytes) -> bytes:
    """An RQ (1) or AC (2): version 1, the AE titles space padded, reserved zeros, the items."""
    fixed = struct.pack(">HH16s16s32x", 1, 0, called.ljust(16).encode(), calling.ljust(16).encode())
    body = fixed + b"".join(items)
    return struct.pack(">BxI", pdu_type, len(body)) + body


def context_rq(context_id: int, abstract: bytes, *transfers: bytes) -> bytes:
    """A 0x20 item: id, three reserved zeros, one 0x30 then 0x40 sub-items, UIDs as given."""
    subs = item(0x30, abstract) + b"".join(item(0x40, t) for t in transfers)
    return item(0x20, bytes((context_id, 0, 0, 0)) + subs)


def context_ac(context_id: int, result: int, transfer: bytes) -> bytes:
    """A 0x21 item: id, reserved, result, reserved, one 0x40 sub-item."""
    return item(0x21, bytes((context_id, 0, result, 0)) + item(0x40, transfer))


def storage_contexts_rq() -> list[bytes]:
    """The 128 0x20 items of pynetdicom's storage SCU proposal (``v.STORAGE_SOP_CLASSES``)."""
    transfers = [t.encode() for t in v.STORAGE_TRANSFER_SYNTAXES]
    return [
        context_rq(2 * i + 1, sop.encode(), *transfers)
        for i, sop in enumerate(v.STORAGE_SOP_CLASSES)
    ]


def storage_contexts_ac() -> list[bytes]:
    """An answer to it: every fourth context (ids 7, 15, ..) result 3 with an empty 0x40
    sub-item, the others accepted with Explicit VR Little Endian."""
    return [
        context_ac(2 * i + 1, 3, b"") if i % 4 == 3 else context_ac(2 * i + 1, 0, EXPLICIT_LE)
        for i in range(len(v.STORAGE_SOP_CLASSES))
    ]


def storage_rq(contexts: Sequence[bytes] | None = None) -> bytes:
    """STORESCU -> ANY-SCP: application context, the contexts (the 128 by default), 0x50."""
    items = storage_contexts_rq() if contexts is None else contexts
    return associate_as(1, "ANY-SCP", "STORESCU", v.ITEM_10, *items, v.ITEM_50_PYNETDICOM)


def storage_ac(contexts: Sequence[bytes] | None = None) -> bytes:
    """The AC to ``storage_rq``: the same AE titles, the 128 answers by default, 0x50."""
    items = storage_contexts_ac() if contexts is None else contexts
    return associate_as(2, "ANY-SCP", "STORESCU", v.ITEM_10, *items, v.ITEM_50_PYNETDICOM)


class Feeder:
    """The stream layer's side of the feed contract: keep ``data[consumed:]``, pass it again."""

    def __init__(self, session: DicomSession) -> None:
        self.session = session
        self.pending: dict[Direction, bytes] = {ORIGIN: b"", PEER: b""}
        self.events: list[Any] = []

    def feed(self, direction: Direction, chunk: bytes, ts: float = 1.0) -> list[Any]:
        """Feed ``chunk`` after what ``direction`` left unconsumed; return the new events."""
        data = self.pending[direction] + chunk
        consumed, events = self.session.feed(direction, data, ts)
        if not 0 <= consumed <= len(data):
            raise AssertionError(f"consumed {consumed} of {len(data)}")
        self.pending[direction] = data[consumed:]
        self.events.extend(events)
        return events

    def gap(self, direction: Direction, missing: int | None, ts: float = 1.0) -> list[Any]:
        """Report lost bytes; what was left unconsumed before the hole is dropped."""
        self.pending[direction] = b""
        events = self.session.gap(direction, missing, ts)
        self.events.extend(events)
        return events

    def close(self, reason: CloseReason, ts: float = 1.0) -> list[Any]:
        """End the session as the engine does: tell it what is held unconsumed, then close."""
        for direction, held in self.pending.items():
            self.session.unconsumed(direction, len(held))
        events = self.session.close(reason, ts)
        self.events.extend(events)
        return events

    def run(self, segments: Iterable[Segment], ts: float = 1.0) -> list[Any]:
        """Feed segments in order; return the events they produced."""
        out: list[Any] = []
        for direction, chunk in segments:
            out.extend(self.feed(direction, chunk, ts))
        return out


def feed_all(session: DicomSession, segments: Iterable[Segment], ts: float = 1.0) -> list[Any]:
    """Feed ``segments`` to ``session`` through a fresh Feeder; return all events."""
    return Feeder(session).run(segments, ts)


def runs(segments: Sequence[Segment]) -> list[Segment]:
    """Join consecutive segments of the same direction (what one direction sent in a row)."""
    out: list[Segment] = []
    for direction, chunk in segments:
        if out and out[-1][0] == direction:
            out[-1] = (direction, out[-1][1] + chunk)
        else:
            out.append((direction, chunk))
    return out


def split(segments: Sequence[Segment], cuts: Sequence[int]) -> list[Segment]:
    """Split each same-direction run at the given offsets (modulo its length)."""
    out: list[Segment] = []
    for index, (direction, data) in enumerate(runs(segments)):
        points = sorted({c % (len(data) + 1) for c in cuts[index::2]} | {0, len(data)})
        out.extend((direction, data[a:b]) for a, b in pairwise(points))
    return out


def bytewise(segments: Sequence[Segment]) -> list[Segment]:
    """Every byte its own chunk, directions interleaved as in ``segments``."""
    return [(d, data[i : i + 1]) for d, data in segments for i in range(len(data))]


# ------------------------------------------------------------------------------------
# Sample data and streams
# ------------------------------------------------------------------------------------

# An implicit VR LE data set: (0010,0010) PN "SYNTHETIC^CANARY", (0010,0020) LO
# "CANARY-ID1", (7FE0,0010) 600 bytes of pixel data free of PDU start patterns.
DATA_SET = (
    struct.pack("<HHI", 0x0010, 0x0010, 16)
    + v.CANARY
    + struct.pack("<HHI", 0x0010, 0x0020, 10)
    + b"CANARY-ID1"
    + struct.pack("<HHI", 0x7FE0, 0x0010, 600)
    + bytes((i * 7 + 0x41) & 0x7F | 0x20 for i in range(600))
)

# The real DCMTK C-ECHO association: RQ, AC, P-DATA in two TCP segments each, release.
ECHO_STREAM: list[Segment] = [
    (ORIGIN, v.RQ_ECHO),
    (PEER, v.AC_ECHO),
    (ORIGIN, v.PDATA_ECHO_RQ_SEG1),
    (ORIGIN, v.PDATA_ECHO_RQ_SEG2),
    (PEER, v.PDATA_ECHO_RSP_SEG1),
    (PEER, v.PDATA_ECHO_RSP_SEG2),
    (ORIGIN, v.RELEASE_RQ),
    (PEER, v.RELEASE_RP),
]

# A C-STORE whose data set spans three PDVs in two PDUs, on pynetdicom's association.
STORE_PDU_COMMAND = pdata(pdv(1, COMMAND_LAST, v.C_STORE_RQ))
STORE_PDU_DATA_1 = pdata(pdv(1, DATA, DATA_SET[:100]), pdv(1, DATA, DATA_SET[100:300]))
STORE_PDU_DATA_2 = pdata(pdv(1, DATA_LAST, DATA_SET[300:]))
STORE_PDU_RSP = pdata(pdv(1, COMMAND_LAST, v.C_STORE_RSP))
STORE_STREAM: list[Segment] = [
    (ORIGIN, v.RQ_STORE),
    (PEER, v.AC_STORE),
    (ORIGIN, STORE_PDU_COMMAND),
    (ORIGIN, STORE_PDU_DATA_1),
    (ORIGIN, STORE_PDU_DATA_2),
    (PEER, STORE_PDU_RSP),
    (ORIGIN, v.RELEASE_RQ),
    (PEER, v.RELEASE_RP),
]

# DCMTK's RQ answered by an RJ (1/1/7: called AE title not recognized).
REJECTED_STREAM: list[Segment] = [(ORIGIN, v.RQ_ECHO), (PEER, v.RJ_CALLED_AE)]

# The C-ECHO association aborted by the acceptor (provider, unexpected PDU) after the RSP.
ABORTED_STREAM: list[Segment] = [
    (ORIGIN, v.RQ_ECHO),
    (PEER, v.AC_ECHO),
    (ORIGIN, v.PDATA_ECHO_RQ),
    (PEER, v.PDATA_ECHO_RSP),
    (ORIGIN, v.ABORT_USER),
]


def reserved_header(pdu: bytes, value: int) -> bytes:
    """``pdu`` with its header's reserved byte 1 set to ``value`` (no real peer tests it)."""
    return pdu[:1] + bytes([value]) + pdu[2:]


# The C-STORE association with byte 1 of every PDU header set, and protocol version 0x0003
# in the RQ (bit 0 set: DCMTK accepts it): one reserved-bits per PDU, 8 in all.
RESERVED_HEADER_STREAM: list[Segment] = [
    (d, reserved_header(pdu, value))
    for (d, pdu), value in zip(
        STORE_STREAM, (0xA5, 0x01, 0xFF, 0x80, 0x7F, 0x10, 0x04, 0x42), strict=True
    )
]
RESERVED_HEADER_STREAM[0] = (ORIGIN, RESERVED_HEADER_STREAM[0][1][:7] + b"\x03" + v.RQ_STORE[8:])

STREAMS: dict[str, list[Segment]] = {
    "echo": ECHO_STREAM,
    "store": STORE_STREAM,
    "rejected": REJECTED_STREAM,
    "aborted": ABORTED_STREAM,
    "reserved-header": RESERVED_HEADER_STREAM,
}
