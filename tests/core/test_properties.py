"""Property tests: for any sequence of commands from several workers, with a clock that jumps
(also backwards), the single-item invariants of api.md §7 hold.

The checks below are the test suite's own statement of the invariants, written from the
spec and not from the declaration, so that a wrong declaration fails them; the teeth tests
at the end build broken lifecycles and show that each one is caught.
"""

import os
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs
import pytest
from helpers import BROKEN, T0, fresh
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from workstate import (
    DEFAULT_POLICY,
    LIFECYCLE,
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    Lapse,
    Lifecycle,
    OnLeaseExpiry,
    OnStartTimeout,
    Outcome,
    Policy,
    Rejected,
    Replayed,
    State,
    Stop,
    TimestampMatch,
    UpdateMetadata,
    WorkItem,
    next_deadline,
    render_timestamp,
)

WORKERS = ("w1", "w2", "w3")
WIRE_TIMES = ("created_at", "acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at")

# --- the invariants, stated from the spec ---------------------------------------------------------

# Invariant 2 (and api.md §5: a re-queue clears the bound Worker-ID): what each state must not / must have.
MUST_NOT_HAVE = {
    State.QUEUED: {
        "acknowledged_at",
        "started_at",
        "latest_heartbeat_at",
        "stop_requested_at",
        "stopped_at",
        "worker_id",
    },
    State.STARTING: {"started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at"},
    State.ACTIVE: {"stop_requested_at", "stopped_at"},
    State.STOPPING: {"stopped_at"},
    State.STOPPED: set(),
}
MUST_HAVE = {
    State.QUEUED: set(),
    State.STARTING: {"acknowledged_at"},
    State.ACTIVE: {"started_at", "latest_heartbeat_at"},
    State.STOPPING: {"stop_requested_at"},
    State.STOPPED: {"stopped_at"},
}


def check_agreement(item: WorkItem) -> None:
    """Invariants 2 and 3."""
    for name in MUST_NOT_HAVE[item.state]:
        assert getattr(item, name) is None, f"{item.state} item has {name}"
    for name in MUST_HAVE[item.state]:
        assert getattr(item, name) is not None, f"{item.state} item lacks {name}"
    chain = [item.created_at, item.acknowledged_at, item.started_at, item.latest_heartbeat_at]
    chain = [t for t in chain if t is not None]
    assert chain == sorted(chain), "created <= acknowledged <= started <= latest heartbeat is broken"
    if item.stopped_at is not None:
        assert all(getattr(item, n) is None or getattr(item, n) <= item.stopped_at for n in WIRE_TIMES)


@attrs.define
class World:
    """What the simulated workers believe: each one's fencing token and lease deadline."""

    token: dict[str, datetime | None] = attrs.field(factory=lambda: dict.fromkeys(WORKERS))
    rogue: set[str] = attrs.field(factory=set)  # workers that once heartbeated outside the protocol
    holds_until: dict[str, datetime | None] = attrs.field(factory=lambda: dict.fromkeys(WORKERS))


Check = Callable[[Lifecycle, Policy, WorkItem, Command, datetime, Outcome, World], None]


def rejections_change_nothing(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariant 5: a rejected command returns the identical item (as it stands at now)."""
    if isinstance(out, Rejected):
        assert out.status in (400, 409, 412)
        at_now = lc.step(before, Lapse(), now, policy)
        assert out.item == at_now.item
        if not isinstance(at_now, Accepted):
            assert out.item is before


def ack_replays_are_noops(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariant 4: ack on starting/active by the bound (or an unnamed) worker is 200 and changes nothing."""
    met = lc.step(before, Lapse(), now, policy).item
    same_worker = isinstance(cmd, Ack) and (cmd.worker_id is None or met.worker_id in (None, cmd.worker_id))
    if same_worker and met.state in (State.STARTING, State.ACTIVE):
        assert isinstance(out, Replayed), f"ack replay answered {out.status}"
        assert out.item == met


def stopped_is_absorbing(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariant 1."""
    if before.state is State.STOPPED:
        assert out.item.state is State.STOPPED
        assert [getattr(out.item, n) for n in WIRE_TIMES] == [getattr(before, n) for n in WIRE_TIMES]


def timestamps_agree(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariants 2 and 3, timestamps never going backwards, and a version that counts changes."""
    after = out.item
    check_agreement(after)
    assert after.clock >= before.clock
    for name in (*WIRE_TIMES, "delivered_at"):
        new = getattr(after, name)
        if new is not None and new != getattr(before, name):
            assert new >= before.clock, f"{name} went backwards"
    if after == before:
        assert after.version == before.version
    else:
        assert after.version > before.version


def delivered_worker_can_ack(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Spec 4.1/4.2: the worker a poll just delivered the item to can ack it."""
    if isinstance(cmd, Deliver) and isinstance(out, Accepted) and cmd.worker_id is not None:
        follow = lc.step(out.item, Ack(cmd.worker_id), now, policy)
        assert isinstance(follow, Accepted), f"ack right after delivery answered {follow.status}"
        assert follow.item.state is State.STARTING and follow.item.worker_id == cmd.worker_id


def lazy_expiry_equals_eager(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """api.md §5: a lapse observed lazily gives the item an eager sweep at the deadline gives."""
    deadline = next_deadline(before, policy)
    if deadline is not None and deadline <= max(now, before.clock):
        swept = lc.step(before, Lapse(), deadline, policy)
        assert swept.item.state in (State.QUEUED, State.STOPPED) or swept.item == before
        if isinstance(cmd, Lapse):
            assert out.item == swept.item
        else:
            again = lc.step(swept.item, cmd, now, policy)
            assert again.item == out.item
            assert again.rule == out.rule


def lease_exclusivity(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariant 7, checked inside run_sequence where the heartbeating worker is known."""


def liveness(
    lc: Lifecycle, policy: Policy, before: WorkItem, cmd: Command, now: datetime, out: Outcome, world: World
) -> None:
    """Invariant 8 (default policy): with no further requests, a live item ends queued or stopped."""
    if policy == DEFAULT_POLICY:
        later = out.item.clock + timedelta(days=1)
        assert lc.step(out.item, Lapse(), later, policy).item.state in (State.QUEUED, State.STOPPED)


ALL_CHECKS: tuple[Check, ...] = (
    rejections_change_nothing,
    ack_replays_are_noops,
    stopped_is_absorbing,
    timestamps_agree,
    delivered_worker_can_ack,
    lazy_expiry_equals_eager,
    liveness,
)

# --- generating histories -------------------------------------------------------------------------

policies = st.one_of(
    st.just(DEFAULT_POLICY),
    st.builds(
        Policy,
        on_start_timeout=st.sampled_from(OnStartTimeout),
        on_lease_expiry=st.sampled_from(OnLeaseExpiry),
        ack_requires_delivery=st.booleans(),
        timestamp_match=st.sampled_from(TimestampMatch),
        start_timeout_seconds=st.sampled_from([1.0, 30.0, 60.0]),
        reclaim_older_than_ms=st.sampled_from([0, 5000]),
        metadata_max_keys=st.sampled_from([2, 16]),
    ),
)
jumps = st.one_of(
    st.integers(0, 5_000_000),  # microseconds: small steps forward
    st.integers(-30_000_000, 0),  # a clock that goes backwards
    st.integers(55_000_000, 700_000_000),  # past deadlines
    st.just("deadline"),  # exactly onto the next deadline
)


def draw_command(data: st.DataObject, world: World, item: WorkItem) -> tuple[Command, str | None, bool]:
    """A command, the worker sending it, and whether it follows the heartbeat protocol."""
    kind = data.draw(st.sampled_from(["poll", "ack", "heartbeat", "heartbeat", "stop", "metadata", "lapse"]))
    worker = data.draw(st.sampled_from((*WORKERS, None)))
    if kind == "poll":
        return Deliver(worker, data.draw(st.sampled_from([None, 0, 5000]))), worker, False
    if kind == "ack":
        return Ack(worker), worker, False
    if kind == "heartbeat":
        ttl = data.draw(st.sampled_from([None, 1, 10, 30, 600, 10_000]))
        mode = data.draw(st.sampled_from(["protocol", "protocol", "protocol-text", "none", "stale"]))
        sender = worker or "w1"
        token = world.token[sender]
        if mode == "protocol":
            return Heartbeat(token or NO_HEARTBEAT, ttl), sender, True
        if mode == "protocol-text":
            return Heartbeat(render_timestamp(token) if token else NO_HEARTBEAT, ttl), sender, True
        if mode == "stale":
            offset = data.draw(st.integers(-120_000_000, 120_000_000))
            return Heartbeat(item.clock + timedelta(microseconds=offset), ttl), sender, False
        return Heartbeat(None, ttl), sender, False
    if kind == "stop":
        return Stop(force=data.draw(st.booleans())), worker, False
    if kind == "metadata":
        keys = st.sampled_from(["a", "b", "c", "", "k" * 65])
        values = st.one_of(st.none(), st.sampled_from(["x", "y" * 513]))
        return UpdateMetadata(data.draw(st.dictionaries(keys, values, max_size=3))), worker, False
    return Lapse(), worker, False


def run_sequence(lc: Lifecycle, data: st.DataObject, checks: tuple[Check, ...], exclusivity: bool = False) -> None:
    policy = data.draw(policies)
    item = fresh()
    now = T0
    world = World()
    for _ in range(data.draw(st.integers(1, 40))):
        jump = data.draw(jumps)
        deadline = next_deadline(item, policy)
        now = (deadline or now) if jump == "deadline" else now + timedelta(microseconds=jump)
        cmd, worker, follows_protocol = draw_command(data, world, item)
        out = lc.step(item, cmd, now, policy)
        for check in checks:
            check(lc, policy, item, cmd, now, out, world)
        if isinstance(cmd, Heartbeat) and worker is not None:
            if isinstance(out, Accepted):
                token = out.item.latest_heartbeat_at
                assert token is not None
                if not follows_protocol:
                    world.rogue.add(worker)
                if exclusivity and worker not in world.rogue:
                    for other, until in world.holds_until.items():
                        assert other == worker or other in world.rogue or until is None or until <= token, (
                            f"{worker} got a lease at {token} while {other} holds one until {until}"
                        )
                world.token[worker] = token
                world.holds_until[worker] = (
                    token + timedelta(seconds=out.item.ttl_seconds or 0) if follows_protocol else None
                )
            else:  # 409 or 412: the lease is lost; the worker abandons the item
                world.token[worker] = world.holds_until[worker] = None
        item = out.item


# --- the properties (each at least 1,000 examples under the ci profile) --------------------------


@given(st.data())
def test_single_item_invariants_hold(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, ALL_CHECKS, exclusivity=True)


@given(st.data())
def test_rejected_commands_return_the_identical_item(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, (rejections_change_nothing,))


@given(st.data())
def test_ack_replays_are_noops(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, (ack_replays_are_noops,))


@given(st.data())
def test_lazy_expiry_equals_eager_lapse_at_the_deadline(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, (lazy_expiry_equals_eager,))


@given(st.data())
def test_lease_exclusivity_for_protocol_following_workers(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, (), exclusivity=True)


@given(st.data())
def test_liveness_under_the_default_policy(data: st.DataObject) -> None:
    run_sequence(LIFECYCLE, data, (liveness,))


def test_settings_run_at_least_a_thousand_examples_in_ci() -> None:
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert settings.default.max_examples >= 1000


# --- teeth: broken rule sets the properties must catch --------------------------------------------


@pytest.mark.parametrize("bug", list(BROKEN))
def test_the_property_suite_catches(bug: str) -> None:
    broken = BROKEN[bug]()

    # No shrinking: finding the bug is the point here, not the shortest example.
    @settings(max_examples=1000, database=None, derandomize=True, deadline=None, phases=[Phase.generate])
    @given(st.data())
    def properties(data: st.DataObject) -> None:
        run_sequence(broken, data, ALL_CHECKS, exclusivity=True)

    with pytest.raises(AssertionError):
        properties()


def test_the_unbroken_lifecycle_passes_the_same_harness() -> None:
    @settings(max_examples=200, database=None, derandomize=True, deadline=None)
    @given(st.data())
    def properties(data: st.DataObject) -> None:
        run_sequence(Lifecycle(), data, ALL_CHECKS, exclusivity=True)

    properties()
