"""What ``workstate simulate`` costs: complete lifecycles per minute, in one process, invariants checked.

Run: ``python benchmarks/bench_simulate.py`` (``--update`` rewrites the bench_simulate block of
docs/performance.md). Target (issue 17 point 6): at least 200,000 complete lifecycles per minute at 25
workers on a quiet machine, and a cost per request that stays flat from 25 to 500 workers.

The baseline, measured in the same run (rounds alternate: simulation, baseline, simulation, ...): the
bare ``Server.handle`` cost of the very requests the simulation sent (recorded during the run, then
replayed at their instants into a fresh server). The ratio says what the drivers, the network and
fault model, the event queue and the invariant checks add on top of the server.

The growth table runs the same shape at 25, 100, 250 and 500 workers: the same items per worker and the
same arrival rate per worker (the main run's, over a tenth of its duration), so every size is as loaded
as the main run; it reports CPU time per request and per lifecycle of the simulation, and of the bare
server replaying that size's requests (the server's own growth, O(log n) in its indexes, is in it).
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs

import workstate.tools.simulate as sim
from workstate.api import Request, Server

ROOT = Path(__file__).resolve().parent.parent
CONFIG = sim.SimConfig(seed=1, workers=25, items=20000, duration=600.0, concurrency=4)


SCALE_WORKERS = (25, 100, 250, 500)


def run(config: sim.SimConfig) -> tuple[float, float, sim.Report]:
    """One simulation: (wall seconds, CPU seconds, report)."""
    started, cpu = time.perf_counter(), time.process_time()
    report = sim.simulate(config, random.Random)
    return time.perf_counter() - started, time.process_time() - cpu, report


def baseline(config: sim.SimConfig) -> float:
    """Replay every request the simulation sent (and its item creations) through a bare server: wall seconds."""
    return replay(config)[0]


def replay(config: sim.SimConfig) -> tuple[float, float]:
    """Replay every request the simulation sent (and its item creations) through a bare server: (wall seconds,
    CPU seconds) of the replay alone."""
    log: list[tuple[str, object, datetime]] = []
    original_serve, original_create = sim._Sim.serve, Server.create_work

    def serve(self: sim._Sim, request: Request, work_id: str | None) -> object:
        log.append(("handle", request, self.now))
        return original_serve(self, request, work_id)

    def create_work(self: Server, env: str, **kw: object) -> str:
        log.append(("create", kw, kw["now"]))  # type: ignore[arg-type]
        return original_create(self, env, **kw)  # type: ignore[arg-type]

    sim._Sim.serve = serve  # type: ignore[method-assign]
    Server.create_work = create_work  # type: ignore[method-assign]
    try:
        sim.simulate(attrs.evolve(config, check=False), random.Random)
    finally:
        sim._Sim.serve = original_serve  # type: ignore[method-assign]
        Server.create_work = original_create  # type: ignore[method-assign]
    server = Server(config.policy)
    env = server.create_environment(now=sim.T0)
    handle = server.handle
    started, cpu = time.perf_counter(), time.process_time()
    for kind, what, now in log:
        if kind == "handle":
            handle(what, now)  # type: ignore[arg-type]
        else:
            server.create_work(env, **what)  # type: ignore[arg-type]
    return time.perf_counter() - started, time.process_time() - cpu


def scale_config(workers: int, items: int) -> sim.SimConfig:
    """The growth table's run at ``workers``: the main run's items per worker per simulated second, over a tenth
    of its duration (``items`` is the main run's item count: 20,000 gives 80 items per worker over 60 s)."""
    per_worker = max(1, round(items / CONFIG.workers / 10))
    duration = per_worker * CONFIG.duration * CONFIG.workers / CONFIG.items
    return attrs.evolve(CONFIG, workers=workers, items=workers * per_worker, duration=duration)


def growth(items: int, runs: int) -> list[str]:
    """The growth table: cost per request and per lifecycle from 25 to 500 workers (CPU time, medians of ``runs``;
    the sizes alternate within a round, and each round runs the simulation then its bare-server replay)."""
    # a smoke run (a tenth of the main run's items or fewer: tests/test_benchmarks.py) takes two small sizes
    sizes = SCALE_WORKERS if items >= CONFIG.items // 10 else (2, 5)
    rows: dict[int, list[tuple[float, float, sim.Report]]] = {w: [] for w in sizes}
    for _ in range(runs):
        for workers in sizes:
            config = scale_config(workers, items)
            _, cpu, report = run(config)
            if not report.ok:
                raise SystemExit(report.render())
            rows[workers].append((cpu, replay(config)[1], report))
    config = scale_config(sizes[0], items)
    lines = [
        f"Growth (same shape at every size: {config.items // config.workers} items per worker over "
        f"{config.duration:g} simulated seconds, concurrency {config.concurrency}, default faults, invariants "
        f"checked; CPU time, median of {runs} run{'s' if runs != 1 else ''}):",
        "",
        "| workers | items | requests | lifecycles | µs per request | µs per lifecycle "
        "| bare server, µs per request | simulation less server, µs per request |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, found in rows.items():
        report = found[0][2]
        cpu = statistics.median(c for c, _, _ in found)
        bare = statistics.median(b for _, b, _ in found)
        lifecycles = report.completed + report.drained
        lines.append(
            f"| {workers} | {report.created:,} | {report.requests:,} | {lifecycles:,} "
            f"| {cpu / report.requests * 1e6:.1f} | {cpu / lifecycles * 1e6:.0f} "
            f"| {bare / report.requests * 1e6:.1f} | {(cpu - bare) / report.requests * 1e6:.1f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    parser.add_argument("--items", type=int, default=CONFIG.items)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--growth-runs", type=int, default=1, help="rounds of the growth table (0: leave it out)")
    args = parser.parse_args()
    config = attrs.evolve(CONFIG, items=args.items)
    times, cpus, bares, reports = [], [], [], []
    for _ in range(args.runs):  # interleaved: a simulation, then the bare replay of its requests
        seconds, cpu, report = run(config)
        if not report.ok:
            print(report.render())
            return 1
        times.append(seconds)
        cpus.append(cpu)
        reports.append(report)
        bares.append(baseline(config))
    report = reports[0]
    seconds = statistics.median(times)
    lifecycles = report.completed + report.drained
    per_minute = lifecycles / seconds * 60
    bare = statistics.median(bares)
    measured = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {measured} on {platform.machine()}, Python {platform.python_version()}: "
        f"`SimConfig(workers={config.workers}, items={config.items:,}, concurrency={config.concurrency})`, "
        f"default faults, invariants checked, median of {args.runs} runs (spread {min(times):.2f}-{max(times):.2f} s).",
        "",
        "| measure | result |",
        "|---|---:|",
        f"| complete lifecycles (ran and confirmed stopped) | {lifecycles:,} |",
        f"| requests sent, events processed | {report.requests:,}, {report.events:,} |",
        f"| wall time of the simulation (CPU time) | {seconds:.2f} s ({statistics.median(cpus):.2f} s) |",
        f"| **complete lifecycles per minute** (target ≥ 200,000) | **{per_minute:,.0f}** |",
        f"| baseline: bare `Server.handle` of the same requests | {bare:.2f} s |",
        f"| simulation vs baseline | {seconds / bare:.2f}x |",
    ]
    if args.growth_runs > 0:
        lines += ["", *growth(args.items, args.growth_runs)]
    text = "\n".join(lines)
    print(text)
    if args.update:
        path = ROOT / "docs" / "performance.md"
        doc = path.read_text()
        block = f"<!-- bench_simulate:begin -->\n{text}\n<!-- bench_simulate:end -->"
        pattern = re.compile(r"<!-- bench_simulate:begin -->.*?<!-- bench_simulate:end -->", re.S)
        if pattern.search(doc):
            doc = pattern.sub(lambda _: block, doc)
        else:
            doc = (
                doc.rstrip("\n") + "\n\n## The simulation (`benchmarks/bench_simulate.py`)\n\n" + SECTION + block + "\n"
            )
        path.write_text(doc)
    return 0


SECTION = """```sh
.venv/bin/python benchmarks/bench_simulate.py --update
```

`workstate simulate` in one process: 25 worker drivers (four items each at once) against the
reference server under the default fault mix, every invariant checked after every step. A
lifecycle counts when a worker ran the item and a stop reply showed it `stopped`. The baseline
replays the very requests of the run through a bare `Server.handle`, so the ratio is what the
drivers, the fault model, the event queue and the checks cost on top of the server.

"""

if __name__ == "__main__":
    sys.exit(main())
