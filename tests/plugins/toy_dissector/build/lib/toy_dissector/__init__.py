"""A line protocol for the tests: the client says TOY1, then sends lines; the server echoes."""

from __future__ import annotations

from typing import Any

from dissectors.base import NEED_MORE, NO_MATCH, CloseReason, Direction, ProbeResult, Verdict

MAGIC = b"TOY1\n"


class ToySession:
    """Counts the lines each side sent."""

    def __init__(self) -> None:
        self.lines = [0, 0]

    def feed(
        self, direction: Direction, data: bytes | memoryview, ts: float
    ) -> tuple[int, list[Any]]:
        """Consume whole lines; one event per line."""
        buf = bytes(data)
        end = buf.rfind(b"\n") + 1
        count = buf[:end].count(b"\n")
        self.lines[direction] += count
        return end, [("line", direction, ts)] * count

    def gap(self, direction: Direction, missing: int | None, ts: float) -> list[Any]:
        """Nothing to resynchronise: lines are lines."""
        return []

    def close(self, reason: CloseReason, ts: float) -> list[Any]:
        """No final events."""
        return []

    def originator(self) -> Direction | None:
        """The side that said TOY1."""
        return Direction.ORIGIN

    def summary(self) -> dict[str, Any]:
        """Lines per side."""
        return {"toy": {"lines": {"client": self.lines[0], "server": self.lines[1]}}}


class ToyDissector:
    """The plug-in object the entry point names."""

    name = "toy"

    def probe(self, data: bytes | memoryview) -> ProbeResult:
        """MATCH on the magic line."""
        head = bytes(data[: len(MAGIC)])
        if head == MAGIC:
            return ProbeResult(Verdict.MATCH, "toy-magic")
        return NEED_MORE if MAGIC.startswith(head) else NO_MATCH

    def new_session(self, detected_by: str) -> ToySession:
        """A new session."""
        return ToySession()


TOY = ToyDissector()
