"""The simulator in the peer dialect: the reference server and the worker drivers speak it, every invariant
holds, and the run differs from qoder's where the dialects differ."""

from __future__ import annotations

import io
import random

import pytest

from workstate import ANTHROPIC, QODER, OnStartTimeout
from workstate.cli import main
from workstate.tools.simulate import SimConfig, simulate


def run(**fields: object) -> object:
    return simulate(SimConfig(seed=3, workers=5, items=200, duration=60, **fields), random.Random)  # type: ignore[arg-type]


def test_a_peer_run_keeps_every_invariant_and_differs_where_it_must() -> None:
    peer, qoder = run(dialect=ANTHROPIC), run()
    assert peer.ok and qoder.ok  # type: ignore[attr-defined]
    assert peer.completed > 150  # type: ignore[attr-defined]
    peer_statuses, qoder_statuses = dict(peer.statuses), dict(qoder.statuses)  # type: ignore[attr-defined]
    # No worker conflict and no 409 heartbeat in the peer dialect (a stopped item is reported, a queued one is a
    # 412); a stop of a stopped item is the peer's 409.
    assert "ack 409" not in peer_statuses and "heartbeat 409" not in peer_statuses
    assert "heartbeat 409" in qoder_statuses and "stop 409" not in qoder_statuses
    assert "stop 409" in peer_statuses


def test_the_peer_config_takes_the_dialects_policy_and_its_command_line_reproduces_it() -> None:
    config = SimConfig(dialect=ANTHROPIC)
    assert config.policy.on_start_timeout is OnStartTimeout.KEEP_STARTING
    assert config.policy.start_timeout_seconds == 20.0
    assert SimConfig().policy.on_start_timeout is QODER.policy.on_start_timeout
    report = simulate(SimConfig(seed=2, workers=2, items=20, duration=10, dialect=ANTHROPIC), random.Random)
    command = report.render().splitlines()[0]
    assert command.endswith("--dialect anthropic")
    out = io.StringIO()
    argv = [*command.split()[1:], "--no-progress"]
    assert main(argv, out) == 0
    assert out.getvalue() == report.render() + "\n"


def test_the_dialect_must_be_a_dialect() -> None:
    from workstate.errors import InvalidInput

    with pytest.raises(InvalidInput, match="dialect"):
        SimConfig(dialect="anthropic")  # type: ignore[arg-type]
