"""The wire codec: the JSON objects of the Work API (api.md §2, §4 and §6), both ways.

Encoding renders what the reference server answers. Decoding is strict about JSON syntax and about
requests, and tolerant about the keys of replies; this is which is which.

Strict:

- JSON syntax, for requests and replies alike: :func:`loads` (and :data:`STRICT_JSON`, with which
  ``workstate check`` reads trace lines and :class:`~workstate.testing.http.HttpTarget` reads reply
  bodies) accepts UTF-8 JSON only: no byte-order mark, no ``NaN``/``Infinity``, no duplicate object
  keys, no lone surrogates, no nesting deep enough to exhaust the stack.
- Request bodies: the reference server (:func:`workstate.api.routes.read_stop` and ``read_update``,
  after :func:`loads`) refuses every key a request does not take with 400 (api.md §4.4: "another key"),
  so a client learns of its mistake at once. Nothing in this module parses a request body's keys.

Tolerant (replies, as a client reads them: the worker driver, ``HttpTarget``, ``workstate check``):

- ``from_json``/``from_bytes`` of each object, :func:`decode_poll` and :func:`work_state` ignore
  keys they do not know, at the top and in nested objects (a work object's ``data``, an error's
  ``error``, every item of a list's ``data``): other servers of this API family add fields (e.g. a
  poll answer's ``secret``, an error's ``details``). :func:`unknown_keys` names those keys by path
  (``secret``, ``data[0].secret``, ``error.details``), for a checker to note.
- They still demand every known required key, each of its type: ids carry their prefix and the
  dialect's format (``QODER``: 32 lowercase hex digits); timestamps are RFC 3339 with an offset (the
  spec's parse rule; they are always rendered ``YYYY-MM-DDTHH:MM:SS.ffffffZ``).
- Dialects (issue 14): every reply decoder and :func:`unknown_keys` take ``dialect`` (default
  ``QODER``): a work object's ``secret`` and ``data.type`` ``healthcheck``, the ``{data, next_page}``
  list envelope (``ListStyle.NEXT_PAGE``: the cursor kept as given, it is opaque there), the error's
  ``details`` (``ErrorStyle.DETAILS``) are read in a dialect that has them and are unknown keys elsewhere;
  :func:`decode_stop` reads a stop's answer of either kind (the object, or a 204's empty body).
- Timestamps finer than a microsecond (servers written in Go render nanoseconds) are judged by instant:
  digits past the sixth that are all zeros read as the microsecond; others make an :class:`Instant`, a
  ``datetime`` that keeps them, compares by the exact instant (so two instants a nanosecond apart are
  never equal, as truncating would make them) and renders with every digit through
  :func:`timestamp_text` (for a client that echoes a fencing token). Requests are not read so: the
  server refuses, or treats as matching nothing, an instant it cannot hold (``workstate._time``).
- The codec checks shapes, not the lifecycle: a decoded work object whose timestamps contradict its
  state is returned as it is, for the caller to judge (``workstate.model.consistency_problems``
  judges model items).

Every decoding failure raises :class:`DecodeError` (an :class:`~workstate.errors.InvalidInput`)
whose ``param`` is the path of the offending value, e.g. ``data[0].state``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import attrs

from .._time import EARLIEST, LATEST, parse_timestamp, read_timestamp, render_timestamp
from .._values import picklable
from ..dialect import QODER, Dialect, ErrorStyle, ListStyle
from ..errors import InvalidInput, InvalidTimestamp
from ..rules import State

__all__ = [
    "ERROR_TYPES",
    "STRICT_JSON",
    "DecodeError",
    "ErrorEnvelope",
    "HeartbeatObject",
    "ListEnvelope",
    "StatsObject",
    "WorkObject",
    "Instant",
    "decode_poll",
    "decode_stop",
    "dumps",
    "encode_work",
    "heartbeat_json",
    "loads",
    "parse_timestamp_memo",
    "timestamp_text",
    "unknown_keys",
    "work_state",
]

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "conflict_error",
        "precondition_failed_error",
    }
)
"""The ``error.type`` values of api.md §6 (``conflict_error`` under a policy). Decoding accepts
any non-empty string, because a real server also answers 429 and 5xx with types of its own."""

_EMPTY: Mapping[str, str] = MappingProxyType({})


class DecodeError(InvalidInput):
    """A JSON text, or a decoded value, is not the wire object it should be. ``param`` is its path."""


# --- strict JSON ----------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


STRICT_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
"""The strict decoder (no ``NaN``/``Infinity``, no key twice in one object); :func:`loads` and ``workstate check``
use it. Its ``decode`` raises ``ValueError``."""
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# The C encoder ``_ENCODER.encode`` builds afresh on every call (its arguments are the same every time), built
# once: the same bytes, about a microsecond less a reply. Without the circular check: the codec builds no cycle.
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # None where the C accelerator is missing
_C_ENCODE: Any = (
    None
    if _MAKE_ENCODER is None
    else _MAKE_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _check_strings(value: Any) -> None:
    todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise ValueError("a string holds a lone surrogate")
        elif isinstance(node, dict):
            for key, item in node.items():
                if _SURROGATE.search(key):
                    raise ValueError("a key holds a lone surrogate")
                todo.append(item)
        elif isinstance(node, list):
            todo.extend(node)


def loads(data: bytes | bytearray | memoryview | str, param: str | None = None) -> Any:
    """Decode one JSON text strictly (see the module docstring); raise :class:`DecodeError`."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        value = STRICT_JSON.decode(text)
        if "\\u" in text:  # only an escape can make a lone surrogate out of valid UTF-8
            _check_strings(value)
        return value
    except UnicodeDecodeError:
        raise DecodeError("the body is not UTF-8", param=param) from None
    except RecursionError:
        raise DecodeError("the JSON is nested too deeply", param=param) from None
    except ValueError as exc:  # JSONDecodeError, our hooks, and ints longer than Python parses
        raise DecodeError(f"the body is not valid JSON: {exc}", param=param) from None


def dumps(value: Any) -> bytes:
    """Encode a JSON value compactly; never fails for what the codec builds (ASCII-escaped)."""
    if _C_ENCODE is None or isinstance(value, str):
        return _ENCODER.encode(value).encode("ascii")
    return "".join(_C_ENCODE(value, 0)).encode("ascii")


# --- decoding helpers -----------------------------------------------------------------------------


def _path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _object(value: Any, path: str, required: Sequence[str]) -> dict[str, Any]:
    """A JSON object holding every key of ``required``; keys it holds besides are ignored (a reply's)."""
    if not isinstance(value, dict):
        raise DecodeError(
            f"{path or 'the value'} must be a JSON object, got {type(value).__name__}", param=path or None
        )
    missing = [key for key in required if key not in value]
    if missing:
        raise DecodeError(f"{path or 'the object'} lacks {missing}", param=_path(path, missing[0]))
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{path} must be a string, got {value!r}", param=path)
    return value


def _id(value: Any, kind: str, path: str, dialect: Dialect = QODER) -> str:
    if not dialect.valid_id(kind, value):
        raise DecodeError(f"{path} must be {dialect.id_rule(kind)}, got {value!r}", param=path)
    assert isinstance(value, str)
    return value


def _optional_id(value: Any, kind: str, path: str, dialect: Dialect = QODER) -> str | None:
    return None if value is None else _id(value, kind, path, dialect)


_FRACTION = re.compile(r"(?<=[0-9]{2}:[0-9]{2}:[0-9]{2}\.)([0-9]{6})([0-9]+)")


class Instant(datetime):
    """An instant finer than a microsecond, as a reply may carry it (servers written in Go render nanoseconds:
    ``2026-07-01T08:15:01.123456789Z``): the ``datetime`` of its microsecond (the instant truncated) and the
    digits past the sixth (``extra``, never all zeros: such a timestamp reads as a plain ``datetime``).

    It compares, orders and hashes by the exact instant: it equals no plain ``datetime`` (it lies strictly
    between two microseconds) and orders after its own microsecond; arithmetic is ``datetime``'s (to the
    microsecond). :func:`timestamp_text` renders it with every digit, so a client can echo a fencing token
    exactly; ``render_timestamp`` renders its microsecond."""

    extra: str

    @classmethod
    def of(cls, base: datetime, extra: str) -> Instant:
        instant = cls(
            base.year, base.month, base.day, base.hour, base.minute, base.second, base.microsecond, base.tzinfo
        )
        instant.extra = extra
        return instant

    @staticmethod
    def _compare(a: datetime, b: datetime) -> int:
        base_a, base_b = _plain(a), _plain(b)
        if base_a != base_b:
            return -1 if base_a < base_b else 1
        extra_a, extra_b = getattr(a, "extra", ""), getattr(b, "extra", "")
        width = max(len(extra_a), len(extra_b))
        left, right = extra_a.ljust(width, "0"), extra_b.ljust(width, "0")
        return (left > right) - (left < right)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, datetime) and self._compare(self, other) == 0

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __lt__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return self._compare(self, other) < 0

    def __le__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return self._compare(self, other) <= 0

    def __gt__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return self._compare(self, other) > 0

    def __ge__(self, other: date) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return self._compare(self, other) >= 0

    def __hash__(self) -> int:
        return hash((_plain(self), getattr(self, "extra", "")))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (Instant.of, (_plain(self), getattr(self, "extra", "")))

    def __repr__(self) -> str:
        return f"Instant({timestamp_text(self)!r})"


def _plain(value: datetime) -> datetime:
    """The plain ``datetime`` of an instant (an :class:`Instant`'s microsecond)."""
    if type(value) is datetime:
        return value
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, value.tzinfo
    )


def timestamp_text(value: datetime) -> str:
    """``value`` rendered as the spec does (``.ffffffZ``), or, for an :class:`Instant`, with every digit it was read
    with (``.123456789Z``): what a client echoes to a server (a fencing token must name the very same instant)."""
    text = render_timestamp(value)
    if isinstance(value, Instant):
        text = text[:-1] + getattr(value, "extra", "") + "Z"
    return text


_SPEC_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z", re.ASCII)
_PARSED: dict[str, datetime] = {}
_PARSED_HELD = 4096  # the timestamps kept (then the memo starts afresh): a trace shows the same instants again


def parse_timestamp_memo(text: str, param: str = "timestamp") -> datetime:
    """:func:`workstate._time.parse_timestamp`, memoized by text (only what parses is kept: an error is raised
    afresh, naming ``param``, every time); the spec's form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` is read by
    ``datetime.fromisoformat`` (the same instant; anything it refuses goes to ``parse_timestamp``)."""
    found = _PARSED.get(text) if type(text) is str else None
    if found is not None:
        return found
    value = None
    if type(text) is str and _SPEC_STAMP.fullmatch(text):  # the spec's own form: the C parser reads it alike
        try:
            value = datetime.fromisoformat(text)
        except ValueError:  # a day the month lacks, hour 24, second 60: parse_timestamp says which
            value = None
        if value is not None and (value.tzinfo is not UTC or not EARLIEST <= value <= LATEST):
            value = None
    if value is None:
        value = parse_timestamp(text, param)
    if type(text) is str and len(text) <= 64:
        if len(_PARSED) >= _PARSED_HELD:
            _PARSED.clear()
        _PARSED[text] = value
    return value


def _timestamp(value: Any, path: str) -> datetime:
    """A reply's timestamp, judged by instant: to the microsecond when the digits past the sixth are zeros (or
    absent), else an :class:`Instant` that keeps them (a reply is read tolerantly; a request's timestamps are the
    server's to judge, and :func:`workstate._time.parse_timestamp` refuses what it cannot hold)."""
    if isinstance(value, str):
        try:
            return parse_timestamp_memo(value, path)
        except InvalidTimestamp as exc:
            fine = _FRACTION.search(value)
            if fine is not None and fine[2].strip("0"):
                try:
                    base = read_timestamp(value[: fine.start(2)] + value[fine.end(2) :], path)
                except InvalidTimestamp:  # pragma: no cover - the same text with fewer digits parses alike
                    base = None
                if base is not None:
                    return Instant.of(base, fine[2].rstrip("0"))
            raise DecodeError(exc.message, param=path) from None
    raise DecodeError(f"{path} must be an RFC 3339 timestamp, got {value!r}", param=path)


def _optional_timestamp(value: Any, path: str) -> datetime | None:
    return None if value is None else _timestamp(value, path)


def _count(value: Any, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DecodeError(f"{path} must be an integer >= {minimum}, got {value!r}", param=path)
    return value


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{path} must be true or false, got {value!r}", param=path)
    return value


def _literal(value: Any, expected: str, path: str) -> None:
    if value != expected or not isinstance(value, str):
        raise DecodeError(f"{path} must be {expected!r}, got {value!r}", param=path)


def _state(value: Any, path: str) -> State:
    if isinstance(value, str):
        try:
            return State(value)
        except ValueError:
            pass
    raise DecodeError(f"{path} must be one of {[s.value for s in State]}, got {value!r}", param=path)


def _metadata(value: Any, path: str) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DecodeError(f"{path} must be an object of strings, got {value!r}", param=path)
    return MappingProxyType(dict(value)) if value else _EMPTY


_STAMPS: dict[datetime, str] = {}
_STAMPS_HELD = 4096  # the instants kept (then the memo starts afresh): an item's replies render its times again


def _stamp(value: datetime) -> str:
    """``render_timestamp(value)``, memoized by instant and rendered by %-formatting the fields (about half the cost
    of ``strftime``; the same text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, for every UTC instant of the years 1000 to
    9000). Anything but a plain UTC ``datetime`` in that range goes to ``render_timestamp`` (its errors too)."""
    if type(value) is not datetime:
        return render_timestamp(value)
    text = _STAMPS.get(value)
    if text is None:
        if value.tzinfo is UTC and EARLIEST <= value <= LATEST:
            text = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (the fastest correct renderer)
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        else:
            text = render_timestamp(value)
        if len(_STAMPS) >= _STAMPS_HELD:
            _STAMPS.clear()
        _STAMPS[value] = text
    return text


def _render(value: datetime | None) -> str | None:
    if value is None:
        return None
    if type(value) is datetime:  # _stamp's memo, read here: a reply renders up to six instants
        text = _STAMPS.get(value)
        if text is not None:
            return text
    return _stamp(value)


_STATE_TEXT = {state: state.value for state in State}  # a member's .value is a property: a lookup is cheaper


def _state_text(state: State) -> str:
    return _STATE_TEXT.get(state) or state.value


# --- the work item object (api.md §2) --------------------------------------------------------

_WORK_KEYS = (
    "id",
    "type",
    "environment_id",
    "data",
    "state",
    "created_at",
    "acknowledged_at",
    "started_at",
    "latest_heartbeat_at",
    "stop_requested_at",
    "stopped_at",
    "metadata",
)
_SESSION_KEYS = ("type", "id")


def _work_json(item: Any, dialect: Dialect = QODER, secret: str | None = None) -> dict[str, Any]:
    """The wire object of anything with the work item's fields (a WorkItem or a WorkObject) in ``dialect``: with
    ``secret`` (``secret``, or null) where the dialect's work object carries one."""
    value = {
        "id": item.id,
        "type": "work",
        "environment_id": item.environment_id,
        "data": {"type": getattr(item, "data_type", "session"), "id": item.session_id},
        "state": _state_text(item.state),
        "created_at": _stamp(item.created_at),
        "acknowledged_at": _render(item.acknowledged_at),
        "started_at": _render(item.started_at),
        "latest_heartbeat_at": _render(item.latest_heartbeat_at),
        "stop_requested_at": _render(item.stop_requested_at),
        "stopped_at": _render(item.stopped_at),
        "metadata": dict(item.metadata),
    }
    if dialect.secret_field:
        value["secret"] = secret
    return value


def encode_work(item: Any, dialect: Dialect = QODER, secret: str | None = None) -> dict[str, Any]:
    """The JSON value of a :class:`~workstate.WorkItem` (or a :class:`WorkObject`) on the wire of ``dialect``;
    ``secret`` is rendered only where the dialect's work object has the field (null unless given: a poll's
    answer alone may carry one)."""
    return _work_json(item, dialect, secret)


@picklable
@attrs.frozen(kw_only=True)
class WorkObject:
    """A work item as the wire shows it: the fields of api.md §2, the kind of work its ``data`` names
    (``data_type``: ``session``, or ``healthcheck`` in a dialect with health probes) and, where a dialect's work
    object carries one, its ``secret`` (None when null or absent; it takes no part in equality: it is a
    credential of one delivery, not of the item)."""

    id: str
    environment_id: str
    session_id: str
    state: State
    created_at: datetime
    acknowledged_at: datetime | None = None
    started_at: datetime | None = None
    latest_heartbeat_at: datetime | None = None
    stop_requested_at: datetime | None = None
    stopped_at: datetime | None = None
    metadata: Mapping[str, str] = attrs.field(default=_EMPTY, hash=False)
    data_type: str = "session"
    secret: str | None = attrs.field(default=None, eq=False)

    type = "work"

    @classmethod
    def of(cls, item: Any, secret: str | None = None) -> WorkObject:
        """The wire view of a :class:`~workstate.WorkItem` (with the ``secret`` of its delivery, if any)."""
        fields = {field.name: getattr(item, field.name) for field in attrs.fields(cls)[:-2]}
        return cls(**fields, data_type=getattr(item, "data_type", "session"), secret=secret)

    def to_json(self, dialect: Dialect = QODER) -> dict[str, Any]:
        return _work_json(self, dialect, self.secret)

    @classmethod
    def from_json(cls, value: Any, path: str = "", dialect: Dialect = QODER) -> WorkObject:
        """A work object of ``dialect`` (ids in its format; ``data.type`` ``session``, or ``healthcheck`` where the
        dialect has health probes); ``secret`` is read in a dialect whose work object has it (a string or null)."""
        obj = _object(value, path, _WORK_KEYS)
        _literal(obj["type"], "work", _path(path, "type"))
        data_path = _path(path, "data")
        data = _object(obj["data"], data_path, _SESSION_KEYS)
        kinds = ("session", "healthcheck") if dialect.healthcheck_items else ("session",)
        data_type = data["type"]
        if not isinstance(data_type, str) or data_type not in kinds:
            type_path = _path(data_path, "type")
            raise DecodeError(f"{type_path} must be one of {list(kinds)}, got {data_type!r}", param=type_path)
        if data_type == "session":
            data_id = _id(data["id"], "session", _path(data_path, "id"), dialect)
        else:
            data_id = _string(data["id"], _path(data_path, "id"))
        secret = obj.get("secret") if dialect.secret_field else None  # elsewhere an unknown key, ignored
        if secret is not None:
            secret = _string(secret, _path(path, "secret"))
        return cls(
            id=_id(obj["id"], "work", _path(path, "id"), dialect),
            environment_id=_id(obj["environment_id"], "env", _path(path, "environment_id"), dialect),
            session_id=data_id,
            data_type=data_type,
            secret=secret,
            state=_state(obj["state"], _path(path, "state")),
            created_at=_timestamp(obj["created_at"], _path(path, "created_at")),
            acknowledged_at=_optional_timestamp(obj["acknowledged_at"], _path(path, "acknowledged_at")),
            started_at=_optional_timestamp(obj["started_at"], _path(path, "started_at")),
            latest_heartbeat_at=_optional_timestamp(obj["latest_heartbeat_at"], _path(path, "latest_heartbeat_at")),
            stop_requested_at=_optional_timestamp(obj["stop_requested_at"], _path(path, "stop_requested_at")),
            stopped_at=_optional_timestamp(obj["stopped_at"], _path(path, "stopped_at")),
            metadata=_metadata(obj["metadata"], _path(path, "metadata")),
        )

    @classmethod
    def from_bytes(cls, data: bytes, dialect: Dialect = QODER) -> WorkObject:
        return cls.from_json(loads(data), dialect=dialect)


def work_state(value: Any, work_id: str, environment_id: str) -> State:
    """The ``state`` of ``value``, the work object of item ``work_id`` in ``environment_id``, checking only what
    that reading needs: a JSON object of ``type`` ``work`` with those ids and a known ``state``. How a worker reads
    the answer to an ack or a stop, where the rest of the object is never used; else :class:`DecodeError`."""
    if not isinstance(value, dict) or value.get("type") != "work":
        raise DecodeError("the answer must be a work object", param=None)
    if value.get("id") != work_id or value.get("environment_id") != environment_id:
        raise DecodeError(
            f"the answer is the work object of {value.get('id')!r} in {value.get('environment_id')!r},"
            f" not of {work_id} in {environment_id}",
            param="id",
        )
    return _state(value.get("state"), "state")


def decode_poll(data: bytes, dialect: Dialect = QODER) -> WorkObject | None:
    """A poll reply in ``dialect``: a work object (with its ``secret``, if any), or ``null`` when nothing was
    deliverable."""
    value = loads(data)
    return None if value is None else WorkObject.from_json(value, dialect=dialect)


def decode_stop(data: bytes, dialect: Dialect = QODER) -> WorkObject | None:
    """A stop's reply: the work object (``StopAnswer.OBJECT``), or None for an empty body (``StopAnswer.NO_CONTENT``:
    204, which says only that the stop was taken; read either in either dialect, tolerantly)."""
    if not data:
        return None
    return WorkObject.from_json(loads(data), dialect=dialect)


# --- the heartbeat object (api.md §4.3) ----------------------------------------------------------------


def heartbeat_json(item: Any) -> dict[str, Any]:
    """``HeartbeatObject.of(item).to_json()`` without the object between (the server's answer to every accepted
    heartbeat): the same value, and the same error for an item that holds no lease."""
    latest, ttl = item.latest_heartbeat_at, item.ttl_seconds
    if latest is None or ttl is None:
        raise InvalidInput(f"work item {item.id} holds no lease", param="item")
    return {
        "type": "work_heartbeat",
        "last_heartbeat": _stamp(latest),
        "lease_extended": True,
        "state": _state_text(item.state),
        "ttl_seconds": ttl,
    }


_HEARTBEAT_KEYS = ("type", "last_heartbeat", "lease_extended", "state", "ttl_seconds")


@attrs.frozen(kw_only=True)
class HeartbeatObject:
    """The reply of an accepted heartbeat: ``last_heartbeat`` is the lease's fencing token."""

    last_heartbeat: datetime
    lease_extended: bool
    state: State
    ttl_seconds: int

    type = "work_heartbeat"

    @classmethod
    def of(cls, item: Any) -> HeartbeatObject:
        """The heartbeat reply for an item that a heartbeat was just accepted on."""
        if item.latest_heartbeat_at is None or item.ttl_seconds is None:
            raise InvalidInput(f"work item {item.id} holds no lease", param="item")
        return cls(
            last_heartbeat=item.latest_heartbeat_at, lease_extended=True, state=item.state, ttl_seconds=item.ttl_seconds
        )

    @classmethod
    def reported(cls, item: Any, default_ttl_seconds: int) -> HeartbeatObject:
        """The reply of a heartbeat on a ``stopped`` item in a dialect that reports it (rule
        ``heartbeat-stopped-reported``): ``lease_extended`` false, the latest heartbeat (or the stop instant
        when none came) and the last TTL granted (or ``default_ttl_seconds`` when none was)."""
        last = item.latest_heartbeat_at if item.latest_heartbeat_at is not None else item.stopped_at
        if last is None:
            raise InvalidInput(f"work item {item.id} is not stopped", param="item")
        ttl = item.ttl_seconds if item.ttl_seconds is not None else default_ttl_seconds
        return cls(last_heartbeat=last, lease_extended=False, state=item.state, ttl_seconds=ttl)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "work_heartbeat",
            "last_heartbeat": _stamp(self.last_heartbeat),
            "lease_extended": self.lease_extended,
            "state": _state_text(self.state),
            "ttl_seconds": self.ttl_seconds,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "", dialect: Dialect = QODER) -> HeartbeatObject:
        """The heartbeat object (the same in every shipped dialect; ``dialect`` is taken for symmetry)."""
        obj = _object(value, path, _HEARTBEAT_KEYS)
        _literal(obj["type"], "work_heartbeat", _path(path, "type"))
        return cls(
            last_heartbeat=_timestamp(obj["last_heartbeat"], _path(path, "last_heartbeat")),
            lease_extended=_boolean(obj["lease_extended"], _path(path, "lease_extended")),
            state=_state(obj["state"], _path(path, "state")),
            ttl_seconds=_count(obj["ttl_seconds"], _path(path, "ttl_seconds"), minimum=1),
        )

    @classmethod
    def from_bytes(cls, data: bytes, dialect: Dialect = QODER) -> HeartbeatObject:
        return cls.from_json(loads(data), dialect=dialect)


# --- the queue stats object (api.md §4.7) -------------------------------------------------------------


_STATS_KEYS = ("type", "depth", "pending", "oldest_queued_at", "workers_polling")


@attrs.frozen(kw_only=True)
class StatsObject:
    """Queue stats of one environment."""

    depth: int
    pending: int
    oldest_queued_at: datetime | None
    workers_polling: int

    type = "work_queue_stats"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "work_queue_stats",
            "depth": self.depth,
            "pending": self.pending,
            "oldest_queued_at": _render(self.oldest_queued_at),
            "workers_polling": self.workers_polling,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> StatsObject:
        obj = _object(value, path, _STATS_KEYS)
        _literal(obj["type"], "work_queue_stats", _path(path, "type"))
        return cls(
            depth=_count(obj["depth"], _path(path, "depth")),
            pending=_count(obj["pending"], _path(path, "pending")),
            oldest_queued_at=_optional_timestamp(obj["oldest_queued_at"], _path(path, "oldest_queued_at")),
            workers_polling=_count(obj["workers_polling"], _path(path, "workers_polling")),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StatsObject:
        return cls.from_json(loads(data))


# --- the list envelope (api.md §4.6) ------------------------------------------------------------------


_LIST_KEYS = ("data", "first_id", "last_id", "has_more", "next_page")
_NEXT_PAGE_KEYS = ("data", "next_page")


@attrs.frozen(kw_only=True)
class ListEnvelope:
    """One page of a list. ``first_id``, ``last_id`` and ``next_page`` follow from the data and the direction.

    ``has_more`` says whether items lie beyond the page in the direction it was asked for: after ``last_id``
    for a forward page (no cursor, ``page``, ``after_id``), before ``first_id`` for a ``before_id`` page
    (``backward``). ``next_page`` is the cursor that continues that way: ``last_id``, or ``first_id`` (to be
    sent back as ``before_id``), and null when nothing is left. A decoded page is ``backward`` when its
    ``next_page`` names its first item and that is not also its last (a one-item page reads the same either
    way).

    In a dialect of ``ListStyle.NEXT_PAGE`` the envelope is ``{data, next_page}``: ``has_more`` is whether
    ``next_page`` is given, and a decoded page keeps the cursor as the server gave it (``cursor``: it is opaque
    there), which ``next_page`` then answers."""

    data: tuple[WorkObject, ...]
    has_more: bool
    backward: bool = False
    cursor: str | None = attrs.field(default=None, eq=False)

    @classmethod
    def of(cls, items: Sequence[Any], has_more: bool, backward: bool = False) -> ListEnvelope:
        return cls(data=tuple(WorkObject.of(item) for item in items), has_more=has_more, backward=backward)

    @property
    def first_id(self) -> str | None:
        return self.data[0].id if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1].id if self.data else None

    @property
    def next_page(self) -> str | None:
        if not self.has_more:
            return None
        if self.cursor is not None:
            return self.cursor
        return self.first_id if self.backward else self.last_id

    def to_json(self, dialect: Dialect = QODER) -> dict[str, Any]:
        data = [_work_json(item, dialect) for item in self.data]
        if dialect.list_style is ListStyle.NEXT_PAGE:
            return {"data": data, "next_page": self.next_page}
        return {
            "data": data,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
            "next_page": self.next_page,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "", dialect: Dialect = QODER) -> ListEnvelope:
        next_style = dialect.list_style is ListStyle.NEXT_PAGE
        obj = _object(value, path, _NEXT_PAGE_KEYS if next_style else _LIST_KEYS)
        data_path = _path(path, "data")
        if not isinstance(obj["data"], list):
            raise DecodeError(f"{data_path} must be a JSON array", param=data_path)
        data = tuple(WorkObject.from_json(item, _path(data_path, i), dialect) for i, item in enumerate(obj["data"]))
        if next_style:
            cursor = obj["next_page"]
            if cursor is not None:
                cursor = _string(cursor, _path(path, "next_page"))
                if not cursor:
                    raise DecodeError(f"{_path(path, 'next_page')} must not be empty", param=_path(path, "next_page"))
            return cls(data=data, has_more=cursor is not None, cursor=cursor)
        has_more = _boolean(obj["has_more"], _path(path, "has_more"))
        next_page = obj["next_page"]
        backward = has_more and bool(data) and next_page == data[0].id and next_page != data[-1].id
        page = cls(data=data, has_more=has_more, backward=backward)
        for key in ("first_id", "last_id", "next_page"):
            found = _optional_id(obj[key], "work", _path(path, key), dialect)
            if found != getattr(page, key):
                raise DecodeError(
                    f"{_path(path, key)} is {found!r}, but the page's data makes it {getattr(page, key)!r}",
                    param=_path(path, key),
                )
        ids = [item.id for item in data]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise DecodeError(f"{data_path} is not in ascending id order", param=data_path)
        return page

    @classmethod
    def from_bytes(cls, data: bytes, dialect: Dialect = QODER) -> ListEnvelope:
        return cls.from_json(loads(data), dialect=dialect)


# --- the error envelope (api.md §6) -----------------------------------------------------------


_ERROR_KEYS = ("type", "request_id", "error")
_ERROR_DETAIL_KEYS = ("type", "message")
"""The keys an ``error`` object must hold; ``param`` is optional."""


@attrs.frozen(kw_only=True)
class ErrorEnvelope:
    """``{"type": "error", "request_id", "error": {"type", "message", "param"?}}`` (``ErrorStyle.PARAM``), or
        ``{"type": "error", "error": {"type", "message", "details"?}, "request_id"}`` (``ErrorStyle.DETAILS``: the
        ``param`` is not rendered there). Decoding reads ``param`` wherever it is present, and ``details`` in a
    dialect of ``ErrorStyle.DETAILS`` (elsewhere an unknown key, ignored)."""

    request_id: str
    error_type: str
    message: str
    param: str | None = None
    details: Mapping[str, Any] | None = attrs.field(default=None, hash=False)

    type = "error"

    def to_json(self, dialect: Dialect = QODER) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if dialect.error_style is ErrorStyle.DETAILS:
            if self.details is not None:
                error["details"] = dict(self.details)
            return {"type": "error", "error": error, "request_id": self.request_id}
        if self.param is not None:
            error["param"] = self.param
        return {"type": "error", "request_id": self.request_id, "error": error}

    @classmethod
    def from_json(cls, value: Any, path: str = "", dialect: Dialect = QODER) -> ErrorEnvelope:
        details_style = dialect.error_style is ErrorStyle.DETAILS  # elsewhere error.details is an unknown key
        obj = _object(value, path, _ERROR_KEYS)
        _literal(obj["type"], "error", _path(path, "type"))
        error_path = _path(path, "error")
        error = _object(obj["error"], error_path, _ERROR_DETAIL_KEYS)
        error_type = _string(error["type"], _path(error_path, "type"))
        if not error_type:
            raise DecodeError(f"{_path(error_path, 'type')} must not be empty", param=_path(error_path, "type"))
        return cls(
            request_id=_string(obj["request_id"], _path(path, "request_id")),
            error_type=error_type,
            message=_string(error["message"], _path(error_path, "message")),
            param=_string(error["param"], _path(error_path, "param")) if "param" in error else None,
            details=_details(error.get("details"), _path(error_path, "details")) if details_style else None,
        )

    @classmethod
    def from_bytes(cls, data: bytes, dialect: Dialect = QODER) -> ErrorEnvelope:
        return cls.from_json(loads(data), dialect=dialect)


def _details(value: Any, path: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError(f"{path} must be a JSON object, got {type(value).__name__}", param=path)
    return MappingProxyType(value)


# --- keys a reply holds that the codec does not know ----------------------------------------------


@attrs.frozen
class _Shape:
    """The keys the codec knows in one JSON object, and the known keys whose values are objects
    (or, with ``True``, arrays of objects) it knows the keys of."""

    keys: frozenset[str]
    nested: Mapping[str, tuple[_Shape, bool]] = attrs.field(factory=dict)


def _shapes(dialect: Dialect) -> Mapping[type, _Shape]:
    """The keys the codec knows in each reply object of ``dialect``."""
    work_keys = (*_WORK_KEYS, "secret") if dialect.secret_field else _WORK_KEYS
    work = _Shape(frozenset(work_keys), MappingProxyType({"data": (_Shape(frozenset(_SESSION_KEYS)), False)}))
    list_keys = _NEXT_PAGE_KEYS if dialect.list_style is ListStyle.NEXT_PAGE else _LIST_KEYS
    error_key = "details" if dialect.error_style is ErrorStyle.DETAILS else "param"
    return MappingProxyType(
        {
            WorkObject: work,
            HeartbeatObject: _Shape(frozenset(_HEARTBEAT_KEYS)),
            StatsObject: _Shape(frozenset(_STATS_KEYS)),
            ListEnvelope: _Shape(frozenset(list_keys), MappingProxyType({"data": (work, True)})),
            ErrorEnvelope: _Shape(
                frozenset(_ERROR_KEYS),
                MappingProxyType({"error": (_Shape(frozenset((*_ERROR_DETAIL_KEYS, error_key))), False)}),
            ),
        }
    )


_SHAPES = _shapes(QODER)
_SHAPES_OF: dict[Dialect, Mapping[type, _Shape]] = {QODER: _SHAPES}


def unknown_keys(value: Any, kind: type, dialect: Dialect = QODER) -> tuple[str, ...]:
    """The paths of the keys in ``value``, a decoded reply meant as a ``kind`` object (:class:`WorkObject`,
    :class:`HeartbeatObject`, :class:`StatsObject`, :class:`ListEnvelope` or :class:`ErrorEnvelope`), that the
    codec does not know and its decoders ignore: e.g. ``("secret", "data.extra")``, ``("data[0].secret",)``,
    ``("error.details",)``, in the order they appear. Only objects where the codec expects them are looked
    into; what is not an object there (a poll's ``null``, a malformed reply) has no unknown keys, and its
    shape is for ``kind.from_json`` to judge. A ``kind`` that is none of these raises
    :class:`~workstate.errors.InvalidInput`. The known keys are ``dialect``'s (``secret`` and ``error.details``
    are known in a dialect that has them)."""
    shapes = _SHAPES_OF.get(dialect)
    if shapes is None:
        shapes = _SHAPES_OF[dialect] = _shapes(dialect)
    shape = shapes.get(kind) if isinstance(kind, type) else None
    if shape is None:
        raise InvalidInput(f"kind must be one of {', '.join(k.__name__ for k in _SHAPES)}, got {kind!r}", param="kind")
    found: list[str] = []
    _unknown(value, shape, "", found)
    return tuple(found)


def _unknown(value: Any, shape: _Shape, path: str, found: list[str]) -> None:
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key not in shape.keys:
            found.append(_path(path, key))
            continue
        nested = shape.nested.get(key)
        if nested is None:
            continue
        inner, many = nested
        if not many:
            _unknown(item, inner, _path(path, key), found)
        elif isinstance(item, list):
            for i, element in enumerate(item):
                _unknown(element, inner, _path(_path(path, key), i), found)
