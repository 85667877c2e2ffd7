"""A bounded memo of decoded values keyed by the raw bytes they came from."""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    """Values already decoded from the same bytes; bounded in entries and key size.

    Emptied when full rather than trimmed: cheap, and a flood of distinct keys can
    neither grow it nor pin it. It only saves work; it never changes a result.
    """

    __slots__ = ("_data", "flushes", "get", "max_entries", "max_key_bytes")

    def __init__(self, max_entries: int, max_key_bytes: int) -> None:
        self._data: dict[bytes, V] = {}
        self.max_entries = max_entries
        self.max_key_bytes = max_key_bytes
        self.flushes = 0
        # Bound once: the hot loops call it per sub-item.
        self.get = self._data.get

    def put(self, key: bytes, value: V) -> None:
        """Remember ``value`` for ``key`` unless the key is too long to be worth keeping."""
        if len(key) > self.max_key_bytes:
            return
        if len(self._data) >= self.max_entries:
            self._data.clear()
            self.flushes += 1
        self._data[key] = value

    def clear(self) -> None:
        """Forget everything (tests and benchmarks that need a cold start)."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
