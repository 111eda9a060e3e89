"""The pytest plugin: the ``workstate_lockstep`` fixture, registered by entry point, importable without hypothesis."""

import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

import pytest
from hypothesis import Phase

from workstate.testing.lockstep import Disagreement
from workstate.testing.mutants import LifoPoll
from workstate.testing.target import ReferenceTarget


def test_the_fixture_runs_the_kit(workstate_lockstep: Callable[..., None]) -> None:
    workstate_lockstep(ReferenceTarget, max_examples=10, stateful_step_count=15)
    with pytest.raises(Disagreement) as caught:
        workstate_lockstep(LifoPoll, max_examples=50, phases=[Phase.generate], database=None)
    assert len(caught.value.requests) == 1  # the first poll of two queued items


def test_the_plugin_is_registered_for_pytest() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("workstate") == "workstate.testing.plugin"


def test_the_plugin_and_the_targets_import_without_hypothesis() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import workstate.testing, workstate.testing.plugin, workstate.testing.target\n"
        "import workstate.testing.http, workstate.testing.mutants\n"
        "try:\n    import workstate.testing.lockstep\nexcept ImportError:\n    print('lockstep needs hypothesis')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lockstep needs hypothesis"
