"""Any ASGI 3 application as a :class:`~workstate.testing.target.Target`, driven in process (no sockets).

:class:`AsgiTarget` turns each :class:`~workstate.api.Request` into one ASGI ``http`` call on a private event
loop, with the kit's ``now`` in ``X-Workstate-Now`` and the platform's creations through the test routes
(``POST /_test/environments``, ``POST /_test/environments/{env}/work``), exactly as
:class:`~workstate.testing.http.HttpTarget` sends them over HTTP. The app must serve the test clock and the
test routes (``WorkstateApp(test_clock=True)``; for another framework, see docs/testing-guide.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from .._time import render_timestamp
from ..api import Headers, Request, Response
from ..dialect import QODER, Dialect
from .http import NOW_HEADER, CreationFailed, checked_id, decode_reply

__all__ = ["AsgiApp", "AsgiTarget"]

_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[dict[str, Any], _Receive, _Send], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""


class AsgiTarget:
    """``app`` (an ASGI 3 application with the test clock and test routes) as a synchronous target.

    ``base_path`` prefixes every request target; ``authorization`` is what the creation routes send;
    ``dialect`` (default ``QODER``) is the one the app speaks: the created ids must be in its format.
    Close the target (or use it as a context manager) to close its event loop.
    """

    def __init__(
        self, app: Any, *, base_path: str = "", authorization: str = "Bearer workstate-test", dialect: Dialect = QODER
    ) -> None:
        self.app = app
        self.dialect = dialect
        self.base_path = base_path.rstrip("/")
        self.authorization = authorization
        self._loop = asyncio.new_event_loop()

    def send(self, request: Request, now: datetime) -> Response:
        raw = request.headers or ()
        pairs = raw.items() if isinstance(raw, Mapping) else raw
        headers = [(str(name), str(value)) for name, value in pairs]
        return self._exchange(request.method, request.target, headers, bytes(request.body), now)

    def create_environment(self, now: datetime) -> str:
        return checked_id(self.dialect, "env", self._create("/_test/environments", b"", now))

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
        body = json.dumps({"session_id": session_id, "metadata": dict(metadata)}).encode()
        return checked_id(self.dialect, "work", self._create(f"/_test/environments/{env}/work", body, now))

    def _create(self, path: str, body: bytes, now: datetime) -> str:
        headers = [("Authorization", self.authorization), ("Content-Type", "application/json")]
        response = self._exchange("POST", path, headers, body, now)
        found = response.json.get("id") if isinstance(response.json, dict) else None
        if not 200 <= response.status < 300 or not isinstance(found, str):
            raise CreationFailed(f"POST {path} answered {response.status} {response.body[:200]!r}, not {{'id': ...}}")
        return found

    def _exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, now: datetime
    ) -> Response:
        full = (self.base_path + target).encode("latin-1", "replace")
        path, _, query = full.partition(b"?")
        sent = [
            (name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for name, value in headers
            if name.lower() not in ("content-length", NOW_HEADER.lower())
        ]
        sent.append((NOW_HEADER.lower().encode(), render_timestamp(now).encode()))
        sent.append((b"content-length", str(len(body)).encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": sent,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        return self._loop.run_until_complete(_call(self.app, scope, body))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> AsgiTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> Response:
    sent_body = False
    started: dict[str, Any] = {}
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the app asks again: nothing more comes (it is cancelled with the call)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            parts.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    if "status" not in started:
        raise RuntimeError("the ASGI app returned without starting a response")
    data = b"".join(parts)
    headers = Headers([(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in started.get("headers", [])])
    return Response(int(started["status"]), decode_reply(data), data, headers)
