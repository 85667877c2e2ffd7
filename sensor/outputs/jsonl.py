"""JSON lines output to a file or standard output, one object per line, flushed per line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .files import open_output


class Sink(Protocol):
    """Where records or events go: a file, a queue to a parent process, a syslog sender."""

    def write(self, obj: dict[str, Any]) -> None:
        """Take one object."""
        ...


class JsonLines:
    """A line-buffered JSON lines sink; ``-`` means standard output.

    For long-running capture the file can be rotated by size or age (the full file is
    renamed with a UTC timestamp suffix) and reopened on demand, for logrotate.
    """

    def __init__(
        self,
        path: str,
        append: bool = False,
        rotate_bytes: int = 0,
        rotate_seconds: float = 0.0,
    ) -> None:
        self.path = path
        self.count = 0
        self.append = append
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.rotations = 0
        self.failed = 0  # lines lost to a file that could not take them
        self._failing = False
        self._failures: Counter[str] | None = None
        self._report: Callable[[str], None] | None = None
        self._owned = path != "-"
        self._fh: TextIO = sys.stdout
        if not self._owned:
            # A record must reach a pipe when it is written, not when the sensor exits.
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        self._size = 0
        self._opened = time.monotonic()
        if self._owned:
            self._open(append)

    def _open(self, append: bool) -> None:
        self._fh = open_output(self.path, append)
        self._size = self._fh.tell()
        self._opened = time.monotonic()

    def write(self, obj: dict[str, Any]) -> None:
        """Write one object as one line (rotating first when the file is due)."""
        self._put(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")

    def watch(self, failures: Counter[str], report: Callable[[str], None]) -> None:
        """Count lines this file could not take in ``failures["files"]``; say each outage."""
        self._failures = failures
        self._report = report

    def _put(self, line: str) -> None:
        """Write one line; a file that cannot take it (disk full, I/O error) never raises:
        the line is lost, counted, and the outage said once."""
        try:
            if self._owned and (self.rotate_bytes or self.rotate_seconds):
                self._maybe_rotate(len(line))
            self._fh.write(line)
        except OSError as exc:
            if not self._owned:
                raise  # standard output closed (a pipe into `head`): the CLI ends quietly
            self.failed += 1
            if self._failures is not None:
                self._failures["files"] += 1
            if not self._failing:
                self._failing = True
                if self._report is not None:
                    self._report(f"{self.path}: {exc.strerror or exc}; lines are lost, counted")
            return
        self._failing = False
        self._size += len(line)
        self.count += 1

    def _maybe_rotate(self, incoming: int) -> None:
        too_big = self.rotate_bytes and self._size and self._size + incoming > self.rotate_bytes
        too_old = self.rotate_seconds and time.monotonic() - self._opened >= self.rotate_seconds
        if not (too_big or too_old) or not self._size:
            return
        self._ending()
        self._fh.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.{stamp}"
        n = 1
        while os.path.exists(target):
            target = f"{self.path}.{stamp}.{n}"
            n += 1
        os.replace(self.path, target)
        self.rotations += 1
        self._open(False)

    def _ending(self) -> None:
        """What a file gets before it is closed for rotation or reopening (nothing here)."""

    def reopen(self) -> None:
        """Close and reopen the file by name (after logrotate moved it away)."""
        if self._owned:
            with contextlib.suppress(OSError):  # no room for a footer: the new file still opens
                self._ending()
            self._fh.close()
            self._open(True)

    def close(self) -> None:
        """Flush, and close what this sink opened (a file that fails to flush is counted)."""
        if not self._owned:
            self._fh.flush()
            return
        try:
            self._fh.close()
        except OSError:
            self.failed += 1
            if self._failures is not None:
                self._failures["files"] += 1
