"""Bounded records: a mock keeps the most recent entries of what requests add, not all of them.

``infrabot serve`` runs thousands of workflows in one process, so the comments, deployment
statuses, events, tag changes, incidents and notes the mocks keep must not grow with each one.
Each such collection holds at most :data:`LIMIT` entries (per collection: one pull request's
comments, one deployment's statuses ...); past that the oldest entry is dropped first, like a
rotating log. Below the bound they behave as the list or dict they stand for, and compare equal
to one, so a test can still write ``state.changes == [...]``.

:class:`RecentList` keeps items in arrival order, or newest first (GitHub lists deployment
statuses so). :class:`RecentDict` keeps keys in insertion order (an overwrite keeps its place,
as in a dict) and may hold pinned entries, the seeded fixtures, that are never dropped. Both
count what was ever added (``added``), so ids drawn from that count stay unique after drops, and
both hand back what an addition dropped, so a caller can forget what it kept about it. A
collection made without a ``limit`` takes :data:`LIMIT` as it is when the collection is made.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from itertools import chain
from typing import Protocol, TypeVar, overload

LIMIT = 1_000
"""Entries per collection. A comment or deployment status costs about 2 KB, so a full collection
is about 2 MiB and all the mocks' records together stay within a few MiB however long they run.
"""

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def _bound(limit: int | None) -> int:
    if limit is None:
        return LIMIT
    if limit < 1:
        raise ValueError(f"a bounded collection keeps at least one entry, not {limit}")
    return limit


class RecentList(Sequence[T]):
    """The ``limit`` most recent items, oldest first, or newest first with ``newest_first``."""

    def __init__(self, *, limit: int | None = None, newest_first: bool = False) -> None:
        self.limit = _bound(limit)
        self.added = 0
        self._newest_first = newest_first
        self._items: deque[T] = deque(maxlen=self.limit)

    def add(self, item: T) -> T | None:
        """Keep ``item`` as the newest; the oldest item, if this pushed it out."""
        dropped = None
        if len(self._items) == self.limit:
            dropped = self._items[-1] if self._newest_first else self._items[0]
        if self._newest_first:
            self._items.appendleft(item)
        else:
            self._items.append(item)
        self.added += 1
        return dropped

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return list(self._items)[index]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __reversed__(self) -> Iterator[T]:
        return reversed(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecentList | list):
            return list(self._items) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"RecentList({list(self._items)!r}, limit={self.limit})"


class RecentDict(MutableMapping[K, V]):
    """The ``limit`` most recently added keys, after any pinned ones (never dropped)."""

    def __init__(self, *, limit: int | None = None) -> None:
        self.limit = _bound(limit)
        self.added = 0
        self._pinned: dict[K, V] = {}
        self._recent: OrderedDict[K, V] = OrderedDict()

    def pin(self, key: K, value: V) -> None:
        """Keep ``key`` for good, outside the bound: a seeded fixture."""
        if key not in self:
            self.added += 1
        self._recent.pop(key, None)
        self._pinned[key] = value

    def put(self, key: K, value: V) -> tuple[K, V] | None:
        """Set ``key``; the oldest entry, if a new key pushed it out."""
        if key in self._pinned:
            self._pinned[key] = value
            return None
        if key not in self._recent:
            self.added += 1
        self._recent[key] = value
        return self._recent.popitem(last=False) if len(self._recent) > self.limit else None

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def __getitem__(self, key: K) -> V:
        if key in self._pinned:
            return self._pinned[key]
        return self._recent[key]

    def __delitem__(self, key: K) -> None:
        if key in self._pinned:
            del self._pinned[key]
        else:
            del self._recent[key]

    def __len__(self) -> int:
        return len(self._pinned) + len(self._recent)

    def __iter__(self) -> Iterator[K]:
        return chain(self._pinned, self._recent)

    def __repr__(self) -> str:
        return f"RecentDict({dict(self.items())!r}, limit={self.limit})"


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Identified)


def add_attributed(items: RecentList[R], item: R, attribution: MutableMapping[str, V],
                   kind: str, who: V) -> None:
    """Keep ``item`` and who made it (under ``"<kind>:<id>"``); the attribution of the item it
    pushed out goes with that item."""
    dropped = items.add(item)
    attribution[f"{kind}:{item.id}"] = who
    if dropped is not None:
        del attribution[f"{kind}:{dropped.id}"]


def newest(mapping: Mapping[K, V], limit: int | None = None) -> dict[K, V]:
    """The last ``limit`` entries of ``mapping``, in its order: for a plain dict inside a model."""
    items: Sequence[tuple[K, V]] = list(mapping.items())
    return dict(items[-_bound(limit):])
