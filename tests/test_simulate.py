"""``workstate simulate``: deterministic, checks every invariant, and catches a driver that breaks the protocol."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import workstate.simulate as sim
from workstate.cli import main
from workstate.simulate import Faults, SimConfig, simulate
from workstate.worker import Worker

SMALL = SimConfig(items=200, workers=6, duration=60, concurrency=2)


class Stubborn(Worker):
    """A broken driver: it keeps working after a 412 (or any lost lease), as if it were a passing hiccup."""

    def _lose(self, item: Any, now: datetime, reason: str) -> None:
        if not item.started or reason.startswith("the lease ran out"):
            super()._lose(item, now, reason)
            return
        ttl = item.ttl or 10
        item.lease_until = now + timedelta(seconds=ttl)  # "we still hold it"
        item.next_beat = now + timedelta(seconds=ttl / 2)
        item.attempt = 0
        item.retry_at = None


def test_a_run_under_faults_keeps_every_invariant() -> None:
    report = simulate(attrs.evolve(SMALL, faults=Faults.scaled(3)))
    assert report.ok, report.render()
    assert report.created == 200 and report.live_at_end == 0
    assert report.completed > 100
    assert dict(report.requeued).get("lease expired", 0) > 0  # the faults did bite
    assert dict(report.faults_injected).get("crash while running", 0) + dict(report.faults_injected).get("partition", 0)
    assert "every invariant of spec section 7 held" in report.render()


def test_the_same_seed_gives_the_same_report() -> None:
    first = simulate(attrs.evolve(SMALL, seed=7))
    again = simulate(attrs.evolve(SMALL, seed=7))
    other = simulate(attrs.evolve(SMALL, seed=8))
    assert first.render() == again.render()
    assert first.render() != other.render()


def test_without_faults_every_item_completes() -> None:
    report = simulate(attrs.evolve(SMALL, faults=Faults.scaled(0)))
    assert report.ok
    assert report.completed == 200 and report.requeued == () and report.faults_injected == ()


def broken_run(seed: int) -> sim.Report:
    return simulate(attrs.evolve(SMALL, seed=seed, faults=Faults.scaled(5), worker_factory=Stubborn, items=150))


def test_the_simulation_catches_a_driver_that_keeps_working_after_a_412() -> None:
    caught = next(r for r in (broken_run(seed) for seed in range(1, 30)) if not r.ok)
    assert any(v.invariant == 7 for v in caught.violations)
    text = caught.render()
    assert f"reproduce with --seed {caught.seed}" in text and "invariant 7, lease exclusivity" in text
    assert broken_run(caught.seed).violations == caught.violations  # the seed reproduces it
    correct = simulate(attrs.evolve(SMALL, seed=caught.seed, faults=Faults.scaled(5), items=150))
    assert correct.ok, correct.render()  # the same faults, the protocol followed: nothing broken


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    level=st.floats(0, 8),
    workers=st.integers(1, 5),
    concurrency=st.integers(1, 3),
    ttl=st.integers(2, 20),
)
def test_random_faults_break_no_invariant(seed: int, level: float, workers: int, concurrency: int, ttl: int) -> None:
    config = SimConfig(
        seed=seed,
        workers=workers,
        items=40,
        duration=30,
        concurrency=concurrency,
        ttl_seconds=ttl,
        faults=Faults.scaled(level),
        policy=sim.Policy(min_ttl_seconds=1, start_timeout_seconds=20.0),
    )
    report = simulate(config)
    assert report.ok, report.render()
    assert report.created == 40


def test_the_command_prints_a_report_and_exits_0() -> None:
    out = io.StringIO()
    status = main(["simulate", "--items", "100", "--workers", "4", "--duration", "30", "--seed", "3"], out)
    text = out.getvalue()
    assert status == 0
    assert text.startswith("workstate simulate --seed 3 --workers 4 --items 100")
    assert "lifecycles completed" in text and "creation to start" in text


def test_the_command_exits_1_on_a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = next(seed for seed in range(1, 30) if not broken_run(seed).ok)
    real = sim.SimConfig
    monkeypatch.setattr(sim, "SimConfig", lambda **kw: real(**kw, worker_factory=Stubborn))
    out = io.StringIO()
    argv = ["simulate", "--items", "150", "--workers", "6", "--duration", "60", "--concurrency", "2"]
    status = main([*argv, "--faults", "5", "--seed", str(broken), "--no-progress"], out)
    assert status == 1
    assert "BROKEN INVARIANTS" in out.getvalue() and f"--seed {broken}" in out.getvalue()


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--workers", "0"], io.StringIO())
    assert exc.value.code == 2
    for bad in (["--duration", "-1"], ["--duration", "nan"], ["--faults", "-1"], ["--items", "x"], ["--seed", "1.5"]):
        with pytest.raises(SystemExit) as exc:
            main(["simulate", *bad], io.StringIO())
        assert exc.value.code == 2, bad
