"""The lifecycle, to look at and to ask: the scripted walk of one item's life, the representative items
``explain`` asks about, and the one-line answers.

Pure: it returns lines and values, never prints (the commands in :mod:`workstate.cli.walk` and
:mod:`workstate.cli.explain` do). Everything shown is derived: the diagrams and tables from the rule table
(:mod:`workstate.tools.docgen`), the walk and the answers of ``explain`` from :func:`workstate.explain`
on an item walked to the asked state by :func:`workstate.step`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from .._time import UTC, render_timestamp
from ..dialect import QODER, Dialect
from ..errors import InvalidInput
from ..model import (
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    Explanation,
    Heartbeat,
    Lapse,
    Rejected,
    Stop,
    UpdateMetadata,
    WorkItem,
    explain,
    next_deadline,
    step,
)
from ..policy import Policy
from ..rules import Kind, State, Trigger

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WORKER = "w1"
OPERATIONS = tuple(str(trigger) for trigger in Trigger)
"""What can happen to one item, spelled as the rules spell their triggers (:class:`~workstate.rules.Trigger`):
``deliver``, ``ack``, ``heartbeat``, ``stop``, ``force_stop``, ``update_metadata``, ``lapse`` (time passing)."""

ALIASES = {"poll": "deliver", "update": "update_metadata"}
"""The other spellings ``workstate explain --op`` accepts, each for the operation it names: ``poll`` (the
endpoint whose answer delivers the item) and ``update`` (the endpoint that updates metadata). ``stop`` with
``force=True`` is ``force_stop``."""


def operation(op: str, *, force: bool = False) -> str:
    """The trigger spelling (one of :data:`OPERATIONS`) of ``op``, an operation or an alias; ``stop`` with
    ``force`` is ``force_stop``. Anything else raises :class:`~workstate.errors.InvalidInput`."""
    name = ALIASES.get(op, op)
    if name == "stop" and force:
        name = "force_stop"
    if name not in OPERATIONS:
        raise InvalidInput(f"no operation {op!r}: one of {', '.join(OPERATIONS)} (or {', '.join(ALIASES)})")
    return name


def vars_of(command: Command) -> dict[str, object]:
    return {f.name: getattr(command, f.name) for f in attrs.fields(type(command)) if f.init}


def walk(out: list[str], dialect: Dialect = QODER, policy: Policy | None = None) -> WorkItem:
    """Walk one item through a whole life (with the mistakes workers make), appending each step to ``out``.

    It reads no clock: the walk runs on a fixed, made-up timeline (from :data:`T0`), so its lines are the same
    on every machine. ``workstate walk`` prints them. The rules are ``dialect``'s, under ``policy`` (default:
    the dialect's). Instants are rendered as RFC 3339, states by name (:func:`show`).
    """
    document, item = _walk(dialect, policy)
    out.append(f"A work item's life, starting at {document['start']} (t = seconds after that)")
    out.append("")
    for step_ in document["items"][0]["steps"]:
        mark = "+" if step_["accepted"] else "x"
        out.append(f"t={step_['t']:>5g}  {mark} {step_['story']}")
        rule = f"[api.md §{step_['section']} {step_['rule']}]"
        out.append(f"          {step_['command']} -> {step_['status']} {step_['state']}  {rule}")
        out.extend(f"          effect: {effect}" for effect in step_["effects"])
    out.append("")
    out.append("A second item: acked, then the worker vanishes.")
    lapse = document["items"][1]["steps"][-1]
    out.append(f"t={lapse['t']:>5g}  + time passes -> {lapse['state']}  [api.md §{lapse['section']} {lapse['rule']}]")
    out.extend(f"          effect: {effect}" for effect in lapse["effects"])
    return item


def _step_json(
    offset: float, story: str, command: Command, why: Explanation, dialect: Dialect, policy: Policy
) -> dict[str, Any]:
    outcome = why.outcome
    rejected = isinstance(outcome, Rejected)
    return {
        "t": offset,
        "at": render_timestamp(T0 + timedelta(seconds=offset)),
        "story": story,
        "trigger": str(why.rule.trigger),
        "command": show(command),
        "accepted": not rejected,
        "status": outcome.status,
        "error_type": outcome.error_type(policy, dialect) if isinstance(outcome, Rejected) else None,
        "state": str(outcome.item.state),
        "rule": why.rule.name,
        "section": why.rule.section,
        "effects": [show(effect) for effect in outcome.effects],
    }


def walk_json(dialect: Dialect = QODER, policy: Policy | None = None) -> dict[str, Any]:
    """The walk of :func:`walk` as a JSON-ready document (``workstate walk --json``; the shape is docs/cli.md's):
    ``{"start", "dialect", "items": [{"id", "steps": [{"t", "at", "story", "trigger", "command", "accepted",
    "status", "error_type", "state", "rule", "section", "effects"}]}]}``."""
    return _walk(dialect, policy)[0]


def _walk(dialect: Dialect, policy: Policy | None) -> tuple[dict[str, Any], WorkItem]:
    """The walk's document and the first item as the walk leaves it."""
    policy = dialect.policy if policy is None else policy
    item = WorkItem(
        id="work_019f3be4fd2475d9a784bf2c739e1194",
        environment_id="env_019e64e01a137caf953ac2ac7b42ec5c",
        session_id="sess_019f3be3fa66750bb9a1fbcde85b5fe1",
        created_at=T0,
        metadata={"job": "build"},
    )
    first_token = T0 + timedelta(seconds=4)
    script: list[tuple[float, str, Command]] = [
        (1, "poll delivers the item to w1", Deliver(worker_id="w1")),
        (2, "w2 tries to ack it", Ack(worker_id="w2")),
        (3, "w1 acks", Ack(worker_id="w1")),
        (3.5, "w1 retries the ack (safe)", Ack(worker_id="w1")),
        (4, "w1's first heartbeat", Heartbeat(expected_last_heartbeat=NO_HEARTBEAT, desired_ttl_seconds=30)),
        (20, "w2 heartbeats with a stale token", Heartbeat(expected_last_heartbeat=NO_HEARTBEAT)),
        (19, "w1 heartbeats, clock 1 s behind", Heartbeat(expected_last_heartbeat=first_token)),
        (25, "the job reports progress", UpdateMetadata({"progress": "50%"})),
        (30, "someone asks for a graceful stop", Stop()),
        (34, "w1 heartbeats and learns: stopping", Heartbeat()),
        (40, "w1 drained and confirms", Stop()),
        (41, "a late stop is harmless", Stop(force=True)),
    ]
    steps: list[dict[str, Any]] = []
    for offset, story, command in script:
        why = explain(item, command, T0 + timedelta(seconds=offset), policy, dialect)
        steps.append(_step_json(offset, story, command, why, dialect, policy))
        item = why.outcome.item
    lost = WorkItem(
        id="work_019f3be4fd2475d9a784bf2c739e1195",
        environment_id=item.environment_id,
        session_id="sess_019f3be3fa66750bb9a1fbcde85b5fe2",
        created_at=T0,
    )
    acked = explain(lost, Ack(worker_id="w3"), T0, policy, dialect)
    lost_steps = [_step_json(0, "w3 acks", Ack(worker_id="w3"), acked, dialect, policy)]
    why = explain(acked.outcome.item, Lapse(), T0 + timedelta(seconds=90), policy, dialect)
    lost_steps.append(_step_json(90, "time passes", Lapse(), why, dialect, policy))
    document = {
        "start": render_timestamp(T0),
        "dialect": dialect.name,
        "items": [{"id": str(item.id), "steps": steps}, {"id": str(lost.id), "steps": lost_steps}],
    }
    return document, item


def list_rules(out: list[str], dialect: Dialect | None = None) -> None:
    """Append every rule of the lifecycle to ``out``, one line each (``workstate rules`` prints them): every rule
    of the declaration, or (``dialect`` given) those the dialect reaches."""
    from .docgen import rules_in

    for rule in rules_in(dialect):
        out.append(rule.text)


# How a representative item reaches each state: the worker loop of api.md §8, one step at a time.
_PATH: tuple[tuple[float, Command], ...] = (
    (0, Deliver(worker_id=WORKER)),
    (1, Ack(worker_id=WORKER)),
    (2, Heartbeat(expected_last_heartbeat=NO_HEARTBEAT)),
    (3, Stop()),
    (4, Stop()),
)


def representative(
    state: State, *, delivered: bool = True, dialect: Dialect = QODER, policy: Policy | None = None
) -> tuple[WorkItem, list[str]]:
    """An item in ``state``, walked there by :func:`step` along a worker's loop (``dialect``'s rules, under
    ``policy``, default the dialect's), and what that assumes. A policy under which the loop cannot reach
    ``state`` raises :class:`~workstate.errors.InvalidInput`."""
    item = WorkItem(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "1" * 32, created_at=T0
    )
    steps: list[str] = []
    path = _PATH if delivered else _PATH[1:]
    if state is not State.QUEUED:
        for offset, command in path:
            outcome = step(item, command, T0 + timedelta(seconds=offset), policy, dialect=dialect)
            if not isinstance(outcome, Accepted):
                raise InvalidInput(f"under this policy a worker's loop cannot reach {state}: {outcome.rule.text}")
            item = outcome.item
            steps.append(f"{type(command).__name__}")
            if item.state is state:
                break
    elif delivered:
        item = step(item, path[0][1], T0, policy, dialect=dialect).item
        steps.append("Deliver")
    if item.state is not state:
        raise InvalidInput(f"under this policy a worker's loop cannot reach {state}")
    assumed = [
        f"item walked to {state} by {' -> '.join(steps) or 'nothing: fresh'}"
        + (f" (bound to Worker-ID {item.worker_id})" if item.worker_id else "")
    ]
    if state is State.QUEUED:
        assumed.append(f"delivered to {WORKER} by a poll" if delivered else "never delivered by a poll")
    if item.latest_heartbeat_at is not None:
        assumed.append(f"latest heartbeat {render_timestamp(item.latest_heartbeat_at)}")
    return item, assumed


def render_value(value: Any) -> str:
    """One field's value as :func:`show` prints it: an instant in RFC 3339 (:func:`render_timestamp`), a state
    or any enum by its name, a mapping as a dict, anything else as its repr."""
    if isinstance(value, datetime):
        return render_timestamp(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {render_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def show(value: Any) -> str:
    """A command or effect as ``Name(field=value, ...)``, instants in the spec's rendering, defaults left out."""
    parts = []
    for field in attrs.fields(type(value)):
        v = getattr(value, field.name)
        if not field.init or v == field.default:
            continue
        shown = render_value(v)
        parts.append(f"{field.name}={shown}")
    return f"{type(value).__name__}({', '.join(parts)})"


def explain_json(
    why: Explanation, state: State, op: str, assumed: Sequence[str], dialect: Dialect, policy: Policy
) -> dict[str, Any]:
    """``workstate explain --json``: the answer of :func:`explain_case` as a JSON-ready document (docs/cli.md)."""
    outcome, rule = why.outcome, why.rule
    rejected = isinstance(outcome, Rejected)
    return {
        "state": str(state),
        "op": operation(op),
        "dialect": dialect.name,
        "summary": summary(why, state, op, dialect, policy),
        "accepted": not rejected,
        "status": outcome.status,
        "error_type": outcome.error_type(policy, dialect) if isinstance(outcome, Rejected) else None,
        "message": outcome.reason.message if isinstance(outcome, Rejected) else None,
        "state_after": str(outcome.item.state),
        "rule": {"name": rule.name, "section": rule.section, "kind": rule.kind.value, "text": rule.text},
        "lapse": None if why.lapse is None else {"name": why.lapse.name, "section": why.lapse.section},
        "met_state": str(why.state),
        "guards": {str(guard): value for guard, value in why.guards},
        "effects": [show(effect) for effect in outcome.effects],
        "assumed": list(assumed),
    }


def _command(
    op: str,
    item: WorkItem,
    *,
    worker_id: str | None,
    expected: str | None,
    force: bool,
    metadata: Sequence[str],
) -> Command:
    if op == "deliver":
        return Deliver(worker_id=worker_id)
    if op == "ack":
        return Ack(worker_id=worker_id)
    if op == "heartbeat":
        precondition: datetime | str | None = expected
        if precondition == "latest":
            precondition = item.latest_heartbeat_at or NO_HEARTBEAT
        elif precondition == "stale":
            precondition = T0 - timedelta(seconds=1)
        return Heartbeat(expected_last_heartbeat=precondition)
    if op in ("stop", "force_stop"):
        return Stop(force=op == "force_stop")
    if op == "update_metadata":
        patch = dict(pair.split("=", 1) for pair in metadata) or {"progress": "50%"}
        return UpdateMetadata(patch)
    return Lapse()


def explain_case(
    state: State | str,
    op: str,
    *,
    worker_id: str | None = None,
    expected: str | None = None,
    force: bool = False,
    metadata: Sequence[str] = (),
    undelivered: bool = False,
    expired: bool = False,
    dialect: Dialect = QODER,
    policy: Policy | None = None,
) -> tuple[Explanation, list[str]]:
    """The explanation of ``op`` (one of :data:`OPERATIONS`, or an alias of :data:`ALIASES`; ``stop`` with
    ``force`` is ``force_stop``) on a representative item in ``state``, and the assumptions made: the options
    of ``workstate explain`` (``expected``: ``NO_HEARTBEAT``, ``latest``, ``stale`` or an RFC 3339 timestamp;
    ``metadata``: ``KEY=VALUE`` pairs). A request the core refuses to build (a bad Worker-ID or timestamp) or
    ``expired`` on a state without a deadline raises :class:`~workstate.errors.InvalidInput`. The rules are
    ``dialect``'s, under ``policy`` (default: the dialect's, ``Dialect.policy``)."""
    state = State(state)
    op = operation(op, force=force)
    policy = dialect.policy if policy is None else policy
    item, assumed = representative(state, delivered=not undelivered, dialect=dialect, policy=policy)
    deadline = next_deadline(item, policy)
    if expired:
        if deadline is None:
            raise InvalidInput(f"a {state} item has no deadline that could pass", param="--expired")
        now = deadline
        assumed.append(f"now = {render_timestamp(now)}: the item's deadline has come")
    else:
        now = item.clock + timedelta(seconds=1)
        ahead = f", before the item's deadline {render_timestamp(deadline)} (--expired: at it)" if deadline else ""
        assumed.append(f"now = {render_timestamp(now)}{ahead}")
    command = _command(op, item, worker_id=worker_id, expected=expected, force=force, metadata=metadata)
    changed = [
        f"{f.name}={render_value(getattr(policy, f.name))}"
        for f in attrs.fields(Policy)
        if f.default != getattr(policy, f.name)
    ]
    whose = "the dialect's" if policy == dialect.policy else "the given"
    shown_policy = "default Policy()" if not changed else f"{whose} Policy({', '.join(changed)})"
    dialect_note = "" if dialect == QODER else f", dialect {dialect.name}"
    assumed.append(f"request: {show(command)}, {shown_policy}{dialect_note}")
    return explain(item, command, now, policy, dialect), assumed


def summary(why: Explanation, state: State, op: str, dialect: Dialect = QODER, policy: Policy | None = None) -> str:
    """One line: the status, the result (or ``error.type`` and message, in ``dialect`` under ``policy``, default
    the dialect's) and the deciding rule. ``op`` is named as the rules spell it (:func:`operation`)."""
    outcome, rule = why.outcome, why.rule
    policy = dialect.policy if policy is None else policy
    op = operation(op)
    where = f"{op} on {'an' if state[0] in 'aeiou' else 'a'} {state} item"
    if why.lapse is not None:
        where += f" (first {why.lapse.name} [api.md §{why.lapse.section}]: now {why.state})"
    if isinstance(outcome, Rejected):
        result = f"{outcome.status} {outcome.error_type(policy, dialect)}: {outcome.reason.message}"
    elif rule.kind is Kind.REPLAY and rule.trigger is Trigger.HEARTBEAT:  # a beat that extends is accepted
        result = f"{outcome.status}, item unchanged (replay): state {outcome.item.state}, lease_extended false"
    elif rule.kind is Kind.REPLAY:
        result = f"{outcome.status}, item unchanged (replay)"
    else:
        result = f"{outcome.status}, now {outcome.item.state}"
    return f"{where} -> {result}  [rule {rule.name}, api.md §{rule.section}]"
