"""``record_json``, the stores' fast encoding of a record: exactly the text ``json.dumps`` writes of ``to_record``,
and read back to the same item; the instants' fast rendering and parsing agree with ``render_timestamp`` and
``parse_timestamp`` everywhere workstate holds instants."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from helpers import ENV, SESS, T0, WORK, fresh
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
    InvalidItem,
    Lapse,
    Policy,
    Stop,
    UpdateMetadata,
    WorkItem,
    parse_timestamp,
    render_timestamp,
    step,
)
from workstate._time import EARLIEST, LATEST
from workstate.policy import OnLeaseExpiry
from workstate.record import from_record, record_json, to_record

TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8) | st.sampled_from(['"', "\\", "\n", "é", "\u2028"])
WORKERS = st.one_of(st.none(), st.sampled_from(["w1", "w2"]), TEXT)
COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(Deliver, WORKERS, st.sampled_from([None, 0, 5000])),
    st.builds(Ack, WORKERS),
    st.builds(Heartbeat, st.sampled_from([None, NO_HEARTBEAT]), st.sampled_from([None, 10, 600])),
    st.builds(Stop, st.booleans()),
    st.builds(UpdateMetadata, st.dictionaries(TEXT, st.none() | TEXT, max_size=3)),
    st.just(Lapse()),
)
POLICIES = st.sampled_from([None, Policy(on_lease_expiry=OnLeaseExpiry.STOP), Policy(ack_requires_delivery=True)])
INSTANTS = st.datetimes(min_value=EARLIEST.replace(tzinfo=None), max_value=LATEST.replace(tzinfo=None)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)


def _born(at: datetime, **fields: object) -> WorkItem:
    return WorkItem(id=WORK, environment_id=ENV, session_id=SESS, created_at=at, **fields)  # type: ignore[arg-type]


@st.composite
def reachable_items(draw: st.DrawFn) -> WorkItem:
    """An item reached from a fresh one (created at any instant) by commands at times that move back and forth."""
    dialect = draw(st.sampled_from([QODER, ANTHROPIC]))
    policy = draw(POLICIES)
    now = draw(st.sampled_from([T0]) | INSTANTS.filter(lambda at: at <= LATEST - timedelta(days=30)))
    item = _born(now, data_type=draw(st.sampled_from(["session", "healthcheck"])))
    for command in draw(st.lists(COMMANDS, max_size=12)):
        now = max(EARLIEST, now + timedelta(microseconds=draw(st.integers(-2_000_000, 90_000_000))))
        item = step(item, command, now, policy, dialect).item
    return item


def _reference(item: WorkItem) -> str:
    return json.dumps(to_record(item), separators=(",", ":"), ensure_ascii=False)


@given(reachable_items(), st.booleans())
def test_record_json_is_the_json_of_the_record(item: WorkItem, memo: bool) -> None:
    rendered: dict[datetime, str] | None = {} if memo else None
    text = record_json(item, rendered)
    assert text == _reference(item)
    assert record_json(item, rendered) == text  # a memo filled by the first call changes nothing
    again = from_record(json.loads(text))
    assert again == item
    assert attrs.asdict(again, recurse=False) == attrs.asdict(item, recurse=False)


@given(INSTANTS)
def test_instants_render_and_parse_as_the_spec_functions_do(at: datetime) -> None:
    record = to_record(_born(at))
    assert record["created_at"] == render_timestamp(at)
    assert from_record(record).created_at == parse_timestamp(record["created_at"]) == at


def test_an_instant_of_another_offset_renders_in_utc() -> None:
    east = T0.astimezone(timezone(timedelta(hours=2)))
    item = _born(east)
    assert json.loads(record_json(item))["created_at"] == render_timestamp(T0) == to_record(item)["created_at"]


@pytest.mark.parametrize(
    ("text", "param"),
    [("2026-02-30T08:15:01.000000Z", "created_at"), ("2026-07-01T08:15:60.000000Z", "created_at"), (5, "clock")],
)
def test_a_bad_instant_in_a_record_is_named(text: object, param: str) -> None:
    record = {**to_record(fresh()), param: text}
    with pytest.raises(InvalidItem) as caught:
        from_record(record)
    assert caught.value.param == param


def test_record_json_refuses_what_is_not_an_item() -> None:
    with pytest.raises(InvalidItem):
        record_json(to_record(fresh()))  # type: ignore[arg-type]
