"""Events the HL7 session emits, in the order the bytes produce them."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import Direction
from .constants import AckCode
from .errors import Reason


@dataclass(frozen=True, slots=True)
class HL7Message:
    """One complete MLLP frame holding an HL7 v2 message: its MSH routing fields (and MSA).

    ``ts`` is when the start block arrived; ``length`` counts the bytes between the start
    and end blocks. ``ack_code`` and ``acknowledged_control_id`` come from the first MSA
    segment (MSA-1, MSA-2), None when the message has none. Nothing from any other segment.
    """

    ts: float
    direction: Direction
    message_type: str
    trigger_event: str
    message_structure: str
    message_control_id: str
    processing_id: str
    version_id: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    ack_code: AckCode | None
    acknowledged_control_id: str | None
    length: int

    @property
    def kind(self) -> str:
        """``TYPE^TRIGGER`` (``ADT^A01``), or ``TYPE`` alone when there is no trigger event."""
        return (
            f"{self.message_type}^{self.trigger_event}" if self.trigger_event else self.message_type
        )

    @property
    def is_acknowledgment(self) -> bool:
        """An ACK, or any response carrying an MSA segment."""
        return self.message_type == "ACK" or self.ack_code is not None


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Bytes of one direction were lost (``missing`` None when unknown).

    ``message_lost`` says the loss fell inside a frame, whose message is then dropped.
    """

    ts: float
    direction: Direction
    missing: int | None
    message_lost: bool

    @property
    def reason(self) -> Reason:
        """Always ``gap``: a gap is an anomaly to anything that counts events by reason."""
        return Reason.GAP

    @property
    def detail(self) -> str:
        """What was lost, structurally."""
        lost = "an unknown number of bytes" if self.missing is None else f"{self.missing} bytes"
        then = "the message in progress dropped" if self.message_lost else "between messages"
        return f"{lost} lost, {then}; resynchronising at the next MSH"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Malformed or unexpected input; ``detail`` is structural, never payload content."""

    ts: float
    direction: Direction
    reason: Reason
    detail: str


Event = HL7Message | GapDetected | Anomaly
