"""benchmarks/bench_stores.py runs (smoke sizes): the floor replays exactly the statements workstate sent, so both
databases end holding the same rows; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pg import server_bin

ROOT = Path(__file__).resolve().parents[2]


def test_bench_stores_smoke_floor_matches_workstate() -> None:
    if server_bin() is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_stores.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("the floor's database holds exactly what workstate's does: True") == 2, done.stdout
    assert "SqliteStore: lifecycles per second" in done.stdout and "PostgresStore: lifecycles per second" in done.stdout
