"""Import cost: ``import workstate``, the pytest plugin and ``workstate --help``, each in fresh interpreters.

Run: ``python benchmarks/bench_import.py`` (``--update`` rewrites the block in docs/performance.md; ``--smoke``
runs each a few times and writes nothing). Each figure is the median over ``--runs`` pairs of runs of the cost of
a fresh interpreter that does the thing minus one that does not (``python -c pass``; for the plugin, one that
imports pytest alone), interleaved so that both see the same machine. Wall-clock time and CPU time (user + system,
of the child) are both shown: on a shared machine the wall clock is the noisier. Which modules each imports is a
test's business (tests/test_import_cost.py); how long it takes is measured here only.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench_import:begin -->", "<!-- bench_import:end -->"

CASES = (
    ("`import workstate`", "pass", "import workstate"),
    (
        "the pytest plugin (`import workstate.testing.plugin`, pytest loaded)",
        "import pytest",
        "import pytest, workstate.testing.plugin",
    ),
    (
        "`workstate --help`",
        "pass",
        "from workstate.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ),
)


def run(code: str) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh interpreter running ``code``."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    assert status == 0, code
    return wall, usage.ru_utime + usage.ru_stime


def measure(base: str, code: str, runs: int) -> dict[str, list[float]]:
    run(code)  # compile and cache the bytecode first
    wall, cpu = [], []
    for _ in range(runs):
        base_wall, base_cpu = run(base)
        full_wall, full_cpu = run(code)
        wall.append((full_wall - base_wall) * 1000)
        cpu.append((full_cpu - base_cpu) * 1000)
    return {"wall": sorted(wall), "cpu": sorted(cpu)}


def spread(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0], 0, values[0])
    middle = statistics.median(values)
    return f"{middle:.0f} ms (quartiles {low:.0f}-{high:.0f}, min {values[0]:.0f}, max {values[-1]:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=31, help="pairs of runs per figure (default 31)")
    parser.add_argument("--smoke", action="store_true", help="3 runs each, nothing written")
    parser.add_argument("--update", action="store_true", help="rewrite the block in docs/performance.md")
    args = parser.parse_args()
    runs = 3 if args.smoke else args.runs
    rows = []
    for name, base, code in CASES:
        found = measure(base, code, runs)
        print(f"{name}: wall {spread(found['wall'])}; cpu {spread(found['cpu'])}")
        rows.append(f"| {name} | {spread(found['wall'])} | {spread(found['cpu'])} |")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average {load}")

    if args.update and not args.smoke:
        block = "\n".join(
            [
                "| what | wall clock, median | CPU (user + system), median |",
                "|---|---|---|",
                *rows,
                "",
                f"Measured {time.strftime('%Y-%m-%d')}, {runs} pairs of runs each, Python {platform.python_version()}, "
                f"{platform.machine()}, {os.cpu_count()} cores shared with other work (load average {load}), "
                f"by `benchmarks/bench_import.py --update`.",
            ]
        )
        text = DOC.read_text(encoding="utf-8")
        section = f"{BEGIN}\n{block}\n{END}"
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
        else:
            text += (
                "\n## Import cost (`benchmarks/bench_import.py`)\n\n```sh\n"
                ".venv/bin/python benchmarks/bench_import.py --update\n```\n\n"
                "What a program pays before it does anything: a fresh interpreter that imports minus one that does "
                "not. The budget for `import workstate` is 100 ms on this machine (issue 18). The pytest plugin, "
                "which every pytest run of a project with workstate installed loads, imports the core and nothing "
                "else (hypothesis and the kit come with the first use of a fixture); `workstate --help` imports the "
                "command modules and no engine. tests/test_import_cost.py checks both by module names.\n\n"
                f"{section}\n"
            )
        DOC.write_text(text, encoding="utf-8")
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
