"""The database stores of the server (I/O): :mod:`~workstate.stores.sqlite` and :mod:`~workstate.stores.postgres`.

Each implements :class:`workstate.api.store.Store` (read that module's docstring for the contract). Here:
:func:`open_store`, which ``workstate serve --db`` uses to pick one (a path: SQLite; ``postgresql://...``:
PostgreSQL), and :class:`RandomIds`, an id source whose ids cannot collide across server processes sharing a
database (the randomness is drawn here, at the edge; the server stays deterministic given its id source).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import timedelta

from ..api.store import Store
from ..dialect import QODER, Dialect, IdFormat

__all__ = ["POSTGRES_SCHEMES", "RandomIds", "open_store"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""``--db`` values starting with one of these open a PostgreSQL store; anything else is a SQLite file."""


class RandomIds:
    """An id source for servers sharing a database: ids no two processes hand out, in ``dialect``'s format, that
    sort in creation order within a process (and roughly across processes), like a UUIDv7.

    Each id's number is 64 bits of a clock in microseconds (``clock_ns``, default :func:`time.time_ns`; it never
    repeats or goes back within a source: the next id takes the last one's plus one when the clock has not moved)
    above random bits from :mod:`secrets` (64 for QODER's 32 hex digits, 78 for ANTHROPIC's 24 base62 digits). Two
    processes collide only by drawing the same random bits in the same microsecond.
    """

    __slots__ = ("_clock", "_format", "_last", "_random")

    def __init__(self, dialect: Dialect = QODER, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._format = dialect.ids
        self._random = 64 if dialect.ids is IdFormat.HEX32 else 78
        self._clock = clock_ns
        self._last = 0

    def __call__(self, prefix: str) -> str:
        tick = max(self._clock() // 1000, self._last + 1) & 0xFFFFFFFFFFFFFFFF
        self._last = tick
        return prefix + self._format.render(tick << self._random | secrets.randbits(self._random))


def open_store(db: str, *, polling_window: timedelta = timedelta(seconds=30)) -> Store:
    """The store ``--db`` names: ``postgresql://...`` (or ``postgres://``) a :class:`PostgresStore` (the
    ``postgres`` extra), anything else the path of a SQLite file (created when missing)."""
    if db.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore  # the postgres extra: imported only when asked for

        return PostgresStore(db, polling_window=polling_window)
    from .sqlite import SqliteStore

    return SqliteStore(db)
