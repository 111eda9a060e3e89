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


PEER_MODULE = """
from workstate import ANTHROPIC
from workstate.testing.mutants import PeerStoppedHeartbeatConflicts
from workstate.testing.target import ReferenceTarget

workstate_dialect = "anthropic"
workstate_conformance_only = "4.3-heartbeat-stopped-reported*"


def test_peer_reference(workstate_conformance_case, workstate_conformance):
    workstate_conformance(lambda: ReferenceTarget(dialect=ANTHROPIC))


def test_peer_mutant(workstate_conformance_case, workstate_conformance):
    workstate_conformance(PeerStoppedHeartbeatConflicts)
"""


def test_a_module_chooses_the_dialect_of_the_suite(tmp_path: object) -> None:
    """``workstate_dialect = "anthropic"``: the cases are the peer suite's (a rule only the peer reaches), the
    reference of the peer passes them, and a peer server that answers qoder's 409 fails them."""
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "test_peer_suite.py").write_text(PEER_MODULE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(folder / "test_peer_suite.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=folder,
    )
    lines = done.stdout.splitlines()
    passed = [line for line in lines if line.startswith("PASSED") and "test_peer_reference[" in line]
    failed = [line for line in lines if line.startswith("FAILED") and "test_peer_mutant[" in line]
    assert passed, done.stdout[-3000:]
    assert all("heartbeat-stopped-reported" in line for line in passed)
    assert len(failed) == len(passed), done.stdout[-3000:]  # every case kills the mutant
