"""`workstate verify` within budgets: --max-states, --max-memory and Ctrl-C stop cleanly with a partial report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from workstate.cli import main
from workstate.cli.verify import DEPTH_BOUND, parse_size
from workstate.tools.verify import explore, summary


def test_max_states_stops_with_a_partial_report() -> None:
    full = explore(2, 2, 5)
    partial = explore(2, 2, 5, max_states=100)
    assert partial.incomplete is not None and "100 states" in partial.incomplete
    assert partial.states == 100 < full.states
    assert partial.counterexample is None and partial.depth_reached < 5
    lines = list(summary(partial))
    level = partial.depth_reached
    assert f"no counterexample up to depth {level}, level {level + 1} incomplete" in lines[-1]


def test_should_stop_is_asked_and_its_reason_reported() -> None:
    asked: list[int] = []

    def stop() -> str | None:
        asked.append(1)
        return "enough"

    report = explore(2, 2, 7, should_stop=stop)
    assert asked and report.incomplete == "enough" and report.counterexample is None


def test_the_compact_search_counts_as_the_keyed_one() -> None:
    parents: dict[Any, Any] = {}
    kept = explore(2, 1, 5, parents=parents)
    assert explore(2, 1, 5).states == kept.states == len(parents)


def test_the_command_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--workers", "2", "--items", "2", "--depth", "6", "--quiet", "--max-states", "50"]) == 0
    out = capsys.readouterr().out
    assert "level" in out and "incomplete (the budget of 50 states is spent)" in out
    assert main(["verify", "--workers", "2", "--items", "2", "--depth", "9", "--quiet", "--max-memory", "1K"]) == 0
    assert "incomplete (the memory budget of 1K is spent)" in capsys.readouterr().out
    assert main(["verify", "--max-memory", "lots"]) == 2
    assert "--max-memory takes a size" in capsys.readouterr().err
    assert main(["verify", "--max-states", "0"]) == 2
    assert parse_size("2G") == 2 << 30 and parse_size("500m") == 500 << 20 and parse_size("-1") is None


def test_absurd_depths_are_refused_naming_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--depth", str(DEPTH_BOUND + 1)]) == 2
    assert f"--depth must be from 0 to {DEPTH_BOUND}" in capsys.readouterr().err


def test_help_states_the_bounds_and_the_cost(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("states per second", "bytes per state", "every level", "--max-memory", f"0 to {DEPTH_BOUND}"):
        assert words in text


def test_ctrl_c_prints_the_partial_report_and_exits_130() -> None:
    command = [sys.executable, "-m", "workstate", "verify", "--workers", "2", "--items", "2", "--depth", "30"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    assert child.stderr is not None
    for line in child.stderr:  # progress: the search has begun once a level is done
        if line.startswith("depth 3:"):
            break
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130
    assert "incomplete (interrupted)" in out
    assert "Traceback" not in err + out
