"""Cleaning of AE titles and UIDs taken off the wire."""

from __future__ import annotations

_PRINTABLE = frozenset(range(0x20, 0x7F))
_UID_CHARS = frozenset(b"0123456789.")


def ae_title(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode an AE title: spaces and NULs trimmed; False when it held bad characters."""
    data = bytes(raw).strip(b" \x00")
    if all(b in _PRINTABLE for b in data):
        return data.decode("ascii"), True
    return "".join(chr(b) if b in _PRINTABLE else "?" for b in data), False


def uid(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a UID: trailing NUL and spaces trimmed; False when not digits and dots."""
    data = bytes(raw).rstrip(b"\x00 ").lstrip(b" ")
    ok = 0 < len(data) <= 64 and all(b in _UID_CHARS for b in data)
    if ok:
        return data.decode("ascii"), True
    return "".join(chr(b) if b in _PRINTABLE else "?" for b in data[:64]), False


def short_text(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a short printable string such as an implementation version name."""
    data = bytes(raw).strip(b" \x00")
    if all(b in _PRINTABLE for b in data):
        return data.decode("ascii"), True
    return "".join(chr(b) if b in _PRINTABLE else "?" for b in data), False
