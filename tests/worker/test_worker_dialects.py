"""The worker driver in each dialect: one test per point where the peer (``anthropic``) dialect differs.

Pure: responses are made up in the peer's shapes and fed to the driver; the requests and events are checked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import T0, sec

from workstate import ANTHROPIC, QODER, Dialect
from workstate.api import Response
from workstate.api.codec import dumps
from workstate.errors import InvalidInput
from workstate.worker import Abort, Actions, Drain, Dropped, Event, Finished, Send, StartWork, Worker
from workstate.worker.runner import split_url

ENV = "env_011CZkZZAbc"  # base62: a peer id, not a qoder one
WORK = "work_01HxYz42"
SESSION = "session_01Qq"
T0_TEXT = "2026-01-01T00:00:00.000000Z"


def work_body(state: str = "queued", **extra: Any) -> dict[str, Any]:
    body = {
        "id": WORK,
        "type": "work",
        "environment_id": ENV,
        "data": {"type": "session", "id": SESSION},
        "state": state,
        "created_at": T0_TEXT,
        "acknowledged_at": None,
        "started_at": None,
        "latest_heartbeat_at": None,
        "stop_requested_at": None,
        "stopped_at": None,
        "metadata": {},
        "secret": None,
    }
    body.update(extra)
    return body


def beat_body(state: str = "active", *, extended: bool = True, ttl: int = 10, at: str = T0_TEXT) -> dict[str, Any]:
    return {
        "type": "work_heartbeat",
        "last_heartbeat": at,
        "lease_extended": extended,
        "state": state,
        "ttl_seconds": ttl,
    }


class Peer:
    """A driver in the peer dialect, answered by hand."""

    def __init__(self, dialect: Dialect = ANTHROPIC, env: str = ENV) -> None:
        self.worker = Worker(env, "w1", ttl_seconds=10, dialect=dialect)
        self.pending: list[Send] = []
        self.sent: list[Send] = []
        self.events: list[Event] = []

    def take(self, actions: Actions) -> None:
        self.pending += actions.sends
        self.sent += actions.sends
        self.events += actions.events

    def reply(self, status: int, body: object = None, now: object = T0, *, raw: bytes | None = None) -> Send:
        send = self.pending.pop(0)
        data = dumps(body) if raw is None else raw
        self.take(self.worker.receive(send.id, Response(status, body, data), now))  # type: ignore[arg-type]
        return send

    def item_sends(self) -> list[Send]:
        """The pending sends for items (a new poll goes once a slot is free)."""
        return [s for s in self.pending if s.work_id is not None]

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def running(self) -> None:
        """Poll (an item with a secret), ack, first heartbeat: the session runs."""
        self.take(self.worker.start(T0))
        self.reply(200, work_body(secret="eyJzZXNzaW9uc190b2tlbiI6InRvayJ9"))
        self.reply(200, work_body("starting"))
        self.reply(200, beat_body())
        assert self.of(StartWork), self.events


def headers(send: Send) -> dict[str, str]:
    return dict(send.request.headers)  # type: ignore[arg-type]


def test_peer_paths_are_the_dialects() -> None:
    peer = Peer()
    peer.running()
    poll, ack, beat = peer.sent
    assert poll.request.target == f"/v1/environments/{ENV}/work/poll?block_ms=999"
    assert ack.request.target == f"/v1/environments/{ENV}/work/{WORK}/ack"
    assert beat.request.target.startswith(f"/v1/environments/{ENV}/work/{WORK}/heartbeat?expected_last_heartbeat=")


def test_peer_worker_identity_goes_on_poll_only() -> None:
    peer = Peer()
    peer.running()
    poll, ack, beat = peer.sent
    assert headers(poll) == {"Authorization": "Bearer token", "Anthropic-Worker-ID": "w1"}
    assert headers(ack) == {"Authorization": "Bearer token"}  # the peer's ack checks no identity
    assert headers(beat) == {"Authorization": "Bearer token"}


def test_qoder_worker_identity_goes_on_every_request() -> None:
    worker = Worker("env_" + "a" * 32, "w1", dialect=QODER)
    (poll,) = worker.start(T0).sends
    assert headers(poll)["Worker-ID"] == "w1" and "Anthropic-Worker-ID" not in headers(poll)
    assert poll.request.target.startswith("/api/v1/cloud/environments/")


def test_peer_poll_answer_with_a_secret_and_peer_ids_is_read() -> None:
    peer = Peer()
    peer.running()
    (start,) = peer.of(StartWork)
    assert isinstance(start, StartWork)
    assert (start.work_id, start.session_id) == (WORK, SESSION)


def test_peer_poll_answer_of_another_environment_is_retried() -> None:
    peer = Peer()
    peer.take(peer.worker.start(T0))
    peer.reply(200, work_body(environment_id="env_01Other"))
    assert peer.pending == [] and peer.worker.items == ()  # not taken: polled again after a backoff


def test_peer_heartbeat_reporting_stopped_ends_the_session_at_once() -> None:
    """The peer answers a heartbeat on a force-stopped item with 200 stopped: Abort on that very reply."""
    peer = Peer()
    peer.running()
    peer.take(peer.worker.wake(sec(5)))  # the next heartbeat is due (ttl 10: every 5 s)
    (beat,) = peer.pending
    assert "/heartbeat?" in beat.request.target
    peer.reply(200, beat_body("stopped", extended=False), now=sec(5))
    (abort,) = peer.of(Abort)
    assert isinstance(abort, Abort) and "stopped" in abort.reason
    assert peer.item_sends() == [] and peer.worker.items == ()  # no stop is sent: the item is stopped already


def test_peer_heartbeat_lease_not_extended_ends_the_session() -> None:
    peer = Peer()
    peer.running()
    peer.take(peer.worker.wake(sec(5)))
    peer.reply(200, beat_body("active", extended=False), now=sec(5))
    assert [type(e) for e in peer.events] == [StartWork, Abort] and peer.item_sends() == []


def test_peer_heartbeat_stopped_while_stopping_finishes() -> None:
    """Our force stop took but its answer was lost; the next heartbeat shows the item stopped: done, confirmed."""
    peer = Peer()
    peer.running()
    peer.take(peer.worker.done(WORK, sec(4.9)))
    peer.take(peer.worker.fail(peer.pending.pop(0).id, sec(4.9)))  # the stop's answer is lost: retried at 5.15 s
    peer.take(peer.worker.wake(sec(5)))  # the heartbeat (due at 5 s) goes first
    (beat,) = peer.pending
    assert "/heartbeat?" in beat.request.target
    peer.reply(200, beat_body("stopped", extended=False), now=sec(5))
    (finished,) = peer.of(Finished)
    assert isinstance(finished, Finished) and finished.confirmed and not peer.of(Abort)


def test_peer_412_with_current_state_is_a_lost_lease() -> None:
    peer = Peer()
    peer.running()
    peer.take(peer.worker.wake(sec(5)))
    error = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "heartbeat precondition failed",
            "details": {
                "error_code": "heartbeat_precondition_failed",
                "current_state": {"state": "queued", "lease_extended": False, "ttl_seconds": 10},
            },
        },
        "request_id": "req_1",
    }
    peer.reply(412, error, now=sec(5))
    (abort,) = peer.of(Abort)
    assert isinstance(abort, Abort) and "412" in abort.reason and "queued" in abort.reason
    assert peer.item_sends() == []  # no stop: the item is someone else's


def test_peer_412_before_the_first_heartbeat_drops_the_item() -> None:
    peer = Peer()
    peer.take(peer.worker.start(T0))
    peer.reply(200, work_body())
    peer.reply(200, work_body("starting"))
    peer.reply(412, {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}, "request_id": "r"})
    assert [type(e) for e in peer.events] == [Dropped]


def test_peer_completion_is_one_force_stop_and_its_204_finishes() -> None:
    peer = Peer()
    peer.running()
    peer.take(peer.worker.done(WORK, sec(1)))
    (stop,) = peer.pending
    assert stop.request.target == f"/v1/environments/{ENV}/work/{WORK}/stop"
    assert json.loads(stop.request.body) == {"force": True}
    assert headers(stop)["Content-Type"] == "application/json" and "Anthropic-Worker-ID" not in headers(stop)
    peer.reply(204, None, now=sec(1), raw=b"")
    (finished,) = peer.of(Finished)
    assert finished == Finished(WORK, "completed", confirmed=True)
    assert peer.item_sends() == []  # one stop: no confirmation needed


def test_peer_drain_then_force_stop() -> None:
    peer = Peer()
    peer.running()
    peer.take(peer.worker.wake(sec(5)))
    peer.reply(200, beat_body("stopping"), now=sec(5))
    assert peer.of(Drain)
    peer.take(peer.worker.done(WORK, sec(6)))
    peer.reply(204, None, now=sec(6), raw=b"")
    assert peer.of(Finished) == [Finished(WORK, "drained", confirmed=True)]


def test_peer_409_on_stop_means_stopped_already() -> None:
    """The peer refuses a stop of a stopped item with 409: the item is stopped, which is what the stop wanted."""
    peer = Peer()
    peer.running()
    peer.take(peer.worker.done(WORK, sec(1)))
    conflict = {"type": "error", "error": {"type": "invalid_request_error", "message": "stopped"}, "request_id": "r"}
    peer.reply(409, conflict, now=sec(1))
    assert peer.of(Finished) == [Finished(WORK, "completed", confirmed=True)]


def test_qoder_stop_is_graceful_and_a_204_is_no_answer() -> None:
    env = "env_" + "a" * 32
    work = "work_" + "b" * 32
    worker = Worker(env, "w1", ttl_seconds=10, dialect="qoder")
    (poll,) = worker.start(T0).sends
    body = work_body() | {"id": work, "environment_id": env, "data": {"type": "session", "id": "sess_" + "c" * 32}}
    del body["secret"]
    (ack,) = worker.receive(poll.id, Response(200, body, dumps(body)), T0).sends
    started = body | {"state": "starting"}
    (beat,) = worker.receive(ack.id, Response(200, started, dumps(started)), T0).sends
    assert worker.receive(beat.id, Response(200, beat_body(), dumps(beat_body())), T0).events
    (stop,) = worker.done(work, sec(1)).sends
    assert stop.request.body == b""  # graceful, then confirmed: the qoder way
    after = worker.receive(stop.id, Response(204, None, b""), sec(1))
    assert after.events == () and worker.items == (work,)  # a 204 is no stop answer in qoder: retried


def test_dialect_by_name_and_unknown_names() -> None:
    assert Worker(ENV, "w1", dialect="anthropic").dialect is ANTHROPIC
    assert Worker("env_" + "0" * 32, "w1").dialect is QODER
    with pytest.raises(InvalidInput) as caught:
        Worker(ENV, "w1", dialect="nope")
    assert caught.value.param == "dialect"


def test_environment_ids_are_checked_in_the_dialect() -> None:
    with pytest.raises(InvalidInput) as caught:
        Worker(ENV, "w1")  # a peer id is no qoder id
    assert caught.value.param == "environment_id" and "32" in caught.value.message
    with pytest.raises(InvalidInput):
        Worker("env_not-base62", "w1", dialect=ANTHROPIC)


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        (f"http://h:1/v1/environments/{ENV}", None, ("http://h:1/", ENV)),
        (f"http://h:1/prefix/v1/environments/{ENV}/work", None, ("http://h:1/prefix/", ENV)),
        ("http://h:1", ENV, ("http://h:1/", ENV)),
    ],
)
def test_split_url_in_the_peer_dialect(url: str, env: str | None, expected: tuple[str, str]) -> None:
    assert split_url(url, env, ANTHROPIC) == expected
    assert split_url(url, env, "anthropic") == expected


def test_split_url_refuses_an_unknown_dialect_and_a_foreign_id() -> None:
    with pytest.raises(InvalidInput) as caught:
        split_url("http://h:1", ENV, "nope")
    assert caught.value.param == "dialect"
    with pytest.raises(InvalidInput) as caught:
        split_url(f"http://h:1/api/v1/cloud/environments/{ENV}", None, QODER)
    assert caught.value.param == "environment_id"


def test_peer_health_probe_is_acked_then_stopped_without_a_session() -> None:
    """A ``healthcheck`` item: the ack answers it, a force stop ends it; no session starts, no heartbeat goes."""
    peer = Peer()
    peer.take(peer.worker.start(T0))
    probe = work_body(data={"type": "healthcheck", "id": "hc_1"})
    peer.reply(200, probe)
    (ack,) = peer.item_sends()
    assert ack.request.target.endswith("/ack")
    peer.reply(200, probe | {"state": "starting"})
    (stop,) = peer.item_sends()
    assert stop.request.target.endswith(f"/{WORK}/stop") and json.loads(stop.request.body) == {"force": True}
    peer.reply(204, None, raw=b"")
    assert peer.events == [Finished(WORK, "healthcheck answered", confirmed=True)]
    assert not [s for s in peer.sent if "/heartbeat" in s.request.target]
