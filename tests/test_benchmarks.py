"""The benchmark scripts still run (at tiny sizes, figures ignored): a refactoring that breaks one is caught here,
not months later by whoever next measures. No figure is asserted: speed is measured by the scripts, not tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


@pytest.mark.parametrize(
    ("script", "args", "prints"),
    [
        ("bench_core.py", ["--quick"], "us"),
        ("bench_server.py", ["--smoke"], "handle:"),
        ("bench_index.py", ["--smoke"], "treap"),
        ("bench_serve.py", ["--smoke"], "requests/s"),
        ("bench_simulate.py", ["--items", "200", "--runs", "1"], "lifecycles"),
        ("bench_verify.py", ["--budget", "0.2", "--budget3", "0.2"], "depth"),
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
