"""Storage records: every reachable item survives the round trip, and bad records are typed errors."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import attrs
import pytest
from helpers import T0, fresh
from hypothesis import given
from hypothesis import strategies as st

from workstate import (
    ANTHROPIC,
    NO_HEARTBEAT,
    QODER,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    InvalidInput,
    InvalidItem,
    Lapse,
    Policy,
    Stop,
    UpdateMetadata,
    WorkItem,
    step,
)
from workstate.policy import OnLeaseExpiry
from workstate.record import RECORD_FIELDS, RECORD_SCHEMA, from_record, to_record

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(Deliver, st.sampled_from([None, "w1", "w2"]), st.sampled_from([None, 0, 5000])),
    st.builds(Ack, st.sampled_from([None, "w1", "w2"])),
    st.builds(Heartbeat, st.sampled_from([None, NO_HEARTBEAT]), st.sampled_from([None, 10, 600])),
    st.builds(Stop, st.booleans()),
    st.builds(UpdateMetadata, st.dictionaries(st.sampled_from("abc"), st.sampled_from(["x", "yy", None]), max_size=2)),
    st.just(Lapse()),
)
POLICIES = st.sampled_from([None, Policy(on_lease_expiry=OnLeaseExpiry.STOP), Policy(ack_requires_delivery=True)])


@st.composite
def reachable_items(draw: st.DrawFn) -> WorkItem:
    """An item reached from a fresh one by commands at times that move back and forth, in either dialect."""
    dialect = draw(st.sampled_from([QODER, ANTHROPIC]))
    policy = draw(POLICIES)
    item = fresh(data_type=draw(st.sampled_from(["session", "healthcheck"])))
    now = T0
    for command in draw(st.lists(COMMANDS, max_size=12)):
        now += timedelta(microseconds=draw(st.integers(-2_000_000, 90_000_000)))
        item = step(item, command, now, policy, dialect).item
    return item


@given(reachable_items())
def test_every_reachable_item_survives_the_round_trip(item: WorkItem) -> None:
    record = to_record(item)
    assert set(record) == set(RECORD_FIELDS) and record["schema"] == RECORD_SCHEMA
    again = from_record(json.loads(json.dumps(record)))  # through JSON, as a store keeps it
    assert again == item
    assert attrs.asdict(again, recurse=False) == attrs.asdict(item, recurse=False)  # every field, hash=False ones too


def test_the_record_names_every_field_of_the_item() -> None:
    assert ("schema", *(field.name for field in attrs.fields(WorkItem))) == RECORD_FIELDS


def _record(**changes: Any) -> dict[str, Any]:
    return {**to_record(fresh()), **changes}


@pytest.mark.parametrize(
    ("record", "param"),
    [
        ({**_record(), "schema": 2}, "schema"),
        ({**_record(), "schema": True}, "schema"),
        ({k: v for k, v in _record().items() if k != "schema"}, "schema"),
        ({k: v for k, v in _record().items() if k != "clock"}, "clock"),
        ({**_record(), "colour": "red"}, "colour"),
        (_record(created_at=12), "created_at"),
        (_record(created_at="yesterday"), "created_at"),
        (_record(state="asleep"), "state"),
        (_record(version=-1), "version"),
        (_record(acknowledged_at="2026-07-01T08:15:01Z"), None),  # queued with an ack instant: inconsistent
        ("not a mapping", "record"),
    ],
)
def test_bad_records_are_typed_errors(record: Any, param: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_record(record)
    assert isinstance(caught.value, InvalidItem)
    assert caught.value.param == param


def test_to_record_refuses_what_is_not_an_item() -> None:
    with pytest.raises(InvalidItem):
        to_record({"id": "work_1"})  # type: ignore[arg-type]
