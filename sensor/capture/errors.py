"""What a capture source raises when it cannot be opened or read at all."""

from __future__ import annotations


class CaptureError(Exception):
    """A capture that cannot be opened or read at all; the message is one line."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (libpcap messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
