"""The dissector's closed set of error reasons and its one exception type."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why bytes could not be decoded; the value doubles as a metric label."""

    TRUNCATED = "truncated"
    BAD_LENGTH = "bad-length"
    BAD_TYPE = "bad-type"
    BAD_VALUE = "bad-value"
    TOO_LARGE = "too-large"
    TOO_MANY = "too-many"
    UNKNOWN_ITEM = "unknown-item"
    UNEXPECTED_PDU = "unexpected-pdu"
    BAD_COMMAND = "bad-command"
    LOST_SYNC = "lost-sync"
    GAP = "gap"
    RESERVED_BITS = "reserved-bits"
    EXTRA_VALUES = "extra-values"
    EMPTY_VALUE = "empty-value"
    MISSING_ITEM = "missing-item"


class DicomError(ValueError):
    """Malformed DICOM Upper Layer input; the only exception the dissector raises."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
