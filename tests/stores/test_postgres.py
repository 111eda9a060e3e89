"""PostgresStore gives the same answers as the in-memory server: the conformance suite in process, and a seeded
random walk of requests compared answer by answer with the in-memory server's (over HTTP: test_postgres_serve.py);
compare-and-set, the schema, concurrent sweeps and a dropped connection. Each test runs on a fresh database of the
throw-away cluster.

In process, the conformance run takes the boundary cases of both dialects (``!*@*``: every case but the transition
cover's, about 700); ``WORKSTATE_PG_FULL_CONFORMANCE=1`` runs every case (20,323 in the two dialects: both passed
in 230 s here).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import attrs
import psycopg
import pytest
from hypothesis import settings

from workstate import ANTHROPIC, QODER, Dialect
from workstate.api import Request, Server
from workstate.api.server import CounterIds
from workstate.api.store import StoreConflict
from workstate.api.wire import Headers
from workstate.errors import InvalidInput
from workstate.stores.postgres import SCHEMA_VERSION, PostgresStore
from workstate.testing.conformance import run_conformance
from workstate.testing.lockstep import run_lockstep
from workstate.testing.target import ReferenceTarget

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
FULL = os.environ.get("WORKSTATE_PG_FULL_CONFORMANCE") == "1"


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn)
    try:
        yield opened
    finally:
        opened.close()


def test_the_schema_is_created_once_versioned_and_indexed(postgres_dsn: str, store: PostgresStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 1
    again = PostgresStore(postgres_dsn)  # idempotent: a second process opening the same database
    again.close()
    with psycopg.connect(postgres_dsn) as conn:
        versions = conn.execute("SELECT version FROM workstate_schema").fetchall()
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'workstate%'")}
        conn.execute("INSERT INTO workstate_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    assert versions == [(1,)]
    assert {
        "workstate_items_queue",
        "workstate_items_delivered",
        "workstate_items_deadline",
        "workstate_items_live_session",
    } <= indexes
    with pytest.raises(InvalidInput, match=r"schema is version 2"):
        PostgresStore(postgres_dsn)  # a schema newer than this release knows is refused, never guessed at
    with pytest.raises(InvalidInput, match="cannot open the PostgreSQL database"):
        PostgresStore(postgres_dsn.rsplit("/", 1)[0] + "/no_such_database")


def test_compare_and_set_refuses_a_stale_version(store: PostgresStore) -> None:
    server = Server(store=store)
    env = server.create_environment(now=T0)
    work = server.create_work(env, session_id="sess_" + "a" * 32, now=T0)
    first, second = store.begin(), store.begin()
    item = first.item(env, work)
    stale = second.item(env, work)
    assert item is not None and stale is not None and item == stale
    moved = attrs.evolve(item, metadata={"k": "v"}, version=item.version + 1)
    first.put(env, moved, item.version, None)
    first.commit()
    with pytest.raises(StoreConflict):
        second.put(env, attrs.evolve(stale, metadata={"k": "w"}, version=stale.version + 1), stale.version, None)
    second.rollback()
    check = store.begin()
    assert check.item(env, work) == moved
    check.commit()


@pytest.mark.parametrize("dialect", [QODER, ANTHROPIC], ids=lambda d: d.name)
def test_conformance_in_process(store: PostgresStore, dialect: Dialect) -> None:
    starts = itertools.count(1)

    def make_target() -> ReferenceTarget:
        # one database for every case: each target's ids start in a range of their own, so no two cases meet
        ids = CounterIds(start=next(starts) * 10**6, dialect=dialect)
        return ReferenceTarget(Server(dialect=dialect, store=store, ids=ids), dialect=dialect)

    report = run_conformance(make_target, dialect=dialect, only=None if FULL else "!*@*")
    assert report.ok, report.summary()
    assert len(report.cases) > 300


@pytest.mark.parametrize("dialect", [QODER, ANTHROPIC], ids=lambda d: d.name)
def test_the_lockstep_kit_finds_no_difference(store: PostgresStore, dialect: Dialect) -> None:
    """The lockstep kit's machine (hostile requests, clock moves) against the server on PostgreSQL."""
    starts = itertools.count(1)

    def make_target() -> ReferenceTarget:
        ids = CounterIds(start=next(starts) * 10**6, dialect=dialect)  # each example's ids a range of their own
        return ReferenceTarget(Server(dialect=dialect, store=store, ids=ids), dialect=dialect)

    run_lockstep(
        make_target,
        dialect=dialect,
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None, database=None),
    )
    assert next(starts) > 10  # the machine ran its examples, each on a fresh server over the one database


# --- a seeded random walk, answer by answer against the in-memory server ---------------------------------------


def _walk(server: Server, seed: int, steps: int) -> list[tuple[int, object]]:
    rng = random.Random(seed)
    dialect = server.dialect
    now = T0
    env = server.create_environment(now=now)
    other = server.create_environment(now=now)
    answers: list[tuple[int, object]] = []
    works: list[str] = []
    sessions = itertools.count(1)
    for _ in range(steps):
        now += timedelta(seconds=rng.choice([0, 0, 1, 5, 30, 200, 700]))
        roll = rng.random()
        if roll < 0.15 or not works:
            try:
                session = f"sess_{next(sessions):032x}" if dialect is QODER else f"session_{next(sessions)}"
                works.append(server.create_work(rng.choice([env, env, other]), session_id=session, now=now))
                answers.append((201, works[-1]))
            except Exception as exc:  # the same refusal on both sides is the same answer
                answers.append((0, type(exc).__name__))
            continue
        worker = rng.choice(["w1", "w2", "w3"])
        headers = Headers({"authorization": "Bearer k", dialect.worker_header.lower(): worker})
        target_env = rng.choice([env, env, other])
        work = rng.choice(works)
        op = rng.choice(["poll", "poll", "ack", "heartbeat", "stop", "get", "list", "stats", "update"])
        if op == "poll":
            query = rng.choice(["", "?reclaim_older_than_ms=0", "?reclaim_older_than_ms=60000"])
            request = Request("GET", dialect.path(target_env, None, "poll") + query, headers, b"")
        elif op == "ack":
            request = Request("POST", dialect.path(target_env, work, "ack"), headers, b"")
        elif op == "heartbeat":
            request = Request("POST", dialect.path(target_env, work, "heartbeat"), headers, b"")
        elif op == "stop":
            body = rng.choice([b"{}", b'{"force": true}'])
            request = Request("POST", dialect.path(target_env, work, "stop"), headers, body)
        elif op == "get":
            request = Request("GET", dialect.path(target_env, work), headers, b"")
        elif op == "list":
            request = Request("GET", dialect.path(target_env) + "?limit=" + str(rng.randint(1, 4)), headers, b"")
        elif op == "stats":
            request = Request("GET", dialect.path(target_env, None, "stats"), headers, b"")
        else:
            body = json.dumps({"metadata": {"k": str(rng.randint(0, 3))}}).encode()
            request = Request("POST", dialect.path(target_env, work), headers, body)
        response = server.handle(request, now)
        body_json = response.json
        if isinstance(body_json, dict):
            body_json = {k: v for k, v in body_json.items() if k != "request_id"}  # request ids differ by nature
        answers.append((response.status, body_json))
    return answers


@pytest.mark.parametrize("dialect", [QODER, ANTHROPIC], ids=lambda d: d.name)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_walk_answers_as_the_in_memory_server(store: PostgresStore, dialect: Dialect, seed: int) -> None:
    memory = Server(dialect=dialect)
    postgres = Server(dialect=dialect, store=store)
    expected = _walk(memory, seed, 300)
    actual = _walk(postgres, seed, 300)
    for number, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got == want, f"step {number} of seed {seed}"
    assert {status for status, _ in expected} >= {200, 404, 409}  # the walk reaches answers of every kind
    assert postgres.snapshot() == memory.snapshot()


# --- the sweep, in several processes at once ----------------------------------------------------------------------


def test_concurrent_sweeps_lapse_each_due_item_once(postgres_dsn: str, store: PostgresStore) -> None:
    """Three servers (three stores, three connections: as three processes) sweep one database at once: every due
    item lapses exactly once (its version moves by one), and the counts they report add up to the items due."""
    import threading

    server = Server(store=store)
    env = server.create_environment(now=T0)
    dialect = server.dialect
    headers = Headers({"authorization": "Bearer k", dialect.worker_header.lower(): "w1"})
    works = []
    for n in range(150):
        works.append(server.create_work(env, session_id=f"sess_{n + 1:032x}", now=T0))
        polled = server.handle(Request("GET", dialect.path(env, None, "poll"), headers, b""), T0)
        assert polled.status == 200 and polled.json["id"] == works[-1]
        acked = server.handle(Request("POST", dialect.path(env, works[-1], "ack"), headers, b""), T0)
        assert acked.status == 200 and acked.json["state"] == "starting"
    before = {work: item.version for work, item in ((w, server.work(env, w)) for w in works) if item is not None}
    later = T0 + timedelta(seconds=server.policy.start_timeout_seconds + 1)
    stores = [PostgresStore(postgres_dsn) for _ in range(3)]
    counts: list[int] = []
    barrier = threading.Barrier(len(stores))

    def sweep(own: PostgresStore) -> None:
        sweeper = Server(store=own)
        barrier.wait()
        counts.append(sweeper.expire(later))

    threads = [threading.Thread(target=sweep, args=(own,)) for own in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for own in stores:
            own.close()
    assert len(counts) == 3 and sum(counts) == len(works)
    after = {w: server.work(env, w) for w in works}
    assert all(item is not None and item.state.value == "queued" for item in after.values())
    assert {w: item.version - before[w] for w, item in after.items() if item is not None} == dict.fromkeys(works, 1)


def test_a_connection_the_server_dropped_is_rolled_back_quietly_and_replaced(postgres_dsn: str) -> None:
    opened = PostgresStore(postgres_dsn)
    try:
        server = Server(store=opened)
        env = server.create_environment(now=T0)
        tx = opened.begin()
        assert tx.environment(env) is not None
        (pid,) = tx._conn.execute("SELECT pg_backend_pid()").fetchone() or (None,)
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            tx.items(env)
        tx.rollback()  # does not raise: the broken connection is dropped
        assert server.create_work(env, session_id="sess_" + "b" * 32, now=T0)  # a fresh connection serves
    finally:
        opened.close()
