"""Caps that bound what one association can make the dissector hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-association caps; past any of them an anomaly, never memory growth."""

    max_associate_pdu: int = 256 * 1024
    max_pdata_pdu: int = 64 * 1024 * 1024
    max_items: int = 512
    max_presentation_contexts: int = 128
    max_transfer_syntaxes: int = 64
    max_sub_items: int = 256
    max_unknown_kept: int = 16
    max_unknown_bytes: int = 256
    max_command_bytes: int = 64 * 1024
    max_move_destinations: int = 32
    max_failures_kept: int = 32
    resync_window: int = 64 * 1024


DEFAULT_LIMITS = Limits()
