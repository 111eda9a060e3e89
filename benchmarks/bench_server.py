"""What the reference server costs: per request, per queued item, and as the queue grows.

Run: ``python benchmarks/bench_server.py`` (``--quick`` for a short run with smaller queues).
Everything is measured in one run on this machine, so the ratios compare like with like. Prints
figures and ratios; asserts nothing.

1. Cost per request of full lifecycles through ``Server.handle`` (poll, ack, first heartbeat,
   five heartbeats echoing the token, graceful stop, confirming stop: 10 requests), against a
   floor that does only what any server must: parse the target and its query, and serialize a
   work-item JSON reply (of the item the request answers with). A stricter floor serializes each
   request's own reply instead (a heartbeat's is smaller than a work item). Target: ``handle`` at
   most 3x the floor.
2. Memory per queued item (tracemalloc; everything the server holds for an item, including its
   ids and its creation time) at 100,000 and 1,000,000 items. Target: at most 600 bytes.
3. Poll and expiry-sweep cost with 10,000 vs 1,000,000 items held. Target: growing at most
   logarithmically (log2(1M)/log2(10k) = 1.5).
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from workstate import NO_HEARTBEAT, Ack, Deliver, Heartbeat, Stop, WorkItem, step
from workstate.api import Request, Server
from workstate.api.codec import HeartbeatObject, dumps, encode_work

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer token", "Worker-ID": "w1"}
REQUESTS = 10


def session(n: int) -> str:
    return f"sess_{n:032x}"


def lifecycle_requests(env: str, work: str, at: datetime) -> list[tuple[Request, datetime]]:
    """The 10 requests of one lifecycle; heartbeats echo the token, which is `at` + i seconds (rendered)."""
    base = f"/api/v1/cloud/environments/{env}/work"
    times = [at + timedelta(seconds=i) for i in range(REQUESTS)]
    out = [
        (Request("GET", f"{base}/poll?block_ms=999&reclaim_older_than_ms=5000", AUTH), times[0]),
        (Request("POST", f"{base}/{work}/ack", AUTH), times[1]),
        (Request("POST", f"{base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", AUTH), times[2]),
    ]
    for i in range(3, 8):
        token = (times[i - 1]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append((Request("POST", f"{base}/{work}/heartbeat?expected_last_heartbeat={token}", AUTH), times[i]))
    out.append((Request("POST", f"{base}/{work}/stop", AUTH), times[8]))
    out.append((Request("POST", f"{base}/{work}/stop", AUTH), times[9]))
    return out


def prepare_lifecycles(n: int) -> tuple[Server, list[tuple[Request, datetime]]]:
    server = Server()
    env = server.create_environment(now=T0)
    script: list[tuple[Request, datetime]] = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        work = server.create_work(env, session_id=session(i), now=at)
        script += lifecycle_requests(env, work, at)
    return server, script


def run_handle(server: Server, script: list[tuple[Request, datetime]]) -> None:
    handle = server.handle
    for request, now in script:
        response = handle(request, now)
        if response.status != 200:
            raise SystemExit(f"unexpected {response.status}: {response.json}")


def floor_parse(target: str) -> dict[str, str]:
    path, _, query = target.partition("?")
    parts = path.split("/")
    params = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name] = value
    params["_env"], params["_last"] = parts[5], parts[-1]
    return params


def reply_items() -> list[WorkItem]:
    """The item each of the 10 requests of a lifecycle answers with (built with the core, not timed)."""
    item = WorkItem(id=f"work_{1:032x}", environment_id=f"env_{1:032x}", session_id=session(1), created_at=T0)
    times = [T0 + timedelta(seconds=i) for i in range(REQUESTS)]
    out = [step(item, Deliver("w1"), times[0]).item]
    out.append(step(out[-1], Ack("w1"), times[1]).item)
    out.append(step(out[-1], Heartbeat(NO_HEARTBEAT), times[2]).item)
    for t in times[3:8]:
        out.append(step(out[-1], Heartbeat(out[-1].latest_heartbeat_at), t).item)
    out.append(step(out[-1], Stop(), times[8]).item)
    out.append(step(out[-1], Stop(), times[9]).item)
    return out


def heartbeat_reply(item: WorkItem) -> dict[str, object]:
    return HeartbeatObject.of(item).to_json()


# What each of the 10 requests answers with: a work item, except the six heartbeats.
REPLY_ENCODERS = [encode_work, encode_work] + [heartbeat_reply] * 6 + [encode_work, encode_work]


def run_floor(script: list[tuple[Request, datetime]], items: list[WorkItem], own_reply: bool) -> None:
    """Parse each target and its query; serialize, from the item the request answers with, a work-item
    JSON reply (the issue's floor) or, with `own_reply`, the very reply it gets (a heartbeat's is smaller)."""
    for index, (request, _now) in enumerate(script):
        floor_parse(request.target)
        encode = REPLY_ENCODERS[index % REQUESTS] if own_reply else encode_work
        dumps(encode(items[index % REQUESTS]))


def per_request(run: Callable[[], None], count: int) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / count


# --- memory ---------------------------------------------------------------------------------------------


def bytes_per_queued_item(count: int) -> tuple[float, float]:
    """(bytes per item, seconds to create them) with `count` queued items in one environment."""
    gc.collect()
    server = Server()
    env = server.create_environment(now=T0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    create = server.create_work
    for i in range(count):
        create(env, session_id=session(i), now=T0 + timedelta(microseconds=i))
    seconds = time.perf_counter() - start
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del server
    gc.collect()
    return (after - before) / count, seconds


# --- growth ------------------------------------------------------------------------------------------------


def queue_of(count: int) -> tuple[Server, str]:
    server = Server()
    env = server.create_environment(now=T0)
    create = server.create_work
    for i in range(count):
        create(env, session_id=session(i), now=T0 + timedelta(microseconds=i))
    return server, env


def poll_cost(count: int, polls: int) -> tuple[float, float]:
    """(fresh, reclaim): a poll taking the oldest never-delivered item from `count` queued ones; and a
    poll that must find the oldest reclaimable item among `count` delivered-and-unacked ones."""
    server, env = queue_of(count)
    now = T0 + timedelta(seconds=1)
    poll = Request("GET", f"/api/v1/cloud/environments/{env}/work/poll", AUTH)
    gc.collect()
    start = time.perf_counter()
    for _ in range(polls):
        server.handle(poll, now)
    fresh = (time.perf_counter() - start) / polls
    # Deliver everything (each at its own instant), then reclaim: half of them are inside the window.
    handle = server.handle
    for i in range(count - polls):
        handle(poll, now + timedelta(microseconds=i))
    late = now + timedelta(microseconds=count // 2) + timedelta(milliseconds=5000)
    gc.collect()
    start = time.perf_counter()
    for i in range(polls):
        handle(poll, late + timedelta(microseconds=i))
    reclaim = (time.perf_counter() - start) / polls
    return fresh, reclaim


def sweep_cost(count: int, lapsing: int) -> float:
    """Seconds per lapsed item when `lapsing` of `count` acked items reach their start timeout in one sweep."""
    server, env = queue_of(count)
    base = f"/api/v1/cloud/environments/{env}/work/"
    auth = {"Authorization": "Bearer token"}
    handle = server.handle
    for i in range(count):  # ack each (no poll needed by default) at its own instant: deadlines spread out
        handle(Request("POST", f"{base}work_{i + 1:032x}/ack", auth), T0 + timedelta(seconds=1, microseconds=i))
    now = T0 + timedelta(seconds=61, microseconds=lapsing - 1)  # exactly the first `lapsing` deadlines are due
    gc.collect()
    start = time.perf_counter()
    lapsed = server.expire(now)
    seconds = time.perf_counter() - start
    if lapsed != lapsing:
        raise SystemExit(f"expected {lapsing} lapses, got {lapsed}")
    return seconds / lapsing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller queues and fewer lifecycles")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that the script runs")
    args = parser.parse_args()
    lifecycles = 30 if args.smoke else 300 if args.quick else 3000
    small, large = (2_000, 4_000) if args.smoke else (10_000, 100_000) if args.quick else (10_000, 1_000_000)
    memory_counts = (1_000, 2_000) if args.smoke else (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    us = 1e6

    # 1. per request
    samples: dict[str, list[float]] = {"handle": [], "work": [], "own": []}
    items = reply_items()
    for _ in range(5):
        server, script = prepare_lifecycles(lifecycles)
        samples["handle"].append(per_request(lambda: run_handle(server, script), len(script)))  # noqa: B023
        samples["work"].append(per_request(lambda: run_floor(script, items, False), len(script)))  # noqa: B023
        samples["own"].append(per_request(lambda: run_floor(script, items, True), len(script)))  # noqa: B023
    handle_cost, floor_cost, own_cost = (statistics.median(samples[k]) for k in ("handle", "work", "own"))

    # 2. memory
    memory = {count: bytes_per_queued_item(count) for count in memory_counts}

    # 3. growth
    polls = {count: poll_cost(count, 2000) for count in (small, large)}
    sweeps = {count: sweep_cost(count, 2000) for count in (small, large)}

    log_ratio = math.log2(large) / math.log2(small)
    print(
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python {platform.python_version()}, "
        f"{'--smoke' if args.smoke else '--quick' if args.quick else 'full run'}."
    )
    print()
    print(f"1. {lifecycles} lifecycles x {REQUESTS} requests, median of 5 runs:")
    print(f"   handle: {handle_cost * us:.2f} us/request")
    print(f"   floor, work-item reply: {floor_cost * us:.2f} us/request; handle/floor {handle_cost / floor_cost:.2f}x")
    print(f"   floor, each own reply:  {own_cost * us:.2f} us/request; handle/floor {handle_cost / own_cost:.2f}x")
    print("   (target: handle at most 3x the floor)")
    print("2. memory per queued item (tracemalloc):")
    for count, (per_item, seconds) in memory.items():
        print(f"   {count:>9,} items: {per_item:.0f} bytes/item (created in {seconds:.1f} s under tracemalloc)")
    print("   (target <= 600 bytes)")
    print(f"3. growth from {small:,} to {large:,} items (log ratio {log_ratio:.2f}):")
    fresh_ratio = polls[large][0] / polls[small][0]
    reclaim_ratio = polls[large][1] / polls[small][1]
    sweep_ratio = sweeps[large] / sweeps[small]
    rows = [
        ("poll (fresh)", polls[small][0], polls[large][0], fresh_ratio, "us/poll"),
        ("poll (reclaim)", polls[small][1], polls[large][1], reclaim_ratio, "us/poll"),
        ("sweep", sweeps[small], sweeps[large], sweep_ratio, "us/lapse"),
    ]
    for name, at_small, at_large, ratio, unit in rows:
        print(f"   {name + ':':<16}{at_small * us:.2f} -> {at_large * us:.2f} {unit}, ratio {ratio:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
