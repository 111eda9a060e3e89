"""The example HTTP server (examples/http_server.py): the reference server over real sockets."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from workstate.tools.trace import check_lines

ROOT = Path(__file__).resolve().parents[2]
BASE = "/api/v1/cloud/environments"
AUTH = {"Authorization": "Bearer t"}
CREATED = {"X-Workstate-Now": "2026-07-01T08:15:00Z"}  # the test clock also dates what the test routes create


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("workstate_example_http_server", ROOT / "examples" / "http_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load()


class Client:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def send(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any, str]:
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.connection.request(method, target, body=data, headers={**AUTH, **(headers or {})})
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw), response.getheader("Content-Type") or ""


@pytest.fixture
def recorded() -> Iterator[tuple[Any, Client, io.StringIO]]:
    record = io.StringIO()
    with example.serve(test_clock=True, record=record) as running:
        client = Client(running.url)
        yield running, client, record
        client.connection.close()


def _create(client: Client, kind: str | None = None) -> str:
    status, body, _ = client.send("POST", "/_test/environments", CREATED, {"kind": kind} if kind else None)
    assert status == 201
    return str(body["id"])


def _work(client: Client, env: str, session: str = "sess_" + "1" * 32) -> str:
    status, body, _ = client.send(
        "POST", f"/_test/environments/{env}/work", CREATED, {"session_id": session, "metadata": {"job": "build"}}
    )
    assert status == 201, body
    return str(body["id"])


def test_a_whole_round_trip_over_http(recorded: tuple[Any, Client, io.StringIO]) -> None:
    running, client, record = recorded
    env = _create(client)
    wid = _work(client, env)
    at = {"X-Workstate-Now": "2026-07-01T08:15:01Z"}
    status, item, content_type = client.send("GET", f"{BASE}/{env}/work/poll", {**at, "Worker-ID": "w1"})
    assert (status, item["id"], item["state"], content_type) == (200, wid, "queued", "application/json")
    status, body, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/ack", {**at, "Worker-ID": "w2"})
    assert (status, body["error"]["type"]) == (409, "invalid_request_error")
    status, item, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/ack", {**at, "Worker-ID": "w1"})
    assert (status, item["state"], item["acknowledged_at"]) == (200, "starting", "2026-07-01T08:15:01.000000Z")
    later = {"X-Workstate-Now": "2026-07-01T08:15:03Z", "Worker-ID": "w1"}
    status, beat, _ = client.send(
        "POST", f"{BASE}/{env}/work/{wid}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", later
    )
    assert (status, beat["state"], beat["last_heartbeat"], beat["ttl_seconds"]) == (
        200,
        "active",
        "2026-07-01T08:15:03.000000Z",
        60,
    )
    status, item, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/stop", later, {})
    assert (status, item["state"]) == (200, "stopping")
    status, beat, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/heartbeat", later)
    assert (status, beat["state"]) == (200, "stopping")
    status, item, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/stop", later)
    assert (status, item["state"]) == (200, "stopped")
    # the reference held it all, under the server's lock
    with running.lock:
        assert running.reference.work(env, wid).state.value == "stopped"
    # the recording of this session is a trace every answer of which is legal
    lines = record.getvalue().splitlines()
    assert len(lines) == 7
    report = check_lines(lines)
    assert report.exit_status == 0 and report.findings == () and report.exchanges == 7


def test_errors_are_envelopes(recorded: tuple[Any, Client, io.StringIO]) -> None:
    _, client, _ = recorded
    env = _create(client)
    status, body, content_type = client.send("GET", "/nowhere")
    assert (status, body["error"]["type"], content_type) == (404, "not_found_error", "application/json")
    status, body, _ = client.send("GET", f"{BASE}/{env}/work/poll?block_ms=0")
    assert (status, body["error"]["param"]) == (400, "block_ms")
    status, body, _ = client.send("GET", f"{BASE}/{env}/work/poll", {"Authorization": "Basic x"})
    assert (status, body["error"]["type"]) == (401, "authentication_error")
    status, body, _ = client.send(
        "GET", f"{BASE}/{env}/work/poll", {"X-Workstate-Now": "yesterday", "x-request-id": "r-1"}
    )
    assert (status, body["error"]["param"], body["request_id"]) == (400, "X-Workstate-Now", "r-1")
    status, body, _ = client.send("DELETE", f"{BASE}/{env}/work")
    assert status == 404


def test_the_test_routes(recorded: tuple[Any, Client, io.StringIO]) -> None:
    _, client, record = recorded
    cloud = _create(client, "cloud")
    status, body, _ = client.send("GET", f"{BASE}/{cloud}/work/poll")
    assert status == 400
    status, body, _ = client.send("POST", "/_test/environments", body={"kind": "moon"})
    assert (status, body["error"]["param"]) == (400, "kind")
    status, body, _ = client.send("POST", "/_test/environments", body="[1]")
    assert status == 400
    status, body, _ = client.send(
        "POST", f"/_test/environments/env_{'9' * 32}/work", body={"session_id": "sess_" + "1" * 32}
    )
    assert (status, body["error"]["type"]) == (404, "not_found_error")
    env = _create(client)
    status, body, _ = client.send("POST", f"/_test/environments/{env}/work", body={"session_id": "nope"})
    assert status == 400
    _work(client, env)
    status, body, _ = client.send("POST", f"/_test/environments/{env}/work", body={"session_id": "sess_" + "1" * 32})
    assert status == 409  # the session has a live item
    assert all("/_test/" not in line for line in record.getvalue().splitlines())  # not Work API traffic


def test_without_test_clock_the_header_and_routes_are_ignored() -> None:
    with example.serve() as running:
        client = Client(running.url)
        status, _, _ = client.send("POST", "/_test/environments")
        assert status == 404
        env = running.reference.create_environment(now=running.clock())
        status, body, _ = client.send("GET", f"{BASE}/{env}/work/poll", {"X-Workstate-Now": "yesterday"})
        assert (status, body) == (200, None)
        client.connection.close()


def test_the_command_line_serves_with_a_policy(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "http_server.py"),
            "--port",
            "0",
            "--test-clock",
            "--ttl",
            "2",
            "--timeout",
            "5",
            "--record",
            str(trace),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        client = Client(line.split()[-1])
        env = _create(client)
        wid = _work(client, env)
        at = {"X-Workstate-Now": "2026-07-01T08:15:01Z"}
        client.send("POST", f"{BASE}/{env}/work/{wid}/ack", at)
        status, beat, _ = client.send("POST", f"{BASE}/{env}/work/{wid}/heartbeat", at)
        assert (status, beat["ttl_seconds"]) == (200, 2)
        status, item, _ = client.send("GET", f"{BASE}/{env}/work/{wid}", {"X-Workstate-Now": "2026-07-01T08:15:04Z"})
        assert item["state"] == "queued"  # the short lease lapsed
        client.connection.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert len(trace.read_text().splitlines()) == 3
    policy = ["--policy", "default_ttl_seconds=2", "--policy", "min_ttl_seconds=2"]
    assert (
        subprocess.run(
            [sys.executable, "-m", "workstate", "check", str(trace), *policy], capture_output=True
        ).returncode
        == 0
    )


def test_the_command_line_refuses_a_bad_timeout() -> None:
    command = [sys.executable, str(ROOT / "examples" / "http_server.py"), "--port", "0", "--timeout", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--timeout must be a positive number" in result.stderr
