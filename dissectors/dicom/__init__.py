"""DICOM Upper Layer (PS3.8) and DIMSE command (PS3.7) dissector."""

from .association import AssociationState, DicomSession, Phase
from .dimse import DimseCommand, parse_command
from .errors import DicomError, Reason
from .limits import DEFAULT_LIMITS, Limits
from .pdu import parse_pdu
from .plugin import DICOM, DicomDissector
from .probe import probe

__all__ = [
    "DEFAULT_LIMITS",
    "DICOM",
    "AssociationState",
    "DicomDissector",
    "DicomError",
    "DicomSession",
    "DimseCommand",
    "Limits",
    "Phase",
    "Reason",
    "parse_command",
    "parse_pdu",
    "probe",
]
