"""``workstate simulate``, the command: a broken invariant is exit status 1."""

import io
import json
import random
import shlex
from pathlib import Path

import attrs
import pytest
from helpers import Stubborn
from sigint_helpers import interrupt_after

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


def _json(*argv: str) -> dict[str, object]:
    out = io.StringIO()
    assert main(["simulate", *argv, "--no-progress", "--json"], out) == 0
    document: dict[str, object] = json.loads(out.getvalue())  # nothing but the JSON on stdout
    return document


def test_json_is_the_report_parsed() -> None:
    document = _json("--items", "120", "--workers", "4", "--duration", "30")
    assert document["command"] == (
        "workstate simulate --seed 1 --workers 4 --items 120 --duration 30 --faults 1 --concurrency 4"
    )
    assert document["ok"] is True and document["interrupted"] is False and document["violations"] == []
    items = document["items"]
    assert isinstance(items, dict) and items["created"] == 120
    assert sum(items[k] for k in ("completed", "drained", "stopped_otherwise", "live_at_end")) == 120
    assert set(document) >= {"simulated_seconds", "events", "requests", "requeued", "faults_injected"}
    latency = document["start_latency_seconds"]
    assert isinstance(latency, dict) and set(latency) == {"p50", "p90", "p99", "max"}


def test_json_to_a_file_keeps_the_text(tmp_path: Path) -> None:
    out, path = io.StringIO(), tmp_path / "report.json"
    argv = ["simulate", "--items", "60", "--workers", "3", "--duration", "20", "--no-progress", "--json", str(path)]
    assert main(argv, out) == 0
    assert out.getvalue().startswith("workstate simulate --seed 1 ")
    assert json.loads(path.read_text())["command"] == out.getvalue().splitlines()[0]


def test_policy_is_used_and_repeated_in_the_command_line() -> None:
    document = _json("--items", "60", "--workers", "3", "--duration", "20", "--policy", "min_ttl_seconds=30")
    command = str(document["command"])
    assert command.endswith("--policy min_ttl_seconds=30")
    again = _json(*shlex.split(command)[2:])  # the first line reproduces the run, policy included
    assert {**again, "wall_seconds": None} == {**document, "wall_seconds": None}
    default = _json("--items", "60", "--workers", "3", "--duration", "20")
    assert document["statuses"] != default["statuses"] or document["requests"] != default["requests"]


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("nonsense=1", "the fields: default_ttl_seconds, "),
        ("on_lease_expiry=later", "on_lease_expiry takes requeue | stop"),
        ("ack_requires_delivery=maybe", "takes true | false"),
        ("default_ttl_seconds", "NAME=VALUE"),
    ],
)
def test_a_bad_policy_names_the_fields_or_the_values(
    capsys: pytest.CaptureFixture[str], policy: str, says: str
) -> None:
    assert main(["simulate", "--policy", policy, "--no-progress"]) == 2
    assert says in capsys.readouterr().err


def test_progress_and_no_progress_are_refused_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--progress", "--no-progress"])
    assert exit_.value.code == 2
    assert "not allowed with argument --progress" in capsys.readouterr().err


def test_the_bar_reaches_100_percent_with_an_eta(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--items", "9000", "--workers", "30", "--duration", "60", "--progress"]
    assert main(argv, io.StringIO()) == 0
    frames = capsys.readouterr().err.split("\r")
    assert any("ETA " in frame for frame in frames)  # a frame drawn while running
    assert "] 100% 9,000/9,000 items done" in frames[-1] and "finished in" in frames[-1]


def test_ctrl_c_prints_the_partial_report_and_exits_130() -> None:
    argv = ["simulate", "--items", "200000", "--workers", "1000", "--duration", "3600", "--progress"]
    done = interrupt_after(argv, "items done")
    assert done.status == 130
    assert "Traceback" not in done.err
    assert done.out.startswith("workstate simulate --seed 1 --workers 1000 --items 200000")
    assert "INTERRUPTED (Ctrl-C): a partial report" in done.out
    assert done.err.rstrip().endswith("interrupted")  # the bar's last frame


def test_ctrl_c_with_json_prints_the_partial_document() -> None:
    argv = ["simulate", "--items", "200000", "--workers", "1000", "--duration", "3600", "--progress", "--json"]
    done = interrupt_after(argv, "items done")
    assert done.status == 130 and "Traceback" not in done.err
    document = json.loads(done.out)
    assert document["interrupted"] is True and document["items"]["created"] < 200000


def test_the_readme_tells_the_default_run_as_its_report_does() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    out = io.StringIO()
    assert main(["simulate", "--no-progress"], out) == 0
    command, timing = out.getvalue().splitlines()[:2]
    simulated = timing.split(",")[0]  # "simulated 811 s"
    told = " ".join(readme.split())
    assert f"(the report's second line says how long, in simulated time: `{simulated}`)" in told
    assert "25 worker drivers work through 5,000 items, created over ten simulated minutes (`--duration 600`)" in told
    assert "--workers 25 --items 5000 --duration 600 " in command
