"""Names of SOP classes and transfer syntaxes (PS3.6 table A-1)."""

from __future__ import annotations

from .uid_table import UID_NAMES


def uid_name(value: str) -> str | None:
    """The registered name of a UID, or None for private and unknown ones."""
    return UID_NAMES.get(value)
