"""The store protocol the :class:`~workstate.api.Server` runs on, and :class:`MemoryStore`, the in-memory one.

The server is a pure function of what the store holds: per request it opens one transaction
(:meth:`Store.begin`), reads what the request needs, decides with :func:`workstate.step` and writes with
**compare-and-set on** ``version``; then commits. A store never decides an outcome: it narrows candidates
(which queued items a poll may look at, which items are due to lapse, which rows a page holds) and counts;
every rule is the server's ``step``. This module is pure (no I/O): the database stores live in
:mod:`workstate.stores` (``sqlite.py``, ``postgres.py``).

How to implement a store (everything a ``PostgresStore`` needs; :class:`MemoryStore` and
``workstate.stores.sqlite.SqliteStore`` are the worked examples, ``tests/api/test_store.py`` the checks):

**Transactions.** ``Store.begin()`` returns a :class:`Transaction`; the server calls reads and writes on it,
then exactly one of ``commit()`` or ``rollback()``. Isolation must make compare-and-set sound: a ``put`` whose
row no longer has the version the transaction read raises :class:`StoreConflict` (so does any
serialization failure, deadlock, lock timeout or unique violation the database reports: map them all to
``StoreConflict``); the server then rolls back and retries the whole request from a fresh read, a bounded
number of times (``Server(retries=...)``), then answers 503. ``READ COMMITTED`` plus the version check in the
``UPDATE ... WHERE version = %s`` is enough; ``begin`` may also take a lock (SQLite: ``BEGIN IMMEDIATE``).
A transaction is used by one thread; ``Store.close()`` releases connections. Calls that only read still run
in a transaction and are committed (expiry may have written).

**Values.** Items are frozen :class:`~workstate.WorkItem` values; store ``workstate.record.to_record(item)``
(as JSON/JSONB: the truth) and rebuild with ``from_record``. Columns beside it only narrow and order:
``env_id``, ``id``, ``state`` (its value), ``created_at``, ``delivered_at``, ``deadline``, ``session_id``,
``live`` (``item.live``), ``version`` (``item.version``) and the delivery ``secret`` (text or NULL, not part
of the item). Instants as columns should sort in time order: ``workstate.stores`` uses integer microseconds
since the epoch (:func:`micros`). Item keys are ``(env_id, id)``. Environments are
``(id, kind, created_at)`` (:class:`StoredEnvironment`); polls are ``(env_id, worker, stamp)``.

**The methods** (all on :class:`Transaction`; "creation order" is ``(created_at, id)`` ascending):

- ``environment(env_id)`` -> :class:`EnvironmentInfo` or None; ``environments()`` -> all, ascending id;
  ``add_environment(env_id, kind, created_at)`` (a :class:`StoreConflict` when the id exists).
- ``item(env_id, work_id)`` -> the item or None; ``items(env_id)`` -> every item, ascending id.
- ``live_item(session_id)`` -> the id of the session's live item in any environment, or None (at most one:
  a unique index on ``session_id WHERE live`` enforces it across processes; a violation is a conflict).
- ``put(env_id, new, expected, deadline)``: compare-and-set. ``expected`` None: insert (the row must not
  exist, else ``StoreConflict``); else update the row ``(env_id, new.id)`` only if its ``version`` is
  ``expected`` (the version read), else ``StoreConflict``. ``deadline`` is
  ``workstate.next_deadline(new, policy)`` (or None), computed by the server: store it for :meth:`due`.
  ``put`` leaves the row's ``secret`` as it was.
- ``candidates(env_id, delivered_until, after, limit)`` -> up to ``limit`` queued items of the environment in
  creation order, strictly after the creation key ``after`` (None: from the first), that are never
  delivered (``delivered_at IS NULL``) or, unless ``delivered_until`` is None, delivered at or before it
  (``delivered_at <= delivered_until``; :data:`FOREVER` means every delivered one). It only narrows: the
  server runs ``step(item, Deliver(...))`` on each in turn and takes the first accepted; an empty answer
  means there are no more. A store may answer fewer than ``limit`` (MemoryStore answers one from its
  indexes, then scans), never skip one. PostgreSQL: ``FOR UPDATE SKIP LOCKED`` is allowed (a locked row is
  being changed by another transaction, whose compare-and-set will fence this one anyway).
- ``queue_counts(env_id, delivered_until)`` -> :class:`QueueCounts` of the queued items: never delivered,
  delivered, delivered at or before ``delivered_until`` (None: zero; FOREVER: all), and the oldest
  ``created_at`` among queued ones. Stats are computed from it by the server.
- ``page(env_id, after, before, count)`` -> up to ``count`` items ascending by id: with ``before`` the last
  ``count`` whose id is ``< before``; else the first ``count`` whose id is ``> after`` (None: from the first).
- ``due(now, limit)`` -> up to ``limit`` ``(env_id, item)`` whose stored deadline is ``<= now``, earliest
  deadline first; ``next_deadline()`` -> the earliest stored deadline, or None. The server steps ``Lapse``
  on each and puts the result (compare-and-set), in any number of processes at once.
- ``record_poll(env_id, worker, now, window)`` and ``workers_polling(env_id, now, window)``; ``polls(env_id)``
  -> the kept ``(worker, stamp)``, ascending worker. The semantics (exactly those of
  :class:`~workstate.api.index.Polls`): a poll is stamped ``max(now, newest stamp of the environment)``
  and upserted; when that moved the newest stamp, every poll stamped ``<= stamp - window`` is deleted.
  ``workers_polling``: with no polls 0; if ``now <= newest`` the number kept; else those stamped
  ``> now - window``.
- ``secret(env_id, work_id)`` / ``set_secret(env_id, work_id, secret_or_None)``: the latest delivery's secret.

Stores never see the policy: the server passes deadlines, windows and cutoffs. Ids are not the store's
business either: the server takes an id source (``Server(ids=...)``); on a database shared by processes give
it one that cannot collide (``workstate.stores.RandomIds``).
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from ..errors import WorkstateError
from ..model import WorkItem
from ..rules import State
from .index import CreationKey, Delivered, FreshQueue, Polls

__all__ = [
    "FOREVER",
    "Environment",
    "EnvironmentInfo",
    "EnvironmentKind",
    "MemoryStore",
    "QueueCounts",
    "Store",
    "StoreConflict",
    "StoredEnvironment",
    "Transaction",
    "micros",
]

_QUEUED = State.QUEUED
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

FOREVER = datetime.max.replace(tzinfo=UTC)
"""``delivered_until`` meaning "every delivered item" (a reclaim window of zero)."""

_DEFAULT_POLLING_WINDOW = timedelta(seconds=30)


def micros(instant: datetime) -> int:
    """``instant`` as integer microseconds since 1970 (UTC): the sortable column form of an instant."""
    return (instant - _EPOCH) // _MICRO


class StoreConflict(WorkstateError):
    """A compare-and-set found the row changed (or the database refused the transaction): retry from a fresh read."""

    status_hint = 503


class EnvironmentKind(enum.StrEnum):
    SELF_HOSTED = "self_hosted"
    CLOUD = "cloud"


class EnvironmentInfo(Protocol):
    """What the server reads about an environment."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> EnvironmentKind: ...
    @property
    def created_at(self) -> datetime: ...


@attrs.frozen
class StoredEnvironment:
    """An environment as a database store returns it."""

    id: str
    kind: EnvironmentKind
    created_at: datetime


@attrs.frozen
class QueueCounts:
    """The queued items of one environment, counted (see :meth:`Transaction.queue_counts`)."""

    fresh: int  # never delivered
    delivered: int  # delivered (and still queued: not acked)
    reclaimable: int  # delivered at or before the cutoff asked for
    oldest_created_at: datetime | None  # the oldest created_at among queued items


@runtime_checkable
class Transaction(Protocol):
    """One request's reads and writes (see the module docstring for each method's contract)."""

    def commit(self) -> None: ...
    def rollback(self) -> None: ...

    def environment(self, env_id: str) -> EnvironmentInfo | None: ...
    def environments(self) -> Sequence[EnvironmentInfo]: ...
    def add_environment(self, env_id: str, kind: EnvironmentKind, created_at: datetime) -> None: ...

    def item(self, env_id: str, work_id: str) -> WorkItem | None: ...
    def items(self, env_id: str) -> Sequence[WorkItem]: ...
    def live_item(self, session_id: str) -> str | None: ...
    def put(self, env_id: str, new: WorkItem, expected: int | None, deadline: datetime | None) -> None: ...

    def candidates(
        self, env_id: str, delivered_until: datetime | None, after: CreationKey | None, limit: int
    ) -> Sequence[WorkItem]: ...
    def queue_counts(self, env_id: str, delivered_until: datetime | None) -> QueueCounts: ...
    def page(self, env_id: str, after: str | None, before: str | None, count: int) -> Sequence[WorkItem]: ...

    def due(self, now: datetime, limit: int) -> Sequence[tuple[str, WorkItem]]: ...
    def next_deadline(self) -> datetime | None: ...

    def record_poll(self, env_id: str, worker: str, now: datetime, window: timedelta) -> None: ...
    def workers_polling(self, env_id: str, now: datetime, window: timedelta) -> int: ...
    def polls(self, env_id: str) -> Sequence[tuple[str, datetime]]: ...

    def secret(self, env_id: str, work_id: str) -> str | None: ...
    def set_secret(self, env_id: str, work_id: str, secret: str | None) -> None: ...


@runtime_checkable
class Store(Protocol):
    """Where a server keeps its state: :meth:`begin` opens a :class:`Transaction`."""

    def begin(self) -> Transaction: ...
    def close(self) -> None: ...


# --- the in-memory store --------------------------------------------------------------------------------


class Environment:
    """One environment's items and the indexes over them (all derived from ``items``, but ``polls``).

    :class:`MemoryStore`'s bookkeeping, public for subclasses of the server that override how a poll chooses
    or what stats count (the mutants of :mod:`workstate.testing.mutants` do); its fields may change.
    """

    __slots__ = ("created_at", "deadlines", "delivered", "fresh", "id", "items", "kind", "order", "polls")

    def __init__(self, env_id: str, kind: EnvironmentKind, created_at: datetime, polling_window: timedelta) -> None:
        self.id = env_id
        self.kind = kind
        self.created_at = created_at
        self.items: dict[str, WorkItem] = {}
        self.order: list[str] = []  # every id, ascending: the list endpoint
        self.fresh = FreshQueue()  # queued items never delivered
        self.delivered = Delivered()  # queued items delivered by a poll
        self.polls = Polls(polling_window)  # Worker-ID -> latest poll, inside the workers-polling window
        self.deadlines: dict[str, datetime] = {}  # work id -> its deadline as last put (items that have one)

    def oldest_queued(self) -> CreationKey | None:
        fresh = self.fresh.oldest(self.items)
        found = None if fresh is None else (fresh.created_at, fresh.id)
        delivered = self.delivered.oldest()
        if delivered is not None and (found is None or delivered < found):
            return delivered
        return found


class MemoryStore:
    """The in-memory store: today's indexes (:mod:`workstate.api.index`), O(log n) a request.

    It is its own transaction (:meth:`begin` returns it; ``commit`` and ``rollback`` do nothing): writes land
    at once and are not undone, which is sound because one server, in one thread, uses it, and the server
    writes only what it decided to keep (a rejected request writes nothing). ``polling_window`` is the window
    its :class:`~workstate.api.index.Polls` count with when asked without one (the server passes its own).
    """

    def __init__(self, polling_window: timedelta = _DEFAULT_POLLING_WINDOW) -> None:
        self.envs: dict[str, Environment] = {}
        self._polling_window = polling_window
        self.live: dict[str, str] = {}  # session id -> the id of its live item
        self._secrets: dict[tuple[str, str], str] = {}
        self.deadline_heap: list[tuple[datetime, str, str]] = []  # (deadline, work id, environment id): a heap
        self._timed = 0  # how many items have a deadline

    # --- Store ---

    def begin(self) -> MemoryStore:
        return self

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    # --- environments ---

    def environment(self, env_id: str) -> Environment | None:
        return self.envs.get(env_id)

    def environments(self) -> list[Environment]:
        return sorted(self.envs.values(), key=lambda e: e.id)

    def add_environment(self, env_id: str, kind: EnvironmentKind, created_at: datetime) -> None:
        if env_id in self.envs:
            raise StoreConflict(f"environment {env_id} exists already", param="env")
        self.envs[env_id] = Environment(env_id, kind, created_at, self._polling_window)

    # --- items ---

    def item(self, env_id: str, work_id: str) -> WorkItem | None:
        env = self.envs.get(env_id)
        return None if env is None else env.items.get(work_id)

    def items(self, env_id: str) -> list[WorkItem]:
        env = self.envs[env_id]
        return [env.items[i] for i in env.order]

    def live_item(self, session_id: str) -> str | None:
        return self.live.get(session_id)

    def put(self, env_id: str, new: WorkItem, expected: int | None, deadline: datetime | None) -> None:
        env = self.envs[env_id]
        items = env.items
        old = items.get(new.id)
        if (old is None) != (expected is None) or (old is not None and old.version != expected):
            raise StoreConflict(f"work item {new.id} changed since it was read", param="id")
        if old is None:
            order = env.order
            if not order or new.id > order[-1]:
                order.append(new.id)
            else:
                bisect.insort(order, new.id)
        items[new.id] = new
        # is_fresh(old), is_fresh(new) and the queued items' delivery instants, each field read once
        if old is None:
            was_fresh, old_at, old_live = False, None, False
        else:
            old_at = old.delivered_at if old.state is _QUEUED else None
            was_fresh = old.state is _QUEUED and old_at is None
            old_live = old.live
        new_at = new.delivered_at if new.state is _QUEUED else None
        now_fresh = new.state is _QUEUED and new_at is None
        if was_fresh and not now_fresh:
            env.fresh.drop()
        elif now_fresh and not was_fresh:
            env.fresh.add(new, items)
        if old_at != new_at:
            key = (new.created_at, new.id)
            if old_at is not None:
                env.delivered.remove(old_at, key)
            if new_at is not None:
                env.delivered.insert(new_at, key)
        deadlines = env.deadlines
        previous = deadlines.get(new.id)
        if deadline != previous:
            if deadline is None:
                del deadlines[new.id]
                self._timed -= 1
            else:
                if previous is None:
                    self._timed += 1
                deadlines[new.id] = deadline
                heapq.heappush(self.deadline_heap, (deadline, new.id, env_id))
                if len(self.deadline_heap) > 2 * self._timed + 64:
                    self._compact_deadlines()
        new_live = new.live
        if old is None or not old_live or old.session_id != new.session_id:  # the session index follows
            if old is not None and old_live:
                del self.live[old.session_id]  # it held this item: a session has one live item at most
            if new_live:
                self.live[new.session_id] = new.id
        elif not new_live:
            del self.live[old.session_id]

    def _valid(self, entry: tuple[datetime, str, str]) -> bool:
        return self.envs[entry[2]].deadlines.get(entry[1]) == entry[0]

    def _compact_deadlines(self) -> None:
        """Drop the entries of deadlines that moved (a heartbeat moves one every time): amortized O(1)."""
        self.deadline_heap = sorted({entry for entry in self.deadline_heap if self._valid(entry)})

    # --- the queue ---

    def candidates(
        self, env_id: str, delivered_until: datetime | None, after: CreationKey | None, limit: int
    ) -> list[WorkItem]:
        env = self.envs[env_id]
        if after is None:  # the indexes' answer: the oldest candidate, in O(log n)
            fresh = env.fresh.oldest(env.items)
            best = None if fresh is None else (fresh.created_at, fresh.id)
            if len(env.delivered) and delivered_until is not None:
                found = env.delivered.oldest(None if delivered_until is FOREVER else delivered_until)
                if found is not None and (best is None or found < best):
                    best = found
            return [] if best is None or limit < 1 else [env.items[best[1]]]
        # Past the first (only when the server's step declined it): a scan, in creation order.
        rest = sorted(
            (item for item in env.items.values() if _candidate(item, delivered_until, after)),
            key=lambda item: (item.created_at, item.id),
        )
        return rest[:limit]

    def queue_counts(self, env_id: str, delivered_until: datetime | None) -> QueueCounts:
        env = self.envs[env_id]
        delivered = len(env.delivered)
        if delivered_until is None:
            reclaimable = 0
        elif delivered_until is FOREVER:
            reclaimable = delivered
        else:
            reclaimable = env.delivered.count(delivered_until)
        oldest = env.oldest_queued()
        return QueueCounts(len(env.fresh), delivered, reclaimable, None if oldest is None else oldest[0])

    def page(self, env_id: str, after: str | None, before: str | None, count: int) -> list[WorkItem]:
        env = self.envs[env_id]
        order = env.order
        if before is not None:
            end = bisect.bisect_left(order, before)
            start = max(0, end - count)
        else:
            start = 0 if after is None else bisect.bisect_right(order, after)
            end = min(len(order), start + count)
        items = env.items
        return [items[i] for i in order[start:end]]

    # --- time ---

    def due(self, now: datetime, limit: int) -> list[tuple[str, WorkItem]]:
        heap = self.deadline_heap
        found: list[tuple[str, WorkItem]] = []
        while heap and heap[0][0] <= now and len(found) < limit:
            entry = heapq.heappop(heap)
            if self._valid(entry):
                found.append((entry[2], self.envs[entry[2]].items[entry[1]]))
        return found

    def next_deadline(self) -> datetime | None:
        heap = self.deadline_heap
        while heap:
            if self._valid(heap[0]):
                return heap[0][0]
            heapq.heappop(heap)
        return None

    # --- polls and secrets ---

    def record_poll(self, env_id: str, worker: str, now: datetime, window: timedelta) -> None:
        self.envs[env_id].polls.record(worker, now, window)

    def workers_polling(self, env_id: str, now: datetime, window: timedelta) -> int:
        return self.envs[env_id].polls.count(now, window)

    def polls(self, env_id: str) -> list[tuple[str, datetime]]:
        return sorted(self.envs[env_id].polls.items())

    def secret(self, env_id: str, work_id: str) -> str | None:
        return self._secrets.get((env_id, work_id))

    def set_secret(self, env_id: str, work_id: str, secret: str | None) -> None:
        if secret is None:
            self._secrets.pop((env_id, work_id), None)
        else:
            self._secrets[env_id, work_id] = secret


def _candidate(item: WorkItem, delivered_until: datetime | None, after: CreationKey) -> bool:
    if item.state is not _QUEUED or (item.created_at, item.id) <= after:
        return False
    at = item.delivered_at
    return at is None or (delivered_until is not None and at <= delivered_until)
