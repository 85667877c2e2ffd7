"""Caps that bound what one connection can make the dissector hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session caps; past any of them an anomaly or a dropped value, never memory growth."""

    max_message_bytes: int = 1 << 20  # one framed message; past it: too-large
    max_msh_bytes: int = 4096  # MSH bytes kept for parsing (the first 12 fields suffice)
    max_msa_bytes: int = 512  # MSA bytes kept (only MSA-1 and MSA-2 are read)
    max_field_chars: int = 128  # each decoded MSH/MSA value
    max_message_kinds: int = 32  # distinct ``TYPE^TRIGGER`` keys in the summary
    max_control_ids: int = 8  # control ids listed in the summary
    max_versions: int = 8  # distinct versions / processing ids listed in the summary
    max_anomaly_events: int = 100  # anomaly and gap events per session (all are counted)


DEFAULT_LIMITS = Limits()
