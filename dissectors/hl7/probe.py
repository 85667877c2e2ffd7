"""A cheap three-way probe for MLLP-framed HL7 v2 on the first bytes of one direction."""

from __future__ import annotations

from ..base import NEED_MORE, NO_MATCH, ProbeResult, Verdict
from .constants import SEPARATOR_CHARS, START_BLOCK

DETECTED_BY = "mllp"
MATCH = ProbeResult(Verdict.MATCH, DETECTED_BY)

_PREFIX = bytes((START_BLOCK,)) + b"MSH"
_MAX_ENCODING = 5  # MSH-2: component, repetition, escape, subcomponent (and truncation, v2.7+)
PROBE_MAX = len(_PREFIX) + 1 + _MAX_ENCODING + 1  # bytes that always suffice for an answer


def frame_start(data: bytes | memoryview, pos: int = 0) -> bool | None:
    """Whether ``data[pos:]`` starts an MLLP frame holding an MSH; None while bytes are missing.

    The frame must begin ``<VT>MSH``, then a punctuation field separator (MSH-1), then 2 to 5
    distinct punctuation encoding characters (MSH-2) closed by the field separator again.
    """
    n = len(data) - pos
    for i in range(min(n, 4)):
        if data[pos + i] != _PREFIX[i]:
            return False
    if n <= 4:
        return None
    sep = data[pos + 4]
    if sep not in SEPARATOR_CHARS:
        return False
    seen: set[int] = set()
    for i in range(pos + 5, pos + min(n, PROBE_MAX)):
        c = data[i]
        if c == sep:
            return len(seen) >= 2
        if c not in SEPARATOR_CHARS or c in seen:
            return False
        seen.add(c)
    return None if n < PROBE_MAX else False


def probe(data: bytes | memoryview) -> ProbeResult:
    """MATCH, NEED_MORE or NO_MATCH for the first bytes one side sent on a flow."""
    verdict = frame_start(data)
    if verdict is None:
        return NEED_MORE
    return MATCH if verdict else NO_MATCH
