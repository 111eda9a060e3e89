"""Comparing a server's answer with the reference's: the one rule every part of the oracle kit applies.

:class:`Comparison` holds the pairings of one run (environment and work ids as the platform creates
them, generated request ids as they are first seen) and says where an answer differs from the
reference's, or None:

- the status must be equal, and so must the body, key by key;
- ids are mapped through a bijection; an ``x-request-id`` the client sent must be echoed exactly;
- timestamps compare as instants (``...Z`` and ``...+00:00`` are equal);
- ``error.message`` is free text and is not compared (``error.param`` is, unless turned off);
- in the :class:`~workstate.Dialect` compared (``dialect=``, default ``QODER``): an empty body (a 204) must be
  empty; the dialect's request-id header, when the reference sends one, must be sent too (echoed, or paired like
  the body's ``request_id``); a ``secret`` the reference issues is the server's own (any non-empty string); an
  opaque ``next_page`` cursor (``ListStyle.NEXT_PAGE``) is paired like an id, null must be null.

The lockstep machine (:mod:`workstate.testing.lockstep`) and the conformance suite
(:mod:`workstate.testing.conformance`) both compare with it. No third-party package needed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .._time import parse_timestamp
from ..api import Headers, Request, Response, echoed_request_id
from ..dialect import QODER, Dialect, ListStyle
from ..errors import WorkstateError

__all__ = ["TIMESTAMP_KEYS", "Bijection", "Comparison", "instant", "show"]

TIMESTAMP_KEYS = frozenset(
    {
        "created_at",
        "acknowledged_at",
        "started_at",
        "latest_heartbeat_at",
        "stop_requested_at",
        "stopped_at",
        "last_heartbeat",
        "oldest_queued_at",
        "lease_updated_at",
    }
)
"""The body keys whose string values are compared as instants."""


def show(value: Any) -> str:
    """A JSON value, as a comparison shows it."""
    return json.dumps(value, sort_keys=True, default=repr)


def instant(value: Any) -> datetime | None:
    """The instant an RFC 3339 string names, or None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except WorkstateError:
        return None


class Bijection:
    """Pairs of (reference value, target value), each side used once."""

    def __init__(self) -> None:
        self.forward: dict[str, str] = {}
        self.backward: dict[str, str] = {}

    def pair(self, reference: str, target: str) -> bool:
        """Record the pair, or say whether it agrees with the pairs so far."""
        known, back = self.forward.get(reference), self.backward.get(target)
        if known is None and back is None:
            self.forward[reference] = target
            self.backward[target] = reference
            return True
        return known == target and back == reference


class Comparison:
    """The pairings of one run and the rule that compares two answers (see the module docstring)."""

    def __init__(self, *, compare_error_param: bool = True, dialect: Dialect = QODER) -> None:
        self.ids = Bijection()
        self.request_ids = Bijection()
        self.cursors = Bijection()
        self.compare_error_param = compare_error_param
        self.dialect = dialect

    def difference(self, request: Request, expected: Response, actual: Response) -> str | None:
        """Where ``actual`` differs from ``expected`` (after mapping ids and instants), or None.

        ``request`` is the request as the reference got it (it says which request id must be echoed).
        """
        if actual.status != expected.status:
            return f"status {actual.status}, expected {expected.status}"
        sent_id = echoed_request_id(request.headers or ())  # the reference's own rule of what is echoed
        if expected.body == b"" and actual.body != b"":
            return f"$: expected no body, got {bytes(actual.body[:80])!r}"
        if expected.body != b"" and actual.body == b"":
            return f"$: expected a body ({bytes(expected.body[:40])!r}...), got none"
        header = self.dialect.request_id_header
        want_id = None if header is None else Headers(expected.headers or ()).get(header)
        if header is not None and want_id is not None:
            got_id = Headers(actual.headers or ()).get(header)
            if got_id is None:
                return f"header {header}: missing (the reference sends {want_id!r})"
            if want_id == sent_id:
                if got_id != sent_id:
                    return f"header {header}: the request's x-request-id {sent_id!r} is not echoed"
            elif not self.request_ids.pair(want_id, got_id):
                return f"header {header}: {got_id!r} is not the request id of this request alone"
        return self.diff(expected.json, actual.json, "$", sent_id)

    def diff(self, want: Any, got: Any, path: str, sent_id: str | None) -> str | None:
        """Where the JSON value ``got`` differs from ``want`` below ``path``, or None."""
        if isinstance(want, dict):
            if not isinstance(got, dict):
                return f"{path}: expected an object, got {show(got)}"
            keys = set(want)
            other = set(got)
            if path == "$.error":
                keys.discard("message")
                other.discard("message")
                if not self.compare_error_param:
                    keys.discard("param")
                    other.discard("param")
            if keys != other:
                missing, extra = sorted(keys - other), sorted(other - keys)
                return f"{path}: keys differ (missing {missing}, unexpected {extra})"
            for key in sorted(keys):
                found = self.diff(want[key], got[key], f"{path}.{key}", sent_id)
                if found is not None:
                    return found
            return None
        if isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                return f"{path}: expected {len(want)} entries, got {show(got)}"
            for index, (a, b) in enumerate(zip(want, got, strict=True)):
                found = self.diff(a, b, f"{path}[{index}]", sent_id)
                if found is not None:
                    return found
            return None
        key = path.rsplit(".", 1)[-1]
        if key == "secret" and isinstance(want, str) and self.dialect.secret_field:
            return None if isinstance(got, str) and got else f"{path}: expected a secret (a string), got {show(got)}"
        if key == "next_page" and self.dialect.list_style is ListStyle.NEXT_PAGE and isinstance(want, str):
            if isinstance(got, str) and self.cursors.pair(want, got):
                return None
            return f"{path}: {show(got)} is not the cursor of this page alone (the reference's {want})"
        if isinstance(want, str) and key in TIMESTAMP_KEYS:
            found_instant = instant(got)
            if found_instant is None or found_instant != parse_timestamp(want):
                return f"{path}: expected the instant {want}, got {show(got)}"
            return None
        if isinstance(want, str) and path == "$.request_id":
            if sent_id:
                return None if got == sent_id else f"{path}: the request's x-request-id {sent_id!r} is not echoed"
            if isinstance(got, str) and self.request_ids.pair(want, got):
                return None
            return f"{path}: {show(got)} is not the request id of this request alone"
        if isinstance(want, str) and want in self.ids.forward:
            target = self.ids.forward[want]
            return None if got == target else f"{path}: expected {target} (the reference's {want}), got {show(got)}"
        if type(want) is not type(got) or want != got:
            return f"{path}: expected {show(want)}, got {show(got)}"
        return None
