"""What ``workstate simulate`` costs: complete lifecycles per minute, in one process, invariants checked.

Run: ``python benchmarks/bench_simulate.py`` (``--update`` rewrites the bench_simulate block of
docs/performance.md). Target: at least 100,000 complete lifecycles per minute on this machine.

The baseline, measured in the same run: the bare ``Server.handle`` cost of the very requests the
simulation sent (recorded during the run, then replayed at their instants into a fresh server).
The ratio says what the drivers, the network and fault model, the event queue and the invariant
checks add on top of the server.
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


def run(config: sim.SimConfig) -> tuple[float, sim.Report]:
    started = time.perf_counter()
    report = sim.simulate(config, random.Random)
    return time.perf_counter() - started, report


def baseline(config: sim.SimConfig) -> float:
    """Replay every request the simulation sent (and its item creations) through a bare server."""
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
    started = time.perf_counter()
    for kind, what, now in log:
        if kind == "handle":
            handle(what, now)  # type: ignore[arg-type]
        else:
            server.create_work(env, **what)  # type: ignore[arg-type]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    parser.add_argument("--items", type=int, default=CONFIG.items)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = attrs.evolve(CONFIG, items=args.items)
    times, reports = [], []
    for _ in range(args.runs):
        seconds, report = run(config)
        times.append(seconds)
        reports.append(report)
    report = reports[0]
    if not report.ok:
        print(report.render())
        return 1
    seconds = statistics.median(times)
    lifecycles = report.completed + report.drained
    per_minute = lifecycles / seconds * 60
    bare = statistics.median(baseline(config) for _ in range(args.runs))
    measured = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"Measured {measured} on {platform.machine()}, Python {platform.python_version()}: "
        f"`SimConfig(workers={config.workers}, items={config.items:,}, concurrency={config.concurrency})`, "
        f"default faults, invariants checked, median of {args.runs} runs.",
        "",
        "| measure | result |",
        "|---|---:|",
        f"| complete lifecycles (ran and confirmed stopped) | {lifecycles:,} |",
        f"| requests sent, events processed | {report.requests:,}, {report.events:,} |",
        f"| wall time of the simulation | {seconds:.2f} s |",
        f"| **complete lifecycles per minute** (target ≥ 100,000) | **{per_minute:,.0f}** |",
        f"| baseline: bare `Server.handle` of the same requests | {bare:.2f} s |",
        f"| simulation vs baseline | {seconds / bare:.2f}x |",
    ]
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
