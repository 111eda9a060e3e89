"""The playground: one page beside the API (``workstate serve --playground``, ``workstate playground``).

:class:`PlaygroundApp` is :class:`~workstate.asgi.WorkstateApp` plus the page and two read-only routes:

- ``GET /`` the page (``playground_page/index.html``, the generated lifecycle picture of
  :func:`workstate.tools.docgen.svg` put inline, so each state can be highlighted), ``GET /_playground/*.js|css``;
- ``GET /_playground/config``: what the page must not spell itself: the dialects served (name, base path, the
  path template of an environment's work, the worker header's name), the test clock's header and the test routes;
- ``POST /_playground/explain`` with ``{"method", "target", "headers", "body"}`` (the request the page is about
  to send, as it will send it): what the core decides for it on the item as the server holds it, at the request's
  ``X-Workstate-Now`` (the test clock) or now: :func:`workstate.explain`'s rule, the lapse applied first and the
  guard values, with the item's own fields the wire does not show (bound worker, deadline, version). For a poll,
  the item it would deliver; for a get, what time passing does to the item. It reads the request as the server
  reads it (:mod:`workstate.api.routes`), changes nothing, and answers 400 for a body it cannot read.

Everything else the page does goes through the Work API and the test routes, like any client.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Any

from .._time import parse_timestamp, render_timestamp
from ..api import Response, Server
from ..api.codec import DecodeError, dumps, loads
from ..api.routes import PARAM_OF_REASON, read_heartbeat, read_stop, read_update, read_worker, route, work_path
from ..api.wire import Refusal, integer, param, parse_query, read_headers
from ..errors import WorkstateError
from ..model import Accepted, Ack, Command, Deliver, Explanation, Lapse, WorkItem, explain, next_deadline
from ..rules import Reason, Rule, State
from ..tools.docgen import svg
from .app import NOW_HEADER, OPENAPI_PATH, TEST_PREFIX, WorkstateApp, bad_request, error_answer, shown

__all__ = ["CONFIG_PATH", "EXPLAIN_PATH", "PAGE_PATH", "PlaygroundApp", "dialect_wire"]

PAGE_PATH = "/"
PREFIX = "/_playground/"
CONFIG_PATH = PREFIX + "config"
EXPLAIN_PATH = PREFIX + "explain"
_ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
_SVG_MARK = "<!-- the lifecycle picture -->"
_REQUEST_KEYS = frozenset({"method", "target", "headers", "body"})


def dialect_wire(dialect: str) -> dict[str, str]:
    """How ``dialect`` spells what a client must know, read from :mod:`workstate.api.routes` (never written here):
    the base path, the template of an environment's work collection (``{env}`` in it) and the worker header."""
    return {
        "name": dialect,
        "base_path": work_path("{env}").split("{env}")[0],
        "work_path": work_path("{env}"),
        "worker_header": PARAM_OF_REASON[Reason.WORKER_CONFLICT],  # the header a worker conflict names
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
    return {
        "operation": operation,
        "status": why.outcome.status,
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
    """What the core decides for this request at ``now`` on the server's items as they stand (nothing changes)."""
    path, _, query = target.partition("?")
    operation = "route"
    try:
        operation, env_id, work_id = route(method, path)
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
            return _poll(server, env_id, Deliver(read_worker(read), reclaim), now)
        if operation == "ack":
            command = Ack(read_worker(read))
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
    return _explained(operation, explain(item, command, now, server.policy), item, server)


def _poll(server: Server, env_id: str, command: Deliver, now: datetime) -> Any:
    """The item a poll delivers (the oldest by creation whose rule delivers it), or the oldest queued one's rule."""
    envs = [env for env in server.snapshot() if env.id == env_id]
    if not envs:
        return _undecided("poll", 404, f"environment {shown(env_id)} not found")
    found: tuple[WorkItem, Explanation] | None = None
    for item in sorted(envs[0].items, key=lambda i: (i.created_at, i.id)):
        why = explain(item, command, now, server.policy)
        if why.state is not State.QUEUED:
            continue
        if isinstance(why.outcome, Accepted):
            return _explained("poll", why, item, server)
        found = found or (item, why)
    if found is not None:
        return _explained("poll", found[1], found[0], server) | {"status": 200}  # a poll answers null, never 409
    return _undecided("poll", 200, "no item is queued: the poll answers null")


class PlaygroundApp(WorkstateApp):
    """:class:`~workstate.asgi.WorkstateApp` serving the playground page and its two routes beside the API.

    It needs the reference :class:`~workstate.api.Server` (the page's explanations read its items). The page's
    clock and creation controls need ``test_clock`` (``workstate playground`` turns it on)."""

    def __init__(self, server: Server | None = None, **options: Any) -> None:
        super().__init__(server, **options)
        if not isinstance(self.server, Server):
            raise TypeError("the playground explains the reference Server's items: give it a workstate.api.Server")
        self.reference: Server = self.server
        self._page = _page()
        self.dialects = [dialect_wire(self.dialect)]  # another dialect served: one more entry, with its origin

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
            return self._playground(method, path, headers, body)
        return super().answer(method, target, headers, body, raw_headers=raw_headers, target_bytes=target_bytes)

    def _playground(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Response:
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
            return bad_request('the explain body is {"method", "target", "headers"?, "body"?}: a request', None)
        method, target, asked, text = value["method"], value["target"], value.get("headers", {}), value.get("body")
        if not isinstance(method, str) or not isinstance(target, str) or not target.startswith("/"):
            return bad_request("method must be a string and target a path starting with /", None, "target")
        if not isinstance(asked, dict) or not all(isinstance(v, str) for v in asked.values()):
            return bad_request("headers must be an object of strings", None, "headers")
        if text is not None and not isinstance(text, str):
            return bad_request("body must be a string or null", None, "body")
        with self.lock:
            at = self.clock() if now is None else now
            reply = explain_request(self.reference, method, target, asked, (text or "").encode("utf-8"), at)
        reply["now"] = render_timestamp(at)
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
