"""A Work API server over HTTP as a :class:`~workstate.testing.target.Target` (standard library only).

:class:`HttpTarget` sends each :class:`~workstate.api.Request` with :mod:`http.client` and turns
the reply into a :class:`~workstate.api.Response` (its body read as strict JSON with
:func:`workstate.codec.loads`, keys a server adds kept as they came). The kit's simulated clock reaches the server
through one request header, and the platform's creation hooks through two test-only routes:

- ``X-Workstate-Now: <RFC 3339 UTC>`` on every request (rendered by
  :func:`workstate.render_timestamp`): a server started in test-clock mode answers as at that
  instant, and ignores its own clock;
- ``POST /_test/environments`` creates a ``self_hosted`` environment; reply ``{"id": "env_..."}``;
- ``POST /_test/environments/{env}/work`` with ``{"session_id": ..., "metadata": {...}}`` creates a
  queued work item; reply ``{"id": "work_..."}``.

Both creation routes carry ``X-Workstate-Now`` too. A server must offer these only in test mode.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import attrs

from .._time import render_timestamp
from ..api import Headers, Request, Response
from ..api.codec import DecodeError, loads
from ..dialect import QODER, Dialect
from ..errors import WorkstateError

__all__ = ["NOW_HEADER", "CreationFailed", "HttpTarget", "NotJson", "checked_id", "decode_reply"]

NOW_HEADER = "X-Workstate-Now"
"""The header that carries the kit's ``now`` to a server in test-clock mode."""


class CreationFailed(WorkstateError):
    """A test-only creation route did not answer 2xx with ``{"id": "..."}``."""

    status_hint = 502


@attrs.frozen
class NotJson:
    """The body of a reply that is not JSON (kept as text, so a comparison shows it)."""

    text: str


class HttpTarget:
    """A server listening on ``host:port``, reached with :mod:`http.client` (one keep-alive connection).

    ``base_path`` prefixes every request target (e.g. a server mounted under ``/v2``; the targets themselves
    carry the ``dialect``'s paths); ``authorization`` is the header the creation routes send; ``dialect``
    (default ``QODER``) is the one the server speaks: the ids the creation routes answer must be in its format.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        base_path: str = "",
        timeout: float = 10.0,
        authorization: str = "Bearer workstate-test",
        dialect: Dialect = QODER,
    ) -> None:
        self.host = host
        self.dialect = dialect
        self.port = port
        self.base_path = base_path.rstrip("/")
        self.timeout = timeout
        self.authorization = authorization
        self._connection: http.client.HTTPConnection | None = None

    # --- the Target protocol ---

    def send(self, request: Request, now: datetime) -> Response:
        raw = request.headers or ()
        pairs = raw.items() if isinstance(raw, Mapping) else raw
        headers = [(str(name), str(value)) for name, value in pairs]
        return self._exchange(request.method, request.target, headers, request.body, now)

    def create_environment(self, now: datetime) -> str:
        return checked_id(self.dialect, "env", self._create("/_test/environments", b"", now))

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
        body = json.dumps({"session_id": session_id, "metadata": dict(metadata)}).encode()
        return checked_id(self.dialect, "work", self._create(f"/_test/environments/{env}/work", body, now))

    # --- plumbing ---

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
        connection = self._connection
        if connection is None:
            connection = self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.putrequest(method, self.base_path + target, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in ("content-length", NOW_HEADER.lower()):
                    connection.putheader(name, value)
            connection.putheader(NOW_HEADER, render_timestamp(now))
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            reply = connection.getresponse()
            data = reply.read()
        except Exception:
            self.close()  # the connection is in an unknown state: start afresh next time
            raise
        if reply.will_close:
            self.close()
        return Response(reply.status, _decode(data), data, Headers(reply.getheaders()))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _decode(data: bytes) -> Any:
    """The reply's JSON value as it came, unknown keys and all; a body that is not strict JSON (see
    :func:`workstate.codec.loads`: e.g. a key twice, which ``json.loads`` would silently read as its last
    value, or ``NaN``) is kept as text, so a comparison shows it rather than a mangled value."""
    if not data:
        return None  # no body (a 204): the comparison tells an empty body from a JSON null by the bytes
    try:
        return loads(data)
    except DecodeError:
        return NotJson(data.decode("utf-8", "replace"))


def checked_id(dialect: Dialect, kind: str, value: str) -> str:
    """``value`` when it is an id of ``kind`` in ``dialect``'s format; :class:`CreationFailed` otherwise."""
    if not dialect.valid_id(kind, value):
        raise CreationFailed(f"the test route answered the id {value!r}, not {dialect.id_rule(kind)}")
    return value


decode_reply = _decode
"""A reply body as the kit reads it: its strict JSON value, or :class:`NotJson` (also for :mod:`.asgi`)."""
