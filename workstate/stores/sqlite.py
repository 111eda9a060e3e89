"""``SqliteStore``: the server's state in one SQLite file (stdlib ``sqlite3``), the embedded store of
``workstate serve --db work.db``.

It implements :class:`workstate.api.store.Store` (read that module's docstring for the contract):

- **Durability**: ``journal_mode=WAL`` and ``synchronous=FULL``. In WAL mode ``NORMAL`` already keeps every
  committed transaction across a crash of the *process* (SIGKILL: the WAL is in the operating system's cache),
  but not across a power cut or a crash of the machine, where the last commits may be lost. A server answers
  200 only after its transaction committed, so with ``FULL`` (the WAL is fsynced at every commit) every change
  it answered survives either; ``SqliteStore(path, synchronous="NORMAL")`` trades the power-cut guarantee for
  speed. ``tests/stores/test_sqlite.py`` kills a server with SIGKILL under load and finds every answered change.
- **One transaction per request**: ``BEGIN IMMEDIATE`` takes SQLite's write lock at the start, so the requests
  of every process on the file are serialized (a read-only request, too: expiry may write); a process waits
  up to ``timeout`` seconds for the lock, then the request is a :class:`~workstate.api.store.StoreConflict`
  (the server retries it, then answers 503). Writes are still compare-and-set on ``version``
  (``UPDATE ... WHERE version = ?``; no row changed is a conflict), so the guarantee does not rest on the lock.
- **Rows**: ``workstate_items`` holds ``workstate.record.to_record(item)`` as JSON text (the truth) beside the
  columns that narrow and order (integer microseconds since 1970 for instants,
  :func:`workstate.api.store.micros`); ``workstate_environments``, ``workstate_polls`` (env, worker, latest
  stamp) and ``workstate_schema`` (the schema version). Indexes: creation order of queued items per
  environment, delivery time, deadlines, the live item of a session (unique: one live item per session,
  whatever the process).
- **Schema and migrations**: opening a store creates the tables if they are missing (``CREATE ... IF NOT
  EXISTS``, idempotent, in one transaction) and records :data:`SCHEMA_VERSION`. A later release that changes
  the tables adds its numbered DDL steps to :data:`MIGRATIONS` (``MIGRATIONS[n]`` upgrades version ``n`` to
  ``n + 1``) and raises the version; opening an older file applies them in order in one transaction. A file
  of a newer version than this release knows is refused. Records migrate on their own (``workstate.record``:
  each carries its schema, old ones are upgraded when read and rewritten by the next change). See
  ``docs/stores.md``.

One store is one connection, used by one thread at a time (the server's calls are serialized by its caller:
``workstate.asgi`` holds a lock); servers in other threads or processes open their own ``SqliteStore`` on the
same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..api.index import CreationKey
from ..api.store import EnvironmentKind, QueueCounts, StoreConflict, StoredEnvironment, micros
from ..errors import InvalidInput
from ..model import WorkItem
from ..record import from_record, record_json

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "SqliteStore", "SqliteTransaction"]

SCHEMA_VERSION = 1
"""The version of the tables this release creates (recorded in ``workstate_schema``)."""

SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS workstate_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS workstate_environments (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS workstate_items (
        env_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL,
        delivered_at INTEGER, deadline INTEGER, session_id TEXT NOT NULL, live INTEGER NOT NULL,
        version INTEGER NOT NULL, secret TEXT, record TEXT NOT NULL, PRIMARY KEY (env_id, id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS workstate_items_queue ON workstate_items (env_id, state, created_at, id)",
    "CREATE INDEX IF NOT EXISTS workstate_items_delivered ON workstate_items (env_id, state, delivered_at)",
    "CREATE INDEX IF NOT EXISTS workstate_items_deadline ON workstate_items (deadline) WHERE deadline IS NOT NULL",
    """CREATE UNIQUE INDEX IF NOT EXISTS workstate_items_live_session
        ON workstate_items (session_id) WHERE live = 1""",
    """CREATE TABLE IF NOT EXISTS workstate_polls (
        env_id TEXT NOT NULL, worker TEXT NOT NULL, stamp INTEGER NOT NULL, PRIMARY KEY (env_id, worker))
        WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS workstate_polls_stamp ON workstate_polls (env_id, stamp)",
)
"""The DDL of :data:`SCHEMA_VERSION`, each statement idempotent."""

MIGRATIONS: dict[int, tuple[str, ...]] = {}
"""``MIGRATIONS[n]``: the DDL statements that upgrade tables of version ``n`` to ``n + 1`` (none yet)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ITEM = "SELECT record FROM workstate_items WHERE env_id = ? AND id = ?"
_INSERT = """INSERT INTO workstate_items
    (env_id, id, state, created_at, delivered_at, deadline, session_id, live, version, record)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_DUE = "SELECT env_id, record FROM workstate_items WHERE deadline <= ? ORDER BY deadline, id, env_id LIMIT ?"
_UPDATE = """UPDATE workstate_items SET state = ?, delivered_at = ?, deadline = ?, session_id = ?, live = ?,
    version = ?, record = ? WHERE env_id = ? AND id = ? AND version = ?"""


def _instant(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


_PARSED = 4096  # how many parsed records a store keeps (items are frozen: a record's text names one item)


def _item(record: str, cache: dict[str, WorkItem]) -> WorkItem:
    """The item of a record's text; parsing costs tens of microseconds, so the items this process wrote or read
    last are kept by their text (the round trip ``from_record(to_record(item)) == item`` is tested in core)."""
    found = cache.get(record)
    if found is None:
        found = from_record(json.loads(record))
        if len(cache) >= _PARSED:
            cache.clear()
        cache[record] = found
    return found


def _record(item: WorkItem, rendered: dict[datetime, str]) -> str:
    """The record's text; ``rendered`` is the store's memo of instants (an item's are in each of its records)."""
    if len(rendered) >= _PARSED:
        rendered.clear()
    return record_json(item, rendered)


class SqliteTransaction:
    """One request's transaction on a :class:`SqliteStore` (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""

    __slots__ = ("_db", "_parsed", "_rendered", "_store")

    def __init__(self, store: SqliteStore, db: sqlite3.Connection) -> None:
        self._store = store
        self._db = db
        self._parsed = store._parsed
        self._rendered = store._rendered

    def commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StoreConflict(f"SQLite could not commit: {exc}") from exc

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # --- environments ---

    def environment(self, env_id: str) -> StoredEnvironment | None:
        known = self._store._environments.get(env_id)  # environments never change once added
        if known is not None:
            return known
        row = self._db.execute(
            "SELECT id, kind, created_at FROM workstate_environments WHERE id = ?", (env_id,)
        ).fetchone()
        return None if row is None else self._store._remember(row)

    def environments(self) -> list[StoredEnvironment]:
        rows = self._db.execute("SELECT id, kind, created_at FROM workstate_environments ORDER BY id").fetchall()
        return [self._store._remember(row) for row in rows]

    def add_environment(self, env_id: str, kind: EnvironmentKind, created_at: datetime) -> None:
        try:
            self._db.execute(
                "INSERT INTO workstate_environments (id, kind, created_at) VALUES (?, ?, ?)",
                (env_id, kind.value, micros(created_at)),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(f"environment {env_id} exists already", param="env") from exc

    # --- items ---

    def item(self, env_id: str, work_id: str) -> WorkItem | None:
        row = self._db.execute(_ITEM, (env_id, work_id)).fetchone()
        if row is None:
            return None
        found = self._parsed.get(row[0])
        return _item(row[0], self._parsed) if found is None else found

    def items(self, env_id: str) -> list[WorkItem]:
        rows = self._db.execute("SELECT record FROM workstate_items WHERE env_id = ? ORDER BY id", (env_id,))
        return [_item(row[0], self._parsed) for row in rows]

    def live_item(self, session_id: str) -> str | None:
        row = self._db.execute(
            "SELECT id FROM workstate_items WHERE session_id = ? AND live = 1", (session_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def put(self, env_id: str, new: WorkItem, expected: int | None, deadline: datetime | None) -> None:
        delivered = new.delivered_at
        record = _record(new, self._rendered)
        try:
            if expected is None:
                self._db.execute(
                    _INSERT,
                    (
                        env_id,
                        new.id,
                        new.state.value,
                        micros(new.created_at),
                        None if delivered is None else micros(delivered),
                        None if deadline is None else micros(deadline),
                        new.session_id,
                        1 if new.live else 0,
                        new.version,
                        record,
                    ),
                )
            elif (
                self._db.execute(
                    _UPDATE,
                    (
                        new.state.value,
                        None if delivered is None else micros(delivered),
                        None if deadline is None else micros(deadline),
                        new.session_id,
                        1 if new.live else 0,
                        new.version,
                        record,
                        env_id,
                        new.id,
                        expected,
                    ),
                ).rowcount
                != 1
            ):
                raise StoreConflict(f"work item {new.id} changed since it was read (version {expected})", param="id")
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(f"work item {new.id}: {exc}", param="id") from exc
        parsed = self._parsed
        if len(parsed) >= _PARSED:
            parsed.clear()
        parsed[record] = new

    # --- the queue ---

    def candidates(
        self, env_id: str, delivered_until: datetime | None, after: CreationKey | None, limit: int
    ) -> list[WorkItem]:
        sql = "SELECT record FROM workstate_items WHERE env_id = ? AND state = 'queued'"
        args: list[Any] = [env_id]
        if delivered_until is None:
            sql += " AND delivered_at IS NULL"
        else:
            sql += " AND (delivered_at IS NULL OR delivered_at <= ?)"
            args.append(micros(delivered_until))
        if after is not None:
            created = micros(after[0])
            sql += " AND (created_at > ? OR (created_at = ? AND id > ?))"
            args += [created, created, after[1]]
        sql += " ORDER BY created_at, id LIMIT ?"
        args.append(limit)
        return [_item(row[0], self._parsed) for row in self._db.execute(sql, args)]

    def queue_counts(self, env_id: str, delivered_until: datetime | None) -> QueueCounts:
        until = None if delivered_until is None else micros(delivered_until)
        fresh, delivered, reclaimable, oldest = self._db.execute(
            """SELECT COUNT(*) - COUNT(delivered_at), COUNT(delivered_at), COALESCE(SUM(delivered_at <= ?), 0),
            MIN(created_at) FROM workstate_items WHERE env_id = ? AND state = 'queued'""",
            (until, env_id),
        ).fetchone()
        return QueueCounts(fresh, delivered, reclaimable, None if oldest is None else _instant(oldest))

    def page(self, env_id: str, after: str | None, before: str | None, count: int) -> list[WorkItem]:
        if before is not None:
            rows = self._db.execute(
                "SELECT record FROM workstate_items WHERE env_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (env_id, before, count),
            ).fetchall()
            rows.reverse()
        else:
            rows = self._db.execute(
                "SELECT record FROM workstate_items WHERE env_id = ? AND id > ? ORDER BY id LIMIT ?",
                (env_id, "" if after is None else after, count),
            ).fetchall()
        return [_item(row[0], self._parsed) for row in rows]

    # --- time ---

    def due(self, now: datetime, limit: int) -> list[tuple[str, WorkItem]]:
        rows = self._db.execute(_DUE, (micros(now), limit)).fetchall()
        if not rows:  # the common answer: nothing lapses at this request's now
            return rows
        return [(str(env_id), _item(record, self._parsed)) for env_id, record in rows]

    def next_deadline(self) -> datetime | None:
        (found,) = self._db.execute("SELECT MIN(deadline) FROM workstate_items WHERE deadline IS NOT NULL").fetchone()
        return None if found is None else _instant(found)

    # --- polls and secrets ---

    def record_poll(self, env_id: str, worker: str, now: datetime, window: timedelta) -> None:
        db = self._db
        (newest,) = db.execute("SELECT MAX(stamp) FROM workstate_polls WHERE env_id = ?", (env_id,)).fetchone()
        at = micros(now)
        stamp = at if newest is None or at > newest else newest
        db.execute(
            """INSERT INTO workstate_polls (env_id, worker, stamp) VALUES (?, ?, ?)
            ON CONFLICT (env_id, worker) DO UPDATE SET stamp = excluded.stamp""",
            (env_id, worker, stamp),
        )
        if newest is not None and stamp != newest:  # the window moved: forget every poll it left behind
            db.execute("DELETE FROM workstate_polls WHERE env_id = ? AND stamp <= ?", (env_id, stamp - _span(window)))

    def workers_polling(self, env_id: str, now: datetime, window: timedelta) -> int:
        at = micros(now)
        newest, kept, inside = self._db.execute(
            "SELECT MAX(stamp), COUNT(*), COALESCE(SUM(stamp > ?), 0) FROM workstate_polls WHERE env_id = ?",
            (at - _span(window), env_id),
        ).fetchone()
        if newest is None:
            return 0
        return int(kept) if at <= newest else int(inside)

    def polls(self, env_id: str) -> list[tuple[str, datetime]]:
        rows = self._db.execute("SELECT worker, stamp FROM workstate_polls WHERE env_id = ? ORDER BY worker", (env_id,))
        return [(str(worker), _instant(stamp)) for worker, stamp in rows]

    def secret(self, env_id: str, work_id: str) -> str | None:
        row = self._db.execute(
            "SELECT secret FROM workstate_items WHERE env_id = ? AND id = ?", (env_id, work_id)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_secret(self, env_id: str, work_id: str, secret: str | None) -> None:
        self._db.execute("UPDATE workstate_items SET secret = ? WHERE env_id = ? AND id = ?", (secret, env_id, work_id))


def _span(window: timedelta) -> int:
    return window // timedelta(microseconds=1)


class SqliteStore:
    """The server's state in the SQLite file at ``path`` (created when missing; ``":memory:"`` for a private,
    unshared database). ``synchronous`` is ``"FULL"`` (default: every commit fsynced) or ``"NORMAL"``;
    ``timeout`` the seconds a transaction waits for another process's write lock before it is a conflict."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", timeout: float = 5.0) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidInput(f"synchronous must be FULL or NORMAL, got {synchronous!r}", param="synchronous")
        self.path = str(path)
        self._environments: dict[str, StoredEnvironment] = {}
        self._parsed: dict[str, WorkItem] = {}
        self._rendered: dict[datetime, str] = {}
        self._tx: SqliteTransaction | None = None
        db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._create_schema()
        except BaseException:
            db.close()
            raise

    def _create_schema(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                db.execute(statement)
            row = db.execute("SELECT version FROM workstate_schema").fetchone()
            version = SCHEMA_VERSION if row is None else int(row[0])
            if row is None:
                db.execute("INSERT INTO workstate_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            if version > SCHEMA_VERSION:
                raise InvalidInput(
                    f"{self.path} holds workstate tables of version {version}; this release knows {SCHEMA_VERSION}",
                    param="db",
                )
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute("UPDATE workstate_schema SET version = ?", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _remember(self, row: Sequence[Any]) -> StoredEnvironment:
        env = StoredEnvironment(str(row[0]), EnvironmentKind(row[1]), _instant(row[2]))
        self._environments[env.id] = env
        return env

    def begin(self) -> SqliteTransaction:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # the lock stayed taken past the timeout
            raise StoreConflict(f"SQLite is busy: {exc}") from exc
        tx = self._tx
        if tx is None or tx._db is not db:  # one at a time (one thread): a transaction holds no state of its own
            tx = self._tx = SqliteTransaction(self, db)
        return tx

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        """The version recorded in ``workstate_schema``."""
        (version,) = self._db.execute("SELECT version FROM workstate_schema").fetchone()
        return int(version)

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``'s answer (``"ok"`` for a sound file)."""
        return "\n".join(str(row[0]) for row in self._db.execute("PRAGMA integrity_check"))
