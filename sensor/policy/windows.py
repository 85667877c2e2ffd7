"""Bounded sliding-window counters for the detectors that need a memory of recent events."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WindowCount(Generic[K]):
    """Events per key within the last ``window`` seconds; at most ``max_keys`` keys (oldest go)."""

    def __init__(self, window: float, max_keys: int = 8192, max_events: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_events = max_events
        self._events: OrderedDict[K, deque[float]] = OrderedDict()

    def add(self, key: K, ts: float) -> int:
        """Record one event for ``key``; return how many it has in the window."""
        q = self._events.get(key)
        if q is None:
            if len(self._events) >= self.max_keys:
                self._events.popitem(last=False)
            q = self._events[key] = deque()
        else:
            self._events.move_to_end(key)
        q.append(ts)
        floor = ts - self.window
        while q and q[0] < floor:
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
        self._seen: OrderedDict[K, OrderedDict[Hashable, float]] = OrderedDict()

    def add(self, key: K, value: Hashable, ts: float) -> int:
        """Note ``value`` for ``key``; return how many distinct values it has in the window."""
        values = self._seen.get(key)
        if values is None:
            if len(self._seen) >= self.max_keys:
                self._seen.popitem(last=False)
            values = self._seen[key] = OrderedDict()
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
        self._buckets: OrderedDict[K, deque[tuple[int, int]]] = OrderedDict()

    def add(self, key: K, amount: int, ts: float) -> int:
        """Add ``amount`` at ``ts``; return the key's total within the window."""
        q = self._buckets.get(key)
        if q is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            q = self._buckets[key] = deque()
        else:
            self._buckets.move_to_end(key)
        second = int(ts)
        if q and q[-1][0] == second:
            q[-1] = (second, q[-1][1] + amount)
        else:
            q.append((second, amount))
        floor = ts - self.window
        while q and q[0][0] < floor - 1:
            q.popleft()
        return sum(a for _, a in q)
