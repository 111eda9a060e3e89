"""The wire: HTTP-shaped values and the reading of a request, shared by the server and the trace checker.

:class:`Request`, :class:`Response` and :class:`Headers` are the values a server built on
:class:`~workstate.api.Server` exchanges with its HTTP edge. The functions below read a request the
way the reference server does (query, headers, bearer token, body) and refuse what they cannot read
with a :class:`Refusal` (the status, error type, message and ``param`` of the error envelope owed);
``workstate check`` reads recorded requests with the very same functions, so the two cannot drift.
Nothing here knows a route or a rule of the lifecycle (see :mod:`workstate.api.routes`).

Decisions taken here where the spec is silent:

- Query strings decode ``+`` as a space and ``%XX`` as UTF-8 (invalid escapes or UTF-8: 400);
  unknown parameters are ignored, a parameter the endpoint reads given twice is 400.
- Headers: names are case-insensitive; values lose surrounding spaces and tabs; a header given
  twice with different values counts as malformed (``Authorization``: 401, ``Worker-ID``: 400,
  ``x-request-id``: a request id is generated), and so does a value holding CR, LF or NUL (which
  HTTP cannot carry, but a recorded trace or a Python caller can). An ``x-request-id`` holding a
  lone surrogate (no UTF-8 carries one, and the codec refuses it in a body) is not echoed either.
  Unknown headers are ignored.
- ``Authorization`` is ``Bearer`` (any case) and a token68; anything else is 401.
- Bodies are strict JSON (see :mod:`workstate.api.codec`); every bytes-like body of no bytes (``b""``,
  ``bytearray()``, an empty ``memoryview``) is an empty body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

import attrs

from .._time import shown
from ..model import Effect
from ..rules import Rule
from .codec import DecodeError, loads

__all__ = [
    "JSON_HEADERS",
    "REQUEST_ID_MAX_LENGTH",
    "VISIBLE_ASCII",
    "Headers",
    "Refusal",
    "Request",
    "Response",
    "api_key",
    "bad",
    "bearer_token",
    "body_json",
    "echoed",
    "echoed_request_id",
    "empty_body",
    "integer",
    "no_body",
    "not_found",
    "param",
    "parse_query",
    "percent_decode",
    "read_headers",
]

VISIBLE_ASCII = re.compile(r"[\x21-\x7e]*")
"""Visible ASCII, no space: what a path or a query may hold before it is percent-decoded."""
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_DIGITS = re.compile(r"[0-9]+")
_NOT_ECHOED = re.compile(r"[\r\n\x00\ud800-\udfff]")  # CR, LF, NUL and lone surrogates
_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_HUGE = 10**30  # integers longer than this are all "too large" alike (and Python parses at most 4300 digits)


# --- requests and responses ------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """An immutable header map whose lookups ignore the case of names."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {name.lower(): (name, value) for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            try:
                return {k.lower(): v for k, v in other.items()} == {k: v for k, (_, v) in self._items.items()}
            except AttributeError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset((k, v) for k, (_, v) in self._items.items()))

    def __repr__(self) -> str:
        return f"Headers({dict(self._items.values())!r})"


JSON_HEADERS = Headers({"content-type": "application/json"})


@attrs.frozen
class Request:
    """An HTTP request: ``target`` is path plus optional ``?query`` as on the wire, ``body`` raw bytes.

    ``headers`` is a mapping or a sequence of ``(name, value)`` pairs; names are case-insensitive.
    Nothing is checked here: :meth:`~workstate.api.Server.handle` answers any value, malformed ones with a 4xx.
    """

    method: str
    target: str
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    body: bytes = b""


@attrs.frozen
class Response:
    """An HTTP response: ``json`` is the decoded body (``None`` for ``null``), ``body`` its bytes.

    ``effects`` are the core's effects of the request, as data (e.g. the dispatch pass an ack
    requests), for a server that wraps this model. ``rule`` is the lifecycle rule that decided the
    answer, when one did (None for routing, authentication, parsing, poll, get, list and stats);
    it takes no part in equality.
    """

    status: int
    json: Any
    body: bytes = attrs.field(repr=False)
    headers: Mapping[str, str] = JSON_HEADERS
    effects: tuple[Effect, ...] = ()
    rule: Rule | None = attrs.field(default=None, eq=False, repr=False)


# --- a refused request ----------------------------------------------------------------------------------


class Refusal(Exception):
    """A request the server answers with an error envelope: its status, ``type``, ``message`` and ``param``.

    ``rule`` is the lifecycle rule that refused it, when one did; ``details`` what a dialect whose errors carry
    ``details`` (``ErrorStyle.DETAILS``) answers besides. Raised by the readers of this module and of
    :mod:`workstate.api.routes`; :meth:`~workstate.api.Server.handle` turns it into the :class:`Response`.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        param: str | None = None,
        rule: Rule | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param
        self.rule = rule
        self.details = details


def bad(message: str, param: str | None = None) -> NoReturn:
    """Refuse with 400 ``invalid_request_error``, naming ``param`` when one is to blame."""
    raise Refusal(400, "invalid_request_error", message, param)


def not_found(message: str) -> NoReturn:
    """Refuse with 404 ``not_found_error``."""
    raise Refusal(404, "not_found_error", message)


# --- parsing ------------------------------------------------------------------------------------------

_MALFORMED = "\x00malformed"  # markers of a query parameter that cannot be read, compared by identity
_DUPLICATE = "\x00duplicate"


def percent_decode(text: str, plus: bool) -> str | None:
    """Strict percent-decoding: visible ASCII in, valid ``%XX`` escapes, UTF-8 out; else None."""
    if not VISIBLE_ASCII.fullmatch(text):
        return None
    if plus:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    head, *rest = text.split("%")
    out = bytearray(head.encode("ascii"))
    for part in rest:
        if not _HEX2.match(part):
            return None
        out.append(int(part[:2], 16))
        out += part[2:].encode("ascii")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_query(query: str) -> dict[str, str]:
    """The parameters of a query string (without its ``?``), decoded; read each with :func:`param`.

    A value that cannot be decoded, or a parameter given twice, is kept as a marker that :func:`param`
    refuses, so only a parameter the endpoint reads is refused for it.
    """
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name = percent_decode(raw_name, plus=True)
        if name is None:
            continue  # a name that decodes to nothing readable names no parameter of ours
        value = percent_decode(raw_value, plus=True)
        params[name] = _DUPLICATE if name in params else _MALFORMED if value is None else value
    return params


def param(params: dict[str, str], name: str) -> str | None:
    """The value of query parameter ``name`` (None when absent); 400 when malformed or given twice."""
    value = params.get(name)
    if value is _MALFORMED:
        bad(f"query parameter {name} is not validly percent-encoded UTF-8", name)
    if value is _DUPLICATE:
        bad(f"query parameter {name} is given more than once", name)
    return value


def integer(text: str, name: str, what: str) -> int:
    """A decimal integer written with ASCII digits only (no sign, no spaces, no exponent)."""
    if not _DIGITS.fullmatch(text):
        bad(f"{name} must be {what}, got {shown(text)}", name)
    digits = text.lstrip("0") or "0"
    return _HUGE if len(digits) > 30 else int(digits)


def read_headers(raw: Any) -> dict[str, str | None]:
    """Header names lower-cased, values stripped of spaces and tabs.

    A name that is not a ``str`` names no header of ours (ignored); a value that is not a ``str``,
    or a header given twice with different values, maps to None (malformed).
    """
    if type(raw) is dict:  # the common case: one pass, no repeated names
        try:
            found: dict[str, str | None] = {name.lower(): value.strip(" \t") for name, value in raw.items()}
        except (AttributeError, TypeError):
            pass
        else:
            if len(found) == len(raw):
                return found
    if isinstance(raw, Mapping):
        pairs: Iterable[Any] = raw.items()
    elif isinstance(raw, list | tuple):
        pairs = raw
    else:
        return {}
    found = {}
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2 or not isinstance(pair[0], str):
            continue
        name, value = pair
        key = name.lower()
        text = value.strip(" \t") if isinstance(value, str) else None
        found[key] = text if key not in found or found[key] == text else None
    return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` value the server accepts (``Bearer`` in any case, then a token68),
    else None (the server answers 401)."""
    if type(authorization) is not str or len(authorization) > _BEARERS_LONGEST:
        match = _BEARER.fullmatch(authorization) if isinstance(authorization, str) else None
        return None if match is None else match[1]
    if authorization in _BEARERS:
        return _BEARERS[authorization]
    match = _BEARER.fullmatch(authorization)
    token = None if match is None else match[1]
    if len(_BEARERS) >= _BEARERS_HELD:
        _BEARERS.clear()
    _BEARERS[authorization] = token
    return token


_BEARERS: dict[str, str | None] = {}  # bearer_token's answers by value: clients send the same key again
_BEARERS_HELD = 1024
_BEARERS_LONGEST = 256  # a longer value is matched afresh every time (the memo holds short strings only)


def api_key(value: str | None) -> str | None:
    """The key of a header that carries it bare (``x-api-key: KEY``, in a dialect that lists such a header among its
    ``auth_headers``): a token68, else None."""
    return value if isinstance(value, str) and _TOKEN68.fullmatch(value) else None


REQUEST_ID_MAX_LENGTH = 256
"""The longest ``x-request-id`` an answer echoes; a longer one is replaced by a generated id."""


def echoed_request_id(headers: Any) -> str | None:
    """The ``x-request-id`` an error envelope echoes for a request with these headers, else None (the server
    generates a request id).

    ``headers`` as :class:`Request` takes them: a mapping or ``(name, value)`` pairs, names case-insensitive.
    The value loses surrounding spaces and tabs; an empty value, one holding CR, LF or NUL or a lone
    surrogate (which no UTF-8 carries, and which the codec refuses in a body), one longer than
    :data:`REQUEST_ID_MAX_LENGTH` characters (no answer echoes unbounded input), or the header given twice
    with different values is not echoed. :meth:`~workstate.api.Server.handle` and ``workstate check`` both
    follow this rule.
    """
    return echoed(read_headers(headers))


def echoed(headers: dict[str, str | None]) -> str | None:
    """:func:`echoed_request_id` of headers already read by :func:`read_headers`."""
    value = headers.get("x-request-id")
    if not value or len(value) > REQUEST_ID_MAX_LENGTH or _NOT_ECHOED.search(value):
        return None
    return value


def empty_body(body: Any) -> bool:
    """Whether ``body`` is an empty body: any bytes-like value of no bytes (``b""``, ``bytearray()``, ...)."""
    if isinstance(body, bytes | bytearray):
        return not body
    return isinstance(body, memoryview) and body.nbytes == 0


def body_json(body: Any) -> Any:
    """The strict JSON value of a body; 400 for anything else."""
    if not isinstance(body, bytes | bytearray | memoryview):
        bad("the body must be bytes")
    try:
        return loads(body)
    except DecodeError as exc:
        bad(exc.message)


def no_body(body: Any) -> None:
    """Endpoints without a body accept an empty one or ``{}`` (api.md §4)."""
    if empty_body(body):
        return
    if body_json(body) != {}:
        bad("this endpoint takes no body: send none, or {}")
