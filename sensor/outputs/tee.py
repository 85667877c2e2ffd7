"""One record slot, several sinks: association records to JSON lines and dicom.log."""

from __future__ import annotations

from typing import Any

from ..jsonl import JsonLines


class TeeLines(JsonLines):
    """Hands every object to each of its sinks; it opens and closes no file itself."""

    def __init__(self, *sinks: JsonLines) -> None:
        super().__init__("-")  # standard output: the base opens nothing, and it is never used
        self.sinks = sinks
        self.path = ", ".join(sink.path for sink in sinks)

    def write(self, obj: dict[str, Any]) -> None:
        """Write the object to every sink."""
        for sink in self.sinks:
            sink.write(obj)
        self.count += 1

    def close(self) -> None:
        """Nothing: the sinks are closed by whoever opened them."""

    def reopen(self) -> None:
        """Nothing: the sinks are reopened by whoever opened them."""


def fan_out(*sinks: JsonLines | None) -> JsonLines | None:
    """None, the one sink given, or a tee over several."""
    present = [sink for sink in sinks if sink is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return TeeLines(*present)
