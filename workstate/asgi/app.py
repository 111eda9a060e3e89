"""The reference server as an ASGI 3 application: :class:`WorkstateApp` (raw ASGI, no dependency).

This is an I/O adapter (it reads the wall clock, holds a lock and writes the record); the lifecycle is
all in :class:`workstate.api.Server`. Any ASGI server runs it (``workstate serve`` runs it under uvicorn)::

    from workstate.asgi import WorkstateApp
    app = WorkstateApp(test_clock=True)   # uvicorn module:app, hypercorn, ...

What the app does around :meth:`Server.handle <workstate.api.Server.handle>`:

- The target is the request's ``raw_path`` and ``query_string`` as sent; a body is read completely (at most
  :data:`MAX_BODY` bytes: a larger one, by its ``Content-Length`` or as it arrives, is 413 and never
  executed; a ``Content-Length`` given twice with different values or not digits is 400; a body that stalls
  for ``body_timeout`` seconds is 408; a client that goes away mid-body is never executed). Refusals close
  the connection (``connection: close``).
- State changes happen under one :class:`threading.Lock` per app (around ``handle`` and the creations), so a
  threaded or an async server may run it; the wall clock is read under it, so time runs forward in the
  record. Error answers the app gives itself are built outside the lock.
- ``test_clock``: a header ``X-Workstate-Now: <RFC 3339>`` sets ``now`` for that request (docs/testing-guide.md);
  with ``test_clock`` or ``test_routes`` the creation routes are served: ``POST /_test/environments``
  (optional body ``{"kind": "self_hosted" | "cloud"}``) answers 201 ``{"id": "env_..."}`` and
  ``POST /_test/environments/{env}/work`` with ``{"session_id": "sess_...", "metadata": {...}}`` answers 201
  ``{"id": "work_..."}`` (ids in the dialect's format: ``session_...`` in the ``anthropic`` dialect, whose
  work items may also be health probes: ``"data_type": "healthcheck"``).
- ``record``: every Work API exchange is written as one line of the trace format (docs/trace.md), in the
  order the reference handled them, byte-exactly: headers as received, in order, a repeated header under
  another spelling of its name (``worker-id``, ``Worker-id``: the format reads them as the same header
  twice); a request the format cannot hold unaltered (a body or a header that is not UTF-8 / ASCII, a target
  that does not start with ``/`` or is not ASCII, a header given more often than its name has spellings) is
  refused with 400 and neither served nor recorded.
- ``GET /openapi.json`` answers the OpenAPI document of the dialect (:func:`workstate.tools.openapi.document`;
  404 for a dialect it has none of).
- ``access_log``: called with one line per request (client, method, target, status, bytes), escaped.
- ``dialect``: a name of :data:`workstate.DIALECTS` (``"qoder"``, the default, or ``"anthropic"``) or a
  :class:`~workstate.Dialect`: the new :class:`~workstate.api.Server` speaks it (``policy`` defaults to the
  dialect's), and the answers carry the headers its server gives (a ``request-id``; a 204 has no content type).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from .._time import parse_timestamp, render_timestamp
from ..api import Headers, Request, Response, Server, echoed_request_id
from ..api.codec import DecodeError, ErrorEnvelope, dumps, loads
from ..dialect import DIALECTS, QODER, Dialect, dialect_named
from ..errors import InvalidInput, WorkstateError
from ..policy import Policy
from ..tools.openapi import document

__all__ = [
    "header_spelling",
    "RecordInOrder",
    "answer_test_route",
    "bad_request",
    "error_answer",
    "shown",
    "DIALECTS",
    "MAX_BODY",
    "NOW_HEADER",
    "OPENAPI_PATH",
    "TEST_PREFIX",
    "Backend",
    "WorkstateApp",
]

NOW_HEADER = "X-Workstate-Now"
TEST_PREFIX = "/_test/environments"
OPENAPI_PATH = "/openapi.json"
MAX_BODY = 1 << 20
"""The largest request body served (1 MiB); a larger one is answered 413 and never executed."""
_MAX_SHOWN = 100
_MAX_MESSAGE = 300
_DIGITS = re.compile(r"[0-9]+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 409: "invalid_request_error"}
_JSON_TYPE = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Backend(Protocol):
    """What the app serves: :class:`~workstate.api.Server` (or a subclass, or anything answering alike)."""

    def handle(self, request: Request, now: datetime) -> Response: ...

    def create_environment(self, kind: str = ..., *, now: datetime) -> str: ...

    def create_work(
        self,
        env: str,
        *,
        session_id: str,
        metadata: Mapping[str, str] | None = ...,
        now: datetime,
        data_type: str = ...,
    ) -> str: ...


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def shown(value: object) -> str:
    """A client's value as an answer may show it: a string quoted and cut short, anything else by its JSON type."""
    if not isinstance(value, str):
        return "null" if value is None else _JSON_TYPE.get(type(value), type(value).__name__)
    if len(value) <= _MAX_SHOWN:
        return repr(value)
    return f"{value[:_MAX_SHOWN]!r}... ({len(value)} characters)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_answer(
    status: int,
    error_type: str,
    message: str,
    request_id: str | None,
    param: str | None = None,
    *,
    dialect: Dialect = QODER,
) -> Response:
    """An error envelope an edge answers itself, in ``dialect``'s envelope (with its request-id header, if it has
    one); whatever the message and the param echo is cut short (they may carry a client's input)."""
    request_id = request_id or "req_" + uuid.uuid4().hex
    envelope = ErrorEnvelope(
        request_id=request_id,
        error_type=error_type,
        message=_cut(message, _MAX_MESSAGE),
        param=None if param is None else _cut(param, _MAX_SHOWN),
    ).to_json(dialect)
    if dialect.request_id_header is None:
        return Response(status, envelope, dumps(envelope))
    headers = Headers({"content-type": "application/json", dialect.request_id_header: request_id})
    return Response(status, envelope, dumps(envelope), headers)


def bad_request(
    message: str, request_id: str | None, param: str | None = None, *, dialect: Dialect = QODER
) -> Response:
    """A 400 ``invalid_request_error`` an edge answers itself (in ``dialect``'s envelope)."""
    return error_answer(400, "invalid_request_error", message, request_id, param, dialect=dialect)


def _request_id(headers: Iterable[tuple[str, str]]) -> str | None:
    return echoed_request_id(list(headers))


def header_spelling(name: str, taken: Mapping[str, str]) -> str | None:
    """``name``, or when a header of that name is already taken, the first spelling of it in other letter cases
    that is not; None when every one is. Header names are case-insensitive (and so are the trace format's), and
    the trace format's headers are a JSON object, whose keys must differ: ``Worker-ID`` and ``worker-id`` record
    the same header given twice."""
    if name not in taken:
        return name
    letters = [i for i, char in enumerate(name) if char.isascii() and char.isalpha()][:10]
    for mask in range(1, 1 << len(letters)):
        chars = list(name)
        for bit, i in enumerate(letters):
            if mask >> bit & 1:
                chars[i] = chars[i].swapcase()
        spelled = "".join(chars)
        if spelled not in taken:
            return spelled
    return None


def _printable(text: str, limit: int = 200) -> str:
    """``text`` as a log line may show it: control characters escaped, cut short."""
    text = _cut(text, limit)
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape", "backslashreplace").decode("ascii"), text)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class WorkstateApp:
    """An ASGI 3 application serving ``server`` (a new :class:`Server` of ``policy`` when None).

    ``clock`` is the wall clock (read only when the test clock gives no ``now``); ``record`` a writable text
    stream for the trace; ``access_log`` a callable taking one line per request. ``lock`` is the one lock
    around the backend; :meth:`flush` flushes the record (the lifespan shutdown calls it).
    """

    def __init__(
        self,
        server: Backend | None = None,
        *,
        policy: Policy | None = None,
        dialect: str | Dialect = "qoder",
        test_clock: bool = False,
        test_routes: bool = False,
        record: TextIO | None = None,
        access_log: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_body: int = MAX_BODY,
        body_timeout: float = 30.0,
    ) -> None:
        if isinstance(dialect, Dialect):
            spoken = dialect
        elif isinstance(dialect, str) and dialect in DIALECTS:
            spoken = dialect_named(dialect)
        else:
            raise InvalidInput(f"dialect must be one of {list(DIALECTS)}, got {shown(dialect)}", param="dialect")
        if not body_timeout > 0:
            raise InvalidInput(f"body_timeout must be positive, got {body_timeout!r}", param="body_timeout")
        self.server: Backend = Server(policy, dialect=spoken) if server is None else server
        self.dialect = spoken.name
        """The name of the dialect served."""
        self.wire_dialect = spoken
        """The :class:`~workstate.Dialect` served (the test routes check ids in its format)."""
        self.test_clock = test_clock
        self.test_routes = test_routes or test_clock
        self.record = record
        self.access_log = access_log
        self.clock = _wall_clock if clock is None else clock
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.lock = threading.Lock()
        try:
            openapi: bytes | None = json.dumps(document(spoken.name), separators=(",", ":")).encode("utf-8")
        except ValueError:  # no document of this dialect
            openapi = None
        self._openapi = openapi
        self._handled = 0  # tickets, taken under `lock` in the order the server handled requests
        self._recorder = None if record is None else RecordInOrder(record)

    # --- ASGI ---

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"workstate serves HTTP only, not {kind!r}")
        method = str(scope.get("method", "GET"))
        raw_headers: list[tuple[bytes, bytes]] = [(bytes(n), bytes(v)) for n, v in scope.get("headers", ())]
        latin = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw_headers]
        raw_path = scope.get("raw_path") or str(scope.get("path", "/")).encode("utf-8")
        query = bytes(scope.get("query_string", b""))
        target_bytes = bytes(raw_path) + (b"?" + query if query else b"")
        target = target_bytes.decode("latin-1")
        close = False
        try:
            body = await self._body(latin, receive)
            response = self.answer(method, target, latin, body, raw_headers=raw_headers, target_bytes=target_bytes)
        except _Refused as refused:
            response, close = refused.response, True
        except Exception as exc:  # a bug behind the app: answer 500 rather than drop the connection
            response = error_answer(
                500, "api_error", f"internal error: {type(exc).__name__}", None, dialect=self.wire_dialect
            )
        await self._send(send, method, response, close)
        if self.access_log is not None:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            shown = f"{_printable(method, 20)} {_printable(target)}"
            self.access_log(f'{who} "{shown}" {response.status} {len(response.body)}')

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, headers: list[tuple[str, str]], receive: Receive) -> bytes:
        """The whole body, or :class:`_Refused` (the answer; the connection is then closed)."""
        lengths = set()
        for name, value in headers:
            if name.lower() == "content-length":
                text = value.strip(" \t")
                if not _DIGITS.fullmatch(text):
                    text = f"Content-Length must be decimal digits, got {shown(value)}"
                    raise _Refused(bad_request(text, _request_id(headers), "Content-Length", dialect=self.wire_dialect))
                lengths.add(text.lstrip("0") or "0")
        if len(lengths) > 1:
            raise _Refused(
                bad_request(
                    "Content-Length is given more than once, with different values",
                    _request_id(headers),
                    "Content-Length",
                    dialect=self.wire_dialect,
                )
            )
        if lengths:
            digits = lengths.pop()
            if len(digits) > len(str(self.max_body)) or int(digits) > self.max_body:
                raise _Refused(self._too_large(headers))
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        # One timeout for the whole body, moved on at every piece: each piece must come within body_timeout of
        # the one before (a stalled body is refused), without the task wait_for would start for every piece.
        try:
            async with asyncio.timeout(self.body_timeout) as deadline:
                while True:
                    message = await receive()
                    deadline.reschedule(loop.time() + self.body_timeout)
                    if message["type"] == "http.disconnect":
                        raise _Refused(
                            bad_request(
                                "the client went away before the whole body came: not executed",
                                None,
                                dialect=self.wire_dialect,
                            )
                        )
                    chunk = bytes(message.get("body", b""))
                    size += len(chunk)
                    if size > self.max_body:
                        raise _Refused(self._too_large(headers))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            text = f"the body did not arrive within {self.body_timeout:g} s: not executed"
            raise _Refused(
                error_answer(408, "invalid_request_error", text, _request_id(headers), dialect=self.wire_dialect)
            ) from None

    def _too_large(self, headers: list[tuple[str, str]]) -> Response:
        message = f"the body is over {self.max_body} bytes: not executed"
        return error_answer(
            413, "invalid_request_error", message, _request_id(headers), "Content-Length", dialect=self.wire_dialect
        )

    async def _send(self, send: Send, method: str, response: Response, close: bool) -> None:
        # The answer's own headers (a page's content type, a dialect's request-id); a 204 has no body and so
        # neither a content type nor a length.
        headers = [
            (str(name).lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in response.headers.items()
            if str(name).lower() != "content-length"
        ]
        if response.status != 204:
            if not any(name == b"content-type" for name, _ in headers):
                headers.insert(0, (b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(response.body)).encode()))
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else response.body})

    # --- answering (no ASGI here: also for in-process callers) ---

    def answer(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        target_bytes: bytes | None = None,
    ) -> Response:
        """The answer to one whole request (headers decoded as Latin-1, as they came)."""
        request_id = _request_id(headers)
        now: datetime | None = None
        if self.test_clock:
            given = {value.strip() for name, value in headers if name.lower() == NOW_HEADER.lower()}
            if len(given) > 1:
                return bad_request(
                    f"{NOW_HEADER} is given more than once, with different values",
                    request_id,
                    NOW_HEADER,
                    dialect=self.wire_dialect,
                )
            if given:
                try:
                    now = parse_timestamp(given.pop(), NOW_HEADER)
                except WorkstateError as exc:
                    return bad_request(exc.message, request_id, NOW_HEADER, dialect=self.wire_dialect)
        path = target.partition("?")[0]
        if method in ("GET", "HEAD") and path == OPENAPI_PATH:
            if self._openapi is None:
                return error_answer(
                    404,
                    "not_found_error",
                    f"no OpenAPI document of {self.dialect}",
                    request_id,
                    dialect=self.wire_dialect,
                )
            return Response(200, None, self._openapi)
        if self.test_routes and path.startswith(TEST_PREFIX):
            return self._create(method, path, body, request_id, now)
        recorded = None
        if self.record is not None:
            recordable = self._recordable(target, headers, body, raw_headers, target_bytes)
            if isinstance(recordable, str):
                return bad_request(recordable, request_id, dialect=self.wire_dialect)
            recorded = recordable
        request = Request(method, target, headers, body)
        with self.lock:
            at = self.clock() if now is None else now
            response = self.server.handle(request, at)
            ticket = self._handled
            self._handled += 1
        if recorded is not None:
            self._write(ticket, at, method, target, recorded, response)
        return response

    @staticmethod
    def _recordable(
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        raw_headers: list[tuple[bytes, bytes]] | None,
        target_bytes: bytes | None,
    ) -> tuple[dict[str, str], str | None] | str:
        if not target.startswith("/"):
            return f"the trace format records targets that start with /, not {shown(target)}: not served"
        if target_bytes is not None and not target_bytes.isascii():
            return "the target is not ASCII, which the trace format cannot record as sent: not served while recording"
        if raw_headers is not None and not all(n.isascii() and v.isascii() for n, v in raw_headers):
            return "a header is not ASCII, which the trace format cannot record as sent: not served while recording"
        try:
            text = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            return "the body is not UTF-8, which the trace format cannot record: not served while recording"
        recorded: dict[str, str] = {}
        for name, value in headers:
            key = header_spelling(name, recorded)
            if key is None:
                return f"header {shown(name)} is given more often than the trace format can record: not served"
            recorded[key] = value
        return recorded, text

    def _write(
        self,
        ticket: int,
        now: datetime,
        method: str,
        target: str,
        recorded: tuple[dict[str, str], str | None],
        response: Response,
    ) -> None:
        assert self._recorder is not None
        self._recorder.write(ticket, now, method, target, recorded, response)

    def flush(self) -> None:
        """Flush the record (when there is one)."""
        if self._recorder is not None:
            self._recorder.flush()

    def _create(self, method: str, path: str, body: bytes, request_id: str | None, now: datetime | None) -> Response:
        return answer_test_route(
            self.server, self.lock, self.clock, method, path, body, request_id, now, dialect=self.wire_dialect
        )

    # --- outside the routes: what ``workstate serve --seed-environments`` does ---

    def seed_environment(self) -> str:
        """Create a ``self_hosted`` environment now (under the lock) and return its id."""
        with self.lock:
            return self.server.create_environment("self_hosted", now=self.clock())


def answer_test_route(
    backend: Backend,
    lock: threading.Lock,
    clock: Callable[[], datetime],
    method: str,
    path: str,
    body: bytes,
    request_id: str | None,
    now: datetime | None,
    *,
    dialect: Dialect | None = None,
) -> Response:
    """The answer of a test route (``POST /_test/environments`` and ``POST /_test/environments/{env}/work``, the
    creation routes of the test-clock contract, docs/testing-guide.md) for ``backend``: the body is read and
    checked outside ``lock``; only the creation holds it, at ``now`` or else at ``clock()``.

    Ids are checked in ``dialect``'s format (default: the backend's ``dialect`` when it has one, else ``QODER``);
    a work body may name ``"data_type": "healthcheck"`` where the dialect has health probes."""
    if dialect is None:
        found = getattr(backend, "dialect", None)
        dialect = found if isinstance(found, Dialect) else QODER
    parts = path[len(TEST_PREFIX) :].strip("/").split("/")
    if method != "POST" or not (parts == [""] or (len(parts) == 2 and parts[1] == "work")):
        return error_answer(
            404, "not_found_error", f"no test route for {shown(method)} {shown(path)}", request_id, dialect=dialect
        )
    try:
        value: Any = loads(body) if body else {}
    except DecodeError as exc:
        return bad_request(exc.message, request_id, dialect=dialect)
    if not isinstance(value, dict):
        return bad_request("the body must be a JSON object", request_id, dialect=dialect)
    extra = set(value) - ({"kind"} if parts == [""] else {"session_id", "metadata", "data_type"})
    if extra:
        key = min(extra)
        return bad_request(f"unknown key {shown(key)}", request_id, key, dialect=dialect)
    create: Callable[[datetime], str]
    if parts == [""]:
        kind = value.get("kind", "self_hosted")
        if not isinstance(kind, str) or kind not in ("self_hosted", "cloud"):
            return bad_request(
                f"kind must be 'self_hosted' or 'cloud', got {shown(kind)}", request_id, "kind", dialect=dialect
            )

        def create(at: datetime) -> str:
            return backend.create_environment(kind, now=at)

    else:
        env, session, metadata = parts[0], value.get("session_id"), value.get("metadata")
        data_type = value.get("data_type", "session")
        if not dialect.valid_id("env", env):
            return error_answer(
                404, "not_found_error", f"environment {shown(env)} not found", request_id, "env", dialect=dialect
            )
        kinds = ("session", "healthcheck") if dialect.healthcheck_items else ("session",)
        if not isinstance(data_type, str) or data_type not in kinds:
            message = f"data_type must be one of {list(kinds)}, got {shown(data_type)}"
            return bad_request(message, request_id, "data_type", dialect=dialect)
        if not isinstance(session, str) or (data_type == "session" and not dialect.valid_id("session", session)):
            message = f"session_id must be {dialect.id_rule('session')}, got {shown(session)}"
            return bad_request(message, request_id, "session_id", dialect=dialect)
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            return bad_request("metadata must be an object of strings", request_id, "metadata", dialect=dialect)

        def create(at: datetime) -> str:
            if data_type == "session":  # a backend without health probes need not take data_type
                return backend.create_work(env, session_id=session, metadata=metadata, now=at)
            return backend.create_work(env, session_id=session, metadata=metadata, now=at, data_type=data_type)

    try:
        with lock:
            created = create(clock() if now is None else now)
    except WorkstateError as exc:
        status = exc.status_hint if exc.status_hint in _ERROR_TYPES else 400
        return error_answer(status, _ERROR_TYPES[status], exc.message, request_id, exc.param, dialect=dialect)
    reply = {"id": created}
    return Response(201, reply, dumps(reply))


class RecordInOrder:
    """A record's lines written in the order of their tickets: an edge takes a ticket where it handles a request
    (under its lock, so tickets follow the server's order), then builds and writes the line outside that lock.
    ``flush_each`` flushes the stream after every write."""

    def __init__(self, stream: TextIO, *, flush_each: bool = False) -> None:
        self.stream = stream
        self.flush_each = flush_each
        self._lock = threading.Lock()
        self._written = 0  # the next ticket whose line is written
        self._pending: dict[int, str | None] = {}

    def write(
        self,
        ticket: int,
        now: datetime,
        method: str,
        target: str,
        recorded: tuple[dict[str, str], str | None],
        response: Response,
    ) -> None:
        """Write the line of ``ticket`` once every earlier ticket's line is written (or theirs with it)."""
        line = None
        try:
            headers, body = recorded
            exchange = {
                "time": render_timestamp(now),
                "request": {"method": method, "target": target, "headers": headers, "body": body},
                "response": {"status": response.status, "body": response.json},
            }
            line = json.dumps(exchange, separators=(",", ":")) + "\n"
        finally:  # a ticket is always settled, or every later line would wait for it forever
            with self._lock:
                self._pending[ticket] = line
                while self._written in self._pending:
                    text = self._pending.pop(self._written)
                    self._written += 1
                    if text is not None:
                        self.stream.write(text)
                if self.flush_each:
                    self.stream.flush()

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()
