"""The wire codec: the JSON objects of the Work API (spec sections 2, 4 and 6), both ways.

Encoding renders what the reference server answers. Decoding is strict about JSON syntax and about
requests, and tolerant about the keys of replies; this is which is which.

Strict:

- JSON syntax, for requests and replies alike: :func:`loads` (and :data:`STRICT_JSON`, with which
  ``workstate check`` reads trace lines and :class:`~workstate.testing.http.HttpTarget` reads reply
  bodies) accepts UTF-8 JSON only: no byte-order mark, no ``NaN``/``Infinity``, no duplicate object
  keys, no lone surrogates, no nesting deep enough to exhaust the stack.
- Request bodies: the reference server (:func:`workstate.api.routes.read_stop` and ``read_update``,
  after :func:`loads`) refuses every key a request does not take with 400 (spec 4.4: "another key"),
  so a client learns of its mistake at once. Nothing in this module parses a request body's keys.

Tolerant (replies, as a client reads them: the worker driver, ``HttpTarget``, ``workstate check``):

- ``from_json``/``from_bytes`` of each object, :func:`decode_poll` and :func:`work_state` ignore
  keys they do not know, at the top and in nested objects (a work object's ``data``, an error's
  ``error``, every item of a list's ``data``): other servers of this API family add fields (e.g. a
  poll answer's ``secret``, an error's ``details``). :func:`unknown_keys` names those keys by path
  (``secret``, ``data[0].secret``, ``error.details``), for a checker to note.
- They still demand every known required key, each of its type: ids carry their prefix and 32
  lowercase hex digits; timestamps are RFC 3339 with an offset (the spec's parse rule; they are
  always rendered ``YYYY-MM-DDTHH:MM:SS.ffffffZ``).
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
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from .._time import parse_timestamp, render_timestamp
from .._values import picklable
from ..errors import InvalidInput, InvalidTimestamp
from ..model import valid_id
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
    "decode_poll",
    "dumps",
    "encode_work",
    "loads",
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
"""The ``error.type`` values of spec section 6 (``conflict_error`` under a policy). Decoding accepts
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
    return _ENCODER.encode(value).encode("ascii")


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


def _id(value: Any, prefix: str, path: str) -> str:
    if not isinstance(value, str) or not valid_id(prefix, value):
        raise DecodeError(f"{path} must be {prefix!r} followed by 32 lowercase hex digits, got {value!r}", param=path)
    return value


def _optional_id(value: Any, prefix: str, path: str) -> str | None:
    return None if value is None else _id(value, prefix, path)


def _timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, str):
        try:
            return parse_timestamp(value, path)
        except InvalidTimestamp as exc:
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


def _render(value: datetime | None) -> str | None:
    return None if value is None else render_timestamp(value)


# --- the work item object (spec section 2) --------------------------------------------------------

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


def _work_json(item: Any) -> dict[str, Any]:
    """The wire object of anything with the work item's fields (a WorkItem or a WorkObject)."""
    return {
        "id": item.id,
        "type": "work",
        "environment_id": item.environment_id,
        "data": {"type": "session", "id": item.session_id},
        "state": item.state.value,
        "created_at": render_timestamp(item.created_at),
        "acknowledged_at": _render(item.acknowledged_at),
        "started_at": _render(item.started_at),
        "latest_heartbeat_at": _render(item.latest_heartbeat_at),
        "stop_requested_at": _render(item.stop_requested_at),
        "stopped_at": _render(item.stopped_at),
        "metadata": dict(item.metadata),
    }


def encode_work(item: Any) -> dict[str, Any]:
    """The JSON value of a :class:`~workstate.WorkItem` (or a :class:`WorkObject`) on the wire."""
    return _work_json(item)


@picklable
@attrs.frozen(kw_only=True)
class WorkObject:
    """A work item as the wire shows it: the fields of spec section 2 and nothing else."""

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

    type = "work"

    @classmethod
    def of(cls, item: Any) -> WorkObject:
        """The wire view of a :class:`~workstate.WorkItem`."""
        return cls(**{field.name: getattr(item, field.name) for field in attrs.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return _work_json(self)

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> WorkObject:
        obj = _object(value, path, _WORK_KEYS)
        _literal(obj["type"], "work", _path(path, "type"))
        data_path = _path(path, "data")
        data = _object(obj["data"], data_path, _SESSION_KEYS)
        _literal(data["type"], "session", _path(data_path, "type"))
        return cls(
            id=_id(obj["id"], "work_", _path(path, "id")),
            environment_id=_id(obj["environment_id"], "env_", _path(path, "environment_id")),
            session_id=_id(data["id"], "sess_", _path(data_path, "id")),
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
    def from_bytes(cls, data: bytes) -> WorkObject:
        return cls.from_json(loads(data))


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


def decode_poll(data: bytes) -> WorkObject | None:
    """A poll reply: a work object, or ``null`` when nothing was deliverable."""
    value = loads(data)
    return None if value is None else WorkObject.from_json(value)


# --- the heartbeat object (spec 4.3) ----------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "work_heartbeat",
            "last_heartbeat": render_timestamp(self.last_heartbeat),
            "lease_extended": self.lease_extended,
            "state": self.state.value,
            "ttl_seconds": self.ttl_seconds,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> HeartbeatObject:
        obj = _object(value, path, _HEARTBEAT_KEYS)
        _literal(obj["type"], "work_heartbeat", _path(path, "type"))
        return cls(
            last_heartbeat=_timestamp(obj["last_heartbeat"], _path(path, "last_heartbeat")),
            lease_extended=_boolean(obj["lease_extended"], _path(path, "lease_extended")),
            state=_state(obj["state"], _path(path, "state")),
            ttl_seconds=_count(obj["ttl_seconds"], _path(path, "ttl_seconds"), minimum=1),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> HeartbeatObject:
        return cls.from_json(loads(data))


# --- the queue stats object (spec 4.7) -------------------------------------------------------------


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


# --- the list envelope (spec 4.6) ------------------------------------------------------------------


_LIST_KEYS = ("data", "first_id", "last_id", "has_more", "next_page")


@attrs.frozen(kw_only=True)
class ListEnvelope:
    """One page of a list. ``first_id``, ``last_id`` and ``next_page`` follow from the data and the direction.

    ``has_more`` says whether items lie beyond the page in the direction it was asked for: after ``last_id``
    for a forward page (no cursor, ``page``, ``after_id``), before ``first_id`` for a ``before_id`` page
    (``backward``). ``next_page`` is the cursor that continues that way: ``last_id``, or ``first_id`` (to be
    sent back as ``before_id``), and null when nothing is left. A decoded page is ``backward`` when its
    ``next_page`` names its first item and that is not also its last (a one-item page reads the same either
    way)."""

    data: tuple[WorkObject, ...]
    has_more: bool
    backward: bool = False

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
        return self.first_id if self.backward else self.last_id

    def to_json(self) -> dict[str, Any]:
        return {
            "data": [_work_json(item) for item in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
            "next_page": self.next_page,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> ListEnvelope:
        obj = _object(value, path, _LIST_KEYS)
        data_path = _path(path, "data")
        if not isinstance(obj["data"], list):
            raise DecodeError(f"{data_path} must be a JSON array", param=data_path)
        data = tuple(WorkObject.from_json(item, _path(data_path, i)) for i, item in enumerate(obj["data"]))
        has_more = _boolean(obj["has_more"], _path(path, "has_more"))
        next_page = obj["next_page"]
        backward = has_more and bool(data) and next_page == data[0].id and next_page != data[-1].id
        page = cls(data=data, has_more=has_more, backward=backward)
        for key in ("first_id", "last_id", "next_page"):
            found = _optional_id(obj[key], "work_", _path(path, key))
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
    def from_bytes(cls, data: bytes) -> ListEnvelope:
        return cls.from_json(loads(data))


# --- the error envelope (spec section 6) -----------------------------------------------------------


_ERROR_KEYS = ("type", "request_id", "error")
_ERROR_DETAIL_KEYS = ("type", "message")
"""The keys an ``error`` object must hold; ``param`` is optional."""


@attrs.frozen(kw_only=True)
class ErrorEnvelope:
    """``{"type": "error", "request_id", "error": {"type", "message", "param"?}}``."""

    request_id: str
    error_type: str
    message: str
    param: str | None = None

    type = "error"

    def to_json(self) -> dict[str, Any]:
        error = {"type": self.error_type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        return {"type": "error", "request_id": self.request_id, "error": error}

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> ErrorEnvelope:
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
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ErrorEnvelope:
        return cls.from_json(loads(data))


# --- keys a reply holds that the codec does not know ----------------------------------------------


@attrs.frozen
class _Shape:
    """The keys the codec knows in one JSON object, and the known keys whose values are objects
    (or, with ``True``, arrays of objects) it knows the keys of."""

    keys: frozenset[str]
    nested: Mapping[str, tuple[_Shape, bool]] = attrs.field(factory=dict)


_WORK_SHAPE = _Shape(frozenset(_WORK_KEYS), MappingProxyType({"data": (_Shape(frozenset(_SESSION_KEYS)), False)}))
_SHAPES: Mapping[type, _Shape] = MappingProxyType(
    {
        WorkObject: _WORK_SHAPE,
        HeartbeatObject: _Shape(frozenset(_HEARTBEAT_KEYS)),
        StatsObject: _Shape(frozenset(_STATS_KEYS)),
        ListEnvelope: _Shape(frozenset(_LIST_KEYS), MappingProxyType({"data": (_WORK_SHAPE, True)})),
        ErrorEnvelope: _Shape(
            frozenset(_ERROR_KEYS),
            MappingProxyType({"error": (_Shape(frozenset((*_ERROR_DETAIL_KEYS, "param"))), False)}),
        ),
    }
)


def unknown_keys(value: Any, kind: type) -> tuple[str, ...]:
    """The paths of the keys in ``value``, a decoded reply meant as a ``kind`` object (:class:`WorkObject`,
    :class:`HeartbeatObject`, :class:`StatsObject`, :class:`ListEnvelope` or :class:`ErrorEnvelope`), that the
    codec does not know and its decoders ignore: e.g. ``("secret", "data.extra")``, ``("data[0].secret",)``,
    ``("error.details",)``, in the order they appear. Only objects where the codec expects them are looked
    into; what is not an object there (a poll's ``null``, a malformed reply) has no unknown keys, and its
    shape is for ``kind.from_json`` to judge. A ``kind`` that is none of these raises
    :class:`~workstate.errors.InvalidInput`."""
    shape = _SHAPES.get(kind) if isinstance(kind, type) else None
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
