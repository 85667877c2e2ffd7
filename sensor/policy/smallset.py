"""A set of a few values kept in a tuple: what a node costs in the inventory and the baseline.

An empty Python set costs 216 bytes and stays that size up to four values; a node carries
nine of them (inventory and baseline) whatever it holds. Most hold zero to three values, so
a tuple costs a fifth of that and an empty one nothing (the empty tuple is shared).
Membership is a linear scan, fine for the few values (at most a few hundred) a node keeps.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class SmallSet(Generic[T]):
    """A set of a few hashable values in insertion order (the part of set's API we use)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: tuple[T, ...] = ()
        self.update(items)

    def add(self, value: T) -> None:
        """Add ``value`` unless present."""
        if value not in self._items:
            self._items = (*self._items, value)

    def update(self, values: Iterable[T]) -> None:
        """Add each of ``values``."""
        for value in values:
            self.add(value)

    def __contains__(self, value: object) -> bool:
        return value in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SmallSet):
            return set(self._items) == set(other._items)
        if isinstance(other, set | frozenset):
            return set(self._items) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SmallSet({list(self._items)!r})"
