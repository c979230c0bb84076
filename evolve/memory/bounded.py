"""A dict that keeps only its most recently used entries: retrieval caches that stay bounded
however many settings a search tries."""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Mapping of at most ``maxsize`` entries; reading or writing one makes it the newest, and a
    write beyond the size drops the least recently used."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, V] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __getitem__(self, key: Hashable) -> V:
        self._data.move_to_end(key)
        return self._data[key]

    def __setitem__(self, key: Hashable, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def items(self) -> list[tuple[Hashable, V]]:
        """The entries, oldest first, without refreshing them."""
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)
