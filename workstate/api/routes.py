"""The routes: the one table of the Work API's endpoints, and what each endpoint reads from a request.

Every spelling comes from a :class:`~workstate.Dialect` (default :data:`~workstate.QODER`): its base path
(:data:`BASE_PATH` is ``QODER.base_path``, kept for compatibility; build a path with :func:`work_path`) and
its worker header. :func:`route` names the operation a method and path ask for (one of
:data:`OPERATIONS`, as :class:`~workstate.api.Access` carries it) with the environment and work
item they name, or refuses with a 404; the ``read_*`` functions turn what an endpoint reads (the
dialect's worker header (``Worker-ID``, ``Anthropic-Worker-ID``), a heartbeat's query, a stop's or an
update's body) into the core's command, or refuse with a 400 (a :class:`~workstate.api.wire.Refusal`).
The server and ``workstate check`` route and read with the same functions.

The endpoints (api.md §4), under the dialect's ``{base}{env}/work``:

- ``GET  /poll`` poll, ``GET /stats`` stats, ``GET ''`` (the collection) list;
- ``GET  /{work}`` get, ``POST /{work}`` update (metadata);
- ``POST /{work}/ack``, ``/{work}/heartbeat``, ``/{work}/stop``.

Decisions taken here where the spec is silent: a path is matched after percent-decoding each
segment (visible ASCII only, no empty segment); a known path with another method is 404 like an
unknown one; ``poll`` and ``stats`` are never work ids. Update metadata needs a JSON object whose
only key is the optional ``metadata`` (another key, or ``"metadata": null``: 400); an empty body
there is 400 too. A stop takes an empty body, ``{}`` or ``{"force": true|false}``.
"""

from __future__ import annotations

import re
from typing import Any

from .._time import SHOWN, shown
from ..dialect import QODER, Dialect
from ..errors import InvalidInput
from ..model import Heartbeat, Stop, UpdateMetadata
from ..rules import Reason
from .wire import VISIBLE_ASCII, bad, body_json, empty_body, integer, not_found, param, percent_decode

__all__ = [
    "BASE_PATH",
    "ITEM_OPERATIONS",
    "OPERATIONS",
    "PARAM_OF_REASON",
    "read_heartbeat",
    "read_stop",
    "read_update",
    "read_worker",
    "params_of_reasons",
    "route",
    "work_path",
]

BASE_PATH = QODER.base_path
"""The path every endpoint of the default dialect starts with (``QODER.base_path``); an environment id and
``/work`` follow it. Kept for compatibility: a dialect's own is ``dialect.base_path``."""
OPERATIONS = ("poll", "ack", "heartbeat", "stop", "get", "update", "list", "stats")
"""The operations :func:`route` names, in the order of api.md §4."""
ITEM_OPERATIONS = frozenset({"ack", "heartbeat", "stop", "get", "update"})
"""The operations on one work item (their route names it)."""
_CR_LF_NUL = re.compile(r"[\r\n\x00]")


def params_of_reasons(dialect: Dialect = QODER) -> dict[Reason, str]:
    """The error envelope's ``param`` for a rejection of the lifecycle in ``dialect`` (other rejections name none):
    a worker conflict names the dialect's worker header."""
    return {
        Reason.METADATA_LIMITS: "metadata",
        Reason.PRECONDITION_FAILED: "expected_last_heartbeat",
        Reason.WORKER_CONFLICT: dialect.worker_header,
    }


PARAM_OF_REASON = params_of_reasons(QODER)
"""The error envelope's ``param`` for a rejection of the lifecycle (other rejections name none), in ``QODER``."""


def work_path(env: str, work: str | None = None, operation: str | None = None, dialect: Dialect = QODER) -> str:
    """The path of an endpoint in ``dialect``: the collection of ``env``'s work, one item of it, or an operation on
    either.

    ``work_path(env)`` lists, ``work_path(env, operation="poll")`` polls, ``work_path(env, work)`` gets or
    updates, ``work_path(env, work, "ack")`` acks. Ids are put in as given (no percent-encoding).
    """
    return dialect.path(env, work, operation)


_ROUTED: dict[tuple[str, str, str], tuple[str, str, str | None]] = {}
_ROUTED_HELD = 4096  # the routes kept (then the memo starts afresh): an item's requests name its paths again
_ROUTED_LONGEST = 256  # a longer path is routed afresh every time (the memo holds short strings only)


def route(method: str, path: str, dialect: Dialect = QODER) -> tuple[str, str, str | None]:
    """(operation, environment id, work id) of a path in ``dialect``, or a 404 for anything that is not a route.

    Memoized (a route depends on the method, the path and the dialect's base path alone; refusals are not kept).
    """
    base = dialect.base_path
    if type(method) is str and type(path) is str and type(base) is str and len(path) <= _ROUTED_LONGEST:
        key = (method, path, base)
        found = _ROUTED.get(key)
        if found is None:
            found = _route(method, path, base)
            if len(_ROUTED) >= _ROUTED_HELD:
                _ROUTED.clear()
            _ROUTED[key] = found
        return found
    return _route(method, path, base)


def _route(method: str, path: str, base: str) -> tuple[str, str, str | None]:
    if not path.startswith(base):
        not_found("no such route")
    if not VISIBLE_ASCII.fullmatch(path):
        not_found("no such route")
    parts = path[len(base) :].split("/")
    if "%" in path:
        parts = [percent_decode(part, plus=False) or "" for part in parts]
    if not all(parts):
        not_found("no such route")
    if not 2 <= len(parts) <= 4 or parts[1] != "work":
        not_found("no such route")
    env_id = parts[0]
    if len(parts) == 2:
        if method == "GET":
            return "list", env_id, None
    elif len(parts) == 3:
        segment = parts[2]
        if method == "GET":
            return (segment, env_id, None) if segment in ("poll", "stats") else ("get", env_id, segment)
        if method == "POST" and segment not in ("poll", "stats"):
            return "update", env_id, segment
    elif method == "POST" and parts[3] in ("ack", "heartbeat", "stop") and parts[2] not in ("poll", "stats"):
        return parts[3], env_id, parts[2]
    not_found(f"no route for {shown(method)} {shown(path)}")


def read_worker(headers: dict[str, str | None], dialect: Dialect = QODER) -> str | None:
    """The dialect's worker header (``dialect.worker_header``) of headers read by
    :func:`~workstate.api.wire.read_headers` (None when absent); 400 when empty, malformed or holding CR, LF or
    NUL."""
    name = dialect.worker_header
    key = name.lower()
    if key not in headers:
        return None
    value = headers[key]
    if not value:
        bad(f"{name} must be a non-empty header, given once", name)
    if _CR_LF_NUL.search(value):
        bad(f"{name} must not hold CR, LF or NUL, got {shown(value)}", name)
    return value


def read_heartbeat(params: dict[str, str]) -> Heartbeat:
    """The heartbeat a query asks for (``expected_last_heartbeat``, ``desired_ttl_seconds``); 400 when malformed."""
    ttl_text = param(params, "desired_ttl_seconds")
    ttl = None if ttl_text is None else integer(ttl_text, "desired_ttl_seconds", "a positive integer")
    expected = param(params, "expected_last_heartbeat")
    try:
        return Heartbeat(expected, ttl)
    except InvalidInput as exc:
        bad(exc.message, exc.param)


def _param_name(key: str) -> str | None:
    """The envelope's ``param`` for a key of a body: the key itself, unless it is too long to echo."""
    return key if len(key) <= SHOWN else None


def _object_body(body: Any, what: str, key: str, example: str) -> dict[str, Any]:
    """A JSON object body whose only (optional) key is ``key``."""
    value = body_json(body)
    if not isinstance(value, dict):
        bad(f"the {what} body must be a JSON object, e.g. {example}")
    extra = sorted(set(value) - {key})
    if extra:
        bad(f"the {what} body takes only {key}, got {shown(extra[0])}", _param_name(extra[0]))
    return value


def read_stop(body: Any) -> Stop:
    """The stop a body asks for: empty, ``{}`` or ``{"force": true|false}``; 400 for anything else."""
    if empty_body(body):
        return Stop()
    value = _object_body(body, "stop", "force", '{} or {"force": true|false}')
    try:
        return Stop(value.get("force", False))
    except InvalidInput as exc:
        bad(exc.message, exc.param)


def read_update(body: Any) -> UpdateMetadata:
    """The metadata patch a body asks for: ``{"metadata": {...}}`` or ``{}``; 400 for anything else."""
    value = _object_body(body, "update", "metadata", '{"metadata": {"key": "value"}}')
    try:
        return UpdateMetadata(value.get("metadata", {}))
    except InvalidInput as exc:
        bad(exc.message, exc.param)
