"""Each check of api.md §7 finds what it should, and nothing on good items."""

from datetime import timedelta
from typing import Any

import attrs
import pytest
from helpers import T0, fresh

from workstate import DEFAULT_POLICY, NO_HEARTBEAT, Ack, Heartbeat, OnStartTimeout, Policy, State, Stop, WorkItem, step
from workstate.invariants import (
    INVARIANTS,
    Violation,
    change_problems,
    item_problems,
    lease_problems,
    liveness_problems,
    rejection_problems,
    replay_problems,
    stats_problems,
    timeline_problems,
)


def forged(item: WorkItem, **fields: Any) -> WorkItem:
    """An item the core would refuse to build: fields set past the constructor's checks."""
    copy = attrs.evolve(item)
    for name, value in fields.items():
        object.__setattr__(copy, name, value)
    return copy


def messages(found: list[Violation]) -> list[str]:
    return [v.message for v in found]


def lives() -> list[WorkItem]:
    """One item in each state, built by the core."""
    queued = fresh()
    starting = step(queued, Ack(worker_id="w1"), T0).item
    active = step(starting, Heartbeat(expected_last_heartbeat=NO_HEARTBEAT), T0 + timedelta(seconds=1)).item
    stopping = step(active, Stop(), T0 + timedelta(seconds=2)).item
    stopped = step(stopping, Stop(), T0 + timedelta(seconds=3)).item
    return [queued, starting, active, stopping, stopped]


def test_items_the_core_builds_break_nothing() -> None:
    items = lives()
    assert [i.state for i in items] == list(State)
    for old, new in zip([None, *items], items, strict=False):
        assert item_problems(old, new, DEFAULT_POLICY) == []


def test_timeline_problems() -> None:
    item = fresh()
    assert messages(timeline_problems(forged(item, stopped_at=T0))) == ["queued has stopped_at"]
    assert messages(timeline_problems(forged(item, state=State.STOPPED))) == ["stopped lacks stopped_at"]
    late = forged(item, state=State.STOPPED, stopped_at=T0, acknowledged_at=T0 + timedelta(seconds=1))
    assert [(v.invariant, v.message) for v in timeline_problems(late)] == [
        (3, "stopped_at is not the latest timestamp")
    ]
    early = forged(item, state=State.STARTING, acknowledged_at=T0 - timedelta(seconds=1))
    assert [v.invariant for v in timeline_problems(early)] == [3]


def test_stopped_is_absorbing_and_nothing_vanishes() -> None:
    stopped = lives()[-1]
    assert [v.invariant for v in change_problems(stopped, forged(stopped, state=State.ACTIVE))] == [1]
    moved = forged(stopped, stopped_at=stopped.stopped_at + timedelta(seconds=1))
    assert messages(change_problems(stopped, moved)) == ["a stopped item's stopped_at changed"]
    assert [v.invariant for v in change_problems(stopped, None)] == [6]
    assert change_problems(None, stopped) == []
    assert change_problems(stopped, stopped) == []


def test_rejections_and_replays_change_nothing() -> None:
    item = lives()[1]
    assert rejection_problems(item, item) == [] and replay_problems(item, item) == []
    bumped = forged(item, version=item.version + 1)
    assert messages(rejection_problems(item, bumped)) == ["a rejected request changed version"]
    assert [v.invariant for v in replay_problems(item, bumped)] == [4]


def test_lease_exclusivity() -> None:
    later = T0 + timedelta(seconds=30)
    assert lease_problems([("w1", "a", later), ("w2", "b", later)], T0) == []
    assert lease_problems([("w1", "a", later), ("w2", "a", T0)], T0) == []  # w2's lease ended at T0
    (found,) = lease_problems([("w1", "a", later), ("w2", "a", later)], T0)
    assert (found.invariant, found.work_id) == (7, "a")
    message = "workers w1, w2 each hold an unexpired lease"
    assert str(found) == f"invariant 7, lease exclusivity (a): {message} [invariants.md #7]"


def test_liveness() -> None:
    starting = lives()[1]
    assert liveness_problems(starting, DEFAULT_POLICY) == []
    keep = Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING)
    assert liveness_problems(starting, keep) == []  # the policy lets it wait for its first heartbeat
    stuck = forged(lives()[2], ttl_seconds=None)  # active without a lease: nothing will ever move it
    assert [v.invariant for v in liveness_problems(stuck, DEFAULT_POLICY)] == [8]
    deadline = T0 + timedelta(seconds=DEFAULT_POLICY.start_timeout_seconds)  # acked at T0
    assert liveness_problems(starting, DEFAULT_POLICY, deadline - timedelta(microseconds=1)) == []
    (late,) = liveness_problems(starting, DEFAULT_POLICY, deadline)  # due, and it has not lapsed
    assert late.message == "its deadline 2026-07-01T08:16:01.000000Z passed and it is still starting"


@pytest.mark.parametrize(("depth", "pending", "queued", "broken"), [(1, 2, 3, False), (1, 1, 3, True)])
def test_stats_agree_with_list(depth: int, pending: int, queued: int, broken: bool) -> None:
    found = stats_problems("env_x", depth, pending, queued)
    assert [v.invariant for v in found] == ([9] if broken else [])


def test_every_invariant_is_named() -> None:
    assert sorted(INVARIANTS) == list(range(1, 10))
