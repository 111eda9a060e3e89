"""``SqliteStore``: the same answers as the in-memory reference, compare-and-set across connections, the schema,
``workstate serve --db FILE`` over HTTP, and the durability of every answered change across SIGKILL."""

from __future__ import annotations

import http.client
import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from walk import T0, walk

from workstate import ANTHROPIC, QODER, State
from workstate.api import Request, Server, StoreConflict
from workstate.errors import InvalidInput
from workstate.stores import RandomIds, open_store
from workstate.stores import sqlite as sqlite_module
from workstate.stores.sqlite import SCHEMA_VERSION, SqliteStore
from workstate.testing.conformance import run_conformance
from workstate.testing.http import HttpTarget
from workstate.testing.lockstep import run_lockstep
from workstate.testing.target import ReferenceTarget

AUTH = {"Authorization": "Bearer t"}
BASE = "/api/v1/cloud/environments"
STARTUP = 60.0
TIMEOUT = 30.0


def sqlite_server(path: str | Path = ":memory:", **options: Any) -> Server:
    return Server(store=SqliteStore(path, synchronous="NORMAL"), **options)


# --- the same answers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "only"),
    [(QODER, "4.1-*"), (QODER, "4.6-*"), (QODER, "4.7-*"), (QODER, "4-*"), (ANTHROPIC, "4.1-*"), (ANTHROPIC, "4.7-*")],
)
def test_conformance_in_process(dialect: Any, only: str) -> None:
    """The conformance cases of poll's choice, list pages, stats and the check order, on SQLite (in memory: the
    SQL is the file's; durability is tested below), find no difference from the reference."""
    report = run_conformance(
        lambda: ReferenceTarget(sqlite_server(dialect=dialect)), dialect=dialect, only=only, max_failures=5
    )
    failed = [(c.case_id, c.expected, c.actual) for c in report.cases if not c.passed]
    assert report.ok and report.cases, failed[:3]


def test_conformance_on_a_file(tmp_path: Path) -> None:
    """A sample of every section, each case on a fresh SQLite file (WAL, FULL)."""
    files = iter(range(10**6))
    report = run_conformance(
        lambda: ReferenceTarget(Server(store=SqliteStore(tmp_path / f"{next(files)}.db"))), only="*hb1", max_failures=5
    )
    assert report.ok and len(report.cases) > 50, [c.case_id for c in report.cases if not c.passed][:3]


def test_lockstep_against_the_reference() -> None:
    """The lockstep kit's machine (hostile requests, clock moves) finds no difference."""
    run_lockstep(
        lambda: ReferenceTarget(sqlite_server()),
        settings=settings(max_examples=25, stateful_step_count=30, deadline=None, database=None),
    )


@pytest.mark.parametrize("dialect", [QODER, ANTHROPIC], ids=["qoder", "anthropic"])
@pytest.mark.parametrize("seed", range(4))
def test_a_seeded_walk_answers_as_the_memory_store(seed: int, dialect: Any) -> None:
    """Every response and every state after every step equal the in-memory server's (same ids: same source)."""
    answered = walk([Server(dialect=dialect), sqlite_server(dialect=dialect)], seed, 250, dialect)
    assert answered > 50


@settings(max_examples=20, deadline=None, database=None)
@given(st.integers(0, 2**32), st.sampled_from([QODER, ANTHROPIC]))
def test_memory_and_sqlite_answer_the_same_on_random_sequences(seed: int, dialect: Any) -> None:
    walk([Server(dialect=dialect), sqlite_server(dialect=dialect)], seed, 80, dialect)


# --- compare-and-set across connections ----------------------------------------------------------------------


def _active_item(server: Server, env: str, worker: str = "w1") -> str:
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T0)
    assert server.handle(Request("GET", f"{BASE}/{env}/work/poll", {**AUTH, "Worker-ID": worker}), T0).status == 200
    return work


def _race_acks(servers: tuple[Server, Server], env: str, work: str, workers: tuple[str, str]) -> list[int]:
    """Both servers ack ``work`` at once (released together by a barrier), as ``workers``; their statuses."""
    statuses: list[int] = []
    start = threading.Barrier(2)

    def ack(server: Server, worker: str) -> None:
        start.wait(timeout=TIMEOUT)
        request = Request("POST", f"{BASE}/{env}/work/{work}/ack", {**AUTH, "Worker-ID": worker})
        statuses.append(server.handle(request, T0).status)

    threads = [threading.Thread(target=ack, args=pair) for pair in zip(servers, workers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    return statuses


def test_two_servers_on_one_file_race_acks_and_exactly_one_acks(tmp_path: Path) -> None:
    """Two servers (two connections) on one file ack one item at once: exactly one ack is applied (one write,
    told by ``on_change``; the item at version 2), the other is answered as the spec answers an ack that
    finds the item acked (a replay for the same worker, 409 for another)."""
    path = tmp_path / "shared.db"
    writes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def told(name: str) -> Any:
        def on_change(env: str, old: Any, new: Any) -> None:
            if new.state is State.STARTING and old is not None and old.state is not State.STARTING:
                with lock:
                    writes.append((name, new.id))

        return on_change

    first = Server(store=SqliteStore(path), ids=RandomIds(), on_change=told("first"))
    second = Server(store=SqliteStore(path), ids=RandomIds(), on_change=told("second"))
    try:
        for round_ in range(6):
            env = first.create_environment(now=T0)
            work = first.create_work(env, session_id=f"sess_{round_ + 1:032x}", now=T0)
            poll = Request("GET", f"{BASE}/{env}/work/poll", {**AUTH, "Worker-ID": "w1"})
            assert second.handle(poll, T0).json["id"] == work  # the other process sees it
            workers = ("w1", "w1") if round_ % 2 else ("w1", "w2")
            statuses = sorted(_race_acks((first, second), env, work, workers))
            assert statuses == ([200, 200] if round_ % 2 else [200, 409])
            assert [w for w in writes if w[1] == work] and len([w for w in writes if w[1] == work]) == 1
            item = second.work(env, work)
            assert item is not None and item.state is State.STARTING and item.version == 2  # delivered, acked once
    finally:
        first.store.close()
        second.store.close()


def test_a_stale_write_through_another_connection_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "cas.db"
    one, two = SqliteStore(path), SqliteStore(path)
    server = Server(store=one)
    env = server.create_environment(now=T0)
    work = _active_item(server, env)
    tx = one.begin()
    read = tx.item(env, work)
    tx.commit()
    assert read is not None
    other = Server(store=two)
    assert other.handle(Request("POST", f"{BASE}/{env}/work/{work}/ack", {**AUTH, "Worker-ID": "w1"}), T0).status == 200
    tx = one.begin()
    with pytest.raises(StoreConflict):
        tx.put(env, read, read.version, None)  # the version it read is gone: nothing written
    tx.rollback()
    again = server.work(env, work)
    assert again is not None and again.state is State.STARTING
    one.close()
    two.close()


# --- the schema --------------------------------------------------------------------------------------------


def test_the_schema_is_created_once_versioned_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    store = SqliteStore(path)
    server = Server(store=store)
    env = server.create_environment(now=T0)
    work = server.create_work(env, session_id="sess_" + "2" * 32, now=T0)
    assert store.schema_version() == SCHEMA_VERSION
    before = server.snapshot()
    item = server.work(env, work)
    store.close()
    again = SqliteStore(path)  # idempotent: the tables are there, nothing is lost or duplicated
    reopened = Server(store=again)
    assert reopened.snapshot() == before
    assert reopened.work(env, work) == item is not None
    assert again.integrity_check() == "ok"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM workstate_schema").fetchone() == (1,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    again.close()


def test_a_newer_schema_is_refused_and_an_older_one_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "versions.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE workstate_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(InvalidInput, match="version"):
        SqliteStore(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE workstate_schema SET version = ?", (SCHEMA_VERSION,))
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        sqlite_module.MIGRATIONS, SCHEMA_VERSION, ("CREATE TABLE workstate_note (id INTEGER PRIMARY KEY)",)
    )
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION + 1
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'workstate_note'").fetchone() is not None


def test_open_store_picks_by_the_db_value(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "picked.db"))
    assert isinstance(store, SqliteStore)
    store.close()


def test_random_ids_are_well_formed_ordered_and_distinct() -> None:
    for dialect in (QODER, ANTHROPIC):
        ids = [RandomIds(dialect)("work_") for _ in range(3)]
        source = RandomIds(dialect, clock_ns=lambda: 5_000)  # a clock that stands still: still increasing
        made = [source("work_") for _ in range(200)]
        assert all(dialect.valid_id("work", i) for i in made + ids)
        assert made == sorted(made) and len(set(made)) == len(made)


# --- over HTTP: workstate serve --db -------------------------------------------------------------------------


class Serving:
    """``workstate serve --db ...`` in a subprocess (stopped by the caller, in ``finally``)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workstate", "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.process.stdout is not None
            for raw in self.process.stdout:
                if raw.startswith("listening on http://"):
                    lines.put(raw.strip().removeprefix("listening on http://"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            address = lines.get(timeout=STARTUP)
        except queue.Empty:
            address = None
        if address is None:
            self.stop(signal.SIGKILL)
            raise AssertionError("workstate serve --db did not start")
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.url = f"http://{address}"

    def stop(self, how: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=TIMEOUT)


@contextmanager
def serving(*args: str) -> Iterator[Serving]:
    server = Serving(*args)
    try:
        yield server
    finally:
        server.stop()


def test_workstate_conform_passes_against_serve_on_a_file(tmp_path: Path) -> None:
    with serving("--db", str(tmp_path / "conform.db"), "--test-clock", "--test-routes") as server:
        done = subprocess.run(
            [sys.executable, "-m", "workstate", "conform", "--url", server.url, "--only", "4.6-*"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "OK:" in done.stdout


def test_the_lockstep_kit_finds_no_difference_through_serve_on_a_file(tmp_path: Path) -> None:
    with serving("--db", str(tmp_path / "lockstep.db"), "--test-clock", "--test-routes") as server:
        target = HttpTarget(server.host, server.port)
        try:
            run_lockstep(
                lambda: target,
                settings=settings(max_examples=8, stateful_step_count=20, deadline=None, database=None),
            )
        finally:
            target.close()


class Client:
    """One keep-alive HTTP connection to a server, with the test routes' token."""

    def __init__(self, server: Serving) -> None:
        self.connection = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)

    def call(self, method: str, target: str, body: bytes = b"", worker: str = "w1") -> tuple[int, Any]:
        headers = {**AUTH, "Worker-ID": worker}
        if body:
            headers["Content-Type"] = "application/json"
        self.connection.request(method, target, body=body, headers=headers)
        reply = self.connection.getresponse()
        return reply.status, json.loads(reply.read() or b"null")


def test_every_answered_change_survives_sigkill(tmp_path: Path) -> None:
    """Under a bounded load of real requests (full lifecycles), SIGKILL; restarted on the same file, every change
    answered before the kill is there: each item at least at the version its last answer implies (and in the
    state answered when at exactly that version), and ``PRAGMA integrity_check`` is ``ok``."""
    path = tmp_path / "durable.db"
    answered: dict[tuple[str, str], tuple[int, str]] = {}  # (env, work) -> (its version, state) as last answered
    first = Serving("--db", str(path), "--test-routes")
    stop = threading.Event()
    try:
        client = Client(first)
        status, env = client.call("POST", "/_test/environments", b"{}")
        assert status == 201
        env_id = env["id"]

        def kill_later() -> None:  # once some changes are answered, SIGKILL in the middle of the traffic
            give_up = time.monotonic() + 60.0
            while not stop.is_set() and len(answered) < 40 and time.monotonic() < give_up:
                time.sleep(0.005)
            time.sleep(0.03)
            first.process.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_later, daemon=True)
        killer.start()
        deadline = time.monotonic() + 60.0
        try:
            for number in range(1, 2000):  # bounded in count and time; ends at the kill
                if time.monotonic() > deadline:
                    break
                body = json.dumps({"session_id": f"sess_{number:032x}"}).encode()
                status, made = client.call("POST", f"/_test/environments/{env_id}/work", body)
                assert status == 201
                work = made["id"]
                answered[env_id, work] = (0, "queued")
                status, polled = client.call("GET", f"{BASE}/{env_id}/work/poll")
                assert status == 200 and polled["id"] == work
                answered[env_id, work] = (1, polled["state"])
                for version, action in enumerate(("ack", "heartbeat", "stop"), 2):
                    status, reply = client.call(
                        "POST", f"{BASE}/{env_id}/work/{work}/{action}", b"{}" if action == "stop" else b""
                    )
                    assert status == 200, (action, status, reply)
                    answered[env_id, work] = (version, reply.get("state", answered[env_id, work][1]))
        except (ConnectionError, http.client.HTTPException, OSError):
            pass  # the kill: the request in flight has no answer, and nothing is claimed of it
        finally:
            stop.set()
            killer.join(timeout=TIMEOUT)
    finally:
        stop.set()
        first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    assert len(answered) >= 40
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with serving("--db", str(path), "--test-routes") as again:  # the restarted server answers from the file
        client = Client(again)
        for env_id, work in answered:
            status, item = client.call("GET", f"{BASE}/{env_id}/work/{work}")
            assert status == 200 and item["id"] == work, (work, status)
    store = SqliteStore(path)
    try:
        held = {(item.environment_id, item.id): item for env in Server(store=store).snapshot() for item in env.items}
        for key, (version, state) in answered.items():
            item = held[key]
            assert item.version >= version, (key, item.version, version)
            if item.version == version:
                assert item.state.value == state, (key, item.state, state)
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_serve_refuses_a_db_it_cannot_open(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workstate", "serve", "--port", "0", "--db", str(tmp_path / "missing" / "dir" / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot open --db" in done.stderr


def test_the_periodic_sweep_lapses_items_nobody_touches(tmp_path: Path) -> None:
    """``serve --db`` (no test clock) sweeps: an item whose lease runs out is re-queued in the file though no request
    comes (read straight from the file, not through the server)."""
    path = tmp_path / "sweep.db"
    with serving(
        "--db", str(path), "--test-routes", "--sweep-seconds", "0.2", "--policy", "min_ttl_seconds=1"
    ) as server:
        client = Client(server)
        assert client.call("POST", "/_test/environments", b"{}")[0] == 201
        status, env = client.call("POST", "/_test/environments", b"{}")
        body = json.dumps({"session_id": "sess_" + "3" * 32}).encode()
        status, made = client.call("POST", f"/_test/environments/{env['id']}/work", body)
        assert status == 201
        work = made["id"]
        assert client.call("GET", f"{BASE}/{env['id']}/work/poll")[0] == 200
        assert client.call("POST", f"{BASE}/{env['id']}/work/{work}/ack")[0] == 200
        assert client.call("POST", f"{BASE}/{env['id']}/work/{work}/heartbeat?desired_ttl_seconds=1")[0] == 200
        state = "active"
        give_up = time.monotonic() + 20.0
        while state == "active" and time.monotonic() < give_up:
            time.sleep(0.1)
            with sqlite3.connect(path) as db:
                (state,) = db.execute("SELECT state FROM workstate_items WHERE id = ?", (work,)).fetchone()
    assert state != "active"
