"""Hostile input: for arbitrary request values, ``Server.handle`` never raises, answers a well-formed
response (a 4xx with a well-formed error envelope when it refuses), and a refused request changes
nothing -- the whole server state is compared before and after.

The generated requests are built from the pieces real requests are made of (the route's segments,
real and unknown ids, the parameters the endpoints read, the headers they read, JSON-ish bodies), mixed
with arbitrary text, bytes and values of the wrong types, so that they reach every stage of the
check order and not only the router.
"""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_api import World, check_response

from workstate import NO_HEARTBEAT, render_timestamp
from workstate.api import Request, Server

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


def populated() -> tuple[Server, dict[str, str]]:
    """A server with a self_hosted and a cloud environment and an item in every state; the token "deny" is 403."""
    world = World(authorizer=lambda access: access.token != "deny")
    names = {"env": world.env, "cloud": world.server.create_environment(kind="cloud", now=T)}
    for state in ("queued", "starting", "active", "stopping", "stopped"):
        names[state] = world.bring(state)
    names["fresh"] = world.work()
    return world.server, names


NAMES = populated()[1]  # every example builds its own server, with these same ids
IDS = sorted(NAMES.values())
TEXT = st.text(max_size=12)
SEGMENT = st.one_of(
    st.sampled_from(
        [
            *IDS,
            "api",
            "v1",
            "cloud",
            "environments",
            "work",
            "poll",
            "stats",
            "ack",
            "heartbeat",
            "stop",
            "",
            "%",
            "%2F",
            "%41",
            "%e2%82%ac",
            "..",
            "env_" + "e" * 32,
            "work_" + "f" * 32,
        ]
    ),
    TEXT,
)
PREFIX = st.sampled_from(["/api/v1/cloud/environments/", "/api/v1/cloud/environments/", "/", "", "http://h/"])
PARAM_NAME = st.one_of(
    st.sampled_from(
        [
            "block_ms",
            "reclaim_older_than_ms",
            "desired_ttl_seconds",
            "expected_last_heartbeat",
            "limit",
            "page",
            "before_id",
            "after_id",
            "block%5Fms",
        ]
    ),
    TEXT,
)
PARAM_VALUE = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "999",
            "1000",
            "5000",
            "-1",
            "1e3",
            "9" * 40,
            NO_HEARTBEAT,
            render_timestamp(T),
            "2026-07-01T08:15:04%2B00:00",
            "%zz",
            "%C3%28",
            "+",
            *IDS,
        ]
    ),
    TEXT,
)
QUERY = st.lists(st.tuples(PARAM_NAME, PARAM_VALUE, st.sampled_from(["=", "", "=="])), max_size=4).map(
    lambda pairs: "&".join(f"{n}{eq}{v}" for n, v, eq in pairs)
)
RANDOM_PATH = st.builds(lambda prefix, segments: prefix + "/".join(segments), PREFIX, st.lists(SEGMENT, max_size=5))
ROUTE_PATH = st.builds(
    lambda env, suffix, work: f"/api/v1/cloud/environments/{env}/work" + suffix.format(work=work),
    st.one_of(st.just(NAMES["env"]), st.just(NAMES["env"]), st.sampled_from(IDS), SEGMENT),
    st.sampled_from(
        ["", "/poll", "/stats", "/{work}", "/{work}/ack", "/{work}/heartbeat", "/{work}/stop", "/{work}/x"]
    ),
    st.one_of(st.sampled_from(IDS), st.sampled_from(IDS), SEGMENT),
)


def with_query(paths: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda path, query, has: path + ("?" + query if has else ""), paths, QUERY, st.booleans())


METHOD = st.one_of(st.just("GET"), st.just("POST"), st.sampled_from(["PUT", "DELETE", "get", ""]), TEXT)
HEADER_NAME = st.one_of(
    st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "Worker-ID", "worker-id", "X-Request-ID"]),
    TEXT,
    st.binary(max_size=5),
    st.integers(),
)
HEADER_VALUE = st.one_of(
    st.sampled_from(
        [
            "Bearer t",
            "Bearer t",
            "Bearer deny",
            "bearer  x",
            "Bearer",
            "Basic a",
            "w1",
            "w2",
            "deny",
            "",
            " ",
            "Bearer a b",
        ]
    ),
    TEXT,
    st.binary(max_size=5),
    st.none(),
    st.integers(),
)
PAIRS = st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=4)
HEADERS = st.one_of(
    PAIRS.map(lambda pairs: [("Authorization", "Bearer t"), *pairs]),
    PAIRS.map(lambda pairs: {"Authorization": "Bearer t", **{n: v for n, v in pairs if isinstance(n, str)}}),
    PAIRS.map(dict),
    PAIRS.map(tuple),
    st.none(),
    st.integers(),
    TEXT,
    st.lists(st.one_of(st.tuples(TEXT), st.tuples(TEXT, TEXT, TEXT), TEXT), max_size=3),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
BODY = st.one_of(
    st.sampled_from(
        [
            b"",
            b"{}",
            b'{"force": true}',
            b'{"force": "x"}',
            b'{"metadata": {"a": "b"}}',
            b'{"metadata": {"a": null}}',
            b"null",
            b"[" * 2000,
            b'{"a": 1, "a": 2}',
            b"\xef\xbb\xbf{}",
            b'"\\ud800"',
            b"1" * 5000,
            b"NaN",
        ]
    ),
    st.binary(max_size=30),
    JSONISH.map(lambda value: json.dumps(value).encode()),
    st.builds(lambda md: json.dumps({"metadata": md}).encode(), JSONISH),
    TEXT,
    st.none(),
    st.integers(),
    st.builds(bytearray, st.binary(max_size=5)),
)
NOW = st.datetimes(min_value=datetime(2026, 6, 30), max_value=datetime(2026, 7, 3), timezones=st.just(UTC)) | st.just(
    T.astimezone(timezone(timedelta(hours=5, minutes=30)))
)
ANYTHING = st.one_of(st.none(), st.integers(), TEXT, st.binary(max_size=8), st.lists(TEXT, max_size=2), st.floats())


def assert_refusals_change_nothing(server: Server, request: Any, now: datetime) -> None:
    server.expire(now)  # time passing is not the request's doing
    before = server.snapshot()
    response = server.handle(request, now)
    check_response(response)
    assert response.status in (200, 400, 401, 403, 404, 409, 412)
    if response.status != 200:
        assert server.snapshot() == before


@given(method=METHOD, target=with_query(RANDOM_PATH), headers=HEADERS, body=BODY, now=NOW)
def test_hostile_targets_are_answered_and_refusals_change_nothing(
    method: Any, target: str, headers: Any, body: Any, now: datetime
) -> None:
    server, _ = populated()
    assert_refusals_change_nothing(server, Request(method, target, headers, body), now)


@given(method=METHOD, target=with_query(ROUTE_PATH), headers=HEADERS, body=BODY, now=NOW)
def test_hostile_requests_on_routes_are_answered_and_refusals_change_nothing(
    method: Any, target: str, headers: Any, body: Any, now: datetime
) -> None:
    server, _ = populated()
    assert_refusals_change_nothing(server, Request(method, target, headers, body), now)


@given(method=ANYTHING, target=ANYTHING, headers=ANYTHING, body=ANYTHING, now=NOW)
def test_request_fields_of_any_type_are_answered(
    method: Any, target: Any, headers: Any, body: Any, now: datetime
) -> None:
    server, _ = populated()
    assert_refusals_change_nothing(server, Request(method, target, headers, body), now)


@given(request=st.one_of(ANYTHING, st.builds(object)), now=NOW)
def test_values_that_are_not_requests_are_answered_404(request: Any, now: datetime) -> None:
    server, _ = populated()
    response = server.handle(request, now)
    check_response(response)
    assert response.status == 404


@given(
    path=st.sampled_from(
        ["/poll", "", "/stats", "/{queued}", "/{active}/heartbeat", "/{starting}/ack", "/{stopping}/stop"]
    ),
    method=st.sampled_from(["GET", "POST"]),
    query=QUERY,
    worker=HEADER_VALUE,
    body=BODY,
    now=NOW,
)
def test_hostile_parameters_on_real_routes(
    path: str, method: str, query: str, worker: Any, body: Any, now: datetime
) -> None:
    """Past authentication and the environment checks: parameters, headers and bodies of real endpoints."""
    server, names = populated()
    target = f"/api/v1/cloud/environments/{names['env']}/work{path.format(**names)}?{query}"
    headers = [("Authorization", "Bearer t"), ("Worker-ID", worker)]
    if worker == "deny":
        headers[0] = ("Authorization", "Bearer deny")
    assert_refusals_change_nothing(server, Request(method, target, headers, body), now)
