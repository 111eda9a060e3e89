"""``PostgresStore``: the server's state in PostgreSQL (psycopg 3), shared by any number of server processes.

Needs the ``postgres`` extra (``pip install 'workstate[postgres]'``); ``workstate serve --db postgresql://...``
runs on it. It implements :class:`workstate.api.store.Store` (read that module's docstring for the contract):

- **One transaction per request**, ``READ COMMITTED``, on a connection of the store's pool (one thread per
  transaction; :meth:`PostgresStore.begin` takes an idle connection or opens one, ``commit``/``rollback``
  give it back, a broken one is closed and dropped).
- **Compare-and-set on** ``version``: ``UPDATE ... WHERE env_id = %s AND id = %s AND version = %s``; no row
  updated is a :class:`~workstate.api.store.StoreConflict`, and so is every serialization failure, deadlock,
  lock timeout and unique violation the database reports (the server retries the whole request from a fresh
  read). Under ``READ COMMITTED`` an update that waited for a concurrent one re-reads the row's version, so two
  processes can never both apply a change to one item: the second finds the version moved.
- **Poll candidates** and **due items** are read ``FOR UPDATE SKIP LOCKED``: a row another transaction holds is
  being changed by it (its compare-and-set fences this one anyway), so concurrent polls and sweeps spread over
  different rows instead of queueing behind each other, and the sweep is safe in any number of processes.
- **Rows** (``workstate_items``): the item's full ``workstate.record.to_record`` as ``json`` (the truth), beside
  the columns that only narrow and order: ``env_id``, ``id``, ``state``, ``created_at``, ``delivered_at``,
  ``deadline`` (integer microseconds since 1970, :func:`workstate.api.store.micros`), ``session_id``, ``live``,
  ``version`` and the delivery ``secret``. Ids and worker ids compare byte-wise (``COLLATE "C"``), as Python
  compares them, whatever the database's collation. Indexes: creation order of queued items per environment,
  delivery time of delivered queued items, deadline, session (unique where live: one live item per session,
  across processes).
- **Schema and migrations**: :data:`SCHEMA_STEPS` are numbered DDL steps; ``workstate_schema`` holds the numbers
  applied. Opening a store applies the missing steps in order, under a transaction-scoped advisory lock (so
  several processes starting at once do not race), every statement idempotent (``IF NOT EXISTS``). A database
  whose schema is newer than this release knows is refused. A release that changes the tables appends a step
  (0.2: step 2, ...); a release that changes the record raises ``workstate.record.RECORD_SCHEMA`` and adds a
  migration to ``workstate.record.MIGRATIONS``, which ``from_record`` applies to old rows as they are read (the
  next write stores them in the new schema), so no step needs to rewrite the records.
- ``workers_polling`` counts the polls stamped after ``max(now, newest stamp) - window``; the polls the window
  left behind are deleted when a poll moves the newest stamp on (rows another transaction holds are skipped:
  pruning is housekeeping, never what a count relies on).

Environments never change once created, so the store remembers those it has read (in any process, a cached
environment is still exactly what the database holds).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Json

from ..api.index import CreationKey
from ..api.store import (
    EnvironmentKind,
    QueueCounts,
    StoreConflict,
    StoredEnvironment,
    micros,
)
from ..errors import InvalidInput
from ..model import WorkItem
from ..record import from_record, to_record
from ..rules import State

__all__ = ["SCHEMA_STEPS", "SCHEMA_VERSION", "PostgresStore", "PostgresTransaction"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUEUED = State.QUEUED.value
_LOCK_KEY = 0x776F726B7374  # pg_advisory_xact_lock key of schema creation ("workst")

SCHEMA_STEPS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS workstate_environments (
                id text COLLATE "C" PRIMARY KEY,
                kind text NOT NULL,
                created_at bigint NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS workstate_items (
                env_id text COLLATE "C" NOT NULL REFERENCES workstate_environments (id),
                id text COLLATE "C" NOT NULL,
                state text NOT NULL,
                created_at bigint NOT NULL,
                delivered_at bigint,
                deadline bigint,
                session_id text COLLATE "C" NOT NULL,
                live boolean NOT NULL,
                version bigint NOT NULL,
                secret text,
                record json NOT NULL,
                PRIMARY KEY (env_id, id)
            )""",
            # a poll's candidates: queued items of an environment in creation order
            """CREATE INDEX IF NOT EXISTS workstate_items_queue
                ON workstate_items (env_id, created_at, id) WHERE state = 'queued'""",
            # stats' pending count and the reclaimable ones: delivered queued items by delivery time
            """CREATE INDEX IF NOT EXISTS workstate_items_delivered
                ON workstate_items (env_id, delivered_at) WHERE state = 'queued' AND delivered_at IS NOT NULL""",
            # the sweep: items by deadline
            """CREATE INDEX IF NOT EXISTS workstate_items_deadline
                ON workstate_items (deadline) WHERE deadline IS NOT NULL""",
            # a session has one live item at most, whichever process writes it
            """CREATE UNIQUE INDEX IF NOT EXISTS workstate_items_live_session
                ON workstate_items (session_id) WHERE live""",
            """CREATE TABLE IF NOT EXISTS workstate_polls (
                env_id text COLLATE "C" NOT NULL,
                worker text COLLATE "C" NOT NULL,
                stamp bigint NOT NULL,
                PRIMARY KEY (env_id, worker)
            )""",
            "CREATE INDEX IF NOT EXISTS workstate_polls_stamp ON workstate_polls (env_id, stamp)",
        ),
    ),
)
"""The numbered DDL steps of the schema, in order (each idempotent); ``workstate_schema`` records those applied."""

SCHEMA_VERSION = SCHEMA_STEPS[-1][0]
"""The schema this release writes (the last step's number)."""

_CONFLICTS: tuple[type[Exception], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.UniqueViolation,
    pg_errors.ForeignKeyViolation,
)

_ITEM = "SELECT record FROM workstate_items WHERE env_id = %s AND id = %s"
_INSERT = """INSERT INTO workstate_items
    (env_id, id, state, created_at, delivered_at, deadline, session_id, live, version, record)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
_UPDATE = """UPDATE workstate_items
    SET state = %s, delivered_at = %s, deadline = %s, session_id = %s, live = %s, version = %s, record = %s
    WHERE env_id = %s AND id = %s AND version = %s"""
_CANDIDATES_FIRST = """SELECT record FROM workstate_items
    WHERE env_id = %s AND state = 'queued' AND (delivered_at IS NULL OR delivered_at <= %s)
    ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED"""
_CANDIDATES_AFTER = """SELECT record FROM workstate_items
    WHERE env_id = %s AND state = 'queued' AND (delivered_at IS NULL OR delivered_at <= %s)
    AND (created_at, id) > (%s, %s)
    ORDER BY created_at, id LIMIT %s FOR UPDATE SKIP LOCKED"""
_DUE = """SELECT env_id, record FROM workstate_items WHERE deadline <= %s
    ORDER BY deadline LIMIT %s FOR UPDATE SKIP LOCKED"""
# One round trip: stamp the poll at max(now, the newest stamp) and, when that moved the newest stamp on, forget the
# polls the window left behind (rows another transaction holds are skipped: pruning is housekeeping, never what a
# count relies on). The DELETE reads the snapshot before the upsert, so it leaves the polling worker's row alone.
_POLL = """WITH newest AS (SELECT max(stamp) AS m FROM workstate_polls WHERE env_id = %(env)s),
stamped AS (
    INSERT INTO workstate_polls AS p (env_id, worker, stamp)
    SELECT %(env)s, %(worker)s, GREATEST(%(now)s, coalesce(newest.m, %(now)s)) FROM newest
    ON CONFLICT (env_id, worker) DO UPDATE SET stamp = GREATEST(EXCLUDED.stamp, p.stamp)
    RETURNING stamp)
DELETE FROM workstate_polls WHERE ctid IN (
    SELECT q.ctid FROM workstate_polls AS q, newest, stamped
    WHERE q.env_id = %(env)s AND q.worker <> %(worker)s AND newest.m IS NOT NULL AND stamped.stamp <> newest.m
    AND q.stamp <= stamped.stamp - %(window)s
    FOR UPDATE OF q SKIP LOCKED)"""


def _instant(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else micros(instant)


def _window(window: timedelta) -> int:
    return window // timedelta(microseconds=1)


@contextmanager
def _fenced() -> Iterator[None]:
    """Turn the database's refusals of a transaction into :class:`StoreConflict` (the server retries)."""
    try:
        yield
    except _CONFLICTS as exc:
        raise StoreConflict(f"the database refused the transaction: {type(exc).__name__}: {exc}") from exc


class PostgresTransaction:
    """One request's transaction on one connection of a :class:`PostgresStore` (see ``workstate.api.store``)."""

    __slots__ = ("_conn", "_cur", "_store")

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn = conn
        self._cur = conn.cursor()

    def _one(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        with _fenced():
            self._cur.execute(sql, params)
            return self._cur.fetchone()

    def _run(self, sql: str, params: Sequence[object] | dict[str, object]) -> int:
        with _fenced():
            self._cur.execute(sql, params)
        return self._cur.rowcount

    def _all(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        with _fenced():
            self._cur.execute(sql, params)
            return self._cur.fetchall()

    # --- the transaction ---

    def commit(self) -> None:
        try:
            with _fenced():
                self._conn.commit()
        finally:
            self._store._give_back(self._conn)

    def rollback(self) -> None:
        try:
            self._conn.rollback()
        except psycopg.Error:  # the connection broke (the server went away): drop it; the caller's error stands
            self._conn.close()
        finally:
            self._store._give_back(self._conn)

    # --- environments ---

    def environment(self, env_id: str) -> StoredEnvironment | None:
        known = self._store._environments.get(env_id)
        if known is not None:
            return known
        row = self._one("SELECT kind, created_at FROM workstate_environments WHERE id = %s", (env_id,))
        if row is None:
            return None
        found = StoredEnvironment(env_id, EnvironmentKind(row[0]), _instant(row[1]))
        self._store._environments[env_id] = found
        return found

    def environments(self) -> list[StoredEnvironment]:
        rows = self._all("SELECT id, kind, created_at FROM workstate_environments ORDER BY id", ())
        return [StoredEnvironment(row[0], EnvironmentKind(row[1]), _instant(row[2])) for row in rows]

    def add_environment(self, env_id: str, kind: EnvironmentKind, created_at: datetime) -> None:
        added = self._run(
            "INSERT INTO workstate_environments (id, kind, created_at) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (env_id, EnvironmentKind(kind).value, micros(created_at)),
        )
        if added != 1:
            raise StoreConflict(f"environment {env_id} exists already", param="env")

    # --- items ---

    def item(self, env_id: str, work_id: str) -> WorkItem | None:
        row = self._one(_ITEM, (env_id, work_id))
        return None if row is None else from_record(row[0])

    def items(self, env_id: str) -> list[WorkItem]:
        rows = self._all("SELECT record FROM workstate_items WHERE env_id = %s ORDER BY id", (env_id,))
        return [from_record(row[0]) for row in rows]

    def live_item(self, session_id: str) -> str | None:
        row = self._one("SELECT id FROM workstate_items WHERE session_id = %s AND live", (session_id,))
        return None if row is None else str(row[0])

    def put(self, env_id: str, new: WorkItem, expected: int | None, deadline: datetime | None) -> None:
        queued = new.state.value == _QUEUED
        delivered = _micros(new.delivered_at) if queued else None
        record = Json(to_record(new))
        if expected is None:
            self._run(
                _INSERT,
                (
                    env_id,
                    new.id,
                    new.state.value,
                    micros(new.created_at),
                    delivered,
                    _micros(deadline),
                    new.session_id,
                    new.live,
                    new.version,
                    record,
                ),
            )
            return
        updated = self._run(
            _UPDATE,
            (
                new.state.value,
                delivered,
                _micros(deadline),
                new.session_id,
                new.live,
                new.version,
                record,
                env_id,
                new.id,
                expected,
            ),
        )
        if updated != 1:
            raise StoreConflict(f"work item {new.id} changed since it was read", param="id")

    # --- the queue ---

    def candidates(
        self, env_id: str, delivered_until: datetime | None, after: CreationKey | None, limit: int
    ) -> list[WorkItem]:
        until = _micros(delivered_until)  # None: never-delivered items only (delivered_at <= NULL is never true)
        if after is None:
            rows = self._all(_CANDIDATES_FIRST, (env_id, until, limit))
        else:
            rows = self._all(_CANDIDATES_AFTER, (env_id, until, micros(after[0]), after[1], limit))
        return [from_record(row[0]) for row in rows]

    def queue_counts(self, env_id: str, delivered_until: datetime | None) -> QueueCounts:
        until = _micros(delivered_until)
        row = self._one(
            """SELECT count(*) FILTER (WHERE delivered_at IS NULL),
                      count(delivered_at),
                      count(*) FILTER (WHERE delivered_at <= %s),
                      min(created_at)
               FROM workstate_items WHERE env_id = %s AND state = 'queued'""",
            (until, env_id),
        )
        assert row is not None
        return QueueCounts(int(row[0]), int(row[1]), int(row[2]), None if row[3] is None else _instant(row[3]))

    def page(self, env_id: str, after: str | None, before: str | None, count: int) -> list[WorkItem]:
        if before is not None:
            rows = self._all(
                "SELECT record FROM workstate_items WHERE env_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
                (env_id, before, count),
            )
            rows.reverse()
        elif after is not None:
            rows = self._all(
                "SELECT record FROM workstate_items WHERE env_id = %s AND id > %s ORDER BY id LIMIT %s",
                (env_id, after, count),
            )
        else:
            rows = self._all(
                "SELECT record FROM workstate_items WHERE env_id = %s ORDER BY id LIMIT %s", (env_id, count)
            )
        return [from_record(row[0]) for row in rows]

    # --- time ---

    def due(self, now: datetime, limit: int) -> list[tuple[str, WorkItem]]:
        rows = self._all(_DUE, (micros(now), limit))
        return [(str(row[0]), from_record(row[1])) for row in rows]

    def next_deadline(self) -> datetime | None:
        row = self._one("SELECT min(deadline) FROM workstate_items WHERE deadline IS NOT NULL", ())
        return None if row is None or row[0] is None else _instant(row[0])

    # --- polls and secrets ---

    def record_poll(self, env_id: str, worker: str, now: datetime, window: timedelta) -> None:
        self._store.polling_window = window
        self._run(_POLL, {"env": env_id, "worker": worker, "now": micros(now), "window": _window(window)})

    def workers_polling(self, env_id: str, now: datetime, window: timedelta) -> int:
        self._store.polling_window = window
        row = self._one(
            """SELECT count(*) FROM workstate_polls
               WHERE env_id = %s AND stamp > GREATEST(%s, (SELECT max(stamp) FROM workstate_polls WHERE env_id = %s))
                     - %s""",
            (env_id, micros(now), env_id, _window(window)),
        )
        return 0 if row is None else int(row[0])

    def polls(self, env_id: str) -> list[tuple[str, datetime]]:
        rows = self._all(
            """SELECT worker, stamp FROM workstate_polls WHERE env_id = %s
               AND stamp > (SELECT max(stamp) FROM workstate_polls WHERE env_id = %s) - %s ORDER BY worker""",
            (env_id, env_id, _window(self._store.polling_window)),
        )
        return [(str(row[0]), _instant(row[1])) for row in rows]

    def secret(self, env_id: str, work_id: str) -> str | None:
        row = self._one("SELECT secret FROM workstate_items WHERE env_id = %s AND id = %s", (env_id, work_id))
        return None if row is None or row[0] is None else str(row[0])

    def set_secret(self, env_id: str, work_id: str, secret: str | None) -> None:
        self._run("UPDATE workstate_items SET secret = %s WHERE env_id = %s AND id = %s", (secret, env_id, work_id))


class PostgresStore:
    """The server's state in the PostgreSQL database at ``dsn`` (a ``postgresql://`` URL or a libpq string).

    Opening it creates or upgrades the schema (:data:`SCHEMA_STEPS`) unless ``create`` is False. Connections are
    opened as transactions need them and kept for the next (at most ``keep`` idle ones); :meth:`close` closes
    them. ``polling_window`` is the window :meth:`PostgresTransaction.polls` keeps (the server's
    ``workers_polling`` window; 30 s, the spec's, by default; a poll or a stats count sets it to the window the
    server passes).
    """

    def __init__(
        self,
        dsn: str,
        *,
        create: bool = True,
        keep: int = 16,
        polling_window: timedelta = timedelta(seconds=30),
    ) -> None:
        self.dsn = dsn
        self.polling_window = polling_window
        self._keep = keep
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._environments: dict[str, StoredEnvironment] = {}
        self._closed = False
        if create:
            try:
                self.create_schema()
            except psycopg.OperationalError as exc:  # no server there, refused, unknown database or role
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InvalidInput(f"cannot open the PostgreSQL database: {message}", param="db") from exc

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=False)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        usable = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._lock:
            if usable and not self._closed and len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()

    def begin(self) -> PostgresTransaction:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        return PostgresTransaction(self, conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- the schema ---

    def schema_version(self) -> int:
        """The newest schema step applied to the database (0: none)."""
        with self._connect() as conn:
            exists = conn.execute("SELECT to_regclass('workstate_schema') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return 0
            row = conn.execute("SELECT coalesce(max(version), 0) FROM workstate_schema").fetchone()
            return 0 if row is None else int(row[0])

    def create_schema(self) -> int:
        """Apply the missing :data:`SCHEMA_STEPS` (all of them on an empty database); return the schema version.

        Safe in any number of processes at once (a transaction-scoped advisory lock serializes them). Raises
        :class:`~workstate.errors.InvalidInput` for a database whose schema is newer than this release's (so does
        opening the store, also when the database cannot be reached)."""
        with self._connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS workstate_schema"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM workstate_schema").fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise InvalidInput(
                    f"the database's workstate schema is version {current}; this release knows {SCHEMA_VERSION}",
                    param="db",
                )
            for number, statements in SCHEMA_STEPS:
                if number > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO workstate_schema (version) VALUES (%s)", (number,))
        return SCHEMA_VERSION

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
