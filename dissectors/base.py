"""The seam between the sensor and any protocol dissector."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol, cast, runtime_checkable


class Verdict(IntEnum):
    """What a probe says about the first bytes of one direction of a TCP flow."""

    NO_MATCH = 0
    NEED_MORE = 1
    MATCH = 2


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A probe's answer; ``detected_by`` names the evidence when it matched."""

    verdict: Verdict
    detected_by: str = ""


NO_MATCH = ProbeResult(Verdict.NO_MATCH)
NEED_MORE = ProbeResult(Verdict.NEED_MORE)


class Direction(IntEnum):
    """Which side's bytes: ORIGIN is the side whose payload matched the probe."""

    ORIGIN = 0
    PEER = 1

    @property
    def other(self) -> Direction:
        """The opposite direction."""
        return Direction.PEER if self is Direction.ORIGIN else Direction.ORIGIN


class CloseReason(StrEnum):
    """Why the sensor stops feeding a session."""

    CONNECTION_CLOSED = "connection-closed"
    TIMEOUT = "timeout"
    CAPTURE_ENDED = "capture-ended"
    EVICTED = "evicted"

    @property
    def by_sensor(self) -> bool:
        """The sensor stopped following (capture over, flow evicted); the connection may
        still be open, so a PDU or frame cut here was not truncated by the peers."""
        return self is CloseReason.CAPTURE_ENDED or self is CloseReason.EVICTED


@runtime_checkable
class Session(Protocol):
    """Passive state for one TCP connection of one protocol."""

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Any]]:
        """Consume a prefix of ``data``; return how much and the events produced.

        The caller keeps ``data[consumed:]`` and passes it again, followed by new
        bytes, on the next call for the same direction.
        """
        ...

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Any]:
        """Tell the session that ``missing`` bytes (None: unknown) were lost in ``direction``."""
        ...

    def close(self, reason: CloseReason, ts: float) -> list[Any]:
        """End the session; return any final events."""
        ...


@runtime_checkable
class Skipping(Session, Protocol):
    """A session that can be told about bytes it would only count, instead of being fed them.

    Optional: the sensor asks once per session (``skipper_of``) and feeds a session without it
    as before. In the imaging VLAN nearly every segment lies wholly inside a data set, and
    this lets the sensor account such a segment by arithmetic, with no copy and no ``feed``.

    A DICOM session also offers ``framing`` and ``skip_framed`` (dissectors/dicom/
    association.py): the sensor's compiled reader may then follow a data set across its own
    PDV and PDU headers, checked in C exactly where ``feed`` would take them silently.
    """

    def skippable(self, direction: Direction) -> int:
        """How many bytes from the current position of ``direction`` need not be seen.

        The bytes are counted by the session and nothing else: no header, no command, no
        boundary lies inside them. With an unconsumed tail pending the caller does not ask.
        """
        ...

    def skip(self, direction: Direction, n: int, ts: float) -> list[Any]:
        """Account ``n`` unseen bytes (at most ``skippable``) exactly as ``feed`` would."""
        ...


@runtime_checkable
class TailAware(Session, Protocol):
    """A session that learns, just before ``close``, what the caller still holds for it.

    Optional: the caller keeps the bytes ``feed`` did not consume (a PDU or header not yet
    whole). Only the caller knows whether any were pending when the connection ended, and
    a session that is told can report a message cut by the end. A session without it is
    closed as before.
    """

    def unconsumed(self, direction: Direction, n: int) -> None:
        """``n`` bytes of ``direction`` were passed to ``feed`` and never consumed."""
        ...


# (session class, protocol) -> whether the class offers it. A runtime protocol check
# looks for every method (about 20 us); a session class offers the same ones all its life.
_OFFERS: dict[tuple[type, type], bool] = {}


def _offers(session: Session, protocol: type) -> bool:
    key = (session.__class__, protocol)
    known = _OFFERS.get(key)
    if known is None:
        known = _OFFERS[key] = isinstance(session, protocol)
    return known


def tell_unconsumed(session: Session, direction: Direction, n: int) -> None:
    """Tell a ``TailAware`` session about its unconsumed tail; nothing for any other."""
    if _offers(session, TailAware):
        cast(TailAware, session).unconsumed(direction, n)


def skipper_of(session: Session) -> Skipping | None:
    """The session as a ``Skipping`` one if it offers both methods, else None."""
    return cast(Skipping, session) if _offers(session, Skipping) else None


@runtime_checkable
class Summarized(Protocol):
    """A session that describes itself for the sensor's generic record (non-DICOM plug-ins).

    The sensor adds who talked to whom (addresses, ports, zones, times); the session gives
    only protocol facts, under its own namespace, never payload content that holds PHI.
    """

    def originator(self) -> Direction | None:
        """The direction of the side that started the exchange (the client), if known."""
        ...

    def summary(self) -> dict[str, Any]:
        """Protocol facts for the record, e.g. ``{"hl7": {...}}``."""
        ...


@runtime_checkable
class Dissector(Protocol):
    """A protocol plug-in: a cheap probe and a session factory."""

    @property
    def name(self) -> str:
        """Short protocol name, e.g. ``dicom``."""
        ...

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        """Classify the first bytes of one direction of a new flow."""
        ...

    def new_session(self, detected_by: str) -> Session:
        """A fresh session for a flow whose ORIGIN direction matched the probe."""
        ...


ByteAt = Callable[[int, int], str]
"""``byte_at(offset, width)``: the BPF expression for 1, 2 or 4 payload bytes at ``offset``."""


def bpf_head_of(dissector: Dissector, byte_at: ByteAt, length: str) -> str | None:
    """The dissector's BPF test for a segment that may start its protocol, if it offers one.

    A dissector may define ``bpf_head(byte_at, length) -> str | None`` so that libpcap
    drops, in C, the segments it can rule out by their first bytes (``length`` is the
    payload length expression). Without it the sensor probes every segment with payload.
    """
    method = getattr(dissector, "bpf_head", None)
    if method is None:
        return None
    result = method(byte_at, length)
    return result if isinstance(result, str) and result else None


def first_match(
    dissectors: Sequence[Dissector], data: bytes | memoryview
) -> tuple[Dissector | None, ProbeResult]:
    """Run probes in order; a MATCH wins, else NEED_MORE if any asked for more."""
    need_more = False
    for dissector in dissectors:
        result = dissector.probe(data)
        if result.verdict is Verdict.MATCH:
            return dissector, result
        if result.verdict is Verdict.NEED_MORE:
            need_more = True
    return None, NEED_MORE if need_more else NO_MATCH
