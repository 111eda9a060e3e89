"""workstate.testing.strategies' reachable work items, and the type strategies it registers."""

import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from workstate import Ack, Command, Deliver, Heartbeat, Lapse, State, Stop, UpdateMetadata, WorkItem
from workstate.invariants import timeline_problems
from workstate.model import consistency_problems
from workstate.testing import strategies as ws
from workstate.testing.lockstep import LockstepTestCase, lockstep_test
from workstate.testing.target import ReferenceTarget

SHAPES = {
    "queued, never delivered": lambda i: i.state is State.QUEUED and i.delivered_at is None,
    "queued, delivered to a worker": lambda i: i.state is State.QUEUED and i.delivered_to is not None,
    "queued again after a start": lambda i: i.state is State.QUEUED and bool(i.metadata) and i.delivered_at is None,
    "starting": lambda i: i.state is State.STARTING,
    "active": lambda i: i.state is State.ACTIVE,
    "active, bound to a worker": lambda i: i.state is State.ACTIVE and i.worker_id is not None,
    "stopping after a heartbeat": lambda i: i.state is State.STOPPING and i.latest_heartbeat_at is not None,
    "stopping before any heartbeat": lambda i: i.state is State.STOPPING and i.started_at is None,
    "stopped from queued": lambda i: i.state is State.STOPPED and i.acknowledged_at is None,
    "stopped by force, never asked to stop": lambda i: i.state is State.STOPPED and i.stop_requested_at is None,
    "stopped after a drain": lambda i: (
        i.state is State.STOPPED and i.stop_requested_at is not None and i.stop_requested_at < i.stopped_at
    ),
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_work_items_reach_every_shape(shape: str) -> None:
    # derandomized: the same search every run (reaching a shape is shown deterministically, never by luck)
    found = find(ws.work_items(), SHAPES[shape], settings=settings(max_examples=5000, database=None, derandomize=True))
    assert SHAPES[shape](found)


@given(ws.work_items())
def test_work_items_are_consistent(item: WorkItem) -> None:
    assert timeline_problems(item) == []
    assert consistency_problems(item) == []


def test_from_type_draws_work_items_and_commands() -> None:
    seen: set[type] = set()
    states: set[State] = set()

    @given(st.from_type(WorkItem), st.from_type(Command))  # type: ignore[arg-type]
    @settings(max_examples=300, database=None)
    def draw(item: WorkItem, command: object) -> None:
        assert isinstance(item, WorkItem)
        states.add(item.state)
        seen.add(type(command))

    draw()
    assert seen == {Deliver, Ack, Heartbeat, Stop, UpdateMetadata, Lapse}
    assert len(states) >= 3
    assert isinstance(find(st.from_type(Lapse), lambda _: True), Lapse)


def test_from_type_needs_no_import_of_the_strategies(tmp_path: Path) -> None:
    test = tmp_path / "test_from_type.py"
    test.write_text(
        textwrap.dedent(
            """
            import sys
            from hypothesis import given, settings, strategies as st
            from workstate import WorkItem

            @settings(max_examples=5, database=None)
            @given(st.from_type(WorkItem))
            def test_it(item):
                assert isinstance(item, WorkItem)
                assert item.id.startswith("work_")
                assert "workstate.testing.strategies" in sys.modules  # imported by the hook's resolver
            """
        )
    )
    assert "workstate.testing.strategies" in sys.modules  # this module's own import
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_lockstep_test_returns_a_typed_test_case() -> None:
    case = lockstep_test(ReferenceTarget, settings=settings(max_examples=2, stateful_step_count=3, database=None))
    assert issubclass(case, LockstepTestCase)
    assert typing.get_type_hints(lockstep_test)["return"] == type[LockstepTestCase]
    assert case.state_machine.policy is not None
    assert case.__test__ is True and LockstepTestCase.__test__ is False
    result = case().run()
    assert result is not None and result.wasSuccessful(), result.errors if result else None
