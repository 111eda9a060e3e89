"""``workstate check TRACE.jsonl``: judge traffic recorded from a real server against the reference.

A trace is one JSON object per line (``docs/trace.md``, ``docs/trace.schema.json``)::

    {"time": "...Z", "request": {"method", "target", "headers", "body"}, "response": {"status", "body"}}

:class:`Checker` replays every exchange through a reference :class:`~workstate.api.Server` at the
line's ``time`` and compares the recorded answer with the one the spec owes: status, ``error.type``
and the body's fields. Environments and items are seeded from the first time the trace sees them,
so a trace needs no creation lines; the recorded server's ids, request ids and timestamps are taken
as the real ones (the reference adopts them). What a mid-life object does not show (the bound
Worker-ID, the delivery, the lease TTL) is left unknown, and a disagreement that an unknown could
explain is reported as "not judged", never as a divergence. After any disagreement the reference
follows the recorded server (it adopts the recorded object, or undoes its own change), so one wrong
answer is reported once, not on every later line. Replies are read tolerantly, as a client reads them:
a key the codec does not know is ignored, noted once per key path and kind of object (a ``note``,
never a divergence), and the answer is judged by the fields the codec knows.

This module is pure: it reads the lines it is given and never a clock. The command,
:mod:`workstate.cli.check`, is the edge that opens the file and prints the report.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import attrs

from .._time import parse_timestamp, render_timestamp
from ..api.codec import (
    STRICT_JSON,
    DecodeError,
    ErrorEnvelope,
    HeartbeatObject,
    ListEnvelope,
    StatsObject,
    WorkObject,
    parse_timestamp_memo,
    unknown_keys,
)
from ..api.routes import ITEM_OPERATIONS, route
from ..api.server import EnvironmentKind, Server
from ..api.wire import Refusal, Request, Response, echoed_request_id, integer, param, parse_query
from ..dialect import QODER, Dialect, ErrorStyle, ListStyle
from ..errors import InvalidInput, WorkstateError
from ..model import Deliver, Lapse, Rejected, WorkItem, step
from ..policy import Policy
from ..rules import State

__all__ = [
    "BLANK",
    "HEADER_KEY",
    "Checker",
    "Exchange",
    "Finding",
    "Header",
    "Kind",
    "Report",
    "TraceCheck",
    "check_lines",
    "header_line",
    "parse_header",
    "parse_line",
    "plural",
    "policy_hints",
    "split_lines",
]

_Decoded = TypeVar("_Decoded")
_UNKNOWN_BY_STATE: dict[State, frozenset[str]] = {
    State.QUEUED: frozenset({"delivery"}),
    State.STARTING: frozenset({"worker"}),
    State.ACTIVE: frozenset({"worker", "ttl"}),
    State.STOPPING: frozenset({"worker", "ttl"}),
    State.STOPPED: frozenset(),
}
_STAMPS = ("acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at")
_LIVE_WORKED = (State.STARTING, State.ACTIVE, State.STOPPING)
_MAX_SKEW = timedelta(days=1)
# The api.md section of each item operation: a 200 answer to it carries the object named here, whatever the
# item's state.
_ANSWER_OF: dict[str, tuple[str, str]] = {
    "ack": ("4.2 ack", "work object"),
    "heartbeat": ("4.3 heartbeat", "heartbeat object"),
    "stop": ("4.4 stop", "work object"),
    "get": ("4.5 get", "work object"),
    "update": ("4.5 update metadata", "work object"),
    "list": ("4.6 list", "list envelope"),
}


class Kind(enum.StrEnum):
    DIVERGENCE = "divergence"  # the recorded answer is not the one the spec owes
    MALFORMED = "malformed"  # the line is not an exchange of the trace format
    NOT_JUDGED = "not_judged"  # the answer depends on something the trace never showed
    NOTE = "note"  # worth knowing, not wrong: a reply's key the codec does not know (read tolerantly, ignored)


@attrs.frozen
class Exchange:
    """One line of a trace: a request at ``time`` and the answer the recorded server gave."""

    line: int
    time: datetime
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    response: Any  # the recorded body: a JSON value, or text

    @property
    def request(self) -> Request:
        return Request(self.method, self.target, self.headers, self.body)


@attrs.frozen
class Finding:
    """What the checker found on one line."""

    line: int
    kind: Kind
    rule: str  # the spec rule that decided the expected answer ("trace format" for a malformed line)
    request: str  # "METHOD target"
    expected: str
    actual: str
    differences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "kind": self.kind.value,
            "rule": self.rule,
            "request": self.request,
            "expected": self.expected,
            "actual": self.actual,
            "differences": list(self.differences),
        }


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 line``, ``2 lines``: a count and its noun, in the number the count asks for."""
    return f"{count} {noun}" if count == 1 else f"{count} {many or noun + 's'}"


@attrs.frozen
class Report:
    lines: int
    exchanges: int
    seeded: int  # lines whose item the trace first saw there (adopted, not judged)
    findings: tuple[Finding, ...]
    # Per kind, how many findings there were, when they were streamed rather than kept (None: count `findings`).
    counts: tuple[tuple[Kind, int], ...] | None = None
    header: Header | None = None  # the trace's header line, when it had one
    hints: tuple[str, ...] = ()  # which --policy would explain a divergence (policy_hints)

    def of_kind(self, kind: Kind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)

    def count(self, kind: Kind) -> int:
        if self.counts is not None:
            return dict(self.counts).get(kind, 0)
        return sum(1 for f in self.findings if f.kind is kind)

    @property
    def exit_status(self) -> int:
        """1 when some answer diverged or some line is malformed, else 0 (not judged lines and notes pass)."""
        return 1 if self.count(Kind.DIVERGENCE) or self.count(Kind.MALFORMED) else 0

    def summary(self) -> str:
        count = {kind: self.count(kind) for kind in Kind}
        return (
            f"{plural(self.exchanges, 'exchange')} on {plural(self.lines, 'line')}: {count[Kind.DIVERGENCE]} "
            f"divergent, {count[Kind.MALFORMED]} malformed, {count[Kind.NOT_JUDGED]} not judged, {self.seeded} seeded"
            + (f", {plural(count[Kind.NOTE], 'note')}" if count[Kind.NOTE] else "")
        )

    def head_json(self) -> dict[str, Any]:
        """:meth:`to_json` without its findings (what a streaming writer prints around them)."""
        head: dict[str, Any] = {
            "lines": self.lines,
            "exchanges": self.exchanges,
            "seeded": self.seeded,
            "divergences": self.count(Kind.DIVERGENCE),
            "malformed": self.count(Kind.MALFORMED),
            "not_judged": self.count(Kind.NOT_JUDGED),
            "notes": self.count(Kind.NOTE),
            "exit_status": self.exit_status,
        }
        if self.header is not None:
            head["header"] = {"line": self.header.line, "dialect": self.header.dialect.name}
        if self.hints:
            head["policy_hints"] = list(self.hints)
        return head

    def to_json(self) -> dict[str, Any]:
        return {**self.head_json(), "findings": [f.to_json() for f in self.findings]}


# --- the header line: the recorded server's policy and dialect -------------------------------------------

HEADER_KEY = "workstate_trace"
"""The one key of a header line: ``{"workstate_trace": {"format": 1, "dialect": ..., "policy": {...}}}``."""
_FORMAT = 1


@attrs.frozen
class Header:
    """A trace's header line: the policy and dialect of the server that recorded it."""

    line: int
    policy: Policy
    dialect: Dialect


def _plain_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (Policy, Dialect)):
        return {f.name: _plain_json(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple):
        return [_plain_json(v) for v in value]
    return value


def header_line(policy: Policy, dialect: Dialect = QODER) -> str:
    """The header line ``workstate serve --record`` writes first (with its newline): every field of ``policy``
    by name and value, and the dialect by name when it is a shipped one (else every field of it)."""
    from ..dialect import DIALECTS

    shipped = DIALECTS.get(dialect.name) == dialect
    body = {
        "format": _FORMAT,
        "dialect": dialect.name if shipped else _plain_json(dialect),
        "policy": _plain_json(policy),
    }
    return json.dumps({HEADER_KEY: body}, separators=(",", ":")) + "\n"


def _read_fields(cls: type[Any], given: Any, base: Any, where: str) -> Any:
    """An attrs value of ``cls`` over ``base``, its fields read from JSON by the type of ``base``'s values."""
    if not isinstance(given, dict):
        raise _Malformed(f"{where} must be an object")
    names = {f.name for f in attrs.fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise _Malformed(f"{where}.{unknown[0]} is not a field")
    fields: dict[str, Any] = {}
    for name, value in given.items():
        current = getattr(base, name)
        try:
            if isinstance(current, enum.Enum):
                fields[name] = type(current)(value)
            elif isinstance(current, Policy):
                fields[name] = _read_fields(Policy, value, current, f"{where}.{name}")
            elif isinstance(current, bool) or current is None:
                if current is not None and not isinstance(value, bool):
                    raise ValueError
                fields[name] = value
            elif isinstance(current, tuple):
                if not isinstance(value, list):
                    raise ValueError
                fields[name] = tuple(value)
            elif isinstance(current, int) and not isinstance(value, bool) and isinstance(value, int):
                fields[name] = value
            elif isinstance(current, float) and not isinstance(value, bool) and isinstance(value, (int, float)):
                fields[name] = float(value)
            elif isinstance(current, str) and isinstance(value, str):
                fields[name] = value
            else:
                raise ValueError
        except (ValueError, TypeError):
            raise _Malformed(f"{where}.{name}: cannot read {json.dumps(value)}") from None
    try:
        return attrs.evolve(base, **fields)
    except (WorkstateError, ValueError, TypeError) as exc:
        raise _Malformed(f"{where}: {getattr(exc, 'message', exc)}") from None


def parse_header(text: str, line: int = 1) -> Header | None:
    """The header of a header line, None for any other line; ``ValueError`` naming what is wrong with a header
    line that cannot be read (an unknown dialect, a field that is not the policy's, a value of the wrong type)."""
    if HEADER_KEY not in text:
        return None
    try:
        value = STRICT_JSON.decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or set(value) != {HEADER_KEY}:
        return None
    from ..dialect import DIALECTS

    try:
        body = _keys(value[HEADER_KEY], f"{HEADER_KEY}.", ("format", "dialect", "policy"))
        if body["format"] != _FORMAT:
            raise _Malformed(f"{HEADER_KEY}.format {json.dumps(body['format'])} is not {_FORMAT}")
        named = body["dialect"]
        if isinstance(named, str):
            if named not in DIALECTS:
                raise _Malformed(f"{HEADER_KEY}.dialect {json.dumps(named)} is not one of {sorted(DIALECTS)}")
            dialect = DIALECTS[named]
        else:
            dialect = _read_fields(Dialect, named, QODER, f"{HEADER_KEY}.dialect")
        policy = _read_fields(Policy, body["policy"], dialect.policy, f"{HEADER_KEY}.policy")
    except _Malformed as exc:
        raise ValueError(str(exc)) from None
    return Header(line, policy, dialect)


# --- reading lines (no jsonschema at run time: the format is checked here) ------------------------------


class _Malformed(Exception):
    pass


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise _Malformed(f"{where}{key} is missing")
    return obj[key]


def _keys(obj: Any, where: str, required: tuple[str, ...]) -> dict[str, Any]:
    if type(obj) is dict and len(obj) == len(required) and all(key in obj for key in required):
        return obj  # the common case: exactly the fields required (no extra one, none missing)
    if not isinstance(obj, dict):
        raise _Malformed(f"{where.rstrip('.') or 'the line'} must be a JSON object")
    extra = sorted(set(obj) - set(required))
    if extra:
        raise _Malformed(f"{where}{extra[0]} is not a field of the trace format")
    for key in required:
        _field(obj, key, where)
    return obj


_MAX_DEPTH = 100  # nesting levels of a line (its own object is level 1); a real exchange needs fewer than 10
_SURROGATE = re.compile(r"[\ud800-\udfff]")
BLANK = " \t\r\n"
"""JSON's whitespace: a line of nothing else is skipped."""


def _not_text(text: str) -> str | None:
    """Why ``text`` cannot be UTF-8 (a byte read with ``surrogateescape``, or a lone surrogate), else None."""
    match = None if text.isascii() else _SURROGATE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    where = f"at character {match.start() + 1}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"not UTF-8: the byte 0x{code - 0xDC00:02x} {where}"
    return f"not UTF-8: a lone surrogate {where}"


def _check_value(value: Any, text: str) -> None:
    """No string or key of ``value`` holds a lone surrogate, and it nests at most ``_MAX_DEPTH`` levels."""
    surrogates = "\\u" in text  # only an escape makes a lone surrogate out of text that is UTF-8
    deep = text.count("[") + text.count("{") > _MAX_DEPTH
    if not (surrogates or deep):
        return
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, str):
            if surrogates and _SURROGATE.search(node):
                raise _Malformed("a string holds a lone surrogate")
        elif isinstance(node, (dict, list)):
            if depth > _MAX_DEPTH:
                raise _Malformed(f"the line is nested deeper than {_MAX_DEPTH} levels")
            if isinstance(node, dict):
                for key, item in node.items():
                    if surrogates and _SURROGATE.search(key):
                        raise _Malformed("a key holds a lone surrogate")
                    todo.append((item, depth + 1))
            else:
                todo.extend((item, depth + 1) for item in node)


def parse_line(text: str, line: int) -> Exchange:
    """One trace line as an :class:`Exchange`; raise ``ValueError`` naming what is wrong.

    The line must be JSON text: no ``NaN`` or ``Infinity``, no key twice in one object, no lone surrogate
    (raw or escaped), no byte that was not UTF-8 (read with ``surrogateescape``), and at most 100 levels of
    nesting.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"a trace line must be a str, got {type(text).__name__}", param="text")
    problem = _not_text(text)
    if problem is not None:
        raise ValueError(problem)
    try:
        value = STRICT_JSON.decode(text)
    except RecursionError:
        raise ValueError(f"the line is nested deeper than {_MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN and Infinity, ints longer than Python parses
        raise ValueError(f"not JSON: {exc}") from None
    try:
        _check_value(value, text)
        top = _keys(value, "", ("time", "request", "response"))
        if not isinstance(top["time"], str):
            raise _Malformed("time must be an RFC 3339 string")
        try:
            time = parse_timestamp_memo(top["time"], "time")
        except WorkstateError as exc:
            raise _Malformed(exc.message) from None
        request = _keys(top["request"], "request.", ("method", "target", "headers", "body"))
        method, target, headers, body = (request[k] for k in ("method", "target", "headers", "body"))
        if not isinstance(method, str) or not method:
            raise _Malformed("request.method must be a non-empty string")
        if not isinstance(target, str) or not target.startswith("/"):
            raise _Malformed("request.target must be a string starting with /")
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise _Malformed("request.headers must be an object of strings")
        if body is not None and not isinstance(body, str):
            raise _Malformed("request.body must be a string or null")
        response = _keys(top["response"], "response.", ("status", "body"))
        status = response["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise _Malformed("response.status must be an integer from 100 to 599")
        try:
            raw = b"" if body is None else body.encode("utf-8")
        except UnicodeEncodeError:
            raise _Malformed("request.body is not valid Unicode") from None
    except _Malformed as exc:
        raise ValueError(str(exc)) from None
    return Exchange(line, time, method, target, tuple(headers.items()), raw, status, response["body"])


# --- judging --------------------------------------------------------------------------------------------


def _summary(status: int, body: Any) -> str:
    """A short reading of an answer: ``409 invalid_request_error`` or ``200 state=starting``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "type" in error:
            return f"{status} {error['type']}"
        if "state" in body:
            return f"{status} state={body['state']}"
        if "data" in body and isinstance(body["data"], list):
            return f"{status} list of {len(body['data'])}"
        if body.get("type") == "work_queue_stats":
            return f"{status} stats"
    if body is None:
        return f"{status} null"
    return f"{status} {json.dumps(body)[:60]}"


def _rule_of(response: Response, operation: str | None) -> str:
    if response.rule is not None:
        return f"{response.rule.section} {response.rule.name}"
    status = response.status
    if status == 200:
        return {
            "poll": "4.1 poll: the oldest deliverable item by creation order, else null",
            "get": "4.5 get",
            "list": "4.6 list",
            "stats": "4.7 stats",
        }.get(operation or "", "4")
    error = response.json.get("error", {}) if isinstance(response.json, dict) else {}
    param = error.get("param")
    why = {
        401: "401: missing or malformed bearer",
        403: "403: not authorized",
        404: "404: unknown route, environment or work item",
        400: "400: environment not self_hosted, or a parameter or body is invalid",
    }.get(status, str(status))
    return f"4 check order, {why}" + (f" (param {param})" if param else "")


class Checker:
    """Replays exchanges through a reference :class:`Server`, seeding what the trace first sees mid-life."""

    def __init__(
        self, policy: Policy | None = None, *, skew: timedelta = timedelta(seconds=1), dialect: Dialect = QODER
    ) -> None:
        if not isinstance(dialect, Dialect):
            raise InvalidInput(f"dialect must be a workstate.Dialect, got {type(dialect).__name__}", param="dialect")
        if policy is None:
            policy = dialect.policy
        if not isinstance(policy, Policy):
            raise InvalidInput(f"policy must be a workstate.Policy, got {type(policy).__name__}", param="policy")
        if not isinstance(skew, timedelta) or not timedelta(0) <= skew <= _MAX_SKEW:
            raise InvalidInput(f"skew must be a datetime.timedelta from 0 to 1 day, got {skew!r}", param="skew")
        self.policy = policy
        self.dialect = dialect
        self.skew = skew
        self._worker_header = dialect.worker_header.lower()
        self._deny = False
        self._leased: dict[tuple[str, str], WorkItem] = {}  # (env, work) -> the item as it last held a lease
        self.server = Server(policy, dialect=dialect, authorizer=lambda access: not self._deny, on_change=self._changed)
        self._envs_seen: set[str] = set()
        self.unknown: dict[str, set[str]] = {}  # work id -> facts the trace has not shown
        # env -> the largest id of a first page shorter than its limit: every item up to it was shown then (ids
        # ascend with creation, api.md §4.6, and items never disappear), so no unseen item precedes it, ever.
        self._complete: dict[str, str] = {}
        self._complete_line: dict[str, int] = {}
        self._polled: dict[str, dict[str, datetime]] = {}  # env -> Worker-ID -> latest time of a recorded 200 poll
        self._noted: set[tuple[str, str]] = set()  # (kind of object, key path without indexes) noted already
        self.seeded = 0
        self._as_reference = False  # the line's reply was the reference's own JSON, value for value

    # --- seeding ---

    def _seed_environment(self, ex: Exchange, env_id: str) -> str | None:
        """Seed ``env_id`` from the first answer that shows whether it exists, and its kind.

        An answer decided before the environment (401, 403) or outside the model (429, 5xx) shows neither,
        nor does a 404 that an empty ``self_hosted`` environment gives too (an item lookup's): the
        environment stays unseen, and a later answer seeds it. Returns why the line cannot be judged when
        the answer depends on the kind it does not show (a 400 about an unseen item, where errors name no
        ``param``), else None."""
        if not self.dialect.valid_id("env", env_id):
            self._envs_seen.add(env_id)
            return None
        if ex.status in (401, 403) or self._transient(ex):
            return None
        # What a self_hosted environment with nothing in it answers decides the kind (or the absence).
        scratch = Server(self.policy, dialect=self.dialect)
        scratch.adopt_environment(env_id, now=ex.time)
        answer = scratch.handle(ex.request, ex.time)
        if ex.status == 404 and answer.status == 404:
            return None  # an unknown item in an existing environment, or an unknown environment: not shown
        recorded = ex.response if isinstance(ex.response, dict) else {}
        error = recorded.get("error")
        named = isinstance(error, dict) and "param" in error
        if ex.status == 400 and answer.status == 404 and self.dialect.error_style is not ErrorStyle.PARAM:
            # errors name no param here: a cloud environment's 400, or one about an item the trace never showed
            return f"a 400 about {env_id}'s item the trace never showed: the environment's kind is not shown"
        self._envs_seen.add(env_id)
        if ex.status == 400 and not named and answer.status != 400:
            self.server.adopt_environment(env_id, EnvironmentKind.CLOUD, now=ex.time)
        elif ex.status == 404:
            return None  # an empty environment would not give it: the recorded server does not have it
        else:
            self.server.adopt_environment(env_id, now=ex.time)
        return None

    def _item_from(
        self, obj: WorkObject, base: WorkItem | None, *, worker: str | None = None, delivered: datetime | None = None
    ) -> WorkItem:
        """A model item showing ``obj``; what the wire does not show comes from ``base`` where it still holds."""
        same = base is not None and base.state is obj.state
        kept = base if same else None
        worker_id = None
        if obj.state in _LIVE_WORKED:
            if base is not None and base.state in _LIVE_WORKED:
                worker_id = base.worker_id
            elif worker is not None:
                worker_id = worker
        shown = {n: None if getattr(obj, n) is None else _plain(getattr(obj, n)) for n in _STAMPS}
        created_at = _plain(obj.created_at)
        stamps = [v for v in shown.values() if v is not None]
        clock = max([created_at, *stamps] + ([base.clock] if base else []))
        delivered_at = delivered_to = None
        if obj.state is State.QUEUED:
            if delivered is not None:
                # As the core stamps a delivery: at the trace's time, or the item's clock when that is later
                # (a trace whose clock is behind the recorded server's created_at keeps the delivery).
                delivered_at, delivered_to = max(delivered, clock), worker
                clock = delivered_at
            elif kept is not None:
                delivered_at, delivered_to = kept.delivered_at, kept.delivered_to  # within base.clock
        ttl = None
        if obj.latest_heartbeat_at is not None:
            ttl = base.ttl_seconds if base is not None and base.ttl_seconds else self.policy.max_ttl_seconds
        return WorkItem(
            id=obj.id,
            environment_id=obj.environment_id,
            session_id=obj.session_id,
            data_type=obj.data_type,
            created_at=created_at,
            state=obj.state,
            metadata=obj.metadata,
            worker_id=worker_id,
            delivered_at=delivered_at,
            delivered_to=delivered_to,
            ttl_seconds=ttl,
            clock=clock,
            version=0 if base is None else base.version + 1,
            **shown,
        )

    def _seed_item(self, obj: WorkObject, *, fresh: bool = False) -> str | None:
        """Adopt an item first seen in a response; None, or why it could not be."""
        try:
            item = self._item_from(obj, None)
            if fresh:  # seen in a poll's answer: before the poll it was queued, its delivery unknown
                item = attrs.evolve(item, delivered_at=None, delivered_to=None)
            self.server.adopt(item)
        except WorkstateError as exc:
            return exc.message
        self.unknown[obj.id] = set(_UNKNOWN_BY_STATE[obj.state])
        return None

    # --- one exchange ---

    def check(self, ex: Exchange) -> list[Finding]:
        _DECODED.clear()
        try:
            operation, env_id, work_id = route(ex.method, ex.target.partition("?")[0], self.dialect)
        except Refusal:
            operation, env_id, work_id = None, None, None
        self._as_reference = False
        judged = self._judge(ex, operation, env_id, work_id)
        # A reply equal to the reference's own has no key the codec does not know: its notes need no looking for.
        notes = [] if self._as_reference else self._notes(ex, operation)
        return [*notes, *judged] if notes else judged

    def _notes(self, ex: Exchange, operation: str | None) -> list[Finding]:
        """A note of each key of the reply that the codec does not know, the first time its path (without list
        indexes) is seen in that kind of object. Replies are read tolerantly: such keys are ignored, and the
        answer is judged by the fields the codec knows."""
        kind = _reply_kind(ex, operation)
        if kind is None or not isinstance(ex.response, dict):
            return []
        paths = unknown_keys(ex.response, kind, self.dialect)
        if not paths or not _decodes(ex.response, kind, self.dialect):
            return []  # a body that is not the object at all has no unknown keys: its shape is judged instead
        new = []
        for path in paths:
            key = (kind.__name__, _INDEX.sub("[]", path))
            if key not in self._noted:
                self._noted.add(key)
                new.append(f"unknown key {path} in {_REPLY_NAMES[kind]}: ignored")
        if not new:
            return []
        return [Finding(ex.line, Kind.NOTE, "-", _request(ex), "-", _summary(ex.status, ex.response), tuple(new))]

    def _judge(self, ex: Exchange, operation: str | None, env_id: str | None, work_id: str | None) -> list[Finding]:
        if env_id is not None and env_id not in self._envs_seen and operation is not None:
            unseen = self._seed_environment(ex, env_id)
            if unseen is not None:
                return [self._not_judged(ex, unseen)]
        if (
            operation is None
            or env_id is None
            or self.server.environment_kind(env_id) is not EnvironmentKind.SELF_HOSTED
        ):
            return self._judge_plain(ex, operation)
        if operation == "poll":
            return self._judge_poll(ex, env_id)
        if operation in ITEM_OPERATIONS and work_id is not None:
            return self._judge_item(ex, operation, env_id, work_id)
        if operation == "list":
            return self._judge_list(ex, env_id)
        if operation == "stats":
            return self._judge_stats(ex, env_id)
        return self._judge_plain(ex, operation)

    def _handle(self, ex: Exchange) -> Response:
        self._deny = ex.status == 403  # the authorizer's word is the recorded server's
        try:
            return self.server.handle(ex.request, ex.time)
        finally:
            self._deny = False

    def _finding(
        self, ex: Exchange, kind: Kind, expected: Response, differences: list[str], operation: str | None
    ) -> Finding:
        return Finding(
            ex.line,
            kind,
            _rule_of(expected, operation),
            _request(ex),
            _summary(expected.status, expected.json),
            _summary(ex.status, ex.response),
            tuple(differences),
        )

    def _transient(self, ex: Exchange) -> bool:
        return ex.status == 429 or ex.status >= 500

    def _judge_plain(self, ex: Exchange, operation: str | None) -> list[Finding]:
        if self._transient(ex):
            return [self._not_judged(ex, "429 and 5xx are outside the model; assumed to change nothing")]
        expected = self._handle(ex)
        differences = self._compare_envelope(ex, expected)
        if not differences and expected.status == 200 and operation == "stats":
            try:
                _decode(StatsObject, ex.response, self.dialect)
            except DecodeError as exc:
                differences.append(f"body: {exc.message} ({exc.param})")
        return [self._finding(ex, Kind.DIVERGENCE, expected, differences, operation)] if differences else []

    def _not_judged(self, ex: Exchange, why: str) -> Finding:
        return Finding(ex.line, Kind.NOT_JUDGED, "-", _request(ex), "-", _summary(ex.status, ex.response), (why,))

    def _compare_envelope(self, ex: Exchange, expected: Response) -> list[str]:
        """Status, and for errors ``error.type`` and the echoed request id."""
        if ex.status != expected.status:
            return [f"status: expected {expected.status}, got {ex.status}"]
        if expected.status == 200:
            return []
        try:
            envelope = _decode(ErrorEnvelope, ex.response, self.dialect)
        except DecodeError as exc:
            return [f"body: not an error envelope: {_decode_problem(exc)}"]
        found = []
        if envelope.error_type != expected.json["error"]["type"]:
            found.append(f"error.type: expected {expected.json['error']['type']}, got {envelope.error_type}")
        sent = echoed_request_id(ex.headers)  # the reference's rule: None when it generates one
        if sent is not None and envelope.request_id != sent:
            found.append(f"request_id: expected the x-request-id {sent!r}, got {envelope.request_id!r}")
        want = expected.json["error"].get("details")
        if isinstance(want, dict):  # a dialect whose errors carry details (the peer's 412): what they must say
            got = envelope.details or {}
            if got.get("error_code") != want.get("error_code"):
                found.append(
                    f"error.details.error_code: expected {want.get('error_code')}, got {got.get('error_code')}"
                )
            state = want.get("current_state", {}).get("state")
            shown = got.get("current_state")
            if state is not None and (not isinstance(shown, dict) or shown.get("state") != state):
                got_state = shown.get("state") if isinstance(shown, dict) else None
                found.append(f"error.details.current_state.state: expected {state}, got {_show(got_state)}")
        return found

    def _ack_worker(self, ex: Exchange) -> str | None:
        """The worker an ack names: its worker header where the dialect's ack reads one (else None: the ack binds
        the worker the delivery stored)."""
        return _header(ex, self._worker_header) if self.dialect.ack_checks_worker else None

    def _compare_work(self, expected: Any, actual: Any, where: str = "") -> list[str]:
        try:
            obj = _decode(WorkObject, actual, self.dialect)
        except DecodeError as exc:
            return [f"{where}body: not a work object: {_decode_problem(exc)}"]
        ref = _decode(WorkObject, expected, self.dialect)
        found = []
        for name in ("id", "environment_id", "session_id", "state", "created_at"):
            if _plain_value(getattr(ref, name)) != _plain_value(getattr(obj, name)):
                found.append(f"{where}{name}: expected {_show(getattr(ref, name))}, got {_show(getattr(obj, name))}")
        for name in self._stamps_differ(ref, obj):
            found.append(f"{where}{name}: expected {_show(getattr(ref, name))}, got {_show(getattr(obj, name))}")
        if dict(ref.metadata) != dict(obj.metadata):
            found.append(f"{where}metadata: expected {dict(ref.metadata)}, got {dict(obj.metadata)}")
        return found

    def _uncertain(self, *work_ids: str | None, facts: Iterable[str] = ("worker", "delivery", "ttl")) -> str | None:
        wanted = set(facts)
        for work_id in work_ids:
            if work_id is not None and self.unknown.get(work_id, set()) & wanted:
                missing = ", ".join(sorted(self.unknown[work_id] & wanted))
                return f"{work_id} was first seen mid-life; its {missing} is unknown"
        return None

    def _stamps_differ(self, ref: WorkItem | WorkObject, obj: WorkItem | WorkObject) -> list[str]:
        """The timestamps set in one and not the other, or more than the skew apart."""
        found = []
        for name in _STAMPS:
            want, got = getattr(ref, name), getattr(obj, name)
            if (want is None) != (got is None) or (want is not None and abs(want - got) > self.skew):
                found.append(name)
        return found

    def _changed(self, env_id: str, old: WorkItem | None, new: WorkItem) -> None:
        """The replay's ``on_change``: remember each item as it last held a lease (what an unseen lapse lapses)."""
        if new.latest_heartbeat_at is not None and (new.state is State.ACTIVE or new.state is State.STOPPING):
            self._leased[env_id, new.id] = new

    def _unseen_lapse(self, env_id: str, shown: WorkObject, now: datetime) -> str | None:
        """Why a lapse the trace did not see may explain that the recorded server holds ``shown`` at ``now``, or
        None when none can. Its TTL must be unknown, and for some TTL of the policy's range (the shortest, or the
        one ``shown``'s ``stopped_at`` implies) the core must lapse the item, as it last held its lease, by ``now``
        into ``shown``'s state and stamps (within the skew). The replay, which assumes the largest TTL, may have
        lapsed it since, later: that lapse is its own guess, not a fact the recorded item must agree with."""
        reason = self._uncertain(shown.id, facts=("ttl",))
        leased = self._leased.get((env_id, shown.id)) if reason else None
        current = self.server.work(env_id, shown.id)
        if leased is None or leased.latest_heartbeat_at is None or current is None:
            return None
        if current != leased and current != step(leased, Lapse(), now, self.policy).item:
            return None  # the item moved on since, by a request of the trace
        low, high = self.policy.min_ttl_seconds, self.policy.max_ttl_seconds
        ttls = {low}
        if shown.stopped_at is not None:
            seconds = (shown.stopped_at - leased.latest_heartbeat_at) / timedelta(seconds=1)
            ttls |= {math.floor(seconds), math.ceil(seconds)}
        for ttl in sorted(t for t in ttls if low <= t <= high):
            lapsed = step(attrs.evolve(leased, ttl_seconds=ttl), Lapse(), now, self.policy).item
            if (
                lapsed.state is not leased.state
                and lapsed.state is shown.state
                and not self._stamps_differ(lapsed, shown)
            ):
                return reason
        return None

    def _adopt_object(
        self, obj: WorkObject, base: WorkItem | None, *, worker: str | None = None, delivered: datetime | None = None
    ) -> str | None:
        try:
            return self._adopt(self._item_from(obj, base, worker=worker, delivered=delivered))
        except WorkstateError as exc:
            return exc.message

    def _adopt(self, item: WorkItem) -> str | None:
        try:
            self.server.adopt(item)
        except WorkstateError as exc:
            return exc.message
        return None

    # --- item operations ---

    def _judge_item(self, ex: Exchange, operation: str, env_id: str, work_id: str) -> list[Finding]:
        if self._transient(ex):
            return [self._not_judged(ex, "429 and 5xx are outside the model; assumed to change nothing")]
        pre = self.server.work(env_id, work_id)
        impossible = None if pre is not None else _impossible_body(self.dialect, ex, operation, env_id, work_id)
        if impossible is not None:  # no state of the item would explain it: a divergence
            section, shape = _ANSWER_OF[operation] if ex.status == 200 else ("6 errors", "error envelope")
            expected_text = f"{ex.status} {shape}"
            actual = _summary(ex.status, ex.response)
            return [Finding(ex.line, Kind.DIVERGENCE, section, _request(ex), expected_text, actual, (impossible,))]
        recorded_obj = None
        if pre is None and ex.status == 200 and operation != "heartbeat":
            recorded_obj = _work_object(ex.response, self.dialect)
        if pre is None and recorded_obj is not None and recorded_obj.id == work_id:
            if operation == "get":
                why = self._seed_item(recorded_obj)
                if why is not None:
                    return [self._not_judged(ex, f"could not seed {work_id}: {why}")]
                pre = self.server.work(env_id, work_id)
            else:  # the answer shows the item after this request: adopt it, judge from the next line on
                why = self._seed_item(recorded_obj)
                self.seeded += why is None
                return [] if why is None else [self._not_judged(ex, f"could not seed {work_id}: {why}")]
        if pre is None and ex.status != 404:
            expected = self._handle(ex)
            if expected.status == 404 and expected.json["error"]["type"] == "not_found_error":
                return [self._not_judged(ex, f"{work_id} was never shown by the trace, so it cannot be seeded")]
            differences = self._compare_envelope(ex, expected)
            return [self._finding(ex, Kind.DIVERGENCE, expected, differences, operation)] if differences else []

        expected = self._handle(ex)
        post = self.server.work(env_id, work_id)
        exact = expected.status == ex.status and expected.json == ex.response  # the common case, cheap
        self._as_reference = exact
        differences = [] if exact else self._compare_envelope(ex, expected)
        impossible = None if exact else _impossible_body(self.dialect, ex, operation, env_id, work_id)
        if impossible is not None and not differences:
            differences = [impossible]
        elif not differences and not exact and expected.status == 200:
            if operation == "heartbeat":
                differences = self._compare_heartbeat(expected.json, ex.response)
            else:
                differences = self._compare_work(expected.json, ex.response)

        if not differences:
            problem = self._agree(ex, operation, pre, post, exact)
            if problem:
                return [self._finding(ex, Kind.DIVERGENCE, expected, [problem], operation)]
            return []
        # Only ack reads the bound Worker-ID and the delivery; a lapse (the lease TTL) can change any answer,
        # but no unknown explains a 200 whose body is not the operation's object (or is another item's).
        ack_facts = ("worker", "delivery", "ttl") if self.dialect.ack_checks_worker else ("delivery", "ttl")
        uncertain = self._uncertain(work_id, facts=ack_facts if operation == "ack" else ("ttl",))
        if uncertain and impossible is not None:
            if impossible not in differences:
                differences.append(impossible)
            uncertain = None
        finding = self._finding(
            ex,
            Kind.NOT_JUDGED if uncertain else Kind.DIVERGENCE,
            expected,
            [*differences, *([uncertain] if uncertain else [])],
            operation,
        )
        self._follow(ex, operation, pre, post, expected)
        return [finding]

    def _compare_heartbeat(self, expected: Any, actual: Any) -> list[str]:
        try:
            obj = _decode(HeartbeatObject, actual, self.dialect)
        except DecodeError as exc:
            return [f"body: not a heartbeat object: {_decode_problem(exc)}"]
        ref = _decode(HeartbeatObject, expected, self.dialect)
        found = []
        for name in ("state", "ttl_seconds", "lease_extended"):
            if getattr(ref, name) != getattr(obj, name):
                found.append(f"{name}: expected {_show(getattr(ref, name))}, got {_show(getattr(obj, name))}")
        if abs(ref.last_heartbeat - obj.last_heartbeat) > self.skew:
            found.append(f"last_heartbeat: expected {_show(ref.last_heartbeat)}, got {_show(obj.last_heartbeat)}")
        return found

    def _agree(
        self, ex: Exchange, operation: str, pre: WorkItem | None, post: WorkItem | None, exact: bool
    ) -> str | None:
        """The answers agree: take the recorded timestamps as the real ones, and learn what the line showed."""
        if post is None or ex.status != 200:
            return None
        worker = self._ack_worker(ex)
        known = self.unknown.get(post.id)
        if exact and operation != "ack":  # the recorded answer is the reference's, to the byte
            if known and operation == "heartbeat":
                known.discard("ttl")
            return None
        if operation == "heartbeat":
            beat = _decode(HeartbeatObject, ex.response, self.dialect)
            if not beat.lease_extended:  # a report (the peer's heartbeat on stopped): nothing changed
                return None
            last = _plain(beat.last_heartbeat)
            if post.latest_heartbeat_at == last:
                new = post
            else:
                # the heartbeat set started_at when it moved the item to active (never one that stays stopping)
                first = pre is not None and pre.started_at is None and post.started_at is not None
                new = attrs.evolve(
                    post,
                    latest_heartbeat_at=last,
                    started_at=last if first else post.started_at,
                    clock=max(post.clock, last),
                )
            if known:
                known.discard("ttl")
        elif operation == "get":
            return None
        else:
            new = post if exact else self._item_from(_decode(WorkObject, ex.response, self.dialect), post)
            if operation == "ack" and known is not None:
                if new.worker_id is None and worker is not None and "worker" in known:
                    new = attrs.evolve(new, worker_id=worker)
                known.difference_update({"worker", "delivery"})
        if new != post:
            problem = self._adopt(new)
            if problem:
                return f"the recorded timestamps cannot be adopted: {problem}"
        return None

    def _follow(
        self, ex: Exchange, operation: str, pre: WorkItem | None, post: WorkItem | None, expected: Response
    ) -> None:
        """After a disagreement, make the reference hold what the recorded server holds, as far as it shows."""
        beat = _heartbeat_object(ex.response, self.dialect) if ex.status == 200 and operation == "heartbeat" else None
        if beat is not None and not beat.lease_extended:  # a report of a stopped item: it changed nothing
            if pre is not None and post is not pre:
                self._adopt(pre)
            return
        if beat is not None and post is not None:
            base = pre if pre is not None else post
            acked = base.acknowledged_at or beat.last_heartbeat
            try:
                new = attrs.evolve(
                    base,
                    state=beat.state,
                    acknowledged_at=min(acked, beat.last_heartbeat),
                    started_at=base.started_at or beat.last_heartbeat,
                    latest_heartbeat_at=beat.last_heartbeat,
                    ttl_seconds=beat.ttl_seconds,
                    clock=max(base.clock, beat.last_heartbeat),
                    version=base.version + 1,
                )
            except WorkstateError:
                return
            self._adopt(new)
            return
        obj = _work_object(ex.response, self.dialect) if ex.status == 200 else None
        if obj is not None and post is not None and obj.id == post.id:
            try:
                new = self._item_from(obj, pre, worker=self._ack_worker(ex) if operation == "ack" else None)
            except WorkstateError:
                return
            self._adopt(new)
            return
        if pre is not None and expected.status == 200 and post is not pre and not 200 <= ex.status < 300:
            self._adopt(pre)  # the recorded server refused: undo the reference's change
        # A 2xx that does not show the item (a body-less 204): the recorded server did what was asked, as far
        # as anything shows, so the reference keeps its change and later lines are judged against it.

    # --- poll ---

    def _judge_poll(self, ex: Exchange, env_id: str) -> list[Finding]:
        if self._transient(ex):
            return [self._not_judged(ex, "429 and 5xx are outside the model; assumed to change nothing")]
        worker_id = _header(ex, self._worker_header)
        if ex.status == 200 and worker_id:  # the recorded server took this poll: it counts for workers_polling
            polled = self._polled.setdefault(env_id, {})
            polled[worker_id] = max(ex.time, polled.get(worker_id, ex.time))
        recorded_obj = _work_object(ex.response, self.dialect) if ex.status == 200 else None
        findings: list[Finding] = []
        fresh = recorded_obj is not None and recorded_obj.environment_id == env_id
        if recorded_obj is not None and fresh and self.server.work(env_id, recorded_obj.id) is None:
            why = self._seed_item(recorded_obj, fresh=True)
            if why is not None:
                findings.append(self._not_judged(ex, f"could not seed {recorded_obj.id}: {why}"))
        reclaim = _reclaim(ex.target)
        pick = self.server.deliverable(env_id, ex.time, reclaim)
        before = None if pick is None else self.server.work(env_id, pick)
        expected = self._handle(ex)
        differences = self._compare_envelope(ex, expected)
        if differences:
            impossible = _impossible_body(self.dialect, ex, "poll")
            uncertain = None if impossible else self._uncertain(pick, facts=("delivery",))
            if impossible and impossible not in differences:
                differences.append(impossible)
            if before is not None and expected.status == 200:
                self._adopt(before)
            kind = Kind.NOT_JUDGED if uncertain else Kind.DIVERGENCE
            return [
                *findings,
                self._finding(ex, kind, expected, differences + ([uncertain] if uncertain else []), "poll"),
            ]
        if expected.status != 200:
            return findings
        if ex.response is not None and recorded_obj is None:
            return [
                *findings,
                self._finding(ex, Kind.DIVERGENCE, expected, ["body: not a work object or null"], "poll"),
            ]
        ref_id = None if expected.json is None else expected.json["id"]
        rec_id = None if recorded_obj is None else recorded_obj.id
        worker = _header(ex, self._worker_header)
        if ref_id == rec_id:
            if ref_id is None:
                return findings
            differences = [] if expected.json == ex.response else self._compare_work(expected.json, ex.response)
            if rec_id in self.unknown:
                self.unknown[rec_id].discard("delivery")
            post = self.server.work(env_id, rec_id) if rec_id else None
            if not differences:
                return findings
            if post is not None and recorded_obj is not None:
                self._adopt_object(recorded_obj, post, worker=worker, delivered=ex.time)
            return [*findings, self._finding(ex, Kind.DIVERGENCE, expected, differences, "poll")]
        # Different items (or one and null): which rule decided the reference's answer?
        if before is not None:
            self._adopt(before)  # undo the reference's delivery: what follows reads the queue as the poll met it
        differences = [f"delivered: expected {ref_id or 'null'}, got {rec_id or 'null'}"]
        rule = _rule_of(expected, "poll")
        other = None if rec_id is None else self.server.work(env_id, rec_id)
        handed_out = False  # whether the replay could deliver the recorded item now
        if other is not None:
            outcome = step(other, Deliver(worker, reclaim), ex.time, self.policy)
            if isinstance(outcome, Rejected):
                rule = f"{outcome.rule.section} {outcome.rule.name}"
                differences.append(f"{rec_id} is not deliverable: {outcome.reason.message}")
            else:
                handed_out = True
        # Only the items the recorded server passed over (every one the replay would deliver before the recorded
        # item, or before null: all of them) can excuse the pick, each by an unknown delivery; the recorded
        # item's own history cannot. An item the replay cannot deliver may have been requeued by an unseen lapse.
        until = None if recorded_obj is None else (recorded_obj.created_at, recorded_obj.id)
        known, excuse = self._passed_over(env_id, ex.time, reclaim, until)
        uncertain = None
        if known is not None:
            if handed_out or known != ref_id:
                differences.append(f"{known} is deliverable" + (" and older by creation order" if rec_id else ""))
        elif handed_out or rec_id is None:
            uncertain = excuse
        elif recorded_obj is not None:
            lapse = self._unseen_lapse(env_id, recorded_obj, ex.time)
            uncertain = None if lapse is None else "; ".join(r for r in (excuse, lapse) if r)
        finding = Finding(
            ex.line,
            Kind.NOT_JUDGED if uncertain else Kind.DIVERGENCE,
            rule,
            _request(ex),
            _summary(expected.status, expected.json),
            _summary(ex.status, ex.response),
            tuple(differences + ([uncertain] if uncertain else [])),
        )
        if recorded_obj is not None and rec_id is not None:
            base = self.server.work(env_id, rec_id)
            if base is not None:
                self._adopt_object(recorded_obj, base, worker=worker, delivered=ex.time)
                if rec_id in self.unknown:
                    self.unknown[rec_id].discard("delivery")
        return [*findings, finding]

    def _passed_over(
        self, env_id: str, now: datetime, reclaim: int | None, until: tuple[datetime, str] | None
    ) -> tuple[str | None, str | None]:
        """Walk the items the replay would deliver at ``now`` before the creation key ``until`` (None: all of
        them), oldest first, as if each were just delivered elsewhere. Returns the first whose delivery the trace
        showed (nothing excuses passing it over), else None; and why the first unknown delivery may excuse it."""
        window = self.policy.reclaim_older_than_ms if reclaim is None else reclaim
        masked: list[WorkItem] = []
        excuse = None
        try:
            while True:
                pick = self.server.deliverable(env_id, now, reclaim)
                item = None if pick is None else self.server.work(env_id, pick)
                if item is None or (until is not None and (item.created_at, item.id) >= until):
                    return None, excuse
                why = self._uncertain(item.id, facts=("delivery",))
                if why is None or window == 0:  # with no reclaim window, no delivery makes an item undeliverable
                    return item.id, excuse
                excuse = excuse or why
                at = max(now, item.clock)
                try:
                    self.server.adopt(attrs.evolve(item, delivered_at=at, delivered_to=None, clock=at))
                except WorkstateError:  # not reached (the item is the replay's own); then it is not excused
                    return item.id, excuse
                masked.append(item)
        finally:
            for item in reversed(masked):
                self.server.adopt(item)

    def _note_complete(self, ex: Exchange, env_id: str) -> None:
        """Remember a first page (no cursor) shorter than its limit: it showed every item up to its last."""
        got = _decode(ListEnvelope, ex.response, self.dialect)
        limit, _ = _list_query(ex.target, self.policy, self.dialect)
        query = parse_query(ex.target.partition("?")[2]) if "?" in ex.target else {}
        cursors = {"page"} if self.dialect.list_style is ListStyle.NEXT_PAGE else {"page", "after_id", "before_id"}
        if got.data and len(got.data) < limit and not cursors & set(query):
            last = got.data[-1].id
            if env_id not in self._complete or last > self._complete[env_id]:
                self._complete[env_id] = last
                self._complete_line[env_id] = ex.line

    # --- stats ---

    def _judge_stats(self, ex: Exchange, env_id: str) -> list[Finding]:
        """Stats are judged by what the items and polls the trace showed force: an item the trace never
        showed may be queued (deliverable or pending, and older), and a worker may have polled before the
        trace began, so the trace gives lower bounds only. Within two skews of an instant that decides
        (a lapse, the end of a reclaim window, the end of the workers-polling window) nothing is counted."""
        if self._transient(ex):
            return [self._not_judged(ex, "429 and 5xx are outside the model; assumed to change nothing")]
        expected = self._handle(ex)
        differences = self._compare_envelope(ex, expected)
        if not differences and expected.status == 200:
            try:
                got = _decode(StatsObject, ex.response, self.dialect)
            except DecodeError as exc:
                differences.append(f"body: {exc.message} ({exc.param})")
            else:
                differences = self._stats_bounds(env_id, ex.time, got)
        return [self._finding(ex, Kind.DIVERGENCE, expected, differences, "stats")] if differences else []

    def _stats_bounds(self, env_id: str, now: datetime, got: StatsObject) -> list[str]:
        """What in ``got`` no unseen item, unseen poll or clock skew can explain."""
        margin = 2 * self.skew  # two recorded instants, each up to one skew off the recorded server's clock
        window = timedelta(milliseconds=self.policy.reclaim_older_than_ms)
        queued: list[WorkItem] = []
        deliverable = pending = 0
        for env in self.server.snapshot():
            if env.id != env_id:
                continue
            for item in env.items:
                if item.state is not State.QUEUED:
                    continue
                if item.delivered_at is None and item.clock > item.created_at and now - item.clock <= margin:
                    continue  # re-queued by a lapse just now: the recorded server's clock may not be there yet
                queued.append(item)
                if "delivery" in self.unknown.get(item.id, ()):
                    continue  # delivered before the trace showed it, or not: deliverable or pending
                if item.delivered_at is None or now - item.delivered_at >= window + margin:
                    deliverable += 1
                elif now - item.delivered_at < window - margin:
                    pending += 1
        found = []
        if got.depth < deliverable:
            found.append(f"depth: {got.depth}, but {deliverable} items the trace showed are deliverable")
        if got.pending < pending:
            found.append(f"pending: {got.pending}, but {pending} items the trace showed are delivered and unacked")
        if got.depth + got.pending < len(queued):
            found.append(
                f"depth + pending: {got.depth + got.pending}, but {len(queued)} items the trace showed are queued"
            )
        if (got.oldest_queued_at is None) != (got.depth + got.pending == 0):
            found.append(
                f"oldest_queued_at: {_show(got.oldest_queued_at and render_timestamp(got.oldest_queued_at))} "
                f"with depth + pending = {got.depth + got.pending} (api.md §4.7, invariants.md #9)"
            )
        elif got.oldest_queued_at is not None and queued:
            oldest = min(item.created_at for item in queued)
            if got.oldest_queued_at > oldest:
                found.append(
                    f"oldest_queued_at: {render_timestamp(got.oldest_queued_at)}, but {render_timestamp(oldest)} "
                    "is the created_at of an item the trace showed queued"
                )
        polling = timedelta(seconds=self.policy.workers_polling_window_seconds) - margin
        polled = sorted(w for w, at in self._polled.get(env_id, {}).items() if now - at < polling)
        if got.workers_polling < len(polled):
            found.append(
                f"workers_polling: {got.workers_polling}, but {len(polled)} workers polled in the last "
                f"{self.policy.workers_polling_window_seconds:g} s ({', '.join(polled)})"
            )
        return found

    # --- list ---

    def _judge_list(self, ex: Exchange, env_id: str) -> list[Finding]:
        """A list is judged on the items the trace showed. An item it never showed may exist, and explains
        ``has_more`` true where the replay says false when something may lie beyond a full page in its direction:
        after ``last_id`` (``page``, ``after_id`` or no cursor), or before ``first_id`` (``before_id``).
        Every item of the answer is seeded first, so the replay's page is the recorded one unless a known
        item is missing or out of place, or the limit is exceeded: none of which an unseen item explains."""
        if self._transient(ex):
            return [self._not_judged(ex, "429 and 5xx are outside the model; assumed to change nothing")]
        unseeded = None
        if ex.status == 200 and isinstance(ex.response, dict) and isinstance(ex.response.get("data"), list):
            for value in ex.response["data"]:
                shown = value.get("id") if isinstance(value, dict) else None
                if isinstance(shown, str) and self.server.work(env_id, shown) is not None:
                    continue  # known: nothing to seed (and no need to decode it here)
                obj = _work_object(value, self.dialect)
                if obj is not None and obj.environment_id == env_id and self.server.work(env_id, obj.id) is None:
                    why = self._seed_item(obj)
                    if why is not None and unseeded is None:
                        unseeded = f"could not seed {obj.id}: {why}"
        if unseeded is None and ex.status == 200:
            expected = self._handle(ex)  # a list changes nothing: asked first, for the common case
            if expected.status == 200 and expected.json == ex.response:  # the reference's page, value for value
                self._as_reference = True
                self._note_complete(ex, env_id)
                return []
        impossible = _impossible_body(self.dialect, ex, "list")
        if unseeded is not None and impossible is None:
            return [self._not_judged(ex, unseeded)]
        expected = self._handle(ex)
        differences = self._compare_envelope(ex, expected)
        if impossible is not None and impossible not in differences:
            differences.append(impossible)
        unexplained = bool(differences)  # status, error.type, request id, body shape: nothing unseen explains them
        explained: list[str] = []  # what the trace has not shown that may explain the rest
        lapsed: list[WorkObject] = []  # items shown as an unseen lapse left them: the replay follows
        if not differences and expected.status == 200:
            got = _decode(ListEnvelope, ex.response, self.dialect)  # a 200 whose body is not one is impossible, above
            limit, before_id = _list_query(ex.target, self.policy, self.dialect)
            want_ids = [w["id"] for w in expected.json["data"]]
            got_ids = [w.id for w in got.data]
            if len(got_ids) > limit:
                differences.append(f"data: {len(got_ids)} items, more than the limit {limit}")
                unexplained = True
            if want_ids != got_ids:
                differences.append(f"data ids: expected {want_ids}, got {got_ids}")
                unexplained = True
            else:
                for index, (want, value) in enumerate(zip(expected.json["data"], ex.response["data"], strict=True)):
                    found = self._compare_work(want, value, f"data[{index}].")
                    if found:
                        differences += found
                        uncertain = None  # a lapse the trace did not see changes state and stamps, nothing else
                        if not any(
                            f.startswith((f"data[{index}].metadata", f"data[{index}].session_id")) for f in found
                        ):
                            uncertain = self._unseen_lapse(env_id, got.data[index], ex.time)
                        unexplained = unexplained or uncertain is None
                        if uncertain is not None:
                            lapsed.append(got.data[index])
                            if uncertain not in explained:
                                explained.append(uncertain)
            want_more = _decode(ListEnvelope, expected.json, self.dialect).has_more
            if want_more != got.has_more:
                more = "has_more" if self.dialect.list_style is ListStyle.FULL else "next_page given"
                differences.append(f"{more}: expected {want_more}, got {got.has_more}")
                unseen = None
                complete = self._complete.get(env_id)
                if got.has_more and len(got.data) == limit:  # the replay knows no item beyond a full page
                    if before_id is not None and complete is not None and got.first_id and got.first_id <= complete:
                        differences.append(
                            f"nothing precedes {got.first_id}: a first page at line {self._complete_line[env_id]} "
                            f"showed every item up to {complete}"
                        )
                    elif before_id is not None:
                        unseen = (
                            f"an item the trace never showed may precede {got.first_id} "
                            f"(the page holds the limit, {limit} items)"
                        )
                    else:
                        unseen = (
                            f"an item the trace never showed may follow {got.last_id} "
                            f"(the page holds the limit, {limit} items)"
                        )
                unexplained = unexplained or unseen is None
                if unseen is not None:
                    explained.append(unseen)
        if not differences and expected.status == 200:
            self._note_complete(ex, env_id)
        if not differences:
            return []
        for obj in lapsed:  # reported once: later lines are judged against the item as the recorded server shows it
            self._adopt_object(obj, self.server.work(env_id, obj.id))
        if unexplained:
            return [self._finding(ex, Kind.DIVERGENCE, expected, differences, "list")]
        return [self._finding(ex, Kind.NOT_JUDGED, expected, differences + explained, "list")]


_INDEX = re.compile(r"\[\d+\]")
_ReplyKind: TypeAlias = (
    type[WorkObject] | type[HeartbeatObject] | type[ListEnvelope] | type[StatsObject] | type[ErrorEnvelope]
)
_REPLY_NAMES: dict[_ReplyKind, str] = {
    WorkObject: "a work object",
    HeartbeatObject: "a heartbeat object",
    ListEnvelope: "a list envelope",
    StatsObject: "a stats object",
    ErrorEnvelope: "an error envelope",
}
_REPLY_OF: dict[str, _ReplyKind] = {
    "poll": WorkObject,
    "ack": WorkObject,
    "stop": WorkObject,
    "get": WorkObject,
    "update": WorkObject,
    "heartbeat": HeartbeatObject,
    "list": ListEnvelope,
    "stats": StatsObject,
}


def _reply_kind(ex: Exchange, operation: str | None) -> _ReplyKind | None:
    """The object the recorded reply is meant as: an error envelope for a 4xx (but 429), the operation's
    object for a 200, else None (429 and 5xx are outside the model; other statuses carry none)."""
    if 400 <= ex.status < 500 and ex.status != 429:
        return ErrorEnvelope
    if ex.status == 200 and operation is not None:
        return _REPLY_OF.get(operation)
    return None


# The replies decoded while one exchange is judged, by (kind, id of the JSON value, id of the dialect): a reply is
# read by several checks (its shape, its unknown keys, its fields), and decoding it (its timestamps above all) is
# most of the cost of a line. Each entry holds its value and dialect, so no id is reused while it is remembered;
# Checker.check empties it before every exchange, so it never holds more than one line's replies.
_DECODED: dict[tuple[type, int, int], tuple[Any, Dialect, Any, DecodeError | None]] = {}


def _decode(kind: type[_Decoded], value: Any, dialect: Dialect) -> _Decoded:
    """``kind.from_json(value, dialect=dialect)`` (a stats object reads no dialect), remembered for the exchange."""
    key = (kind, id(value), id(dialect))
    found = _DECODED.get(key)
    if found is None:
        try:
            decoded: Any = (
                kind.from_json(value) if kind is StatsObject else kind.from_json(value, dialect=dialect)  # type: ignore[attr-defined]
            )
            found = (value, dialect, decoded, None)
        except DecodeError as exc:
            found = (value, dialect, None, exc)
        _DECODED[key] = found
    if found[3] is not None:
        raise found[3]
    return found[2]  # type: ignore[no-any-return]


def _decodes(value: Any, kind: _ReplyKind, dialect: Dialect = QODER) -> bool:
    try:
        _decode(kind, value, dialect)
    except DecodeError:
        return False
    return True


def _plain(value: datetime) -> datetime:
    """The microsecond of an instant a reply may carry finer (``codec.Instant``: nanoseconds): what the reference,
    which holds microseconds, adopts."""
    if type(value) is datetime:
        return value
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, value.tzinfo
    )


def _plain_value(value: Any) -> Any:
    return _plain(value) if isinstance(value, datetime) else value


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return render_timestamp(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _work_object(value: Any, dialect: Dialect = QODER) -> WorkObject | None:
    try:
        return _decode(WorkObject, value, dialect)
    except DecodeError:
        return None


def _heartbeat_object(value: Any, dialect: Dialect = QODER) -> HeartbeatObject | None:
    try:
        return _decode(HeartbeatObject, value, dialect)
    except DecodeError:
        return None


def _decode_problem(exc: DecodeError) -> str:
    return f"{exc.message} ({exc.param})" if exc.param else exc.message


def _impossible_body(
    dialect: Dialect, ex: Exchange, operation: str, env_id: str = "", work_id: str | None = None
) -> str | None:
    """What makes an answer wrong whatever the trace has not shown: a 4xx whose body is not an error envelope
    (api.md §6), or a 200 whose body is not the operation's object, or is another item's."""
    try:
        if 400 <= ex.status < 500 and ex.status != 429:
            _decode(ErrorEnvelope, ex.response, dialect)
        elif ex.status != 200:
            return None
        elif operation == "list":
            _decode(ListEnvelope, ex.response, dialect)
        elif operation == "heartbeat":
            _decode(HeartbeatObject, ex.response, dialect)
        elif operation == "poll":
            if ex.response is not None and _work_object(ex.response, dialect) is None:
                return "body: not a work object or null"
        elif operation in _ANSWER_OF and work_id is not None:
            obj = _decode(WorkObject, ex.response, dialect)
            if obj.id != work_id:
                return f"id: expected {work_id} (the target's), got {obj.id}"
            if obj.environment_id != env_id:
                return f"environment_id: expected {env_id} (the target's), got {obj.environment_id}"
    except DecodeError as exc:
        shape = "an error envelope" if ex.status != 200 else "a " + _ANSWER_OF.get(operation, ("", operation))[1]
        return f"body: not {shape}: {_decode_problem(exc)}"
    return None


def _request(ex: Exchange) -> str:
    return f"{ex.method} {ex.target}"


def _header(ex: Exchange, name: str) -> str | None:
    for key, value in ex.headers:
        if key.lower() == name:
            return value.strip(" \t") or None
    return None


def _reclaim(target: str) -> int | None:
    query = target.partition("?")[2]
    try:
        text = param(parse_query(query), "reclaim_older_than_ms") if query else None
    except Refusal:
        return None
    return int(text) if text is not None and text.isdigit() and len(text) < 18 else None


def _list_query(target: str, policy: Policy, dialect: Dialect = QODER) -> tuple[int, str | None]:
    """The page size and the ``before_id`` of a list the reference answered 200 (so its query is valid)."""
    query = target.partition("?")[2]
    try:
        params = parse_query(query) if query else {}
        text = param(params, "limit")
        limit = policy.list_default_limit if text is None else integer(text, "limit", "a positive integer")
        backward = None if dialect.list_style is ListStyle.NEXT_PAGE else param(params, "before_id")
        return min(limit, policy.list_max_limit), backward  # the peer's list ignores before_id
    except Refusal:  # not reached: the reference refused nothing
        return policy.list_default_limit, None


class TraceCheck:
    """A trace checked line by line, keeping nothing per line: :meth:`feed` each line (a str) in order and act
    on the findings it returns; :meth:`report` gives the counts (and the findings only if they were kept).

    What it keeps grows with the trace's live state (its environments and items, the reference server's),
    never with its lines. The first non-blank line may be a header (``header_line``): its policy and dialect are
    used where ``policy`` and ``dialect`` are None, and where they are given and differ, a note says so (what
    was given is used). ``keep`` keeps every finding for :meth:`report`.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        skew: timedelta = timedelta(seconds=1),
        dialect: Dialect | None = None,
        keep: bool = False,
        hints: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        if dialect is not None and not isinstance(dialect, Dialect):
            raise InvalidInput(f"dialect must be a workstate.Dialect, got {type(dialect).__name__}", param="dialect")
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidInput(f"policy must be a workstate.Policy, got {type(policy).__name__}", param="policy")
        Checker(policy, skew=skew, dialect=QODER if dialect is None else dialect)  # checks the arguments now
        self._policy, self._dialect, self._skew = policy, dialect, skew
        self._overrides = dict(overrides or {})  # Policy fields set over the header's policy (or the dialect's)
        self._keep = keep
        self._hints = hints
        self.checker: Checker | None = None
        self.header: Header | None = None
        self.lines = self.exchanges = 0
        self.counts = dict.fromkeys(Kind, 0)
        self.kept: list[Finding] = []
        self.candidates: list[tuple[int, tuple[tuple[str, Any], ...]]] = []  # (line, policy fields to try)

    def _start(self, header: Header | None) -> Checker:
        policy, dialect = self._policy, self._dialect
        if header is not None:
            dialect = header.dialect if dialect is None else dialect
            policy = header.policy if policy is None else policy
        dialect = QODER if dialect is None else dialect
        if self._overrides:
            try:
                policy = attrs.evolve(dialect.policy if policy is None else policy, **self._overrides)
            except (TypeError, ValueError, WorkstateError) as exc:
                raise InvalidInput(f"overrides: {getattr(exc, 'message', exc)}", param="overrides") from None
        self.checker = Checker(policy, skew=self._skew, dialect=dialect)
        return self.checker

    def _header_notes(self, header: Header) -> list[Finding]:
        checker = self.checker
        assert checker is not None
        said = []
        if checker.dialect != header.dialect:
            said.append(
                f"--dialect {checker.dialect.name} disagrees with the trace's header (dialect "
                f"{header.dialect.name}): {checker.dialect.name} is used"
            )
        for field in attrs.fields(Policy):
            mine, theirs = getattr(checker.policy, field.name), getattr(header.policy, field.name)
            if mine != theirs:
                said.append(
                    f"--policy {field.name}={_plain_json(mine)} disagrees with the trace's header "
                    f"({field.name}={_plain_json(theirs)}): {_plain_json(mine)} is used"
                )
        return [Finding(header.line, Kind.NOTE, "-", "header", "-", "-", (text,)) for text in said]

    def feed(self, text: str) -> list[Finding]:
        """Check the next line; the findings it makes (a blank line makes none)."""
        if not isinstance(text, str):
            raise InvalidInput(
                f"lines must hold str, got {type(text).__name__} at line {self.lines + 1}", param="lines"
            )
        self.lines += 1
        number = self.lines
        if not text.strip(BLANK):
            return []
        found: list[Finding]
        try:
            header = parse_header(text, number)
        except ValueError as exc:
            if self.checker is None:
                self._start(None)
            found = [Finding(number, Kind.MALFORMED, "trace format", "header", "-", "-", (str(exc),))]
            return self._count(found)
        checker = self.checker
        if header is not None:
            if checker is None:
                self.header = header
                self._start(header)
                return self._count(self._header_notes(header))
            if (header.policy, header.dialect) == (checker.policy, checker.dialect) or header == self.header:
                return []
            why = "a header after the first line names another policy or dialect: the first one's is kept"
            return self._count([Finding(number, Kind.NOTE, "-", "header", "-", "-", (why,))])
        if checker is None:
            checker = self._start(None)
        try:
            exchange = parse_line(text, number)
        except ValueError as exc:
            return self._count([Finding(number, Kind.MALFORMED, "trace format", "-", "-", "-", (str(exc),))])
        self.exchanges += 1
        found = checker.check(exchange)
        if found and len(self.candidates) < self._hints:
            for finding in found:
                if finding.kind is Kind.DIVERGENCE:
                    tried = _candidates(finding, exchange, checker.policy)
                    if tried:
                        self.candidates.append((number, tried))
        return self._count(found) if found else found

    def _count(self, found: list[Finding]) -> list[Finding]:
        for finding in found:
            self.counts[finding.kind] += 1
        if self._keep:
            self.kept.extend(found)
        return found

    @property
    def seeded(self) -> int:
        return 0 if self.checker is None else self.checker.seeded

    def report(self, hints: tuple[str, ...] = ()) -> Report:
        counts = None if self._keep else tuple(self.counts.items())
        return Report(self.lines, self.exchanges, self.seeded, tuple(self.kept), counts, self.header, hints)


def check_lines(
    lines: Iterable[str],
    policy: Policy | None = None,
    *,
    skew: timedelta = timedelta(seconds=1),
    dialect: Dialect | None = None,
) -> Report:
    """Check the lines of a trace (blank lines are skipped); the result lists every finding by line.

    ``lines`` is an iterable of str, one line each (a trailing newline is allowed), e.g.
    ``text.split("\\n")``; it is read once, line by line. ``skew`` a ``timedelta`` from 0 to 1 day. Anything
    else raises :class:`~workstate.errors.InvalidInput` naming the argument. ``dialect`` is the recorded server's:
    its paths, worker header and envelopes are read, and its rules judge; ``policy`` defaults to the dialect's
    (``dialect.policy``). Where they are None, a header line (the first line ``workstate serve --record`` writes)
    names them, else they are :data:`~workstate.QODER` and its policy.
    """
    check = TraceCheck(policy, skew=skew, dialect=dialect, keep=True)
    if isinstance(lines, (str, bytes, bytearray, memoryview)):
        raise InvalidInput(
            f"lines must be an iterable of lines, got one {type(lines).__name__}; split it first", param="lines"
        )
    try:
        iterator = iter(lines)
    except TypeError:
        raise InvalidInput(f"lines must be an iterable of str, got {type(lines).__name__}", param="lines") from None
    for text in iterator:
        check.feed(text)
    return check.report()


# --- which policy would explain a divergence ---------------------------------------------------------------

_LIMIT_FIELDS = ("list_default_limit", "list_max_limit")
_TTL_FIELDS = ("default_ttl_seconds", "max_ttl_seconds", "min_ttl_seconds")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _alternatives(policy: Policy, name: str) -> list[tuple[str, Any]]:
    current = getattr(policy, name)
    if isinstance(current, enum.Enum):
        return [(name, v) for v in type(current) if v is not current]
    if isinstance(current, bool):
        return [(name, not current)]
    return []


def _candidates(finding: Finding, ex: Exchange, policy: Policy) -> tuple[tuple[str, Any], ...]:
    """The policy values a divergence points to (each one field changed), in the order to try them."""
    found: list[tuple[str, Any]] = []
    text = " ".join(finding.differences)
    for difference in finding.differences:
        name, _, rest = difference.partition(": expected ")
        got = rest.rpartition(", got ")[2]
        if name.endswith("ttl_seconds") and _NUMBER.fullmatch(got):
            found += [(field, int(got)) for field in _TTL_FIELDS]
    if "error.type" in text:
        found += _alternatives(policy, "conflict_error_type")
    body = ex.response
    if finding.rule.startswith("4.6") or "list" in finding.rule:
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, list) and data:
            found += [(field, len(data)) for field in _LIMIT_FIELDS]
        found += _alternatives(policy, "list_limit_over_max")
    lapsing = ("state:", "stopped_at", "acknowledged_at", "started_at", "status:")
    if any(d.startswith(lapsing) for d in finding.differences):
        found += _alternatives(policy, "on_start_timeout") + _alternatives(policy, "on_lease_expiry")
        found += _alternatives(policy, "ack_requires_delivery")
        shown = body if isinstance(body, dict) else {}
        acked = shown.get("acknowledged_at") if isinstance(shown.get("acknowledged_at"), str) else None
        if acked is not None:
            try:
                waited = (ex.time - parse_timestamp(acked, "acknowledged_at")).total_seconds()
            except WorkstateError:
                waited = -1.0
            if waited >= 0:  # the recorded server had not timed the start out yet: its timeout is longer
                found.append(("start_timeout_seconds", float(math.floor(waited) + 1)))
        for factor in (2, 5, 10):
            found.append(("start_timeout_seconds", policy.start_timeout_seconds * factor))
            found.append(("default_ttl_seconds", policy.default_ttl_seconds * factor))
    unique: list[tuple[str, Any]] = []
    for name, value in found:
        if getattr(policy, name) != value and (name, value) not in unique:
            unique.append((name, value))
    return tuple(unique)


def policy_hints(
    lines: Callable[[], Iterable[str]],
    candidates: Iterable[tuple[int, tuple[tuple[str, Any], ...]]],
    policy: Policy,
    *,
    skew: timedelta = timedelta(seconds=1),
    dialect: Dialect = QODER,
    tries: int = 8,
) -> tuple[str, ...]:
    """Which ``--policy NAME=VALUE`` would explain a divergence: each candidate (at most ``tries`` of them) is
    tried by judging the whole trace again under the policy with that one field changed (``lines()`` gives the
    trace again). A candidate explains its line when the line is legal under it and the trace has fewer
    divergences than under ``policy``; a hint names the line and the first candidate that explains it."""

    def divergent(under: Policy) -> set[int] | None:
        check = TraceCheck(under, skew=skew, dialect=dialect)
        lines_found: set[int] = set()
        for text in lines():
            for finding in check.feed(text):
                if finding.kind is Kind.DIVERGENCE:
                    lines_found.add(finding.line)
        return lines_found

    base = divergent(policy) or set()
    hints: list[str] = []
    tried: dict[tuple[str, Any], set[int] | None] = {}
    for line, options in candidates:
        for name, value in options:
            if (name, value) not in tried:
                if len(tried) >= tries:
                    break
                try:
                    changed = attrs.evolve(policy, **{name: value})
                except (WorkstateError, ValueError, TypeError):
                    tried[(name, value)] = None
                    continue
                tried[(name, value)] = divergent(changed)
            under = tried[(name, value)]
            if under is not None and line not in under and len(under) < len(base):
                hints.append(
                    f"line {line}: --policy {name}={_plain_json(value)} would explain it "
                    f"({plural(len(base), 'divergent line')} under the policy used, {len(under)} under that one)"
                )
                break
    return tuple(hints)


def split_lines(text: str) -> list[str]:
    """The lines of a trace's text: split on "\\n" only (never on U+2028, NEL or a form feed inside a
    line), each without a trailing "\\r"; a final newline ends the last line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
