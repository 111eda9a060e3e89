"""The reference server, through ``Server.handle``: every endpoint of api.md §4, every row of its
tables, every error of api.md §6, and the contract of reference-server.md.

Every request made here goes through ``World.call``, which also checks that the response is
well formed (content type, body = json, a decodable error envelope whose type fits the status) and
that a rejected request changed nothing (api.md §6 and invariants.md #5).
"""

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import pytest

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    ConflictErrorType,
    DispatchRequested,
    InvalidId,
    InvalidInput,
    InvalidMetadata,
    LimitOverMax,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    State,
    TimestampMatch,
    WorkItem,
    WorkstateError,
    parse_timestamp,
    render_timestamp,
)
from workstate.api import (
    Access,
    CounterIds,
    EnvironmentKind,
    Headers,
    NotSelfHosted,
    Request,
    Response,
    Server,
    SessionBusy,
    UnknownEnvironment,
    bearer_token,
)
from workstate.api.codec import ErrorEnvelope, HeartbeatObject, ListEnvelope, StatsObject, WorkObject, loads

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "work-api.md"
STATUS_TYPES = {
    400: {"invalid_request_error"},
    401: {"authentication_error"},
    403: {"permission_error"},
    404: {"not_found_error"},
    409: {"invalid_request_error", "conflict_error"},
    412: {"precondition_failed_error"},
}


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def check_response(response: Response) -> None:
    """What every response must be: JSON, the body being `json`, an error envelope on every 4xx."""
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["content-type"] == "application/json"
    assert loads(response.body) == response.json
    if response.status == 200:
        return
    assert response.status in STATUS_TYPES, response
    envelope = ErrorEnvelope.from_json(response.json)
    assert envelope.error_type in STATUS_TYPES[response.status]
    assert envelope.request_id and envelope.message


class World:
    """One server with one self_hosted environment; every request checks the response and, when it is
    rejected, that the server's state did not change."""

    def __init__(self, policy: Policy = DEFAULT_POLICY, lazy: bool = False, **server_args: Any) -> None:
        self.lazy = lazy
        self.server = Server(policy, **server_args)
        self.env = self.server.create_environment(now=T)
        self.sessions = 0

    def work(self, seconds: float = 0, metadata: dict[str, str] | None = None) -> str:
        self.sessions += 1
        session = f"sess_{self.sessions:032x}"
        return self.server.create_work(self.env, session_id=session, metadata=metadata, now=at(seconds))

    def call(
        self,
        method: str,
        path: str = "",
        query: dict[str, Any] | None = None,
        *,
        seconds: float = 0,
        worker: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        env: str | None = None,
        auth: str | None = "Bearer t",
    ) -> Response:
        target = self.target(path, env)
        if query:
            target += "?" + urlencode(query)
        sent = dict(headers or {})
        if auth is not None:
            sent.setdefault("Authorization", auth)
        if worker is not None:
            sent["Worker-ID"] = worker
        return self.raw(Request(method, target, sent, body), at(seconds))

    def target(self, path: str, env: str | None = None) -> str:
        return f"/api/v1/cloud/environments/{env or self.env}/work{path}"

    def raw(self, request: Request, now: datetime) -> Response:
        if self.lazy:  # leave expiry to the request itself
            response = self.server.handle(request, now)
            check_response(response)
            return response
        self.server.expire(now)  # the state at `now`: what a rejected request must leave as it is
        before = self.server.snapshot()
        response = self.server.handle(request, now)
        check_response(response)
        if response.status != 200:
            assert self.server.snapshot() == before, "a rejected request changed the server"
        return response

    def poll(self, worker: str | None = None, seconds: float = 0, **query: Any) -> Response:
        return self.call("GET", "/poll", query, worker=worker, seconds=seconds)

    def ack(self, work: str, worker: str | None = None, seconds: float = 0) -> Response:
        return self.call("POST", f"/{work}/ack", worker=worker, seconds=seconds)

    def heartbeat(self, work: str, seconds: float = 0, **query: Any) -> Response:
        return self.call("POST", f"/{work}/heartbeat", query, seconds=seconds)

    def stop(self, work: str, force: bool | None = None, seconds: float = 0) -> Response:
        body = b"" if force is None else b'{"force": %s}' % (b"true" if force else b"false")
        return self.call("POST", f"/{work}/stop", body=body, seconds=seconds)

    def get(self, work: str, seconds: float = 0) -> Response:
        return self.call("GET", f"/{work}", seconds=seconds)

    def update(self, work: str, body: bytes, seconds: float = 0) -> Response:
        return self.call("POST", f"/{work}", body=body, seconds=seconds)

    def list(self, seconds: float = 0, **query: Any) -> Response:
        return self.call("GET", "", query, seconds=seconds)

    def stats(self, seconds: float = 0) -> StatsObject:
        response = self.call("GET", "/stats", seconds=seconds)
        assert response.status == 200
        return StatsObject.from_json(response.json)

    def item(self, work: str) -> WorkItem:
        for env in self.server.snapshot():
            for item in env.items:
                if item.id == work:
                    return item
        raise AssertionError(f"{work} is lost")

    def bring(self, state: str, worker: str | None = "w1") -> str:
        """A new item in ``state``: delivered at 1 s, acked at 2 s, heartbeated / stopped at 3 s."""
        work = self.work()
        if state == "stopped":
            assert self.stop(work, force=True, seconds=1).status == 200
            return work
        assert self.poll(worker, seconds=1).json["id"] == work
        if state == "queued":
            return work
        assert self.ack(work, worker, seconds=2).status == 200
        if state == "stopping":
            assert self.stop(work, seconds=3).status == 200
        elif state == "active":
            assert self.heartbeat(work, seconds=3, expected_last_heartbeat=NO_HEARTBEAT).status == 200
        assert self.item(work).state.value == state
        return work


def error_of(response: Response) -> ErrorEnvelope:
    return ErrorEnvelope.from_json(response.json)


def assert_error(response: Response, status: int, param: str | None = None) -> ErrorEnvelope:
    assert response.status == status, response.json
    envelope = error_of(response)
    assert envelope.param == param, envelope
    return envelope


# --- reference-server.md, verbatim --------------------------------------------------------------------


def test_the_reference_server_contract_example_works_as_written() -> None:
    from datetime import datetime, timezone

    from workstate.api import Request, Response, Server  # noqa: F401 - the contract's own import line

    T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=timezone.utc)  # noqa: UP017 - verbatim

    server = Server()  # default policy; any non-empty bearer token is accepted
    server = Server(policy=Policy())  # Policy importable as `from workstate import Policy`

    env = server.create_environment(now=T)  # a self_hosted environment: "env_" + 32 hex
    cloud = server.create_environment(kind="cloud", now=T)  # a cloud environment (work endpoints answer 400)
    wid = server.create_work(env, session_id="sess_" + "0" * 32, metadata={"job": "build"}, now=T)
    # a queued work item: "work_" + 32 hex

    resp = server.handle(
        Request(
            "POST",
            f"/api/v1/cloud/environments/{env}/work/{wid}/ack",
            headers={"Authorization": "Bearer t", "Worker-ID": "w1"},
        ),
        now=T,
    )
    resp.status  # int  # noqa: B018
    resp.json  # the decoded JSON body: dict, list, or None (for a `null` body)  # noqa: B018
    resp.headers  # mapping; content-type is application/json  # noqa: B018

    assert re.fullmatch(r"env_[0-9a-f]{32}", env) and re.fullmatch(r"env_[0-9a-f]{32}", cloud)
    assert re.fullmatch(r"work_[0-9a-f]{32}", wid)
    assert isinstance(resp.status, int) and resp.status == 200
    assert resp.json["state"] == "starting" and resp.json["metadata"] == {"job": "build"}
    assert resp.headers["content-type"] == "application/json"
    null = server.handle(
        Request("GET", f"/api/v1/cloud/environments/{env}/work/poll", {"authorization": "Bearer t"}), T
    )
    assert null.status == 200 and null.json is None and null.body == b"null"
    on_cloud = server.handle(
        Request("GET", f"/api/v1/cloud/environments/{cloud}/work/poll", {"Authorization": "Bearer t"}), T
    )
    assert on_cloud.status == 400 and on_cloud.json["error"]["type"] == "invalid_request_error"


def test_request_defaults_and_naive_now() -> None:
    request = Request("GET", "/x")
    assert request.headers is None and request.body == b""
    server = Server()
    with pytest.raises(ValueError):
        server.handle(request, datetime(2026, 7, 1, 8, 15, 1))  # naive
    with pytest.raises(ValueError):
        server.create_environment(now=datetime(2026, 7, 1))


def test_ids_are_deterministic_and_sort_in_creation_order() -> None:
    def run() -> tuple[list[str], list[str]]:
        server = Server()
        envs = [server.create_environment(now=T) for _ in range(3)]
        works = [server.create_work(envs[i % 2], session_id=f"sess_{i:032x}", now=at(-i)) for i in range(20)]
        return envs, works

    first, second = run(), run()
    assert first == second
    envs, works = first
    assert envs == sorted(envs) and works == sorted(works) and len(set(works)) == 20
    assert all(re.fullmatch(r"work_[0-9a-f]{32}", w) for w in works)


def test_request_ids_are_echoed_or_generated_deterministically() -> None:
    def errors() -> list[str]:
        w = World()
        out = [error_of(w.get("work_" + "f" * 32)).request_id for _ in range(3)]
        out.append(error_of(w.get("work_" + "f" * 32, seconds=0)).request_id)
        echoed = w.call("GET", "/" + "work_" + "f" * 32, headers={"X-Request-ID": "req-42"})
        assert error_of(echoed).request_id == "req-42"
        return out

    ids = errors()
    assert ids == errors() and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)


def test_an_injected_id_source_is_used() -> None:
    numbers = iter(range(100, 200))
    server = Server(ids=lambda prefix: f"{prefix}{next(numbers):032x}")
    env = server.create_environment(now=T)
    assert env == f"env_{100:032x}"
    assert server.create_work(env, session_id=SESSION, now=T) == f"work_{101:032x}"
    bad = Server(ids=lambda prefix: prefix + "nope")
    with pytest.raises(InvalidId):
        bad.create_environment(now=T)


def test_the_default_counter_source_can_start_elsewhere() -> None:
    ids = CounterIds(start=0x10)
    assert ids("env_") == "env_" + "0" * 30 + "10"
    assert ids("env_") == "env_" + "0" * 30 + "11"
    assert ids("work_") == "work_" + "0" * 30 + "10"


# --- creating environments and work ---------------------------------------------------------------------

SESSION = "sess_" + "a" * 32


def test_create_work_queues_an_item_and_keeps_creation_order() -> None:
    w = World()
    a, b = w.work(), w.work(seconds=1, metadata={"job": "build"})
    item = w.item(b)
    assert item.state is State.QUEUED and item.created_at == at(1) and dict(item.metadata) == {"job": "build"}
    assert [x["id"] for x in w.list().json["data"]] == [a, b]


def test_at_most_one_live_item_per_session() -> None:
    w = World()
    first = w.server.create_work(w.env, session_id=SESSION, now=T)
    with pytest.raises(SessionBusy) as caught:
        w.server.create_work(w.env, session_id=SESSION, now=T)
    assert caught.value.work_id == first and caught.value.param == "session_id"
    assert isinstance(caught.value, WorkstateError)
    other = w.server.create_environment(now=T)
    with pytest.raises(SessionBusy):
        w.server.create_work(other, session_id=SESSION, now=T)
    assert w.stop(first, force=True).status == 200
    second = w.server.create_work(w.env, session_id=SESSION, now=at(1))
    assert second != first and w.item(second).state is State.QUEUED


def test_a_session_is_free_once_its_item_stops_by_expiry_at_now() -> None:
    w = World(Policy(on_lease_expiry=OnLeaseExpiry.STOP))
    first = w.server.create_work(w.env, session_id=SESSION, now=T)
    assert w.ack(first).status == 200
    assert w.heartbeat(first, expected_last_heartbeat=NO_HEARTBEAT, desired_ttl_seconds=10).status == 200
    with pytest.raises(SessionBusy):
        w.server.create_work(w.env, session_id=SESSION, now=at(9))
    w.server.create_work(w.env, session_id=SESSION, now=at(10))  # the lease lapsed at 10 s: stopped
    assert w.item(first).stopped_at == at(10)


@pytest.mark.parametrize(
    ("call", "error", "param"),
    [
        (lambda s, env, cloud: s.create_work("env_" + "9" * 32, session_id=SESSION, now=T), UnknownEnvironment, "env"),
        (lambda s, env, cloud: s.create_work(cloud, session_id=SESSION, now=T), NotSelfHosted, "env"),
        (lambda s, env, cloud: s.create_work(env, session_id="sess_1", now=T), InvalidId, "session_id"),
        (
            lambda s, env, cloud: s.create_work(env, session_id=SESSION, metadata={"a": 1}, now=T),
            InvalidMetadata,
            "metadata",
        ),
        (
            lambda s, env, cloud: s.create_work(env, session_id=SESSION, metadata={"a": None}, now=T),
            InvalidMetadata,
            "metadata",
        ),
        (
            lambda s, env, cloud: s.create_work(env, session_id=SESSION, metadata={"k": "v" * 513}, now=T),
            InvalidMetadata,
            "metadata",
        ),
        (
            lambda s, env, cloud: s.create_work(
                env, session_id=SESSION, metadata={f"k{i}": "v" for i in range(17)}, now=T
            ),
            InvalidMetadata,
            "metadata",
        ),
        (lambda s, env, cloud: s.create_environment(kind="hosted", now=T), InvalidInput, "kind"),
    ],
    ids=[
        "unknown environment",
        "cloud environment",
        "bad session id",
        "metadata value not a string",
        "metadata value null",
        "metadata value over 512",
        "metadata over 16 keys",
        "unknown environment kind",
    ],
)
def test_creation_errors_are_typed(call: Any, error: type, param: str) -> None:
    server = Server()
    env, cloud = server.create_environment(now=T), server.create_environment(kind=EnvironmentKind.CLOUD, now=T)
    before = server.snapshot()
    with pytest.raises(error) as caught:
        call(server, env, cloud)
    assert caught.value.param == param
    assert server.snapshot() == before
    assert server.create_work(env, session_id=SESSION, now=T) == "work_" + "0" * 31 + "1"  # no id was spent


# --- api.md §4: the order of checks -------------------------------------------------------------------------

UNKNOWN_ENV = "env_" + "e" * 32
UNKNOWN_WORK = "work_" + "f" * 32


def deny_all(access: Access) -> bool:
    return False


@pytest.mark.parametrize(
    ("case", "status", "param"),
    [
        ("unknown route beats a missing bearer", 404, None),
        ("401 missing bearer beats 403", 401, None),
        ("403 beats an unknown environment", 403, None),
        ("404 unknown environment beats bad parameters", 404, None),
        ("400 non-self_hosted beats bad parameters", 400, None),
        ("400 bad parameters beat an unknown item", 400, "desired_ttl_seconds"),
        ("400 bad Worker-ID beats an unknown item", 400, "Worker-ID"),
        ("400 bad body beats an unknown item", 400, "force"),
        ("404 unknown item beats the state rules", 404, None),
        ("409 state rule", 409, None),
    ],
)
def test_section_4_order_of_checks(case: str, status: int, param: str | None) -> None:
    w = World()
    denying = World(authorizer=deny_all)
    cloud = w.server.create_environment(kind="cloud", now=T)
    stopped = w.bring("stopped")
    if case.startswith("unknown route"):
        response = w.call("DELETE", f"/{stopped}", auth=None)
    elif case.startswith("401"):
        response = denying.call("POST", f"/{UNKNOWN_WORK}/ack", auth=None, env=UNKNOWN_ENV)
    elif case.startswith("403"):
        response = denying.call("POST", f"/{UNKNOWN_WORK}/ack", env=UNKNOWN_ENV)
    elif case.startswith("404 unknown environment"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/heartbeat", {"desired_ttl_seconds": "x"}, env=UNKNOWN_ENV)
    elif case.startswith("400 non-self_hosted"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/heartbeat", {"desired_ttl_seconds": "x"}, env=cloud)
    elif case.startswith("400 bad parameters"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/heartbeat", {"desired_ttl_seconds": "x"})
    elif case.startswith("400 bad Worker-ID"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/ack", headers={"Worker-ID": " "})
    elif case.startswith("400 bad body"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/stop", body=b'{"force": "yes"}')
    elif case.startswith("404 unknown item"):
        response = w.call("POST", f"/{UNKNOWN_WORK}/ack")
    else:
        response = w.ack(stopped)
    assert_error(response, status, param)


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", "/poll", "poll"),
        ("GET", "", "list"),
        ("GET", "/stats", "stats"),
        ("GET", "/{work}", "get"),
        ("POST", "/{work}", "update"),
        ("POST", "/{work}/ack", "ack"),
        ("POST", "/{work}/heartbeat", "heartbeat"),
        ("POST", "/{work}/stop", "stop"),
    ],
)
def test_every_endpoint_authenticates_and_asks_the_authorizer(method: str, path: str, operation: str) -> None:
    seen: list[Access] = []

    def authorizer(access: Access) -> bool:
        seen.append(access)
        return access.token == "good"

    w = World(authorizer=authorizer)
    work = w.work()
    if operation == "heartbeat":
        w.server.handle(Request("POST", w.target(f"/{work}/ack"), {"Authorization": "Bearer good"}), T)
        seen.clear()
    on_item = "{work}" in path
    path = path.format(work=work)
    body = b"{}" if operation == "update" else b""
    for auth in (None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "Token good", "bearer"):
        assert_error(w.call(method, path, auth=auth, body=body), 401)
    assert not seen
    assert_error(w.call(method, path, auth="Bearer bad", body=body), 403)
    assert seen[-1] == Access("bad", operation, w.env, work if on_item else None)
    assert w.call(method, path, auth="bEaReR   good", body=body).status == 200
    assert seen[-1].token == "good"


def test_a_repeated_authorization_header_with_different_values_is_401() -> None:
    w = World()
    work = w.work()
    target = f"/api/v1/cloud/environments/{w.env}/work/{work}"
    both = [("Authorization", "Bearer a"), ("authorization", "Bearer b")]
    assert_error(w.raw(Request("GET", target, both), T), 401)
    same = [("Authorization", "Bearer a"), ("AUTHORIZATION", "Bearer a")]
    assert w.raw(Request("GET", target, same), T).status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/poll", b"{}"),
        ("GET", "", b" { } "),
        ("GET", "/stats", b"{}"),
        ("GET", "/{work}", b"{}"),
        ("POST", "/{work}/ack", b"{}"),
        ("POST", "/{work}/heartbeat", b"{}\n"),
    ],
)
def test_section_4_endpoints_without_a_body_accept_an_empty_one_or_an_empty_object(
    method: str, path: str, body: bytes
) -> None:
    headers = {"X-Unknown-Header": "ignored", "Content-Type": "text/plain"}
    for sent in (body, b""):
        w = World()
        work = w.work()
        if "heartbeat" in path:
            w.ack(work)
        assert w.call(method, path.format(work=work), body=sent, headers=headers).status == 200
    for bad in (b'{"a": 1}', b"[]", b"null", b"{", b"\xff"):
        assert_error(w.call(method, path.format(work=work), body=bad), 400)


def test_section_4_expiry_due_at_now_is_applied_before_any_operation() -> None:
    w = World()
    work = w.bring("active")  # heartbeat at 3 s, TTL 60 s: deadline 63 s
    response = w.heartbeat(work, seconds=63, expected_last_heartbeat=render_timestamp(at(3)))
    assert_error(response, 409)  # the lease lapsed at 63 s: the item is queued again
    got = w.get(work, seconds=63).json
    assert got["state"] == "queued" and got["latest_heartbeat_at"] is None


# --- unknown routes (api.md §6: 404 also for unknown routes) ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/"),
        ("GET", "/api/v1/cloud/environments"),
        ("GET", "/api/v1/cloud/environments/{env}"),
        ("GET", "/api/v1/cloud/environments/{env}/work/"),
        ("GET", "/api/v1/cloud/environments/{env}/works"),
        ("GET", "/api/v1/cloud/environments/{env}/work/{work}/ack"),
        ("POST", "/api/v1/cloud/environments/{env}/work"),
        ("POST", "/api/v1/cloud/environments/{env}/work/poll"),
        ("POST", "/api/v1/cloud/environments/{env}/work/stats"),
        ("POST", "/api/v1/cloud/environments/{env}/work/{work}/restart"),
        ("PUT", "/api/v1/cloud/environments/{env}/work/{work}"),
        ("DELETE", "/api/v1/cloud/environments/{env}/work/{work}"),
        ("get", "/api/v1/cloud/environments/{env}/work/{work}"),
        ("PATCH", "/api/v1/cloud/environments/{env}/work/{work}/stop"),
        ("GET", "/api/v1/cloud/environments/{env}/work/{work}/stop/x"),
        ("GET", "/api/v1/cloud//work"),
        ("GET", "http://example.com/api/v1/cloud/environments/{env}/work"),
        ("GET", "/api/v1/cloud/environments/{env}/work/%zz"),
        ("GET", "/api/v1/cloud/environments/{env}/work/a b"),
        ("GET", "/api/v2/cloud/environments/{env}/work"),
    ],
)
def test_section_6_unknown_routes_are_404_not_found_before_authentication(method: str, target: str) -> None:
    w = World()
    work = w.work()
    request = Request(method, target.format(env=w.env, work=work), {})
    assert_error(w.raw(request, T), 404)


def test_paths_are_percent_decoded() -> None:
    w = World()
    work = w.work()
    encoded = w.env.replace("_", "%5F")
    request = Request("GET", f"/api/v1/cloud/environments/{encoded}/w%6Frk/{work}", {"Authorization": "Bearer t"})
    assert w.raw(request, T).json["id"] == work


# --- 4.1 poll ---------------------------------------------------------------------------------------------------


def test_4_1_poll_answers_the_oldest_deliverable_item_still_queued_or_null() -> None:
    w = World()
    assert w.poll("w1").json is None
    a, b = w.work(), w.work()
    first = w.poll("w1", seconds=1)
    assert first.status == 200 and first.json["id"] == a and first.json["state"] == "queued"
    assert WorkObject.from_json(first.json).state is State.QUEUED
    assert w.poll("w2", seconds=1).json["id"] == b
    assert w.poll("w3", seconds=1).json is None
    assert w.item(a).acknowledged_at is None  # poll does not ack


def test_4_1_which_item_creation_order_is_created_at_then_id() -> None:
    w = World()
    late = w.work(seconds=10)
    early = w.work(seconds=5)  # created later, with an earlier created_at
    tie_1, tie_2 = w.work(seconds=7), w.work(seconds=7)
    order = [w.poll(seconds=11).json["id"] for _ in range(4)]
    assert order == [early, tie_1, tie_2, late]
    assert [x["id"] for x in w.list().json["data"]] == [late, early, tie_1, tie_2]  # list: id order


@pytest.mark.parametrize("value", ["1", "999", "500", "0999"])
def test_4_1_block_ms_from_1_to_999_is_accepted_and_never_blocks(value: str) -> None:
    w = World()
    assert w.poll("w1", block_ms=value).json is None


@pytest.mark.parametrize(
    "value", ["0", "1000", "-1", "1e1", "+5", " 5", "5 ", "", "abc", "1.0", "\u0665", "1_0", "9" * 5000]
)
def test_4_1_block_ms_otherwise_is_400(value: str) -> None:
    w = World()
    w.work()
    assert_error(w.poll("w1", block_ms=value), 400, "block_ms")
    assert w.stats().workers_polling == 0  # a rejected poll is not a poll


def test_4_1_reclaim_older_than_ms_defaults_to_5000() -> None:
    w = World()
    work = w.work()
    assert w.poll("w1", seconds=1).json["id"] == work
    assert w.poll("w2", seconds=5.999).json is None
    redelivered = w.poll("w2", seconds=6)
    assert redelivered.json["id"] == work


@pytest.mark.parametrize(("window", "due"), [("1", 1.001), ("1500", 2.5), ("00010000", 11.0)])
def test_4_1_reclaim_older_than_ms_is_per_request(window: str, due: float) -> None:
    w = World()
    work = w.work()
    w.poll("w1", seconds=1)
    assert w.poll("w2", seconds=due - 0.000001, reclaim_older_than_ms=window).json is None
    assert w.poll("w2", seconds=due, reclaim_older_than_ms=window).json["id"] == work


def test_4_1_a_zero_reclaim_window_redelivers_at_once_even_when_the_clock_went_back() -> None:
    w = World()
    work = w.work()
    w.poll("w1", seconds=10)
    assert w.poll("w2", seconds=10, reclaim_older_than_ms="0").json["id"] == work
    assert w.poll("w3", seconds=5, reclaim_older_than_ms="0").json["id"] == work
    assert w.item(work).delivered_at == at(10) and w.item(work).delivered_to == "w3"


def test_4_1_a_huge_reclaim_window_only_delivers_fresh_items() -> None:
    w = World()
    a = w.work()
    w.poll("w1", seconds=1)
    for huge in ("9" * 17, "9" * 40, "9" * 5000):
        assert w.poll("w2", seconds=10**6, reclaim_older_than_ms=huge).json is None
    b = w.work(seconds=2)
    assert w.poll("w2", seconds=3, reclaim_older_than_ms="9" * 40).json["id"] == b
    assert w.poll("w2", seconds=10, reclaim_older_than_ms="0").json["id"] == a


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "", " 1", "1e3"])
def test_4_1_reclaim_older_than_ms_must_be_a_non_negative_integer(value: str) -> None:
    assert_error(World().poll("w1", reclaim_older_than_ms=value), 400, "reclaim_older_than_ms")


def test_4_1_worker_id_is_stored_overwritten_by_a_redelivery_and_cleared_by_one_without() -> None:
    w = World()
    work = w.work()
    w.poll("w1", seconds=1)
    assert w.item(work).delivered_to == "w1"
    w.poll("w2", seconds=7)
    assert w.item(work).delivered_to == "w2"
    assert_error(w.ack(work, "w1", seconds=8), 409, "Worker-ID")  # w1's claim is gone
    w.poll(None, seconds=13)
    assert w.item(work).delivered_to is None
    assert w.ack(work, "w1", seconds=14).status == 200  # nothing stored: any worker may ack


def test_4_1_an_empty_worker_id_is_400() -> None:
    w = World()
    w.work()
    assert_error(w.call("GET", "/poll", headers={"Worker-ID": "  "}), 400, "Worker-ID")
    assert_error(w.call("GET", "/poll", headers={"Worker-ID": ""}), 400, "Worker-ID")
    assert_error(
        w.raw(
            Request("GET", w.target("/poll"), [("Authorization", "Bearer t"), ("Worker-ID", "a"), ("worker-id", "b")]),
            T,
        ),
        400,
        "Worker-ID",
    )


def test_4_1_poll_prefers_an_older_reclaimable_item_to_a_newer_fresh_one() -> None:
    w = World()
    old, new = w.work(), w.work(seconds=1)
    w.poll("w1", seconds=1)
    assert w.poll("w2", seconds=2).json["id"] == new
    w.work(seconds=3)
    assert w.poll("w3", seconds=6).json["id"] == old


def test_4_1_a_metadata_change_after_delivery_does_not_move_the_reclaim_window() -> None:
    w = World()
    work = w.work()
    w.poll("w1", seconds=1)
    assert w.update(work, b'{"metadata": {"a": "b"}}', seconds=100).status == 200
    assert w.stats(seconds=2) == StatsObject(depth=0, pending=1, oldest_queued_at=T, workers_polling=1)
    assert w.poll("w2", seconds=2).json is None
    assert w.poll("w2", seconds=6).json["id"] == work


def test_4_1_query_parameters_are_percent_decoded_strictly() -> None:
    w = World()
    w.work()
    target = f"/api/v1/cloud/environments/{w.env}/work/poll"
    auth = {"Authorization": "Bearer t"}
    assert w.raw(Request("GET", target + "?block%5Fms=%39%39%39&unknown=%zz", auth), T).status == 200
    assert_error(w.raw(Request("GET", target + "?block_ms=%zz", auth), T), 400, "block_ms")
    assert_error(w.raw(Request("GET", target + "?block_ms=1&block_ms=2", auth), T), 400, "block_ms")
    assert_error(w.raw(Request("GET", target + "?block_ms=%C3%28", auth), T), 400, "block_ms")
    assert w.raw(Request("GET", target + "?&&block_ms=5&", auth), T).status == 200


# --- 4.2 ack: one test per row of the table ---------------------------------------------------------------


def _ack_row_1(w: World) -> None:
    # no Worker-ID stored
    a = w.bring("queued", worker=None)
    response = w.ack(a, "w9", seconds=2)
    assert response.status == 200 and response.json["state"] == "starting"
    assert response.json["acknowledged_at"] == render_timestamp(at(2))
    assert response.effects == (DispatchRequested(),)
    assert w.item(a).worker_id == "w9"
    # none sent: binds the stored one
    b = w.bring("queued", worker="w1")
    assert w.ack(b, None, seconds=2).status == 200 and w.item(b).worker_id == "w1"
    # equal
    c = w.bring("queued", worker="w2")
    assert w.ack(c, "w2", seconds=2).json["state"] == "starting" and w.item(c).worker_id == "w2"


def _ack_row_2(w: World) -> None:
    a = w.bring("queued", worker="w1")
    envelope = assert_error(w.ack(a, "w2", seconds=2), 409, "Worker-ID")
    assert envelope.error_type == "invalid_request_error" and "ack-claimed-by-another" in envelope.message


def _ack_row_3(w: World) -> None:
    a = w.work()
    assert w.ack(a, "w1").json["state"] == "starting"
    strict = World(Policy(ack_requires_delivery=True))
    b = strict.work()
    assert_error(strict.ack(b, "w1"), 409)
    strict.poll("w1", seconds=1)
    assert strict.ack(b, "w1", seconds=2).status == 200


def _ack_row_4(w: World) -> None:
    for state in ("starting", "active"):
        a = w.bring(state)
        before = w.item(a)
        for worker in ("w1", None):
            response = w.ack(a, worker, seconds=4)
            assert response.status == 200 and response.json["state"] == state and response.effects == ()
            assert w.item(a) == before  # invariant 4: a replay changes nothing


def _ack_row_5(w: World) -> None:
    for state in ("starting", "active"):
        a = w.bring(state)
        assert_error(w.ack(a, "w2", seconds=4), 409, "Worker-ID")


def _ack_row_6(w: World) -> None:
    for state in ("stopping", "stopped"):
        for worker in ("w1", "w2", None):
            a = w.bring(state)
            envelope = assert_error(w.ack(a, worker, seconds=4), 409)
            assert "ack-after-stop" in envelope.message


ACK_ROWS = {
    "queued | no Worker-ID stored, or none sent, or equal": _ack_row_1,
    "queued | stored Worker-ID differs from the one sent": _ack_row_2,
    "queued | never delivered": _ack_row_3,
    "starting, active | same or no Worker-ID": _ack_row_4,
    "starting, active | a different Worker-ID than the one bound [DECIDED]": _ack_row_5,
    "stopping, stopped | any": _ack_row_6,
}


@pytest.mark.parametrize("row", list(ACK_ROWS), ids=[f"4.2 {row}" for row in ACK_ROWS])
def test_4_2_ack_table(row: str) -> None:
    ACK_ROWS[row](World())


def test_4_2_the_worker_bound_at_ack_is_the_acks_else_the_polls() -> None:
    w = World()
    a = w.bring("queued", worker=None)
    w.ack(a, "w5", seconds=2)
    assert w.item(a).worker_id == "w5"
    assert_error(w.ack(a, "w1", seconds=3), 409, "Worker-ID")


def test_4_2_conflicts_use_the_policys_error_type() -> None:
    w = World(Policy(conflict_error_type=ConflictErrorType.CONFLICT_ERROR))
    a = w.bring("stopped")
    assert error_of(w.ack(a)).error_type == "conflict_error"


# --- 4.3 heartbeat -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "ttl"), [(None, 60), ("1", 10), ("10", 10), ("45", 45), ("600", 600), ("601", 600)]
)
def test_4_3_desired_ttl_seconds_is_clamped_to_10_600_and_defaults_to_60(desired: str | None, ttl: int) -> None:
    w = World()
    a = w.bring("starting")
    query = {} if desired is None else {"desired_ttl_seconds": desired}
    response = w.heartbeat(a, seconds=3, **query)
    assert HeartbeatObject.from_json(response.json).ttl_seconds == ttl
    assert w.item(a).lease_deadline == at(3 + ttl)


def test_4_3_a_huge_desired_ttl_is_a_positive_integer_clamped_to_the_maximum() -> None:
    w = World()
    a = w.bring("starting")
    assert w.heartbeat(a, seconds=3, desired_ttl_seconds="9" * 5000).json["ttl_seconds"] == 600


@pytest.mark.parametrize("value", ["0", "-5", "abc", "", "1.5", "1e2", "+10", " 10"])
def test_4_3_desired_ttl_seconds_not_a_positive_integer_is_400(value: str) -> None:
    w = World()
    a = w.bring("starting")
    assert_error(w.heartbeat(a, seconds=3, desired_ttl_seconds=value), 400, "desired_ttl_seconds")


@pytest.mark.parametrize("value", ["", "garbage", "no_heartbeat", "2026-07-01T08:15:04", "2026-07-01 08:15:04+0000"])
def test_4_3_expected_last_heartbeat_otherwise_is_400(value: str) -> None:
    w = World()
    a = w.bring("starting")
    assert_error(w.heartbeat(a, seconds=3, expected_last_heartbeat=value), 400, "expected_last_heartbeat")


def test_4_3_precondition_absent_holds_unconditionally() -> None:
    w = World()
    a = w.bring("active")
    assert w.heartbeat(a, seconds=4).json["state"] == "active"


def test_4_3_precondition_no_heartbeat_holds_only_before_the_first() -> None:
    w = World()
    a = w.bring("active")
    envelope = assert_error(
        w.heartbeat(a, seconds=4, expected_last_heartbeat=NO_HEARTBEAT), 412, "expected_last_heartbeat"
    )
    assert envelope.error_type == "precondition_failed_error"


def test_4_3_precondition_a_timestamp_must_equal_the_latest_as_an_instant() -> None:
    w = World()
    a = w.bring("active")  # last heartbeat at 3 s = 08:15:04 UTC
    other_spelling = "2026-07-01T10:15:04+02:00"
    assert parse_timestamp(other_spelling) == at(3)
    response = w.heartbeat(a, seconds=4, expected_last_heartbeat=other_spelling)
    assert response.status == 200 and response.json["last_heartbeat"] == render_timestamp(at(4))
    stale = render_timestamp(at(3))
    assert_error(w.heartbeat(a, seconds=5, expected_last_heartbeat=stale), 412, "expected_last_heartbeat")
    exact = World(Policy(timestamp_match=TimestampMatch.EXACT))
    b = exact.bring("active")
    assert_error(exact.heartbeat(b, seconds=4, expected_last_heartbeat=other_spelling), 412, "expected_last_heartbeat")
    assert exact.heartbeat(b, seconds=4, expected_last_heartbeat=render_timestamp(at(3))).status == 200


@pytest.mark.parametrize("state", ["queued", "stopped"])
def test_4_3_queued_or_stopped_is_409_before_the_precondition(state: str) -> None:
    w = World()
    a = w.bring(state)
    for expected in (None, NO_HEARTBEAT, render_timestamp(at(99))):
        query = {} if expected is None else {"expected_last_heartbeat": expected}
        assert_error(w.heartbeat(a, seconds=4, **query), 409)


def test_4_3_starting_with_the_precondition_becomes_active() -> None:
    w = World()
    a = w.bring("starting")
    response = w.heartbeat(a, seconds=3, expected_last_heartbeat=NO_HEARTBEAT)
    assert response.json == {
        "type": "work_heartbeat",
        "last_heartbeat": render_timestamp(at(3)),
        "lease_extended": True,
        "state": "active",
        "ttl_seconds": 60,
    }
    got = w.get(a, seconds=3).json
    assert got["started_at"] == got["latest_heartbeat_at"] == render_timestamp(at(3))


def test_4_3_active_with_the_precondition_stays_active_with_the_lease_extended() -> None:
    w = World()
    a = w.bring("active")
    response = w.heartbeat(a, seconds=50, expected_last_heartbeat=render_timestamp(at(3)), desired_ttl_seconds="30")
    assert response.json["state"] == "active" and response.json["lease_extended"] is True
    assert w.item(a).lease_deadline == at(80) and w.item(a).started_at == at(3)


def test_4_3_stopping_with_the_precondition_stays_stopping_and_the_reply_says_so() -> None:
    w = World()
    a = w.bring("active")
    w.stop(a, seconds=4)
    response = w.heartbeat(a, seconds=5, expected_last_heartbeat=render_timestamp(at(3)))
    assert response.json["state"] == "stopping" and response.json["lease_extended"] is True
    assert w.item(a).state is State.STOPPING and w.item(a).lease_deadline == at(65)


def test_4_3_last_heartbeat_strictly_increases_even_when_now_does_not() -> None:
    w = World()
    a = w.bring("active")
    first = w.heartbeat(a, seconds=10).json["last_heartbeat"]
    second = w.heartbeat(a, seconds=10, expected_last_heartbeat=first).json["last_heartbeat"]
    third = w.heartbeat(a, seconds=5, expected_last_heartbeat=second).json["last_heartbeat"]  # clock went back
    assert first < second < third
    assert parse_timestamp(second) - parse_timestamp(first) == timedelta(microseconds=1)


def test_4_3_the_lease_deadline_is_last_heartbeat_plus_ttl() -> None:
    w = World()
    a = w.bring("active")
    w.heartbeat(a, seconds=10, desired_ttl_seconds="20")
    assert w.get(a, seconds=29.999999).json["state"] == "active"
    assert w.get(a, seconds=30).json["state"] == "queued"


# --- 4.4 stop -----------------------------------------------------------------------------------------------


def _stop_row_queued(w: World) -> None:
    a = w.bring("queued")
    response = w.stop(a, force=False, seconds=5)
    assert response.json["state"] == "stopped"
    assert response.json["stop_requested_at"] == response.json["stopped_at"] == render_timestamp(at(5))


def _stop_row_starting_active(w: World) -> None:
    for state in ("starting", "active"):
        a = w.bring(state)
        response = w.stop(a, force=False, seconds=5)
        assert response.json["state"] == "stopping"
        assert response.json["stop_requested_at"] == render_timestamp(at(5)) and response.json["stopped_at"] is None


def _stop_row_stopping(w: World) -> None:
    a = w.bring("stopping")
    response = w.stop(a, seconds=5)
    assert response.json["state"] == "stopped" and response.json["stopped_at"] == render_timestamp(at(5))
    assert response.json["stop_requested_at"] == render_timestamp(at(3))


def _stop_row_stopped(w: World) -> None:
    for force in (False, True, None):
        a = w.bring("stopped")
        before = w.item(a)
        response = w.stop(a, force=force, seconds=9)
        assert response.status == 200 and response.json["state"] == "stopped"
        assert w.item(a) == before


def _stop_row_force(w: World) -> None:
    for state in ("queued", "starting", "active", "stopping"):
        a = w.bring(state)
        requested = w.item(a).stop_requested_at
        response = w.stop(a, force=True, seconds=7)
        assert response.json["state"] == "stopped" and response.json["stopped_at"] == render_timestamp(at(7))
        assert w.item(a).stop_requested_at == requested


STOP_ROWS = {
    "false | queued": _stop_row_queued,
    "false | starting, active": _stop_row_starting_active,
    "false | stopping": _stop_row_stopping,
    "false or true | stopped": _stop_row_stopped,
    "true | any live state": _stop_row_force,
}


@pytest.mark.parametrize("row", list(STOP_ROWS), ids=[f"4.4 {row}" for row in STOP_ROWS])
def test_4_4_stop_table(row: str) -> None:
    STOP_ROWS[row](World())


@pytest.mark.parametrize("body", [b"", b"{}", b'{"force": false}', b' {"force" : true} '])
def test_4_4_stop_body_empty_empty_object_or_force(body: bytes) -> None:
    w = World()
    a = w.bring("active")
    assert w.call("POST", f"/{a}/stop", body=body, seconds=4).status == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{", None),
        (b"[]", None),
        (b"null", None),
        (b"true", None),
        (b'{"force": "true"}', "force"),
        (b'{"force": 1}', "force"),
        (b'{"force": null}', "force"),
        (b'{"force": true, "reason": "x"}', "reason"),
        (b'{"force": true, "force": false}', None),
        (b'{"force": NaN}', None),
        (b"\xef\xbb\xbf{}", None),
    ],
)
def test_4_4_stop_body_otherwise_is_400(body: bytes, param: str | None) -> None:
    w = World()
    a = w.bring("active")
    assert_error(w.call("POST", f"/{a}/stop", body=body, seconds=4), 400, param)


def test_4_4_stop_checks_no_worker_id_and_no_lease() -> None:
    w = World()
    a = w.bring("active", worker="w1")
    response = w.call("POST", f"/{a}/stop", worker="somebody-else", seconds=4)
    assert response.status == 200 and WorkObject.from_json(response.json).state is State.STOPPING


# --- 4.5 get and update metadata ------------------------------------------------------------------------------


def test_4_5_get_answers_the_item() -> None:
    w = World()
    a = w.work(metadata={"job": "build"})
    assert w.get(a).json == {
        "id": a,
        "type": "work",
        "environment_id": w.env,
        "data": {"type": "session", "id": "sess_" + "0" * 31 + "1"},
        "state": "queued",
        "created_at": "2026-07-01T08:15:01.000000Z",
        "acknowledged_at": None,
        "started_at": None,
        "latest_heartbeat_at": None,
        "stop_requested_at": None,
        "stopped_at": None,
        "metadata": {"job": "build"},
    }


@pytest.mark.parametrize("state", ["queued", "starting", "active", "stopping", "stopped"])
def test_4_5_update_upserts_and_deletes_in_every_state(state: str) -> None:
    w = World()
    a = w.bring(state)
    w.update(a, b'{"metadata": {"a": "1", "b": "2"}}', seconds=4)
    response = w.update(a, b'{"metadata": {"a": null, "b": "3", "c": "4"}}', seconds=5)
    assert response.status == 200 and response.json["metadata"] == {"b": "3", "c": "4"}
    assert response.json["state"] == state
    assert w.update(a, b"{}", seconds=6).json["metadata"] == {"b": "3", "c": "4"}  # no metadata: unchanged


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"[]", None),
        (b'"x"', None),
        (b"{", None),
        (b"\xff", None),
        (b'{"metadata": {"a": 1}}', "metadata"),
        (b'{"metadata": {"a": true}}', "metadata"),
        (b'{"metadata": {"a": {}}}', "metadata"),
        (b'{"metadata": {"a": ["x"]}}', "metadata"),
        (b'{"metadata": []}', "metadata"),
        (b'{"metadata": null}', "metadata"),
        (b'{"metadata": "x"}', "metadata"),
        (b'{"meta": {}}', "meta"),
        (b'{"metadata": {"a": "\\ud800"}}', None),
        (b'{"metadata": {"a": "1", "a": "2"}}', None),
    ],
)
def test_4_5_update_body_otherwise_is_400(body: bytes, param: str | None) -> None:
    w = World()
    a = w.work()
    assert_error(w.update(a, body), 400, param)


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        ({f"k{i}": "v" for i in range(16)}, True),
        ({f"k{i}": "v" for i in range(17)}, False),
        ({"k" * 64: "v"}, True),
        ({"k" * 65: "v"}, False),
        ({"": "v"}, False),
        ({"k": "v" * 512}, True),
        ({"k": "v" * 513}, False),
    ],
    ids=["16 keys", "17 keys", "key of 64", "key of 65", "empty key", "value of 512", "value of 513"],
)
def test_4_5_metadata_limits_after_the_merge(metadata: dict[str, str], ok: bool) -> None:
    w = World()
    a = w.work()
    body = json.dumps({"metadata": metadata}).encode()
    response = w.update(a, body)
    if ok:
        assert response.json["metadata"] == metadata
    else:
        assert "metadata-over-limits" in assert_error(response, 400, "metadata").message


def test_4_5_limits_count_after_the_merge() -> None:
    w = World()
    a = w.work(metadata={f"k{i}": "v" for i in range(16)})
    assert_error(w.update(a, b'{"metadata": {"new": "v"}}'), 400, "metadata")
    assert w.update(a, b'{"metadata": {"new": "v", "k0": null}}').status == 200


# --- 4.6 list ----------------------------------------------------------------------------------------------------


def listing(w: World, **query: Any) -> ListEnvelope:
    """The page, decoded; a ``before_id`` page's ``next_page`` is its ``first_id`` (checked here), which the
    codec's ``ListEnvelope`` (forward pages: ``last_id``) does not model, so it is read as a forward one."""
    response = w.list(**query)
    assert response.status == 200, response.json
    value = response.json
    if "before_id" in query and value["has_more"]:
        assert value["next_page"] == value["first_id"]
        value = {**value, "next_page": value["last_id"]}
    return ListEnvelope.from_json(value)


def test_4_6_list_is_ascending_with_limit_20_by_default_and_pages_forward() -> None:
    w = World()
    works = [w.work(seconds=-i) for i in range(25)]
    page = listing(w)
    assert [x.id for x in page.data] == works[:20]
    assert page.has_more and page.first_id == works[0] and page.last_id == works[19] and page.next_page == works[19]
    rest = listing(w, page=page.next_page)
    assert [x.id for x in rest.data] == works[20:] and not rest.has_more and rest.next_page is None
    assert [x.id for x in listing(w, after_id=works[3], limit="2").data] == works[4:6]


def test_4_6_list_limit_over_100_is_capped_or_400_by_policy() -> None:
    w = World()
    works = [w.work() for _ in range(105)]
    assert [x.id for x in listing(w, limit="100").data] == works[:100]
    assert [x.id for x in listing(w, limit="101").data] == works[:100]
    assert [x.id for x in listing(w, limit="9" * 4000).data] == works[:100]
    strict = World(Policy(list_limit_over_max=LimitOverMax.REJECT))
    strict.work()
    assert_error(strict.list(limit="101"), 400, "limit")
    assert strict.list(limit="100").status == 200


@pytest.mark.parametrize("value", ["0", "-1", "x", "", "2.0", "+3"])
def test_4_6_list_limit_must_be_a_positive_integer(value: str) -> None:
    assert_error(World().list(limit=value), 400, "limit")


def test_4_6_before_id_gives_the_limit_items_immediately_before_it_ascending() -> None:
    w = World()
    works = [w.work() for _ in range(10)]
    page = w.list(before_id=works[6], limit="3").json
    assert [x["id"] for x in page["data"]] == works[3:6]
    assert page["has_more"] and page["next_page"] == works[3]  # has_more: items precede first_id
    assert [x.id for x in listing(w, before_id=works[2], limit="5").data] == works[:2]
    assert not listing(w, before_id=works[2], limit="5").has_more  # nothing precedes works[0]
    assert listing(w, before_id=works[0]).data == ()
    assert not listing(w, before_id=works[0]).has_more


def test_4_6_cursors_need_not_exist_but_must_be_work_ids() -> None:
    w = World()
    works = [w.work() for _ in range(3)]
    assert [x.id for x in listing(w, after_id="work_" + "0" * 32).data] == works
    assert listing(w, page="work_" + "f" * 32).data == ()
    assert_error(w.list(after_id="x"), 400, "after_id")
    assert_error(w.list(before_id=""), 400, "before_id")


@pytest.mark.parametrize(
    "cursors",
    [("page", "before_id"), ("page", "after_id"), ("before_id", "after_id"), ("page", "before_id", "after_id")],
)
def test_4_6_cursors_are_mutually_exclusive(cursors: tuple[str, ...]) -> None:
    w = World()
    work = w.work()
    response = w.list(**dict.fromkeys(cursors, work))
    assert_error(response, 400, sorted(cursors)[1])


def test_4_6_an_empty_list() -> None:
    response = World().list()
    assert response.json == {"data": [], "first_id": None, "last_id": None, "has_more": False, "next_page": None}


# --- 4.7 stats -----------------------------------------------------------------------------------------------


def test_4_7_stats_depth_pending_oldest_and_workers_polling() -> None:
    w = World()
    assert w.stats() == StatsObject(depth=0, pending=0, oldest_queued_at=None, workers_polling=0)
    a, b, c = w.work(seconds=1), w.work(seconds=2), w.work(seconds=3)
    assert w.stats(seconds=3) == StatsObject(depth=3, pending=0, oldest_queued_at=at(1), workers_polling=0)
    w.poll("w1", seconds=4)  # a delivered
    w.poll(None, seconds=4)  # b delivered, no Worker-ID
    assert w.stats(seconds=4) == StatsObject(depth=1, pending=2, oldest_queued_at=at(1), workers_polling=1)
    assert w.stats(seconds=8.999).pending == 2
    assert w.stats(seconds=9) == StatsObject(depth=3, pending=0, oldest_queued_at=at(1), workers_polling=1)
    w.ack(a, "w1", seconds=10)
    assert w.stats(seconds=10) == StatsObject(depth=2, pending=0, oldest_queued_at=at(2), workers_polling=1)
    w.poll("w2", seconds=20)
    w.poll("w2", seconds=21)
    assert w.stats(seconds=33.999).workers_polling == 2
    assert w.stats(seconds=34).workers_polling == 1  # w1 polled 30 s ago: out of the window
    assert w.stats(seconds=51).workers_polling == 0
    w.stop(b, force=True, seconds=52)
    w.stop(c, force=True, seconds=52)
    assert w.stats(seconds=52) == StatsObject(depth=0, pending=0, oldest_queued_at=None, workers_polling=0)


def test_4_7_stats_use_the_policys_windows() -> None:
    w = World(Policy(reclaim_older_than_ms=0, workers_polling_window_seconds=5))
    w.work()
    w.poll("w1", seconds=1)
    assert w.stats(seconds=1) == StatsObject(depth=1, pending=0, oldest_queued_at=T, workers_polling=1)
    assert w.stats(seconds=6).workers_polling == 0


# --- api.md §5 through the server ------------------------------------------------------------------------------


def test_5_start_timeout_requeues_and_the_item_is_deliverable_at_once() -> None:
    w = World()
    a = w.bring("starting")  # acked at 2 s
    assert w.get(a, seconds=61.999).json["state"] == "starting"
    got = w.get(a, seconds=62).json
    assert got["state"] == "queued" and got["acknowledged_at"] is None
    assert w.item(a).worker_id is None and w.item(a).delivered_at is None
    assert w.poll("w2", seconds=62).json["id"] == a
    assert w.ack(a, "w2", seconds=63).status == 200


def test_5_keep_starting_policy_never_times_out() -> None:
    w = World(Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING))
    a = w.bring("starting")
    assert w.get(a, seconds=10**6).json["state"] == "starting"
    assert w.server.next_expiry() is None


def test_5_lease_expiry_requeues_or_stops_by_policy() -> None:
    w = World()
    a = w.bring("active")
    assert w.server.next_expiry() == at(63)
    assert w.server.expire(at(62)) == 0 and w.server.expire(at(63)) == 1
    assert w.item(a).state is State.QUEUED and w.item(a).clock == at(63)
    s = World(Policy(on_lease_expiry=OnLeaseExpiry.STOP))
    b = s.bring("active")
    assert s.get(b, seconds=100).json["stopped_at"] == render_timestamp(at(63))


def test_5_a_stopping_item_stops_at_its_deadline() -> None:
    w = World()
    a = w.bring("active")
    w.stop(a, seconds=4)
    got = w.get(a, seconds=1000).json
    assert got["state"] == "stopped" and got["stopped_at"] == render_timestamp(at(63))


def test_5_lazy_and_eager_expiry_give_the_same_answers() -> None:
    def run(eager: bool) -> list[Any]:
        w = World(lazy=not eager)
        items = [w.bring(state) for state in ("starting", "active", "stopping", "queued")]
        out = []
        for seconds in (30, 62, 63, 64, 200):
            if eager:
                assert w.server.expire(at(seconds)) >= 0
            out += [w.get(i, seconds=seconds).json for i in items]
            out.append(w.stats(seconds=seconds))
        out.append(w.server.snapshot())
        return out

    assert run(eager=True) == run(eager=False)


def test_5_timestamps_never_go_backwards() -> None:
    w = World()
    a = w.bring("active")  # heartbeat at 3 s
    response = w.stop(a, seconds=-100)  # the caller's clock went back
    assert response.json["stop_requested_at"] == render_timestamp(at(3))
    confirmed = w.stop(a, seconds=-200).json
    assert confirmed["stopped_at"] == render_timestamp(at(3))


def test_expire_sweeps_only_what_is_due_and_reports_it() -> None:
    w = World()
    items = [w.bring("starting") for _ in range(3)]
    assert w.server.expire(at(61)) == 0
    assert w.server.expire(at(62)) == 3
    assert all(w.item(i).state is State.QUEUED for i in items)
    assert w.server.expire(at(62)) == 0 and w.server.next_expiry() is None


def test_stale_deadlines_are_compacted_and_do_not_lapse() -> None:
    w = World()
    a = w.bring("active")
    token = render_timestamp(at(3))
    for i in range(300):  # every heartbeat moves the deadline; the old ones must never fire
        token = w.heartbeat(a, seconds=4 + i, expected_last_heartbeat=token).json["last_heartbeat"]
    assert len(w.server._deadlines) <= 2 * 1 + 64 + 1
    assert w.server.expire(at(300)) == 0 and w.item(a).state is State.ACTIVE
    assert w.server.next_expiry() == at(303 + 60)


def test_a_requeued_item_is_polled_once_however_often_it_was_requeued() -> None:
    w = World()
    a, b = w.work(), w.work()
    for cycle in range(100):  # ack without a poll, then the start timeout: back to the queue each time
        assert w.ack(a, seconds=cycle * 61).status == 200
    assert len(w.server._envs[w.env].fresh._requeued) <= 2 * 2 + 64 + 1  # repeated entries are compacted away
    now = 100 * 61
    assert [w.poll(seconds=now).json["id"], w.poll(seconds=now).json["id"]] == [a, b]
    assert w.poll(seconds=now).json is None
    assert w.stats(seconds=now) == StatsObject(depth=0, pending=2, oldest_queued_at=T, workers_polling=0)


# --- api.md §6: every error row -------------------------------------------------------------------------------


def _error_400(w: World) -> None:
    cloud = w.server.create_environment(kind="cloud", now=T)
    envelope = assert_error(w.call("GET", "/poll", env=cloud), 400)
    assert envelope.error_type == "invalid_request_error" and "self_hosted" in envelope.message
    assert error_of(w.poll(block_ms="0")).error_type == "invalid_request_error"


def _error_401(w: World) -> None:
    envelope = assert_error(w.call("GET", "/poll", auth=None), 401)
    assert envelope.error_type == "authentication_error"


def _error_403(w: World) -> None:
    denied = World(authorizer=deny_all)
    assert assert_error(denied.call("GET", "/poll"), 403).error_type == "permission_error"


def _error_404(w: World) -> None:
    for response in (
        w.call("GET", "/poll", env=UNKNOWN_ENV),
        w.get(UNKNOWN_WORK),
        w.raw(Request("GET", "/nowhere", {}), T),
    ):
        assert assert_error(response, 404).error_type == "not_found_error"


def _error_409(w: World) -> None:
    a = w.bring("stopped")
    assert assert_error(w.ack(a), 409).error_type == "invalid_request_error"
    c = World(Policy(conflict_error_type=ConflictErrorType.CONFLICT_ERROR))
    b = c.bring("queued")
    assert assert_error(c.ack(b, "w2"), 409, "Worker-ID").error_type == "conflict_error"


def _error_412(w: World) -> None:
    a = w.bring("active")
    response = w.heartbeat(a, seconds=4, expected_last_heartbeat=render_timestamp(at(1)))
    assert assert_error(response, 412, "expected_last_heartbeat").error_type == "precondition_failed_error"


ERROR_ROWS = {
    "400": _error_400,
    "401": _error_401,
    "403": _error_403,
    "404": _error_404,
    "409": _error_409,
    "412": _error_412,
}


@pytest.mark.parametrize("row", list(ERROR_ROWS), ids=[f"6 {row}" for row in ERROR_ROWS])
def test_6_error_table(row: str) -> None:
    ERROR_ROWS[row](World())


def test_6_the_error_envelope_shape() -> None:
    w = World()
    response = w.call("GET", "/poll", {"block_ms": "0"}, headers={"x-request-id": "abc"})
    assert response.json == {
        "type": "error",
        "request_id": "abc",
        "error": {"type": "invalid_request_error", "message": response.json["error"]["message"], "param": "block_ms"},
    }
    no_param = w.call("GET", "/poll", auth=None)
    assert "param" not in no_param.json["error"]


# --- the spec's tables are all covered ---------------------------------------------------------------------------


def spec_rows(section: str) -> list[str]:
    text = SPEC.read_text()
    start = text.index(section)
    body = text[start + len(section) :]
    end = min(i for i in (body.find("\n### "), body.find("\n## ")) if i >= 0)
    rows = []
    for line in body[:end].splitlines():
        cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(line) <= set("|- ") and cells[0] not in ("state", "force", "status"):
            rows.append(cells)
    return rows


@pytest.mark.skipif(
    not SPEC.exists(), reason="needs ../shared/spec/work-api.md, the spec kept beside the repository (not in an sdist)"
)
def test_every_row_of_the_specs_tables_has_a_named_test() -> None:
    assert {" | ".join(cells[:2]) for cells in spec_rows("### 4.2")} == set(ACK_ROWS)
    assert {" | ".join(cells[:2]) for cells in spec_rows("### 4.4")} == set(STOP_ROWS)
    assert {cells[0] for cells in spec_rows("## 6.")} == set(ERROR_ROWS)


# --- response values -----------------------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_immutable() -> None:
    headers = Headers({"Content-Type": "application/json"})
    assert headers["CONTENT-TYPE"] == "application/json" and "content-type" in headers
    assert headers == {"content-type": "application/json"} and list(headers) == ["Content-Type"]
    assert len(headers) == 1 and hash(headers) == hash(Headers([("content-type", "application/json")]))
    assert headers != {"content-type": "text/plain"} and headers != 5 and 3 not in headers
    assert "Headers(" in repr(headers)


def test_other_timezones_for_now_are_accepted() -> None:
    w = World()
    a = w.work()
    eastern = timezone(timedelta(hours=-4))
    response = w.server.handle(
        Request("POST", f"/api/v1/cloud/environments/{w.env}/work/{a}/ack", {"Authorization": "Bearer t"}),
        T.astimezone(eastern),
    )
    assert response.json["acknowledged_at"] == render_timestamp(T)


def test_list_headers_as_pairs_and_bytes_bodies_of_other_kinds() -> None:
    w = World()
    a = w.work()
    target = f"/api/v1/cloud/environments/{w.env}/work/{a}"
    pairs = [("Authorization", "Bearer t"), ("X", "1")]
    assert w.raw(Request("POST", target, pairs, bytearray(b'{"metadata": {"k": "v"}}')), T).json["metadata"] == {
        "k": "v"
    }
    assert w.raw(Request("POST", target, tuple(pairs), memoryview(b"{}")), T).status == 200
    assert_error(w.raw(Request("POST", target, pairs, "{}"), T), 400)  # a str is not a body


# --- on_change: every write, in order -----------------------------------------------------------------


def test_on_change_sees_every_write_in_order_and_they_add_up_to_the_snapshot() -> None:
    seen: list[tuple[str, WorkItem | None, WorkItem]] = []
    w = World(Policy(min_ttl_seconds=1), on_change=lambda env, old, new: seen.append((env, old, new)))
    a = w.bring("active")  # created, delivered, acked, heartbeated
    assert [(env, old is None, new.state) for env, old, new in seen] == [
        (w.env, True, State.QUEUED),
        (w.env, False, State.QUEUED),
        (w.env, False, State.STARTING),
        (w.env, False, State.ACTIVE),
    ]
    assert all(old is None or old.id == new.id == a for _, old, new in seen)
    assert all(seen[i][2] is seen[i + 1][1] for i in range(len(seen) - 1))  # each write starts where the last ended
    count = len(seen)
    assert w.poll("w2", seconds=3).json is None and len(seen) == count  # nothing to deliver: nothing written
    assert w.heartbeat(a, seconds=4, expected_last_heartbeat="1999-01-01T00:00:00Z").status == 412
    assert len(seen) == count  # a rejection writes nothing
    w.server.expire(at(3 + 3600))  # the lease lapses: a write by time alone
    assert seen[-1][2].state is State.QUEUED and seen[-1][1] is not None and seen[-1][1].state is State.ACTIVE
    latest = {new.id: new for _, _, new in seen}
    assert latest == {item.id: item for env in w.server.snapshot() for item in env.items}


def test_on_change_must_be_callable() -> None:
    with pytest.raises(InvalidInput, match="on_change"):
        Server(on_change="print")  # type: ignore[arg-type]


def test_adopting_an_item_whose_session_is_live_under_the_same_id_in_another_environment_is_session_busy() -> None:
    w = World()
    a = w.work()
    first = w.item(a)
    other = w.server.create_environment(now=T)
    twin = attrs.evolve(first, environment_id=other)  # same work id and session, another environment
    before = w.server.snapshot()
    with pytest.raises(SessionBusy) as caught:
        w.server.adopt(twin)
    assert caught.value.work_id == a and w.server.snapshot() == before


@pytest.mark.parametrize(
    ("value", "token"),
    [("Bearer t", "t"), ("bearer   a.b-c~d+e/f==", "a.b-c~d+e/f=="), ("Bearer", None), ("Basic t", None),
     ("Bearer a b", None), ("Bearer =x", None), (None, None), (5, None)],
)  # fmt: skip
def test_bearer_token_is_the_rule_handle_answers_401_by(value: object, token: str | None) -> None:
    assert bearer_token(value) == token  # type: ignore[arg-type]
    headers = {} if not isinstance(value, str) else {"Authorization": value}
    response = Server().handle(Request("GET", "/api/v1/cloud/environments/env_" + "0" * 32 + "/work", headers), T)
    assert (response.status == 401) is (token is None)  # 404 (no such environment) once authenticated
