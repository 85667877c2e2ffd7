"""HL7 v2 over MLLP dissector: MSH routing fields and MSA acknowledgments, nothing else."""

from .constants import AckCode
from .errors import HL7Error, Reason
from .events import Anomaly, Event, GapDetected, HL7Message
from .header import Acknowledgment, MessageHeader, parse_msa, parse_msh
from .limits import DEFAULT_LIMITS, Limits
from .plugin import HL7, HL7Dissector
from .probe import DETECTED_BY, frame_start, probe
from .session import HL7Session

__all__ = [
    "DEFAULT_LIMITS",
    "DETECTED_BY",
    "HL7",
    "AckCode",
    "Acknowledgment",
    "Anomaly",
    "Event",
    "GapDetected",
    "HL7Dissector",
    "HL7Error",
    "HL7Message",
    "HL7Session",
    "Limits",
    "MessageHeader",
    "Reason",
    "frame_start",
    "parse_msa",
    "parse_msh",
    "probe",
]
