"""The playground: one page beside the API (``workstate serve --playground``, ``workstate playground``).

:class:`PlaygroundApp` is :class:`~workstate.asgi.WorkstateApp` plus the page, two read-only routes, and a server
of every other shipped dialect (:data:`workstate.DIALECTS`) beside its own, on the same origin:

- the primary server speaks the dialect given (``--dialect``, default ``qoder``); each other dialect has its own
  :class:`~workstate.asgi.WorkstateApp` over ``Server(dialect=d)`` (the dialect's default policy; the same test
  clock, test routes, clock, lock and access log; never the record, which is one server's trace). A Work API
  request goes to the server whose dialect's base path it starts with (they differ, so they never collide);
  the test routes of another dialect are under ``/_playground/{name}/_test/environments`` (this prefix is
  stripped and the request answered by that dialect's app);
- ``GET /`` the page (``playground_page/index.html``, the generated lifecycle picture of
  :func:`workstate.tools.docgen.svg` put inline, so each state can be highlighted), ``GET /_playground/*.js|css``;
- ``GET /_playground/config``: what the page must not spell itself: every dialect served (:func:`dialect_wire`:
  name, base path, the path template of an environment's work, the worker header's name, its test routes,
  whether ack sends the worker header, how stop answers, ...), the test clock's header;
- ``POST /_playground/explain`` with ``{"method", "target", "headers", "body", "dialect"?}`` (the request the page
  is about to send, as it will send it; its dialect by ``dialect`` or else by the target's base path): what the
  core decides for it in that dialect, on the item as that dialect's server holds it, at the request's
  ``X-Workstate-Now`` (the test clock) or now: :func:`workstate.explain`'s rule, the lapse applied first and the
  guard values, with the item's own fields the wire does not show (bound worker, deadline, version). For a poll,
  the item the server's own query :meth:`Server.deliverable <workstate.api.Server.deliverable>` names, explained
  as a delivery; for a get, what time passing does to the item. It reads the request as the server reads it
  (:mod:`workstate.api.routes`), changes nothing, and answers 400 for a body it cannot read.

Everything else the page does goes through the Work API and the test routes, like any client.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Any

from .._time import parse_timestamp, render_timestamp
from ..api import EnvironmentKind, Response, Server
from ..api.codec import DecodeError, dumps, loads
from ..api.routes import params_of_reasons, read_heartbeat, read_stop, read_update, read_worker, route, work_path
from ..api.wire import Refusal, integer, param, parse_query, read_headers
from ..dialect import DIALECTS, Dialect, ListStyle, StopAnswer, dialect_named
from ..errors import WorkstateError
from ..model import Ack, Command, Deliver, Explanation, Lapse, WorkItem, explain, next_deadline
from ..rules import Reason, Rule
from ..tools.docgen import svg
from .app import NOW_HEADER, OPENAPI_PATH, TEST_PREFIX, WorkstateApp, bad_request, error_answer, shown

__all__ = ["CONFIG_PATH", "EXPLAIN_PATH", "PAGE_PATH", "PlaygroundApp", "dialect_wire"]

PAGE_PATH = "/"
PREFIX = "/_playground/"
CONFIG_PATH = PREFIX + "config"
EXPLAIN_PATH = PREFIX + "explain"
_ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
_SVG_MARK = "<!-- the lifecycle picture -->"
_REQUEST_KEYS = frozenset({"method", "target", "headers", "body", "dialect"})


def dialect_wire(dialect: Dialect | str, test_routes: str | None = TEST_PREFIX) -> dict[str, Any]:
    """What a client must know of ``dialect``, read from :mod:`workstate.api.routes` and the
    :class:`~workstate.Dialect` (never written here): the base path, the template of an environment's work
    collection (``{env}`` in it), the worker header, the prefixes of ids, whether ack sends (and checks) the worker
    header, what stop and a heartbeat on a stopped item answer, the list's cursors; ``test_routes`` is where its
    test routes are (None: not served)."""
    spoken = dialect_named(dialect) if isinstance(dialect, str) else dialect
    template = work_path("{env}", dialect=spoken)
    cursors = ["page"] if spoken.list_style is ListStyle.NEXT_PAGE else ["page", "after_id", "before_id"]
    return {
        "name": spoken.name,
        "base_path": template.split("{env}")[0],
        "work_path": template,
        "worker_header": params_of_reasons(spoken)[Reason.WORKER_CONFLICT],  # the header a worker conflict names
        "session_prefix": spoken.prefix("session"),
        "work_prefix": spoken.prefix("work"),
        "test_routes": test_routes,
        "ack_checks_worker": spoken.ack_checks_worker,
        "stop_answer": spoken.stop_answer.value,
        "stop_status": 204 if spoken.stop_answer is StopAnswer.NO_CONTENT else 200,
        "heartbeat_on_stopped": spoken.heartbeat_on_stopped.value,
        "list_style": spoken.list_style.value,
        "list_cursors": cursors,
        "error_style": spoken.error_style.value,
    }


def _page() -> bytes:
    html = resources.files(__package__).joinpath("playground_page", "index.html").read_text("utf-8")
    picture = svg().replace("<svg ", '<svg role="img" aria-labelledby="lifecycle-title" ', 1)
    picture = picture.replace("<title>", '<title id="lifecycle-title">', 1)
    return html.replace(_SVG_MARK, picture, 1).encode("utf-8")


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("playground_page", name).read_bytes()


def _rule(rule: Rule | None) -> dict[str, str] | None:
    if rule is None:
        return None
    return {"name": rule.name, "section": rule.section, "kind": rule.kind.value, "text": rule.text}


def _item(item: WorkItem, server: Server) -> dict[str, Any]:
    deadline = next_deadline(item, server.policy)
    return {
        "id": item.id,
        "state": item.state.value,
        "worker_id": item.worker_id,
        "delivered_to": item.delivered_to,
        "deadline": None if deadline is None else render_timestamp(deadline),
        "version": item.version,
        "latest_heartbeat_at": None if item.latest_heartbeat_at is None else render_timestamp(item.latest_heartbeat_at),
    }


def _explained(operation: str, why: Explanation, item: WorkItem, server: Server) -> dict[str, Any]:
    status = why.outcome.status
    if operation == "stop" and status == 200 and server.dialect.stop_answer is StopAnswer.NO_CONTENT:
        status = 204  # the dialect's wire: a stop taken answers no content
    return {
        "operation": operation,
        "status": status,
        "rule": _rule(why.rule),
        "lapse": _rule(why.lapse),
        "state": why.state.value,
        "guards": [{"guard": str(guard), "value": value} for guard, value in why.guards],
        "summary": str(why),
        "item": _item(item, server),
    }


def _undecided(operation: str, status: int | None, summary: str) -> dict[str, Any]:
    return {"operation": operation, "status": status, "rule": None, "lapse": None, "summary": summary, "item": None}


def explain_request(
    server: Server, method: str, target: str, headers: dict[str, str], body: bytes, now: datetime
) -> Any:
    """What the core decides for this request at ``now`` on the server's items as they stand, in the server's
    dialect (nothing changes)."""
    dialect = server.dialect
    path, _, query = target.partition("?")
    operation = "route"
    try:
        operation, env_id, work_id = route(method, path, dialect)
        read = read_headers(headers)
        params = parse_query(query) if query else {}
        if operation in ("list", "stats"):
            return _undecided(operation, None, f"{operation} reads the queue: no lifecycle rule decides it")
        command: Command
        if operation == "poll":
            reclaim_text = param(params, "reclaim_older_than_ms")
            reclaim = None
            if reclaim_text is not None:
                reclaim = integer(reclaim_text, "reclaim_older_than_ms", "a non-negative integer")
            return _poll(server, env_id, Deliver(read_worker(read, dialect), reclaim), now)
        if operation == "ack":  # a dialect that does not check the worker on ack does not read its header there
            command = Ack(read_worker(read, dialect) if dialect.ack_checks_worker else None)
        elif operation == "heartbeat":
            command = read_heartbeat(params)
        elif operation == "stop":
            command = read_stop(body)
        elif operation == "update":
            command = read_update(body)
        else:
            command = Lapse()  # get: what time passing does to the item now
    except Refusal as refusal:
        return _undecided(operation, refusal.status, f"refused before any rule: {refusal.message}")
    except WorkstateError as exc:
        return _undecided(operation, 400, f"refused before any rule: {exc.message}")
    assert work_id is not None
    item = server.work(env_id, work_id)
    if item is None:
        return _undecided(operation, 404, f"work item {shown(work_id)} not found in {shown(env_id)}")
    return _explained(operation, explain(item, command, now, server.policy, dialect), item, server)


def _poll(server: Server, env_id: str, command: Deliver, now: datetime) -> Any:
    """The item the server's own query says a poll delivers, explained as its delivery; else a null answer."""
    kind = server.environment_kind(env_id)
    if kind is None:
        return _undecided("poll", 404, f"environment {shown(env_id)} not found")
    if kind is not EnvironmentKind.SELF_HOSTED:
        return _undecided("poll", 400, f"refused before any rule: environment {env_id} is {kind.value}")
    found = server.deliverable(env_id, now, command.reclaim_older_than_ms)
    item = None if found is None else server.work(env_id, found)
    if item is None:
        return _undecided("poll", 200, "no item is deliverable now: the poll answers null")
    return _explained("poll", explain(item, command, now, server.policy, server.dialect), item, server)


class PlaygroundApp(WorkstateApp):
    """:class:`~workstate.asgi.WorkstateApp` serving the playground page and its two routes beside the API, and a
    server of every other shipped dialect beside its own (:attr:`apps`, by dialect name, its own first).

    It needs the reference :class:`~workstate.api.Server` (the page's explanations read its items). The page's
    clock and creation controls need ``test_clock`` (``workstate playground`` turns it on). The other dialects'
    servers take the same options but ``policy`` (theirs is their dialect's default), ``record`` (the trace is
    the primary server's alone) and ``server``; they share this app's clock and lock."""

    def __init__(self, server: Server | None = None, **options: Any) -> None:
        super().__init__(server, **options)
        if not isinstance(self.server, Server):
            raise TypeError("the playground explains the reference Server's items: give it a workstate.api.Server")
        self.reference: Server = self.server
        self._page = _page()
        self.apps: dict[str, WorkstateApp] = {self.dialect: self}
        """The app of each dialect served, by name: this one (the primary) first."""
        self.servers: dict[str, Server] = {self.dialect: self.reference}
        """The server of each dialect served, by name."""
        bases = [self.wire_dialect.base_path]
        shared = {key: value for key, value in options.items() if key not in ("policy", "record", "dialect")}
        shared["clock"] = self.clock
        for name, dialect in DIALECTS.items():
            base = dialect.base_path
            if name in self.apps or any(base.startswith(b) or b.startswith(base) for b in bases):
                continue  # a dialect whose base path is another's would collide: not served beside it
            other = Server(dialect=dialect)
            app = WorkstateApp(other, dialect=dialect, **shared)
            app.lock = self.lock  # one lock, one clock: the page's explanations read every server under it
            self.apps[name], self.servers[name] = app, other
            bases.append(base)
        self.dialects = [
            dialect_wire(app.wire_dialect, self._test_prefix(name) if self.test_routes else None)
            for name, app in self.apps.items()
        ]

    def _test_prefix(self, name: str) -> str:
        return TEST_PREFIX if name == self.dialect else f"{PREFIX}{name}{TEST_PREFIX}"

    def config(self) -> dict[str, Any]:
        """What ``GET /_playground/config`` answers."""
        with self.lock:
            started = self.clock()
        return {
            "dialect": self.dialect,
            "dialects": self.dialects,
            "now_header": NOW_HEADER,
            "test_clock": self.test_clock,
            "test_routes": TEST_PREFIX if self.test_routes else None,
            "explain": EXPLAIN_PATH,
            "openapi": OPENAPI_PATH,
            "now": render_timestamp(started.replace(microsecond=0)),
        }

    def server_of(self, path: str) -> Server:
        """The server of the dialect whose base path ``path`` starts with (the primary's for any other path)."""
        for name, app in self.apps.items():
            if name != self.dialect and path.startswith(app.wire_dialect.base_path):
                return self.servers[name]
        return self.reference

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
        path = target.partition("?")[0]
        if path == PAGE_PATH or path.startswith(PREFIX):
            return self._playground(method, target, headers, body)
        for name, app in self.apps.items():
            if name != self.dialect and path.startswith(app.wire_dialect.base_path):
                return app.answer(method, target, headers, body, raw_headers=raw_headers, target_bytes=target_bytes)
        return super().answer(method, target, headers, body, raw_headers=raw_headers, target_bytes=target_bytes)

    def _playground(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        path = target.partition("?")[0]
        reading = method in ("GET", "HEAD")
        if path == PAGE_PATH and reading:
            return _raw(self._page, "text/html; charset=utf-8")
        name = path[len(PREFIX) :]
        if name in _ASSETS and reading:
            return _raw(_asset(name), _ASSETS[name])
        if path == CONFIG_PATH and reading:
            value = self.config()
            return Response(200, value, dumps(value))
        if path == EXPLAIN_PATH and method == "POST":
            return self._explain(headers, body)
        if self.test_routes:
            for spoken, app in self.apps.items():
                prefix = self._test_prefix(spoken)
                if spoken != self.dialect and (path == prefix or path.startswith(prefix + "/")):
                    return app.answer(method, target[len(PREFIX) + len(spoken) :], headers, body)
        return error_answer(404, "not_found_error", f"no playground route for {shown(method)} {shown(path)}", None)

    def _explain(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        now = self._now(headers)
        if isinstance(now, Response):
            return now
        try:
            value: Any = loads(body)
        except DecodeError as exc:
            return bad_request(f"the explain body must be JSON: {exc.message}", None)
        if not isinstance(value, dict) or not {"method", "target"} <= set(value) or set(value) - _REQUEST_KEYS:
            return bad_request(
                'the explain body is {"method", "target", "headers"?, "body"?, "dialect"?}: a request', None
            )
        method, target, asked, text = value["method"], value["target"], value.get("headers", {}), value.get("body")
        if not isinstance(method, str) or not isinstance(target, str) or not target.startswith("/"):
            return bad_request("method must be a string and target a path starting with /", None, "target")
        if not isinstance(asked, dict) or not all(isinstance(v, str) for v in asked.values()):
            return bad_request("headers must be an object of strings", None, "headers")
        if text is not None and not isinstance(text, str):
            return bad_request("body must be a string or null", None, "body")
        spoken = value.get("dialect")
        if spoken is None:
            server = self.server_of(target.partition("?")[0])
        elif isinstance(spoken, str) and spoken in self.servers:
            server = self.servers[spoken]
        else:
            return bad_request(f"dialect must be one of {list(self.servers)}, got {shown(spoken)}", None, "dialect")
        with self.lock:
            at = self.clock() if now is None else now
            reply = explain_request(server, method, target, asked, (text or "").encode("utf-8"), at)
        reply["now"] = render_timestamp(at)
        reply["dialect"] = server.dialect.name
        return Response(200, reply, dumps(reply))

    def _now(self, headers: list[tuple[str, str]]) -> datetime | Response | None:
        if not self.test_clock:
            return None
        given = {value.strip() for name, value in headers if name.lower() == NOW_HEADER.lower()}
        if len(given) > 1:
            return bad_request(f"{NOW_HEADER} is given more than once, with different values", None, NOW_HEADER)
        try:
            return parse_timestamp(given.pop(), NOW_HEADER) if given else None
        except WorkstateError as exc:
            return bad_request(exc.message, None, NOW_HEADER)


def _raw(content: bytes, content_type: str) -> Response:
    return Response(200, None, content, {"content-type": content_type})
