"""Typed exceptions for programming errors.

A rule of the lifecycle that says "no" is never an exception: it is a
:class:`~workstate.Rejected` outcome. Exceptions are for input that is not a
well-formed value at all (a naive ``datetime``, a malformed id, a metadata value
that is not a string, an inconsistent :class:`~workstate.WorkItem`). Each carries
``status_hint`` (the HTTP status an HTTP surface answers with, as in h11) and
``param`` (the name of the offending field, for the error envelope).
"""

from __future__ import annotations

__all__ = [
    "InvalidCommand",
    "InvalidDialect",
    "InvalidId",
    "InvalidInput",
    "InvalidItem",
    "InvalidMetadata",
    "InvalidPolicy",
    "InvalidTimestamp",
    "NaiveDatetime",
    "WorkstateError",
]


class WorkstateError(Exception):
    """Base class of every exception workstate raises on purpose."""

    status_hint: int = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(WorkstateError, ValueError):
    """A value handed to workstate is not well formed. Nothing was changed."""


class NaiveDatetime(InvalidInput):
    """A ``datetime`` without a timezone was given where an instant is needed."""


class InvalidTimestamp(InvalidInput):
    """A string is not an RFC 3339 timestamp with an offset (or ``NO_HEARTBEAT``)."""


class InvalidId(InvalidInput):
    """An id does not have its prefix followed by 32 lowercase hex digits."""


class InvalidMetadata(InvalidInput, TypeError):
    """Metadata is not a mapping of string keys to strings (or ``None`` to delete)."""


class InvalidCommand(InvalidInput):
    """A command's parameters are out of their domain (e.g. a TTL that is not a positive integer)."""


class InvalidItem(InvalidInput):
    """A :class:`~workstate.WorkItem` whose fields contradict its state (api.md §7)."""


class InvalidPolicy(InvalidInput):
    """A :class:`~workstate.Policy` field is out of its domain."""


class InvalidDialect(InvalidInput):
    """A :class:`~workstate.Dialect` field is out of its domain, or no dialect has the name given."""
