"""The dialects: one lifecycle, spoken on the wire by two public APIs (and any a user defines).

A :class:`Dialect` is a frozen value, beside :class:`~workstate.Policy`, that carries every point
where one API differs from another: how the wire spells things (base path, the worker-identity
header, ids, the list and error envelopes, stop's answer) and which rules of the one declaration
apply (guards of :data:`workstate.rules.DECLARATION` such as ``checks_worker``). Two are shipped:

- :data:`QODER`, the default: the Work API of ``docs/api.md``;
- :data:`ANTHROPIC`: the peer API that the ``anthropic`` SDK's workers speak (``docs/dialects.md``).

This module is the wire layer's data: it is the only module of the package that spells a base path
or a header name (``tests/test_structure.py`` checks it); :mod:`workstate.api` reads them from here.
It is pure data: a user defines another dialect with ``attrs.evolve(QODER, name=..., ...)``.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import attrs

from ._time import shown
from .errors import InvalidDialect
from .policy import OnStartTimeout, Policy

__all__ = [
    "ANTHROPIC",
    "DIALECTS",
    "QODER",
    "Dialect",
    "ErrorStyle",
    "IdFormat",
    "ListStyle",
    "QueuedHeartbeat",
    "StopAnswer",
    "StopOfStopped",
    "StoppedHeartbeat",
    "dialect_named",
]


class IdFormat(enum.Enum):
    """How ids are spelled after their prefix, and how the reference server makes them."""

    HEX32 = "hex32"
    """32 lowercase hex digits (a counter, zero-padded): ``work_00…01``."""
    BASE62 = "base62"
    """1 to 64 letters and digits; made as ``"01"`` and 24 base62 digits of a counter (sorting in creation order)."""

    @property
    def pattern(self) -> str:
        return "[0-9a-f]{32}" if self is IdFormat.HEX32 else "[0-9A-Za-z]{1,64}"

    @property
    def described(self) -> str:
        return "32 lowercase hex digits" if self is IdFormat.HEX32 else "1 to 64 letters or digits"

    def render(self, number: int) -> str:
        """The id body of the ``number``-th id (from 1): fixed width, so ids sort in creation order."""
        if self is IdFormat.HEX32:
            return f"{number:032x}"
        digits = []
        for _ in range(24):
            number, digit = divmod(number, 62)
            digits.append(_BASE62[digit])
        return "01" + "".join(reversed(digits))


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: base62 text sorts as numbers


class ListStyle(enum.Enum):
    """The list endpoint's envelope and cursors."""

    FULL = "full"
    """``{data, first_id, last_id, has_more, next_page}``; cursors ``page``, ``before_id``, ``after_id``."""
    NEXT_PAGE = "next_page"
    """``{data, next_page}``; only ``limit`` and ``page`` (``before_id``/``after_id`` are ignored, as unknown)."""


class ErrorStyle(enum.Enum):
    """The error envelope."""

    PARAM = "param"
    """``{type: "error", error: {type, message, param?}, request_id}``; 412 is ``precondition_failed_error``."""
    DETAILS = "details"
    """``{type: "error", error: {type, message, details?}, request_id}`` and a ``request-id`` header; 412 is an
    ``invalid_request_error`` whose ``details`` carry ``error_code`` and the item's ``current_state``."""


class StopAnswer(enum.Enum):
    """What an accepted or replayed stop answers."""

    OBJECT = "object"
    """200 with the work object."""
    NO_CONTENT = "no_content"
    """204, no body, no content type."""


class StoppedHeartbeat(enum.Enum):
    """What a heartbeat on a ``stopped`` item answers (a rule of the declaration: ``stopped_heartbeat_reports``)."""

    CONFLICT = "conflict"
    """409: the item is stopped."""
    REPORT = "report"
    """200 ``{"state": "stopped", "lease_extended": false, …}``: the worker learns it must end the session."""


class QueuedHeartbeat(enum.Enum):
    """What a heartbeat on a ``queued`` item answers (guard ``queued_heartbeat_fails_precondition``)."""

    CONFLICT = "conflict"
    """409: ack it before heartbeating."""
    PRECONDITION_FAILED = "precondition_failed"
    """412: the lease is not the worker's (it was re-queued, or never acked)."""


class StopOfStopped(enum.Enum):
    """What a stop of a ``stopped`` item answers (guard ``stop_of_stopped_refused``)."""

    REPLAY = "replay"
    """200, the item unchanged."""
    CONFLICT = "conflict"
    """409: the item is stopped."""


def _field(default: Any, doc: str, layer: str, source: str = "") -> Any:
    return attrs.field(default=default, metadata={"doc": doc, "layer": layer, "source": source})


def _wire(default: Any, doc: str, source: str = "") -> Any:
    return _field(default, doc, "wire", source)


def _rule(default: Any, doc: str, source: str = "") -> Any:
    return _field(default, doc, "lifecycle", source)


_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_PREFIX = re.compile(r"[a-z]{1,16}_")
_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


@attrs.frozen(kw_only=True)
class Dialect:
    """How one API speaks the lifecycle. ``Dialect()`` is :data:`QODER`; fields are documented one by one.

    Wire fields are read by :mod:`workstate.api` (routes, codec, server); lifecycle fields are guards of
    the one declaration in :mod:`workstate.rules` (``Lifecycle(dialect=...)``); ``policy`` is the
    dialect's default :class:`~workstate.Policy` (what a server of this dialect does where nobody chose).
    """

    name: str = _wire("qoder", "The dialect's name, as `--dialect` takes it.")
    base_path: str = _wire(
        "/api/v1/cloud/environments/", "The path every endpoint starts with; an environment id and `/work` follow."
    )
    worker_header: str = _wire("Worker-ID", "The header that carries a worker's identity on poll (and on ack).")
    auth_headers: tuple[str, ...] = _wire(
        ("Authorization",),
        "Headers that carry the key: `Authorization: Bearer KEY`, and `x-api-key: KEY` where listed.",
    )
    ignored_headers: tuple[str, ...] = _wire(
        (), "Headers some clients send that are accepted and ignored (never required).", "DECIDED"
    )
    request_id_header: str | None = _wire(
        None, "The response header that carries the request id (None: the error envelope alone carries it).", "DECIDED"
    )
    ids: IdFormat = _wire(IdFormat.HEX32, "How ids are spelled after their prefix, and how they are generated.")
    session_prefix: str = _wire("sess_", "The prefix of a session id (`data.id` of a session work item).")
    secret_field: bool = _wire(False, "Whether the work object carries `secret` (string or null).", "PEER")
    issues_secrets: bool = _wire(
        False,
        'Whether a poll\'s answer carries a per-delivery secret (base64url JSON `{"sessions_token": …}`) that '
        "authorizes that item's ack, heartbeat and stop like the environment key; null otherwise.",
        "SDK, DECIDED",
    )
    healthcheck_items: bool = _wire(
        False, 'Whether work items may carry `data: {"type": "healthcheck", …}` (a health probe).', "SDK"
    )
    list_style: ListStyle = _wire(ListStyle.FULL, "The list envelope and its cursors.")
    error_style: ErrorStyle = _wire(ErrorStyle.PARAM, "The error envelope (and the 412's type and details).")
    stop_answer: StopAnswer = _wire(StopAnswer.OBJECT, "What a stop answers.")
    ack_checks_worker: bool = _rule(
        True,
        "Whether ack compares its worker identity with the item's claimant (409 on a mismatch). "
        "Guard `checks_worker`; without it the header is not read on ack.",
        "PEER/SDK",
    )
    heartbeat_on_stopped: StoppedHeartbeat = _rule(
        StoppedHeartbeat.CONFLICT, "What a heartbeat on a `stopped` item answers. Guard `stopped_heartbeat_reports`."
    )
    heartbeat_on_queued: QueuedHeartbeat = _rule(
        QueuedHeartbeat.CONFLICT,
        "What a heartbeat on a `queued` item answers. Guard `queued_heartbeat_fails_precondition`.",
        "SDK fixture",
    )
    stop_on_stopped: StopOfStopped = _rule(
        StopOfStopped.REPLAY, "What a stop of a `stopped` item answers. Guard `stop_of_stopped_refused`."
    )
    policy: Policy = _rule(Policy(), "The dialect's default policy (where a server of the dialect chose nothing).")

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(field.default, enum.Enum | bool | Policy) and not isinstance(value, type(field.default)):
                raise InvalidDialect(
                    f"Dialect.{field.name} must be a {type(field.default).__name__}, got {shown(value)}",
                    param=field.name,
                )
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidDialect(f"Dialect.name must be a short lowercase name, got {shown(self.name)}", param="name")
        base = self.base_path
        if not isinstance(base, str) or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+/", base):
            raise InvalidDialect(
                f"Dialect.base_path must be an absolute path of plain segments ending in '/', got {shown(base)}",
                param="base_path",
            )
        headers = (self.worker_header, *self.auth_headers, *self.ignored_headers)
        headers += () if self.request_id_header is None else (self.request_id_header,)
        for header in headers:
            if not isinstance(header, str) or not _HEADER.fullmatch(header):
                raise InvalidDialect(f"Dialect headers must be header names, got {shown(header)}", param="headers")
        if not self.auth_headers:
            raise InvalidDialect("Dialect.auth_headers must name at least one header", param="auth_headers")
        if not isinstance(self.session_prefix, str) or not _PREFIX.fullmatch(self.session_prefix):
            raise InvalidDialect(
                f"Dialect.session_prefix must be lowercase letters and '_', got {shown(self.session_prefix)}",
                param="session_prefix",
            )
        if self.issues_secrets and not self.secret_field:
            raise InvalidDialect("Dialect.issues_secrets needs secret_field", param="issues_secrets")

    # --- ids --------------------------------------------------------------------------------------

    def prefix(self, kind: str) -> str:
        """The prefix of an id of ``kind``: ``"work"``, ``"env"`` or ``"session"``."""
        return self.session_prefix if kind == "session" else f"{kind}_"

    def valid_id(self, kind: str, value: object) -> bool:
        """Whether ``value`` is an id of ``kind`` (``"work"``, ``"env"``, ``"session"``) in this dialect's format."""
        if not isinstance(value, str):
            return False
        prefix = self.prefix(kind)
        return value.startswith(prefix) and re.fullmatch(self.ids.pattern, value[len(prefix) :]) is not None

    def id_rule(self, kind: str) -> str:
        """How an id of ``kind`` is spelled, in words (for error messages)."""
        return f"{self.prefix(kind)!r} followed by {self.ids.described}"

    def new_id(self, kind: str, number: int) -> str:
        """The ``number``-th id (from 1) of ``kind`` that the reference server makes."""
        return self.prefix(kind) + self.ids.render(number)

    # --- what reads the declaration ---------------------------------------------------------------

    @property
    def guards(self) -> dict[str, bool]:
        """The values of the dialect's guards of the declaration (constant for a dialect)."""
        return {
            "checks_worker": self.ack_checks_worker,
            "stopped_heartbeat_reports": self.heartbeat_on_stopped is StoppedHeartbeat.REPORT,
            "queued_heartbeat_fails_precondition": self.heartbeat_on_queued is QueuedHeartbeat.PRECONDITION_FAILED,
            "stop_of_stopped_refused": self.stop_on_stopped is StopOfStopped.CONFLICT,
        }

    def path(self, env: str, work: str | None = None, operation: str | None = None) -> str:
        """The path of an endpoint of ``env``: its work collection, one item, or an operation on either."""
        path = f"{self.base_path}{env}/work"
        if work is not None:
            path += "/" + work
        if operation is not None:
            path += "/" + operation
        return path


QODER = Dialect()
"""The Work API of ``docs/api.md`` (the default)."""

ANTHROPIC = Dialect(
    name="anthropic",
    base_path="/v1/environments/",
    worker_header="Anthropic-Worker-ID",
    auth_headers=("Authorization", "x-api-key"),
    ignored_headers=("anthropic-beta", "anthropic-version"),
    request_id_header="request-id",
    ids=IdFormat.BASE62,
    session_prefix="session_",
    secret_field=True,
    healthcheck_items=True,
    list_style=ListStyle.NEXT_PAGE,
    error_style=ErrorStyle.DETAILS,
    stop_answer=StopAnswer.NO_CONTENT,
    ack_checks_worker=False,
    heartbeat_on_stopped=StoppedHeartbeat.REPORT,
    heartbeat_on_queued=QueuedHeartbeat.PRECONDITION_FAILED,
    stop_on_stopped=StopOfStopped.CONFLICT,
    policy=Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING),
)
"""The peer API that the ``anthropic`` SDK's workers speak (``docs/dialects.md``)."""

DIALECTS: dict[str, Dialect] = {QODER.name: QODER, ANTHROPIC.name: ANTHROPIC}
"""The shipped dialects by name."""


def dialect_named(name: str) -> Dialect:
    """The shipped dialect called ``name``; else :class:`~workstate.errors.InvalidDialect`, naming the known ones."""
    found = DIALECTS.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidDialect(f"no dialect {shown(name)}; known: {', '.join(DIALECTS)}", param="dialect")
    return found
