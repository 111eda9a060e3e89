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


def _twin(cls: type[Any], made: dict[type[Any], type[Any]]) -> type[Any]:
    if cls is object:
        return object
    found = made.get(cls)
    if found is None:
        (base,) = cls.__bases__
        found = made[cls] = type(cls.__name__ + "Twin", (_twin(base, made),), {"__slots__": cls.__dict__["__slots__"]})
    return found


_TWINS: dict[type[Any], type[Any]] = {}


def twin(cls: type[Any]) -> type[Any]:
    """A plain mutable class with the very memory layout of the frozen, slotted attrs class ``cls``.

    Building a value through its twin — ``new = twin(cls)()``, plain attribute stores, then
    ``new.__class__ = cls`` — skips ``__init__`` and the frozen ``__setattr__``: about three times faster
    than setting each slot through its descriptor (benchmarks/bench_core.py). Calling the twin (it has no
    ``__init__``) is cheaper than ``object.__new__(twin)``, which builds and slices an argument tuple. Only for
    values whose fields the caller knows are valid (the step function, from a valid item by the rules). ``cls``
    and its bases must be slotted without a ``__weakref__`` slot (``weakref_slot=False``): CPython refuses ``__class__``
    assignment between layouts that hold one after other slots.
    """
    made = _twin(cls, _TWINS)
    probe = object.__new__(made)
    probe.__class__ = cls  # fails at import, not at the first step, if the layouts ever differ
    return made


def constructor(cls: type[Any]) -> Any:
    """A function ``make(*fields)`` that builds a ``cls`` (frozen, slotted attrs) from its fields in order, unchecked.

    See :func:`twin`; ``make`` runs no validator, converter or ``__attrs_post_init__``.
    """
    names = [field.name for field in attrs.fields(cls)]
    namespace: dict[str, Any] = {"_Twin": twin(cls), "_cls": cls}
    body = "".join(f"    new.{name} = {name}\n" for name in names)
    source = f"def make({', '.join(names)}):\n    new = _Twin()\n{body}    new.__class__ = _cls\n    return new\n"
    exec(source, namespace)  # noqa: S102 - generated from the attrs fields above
    return namespace["make"]
