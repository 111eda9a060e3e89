"""Values, validation, time and the finer points of api.md §4.1 to §4.5 and §5."""

from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import attrs
import pytest
from helpers import ENV, SESS, T0, WORK, fresh, item_in, must, sec

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    Accepted,
    Ack,
    ConflictErrorType,
    Deliver,
    DispatchRequested,
    Heartbeat,
    InvalidCommand,
    InvalidId,
    InvalidInput,
    InvalidItem,
    InvalidMetadata,
    InvalidPolicy,
    InvalidTimestamp,
    Lapse,
    LeaseGranted,
    NaiveDatetime,
    OnStartTimeout,
    Policy,
    Rejected,
    Replayed,
    Requeued,
    State,
    Stop,
    Stopped,
    TimestampMatch,
    Trigger,
    UpdateMetadata,
    WorkItem,
    WorkstateError,
    accepts,
    explain,
    next_deadline,
    parse_timestamp,
    render_timestamp,
    step,
)
from workstate._time import SHOWN, read_timestamp, shown

# --- WorkItem -----------------------------------------------------------------------------------


def test_a_fresh_item_is_queued_with_the_wire_fields() -> None:
    item = fresh(metadata={"job": "build"})
    assert item.state is State.QUEUED
    assert item.type == "work"
    assert item.data == {"type": "session", "id": SESS}
    assert item.version == 0 and item.clock == T0
    assert dict(item.metadata) == {"job": "build"}
    assert item.live and item.lease_deadline is None


def test_items_are_frozen_slotted_and_hashable() -> None:
    item = fresh(metadata={"a": "b"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        item.state = State.ACTIVE  # type: ignore[misc]
    with pytest.raises(TypeError):
        item.metadata["a"] = "c"  # type: ignore[index]
    assert not hasattr(item, "__dict__")
    assert hash(item) == hash(fresh(metadata={"a": "b"}))
    assert isinstance(item.metadata, MappingProxyType)


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"id": "work_"}, InvalidId, "id"),
        ({"id": "work_" + "A" * 65}, InvalidId, "id"),
        ({"id": "job_123"}, InvalidId, "id"),
        ({"environment_id": "env_" + "g-" * 16}, InvalidId, "environment_id"),
        ({"session_id": "Sess_1"}, InvalidId, "session_id"),
        ({"data_type": "job"}, InvalidItem, "data_type"),
        ({"session_id": 7}, InvalidId, "session_id"),
        ({"created_at": datetime(2026, 7, 1)}, NaiveDatetime, "created_at"),
        ({"created_at": "2026-07-01T00:00:00Z"}, NaiveDatetime, "created_at"),
        ({"metadata": {"a": 1}}, InvalidMetadata, "metadata"),
        ({"metadata": ["a"]}, InvalidMetadata, "metadata"),
        ({"worker_id": ""}, InvalidItem, "worker_id"),
        ({"worker_id": 5}, InvalidItem, "worker_id"),
        ({"worker_id": b"w1"}, InvalidItem, "worker_id"),
        ({"delivered_to": ""}, InvalidItem, "delivered_to"),
        ({"delivered_to": 5}, InvalidItem, "delivered_to"),
        ({"state": 5}, InvalidItem, "state"),
        ({"state": "bogus"}, InvalidItem, "state"),
        ({"ttl_seconds": "60"}, InvalidItem, "ttl_seconds"),
        ({"version": -1}, InvalidItem, "version"),
    ],
)
def test_bad_fields_raise_typed_errors_naming_the_field(fields: dict[str, object], error: type, param: str) -> None:
    values: dict[str, object] = {"id": WORK, "environment_id": ENV, "session_id": SESS, "created_at": T0, **fields}
    with pytest.raises(error) as caught:
        WorkItem(**values)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert not isinstance(caught.value, InvalidCommand)  # a field of an item, even when a command checks it alike
    assert isinstance(caught.value, InvalidInput) and isinstance(caught.value, ValueError)
    assert caught.value.status_hint == 400


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"state": "active"}, "active lacks started_at"),
        ({"state": "starting"}, "starting lacks acknowledged_at"),
        ({"acknowledged_at": T0}, "queued has acknowledged_at"),
        ({"state": "stopped"}, "stopped lacks stopped_at"),
        ({"state": "queued", "worker_id": "w1"}, "bound worker"),
        ({"state": "starting", "acknowledged_at": T0 - timedelta(seconds=1)}, "precedes created_at"),
        ({"state": "stopped", "stopped_at": sec(1), "delivered_at": sec(2)}, "stopped_at is not the latest"),
        ({"state": "bogus"}, "state must be one of"),
    ],
)
def test_inconsistent_items_are_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidItem, match=problem):
        fresh(**fields)


def test_metadata_type_errors_are_also_type_errors() -> None:
    with pytest.raises(TypeError):
        fresh(metadata={"a": None})


def test_state_given_as_a_string_becomes_the_enum() -> None:
    item = fresh(state="starting", acknowledged_at=sec(1))
    assert item.state is State.STARTING
    assert item.clock == sec(1)


def test_other_timezones_are_normalized_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    item = WorkItem(id=WORK, environment_id=ENV, session_id=SESS, created_at=T0.astimezone(plus2))
    assert item.created_at.tzinfo is UTC and item.created_at == T0


# --- step: the programming errors ------------------------------------------------------------------


def test_naive_now_raises() -> None:
    with pytest.raises(NaiveDatetime, match="now"):
        step(fresh(), Ack(), datetime(2026, 7, 1))


def test_non_commands_and_non_items_raise() -> None:
    with pytest.raises(InvalidCommand):
        step(fresh(), "ack", T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand):
        step("item", Ack(), T0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "error", "param"),
    [
        (lambda: Heartbeat("yesterday"), InvalidTimestamp, "expected_last_heartbeat"),
        (lambda: Heartbeat(datetime(2026, 7, 1)), NaiveDatetime, "expected_last_heartbeat"),
        (lambda: Heartbeat(12), InvalidCommand, "expected_last_heartbeat"),
        (lambda: Heartbeat(None, 0), InvalidCommand, "desired_ttl_seconds"),
        (lambda: Heartbeat(None, True), InvalidCommand, "desired_ttl_seconds"),
        (lambda: Heartbeat(None, "60"), InvalidCommand, "desired_ttl_seconds"),
        (lambda: Deliver(None, -1), InvalidCommand, "reclaim_older_than_ms"),
        (lambda: Ack(""), InvalidCommand, "worker_id"),
        (lambda: Ack(3), InvalidCommand, "worker_id"),
        (lambda: Stop(force="yes"), InvalidCommand, "force"),
        (lambda: UpdateMetadata({"a": 1}), InvalidMetadata, "metadata"),
        (lambda: UpdateMetadata("a=b"), InvalidMetadata, "metadata"),
    ],
)
def test_bad_command_parameters_raise(make: object, error: type, param: str) -> None:
    with pytest.raises(error) as caught:
        make()  # type: ignore[operator]
    assert caught.value.param == param
    assert isinstance(caught.value, WorkstateError)


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-07-01T08:15:01Z",
        "2026-07-01T08:15:01.000000Z",
        "2026-07-01t08:15:01z",
        "2026-07-01 08:15:01Z",
        "2026-07-01T10:15:01+02:00",
        "2026-07-01T03:15:01.0-05:00",
        "2026-07-01T08:15:01.000000000Z",
    ],
)
def test_rfc3339_forms_parse_to_the_same_instant(text: str) -> None:
    assert parse_timestamp(text) == T0
    assert parse_timestamp(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-07-01T08:15:01",
        "2026-07-01",
        "2026-13-01T00:00:00Z",
        "2026-07-01T08:15:01.0000001Z",
        "2026-07-01T08:15:60Z",
        "",
        "NO_HEARTBEAT",
        "2026-07-01T08:15:01+24:00",
    ],
)
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-07-01T08:15:01.0000001Z",  # RFC 3339, but finer than a microsecond
        "2016-12-31T23:59:60Z",  # a leap second
        "2026-07-01T08:15:60.25+05:30",
        "0000-01-01T00:00:00Z",  # year 0: datetime has none
        "0999-12-31T23:59:59.999999Z",  # before EARLIEST
        "9000-01-01T00:00:00.000001Z",  # after LATEST
        "9999-12-31T23:59:59.999999-01:00",  # past datetime.max once in UTC
        "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC
    ],
)
def test_issue11_5a_an_rfc3339_timestamp_no_instant_can_hold_is_read_as_none(text: str) -> None:
    assert read_timestamp(text) is None
    with pytest.raises(InvalidTimestamp, match="cannot hold"):
        parse_timestamp(text)  # what must be an instant (a body's timestamp, a trace's time) still refuses it
    command = Heartbeat(text)
    assert command.matches_nothing and command.expected_instant is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-07-01T08:15:61Z",
        "2026-07-00T00:00:00Z",
    ],
)
def test_issue11_5a_what_is_not_rfc3339_still_raises(text: str) -> None:
    with pytest.raises(InvalidTimestamp):
        read_timestamp(text)
    with pytest.raises(InvalidTimestamp):
        Heartbeat(text)


def test_leap_days_follow_the_gregorian_calendar() -> None:
    for text in ("2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "0000-02-29T00:00:00Z"):
        read_timestamp(text)  # valid (the last one names no instant workstate holds)
    assert read_timestamp("2000-02-29T00:00:00+23:59") == datetime(2000, 2, 28, 0, 1, tzinfo=UTC)
    assert not Heartbeat(render_timestamp(T0)).matches_nothing
    assert not Heartbeat(NO_HEARTBEAT).matches_nothing and not Heartbeat().matches_nothing


def test_shown_values_are_short_and_escaped() -> None:
    assert shown("abc") == "'abc'"
    assert shown("a\nb\x00\ud800") == "'a\\nb\\x00\\ud800'"
    long = shown("x" * 8_000_000)
    assert long == repr("x" * SHOWN) + "... (8,000,000 characters)"
    assert len(shown(list(range(10**6)))) < 2 * SHOWN
    assert len(shown({"k" * 10**6: ["v" * 10**6] * 10})) < 4 * SHOWN
    assert len(shown(10**4000)) <= SHOWN


def test_rendering_has_six_digits_and_z() -> None:
    assert render_timestamp(T0) == "2026-07-01T08:15:01.000000Z"
    assert render_timestamp(T0.astimezone(timezone(timedelta(hours=-3)))) == "2026-07-01T08:15:01.000000Z"
    assert parse_timestamp(render_timestamp(sec(0.123456))) == sec(0.123456)


# --- Policy -------------------------------------------------------------------------------------


def test_default_policy_reproduces_the_spec() -> None:
    p = DEFAULT_POLICY
    assert (p.default_ttl_seconds, p.min_ttl_seconds, p.max_ttl_seconds) == (60, 10, 600)
    assert p.start_timeout_seconds == 60 and p.on_start_timeout is OnStartTimeout.REQUEUE
    assert p.reclaim_older_than_ms == 5000 and p.workers_polling_window_seconds == 30
    assert (p.metadata_max_keys, p.metadata_max_key_length, p.metadata_max_value_length) == (16, 64, 512)
    assert (p.list_default_limit, p.list_max_limit) == (20, 100)
    assert p.conflict_error_type is ConflictErrorType.INVALID_REQUEST_ERROR
    assert p.timestamp_match is TimestampMatch.INSTANT and p.ack_requires_delivery is False
    assert all(field.metadata["doc"] and field.metadata["spec"] for field in attrs.fields(Policy))


@pytest.mark.parametrize(
    "fields",
    [
        {"default_ttl_seconds": 0},
        {"default_ttl_seconds": 5},
        {"max_ttl_seconds": 1.5},
        {"on_lease_expiry": "stop"},
        {"ack_requires_delivery": 1},
        {"reclaim_older_than_ms": -1},
        {"list_default_limit": 200},
        {"start_timeout_seconds": True},
    ],
)
def test_bad_policies_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidPolicy):
        Policy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", ["x", "60", float("nan"), float("inf"), 60.0, True, False, 0, -5, [60]])
def test_clamp_ttl_refuses_what_a_heartbeat_refuses(ttl: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        DEFAULT_POLICY.clamp_ttl(ttl)  # type: ignore[arg-type]
    assert caught.value.param == "desired_ttl_seconds"
    with pytest.raises(InvalidInput) as also:
        Heartbeat(None, ttl)  # type: ignore[arg-type]
    assert also.value.param == "desired_ttl_seconds"  # the same rule as the heartbeat's (api.md §4.3)


@pytest.mark.parametrize(
    ("ttl", "granted"), [(None, 60), (1, 10), (10, 10), (11, 11), (600, 600), (601, 600), (10**400, 600)]
)
def test_clamp_ttl_grants_what_a_heartbeat_grants(ttl: int | None, granted: int) -> None:
    assert DEFAULT_POLICY.clamp_ttl(ttl) == granted
    assert must(step(item_in(State.STARTING), Heartbeat(None, ttl), sec(5))).ttl_seconds == granted


def test_policy_accepts_zero_reclaim_and_fractional_timeouts() -> None:
    assert Policy(reclaim_older_than_ms=0, start_timeout_seconds=0.5).start_timeout_seconds == 0.5


# --- 4.1 delivery -------------------------------------------------------------------------------


def test_redelivery_overwrites_and_a_delivery_without_worker_clears_it() -> None:
    item = item_in(State.QUEUED)  # delivered to w1 at 1 s
    assert item.delivered_to == "w1"
    item = must(step(item, Deliver("w2"), sec(7)))  # 6 s > 5 s reclaim window
    assert item.delivered_to == "w2" and item.delivered_at == sec(7)
    item = must(step(item, Deliver(None, reclaim_older_than_ms=0), sec(7)))
    assert item.delivered_to is None


def test_reclaim_window_is_inclusive_and_per_request() -> None:
    item = item_in(State.QUEUED)
    assert isinstance(step(item, Deliver("w2"), sec(5.999999)), Rejected)
    assert isinstance(step(item, Deliver("w2"), sec(6)), Accepted)
    assert isinstance(step(item, Deliver("w2", reclaim_older_than_ms=1000), sec(2)), Accepted)


# --- 4.2 ack ------------------------------------------------------------------------------------


def test_ack_binds_the_acks_worker_else_the_delivered_one() -> None:
    assert must(step(item_in(State.QUEUED), Ack(), sec(2))).worker_id == "w1"
    assert must(step(item_in(State.QUEUED, worker=None), Ack("w9"), sec(2))).worker_id == "w9"
    assert must(step(fresh(), Ack(), sec(2))).worker_id is None


def test_ack_requests_a_dispatch_pass_and_stamps_acknowledged_at() -> None:
    out = step(item_in(State.QUEUED), Ack("w1"), sec(2))
    assert isinstance(out, Accepted) and out.effects == (DispatchRequested(),)
    assert out.item.acknowledged_at == sec(2)


def test_ack_with_no_binding_accepts_any_worker_as_a_replay() -> None:
    starting = must(step(fresh(), Ack(), sec(2)))
    assert isinstance(step(starting, Ack("w2"), sec(3)), Replayed)


def test_conflicts_use_the_policys_error_type() -> None:
    out = step(item_in(State.QUEUED), Ack("w2"), sec(2))
    assert isinstance(out, Rejected)
    assert out.error_type() == "invalid_request_error"
    assert out.error_type(Policy(conflict_error_type=ConflictErrorType.CONFLICT_ERROR)) == "conflict_error"
    pre = step(item_in(State.ACTIVE), Heartbeat(NO_HEARTBEAT), sec(5))
    assert isinstance(pre, Rejected) and pre.error_type() == "precondition_failed_error"


# --- 4.3 heartbeat ------------------------------------------------------------------------------


def test_ttl_is_clamped_and_defaults_to_the_policy() -> None:
    starting = item_in(State.STARTING)
    for desired, ttl in [(None, 60), (1, 10), (45, 45), (10_000, 600)]:
        out = step(starting, Heartbeat(NO_HEARTBEAT, desired), sec(3))
        assert isinstance(out, Accepted) and out.item.ttl_seconds == ttl
        assert out.effects == (LeaseGranted(sec(3), ttl, sec(3 + ttl)),)
        assert out.item.lease_deadline == sec(3 + ttl) == next_deadline(out.item)


def test_last_heartbeat_strictly_increases_even_when_the_clock_does_not() -> None:
    active = item_in(State.ACTIVE)  # heartbeat at 3 s
    same = must(step(active, Heartbeat(), sec(3)))
    assert same.latest_heartbeat_at == sec(3) + timedelta(microseconds=1)
    back = must(step(same, Heartbeat(), sec(-100)))
    assert back.latest_heartbeat_at == sec(3) + timedelta(microseconds=2)


def test_precondition_matches_instants_in_any_spelling_by_default() -> None:
    active = item_in(State.ACTIVE)
    assert isinstance(step(active, Heartbeat("2026-07-01T10:15:04+02:00"), sec(5)), Accepted)
    assert isinstance(step(active, Heartbeat("2026-07-01T10:15:04.000001+02:00"), sec(5)), Rejected)


def test_exact_timestamp_matching_compares_strings() -> None:
    exact = Policy(timestamp_match=TimestampMatch.EXACT)
    active = item_in(State.ACTIVE, policy=exact)
    assert isinstance(step(active, Heartbeat("2026-07-01T08:15:04.000000Z"), sec(5), exact), Accepted)
    assert isinstance(step(active, Heartbeat(sec(3)), sec(5), exact), Accepted)
    assert isinstance(step(active, Heartbeat("2026-07-01T08:15:04Z"), sec(5), exact), Rejected)


def test_no_heartbeat_only_matches_an_item_without_one() -> None:
    assert isinstance(step(item_in(State.STARTING), Heartbeat(NO_HEARTBEAT), sec(3)), Accepted)
    assert isinstance(step(item_in(State.ACTIVE), Heartbeat(NO_HEARTBEAT), sec(5)), Rejected)
    assert isinstance(step(item_in(State.STARTING), Heartbeat(sec(2)), sec(3)), Rejected)


def test_queued_and_stopped_answer_409_before_the_precondition() -> None:
    for state in (State.QUEUED, State.STOPPED):
        out = step(item_in(state), Heartbeat("2026-01-01T00:00:00Z"), sec(5))
        assert isinstance(out, Rejected) and out.status == 409


# --- 4.4 stop -----------------------------------------------------------------------------------


def test_graceful_stop_of_a_queued_item_stamps_both_times() -> None:
    out = step(item_in(State.QUEUED), Stop(), sec(5))
    assert isinstance(out, Accepted)
    assert out.item.stop_requested_at == out.item.stopped_at == sec(5)


def test_forced_stop_leaves_stop_requested_at_alone() -> None:
    stopping = item_in(State.STOPPING)
    out = must(step(stopping, Stop(force=True), sec(9)))
    assert out.stop_requested_at == stopping.stop_requested_at and out.stopped_at == sec(9)
    assert must(step(item_in(State.ACTIVE), Stop(force=True), sec(9))).stop_requested_at is None


# --- 4.5 metadata -------------------------------------------------------------------------------


def test_metadata_upserts_and_deletes_in_every_state() -> None:
    for state in State:
        item = must(step(item_in(state), UpdateMetadata({"a": "1", "b": "2"}), sec(5)))
        item = must(step(item, UpdateMetadata({"a": None, "b": "3", "gone": None}), sec(5)))
        assert dict(item.metadata) == {"b": "3"}


def test_metadata_limits_apply_after_the_merge() -> None:
    full = must(step(fresh(), UpdateMetadata({f"k{i}": "v" for i in range(16)}), sec(1)))
    assert isinstance(step(full, UpdateMetadata({"one-more": "v"}), sec(1)), Rejected)
    assert isinstance(step(full, UpdateMetadata({"k0": None, "one-more": "v"}), sec(1)), Accepted)
    assert isinstance(step(fresh(), UpdateMetadata({"k" * 64: "v" * 512}), sec(1)), Accepted)
    for patch in ({"k" * 65: "v"}, {"k": "v" * 513}, {"": "v"}):
        out = step(fresh(), UpdateMetadata(patch), sec(1))
        assert isinstance(out, Rejected) and out.status == 400


# --- 5 time and leases --------------------------------------------------------------------------


def test_lapse_requeues_at_the_deadline_and_clears_the_claim() -> None:
    active = item_in(State.ACTIVE)  # lease until 63 s
    out = step(active, Lapse(), sec(500))
    assert isinstance(out, Accepted) and out.effects == (Requeued(sec(63), State.ACTIVE),)
    queued = out.item
    assert queued.state is State.QUEUED and queued.clock == sec(63)
    assert (queued.worker_id, queued.delivered_at, queued.acknowledged_at, queued.ttl_seconds) == (
        None,
        None,
        None,
        None,
    )
    assert isinstance(step(queued, Deliver("w2"), sec(63)), Accepted)  # deliverable at once


def test_a_lapse_due_at_now_is_applied_before_the_command_and_reported() -> None:
    out = step(item_in(State.ACTIVE), Heartbeat(sec(3)), sec(100))
    assert isinstance(out, Rejected) and out.rule.name == "heartbeat-queued"
    assert out.effects == (Requeued(sec(63), State.ACTIVE),)
    assert out.item.state is State.QUEUED


def test_the_deadline_instant_itself_has_lapsed() -> None:
    assert step(item_in(State.ACTIVE), Heartbeat(), sec(63)).item.state is State.QUEUED
    assert step(item_in(State.ACTIVE), Heartbeat(), sec(62.999999)).item.state is State.ACTIVE


def test_stopping_stops_at_its_deadline_with_or_without_a_lease() -> None:
    leased = must(step(item_in(State.ACTIVE), Stop(), sec(10)))
    assert must(step(leased, Lapse(), sec(999))).stopped_at == sec(63)
    unleased = item_in(State.STOPPING)  # acked at 2 s, never heartbeated
    out = step(unleased, Lapse(), sec(999))
    assert isinstance(out, Accepted) and out.effects == (Stopped(sec(62)),)


def test_keep_starting_policy_never_times_out() -> None:
    keep = Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING)
    starting = item_in(State.STARTING, policy=keep)
    assert next_deadline(starting, keep) is None
    assert step(starting, Lapse(), sec(10**6), keep).item is starting


def test_time_going_backwards_stamps_at_the_items_clock() -> None:
    queued = item_in(State.QUEUED)  # delivered at 1 s
    out = must(step(queued, Ack("w1"), sec(-50)))
    assert out.acknowledged_at == sec(1) and out.clock == sec(1)


# --- queries ------------------------------------------------------------------------------------


def test_explain_names_the_rule_and_the_guards() -> None:
    why = explain(item_in(State.QUEUED), Ack("w2"), sec(2))
    assert why.rule.name == "ack-claimed-by-another" and why.rule.section == "4.2"
    assert dict(why.guards)["worker_conflict"] is True
    assert why.outcome.status == 409 and why.lapse is None
    assert "ack-claimed-by-another" in str(why) and "409" in str(why)


def test_explain_reports_a_lapse_applied_first() -> None:
    why = explain(item_in(State.ACTIVE), Ack("w1"), sec(100))
    assert why.lapse is not None and why.lapse.name == "lease-expired"
    assert why.state is State.QUEUED and why.rule.name == "ack"


def test_explain_changes_nothing_and_agrees_with_step() -> None:
    item = item_in(State.ACTIVE)
    assert explain(item, Stop(), sec(9)).outcome == step(item, Stop(), sec(9))


def test_accepts_lists_what_can_change_the_item() -> None:
    assert accepts(item_in(State.QUEUED), sec(2)) == {
        Trigger.DELIVER,
        Trigger.ACK,
        Trigger.STOP,
        Trigger.FORCE_STOP,
        Trigger.UPDATE_METADATA,
    }
    assert accepts(item_in(State.QUEUED), sec(2), Policy(ack_requires_delivery=True)) >= {Trigger.ACK}
    assert Trigger.ACK not in accepts(fresh(), sec(2), Policy(ack_requires_delivery=True))
    assert accepts(item_in(State.ACTIVE), sec(5)) == {
        Trigger.HEARTBEAT,
        Trigger.STOP,
        Trigger.FORCE_STOP,
        Trigger.UPDATE_METADATA,
    }
    assert accepts(item_in(State.STOPPED), sec(5)) == {Trigger.UPDATE_METADATA}
    assert Trigger.DELIVER in accepts(item_in(State.ACTIVE), sec(100))  # it lapsed back to queued


# --- found by review: edges of the value domain ---------------------------------------------------

PLUS5 = timezone(timedelta(hours=5))


def test_items_whose_clock_precedes_creation_or_that_were_delivered_to_nobody_are_refused() -> None:
    with pytest.raises(InvalidItem, match="clock"):
        fresh(clock=T0 - timedelta(days=1))
    with pytest.raises(InvalidItem, match="delivered_to"):
        fresh(delivered_to="w1")


def test_a_lapse_never_stamps_behind_the_items_timeline() -> None:
    # stop requested after the start deadline would have passed under another policy
    keep = Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING)
    stopping = must(step(must(step(fresh(), Ack("w1"), T0, keep)), Stop(), sec(300), keep))
    stopped = must(step(stopping, Lapse(), sec(400)))
    assert stopped.stopped_at == sec(300) >= stopping.stop_requested_at  # type: ignore[operator]
    consistent = fresh(state="stopping", acknowledged_at=T0, stop_requested_at=sec(100))
    after = step(consistent, UpdateMetadata({"a": "b"}), sec(200)).item
    assert after.stopped_at is not None and after.stopped_at >= sec(100)


@pytest.mark.parametrize(
    "make",
    [
        lambda: step(item_in(State.QUEUED), Deliver("w2", reclaim_older_than_ms=10**400), sec(9)),
        lambda: step(fresh(), Ack(), datetime.max.replace(tzinfo=UTC) - timedelta(seconds=30)),
        lambda: step(fresh(), Ack(), datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))),
        lambda: WorkItem(id=WORK, environment_id=ENV, session_id=SESS, created_at=datetime.min.replace(tzinfo=PLUS5)),
        lambda: Heartbeat(datetime(999, 1, 2, tzinfo=UTC)),
        lambda: parse_timestamp("\uff12\uff10\uff12\uff16-07-01T08:00:00Z"),  # full-width digits
        lambda: Policy(reclaim_older_than_ms=10**17),
        lambda: Policy(start_timeout_seconds=float("inf")),
        lambda: Policy(start_timeout_seconds=4e-7),
        lambda: fresh(state="active", acknowledged_at=T0, started_at=T0, latest_heartbeat_at=T0, ttl_seconds=10**20),
        lambda: step(fresh(), Ack(), T0, "strict"),  # type: ignore[arg-type]
        lambda: step(fresh(), Ack(), T0, dialect="anthropic"),  # type: ignore[arg-type]
        lambda: step(fresh(), Ack(), T0, dialect={}),  # type: ignore[arg-type]
        lambda: next_deadline(None),  # type: ignore[arg-type]
    ],
)
def test_out_of_domain_values_raise_typed_errors_not_tracebacks(make: object) -> None:
    try:
        result = make()  # type: ignore[operator]
    except InvalidInput:
        return
    # the only acceptable non-raising case: a huge reclaim window simply means "not yet reclaimable"
    assert isinstance(result, Rejected) and result.rule.name == "deliver-not-reclaimable"


def test_a_timezone_that_lies_is_a_typed_error() -> None:
    class Liar(timezone.__base__):  # type: ignore[misc,name-defined]
        def utcoffset(self, dt: object) -> timedelta:
            return timedelta(hours=30)

    with pytest.raises(InvalidTimestamp):
        step(fresh(), Ack(), datetime(2026, 7, 1, tzinfo=Liar()))


def test_metadata_updates_do_not_move_the_timeline() -> None:
    active = item_in(State.ACTIVE)  # heartbeat at 3 s
    noted = must(step(active, UpdateMetadata({"a": "b"}), sec(20)))
    assert noted.clock == active.clock
    assert must(step(noted, Heartbeat(), sec(15))).latest_heartbeat_at == sec(15)


@pytest.mark.parametrize("created_at", [None, "", 0])
def test_an_item_without_a_usable_created_at_is_refused_by_name(created_at: object) -> None:
    with pytest.raises(NaiveDatetime) as caught:
        WorkItem(id=WORK, environment_id=ENV, session_id=SESS, created_at=created_at)  # type: ignore[arg-type]
    assert caught.value.param == "created_at"
