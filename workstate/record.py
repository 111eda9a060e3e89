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

import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

from ._time import parse_timestamp, render_timestamp, shown
from .errors import InvalidInput, InvalidItem
from .model import WorkItem
from .rules import State

__all__ = ["MIGRATIONS", "RECORD_FIELDS", "RECORD_SCHEMA", "from_record", "to_record"]

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


def to_record(item: WorkItem) -> dict[str, Any]:
    """Every field of ``item`` as a JSON-ready dict, with ``schema``."""
    if type(item) is not WorkItem:
        raise InvalidItem(f"to_record needs a WorkItem, got {shown(item)}", param="item")
    record: dict[str, Any] = {"schema": RECORD_SCHEMA}
    for name, kind in _KIND.items():
        value = getattr(item, name)
        if value is None or kind == "plain":
            record[name] = value
        elif kind == "instant":
            record[name] = render_timestamp(value)
        elif kind == "state":
            record[name] = value.value
        else:
            record[name] = dict(value)
    return record


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
            try:
                value = parse_timestamp(value)
            except InvalidInput as exc:
                raise InvalidItem(f"record {name}: {exc.message}", param=name) from None
        fields[name] = value
    return WorkItem(**fields)
