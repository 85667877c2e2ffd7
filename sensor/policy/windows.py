"""Bounded sliding-window counters for the detectors that need a memory of recent events."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Queue(Generic[V]):
    """A FIFO in a list with a head index: what one key of a window costs.

    A deque costs 760 bytes even empty and the windows keep up to 8,192 keys each, one per
    address: a list and an index cost a seventh of that for the one to few values most hold.
    """

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        self._items: list[V] = []
        self._head = 0

    def append(self, value: V) -> None:
        self._items.append(value)

    def popleft(self) -> None:
        self._head += 1
        if self._head * 2 >= len(self._items):
            del self._items[: self._head]
            self._head = 0

    def first(self) -> V:
        return self._items[self._head]

    def last(self) -> V:
        return self._items[-1]

    def set_last(self, value: V) -> None:
        self._items[-1] = value

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __iter__(self) -> Iterator[V]:
        items = self._items
        return (items[i] for i in range(self._head, len(items)))


class WindowCount(Generic[K]):
    """Events per key within the last ``window`` seconds; at most ``max_keys`` keys (oldest go)."""

    def __init__(self, window: float, max_keys: int = 8192, max_events: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_events = max_events
        self._events: OrderedDict[K, _Queue[float]] = OrderedDict()

    def add(self, key: K, ts: float) -> int:
        """Record one event for ``key``; return how many it has in the window."""
        q = self._events.get(key)
        if q is None:
            if len(self._events) >= self.max_keys:
                self._events.popitem(last=False)
            q = self._events[key] = _Queue()
        else:
            self._events.move_to_end(key)
        q.append(ts)
        floor = ts - self.window
        while q and q.first() < floor:
            q.popleft()
        while len(q) > self.max_events:
            q.popleft()
        return len(q)


class WindowDistinct(Generic[K]):
    """Distinct values per key within the last ``window`` seconds, bounded."""

    def __init__(self, window: float, max_keys: int = 8192, max_values: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_values = max_values
        # Per key a plain dict (insertion ordered; half an OrderedDict's size): the oldest
        # value first, a value seen again moved to the end.
        self._seen: OrderedDict[K, dict[Hashable, float]] = OrderedDict()

    def add(self, key: K, value: Hashable, ts: float) -> int:
        """Note ``value`` for ``key``; return how many distinct values it has in the window."""
        values = self._seen.get(key)
        if values is None:
            if len(self._seen) >= self.max_keys:
                self._seen.popitem(last=False)
            values = self._seen[key] = {}
        else:
            self._seen.move_to_end(key)
        values.pop(value, None)
        values[value] = ts
        floor = ts - self.window
        while values:
            oldest, seen = next(iter(values.items()))
            if seen >= floor and len(values) <= self.max_values:
                break
            del values[oldest]
        return len(values)


class WindowSum(Generic[K]):
    """Sum of amounts per key within the last ``window`` seconds, in one-second buckets."""

    def __init__(self, window: float, max_keys: int = 8192) -> None:
        self.window = window
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, _Queue[tuple[int, int]]] = OrderedDict()

    def add(self, key: K, amount: int, ts: float) -> int:
        """Add ``amount`` at ``ts``; return the key's total within the window."""
        q = self._buckets.get(key)
        if q is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            q = self._buckets[key] = _Queue()
        else:
            self._buckets.move_to_end(key)
        second = int(ts)
        if q and q.last()[0] == second:
            q.set_last((second, q.last()[1] + amount))
        else:
            q.append((second, amount))
        floor = ts - self.window
        while q and q.first()[0] < floor - 1:
            q.popleft()
        return sum(a for _, a in q)
