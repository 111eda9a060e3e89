"""The worker driver, one test per branch of spec section 8 (named after the branch)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import T0, sec

from workstate import NO_HEARTBEAT, Policy, State
from workstate.api import Request, Response, Server
from workstate.codec import dumps
from workstate.errors import InvalidInput
from workstate.worker import (
    HEARTBEAT_CAP_SECONDS,
    Abort,
    Actions,
    Drain,
    Dropped,
    Event,
    Finished,
    Halted,
    RetryPolicy,
    Send,
    StartWork,
    Worker,
)

SHORT = Policy(min_ttl_seconds=1, default_ttl_seconds=10)


class Rig:
    """A driver wired straight to a reference server (no network), with a log of everything sent."""

    def __init__(self, policy: Policy = SHORT, items: int = 1, **options: object) -> None:
        self.server = Server(policy)
        self.env = self.server.create_environment(now=T0)
        self.work = [self.server.create_work(self.env, session_id=f"sess_{i + 1:032x}", now=T0) for i in range(items)]
        options.setdefault("ttl_seconds", 10)
        self.worker = Worker(self.env, "w1", **options)  # type: ignore[arg-type]
        self.sent: list[Request] = []
        self.pending: list[Send] = []
        self.events: list[Event] = []
        self.wake_at = None

    def take(self, actions: Actions) -> Actions:
        self.pending += actions.sends
        self.sent += [s.request for s in actions.sends]
        self.events += actions.events
        self.wake_at = actions.wake_at
        return actions

    def answer(self, now: object, *, only: int | None = None) -> None:
        """Answer pending sends through the server at ``now`` (all of them, repeatedly, or only ``only`` of them)."""
        rounds = 0
        while self.pending and (only is None or rounds < only):
            send = self.pending.pop(0)
            self.take(self.worker.receive(send.id, self.server.handle(send.request, now), now))  # type: ignore[arg-type]
            rounds += 1

    def reply(self, status: int, body: object = None) -> None:
        """Answer the oldest pending send with a made-up response."""
        send = self.pending.pop(0)
        self.take(self.worker.receive(send.id, Response(status, body, dumps(body)), self.now))

    def fail_next(self, now: object) -> None:
        send = self.pending.pop(0)
        self.take(self.worker.fail(send.id, now))  # type: ignore[arg-type]

    def item(self, index: int = 0) -> object:
        (env,) = self.server.snapshot()
        return {i.id: i for i in env.items}[self.work[index]]

    def start(self, now: object = T0) -> None:
        self.now = now
        self.take(self.worker.start(now))  # type: ignore[arg-type]

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def targets(self) -> list[str]:
        """The last path segment of every request sent, polls left out."""
        names = [r.target.split("?")[0].rsplit("/", 1)[-1] for r in self.sent]
        return [name for name in names if name != "poll"]


def running(rig: Rig, now: object = T0) -> None:
    rig.start(now)
    rig.answer(now)
    assert rig.of(StartWork), rig.events


# --- poll ---


def test_poll_sends_worker_id_and_block_ms() -> None:
    rig = Rig()
    rig.start()
    (send,) = rig.pending
    assert send.request.method == "GET"
    assert send.request.target.endswith("/work/poll?block_ms=999")
    assert dict(send.request.headers)["Worker-ID"] == "w1"  # type: ignore[arg-type]
    assert send.work_id is None


def test_empty_poll_waits_then_polls_again() -> None:
    rig = Rig(items=0, idle_poll_seconds=1.5)
    rig.start()
    rig.answer(T0)
    assert rig.pending == [] and rig.wake_at == sec(1.5)
    rig.take(rig.worker.wake(sec(1)))
    assert rig.pending == []
    rig.take(rig.worker.wake(sec(1.5)))
    assert [s.request.method for s in rig.pending] == ["GET"]


def test_concurrency_limit_bounds_the_items_held() -> None:
    rig = Rig(items=5, concurrency=2)
    rig.start()
    rig.answer(T0)
    assert len(rig.of(StartWork)) == 2
    assert [r.method for r in rig.sent].count("GET") == 2 and rig.pending == []
    rig.take(rig.worker.done(rig.work[0], sec(1)))
    rig.answer(sec(1))
    assert len(rig.of(StartWork)) == 3  # a slot came free: one more poll, one more item


# --- ack ---


def test_ack_sends_the_same_worker_id() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=1)
    (ack,) = rig.pending
    assert ack.request.target.endswith(f"/work/{rig.work[0]}/ack") and ack.work_id == rig.work[0]
    assert dict(ack.request.headers)["Worker-ID"] == "w1"  # type: ignore[arg-type]


def test_ack_409_drops_the_item() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=1)  # delivered to w1
    other = Request(
        "POST", f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/ack", {"Authorization": "Bearer t"}
    )
    assert rig.server.handle(other, T0).status == 200  # someone acked it first (bound to w1 by delivery: replay)
    rig.server.handle(
        Request("POST", f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/stop", {"Authorization": "Bearer t"}),
        T0,
    )
    rig.answer(T0, only=1)  # ack on a stopping item: 409
    assert rig.of(Dropped) == [Dropped(rig.work[0], "ack answered 409", 409)]
    assert rig.worker.items == () and not rig.of(StartWork)


def test_ack_other_4xx_is_final() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=1)
    rig.reply(404, {"type": "error"})
    assert rig.of(Dropped)[0].status == 404 and rig.worker.items == ()


# --- heartbeats ---


def test_first_heartbeat_sends_no_heartbeat_then_start_work() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=2)
    (beat,) = rig.pending
    assert f"expected_last_heartbeat={NO_HEARTBEAT}" in beat.request.target
    assert "desired_ttl_seconds=10" in beat.request.target
    assert not rig.of(StartWork)  # no work before the lease is held
    rig.answer(T0, only=1)
    (start,) = rig.of(StartWork)
    assert start.work_id == rig.work[0] and start.work.state is State.QUEUED
    assert rig.item().state is State.ACTIVE  # type: ignore[attr-defined]


def test_heartbeats_echo_last_heartbeat() -> None:
    rig = Rig()
    running(rig)
    token = rig.item().latest_heartbeat_at  # type: ignore[attr-defined]
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    assert f"expected_last_heartbeat={token.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}" in beat.request.target
    rig.answer(sec(5))
    assert rig.item().latest_heartbeat_at == sec(5)  # type: ignore[attr-defined]
    assert not rig.of(Abort)


@pytest.mark.parametrize(("ttl", "interval"), [(10, 5.0), (120, HEARTBEAT_CAP_SECONDS)])
def test_heartbeat_every_half_ttl_capped_at_30_seconds(ttl: int, interval: float) -> None:
    rig = Rig(policy=Policy(min_ttl_seconds=1), ttl_seconds=ttl)
    running(rig)
    assert rig.wake_at == sec(interval)
    rig.take(rig.worker.wake(sec(interval) - timedelta(microseconds=1)))
    assert rig.pending == []
    rig.take(rig.worker.wake(sec(interval)))
    assert [s.request.target.split("?")[0].rsplit("/", 1)[-1] for s in rig.pending] == ["heartbeat"]


def test_heartbeat_412_loses_the_lease_abort_and_no_stop() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    rig.reply(412, {"type": "error"})
    assert rig.of(Abort) == [Abort(rig.work[0], "412: another holds the lease")]
    assert "stop" not in rig.targets() and all(s.work_id is None for s in rig.pending)
    assert rig.worker.items == ()


def test_heartbeat_409_loses_the_lease_abort_and_no_stop() -> None:
    rig = Rig()
    running(rig)
    force = dumps({"force": True})
    path = f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/stop"
    rig.server.handle(Request("POST", path, {"Authorization": "Bearer t"}, force), sec(1))
    rig.take(rig.worker.wake(sec(5)))
    rig.answer(sec(5))
    (abort,) = rig.of(Abort)
    assert abort.reason.startswith("409") and "stop" not in rig.targets()


def test_lease_extended_false_loses_the_lease() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    body = {
        "type": "work_heartbeat",
        "last_heartbeat": "2026-07-01T08:15:06.000000Z",
        "lease_extended": False,
        "state": "active",
        "ttl_seconds": 10,
    }
    rig.reply(200, body)
    assert rig.of(Abort) == [Abort(rig.work[0], "lease_extended: false")]


def test_a_whole_ttl_without_a_successful_heartbeat_loses_the_lease() -> None:
    rig = Rig(lease_margin_seconds=1.0)
    running(rig)
    assert rig.worker.lease_until(rig.work[0]) == sec(9)  # sent at 0, TTL 10, margin 1
    now = sec(5)
    rig.take(rig.worker.wake(now))
    while not rig.of(Abort):  # every heartbeat gets no response
        rig.fail_next(now)
        assert rig.wake_at is not None and rig.wake_at <= sec(9)
        now = rig.wake_at
        rig.take(rig.worker.wake(now))
    assert now == sec(9)
    assert rig.of(Abort) == [Abort(rig.work[0], "no successful heartbeat for a whole TTL")]
    assert "stop" not in rig.targets()
    assert rig.item().state is State.ACTIVE  # type: ignore[attr-defined]  # the server lapses it at its own deadline


# --- drain and completion ---


def test_stopping_in_a_heartbeat_reply_drains_then_stop_confirms() -> None:
    rig = Rig()
    running(rig)
    path = f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/stop"
    rig.server.handle(Request("POST", path, {"Authorization": "Bearer t"}), sec(1))
    rig.take(rig.worker.wake(sec(5)))
    rig.answer(sec(5))
    assert rig.of(Drain) == [Drain(rig.work[0])]
    rig.take(rig.worker.wake(sec(10)))  # heartbeats go on while draining
    rig.answer(sec(10))
    assert rig.targets().count("heartbeat") == 3 and rig.item().state is State.STOPPING  # type: ignore[attr-defined]
    rig.take(rig.worker.done(rig.work[0], sec(11)))
    rig.answer(sec(11))
    assert rig.of(Finished) == [Finished(rig.work[0], "drained")]
    assert rig.targets()[-1] == "stop" and rig.item().state is State.STOPPED  # type: ignore[attr-defined]


def test_completion_stops_gracefully_then_confirms() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.done(rig.work[0], sec(2)))
    rig.answer(sec(2), only=1)
    assert rig.item().state is State.STOPPING  # type: ignore[attr-defined]  # the graceful stop
    rig.answer(sec(2))
    assert rig.item().state is State.STOPPED  # type: ignore[attr-defined]  # the confirmation
    assert rig.targets()[-2:] == ["stop", "stop"] and all(r.body == b"" for r in rig.sent[-2:])
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]


def test_no_stop_once_the_lease_ran_out() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.done(rig.work[0], sec(9.5)))  # the believed lease ended at 9 s
    assert "stop" not in rig.targets()
    assert rig.of(Abort) == [Abort(rig.work[0], "the lease ran out before the stop was sent")]


def test_stopped_before_start_confirms_without_start_work() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=2)  # polled and acked
    path = f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/stop"
    rig.server.handle(Request("POST", path, {"Authorization": "Bearer t"}), T0)
    rig.answer(T0)
    assert not rig.of(StartWork)
    assert rig.of(Finished) == [Finished(rig.work[0], "stopped before it started")]
    assert rig.item().state is State.STOPPED  # type: ignore[attr-defined]


# --- retries ---


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_with_backoff(status: int) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=4))
    rig.start()
    rig.answer(T0, only=1)
    waits = []
    now = T0
    for _ in range(4):
        rig.now = now
        rig.reply(status, {"type": "error"})
        assert rig.pending == []
        assert rig.wake_at is not None
        waits.append((rig.wake_at - now).total_seconds())
        now = rig.wake_at
        rig.take(rig.worker.wake(now))
        assert rig.targets()[-1] == "ack"
    assert waits == [0.5, 1.0, 2.0, 2.0]  # d/2 with no jitter: 1, 2, 4, 4 (capped) halved
    rig.answer(now)
    assert rig.of(StartWork)


def test_network_faults_are_retried_and_jitter_comes_from_the_injected_source() -> None:
    draws = iter([0.0, 0.999])
    rig = Rig(jitter=lambda: next(draws), retry=RetryPolicy(base_seconds=2, cap_seconds=2))
    rig.start()
    rig.answer(T0, only=1)
    rig.fail_next(T0)
    assert rig.wake_at == sec(1)  # 2/2 + 0.0 * 2/2
    rig.take(rig.worker.wake(sec(1)))
    rig.fail_next(sec(1))
    assert rig.wake_at == sec(1 + 1 + 0.999)
    now = rig.wake_at
    rig.take(rig.worker.wake(now))
    rig.answer(now)
    assert rig.of(StartWork)


def test_retries_of_an_ack_give_up_after_max_attempts() -> None:
    rig = Rig(retry=RetryPolicy(max_attempts=3))
    rig.start()
    rig.answer(T0, only=1)
    for _ in range(3):
        rig.fail_next(rig.now)
        if rig.wake_at is not None:
            rig.now = rig.wake_at
            rig.take(rig.worker.wake(rig.now))
    assert [type(e) for e in rig.events] == [Dropped]


def test_poll_other_4xx_is_final() -> None:
    rig = Rig()
    rig.start()
    rig.reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "no"}})
    assert rig.of(Halted) == [Halted(401, "poll answered 401: no")]
    assert rig.worker.halted and rig.wake_at is None
    rig.take(rig.worker.wake(sec(100)))
    assert rig.pending == []


def test_poll_5xx_is_retried() -> None:
    rig = Rig()
    rig.start()
    rig.reply(503, {})
    assert rig.pending == [] and rig.wake_at is not None
    rig.take(rig.worker.wake(rig.wake_at))
    assert len(rig.pending) == 1


# --- answers the driver no longer waits for ---


def test_late_and_duplicate_responses_are_ignored() -> None:
    rig = Rig()
    rig.start()
    (poll,) = rig.pending
    response = rig.server.handle(poll.request, T0)
    rig.pending.clear()
    rig.take(rig.worker.receive(poll.id, response, T0))
    acks = list(rig.pending)
    again = rig.worker.receive(poll.id, response, T0)  # the duplicate
    assert again.sends == () and again.events == ()
    assert rig.worker.receive(12345, response, T0).sends == ()  # never sent
    rig.take(rig.worker.fail(acks[0].id, T0))  # timed out ...
    late = rig.worker.receive(acks[0].id, rig.server.handle(acks[0].request, T0), T0)  # ... then answered
    assert late.sends == () and late.events == ()


def test_bad_arguments_raise_typed_errors() -> None:
    server = Server()
    env = server.create_environment(now=T0)
    for kwargs in ({"concurrency": 0}, {"ttl_seconds": 0}, {"block_ms": 1000}, {"lease_margin_seconds": -1}):
        with pytest.raises(InvalidInput):
            Worker(env, "w1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Worker("env_x", "w1")
    with pytest.raises(InvalidInput):
        Worker(env, "")
    with pytest.raises(InvalidInput):
        RetryPolicy(base_seconds=0)
    with pytest.raises(InvalidInput):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        Worker(env, "w1").wake(T0.replace(tzinfo=None))
