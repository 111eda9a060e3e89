"""Issue 11, the reference server's points: 3 (the server half: what an error message echoes), 5a (an RFC 3339
timestamp workstate cannot hold is 412) and 5d (empty bytes-like bodies, lone surrogates in x-request-id).

Every test is named after its point; each failed before the change it covers. Complexity is shown by
counting what a call touches or by the size of the server's structures, never by timing.
"""

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_api import World, assert_error, check_response

from workstate import (
    NO_HEARTBEAT,
    Ack,
    Heartbeat,
    Policy,
    State,
    TimestampMatch,
    WorkItem,
    cli,
    explain,
    render_timestamp,
    step,
)
from workstate.api import Request
from workstate.codec import loads

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer t"}


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# --- 5a: an RFC 3339 timestamp workstate cannot hold ------------------------------------------------------------

UNHOLDABLE = [
    "2026-07-01T08:15:04.000000001Z",  # nanoseconds
    "2016-12-31T23:59:60Z",  # a leap second
    "2026-07-01T08:15:60.5+02:00",
    "0000-01-01T00:00:00Z",  # a year before workstate's range
    "0999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-01:00",  # after it (and past datetime.max in UTC)
    "9500-01-01T00:00:00Z",
]


@pytest.mark.parametrize("policy", [Policy(), Policy(timestamp_match=TimestampMatch.EXACT)])
@pytest.mark.parametrize("value", UNHOLDABLE)
def test_issue11_5a_an_rfc3339_timestamp_workstate_cannot_hold_is_412(value: str, policy: Policy) -> None:
    w = World(policy)
    for state in ("starting", "active", "stopping"):
        work = w.bring(state)
        envelope = assert_error(
            w.heartbeat(work, seconds=4, expected_last_heartbeat=value), 412, "expected_last_heartbeat"
        )
        assert envelope.error_type == "precondition_failed_error"
    for state in ("queued", "stopped"):  # the state is checked before the precondition
        assert_error(w.heartbeat(w.bring(state), seconds=4, expected_last_heartbeat=value), 409)


@pytest.mark.parametrize("value", UNHOLDABLE)
def test_issue11_5a_the_core_and_explain_agree_a_timestamp_it_cannot_hold_matches_nothing(value: str) -> None:
    item = WorkItem(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "1" * 32, created_at=T
    )
    item = step(item, Ack("w1"), at(1)).item
    item = step(item, Heartbeat(NO_HEARTBEAT), at(1)).item  # active, with a heartbeat
    assert item.state is State.ACTIVE
    command = Heartbeat(value)
    assert command.expected_last_heartbeat == value and command.expected_instant is None
    for policy in (Policy(), Policy(timestamp_match=TimestampMatch.EXACT)):
        outcome = step(item, command, at(2), policy)
        assert outcome.status == 412 and outcome.item is item
        explanation = explain(item, command, at(2), policy)
        assert explanation.outcome == outcome and "precondition_holds=no" in str(explanation)
    fresh = WorkItem(
        id="work_" + "2" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "2" * 32, created_at=T
    )
    assert step(fresh, command, at(2)).status == 409  # queued: the state is checked before the precondition
    out = io.StringIO()  # `workstate explain` says the same
    assert cli.main(["explain", "--state", "active", "--op", "heartbeat", "--expected", value], out) == 0
    assert out.getvalue().startswith("heartbeat on an active item -> 412 precondition_failed_error")


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-29T00:00:00Z",  # no such day
        "2026-13-01T00:00:00Z",
        "2026-07-01T24:00:00Z",
        "2026-07-01T08:60:00Z",
        "2026-07-01T08:15:61Z",
        "2026-07-01T08:15:04+24:00",
        "2026-07-01T08:15:04+01:60",
        "2026-07-01T08:15:04.Z",
        "12026-07-01T08:15:04Z",
        "2026-07-01T08:15:04",
    ],
)
def test_issue11_5a_a_timestamp_that_is_not_rfc3339_stays_400(value: str) -> None:
    w = World()
    work = w.bring("active")
    assert_error(w.heartbeat(work, seconds=4, expected_last_heartbeat=value), 400, "expected_last_heartbeat")


def test_issue11_5a_holdable_spellings_still_match() -> None:
    w = World()
    work = w.bring("active")  # last heartbeat at 3 s
    token = render_timestamp(at(3)).replace("Z", "000Z")  # nine fraction digits, the extra ones zero
    assert w.heartbeat(work, seconds=4, expected_last_heartbeat=token).status == 200


# --- 5d: empty bodies and lone surrogates ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", bytearray(), memoryview(b""), memoryview(bytearray())])
def test_issue11_5d_every_empty_bytes_like_body_is_an_empty_body(body: Any) -> None:
    w = World()
    work, queued = w.work(), w.work()
    base = w.target("")
    for method, target in [
        ("GET", base + "/poll"),
        ("GET", base),
        ("GET", base + "/stats"),
        ("GET", f"{base}/{work}"),
        ("POST", f"{base}/{work}/ack"),
    ]:
        response = w.raw(Request(method, target, AUTH, body), T)
        assert response.status == 200, (method, target, response.json)
    assert w.raw(Request("POST", f"{base}/{queued}/stop", AUTH, body), T).json["state"] == "stopped"


@pytest.mark.parametrize("value", ["\ud800", "req-\udfff", "a\udc80b"])
def test_issue11_5d_a_request_id_with_a_lone_surrogate_is_not_echoed(value: str) -> None:
    w = World()
    response = w.raw(Request("GET", w.target("/poll?block_ms=0"), {**AUTH, "x-request-id": value}), T)
    assert response.status == 400
    assert loads(response.body) == response.json  # the codec reads the answer (it refuses lone surrogates)
    assert response.json["request_id"].startswith("req_")


# --- 3: what an error message echoes --------------------------------------------------------------------------

BIG = 8 * 1024 * 1024


def _small(response: Any) -> None:
    check_response(response)
    assert response.status >= 400
    assert len(response.body) < 2048, len(response.body)


def test_issue11_3_an_8_mb_target_gives_a_small_error() -> None:
    w = World()
    work = w.work()
    base = w.target("")
    for target in [
        "/" + "x" * BIG,
        "/api/v1/cloud/environments/" + "e" * BIG + "/work",  # 404 environment
        f"{base}/{'w' * BIG}",  # 404 work item
        f"{base}/{'w' * BIG}/ack",
        f"{base}/poll?block_ms={'9' * BIG}",
        f"{base}/poll?reclaim_older_than_ms=1{'x' * BIG}",
        f"{base}?limit={'x' * BIG}",
        f"{base}?before_id={'x' * BIG}",
        f"{base}/{work}/heartbeat?expected_last_heartbeat={'x' * BIG}",
        f"{base}/{work}/heartbeat?expected_last_heartbeat=2026-07-01T08:15:04.{'1' * BIG}Z&desired_ttl_seconds=0",
        f"{base}/{work}/heartbeat?desired_ttl_seconds={'x' * BIG}",
    ]:
        for method in ("GET", "POST", "X" * BIG):
            _small(w.raw(Request(method, target, AUTH), T))


def test_issue11_3_header_values_and_body_fragments_are_echoed_short() -> None:
    w = World(authorizer=lambda access: False)
    _small(w.raw(Request("GET", "/api/v1/cloud/environments/" + "e" * BIG + "/work", AUTH), T))  # 403
    w = World()
    work = w.work()
    base = w.target("")
    _small(w.raw(Request("GET", base + "/poll", {**AUTH, "Worker-ID": "\n" + "w" * BIG}), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"force": "' + b"x" * BIG + b'"}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"force": [' + b"1," * (BIG // 16) + b"1]}"), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"' + b"k" * BIG + b'": 1}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": {"k": ' + b"9" * 4000 + b"}}"), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": "' + b"x" * BIG + b'"}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": {"' + b"k" * BIG + b'": 5}}'), T))
    key = b'"' + b"k" * BIG + b'"'
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b"{" + key + b": 1, " + key + b": 2}"), T))  # the codec's
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b"x" * BIG), T))
    _small(w.raw(Request("GET", base + "/poll", {**AUTH, "x-request-id": "r" * 64}, b"x"), T))


def test_issue11_3_an_excerpt_says_what_was_cut_and_escapes_it() -> None:
    w = World()
    response = w.raw(Request("GET", w.target("/poll?block_ms=" + "9" * 1000), AUTH), T)
    message = response.json["error"]["message"]
    assert "'" + "9" * 64 + "'... (1,000 characters)" in message
    response = w.raw(Request("GET", w.target("/poll"), {**AUTH, "Worker-ID": "a\nb"}), T)
    assert "'a\\nb'" in response.json["error"]["message"]
