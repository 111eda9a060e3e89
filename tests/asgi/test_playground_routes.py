"""Issue 19 without a browser: the playground's page, config and explain routes, called as ASGI in process.

The explain route must say what the server then does (same status, same rule, the item a poll delivers), read its
wire facts from workstate.api.routes, refuse bad input with a 4xx, and leave the Work API's answers unchanged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from workstate import parse_timestamp
from workstate.api import Request
from workstate.api.routes import BASE_PATH, work_path
from workstate.asgi import NOW_HEADER, WorkstateApp
from workstate.asgi.playground import CONFIG_PATH, EXPLAIN_PATH, PlaygroundApp
from workstate.cli import build_parser
from workstate.rules import RULE_TABLE, rules_of

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


def test_the_config_reads_the_wire_from_the_route_table(app: PlaygroundApp) -> None:
    status, headers, body = call(app, "GET", CONFIG_PATH)
    config = json.loads(body)
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert config["dialect"] == "qoder" and [d["name"] for d in config["dialects"]] == ["qoder"]
    (qoder,) = config["dialects"]
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
