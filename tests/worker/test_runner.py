"""The worker runner over real sockets: `workstate.worker.runner` against the example HTTP server on loopback.

Every test is bounded (`LIMIT` seconds for the whole run, the runner stopped at the end) and asserts what
happened, never how long it took.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from workstate import ANTHROPIC, Policy, State
from workstate.api import BASE_PATH, Server
from workstate.api import Request as ApiRequest
from workstate.errors import InvalidInput
from workstate.worker import Abort, Drain, Finished, Halted, RetryPolicy, StartWork
from workstate.worker.runner import (
    Abandoned,
    Cancel,
    HandlerFailed,
    Job,
    MissingExtra,
    Note,
    Runner,
    require_httpx,
    run,
    split_url,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from http_server import ExampleHttpServer, serve  # noqa: E402

LIMIT = 60.0  # generous: only "eventually" is asserted
TTL = 4
POLICY = Policy(min_ttl_seconds=1, default_ttl_seconds=TTL, start_timeout_seconds=2.0, reclaim_older_than_ms=500)
ENV0 = "env_" + "0" * 32


class Fixture:
    def __init__(self, http: ExampleHttpServer, env: str, work: list[str]) -> None:
        self.http, self.env, self.work = http, env, work
        self.url = f"{http.url}{BASE_PATH}{env}"

    def items(self) -> dict[str, Any]:
        with self.http.lock:
            (snapshot,) = self.http.reference.snapshot()
        return {item.id: item for item in snapshot.items}

    async def operator_stop(self, work_id: str, force: bool = False) -> int:
        async with httpx.AsyncClient() as client:
            reply = await client.post(
                f"{self.url}/work/{work_id}/stop", json={"force": force}, headers={"Authorization": "Bearer op"}
            )
        return reply.status_code


@pytest.fixture
def make() -> Iterator[Callable[[int], Fixture]]:
    servers: list[ExampleHttpServer] = []

    def build(items: int) -> Fixture:
        server = Server(POLICY)
        now = datetime.now(UTC)
        env = server.create_environment(now=now)
        work = [server.create_work(env, session_id=f"sess_{i + 1:032x}", now=now) for i in range(items)]
        http = serve(server)
        servers.append(http)
        return Fixture(http, env, work)

    yield build
    for http in servers:
        http.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(wait(), LIMIT)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")


def drive(body: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), LIMIT * 2)

    asyncio.run(bounded())


def runner(fixture: Fixture, handler: Any, notes: list[Note], **options: Any) -> Runner:
    return Runner(
        fixture.url,
        handler,
        token="t",
        worker_id=options.pop("worker_id", "w1"),
        idle_poll_seconds=0.05,
        lease_margin_seconds=0.5,
        on_event=notes.append,
        **options,
    )


def of(notes: list[Note], kind: type, work_id: str | None = None) -> list[Any]:
    return [n for n in notes if isinstance(n, kind) and (work_id is None or n.work_id == work_id)]


def test_every_item_is_handled_once_and_its_stop_confirmed(make: Callable[[int], Fixture]) -> None:
    fixture = make(5)
    notes: list[Note] = []
    jobs: list[Job] = []
    running: set[str] = set()
    most = [0]

    async def handler(job: Job, cancel: Cancel) -> None:
        running.add(job.work_id)
        most[0] = max(most[0], len(running))
        jobs.append(job)
        await asyncio.sleep(0.2)
        running.discard(job.work_id)
        assert not cancel.is_set()

    async def body() -> None:
        worker = runner(fixture, handler, notes, concurrency=2)
        task = asyncio.create_task(worker.run())
        await until(lambda: len(of(notes, Finished)) == 5, "five finished items")
        worker.stop()
        assert await task is None

    drive(body)
    assert sorted(job.work_id for job in jobs) == fixture.work  # each once
    assert 1 <= most[0] <= 2  # never more at once than the concurrency
    for job in jobs:
        assert job.environment_id == fixture.env and job.session_id.startswith("sess_")
        assert job.to_json()["id"] == job.work_id and job.to_json()["data"]["id"] == job.session_id
    assert all(f.confirmed and f.reason == "completed" for f in of(notes, Finished))
    assert {item.state for item in fixture.items().values()} == {State.STOPPED}
    assert not of(notes, HandlerFailed) and not of(notes, Abort)


def test_a_drain_request_reaches_the_handler_and_the_item_is_stopped_drained(make: Callable[[int], Fixture]) -> None:
    fixture = make(1)
    (wid,) = fixture.work
    notes: list[Note] = []
    seen: list[tuple[str | None, str | None]] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        await cancel.wait()
        seen.append((cancel.kind, cancel.reason))

    async def body() -> None:
        worker = runner(fixture, handler, notes)
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, StartWork)), "the start")
        assert await fixture.operator_stop(wid) == 200
        await until(lambda: bool(of(notes, Finished)), "the drained item to finish")
        worker.stop()
        assert await task is None

    drive(body)
    assert seen == [("drain", "a graceful stop was requested")]
    assert of(notes, Drain) == [Drain(wid)]
    assert of(notes, Finished) == [Finished(wid, "drained", True)]
    assert fixture.items()[wid].state is State.STOPPED


def test_a_lost_lease_cancels_the_handler_and_no_stop_follows(make: Callable[[int], Fixture]) -> None:
    fixture = make(2)
    first, second = fixture.work
    notes: list[Note] = []
    seen: dict[str, str | None] = {}

    async def handler(job: Job, cancel: Cancel) -> None:
        if job.work_id == first:
            await cancel.wait_lost()
            seen[job.work_id] = cancel.kind

    async def body() -> None:
        worker = runner(fixture, handler, notes)
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, StartWork, first)), "the first start")
        assert await fixture.operator_stop(first, force=True) == 200  # stopped under the worker: the next beat is 409
        await until(lambda: bool(of(notes, Finished, second)), "the second item (after the first was lost)")
        worker.stop()
        assert await task is None

    drive(body)
    assert seen == {first: "lost"}
    (abort,) = of(notes, Abort, first)
    assert "409" in abort.reason
    assert not of(notes, Finished, first)  # done() was not called for a lost item: no stop, no Finished
    item = fixture.items()[first]
    assert item.state is State.STOPPED and item.stop_requested_at is None  # only the forced stop touched it


def test_stop_signals_shutdown_polls_no_more_and_returns(make: Callable[[int], Fixture]) -> None:
    fixture = make(2)
    first, second = fixture.work
    notes: list[Note] = []
    seen: list[str | None] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        await cancel.wait()
        seen.append(cancel.kind)

    async def body() -> None:
        worker = runner(fixture, handler, notes)
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, StartWork)), "the start")
        worker.stop(drain=True)
        assert worker.stopping
        assert await task is None

    drive(body)
    assert seen == ["shutdown"]
    assert of(notes, Finished) == [Finished(first, "completed", True)]
    items = fixture.items()
    assert items[first].state is State.STOPPED
    assert items[second].state is State.QUEUED and items[second].acknowledged_at is None  # never taken


def test_stop_without_drain_lets_the_handler_finish(make: Callable[[int], Fixture]) -> None:
    fixture = make(1)
    notes: list[Note] = []
    release = asyncio.Event()
    seen: list[bool] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        await release.wait()
        seen.append(cancel.is_set())

    async def body() -> None:
        worker = runner(fixture, handler, notes)
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, StartWork)), "the start")
        worker.stop(drain=False)
        await asyncio.sleep(0.1)
        assert not task.done()  # waits for the handler
        release.set()
        assert await task is None

    drive(body)
    assert seen == [False]
    assert of(notes, Finished) == [Finished(fixture.work[0], "completed", True)]


def test_a_handler_that_raises_is_reported_and_its_item_stopped(make: Callable[[int], Fixture]) -> None:
    fixture = make(1)
    notes: list[Note] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        raise RuntimeError("boom")

    async def body() -> None:
        worker = runner(fixture, handler, notes)
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, Finished)), "the finish")
        worker.stop()
        assert await task is None

    drive(body)
    (failed,) = of(notes, HandlerFailed)
    assert failed.work_id == fixture.work[0] and str(failed.error) == "boom"
    assert fixture.items()[fixture.work[0]].state is State.STOPPED


def test_an_unknown_environment_halts_the_runner(make: Callable[[int], Fixture]) -> None:
    fixture = make(0)
    notes: list[Note] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        raise AssertionError("no item")

    async def body() -> None:
        halted = await run(fixture.http.url, handler, token="t", environment_id=ENV0, on_event=notes.append)
        assert isinstance(halted, Halted) and halted.status == 404

    drive(body)
    assert [type(n) for n in notes] == [Halted]


def test_cancelling_the_runner_cancels_its_handlers(make: Callable[[int], Fixture]) -> None:
    fixture = make(1)
    notes: list[Note] = []
    cleaned: list[str] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(job.work_id)

    async def body() -> None:
        task = asyncio.create_task(runner(fixture, handler, notes).run())
        await until(lambda: bool(of(notes, StartWork)), "the start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(body)
    assert cleaned == fixture.work


def test_no_server_is_retried_and_a_stop_still_returns() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notes: list[Note] = []

    async def handler(job: Job, cancel: Cancel) -> None:
        raise AssertionError("no item")

    async def body() -> None:
        worker = Runner(f"http://127.0.0.1:{port}{BASE_PATH}{ENV0}", handler, token="t", on_event=notes.append)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        assert not task.done()  # a refused connection is retried, not fatal
        worker.stop()
        assert await task is None

    drive(body)
    assert notes == []


def test_an_item_that_starts_after_a_stop_is_abandoned_to_its_lease() -> None:
    """Over an httpx.MockTransport to the sans-I/O reference: the second item's first heartbeat is held back
    until the runner is stopping; it then starts, is not run, and is left to its lease."""
    server = Server(POLICY)
    now = datetime.now(UTC)
    env = server.create_environment(now=now)
    first, second = (server.create_work(env, session_id=f"sess_{i + 1:032x}", now=now) for i in range(2))
    gate = asyncio.Event()
    held: list[str] = []
    notes: list[Note] = []
    ran: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        if f"/{second}/heartbeat" in target:
            held.append(target)
            await gate.wait()
        reply = server.handle(
            ApiRequest(request.method, target, list(request.headers.items()), request.content), datetime.now(UTC)
        )
        return httpx.Response(reply.status, content=reply.body, headers=dict(reply.headers))

    async def handler(job: Job, cancel: Cancel) -> None:
        ran.append(job.work_id)
        await cancel.wait()

    async def body() -> None:
        worker = Runner(
            f"http://workstate.test{BASE_PATH}{env}",
            handler,
            token="t",
            concurrency=2,
            idle_poll_seconds=0.05,
            on_event=notes.append,
            transport=httpx.MockTransport(answer),
        )
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(held) and bool(of(notes, StartWork, first)), "the first start, the second held")
        worker.stop()
        gate.set()
        assert await task is None

    drive(body)
    assert ran == [first]
    assert of(notes, Abandoned, second) == [Abandoned(second, "the worker is stopping: left to its lease")]
    assert of(notes, Finished) == [Finished(first, "completed", True)]
    items = {item.id: item for item in server.snapshot()[0].items}
    assert items[first].state is State.STOPPED and items[second].state is State.ACTIVE  # the lease will lapse


def reference_transport(
    server: Server, before: Callable[[httpx.Request], Awaitable[httpx.Response | None]]
) -> httpx.MockTransport:
    """httpx's MockTransport answering from the sans-I/O reference, unless ``before`` answers first."""

    async def answer(request: httpx.Request) -> httpx.Response:
        early = await before(request)
        if early is not None:
            return early
        target = request.url.raw_path.decode()
        reply = server.handle(
            ApiRequest(request.method, target, list(request.headers.items()), request.content), datetime.now(UTC)
        )
        return httpx.Response(reply.status, content=reply.body, headers=dict(reply.headers))

    return httpx.MockTransport(answer)


def test_request_timeouts_stay_below_the_lease_and_garbage_replies_are_retried() -> None:
    server = Server(POLICY)
    now = datetime.now(UTC)
    env = server.create_environment(now=now)
    (wid,) = (server.create_work(env, session_id="sess_" + "1" * 32, now=now),)
    timeouts: list[tuple[str, float]] = []
    garbage = [httpx.Response(200, content=b"<html>hello</html>"), httpx.Response(502, content=b"Bad gateway")]
    notes: list[Note] = []
    beats = [0]

    async def before(request: httpx.Request) -> httpx.Response | None:
        kind = request.url.path.rsplit("/", 1)[1]
        timeouts.append((kind, request.extensions["timeout"]["read"]))
        if kind == "heartbeat":
            beats[0] += 1
        if kind == "poll" and garbage:
            return garbage.pop(0)  # a proxy's page where JSON was owed, then a gateway error: both retried
        return None

    async def handler(job: Job, cancel: Cancel) -> None:
        while beats[0] < 3 and not cancel.is_set():  # long enough for heartbeats under a held lease
            await asyncio.sleep(0.05)

    async def body() -> None:
        worker = Runner(
            f"http://workstate.test{BASE_PATH}{env}",
            handler,
            token="t",
            ttl_seconds=2,
            request_timeout=30.0,
            lease_margin_seconds=0.5,
            idle_poll_seconds=0.05,
            retry=RetryPolicy(base_seconds=0.01, cap_seconds=0.05),
            on_event=notes.append,
            transport=reference_transport(server, before),
        )
        task = asyncio.create_task(worker.run())
        await until(lambda: bool(of(notes, Finished)), "the item to finish")
        worker.stop()
        assert await task is None

    drive(body)
    assert of(notes, Finished) == [Finished(wid, "completed", True)]
    polls = [t for kind, t in timeouts if kind == "poll"]
    assert len(polls) >= 3 and all(t == pytest.approx(30.999) for t in polls)  # request_timeout + block_ms
    beat_timeouts = [t for kind, t in timeouts if kind == "heartbeat"]
    assert beat_timeouts[0] == 30.0  # the first heartbeat: no lease yet
    later = beat_timeouts[1:]
    assert later and all(t <= 2 for t in later)  # at most what is left of a 2 s lease, far below 30 s


def test_the_runner_speaks_the_anthropic_dialect() -> None:
    """The runner in the peer dialect, answered by a reference of that dialect: its paths, the worker header on
    polls only, one force stop answered 204 that finishes the item, and a force stop by someone else (a
    heartbeat answering ``stopped``) that ends the other item's handler at once with no stop of its own."""
    server = Server(POLICY, dialect=ANTHROPIC)
    now = datetime.now(UTC)
    env = server.create_environment(now=now)
    first, second = (server.create_work(env, session_id=ANTHROPIC.new_id("session", i), now=now) for i in (1, 2))
    seen: list[tuple[str, str, dict[str, str]]] = []
    notes: list[Note] = []
    stopped = asyncio.Event()

    async def before(request: httpx.Request) -> httpx.Response | None:
        seen.append((request.method, request.url.path, dict(request.headers)))
        return None

    async def handler(job: Job, cancel: Cancel) -> None:
        if job.work_id == first:
            return  # done at once: the runner stops it
        stopped.set()
        await cancel.wait_lost()  # the second runs until its lease is gone

    async def body() -> None:
        worker = Runner(
            f"http://workstate.test{ANTHROPIC.path(env).removesuffix('/work')}",
            handler,
            token="t",
            dialect="anthropic",
            worker_id="w1",
            ttl_seconds=2,
            idle_poll_seconds=0.05,
            lease_margin_seconds=0.5,
            on_event=notes.append,
            transport=reference_transport(server, before),
        )
        task = asyncio.create_task(worker.run())
        await until(lambda: stopped.is_set() and bool(of(notes, Finished, first)), "the second to start")
        reply = server.handle(
            ApiRequest("POST", ANTHROPIC.path(env, second, "stop"), {"Authorization": "Bearer op"}, b'{"force":true}'),
            datetime.now(UTC),
        )
        assert reply.status == 204
        await until(lambda: bool(of(notes, Abort, second)), "the second's handler to be told")
        worker.stop()
        assert await task is None

    drive(body)
    assert all(path.startswith(ANTHROPIC.base_path) for _, path, _ in seen)
    polls = [headers for _, path, headers in seen if path.endswith("/poll")]
    others = [headers for _, path, headers in seen if not path.endswith("/poll")]
    assert polls and all(h["anthropic-worker-id"] == "w1" for h in polls)
    assert others and not any("anthropic-worker-id" in h or "worker-id" in h for h in others)
    assert of(notes, Finished, first) == [Finished(first, "completed", True)]
    (abort,) = of(notes, Abort, second)
    assert "stopped" in abort.reason
    stops = [path for method, path, _ in seen if path.endswith("/stop")]
    assert stops == [ANTHROPIC.path(env, first, "stop")]  # the second is stopped already: no stop of its own
    items = {item.id: item for item in server.snapshot()[0].items}
    assert items[first].state is State.STOPPED and items[second].state is State.STOPPED


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        (f"http://h:1{BASE_PATH}{ENV0}", None, ("http://h:1/", ENV0)),
        (f"http://h:1{BASE_PATH}{ENV0}/", None, ("http://h:1/", ENV0)),
        (f"https://h/prefix{BASE_PATH}{ENV0}/work", None, ("https://h/prefix/", ENV0)),
        ("http://h:1", ENV0, ("http://h:1/", ENV0)),
        ("http://h:1/prefix/", ENV0, ("http://h:1/prefix/", ENV0)),
    ],
)
def test_split_url_reads_an_environment_url_or_a_server_url(url: str, env: str | None, expected: Any) -> None:
    assert split_url(url, env, "qoder") == expected


@pytest.mark.parametrize(
    ("url", "env", "dialect", "param"),
    [
        ("http://h:1", None, "qoder", "url"),
        ("ftp://h/x", ENV0, "qoder", "url"),
        ("http://h:1/?q=1", ENV0, "qoder", "url"),
        (f"http://h:1{BASE_PATH}env_bad", None, "qoder", "environment_id"),
        (f"http://h:1{BASE_PATH}{ENV0}", "env_" + "1" * 32, "qoder", "environment_id"),
        ("http://h:1", ENV0, "martian", "dialect"),
    ],
)
def test_split_url_refuses_what_names_no_environment(url: str, env: str | None, dialect: str, param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        split_url(url, env, dialect)
    assert caught.value.param == param


def test_cancel_escalates_to_lost_and_nothing_else() -> None:
    async def body() -> None:
        cancel = Cancel()
        assert not cancel.is_set() and cancel.kind is None
        cancel.trigger("drain", "a")
        cancel.trigger("shutdown", "b")  # a second soft reason changes nothing
        assert (cancel.kind, cancel.reason, cancel.lost) == ("drain", "a", False)
        cancel.trigger("lost", "c")
        cancel.trigger("drain", "d")
        assert (cancel.kind, cancel.reason, cancel.lost) == ("lost", "c", True)
        await asyncio.wait_for(cancel.wait_lost(), 1)

    asyncio.run(body())


def test_without_httpx_the_runner_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingExtra, match=r"pip install 'workstate\[worker\]'"):
        require_httpx()
