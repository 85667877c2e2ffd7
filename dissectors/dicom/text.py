"""Cleaning of AE titles and UIDs taken off the wire."""

from __future__ import annotations

_PRINTABLE = bytes(range(0x20, 0x7F))
_UID_CHARS = b"0123456789."
# Non-printable bytes become '?' when a value has to be shown anyway.
_MASK = bytes(b if 0x20 <= b < 0x7F else ord("?") for b in range(256))


def _printable(data: bytes) -> tuple[str, bool]:
    if not data.translate(None, _PRINTABLE):
        return data.decode("ascii"), True
    return data.translate(_MASK).decode("ascii"), False


def ae_title(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode an AE title: spaces and NULs trimmed; False when it held bad characters."""
    return _printable(bytes(raw).strip(b" \x00"))


def uid(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a UID: trailing NUL and spaces trimmed; False when not digits and dots."""
    data = bytes(raw).rstrip(b"\x00 ").lstrip(b" ")
    if 0 < len(data) <= 64 and not data.translate(None, _UID_CHARS):
        return data.decode("ascii"), True
    return data[:64].translate(_MASK).decode("ascii"), False


def short_text(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a short printable string such as an implementation version name."""
    return _printable(bytes(raw).strip(b" \x00"))
