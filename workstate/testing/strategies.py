"""Hypothesis strategies for the Work API: ids, timestamps, Worker-IDs, requests and command sequences.

Everything here is built from the API's own vocabulary (the routes, the parameters the endpoints
read, the core's commands), so generated values reach the rules and not only the parser::

    from hypothesis import given
    from workstate.testing import strategies as ws

    @given(ws.requests(ws.ids("env_"), ws.ids("work_"), hostile=True))
    def test_never_raises(request): ...

Importing this module registers a strategy for :class:`~workstate.WorkItem` (:func:`work_items`) and for
each command class (:class:`~workstate.Deliver`, :class:`~workstate.Ack`, :class:`~workstate.Heartbeat`,
:class:`~workstate.Stop`, :class:`~workstate.UpdateMetadata`, :class:`~workstate.Lapse`) with
``st.register_type_strategy``, so ``st.from_type(WorkItem)`` and ``st.from_type(Command)`` draw reachable
values. Nothing needs importing for that: workstate declares a ``hypothesis`` entry point
(:mod:`workstate.testing.hypothesis_hook`), which hypothesis runs when it is imported, and which registers
the same types with a resolver that imports this module the first time ``st.from_type`` asks for one
(``HYPOTHESIS_NO_PLUGINS=1`` turns every such hook off; then import this module).

Needs ``hypothesis`` (the ``testing`` extra).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from hypothesis import strategies as st

from .._time import UTC, render_timestamp
from ..api import BASE_PATH, Request
from ..api.routes import OPERATIONS
from ..dialect import QODER
from ..model import NO_HEARTBEAT, Ack, Command, Deliver, Heartbeat, Lapse, Stop, UpdateMetadata, WorkItem, step
from ..policy import DEFAULT_POLICY, Policy

__all__ = [
    "AUTHORIZATION",
    "BASE",
    "OPERATIONS",
    "TYPE_STRATEGIES",
    "build_request",
    "command_sequences",
    "commands",
    "hostile_requests",
    "ids",
    "metadata",
    "metadata_patches",
    "request_ids",
    "requests",
    "rfc3339",
    "timestamps",
    "well_formed_requests",
    "work_items",
    "worker_ids",
]

BASE = BASE_PATH
AUTHORIZATION = "Bearer workstate-test"

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


# --- ids, instants, names --------------------------------------------------------------------------------


def ids(prefix: str) -> st.SearchStrategy[str]:
    """Well-formed ids: ``prefix`` and 32 lowercase hex digits (``env_``, ``work_``, ``sess_``, ``req_``)."""
    return st.integers(0, 2**128 - 1).map(lambda n: f"{prefix}{n:032x}")


def request_ids() -> st.SearchStrategy[str]:
    """Values for ``x-request-id``: what clients send (visible ASCII tokens)."""
    return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24)


def timestamps(
    min_value: datetime = datetime(2000, 1, 1, tzinfo=UTC), max_value: datetime = datetime(2100, 1, 1, tzinfo=UTC)
) -> st.SearchStrategy[datetime]:
    """Timezone-aware UTC instants (microsecond precision) between the bounds."""
    low, high = min_value.astimezone(UTC).replace(tzinfo=None), max_value.astimezone(UTC).replace(tzinfo=None)
    return st.datetimes(low, high).map(lambda value: value.replace(tzinfo=UTC))


@st.composite
def _rfc3339(draw: st.DrawFn, base: st.SearchStrategy[datetime]) -> str:
    instant = draw(base)
    minutes = draw(st.sampled_from([0, 0, 60, -300, 330, -720, 840]))
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    digits = draw(st.sampled_from([6, 6, 0, 3, 9]))
    if digits in (0, 3) and local.microsecond % (10 ** (6 - digits)):
        digits = 6  # a shorter fraction would name another instant
    fraction = "" if digits == 0 else "." + f"{local.microsecond:06d}".ljust(9, "0")[:digits]
    if minutes == 0 and draw(st.booleans()):
        zone = "Z"
    else:
        sign = "-" if minutes < 0 else "+"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def rfc3339(instants: st.SearchStrategy[datetime] | None = None) -> st.SearchStrategy[str]:
    """RFC 3339 renderings of an instant in the forms clients use: ``Z`` or an offset, 0-9 fraction digits.

    Every string denotes exactly the drawn instant (extra fraction digits are zeros).
    """
    return _rfc3339(timestamps() if instants is None else instants)


def worker_ids() -> st.SearchStrategy[str]:
    """``Worker-ID`` header values: a few recurring names (so conflicts happen), and arbitrary tokens."""
    return st.one_of(
        st.sampled_from(["w1", "w2", "w3", "worker-a", "host-1/pid-42"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16),
    )


def metadata(max_keys: int = 4) -> st.SearchStrategy[dict[str, str]]:
    """String-to-string metadata within the default limits."""
    keys = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=8)
    return st.dictionaries(keys, st.text(max_size=12), max_size=max_keys)


def metadata_patches(max_keys: int = 4) -> st.SearchStrategy[dict[str, str | None]]:
    """Update-metadata patches: a string upserts, ``None`` deletes."""
    keys = st.sampled_from(["job", "stage", "owner", "k"])
    return st.dictionaries(keys, st.one_of(st.none(), st.text(max_size=8)), max_size=max_keys)


# --- requests ----------------------------------------------------------------------------------------------------


def build_request(
    operation: str,
    env: str,
    work: str | None = None,
    query: tuple[tuple[str, str], ...] = (),
    headers: tuple[tuple[str, str], ...] = (("Authorization", AUTHORIZATION),),
    body: bytes = b"",
) -> Request:
    """The request of one endpoint: ``operation`` is one of :data:`OPERATIONS`."""
    path = BASE + env + "/work"
    method = "POST" if operation in ("ack", "heartbeat", "stop", "update") else "GET"
    if operation in ("poll", "stats"):
        path += "/" + operation
    elif operation != "list":
        path += "/" + (work or "")
        if operation in ("ack", "heartbeat", "stop"):
            path += "/" + operation
    if query:
        path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    return Request(method, path, headers, body)


def _query(operation: str, draw: st.DrawFn, works: st.SearchStrategy[str]) -> tuple[tuple[str, str], ...]:
    """Valid query parameters of an endpoint (any subset)."""
    options: list[tuple[str, st.SearchStrategy[str]]] = []
    if operation == "poll":
        options = [
            ("block_ms", st.integers(1, 999).map(str)),
            ("reclaim_older_than_ms", st.sampled_from([0, 1, 5000, 60000]).map(str)),
        ]
    elif operation == "heartbeat":
        options = [
            ("desired_ttl_seconds", st.sampled_from([1, 10, 30, 60, 600, 601, 10**6]).map(str)),
            ("expected_last_heartbeat", st.one_of(st.just(NO_HEARTBEAT), rfc3339())),
        ]
    elif operation == "list":
        cursor = draw(st.sampled_from([None, "page", "before_id", "after_id"]))
        options = [("limit", st.sampled_from([1, 2, 20, 100, 101]).map(str))]
        if cursor is not None:
            options.append((cursor, works))
    found = []
    for name, values in options:
        if draw(st.booleans()):
            found.append((name, draw(values)))
    return tuple(found)


_WORKER = QODER.worker_header
"""The worker header of the requests drawn here (the qoder dialect's)."""


def _headers(operation: str, draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    headers = [("Authorization", AUTHORIZATION)]
    if operation in ("poll", "ack") and draw(st.booleans()):
        headers.append((_WORKER, draw(worker_ids())))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("x-request-id", draw(request_ids())))
    return tuple(headers)


def _body(operation: str, draw: st.DrawFn) -> bytes:
    if operation == "stop":
        return draw(st.sampled_from([b"", b"{}", b'{"force": true}', b'{"force": false}']))
    if operation == "update":
        return json.dumps({"metadata": draw(metadata_patches())}).encode()
    return draw(st.sampled_from([b"", b"{}"]))


@st.composite
def _well_formed(
    draw: st.DrawFn, envs: st.SearchStrategy[str], works: st.SearchStrategy[str], operations: tuple[str, ...]
) -> Request:
    operation = draw(st.sampled_from(operations))
    work = draw(works) if operation in ("ack", "heartbeat", "stop", "get", "update") else None
    return build_request(
        operation,
        draw(envs),
        work,
        _query(operation, draw, works),
        _headers(operation, draw),
        _body(operation, draw),
    )


def well_formed_requests(
    envs: st.SearchStrategy[str], works: st.SearchStrategy[str], operations: tuple[str, ...] = OPERATIONS
) -> st.SearchStrategy[Request]:
    """Requests a correct client sends: a known route, a bearer token, valid parameters and body."""

    return _well_formed(envs, works, operations)


# Each malformation is one way a request goes wrong; applied to a well-formed request it meets one check
# of the check order (api.md §4). Ids are never percent-encoded, so a request written with one
# server's ids can be translated into another's by replacing them.
_BAD_PARAMS: dict[str, list[tuple[str, str]]] = {
    "poll": [("block_ms", v) for v in ("0", "1000", "-1", "abc", "1e3", "", " 5", "1.0")]
    + [("reclaim_older_than_ms", v) for v in ("-1", "x", "")],
    "heartbeat": [("desired_ttl_seconds", v) for v in ("0", "-10", "x", "1.5", "")]
    + [("expected_last_heartbeat", v) for v in ("yesterday", "2026-13-01T00:00:00Z", "2026-07-01T08:15:01", "")],
    "list": [("limit", v) for v in ("0", "-3", "x", "")]
    + [("page", "work_xyz"), ("after_id", "env_" + "0" * 32), ("before_id", "")],
}
_BAD_BODIES = [b"{", b"[]", b"null", b"\xff", b'"x"', b"{}{}", b'{"a": 1}']
_BAD_STOP_BODIES = [b'{"force": "yes"}', b'{"force": null}', b'{"force": true, "x": 1}', b"[true]"]
_BAD_UPDATE_BODIES = [b"", b'{"metadata": null}', b'{"metadata": {"k": 1}}', b'{"metadata": []}', b'{"other": {}}']
_BAD_AUTH = [(), (("Authorization", ""),), (("Authorization", "Basic dTpw"),), (("Authorization", "Bearer"),)]


@st.composite
def _hostile(
    draw: st.DrawFn, envs: st.SearchStrategy[str], works: st.SearchStrategy[str], operations: tuple[str, ...]
) -> Request:
    operation = draw(st.sampled_from(operations))
    env = draw(envs)
    work = draw(works) if operation in ("ack", "heartbeat", "stop", "get", "update") else None
    query, headers, body = _query(operation, draw, works), _headers(operation, draw), _body(operation, draw)
    kinds = ["auth", "body", "route", "method", "unknown"]
    if operation in _BAD_PARAMS:
        kinds += ["param", "param", "twice"]
    if operation in ("poll", "ack"):
        kinds.append("worker")
    kind = draw(st.sampled_from(kinds))
    if kind == "auth":
        headers = draw(st.sampled_from(_BAD_AUTH)) + tuple(h for h in headers if h[0] != "Authorization")
    elif kind == "body":
        extra = _BAD_STOP_BODIES if operation == "stop" else _BAD_UPDATE_BODIES if operation == "update" else []
        body = draw(st.sampled_from(_BAD_BODIES + extra))
    elif kind == "param":
        query = (*query, draw(st.sampled_from(_BAD_PARAMS[operation])))
    elif kind == "twice":
        name, _ = draw(st.sampled_from(_BAD_PARAMS[operation]))
        value = {"block_ms": "5", "reclaim_older_than_ms": "0", "desired_ttl_seconds": "30"}.get(name, NO_HEARTBEAT)
        if name in ("limit",):
            value = "2"
        elif name in ("page", "after_id", "before_id"):
            value = draw(works)
        query = ((name, value), (name, value))
    elif kind == "worker":
        headers = (*tuple(h for h in headers if h[0] != _WORKER), (_WORKER, draw(st.sampled_from(["", " "]))))
    elif kind == "unknown":
        if work is not None and draw(st.booleans()):
            work = "work_" + "f" * 32
        else:
            env = draw(st.sampled_from(["env_" + "e" * 32, "env_short", "x"]))
    request = build_request(operation, env, work, query, headers, body)
    if kind == "route":
        suffix = draw(st.sampled_from(["/extra", "/", "/ack/ack"]))
        path, sep, rest = request.target.partition("?")
        prefix = draw(st.sampled_from(["", "/api/v2/cloud/environments/" + env, ""]))
        target = (prefix + "/work" if prefix else path + suffix) + sep + rest
        request = Request(request.method, target, request.headers, request.body)
    elif kind == "method":
        method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "get"]))
        request = Request(method, request.target, request.headers, request.body)
    return request


def hostile_requests(
    envs: st.SearchStrategy[str], works: st.SearchStrategy[str], operations: tuple[str, ...] = OPERATIONS
) -> st.SearchStrategy[Request]:
    """Requests that break one rule of the surface: a wrong method or route, no or a bad bearer token, an
    invalid parameter, a repeated parameter, an empty ``Worker-ID``, a malformed body, an unknown id.
    """
    return _hostile(envs, works, operations)


def requests(
    envs: st.SearchStrategy[str], works: st.SearchStrategy[str], *, hostile: bool = False
) -> st.SearchStrategy[Request]:
    """Well-formed requests to ``envs`` and ``works`` (and, with ``hostile=True``, malformed ones too)."""
    good = well_formed_requests(envs, works)
    return st.one_of(good, hostile_requests(envs, works)) if hostile else good


# --- the core's commands ----------------------------------------------------------------------------------------


def _who(workers: st.SearchStrategy[str | None] | None) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(["w1", "w2"])) if workers is None else workers


def _deliveries(workers: st.SearchStrategy[str | None] | None = None) -> st.SearchStrategy[Deliver]:
    return st.builds(Deliver, _who(workers), st.one_of(st.none(), st.sampled_from([0, 1000, 5000, 60000])))


def _acks(workers: st.SearchStrategy[str | None] | None = None) -> st.SearchStrategy[Ack]:
    return st.builds(Ack, _who(workers))


def _heartbeats() -> st.SearchStrategy[Heartbeat]:
    return st.builds(
        Heartbeat,
        st.one_of(st.none(), st.just(NO_HEARTBEAT), timestamps(T0, T0 + timedelta(hours=1)).map(render_timestamp)),
        st.one_of(st.none(), st.sampled_from([1, 10, 30, 60, 600, 601])),
    )


def _stops() -> st.SearchStrategy[Stop]:
    return st.builds(Stop, st.booleans())


def _updates() -> st.SearchStrategy[UpdateMetadata]:
    return st.builds(UpdateMetadata, metadata_patches())


def commands(workers: st.SearchStrategy[str | None] | None = None) -> st.SearchStrategy[Command]:
    """The core's commands (:func:`workstate.step`'s input), with a few recurring Worker-IDs."""
    return st.one_of(_deliveries(workers), _acks(workers), _heartbeats(), _stops(), _updates())


_JUMPS = st.sampled_from([0.0, 0.000001, 1.0, 5.0, 10.0, 30.0, 59.999999, 60.0, 61.0, 600.0, -1.0, -0.000001])


@st.composite
def _sequences(draw: st.DrawFn, max_size: int, start: datetime) -> list[tuple[datetime, Command]]:
    now, found = start, []
    for command in draw(st.lists(commands(), max_size=max_size)):
        now += timedelta(seconds=draw(_JUMPS))
        found.append((now, command))
    return found


def command_sequences(max_size: int = 12, start: datetime = T0) -> st.SearchStrategy[list[tuple[datetime, Command]]]:
    """Commands at instants: a clock that mostly moves forward, sometimes lands on round lease lengths,
    and sometimes steps back a little (the model keeps each item's timeline monotonic).
    """
    return _sequences(max_size, start)


# --- work items, as the lifecycle reaches them ----------------------------------------------------------------

_STEPS = st.one_of(commands(), st.just(Lapse()))


@st.composite
def _work_items(draw: st.DrawFn, policy: Policy, max_steps: int) -> WorkItem:
    now = draw(timestamps(T0 - timedelta(days=365), T0 + timedelta(days=365)))
    item = WorkItem(
        id=draw(ids("work_")),
        environment_id=draw(ids("env_")),
        session_id=draw(ids("sess_")),
        created_at=now,
        metadata=draw(metadata()),
    )
    for command in draw(st.lists(_STEPS, max_size=max_steps)):
        now += timedelta(seconds=draw(_JUMPS))
        item = step(item, command, now, policy).item
    return item


def work_items(policy: Policy = DEFAULT_POLICY, max_steps: int = 10) -> st.SearchStrategy[WorkItem]:
    """Every work item the lifecycle can reach under ``policy``: a fresh ``queued`` item (random ids, creation
    time and session metadata) run through :func:`workstate.step` by up to ``max_steps`` commands (lapses
    included) at a clock that mostly moves forward. Every value is one a server could hold, so it keeps the
    invariants; shrinking goes towards fewer steps, i.e. towards the fresh item.

    ``st.from_type(WorkItem)`` is this strategy under the spec's policy (registered when this module is imported).
    """
    return _work_items(policy, max_steps)


TYPE_STRATEGIES: dict[type, st.SearchStrategy[object]] = {
    WorkItem: work_items(),
    Deliver: _deliveries(),
    Ack: _acks(),
    Heartbeat: _heartbeats(),
    Stop: _stops(),
    UpdateMetadata: _updates(),
    Lapse: st.just(Lapse()),
}
"""What ``st.from_type`` draws for workstate's types (registered below, when this module is imported)."""

for _kind, _strategy in TYPE_STRATEGIES.items():
    st.register_type_strategy(_kind, _strategy)
