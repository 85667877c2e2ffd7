"""DICOM as a dissector plug-in: the probe and the session factory behind the seam."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import ProbeResult
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


DICOM = DicomDissector()
