"""The HTTP target: requests go out over a real loopback socket with ``X-Workstate-Now``, replies come
back as ``Response`` values, and the lockstep kit runs over it (a stub HTTP server wraps a target)."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from helpers import FIND, PASS
from hypothesis import settings

from workstate import WorkstateError, parse_timestamp, render_timestamp
from workstate.api import Request
from workstate.testing.http import NOW_HEADER, CreationFailed, HttpTarget, NotJson
from workstate.testing.lockstep import Disagreement, run_lockstep
from workstate.testing.mutants import StopStoppedConflicts
from workstate.testing.target import ReferenceTarget, Target

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
ODD_REPLIES = {
    "/extra-key": b'{"type": "work", "state": "queued", "secret": null, "data": {"type": "session", "x": [1]}}',
    "/duplicate-key": b'{"state": "queued", "state": "active"}',
    "/nan": b'{"ttl_seconds": NaN}',
    "/surrogate": b'{"id": "\\ud800"}',
}


class Stub:
    """A tiny HTTP server in front of a Target, honouring the kit's test-clock header and creation routes."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each keep-alive reply waits for a delayed ACK

            def log_message(self, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = dict(self.headers.items())
                stub.seen.append((self.command, self.path, headers, body))
                now = parse_timestamp(headers[NOW_HEADER])
                status, data = stub.answer(self.command, self.path, list(self.headers.items()), body, now)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):
                    return self.handle_one
                raise AttributeError(name)

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def answer(self, method: str, path: str, headers: list, body: bytes, now: datetime) -> tuple[int, bytes]:
        if path == "/_test/environments":
            return 201, json.dumps({"id": self.target.create_environment(now)}).encode()
        if path.startswith("/_test/environments/"):
            env, spec = path.split("/")[3], json.loads(body)
            try:
                work = self.target.create_work(env, spec["session_id"], spec["metadata"], now)
            except WorkstateError as exc:
                return 404, json.dumps({"error": exc.message}).encode()
            return 201, json.dumps({"id": work}).encode()
        if path == "/not-json":
            return 502, b"<html>bad gateway</html>"
        if path in ODD_REPLIES:
            return 200, ODD_REPLIES[path]
        response = self.target.send(Request(method, path, headers, body), now)
        return response.status, response.body


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub(ReferenceTarget())
    server.thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


def test_requests_carry_now_and_replies_become_responses(stub: Stub) -> None:
    with HttpTarget("127.0.0.1", stub.port) as target:
        env = target.create_environment(T)
        work = target.create_work(env, "sess_" + "1" * 32, {"job": "build"}, T)
        assert env.startswith("env_") and work.startswith("work_")
        method, path, headers, body = stub.seen[-1]
        assert (method, path) == ("POST", f"/_test/environments/{env}/work")
        assert headers[NOW_HEADER] == render_timestamp(T)
        assert json.loads(body) == {"session_id": "sess_" + "1" * 32, "metadata": {"job": "build"}}

        later = datetime(2026, 7, 1, 9, 0, 0, 123456, tzinfo=UTC)
        path = f"/api/v1/cloud/environments/{env}/work/{work}/ack"
        ack = Request("POST", path, {"Authorization": "Bearer t", "Worker-ID": "w1"})
        response = target.send(ack, later)
        assert response.status == 200
        assert response.json["state"] == "starting"
        assert response.json["acknowledged_at"] == render_timestamp(later)  # the server answered at the kit's now
        assert response.headers["content-type"] == "application/json"
        assert stub.seen[-1][2]["Worker-ID"] == "w1"

        refused = target.send(Request("POST", ack.target, [("Authorization", "Basic x")], b"{}"), later)
        assert refused.status == 401 and refused.json["error"]["type"] == "authentication_error"

        odd = target.send(Request("GET", "/not-json", {}), later)
        assert odd.status == 502 and odd.json == NotJson("<html>bad gateway</html>")


def test_a_failed_creation_is_a_typed_error(stub: Stub) -> None:
    with HttpTarget("127.0.0.1", stub.port) as target, pytest.raises(CreationFailed):
        target.create_work("env_" + "e" * 32 + "/x", "sess_" + "1" * 32, {}, T)


def test_the_kit_passes_a_correct_server_over_http(stub: Stub) -> None:
    run_lockstep(lambda: HttpTarget("127.0.0.1", stub.port), settings=settings(PASS, max_examples=15))
    assert len(stub.seen) > 10


def test_the_kit_catches_a_wrong_server_over_http() -> None:
    wrong = Stub(StopStoppedConflicts())  # one long-lived server, as in real life: each sequence makes new environments
    wrong.thread.start()
    try:
        with pytest.raises(Disagreement) as caught:
            run_lockstep(lambda: HttpTarget("127.0.0.1", wrong.port), settings=settings(FIND, max_examples=30))
    finally:
        wrong.http.shutdown()
        wrong.http.server_close()
    assert len(caught.value.requests) == 2  # stop, stop again
    assert "4.4 stop-stopped" in caught.value.rule or "4.4 force-stop-stopped" in caught.value.rule


def test_issue11_1_http_target_passes_unknown_keys_through(stub: Stub) -> None:
    with HttpTarget("127.0.0.1", stub.port) as target:
        response = target.send(Request("GET", "/extra-key", {}), T)
    assert response.status == 200 and response.body == ODD_REPLIES["/extra-key"]
    assert response.json == json.loads(ODD_REPLIES["/extra-key"])  # unchanged: a client reads unknown keys tolerantly


@pytest.mark.parametrize("path", ["/duplicate-key", "/nan", "/surrogate"])
def test_issue11_1_http_target_reads_json_syntax_strictly(stub: Stub, path: str) -> None:
    # Tolerant of keys, strict about JSON: a reply the codec refuses is kept as text, not silently mangled
    # (json.loads would keep the last of two "state" keys and read NaN as a float).
    with HttpTarget("127.0.0.1", stub.port) as target:
        response = target.send(Request("GET", path, {}), T)
    assert response.status == 200 and response.json == NotJson(ODD_REPLIES[path].decode())
