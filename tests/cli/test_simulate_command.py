"""``workstate simulate``, the command: a broken invariant is exit status 1."""

import io
import random

import attrs
import pytest
from helpers import Stubborn

import workstate.tools.simulate as sim  # the command imports its engine when it runs: patch it there
from workstate.cli import main
from workstate.tools.simulate import Faults, Report, SimConfig, simulate

SMALL = SimConfig(items=200, workers=6, duration=60, concurrency=2)


def broken_run(seed: int) -> Report:
    return simulate(
        attrs.evolve(SMALL, seed=seed, faults=Faults.scaled(5), worker_factory=Stubborn, items=150), random.Random
    )


def test_the_command_exits_1_on_a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = next(seed for seed in range(1, 30) if not broken_run(seed).ok)
    real = sim.SimConfig
    monkeypatch.setattr(sim, "SimConfig", lambda **kw: real(**kw, worker_factory=Stubborn))
    out = io.StringIO()
    argv = ["simulate", "--items", "150", "--workers", "6", "--duration", "60", "--concurrency", "2"]
    status = main([*argv, "--faults", "5", "--seed", str(broken), "--no-progress"], out)
    assert status == 1
    assert "BROKEN INVARIANTS" in out.getvalue() and f"--seed {broken}" in out.getvalue()
