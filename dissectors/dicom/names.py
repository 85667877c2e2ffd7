"""Names of SOP classes and transfer syntaxes, from pydicom's copy of PS3.6 table A-1."""

from __future__ import annotations

from functools import lru_cache

from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]


@lru_cache(maxsize=4096)
def uid_name(value: str) -> str | None:
    """The registered name of a UID, or None for private and unknown ones."""
    entry = UID_dictionary.get(value)
    if entry is None:
        return None
    return str(entry[0])
