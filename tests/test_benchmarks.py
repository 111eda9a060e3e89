"""The benchmark scripts still run (at tiny sizes, figures ignored): a refactoring that breaks one is caught here,
not months later by whoever next measures. No figure is asserted: speed is measured by the scripts, not tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


@pytest.mark.parametrize(
    ("script", "args", "prints"),
    [
        # --quick too checks the hand-written limit equal to step on 50,000 fuzzed commands (exit 1 at a difference)
        ("bench_core.py", ["--quick"], "the hand-written limit equals step on 50,000 fuzzed commands"),
        ("bench_server.py", ["--smoke"], "handle:"),
        ("bench_index.py", ["--smoke"], "treap"),
        ("bench_serve.py", ["--smoke"], "requests/s"),
        ("bench_simulate.py", ["--items", "200", "--runs", "1"], "lifecycles"),
        ("bench_verify.py", ["--budget", "0.2", "--budget3", "0.2"], "depth"),
        ("bench_check.py", ["--smoke"], "lines/s"),
        ("bench_conformance.py", ["--smoke"], "over HTTP:"),
        ("bench_import.py", ["--smoke"], "import workstate"),
    ],
)
def test_the_benchmark_runs_and_leaves_the_recorded_figures_alone(script: str, args: list[str], prints: str) -> None:
    recorded = DOC.read_text(encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert prints in done.stdout
    assert DOC.read_text(encoding="utf-8") == recorded  # only --update writes docs/performance.md


def test_the_hand_written_limit_of_bench_core_is_checked_against_step_and_a_difference_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench_core's limit equals step on fuzzed commands (as every run checks), and the check has teeth: a limit
    that answers one rule wrong is refused."""
    spec = importlib.util.spec_from_file_location("bench_core", ROOT / "benchmarks" / "bench_core.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_core", bench)
    spec.loader.exec_module(bench)
    assert bench.check_limit(sequences=400, length=25) == 10_000
    stop = bench._HANDLERS[bench.Stop]

    def wrong(item: object, cmd: object, now: object) -> object:
        new, rule = stop(item, cmd, now)
        return new, "stop-stopped" if rule == "force-stop-stopped" else rule

    monkeypatch.setitem(bench._HANDLERS, bench.Stop, wrong)
    with pytest.raises(SystemExit, match="differs from step"):
        bench.check_limit(sequences=400, length=25)
