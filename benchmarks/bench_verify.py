"""What ``workstate verify`` costs: how deep the search gets within a time budget, and its rate.

Run: ``python benchmarks/bench_verify.py`` (``--update`` rewrites the block in docs/performance.md;
``--budget SECONDS`` changes the budget of the W=2, I=2 run, default 60; ``--deep DEPTH`` measures memory level by
level; ``--compare BASELINE`` alternates rounds between this checkout and an older one). Everything is measured in
one run on this machine: the search's transitions per second are compared with a bare loop of the
core's ``step`` over the same kind of commands. Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workstate import NO_HEARTBEAT, Ack, Command, Deliver, Heartbeat, Lapse, Stop, WorkItem, step
from workstate.cli.verify import gc_paused
from workstate.tools.verify import explore

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench_verify:begin -->", "<!-- bench_verify:end -->"


class _OutOfTime(Exception):
    pass


def _rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux: ru_maxrss is in kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def levels(workers: int, items: int, budget: float, most: int = 40) -> list[tuple[int, int, int, float]]:
    """(depth, states, transitions, seconds) after each level, until a level ends past the budget. Prints the
    peak RSS after each level and, over the search's growth from the first level, the bytes per state."""
    rows: list[tuple[int, int, int, float]] = []
    started = time.perf_counter()
    base = _rss()

    def progress(depth: int, states: int, transitions: int) -> None:
        elapsed = time.perf_counter() - started
        rows.append((depth, states, transitions, elapsed))
        grown = _rss() - base
        print(
            f"  W={workers} I={items} depth {depth}: {states:,} states, {transitions:,} transitions, {elapsed:.1f} s, "
            f"{states / max(elapsed, 1e-9):,.0f} states/s, peak RSS {_rss() / 2**20:,.0f} MB "
            f"({grown / max(states, 1):,.0f} B/state over the {base / 2**20:.0f} MB before the search)",
            flush=True,
        )
        if elapsed > budget:
            raise _OutOfTime

    with contextlib.suppress(_OutOfTime), gc_paused():  # as `workstate verify` runs it
        explore(workers, items, most, progress=progress)
    return rows


def bare_steps(n: int = 200_000) -> float:
    """Seconds per core step, over lifecycles of the commands verify sends (deliver .. stop, and a lapse)."""
    item = WorkItem(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "1" * 32, created_at=T0
    )
    script: list[Command] = [Deliver("w1"), Ack("w1"), Heartbeat(NO_HEARTBEAT), Heartbeat(), Lapse(), Stop(), Stop()]
    now = T0 + timedelta(seconds=1)
    started = time.perf_counter()
    done = 0
    while done < n:
        current = item
        for command in script:
            current = step(current, command, now).item
        done += len(script)
    return (time.perf_counter() - started) / done


_ROUND = """
import gc, sys, time
from workstate.tools.verify import explore
gc.disable()
cpu, wall = time.process_time(), time.perf_counter()
report = explore(2, 2, int(sys.argv[1]))
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(report.states, report.transitions, cpu, wall, sys.modules[explore.__module__].__file__)
"""


def compare(baseline: Path, depth: int, rounds: int) -> None:
    """Alternate rounds of W=2, I=2 to ``depth`` between this checkout and ``baseline`` (a checkout of the old
    code, e.g. ``git worktree add /tmp/base HEAD~3``), each round in a fresh process, and print the states per
    CPU-second and per wall second of each: median and range. The counts must agree."""
    trees = {"this": Path(__file__).resolve().parent.parent, "baseline": baseline.resolve()}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    counts: set[tuple[str, str]] = set()
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    for n in range(rounds):
        for name, tree in trees.items() if n % 2 == 0 else reversed(trees.items()):
            env = {**os.environ, "PYTHONPATH": str(tree)}  # and run in the tree: `-c` puts the directory first
            out = subprocess.run(
                [sys.executable, "-c", _ROUND, str(depth)],
                env=env,
                cwd=tree,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            states, transitions, cpu, wall = out[0], out[1], float(out[2]), float(out[3])
            counts.add((states, transitions))
            rates[name].append((int(states) / cpu, int(states) / wall))
            print(f"  round {n + 1} {name}: {int(states):,} states in {cpu:.2f} s CPU, {wall:.2f} s wall", flush=True)
            if n == 0:
                print(f"    ({name} imports {out[4]})", flush=True)
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for name, got in rates.items():
        cpu_rates, wall_rates = sorted(r[0] for r in got), sorted(r[1] for r in got)
        print(
            f"{name}: median {statistics.median(cpu_rates):,.0f} states per CPU-second "
            f"({cpu_rates[0]:,.0f}-{cpu_rates[-1]:,.0f}), {statistics.median(wall_rates):,.0f} per wall second "
            f"({wall_rates[0]:,.0f}-{wall_rates[-1]:,.0f})"
        )
    mine, theirs = (statistics.median(r[0] for r in rates[name]) for name in trees)
    agree = "agree" if len(counts) == 1 else f"DIFFER: {sorted(counts)}"
    print(f"this / baseline, states per CPU-second: {mine / theirs:.2f}x; counts {agree}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for the W=2, I=2 search (default 60)")
    parser.add_argument("--budget3", type=float, default=180.0, help="seconds for the W=3, I=2 search (default 180)")
    parser.add_argument("--update", action="store_true", help="rewrite the block in docs/performance.md")
    parser.add_argument(
        "--deep",
        type=int,
        metavar="DEPTH",
        help="only search W=2, I=2 to DEPTH in this process (the depth-12 run: peak RSS, B/state, states/s)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="BASELINE",
        help="alternate W=2, I=2 rounds between this checkout and the checkout BASELINE (states/s, median, range)",
    )
    parser.add_argument("--depth", type=int, default=8, help="the depth of the --compare rounds (default 8)")
    parser.add_argument("--rounds", type=int, default=6, help="how many --compare rounds of each (default 6)")
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.compare, args.depth, args.rounds)
        return 0
    if args.deep is not None:
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
        rows = levels(2, 2, float("inf"), args.deep)
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
        return 0 if rows else 1

    per_step = bare_steps()
    print(f"bare step loop: {per_step * 1e6:.2f} us per step")
    two = levels(2, 2, args.budget)
    three = levels(3, 2, args.budget3)

    def within(rows: list[tuple[int, int, int, float]], budget: float) -> tuple[int, int, int, float]:
        inside = [row for row in rows if row[3] <= budget]
        return inside[-1] if inside else rows[0]

    d2, s2, t2, e2 = within(two, args.budget)
    rate = t2 / e2
    ratio = (1 / per_step) / rate
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python {platform.python_version()} "
        "(2 cores, possibly shared with other processes during the run).",
        "",
        "| search | depth completed | states | transitions | time |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, rows in (("W=2, I=2", two), ("W=3, I=2", three)):
        for depth, states, transitions, seconds in rows:
            lines.append(f"| {label} | {depth} | {states:,} | {transitions:,} | {seconds:.1f} s |")
    lines += [
        "",
        f"- Within {args.budget:g} s, W=2, I=2 completes depth **{d2}** ({s2:,} states).",
        f"- Search rate: {rate:,.0f} transitions/s; a bare `step` loop in the same run: {1 / per_step:,.0f} steps/s "
        f"({per_step * 1e6:.2f} us per step). One transition costs **{ratio:.1f}x** a bare step (a transition is one "
        "or more steps, the invariant checks, and the canonical key of the world it reaches).",
        "",
        "Target of issue 7: W=2, I=2 exhausts depth 10 within 60 s: "
        + ("**met**." if d2 >= 10 else f"**not met** (depth {d2}; see docs/verification.md)."),
    ]
    block = "\n".join(lines)
    print(block)
    if args.update:
        text = DOC.read_text()
        section = f"{BEGIN}\n{block}\n{END}"
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
        else:
            intro = (
                "\n## The model checker (`benchmarks/bench_verify.py`)\n\n```sh\n"
                ".venv/bin/python benchmarks/bench_verify.py --update\n```\n\n"
                "`workstate verify` searched level by level (every level of a row is complete); each row is the\n"
                "figures after that level, with the time since the search began.\n\n"
            )
            text = text.rstrip("\n") + "\n" + intro + section + "\n"
        DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
