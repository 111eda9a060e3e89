"""The reference server over real sockets: an example HTTP server on the standard library.

``workstate serve`` (``workstate.asgi`` under uvicorn, ``pip install 'workstate[serve]'``) is the server to
run; this file stays as the dependency-free fallback: the same test clock, test routes and record format on
``http.server`` alone, and it passes its own tests (tests/examples/).

Every HTTP request becomes a :class:`workstate.api.Request` and is answered, under one lock, by
:meth:`workstate.api.Server.handle` at ``now``. This is an edge of the project (it reads the clock,
opens sockets and starts a thread); the lifecycle is all in ``workstate``.

    python examples/http_server.py --port 8080 --test-clock --record traffic.jsonl

prints ``listening on http://HOST:PORT`` and serves until killed. ``--record`` writes every Work API
exchange as one line of the trace format (``docs/trace.md``), which ``workstate check`` judges: the
request as received (every header, in order; a header given twice is recorded under two spellings of
its name, ``Worker-ID`` and ``worker-id``, which the format reads as the same header twice; the target
as sent, also a leading ``//``). A request the format cannot hold unaltered (a body that is not UTF-8,
a target that does not start with ``/``, a header given more often than its name has spellings) is
refused with 400 and neither served nor recorded while recording.

The edge refuses, and then closes the connection, what it cannot frame for sure, so that nothing that
follows on the connection is read as a request: a Transfer-Encoding (411: send a Content-Length), a
Content-Length that is not ASCII digits or is given twice with different values (400), a body over
1 MiB (413), a header block with a line that is not a header field, or one that never ended (400), and
a body that ended (400) or stalled (408) before its Content-Length: such a request is never executed.
A connection silent for ``--timeout`` seconds (default 30) is closed; the listen backlog is 1024; a
HEAD is answered as the reference answers it (404: no route), without a body. What an answer of this
server shows of a client's input is cut short, and only calls of the reference hold the lock.

In test-clock mode (``--test-clock``) a request header ``X-Workstate-Now: <RFC 3339>`` sets ``now``
for that request. Test-only routes (``--test-clock`` or ``--test-routes``) create what the platform
creates outside the Work API:

- ``POST /_test/environments`` with an optional body ``{"kind": "self_hosted" | "cloud"}``:
  201 ``{"id": "env_..."}``;
- ``POST /_test/environments/{env}/work`` with ``{"session_id": "sess_...", "metadata": {...}}``
  (metadata optional): 201 ``{"id": "work_..."}``.
"""

from __future__ import annotations

import argparse
import email.errors
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TextIO

from workstate import Policy, parse_timestamp
from workstate.api import Request, Response, Server, echoed_request_id
from workstate.asgi import RecordInOrder, answer_test_route
from workstate.asgi import bad_request as _bad
from workstate.asgi import error_answer as _error
from workstate.asgi import header_spelling as _spelling
from workstate.asgi import shown as _shown
from workstate.errors import WorkstateError

__all__ = ["DEFAULT_TIMEOUT", "REQUEST_QUEUE_SIZE", "ExampleHttpServer", "main", "serve"]

NOW_HEADER = "X-Workstate-Now"
TEST_PREFIX = "/_test/environments"
DEFAULT_TIMEOUT = 30.0
"""Seconds a connection may stay silent (between requests, or in the middle of one) before it is closed."""
REQUEST_QUEUE_SIZE = 1024
"""The listen backlog: connections the kernel queues while every accept is still to come."""
_MAX_BODY = 1 << 20
_LINGER_BYTES = 1 << 16  # what is read and thrown away after a refusal, so that the close does not reset the answer
_LINGER_SECONDS = 1.0
_DIGITS = re.compile(r"[0-9]+")  # Content-Length = 1*DIGIT (RFC 9110 8.6), ASCII digits only
_NOT_A_HEADER_BLOCK = (email.errors.MissingHeaderBodySeparatorDefect, email.errors.FirstHeaderLineIsContinuationDefect)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _recordable(
    target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> tuple[dict[str, str], str | None] | str:
    """The request's headers and body as a trace line holds them (every header as received, in order, each
    repeated one under another spelling of its name; the body as its text), or why the trace format cannot hold
    this request without altering it."""
    if not target.startswith("/"):
        return f"the trace format records targets that start with /, not {_shown(target)}: not served while recording"
    try:
        text = body.decode("utf-8") if body else None
    except UnicodeDecodeError:
        return "the body is not UTF-8, which the trace format cannot record: not served while recording"
    recorded: dict[str, str] = {}
    for name, value in headers:
        key = _spelling(name, recorded)
        if key is None:
            return f"header {_shown(name)} is given more often than the trace format can record: not served"
        recorded[key] = value
    return recorded, text


class ExampleHttpServer:
    """A running server: ``url``, ``reference`` (the :class:`Server`), ``lock``; ``close()`` stops it.

    ``lock`` is held only around calls of the reference (``handle``, ``create_environment``, ``create_work``):
    reading and checking a request, answering what this server refuses itself, and writing the record all happen
    outside it, so that a client sending large or hostile requests holds no one else up. Record lines are written
    in the order the reference handled the requests.
    """

    def __init__(
        self,
        reference: Server,
        host: str,
        port: int,
        clock: Callable[[], datetime],
        test_clock: bool,
        test_routes: bool,
        record: TextIO | None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.reference = reference
        self.lock = threading.Lock()
        self.clock = clock
        self.test_clock = test_clock
        self.test_routes = test_routes
        self.record = record
        self.timeout = timeout
        self._handled = 0  # tickets, taken under `lock` in the order the reference handled requests
        self._recorder = None if record is None else RecordInOrder(record, flush_each=True)
        self._httpd = _HTTPServer((host, port), _handler_for(self))
        bound_host, bound_port = self._httpd.server_address[:2]
        self.host, self.port = str(bound_host), int(bound_port)
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="workstate-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> ExampleHttpServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- answering ---

    def answer(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        request_id = echoed_request_id(headers)
        now: datetime | None = None  # None: the clock's, read under the lock (so time runs forward in the record)
        if self.test_clock:
            given = {value.strip() for name, value in headers if name.lower() == NOW_HEADER.lower()}
            if len(given) > 1:
                return _bad(f"{NOW_HEADER} is given more than once, with different values", request_id, NOW_HEADER)
            if given:
                try:
                    now = parse_timestamp(given.pop(), NOW_HEADER)
                except WorkstateError as exc:
                    return _bad(exc.message, request_id, NOW_HEADER)
        path = target.partition("?")[0]
        if (self.test_clock or self.test_routes) and path.startswith(TEST_PREFIX):
            return self._create(method, path, body, request_id, now)
        recorded = None
        if self.record is not None:
            recordable = _recordable(target, headers, body)
            if isinstance(recordable, str):
                return _bad(recordable, request_id)
            recorded = recordable
        request = Request(method, target, headers, body)
        with self.lock:
            at = self.clock() if now is None else now
            response = self.reference.handle(request, at)
            ticket = self._handled
            self._handled += 1
        if recorded is not None:
            self._write(ticket, at, method, target, recorded, response)
        return response

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

    def _create(self, method: str, path: str, body: bytes, request_id: str | None, now: datetime | None) -> Response:
        """A test route, answered as workstate serve answers it: the body is checked outside the lock."""
        return answer_test_route(self.reference, self.lock, self.clock, method, path, body, request_id, now)


# --- HTTP/1.1 framing -----------------------------------------------------------------------------------------


def _framing(headers: Message) -> int | Response:
    """The length of the request's body, or the answer refusing a request whose end cannot be told for sure.

    The body is read by one Content-Length of ASCII digits (RFC 9112 6.3), at most 1 MiB; Transfer-Encoding
    (chunked or any) is refused with 411 rather than supported, and so is a header block with a line that is not
    a header field (http.server's parser would drop every header after it). After a refusal the connection is
    closed: what follows on it is never read as requests.
    """
    request_id = echoed_request_id(headers.items())
    if any(isinstance(defect, _NOT_A_HEADER_BLOCK) for defect in headers.defects):
        return _bad("the header block holds a line that is not a header field", request_id)
    if headers.get_all("Transfer-Encoding"):
        message = "Transfer-Encoding is not supported: send the body with a Content-Length"
        return _error(411, "invalid_request_error", message, request_id, "Transfer-Encoding")
    lengths = set()
    for value in headers.get_all("Content-Length") or ():
        text = value.strip(" \t")
        if not _DIGITS.fullmatch(text):
            return _bad(f"Content-Length must be decimal digits, got {_shown(value)}", request_id, "Content-Length")
        lengths.add(text.lstrip("0") or "0")
    if len(lengths) > 1:
        message = "Content-Length is given more than once, with different values"
        return _bad(message, request_id, "Content-Length")
    digits = lengths.pop() if lengths else "0"
    if len(digits) > len(str(_MAX_BODY)) or int(digits) > _MAX_BODY:
        message = f"the body is over {_MAX_BODY} bytes: {_shown(digits)}"
        return _error(413, "invalid_request_error", message, request_id, "Content-Length")
    return int(digits)


class _Lines:
    """The request stream, remembering the last line read (a header block is complete only at its blank line)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.last = b""

    def readline(self, limit: int = -1) -> bytes:
        self.last = self._stream.readline(limit)
        return self.last

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def headers_ended(self) -> bool:
        return self.last in (b"\r\n", b"\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = REQUEST_QUEUE_SIZE

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away (reset, broken pipe) or stalled (timeout): nothing to tell anyone
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "workstate-example"
    disable_nagle_algorithm = True  # else each keep-alive reply waits for the client's delayed ACK
    owner: ExampleHttpServer
    rfile: Any

    def setup(self) -> None:
        super().setup()  # applies `timeout` to the socket: a silent client loses its connection and its thread
        self.rfile = _Lines(self.rfile)

    def handle_expect_100(self) -> bool:
        if isinstance(_framing(self.headers), Response) or not self.rfile.headers_ended():
            return True  # no "100 Continue" invites a body that is refused anyway (in _serve)
        return super().handle_expect_100()

    def _serve(self) -> None:
        if not self.rfile.headers_ended():  # the client closed in the middle of the header block
            self._refuse(_bad("the header block ended before its blank line: not executed", None), unread=False)
            return
        length = _framing(self.headers)
        if isinstance(length, Response):
            self._refuse(length, unread=True)
            return
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            message = f"the body did not arrive within {self.owner.timeout} s: not executed"
            self._refuse(_error(408, "invalid_request_error", message, None), unread=False)
            return
        if len(body) < length:  # the client closed before the whole body came: nothing of it is executed
            self._refuse(_bad(f"the body ended after {len(body)} of {length} bytes: not executed", None), unread=False)
            return
        target = self.requestline.split()[1]  # as sent: http.server rewrites a leading // in self.path
        try:
            response = self.owner.answer(self.command, target, list(self.headers.items()), body)
        except Exception as exc:  # a bug behind the server: answer 500 rather than drop the connection
            response = _error(500, "api_error", f"internal error: {type(exc).__name__}", None)
        self._send(response)

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":  # HEAD: the headers of the answer a GET would get here, without its body
            self.wfile.write(response.body)

    def _refuse(self, response: Response, *, unread: bool) -> None:
        """Answer and close the connection; with ``unread`` bytes of the request possibly still coming, read and
        drop some first (a bounded amount, for a bounded time), so that the close does not reset the connection
        before the client has read the answer. Nothing read here is ever a request."""
        self._send(response, close=True)
        if not unread:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline, left = time.monotonic() + _LINGER_SECONDS, _LINGER_BYTES
            while left > 0 and (wait := deadline - time.monotonic()) > 0:
                self.connection.settimeout(wait)
                chunk = self.connection.recv(min(left, 1 << 14))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        # Every method (also an odd one, such as "get" or "BREW") is answered by the reference server,
        # which knows which routes exist: http.server alone would answer an unknown method with 501 HTML.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _handler_for(owner: ExampleHttpServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"owner": owner, "timeout": owner.timeout})


def serve(
    server: Server | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], datetime] | None = None,
    test_clock: bool = False,
    test_routes: bool = False,
    record: TextIO | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> ExampleHttpServer:
    """Serve ``server`` (a new default :class:`Server` when None) over HTTP from a daemon thread.

    ``port=0`` picks a free port (read ``.url``). ``record``, when given, receives one trace line per
    Work API exchange. ``timeout`` is how many seconds a connection may stay silent before it is closed
    (None: forever).
    """
    return ExampleHttpServer(
        Server() if server is None else server,
        host,
        port,
        _wall_clock if clock is None else clock,
        test_clock,
        test_routes,
        record,
        timeout,
    )


def policy_of(args: argparse.Namespace) -> Policy:
    """The policy the command line asks for (a short ``--ttl`` lowers the TTL clamp to match)."""
    fields: dict[str, Any] = {}
    if args.ttl is not None:
        fields["default_ttl_seconds"] = args.ttl
        fields["min_ttl_seconds"] = min(args.ttl, Policy().min_ttl_seconds)
    if args.min_ttl is not None:
        fields["min_ttl_seconds"] = args.min_ttl
    if args.start_timeout is not None:
        fields["start_timeout_seconds"] = args.start_timeout
    if args.reclaim_ms is not None:
        fields["reclaim_older_than_ms"] = args.reclaim_ms
    return Policy(**fields)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the workstate reference server over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--test-clock", action="store_true", help=f"honour {NOW_HEADER}; enables the test routes")
    parser.add_argument("--test-routes", action="store_true", help=f"serve POST {TEST_PREFIX}[/{{env}}/work]")
    parser.add_argument("--ttl", type=int, help="default lease TTL in seconds (also lowers the minimum to it)")
    parser.add_argument("--min-ttl", type=int, help="lower clamp of desired_ttl_seconds")
    parser.add_argument("--start-timeout", type=float, help="seconds an acked item waits for its first heartbeat")
    parser.add_argument("--reclaim-ms", type=int, help="default reclaim_older_than_ms of a poll")
    parser.add_argument("--record", type=Path, help="append every exchange to this trace file (JSON lines)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds a connection may stay silent before it is closed (default {DEFAULT_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    try:
        policy = policy_of(args)
    except WorkstateError as exc:
        parser.error(exc.message)
    record = args.record.open("a", encoding="utf-8") if args.record else None
    running = serve(
        Server(policy),
        host=args.host,
        port=args.port,
        test_clock=args.test_clock,
        test_routes=args.test_routes,
        record=record,
        timeout=args.timeout,
    )
    print(f"listening on {running.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
        if record is not None:
            record.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
