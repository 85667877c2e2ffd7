"""The dissector's closed set of anomaly reasons and its one exception type."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why bytes could not be decoded; the value doubles as a metric label."""

    TRUNCATED = "truncated"
    BAD_FRAME = "bad-frame"
    TOO_LARGE = "too-large"
    BAD_MSH = "bad-msh"
    BAD_MSA = "bad-msa"
    GAP = "gap"


class HL7Error(ValueError):
    """Malformed HL7 v2 header segments; the only exception the parsers raise."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
