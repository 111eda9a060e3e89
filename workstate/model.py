"""Work items, commands and outcomes, and the pure step function that runs the rule table.

The rules themselves are in :mod:`workstate.rules`; this module gives the guards their
meaning, the actions their effect on a :class:`WorkItem`, and runs the compiled table.
No clock is read here: every operation takes ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import attrs

from ._time import EARLIEST, LATEST, MICROSECOND, UTC, aware, read_timestamp, render_timestamp, shown
from ._values import constructor, picklable, twin
from .dialect import QODER, Dialect, ErrorStyle
from .errors import InvalidCommand, InvalidId, InvalidInput, InvalidItem, InvalidMetadata
from .policy import (
    DEFAULT_POLICY,
    LARGEST,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    TimestampMatch,
    check_desired_ttl,
)
from .rules import (
    DECLARATION,
    Guard,
    Kind,
    Line,
    Reason,
    Rule,
    RuleTable,
    State,
    Trigger,
    build_machine,
    compile_rules,
)

__all__ = [
    "NO_HEARTBEAT",
    "Accepted",
    "Ack",
    "Command",
    "Deliver",
    "DispatchRequested",
    "Effect",
    "Explanation",
    "Heartbeat",
    "Lapse",
    "LeaseGranted",
    "Lifecycle",
    "Outcome",
    "Rejected",
    "Replayed",
    "Requeued",
    "Stop",
    "StopRequested",
    "Stopped",
    "UpdateMetadata",
    "WorkItem",
    "accepts",
    "consistency_problems",
    "error_type",
    "explain",
    "next_deadline",
    "step",
    "valid_id",
]

# Enum members as module constants: reading ``State.ACTIVE`` goes through the enum's class machinery
# (about 80 ns on CPython 3.11), a module constant does not. Only the step function's paths use these.
_QUEUED, _STARTING, _ACTIVE, _STOPPING = State.QUEUED, State.STARTING, State.ACTIVE, State.STOPPING
_LAPSE_TRIGGER = Trigger.LAPSE
_STOP_TRIGGERS = (Trigger.STOP, Trigger.FORCE_STOP)
_REQUEUE_AT_START = OnStartTimeout.REQUEUE
_EXACT = TimestampMatch.EXACT
_STOP_AT_EXPIRY = OnLeaseExpiry.STOP

NO_HEARTBEAT = "NO_HEARTBEAT"
"""The ``expected_last_heartbeat`` of a worker that has not heartbeated yet."""

_ID = {prefix: re.compile(prefix + r"[0-9a-f]{32}") for prefix in ("work_", "env_", "sess_")}
_ITEM_ID = {
    "work_": re.compile(r"work_[0-9A-Za-z]{1,64}"),
    "env_": re.compile(r"env_[0-9A-Za-z]{1,64}"),
    "data": re.compile(r"[a-z]{1,16}_[0-9A-Za-z]{1,64}"),
}
"""What a work item accepts as its ids: those of every shipped dialect (each dialect's own, narrower format is
checked where ids enter, by :meth:`workstate.Dialect.valid_id`)."""
_ITEM_ID_RULE = {"work_": "'work_'", "env_": "'env_'", "data": "a lowercase prefix and '_'"}
DATA_TYPES = ("session", "healthcheck")
"""The kinds of work an item's ``data`` names: a session, or a health probe (dialects with ``healthcheck_items``)."""
_EMPTY: Mapping[str, str] = MappingProxyType({})
_TIMESTAMPS = ("acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at")


def valid_id(prefix: str, value: object) -> bool:
    """Whether ``value`` is ``prefix`` (``"work_"``, ``"env_"`` or ``"sess_"``) and 32 lowercase hex digits: an id
    of the ``qoder`` dialect (``Dialect.valid_id`` checks any dialect's)."""
    return isinstance(value, str) and _ID[prefix].fullmatch(value) is not None


def _id(kind: str, param: str) -> Callable[[Any, Any, Any], None]:
    pattern = _ITEM_ID[kind]

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise InvalidId(
                f"{param} must be {_ITEM_ID_RULE[kind]} followed by 1 to 64 letters or digits, got {shown(value)}",
                param=param,
            )

    return check


def _data_type(_instance: Any, _attribute: Any, value: Any) -> None:
    if value not in DATA_TYPES or not isinstance(value, str):
        raise InvalidItem(f"data_type must be one of {list(DATA_TYPES)}, got {shown(value)}", param="data_type")


def _worker_id(value: Any, param: str = "worker_id", error: type[InvalidInput] = InvalidCommand) -> str | None:
    """A worker identity: a non-empty string or None; else ``error`` is raised (an item passes ``InvalidItem``)."""
    if value is None or (isinstance(value, str) and value):
        return value
    raise error(f"{param} must be a non-empty string or None, got {shown(value)}", param=param)


def _metadata(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidMetadata(f"metadata must be a mapping of strings to strings, got {shown(value)}", param="metadata")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidMetadata(
                f"metadata keys and values must be strings, got {shown(key)}: {shown(item)}", param="metadata"
            )
    return MappingProxyType(dict(value)) if value else _EMPTY


def _metadata_patch(value: Any) -> Mapping[str, str | None]:
    if not isinstance(value, Mapping):
        raise InvalidMetadata(f"metadata must be a mapping, got {shown(value)}", param="metadata")
    for key, item in value.items():
        if not isinstance(key, str) or not (item is None or isinstance(item, str)):
            raise InvalidMetadata(
                f"metadata maps string keys to a string (upsert) or None (delete), got {shown(key)}: {shown(item)}",
                param="metadata",
            )
    return MappingProxyType(dict(value))


# --- the work item ------------------------------------------------------------------------------


@picklable
@attrs.frozen(kw_only=True, weakref_slot=False)
class WorkItem:
    """One work item: every field of the wire object (api.md §2), plus what the model needs.

    Construct one with the wire fields (``WorkItem(id=..., environment_id=..., session_id=...,
    created_at=now)`` is a fresh ``queued`` item); every field is checked, including that the
    timestamps agree with the state (api.md §7), and bad input raises
    :class:`~workstate.errors.InvalidInput`. Operations never mutate an item: they return a new one.
    """

    id: str = attrs.field(validator=_id("work_", "id"))
    environment_id: str = attrs.field(validator=_id("env_", "environment_id"))
    session_id: str = attrs.field(validator=_id("data", "session_id"))
    """``data.id``: the session this item runs (or the health probe's id, for a ``healthcheck`` item)."""
    created_at: datetime
    state: State = attrs.field(default=State.QUEUED)
    acknowledged_at: datetime | None = None
    started_at: datetime | None = None
    latest_heartbeat_at: datetime | None = None
    stop_requested_at: datetime | None = None
    stopped_at: datetime | None = None
    metadata: Mapping[str, str] = attrs.field(default=_EMPTY, hash=False)
    worker_id: str | None = None
    """The Worker-ID bound at ack (the ack's, else the one stored at delivery)."""
    delivered_at: datetime | None = None
    """When a poll last delivered the item (cleared by a re-queue)."""
    delivered_to: str | None = None
    """The Worker-ID the last delivery stored (None when the poll sent none)."""
    ttl_seconds: int | None = None
    """The TTL of the current lease (set by every accepted heartbeat)."""
    clock: datetime = attrs.field()
    """The latest instant the item's timeline has reached; no later operation stamps an earlier one."""
    version: int = 0
    """Increases by one on every change: the compare-and-set token for servers that store items."""
    data_type: str = attrs.field(default="session", validator=_data_type)
    """``data.type``: ``"session"``, or ``"healthcheck"`` for a health probe (dialects with ``healthcheck_items``)."""

    @clock.default
    def _clock_default(self) -> datetime:
        stamps = [aware(self.created_at, "created_at")]  # never None: that too is refused by name
        stamps += [aware(getattr(self, n), n) for n in ("delivered_at", *_TIMESTAMPS) if getattr(self, n) is not None]
        return max(stamps)

    def __attrs_post_init__(self) -> None:
        # Normalize and check every field here (not with attrs converters) so errors name the field.
        fix = object.__setattr__
        for name in ("created_at", "clock"):
            fix(self, name, aware(getattr(self, name), name))
        for name in ("delivered_at", *_TIMESTAMPS):
            if getattr(self, name) is not None:
                fix(self, name, aware(getattr(self, name), name))
        fix(self, "metadata", _metadata(self.metadata))
        for name in ("worker_id", "delivered_to"):
            _worker_id(getattr(self, name), name, InvalidItem)
        if not isinstance(self.state, State):
            try:
                object.__setattr__(self, "state", State(self.state))
            except ValueError:
                raise InvalidItem(
                    f"state must be one of {[s.value for s in State]}, got {shown(self.state)}", param="state"
                ) from None
        for name, smallest in (("ttl_seconds", 1), ("version", 0)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not smallest <= value <= LARGEST
            ):
                raise InvalidItem(
                    f"{name} must be an integer from {smallest} to {LARGEST:,}, got {shown(value)}", param=name
                )
        problems = consistency_problems(self)
        if problems:
            raise InvalidItem(f"inconsistent work item {self.id}: " + "; ".join(problems))

    type: ClassVar[str] = "work"

    @property
    def data(self) -> dict[str, str]:
        """The wire object's ``data``: the session this item runs (or the health probe it is)."""
        return {"type": self.data_type, "id": self.session_id}

    @property
    def lease_deadline(self) -> datetime | None:
        """``latest_heartbeat_at + ttl_seconds``, or None before the first heartbeat."""
        if self.latest_heartbeat_at is None or self.ttl_seconds is None:
            return None
        return self.latest_heartbeat_at + _seconds(self.ttl_seconds)

    @property
    def live(self) -> bool:
        return self.state is not State.STOPPED


def consistency_problems(item: WorkItem) -> list[str]:
    """What in ``item`` contradicts invariants.md #2 and #3 (empty when consistent)."""
    problems = []
    st = item.state
    absent = {
        State.QUEUED: ("acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at"),
        State.STARTING: ("started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at"),
        State.ACTIVE: ("stop_requested_at", "stopped_at"),
        State.STOPPING: ("stopped_at",),
        State.STOPPED: (),
    }[st]
    present = {
        State.QUEUED: (),
        State.STARTING: ("acknowledged_at",),
        State.ACTIVE: ("acknowledged_at", "started_at", "latest_heartbeat_at", "ttl_seconds"),
        State.STOPPING: ("acknowledged_at", "stop_requested_at"),
        State.STOPPED: ("stopped_at",),
    }[st]
    problems += [f"{st} has {name}" for name in absent if getattr(item, name) is not None]
    problems += [f"{st} lacks {name}" for name in present if getattr(item, name) is None]
    if st is State.QUEUED and (item.worker_id is not None or item.ttl_seconds is not None):
        problems.append("queued has a bound worker or a lease")
    if (item.latest_heartbeat_at is None) != (item.ttl_seconds is None):
        problems.append("latest_heartbeat_at and ttl_seconds must be set together")
    chain = [
        t for t in (item.created_at, item.acknowledged_at, item.started_at, item.latest_heartbeat_at) if t is not None
    ]
    if chain != sorted(chain):
        problems.append("created_at <= acknowledged_at <= started_at <= latest_heartbeat_at is broken")
    stamps = [t for t in (item.delivered_at, *(getattr(item, n) for n in _TIMESTAMPS)) if t is not None]
    if item.stopped_at is not None and any(t > item.stopped_at for t in stamps):
        problems.append("stopped_at is not the latest timestamp")
    if any(t < item.created_at for t in stamps):
        problems.append("a timestamp precedes created_at")
    if item.clock < item.created_at or any(t > item.clock for t in stamps):
        problems.append("clock is earlier than a timestamp")
    if item.delivered_to is not None and item.delivered_at is None:
        problems.append("delivered_to is set without delivered_at")
    return problems


_TIMEDELTAS: dict[float, timedelta] = {}


def _seconds(value: float) -> timedelta:
    found = _TIMEDELTAS.get(value)
    if found is None:
        found = _TIMEDELTAS[value] = timedelta(seconds=value)
    return found


def next_deadline(item: WorkItem, policy: Policy = DEFAULT_POLICY) -> datetime | None:
    """The instant the item lapses at, if nothing happens first (api.md §5), or None."""
    _check_operands(item, policy)
    return _next_deadline(item, policy)


def _check_operands(item: object, policy: object) -> None:
    if type(item) is not WorkItem:
        raise InvalidCommand(f"item must be a WorkItem, got {shown(item)}", param="item")
    if type(policy) is not Policy and not isinstance(policy, Policy):
        raise InvalidCommand(f"policy must be a Policy, got {shown(policy)}", param="policy")


def _deadline_source(state: State, pad: str) -> list[str]:
    """Statements that set ``deadline`` for an ``item`` in ``state`` under ``policy``: the instant it lapses at if
    nothing happens first (api.md §5), or None. The one statement of the deadline: :func:`_next_deadline` runs
    it, and the step function (:func:`_compile_step`) inlines it per state."""
    lease = state is _ACTIVE or state is _STOPPING  # the lease of the latest heartbeat runs out
    start = state is _STARTING or state is _STOPPING  # the start timeout, where the policy re-queues
    lines = []
    if lease:
        lines += [
            "latest, ttl = item.latest_heartbeat_at, item.ttl_seconds",
            "if latest is not None and ttl is not None:",
            "    try:",  # _TIMEDELTAS.get(ttl) or _seconds(ttl), without the method call
            "        deadline = latest + _TIMEDELTAS[ttl]",
            "    except KeyError:",
            "        deadline = latest + _seconds(ttl)",
        ]
    if start:
        lines += [
            ("elif" if lease else "if")
            + " item.acknowledged_at is not None and policy.on_start_timeout is _REQUEUE_AT_START:",
            "    deadline = item.acknowledged_at + _seconds(policy.start_timeout_seconds)",
        ]
    lines += ["else:", "    deadline = None"] if lines else ["deadline = None"]
    return [pad + line for line in lines]


def _make_next_deadline() -> Callable[[WorkItem, Policy], datetime | None]:
    namespace: dict[str, Any] = {"_TIMEDELTAS": _TIMEDELTAS, "_seconds": _seconds}
    namespace.update(_REQUEUE_AT_START=_REQUEUE_AT_START, **{f"_{s.name}": s for s in State})
    lines = ["def next_deadline(item, policy):", "    st = item.state"]
    for state in State:
        lines += [f"    if st is _{state.name}:", *_deadline_source(state, "        "), "        return deadline"]
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from _deadline_source above
    made: Callable[[WorkItem, Policy], datetime | None] = namespace["next_deadline"]
    return made


_next_deadline = _make_next_deadline()


# --- commands -----------------------------------------------------------------------------------


@attrs.frozen
class Deliver:
    """A poll hands the item to a worker (api.md §4.1)."""

    worker_id: str | None = attrs.field(default=None, converter=_worker_id)
    reclaim_older_than_ms: int | None = attrs.field(default=None)
    trigger: ClassVar[Trigger] = Trigger.DELIVER

    @reclaim_older_than_ms.validator
    def _check(self, _attribute: Any, value: Any) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidCommand(
                f"reclaim_older_than_ms must be a non-negative integer, got {shown(value)}",
                param="reclaim_older_than_ms",
            )


@attrs.frozen
class Ack:
    """Acknowledge a delivered item (api.md §4.2)."""

    worker_id: str | None = attrs.field(default=None, converter=_worker_id)
    trigger: ClassVar[Trigger] = Trigger.ACK


@attrs.frozen
class Heartbeat:
    """Heartbeat, optionally conditional on ``expected_last_heartbeat`` (api.md §4.3).

    ``expected_last_heartbeat`` is None (unconditional), :data:`NO_HEARTBEAT`, an aware
    ``datetime``, or an RFC 3339 string (kept as given, for ``TimestampMatch.EXACT``). A string that
    is valid RFC 3339 but names an instant workstate cannot hold (finer than a microsecond, a leap
    second, a year out of range: :func:`~workstate._time.read_timestamp`) is a precondition that
    matches no heartbeat (api.md §4.3: 412, never 400); a string that is not RFC 3339 raises
    :class:`~workstate.errors.InvalidTimestamp`.
    """

    expected_last_heartbeat: datetime | str | None = None
    desired_ttl_seconds: int | None = None
    expected_instant: datetime | None = attrs.field(init=False, eq=False, repr=False)
    """The instant ``expected_last_heartbeat`` names: None when absent, ``NO_HEARTBEAT``, or a timestamp no
    stored heartbeat can equal (see :attr:`matches_nothing`)."""
    matches_nothing: bool = attrs.field(init=False, eq=False, repr=False)
    """Whether ``expected_last_heartbeat`` is a timestamp that names no instant workstate can hold: it
    equals no stored heartbeat, so the precondition fails wherever it is checked."""
    trigger: ClassVar[Trigger] = Trigger.HEARTBEAT

    def __attrs_post_init__(self) -> None:
        expected = self.expected_last_heartbeat
        instant = None
        if isinstance(expected, datetime):
            instant = aware(expected, "expected_last_heartbeat")
        elif isinstance(expected, str):
            if expected != NO_HEARTBEAT:
                instant = read_timestamp(expected, "expected_last_heartbeat")
        elif expected is not None:
            raise InvalidCommand(
                f"expected_last_heartbeat must be None, NO_HEARTBEAT, a datetime or a timestamp, got {shown(expected)}",
                param="expected_last_heartbeat",
            )
        object.__setattr__(
            self, "matches_nothing", isinstance(expected, str) and expected != NO_HEARTBEAT and instant is None
        )
        object.__setattr__(self, "expected_instant", instant)
        if self.desired_ttl_seconds is not None:
            check_desired_ttl(self.desired_ttl_seconds, InvalidCommand)


@attrs.frozen
class Stop:
    """Stop gracefully, or with ``force=True`` at once (api.md §4.4)."""

    force: bool = attrs.field(default=False)

    @force.validator
    def _check(self, _attribute: Any, value: Any) -> None:
        if not isinstance(value, bool):
            raise InvalidCommand(f"force must be a boolean, got {shown(value)}", param="force")

    @property
    def trigger(self) -> Trigger:
        return _STOP_TRIGGERS[self.force]


@picklable
@attrs.frozen
class UpdateMetadata:
    """Upsert (string) or delete (None) metadata keys (api.md §4.5)."""

    metadata: Mapping[str, str | None] = attrs.field(converter=_metadata_patch, hash=False)
    trigger: ClassVar[Trigger] = Trigger.UPDATE_METADATA

    def merged(self, current: Mapping[str, str]) -> dict[str, str]:
        result = dict(current)
        for key, value in self.metadata.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = value
        return result


@attrs.frozen
class Lapse:
    """Let time pass: apply the start timeout or lease expiry due at ``now`` (api.md §5)."""

    trigger: ClassVar[Trigger] = Trigger.LAPSE


Command: TypeAlias = Deliver | Ack | Heartbeat | Stop | UpdateMetadata | Lapse
_LAPSE = Lapse()


# --- effects and outcomes -----------------------------------------------------------------------


@attrs.frozen(weakref_slot=False)
class DispatchRequested:
    """Ack asks the server for an immediate dispatch pass."""


@attrs.frozen(weakref_slot=False)
class LeaseGranted:
    """A heartbeat granted (or extended) the lease: ``last_heartbeat`` is its fencing token."""

    last_heartbeat: datetime
    ttl_seconds: int
    until: datetime


@attrs.frozen(weakref_slot=False)
class StopRequested:
    """A graceful stop was requested: the worker should drain."""

    at: datetime


@attrs.frozen(weakref_slot=False)
class Stopped:
    """The item reached ``stopped``."""

    at: datetime


@attrs.frozen(weakref_slot=False)
class Requeued:
    """A start timeout or lease expiry put the item back in the queue."""

    at: datetime
    from_state: State


Effect: TypeAlias = DispatchRequested | LeaseGranted | StopRequested | Stopped | Requeued
_DISPATCH = DispatchRequested()
# Unchecked constructors for what step builds from valid parts (see workstate._values.constructor).
_lease_granted = constructor(LeaseGranted)
_stop_requested = constructor(StopRequested)
_stopped = constructor(Stopped)
_requeued = constructor(Requeued)
_LeaseGrantedTwin = twin(LeaseGranted)


@attrs.frozen(weakref_slot=False)
class Outcome:
    """What a command did. ``item`` is the item as it stands after the request.

    ``effects`` lists what happened, as data, including a lapse that was due at ``now``
    and applied before the command (api.md §5: the answer is for the item at ``now``).
    """

    item: WorkItem
    rule: Rule
    effects: tuple[Effect, ...] = ()

    @property
    def status(self) -> int:
        """The HTTP status this outcome answers with."""
        return self.rule.status


@attrs.frozen(weakref_slot=False)
class Accepted(Outcome):
    """The command changed the item (200)."""


@attrs.frozen(weakref_slot=False)
class Replayed(Outcome):
    """The command was a safe retry or a no-op (200): ``item`` is the item unchanged."""


@attrs.frozen(weakref_slot=False)
class Rejected(Outcome):
    """The rules refused the command (4xx): ``item`` is unchanged by it."""

    @property
    def reason(self) -> Reason:
        assert self.rule.reason is not None
        return self.rule.reason

    def error_type(self, policy: Policy = DEFAULT_POLICY, dialect: Dialect = QODER) -> str:
        """The ``error.type`` of the error envelope (api.md §6)."""
        return error_type(self.reason, policy, dialect)


_accepted = constructor(Accepted)


def error_type(reason: Reason, policy: Policy = DEFAULT_POLICY, dialect: Dialect = QODER) -> str:
    """The ``error.type`` a rejection answers with: 409's is the policy's choice (api.md §6); 412's is
    ``precondition_failed_error``, or ``invalid_request_error`` in a dialect whose errors carry ``details``."""
    if reason.status == 409:
        return policy.conflict_error_type.value
    if reason.status == 412 and dialect.error_style is not ErrorStyle.DETAILS:
        return "precondition_failed_error"
    return "invalid_request_error"


# --- what the guards mean -----------------------------------------------------------------------

GuardFn = Callable[[WorkItem, Any, datetime, Policy], bool]


def _deliverable(item: WorkItem, cmd: Deliver, at: datetime, policy: Policy) -> bool:
    if item.delivered_at is None:
        return True
    window = policy.reclaim_older_than_ms if cmd.reclaim_older_than_ms is None else cmd.reclaim_older_than_ms
    return (at - item.delivered_at) // MICROSECOND >= window * 1000  # exact, for any window


def _worker_conflict(item: WorkItem, cmd: Ack, at: datetime, policy: Policy) -> bool:
    claimant = item.worker_id if item.worker_id is not None else item.delivered_to
    return cmd.worker_id is not None and claimant is not None and cmd.worker_id != claimant


def _precondition_holds(item: WorkItem, cmd: Heartbeat, at: datetime, policy: Policy) -> bool:
    expected = cmd.expected_last_heartbeat
    if expected is None:
        return True
    latest = item.latest_heartbeat_at
    if type(expected) is datetime and policy.timestamp_match is not _EXACT:  # the common case: the token echoed
        return latest is not None and cmd.expected_instant == latest
    if expected is NO_HEARTBEAT or expected == NO_HEARTBEAT:
        return latest is None
    if latest is None or cmd.matches_nothing:  # a timestamp workstate cannot hold equals no heartbeat
        return False
    if policy.timestamp_match is _EXACT:
        text = expected if isinstance(expected, str) else render_timestamp(expected)
        return text == render_timestamp(latest)
    return cmd.expected_instant == latest


def _lapse_due(item: WorkItem, cmd: Any, at: datetime, policy: Policy) -> bool:
    deadline = _next_deadline(item, policy)
    return deadline is not None and deadline <= at


def _metadata_fits(item: WorkItem, cmd: UpdateMetadata, at: datetime, policy: Policy) -> bool:
    merged = cmd.merged(item.metadata)
    return len(merged) <= policy.metadata_max_keys and all(
        1 <= len(k) <= policy.metadata_max_key_length and len(v) <= policy.metadata_max_value_length
        for k, v in merged.items()
    )


GUARDS: Mapping[Guard, GuardFn] = MappingProxyType(
    {
        Guard.DELIVERABLE: _deliverable,
        Guard.WORKER_CONFLICT: _worker_conflict,
        Guard.DELIVERY_REQUIRED: lambda item, cmd, at, policy: policy.ack_requires_delivery,
        Guard.DELIVERED: lambda item, cmd, at, policy: item.delivered_at is not None,
        Guard.PRECONDITION_HOLDS: _precondition_holds,
        Guard.LAPSE_DUE: _lapse_due,
        Guard.EXPIRY_STOPS: lambda item, cmd, at, policy: policy.on_lease_expiry is _STOP_AT_EXPIRY,
        Guard.METADATA_FITS: _metadata_fits,
    }
)
COMMAND_GUARDS = frozenset({Guard.DELIVERABLE, Guard.WORKER_CONFLICT, Guard.PRECONDITION_HOLDS, Guard.METADATA_FITS})
"""Guards whose outcome depends on the command's parameters, not only on the item, ``now`` and policy."""


# --- what the actions do ------------------------------------------------------------------------

ActionFn = Callable[[WorkItem, Any, datetime, Policy, Any, list[Effect]], None]
"""An action: ``run(item, command, at, policy, new, effects)`` writes its fields on ``new`` (the new item, still
mutable: a copy of ``item`` with ``state``, ``version`` and ``clock`` already set) and appends its effects."""


@attrs.frozen
class Action:
    """What an action name in the declaration does: ``run`` writes the fields ``writes`` names on the new item."""

    run: ActionFn
    writes: frozenset[str]


ACTIONS: dict[str, Action] = {}


def _action(name: str, *writes: str) -> Callable[[ActionFn], ActionFn]:
    def register(run: ActionFn) -> ActionFn:
        ACTIONS[name] = Action(run, frozenset(writes))
        return run

    return register


@_action("record_delivery", "delivered_at", "delivered_to")
def _record_delivery(item: WorkItem, cmd: Deliver, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    new.delivered_at = at
    new.delivered_to = cmd.worker_id


@_action("bind_worker", "worker_id")
def _bind_worker(item: WorkItem, cmd: Ack, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    new.worker_id = cmd.worker_id if cmd.worker_id is not None else item.delivered_to


@_action("stamp_acknowledged", "acknowledged_at")
def _stamp_acknowledged(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    new.acknowledged_at = at


@_action("request_dispatch")
def _request_dispatch(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    fx.append(_DISPATCH)


@_action("stamp_started", "started_at")
def _stamp_started(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    # The heartbeat token: at, or one microsecond after the previous one (api.md §4.3); grant_lease stamps it too.
    latest = item.latest_heartbeat_at
    new.started_at = at if latest is None or at > latest else latest + MICROSECOND


@_action("grant_lease", "latest_heartbeat_at", "ttl_seconds", "clock")
def _grant_lease(item: WorkItem, cmd: Heartbeat, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    latest = item.latest_heartbeat_at
    token = at if latest is None or at > latest else latest + MICROSECOND
    ttl = cmd.desired_ttl_seconds
    if ttl is None:
        ttl = policy.default_ttl_seconds
    else:  # min(max(ttl, lowest), highest), without the builtins' cost
        lowest, highest = policy.min_ttl_seconds, policy.max_ttl_seconds
        ttl = ttl if ttl >= lowest else lowest
        ttl = ttl if ttl <= highest else highest
    new.latest_heartbeat_at = new.clock = token
    new.ttl_seconds = ttl
    effect = _LeaseGrantedTwin()  # _lease_granted(token, ttl, until), inlined
    effect.last_heartbeat = token
    effect.ttl_seconds = ttl
    try:
        effect.until = token + _TIMEDELTAS[ttl]
    except KeyError:
        effect.until = token + _seconds(ttl)
    effect.__class__ = LeaseGranted
    fx.append(effect)


@_action("request_stop", "stop_requested_at")
def _request_stop(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    new.stop_requested_at = at
    fx.append(_stop_requested(at))


@_action("stamp_stopped", "stopped_at")
def _stamp_stopped(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    new.stopped_at = at
    fx.append(_stopped(at))


_CLEARED_BY_REQUEUE = (
    "acknowledged_at",
    "started_at",
    "latest_heartbeat_at",
    "ttl_seconds",
    "worker_id",
    "delivered_at",
    "delivered_to",
)


@_action("requeue", *_CLEARED_BY_REQUEUE)
def _requeue(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Effect]) -> None:
    for name in _CLEARED_BY_REQUEUE:
        setattr(new, name, None)
    fx.append(_requeued(at, item.state))


@_action("merge_metadata", "metadata", "clock")
def _merge_metadata(
    item: WorkItem, cmd: UpdateMetadata, at: datetime, policy: Policy, new: Any, fx: list[Effect]
) -> None:
    new.metadata = _metadata(cmd.merged(item.metadata))
    new.clock = item.clock  # metadata stamps no time, so it does not move the timeline


_FIELDS = tuple(field.name for field in attrs.fields(WorkItem))


def _make_copier() -> Callable[[WorkItem], Any]:
    """``copy(item)``: a mutable copy of ``item`` (its twin, :func:`~workstate._values.twin`), every field set.

    The rules keep items consistent, so the checks of ``__init__`` are not repeated on every step: the step
    function sets ``state``, ``version`` and ``clock`` on the copy, the rule's actions write their fields, and
    the copy becomes a ``WorkItem`` (``new.__class__ = WorkItem``).
    """
    namespace: dict[str, Any] = {"_Twin": twin(WorkItem)}
    lines = ["def copy(item):", "    new = _Twin()", *(f"    new.{name} = item.{name}" for name in _FIELDS)]
    exec("\n".join([*lines, "    return new"]), namespace)  # noqa: S102 - generated from the attrs fields above
    copy: Callable[[WorkItem], Any] = namespace["copy"]
    return copy


_copy = _make_copier()


# --- running the table --------------------------------------------------------------------------


@attrs.frozen
class Explanation:
    """Why a command has the outcome it has."""

    outcome: Outcome
    rule: Rule
    state: State  # the state the command met (after any lapse due at now)
    guards: tuple[tuple[Guard, bool], ...]  # the guard values that decided the rule
    lapse: Rule | None  # the lapse applied first, if one was due

    def __str__(self) -> str:
        read = ", ".join(f"{g}={'yes' if v else 'no'}" for g, v in self.guards) or "no guards"
        first = f"first {self.lapse.text}; then " if self.lapse else ""
        return f"{first}{self.rule.text} [{read}] -> {self.outcome.status}"


_NEVER, _WHEN_DUE, _ALWAYS = 0, 1, 2


def _constant(value: bool) -> GuardFn:
    def guard(item: WorkItem, cmd: Any, at: datetime, policy: Policy) -> bool:
        return value

    return guard


def dialect_guards(dialect: Dialect) -> dict[Guard, GuardFn]:
    """The guards a dialect decides (constant for the dialect; ``Dialect.guards`` names their values)."""
    return {Guard(name): _constant(value) for name, value in dialect.guards.items()}


StepFn = Callable[..., Outcome]
"""``step(item, command, now, policy=None, dialect=None)``, as :meth:`Lifecycle.step`."""


def _compile_step(lifecycle: Lifecycle) -> StepFn:
    """The lifecycle's step function, generated from its compiled table (``Lifecycle._run``).

    One function that checks the operands (exact types, an instant in range: anything else leaves for the
    general path, ``Lifecycle._step``, which checks in the documented order and raises the typed errors), then
    branches on the command's type and the item's state, and per (state, command type) decides and builds
    inline: the lapse check of the state (a lapse due at ``now`` leaves for the general path), the guards the
    entry reads (one that cannot change the rule is not evaluated: guards are pure), and per rule its
    outcome, built as its twin with the rule's actions run on the new item. Nothing here names a rule: every
    branch is read off the table, and ``tests/core/test_fast_path.py`` checks the result equal to a
    straightforward reference path on random commands.
    """
    namespace: dict[str, Any] = {
        "_ItemTwin": twin(WorkItem),
        "_WorkItem": WorkItem,
        "_Policy": Policy,
        "_datetime": datetime,
        "_UTC": UTC,
        "_EARLIEST": EARLIEST,
        "_LATEST": LATEST,
        "_lifecycle": lifecycle,
        "_dialect": lifecycle.dialect,
        "_policy": lifecycle.dialect.policy,
        "_next_deadline": _next_deadline,
        "_TIMEDELTAS": _TIMEDELTAS,
        "_seconds": _seconds,
        "_REQUEUE_AT_START": _REQUEUE_AT_START,
    }
    names: dict[int, str] = {}

    def name(value: Any, prefix: str) -> str:
        found = names.get(id(value))
        if found is None:
            found = names[id(value)] = f"_{prefix}{len(names)}"
            namespace[found] = value
        return found

    def outcome(rule: Rule, kind: Any, actions: tuple[ActionFn, ...], trigger: Trigger, pad: str) -> list[str]:
        cls = {Kind.ACCEPT: Accepted, Kind.REPLAY: Replayed, Kind.REJECT: Rejected}[rule.kind]
        built = [
            f"{pad}out = {name(twin(cls), 'twin')}()",
            f"{pad}out.rule = {name(rule, 'rule')}",
        ]
        done = [f"{pad}out.__class__ = {name(cls, 'cls')}", f"{pad}return out"]
        if rule.kind is not Kind.ACCEPT:
            return [*built, f"{pad}out.item = item", f"{pad}out.effects = ()", *done]
        lines = []
        if trigger is _LAPSE_TRIGGER:  # expiry takes effect at the deadline instant, never behind the clock
            lines += [
                f"{pad}deadline = _next_deadline(item, policy) or at",
                f"{pad}at = deadline if deadline > clock else clock",
            ]
        # An action of this module writes exactly the fields it names: those are not copied first.
        known = all(lifecycle._actions[a] is ACTIONS.get(a) for a in rule.actions)
        written = {f for a in rule.actions for f in lifecycle._actions[a].writes} if known else set()
        lines.append(f"{pad}new = _ItemTwin()")
        for field in _FIELDS:
            if field in written:
                continue
            if field == "state":
                value = "item.state" if rule.dest is None else name(rule.dest, "state")
            elif field == "version":
                value = "item.version + 1"
            elif field == "clock":
                value = "at"  # at is never behind the clock
            else:
                value = f"item.{field}"
            lines.append(f"{pad}new.{field} = {value}")
        lines.append(f"{pad}fx = []")
        lines += [f"{pad}{name(action, 'action')}(item, command, at, policy, new, fx)" for action in actions]
        lines.append(f"{pad}new.__class__ = _WorkItem")
        return [*lines, *built, f"{pad}out.item = new", f"{pad}out.effects = tuple(fx)", *done]

    def decide(state: State, trigger: Trigger, pad: str) -> list[str]:
        index, guards, rules = lifecycle._run[state, trigger]

        def tree(k: int, index: int, pad: str) -> list[str]:
            if k == len(guards):
                rule, kind, actions, _replace = rules[index]
                return outcome(rule, kind, actions, trigger, pad)
            bit, guard = guards[k]
            reached = {
                rules[index | bit | sum(b for j, (b, _g) in enumerate(guards[k + 1 :]) if m >> j & 1)][0].name
                for m in range(1 << (len(guards) - k - 1))
            }
            unset = {
                rules[index | sum(b for j, (b, _g) in enumerate(guards[k + 1 :]) if m >> j & 1)][0].name
                for m in range(1 << (len(guards) - k - 1))
            }
            if reached == unset and len(reached) == 1:  # this guard cannot change the rule
                return tree(k + 1, index, pad)
            return [
                f"{pad}if {name(guard, 'guard')}(item, command, at, policy):",
                *tree(k + 1, index | bit, pad + "    "),
                *tree(k + 1, index, pad),
            ]

        return tree(0, index, pad)

    slow = "return _lifecycle._step(item, command, now, policy, None)"
    lines = [
        "def step(item, command, now, policy=None, dialect=None):",
        "    if (",
        "        (dialect is None or dialect is _dialect)",
        "        and type(now) is _datetime",
        "        and now.tzinfo is _UTC",
        "        and _EARLIEST <= now <= _LATEST",
        "        and type(item) is _WorkItem",
        "    ):",
        "        if policy is None:",
        "            policy = _policy",
        "        if type(policy) is _Policy:",
        "            kind = type(command)",
        "            state = item.state",
    ]
    for kind in sorted(_COMMAND_TYPES, key=_LIKELY_COMMANDS.index):
        lines.append(f"            if kind is {name(kind, 'kind')}:")
        for state in sorted(State, key=_LIKELY_STATES.index):
            lines.append(f"                if state is {name(state, 'state')}:")
            pad = " " * 20
            mode = lifecycle._lapse_mode[state]
            if mode is _ALWAYS and kind is not Lapse:
                lines.append(f"{pad}{slow}  # the lapse is always applied first")
                continue
            lines += [f"{pad}clock = item.clock", f"{pad}at = now if now > clock else clock"]
            if mode is _WHEN_DUE and kind is not Lapse:
                lines += [
                    *_deadline_source(state, pad),
                    f"{pad}if deadline is not None and deadline <= at:",
                    f"{pad}    {slow}  # a lapse is due first",
                ]
            if kind is Stop:  # the one command whose trigger is a field's: Stop.trigger
                lines += [
                    f"{pad}if command.force:",
                    *decide(state, _STOP_TRIGGERS[True], pad + "    "),
                    *decide(state, _STOP_TRIGGERS[False], pad),
                ]
            else:
                lines += decide(state, kind.__dict__["trigger"], pad)  # a class constant
    lines.append("    return _lifecycle._step(item, command, now, policy, dialect)")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from the compiled table above
    made: StepFn = namespace["step"]
    made.__doc__ = Lifecycle.step.__doc__
    made.__annotations__ = dict(Lifecycle.step.__annotations__)
    made.__qualname__ = "Lifecycle.step"
    made.__module__ = __name__
    return made


# The order the step function tries command types and states in (any order is exact; this one is quick).
_LIKELY_COMMANDS = (Heartbeat, Deliver, Ack, Stop, Lapse, UpdateMetadata)
_LIKELY_STATES = (State.ACTIVE, State.QUEUED, State.STARTING, State.STOPPING, State.STOPPED)


class Lifecycle:
    """A compiled rule table with its guards and actions, for one dialect: the step function and its queries.

    ``Lifecycle()`` is the spec's lifecycle in the ``qoder`` dialect, ``Lifecycle(dialect=ANTHROPIC)`` the
    same declaration as the peer speaks it (its dialect's guards are constants, folded away when the table is
    compiled to run); tests build variants from other declarations.
    """

    def __init__(
        self,
        declaration: tuple[Line, ...] = DECLARATION,
        actions: Mapping[str, Action] = ACTIONS,
        guards: Mapping[Guard, GuardFn] = GUARDS,
        dialect: Dialect = QODER,
    ) -> None:
        if not isinstance(dialect, Dialect):
            raise InvalidCommand(f"dialect must be a Dialect, got {shown(dialect)}", param="dialect")
        self.declaration = declaration
        self.dialect = dialect
        self.machine = build_machine(declaration)
        self.table: RuleTable = compile_rules(self.machine)
        self._given_guards = guards
        constants = dialect_guards(dialect)
        guards = {**constants, **guards}
        self._guards = guards
        self._actions = actions
        self._variants: dict[Dialect, Lifecycle] = {dialect: self}
        fixed = {g: dialect.guards[str(g)] for g in constants}
        # The table, ready to run: per (state, trigger), the bits of the dialect's (constant) guards, the
        # other guard functions with their bit, and per combination of guard outcomes the rule, its
        # outcome type, action functions and copier.
        self._run: dict[tuple[State, Trigger], tuple[Any, Any, Any]] = {
            key: (
                sum(1 << bit for bit, g in enumerate(entry.guards) if fixed.get(g)),
                tuple((1 << bit, guards[g]) for bit, g in enumerate(entry.guards) if g not in fixed),
                tuple(
                    (rule, _OUTCOME[rule.kind], tuple(actions[a].run for a in rule.actions), None)
                    if rule.kind is not Kind.ACCEPT
                    else (
                        rule,
                        Accepted,
                        tuple(actions[a].run for a in rule.actions),
                        _copy,
                    )
                    for rule in entry.rules
                ),
            )
            for key, entry in self.table.items()
        }
        # Where a lapse can change nothing (ever, or while the deadline is ahead), `step` skips it.
        # Read off the table, so that a variant lifecycle stays exact.
        self._lapse_mode: dict[State, int] = {}
        for state in State:
            entry = self.table[state, Trigger.LAPSE]
            changes = [i for i, rule in enumerate(entry.rules) if rule.kind is Kind.ACCEPT]
            if not changes:
                self._lapse_mode[state] = _NEVER
            elif Guard.LAPSE_DUE in entry.guards and all(i >> entry.guards.index(Guard.LAPSE_DUE) & 1 for i in changes):
                self._lapse_mode[state] = _WHEN_DUE
            else:
                self._lapse_mode[state] = _ALWAYS

        # The step function of this lifecycle, compiled; it shadows the method below (which calls it).
        vars(self)["step"] = _compile_step(self)

    @property
    def actions(self) -> Mapping[str, Action]:
        """The actions this lifecycle's rules run, by name (a variant may bring its own)."""
        return self._actions

    def in_dialect(self, dialect: Dialect) -> Lifecycle:
        """This lifecycle (the same declaration, actions and guards) as ``dialect`` speaks it."""
        if not isinstance(dialect, Dialect):
            raise InvalidCommand(f"dialect must be a Dialect, got {shown(dialect)}", param="dialect")
        found = self._variants.get(dialect)
        if found is None:
            found = Lifecycle(self.declaration, self._actions, self._given_guards, dialect)
            found._variants = self._variants
            self._variants[dialect] = found
        return found

    def _apply(self, item: WorkItem, cmd: Any, now: datetime, policy: Policy, pre: tuple[Effect, ...]) -> Outcome:
        trigger = cmd.trigger
        clock = item.clock
        at = now if now > clock else clock
        index, guards, rules = self._run[item.state, trigger]
        for bit, guard in guards:
            if guard(item, cmd, at, policy):
                index |= bit
        rule, outcome, actions, replace = rules[index]
        if replace is None:  # a replay or a rejection: the very same item
            return outcome(item, rule, pre)  # type: ignore[no-any-return]
        if trigger is _LAPSE_TRIGGER:  # expiry takes effect at the deadline instant, never behind the clock
            deadline = _next_deadline(item, policy) or at
            at = deadline if deadline > clock else clock
        new = replace(item)
        if rule.dest is not None:
            new.state = rule.dest
        new.version = item.version + 1
        new.clock = at if at > clock else clock  # a lapse stamps its deadline, never behind the clock
        effects = list(pre) if pre else []
        for action in actions:
            action(item, cmd, at, policy, new, effects)
        new.__class__ = WorkItem
        return _accepted(new, rule, tuple(effects))  # type: ignore[no-any-return]

    def step(
        self,
        item: WorkItem,
        command: Command,
        now: datetime,
        policy: Policy | None = None,
        dialect: Dialect | None = None,
    ) -> Outcome:
        """Apply ``command`` to ``item`` at ``now``: the lapse due at ``now`` first, then the command.

        ``policy`` defaults to the dialect's (``Dialect.policy``); ``dialect`` to this lifecycle's.
        """
        compiled: StepFn = vars(self)["step"]  # see _compile_step: an instance's step is this function
        return compiled(item, command, now, policy, dialect)

    def _step(
        self, item: WorkItem, command: Command, now: datetime, policy: Policy | None, dialect: Dialect | None
    ) -> Outcome:
        """``step`` on the general path: every check in its order, any lapse due, every variant."""
        if dialect is not None and dialect is not self.dialect:
            return self.in_dialect(dialect).step(item, command, now, policy)
        if policy is None:
            policy = self.dialect.policy
        if type(now) is not datetime or now.tzinfo is not UTC or not EARLIEST <= now <= LATEST:
            now = aware(now)
        if type(item) is not WorkItem or type(policy) is not Policy:
            _check_operands(item, policy)
        kind = type(command)
        if kind not in _COMMAND_TYPES:
            raise InvalidCommand(f"not a command: {shown(command)}", param="command")
        if kind is Lapse:
            return self._apply(item, command, now, policy, ())
        mode = self._lapse_mode[item.state]
        if mode is _NEVER:
            return self._apply(item, command, now, policy, ())
        if mode is _WHEN_DUE:
            deadline = _next_deadline(item, policy)
            if deadline is None or (deadline > now and deadline > item.clock):
                return self._apply(item, command, now, policy, ())  # nothing lapses at now
        lapsed = self._apply(item, _LAPSE, now, policy, ())
        return self._apply(lapsed.item, command, now, policy, lapsed.effects)

    def explain(
        self,
        item: WorkItem,
        command: Command,
        now: datetime,
        policy: Policy | None = None,
        dialect: Dialect | None = None,
    ) -> Explanation:
        """The outcome ``command`` would have at ``now``, with the rule and guard values that decided it."""
        if dialect is not None and dialect is not self.dialect:
            return self.in_dialect(dialect).explain(item, command, now, policy)
        if policy is None:
            policy = self.dialect.policy
        outcome = self.step(item, command, now, policy)
        lapse = None
        met = item
        if type(command) is not Lapse:
            lapsed = self.step(item, _LAPSE, now, policy)
            if isinstance(lapsed, Accepted):
                lapse, met = lapsed.rule, lapsed.item
        at = max(aware(now), met.clock)
        entry = self.table[met.state, command.trigger]
        values = tuple((g, self._guards[g](met, command, at, policy)) for g in entry.guards)
        return Explanation(outcome, outcome.rule, met.state, values, lapse)

    def accepts(
        self, item: WorkItem, now: datetime, policy: Policy | None = None, dialect: Dialect | None = None
    ) -> frozenset[Trigger]:
        """The triggers for which some command would change the item at ``now`` (after any lapse due then)."""
        if dialect is not None and dialect is not self.dialect:
            return self.in_dialect(dialect).accepts(item, now, policy)
        if policy is None:
            policy = self.dialect.policy
        met = self.step(item, _LAPSE, now, policy).item
        at = max(aware(now), met.clock)
        found = set()
        for trigger in Trigger:
            entry = self.table[met.state, trigger]
            fixed = {g: self._guards[g](met, _LAPSE, at, policy) for g in entry.guards if g not in COMMAND_GUARDS}
            for index, rule in enumerate(entry.rules):
                bits = {g: bool(index >> k & 1) for k, g in enumerate(entry.guards)}
                if rule.kind is Kind.ACCEPT and all(bits[g] == v for g, v in fixed.items()):
                    found.add(trigger)
        return frozenset(found)


_OUTCOME: dict[Kind, Any] = {
    Kind.ACCEPT: _accepted,
    Kind.REPLAY: constructor(Replayed),
    Kind.REJECT: constructor(Rejected),
}
"""Unchecked constructors of the outcomes (:func:`~workstate._values.constructor`): step has valid parts."""
_COMMAND_TYPES = frozenset({Deliver, Ack, Heartbeat, Stop, UpdateMetadata, Lapse})

LIFECYCLE = Lifecycle()
"""The spec's lifecycle."""
step = LIFECYCLE.step
explain = LIFECYCLE.explain
accepts = LIFECYCLE.accepts
