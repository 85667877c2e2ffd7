"""JSON lines output to a file or standard output, one object per line, flushed per line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class JsonLines:
    """A line-buffered JSON lines sink; ``-`` means standard output."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        if path == "-":
            self._fh: TextIO = sys.stdout
            self._owned = False
        else:
            self._fh = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
            self._owned = True

    def write(self, obj: dict[str, Any]) -> None:
        """Write one object as one line."""
        self._fh.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        """Flush, and close what this sink opened."""
        self._fh.flush()
        if self._owned:
            self._fh.close()
