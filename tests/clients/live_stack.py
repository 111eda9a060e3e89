"""A reference server on loopback for the real clients (``anthropic``, ``qca-sdk``), with no rewriting.

:class:`Live` serves one :class:`~workstate.asgi.WorkstateApp` (a :class:`~workstate.api.Server` of the dialect,
a clock the test moves by hand, the trace recorded) under uvicorn in a background thread. In front of it sits
a router that sends ``/v1/sessions/...`` (which the ``anthropic`` EnvironmentWorker calls besides the work API)
to :class:`SessionsStandIn` and every other request, untouched, to the workstate app; the router also notes
each work request and its status, for the tests to count heartbeats and find stops.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import pytest
from helpers import T0

from workstate import Dialect, Policy
from workstate.api import Server
from workstate.asgi import WorkstateApp

INSTALL = "pip install '.[test]'"
LIMIT = 60.0  # every wait is bounded by this (generous: only "eventually" is asserted)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def need(module: str) -> Any:
    """Import ``module`` or skip naming the extra that installs it (CI fails on skips: the test extra has it)."""
    return pytest.importorskip(module, reason=f"{module} is not installed: {INSTALL}")


class Clock:
    """The server's clock: still until the test moves it (thread-safe)."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@attrs.frozen
class Seen:
    """One work request the router passed to the workstate app, and the status it got."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    status: int
    at: int  # its place in the order requests were answered
    reply: bytes = b""

    @property
    def answer(self) -> Any:
        """The response body's JSON value (None for no body)."""
        return json.loads(self.reply) if self.reply else None

    @property
    def operation(self) -> str:
        """``poll``, ``ack``, ``heartbeat``, ``stop``, ``stats``, ``list``, ``get`` or ``update``."""
        tail = self.path.rstrip("/").rsplit("/work", 1)[-1].strip("/").split("/")
        if tail == [""]:
            return "list"
        if tail[0] in ("poll", "stats"):
            return tail[0]
        if len(tail) == 1:
            return "get" if self.method == "GET" else "update"
        return tail[1]

    @property
    def work_id(self) -> str | None:
        tail = self.path.rsplit("/work/", 1)[-1].split("/")
        return tail[0] if tail[0].startswith("work_") else None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SessionsStandIn:
    """The ``/v1/sessions`` endpoints the EnvironmentWorker calls (see /tmp/research/REPORT.md, section 2).

    ``GET /v1/sessions/{id}`` answers an idle session; ``GET .../events?limit=...`` an empty page; the SSE
    stream ``GET .../events/stream`` ends the session (``session.status_terminated``) once ``release`` is set
    and at least ``beats_first`` heartbeats were answered 200, and holds it open until then (at most
    :data:`LIMIT`). ``streams`` counts the streams opened.
    """

    def __init__(self, live: Live) -> None:
        self.live = live
        self.release = threading.Event()
        self.release.set()
        self.closing = threading.Event()  # the server shuts down: a held stream ends at once
        self.beats_first = 1
        self.streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope["path"])
        parts = path.strip("/").split("/")  # v1 sessions ID [events [stream]]
        if path.endswith("/events/stream"):
            self.streams += 1
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            deadline = time.monotonic() + LIMIT
            while (
                time.monotonic() < deadline
                and not self.closing.is_set()
                and not (self.release.is_set() and self.live.count("heartbeat", status=200) >= self.beats_first)
            ):
                await asyncio.sleep(0.02)
            event = {"type": "session.status_terminated", "id": "sevt_1", "processed_at": "2026-07-01T08:15:01Z"}
            data = f"event: message\ndata: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        if path.endswith("/events"):
            reply: Any = {"data": [], "next_page": None} if scope["method"] == "GET" else {"data": []}
        else:
            reply = {
                "id": parts[2],
                "type": "session",
                "status": "idle",
                "agent": {"skills": []},
                "resources": [],
                "environment_id": "env_1",
            }
        body = json.dumps(reply).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class Live:
    """The workstate app of ``dialect`` (and the sessions stand-in) on 127.0.0.1, recording to ``trace``."""

    def __init__(self, dialect: Dialect, policy: Policy, trace: Path) -> None:
        uvicorn = need("uvicorn")
        self.dialect = dialect
        self.policy = policy
        self.clock = Clock()
        self.trace = trace
        self._record = trace.open("w", encoding="utf-8")
        self.server = Server(policy, dialect=dialect)
        self.app = WorkstateApp(self.server, dialect=dialect, record=self._record, clock=self.clock)
        self.standin = SessionsStandIn(self)
        self.seen: list[Seen] = []
        self._sessions = 0
        self._seen_lock = threading.Lock()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self._route, interface="asgi3", log_level="warning", lifespan="off", timeout_keep_alive=30
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]}, daemon=True)
        self._sock = sock
        self._thread.start()
        deadline = time.monotonic() + LIMIT
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.close()
                pytest.fail("uvicorn did not start")
            time.sleep(0.01)

    # --- the router: /v1/sessions/* to the stand-in, everything else untouched to the workstate app ---

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith("/v1/sessions/"):
            await self.standin(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        status: list[int] = []
        reply: list[bytes] = []

        async def watched_receive() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(bytes(message.get("body", b"")))
            return message

        async def watched_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            elif message["type"] == "http.response.body":
                reply.append(bytes(message.get("body", b"")))
                if not message.get("more_body"):  # noted before the client can read it: the order is the server's
                    self._note(scope, b"".join(chunks), status[0], b"".join(reply))
            await send(message)

        await self.app(scope, watched_receive, watched_send)

    def _note(self, scope: Scope, body: bytes, status: int, reply: bytes) -> None:
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        with self._seen_lock:
            at = len(self.seen)
            self.seen.append(Seen(str(scope["method"]), str(scope["path"]), query, body, status, at, reply))

    # --- what the tests read ---

    def requests(self, operation: str | None = None, work_id: str | None = None) -> list[Seen]:
        with self._seen_lock:
            found = list(self.seen)
        return [
            s
            for s in found
            if (operation is None or s.operation == operation) and (work_id is None or s.work_id == work_id)
        ]

    def count(self, operation: str, *, status: int | None = None, after: int = -1) -> int:
        return sum(1 for s in self.requests(operation) if (status is None or s.status == status) and s.at > after)

    def item(self, env: str, work_id: str) -> Any:
        with self.app.lock:
            for snapshot in self.server.snapshot():
                if snapshot.id == env:
                    return {i.id: i for i in snapshot.items}[work_id]
        raise KeyError(env)

    def create(self, items: int = 1) -> tuple[str, list[str]]:
        """A new environment with ``items`` queued items (sessions in the dialect's format)."""
        with self.app.lock:
            env = self.server.create_environment(now=self.clock())
        return env, self.add(env, items)

    def add(self, env: str, items: int, data_type: str = "session") -> list[str]:
        """``items`` new queued items in ``env`` (sessions, or health probes)."""
        with self.app.lock:
            now = self.clock()
            work = []
            for _ in range(items):
                self._sessions += 1
                session = self.dialect.new_id("session", self._sessions)
                work.append(self.server.create_work(env, session_id=session, now=now, data_type=data_type))
        return work

    def close(self) -> None:
        """Stop uvicorn and flush the trace (again: nothing)."""
        if self._record.closed:
            return
        self.standin.closing.set()
        self._uvicorn.should_exit = True
        self._thread.join(LIMIT)
        self.app.flush()
        self._record.close()
        self._sock.close()


def check_trace(trace: Path, dialect: Dialect, policy: Policy) -> Any:
    """``workstate check --dialect NAME TRACE`` with the server's policy, called the way the CLI calls it."""
    from workstate.tools.trace import check_lines, split_lines

    lines = split_lines(trace.read_bytes().decode("utf-8-sig", errors="surrogateescape"))
    assert any(line.strip() for line in lines), "the trace is empty"
    report = check_lines(lines, policy, dialect=dialect)
    bad = [f for f in report.findings if f.kind.value in ("divergence", "malformed")]
    assert report.exit_status == 0 and not bad, bad
    # and the command itself, with the same options
    from workstate.cli import main

    options = [f"--policy={name}={getattr(policy, name)}" for name in ("min_ttl_seconds", "default_ttl_seconds")]
    out = io.StringIO()
    assert main(["check", "--dialect", dialect.name, *options, str(trace)], out) == 0, out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("OK: "), out.getvalue()
    return report


async def until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    """Wait (bounded) until ``condition()`` holds."""

    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(wait(), limit)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")
