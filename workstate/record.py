"""Storage records: a :class:`~workstate.WorkItem` as a versioned, JSON-ready mapping, and back.

A server that keeps items in a database stores ``to_record(item)`` (as one JSON document, or one column
per key) and rebuilds the item with ``from_record(record)``. The record holds every field of
``WorkItem`` — the wire fields and the model's own (``delivered_at``, ``clock``, ``version``, …) — and
the keys are read off the attrs fields, never listed by hand: a field added to ``WorkItem`` is in the
record at once (``tests/core/test_record.py`` checks both directions over every reachable item).

Values: instants are RFC 3339 strings as :func:`~workstate.render_timestamp` writes them (exact to the
microsecond; they sort as text in time order), ``state`` its name, ``metadata`` a plain dict of strings;
everything else as it is (str, int or None). ``schema`` is :data:`RECORD_SCHEMA`.

Migrations: a record carries the schema it was written with. When a release changes the record (0.2
may add a field), it raises :data:`RECORD_SCHEMA` and adds to :data:`MIGRATIONS` the function that turns
a record of the previous schema into one of the next; :func:`from_record` applies them in turn, so old
rows are read as they are and rewritten in the new schema by the next change. A record of a schema newer
than this release knows is refused (:class:`~workstate.errors.InvalidItem`), never guessed at.
"""

from __future__ import annotations

import json
import operator
import re
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

import attrs

from ._time import EARLIEST, LATEST, UTC, parse_timestamp, render_timestamp, shown
from .errors import InvalidInput, InvalidItem
from .model import WorkItem
from .rules import State

__all__ = ["MIGRATIONS", "RECORD_FIELDS", "RECORD_SCHEMA", "from_record", "record_json", "to_record"]

RECORD_SCHEMA = 1
"""The schema number this release writes into every record (key ``schema``)."""

MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``MIGRATIONS[n]`` turns a record of schema ``n`` into one of schema ``n + 1`` (none yet: schema 1 is the first)."""


def _kinds() -> dict[str, str]:
    hints = typing.get_type_hints(WorkItem)
    kinds = {}
    for field in attrs.fields(WorkItem):
        hint = hints[field.name]
        args = set(typing.get_args(hint)) or {hint}
        if datetime in args:
            kinds[field.name] = "instant"
        elif hint is State:
            kinds[field.name] = "state"
        elif typing.get_origin(hint) is Mapping or hint is Mapping:
            kinds[field.name] = "mapping"
        else:
            kinds[field.name] = "plain"
    return kinds


_KIND = _kinds()
RECORD_FIELDS: tuple[str, ...] = ("schema", *_KIND)
"""Every key of a record, in order: ``schema``, then the fields of ``WorkItem`` (the columns of a store)."""


_NAMES = tuple(_KIND)
_KINDS = tuple(_KIND.values())
_VALUES = operator.attrgetter(*_NAMES)  # every field at once, in record order
_KEYS = tuple("," + encode_basestring(name) + ":" for name in _NAMES)  # ',"id":' ...
_HEAD = '{"schema":' + str(RECORD_SCHEMA)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""The encoding of :func:`record_json`: compact, UTF-8 as it is (what ``json.dumps(record, separators=(",", ":"),
ensure_ascii=False)`` writes)."""


def _instant(value: datetime) -> str:
    """:func:`~workstate.render_timestamp`, without its checks for an instant that passes them (every item's)."""
    if type(value) is datetime and value.tzinfo is UTC and EARLIEST <= value <= LATEST:
        return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z": the same text, faster
    return render_timestamp(value)


def to_record(item: WorkItem) -> dict[str, Any]:
    """Every field of ``item`` as a JSON-ready dict, with ``schema``."""
    if type(item) is not WorkItem:
        raise InvalidItem(f"to_record needs a WorkItem, got {shown(item)}", param="item")
    record: dict[str, Any] = {"schema": RECORD_SCHEMA}
    for name, kind, value in zip(_NAMES, _KINDS, _VALUES(item), strict=True):
        if value is None or kind == "plain":
            record[name] = value
        elif kind == "instant":
            record[name] = _instant(value)
        elif kind == "state":
            record[name] = value.value
        else:
            record[name] = dict(value)
    return record


def _render_into(rendered: dict[datetime, str], value: datetime) -> str:
    text = rendered[value] = '"' + _instant(value) + '"'
    return text


def _plain(value: object) -> str:
    return "null" if value is None else int.__repr__(value) if type(value) is int else _JSON(value)


_STATES = {state: encode_basestring(state.value) for state in State}


def _encoder() -> Callable[[WorkItem, dict[datetime, str]], str]:
    """The body of :func:`record_json`, generated from the attrs fields (as attrs generates ``__init__``): one
    f-string, each field's value encoded by its kind inline, so no loop or dispatch runs per field."""
    lines = ["def encode(item, rendered):"]
    pieces = [_HEAD.replace("{", "{{")]
    for number, (name, kind) in enumerate(_KIND.items()):
        value = f"v{number}"
        lines.append(f"    {value} = item.{name}")
        if kind == "instant":
            code = f'"null" if {value} is None else rendered.get({value}) or _render_into(rendered, {value})'
        elif kind == "state":
            code = f"_STATES[{value}]"
        elif kind == "mapping":
            code = f'_JSON(dict({value})) if {value} else "{{}}"'
        else:
            code = f"encode_basestring({value}) if type({value}) is str else _plain({value})"
        pieces.append(_KEYS[number] + "{" + code + "}")
    body = "".join(pieces)
    if "'" in body or "\\" in body:  # field names are identifiers and the code parts hold neither
        raise AssertionError(f"a record field cannot be encoded inline: {body}")
    lines.append(f"    return f'{body}}}}}'")
    namespace = {
        "_render_into": _render_into,
        "_plain": _plain,
        "_STATES": _STATES,
        "_JSON": _JSON,
        "encode_basestring": encode_basestring,
    }
    source = "\n".join(lines)
    exec(source, namespace)  # noqa: S102 - generated from the fields above, nothing from outside
    return typing.cast(Callable[[WorkItem, dict[datetime, str]], str], namespace["encode"])


_ENCODE = _encoder()


def record_json(item: WorkItem, rendered: dict[datetime, str] | None = None) -> str:
    """``to_record(item)`` as compact JSON text, the form the stores keep: exactly what
    ``json.dumps(to_record(item), separators=(",", ":"), ensure_ascii=False)`` writes, built without the
    intermediate dict (a store writes one per change; ``tests/stores/test_record_json.py`` checks the identity).

    ``rendered``, when given, is the caller's memo of instants already rendered (as JSON strings, quotes
    included): read and filled here, so a store that keeps one renders each instant once (an item's
    ``created_at`` is in every record of it). The caller bounds it."""
    if type(item) is not WorkItem:
        raise InvalidItem(f"record_json needs a WorkItem, got {shown(item)}", param="item")
    return _ENCODE(item, {} if rendered is None else rendered)


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z", re.ASCII)
"""An instant as :func:`_instant` writes it (every record this release wrote holds only such)."""


def _parse(value: str, name: str) -> datetime:
    """:func:`~workstate.parse_timestamp` of a record's instant, faster for the text :func:`_instant` writes."""
    if _CANONICAL.fullmatch(value) is not None:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:  # a day the month lacks, a leap second, year 0: the full parser says which
            pass
        else:
            if instant.tzinfo is UTC and EARLIEST <= instant <= LATEST:
                return instant
    try:
        return parse_timestamp(value)
    except InvalidInput as exc:
        raise InvalidItem(f"record {name}: {exc.message}", param=name) from None


def from_record(record: Mapping[str, Any]) -> WorkItem:
    """The item a record (of this schema, or an older one that :data:`MIGRATIONS` upgrades) describes.

    Every field is checked as ``WorkItem(...)`` checks it; a missing or unknown key, a schema this release
    does not know, or a value of the wrong kind raises :class:`~workstate.errors.InvalidItem` (or another
    :class:`~workstate.errors.InvalidInput`) naming it.
    """
    if not isinstance(record, Mapping):
        raise InvalidItem(f"a record is a mapping, got {shown(record)}", param="record")
    schema = record.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= RECORD_SCHEMA:
        raise InvalidItem(
            f"record schema must be an integer from 1 to {RECORD_SCHEMA} (this release), got {shown(schema)}",
            param="schema",
        )
    values = dict(record)
    while values["schema"] < RECORD_SCHEMA:
        values = MIGRATIONS[values["schema"]](values)
    missing = [name for name in RECORD_FIELDS if name not in values]
    unknown = sorted(str(key) for key in values if key not in RECORD_FIELDS)
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown keys {[shown(k) for k in unknown[:3]]}"
        raise InvalidItem(f"record of schema {RECORD_SCHEMA}: {what}", param=(missing or unknown)[0][:64])
    fields: dict[str, Any] = {}
    for name, kind in _KIND.items():
        value = values[name]
        if value is not None and kind == "instant":
            if not isinstance(value, str):
                raise InvalidItem(f"record {name} must be an RFC 3339 string or null, got {shown(value)}", param=name)
            value = _parse(value, name)
        fields[name] = value
    return WorkItem(**fields)
