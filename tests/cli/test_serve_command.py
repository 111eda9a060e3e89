"""Issue 15, points 2 and 5: ``workstate serve`` as a real process on 127.0.0.1 (port 0), and the probes that
fooled the example server, against it.

Each test starts the command, reads ``listening on http://HOST:PORT`` from its output, talks to it over real
sockets (raw bytes where a polite client would not send what a hostile one sends) and stops it with a
signal. Every wait is bounded (socket timeouts, process timeouts, byte caps); nothing asserts a duration:
the tests assert what was answered, what was executed (the item's state, read back) and how many of the
other clients' requests were answered.
"""

from __future__ import annotations

import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workstate import ANTHROPIC
from workstate.asgi import MAX_BODY

BASE = "/api/v1/cloud/environments"
AUTH = {"Authorization": "Bearer t"}
SESSION = "sess_" + "1" * 32
TIMEOUT = 10.0  # the longest a single wait on an answer lasts
STARTUP = 60.0  # the longest the command may take to print its listening line (a loaded machine is slow to import)


class Serving:
    """A running ``workstate serve``: ``host``, ``port``, ``envs`` (seeded), ``lines`` (its output so far)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workstate", "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.envs: list[str] = []
        self._listening: queue.Queue[str | None] = queue.Queue()
        # One thread reads every line (a select() on the pipe would miss lines already in the reader's buffer).
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            address = self._listening.get(timeout=STARTUP)
        except queue.Empty:
            address = None
        if address is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"workstate serve did not print its listening line: {self.lines} {stderr[-2000:]}")
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if line.startswith("environment "):
                self.envs.append(line.split()[1])
            if line.startswith("listening on http://"):
                self._listening.put(line.removeprefix("listening on http://"))
        self._listening.put(None)

    def request(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            connection.request(method, target, body=body, headers={**AUTH, **(headers or {})})
            reply = connection.getresponse()
            return reply.status, json.loads(reply.read() or b"null")
        finally:
            connection.close()

    def create(self, env: str, session: str = SESSION) -> str:
        body = json.dumps({"session_id": session}).encode()
        status, reply = self.request("POST", f"/_test/environments/{env}/work", body)
        assert status == 201
        return str(reply["id"])

    def active(self) -> tuple[str, str]:
        """An item of the first seeded environment held ``active`` by w1."""
        env = self.envs[0]
        wid = self.create(env)
        w1 = {"Worker-ID": "w1"}
        assert self.request("GET", f"{BASE}/{env}/work/poll", headers=w1)[1]["id"] == wid
        assert self.request("POST", f"{BASE}/{env}/work/{wid}/ack", headers=w1)[0] == 200
        assert self.request("POST", f"{BASE}/{env}/work/{wid}/heartbeat", headers=w1)[0] == 200
        return env, wid

    def state(self, env: str, wid: str) -> str:
        status, reply = self.request("GET", f"{BASE}/{env}/work/{wid}")
        assert status == 200
        return str(reply["state"])

    def stop(self, how: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(timeout=TIMEOUT)
        finally:
            self._reader.join(timeout=TIMEOUT)


@pytest.fixture
def serving() -> Iterator[Serving]:
    running = Serving("--test-routes", "--seed-environments", "2")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=TIMEOUT)


def _raw(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


def _forced_stop(env: str, wid: str) -> bytes:
    body = b'{"force": true}'
    headers = [("Authorization", "Bearer t"), ("Content-Length", str(len(body)))]
    return _raw("POST", f"{BASE}/{env}/work/{wid}/stop", headers, body)


def _exchange(running: Serving, data: bytes, *, half_close: bool = True) -> bytes:
    """Send ``data`` on a fresh connection and read what comes back until the server closes (bounded)."""
    sock = socket.create_connection((running.host, running.port), timeout=TIMEOUT)
    got = b""
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused and closed before everything was sent: what it answered is still read
        while len(got) < 1 << 20:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        sock.close()
    return got


def _statuses(reply: bytes) -> list[int]:
    return [int(line.split()[1]) for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


# --- the command ------------------------------------------------------------------------------------------


def test_serve_prints_the_seeded_environments_and_the_real_port_then_one_log_line_per_request(
    serving: Serving,
) -> None:
    assert len(serving.envs) == 2 and all(env.startswith("env_") for env in serving.envs)
    assert serving.port > 0 and serving.lines[2] == f"listening on http://127.0.0.1:{serving.port}"
    assert serving.request("GET", f"{BASE}/{serving.envs[0]}/work/poll")[0] == 200
    assert serving.request("GET", f"{BASE}/{serving.envs[1]}/work/stats")[0] == 200
    assert serving.request("GET", "/openapi.json")[1]["openapi"] == "3.1.0"
    assert serving.stop() == 0
    log = [line for line in serving.lines if line.startswith("127.0.0.1:")]
    assert len(log) == 3
    assert f'"GET {BASE}/{serving.envs[0]}/work/poll" 200' in log[0]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_shuts_down_cleanly_and_flushes_the_record(tmp_path: Path, how: int) -> None:
    record = tmp_path / "trace.jsonl"
    running = Serving("--test-clock", "--record", str(record), "--seed-environments", "1")
    env = running.envs[0]
    for _ in range(5):
        assert running.request("GET", f"{BASE}/{env}/work/poll")[0] == 200
    assert running.stop(how) == 0
    header, *lines = record.read_text(encoding="utf-8").splitlines()
    assert set(json.loads(header)) == {"workstate_trace"}  # the policy and dialect served (docs/trace.md)
    assert len(lines) == 5 and all(json.loads(line)["response"]["status"] == 200 for line in lines)
    from workstate.tools.trace import check_lines

    assert check_lines([header, *lines]).exit_status == 0


def test_the_policy_option_reaches_the_server() -> None:
    running = Serving("--test-routes", "--seed-environments", "1", "--policy", "conflict_error_type=conflict_error")
    try:
        env, wid = running.active()
        status, reply = running.request("POST", f"{BASE}/{env}/work/{wid}/ack", headers={"Worker-ID": "w2"})
        assert status == 409 and reply["error"]["type"] == "conflict_error"
    finally:
        assert running.stop() == 0


def test_the_listening_socket_says_it_is_tcp_so_asyncio_turns_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0, every keep-alive
    answer waited for the client's delayed ACK (found by the benchmark: 44 ms per request)."""
    from workstate.cli.serve import _listener

    sock = _listener("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_bad_arguments_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workstate", "serve", "--port", "0", "--policy", "nonsense=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--policy" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "workstate", "serve", "--port", "0", "--dialect", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "dialect" in done.stderr


def test_without_uvicorn_a_one_line_error_names_the_extra() -> None:
    code = "import sys; sys.modules['uvicorn'] = None; from workstate.cli import main; sys.exit(main(['serve']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["workstate serve: uvicorn is not installed: pip install 'workstate[serve]'"]


# --- the probes (issue 11's, against workstate serve) ------------------------------------------------------


def test_smuggling_in_an_oversized_body_is_never_executed(serving: Serving) -> None:
    env, wid = serving.active()
    smuggled = _forced_stop(env, wid)
    body = smuggled * 4 + b"x" * (MAX_BODY + 1 - 4 * len(smuggled))
    head = _raw("POST", f"{BASE}/{env}/work/{wid}", [("Authorization", "Bearer t"), ("Content-Length", str(len(body)))])
    reply = _exchange(serving, head + body)
    assert _statuses(reply) == [413]
    assert serving.state(env, wid) == "active"


def test_smuggling_behind_a_duplicate_content_length_is_never_executed(serving: Serving) -> None:
    env, wid = serving.active()
    smuggled = _forced_stop(env, wid)
    body = b"{}" + smuggled
    for lengths in ((2, len(body)), (len(body), 2)):
        headers = [("Authorization", "Bearer t"), *(("Content-Length", str(n)) for n in lengths)]
        reply = _exchange(serving, _raw("POST", f"{BASE}/{env}/work/{wid}", headers, body))
        assert _statuses(reply) == [400], reply[:300]
    assert serving.state(env, wid) == "active"


def _pollers(serving: Serving, env: str, clients: int, polls: int) -> tuple[list[threading.Thread], list[int]]:
    answered: list[int] = []

    def poll() -> None:
        connection = http.client.HTTPConnection(serving.host, serving.port, timeout=TIMEOUT)
        try:
            for _ in range(polls):
                connection.request("GET", f"{BASE}/{env}/work/poll", headers={**AUTH, "Worker-ID": "poller"})
                reply = connection.getresponse()
                reply.read()
                answered.append(reply.status)
        finally:
            connection.close()

    return [threading.Thread(target=poll) for _ in range(clients)], answered


def test_a_body_that_never_arrives_is_never_executed_and_others_are_answered(serving: Serving) -> None:
    env, wid = serving.active()
    other = serving.envs[1]
    stalled = []
    for _ in range(3):  # three connections each promise a stop's body and send none of it
        sock = socket.create_connection((serving.host, serving.port), timeout=TIMEOUT)
        headers = [("Authorization", "Bearer t"), ("Content-Length", "15")]
        sock.sendall(_raw("POST", f"{BASE}/{env}/work/{wid}/stop", headers))
        stalled.append(sock)
    threads, answered = _pollers(serving, other, clients=4, polls=25)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answered == [200] * 100
    for sock in stalled:
        sock.sendall(b'{"for')  # part of the body, then the client goes away
        sock.close()
    assert serving.state(env, wid) == "active"


def test_one_megabyte_nested_bodies_from_three_clients_while_others_poll(serving: Serving) -> None:
    env, wid = serving.active()
    other = serving.envs[1]
    depth = (1_000_000 - 20) // 2
    nested = b'{"metadata": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(nested) <= MAX_BODY
    refused: list[int] = []

    def hostile() -> None:
        for _ in range(3):
            status, reply = serving.request("POST", f"{BASE}/{env}/work/{wid}", nested)
            refused.append(status)
            assert reply["type"] == "error"

    attackers = [threading.Thread(target=hostile) for _ in range(3)]
    threads, answered = _pollers(serving, other, clients=4, polls=25)
    for thread in [*attackers, *threads]:
        thread.start()
    for thread in [*attackers, *threads]:
        thread.join(timeout=120)
    assert refused == [400] * 9
    assert answered == [200] * 100
    status, item = serving.request("GET", f"{BASE}/{env}/work/{wid}")
    assert status == 200 and item["state"] == "active" and item["metadata"] == {}


def test_after_the_probes_the_server_still_serves_lifecycles(serving: Serving) -> None:
    env, wid = serving.active()
    _exchange(serving, _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [("Content-Length", "99999999999")]))
    _exchange(serving, b"GARBAGE / HTTP/9.9\r\n\r\n")
    assert serving.request("POST", f"{BASE}/{env}/work/{wid}/stop")[1]["state"] == "stopping"
    assert serving.request("POST", f"{BASE}/{env}/work/{wid}/stop")[1]["state"] == "stopped"


def test_serve_speaks_the_anthropic_dialect_over_loopback() -> None:
    """``workstate serve --dialect anthropic``: the peer's paths, worker header, ids, 204 stop (no content type),
    the stopped heartbeat report and the DETAILS error envelope with its ``request-id`` header, over real HTTP."""
    running = Serving("--dialect", "anthropic", "--test-routes", "--seed-environments", "1")
    try:
        env = running.envs[0]
        assert ANTHROPIC.valid_id("env", env)
        wid = running.create(env, session="session_01Abc")
        assert ANTHROPIC.valid_id("work", wid)
        peer = {"Anthropic-Worker-ID": "w1", "anthropic-beta": "managed-agents-2026-04-01"}
        status, item = running.request(
            "GET", ANTHROPIC.path(env, operation="poll") + "?block_ms=999&beta=true", b"", peer
        )
        assert (status, item["id"], item["secret"], item["data"]) == (
            200,
            wid,
            None,
            {"type": "session", "id": "session_01Abc"},
        )
        assert running.request("POST", ANTHROPIC.path(env, wid, "ack"), headers={"Anthropic-Worker-ID": "w2"})[0] == 200
        status, beat = running.request("POST", ANTHROPIC.path(env, wid, "heartbeat"))
        assert (status, beat["state"], beat["lease_extended"]) == (200, "active", True)

        connection = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
        try:
            connection.request(
                "POST", ANTHROPIC.path(env, wid, "stop"), body=b'{"force":true}', headers={"x-api-key": "k"}
            )
            reply = connection.getresponse()
            assert (reply.status, reply.read(), reply.getheader("content-type")) == (204, b"", None)
            connection.request("POST", ANTHROPIC.path(env, wid, "stop"), headers=AUTH)
            reply = connection.getresponse()
            refused = json.loads(reply.read())
            assert reply.status == 409 and refused["error"]["type"] == "invalid_request_error"
            assert reply.getheader("request-id") == refused["request_id"]
        finally:
            connection.close()
        status, report = running.request("POST", ANTHROPIC.path(env, wid, "heartbeat"))
        assert (status, report["state"], report["lease_extended"]) == (200, "stopped", False)
        status, page = running.request("GET", ANTHROPIC.path(env) + "?limit=1")
        assert status == 200 and set(page) == {"data", "next_page"} and page["data"][0]["id"] == wid
    finally:
        assert running.stop() == 0
