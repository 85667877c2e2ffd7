"""DICOM as a dissector plug-in: the probe and the session factory behind the seam."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import ByteAt, ProbeResult
from .association import DicomSession
from .limits import DEFAULT_LIMITS, Limits
from .probe import probe


@dataclass(frozen=True, slots=True)
class DicomDissector:
    """The DICOM Upper Layer dissector."""

    name: str = "dicom"
    limits: Limits = field(default=DEFAULT_LIMITS)

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        """Classify the first bytes one side sent."""
        return probe(data)

    def new_session(self, detected_by: str) -> DicomSession:
        """A new association tracker."""
        return DicomSession(detected_by, self.limits)

    def bpf_head(self, byte_at: ByteAt, length: str) -> str:
        """The BPF test for segments that may start an association (see base.bpf_head_of)."""
        return _bpf_head(byte_at, length)


DICOM = DicomDissector()


def _bpf_head(byte_at: ByteAt, length: str) -> str:
    """Segments that may start an association, or carry a command mid-stream.

    Byte 1 of the PDU header is reserved and no real peer tests it (pynetdicom reads and
    drops it, DCMTK keeps it unread), so no test here reads it either: a head that set it
    would otherwise never be followed offline, and its whole association would be lost.
    """
    first = byte_at(0, 1)
    # A-ASSOCIATE-RQ/AC: type 1 or 2; a PDU length up to 1 MiB (its first two bytes at most
    # 0x0010, as the probe's limit); the protocol version tested by its bit 0 only, as DCMTK
    # does (PS3.8 9.3.2: receivers do not test the other bits; pynetdicom rejects any other
    # version with an A-ASSOCIATE-RJ, which is worth seeing too); the called AE title's
    # first two characters printable or NUL (the probe tests all 32 bytes of both titles).
    # No byte past 11 is read: a shorter head is admitted by the tiny test below.
    titles = " and ".join(
        f"{b} <= 0x7e and ({b} >= 0x20 or {b} = 0)" for b in (byte_at(10, 1), byte_at(11, 1))
    )
    assoc = (
        f"(({first} = 1 or {first} = 2) and {byte_at(2, 2)} <= 0x0010 "
        f"and ({byte_at(7, 1)} & 1) = 1 and {titles})"
    )
    # P-DATA-TF under 16 MiB whose first PDV is a command fragment on an odd context. Only
    # bit 0 of the control header is tested: receivers ignore bits 2-7 (PS3.8 E.2), so a
    # command that sets them is still a command.
    pdata = (
        f"({first} = 4 and {byte_at(2, 1)} = 0 and ({byte_at(10, 1)} & 1) = 1 "
        f"and ({byte_at(11, 1)} & 1) = 1)"
    )
    # A-RELEASE-RQ/RP and A-ABORT: 10 bytes with a length of 4. Live, they reach an
    # association whose port the kernel filter does not admit yet.
    release = f"({first} >= 5 and {byte_at(2, 4)} = 4)"
    # A PDU header split over tiny segments: too short to test more, let Python look. It
    # comes first: a load past the end of the payload ends the program and drops the packet.
    tiny = f"({length} > 0 and {length} < 12 and ({first} = 1 or {first} = 2 or {first} = 4))"
    # Most payloads fail the first test, one load: a PDU type byte is 1 to 7.
    return f"(({first} & 0xf8) = 0 and ({tiny} or {assoc} or {pdata} or {release}))"
