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
    """Segments that may start an association, or carry a command mid-stream."""
    first = byte_at(0, 1)
    # A-ASSOCIATE-RQ/AC: type 1 or 2, reserved 0, protocol version 1 at offset 6.
    assoc = f"(({byte_at(0, 2)} = 0x0100 or {byte_at(0, 2)} = 0x0200) and {byte_at(6, 2)} = 0x0001)"
    # P-DATA-TF under 16 MiB whose first PDV is a command fragment on an odd context. Only
    # bit 0 of the control header is tested: receivers ignore bits 2-7 (PS3.8 E.2), so a
    # command that sets them is still a command.
    pdata = (
        f"({byte_at(0, 2)} = 0x0400 and {byte_at(2, 1)} = 0 and ({byte_at(10, 1)} & 1) = 1 "
        f"and ({byte_at(11, 1)} & 1) = 1)"
    )
    # A-RELEASE-RQ/RP and A-ABORT: 10 bytes with a length of 4. Live, they reach an
    # association whose port the kernel filter does not admit yet.
    release = (
        f"(({byte_at(0, 2)} = 0x0500 or {byte_at(0, 2)} = 0x0600 or {byte_at(0, 2)} = 0x0700)"
        f" and {byte_at(2, 4)} = 4)"
    )
    # A PDU header split over tiny segments: too short to test more, let Python look.
    tiny = f"({length} > 0 and {length} < 12 and ({first} = 1 or {first} = 2 or {first} = 4))"
    # Most payloads fail the first test, one load: a PDU type byte is 1 to 7.
    return f"(({first} & 0xf8) = 0 and ({assoc} or {pdata} or {release} or {tiny}))"
