"""What ``workstate check`` costs: lines per second and peak memory, on legal traces of 100k and 1M lines.

Run: ``python benchmarks/bench_check.py`` (``--sizes 100000,1000000``, ``--runs 3``; ``--smoke`` for a tiny
run; ``--generate N FILE`` only writes a trace). The trace is made by the reference server: a fleet of
workers per environment polls, acks, heartbeats (tens of times per lease, as a long session does), reads
(get, list, stats) and stops items that are created off the trace (as ``workstate serve --test-routes``
creates them); every exchange is written by :class:`workstate.asgi.RecordInOrder`, the writer of
``workstate serve --record``, after the header line ``serve --record`` writes. ``workstate check`` then runs
on it in a fresh subprocess, which reports its peak RSS (``resource.getrusage``) and CPU time. Prints
figures; asserts only that the trace checked clean (exit status 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from workstate.api import Request, Server
from workstate.asgi import RecordInOrder
from workstate.tools.trace import header_line

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC)
BASE = "/api/v1/cloud/environments"


def generate(lines: int, stream: TextIO, seed: int = 1, environments: int = 4, workers: int = 8) -> int:
    """Write a legal trace of ``lines`` exchanges (plus the header) to ``stream``; return the items created."""
    rnd = random.Random(seed)
    server = Server()
    recorder = RecordInOrder(stream)
    stream.write(header_line(server.policy, server.dialect))
    now = T0
    envs = [server.create_environment(now=now) for _ in range(environments)]
    sessions = 0
    # per (env, worker): the item it holds and its heartbeat token, or None
    held: dict[tuple[int, int], list[object] | None] = {
        (e, w): None for e in range(environments) for w in range(workers)
    }
    ticket = 0
    created = 0

    def exchange(method: str, target: str, headers: dict[str, str], body: str | None = None) -> object:
        nonlocal ticket
        request = Request(method, target, {"Authorization": "Bearer t", **headers}, (body or "").encode())
        response = server.handle(request, now)
        recorder.write(ticket, now, method, target, ({"Authorization": "Bearer t", **headers}, body), response)
        ticket += 1
        return response.json

    slots = list(held)
    while ticket < lines:
        now += timedelta(milliseconds=rnd.choice((5, 20, 50)))
        e, w = slot = rnd.choice(slots)
        env = envs[e]
        base = f"{BASE}/{env}/work"
        worker = {"Worker-ID": f"w{w}"}
        state = held[slot]
        if state is None:
            if rnd.random() < 0.6:  # a client queues work now and then (off the trace)
                sessions += 1
                server.create_work(env, session_id=f"sess_{sessions:032x}", now=now)
                created += 1
            got = exchange("GET", f"{base}/poll", worker)
            if isinstance(got, dict) and "id" in got:
                work = got["id"]
                exchange("POST", f"{base}/{work}/ack", worker)
                held[slot] = [work, "NO_HEARTBEAT", rnd.randint(20, 60)]
            continue
        work, token, left = state
        roll = rnd.random()
        if roll < 0.03:
            exchange("GET", f"{base}/{work}", {})
        elif roll < 0.05:
            exchange("GET", f"{base}?limit={rnd.choice((5, 20))}", {})
        elif roll < 0.06:
            exchange("GET", f"{base}/stats", {})
        elif roll < 0.07:
            exchange("PATCH", f"{base}/{work}", {}, json.dumps({"metadata": {"progress": str(left)}}))
        elif left:
            answer = exchange(
                "POST", f"{base}/{work}/heartbeat?expected_last_heartbeat={str(token).replace('+', '%2B')}", worker
            )
            if isinstance(answer, dict) and "last_heartbeat" in answer:
                state[1] = answer["last_heartbeat"]
            state[2] = left - 1  # type: ignore[operator]
        else:
            exchange("POST", f"{base}/{work}/stop", {}, '{"force": true}')
            held[slot] = None
    stream.flush()
    return created


def _measure(path: Path) -> dict[str, float]:
    """``workstate check PATH`` in a fresh process: its status, CPU and wall seconds and peak RSS."""
    code = (
        "import resource, sys, time\n"
        "from workstate.cli import main\n"
        "start = time.perf_counter()\n"
        "status = main(['check', sys.argv[1]])\n"
        "wall = time.perf_counter() - start\n"
        "use = resource.getrusage(resource.RUSAGE_SELF)\n"
        "sys.stderr.write(f'BENCH {status} {wall} {use.ru_utime + use.ru_stime} {use.ru_maxrss}\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    marker = [line for line in done.stderr.splitlines() if line.startswith("BENCH ")]
    if not marker:
        raise SystemExit(f"check failed: {done.stderr[-2000:]}")
    status, wall, cpu, rss = marker[-1].split()[1:]
    if status != "0":
        raise SystemExit(f"the generated trace did not check clean (status {status}): {done.stdout[-2000:]}")
    return {"wall": float(wall), "cpu": float(cpu), "rss_mb": int(rss) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="trace lengths, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="check runs per size (default 3)")
    parser.add_argument("--smoke", action="store_true", help="one tiny run (for the test suite)")
    parser.add_argument("--generate", nargs=2, metavar=("N", "FILE"), help="only write a trace of N lines to FILE")
    args = parser.parse_args()
    if args.generate:
        with open(args.generate[1], "w", encoding="utf-8") as handle:
            generate(int(args.generate[0]), handle)
        return 0
    sizes = [2000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.smoke else args.runs
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"trace-{size}.jsonl"
            started = time.perf_counter()
            with path.open("w", encoding="utf-8") as handle:
                items = generate(size, handle)
            made = time.perf_counter() - started
            mb = path.stat().st_size / 1e6
            print(f"{size:,} lines ({mb:.0f} MB, {items:,} items) generated in {made:.1f} s")
            rows = [_measure(path) for _ in range(runs)]
            wall = [size / r["wall"] for r in rows]
            cpu = [size / r["cpu"] for r in rows]
            rss = [r["rss_mb"] for r in rows]
            print(
                f"  check {size:,} lines: {statistics.median(wall):,.0f} lines/s wall "
                f"(range {min(wall):,.0f}-{max(wall):,.0f}), {statistics.median(cpu):,.0f} lines per CPU-second "
                f"(range {min(cpu):,.0f}-{max(cpu):,.0f}), peak RSS {statistics.median(rss):.0f} MB "
                f"(range {min(rss):.0f}-{max(rss):.0f}); load now {Path('/proc/loadavg').read_text().split()[:3]}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
