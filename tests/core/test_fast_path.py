"""The step function's fast path (folded dialect guards, items built as their twin, unchecked outcome constructors)
equals a straightforward reference path: every guard evaluated, ``Entry.decide``, ``attrs.evolve`` through the checked
constructor, outcomes built by ``__init__``."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from helpers import T0, fresh
from hypothesis import given
from hypothesis import strategies as st
from test_record import COMMANDS, POLICIES, reachable_items

from workstate import (
    ANTHROPIC,
    QODER,
    Accepted,
    Ack,
    Command,
    Dialect,
    Lapse,
    Policy,
    Rejected,
    Replayed,
    WorkItem,
    next_deadline,
    step,
)
from workstate.model import ACTIONS, GUARDS, LIFECYCLE, Outcome, dialect_guards
from workstate.policy import OnStartTimeout
from workstate.rules import Kind, State, Trigger

OUTCOMES: dict[Kind, type[Outcome]] = {Kind.ACCEPT: Accepted, Kind.REPLAY: Replayed, Kind.REJECT: Rejected}


def _reference_deadline(item: WorkItem, policy: Policy) -> datetime | None:
    """api.md §5 as plainly as it reads (the step function inlines its own statement of it per state)."""
    if item.state in (State.ACTIVE, State.STOPPING) and item.latest_heartbeat_at is not None:
        assert item.ttl_seconds is not None
        return item.latest_heartbeat_at + timedelta(seconds=item.ttl_seconds)
    if (
        item.state in (State.STARTING, State.STOPPING)
        and item.acknowledged_at is not None
        and policy.on_start_timeout is OnStartTimeout.REQUEUE
    ):
        return item.acknowledged_at + timedelta(seconds=policy.start_timeout_seconds)
    return None


def _reference_apply(item: WorkItem, cmd: Any, now: datetime, policy: Policy, dialect: Dialect, pre: tuple) -> Outcome:
    at = max(now, item.clock)
    entry = LIFECYCLE.in_dialect(dialect).table[item.state, cmd.trigger]
    guards = {**GUARDS, **dialect_guards(dialect)}
    rule = entry.decide({g: guards[g](item, cmd, at, policy) for g in entry.guards})
    if rule.kind is not Kind.ACCEPT:
        return OUTCOMES[rule.kind](item, rule, pre)
    if cmd.trigger is Trigger.LAPSE:
        at = max(_reference_deadline(item, policy) or at, item.clock)
    changes: dict[str, Any] = {
        "state": rule.dest or item.state,
        "version": item.version + 1,
        "clock": max(at, item.clock),
    }
    effects: list[Any] = list(pre)
    written = SimpleNamespace(**changes)  # the actions write their fields here
    for name in rule.actions:
        ACTIONS[name].run(item, cmd, at, policy, written, effects)
    return Accepted(attrs.evolve(item, **vars(written)), rule, tuple(effects))  # evolve runs every check of WorkItem


def reference_step(item: WorkItem, cmd: Command, now: datetime, policy: Policy | None, dialect: Dialect) -> Outcome:
    policy = dialect.policy if policy is None else policy
    if isinstance(cmd, Lapse):
        return _reference_apply(item, cmd, now, policy, dialect, ())
    lapsed = _reference_apply(item, Lapse(), now, policy, dialect, ())
    if not isinstance(lapsed, Accepted):
        return _reference_apply(item, cmd, now, policy, dialect, ())
    return _reference_apply(lapsed.item, cmd, now, policy, dialect, lapsed.effects)


@given(
    reachable_items(),
    st.lists(st.tuples(COMMANDS, st.integers(-3_000_000, 120_000_000)), min_size=1, max_size=6),
    POLICIES,
    st.sampled_from([QODER, ANTHROPIC]),
)
def test_the_fast_path_equals_the_reference_path(
    item: WorkItem, commands: list[tuple[Command, int]], policy: Policy | None, dialect: Dialect
) -> None:
    now = item.clock
    for command, micros in commands:
        now += timedelta(microseconds=micros)
        assert next_deadline(item, policy or dialect.policy) == _reference_deadline(item, policy or dialect.policy)
        fast = step(item, command, now, policy, dialect)
        slow = reference_step(item, command, now, policy, dialect)
        assert type(fast) is type(slow)
        assert fast.rule == slow.rule
        assert fast.effects == slow.effects
        assert attrs.asdict(fast.item, recurse=False) == attrs.asdict(slow.item, recurse=False)
        assert type(fast.item) is WorkItem and fast.item == WorkItem(**attrs.asdict(fast.item, recurse=False))
        item = fast.item


def test_a_built_item_is_frozen_and_hashable_like_a_constructed_one() -> None:
    item = step(fresh(), Ack("w1"), T0).item  # built by the fast path, as its twin
    assert type(item) is WorkItem
    assert hash(item) == hash(WorkItem(**attrs.asdict(item, recurse=False)))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        item.worker_id = "w2"  # type: ignore[misc]


def test_common_commands_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above compares the fast path, not the general one: a command with no lapse due never reaches
    ``Lifecycle._step`` (the general path), in either dialect."""

    def general(*args: object) -> Outcome:
        raise AssertionError("the general path ran")

    item = fresh()
    monkeypatch.setattr(type(LIFECYCLE), "_step", general)
    for dialect in (QODER, ANTHROPIC):
        lifecycle = LIFECYCLE.in_dialect(dialect)
        assert isinstance(lifecycle.step(item, Ack("w1"), T0), Accepted)
        assert isinstance(lifecycle.step(item, Lapse(), T0), Replayed)
    with pytest.raises(AssertionError, match="the general path ran"):
        LIFECYCLE.step(item, Ack("w1"), T0.replace(tzinfo=None))  # a naive now leaves for the checks
