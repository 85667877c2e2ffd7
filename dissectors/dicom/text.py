"""Cleaning of AE titles and UIDs taken off the wire."""

from __future__ import annotations

from .memo import Memo

_PRINTABLE = bytes(range(0x20, 0x7F))
_UID_CHARS = b"0123456789."
# Non-printable bytes become '?' when a value has to be shown anyway.
_MASK = bytes(b if 0x20 <= b < 0x7F else ord("?") for b in range(256))
# The same hundred or so UIDs (SOP classes, transfer syntaxes) recur in every association:
# a storage SCU proposes 128 contexts of three or four each. Decoded UIDs are remembered by
# their raw bytes, padding included, so a repeat costs one dict lookup. A UID is at most
# 64 characters; longer values are decoded each time.
UID_MEMO: Memo[tuple[str, bool]] = Memo(max_entries=4096, max_key_bytes=80)


def _printable(data: bytes) -> tuple[str, bool]:
    if not data.translate(None, _PRINTABLE):
        return data.decode("ascii"), True
    return data.translate(_MASK).decode("ascii"), False


def ae_title(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode an AE title: spaces and NULs trimmed; False when it held bad characters."""
    return _printable(bytes(raw).strip(b" \x00"))


def uid(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a UID: trailing NUL and spaces trimmed; False when not a UID of PS3.5 9.1.

    That is: 1 to 64 digits and dots, no empty component (``1..2``, a leading or trailing
    dot), no component with a leading zero (``1.02``; ``0`` alone is fine).
    """
    data = bytes(raw).rstrip(b"\x00 ").lstrip(b" ")
    if 0 < len(data) <= 64 and not data.translate(None, _UID_CHARS):
        text = data.decode("ascii")
        return text, _uid_components_ok(data)
    return data[:64].translate(_MASK).decode("ascii"), False


def _uid_components_ok(data: bytes) -> bool:
    """Whether every dot-separated component is a number without a leading zero."""
    if data[0] == 0x2E or data[-1] == 0x2E or b".." in data:
        return False
    if data[0] == 0x30 and len(data) > 1 and data[1] != 0x2E:
        return False
    # A leading zero after a dot: ".0" followed by a digit.
    i = data.find(b".0")
    while i >= 0:
        if i + 2 < len(data) and data[i + 2] != 0x2E:
            return False
        i = data.find(b".0", i + 2)
    return True


def uid_memo(raw: bytes) -> tuple[str, bool]:
    """``uid(raw)``, remembered for the next context or association that sends the same bytes."""
    hit = UID_MEMO.get(raw)
    if hit is None:
        hit = uid(raw)
        UID_MEMO.put(raw, hit)
    return hit


def short_text(raw: bytes | memoryview) -> tuple[str, bool]:
    """Decode a short printable string such as an implementation version name."""
    return _printable(bytes(raw).strip(b" \x00"))
