"""workstate verify, the command: the garbage collector paused around the search, and the --trace file
(checked before the search, written only when there is a counterexample)."""

import json
import os
from pathlib import Path

import pytest
from helpers import BROKEN

import workstate.tools.verify as verify_module  # the command imports its engine when it runs: patch it there
from workstate.cli import main
from workstate.cli.verify import gc_paused
from workstate.tools.verify import explore


def test_explore_leaves_the_garbage_collector_alone_and_gc_paused_restores_it() -> None:
    import gc

    assert gc.isenabled()
    during: set[bool] = set()
    explore(1, 1, 2, on_step=lambda *_: during.add(gc.isenabled()))
    assert during == {True}  # a library call has no process-wide effect, even while it runs
    during.clear()
    with gc_paused():
        explore(1, 1, 2, on_step=lambda *_: during.add(gc.isenabled()))
    assert during == {False} and gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


SMALL_RUN = ["verify", "--workers", "1", "--items", "1", "--depth", "2"]


@pytest.mark.parametrize("where", ["missing/dir/t.jsonl", ".", ""])
def test_an_unwritable_trace_path_exits_2_before_the_search(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    path = "" if where == "" else str(tmp_path / where)
    assert main([*SMALL_RUN, "--trace", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing searched, nothing reported
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("workstate verify: --trace")
    assert "Traceback" not in captured.err


def test_the_trace_path_is_checked_but_not_touched_when_there_is_nothing_to_write(tmp_path: Path) -> None:
    target = tmp_path / "t.jsonl"
    assert main([*SMALL_RUN, "--quiet", "--trace", str(target)]) == 0
    assert not target.exists()  # no counterexample: no file
    target.write_text("kept\n")
    assert main([*SMALL_RUN, "--quiet", "--trace", str(target)]) == 0
    assert target.read_text() == "kept\n"


def test_a_counterexample_trace_is_written_to_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = BROKEN["ack replay answers 409"]()
    real_explore, real_system = verify_module.explore, verify_module.System
    monkeypatch.setattr(
        verify_module, "explore", lambda w, i, d, lifecycle=None, policy=None, **kw: real_explore(w, i, d, broken, **kw)
    )
    monkeypatch.setattr(verify_module, "System", lambda w, i, *rest: real_system(w, i, broken))
    target = tmp_path / "t.jsonl"
    assert main(["verify", "--workers", "2", "--items", "1", "--depth", "3", "--quiet", "--trace", str(target)]) == 1
    assert f"trace written to {target}" in capsys.readouterr().out
    assert all(json.loads(line)["request"] for line in target.read_text().splitlines())


def test_a_trace_that_fails_at_write_time_exits_2_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = BROKEN["ack replay answers 409"]()
    real_explore, real_system = verify_module.explore, verify_module.System
    target = tmp_path / "t.jsonl"

    def explore_then_lose_the_directory(
        w: int, i: int, d: int, lifecycle: object = None, policy: object = None, **kw: object
    ) -> object:
        report = real_explore(w, i, d, broken, **kw)  # type: ignore[arg-type]
        if os.geteuid() == 0:  # root writes whatever the modes say: put a directory in the file's way
            target.mkdir()
        else:
            tmp_path.chmod(0o500)
        return report

    monkeypatch.setattr(verify_module, "explore", explore_then_lose_the_directory)
    monkeypatch.setattr(verify_module, "System", lambda w, i, *rest: real_system(w, i, broken))
    try:
        assert (
            main(["verify", "--workers", "2", "--items", "1", "--depth", "3", "--quiet", "--trace", str(target)]) == 2
        )
    finally:
        tmp_path.chmod(0o700)
    err = capsys.readouterr().err
    assert err.startswith("workstate verify: --trace: cannot write ") and err.count("\n") == 1


def _ack_by_another() -> object:
    from helpers import declaration

    from workstate.model import Lifecycle

    return Lifecycle(declaration({"ack-claimed-by-another": None}))


def test_a_candidate_rule_set_is_compared_with_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """--candidate: the invariants alone pass this variant; the comparison finds it, in two moves, and exits 1."""
    run = ["verify", "--workers", "2", "--items", "1", "--depth", "4", "--quiet"]
    assert main([*run, "--candidate", f"{__name__}:_ack_by_another"]) == 1
    out = capsys.readouterr().out
    assert "no counterexample up to depth 4" in out  # no invariant breaks
    assert "the candidate differs from the reference after 2 moves:" in out
    assert "  1. poll by w1\n  2. ack item 1 by w2\n" in out
    assert "  reference: status 409;" in out and "  candidate: status 200;" in out
    assert main([*run, "--candidate", "workstate.model:LIFECYCLE"]) == 0
    assert "the candidate answers as the spec's rules on every sequence up to depth 4" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["nothing", "no.such.module:X", "workstate.model:DEFAULT_POLICY"])
def test_a_bad_candidate_exits_2(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main([*SMALL_RUN, "--candidate", name]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("workstate verify: --candidate: ")
