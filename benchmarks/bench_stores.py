"""What the database stores cost: full lifecycles through ``SqliteStore`` and ``PostgresStore`` against the database
floor, the same SQL statements run directly without workstate.

Run: ``python benchmarks/bench_stores.py`` (``--quick`` for fewer rounds; ``--dsn postgresql://...`` to use a
database of yours, else a throw-away cluster is started from the installed PostgreSQL binaries as the tests do,
``tests/stores/pg.py``: fsync off, on loopback). Prints figures and ratios; asserts nothing about speed.

A lifecycle: ``create_work``, then through ``Server.handle``: poll, ack, heartbeat, graceful stop, confirming stop
(six transactions). The floor of each store is measured honestly: each round first runs the lifecycles through
workstate on a capture database, recording every statement with its parameters and every transaction boundary the
store sent; then, interleaved in an order rotated each round, (a) workstate runs the same lifecycles on its own
database and (b) the floor replays the recorded statements on a database of its own with the driver alone
(``sqlite3`` / ``psycopg``: execute, fetch, commit; nothing else). Both databases go through the same states
(the server is deterministic: same ids, same instants), so the floor is exactly the database's share of the work
and the ratio is what workstate adds on top (parsing, ``step``, records, rendering). Medians over rounds with the
spread (IQR and range) and the ratio computed per round. Target (issue 16): at most 1.5x the floor.

Over HTTP (``--http``, PostgreSQL only): ``workstate serve --db postgresql://...`` processes on one database, 50
concurrent clients (asyncio tasks of one process, each an ``httpx.AsyncClient`` walking lifecycles of items created
up front: poll, ack, heartbeat, stop, stop), spread evenly over 1, 2 and 3 server processes: requests per second
and the latency percentiles (p50, p99) of every request. Bounded: a fixed number of items per run and a deadline.
On a 2-core machine the client, the servers and PostgreSQL share the cores, so more processes cannot add much.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workstate.api import Request, Server
from workstate.api.wire import Headers

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
COMMIT = object()  # a transaction boundary in a recording (PostgreSQL's commit is a driver call, not a statement)


class Recording:
    """The statements a store sent, in order: (sql, params) or COMMIT."""

    def __init__(self) -> None:
        self.steps: list[Any] = []


class _Cursor:
    def __init__(self, inner: Any, recording: Recording) -> None:
        self._inner = inner
        self._recording = recording

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._recording.steps.append((sql, params))
        return self._inner.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Conn:
    def __init__(self, inner: Any, recording: Recording) -> None:
        self._inner = inner
        self._recording = recording

    def execute(self, sql: str, params: Any = ()) -> Any:  # sqlite3: the store executes on the connection
        self._recording.steps.append((sql, params))
        return self._inner.execute(sql, params)

    def commit(self) -> None:  # psycopg
        self._recording.steps.append(COMMIT)
        self._inner.commit()

    def cursor(self) -> _Cursor:
        return _Cursor(self._inner.cursor(), self._recording)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _lifecycles(server: Server, env: str, first: int, count: int) -> None:
    dialect = server.dialect
    headers = Headers({"authorization": "Bearer token", dialect.worker_header.lower(): "w1"})
    for n in range(first, first + count):
        now = T0 + timedelta(milliseconds=n)
        work = server.create_work(env, session_id=f"sess_{n:032x}", now=now)
        for method, operation, body in (
            ("GET", "poll", b""),
            ("POST", "ack", b""),
            ("POST", "heartbeat", b""),
            ("POST", "stop", b"{}"),
            ("POST", "stop", b"{}"),
        ):
            path = dialect.path(env, None, "poll") if operation == "poll" else dialect.path(env, work, operation)
            answer = server.handle(Request(method, path, headers, body), now)
            if answer.status != 200:
                raise RuntimeError(f"{operation} answered {answer.status}: {answer.json}")


# --- the stores and their floors ------------------------------------------------------------------------------------


class Contender:
    """One store: a capture server (recording), a measured server, and the floor's raw connection."""

    name: str

    def capture(self, first: int, count: int) -> Recording:
        raise NotImplementedError

    def workstate(self, first: int, count: int) -> None:
        raise NotImplementedError

    def floor(self, recording: Recording) -> None:
        raise NotImplementedError

    def same_state(self) -> bool:
        """Whether the floor's database holds exactly what workstate's does (the replay did the same work)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteContender(Contender):
    name = "SqliteStore"

    def __init__(self, directory: Path) -> None:
        from workstate.stores.sqlite import SqliteStore

        self.recording = Recording()
        self.capture_store = SqliteStore(directory / "capture.db", synchronous="NORMAL")
        self.capture_store._db = _Conn(self.capture_store._db, self.recording)  # type: ignore[assignment]
        self.measured_store = SqliteStore(directory / "measured.db", synchronous="NORMAL")
        self.floor_store = SqliteStore(directory / "floor.db", synchronous="NORMAL")  # its schema and pragmas
        self.raw = self.floor_store._db
        self.capture_server = Server(store=self.capture_store)
        self.measured_server = Server(store=self.measured_store)
        self.recording.steps.clear()
        self.env = self.capture_server.create_environment(now=T0)
        self.floor(self._take())
        self.measured_server.create_environment(now=T0)

    def _take(self) -> Recording:
        taken = Recording()
        taken.steps, self.recording.steps = self.recording.steps, []
        return taken

    def capture(self, first: int, count: int) -> Recording:
        _lifecycles(self.capture_server, self.env, first, count)
        return self._take()

    def workstate(self, first: int, count: int) -> None:
        _lifecycles(self.measured_server, self.env, first, count)

    def floor(self, recording: Recording) -> None:
        execute = self.raw.execute
        for sql, params in recording.steps:
            execute(sql, params).fetchall()

    def same_state(self) -> bool:
        query = "SELECT env_id, id, version, state, record FROM workstate_items ORDER BY env_id, id"
        return bool(self.raw.execute(query).fetchall() == self.measured_store._db.execute(query).fetchall())

    def close(self) -> None:
        for store in (self.measured_store, self.floor_store):
            store.close()
        self.capture_store._db = self.capture_store._db._inner  # type: ignore[attr-defined]
        self.capture_store.close()


class PostgresContender(Contender):
    name = "PostgresStore"

    def __init__(self, new_database: Callable[[], str]) -> None:
        import psycopg

        from workstate.stores import postgres

        self.recording = Recording()
        self.capture_store = postgres.PostgresStore(new_database())
        recording = self.recording
        connect = self.capture_store._connect
        self.capture_store._connect = lambda: _Conn(connect(), recording)  # type: ignore[assignment,method-assign,return-value]
        self.measured_store = postgres.PostgresStore(new_database())
        floor_dsn = new_database()
        postgres.PostgresStore(floor_dsn).close()  # the schema
        self.raw = psycopg.connect(floor_dsn, autocommit=False)
        self.capture_server = Server(store=self.capture_store)
        self.measured_server = Server(store=self.measured_store)
        self.env = self.capture_server.create_environment(now=T0)
        self.floor(self._take())
        self.measured_server.create_environment(now=T0)

    def _take(self) -> Recording:
        taken = Recording()
        taken.steps, self.recording.steps = self.recording.steps, []
        return taken

    def capture(self, first: int, count: int) -> Recording:
        _lifecycles(self.capture_server, self.env, first, count)
        return self._take()

    def workstate(self, first: int, count: int) -> None:
        _lifecycles(self.measured_server, self.env, first, count)

    def floor(self, recording: Recording) -> None:
        raw = self.raw
        cursor = raw.cursor()
        for step in recording.steps:
            if step is COMMIT:
                raw.commit()
                continue
            cursor.execute(step[0], step[1])
            if cursor.description is not None:
                cursor.fetchall()
        raw.commit()

    def same_state(self) -> bool:
        import psycopg

        query = "SELECT env_id, id, version, state, record::text FROM workstate_items ORDER BY env_id, id"
        with psycopg.connect(self.measured_store.dsn) as measured:
            mine = measured.execute(query).fetchall()
        theirs = self.raw.execute(query).fetchall()
        self.raw.commit()
        return bool(mine == theirs and mine)

    def close(self) -> None:
        self.raw.close()
        self.measured_store.close()
        self.capture_store.close()


# --- the run --------------------------------------------------------------------------------------------------------


@contextmanager
def _postgres(dsn: str | None) -> Iterator[Callable[[], str]]:
    if dsn is not None:
        import itertools

        import psycopg

        names = itertools.count(1)

        def new_database() -> str:
            name = f"bench_stores_{os.getpid()}_{next(names)}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return dsn.rsplit("/", 1)[0] + "/" + name

        yield new_database
        return
    sys.path.insert(0, str(ROOT / "tests" / "stores"))
    from pg import running_cluster

    with running_cluster() as cluster:
        yield cluster.new_database


def _spread(values: list[float]) -> str:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return (
        f"median {statistics.median(values):8.1f}  IQR {quartiles[0]:.1f}-{quartiles[2]:.1f}"
        f"  range {min(values):.1f}-{max(values):.1f}"
    )


def measure(contender: Contender, rounds: int, count: int) -> dict[str, list[float]]:
    """Lifecycles per second of workstate and of its floor, and their ratio, per round."""
    figures: dict[str, list[float]] = {"workstate": [], "floor": [], "ratio": []}
    first = 1
    for number in range(rounds):
        recording = contender.capture(first, count)
        timed: dict[str, float] = {}
        order = ["workstate", "floor"] if number % 2 == 0 else ["floor", "workstate"]
        for which in order:
            start = time.perf_counter()
            if which == "workstate":
                contender.workstate(first, count)
            else:
                contender.floor(recording)
            timed[which] = time.perf_counter() - start
        first += count
        figures["workstate"].append(count / timed["workstate"])
        figures["floor"].append(count / timed["floor"])
        figures["ratio"].append(timed["workstate"] / timed["floor"])
    return figures


def _serve(dsn: str, port: int) -> Any:
    import subprocess

    command = [sys.executable, "-m", "workstate", "serve", "--db", dsn, "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def http_run(dsn: str, servers: int, clients: int, items: int, seconds: float) -> dict[str, float]:
    """``servers`` processes on ``dsn``, ``clients`` concurrent clients over them: requests/s and latencies (ms)."""
    import asyncio
    import socket
    import uuid

    import httpx

    from workstate.stores import RandomIds
    from workstate.stores.postgres import PostgresStore

    store = PostgresStore(dsn)
    maker = Server(store=store, ids=RandomIds())
    now = datetime.now(UTC)
    env = maker.create_environment(now=now)
    for _ in range(items):
        maker.create_work(env, session_id=f"sess_{uuid.uuid4().hex}", now=now)
    store.close()
    ports = []
    for _ in range(servers):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    procs = [_serve(dsn, port) for port in ports]
    latencies: list[float] = []
    dialect = maker.dialect
    try:

        async def ready(port: int) -> None:
            async with httpx.AsyncClient() as client:
                for _ in range(300):
                    try:
                        await client.get(f"http://127.0.0.1:{port}/")
                        return
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            raise RuntimeError(f"no server on port {port}")

        async def client(number: int, stop_at: float, left: list[int]) -> None:
            port = ports[number % servers]
            headers = {"authorization": "Bearer bench", dialect.worker_header: f"w{number}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as http:

                async def call(method: str, path: str, body: bytes | None = None) -> Any:
                    start = time.perf_counter()
                    answer = await http.request(method, path, content=body)
                    latencies.append(time.perf_counter() - start)
                    return answer

                while time.perf_counter() < stop_at and left[0] > 0:
                    polled = await call("GET", dialect.path(env, None, "poll"))
                    if polled.status_code != 200 or polled.json() is None:
                        if left[0] <= 0:
                            return
                        await asyncio.sleep(0.01)
                        continue
                    left[0] -= 1
                    work = polled.json()["id"]
                    await call("POST", dialect.path(env, work, "ack"))
                    await call("POST", dialect.path(env, work, "heartbeat"))
                    await call("POST", dialect.path(env, work, "stop"), b"{}")
                    await call("POST", dialect.path(env, work, "stop"), b"{}")

        async def run() -> float:
            for port in ports:
                await ready(port)
            left = [items]
            start = time.perf_counter()
            await asyncio.gather(*(client(n, start + seconds, left) for n in range(clients)))
            return time.perf_counter() - start

        elapsed = asyncio.run(run())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {"rps": len(latencies) / elapsed, "p50": pct(0.50), "p99": pct(0.99), "requests": len(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds of 100 lifecycles (default 11 of 200)")
    parser.add_argument("--smoke", action="store_true", help="2 rounds of 10 lifecycles (the tests run it)")
    parser.add_argument("--dsn", help="a PostgreSQL server to use (a database there is created per contender)")
    parser.add_argument("--http", action="store_true", help="only the HTTP runs: 50 clients over 1, 2, 3 servers")
    args = parser.parse_args(argv)
    rounds, count = (2, 10) if args.smoke else (5, 100) if args.quick else (11, 200)
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"bench_stores: {started}, {platform.platform()}, python {platform.python_version()}")
    print(f"  {os.cpu_count()} cpus, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.http:
        items, repeats = (30, 1) if args.smoke else (300, 1) if args.quick else (1000, 3)
        print(
            f"  over HTTP: 50 clients, {items} lifecycles a run (5 requests each), {repeats} runs a size, interleaved"
        )
        with _postgres(args.dsn) as new_database:
            runs: dict[int, list[dict[str, float]]] = {1: [], 2: [], 3: []}
            for _ in range(repeats):
                for servers in (1, 2, 3):
                    runs[servers].append(http_run(new_database(), servers, 50, items, 120.0))
            for servers, found in runs.items():
                rps = [run["rps"] for run in found]
                p99 = [run["p99"] for run in found]
                p50 = [run["p50"] for run in found]
                print(
                    f"  {servers} server(s): requests/s median {statistics.median(rps):.0f}"
                    f" (range {min(rps):.0f}-{max(rps):.0f}); p50 {statistics.median(p50):.1f} ms;"
                    f" p99 median {statistics.median(p99):.1f} ms (range {min(p99):.1f}-{max(p99):.1f})"
                )
        return 0
    print(f"  {rounds} rounds of {count} lifecycles (create + 5 requests: 6 transactions each), interleaved")
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as directory, _postgres(args.dsn) as new_database:
        contenders: list[Contender] = [SqliteContender(Path(directory)), PostgresContender(new_database)]
        try:
            for contender in contenders:
                figures = measure(contender, rounds, count)
                print(f"{contender.name}: lifecycles per second")
                print(f"  workstate  {_spread(figures['workstate'])}")
                print(f"  floor      {_spread(figures['floor'])}")
                ratios = figures["ratio"]
                print(
                    f"  ratio workstate/floor (time, per round): median {statistics.median(ratios):.2f}x"
                    f"  range {min(ratios):.2f}-{max(ratios):.2f}x  (target <= 1.5x)"
                )
                print(f"  the floor's database holds exactly what workstate's does: {contender.same_state()}")
        finally:
            for contender in contenders:
                contender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
