"""Issue 14: the reference server speaks the ``anthropic`` dialect (``../shared/spec/peer-dialect.md``) through
``Server.handle``, every row of both of its tables shown here, and the codec reads both dialects' replies.

``QODER``'s answers are unchanged: the rest of ``tests/api`` is the proof (run against ``Server()``, which is
``Server(dialect=QODER)``); a few tests below put the two side by side where the dialects differ.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workstate import ANTHROPIC, LIFECYCLE, NO_HEARTBEAT, QODER, Accepted, Ack, Deliver, Dialect, Heartbeat, Lapse, Stop
from workstate.api import CounterIds, Request, Response, Server
from workstate.api.codec import (
    DecodeError,
    ErrorEnvelope,
    HeartbeatObject,
    Instant,
    ListEnvelope,
    WorkObject,
    decode_poll,
    decode_stop,
    loads,
    timestamp_text,
    unknown_keys,
)
from workstate.api.routes import BASE_PATH, PARAM_OF_REASON, params_of_reasons, read_worker, route, work_path
from workstate.errors import InvalidId, InvalidInput
from workstate.rules import Reason

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
PEER_SESSION = "session_01Abc"
QODER_SESSION = "sess_" + "1" * 32


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


class Peer:
    """A server of ``dialect`` with one environment, and requests in that dialect's spelling."""

    def __init__(self, dialect: Dialect = ANTHROPIC, **options: Any) -> None:
        self.dialect = dialect
        self.server = Server(dialect=dialect, **options)
        self.env = self.server.create_environment(now=T)
        self.auth = {"Authorization": "Bearer key"}

    def session(self, n: int = 1) -> str:
        return f"{self.dialect.session_prefix}{n:032x}" if self.dialect.ids.name == "HEX32" else f"session_0{n}"

    def create(self, n: int = 1, seconds: float = 0, **more: Any) -> str:
        return self.server.create_work(self.env, session_id=self.session(n), now=at(seconds), **more)

    def call(
        self,
        method: str,
        path: str,
        seconds: float = 0,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        auth: bool = True,
    ) -> Response:
        sent = {**(self.auth if auth else {}), **(headers or {})}
        return self.server.handle(Request(method, path, sent, body), at(seconds))

    def poll(self, worker: str | None = "w1", seconds: float = 0, query: str = "") -> Response:
        headers = {} if worker is None else {self.dialect.worker_header: worker}
        return self.call("GET", self.dialect.path(self.env, operation="poll") + query, seconds, headers)

    def ack(self, wid: str, worker: str | None = "w1", seconds: float = 0) -> Response:
        headers = {} if worker is None else {self.dialect.worker_header: worker}
        return self.call("POST", self.dialect.path(self.env, wid, "ack"), seconds, headers)

    def heartbeat(self, wid: str, seconds: float = 0, query: str = "") -> Response:
        return self.call("POST", self.dialect.path(self.env, wid, "heartbeat") + query, seconds)

    def stop(self, wid: str, force: bool | None = None, seconds: float = 0, body: bytes | None = None) -> Response:
        if body is None:
            body = b"" if force is None else json.dumps({"force": force}).encode()
        return self.call("POST", self.dialect.path(self.env, wid, "stop"), seconds, body=body)

    def get(self, wid: str, seconds: float = 0) -> Response:
        return self.call("GET", self.dialect.path(self.env, wid), seconds)

    def list(self, query: str = "", seconds: float = 0) -> Response:
        return self.call("GET", self.dialect.path(self.env) + query, seconds)

    def state(self, wid: str) -> str:
        item = self.server.work(self.env, wid)
        assert item is not None
        return item.state.value

    def active(self, n: int = 1) -> str:
        wid = self.create(n)
        assert self.poll().json["id"] == wid
        assert self.ack(wid).status == 200
        assert self.heartbeat(wid).status == 200
        return wid


# --- wire differences ------------------------------------------------------------------------------------


def test_base_path_is_the_dialects() -> None:
    peer = Peer()
    wid = peer.create()
    assert peer.get(wid).status == 200
    assert peer.get(wid).json["id"] == wid
    assert peer.call("GET", QODER.path(peer.env, wid)).status == 404  # the qoder path is no route of the peer
    assert Peer(QODER).call("GET", ANTHROPIC.path(peer.env)).status == 404
    assert route("GET", ANTHROPIC.path("env_1", "work_1"), ANTHROPIC) == ("get", "env_1", "work_1")
    assert work_path("e", "w", "ack", ANTHROPIC) == ANTHROPIC.path("e", "w", "ack")
    assert work_path("e") == QODER.path("e") and QODER.base_path == BASE_PATH


def test_extra_request_parts_are_accepted_and_ignored_never_required() -> None:
    peer = Peer()
    wid = peer.create()
    beta = {"anthropic-beta": "managed-agents-2026-04-01", "anthropic-version": "2023-06-01"}
    polled = peer.call("GET", ANTHROPIC.path(peer.env, operation="poll") + "?beta=true&block_ms=999", 0, beta)
    assert polled.status == 200 and polled.json["id"] == wid
    heartbeat = peer.call("POST", ANTHROPIC.path(peer.env, wid, "heartbeat") + "?beta=true", 0, beta)
    assert heartbeat.status == 412  # delivered, not acked: queued, so not the lease (a rule, not the extras)
    assert peer.ack(wid).status == 200  # without them too
    assert peer.list("?beta=true&anything=else").status == 200  # unknown query parameters are ignored, as in qoder
    assert Peer(QODER).list("?beta=true&anything=else").status == 200


def test_auth_bearer_or_x_api_key() -> None:
    peer = Peer()
    wid = peer.create()
    assert peer.call("GET", ANTHROPIC.path(peer.env, wid), auth=False).status == 401
    assert peer.call("GET", ANTHROPIC.path(peer.env, wid), headers={"x-api-key": "sk-ant-1"}, auth=False).status == 200
    assert peer.call("GET", ANTHROPIC.path(peer.env, wid), headers={"X-Api-Key": "k"}, auth=False).status == 200
    assert peer.call("GET", ANTHROPIC.path(peer.env, wid), headers={"x-api-key": ""}, auth=False).status == 401
    refused = peer.call("GET", ANTHROPIC.path(peer.env, wid), auth=False)
    assert "x-api-key" in refused.json["error"]["message"] and refused.json["error"]["type"] == "authentication_error"
    qoder = Peer(QODER)
    assert qoder.call("GET", QODER.path(qoder.env), headers={"x-api-key": "k"}, auth=False).status == 401
    seen = []
    authorized = Server(dialect=ANTHROPIC, authorizer=lambda access: seen.append(access.token) or True)
    env = authorized.create_environment(now=T)
    authorized.handle(Request("GET", ANTHROPIC.path(env), {"x-api-key": "key-1"}), T)
    assert seen == ["key-1"]  # the authorizer judges the key, wherever it came


def test_worker_identity_is_read_on_poll_only() -> None:
    peer = Peer()
    wid = peer.create()
    assert peer.poll("w1").status == 200
    stats = peer.call("GET", ANTHROPIC.path(peer.env, operation="stats")).json
    assert stats["workers_polling"] == 1  # stored for workers_polling
    other = peer.call("GET", ANTHROPIC.path(peer.env, operation="poll"), headers={QODER.worker_header: "w9"})
    assert other.status == 200
    assert peer.call("GET", ANTHROPIC.path(peer.env, operation="stats")).json["workers_polling"] == 1  # not read
    # on ack the header is not read at all: even a malformed one is ignored, and the delivery's worker is bound
    assert peer.call("POST", ANTHROPIC.path(peer.env, wid, "ack"), headers={ANTHROPIC.worker_header: ""}).status == 200
    item = peer.server.work(peer.env, wid)
    assert item is not None and item.worker_id == "w1"
    assert read_worker({"anthropic-worker-id": "w2", "worker-id": "w3"}, ANTHROPIC) == "w2"
    assert read_worker({"anthropic-worker-id": "w2", "worker-id": "w3"}) == "w3"
    assert params_of_reasons(ANTHROPIC)[Reason.WORKER_CONFLICT] == ANTHROPIC.worker_header
    assert PARAM_OF_REASON[Reason.WORKER_CONFLICT] == QODER.worker_header


def test_ids_are_prefix_01_and_24_base62_sorting_in_creation_order() -> None:
    peer = Peer()
    made = [peer.create(n) for n in range(1, 70)]
    assert all(ANTHROPIC.valid_id("work", w) and len(w) == len("work_") + 26 and w[5:7] == "01" for w in made)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert ANTHROPIC.valid_id("env", peer.env) and peer.env.startswith("env_01")
    ids = CounterIds(dialect=ANTHROPIC)
    assert [ids("req_") for _ in range(2)] == ["req_01" + "0" * 23 + "1", "req_01" + "0" * 23 + "2"]
    assert CounterIds()("work_") == "work_" + "0" * 31 + "1"  # qoder unchanged: 32 hex


def test_session_ids_are_checked_in_the_dialects_format() -> None:
    peer, qoder = Peer(), Peer(QODER)
    assert ANTHROPIC.valid_id("work", peer.server.create_work(peer.env, session_id="session_01XyZ", now=T))
    for bad in (QODER_SESSION, "session_", "session_01-x", "sess_01"):
        with pytest.raises(InvalidId) as caught:
            peer.server.create_work(peer.env, session_id=bad, now=T)
        assert caught.value.param == "session_id"
    with pytest.raises(InvalidId):
        qoder.server.create_work(qoder.env, session_id="session_01XyZ", now=T)
    with pytest.raises(InvalidId):
        qoder.server.create_work(qoder.env, session_id="sess_1", now=T)


def test_the_work_object_carries_secret_null_on_every_read() -> None:
    peer = Peer()
    wid = peer.create()
    answers = [peer.poll(), peer.ack(wid), peer.get(wid)]
    answers.append(peer.call("POST", ANTHROPIC.path(peer.env, wid), body=b'{"metadata": {"a": "b"}}'))
    assert all(a.status == 200 and "secret" in a.json and a.json["secret"] is None for a in answers)
    assert peer.list().json["data"][0]["secret"] is None
    qoder = Peer(QODER)
    qoder.create()
    assert "secret" not in qoder.poll().json  # qoder's work object is unchanged


def test_healthcheck_items_in_the_peer_only() -> None:
    peer = Peer()
    wid = peer.server.create_work(peer.env, session_id="health_01", now=T, data_type="healthcheck")
    assert peer.poll().json["data"] == {"type": "healthcheck", "id": "health_01"}
    assert peer.get(wid).json["data"]["type"] == "healthcheck"
    assert WorkObject.from_json(peer.get(wid).json, dialect=ANTHROPIC).data_type == "healthcheck"
    qoder = Peer(QODER)
    with pytest.raises(InvalidInput) as caught:
        qoder.server.create_work(qoder.env, session_id=QODER_SESSION, now=T, data_type="healthcheck")
    assert caught.value.param == "data_type"
    with pytest.raises(InvalidInput) as caught:
        peer.server.create_work(peer.env, session_id=PEER_SESSION, now=T, data_type="probe")
    assert caught.value.param == "data_type"
    assert peer.create(2) and peer.get(peer.create(3)).json["data"] == {"type": "session", "id": "session_03"}


def test_list_envelope_is_data_and_next_page_with_limit_and_page_only() -> None:
    peer = Peer()
    made = [peer.create(n) for n in range(1, 26)]
    first = peer.list()
    assert first.status == 200 and set(first.json) == {"data", "next_page"}
    assert [w["id"] for w in first.json["data"]] == made[:20]  # limit defaults to 20
    assert first.json["next_page"] == made[19]
    second = peer.list(f"?page={first.json['next_page']}")
    assert [w["id"] for w in second.json["data"]] == made[20:] and second.json["next_page"] is None
    assert len(peer.list("?limit=1000").json["data"]) == 25  # over 100 is capped, not refused
    many = Peer()
    for n in range(1, 106):
        many.create(n)
    assert len(many.list("?limit=101").json["data"]) == 100
    # before_id/after_id are no parameters here: ignored like any unknown one (the first page again)
    assert peer.list(f"?before_id={made[5]}").json == first.json
    assert peer.list(f"?after_id={made[5]}&page={made[1]}").json["data"][0]["id"] == made[2]
    refused = peer.list("?page=nonsense")
    assert refused.status == 400 and refused.json["error"]["type"] == "invalid_request_error"
    decoded = ListEnvelope.from_json(first.json, dialect=ANTHROPIC)
    assert decoded.next_page == made[19] and [w.id for w in decoded.data] == made[:20]
    assert ListEnvelope.from_json({"data": [], "next_page": "opaque-cursor"}, dialect=ANTHROPIC).next_page == (
        "opaque-cursor"
    )
    with pytest.raises(DecodeError):
        ListEnvelope.from_json(first.json)  # the qoder envelope needs first_id, last_id and has_more


def test_timestamps_render_to_the_microsecond() -> None:
    peer = Peer()
    wid = peer.create(seconds=0.5)
    assert peer.get(wid).json["created_at"] == "2026-07-01T08:15:01.500000Z"


def test_error_envelope_carries_details_and_the_request_id_header() -> None:
    peer = Peer()
    refused = peer.get("work_01missing")
    assert refused.status == 404
    assert list(refused.json) == ["type", "error", "request_id"] and refused.json["type"] == "error"
    assert set(refused.json["error"]) == {"type", "message"}  # no param in this dialect
    assert refused.headers["request-id"] == refused.json["request_id"]
    assert refused.headers["content-type"] == "application/json"
    echoed = peer.call("GET", ANTHROPIC.path(peer.env, "work_01missing"), headers={"x-request-id": "req-given"})
    assert echoed.json["request_id"] == echoed.headers["request-id"] == "req-given"
    bad = peer.list("?limit=0")
    assert bad.status == 400 and "param" not in bad.json["error"]
    assert ErrorEnvelope.from_json(refused.json, dialect=ANTHROPIC).request_id == refused.json["request_id"]
    qoder = Peer(QODER).get("work_" + "f" * 32)
    assert list(qoder.json) == ["type", "request_id", "error"] and "request-id" not in qoder.headers


# --- lifecycle differences --------------------------------------------------------------------------------


def test_ack_with_another_workers_identity_is_200() -> None:
    peer = Peer()
    wid = peer.create()
    peer.poll("w1")
    answer = peer.ack(wid, "w2")
    assert answer.status == 200 and answer.json["state"] == "starting"
    assert peer.ack(wid, "w3").status == 200  # the replay is not checked either
    qoder = Peer(QODER)
    wid = qoder.create()
    qoder.poll("w1")
    assert qoder.ack(wid, "w2").status == 409


def test_acked_never_heartbeated_stays_starting() -> None:
    peer = Peer()
    wid = peer.create()
    peer.poll()
    peer.ack(wid)
    for seconds in (61, 3600, 86400 * 30):
        assert peer.get(wid, seconds).json["state"] == "starting"
    assert peer.server.policy == ANTHROPIC.policy
    qoder = Peer(QODER)
    wid = qoder.create()
    qoder.poll()
    qoder.ack(wid)
    assert qoder.get(wid, 61).json["state"] == "queued"  # re-queued after the start timeout
    chosen = Peer(ANTHROPIC, policy=QODER.policy)  # the other choice stays available
    wid = chosen.create()
    chosen.poll()
    chosen.ack(wid)
    assert chosen.get(wid, 61).json["state"] == "queued"


def test_heartbeat_on_stopped_reports_it() -> None:
    peer = Peer()
    wid = peer.active()
    peer.heartbeat(wid, 5, "?desired_ttl_seconds=30")
    assert peer.stop(wid, force=True, seconds=7).status == 204
    answer = peer.heartbeat(wid, 8)
    assert answer.status == 200 and answer.rule is not None and answer.rule.name == "heartbeat-stopped-reported"
    assert answer.json == {
        "type": "work_heartbeat",
        "state": "stopped",
        "lease_extended": False,
        "last_heartbeat": "2026-07-01T08:15:06.000000Z",  # the latest heartbeat
        "ttl_seconds": 30,  # the last TTL granted
    }
    never = peer.create(2)
    assert peer.stop(never, seconds=3).status == 204  # queued -> stopped, never heartbeated
    answer = peer.heartbeat(never, 4)
    assert answer.json["last_heartbeat"] == "2026-07-01T08:15:04.000000Z"  # the stop instant
    assert answer.json["ttl_seconds"] == ANTHROPIC.policy.default_ttl_seconds
    assert HeartbeatObject.from_json(answer.json, dialect=ANTHROPIC).lease_extended is False
    qoder = Peer(QODER)
    wid = qoder.active()
    qoder.stop(wid, force=True)
    assert qoder.heartbeat(wid).status == 409


def _details(answer: Response) -> dict[str, Any]:
    assert answer.status == 412
    error = answer.json["error"]
    assert error["type"] == "invalid_request_error"
    details = error["details"]
    assert (details["error_code"], details["error_visibility"]) == ("heartbeat_precondition_failed", "user_facing")
    assert set(details["current_state"]) == {
        "state",
        "last_heartbeat",
        "lease_updated_at",
        "lease_extended",
        "ttl_seconds",
    }
    assert details["current_state"]["lease_extended"] is False
    return dict(details["current_state"])


def test_heartbeat_on_queued_fails_the_precondition_with_details() -> None:
    peer = Peer()
    never = peer.create()
    state = _details(peer.heartbeat(never, 2))
    assert state == {
        "state": "queued",
        "last_heartbeat": None,
        "lease_updated_at": "2026-07-01T08:15:01.000000Z",
        "lease_extended": False,
        "ttl_seconds": 60,
    }
    peer = Peer()
    lapsed = peer.active()
    peer.heartbeat(lapsed, 1, "?desired_ttl_seconds=10")
    state = _details(peer.heartbeat(lapsed, 30))  # the lease expired at 11 s: re-queued
    assert state["state"] == "queued" and state["ttl_seconds"] == 60  # a re-queued item holds no lease: the default
    assert state["lease_updated_at"] == "2026-07-01T08:15:12.000000Z"
    qoder = Peer(QODER)
    assert qoder.heartbeat(qoder.create()).status == 409


def test_a_stale_heartbeat_fails_the_precondition_with_details() -> None:
    peer = Peer()
    wid = peer.active()
    fresh = peer.heartbeat(wid, 2).json["last_heartbeat"]
    state = _details(peer.heartbeat(wid, 3, "?expected_last_heartbeat=2026-07-01T08:15:01.000000Z"))
    assert state == {
        "state": "active",
        "last_heartbeat": fresh,
        "lease_updated_at": fresh,
        "lease_extended": False,
        "ttl_seconds": 60,
    }
    assert peer.heartbeat(wid, 4, f"?expected_last_heartbeat={fresh}").json["lease_extended"] is True
    qoder = Peer(QODER)
    wid = qoder.active()
    stale = qoder.heartbeat(wid, 3, "?expected_last_heartbeat=2020-01-01T00:00:00Z")
    assert stale.status == 412 and stale.json["error"]["type"] == "precondition_failed_error"
    assert "details" not in stale.json["error"] and stale.json["error"]["param"] == "expected_last_heartbeat"


def test_an_accepted_heartbeat_extends_the_lease_in_both_dialects() -> None:
    for dialect in (QODER, ANTHROPIC):
        world = Peer(dialect)
        wid = world.active()
        assert world.heartbeat(wid, 1).json["lease_extended"] is True


def test_stop_answers_204_without_body_or_content_type() -> None:
    peer = Peer()
    wid = peer.active()
    answer = peer.stop(wid)
    assert (answer.status, answer.body, answer.json, dict(answer.headers)) == (204, b"", None, {})
    assert peer.state(wid) == "stopping"
    assert peer.stop(wid, seconds=1).status == 204  # the second graceful stop confirms
    assert peer.state(wid) == "stopped"
    assert decode_stop(answer.body, ANTHROPIC) is None
    qoder = Peer(QODER)
    wid = qoder.active()
    kept = qoder.stop(wid)
    assert kept.status == 200 and decode_stop(kept.body) == WorkObject.from_json(kept.json)


def test_stop_on_stopped_is_409() -> None:
    peer = Peer()
    wid = peer.active()
    assert peer.stop(wid, force=True).status == 204
    for force in (None, False, True):
        refused = peer.stop(wid, force=force, seconds=1)
        assert refused.status == 409 and refused.json["error"]["type"] == "invalid_request_error"
    qoder = Peer(QODER)
    wid = qoder.active()
    qoder.stop(wid, force=True)
    assert qoder.stop(wid, force=True).status == 200


def test_graceful_stop_on_starting_drains_as_in_qoder() -> None:
    peer = Peer()
    wid = peer.create()
    peer.poll()
    peer.ack(wid)
    assert peer.stop(wid).status == 204 and peer.state(wid) == "stopping"


def test_desired_ttl_is_clamped_as_in_qoder() -> None:
    for dialect in (QODER, ANTHROPIC):
        world = Peer(dialect)
        wid = world.active()
        assert world.heartbeat(wid, 1, "?desired_ttl_seconds=5").json["ttl_seconds"] == 10
        assert world.heartbeat(wid, 2, "?desired_ttl_seconds=6000").json["ttl_seconds"] == 600
        assert world.heartbeat(wid, 3, "?desired_ttl_seconds=0").status == 400


# --- issue point 4: interop odds and ends --------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [QODER, ANTHROPIC], ids=lambda d: d.name)
@pytest.mark.parametrize("body", [b'{"force": null}', b'{"force": "true"}', b'{"force": 1}'])
def test_force_null_in_a_stop_body_is_a_clear_400(dialect: Dialect, body: bytes) -> None:
    world = Peer(dialect)
    wid = world.active()
    refused = world.stop(wid, body=body)
    assert refused.status == 400 and refused.json["error"]["type"] == "invalid_request_error"
    assert "force" in refused.json["error"]["message"]
    assert world.state(wid) == "active"  # nothing changed


def test_nanosecond_timestamps_are_read_by_instant() -> None:
    heartbeat = {"type": "work_heartbeat", "state": "active", "lease_extended": True, "ttl_seconds": 60}
    exact = HeartbeatObject.from_json({**heartbeat, "last_heartbeat": "2026-07-01T08:15:01.123456789Z"})
    zeros = HeartbeatObject.from_json({**heartbeat, "last_heartbeat": "2026-07-01T08:15:01.123456000Z"})
    micro = datetime(2026, 7, 1, 8, 15, 1, 123456, tzinfo=UTC)
    assert type(zeros.last_heartbeat) is datetime and zeros.last_heartbeat == micro  # zeros: to the microsecond
    assert isinstance(exact.last_heartbeat, Instant)
    assert exact.last_heartbeat != micro and micro < exact.last_heartbeat < micro + timedelta(microseconds=1)
    assert exact != zeros  # judged by instant: truncating would have made them equal
    assert timestamp_text(exact.last_heartbeat) == "2026-07-01T08:15:01.123456789Z"  # echoed with every digit
    assert timestamp_text(micro) == "2026-07-01T08:15:01.123456Z"
    offset = HeartbeatObject.from_json({**heartbeat, "last_heartbeat": "2026-07-01T10:15:01.1234567890+02:00"})
    assert offset.last_heartbeat == exact.last_heartbeat and hash(offset) == hash(exact)
    with pytest.raises(DecodeError):
        HeartbeatObject.from_json({**heartbeat, "last_heartbeat": "2026-07-01T08:15:60.123456789Z"})  # leap second


def test_a_go_servers_reply_decodes_in_either_dialect() -> None:
    peer = Peer()
    wid = peer.create()
    polled = dict(peer.poll().json)
    polled["created_at"] = "2026-07-01T08:15:01.000000001Z"
    decoded = decode_poll(json.dumps(polled).encode(), ANTHROPIC)
    assert decoded is not None and decoded.id == wid and decoded.created_at > T


# --- the codec reads both dialects ---------------------------------------------------------------------------


def test_reply_decoders_take_the_dialect() -> None:
    peer = Peer()
    wid = peer.create()
    polled = peer.poll()
    decoded = decode_poll(polled.body, ANTHROPIC)
    assert decoded is not None and decoded.id == wid and decoded.secret is None
    assert decoded.to_json(ANTHROPIC) == polled.json
    with pytest.raises(DecodeError):
        decode_poll(polled.body)  # base62 ids are not qoder's
    assert unknown_keys(polled.json, WorkObject, ANTHROPIC) == ()
    assert unknown_keys(polled.json, WorkObject) == ("secret",)
    refused = peer.heartbeat(wid, 1)
    assert refused.status == 412
    envelope = ErrorEnvelope.from_bytes(refused.body, ANTHROPIC)
    assert envelope.details is not None and envelope.details["error_code"] == "heartbeat_precondition_failed"
    assert envelope.to_json(ANTHROPIC) == refused.json
    assert unknown_keys(refused.json, ErrorEnvelope, ANTHROPIC) == ()
    assert unknown_keys(refused.json, ErrorEnvelope) == ("error.details",)
    assert ErrorEnvelope.from_json(refused.json).details is None  # qoder's reader ignores it
    page = peer.list().json
    assert unknown_keys(page, ListEnvelope, ANTHROPIC) == ()
    assert ListEnvelope.from_json(page, dialect=ANTHROPIC).to_json(ANTHROPIC) == page
    with_secret = {**polled.json, "secret": "c2VjcmV0"}
    assert WorkObject.from_json(with_secret, dialect=ANTHROPIC).secret == "c2VjcmV0"
    assert WorkObject.from_json(with_secret, dialect=ANTHROPIC) == decoded  # a secret is no part of the item
    with pytest.raises(DecodeError):
        WorkObject.from_json({**polled.json, "secret": 1}, dialect=ANTHROPIC)
    assert loads(b"null") is None


def test_qoder_answers_as_server_always_did() -> None:
    plain, spoken = Peer(QODER), Server(dialect=QODER)
    spoken.create_environment(now=T)
    wid = plain.create()
    spoken.create_work(plain.env, session_id=plain.session(1), now=T)
    for method, path, body in (
        ("GET", QODER.path(plain.env, operation="poll"), b""),
        ("POST", QODER.path(plain.env, wid, "ack"), b""),
        ("POST", QODER.path(plain.env, wid, "heartbeat"), b""),
        ("POST", QODER.path(plain.env, wid, "stop"), b""),
        ("GET", QODER.path(plain.env), b""),
        ("GET", QODER.path(plain.env, "work_" + "f" * 32), b""),
    ):
        headers = {"Authorization": "Bearer k", QODER.worker_header: "w1"}
        one = plain.server.handle(Request(method, path, headers, body), T)
        other = spoken.handle(Request(method, path, headers, body), T)
        assert one == other and one.headers == {"content-type": "application/json"}
    assert Server().dialect is QODER and Server().policy == QODER.policy


def _token(secret: str) -> dict[str, Any]:
    padded = secret + "=" * (-len(secret) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded))
    assert isinstance(value, dict)
    return value


def test_a_dialect_that_issues_secrets_authorizes_that_delivery_with_them() -> None:
    dialect = attrs.evolve(ANTHROPIC, name="anthropic-secrets", issues_secrets=True)
    peer = Peer(dialect, authorizer=lambda access: access.token == "env-key")
    peer.auth = {"Authorization": "Bearer env-key"}
    wid, other = peer.create(1), peer.create(2)
    polled = peer.poll()
    secret = polled.json["secret"]
    assert isinstance(secret, str) and "=" not in secret and set(_token(secret)) == {"sessions_token"}
    assert decode_poll(polled.body, dialect) is not None
    assert peer.get(wid).json["secret"] is None  # only the poll's answer carries it
    assert peer.list().json["data"][0]["secret"] is None
    peer.auth = {"Authorization": f"Bearer {secret}"}
    assert peer.get(wid).status == 403  # it authorizes ack, heartbeat and stop only
    assert peer.ack(other).status == 403  # and only of its own item
    assert peer.ack(wid).status == 200
    assert peer.heartbeat(wid, 1).status == 200
    assert (
        peer.call("POST", dialect.path(peer.env, wid, "heartbeat"), 2, {"x-api-key": secret}, auth=False).status == 200
    )
    assert peer.stop(wid, force=True, seconds=3).status == 204
    assert peer.heartbeat(wid, 4).status == 403  # the delivery is over: so is its secret
    peer.auth = {"Authorization": "Bearer env-key"}
    again = peer.poll(seconds=5)
    assert again.json["id"] == other and again.json["secret"] not in (None, secret)
    assert Peer().poll().json is None  # the shipped peer issues none (secret null): an option
    plain = Peer()
    plain.create()
    assert plain.poll().json["secret"] is None


# --- every decision is the core's: the peer server against LIFECYCLE.in_dialect(ANTHROPIC).step -------------

_OPS = st.tuples(
    st.sampled_from(["poll", "ack", "heartbeat", "heartbeat-echo", "heartbeat-none", "stop", "force-stop", "get"]),
    st.sampled_from([0, 0, 1, 5, 30, 61, 200]),
    st.sampled_from(["w1", "w2"]),
)


@given(st.lists(_OPS, max_size=14))
@settings(max_examples=60, deadline=None)
def test_the_peer_server_answers_as_the_peer_lifecycle_steps(ops: list[tuple[str, int, str]]) -> None:
    peer = Peer()
    lifecycle = LIFECYCLE.in_dialect(ANTHROPIC)
    wid = peer.create()
    model = peer.server.work(peer.env, wid)
    assert model is not None
    now, echoed = 0.0, None
    for op, later, worker in ops:
        now += later
        command: Any
        if op == "poll":
            command = Deliver(worker)
        elif op == "ack":
            command = Ack()  # the peer reads no worker on ack
        elif op.startswith("heartbeat"):
            expected = {"heartbeat": NO_HEARTBEAT, "heartbeat-echo": echoed, "heartbeat-none": None}[op]
            command = Heartbeat(expected)
        elif op in ("stop", "force-stop"):
            command = Stop(op == "force-stop")
        else:
            command = Lapse()
        outcome = lifecycle.step(model, command, at(now))
        if op == "poll":
            answer = peer.poll(worker, now)
            assert answer.status == 200
            assert (answer.json is None) == (not isinstance(outcome, Accepted))
        elif op == "ack":
            answer = peer.ack(wid, worker, now)
        elif op.startswith("heartbeat"):
            query = (
                ""
                if command.expected_last_heartbeat is None
                else f"?expected_last_heartbeat={command.expected_last_heartbeat}"
            )
            answer = peer.heartbeat(wid, now, query)
            if answer.status == 200:
                echoed = answer.json["last_heartbeat"]
        elif op in ("stop", "force-stop"):
            answer = peer.stop(wid, op == "force-stop", now)
        else:
            answer = peer.get(wid, now)
        if op != "poll":
            expected_status = 204 if op in ("stop", "force-stop") and outcome.status == 200 else outcome.status
            assert answer.status == expected_status, (op, outcome.rule.name)
            if op != "get":
                assert answer.rule == outcome.rule  # the rule that decided is the core's
        model = outcome.item
        assert peer.server.work(peer.env, wid) == model
