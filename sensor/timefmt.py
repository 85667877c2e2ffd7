"""Timestamps as ECS wants them: ISO 8601, UTC, microseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """``2026-11-24T23:22:33.326217Z`` for a POSIX timestamp."""
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )
