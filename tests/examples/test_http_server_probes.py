"""Issue 11, point 3: hostile probes of the example HTTP server (examples/http_server.py).

Every test talks to a real server on 127.0.0.1 over real sockets, mostly byte by byte (``http.client``
would not send what a hostile client sends). Every read is bounded by a socket timeout and a byte cap,
and nothing asserts a duration: each test asserts what was answered, what was executed and whether
the connection was closed.
"""

from __future__ import annotations

import errno
import http.client
import io
import json
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_http_server import example

from workstate.api import Request, Server

T = datetime(2026, 7, 1, 8, 15, tzinfo=UTC)
BASE = "/api/v1/cloud/environments"
AUTH = ("Authorization", "Bearer t")
SESSION = "sess_" + "1" * 32
READ_TIMEOUT = 5.0  # the longest a test waits for bytes that should come (or for a close that should come)


def _active(server: Server) -> tuple[str, str]:
    """An environment and an item held ``active`` by w1 (polled, acked and heartbeated at T)."""
    env = server.create_environment(now=T)
    wid = server.create_work(env, session_id=SESSION, now=T)
    w1 = {"Authorization": "Bearer t", "Worker-ID": "w1"}
    for method, target in (
        ("GET", f"{BASE}/{env}/work/poll"),
        ("POST", f"{BASE}/{env}/work/{wid}/ack"),
        ("POST", f"{BASE}/{env}/work/{wid}/heartbeat"),
    ):
        assert server.handle(Request(method, target, w1), T).status == 200
    assert _state_of(server, env, wid) == "active"
    return env, wid


def _state_of(server: Server, env: str, wid: str) -> str:
    item = server.work(env, wid)
    assert item is not None
    return item.state.value


def _state(running: Any, env: str, wid: str) -> str:
    with running.lock:
        return _state_of(running.reference, env, wid)


@pytest.fixture
def active() -> Iterator[tuple[Any, str, str]]:
    server = Server()
    env, wid = _active(server)
    with example.serve(server, clock=lambda: T, test_clock=True) as running:
        yield running, env, wid


# --- raw HTTP ----------------------------------------------------------------------------------------


def _raw(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


def _forced_stop(env: str, wid: str) -> bytes:
    body = b'{"force":true}'
    return _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH, ("Content-Length", str(len(body)))], body)


def _connect(running: Any) -> socket.socket:
    return socket.create_connection((running.host, running.port), timeout=READ_TIMEOUT)


def _read_until_close(sock: socket.socket, limit: int = 1 << 23) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (True) or falls silent (False)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            return data, True
        except TimeoutError:
            return data, False
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``data`` (status, headers with lower-case names, body by Content-Length)."""
    found = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            break
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        length = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return found


def _exchange(running: Any, data: bytes, *, half_close: bool = False) -> tuple[list[int], bool, list[Any]]:
    """Send ``data`` on a new connection: the statuses answered, whether the server closed, the bodies."""
    with _connect(running) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received, closed = _read_until_close(sock)
    answers = _responses(received)
    for _, headers, _ in answers[:-1]:
        assert headers.get("connection") != "close"
    return [status for status, _, _ in answers], closed, [json.loads(body) for _, _, body in answers]


def _refused(running: Any, data: bytes) -> tuple[int, Any]:
    """Send ``data``: the server answers once, says ``Connection: close``, and closes (status, body)."""
    with _connect(running) as sock:
        sock.sendall(data)
        received, closed = _read_until_close(sock)
    answers = _responses(received)
    assert [(headers.get("connection"), closed) for _, headers, _ in answers] == [("close", True)], answers
    status, _, body = answers[0]
    return status, json.loads(body)


# --- 1. framing: a body is read by its one Content-Length, or the connection is refused and closed ----


def test_issue11_3_oversized_body_is_not_smuggled(active: tuple[Any, str, str]) -> None:
    running, env, wid = active
    outer = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH, ("Content-Length", str((1 << 20) + 1))])
    status, body = _refused(running, outer + _forced_stop(env, wid))
    assert (status, body["error"]["type"]) == (413, "invalid_request_error")
    assert _state(running, env, wid) == "active"  # the forced stop hidden in the body never ran


def test_issue11_3_chunked_body_is_refused_and_closed(active: tuple[Any, str, str]) -> None:
    running, env, wid = active  # refused (411 Length Required), not supported: send Content-Length
    outer = _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH, ("Transfer-Encoding", "chunked")])
    chunked = b'e\r\n{"force":true}\r\n0\r\n\r\n'
    status, body = _refused(running, outer + chunked + _forced_stop(env, wid))
    assert (status, body["error"]["param"]) == (411, "Transfer-Encoding")
    assert _state(running, env, wid) == "active"  # neither a graceful stop nor the forced one ran


@pytest.mark.parametrize("first_is_zero", [True, False])
def test_issue11_3_two_differing_content_lengths_are_refused(active: tuple[Any, str, str], first_is_zero: bool) -> None:
    running, env, wid = active
    hidden = _forced_stop(env, wid)
    lengths = ["0", str(len(hidden))] if first_is_zero else [str(len(hidden)), "0"]
    outer = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH, *(("Content-Length", n) for n in lengths)])
    status, body = _refused(running, outer + hidden)
    assert (status, body["error"]["param"]) == (400, "Content-Length")
    assert _state(running, env, wid) == "active"


def test_issue11_3_the_same_content_length_twice_is_one_length(active: tuple[Any, str, str]) -> None:
    running, env, wid = active
    hidden = _forced_stop(env, wid)
    lengths = [("Content-Length", str(len(hidden))), ("Content-Length", f"{len(hidden)} ")]
    item = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH])
    first = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH, *lengths])
    statuses, closed, _ = _exchange(running, first + hidden + item, half_close=True)
    assert (statuses, closed) == ([400, 200], True)  # a get takes no body: the hidden request was that body
    assert _state(running, env, wid) == "active"


@pytest.mark.parametrize("length", ["+14", "1_4", "14, 14", "0x0e", "-0", "", "\xb9\xb4", "14.0", "9" * 5000])
def test_issue11_3_content_length_must_be_digits(active: tuple[Any, str, str], length: str) -> None:
    running, env, wid = active
    stop = _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH, ("Content-Length", length)], b'{"force":true}')
    status, body = _refused(running, stop)
    assert status == (413 if length.startswith("99") else 400)
    assert body["error"]["param"] == "Content-Length"
    assert _state(running, env, wid) == "active"


def test_issue11_3_a_header_block_with_a_non_header_line_is_refused(active: tuple[Any, str, str]) -> None:
    # http.server's parser drops every header after a line that is not one, Content-Length included
    running, env, wid = active
    hidden = _forced_stop(env, wid)
    outer = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH]).removesuffix(b"\r\n")
    outer += f"not a header\r\nContent-Length: {len(hidden)}\r\n\r\n".encode()
    status, _ = _refused(running, outer + hidden)
    assert status == 400
    assert _state(running, env, wid) == "active"


def test_issue11_3_the_same_connection_goes_on_after_a_well_framed_request(active: tuple[Any, str, str]) -> None:
    running, env, wid = active  # the framing rules refuse what is ambiguous, not what is pipelined
    item = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH, ("Content-Length", "0")])
    statuses, closed, _ = _exchange(running, item + _forced_stop(env, wid) + item, half_close=True)
    assert (statuses, closed) == ([200, 200, 200], True)
    assert _state(running, env, wid) == "stopped"


# --- 2. a body that never arrived is never executed -------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b'{"force":tr'])
def test_issue11_3_short_body_is_not_executed(active: tuple[Any, str, str], sent: bytes) -> None:
    running, env, wid = active
    stop = _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH, ("Content-Length", "14")], sent)
    with _connect(running) as sock:
        sock.sendall(stop)
        sock.shutdown(socket.SHUT_WR)  # a clean close before the body is complete
        received, closed = _read_until_close(sock)
    answers = _responses(received)
    assert [(status, headers.get("connection")) for status, headers, _ in answers] == [(400, "close")]
    assert closed and "body" in json.loads(answers[0][2])["error"]["message"]
    assert _state(running, env, wid) == "active"  # not a graceful stop, not anything


def test_issue11_3_truncated_header_block_is_not_executed(active: tuple[Any, str, str]) -> None:
    running, env, wid = active
    stop = _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH]).removesuffix(b"\r\n")  # no blank line
    with _connect(running) as sock:
        sock.sendall(stop)
        sock.shutdown(socket.SHUT_WR)  # the client is gone before its header block ended
        received, closed = _read_until_close(sock)
    assert [status for status, _, _ in _responses(received)] == [400] and closed
    assert _state(running, env, wid) == "active"


def test_issue11_3_no_100_continue_invites_a_refused_body(active: tuple[Any, str, str]) -> None:
    running, env, wid = active
    expect = [AUTH, ("Expect", "100-continue"), ("Content-Length", str(10 << 20))]
    status, _ = _refused(running, _raw("POST", f"{BASE}/{env}/work/{wid}/stop", expect))
    assert status == 413  # the one answer: no "100 Continue" before it
    with _connect(running) as sock:  # a body that is not refused is invited as before
        sock.sendall(_raw("POST", f"{BASE}/{env}/work/{wid}/stop", [*expect[:2], ("Content-Length", "14")]))
        assert sock.recv(1 << 16).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b'{"force":true}')
        sock.shutdown(socket.SHUT_WR)
        received, _ = _read_until_close(sock)
    assert [status for status, _, _ in _responses(received)] == [200]
    assert _state(running, env, wid) == "stopped"


# --- 3. answers the example builds itself are built outside the lock, and short ---------------------------


def _refusals(env: str) -> list[tuple[bytes, int]]:
    """Requests the example server refuses itself, each with the status it owes."""
    create = "/_test/environments"
    nested = b"[" * 500_000 + b"]" * 500_000
    big_key = json.dumps({"x" * 1_000_000: 1}).encode()

    def post(target: str, body: bytes) -> bytes:
        return _raw("POST", target, [AUTH, ("Content-Length", str(len(body)))], body)

    return [
        (post(create, nested), 400),
        (post(create, big_key), 400),
        (post(create, json.dumps({"kind": "m" * 1_000_000}).encode()), 400),
        (post(f"{create}/{env}/work", json.dumps({"session_id": "s" * 1_000_000}).encode()), 400),
        (post(f"{create}/{env}/work", json.dumps({"session_id": SESSION, "metadata": [1] * 100}).encode()), 400),
        (post(f"{create}/env_nope/work", json.dumps({"session_id": SESSION}).encode()), 404),
        (_raw("GET", f"{BASE}/{env}/work/poll", [AUTH, ("X-Workstate-Now", "y" * 60_000)]), 400),
        (_raw("POST", f"{BASE}/{env}/work", [AUTH, ("Content-Length", "1x")]), 400),
        (_raw("POST", f"{BASE}/{env}/work", [AUTH, ("Content-Length", str(10 << 20))]), 413),
        (_raw("POST", f"{BASE}/{env}/work", [AUTH, ("Transfer-Encoding", "chunked")]), 411),
    ]


def test_issue11_3_error_answers_are_built_outside_the_lock(active: tuple[Any, str, str]) -> None:
    running, env, _ = active
    with running.lock:  # the server's one lock is held for the whole test: only Server calls need it
        for data, status in _refusals(env):
            statuses, _, _ = _exchange(running, data, half_close=True)
            assert statuses == [status], data[:80]


def test_issue11_3_what_the_example_echoes_is_capped(active: tuple[Any, str, str]) -> None:
    running, env, _ = active
    for data, status in _refusals(env):
        statuses, _, bodies = _exchange(running, data, half_close=True)
        assert statuses == [status]
        error = bodies[0]["error"]
        assert len(error["message"]) <= 300 and len(error.get("param") or "") <= 300, error


class _LockProbe(io.StringIO):
    """A record file that notes, for every write, whether the server's lock was held."""

    def __init__(self) -> None:
        super().__init__()
        self.lock: Any = None
        self.held: list[bool] = []

    def write(self, text: str) -> int:
        self.held.append(self.lock.locked())
        return super().write(text)


def test_issue11_3_recording_is_written_outside_the_lock() -> None:
    server = Server()
    env, wid = _active(server)
    record = _LockProbe()
    with example.serve(server, clock=lambda: T, record=record) as running:
        record.lock = running.lock
        body = json.dumps({"metadata": {"k": "v" * 400}, "padding": "x" * 900_000}).encode()
        update = _raw("POST", f"{BASE}/{env}/work/{wid}", [AUTH, ("Content-Length", str(len(body)))], body)
        statuses, _, _ = _exchange(running, update + _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH]), half_close=True)
    assert statuses == [400, 200]
    assert len(record.getvalue().splitlines()) == 2
    assert record.held and not any(record.held)


class _Ordered(Server):
    """A reference server that remembers the order it handled requests in (by x-request-id)."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def handle(self, request: Request, now: datetime) -> Any:
        self.order.append(dict(request.headers or {})["x-request-id"])  # type: ignore[arg-type]
        return super().handle(request, now)


def test_issue11_3_recording_outside_the_lock_keeps_the_handling_order() -> None:
    server = _Ordered()
    env = server.create_environment(now=T)
    record = io.StringIO()
    with example.serve(server, clock=lambda: T, record=record) as running:

        def client(number: int) -> None:
            connection = http.client.HTTPConnection(running.host, running.port, timeout=READ_TIMEOUT)
            for request in range(25):
                headers = {"Authorization": "Bearer t", "x-request-id": f"r{number}-{request}"}
                connection.request("GET", f"{BASE}/{env}/work/nope", headers=headers)
                assert connection.getresponse().read()
            connection.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    recorded = [json.loads(line)["request"]["headers"]["x-request-id"] for line in record.getvalue().splitlines()]
    assert len(recorded) == 200 and recorded == server.order


# --- 4. timeouts, the listen backlog, HEAD ----------------------------------------------------------------


def test_issue11_3_idle_and_slow_connections_time_out() -> None:
    server = Server()
    env, wid = _active(server)
    with example.serve(server, clock=lambda: T, timeout=0.5) as running:
        with _connect(running) as idle:
            assert _read_until_close(idle) == (b"", True)  # nothing sent: closed, its thread freed
        stop = _raw("POST", f"{BASE}/{env}/work/{wid}/stop", [AUTH, ("Content-Length", "14")], b'{"for')
        statuses, closed, _ = _exchange(running, stop)  # a body that stalls
        assert (statuses, closed) == ([408], True)
        assert _state(running, env, wid) == "active"
        assert running.timeout == 0.5


def test_issue11_3_the_listen_backlog_holds_a_burst() -> None:
    burst = 200
    with example.serve() as running:
        running._httpd.shutdown()  # the accept loop stops; the socket still listens with its backlog
        sockets = []
        try:
            for _ in range(burst):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sockets.append(sock)
                assert sock.connect_ex((running.host, running.port)) in (0, errno.EINPROGRESS)
            connected: set[socket.socket] = set()
            for _ in range(20):  # bounded: every select waits at most a quarter of a second
                _, writable, _ = select.select([], [s for s in sockets if s not in connected], [], 0.25)
                connected.update(s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
                if len(connected) == burst:
                    break
            assert len(connected) == burst  # the kernel queued every one (a backlog of 5 queues 6)
        finally:
            for sock in sockets:
                sock.close()


def test_issue11_3_head_sends_no_body(active: tuple[Any, str, str]) -> None:
    running, env, wid = active
    connection = http.client.HTTPConnection(running.host, running.port, timeout=READ_TIMEOUT)
    try:
        connection.request("HEAD", f"{BASE}/{env}/work/{wid}", headers={"Authorization": "Bearer t"})
        head = connection.getresponse()
        assert (head.status, head.read()) == (404, b"")  # a HEAD is no route of the API: the reference's 404
        connection.request("GET", f"{BASE}/{env}/work/{wid}", headers={"Authorization": "Bearer t"})
        reply = connection.getresponse()  # no left-over body is read as this status line
        assert (reply.status, json.loads(reply.read())["state"]) == (200, "active")
    finally:
        connection.close()
    with _connect(running) as sock:
        sock.sendall(_raw("HEAD", f"{BASE}/{env}/work/{wid}", [AUTH]))
        sock.shutdown(socket.SHUT_WR)
        received, closed = _read_until_close(sock)
    head_line, _, rest = received.partition(b"\r\n")
    assert (head_line, closed) == (b"HTTP/1.1 404 Not Found", True)
    assert rest.endswith(b"\r\n\r\n") and rest.count(b"\r\n\r\n") == 1  # the headers, and not a byte more


# --- 5. --record writes what was received, or refuses what the trace format cannot hold -------------------


def _check(trace: Path) -> int:
    return subprocess.run([sys.executable, "-m", "workstate", "check", str(trace)], capture_output=True).returncode


def _recorded(trace: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]


def test_issue11_3_record_keeps_duplicate_headers(tmp_path: Path) -> None:
    server = Server()
    env = server.create_environment(now=T)
    wid = server.create_work(env, session_id=SESSION, now=T)
    trace = tmp_path / "trace.jsonl"
    ack = f"{BASE}/{env}/work/{wid}/ack"
    requests = [
        _raw("GET", f"{BASE}/{env}/work/poll", [AUTH, ("Worker-ID", "w1")]),
        _raw("POST", ack, [AUTH, ("Worker-ID", "w1"), ("Worker-ID", "w2")]),  # 400: given twice, differently
        _raw("GET", "/nowhere", [AUTH, ("x-request-id", "a"), ("X-Request-ID", "b"), ("x-request-id", "c")]),
        _raw("POST", ack, [AUTH, ("Worker-ID", "w1"), ("Worker-ID", "w1")]),  # the same value twice is one
    ]
    with trace.open("w", encoding="utf-8") as record, example.serve(server, clock=lambda: T, record=record) as running:
        statuses, _, bodies = _exchange(running, b"".join(requests), half_close=True)
    assert statuses == [200, 400, 404, 200]
    assert bodies[2]["request_id"].startswith("req_")  # three different ids: none is echoed
    assert _check(trace) == 0  # judged legal: every answer is the one the reference owes the request as sent
    lines = _recorded(trace)
    assert [line["response"]["status"] for line in lines] == statuses
    headers = [list(line["request"]["headers"].items()) for line in lines]
    assert [value for name, value in headers[1] if name.lower() == "worker-id"] == ["w1", "w2"]
    assert [value for name, value in headers[2] if name.lower() == "x-request-id"] == ["a", "b", "c"]
    assert [name for name, _ in headers[0]] == ["Host", "Authorization", "Worker-ID"]  # all of them, as sent


def test_issue11_3_record_refuses_what_the_trace_cannot_hold(tmp_path: Path) -> None:
    server = Server()
    env, wid = _active(server)
    trace = tmp_path / "trace.jsonl"
    bad_utf8 = b'{"metadata": {"k": "\xff"}}'
    refused = [
        _raw("POST", f"{BASE}/{env}/work/{wid}", [AUTH, ("Content-Length", str(len(bad_utf8)))], bad_utf8),
        _raw("OPTIONS", "*", [AUTH]),
        _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH, ("X", "1"), ("x", "2"), ("X", "3")]),  # X has 2 spellings
    ]
    item = _raw("GET", f"{BASE}/{env}/work/{wid}", [AUTH])
    with trace.open("w", encoding="utf-8") as record, example.serve(server, clock=lambda: T, record=record) as running:
        statuses, _, bodies = _exchange(running, b"".join(refused) + item, half_close=True)
    assert statuses == [400, 400, 400, 200]
    assert all("trace" in body["error"]["message"] for body in bodies[:3])
    assert dict(server.work(env, wid).metadata) == {}  # type: ignore[union-attr]  # the update never ran
    assert [line["response"]["status"] for line in _recorded(trace)] == [200]
    assert _check(trace) == 0


def test_issue11_3_record_keeps_the_target_as_sent(tmp_path: Path) -> None:
    server = Server()
    env, wid = _active(server)
    trace = tmp_path / "trace.jsonl"
    doubled = f"/{BASE}/{env}/work/{wid}"  # http.server alone rewrites a leading // to /
    with trace.open("w", encoding="utf-8") as record, example.serve(server, clock=lambda: T, record=record) as running:
        statuses, _, _ = _exchange(running, _raw("GET", doubled, [AUTH]), half_close=True)
    assert statuses == [404]  # the reference's answer to the target as sent: no such route
    assert [line["request"]["target"] for line in _recorded(trace)] == [doubled]
    assert _check(trace) == 0
