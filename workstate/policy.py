"""Every choice the public API leaves open, as fields of one immutable value.

Each field documents the api.md section it answers (``spec``), what the public
reference says or does not say (``public``), and the alternatives a real server may
choose (``alternatives``). The defaults reproduce ``docs/api.md``.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._time import shown
from .errors import InvalidInput, InvalidPolicy

__all__ = [
    "DEFAULT_POLICY",
    "ConflictErrorType",
    "LimitOverMax",
    "OnLeaseExpiry",
    "OnStartTimeout",
    "Policy",
    "TimestampMatch",
]


class OnStartTimeout(enum.Enum):
    """What happens to an acked item that gets no first heartbeat within the start timeout."""

    REQUEUE = "requeue"
    """It goes back to ``queued`` (deliverable at once)."""
    KEEP_STARTING = "keep_starting"
    """It stays ``starting`` until stopped (what one peer platform is reported to do)."""


class OnLeaseExpiry(enum.Enum):
    """What happens to an ``active`` item whose lease deadline passes."""

    REQUEUE = "requeue"
    STOP = "stop"


class LimitOverMax(enum.Enum):
    """What a list ``limit`` above the maximum does."""

    CAP = "cap"
    REJECT = "reject"


class ConflictErrorType(enum.Enum):
    """The ``error.type`` of a 409 answer."""

    INVALID_REQUEST_ERROR = "invalid_request_error"
    CONFLICT_ERROR = "conflict_error"


class TimestampMatch(enum.Enum):
    """How ``expected_last_heartbeat`` is compared with the item's latest heartbeat."""

    INSTANT = "instant"
    """Equal as instants: any RFC 3339 spelling of the same instant matches."""
    EXACT = "exact"
    """Equal as strings, against workstate's rendering (``…ffffffZ``)."""


def _doc(default: Any, spec: str, public: str, doc: str, alternatives: str = "", minimum: int = 1) -> Any:
    return attrs.field(
        default=default,
        metadata={"spec": spec, "public": public, "doc": doc, "alternatives": alternatives, "minimum": minimum},
    )


LARGEST = 10**9
"""No number in a policy may exceed this (a billion seconds is 31 years): deadlines never overflow."""


def _check_number(field: attrs.Attribute[Any], value: Any) -> None:
    integral = isinstance(field.default, int)
    # A positive duration in seconds must be at least a millisecond, so that it never rounds to nothing.
    smallest = (0 if field.metadata["minimum"] == 0 else 1) if integral else 0.001
    ok = not isinstance(value, bool) and isinstance(value, int if integral else int | float)
    if not ok or not smallest <= value <= LARGEST:
        what = "an integer" if integral else "a number"
        raise InvalidPolicy(
            f"Policy.{field.name} must be {what} from {smallest} to {LARGEST:,}, got {shown(value)}", param=field.name
        )


def check_desired_ttl(value: Any, error: type[InvalidInput] = InvalidInput) -> int:
    """``value`` if it is a heartbeat's ``desired_ttl_seconds`` as api.md §4.3 has it (a positive integer), or ``error``

    The one statement of that rule: :class:`~workstate.Heartbeat` raises ``InvalidCommand`` with it,
    :meth:`Policy.clamp_ttl` ``InvalidInput``, and the server answers 400 through the former.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"desired_ttl_seconds must be a positive integer, got {shown(value)}", param="desired_ttl_seconds")
    return value


@attrs.frozen(kw_only=True)
class Policy:
    """The named choices of the model. ``Policy()`` is the spec's behaviour."""

    default_ttl_seconds: int = _doc(60, "4.3", "silent", "Lease TTL when a heartbeat sends no `desired_ttl_seconds`.")
    min_ttl_seconds: int = _doc(10, "4.3", "documented", "Lower clamp of `desired_ttl_seconds`.")
    max_ttl_seconds: int = _doc(600, "4.3", "documented", "Upper clamp of `desired_ttl_seconds`.")
    start_timeout_seconds: float = _doc(
        60.0, "5", "silent", "How long an acked item may wait for its first heartbeat (from `acknowledged_at`)."
    )
    on_start_timeout: OnStartTimeout = _doc(
        OnStartTimeout.REQUEUE,
        "5",
        "silent",
        "What the start timeout does to a `starting` item (and when a lease-less `stopping` item stops).",
        "`KEEP_STARTING`: no start deadline at all; the item waits for a heartbeat or a stop.",
    )
    on_lease_expiry: OnLeaseExpiry = _doc(
        OnLeaseExpiry.REQUEUE,
        "5",
        "silent",
        "What a passed lease deadline does to an `active` item.",
        "`STOP`: the item is stopped at the deadline.",
    )
    ack_requires_delivery: bool = _doc(
        False,
        "4.2",
        "silent",
        "Whether ack of a `queued` item that no poll delivered is refused.",
        "`True`: such an ack answers 409.",
    )
    reclaim_older_than_ms: int = _doc(
        5000, "4.1", "documented", "Default of poll's `reclaim_older_than_ms` (also the stats window).", minimum=0
    )
    workers_polling_window_seconds: float = _doc(
        30.0,
        "4.7",
        "silent",
        "Window in which a polling Worker-ID counts for `workers_polling` (before `now`, or before the newest poll "
        "when `now` is behind it).",
    )
    metadata_max_keys: int = _doc(16, "4.5", "silent", "Most metadata keys an item may hold after a merge.")
    metadata_max_key_length: int = _doc(64, "4.5", "silent", "Longest metadata key, in characters.")
    metadata_max_value_length: int = _doc(512, "4.5", "silent", "Longest metadata value, in characters.")
    list_default_limit: int = _doc(20, "4.6", "documented", "List `limit` when none is given.")
    list_max_limit: int = _doc(100, "4.6", "documented", "Largest list `limit`.")
    list_limit_over_max: LimitOverMax = _doc(
        LimitOverMax.CAP,
        "4.6",
        "contradictory (one mirror says 400)",
        "What a list `limit` above `list_max_limit` does.",
        "`REJECT`: 400 with `param: limit`.",
    )
    conflict_error_type: ConflictErrorType = _doc(
        ConflictErrorType.INVALID_REQUEST_ERROR,
        "6",
        "contradictory (the errors page says `conflict_error`)",
        "The `error.type` of every 409.",
        "`CONFLICT_ERROR`.",
    )
    timestamp_match: TimestampMatch = _doc(
        TimestampMatch.INSTANT,
        "4.3",
        "silent",
        "How `expected_last_heartbeat` is compared with the latest heartbeat.",
        "`EXACT`: string equality with workstate's rendering.",
    )

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(field.default, enum.Enum):
                if not isinstance(value, type(field.default)):
                    raise InvalidPolicy(
                        f"Policy.{field.name} must be a {type(field.default).__name__}, got {shown(value)}",
                        param=field.name,
                    )
            elif isinstance(field.default, bool):
                if not isinstance(value, bool):
                    raise InvalidPolicy(f"Policy.{field.name} must be a bool, got {shown(value)}", param=field.name)
            else:
                _check_number(field, value)
        if not self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise InvalidPolicy(
                "Policy needs min_ttl_seconds <= default_ttl_seconds <= max_ttl_seconds", param="default_ttl_seconds"
            )
        if self.list_default_limit > self.list_max_limit:
            raise InvalidPolicy("Policy needs list_default_limit <= list_max_limit", param="list_default_limit")

    def clamp_ttl(self, desired_ttl_seconds: int | None) -> int:
        """The lease TTL a heartbeat gets: the default when absent, else clamped to the bounds.

        ``desired_ttl_seconds`` is None or a positive integer, as a heartbeat's (api.md §4.3); anything
        else raises :class:`~workstate.errors.InvalidInput` naming it.
        """
        if desired_ttl_seconds is None:
            return self.default_ttl_seconds
        ttl = check_desired_ttl(desired_ttl_seconds)
        return min(max(ttl, self.min_ttl_seconds), self.max_ttl_seconds)


DEFAULT_POLICY = Policy()
