"""What the reference server costs: per request, per queued item, and as the queue grows.

Run: ``python benchmarks/bench_server.py`` (``--quick`` for a short run with smaller queues, ``--smoke`` for tiny
sizes; ``--update`` rewrites the figures block of docs/performance.md). Prints figures and ratios; asserts
nothing about speed.

1. Cost per request of full lifecycles through ``Server.handle`` (poll, ack, first heartbeat, five heartbeats
   echoing the token, graceful stop, confirming stop: 10 requests), against floors that do only what any
   server must: parse the target and its query, and serialize the reply. The floors, from loose to strict:
   a work-item reply through workstate's codec; each request's own reply through the codec (a heartbeat's
   is smaller than a work item); and the **strict floor**, each request's own reply built by hand with its
   timestamps rendered by the fastest correct renderer found here (its bytes checked equal to the codec's).
   All four run interleaved: each round runs every one once on the same lifecycles, the order rotated each
   round; the report gives medians, the spread over rounds and the ratios computed per round. Target
   (issue 17 point 3): ``handle`` at most 3x the strict floor.
   The renderers of ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` compared: ``strftime``, ``isoformat`` (plain, which is
   wrong on a whole second, and with ``timespec``), f-strings and %-formatting on the fields, and a cache
   keyed by the second; each is checked equal to ``workstate.render_timestamp`` on many instants first.
2. Memory per queued item (tracemalloc; everything the server holds for an item, including its
   ids and its creation time) at 100,000 and 1,000,000 items. Target: at most 600 bytes.
3. The CPU cost of every kind of request (poll, ack, heartbeat, stop, get, list page, stats, create_work, and
   the expiry sweep per lapsed item) with 10,000 vs 1,000,000 items held, in one table. Target: growing at most
   logarithmically (log2(1M)/log2(10k) = 1.5). A fresh poll is also timed with the GC's objects frozen, to
   tell a collector's cost over a million tracked objects from the server's own.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workstate import NO_HEARTBEAT, Ack, Deliver, Heartbeat, Stop, WorkItem, render_timestamp, step
from workstate.api import Request, Server, codec, routes, wire
from workstate.api.codec import HeartbeatObject, dumps, encode_work

EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)  # the range workstate holds (workstate._time)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

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


def reply_items(lifecycles: int) -> list[WorkItem]:
    """The item each request of `lifecycles` lifecycles answers with, in order (built with the core, not timed):
    lifecycle i's item is created at T0 + i minutes and its requests come a second apart, as in the server's."""
    out: list[WorkItem] = []
    for i in range(lifecycles):
        at = T0 + timedelta(minutes=i)
        item = WorkItem(id=f"work_{i + 1:032x}", environment_id=f"env_{1:032x}", session_id=session(i), created_at=at)
        times = [at + timedelta(seconds=k) for k in range(REQUESTS)]
        replies = [step(item, Deliver("w1"), times[0]).item]
        replies.append(step(replies[-1], Ack("w1"), times[1]).item)
        replies.append(step(replies[-1], Heartbeat(NO_HEARTBEAT), times[2]).item)
        for t in times[3:8]:
            replies.append(step(replies[-1], Heartbeat(replies[-1].latest_heartbeat_at), t).item)
        replies.append(step(replies[-1], Stop(), times[8]).item)
        replies.append(step(replies[-1], Stop(), times[9]).item)
        out += replies
    return out


def heartbeat_reply(item: WorkItem) -> dict[str, object]:
    return HeartbeatObject.of(item).to_json()


# What each of the 10 requests answers with: a work item, except the six heartbeats.
REPLY_ENCODERS = [encode_work, encode_work] + [heartbeat_reply] * 6 + [encode_work, encode_work]


def run_floor(script: list[tuple[Request, datetime]], items: list[WorkItem], own_reply: bool) -> None:
    """Parse each target and its query; serialize, through workstate's codec, from the item the request answers
    with, a work-item JSON reply (the issue's floor) or, with `own_reply`, the very reply it gets."""
    for index, (request, _now) in enumerate(script):
        floor_parse(request.target)
        encode = REPLY_ENCODERS[index % REQUESTS] if own_reply else encode_work
        dumps(encode(items[index]))


# --- the strict floor: each request's own reply, built by hand, timestamps by the fastest correct renderer ----

ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # the codec's settings: compact, ASCII
STRFTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _by_strftime(value: datetime) -> str:
    return value.strftime(STRFTIME)


def _by_isoformat_replace(value: datetime) -> str:  # wrong: isoformat() drops a zero microsecond
    return value.isoformat().replace("+00:00", "Z")


def _by_isoformat_microseconds(value: datetime) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _by_isoformat_slice(value: datetime) -> str:  # "+00:00" is the last six characters of an aware UTC instant
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _by_fstring(v: datetime) -> str:
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"


def _by_percent(v: datetime) -> str:
    fields = (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % fields  # noqa: UP031 - %-formatting is the contender


def _cached_by_second() -> Callable[[datetime], str]:
    cache: dict[datetime, str] = {}

    def render(value: datetime) -> str:
        micro = value.microsecond
        key = value.replace(microsecond=0) if micro else value
        prefix = cache.get(key)
        if prefix is None:
            if len(cache) >= 4096:  # bounded: a server renders ever new seconds
                cache.clear()
            prefix = cache[key] = key.strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{prefix}{micro:06d}Z"

    return render


RENDERERS: dict[str, Callable[[], Callable[[datetime], str]]] = {
    "strftime (workstate's render_timestamp)": lambda: _by_strftime,
    "isoformat() + replace": lambda: _by_isoformat_replace,
    "isoformat(timespec='microseconds') + replace": lambda: _by_isoformat_microseconds,
    "isoformat(timespec='microseconds') sliced + 'Z'": lambda: _by_isoformat_slice,
    "f-string on the fields": lambda: _by_fstring,
    "%-format on the fields": lambda: _by_percent,
    "cache keyed by the second + f-string microseconds": _cached_by_second,
}


def check_renderers(count: int) -> tuple[dict[str, str | None], int]:
    """Per renderer, None when it equals ``render_timestamp`` on ``count`` random instants (a third of them on
    a whole second, a third in the second of the one before) and the edges of the range, each rendered twice,
    else what it renders wrong; and how many instants were checked."""
    rng = random.Random(17)
    span = int((LATEST - EARLIEST) / timedelta(microseconds=1))
    instants = [EARLIEST, LATEST, LATEST - timedelta(microseconds=1), T0, T0.replace(microsecond=0)]
    for n in range(count):
        instant = EARLIEST + timedelta(microseconds=rng.randrange(span))
        if n % 3 == 1:  # the same second as the one before: a cache's hit
            instant = instants[-1].replace(microsecond=rng.randrange(10**6))
        instants.append(instant.replace(microsecond=0) if n % 3 == 0 else instant)
    expected = [render_timestamp(i) for i in instants]
    verdicts: dict[str, str | None] = {}
    for label, make in RENDERERS.items():
        render = make()
        pairs = list(zip(instants, expected, strict=True))
        wrong = next((i for i, e in pairs + pairs if render(i) != e), None)  # twice: a cache's hits too
        verdicts[label] = None if wrong is None else f"{render(wrong)!r} for {expected[instants.index(wrong)]!r}"
    return verdicts, len(instants)


def renderer_costs(instants: list[datetime], correct: list[str]) -> dict[str, float]:
    """Seconds per timestamp of each correct renderer on ``instants`` (the strict floor's own workload, in its
    order, each pass with a fresh renderer as each round of the strict floor has): the best of 9 interleaved
    repeats (the renderers' order rotated each repeat), each at least ~40k timestamps long."""
    loops = max(1, 40_000 // len(instants))
    best = dict.fromkeys(correct, math.inf)
    for repeat in range(9):
        shift = repeat % len(correct)
        for label in correct[shift:] + correct[:shift]:
            renders = [RENDERERS[label]() for _ in range(loops)]  # a fresh cache for every pass, as each round has
            start = time.perf_counter()
            for render in renders:
                for instant in instants:
                    render(instant)
            best[label] = min(best[label], time.perf_counter() - start)
    return {label: seconds / (loops * len(instants)) for label, seconds in best.items()}


def strict_reply(item: WorkItem, heartbeat: bool, render: Callable[[datetime], str]) -> bytes:
    """The reply's bytes, built by hand: what `dumps(HeartbeatObject.of(item).to_json())` or
    `dumps(encode_work(item))` give, with the timestamps rendered by `render`."""
    if heartbeat:
        value: dict[str, Any] = {
            "type": "work_heartbeat",
            "last_heartbeat": render(item.latest_heartbeat_at),  # type: ignore[arg-type]
            "lease_extended": True,
            "state": item.state.value,
            "ttl_seconds": item.ttl_seconds,
        }
    else:
        acked, started, latest = item.acknowledged_at, item.started_at, item.latest_heartbeat_at
        asked, stopped = item.stop_requested_at, item.stopped_at
        value = {
            "id": item.id,
            "type": "work",
            "environment_id": item.environment_id,
            "data": {"type": item.data_type, "id": item.session_id},
            "state": item.state.value,
            "created_at": render(item.created_at),
            "acknowledged_at": None if acked is None else render(acked),
            "started_at": None if started is None else render(started),
            "latest_heartbeat_at": None if latest is None else render(latest),
            "stop_requested_at": None if asked is None else render(asked),
            "stopped_at": None if stopped is None else render(stopped),
            "metadata": dict(item.metadata),
        }
    return ENCODER.encode(value).encode("ascii")


HEARTBEAT_REPLY = [False, False] + [True] * 6 + [False, False]


def run_strict_floor(script: list[tuple[Request, datetime]], items: list[WorkItem], render: Any) -> None:
    """Parse each target and its query; build and serialize the request's own reply by hand."""
    for index, (request, _now) in enumerate(script):
        floor_parse(request.target)
        strict_reply(items[index], HEARTBEAT_REPLY[index % REQUESTS], render)


def rendered_instants(items: list[WorkItem]) -> list[datetime]:
    """Every instant the strict floor renders, in its order."""
    out: list[datetime] = []
    for index, item in enumerate(items):
        if HEARTBEAT_REPLY[index % REQUESTS]:
            out.append(item.latest_heartbeat_at)  # type: ignore[arg-type]
        else:
            stamps = (item.acknowledged_at, item.started_at, item.latest_heartbeat_at)
            stamps += (item.stop_requested_at, item.stopped_at)
            out += [item.created_at, *(t for t in stamps if t is not None)]
    return out


def interleaved(
    contenders: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]], rounds: int, count: int
) -> dict[str, list[float]]:
    """Per contender, its seconds per request in each round: every round runs each contender once on input its
    ``prepare`` made (not timed), the order rotated by one each round; one uncounted warm-up round first."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(-1, rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            prepare, run = contenders[name]
            data = prepare()
            forget_memos()
            gc.collect()
            start = time.process_time()
            run(data)
            elapsed = time.process_time() - start
            if round_ >= 0:
                samples[name].append(elapsed / count)
    return samples


def forget_memos() -> None:
    """Empty the codec's, the router's and the bearer reader's memos (timestamps rendered and parsed, routes,
    tokens): every round renders the same instants and names the same paths, and no round may profit from the
    one before it (within a round, an item's replies rendering its instants again is the server's own gain)."""
    for memo in (codec._STAMPS, codec._PARSED, routes._ROUTED, wire._BEARERS):
        memo.clear()


def spread(values: list[float]) -> tuple[float, float, float, float, float]:
    """(median, first quartile, third quartile, min, max)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3, min(values), max(values)


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


CLOCK = time.process_time  # the growth figures are CPU time: on a shared machine wall time is mostly the others'


def request_costs(count: int, rounds: int, per_round: int) -> dict[str, list[float]]:
    """Seconds per request of each kind with `count` queued items held (and up to `rounds * per_round` more
    of the run's own), one figure per round. A round creates `per_round` items (`create_work`), then polls
    `per_round` times (each takes the oldest never-delivered item), acks, heartbeats (the first, then one
    echoing the token) and reads (`get`) each item it took, asks for `per_round` list pages (default limit,
    cursors spread over the whole id order) and `per_round` stats, and stops each item (graceful)."""
    server, env = queue_of(count)
    base = f"/api/v1/cloud/environments/{env}/work"
    handle = server.handle
    poll = Request("GET", f"{base}/poll", AUTH)
    stats = Request("GET", f"{base}/stats", AUTH)
    now = T0 + timedelta(seconds=1)
    created = count
    costs: dict[str, list[float]] = {
        name: []
        for name in ("create_work", "poll", "ack", "heartbeat", "heartbeat (token)", "get", "list page", "stats")
    }
    costs["stop"] = []
    step_at = timedelta(microseconds=1)
    for _ in range(rounds):
        gc.collect()
        start = CLOCK()
        for i in range(per_round):
            server.create_work(env, session_id=session(created + i), now=now)
        costs["create_work"].append((CLOCK() - start) / per_round)
        created += per_round
        now += step_at
        start = CLOCK()
        works = [handle(poll, now).json["id"] for _ in range(per_round)]
        costs["poll"].append((CLOCK() - start) / per_round)
        for name, suffix in (("ack", "ack"), ("heartbeat", "heartbeat?expected_last_heartbeat=NO_HEARTBEAT")):
            now += step_at
            requests = [Request("POST", f"{base}/{work}/{suffix}", AUTH) for work in works]
            start = CLOCK()
            for request in requests:
                handle(request, now)
            costs[name].append((CLOCK() - start) / per_round)
        token = render_timestamp(now)
        now += step_at
        requests = [Request("POST", f"{base}/{work}/heartbeat?expected_last_heartbeat={token}", AUTH) for work in works]
        start = CLOCK()
        for request in requests:
            if handle(request, now).status != 200:
                raise SystemExit("a heartbeat echoing its token was refused")
        costs["heartbeat (token)"].append((CLOCK() - start) / per_round)
        requests = [Request("GET", f"{base}/{work}", AUTH) for work in works]
        start = CLOCK()
        for request in requests:
            handle(request, now)
        costs["get"].append((CLOCK() - start) / per_round)
        cursors = [f"work_{1 + (created - 1) * k // per_round:032x}" for k in range(per_round)]
        requests = [Request("GET", f"{base}?after_id={cursor}", AUTH) for cursor in cursors]
        start = CLOCK()
        for request in requests:
            handle(request, now)
        costs["list page"].append((CLOCK() - start) / per_round)
        start = CLOCK()
        for _ in range(per_round):
            handle(stats, now)
        costs["stats"].append((CLOCK() - start) / per_round)
        now += step_at
        requests = [Request("POST", f"{base}/{work}/stop", AUTH) for work in works]
        start = CLOCK()
        for request in requests:
            if handle(request, now).status != 200:
                raise SystemExit("a stop was refused")
        costs["stop"].append((CLOCK() - start) / per_round)
    return costs


def _rounds(total: int, rounds: int, run: Callable[[int, int], None]) -> list[float]:
    """Seconds per operation of each of `rounds` rounds of `total // rounds` operations: `run(first, count)`."""
    size = total // rounds
    out = []
    for r in range(rounds):
        start = CLOCK()
        run(r * size, size)
        out.append((CLOCK() - start) / size)
    return out


def poll_cost(count: int, polls: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    """(fresh, frozen, reclaim), per round: a poll taking the oldest never-delivered item from `count` queued ones;
    the same with the cyclic GC's objects frozen (``gc.freeze``); and a poll that must find the oldest reclaimable
    item among `count` delivered-and-unacked ones."""
    server, env = queue_of(count)
    now = T0 + timedelta(seconds=1)
    poll = Request("GET", f"/api/v1/cloud/environments/{env}/work/poll", AUTH)
    handle = server.handle

    def fresh_polls(_first: int, size: int) -> None:
        for _ in range(size):
            handle(poll, now)

    gc.collect()
    fresh = _rounds(polls, rounds, fresh_polls)
    gc.freeze()  # the same polls again with every object so far out of the collector's sight: does the GC grow?
    frozen = _rounds(polls, rounds, fresh_polls)
    gc.unfreeze()
    # Deliver everything (each at its own instant), then reclaim: half of them are inside the window.
    for i in range(count - 2 * polls):
        handle(poll, now + timedelta(microseconds=i))
    late = now + timedelta(microseconds=count // 2) + timedelta(milliseconds=5000)

    def reclaim_polls(first: int, size: int) -> None:
        for i in range(first, first + size):
            handle(poll, late + timedelta(microseconds=i))

    gc.collect()
    return fresh, frozen, _rounds(polls, rounds, reclaim_polls)


def sweep_cost(count: int, lapsing: int, rounds: int) -> list[float]:
    """Seconds per lapsed item, per round, when `lapsing // rounds` of `count` acked items reach their start
    timeout in each of `rounds` sweeps."""
    server, env = queue_of(count)
    base = f"/api/v1/cloud/environments/{env}/work/"
    auth = {"Authorization": "Bearer token"}
    handle = server.handle
    for i in range(count):  # ack each (no poll needed by default) at its own instant: deadlines spread out
        handle(Request("POST", f"{base}work_{i + 1:032x}/ack", auth), T0 + timedelta(seconds=1, microseconds=i))

    def sweep(first: int, size: int) -> None:
        now = T0 + timedelta(seconds=61, microseconds=first + size - 1)  # exactly the next `size` deadlines are due
        lapsed = server.expire(now)
        if lapsed != size:
            raise SystemExit(f"expected {size} lapses, got {lapsed}")

    gc.collect()
    return _rounds(lapsing, rounds, sweep)


def machine_facts() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}, {platform.machine()}), Python {platform.python_version()}"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller queues and fewer lifecycles")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that the script runs")
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    args = parser.parse_args()
    lifecycles = 30 if args.smoke else 300 if args.quick else 1000
    rounds = 3 if args.smoke else 7 if args.quick else 15
    small, large = (2_000, 4_000) if args.smoke else (10_000, 100_000) if args.quick else (10_000, 1_000_000)
    memory_counts = (1_000, 2_000) if args.smoke else (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    us = 1e6
    load_start = load()

    # 0. the renderers: which are correct, and the fastest of those on the strict floor's own workload
    verdicts, checked = check_renderers(2_000 if args.smoke else 50_000)
    correct = [label for label, wrong in verdicts.items() if wrong is None]
    items = reply_items(lifecycles)
    costs = renderer_costs(rendered_instants(items), correct)
    fastest = min(costs, key=costs.__getitem__)
    render = RENDERERS[fastest]()
    for index, item in enumerate(items[:REQUESTS]):  # the strict floor answers what the codec answers
        if strict_reply(item, HEARTBEAT_REPLY[index], render) != dumps(REPLY_ENCODERS[index](item)):
            raise SystemExit(f"the strict floor's reply {index} differs from the codec's")

    # 1. per request, interleaved
    _server, floor_script = prepare_lifecycles(lifecycles)
    count = len(floor_script)
    contenders: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
        "handle": (lambda: prepare_lifecycles(lifecycles), lambda prepared: run_handle(*prepared)),
        "work": (lambda: None, lambda _: run_floor(floor_script, items, False)),
        "own": (lambda: None, lambda _: run_floor(floor_script, items, True)),
        "strict": (lambda: RENDERERS[fastest](), lambda fresh: run_strict_floor(floor_script, items, fresh)),
    }
    samples = interleaved(contenders, rounds, count)
    ratios = {
        name: [h / f for h, f in zip(samples["handle"], samples[name], strict=True)]
        for name in ("work", "own", "strict")
    }

    # 2. memory
    memory = {n: bytes_per_queued_item(n) for n in memory_counts}

    # 3. growth
    probe = 210 if args.smoke else 2100  # polls and lapses timed (a fresh poll's twice: at most a quarter of small)
    growth_rounds = 3 if args.smoke else 7
    polls = {n: poll_cost(n, probe, growth_rounds) for n in (small, large)}
    sweeps = {n: sweep_cost(n, probe, growth_rounds) for n in (small, large)}
    per_round = 200 if args.smoke else 500
    requests = {n: request_costs(n, growth_rounds, per_round) for n in (small, large)}
    load_end = load()

    log_ratio = math.log2(large) / math.log2(small)

    def cell(values: list[float], scale: float, fmt: str, unit: str = "") -> str:
        median, q1, q3, low, high = spread(values)
        return (
            f"{median * scale:{fmt}}{unit} | {q1 * scale:{fmt}}-{q3 * scale:{fmt}} | "
            f"{low * scale:{fmt}}-{high * scale:{fmt}}"
        )

    mode = "--smoke" if args.smoke else "--quick" if args.quick else "full run"
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine_facts()}, {mode}. The machine was shared with other "
        f"work: load average {load_start} at the start, {load_end} at the end.",
        "",
        f"1. Per request: {lifecycles} lifecycles x {REQUESTS} requests per contender per round, {rounds} interleaved "
        "rounds (order rotated each round, one warm-up round uncounted); ratios computed per round.",
        "",
        "| contender | us/request: median | IQR | min-max | handle / it: median | IQR | min-max |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| handle: full lifecycles through `Server.handle` | {cell(samples['handle'], us, '.2f')} | - | - | - |",
        f"| floor: parse, work-item reply through the codec | {cell(samples['work'], us, '.2f')} "
        f"| {cell(ratios['work'], 1, '.2f', 'x')} |",
        f"| floor: parse, each request's own reply through the codec | {cell(samples['own'], us, '.2f')} "
        f"| {cell(ratios['own'], 1, '.2f', 'x')} |",
        f"| **strict floor**: parse, own reply built by hand, fastest renderer | {cell(samples['strict'], us, '.2f')} "
        f"| {cell(ratios['strict'], 1, '.2f', 'x')} |",
        "",
        f"Target (issue 17 point 3): `handle` at most 3x the strict floor: **{spread(ratios['strict'])[0]:.2f}x**.",
        "",
        f"Timestamp renderers (each checked against `render_timestamp` on {checked:,} instants; cost per timestamp "
        "on the strict floor's own instants, best of 9 interleaved repeats):",
        "",
    ]
    for label, wrong in verdicts.items():
        if wrong is not None:
            lines.append(f"- {label}: **wrong** ({wrong})")
        else:
            mark = " (**fastest**: the strict floor's)" if label == fastest else ""
            lines.append(f"- {label}: {costs[label] * 1e9:.0f} ns{mark}")
    lines += ["", "2. Memory per queued item (tracemalloc; target at most 600 bytes):", ""]
    for n, (per_item, seconds) in memory.items():
        lines.append(f"- {n:,} items: {per_item:.0f} bytes/item (created in {seconds:.1f} s under tracemalloc)")
    lines += [
        "",
        f"3. Growth from {small:,} to {large:,} items held (CPU time; target: at most logarithmic, {log_ratio:.2f}x). "
        f"Medians of {growth_rounds} rounds (min-max in brackets); in the request mix (the rows from create_work on) "
        f"a round runs each kind of request {per_round} times on the same items (create, poll, ack, first heartbeat, "
        "heartbeat echoing its token, get, list page at a cursor spread over the ids, stats, stop):",
        "",
        f"| per request | {small:,} items: us | {large:,} items: us | growth |",
        "|---|---:|---:|---:|",
    ]
    size = probe // growth_rounds
    rows = {
        f"poll of never-delivered items (rounds of {size})": (polls[small][0], polls[large][0]),
        "the same, with the GC's objects frozen (`gc.freeze`)": (polls[small][1], polls[large][1]),
        f"poll that must reclaim among pending items (rounds of {size})": (polls[small][2], polls[large][2]),
        f"expiry sweep per lapsed item (sweeps of {size})": (sweeps[small], sweeps[large]),
    }
    for name in requests[small]:
        rows[name] = (requests[small][name], requests[large][name])
    for name, (a, b) in rows.items():
        ma, mb = statistics.median(a), statistics.median(b)
        lines.append(
            f"| {name} | {ma * us:.2f} ({min(a) * us:.2f}-{max(a) * us:.2f}) "
            f"| {mb * us:.2f} ({min(b) * us:.2f}-{max(b) * us:.2f}) | {mb / ma:.2f}x |"
        )
    worst = max(statistics.median(b) / statistics.median(a) for a, b in rows.values())
    lines += ["", f"Largest growth: **{worst:.2f}x** (target at most {log_ratio:.2f}x)."]
    report = "\n".join(lines)
    print(report)
    sys.stdout.flush()
    if args.update:
        path = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
        text = path.read_text()
        begin, end = "<!-- bench_server:begin -->", "<!-- bench_server:end -->"
        head, rest = text.split(begin, 1)
        path.write_text(head + begin + "\n" + report + "\n" + end + rest.split(end, 1)[1])
        print(f"updated {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
