"""The ``anthropic`` SDK's EnvironmentWorker (and its poller) against the reference server in the ``anthropic``
dialect, over loopback HTTP, with no rewriting: the SDK's requests reach the workstate app as sent.

Heartbeats come every ``max(1, ttl/2)`` seconds: the server's default TTL is 2 s, so about one a second; the
server's clock stands still unless a test moves it, so no lease lapses by accident on a busy machine. Tests
assert what happened (requests, their order, the items' states, the count of heartbeats), never timing. Every
recorded trace is judged by ``workstate check --dialect anthropic``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from live_stack import LIMIT, Live, check_trace, need, until

from workstate import ANTHROPIC, State

POLICY = attrs.evolve(ANTHROPIC.policy, min_ttl_seconds=1, default_ttl_seconds=2)
KEY = "envkey-1"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    server = Live(ANTHROPIC, POLICY, tmp_path / "anthropic.jsonl")
    try:
        yield server
    finally:
        server.close()


def sdk_client(live: Live, transport: Any = None) -> Any:
    anthropic = need("anthropic")
    options: dict[str, Any] = {}
    if transport is not None:
        httpx2 = need("httpx2")
        options["http_client"] = httpx2.AsyncClient(transport=transport)
    return anthropic.AsyncAnthropic(base_url=live.url, api_key=KEY, max_retries=0, timeout=30.0, **options)


def environment_worker(live: Live, env: str, tmp_path: Path, name: str, transport: Any = None) -> Any:
    need("anthropic")
    from anthropic.lib.environments import EnvironmentWorker

    workdir = tmp_path / name
    workdir.mkdir()
    return EnvironmentWorker(
        sdk_client(live, transport),
        environment_id=env,
        environment_key=KEY,
        tools=[],
        workdir=str(workdir),
        memory_sync_interval=None,
        worker_id=name,
    )


@contextlib.asynccontextmanager
async def running(worker: Any) -> Any:
    """``worker.run()`` as a task, cancelled (bounded) when the block ends."""
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, LIMIT)


def drive(body: Any) -> None:
    asyncio.run(asyncio.wait_for(body(), LIMIT * 2))


async def operator_stop(live: Live, env: str, work_id: str, *, force: bool) -> int:
    async with httpx.AsyncClient(base_url=live.url, timeout=30.0) as client:
        reply = await client.post(
            ANTHROPIC.path(env, work_id, "stop"), json={"force": force}, headers={"Authorization": "Bearer operator"}
        )
    return reply.status_code


def judged(live: Live) -> None:
    live.close()
    report = check_trace(live.trace, ANTHROPIC, POLICY)
    assert report.exchanges == len(live.requests()) > 0


def operations(live: Live, work_id: str) -> list[tuple[str, int]]:
    return [(s.operation, s.status) for s in live.requests(work_id=work_id)]


def test_a_normal_lifecycle(live: Live, tmp_path: Path) -> None:
    """Poll, ack, heartbeats; the session's event stream ends the session; the worker force-stops: 204."""
    env, (wid,) = live.create(1)

    async def body() -> None:
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.item(env, wid).state is State.STOPPED, "the item stopped")
        await asyncio.sleep(0)

    drive(body)
    (poll, *_) = [s for s in live.requests("poll") if s.status == 200 and s.answer is not None]
    assert poll.answer["id"] == wid and poll.answer["secret"] is None
    ops = operations(live, wid)
    assert ops[0] == ("ack", 200) and ("heartbeat", 200) in ops
    (stop,) = live.requests("stop", wid)
    assert (stop.status, stop.json) == (204, {"force": True})
    assert ops.index(("heartbeat", 200)) < ops.index(("stop", 204))
    assert live.standin.streams == 1
    judged(live)


def test_a_health_probe_is_acked_and_stopped(live: Live, tmp_path: Path) -> None:
    """A ``healthcheck`` item: the EnvironmentWorker acks it and force-stops it, with no heartbeat and no session."""
    env, _ = live.create(0)
    (probe,) = live.add(env, 1, data_type="healthcheck")

    async def body() -> None:
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.item(env, probe).state is State.STOPPED, "the probe stopped")

    drive(body)
    (poll,) = [s for s in live.requests("poll") if s.answer is not None]
    assert poll.answer["data"]["type"] == "healthcheck"
    assert operations(live, probe) == [("ack", 200), ("stop", 204)]
    assert live.standin.streams == 0
    judged(live)


def test_an_empty_poll_is_a_null_the_poller_reads(live: Live) -> None:
    """The SDK's poller, alone: an empty poll (200 ``null``, which it reads as nothing), then an item it acks and
    yields."""
    env, _ = live.create(0)

    async def body() -> None:
        client = sdk_client(live)
        poller = client.beta.environments.work.poller(environment_id=env, environment_key=KEY, worker_id="p1")
        task = asyncio.get_running_loop().create_task(anext(poller))
        try:
            await until(lambda: any(s.status == 200 and s.reply == b"null" for s in live.requests("poll")), "a null")
            assert not task.done()  # the poller took the null as "nothing yet" and polls on
            (wid,) = live.add(env, 1)
            item = await asyncio.wait_for(task, LIMIT)
            assert item.id == wid and item.data.type == "session" and item.state == "queued"  # as polled; then acked
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, LIMIT)
            await poller.aclose()

    drive(body)
    (wid,) = {s.work_id for s in live.requests("ack")}
    assert operations(live, wid) == [("ack", 200), ("stop", 204)]  # closing the poller stops the item it yielded
    assert live.item(env, wid).state is State.STOPPING  # a graceful stop of a started item
    judged(live)


def test_a_graceful_stop_by_an_operator(live: Live, tmp_path: Path) -> None:
    """Stop (graceful) while the worker heartbeats: the next heartbeat shows ``stopping``, the worker ends the
    session and finishes with a force stop."""
    env, (wid,) = live.create(1)
    live.standin.release.clear()  # the session runs until the worker ends it

    async def body() -> None:
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.count("heartbeat", status=200) >= 2, "two heartbeats")
            assert await operator_stop(live, env, wid, force=False) == 204
            await until(lambda: live.item(env, wid).state is State.STOPPED, "the item stopped")

    drive(body)
    (operator, worker_stop) = live.requests("stop", wid)
    assert operator.json == {"force": False} and operator.status == 204
    assert worker_stop.json == {"force": True} and worker_stop.status == 204
    beats_between = [s for s in live.requests("heartbeat", wid) if operator.at < s.at < worker_stop.at]
    assert len(beats_between) == 1 and beats_between[0].answer["state"] == "stopping"  # the one that told it
    judged(live)


def test_a_force_stop_ends_the_session_within_one_heartbeat(live: Live, tmp_path: Path) -> None:
    """A force stop while the worker heartbeats: the very next heartbeat answers ``stopped`` (200,
    ``lease_extended: false``), and the worker ends the session on it: one heartbeat after the stop, no more."""
    env, (wid,) = live.create(1)
    live.standin.release.clear()

    async def body() -> None:
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.count("heartbeat", status=200) >= 2, "two heartbeats")
            assert await operator_stop(live, env, wid, force=True) == 204
            await until(lambda: len(live.requests("stop", wid)) == 2, "the worker's own force stop")

    drive(body)
    operator, worker_stop = live.requests("stop", wid)
    after = [s for s in live.requests("heartbeat", wid) if s.at > operator.at]
    assert len(after) == 1
    (beat,) = after
    assert beat.status == 200 and beat.at < worker_stop.at
    assert worker_stop.json == {"force": True} and worker_stop.status == 409  # stopped already (the SDK ignores it)
    assert live.item(env, wid).state is State.STOPPED
    judged(live)


def test_the_force_stop_answer_the_worker_reads(live: Live, tmp_path: Path) -> None:
    """What the heartbeat after a force stop answers, as the trace recorded it."""
    env, (wid,) = live.create(1)
    live.standin.release.clear()

    async def body() -> None:
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.count("heartbeat", status=200) >= 1, "a heartbeat")
            assert await operator_stop(live, env, wid, force=True) == 204
            await until(lambda: len(live.requests("stop", wid)) == 2, "the worker's own force stop")

    drive(body)
    live.close()
    lines = [json.loads(line) for line in live.trace.read_text().splitlines() if line.strip()]
    stopped_at = next(i for i, x in enumerate(lines) if x["request"]["target"].endswith("/stop"))
    beat = next(x for x in lines[stopped_at:] if "/heartbeat" in x["request"]["target"])
    assert beat["response"]["status"] == 200
    reply = beat["response"]["body"]
    assert (reply["type"], reply["state"], reply["lease_extended"]) == ("work_heartbeat", "stopped", False)
    judged(live)


def test_a_worker_killed_mid_lease_leaves_the_item_to_another(live: Live, tmp_path: Path) -> None:
    """The first worker dies holding the lease (its network gone, its task cancelled: no stop reaches the
    server); the test clock passes the lease; the item is re-queued and a second worker finishes it."""
    httpx2 = need("httpx2")
    env, (wid,) = live.create(1)
    live.standin.release.clear()

    class Dying(httpx2.AsyncHTTPTransport):  # type: ignore[misc, name-defined]
        dead = False

        async def handle_async_request(self, request: Any) -> Any:
            if self.dead:
                raise httpx2.ConnectError("the worker's host is gone", request=request)
            return await super().handle_async_request(request)

    dying = Dying()

    async def body() -> None:
        logging.getLogger("anthropic").setLevel(logging.CRITICAL)
        async with running(environment_worker(live, env, tmp_path, "w1", transport=dying)):
            await until(lambda: live.count("heartbeat", status=200) >= 2, "two heartbeats")
            dying.dead = True
        assert live.item(env, wid).state is State.ACTIVE  # nobody stopped it
        live.clock.advance(POLICY.default_ttl_seconds + 1)  # the lease lapses
        live.standin.release.set()
        async with running(environment_worker(live, env, tmp_path, "w2")):
            await until(lambda: live.item(env, wid).state is State.STOPPED, "the second worker finished it")

    drive(body)
    acks = live.requests("ack", wid)
    assert len(acks) == 2 and all(a.status == 200 for a in acks)
    assert live.requests("stop", wid)[-1].status == 204
    assert len(live.requests("stop", wid)) == 1  # only the second worker's stop reached the server
    assert live.item(env, wid).state is State.STOPPED
    judged(live)


def test_a_412_after_a_lapse_ends_the_session_without_a_stop(live: Live, tmp_path: Path) -> None:
    """The worker's lease lapses (the clock passes it); its next heartbeat is 412 with
    ``error.details.current_state``; the worker ends that session and sends no stop for it."""
    env, (wid,) = live.create(1)
    live.standin.release.clear()

    async def body() -> None:
        logging.getLogger("anthropic").setLevel(logging.CRITICAL)
        async with running(environment_worker(live, env, tmp_path, "w1")):
            await until(lambda: live.count("heartbeat", status=200) >= 2, "two heartbeats")
            live.clock.advance(POLICY.default_ttl_seconds + 1)
            await until(lambda: live.count("heartbeat", status=412) >= 1, "a 412")
            (refused,) = [s for s in live.requests("heartbeat", wid) if s.status == 412]
            # the session ends: the worker polls again and takes the re-queued item anew (a second ack)
            await until(lambda: len(live.requests("ack", wid)) == 2, "the item taken again")
            between = [s for s in live.requests(work_id=wid) if refused.at < s.at < live.requests("ack", wid)[1].at]
            assert [s.operation for s in between if s.operation == "stop"] == []

    drive(body)
    live.close()
    lines = [json.loads(line) for line in live.trace.read_text().splitlines() if line.strip()]
    (refusal,) = [x for x in lines if x["response"]["status"] == 412][:1]
    error = refusal["response"]["body"]["error"]
    assert error["type"] == "invalid_request_error"
    assert error["details"]["error_code"] == "heartbeat_precondition_failed"
    assert error["details"]["current_state"]["state"] == "queued"
    judged(live)
