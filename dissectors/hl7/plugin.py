"""HL7 v2 over MLLP as a dissector plug-in: the probe and the session factory."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import ByteAt, ProbeResult
from .limits import DEFAULT_LIMITS, Limits
from .probe import probe
from .session import HL7Session


@dataclass(frozen=True, slots=True)
class HL7Dissector:
    """The HL7 v2 over MLLP dissector."""

    name: str = "hl7"
    limits: Limits = field(default=DEFAULT_LIMITS)

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        """Classify the first bytes one side sent."""
        return probe(data)

    def new_session(self, detected_by: str) -> HL7Session:
        """A new MLLP session."""
        return HL7Session(detected_by, self.limits)

    def bpf_head(self, byte_at: ByteAt, length: str) -> str:
        """The BPF test for segments that may start an MLLP frame (see base.bpf_head_of)."""
        return _bpf_head(byte_at, length)


HL7 = HL7Dissector()


def _bpf_head(byte_at: ByteAt, length: str) -> str:
    """Segments that start with ``<VT>MSH``, or are too short to tell."""
    # One 4-byte load: VT 'M' 'S' 'H'. Lengths are tested first so no load runs past the end.
    frame = f"({length} > 3 and {byte_at(0, 4)} = 0x0b4d5348)"
    # A frame start split over tiny segments: let the probe look.
    tiny = f"({length} > 0 and {length} < 4 and {byte_at(0, 1)} = 0x0b)"
    return f"({frame} or {tiny})"
