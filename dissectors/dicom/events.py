"""Events the association state machine emits, in the order the bytes produce them."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import Direction
from .dimse import DimseCommand
from .errors import Reason
from .pdu import AAbort, AssociateAC, AssociateRJ, AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """An A-ASSOCIATE-RQ was seen."""

    ts: float
    direction: Direction
    pdu: AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """An A-ASSOCIATE-AC was seen."""

    ts: float
    direction: Direction
    pdu: AssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    """An A-ASSOCIATE-RJ was seen."""

    ts: float
    direction: Direction
    pdu: AssociateRJ


@dataclass(frozen=True, slots=True)
class DimseMessage:
    """A complete DIMSE command set was seen (its data set, if any, is only counted)."""

    ts: float
    direction: Direction
    context_id: int
    command: DimseCommand


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """An A-RELEASE-RQ was seen."""

    ts: float
    direction: Direction


@dataclass(frozen=True, slots=True)
class ReleaseReplied:
    """An A-RELEASE-RP was seen."""

    ts: float
    direction: Direction


@dataclass(frozen=True, slots=True)
class Aborted:
    """An A-ABORT was seen."""

    ts: float
    direction: Direction
    pdu: AAbort


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Bytes of one direction were lost (``missing`` None when unknown)."""

    ts: float
    direction: Direction
    missing: int | None
    resynchronised: bool


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Malformed or unexpected input; ``detail`` is structural, never payload content."""

    ts: float
    direction: Direction
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class AssociationEnded:
    """The sensor stopped following the association; ``end`` says how it ended."""

    ts: float
    end: str
    result: str


Event = (
    AssociationRequested
    | AssociationAccepted
    | AssociationRejected
    | DimseMessage
    | ReleaseRequested
    | ReleaseReplied
    | Aborted
    | GapDetected
    | Anomaly
    | AssociationEnded
)
