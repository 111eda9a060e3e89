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

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_api import World, check_response

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    ConflictErrorType,
    InvalidCommand,
    InvalidInput,
    InvalidPolicy,
    LimitOverMax,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    State,
    TimestampMatch,
    WorkItem,
    WorkstateError,
    render_timestamp,
)
from workstate.api import CounterIds, EnvironmentKind, Request, Server

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


# --- misuse from Python: constructor and argument checks -----------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"authorizer": 5}, "authorizer"),
        ({"authorizer": "allow"}, "authorizer"),
        ({"ids": 5}, "ids"),
        ({"ids": "counter"}, "ids"),
        ({"on_change": 5}, "on_change"),
        ({"policy": "spec"}, "policy"),
    ],
)
def test_server_arguments_that_cannot_be_used_are_refused_at_construction(
    arguments: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidInput, match=param) as caught:
        Server(**arguments)
    assert caught.value.param == param


def test_server_accepts_callables_and_none_for_its_pluggable_parts() -> None:
    server = Server(authorizer=lambda access: access.token == "t", ids=CounterIds(7), on_change=None)
    assert server.create_environment(now=T) == f"env_{7:032x}"
    assert Server(authorizer=None, ids=None).create_environment(now=T) == f"env_{1:032x}"


@pytest.mark.parametrize("window", ["x", "5000", float("nan"), -1, 1.5, True, False, 5000.0, [5000]])
def test_deliverable_refuses_a_reclaim_window_a_poll_would_refuse(window: Any) -> None:
    server, names = populated()
    before = server.snapshot()
    with pytest.raises(InvalidInput) as caught:
        server.deliverable(names["env"], T, window)
    assert caught.value.param == "reclaim_older_than_ms"
    assert server.snapshot() == before


@pytest.mark.parametrize("window", [None, 0, 1, 5000, 10**30, 10**400])
def test_deliverable_agrees_with_a_poll_for_every_window_a_poll_accepts(window: int | None) -> None:
    server, names = populated()
    found = server.deliverable(names["env"], T, window)
    query = "" if window is None else f"?reclaim_older_than_ms={window}"
    target = f"/api/v1/cloud/environments/{names['env']}/work/poll{query}"
    response = server.handle(Request("GET", target, {"Authorization": "Bearer t"}), T)
    assert response.status == 200
    assert found == (None if response.json is None else response.json["id"])


# --- header values that cannot occur over HTTP (CR, LF, NUL), as a recorded trace may still hold them -------

BROKEN_VALUES = ["w\r\n1", "w1\r", "\nw1", "w\x001", "\x00", "w1\r\nX-Injected: yes"]


@pytest.mark.parametrize("value", BROKEN_VALUES)
@pytest.mark.parametrize("path", ["/poll", "/{queued}/ack"])
def test_a_worker_id_with_cr_lf_or_nul_is_a_400_naming_it(value: str, path: str) -> None:
    server, names = populated()
    method = "GET" if path == "/poll" else "POST"
    target = f"/api/v1/cloud/environments/{names['env']}/work{path.format(**names)}"
    before = server.snapshot()
    response = server.handle(Request(method, target, {"Authorization": "Bearer t", "Worker-ID": value}), T)
    check_response(response)
    assert response.status == 400
    assert response.json["error"]["type"] == "invalid_request_error"
    assert response.json["error"]["param"] == "Worker-ID"
    assert server.snapshot() == before


@pytest.mark.parametrize("value", BROKEN_VALUES)
def test_a_worker_id_with_cr_lf_or_nul_keeps_its_place_in_the_check_order(value: str) -> None:
    server, names = populated()
    base = f"/api/v1/cloud/environments/{names['env']}/work"
    bad_query = server.handle(
        Request("GET", f"{base}/poll?block_ms=0", {"Authorization": "Bearer t", "Worker-ID": value}), T
    )
    assert bad_query.json["error"]["param"] == "block_ms"  # query parameters come before Worker-ID
    other_env = f"/api/v1/cloud/environments/{names['cloud']}/work/poll"
    assert server.handle(Request("GET", other_env, {"Authorization": "Bearer t", "Worker-ID": value}), T).status == 400
    no_auth = server.handle(Request("GET", f"{base}/poll", {"Worker-ID": value}), T)
    assert no_auth.status == 401


@pytest.mark.parametrize("value", BROKEN_VALUES)
def test_endpoints_that_do_not_read_worker_id_and_unknown_headers_ignore_such_values(value: str) -> None:
    server, names = populated()
    base = f"/api/v1/cloud/environments/{names['env']}/work"
    headers = {"Authorization": "Bearer t", "Worker-ID": value, "X-Other": value}
    assert server.handle(Request("GET", f"{base}/{names['active']}", headers), T).status == 200
    assert server.handle(Request("POST", f"{base}/{names['stopping']}/stop", headers), T).status == 200  # api.md §4.4
    assert (
        server.handle(Request("GET", f"{base}/poll", {"Authorization": "Bearer t", "X-Other": value}), T).status == 200
    )


@pytest.mark.parametrize("value", ["Bearer t\r\n", "Bearer t\n", "Bearer t\x00", "Bearer \x00", "Bearer t\r\nX: y"])
def test_an_authorization_with_cr_lf_or_nul_is_a_401_as_before(value: str) -> None:
    server, names = populated()
    target = f"/api/v1/cloud/environments/{names['env']}/work/poll"
    response = server.handle(Request("GET", target, {"Authorization": value}), T)
    assert response.status == 401
    assert response.json["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("value", BROKEN_VALUES)
def test_an_x_request_id_with_cr_lf_or_nul_is_not_echoed(value: str) -> None:
    """A malformed ``x-request-id`` gets a generated request id, as one given twice does (no answer changes)."""
    server, names = populated()
    base = f"/api/v1/cloud/environments/{names['env']}/work"
    refused = server.handle(
        Request("GET", f"{base}/poll?block_ms=0", {"Authorization": "Bearer t", "X-Request-ID": value}), T
    )
    assert refused.status == 400 and refused.json["error"]["param"] == "block_ms"
    assert refused.json["request_id"].startswith("req_")
    assert not any(c in refused.json["request_id"] for c in "\r\n\x00")
    fine = server.handle(Request("GET", f"{base}/poll", {"Authorization": "Bearer t", "X-Request-ID": value}), T)
    assert fine.status == 200
    echoed = server.handle(
        Request("GET", f"{base}/poll?block_ms=0", {"Authorization": "Bearer t", "X-Request-ID": "r-1"}), T
    )
    assert echoed.json["request_id"] == "r-1"


# --- constructors with arbitrary values: a WorkstateError or success, never another exception --------------

_OFFSET = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
)
_ENUM_MEMBERS = [
    *State,
    *OnStartTimeout,
    *OnLeaseExpiry,
    *LimitOverMax,
    *ConflictErrorType,
    *TimestampMatch,
    *EnvironmentKind,
]
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 10**9, 10**9 + 1, 10**30, 10**400, -(10**400)]),
    st.floats(),
    st.decimals(),
    st.fractions(),
    st.complex_numbers(),
    st.text(max_size=8),
    st.sampled_from(["", " ", "w1", "\x00", "\ud800", NO_HEARTBEAT, "queued", "active", "stopped", *IDS]),
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=4)),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=_OFFSET),
    st.timedeltas(),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.text(max_size=2), st.text(max_size=2)),
    st.dictionaries(st.text(max_size=3), st.one_of(st.none(), st.text(max_size=3), st.integers()), max_size=2),
    st.sampled_from(_ENUM_MEMBERS),
    st.from_type(type),
    st.builds(object),
    st.sampled_from([len, print, lambda *args: None, Policy(), CounterIds()]),
)


def _outcome_of(make: Any) -> object:
    """What ``make()`` gives, or the WorkstateError it raises; any other exception fails the test."""
    try:
        return make()
    except WorkstateError as exc:
        assert isinstance(exc, InvalidInput), exc
        return exc


SERVER_PARAMS = ("policy", "authorizer", "ids", "on_change")


@given(arguments=st.dictionaries(st.sampled_from(SERVER_PARAMS), ODD))
def test_server_with_arbitrary_arguments_is_built_or_refused_with_a_typed_error(arguments: dict[str, Any]) -> None:
    result = _outcome_of(lambda: Server(**arguments))
    if isinstance(result, WorkstateError):
        assert result.param in SERVER_PARAMS
    else:
        assert all(
            callable(arguments[name]) for name in ("authorizer", "ids", "on_change") if arguments.get(name) is not None
        )


@given(window=ODD)
def test_deliverable_with_an_arbitrary_window_answers_or_refuses_with_a_typed_error(window: Any) -> None:
    server, names = populated()
    result = _outcome_of(lambda: server.deliverable(names["env"], T, window))
    if isinstance(result, WorkstateError):
        assert result.param == "reclaim_older_than_ms"


ITEM_FIELDS = tuple(field.name for field in attrs.fields(WorkItem) if field.init)
VALID_ITEM = {"id": NAMES["queued"], "environment_id": NAMES["env"], "session_id": "sess_" + "1" * 32, "created_at": T}


@given(fields=st.dictionaries(st.sampled_from(ITEM_FIELDS), ODD, min_size=1))
def test_work_item_with_arbitrary_fields_is_built_or_refused_with_a_typed_error(fields: dict[str, Any]) -> None:
    result = _outcome_of(lambda: WorkItem(**{**VALID_ITEM, **fields}))
    if isinstance(result, WorkstateError):
        assert not isinstance(result, InvalidCommand)  # an item is not a command
        # a bad field is named; fields that contradict each other (api.md §7) are listed in the message
        assert result.param in ITEM_FIELDS or result.message.startswith("inconsistent work item"), result


POLICY_FIELDS = tuple(field.name for field in attrs.fields(Policy))


@given(fields=st.dictionaries(st.sampled_from(POLICY_FIELDS), ODD, min_size=1), ttl=ODD)
def test_policy_with_arbitrary_fields_is_built_or_refused_with_a_typed_error(fields: dict[str, Any], ttl: Any) -> None:
    result = _outcome_of(lambda: Policy(**fields))
    if isinstance(result, WorkstateError):
        assert isinstance(result, InvalidPolicy) and result.param in POLICY_FIELDS
    clamped = _outcome_of(lambda: DEFAULT_POLICY.clamp_ttl(ttl))
    if isinstance(clamped, WorkstateError):
        assert clamped.param == "desired_ttl_seconds"
    else:
        assert type(clamped) is int and DEFAULT_POLICY.min_ttl_seconds <= clamped <= DEFAULT_POLICY.max_ttl_seconds


@given(env_id=ODD, work_id=ODD)
def test_lookups_by_ids_of_any_type_answer_none(env_id: Any, work_id: Any) -> None:
    """``work``, ``environment_kind`` and ``deliverable`` answer None for what is not an id they hold."""
    server, names = populated()
    assert server.work(env_id, work_id) is None or (env_id, work_id) == (names["env"], work_id)
    assert server.environment_kind(env_id) is None or env_id in names.values()
    assert server.deliverable(env_id, T) is None or env_id == names["env"]


@given(
    method=METHOD,
    target=with_query(ROUTE_PATH),
    body=BODY,
    where=st.sampled_from(["path", "limit", "block_ms", "expected_last_heartbeat", "before_id", "worker", "body"]),
    filler=st.sampled_from(["x", "9", "%", "%41", "\n", "\u00e9", "\ud800", "'\\"]),
    now=NOW,
)
def test_issue11_3_a_refusal_echoes_a_short_excerpt_however_long_the_input(
    method: Any, target: str, body: Any, where: str, filler: str, now: datetime
) -> None:
    """An input of 20,000 repetitions in any place a message may show it: the answer stays small."""
    server, _ = populated()
    long = filler * 20_000
    headers = {"Authorization": "Bearer t"}
    if where == "path":
        target = target.partition("?")[0] + long
    elif where == "worker":
        headers["Worker-ID"] = long
    elif where == "body":
        body = b'{"' + long.encode("utf-8", "surrogatepass") + b'": 1}'
    else:
        target += ("&" if "?" in target else "?") + f"{where}={long}"
    response = server.handle(Request(method, target, headers, body), now)
    check_response(response)
    if response.status != 200:
        assert len(response.body) < 2048, response.body[:200]
