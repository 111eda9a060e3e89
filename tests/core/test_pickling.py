"""Values survive pickle, copy and deepcopy unchanged (a worker pool, a cache or a test harness may need them),
including values that hold read-only metadata mappings."""

from __future__ import annotations

import copy
import pickle
from datetime import datetime
from typing import Any

import pytest
from helpers import fresh
from hypothesis import given

from workstate import DEFAULT_POLICY, Command, InvalidItem, Policy, UpdateMetadata, WorkItem, step
from workstate.api.codec import WorkObject
from workstate.testing.strategies import command_sequences, metadata


def round_trips(value: Any) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(value, protocol))
        assert again == value and type(again) is type(value)
    assert copy.deepcopy(value) == value
    assert copy.copy(value) == value


@given(metadata(), command_sequences())
def test_every_item_and_outcome_of_a_lifecycle_round_trips(
    start: dict[str, str], sequence: list[tuple[datetime, Command]]
) -> None:
    item = fresh(metadata=start)
    round_trips(item)
    for now, command in sequence:
        round_trips(command)
        outcome = step(item, command, now)
        round_trips(outcome)
        item = outcome.item
        again = pickle.loads(pickle.dumps(item))
        assert again.metadata == item.metadata
        with pytest.raises(TypeError):
            again.metadata["k"] = "v"  # type: ignore[index]  # still read-only after the trip


def test_policies_commands_and_wire_objects_round_trip() -> None:
    round_trips(DEFAULT_POLICY)
    round_trips(Policy(min_ttl_seconds=1, reclaim_older_than_ms=0))
    round_trips(UpdateMetadata({"a": "1", "b": None}))
    item = fresh(metadata={"a": "1"})
    wire = WorkObject.of(item)
    round_trips(wire)
    assert pickle.loads(pickle.dumps(wire)).metadata == {"a": "1"}


def test_a_tampered_pickle_is_checked_like_a_new_item() -> None:
    reduced = fresh().__reduce__()
    rebuild, (cls, values) = reduced  # type: ignore[misc]
    values["state"] = "stopped"  # stopped without a stopped_at: inconsistent
    with pytest.raises(InvalidItem):
        rebuild(cls, values)
    assert cls is WorkItem
