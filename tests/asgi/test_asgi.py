"""Issue 15, point 1: workstate.asgi, the reference server as an ASGI 3 app, driven by hand-made ASGI calls.

Each test builds the scope and the body messages itself (the way uvicorn hands them over), so it can send what
a polite client never sends: a body in pieces, a body that stalls or never ends, repeated headers, bytes that
are not UTF-8. Every test asserts what was answered and what the reference executed.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workstate import ANTHROPIC, QODER
from workstate.api import Request, Server
from workstate.asgi import MAX_BODY, WorkstateApp
from workstate.errors import InvalidInput
from workstate.tools.trace import check_lines

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
BASE = "/api/v1/cloud/environments"
AUTH = (b"authorization", b"Bearer t")
SESSION = "sess_" + "1" * 32
TRACE_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "trace.schema.json").read_text("utf-8"))


def call(
    app: Any,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    chunks: list[bytes] | None = None,
    *,
    stall: bool = False,
    disconnect: bool = False,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the app: the body in ``chunks`` (``more_body`` between them), then a stall or a
    disconnect when asked. Returns (status, headers, body)."""
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "headers": list(headers),
        "client": ("127.0.0.1", 5000),
    }
    pending = list(chunks or [b""])

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            more = bool(pending) or stall or disconnect
            return {"type": "http.request", "body": chunk, "more_body": more}
        if disconnect:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    assert start["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def _active_server() -> tuple[Server, str, str]:
    server = Server()
    env = server.create_environment(now=T)
    wid = server.create_work(env, session_id=SESSION, now=T)
    w1 = {"Authorization": "Bearer t", "Worker-ID": "w1"}
    for method, target in (
        ("GET", f"{BASE}/{env}/work/poll"),
        ("POST", f"{BASE}/{env}/work/{wid}/ack"),
        ("POST", f"{BASE}/{env}/work/{wid}/heartbeat"),
    ):
        assert server.handle(Request(method, target, w1), T).status == 200
    return server, env, wid


def _state(server: Server, env: str, wid: str) -> str:
    item = server.work(env, wid)
    assert item is not None
    return item.state.value


def _stop(env: str, wid: str) -> bytes:
    return f"{BASE}/{env}/work/{wid}/stop".encode()


def test_a_request_is_answered_as_the_reference_answers_it() -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T)
    status, headers, body = call(app, "POST", _stop(env, wid), [AUTH], [b'{"force": true}'])
    assert status == 200 and json.loads(body)["state"] == "stopped"
    assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(body)
    assert _state(server, env, wid) == "stopped"


def test_a_body_in_pieces_is_read_whole_before_it_is_answered() -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T)
    status, _, _ = call(app, "POST", _stop(env, wid), [AUTH], [b'{"fo', b'rce": ', b"true}"])
    assert status == 200 and _state(server, env, wid) == "stopped"


@pytest.mark.parametrize("how", ["content-length", "streamed"])
def test_a_body_over_1_mib_is_413_and_never_executed(how: str) -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T)
    big = b'{"force": true, "pad": "' + b"x" * MAX_BODY + b'"}'
    headers = [AUTH]
    if how == "content-length":
        headers.append((b"content-length", str(len(big)).encode()))
        chunks = [b""]
    else:
        chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    status, out, body = call(app, "POST", _stop(env, wid), headers, chunks, stall=how == "content-length")
    assert status == 413 and json.loads(body)["type"] == "error"
    assert out[b"connection"] == b"close"
    assert _state(server, env, wid) == "active"


def test_a_body_of_exactly_1_mib_is_read() -> None:
    app = WorkstateApp(clock=lambda: T, test_routes=True)
    body = b'{"kind": "self_hosted"}' + b" " * (MAX_BODY - 23)
    status, _, _ = call(app, "POST", b"/_test/environments", [(b"content-length", str(MAX_BODY).encode())], [body])
    assert status == 201


@pytest.mark.parametrize(
    "lengths", [[b"5", b"6"], [b"1e3"], [b"-1"], [b"+5"]], ids=["twice-different", "exponent", "negative", "plus"]
)
def test_a_content_length_that_cannot_frame_the_body_is_400_and_never_executed(lengths: list[bytes]) -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T)
    headers = [AUTH, *((b"content-length", value) for value in lengths)]
    status, out, _ = call(app, "POST", _stop(env, wid), headers, [b"{}"])
    assert status == 400 and out[b"connection"] == b"close"
    assert _state(server, env, wid) == "active"


def test_the_same_content_length_twice_is_read() -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T)
    headers = [AUTH, (b"content-length", b"2"), (b"content-length", b"02")]
    assert call(app, "POST", _stop(env, wid), headers, [b"{}"])[0] == 200
    assert _state(server, env, wid) == "stopping"


def test_a_body_that_stalls_is_408_and_one_whose_client_left_is_never_executed() -> None:
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T, body_timeout=0.05)
    status, out, _ = call(app, "POST", _stop(env, wid), [AUTH], [b'{"force": '], stall=True)
    assert status == 408 and out[b"connection"] == b"close"
    status, _, _ = call(app, "POST", _stop(env, wid), [AUTH], [b'{"force": '], disconnect=True)
    assert status == 400
    assert _state(server, env, wid) == "active"


def test_the_test_clock_sets_now_only_when_asked() -> None:
    later = b"2026-07-01T09:00:00.000000Z"
    for test_clock, expected in ((True, "2026-07-01T09:00:00.000000Z"), (False, "2026-07-01T08:15:01.000000Z")):
        app = WorkstateApp(clock=lambda: T, test_clock=test_clock, test_routes=True)
        env = json.loads(call(app, "POST", b"/_test/environments", [(b"x-workstate-now", later)])[2])["id"]
        body = json.dumps({"session_id": SESSION}).encode()
        call(app, "POST", f"/_test/environments/{env}/work".encode(), [(b"x-workstate-now", later)], [body])
        _, _, got = call(app, "GET", f"{BASE}/{env}/work".encode(), [AUTH, (b"x-workstate-now", later)])
        assert json.loads(got)["data"][0]["created_at"] == expected
    app = WorkstateApp(clock=lambda: T, test_clock=True)
    status, _, body = call(app, "POST", b"/_test/environments", [(b"x-workstate-now", b"yesterday")])
    assert status == 400 and json.loads(body)["error"]["param"] == "X-Workstate-Now"


def test_the_test_routes_are_served_only_behind_an_option() -> None:
    assert call(WorkstateApp(), "POST", b"/_test/environments")[0] == 404
    app = WorkstateApp(test_routes=True)
    status, _, body = call(app, "POST", b"/_test/environments", [], [b'{"kind": "cloud"}'])
    assert status == 201 and json.loads(body)["id"].startswith("env_")
    assert call(app, "POST", b"/_test/environments", [], [b'{"kind": "moon"}'])[0] == 400
    assert call(app, "POST", b"/_test/environments/env_x/work", [], [b"{}"])[0] == 404
    assert call(app, "GET", b"/_test/environments")[0] == 404


def test_the_record_is_byte_exact_and_checks_clean() -> None:
    stream = io.StringIO()
    server, env, wid = _active_server()
    app = WorkstateApp(server, clock=lambda: T, record=stream)
    headers = [AUTH, (b"worker-id", b"w1"), (b"worker-id", b"w2"), (b"x-odd", b" spaced ")]
    status, _, _ = call(app, "POST", f"{BASE}/{env}/work/{wid}/ack".encode(), headers)
    assert status == 400  # Worker-ID given twice with different values
    call(app, "GET", f"//api/v1/cloud/environments/{env}/work/{wid}?a=%41".encode(), [AUTH])
    call(app, "POST", _stop(env, wid), [AUTH], [b'{"force":', b" true}"])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first["request"]["headers"].items()) == [
        ("authorization", "Bearer t"),
        ("worker-id", "w1"),
        ("Worker-id", "w2"),
        ("x-odd", " spaced "),
    ]
    assert json.loads(lines[1])["request"]["target"] == f"//api/v1/cloud/environments/{env}/work/{wid}?a=%41"
    assert json.loads(lines[2])["request"]["body"] == '{"force": true}'
    for line in lines:
        assert not list(Draft202012Validator(TRACE_SCHEMA).iter_errors(json.loads(line)))
    assert check_lines(lines).exit_status == 0


@pytest.mark.parametrize(
    ("target", "headers", "body"),
    [
        (b"/api/v1/x", [(b"x-name", b"caf\xe9")], b""),
        (b"/api/v1/caf\xc3\xa9", [], b""),
        (b"/api/v1/x", [], b"\xff\xfe"),
    ],
    ids=["header-not-ascii", "target-not-ascii", "body-not-utf8"],
)
def test_what_the_record_cannot_hold_unaltered_is_refused_while_recording(
    target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    stream = io.StringIO()
    app = WorkstateApp(record=stream)
    status, _, answer = call(app, "POST", target, [AUTH, *headers], [body])
    assert status == 400 and "record" in json.loads(answer)["error"]["message"]
    assert stream.getvalue() == ""
    assert call(WorkstateApp(), "POST", target, [AUTH, *headers], [body])[0] == 404  # not recording: served


def test_a_header_repeated_beyond_its_spellings_is_refused_while_recording() -> None:
    stream = io.StringIO()
    app = WorkstateApp(record=stream)
    status, _, _ = call(app, "GET", b"/x", [AUTH, *[(b"a", b"1")] * 3])  # "a" has two spellings
    assert status == 400 and stream.getvalue() == ""
    assert call(app, "GET", b"/x", [AUTH, *[(b"a", b"1")] * 2])[0] == 404
    assert len(stream.getvalue().splitlines()) == 1


def test_the_lifespan_shutdown_flushes_the_record() -> None:
    class Stream(io.StringIO):
        flushed = 0

        def flush(self) -> None:
            self.flushed += 1
            super().flush()

    stream = Stream()
    app = WorkstateApp(record=stream)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert stream.flushed == 1


def test_one_access_log_line_per_request_escaped() -> None:
    lines: list[str] = []
    app = WorkstateApp(access_log=lines.append)
    call(app, "GET", b"/x\x1b[31m", [AUTH])
    call(app, "GET", b"/openapi.json")
    assert len(lines) == 2
    assert lines[0] == '127.0.0.1:5000 "GET /x\\x1b[31m" 404 ' + lines[0].rsplit(" ", 1)[1]
    assert lines[1].startswith('127.0.0.1:5000 "GET /openapi.json" 200 ')


def test_head_is_answered_without_a_body_and_openapi_is_served() -> None:
    app = WorkstateApp()
    status, headers, body = call(app, "HEAD", b"/openapi.json")
    assert status == 200 and body == b"" and int(headers[b"content-length"]) > 1000
    status, _, body = call(app, "GET", b"/openapi.json")
    assert status == 200 and json.loads(body)["openapi"] == "3.1.0"


def test_the_app_serves_every_shipped_dialect_and_refuses_others() -> None:
    assert WorkstateApp(dialect="qoder").dialect == "qoder"
    peer = WorkstateApp(dialect="anthropic")
    assert peer.dialect == "anthropic" and peer.wire_dialect is ANTHROPIC
    assert isinstance(peer.server, Server) and peer.server.dialect is ANTHROPIC
    assert peer.server.policy == ANTHROPIC.policy  # the dialect's defaults where nobody chose
    assert WorkstateApp(dialect=ANTHROPIC).dialect == "anthropic"
    with pytest.raises(InvalidInput, match="dialect"):
        WorkstateApp(dialect="nonsense")


def test_a_bug_behind_the_app_is_a_500_envelope() -> None:
    class Broken(Server):
        def handle(self, request: Request, now: datetime) -> Any:
            raise RuntimeError("boom")

    status, _, body = call(WorkstateApp(Broken()), "GET", b"/x", [AUTH])
    assert status == 500 and json.loads(body)["error"]["type"] == "api_error"


# --- the anthropic dialect at the edge (issue 14, step 4) ----------------------------------------------------


def test_the_test_routes_take_the_dialects_ids_and_data_type() -> None:
    app = WorkstateApp(dialect="anthropic", test_routes=True, clock=lambda: T)
    status, _, body = call(app, "POST", b"/_test/environments")
    env = json.loads(body)["id"]
    assert status == 201 and ANTHROPIC.valid_id("env", env)
    work = f"/_test/environments/{env}/work".encode()
    status, _, body = call(app, "POST", work, chunks=[b'{"session_id": "session_01Xy"}'])
    assert status == 201 and ANTHROPIC.valid_id("work", json.loads(body)["id"])
    status, _, body = call(app, "POST", work, chunks=[b'{"session_id": "session_02", "data_type": "healthcheck"}'])
    probe = json.loads(body)["id"]
    assert status == 201
    item = app.server.work(env, probe)  # type: ignore[attr-defined]
    assert item is not None and item.data == {"type": "healthcheck", "id": "session_02"}
    status, _, body = call(app, "POST", work, chunks=[json.dumps({"session_id": SESSION}).encode()])
    refused = json.loads(body)
    assert status == 400 and refused["error"]["message"].startswith("session_id must be 'session_'")  # not qoder's
    assert list(refused) == ["type", "error", "request_id"]  # the edge's own errors in the dialect's envelope too
    qoder = WorkstateApp(test_routes=True, clock=lambda: T)
    env = json.loads(call(qoder, "POST", b"/_test/environments")[2])["id"]
    body = b'{"session_id": "' + SESSION.encode() + b'", "data_type": "healthcheck"}'
    status, _, answer = call(qoder, "POST", f"/_test/environments/{env}/work".encode(), chunks=[body])
    assert status == 400 and json.loads(answer)["error"]["param"] == "data_type"  # qoder has no health probes


def test_a_peer_stop_is_204_without_content_type_and_errors_carry_request_id() -> None:
    app = WorkstateApp(dialect=ANTHROPIC, test_routes=True, clock=lambda: T)
    env = json.loads(call(app, "POST", b"/_test/environments")[2])["id"]
    work = f"/_test/environments/{env}/work".encode()
    wid = json.loads(call(app, "POST", work, chunks=[b'{"session_id": "session_01"}'])[2])["id"]
    stop = ANTHROPIC.path(env, wid, "stop").encode()
    status, headers, body = call(app, "POST", stop, [(b"x-api-key", b"k")], [b'{"force": true}'])
    assert (status, body) == (204, b"") and b"content-type" not in headers and b"content-length" not in headers
    status, headers, body = call(app, "POST", stop, [AUTH])
    assert status == 409 and headers[b"request-id"] == json.loads(body)["request_id"].encode()
    assert b"request-id" not in call(WorkstateApp(), "GET", QODER.path(env).encode(), [AUTH])[1]


def test_the_edges_own_errors_are_in_the_dialects_envelope() -> None:
    app = WorkstateApp(dialect=ANTHROPIC, clock=lambda: T)
    status, headers, body = call(app, "POST", b"/v1/x", [AUTH, (b"content-length", b"nope")], [b""])
    refused = json.loads(body)
    assert status == 400 and list(refused) == ["type", "error", "request_id"] and "param" not in refused["error"]
    assert headers[b"request-id"] == refused["request_id"].encode()
    status, headers, body = call(WorkstateApp(clock=lambda: T), "POST", b"/x", [(b"content-length", b"nope")], [b""])
    assert json.loads(body)["error"]["param"] == "Content-Length" and b"request-id" not in headers
