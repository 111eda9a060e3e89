"""``qca-sdk`` (import ``qca``) against the reference server in the ``qoder`` dialect over loopback HTTP.

Every work method the SDK has (poll, ack, heartbeat, stop, retrieve, update, list, stats) is called as a user
would call it, its typed result checked, and its typed errors (409, 412, 404) caught; the recorded trace is
then judged by ``workstate check --dialect qoder``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_stack import Live, check_trace, need

from workstate import QODER, Policy, State

POLICY = Policy(min_ttl_seconds=1, default_ttl_seconds=30)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    server = Live(QODER, POLICY, tmp_path / "qca.jsonl")
    try:
        yield server
    finally:
        server.close()


def client(live: Live) -> Any:
    managed = need("qca.managed")
    base = live.url + QODER.base_path.removesuffix("environments/")  # qca joins its paths relative to base_url
    return managed.Managed(base_url=base, access_token="envkey-1", max_retries=0, timeout=30.0)


def test_every_work_method_of_qca_against_the_qoder_dialect(live: Live) -> None:
    qca = need("qca")
    env, (first, second) = live.create(2)
    work = client(live).environments.work

    polled = work.poll(env, block_ms=999, worker_id="w1")
    assert polled is not None and polled.id == first and polled.type == "work"
    assert polled.environment_id == env and polled.data is not None and polled.data.type == "session"
    assert polled.state == "queued"

    acked = work.ack(first, environment_id=env)  # qca sends no worker header on ack: none is needed
    assert (acked.id, acked.state) == (first, "starting") and acked.acknowledged_at is not None

    beat = work.heartbeat(first, environment_id=env, expected_last_heartbeat="NO_HEARTBEAT", desired_ttl_seconds=20)
    assert (beat.type, beat.state, beat.lease_extended, beat.ttl_seconds) == ("work_heartbeat", "active", True, 20)
    assert isinstance(beat.last_heartbeat, str)

    with pytest.raises(qca.APIStatusError) as stale:  # a fencing token that is not the latest: 412
        work.heartbeat(first, environment_id=env, expected_last_heartbeat="2020-01-01T00:00:00Z")
    assert stale.value.status_code == 412
    assert stale.value.body["error"]["type"] == "precondition_failed_error"

    again = work.heartbeat(first, environment_id=env, expected_last_heartbeat=beat.last_heartbeat)
    assert again.state == "active" and again.lease_extended is True

    updated = work.update(first, environment_id=env, metadata={"owner": "qca"})
    assert updated.metadata == {"owner": "qca"}
    got = work.retrieve(first, environment_id=env)
    assert (got.id, got.state, got.metadata) == (first, "active", {"owner": "qca"})
    assert got.latest_heartbeat_at is not None and got.started_at is not None

    stats = work.stats(env)
    assert (stats.type, stats.depth) == ("work_queue_stats", 1)  # the second item waits
    assert isinstance(stats.pending, int) and isinstance(stats.workers_polling, int)

    page = work.list(env, limit=1)
    assert [item.id for item in page.data] == [first]
    assert [item.id for item in work.list(env, limit=1)] == [first, second]  # the SDK follows next_page

    graceful = work.stop(first, environment_id=env)
    assert graceful.state == "stopping" and graceful.stop_requested_at is not None
    forced = work.stop(first, environment_id=env, force=True)
    assert forced.state == "stopped" and forced.stopped_at is not None

    with pytest.raises(qca.ConflictError) as conflict:  # heartbeat on a stopped item: 409
        work.heartbeat(first, environment_id=env, expected_last_heartbeat=again.last_heartbeat)
    assert conflict.value.status_code == 409 and conflict.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(qca.NotFoundError) as missing:
        work.retrieve("work_" + "f" * 32, environment_id=env)
    assert missing.value.status_code == 404

    assert work.poll(env, block_ms=1, worker_id="w1").id == second  # type: ignore[union-attr]
    assert work.poll(env, block_ms=1, worker_id="w1") is None  # nothing left: an empty poll is None
    assert live.item(env, first).state is State.STOPPED

    live.close()
    report = check_trace(live.trace, QODER, POLICY)
    assert report.exchanges == len(live.requests()) >= 17


def test_qca_async_client_runs_a_lifecycle(live: Live) -> None:
    import asyncio

    managed = need("qca.managed")
    env, (wid,) = live.create(1)
    base = live.url + QODER.base_path.removesuffix("environments/")

    async def lifecycle() -> None:
        async with managed.AsyncManaged(base_url=base, access_token="k", max_retries=0, timeout=30.0) as api:
            work = api.environments.work
            polled = await work.poll(env, block_ms=999, worker_id="w9")
            assert polled is not None and polled.id == wid
            await work.ack(wid, environment_id=env)
            beat = await work.heartbeat(wid, environment_id=env, expected_last_heartbeat="NO_HEARTBEAT")
            assert beat.state == "active"
            assert [item.id async for item in work.list(env)] == [wid]
            done = await work.stop(wid, environment_id=env, force=True)
            assert done.state == "stopped"

    asyncio.run(asyncio.wait_for(lifecycle(), 60))
    live.close()
    assert check_trace(live.trace, QODER, POLICY).exchanges == len(live.requests())
