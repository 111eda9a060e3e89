"""The worker driver, one test per branch of api.md §8 (named after the branch)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from helpers import T0, sec

from workstate import NO_HEARTBEAT, Policy, State
from workstate.api import Request, Response, Server
from workstate.api.codec import dumps
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
    query = parse_qs(beat.request.target.split("?", 1)[1])
    assert query["expected_last_heartbeat"] == [token.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]  # echoed, percent-encoded
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


# --- api.md §8: stop retries (429, 5xx, network faults) ---


def stop_path(rig: Rig) -> str:
    return f"/api/v1/cloud/environments/{rig.env}/work/{rig.work[0]}/stop"


def outside_stop(rig: Rig, now: object, force: bool = False) -> None:
    body = dumps({"force": True}) if force else b""
    assert rig.server.handle(Request("POST", stop_path(rig), {"Authorization": "Bearer t"}, body), now).status == 200  # type: ignore[arg-type]


def names(sends: object) -> list[str]:
    return [s.request.target.split("?")[0].rsplit("/", 1)[-1] for s in sends]  # type: ignore[attr-defined]


def test_stop_retries_back_off_and_give_up_after_max_attempts() -> None:
    rig = Rig(ttl_seconds=60, jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=8, max_attempts=3))
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    waits = []
    for _ in range(10):
        assert names(rig.pending) == ["stop"]
        rig.reply(503, {"type": "error"})
        if rig.of(Finished):
            break
        assert rig.wake_at is not None and rig.pending == []
        waits.append((rig.wake_at - rig.now).total_seconds())
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
    assert waits == [0.5, 1.0]  # d/2 with no jitter: 1, 2 halved; the third attempt is the last
    assert rig.targets().count("stop") == 3
    (finished,) = rig.of(Finished)
    assert not finished.confirmed and finished.reason.startswith("stop not confirmed after 3 attempts")
    assert rig.worker.items == () and not rig.of(Abort)


def test_stop_retries_start_over_for_the_confirming_stop() -> None:
    rig = Rig(ttl_seconds=60, jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=8, max_attempts=2))
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    rig.reply(503, {"type": "error"})  # the graceful stop: one failure of two allowed
    rig.now = rig.wake_at
    rig.take(rig.worker.wake(rig.now))
    rig.answer(rig.now, only=1)  # the graceful stop took: stopping
    rig.reply(503, {"type": "error"})  # the confirming stop is a new stop: it gets its own two attempts
    assert not rig.of(Finished) and rig.wake_at is not None
    rig.now = rig.wake_at
    rig.take(rig.worker.wake(rig.now))
    rig.answer(rig.now)
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]


def test_heartbeats_go_on_while_a_stop_is_retried() -> None:
    rig = Rig(jitter=lambda: 0.5)  # TTL 10: heartbeats every 5 s; default retries span about 18 s
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    log = []
    for _ in range(100):
        assert len(rig.pending) <= 1 and rig.worker.in_flight <= 1  # one send per item at a time
        for send in list(rig.pending):
            rig.pending.remove(send)
            name = names([send])[0]
            log.append((name, (rig.now - sec(0)).total_seconds()))
            if name == "stop":  # the server is overloaded for stops; heartbeats get through
                response = Response(503, {"type": "error"}, b"{}")
            else:
                response = rig.server.handle(send.request, rig.now)
                assert response.status == 200, response.json
            rig.take(rig.worker.receive(send.id, response, rig.now))
        if rig.events[1:]:
            break
        assert rig.wake_at is not None and rig.wake_at > rig.now
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
    beats = [t for name, t in log if name == "heartbeat"]
    assert len(beats) >= 2 and [name for name, _ in log].count("stop") == 8
    assert not rig.of(Abort)
    (finished,) = rig.of(Finished)
    assert not finished.confirmed and "8 attempts" in finished.reason
    assert rig.item().state is State.ACTIVE  # type: ignore[attr-defined]  # the lease held to the end


def test_a_stop_retried_while_heartbeating_is_confirmed_once_the_server_recovers() -> None:
    rig = Rig(jitter=lambda: 0.5)
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    failures = 0
    for _ in range(100):
        if rig.of(Finished):
            break
        send = rig.pending[0]
        if names([send]) == ["stop"] and rig.now < sec(12):
            failures += 1
            rig.reply(503, {"type": "error"})
        else:
            rig.answer(rig.now, only=1)
        if not rig.pending and not rig.of(Finished):
            assert rig.wake_at is not None
            rig.now = rig.wake_at
            rig.take(rig.worker.wake(rig.now))
    assert failures >= 5 and "heartbeat" in rig.targets()[3:]
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]
    assert rig.item().state is State.STOPPED  # type: ignore[attr-defined]


# --- api.md §8: a heartbeat reply that comes too late ---


def first_beat_in_flight(rig: Rig) -> Send:
    rig.start()
    rig.answer(T0, only=2)  # polled, acked
    (beat,) = rig.pending
    rig.pending.clear()
    return beat


def test_first_heartbeat_reply_after_the_lease_it_grants_ran_out_is_lost() -> None:
    rig = Rig()
    beat = first_beat_in_flight(rig)
    reply = rig.server.handle(beat.request, T0)  # the server took it at 0 s: lease to 10 s
    assert reply.status == 200
    other = Worker(rig.env, "w2", ttl_seconds=10)
    events, sends = [], list(other.start(sec(11)).sends)
    while sends:  # at 11 s the item lapsed, was re-queued and w2 runs it
        send = sends.pop(0)
        actions = other.receive(send.id, rig.server.handle(send.request, sec(11)), sec(11))
        sends += actions.sends
        events += actions.events
    assert any(isinstance(e, StartWork) for e in events)
    actions = rig.take(rig.worker.receive(beat.id, reply, sec(12)))  # the reply reaches w1 at last
    assert not rig.of(StartWork)
    assert [type(e) for e in actions.events] == [Dropped]
    assert all(s.work_id is None for s in actions.sends)  # no stop, no heartbeat: only a poll
    assert rig.worker.items == () and rig.worker.lease_until(rig.work[0]) is None
    assert actions.wake_at is None or actions.wake_at > sec(12)


@pytest.mark.parametrize(("arrives", "started"), [(8.999, True), (9, False)])
def test_first_heartbeat_reply_counts_from_when_it_was_sent(arrives: float, started: bool) -> None:
    rig = Rig(lease_margin_seconds=1.0)
    beat = first_beat_in_flight(rig)
    actions = rig.take(rig.worker.receive(beat.id, rig.server.handle(beat.request, T0), sec(arrives)))
    assert bool(rig.of(StartWork)) is started and bool(rig.of(Dropped)) is not started
    assert actions.wake_at is None or actions.wake_at > sec(arrives)


def test_first_heartbeat_stopping_reply_after_its_lease_sends_no_stop() -> None:
    rig = Rig()
    beat = first_beat_in_flight(rig)
    outside_stop(rig, T0)
    reply = rig.server.handle(beat.request, T0)
    assert reply.json["state"] == "stopping"
    actions = rig.take(rig.worker.receive(beat.id, reply, sec(9.5)))
    assert [type(e) for e in actions.events] == [Dropped]
    assert "stop" not in names(actions.sends)


def test_a_heartbeat_reply_after_its_lease_ran_out_aborts_without_drain_or_stop() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    rig.pending.clear()
    outside_stop(rig, sec(5))
    reply = rig.server.handle(beat.request, sec(5))  # granted at 5 s for 10 s: believed to 14 s
    assert reply.json["state"] == "stopping"
    actions = rig.take(rig.worker.receive(beat.id, reply, sec(14)))  # no wake in between
    assert [type(e) for e in actions.events] == [Abort]
    assert not rig.of(Drain) and "stop" not in names(actions.sends)
    assert actions.wake_at is None or actions.wake_at > sec(14)


def test_a_slow_heartbeat_reply_inside_its_lease_never_asks_for_a_wake_in_the_past() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    rig.pending.clear()
    reply = rig.server.handle(beat.request, sec(5))
    actions = rig.take(rig.worker.receive(beat.id, reply, sec(11)))  # lease to 14 s; the next beat was due at 10 s
    assert not rig.of(Abort)
    assert names(actions.sends) == ["heartbeat"]  # the overdue heartbeat goes at once
    assert actions.wake_at is not None and actions.wake_at > sec(11)
    assert rig.worker.lease_until(rig.work[0]) == sec(14)


def test_no_call_returns_a_wake_in_the_past() -> None:
    rig = Rig(items=2, concurrency=2)
    rig.start()
    rig.answer(T0)
    assert len(rig.of(StartWork)) == 2
    rig.take(rig.worker.wake(sec(5)))
    first, second = rig.pending
    rig.pending.clear()
    rig.take(rig.worker.fail(first.id, sec(5)))
    late = rig.worker.receive(second.id, rig.server.handle(second.request, sec(5)), sec(9.5))  # item 1 lapsed at 9 s
    assert late.wake_at is None or late.wake_at > sec(9.5)
    assert [type(e) for e in late.events] == [Abort]


# --- api.md §8: echoing last_heartbeat ---


def test_last_heartbeat_is_percent_encoded_when_echoed() -> None:
    rig = Rig()
    beat = first_beat_in_flight(rig)
    body = dict(rig.server.handle(beat.request, T0).json)
    body["last_heartbeat"] = body["last_heartbeat"].replace("Z", "+00:00")  # the same instant, RFC 3339 offset form
    rig.take(rig.worker.receive(beat.id, Response(200, body, dumps(body)), T0))
    assert rig.of(StartWork)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    assert "expected_last_heartbeat=2026-07-01T08%3A15%3A01.000000%2B00%3A00&" in beat.request.target
    rig.answer(sec(5))
    assert not rig.of(Abort) and rig.item().latest_heartbeat_at == sec(5)  # type: ignore[attr-defined]


# --- api.md §8: poll branches ---


def test_poll_with_no_response_is_retried_with_backoff() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    rig.start()
    rig.fail_next(T0)
    assert rig.pending == [] and rig.wake_at == sec(1)
    rig.take(rig.worker.wake(sec(1)))
    rig.fail_next(sec(1))
    assert rig.wake_at == sec(3)  # the second retry waits twice as long
    rig.take(rig.worker.wake(sec(3)))
    rig.answer(sec(3))
    assert rig.of(StartWork) and not rig.of(Halted)


def test_poll_reply_after_the_poll_gave_up_is_ignored() -> None:
    rig = Rig()
    rig.start()
    (poll,) = rig.pending
    rig.fail_next(T0)  # timed out ...
    late = rig.worker.receive(poll.id, rig.server.handle(poll.request, T0), T0)  # ... then the stale reply
    assert late.sends == () and late.events == () and rig.worker.items == ()
    rig.take(rig.worker.wake(rig.wake_at))  # type: ignore[arg-type]
    assert names(rig.pending) == ["poll"]


@pytest.mark.parametrize("body", [{"type": "work"}, [], "null", {"type": "error"}])
def test_malformed_poll_reply_is_a_server_fault_retried_later(body: object) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    rig.start()
    rig.reply(200, body)
    assert rig.pending == [] and rig.wake_at == sec(1) and not rig.worker.halted and rig.events == []
    rig.take(rig.worker.wake(sec(1)))
    assert names(rig.pending) == ["poll"]


def test_poll_reply_from_another_environment_is_not_acked() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    rig.start()
    (poll,) = rig.pending
    body = dict(rig.server.handle(poll.request, T0).json)
    body["environment_id"] = "env_" + "f" * 32
    rig.reply(200, body)
    assert rig.pending == [] and rig.worker.items == () and rig.wake_at == sec(1)


def test_redelivery_of_an_item_already_held_is_not_acked_again() -> None:
    rig = Rig(items=2, concurrency=2)
    rig.start()
    (poll,) = rig.pending
    reply = rig.server.handle(poll.request, T0)
    rig.pending.clear()
    rig.take(rig.worker.receive(poll.id, reply, T0))
    assert names(rig.pending) == ["ack", "poll"]
    again = rig.pending[1]
    rig.pending.clear()
    rig.take(rig.worker.receive(again.id, reply, T0))  # the same item delivered again (our ack is slow)
    assert rig.worker.items == (rig.work[0],)
    assert names(rig.pending) == ["poll"]  # no second ack: the pending one covers it
    assert rig.worker.in_flight == 2


# --- api.md §8: heartbeat branches ---


def test_lease_lost_while_a_heartbeat_is_in_flight_aborts_and_ignores_the_late_reply() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    rig.pending.clear()
    assert rig.wake_at == sec(9)  # the lease still bounds the wait while the heartbeat is out
    actions = rig.take(rig.worker.wake(sec(9)))
    assert [type(e) for e in actions.events] == [Abort] and rig.worker.items == ()
    assert rig.worker.in_flight == 2  # the heartbeat is still owed an answer, and a new poll went out
    late = rig.worker.receive(beat.id, rig.server.handle(beat.request, sec(5)), sec(9.5))
    assert late.events == () and all(s.work_id is None for s in late.sends) and rig.worker.items == ()
    assert rig.worker.in_flight == 1


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"type": "work_heartbeat"},
        {"type": "work_heartbeat", "last_heartbeat": "x", "lease_extended": True, "state": "active", "ttl_seconds": 10},
        {
            "type": "work_heartbeat",
            "last_heartbeat": "2026-07-01T08:15:06Z",
            "lease_extended": True,
            "state": "active",
            "ttl_seconds": 10**30,
        },
    ],
)
def test_malformed_heartbeat_reply_is_retried_with_the_same_token(body: object) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=8))
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    rig.now = sec(5)
    rig.reply(200, body)
    assert rig.pending == [] and rig.wake_at == sec(5.5) and not rig.of(Abort)
    rig.take(rig.worker.wake(sec(5.5)))
    (again,) = rig.pending
    assert again.request.target == beat.request.target
    rig.answer(sec(5.5))
    assert not rig.of(Abort) and rig.worker.lease_until(rig.work[0]) == sec(14.5)


def test_done_while_a_heartbeat_is_in_flight_stops_after_its_reply() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    actions = rig.take(rig.worker.done(rig.work[0], sec(5)))
    assert actions.sends == ()  # one send per item: the stop waits for the heartbeat's reply
    rig.answer(sec(5))
    assert rig.targets()[-3:] == ["heartbeat", "stop", "stop"]
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]


def test_done_while_a_heartbeat_is_in_flight_that_then_fails_still_stops() -> None:
    rig = Rig(jitter=lambda: 0.0)
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    rig.take(rig.worker.done(rig.work[0], sec(5)))
    rig.fail_next(sec(5))
    assert names(rig.pending) == ["stop"]  # the lease is believed held to 9 s: stop now
    rig.answer(sec(5))
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_heartbeat_429_and_5xx_are_retried_while_running(status: int) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=8))
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    rig.now = sec(5)
    rig.reply(status, {"type": "error"})
    assert rig.wake_at == sec(5.5)
    rig.now = sec(5.5)
    rig.take(rig.worker.wake(rig.now))
    rig.reply(status, {"type": "error"})
    assert rig.wake_at == sec(6.5)
    rig.take(rig.worker.wake(sec(6.5)))
    (again,) = rig.pending
    assert again.request.target == beat.request.target  # the same token
    rig.answer(sec(6.5))
    assert not rig.of(Abort) and rig.worker.lease_until(rig.work[0]) == sec(15.5)


def test_first_heartbeat_gives_up_after_max_attempts() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(max_attempts=3))
    rig.start()
    rig.answer(T0, only=2)
    rig.now = T0
    for _ in range(3):
        assert names(rig.pending) == ["heartbeat"]
        rig.reply(503, {"type": "error"})
        if rig.of(Dropped):
            break
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
    assert rig.targets().count("heartbeat") == 3
    (dropped,) = rig.of(Dropped)
    assert dropped.reason.startswith("gave up after 3 attempts") and not rig.of(StartWork)
    assert rig.worker.items == ()


def test_lease_extended_false_on_the_first_heartbeat_drops_the_item() -> None:
    rig = Rig()
    beat = first_beat_in_flight(rig)
    body = {
        "type": "work_heartbeat",
        "last_heartbeat": "2026-07-01T08:15:01.000000Z",
        "lease_extended": False,
        "state": "active",
        "ttl_seconds": 10,
    }
    actions = rig.take(rig.worker.receive(beat.id, Response(200, body, dumps(body)), T0))
    assert actions.events == (Dropped(rig.work[0], "lease_extended: false"),)
    assert not rig.of(StartWork) and "stop" not in names(actions.sends)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_heartbeat_other_4xx_is_final(status: int) -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    rig.now = sec(5)
    rig.reply(status, {"type": "error", "error": {"type": "x", "message": "nope"}})
    assert rig.of(Abort) == [Abort(rig.work[0], f"heartbeat answered {status}: nope")]
    assert "stop" not in rig.targets() and rig.worker.items == ()


# --- api.md §8: stop replies ---


def test_stop_answered_4xx_finishes_unconfirmed() -> None:
    rig = Rig()
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], sec(1)))
    rig.reply(404, {"type": "error", "error": {"type": "not_found_error", "message": "gone"}})
    assert rig.of(Finished) == [Finished(rig.work[0], "stop answered 404: gone", confirmed=False)]
    assert rig.worker.items == ()


def test_stop_reply_in_an_unexpected_state_finishes_unconfirmed() -> None:
    rig = Rig()
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], sec(1)))
    (stop,) = rig.pending
    body = dict(rig.server.handle(stop.request, sec(1)).json)
    body["state"] = "active"
    rig.reply(200, body)
    assert rig.of(Finished) == [Finished(rig.work[0], "stop left the item 'active'", confirmed=False)]


def test_malformed_stop_reply_is_retried() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=8))
    running(rig)
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], sec(1)))
    rig.reply(200, {"state": "stopped"})
    assert not rig.of(Finished) and rig.wake_at == sec(1.5)
    rig.take(rig.worker.wake(sec(1.5)))
    rig.answer(sec(1.5))
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]


# --- small things: jitter, block_ms, headers, in_flight ---


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), float("inf"), "0.5", None, True])
def test_a_jitter_source_out_of_range_is_refused_before_anything_changes(bad: object) -> None:
    draws = iter([bad, 0.0])
    rig = Rig(jitter=lambda: next(draws), retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    rig.start()
    (poll,) = rig.pending
    with pytest.raises(InvalidInput) as caught:
        rig.worker.fail(poll.id, T0)
    assert caught.value.param == "jitter"
    assert rig.worker.in_flight == 1  # still awaited: nothing changed
    actions = rig.worker.fail(poll.id, T0)  # answered again: now the source gives 0.0
    assert actions.wake_at == sec(1) and rig.worker.in_flight == 0


def test_a_bad_jitter_source_in_receive_changes_nothing() -> None:
    draws = iter([2.0, 0.0])
    rig = Rig(jitter=lambda: next(draws), retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    (beat,) = rig.pending
    error = Response(503, {"type": "error"}, b"{}")
    with pytest.raises(InvalidInput):
        rig.worker.receive(beat.id, error, sec(5))
    assert rig.worker.in_flight == 1 and rig.worker.next_wake() == sec(9)
    assert rig.worker.receive(beat.id, error, sec(5)).wake_at == sec(6)


@pytest.mark.parametrize("block_ms", [True, False, 1.5, 5.0, "5", None, 0, 1000])
def test_block_ms_must_be_an_integer_the_server_accepts(block_ms: object) -> None:
    env = Server().create_environment(now=T0)
    with pytest.raises(InvalidInput) as caught:
        Worker(env, "w1", block_ms=block_ms)  # type: ignore[arg-type]
    assert caught.value.param == "block_ms"


def test_every_request_has_its_own_headers() -> None:
    rig = Rig()
    rig.start()
    (poll,) = rig.pending
    poll.request.headers["x-request-id"] = "req_1"  # type: ignore[index]
    rig.answer(T0)
    assert all("x-request-id" not in dict(r.headers) for r in rig.sent[1:])  # type: ignore[arg-type]
    assert len({id(r.headers) for r in rig.sent}) == len(rig.sent)


def test_in_flight_counts_every_send_still_owed_an_answer() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    rig.take(rig.worker.wake(sec(9)))  # the lease ran out with the heartbeat out; a poll went too
    assert rig.of(Abort) and rig.worker.in_flight == len(rig.pending) == 2
    rig.answer(sec(9))
    assert rig.worker.in_flight == 0


# --- misuse ---


@pytest.mark.parametrize(
    "response",
    [
        None,
        "200",
        {"status": 200},
        200,
        Response("200", None, b"null"),
        Response(True, None, b"null"),
        Response(2000, None, b""),
    ],  # type: ignore[arg-type]
)
def test_receive_refuses_anything_but_a_response(response: object) -> None:
    rig = Rig()
    rig.start()
    (poll,) = rig.pending
    with pytest.raises(InvalidInput) as caught:
        rig.worker.receive(poll.id, response, T0)  # type: ignore[arg-type]
    assert caught.value.param == "response"
    assert rig.worker.in_flight == 1
    rig.answer(T0)
    assert rig.of(StartWork)


def test_calls_refuse_ill_typed_ids_and_reasons() -> None:
    rig = Rig()
    rig.start()
    (poll,) = rig.pending
    ok = Response(200, None, b"null")
    for call, param in (
        (lambda: rig.worker.receive("1", ok, T0), "send_id"),  # type: ignore[arg-type]
        (lambda: rig.worker.fail(None, T0), "send_id"),  # type: ignore[arg-type]
        (lambda: rig.worker.fail(poll.id, T0, reason=3), "reason"),  # type: ignore[arg-type]
        (lambda: rig.worker.done(["x"], T0), "work_id"),  # type: ignore[arg-type]
        (lambda: rig.worker.lease_until(["x"]), "work_id"),  # type: ignore[arg-type]
        (lambda: rig.worker.receive(poll.id, ok, "now"), "now"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.param == param
    assert rig.worker.in_flight == 1


BAD_OPTIONS = [
    ({"block_ms": "5"}, "block_ms"),
    ({"block_ms": None}, "block_ms"),
    ({"block_ms": 1.5}, "block_ms"),
    ({"lease_margin_seconds": float("nan")}, "lease_margin_seconds"),
    ({"lease_margin_seconds": float("inf")}, "lease_margin_seconds"),
    ({"lease_margin_seconds": "1"}, "lease_margin_seconds"),
    ({"lease_margin_seconds": -1}, "lease_margin_seconds"),
    ({"idle_poll_seconds": 1e300}, "idle_poll_seconds"),
    ({"idle_poll_seconds": float("nan")}, "idle_poll_seconds"),
    ({"idle_poll_seconds": -0.5}, "idle_poll_seconds"),
    ({"idle_poll_seconds": True}, "idle_poll_seconds"),
    ({"retry": "fast"}, "retry"),
    ({"retry": {"max_attempts": 3}}, "retry"),
    ({"jitter": 0.5}, "jitter"),
    ({"token": "a b"}, "token"),
    ({"token": "tok\r\nX-Evil: 1"}, "token"),
    ({"token": ""}, "token"),
    ({"token": "a=b"}, "token"),
    ({"token": "t\x00"}, "token"),
    ({"token": None}, "token"),
    ({"concurrency": True}, "concurrency"),
    ({"ttl_seconds": 1.5}, "ttl_seconds"),
]


@pytest.mark.parametrize(("options", "param"), BAD_OPTIONS)
def test_constructor_refuses_bad_options_naming_them(options: dict[str, object], param: str) -> None:
    env = Server().create_environment(now=T0)
    with pytest.raises(InvalidInput) as caught:
        Worker(env, "w1", **options)  # type: ignore[arg-type]
    assert caught.value.param == param


@pytest.mark.parametrize(
    "worker_id", ["", " w1", "w1\t", "w\r1", "w\n1", "w\x001", "w\x7f", "w\x01", "wörker", 7, None]
)
def test_constructor_refuses_a_worker_id_that_is_no_header_value(worker_id: object) -> None:
    env = Server().create_environment(now=T0)
    with pytest.raises(InvalidInput) as caught:
        Worker(env, worker_id)  # type: ignore[arg-type]
    assert caught.value.param == "worker_id"


def test_constructor_refuses_a_bad_environment_id() -> None:
    with pytest.raises(InvalidInput) as caught:
        Worker("env_x", "w1")
    assert caught.value.param == "environment_id"


@pytest.mark.parametrize("token", ["abc", "A-Z.0_9~+/", "abc==", "x" * 200])
def test_tokens_the_server_accepts_are_accepted(token: str) -> None:
    server = Server()
    env = server.create_environment(now=T0)
    worker = Worker(env, "w 1", token=token)
    (poll,) = worker.start(T0).sends
    assert server.handle(poll.request, T0).status == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_seconds": float("nan")},
        {"base_seconds": "1"},
        {"base_seconds": True},
        {"cap_seconds": float("inf")},
        {"cap_seconds": 1e300},
        {"max_attempts": 1.0},
        {"max_attempts": True},
    ],
)
def test_retry_policy_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.param == next(iter(kwargs))


# --- the lease lost once the application is done: Finished(confirmed=False), never a stop ---


def test_heartbeat_409_while_a_stop_is_retried_finishes_unconfirmed_without_a_stop() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=16, cap_seconds=16))
    running(rig)
    rig.now = sec(4)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    rig.reply(503, {"type": "error"})  # the graceful stop is retried at 12 s; the heartbeat keeps its 5 s
    assert rig.wake_at == sec(5)
    outside_stop(rig, sec(4.5), force=True)
    rig.take(rig.worker.wake(sec(5)))
    assert names(rig.pending) == ["heartbeat"]
    rig.answer(sec(5))  # 409: stopped by someone
    assert rig.of(Finished) == [Finished(rig.work[0], "stop not confirmed: 409: the item moved on", confirmed=False)]
    assert not rig.of(Abort) and rig.targets().count("stop") == 1 and rig.worker.items == ()


def test_done_while_a_heartbeat_is_in_flight_then_412_sends_no_stop() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.wake(sec(5)))
    rig.take(rig.worker.done(rig.work[0], sec(5)))
    rig.now = sec(5)
    rig.reply(412, {"type": "error"})
    assert rig.of(Finished) == [
        Finished(rig.work[0], "stop not confirmed: 412: another holds the lease", confirmed=False)
    ]
    assert "stop" not in rig.targets()


def test_a_stop_in_flight_when_the_lease_runs_out_finishes_unconfirmed() -> None:
    rig = Rig()
    running(rig)
    rig.take(rig.worker.done(rig.work[0], sec(1)))
    (stop,) = rig.pending
    assert rig.wake_at == sec(9)  # no heartbeat while the stop is out; the lease still bounds the wait
    rig.take(rig.worker.wake(sec(9)))
    (finished,) = rig.of(Finished)
    assert not finished.confirmed and "no successful heartbeat for a whole TTL" in finished.reason
    late = rig.worker.receive(stop.id, rig.server.handle(stop.request, sec(1)), sec(9.5))
    assert late.events == ()


def test_max_attempts_counts_the_first_send() -> None:
    rig = Rig(retry=RetryPolicy(max_attempts=1))
    rig.start()
    rig.answer(T0, only=1)
    rig.fail_next(T0)
    assert rig.targets() == ["ack"]
    assert rig.of(Dropped) == [Dropped(rig.work[0], "gave up after 1 attempt: no response")]


def test_a_confirming_stop_whose_reply_was_lost_is_retried_before_any_heartbeat_and_confirmed() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=1))
    running(rig)  # heartbeat at 0 s: the next one is due at 5 s, the lease believed until 9 s
    rig.now = sec(4.5)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    rig.answer(sec(4.5), only=1)  # the graceful stop: stopping
    assert names(rig.pending) == ["stop"]  # the confirmation
    send = rig.pending.pop(0)
    assert rig.server.handle(send.request, sec(4.6)).status == 200  # it took effect: stopped ...
    rig.take(rig.worker.fail(send.id, sec(4.6)))  # ... but its reply was lost
    retry = rig.wake_at
    assert retry is not None and sec(4.6) < retry < sec(7)  # the stop's retry; the heartbeat waits until 7 s
    rig.take(rig.worker.wake(sec(6.5)))  # even past the heartbeat's usual 5 s, the stop goes first
    assert names(rig.pending) == ["stop"]
    rig.answer(sec(6.5))  # 200 on a stopped item: confirmed
    assert rig.of(Finished) == [Finished(rig.work[0], "completed", confirmed=True)]
    assert rig.targets() == ["ack", "heartbeat", "stop", "stop", "stop"] and rig.item().state is State.STOPPED  # type: ignore[attr-defined]


def test_a_lost_confirmation_noticed_late_is_still_retried_before_the_heartbeat() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=0.25, cap_seconds=8))
    running(rig)  # heartbeat at 0 s: next due at 5 s, lease believed until 9 s
    rig.now = sec(0.5)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    rig.answer(sec(0.5), only=1)  # graceful stop: stopping; the confirmation is sent
    send = rig.pending.pop(0)
    assert rig.server.handle(send.request, sec(1)).status == 200  # it took effect ...
    rig.take(rig.worker.fail(send.id, sec(8)))  # ... and its loss is noticed only at 8 s (a long timeout)
    assert rig.wake_at is not None and rig.wake_at < sec(9)
    rig.take(rig.worker.wake(rig.wake_at))
    assert names(rig.pending) == ["stop"]  # not the heartbeat, overdue since 5 s: it would meet a 409
    rig.answer(rig.wake_at)
    assert rig.of(Finished) == [Finished(rig.work[0], "completed", confirmed=True)]


def reply_to(rig: Rig, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Answer the oldest pending send through the server, with its 200 body changed by ``mutate``."""
    send = rig.pending.pop(0)
    response = rig.server.handle(send.request, rig.now)
    assert response.status == 200
    body = dict(response.json)
    mutate(body)
    rig.take(rig.worker.receive(send.id, Response(200, body, dumps(body)), rig.now))


def test_a_200_ack_that_is_not_this_items_work_object_is_retried() -> None:
    rig = Rig(items=2)
    rig.start()
    rig.answer(T0, only=1)  # the poll: the first item, acked next
    assert names(rig.pending) == ["ack"]
    reply_to(rig, lambda body: body.update(id=rig.work[1]))
    assert not rig.pending and "heartbeat" not in rig.targets()  # no heartbeat on someone else's answer
    rig.take(rig.worker.wake(rig.wake_at))  # type: ignore[arg-type]
    assert names(rig.pending) == ["ack"]  # the ack again


def test_a_200_heartbeat_in_a_state_no_heartbeat_leaves_is_retried_not_started() -> None:
    rig = Rig()
    rig.start()
    rig.answer(T0, only=2)  # poll, ack
    assert names(rig.pending) == ["heartbeat"]
    reply_to(rig, lambda body: body.update(state="stopped"))
    assert not rig.of(StartWork) and not rig.pending


def test_a_200_stop_that_shows_another_item_does_not_confirm() -> None:
    rig = Rig(items=2)
    running(rig)
    rig.take(rig.worker.done(rig.work[0], T0))
    rig.answer(T0, only=1)  # graceful stop: stopping; the confirmation is sent
    reply_to(rig, lambda body: body.update(id=rig.work[1], state="stopped"))
    assert not rig.of(Finished) and not rig.pending  # not confirmed by another item's answer ...
    rig.take(rig.worker.wake(rig.wake_at))  # type: ignore[arg-type]
    assert names(rig.pending) == ["stop"]  # ... the confirmation is asked again


def test_while_a_graceful_stop_keeps_failing_heartbeats_keep_the_lease_for_every_attempt() -> None:
    # The reviewer's case: every stop fails and its failure is noticed 1 s after sending; the server still
    # holds the item active, so a lapse would re-queue finished work: heartbeats must go on at their times.
    rig = Rig(jitter=lambda: 0.0, lease_margin_seconds=0)
    running(rig)  # lease believed until 10 s, next heartbeat at 5 s
    rig.now = sec(1)
    rig.take(rig.worker.done(rig.work[0], rig.now))
    log = []
    for _ in range(200):
        while rig.pending:  # answered (or failed) in the order sent, each at the time it was sent
            send = rig.pending.pop(0)
            name = names([send])[0]
            log.append(name)
            if name == "stop":
                rig.now += timedelta(seconds=1)
                rig.take(rig.worker.fail(send.id, rig.now))  # no answer, noticed 1 s later
            else:
                rig.take(rig.worker.receive(send.id, rig.server.handle(send.request, rig.now), rig.now))
        if rig.of(Finished):
            break
        assert rig.wake_at is not None and rig.wake_at >= rig.now
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
    (finished,) = rig.of(Finished)
    assert not finished.confirmed and "8 attempts" in finished.reason  # every attempt used, the lease held
    assert log.count("stop") == 8 and log.count("heartbeat") >= 2
    assert rig.item().state is State.ACTIVE  # type: ignore[attr-defined]


# --- issue 11 ---


def test_issue11_1_driver_ignores_unknown_reply_keys() -> None:
    # Other servers of this API family send e.g. "secret": null in a poll's answer: the driver must claim the item.
    rig = Rig()
    rig.start()
    reply_to(rig, lambda body: body.update(secret=None))  # the poll's answer, one key more
    assert names(rig.pending) == ["ack"]
    reply_to(rig, lambda body: body.update(secret=None, extra={"x": 1}))  # the ack's answer
    assert names(rig.pending) == ["heartbeat"]
    reply_to(rig, lambda body: body.update(lease_updated_at="2026-07-01T08:15:01Z"))  # the heartbeat's answer
    assert [type(e) for e in rig.events] == [StartWork] and rig.item().state is State.ACTIVE  # type: ignore[attr-defined]
    rig.take(rig.worker.done(rig.work[0], T0))
    reply_to(rig, lambda body: body.update(secret=None))  # graceful stop: stopping
    reply_to(rig, lambda body: body.update(secret=None))  # the confirmation: stopped
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")]
    assert rig.item().state is State.STOPPED  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [100, 204, 301, 304, 408])
def test_issue11_5c_poll_answered_an_unexpected_status_is_retried(status: int) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=2, cap_seconds=8))
    rig.start()
    rig.reply(status, None)
    assert not rig.worker.halted and not rig.of(Halted) and rig.pending == [] and rig.wake_at == sec(1)
    rig.take(rig.worker.wake(sec(1)))
    assert names(rig.pending) == ["poll"]
    rig.answer(sec(1))
    assert rig.of(StartWork) and not rig.of(Halted)


def test_issue11_5c_poll_keeps_polling_through_1xx_204_and_3xx_answers() -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=1))
    rig.start()
    for status in (100, 204, 301, 304):
        rig.reply(status, None)
        assert not rig.worker.halted and rig.wake_at is not None
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
        assert names(rig.pending) == ["poll"]
    rig.answer(rig.now)
    assert rig.of(StartWork) and not rig.of(Halted) and rig.item().state is State.ACTIVE  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [101, 204, 302, 304, 408])
def test_issue11_5c_ack_heartbeat_and_stop_answered_an_unexpected_status_are_retried(status: int) -> None:
    rig = Rig(jitter=lambda: 0.0, retry=RetryPolicy(base_seconds=1, cap_seconds=1))
    rig.start()
    rig.answer(T0, only=1)  # the poll
    for expected in ("ack", "heartbeat"):  # the ack, then the first heartbeat, each answered oddly once
        assert names(rig.pending) == [expected]
        rig.reply(status, None)
        assert rig.events == [] and rig.pending == [] and rig.wake_at is not None
        rig.now = rig.wake_at
        rig.take(rig.worker.wake(rig.now))
        assert names(rig.pending) == [expected]
        rig.answer(rig.now, only=1)
    assert rig.of(StartWork)
    rig.now += timedelta(seconds=5)  # a later heartbeat
    rig.take(rig.worker.wake(rig.now))
    assert names(rig.pending) == ["heartbeat"]
    rig.reply(status, None)
    assert not rig.of(Abort) and rig.wake_at is not None
    rig.now = rig.wake_at
    rig.take(rig.worker.wake(rig.now))
    rig.answer(rig.now, only=1)
    rig.take(rig.worker.done(rig.work[0], rig.now))  # the graceful stop
    assert names(rig.pending) == ["stop"]
    rig.reply(status, None)
    assert not rig.of(Finished) and rig.wake_at is not None
    rig.now = rig.wake_at
    rig.take(rig.worker.wake(rig.now))
    assert names(rig.pending) == ["stop"]
    rig.answer(rig.now)
    assert rig.of(Finished) == [Finished(rig.work[0], "completed")] and not rig.of(Abort)
