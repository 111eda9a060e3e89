"""Issue 19 without a browser: the playground's page, config and explain routes, called as ASGI in process.

The explain route must say what the server then does (same status, same rule, the item a poll delivers), read its
wire facts from workstate.api.routes, refuse bad input with a 4xx, and leave the Work API's answers unchanged. The
playground serves every shipped dialect from one origin: each request reaches the server of its dialect.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from workstate import ANTHROPIC, DIALECTS, QODER, parse_timestamp
from workstate.api import Request
from workstate.api.routes import BASE_PATH, params_of_reasons, work_path
from workstate.asgi import NOW_HEADER, TEST_PREFIX, WorkstateApp
from workstate.asgi.playground import CONFIG_PATH, EXPLAIN_PATH, PlaygroundApp
from workstate.cli import build_parser
from workstate.rules import RULE_TABLE, Reason, rules_of

T0 = "2026-07-01T08:15:01.000000Z"
AUTH = {"Authorization": "Bearer t"}
SESSION = "sess_" + "2" * 32
START = parse_timestamp(T0)


def fixed() -> Any:
    return START


def call(app: Any, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    """(status, headers, body bytes) of one request through the ASGI interface."""
    sent: list[dict[str, Any]] = []
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent
    return start["status"], dict(start["headers"]), end["body"]


def explain(app: PlaygroundApp, method: str, target: str, headers: dict[str, str], body: str | None = None) -> Any:
    value = {"method": method, "target": target, "headers": headers, "body": body}
    status, _, reply = call(app, "POST", EXPLAIN_PATH, {NOW_HEADER: T0}, json.dumps(value).encode())
    assert status == 200, reply
    return json.loads(reply)


def send(app: PlaygroundApp, method: str, target: str, headers: dict[str, str], body: str = "") -> Any:
    return app.answer(method, target, [(k, v) for k, v in {**headers, NOW_HEADER: T0}.items()], body.encode())


@pytest.fixture
def app() -> PlaygroundApp:
    return PlaygroundApp(test_clock=True, clock=fixed)


def _item(app: PlaygroundApp) -> tuple[str, str]:
    env = app.server.create_environment("self_hosted", now=app.clock())
    work = app.server.create_work(env, session_id=SESSION, metadata={}, now=app.clock())
    return env, work


def test_the_page_is_served_with_the_generated_picture_inline(app: PlaygroundApp) -> None:
    status, headers, body = call(app, "GET", "/")
    assert status == 200 and headers[b"content-type"] == b"text/html; charset=utf-8"
    page = body.decode()
    assert "<!-- the lifecycle picture -->" not in page
    for state in ("queued", "starting", "active", "stopping", "stopped"):
        assert f'data-state="{state}"' in page
    assert 'src="/_playground/playground.js"' in page and "http" not in page.split("<svg")[0].replace("http-equiv", "")
    for name, kind in (("playground.js", b"text/javascript"), ("playground.css", b"text/css")):
        status, headers, body = call(app, "GET", "/_playground/" + name)
        assert status == 200 and headers[b"content-type"].startswith(kind) and body
    status, _, body = call(app, "GET", "/_playground/nothing")
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"


def test_the_script_spells_no_wire_fact_itself() -> None:
    app = PlaygroundApp()
    for name in ("playground.js", "index.html"):
        text = call(app, "GET", "/" if name == "index.html" else "/_playground/" + name)[2].decode()
        assert BASE_PATH.rstrip("/") not in text and "Worker-ID" not in text and NOW_HEADER not in text
        for dialect in DIALECTS.values():
            assert dialect.base_path.rstrip("/") not in text and dialect.worker_header not in text
            assert f'"{dialect.session_prefix}' not in text  # an id's prefix, as a string the script would write


def test_the_config_reads_the_wire_from_the_route_table(app: PlaygroundApp) -> None:
    status, headers, body = call(app, "GET", CONFIG_PATH)
    config = json.loads(body)
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert config["dialect"] == "qoder" and [d["name"] for d in config["dialects"]] == ["qoder", "anthropic"]
    qoder = config["dialects"][0]
    assert qoder["base_path"] == BASE_PATH and qoder["work_path"] == work_path("{env}")
    assert qoder["worker_header"] == "Worker-ID"
    assert config["now_header"] == NOW_HEADER and config["test_clock"] is True and config["explain"] == EXPLAIN_PATH
    assert json.loads(call(PlaygroundApp(), "GET", CONFIG_PATH)[2])["test_clock"] is False


def test_each_explanation_says_what_the_server_then_does(app: PlaygroundApp) -> None:
    env, work = _item(app)
    header, heartbeat = {**AUTH, "Worker-ID": "a"}, work_path(env, work, "heartbeat")
    steps = [
        ("GET", work_path(env, operation="poll"), header, None, "deliver"),
        ("POST", work_path(env, work, "ack"), {**AUTH, "Worker-ID": "b"}, None, "ack-claimed-by-another"),
        ("POST", work_path(env, work, "ack"), header, None, "ack"),
        ("POST", heartbeat + "?expected_last_heartbeat=NO_HEARTBEAT", AUTH, None, "heartbeat-first"),
        ("POST", heartbeat + "?expected_last_heartbeat=" + T0, AUTH, None, None),
        ("POST", work_path(env, work), AUTH, '{"metadata": {"k": "v"}}', "metadata"),
        ("POST", work_path(env, work, "stop"), AUTH, '{"force": true}', "force-stop"),
    ]
    names = {rule.name for rule in rules_of(RULE_TABLE)}
    for method, target, headers, body, name in steps:
        why = explain(app, method, target, headers, body)
        before = app.server.work(env, work)
        response = send(app, method, target, headers, body or "")
        assert why["status"] == response.status, (target, why, response)
        assert why["item"]["id"] == work and why["item"]["version"] == before.version  # type: ignore[union-attr]
        if name is not None:
            assert name in names and why["rule"]["name"] == name
        if response.rule is not None:  # where the server names its rule, it is the same one
            assert response.rule.name == why["rule"]["name"]
    assert why["rule"]["text"].startswith("[4.4 force-stop]") and app.server.work(env, work).state == "stopped"  # type: ignore[union-attr]


def test_a_stale_token_and_a_lapse_are_explained(app: PlaygroundApp) -> None:
    env, work = _item(app)
    send(app, "POST", work_path(env, work, "ack"), {**AUTH, "Worker-ID": "a"})
    why = explain(app, "POST", work_path(env, work, "heartbeat") + "?expected_last_heartbeat=" + T0, AUTH)
    assert why["status"] == 412 and why["rule"]["name"] == "heartbeat-precondition-failed"
    assert {"guard": "precondition_holds", "value": False} in why["guards"]
    assert why["item"]["worker_id"] == "a" and why["item"]["deadline"] is not None
    later = why["item"]["deadline"]
    value = {"method": "GET", "target": work_path(env, work)}
    status, _, body = call(app, "POST", EXPLAIN_PATH, {NOW_HEADER: later}, json.dumps(value).encode())
    lapse = json.loads(body)
    assert status == 200 and lapse["rule"]["name"] == "start-timeout" and lapse["rule"]["kind"] == "accept"
    assert app.server.work(env, work).state == "starting"  # type: ignore[union-attr]  # explaining changed nothing


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"nope", {}, 400, "must be JSON"),
        (b"[]", {}, 400, "a request"),
        (b'{"method": "GET"}', {}, 400, "a request"),
        (b'{"method": "GET", "target": "/", "extra": 1}', {}, 400, "a request"),
        (b'{"method": 1, "target": "/"}', {}, 400, "target a path"),
        (b'{"method": "GET", "target": "x"}', {}, 400, "target a path"),
        (b'{"method": "GET", "target": "/", "headers": {"a": 1}}', {}, 400, "headers must be"),
        (b'{"method": "GET", "target": "/", "body": 3}', {}, 400, "body must be"),
        (b'{"method": "GET", "target": "/"}', {NOW_HEADER: "yesterday"}, 400, NOW_HEADER),
    ],
)
def test_bad_input_to_explain_is_a_clear_400(
    app: PlaygroundApp, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    got, _, reply = call(app, "POST", EXPLAIN_PATH, headers, body)
    envelope = json.loads(reply)
    assert got == status and envelope["type"] == "error" and says in envelope["error"]["message"]


def test_requests_refused_before_a_rule_say_so(app: PlaygroundApp) -> None:
    env, work = _item(app)
    why = explain(app, "POST", work_path(env, work, "heartbeat") + "?desired_ttl_seconds=x", AUTH)
    assert why["status"] == 400 and why["rule"] is None and why["summary"].startswith("refused before any rule")
    why = explain(app, "GET", work_path(env, "work_" + "9" * 32), AUTH)
    assert why["status"] == 404 and why["rule"] is None
    assert explain(app, "GET", work_path(env, operation="stats"), AUTH)["rule"] is None
    assert explain(app, "GET", "/elsewhere", AUTH)["status"] == 404


def test_the_api_answers_as_without_the_playground() -> None:
    plain, playground = WorkstateApp(test_clock=True, clock=fixed), PlaygroundApp(test_clock=True, clock=fixed)
    for app in (plain, playground):
        env, work = _item(app)  # type: ignore[arg-type]
        assert (env, work) == ("env_" + "0" * 31 + "1", "work_" + "0" * 31 + "1")
    requests = [
        Request("GET", work_path(env, operation="poll"), {**AUTH, "Worker-ID": "a"}),
        Request("POST", work_path(env, work, "ack"), {**AUTH, "Worker-ID": "b"}),
        Request("GET", work_path(env), AUTH),
    ]
    for request in requests:
        answers = [
            call(app, request.method, request.target, {**dict(request.headers), NOW_HEADER: T0})  # type: ignore[arg-type]
            for app in (plain, playground)
        ]
        assert answers[0] == answers[1]
    assert call(plain, "GET", "/")[0] == 404 and call(plain, "GET", CONFIG_PATH)[0] == 404


def test_the_playground_command_is_serve_on_the_test_clock() -> None:
    args = build_parser().parse_args(["playground", "--port", "0"])
    assert (args.playground, args.test_clock, args.test_routes, args.host) == (True, True, True, "127.0.0.1")
    assert build_parser().parse_args(["serve", "--playground"]).playground is True
    assert build_parser().parse_args(["serve"]).playground is False


# --- both dialects from one origin -------------------------------------------------------------------------------


def test_the_config_lists_every_dialect_from_its_values(app: PlaygroundApp) -> None:
    config = json.loads(call(app, "GET", CONFIG_PATH)[2])
    served = {d["name"]: d for d in config["dialects"]}
    assert list(served) == list(DIALECTS)
    for name, dialect in DIALECTS.items():
        entry = served[name]
        assert entry["base_path"] == dialect.base_path and entry["work_path"] == work_path("{env}", dialect=dialect)
        assert entry["worker_header"] == dialect.worker_header == params_of_reasons(dialect)[Reason.WORKER_CONFLICT]
        assert entry["ack_checks_worker"] is dialect.ack_checks_worker
        assert entry["stop_answer"] == dialect.stop_answer.value
        assert entry["session_prefix"] == dialect.session_prefix and entry["work_prefix"] == dialect.prefix("work")
    assert served["qoder"]["test_routes"] == TEST_PREFIX
    assert served["anthropic"]["test_routes"] == "/_playground/anthropic" + TEST_PREFIX
    assert (served["qoder"]["stop_status"], served["anthropic"]["stop_status"]) == (200, 204)
    assert served["anthropic"]["ack_checks_worker"] is False and served["anthropic"]["list_cursors"] == ["page"]
    peer = json.loads(call(PlaygroundApp(dialect="anthropic", test_clock=True), "GET", CONFIG_PATH)[2])
    assert peer["dialect"] == "anthropic" and [d["name"] for d in peer["dialects"]] == ["anthropic", "qoder"]
    assert [d["test_routes"] for d in peer["dialects"]] == [TEST_PREFIX, "/_playground/qoder" + TEST_PREFIX]
    assert [d["test_routes"] for d in json.loads(call(PlaygroundApp(), "GET", CONFIG_PATH)[2])["dialects"]] == [
        None,
        None,
    ]


def _create(app: PlaygroundApp, prefix: str, session: str) -> tuple[str, str]:
    status, _, body = call(app, "POST", prefix, {NOW_HEADER: T0}, b"{}")
    assert status == 201, body
    env = json.loads(body)["id"]
    value = json.dumps({"session_id": session, "metadata": {"job": "x"}}).encode()
    status, _, body = call(app, "POST", f"{prefix}/{env}/work", {NOW_HEADER: T0}, value)
    assert status == 201, body
    return env, json.loads(body)["id"]


PEER_SESSION = "session_" + "3" * 32


def test_the_other_dialect_s_test_routes_create_on_its_own_server(app: PlaygroundApp) -> None:
    env, work = _create(app, "/_playground/anthropic" + TEST_PREFIX, PEER_SESSION)
    assert ANTHROPIC.valid_id("env", env) and ANTHROPIC.valid_id("work", work)
    peer = app.servers["anthropic"]
    assert peer.dialect is ANTHROPIC and peer.work(env, work) is not None and app.reference.snapshot() == ()
    mine, item = _create(app, TEST_PREFIX, SESSION)
    assert QODER.valid_id("env", mine) and app.reference.work(mine, item) is not None
    status, _, body = call(app, "POST", "/_playground/anthropic" + TEST_PREFIX + "/" + env + "/work", {}, b"{}")
    assert status == 400 and "session_id" in json.loads(body)["error"]["message"]  # the peer's own checks
    status, _, body = call(app, "POST", f"/_playground/anthropic{TEST_PREFIX}/{env}/work", {}, b'{"session_id": 1}')
    assert status == 400 and json.loads(body)["type"] == "error"
    assert call(app, "POST", "/_playground/nobody" + TEST_PREFIX, {}, b"{}")[0] == 404
    closed = PlaygroundApp()  # no test routes: none for the other dialect either
    assert call(closed, "POST", "/_playground/anthropic" + TEST_PREFIX, {}, b"{}")[0] == 404


def test_each_dialect_s_requests_reach_its_own_server(app: PlaygroundApp) -> None:
    env, work = _create(app, TEST_PREFIX, SESSION)
    peer_env, peer_work = _create(app, "/_playground/anthropic" + TEST_PREFIX, PEER_SESSION)
    poll = {**AUTH, QODER.worker_header: "a"}
    status, _, body = call(app, "GET", work_path(env, operation="poll"), {**poll, NOW_HEADER: T0})
    assert status == 200 and json.loads(body)["id"] == work
    peer_poll = {**AUTH, ANTHROPIC.worker_header: "a", NOW_HEADER: T0}
    status, _, body = call(app, "GET", work_path(peer_env, operation="poll", dialect=ANTHROPIC), peer_poll)
    polled = json.loads(body)
    assert status == 200 and polled["id"] == peer_work and "secret" in polled
    # neither server has the other's environment: each path reaches its own
    assert call(app, "GET", work_path(peer_env, dialect=QODER), AUTH)[0] == 404
    assert call(app, "GET", work_path(env, dialect=ANTHROPIC), AUTH)[0] == 404
    status, _, body = call(app, "GET", work_path(peer_env, dialect=ANTHROPIC), {**AUTH, NOW_HEADER: T0})
    assert status == 200 and set(json.loads(body)) == {"data", "next_page"}
    status, _, body = call(app, "GET", work_path(env), {**AUTH, NOW_HEADER: T0})
    assert status == 200 and "has_more" in json.loads(body)
    stop = work_path(peer_env, peer_work, "stop", dialect=ANTHROPIC)
    status, headers, body = call(app, "POST", stop, {**AUTH, NOW_HEADER: T0}, b'{"force": true}')
    assert (status, body) == (204, b"") and b"content-type" not in headers
    assert app.servers["anthropic"].work(peer_env, peer_work).state == "stopped"  # type: ignore[union-attr]
    assert app.reference.work(env, work).state == "queued"  # type: ignore[union-attr]


def _walk(app: PlaygroundApp, dialect: Any, steps: list[tuple[str, str, dict[str, str], str | None, str]]) -> list[Any]:
    """Each step explained, then sent: the explanation names the server's status and rule, in ``dialect``."""
    names = {rule.name for rule in rules_of(RULE_TABLE)}
    explained = []
    for method, target, headers, body, name in steps:
        why = explain(app, method, target, headers, body)
        explained.append(why)
        response = send(app, method, target, headers, body or "")
        assert why["dialect"] == dialect.name and why["status"] == response.status, (target, why, response)
        assert name in names and why["rule"]["name"] == name, (target, why)
        if response.rule is not None:
            assert response.rule.name == why["rule"]["name"]
    return explained


def test_the_explanation_is_in_the_request_s_dialect(app: PlaygroundApp) -> None:
    env, work = _create(app, "/_playground/anthropic" + TEST_PREFIX, PEER_SESSION)

    def path(*parts: str | None) -> str:
        return work_path(env, *parts, dialect=ANTHROPIC)

    a, b = {**AUTH, ANTHROPIC.worker_header: "a"}, {**AUTH, ANTHROPIC.worker_header: "b"}
    whys = _walk(
        app,
        ANTHROPIC,
        [
            ("GET", path(None, "poll"), a, None, "deliver"),
            ("POST", path(work, "ack"), b, None, "ack"),  # no worker check in the peer: b's ack is taken
            ("POST", path(work, "heartbeat") + "?expected_last_heartbeat=NO_HEARTBEAT", b, None, "heartbeat-first"),
            ("POST", path(work, "stop"), b, '{"force": true}', "force-stop"),  # 204, and the explanation says so
            ("POST", path(work, "heartbeat"), b, None, "heartbeat-stopped-reported"),
        ],
    )
    assert {"guard": "checks_worker", "value": False} in whys[1]["guards"] and whys[3]["status"] == 204
    assert app.servers["anthropic"].work(env, work).worker_id == "a"  # type: ignore[union-attr]  # the delivery's
    # the same operations in qoder: the worker check and the stopped item's 409
    mine, item = _create(app, TEST_PREFIX, SESSION)
    qa, qb = {**AUTH, QODER.worker_header: "a"}, {**AUTH, QODER.worker_header: "b"}
    _walk(
        app,
        QODER,
        [
            ("GET", work_path(mine, operation="poll"), qa, None, "deliver"),
            ("POST", work_path(mine, item, "ack"), qb, None, "ack-claimed-by-another"),
            ("POST", work_path(mine, item, "stop"), qa, '{"force": true}', "force-stop"),
        ],
    )
    why = explain(app, "POST", work_path(mine, item, "heartbeat"), AUTH)
    assert why["dialect"] == "qoder" and why["status"] == 409
    # a dialect key chooses the server too; an unknown one is a 400
    value = {"method": "GET", "target": path(None, "poll"), "headers": a, "dialect": "qoder"}
    reply = json.loads(call(app, "POST", EXPLAIN_PATH, {NOW_HEADER: T0}, json.dumps(value).encode())[2])
    assert reply["dialect"] == "qoder" and reply["status"] == 404 and reply["rule"] is None  # not a qoder route
    value["dialect"] = "klingon"
    status, _, body = call(app, "POST", EXPLAIN_PATH, {NOW_HEADER: T0}, json.dumps(value).encode())
    assert status == 400 and "dialect must be one of" in json.loads(body)["error"]["message"]


def test_a_poll_is_explained_by_the_server_s_own_query(app: PlaygroundApp) -> None:
    env, work = _create(app, TEST_PREFIX, SESSION)
    poll = work_path(env, operation="poll")
    why = explain(app, "GET", poll, {**AUTH, QODER.worker_header: "a"})
    assert why["rule"]["name"] == "deliver" and why["item"]["id"] == work
    assert app.reference.deliverable(env, START) == work
    send(app, "GET", poll, {**AUTH, QODER.worker_header: "a"})
    why = explain(app, "GET", poll, {**AUTH, QODER.worker_header: "b"})  # delivered, inside the reclaim window
    assert app.reference.deliverable(env, START) is None
    assert why["status"] == 200 and why["rule"] is None and "null" in why["summary"]
    why = explain(app, "GET", poll + "?reclaim_older_than_ms=0", {**AUTH, QODER.worker_header: "b"})
    assert why["rule"]["name"] == "deliver" and why["item"]["id"] == work  # the window given is the server's too
    assert explain(app, "GET", work_path("env_" + "7" * 32, operation="poll"), AUTH)["status"] == 404
    cloud = app.reference.create_environment("cloud", now=START)
    assert explain(app, "GET", work_path(cloud, operation="poll"), AUTH)["status"] == 400
