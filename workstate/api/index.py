"""The ordered indexes the server keeps over one environment's items, so no request scans them.

- :class:`FreshQueue`: the queued items never delivered, oldest first by creation (a poll's first
  candidates, stats' depth).
- :class:`Delivered`: the queued items a poll delivered, by delivery time, answering "the oldest by
  creation among those delivered at or before ``t``" (the item a poll with a reclaim window takes) and
  "how many were delivered at or before ``t``" (stats' pending) in O(log n).
- :class:`Polls`: the Worker-IDs that polled, by their latest poll, inside the workers-polling window.

Each holds keys and ids only; the items themselves stay in the environment's map. None of them
reads a clock: every instant comes in as an argument.

Why :class:`Delivered` is a hand-written treap and not a ``sortedcontainers.SortedList`` (issue 12
asks for the library unless a benchmark shows the tree is needed): a ``SortedList`` keyed by delivery
time answers the count in O(log n), but "the oldest by creation among those delivered by ``t``" only
by scanning the prefix; keyed by creation, only by stepping over every older item delivered after
``t`` (and since a poll reclaims the oldest first, those are the oldest keys). The prefix is every
pending item a poll may reclaim, which after an outage or under crashed workers is most of them. A
frontier that moves items into a "reclaimable" list as the cutoff passes them would need a cutoff
that only moves forward; this one does not (the reclaim window is chosen per poll, stats use the
policy's, and ``now`` may go back). The treap keeps the size and the oldest key of every subtree, so
both questions cost one walk down the tree. ``benchmarks/bench_index.py`` measured it, interleaved
with the best ``SortedList`` readings: with a backlog of reclaimable items the best one costs 2x the
treap at 1,000 pending items, 12x at 10,000 and about 180x at 100,000 (4.5 ms a poll against 25 us);
with almost nothing reclaimable it is faster, by 2x to 2.5x, where both cost 5 to 20 us a poll. The
figures are in ``docs/performance.md`` ("Ordered indexes: hand-written treap vs sortedcontainers").
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TypeAlias

from ..model import WorkItem
from ..rules import State

__all__ = ["CreationKey", "Delivered", "FreshQueue", "Polls", "is_fresh"]

_QUEUED = State.QUEUED

CreationKey: TypeAlias = tuple[datetime, str]
"""``(created_at, id)`` of an item: sorting by it is creation order, the order a poll serves."""


def is_fresh(item: WorkItem | None) -> bool:
    """Whether ``item`` is queued and was never delivered (None is not)."""
    return item is not None and item.state is _QUEUED and item.delivered_at is None


# --- the queued items never delivered ---------------------------------------------------------------------


class FreshQueue:
    """Queued items never delivered ("fresh"), oldest first by creation.

    Those created in creation order sit in a deque; the rest (created out of order, or re-queued by a
    lapse) in a heap. Entries are dropped lazily, when their item is no longer fresh in ``items`` (the
    environment's map of items by id, passed to every call that reads one): taking an item out costs one
    decrement (:meth:`drop`).
    """

    __slots__ = ("_count", "_fresh", "_requeued", "_tail")

    def __init__(self) -> None:
        self._fresh: deque[str] = deque()
        self._tail: CreationKey | None = None
        self._requeued: list[CreationKey] = []
        self._count = 0

    def __len__(self) -> int:
        """How many items are fresh."""
        return self._count

    def oldest(self, items: Mapping[str, WorkItem]) -> WorkItem | None:
        """The oldest fresh item by creation, or None."""
        fresh, heap = self._fresh, self._requeued
        while fresh:
            item = items[fresh[0]]
            if item.state is _QUEUED and item.delivered_at is None:
                break
            fresh.popleft()
        while heap:
            item = items[heap[0][1]]
            if item.state is _QUEUED and item.delivered_at is None:
                break
            heapq.heappop(heap)
        first = items[fresh[0]] if fresh else None
        if not heap:
            return first
        second = items[heap[0][1]]
        if first is None or (second.created_at, second.id) < (first.created_at, first.id):
            return second
        return first

    def add(self, item: WorkItem, items: Mapping[str, WorkItem]) -> None:
        """``item`` (already in ``items``) became fresh."""
        key = (item.created_at, item.id)
        self._count += 1
        if self._tail is None or key > self._tail:
            self._fresh.append(item.id)
            self._tail = key
            return
        heapq.heappush(self._requeued, key)
        if len(self._requeued) > 2 * self._count + 64:  # drop stale and repeated entries, amortized O(1)
            self._requeued = sorted(
                {k for k in self._requeued if items[k[1]].state is _QUEUED and items[k[1]].delivered_at is None}
            )

    def drop(self) -> None:
        """An item added before is fresh no more: it stops counting now; its entry goes when it reaches the front."""
        self._count -= 1


# --- the index of delivered, unacked items ----------------------------------------------------------------


class _Node:
    __slots__ = ("at", "key", "least", "left", "prio", "right", "size")

    def __init__(self, at: datetime, key: CreationKey, prio: int) -> None:
        self.at = at
        self.key = key
        self.prio = prio
        self.left: _Node | None = None
        self.right: _Node | None = None
        self.least = key
        self.size = 1


def _fix(node: _Node) -> _Node:
    least, size = node.key, 1
    for child in (node.left, node.right):
        if child is not None:
            size += child.size
            if child.least < least:
                least = child.least
    node.least, node.size = least, size
    return node


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        a.right = _merge(a.right, b)
        return _fix(a)
    b.left = _merge(a, b.left)
    return _fix(b)


def _split(node: _Node | None, at: datetime, key: CreationKey) -> tuple[_Node | None, _Node | None]:
    """(nodes ordered before (at, key), the rest)."""
    if node is None:
        return None, None
    if (node.at, node.key) < (at, key):
        node.right, rest = _split(node.right, at, key)
        return _fix(node), rest
    before, node.left = _split(node.left, at, key)
    return before, _fix(node)


def _remove(node: _Node | None, at: datetime, key: CreationKey) -> _Node | None:
    if node is None:
        raise KeyError(key)
    if node.at == at and node.key == key:
        return _merge(node.left, node.right)
    if (at, key) < (node.at, node.key):
        node.left = _remove(node.left, at, key)
    else:
        node.right = _remove(node.right, at, key)
    return _fix(node)


class Delivered:
    """Queued items a poll delivered, ordered by delivery time (a treap).

    Each subtree knows its size and its oldest item by creation order, so "the oldest item
    delivered at or before t" and "how many were delivered at or before t" cost O(log n) however
    many items are pending. Priorities come from a counter (deterministic; no randomness).
    """

    __slots__ = ("_seq", "root")

    def __init__(self) -> None:
        self.root: _Node | None = None
        self._seq = 0

    def __len__(self) -> int:
        return 0 if self.root is None else self.root.size

    def insert(self, at: datetime, key: CreationKey) -> None:
        self._seq += 1
        node = _Node(at, key, (self._seq * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        before, rest = _split(self.root, at, key)
        self.root = _merge(_merge(before, node), rest)

    def remove(self, at: datetime, key: CreationKey) -> None:
        self.root = _remove(self.root, at, key)

    def oldest(self, until: datetime | None = None) -> CreationKey | None:
        """The oldest (by creation) item delivered at or before ``until`` (of every item when None)."""
        node = self.root
        if until is None or node is None:
            return None if node is None else node.least
        best: CreationKey | None = None
        while node is not None:
            if node.at <= until:
                found = node.key if node.left is None or node.key < node.left.least else node.left.least
                if best is None or found < best:
                    best = found
                node = node.right
            else:
                node = node.left
        return best

    def count(self, until: datetime) -> int:
        """How many items were delivered at or before ``until``."""
        node, total = self.root, 0
        while node is not None:
            if node.at <= until:
                total += 1 + (0 if node.left is None else node.left.size)
                node = node.right
            else:
                node = node.left
        return total


# --- the Worker-IDs that polled ----------------------------------------------------------------------------


class Polls:
    """One environment's Worker-IDs and their latest poll, keeping only those inside the polling window.

    Polls are stamped like an item's timeline: at ``now``, or at the newest stamp when ``now`` is behind it,
    so stamps never go backwards and the record, each id moved to its end when it polls, stays ordered by
    stamp. Stats count the ids stamped less than the window before ``now`` or the newest stamp, whichever is
    later; so an id stamped ``window`` or more before the newest can never count again, and is forgotten
    when a poll moves the newest stamp on. Memory is the ids of one window; a count reads at most those.
    """

    __slots__ = ("_latest", "_window")

    def __init__(self, window: timedelta) -> None:
        self._window = window
        self._latest: OrderedDict[str, datetime] = OrderedDict()  # Worker-ID -> stamp, oldest first

    def __len__(self) -> int:
        return len(self._latest)

    def items(self) -> Iterable[tuple[str, datetime]]:
        return self._latest.items()

    def newest(self) -> datetime | None:
        latest = self._latest
        return latest[next(reversed(latest))] if latest else None

    def record(self, worker: str, now: datetime, window: timedelta | None = None) -> None:
        """``worker`` polled at ``now`` (``window``: the polling window, when not the one this was made with)."""
        latest = self._latest
        newest = self.newest()
        stamp = now if newest is None or now > newest else newest
        latest[worker] = stamp
        latest.move_to_end(worker)
        if newest is None or stamp == newest:
            return  # the window did not move: nothing left it
        cutoff = stamp - (self._window if window is None else window)
        while True:  # the first id is the oldest: forget every one the window left behind (never `worker`)
            oldest = next(iter(latest))
            if latest[oldest] > cutoff:
                return
            del latest[oldest]

    def count(self, now: datetime, window: timedelta | None = None) -> int:
        """How many ids are stamped less than the window before ``now`` or the newest stamp, whichever is later."""
        latest = self._latest
        newest = self.newest()
        if newest is None or now <= newest:
            return len(latest)  # everything kept is inside the window before the newest stamp
        cutoff, found = now - (self._window if window is None else window), 0
        for worker in reversed(latest):  # newest first: stop at the first one outside the window
            if latest[worker] <= cutoff:
                break
            found += 1
        return found
