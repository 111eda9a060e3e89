"""The reference server over real sockets: an example HTTP server on the standard library.

Every HTTP request becomes a :class:`workstate.api.Request` and is answered, under one lock, by
:meth:`workstate.api.Server.handle` at ``now``. This is an edge of the project (it reads the clock,
opens sockets and starts a thread); the lifecycle is all in ``workstate``.

    python examples/http_server.py --port 8080 --test-clock --record traffic.jsonl

prints ``listening on http://HOST:PORT`` and serves until killed. ``--record`` writes every Work API
exchange as one line of the trace format (``docs/trace.md``), which ``workstate check`` judges.

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
import json
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from workstate import Policy, parse_timestamp, render_timestamp
from workstate.api import Request, Response, Server, echoed_request_id
from workstate.codec import DecodeError, ErrorEnvelope, dumps, loads
from workstate.errors import WorkstateError

__all__ = ["ExampleHttpServer", "main", "serve"]

NOW_HEADER = "X-Workstate-Now"
TEST_PREFIX = "/_test/environments"
_MAX_BODY = 1 << 20


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _error(status: int, error_type: str, message: str, request_id: str | None, param: str | None = None) -> Response:
    envelope = ErrorEnvelope(
        request_id=request_id or "req_" + uuid.uuid4().hex, error_type=error_type, message=message, param=param
    ).to_json()
    return Response(status, envelope, dumps(envelope))


_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 409: "invalid_request_error"}


class ExampleHttpServer:
    """A running server: ``url``, ``reference`` (the :class:`Server`), ``lock``; ``close()`` stops it."""

    def __init__(
        self,
        reference: Server,
        host: str,
        port: int,
        clock: Callable[[], datetime],
        test_clock: bool,
        test_routes: bool,
        record: TextIO | None,
    ) -> None:
        self.reference = reference
        self.lock = threading.Lock()
        self.clock = clock
        self.test_clock = test_clock
        self.test_routes = test_routes
        self.record = record
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
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
        named = {name.lower(): value for name, value in headers}
        request_id = echoed_request_id(headers)
        now = self.clock()
        if self.test_clock and NOW_HEADER.lower() in named:
            try:
                now = parse_timestamp(named[NOW_HEADER.lower()].strip(), NOW_HEADER)
            except WorkstateError as exc:
                return _error(400, "invalid_request_error", exc.message, request_id, NOW_HEADER)
        if (self.test_clock or self.test_routes) and target.partition("?")[0].startswith(TEST_PREFIX):
            with self.lock:
                return self._create(method, target.partition("?")[0], body, request_id, now)
        request = Request(method, target, headers, body)
        with self.lock:
            response = self.reference.handle(request, now)
            if self.record is not None:
                self._write(now, request, named, body, response)
        return response

    def _write(self, now: datetime, request: Request, named: dict[str, str], body: bytes, response: Response) -> None:
        assert self.record is not None
        headers = {name: value for name, value in dict(request.headers or {}).items() if name.lower() != "host"}
        line = {
            "time": render_timestamp(now),
            "request": {
                "method": request.method,
                "target": request.target,
                "headers": headers,
                "body": body.decode("utf-8", "replace") if body else None,
            },
            "response": {"status": response.status, "body": response.json},
        }
        self.record.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.record.flush()

    def _create(self, method: str, path: str, body: bytes, request_id: str | None, now: datetime) -> Response:
        parts = path[len(TEST_PREFIX) :].strip("/").split("/")
        if method != "POST" or not (parts == [""] or (len(parts) == 2 and parts[1] == "work")):
            return _error(404, "not_found_error", f"no test route for {method} {path}", request_id)
        try:
            value: Any = loads(body) if body else {}
        except DecodeError as exc:
            return _error(400, "invalid_request_error", exc.message, request_id)
        if not isinstance(value, dict):
            return _error(400, "invalid_request_error", "the body must be a JSON object", request_id)
        try:
            if parts == [""]:
                extra = sorted(set(value) - {"kind"})
                if extra:
                    return _error(400, "invalid_request_error", f"unknown key {extra[0]!r}", request_id, extra[0])
                created = self.reference.create_environment(value.get("kind", "self_hosted"), now=now)
            else:
                extra = sorted(set(value) - {"session_id", "metadata"})
                if extra:
                    return _error(400, "invalid_request_error", f"unknown key {extra[0]!r}", request_id, extra[0])
                created = self.reference.create_work(
                    parts[0], session_id=value.get("session_id", ""), metadata=value.get("metadata"), now=now
                )
        except WorkstateError as exc:
            status = exc.status_hint if exc.status_hint in _ERROR_TYPES else 400
            return _error(status, _ERROR_TYPES[status], exc.message, request_id, exc.param)
        reply = {"id": created}
        return Response(201, reply, dumps(reply))


def _handler_for(owner: ExampleHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "workstate-example"
        disable_nagle_algorithm = True  # else each keep-alive reply waits for the client's delayed ACK

        def _serve(self) -> None:
            length_text = self.headers.get("Content-Length", "0") or "0"
            try:
                length = int(length_text)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._send(_error(400, "invalid_request_error", "bad Content-Length", None))
                return
            body = self.rfile.read(length) if length else b""
            try:
                response = owner.answer(self.command, self.path, list(self.headers.items()), body)
            except Exception as exc:  # a bug behind the server: answer 500 rather than drop the connection
                response = _error(500, "api_error", f"internal error: {type(exc).__name__}", None)
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def __getattr__(self, name: str) -> Any:
            # Every method (also an odd one, such as "get" or "BREW") is answered by the reference server,
            # which knows which routes exist: http.server alone would answer an unknown method with 501 HTML.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve(
    server: Server | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], datetime] | None = None,
    test_clock: bool = False,
    test_routes: bool = False,
    record: TextIO | None = None,
) -> ExampleHttpServer:
    """Serve ``server`` (a new default :class:`Server` when None) over HTTP from a daemon thread.

    ``port=0`` picks a free port (read ``.url``). ``record``, when given, receives one trace line per
    Work API exchange.
    """
    return ExampleHttpServer(
        Server() if server is None else server,
        host,
        port,
        _wall_clock if clock is None else clock,
        test_clock,
        test_routes,
        record,
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
    args = parser.parse_args(argv)
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
