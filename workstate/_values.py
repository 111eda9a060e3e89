"""Pickling for frozen values that hold read-only mappings.

A ``types.MappingProxyType`` cannot be pickled (or deep-copied), so the slotted state attrs would pickle
fails for any value holding one. :func:`picklable` gives a class a ``__reduce__`` that rebuilds the value
through its constructor, from plain dicts: the rebuilt value is checked again exactly as a new one is.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


def _rebuild(cls: type[T], values: dict[str, Any]) -> T:
    return cls(**values)


def _reduce(self: Any) -> tuple[Any, tuple[type[Any], dict[str, Any]]]:
    cls = type(self)
    values = {}
    for field in attrs.fields(cls):
        if field.init:
            value = getattr(self, field.name)
            values[field.alias] = dict(value) if isinstance(value, MappingProxyType) else value
    return _rebuild, (cls, values)


def picklable(cls: type[T]) -> type[T]:
    """Class decorator (above ``@attrs.frozen``): pickle, copy and deep-copy through the constructor."""
    cls.__reduce__ = _reduce  # type: ignore[method-assign]
    return cls
