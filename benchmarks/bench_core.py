"""What a step of the lifecycle costs, against the usual ways of running a `transitions` Machine.

Run: ``python benchmarks/bench_core.py`` (``--quick`` for a short run; ``--update`` rewrites the
figures block of docs/performance.md). Everything is measured in one run on this machine, so the
ratios compare like with like. Prints figures and ratios; asserts nothing.

The lifecycle driven everywhere: deliver, ack, first heartbeat (NO_HEARTBEAT), five heartbeats
echoing the token, graceful stop, confirming stop: 10 commands.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from transitions import Machine

from workstate import DEFAULT_POLICY, NO_HEARTBEAT, Ack, Deliver, Heartbeat, Stop, WorkItem, step
from workstate.model import ACTIONS, GUARDS
from workstate.rules import RULE_TABLE, State, build_machine

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
TIMES = [T0 + timedelta(seconds=i + 1) for i in range(10)]
ENV = "env_" + "e" * 32
ONE = timedelta(seconds=1)


def new_item(n: int) -> WorkItem:
    created = T0 - timedelta(microseconds=n)  # each item its own instant, as in real life
    return WorkItem(id=f"work_{n:032x}", environment_id=ENV, session_id=f"sess_{n:032x}", created_at=created)


# Every way below runs the same commands, built once outside the timed region: the figures are
# the cost of deciding and applying a command, not of building it.
SCRIPT: list[tuple[str, Any, datetime]] = [
    ("deliver", Deliver("w1"), TIMES[0]),
    ("ack", Ack("w1"), TIMES[1]),
    ("heartbeat", Heartbeat(NO_HEARTBEAT), TIMES[2]),
    *[("heartbeat", Heartbeat(TIMES[i - 1] if i > 3 else TIMES[2]), TIMES[i]) for i in range(3, 8)],
    ("stop", Stop(), TIMES[8]),
    ("stop", Stop(), TIMES[9]),
]


COMMANDS = 10


# --- 1. the pure step function --------------------------------------------------------------------


def run_pure(items: list[WorkItem]) -> None:
    for item in items:
        for _trigger, command, at in SCRIPT:
            item = step(item, command, at).item
        assert item.state is State.STOPPED


# --- 2. the usual transitions way: a mutable model, guards as properties, actions as callbacks -----


class MutableWork:
    """A plain mutable work item that a transitions Machine drives, reusing workstate's guards and actions."""

    def __init__(self, item: WorkItem) -> None:
        self.__dict__.update({name: getattr(item, name) for name in item.__slots__ if name != "state"})
        self.command: Any = None
        self.at: datetime = T0

    def _guard(self, name: str) -> bool:
        return GUARDS[name](self, self.command, self.at, DEFAULT_POLICY)  # type: ignore[index,arg-type]


for _guard in {g for entry in RULE_TABLE.values() for g in entry.guards}:
    setattr(MutableWork, str(_guard), property(lambda self, name=_guard: self._guard(name)))
for _name, _action in ACTIONS.items():

    def _run(self: MutableWork, event: Any, run: Any = _action.run) -> None:
        changes: dict[str, Any] = {}
        run(self, self.command, self.at, DEFAULT_POLICY, changes, [])
        self.__dict__.update(changes)

    setattr(MutableWork, _name, _run)


def drive(model: Any) -> None:
    for trigger, command, at in SCRIPT:
        model.command, model.at = command, at
        getattr(model, trigger)()  # the trigger method transitions put on the model
    assert model.state == "stopped", model.state


def run_machine_per_item(models: list[MutableWork]) -> None:
    for model in models:
        drive(model)


def run_shared_machine(machine: Machine, models: list[MutableWork]) -> None:
    for model in models:
        machine.add_model(model, initial="queued")
        drive(model)
        machine.remove_model(model)


# --- 3. the floor: a plain dict lookup per command ------------------------------------------------

FLOOR = {(s.value, t.value): entry.rules[-1].target(s).value for (s, t), entry in RULE_TABLE.items()}
FLOOR_SCRIPT = ["deliver", "ack"] + ["heartbeat"] * 6 + ["stop", "stop"]


def run_floor(n: int) -> None:
    table = FLOOR
    for _ in range(n):
        state = "queued"
        for trigger in FLOOR_SCRIPT:
            state = table[state, trigger]


# --- measuring ------------------------------------------------------------------------------------


def median_per_command(run: Callable[[], None], commands: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) / commands)
    return statistics.median(samples)


def bytes_per_item(count: int, lifecycle: bool) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    items = [new_item(n) for n in range(count)]
    if lifecycle:  # an active item carries more timestamps, each its own instant
        items = [
            step(step(i, Ack("w1"), i.created_at + ONE).item, Heartbeat(NO_HEARTBEAT), i.created_at + 2 * ONE).item
            for i in items
        ]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del items
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    repeats = 5 if args.quick else 15
    items = [new_item(i) for i in range(n)]

    pure = median_per_command(lambda: run_pure(items), n * COMMANDS, repeats)

    per_item_models = [[MutableWork(i) for i in items] for _ in range(repeats)]
    start = time.perf_counter()
    for models in per_item_models:
        for model in models:
            build_machine(model=model)
    machine_build = (time.perf_counter() - start) / (n * repeats)
    batches = iter(per_item_models)
    per_item = median_per_command(lambda: run_machine_per_item(next(batches)), n * COMMANDS, repeats)

    shared = build_machine()
    shared_models = [[MutableWork(i) for i in items] for _ in range(repeats)]
    batches = iter(shared_models)
    shared_cost = median_per_command(lambda: run_shared_machine(shared, next(batches)), n * COMMANDS, repeats)

    # add_model is O(number of models already registered): measure one registration at 0 and at 50k.
    crowd = build_machine()
    add_at: dict[int, float] = {}
    for registered in (0, 50_000 if not args.quick else 5_000):
        for model in [MutableWork(items[0]) for _ in range(registered - len(crowd.models))]:
            crowd.add_model(model, initial="queued")
        probes = [MutableWork(items[0]) for _ in range(20)]
        start = time.perf_counter()
        for probe in probes:
            crowd.add_model(probe, initial="queued")
        add_at[registered] = (time.perf_counter() - start) / len(probes)
        for probe in probes:
            crowd.remove_model(probe)

    floor = median_per_command(lambda: run_floor(n), n * COMMANDS, repeats)
    count = 10_000 if args.quick else 100_000
    queued_bytes = bytes_per_item(count, lifecycle=False)
    active_bytes = bytes_per_item(count, lifecycle=True)

    us = 1e6
    rows = [
        ("workstate `step` (pure, frozen values, lazy expiry)", pure),
        ("transitions, one Machine per item (trigger methods)", per_item),
        ("transitions, one shared Machine (add_model/remove_model)", shared_cost),
        ("floor: one dict lookup per command", floor),
    ]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python {platform.python_version()}, "
        f"{n} lifecycles x {COMMANDS} commands, median of {repeats} runs.",
        "",
        "| way of running the lifecycle | per command | vs `step` |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {cost * us:.2f} us | {cost / pure:.2f}x |" for name, cost in rows]
    lines += [
        "",
        f"- Building one Machine for one item: {machine_build * us:.0f} us.",
        f"- `add_model` with 0 models registered: {add_at[0] * us:.0f} us; "
        f"with {max(add_at):,}: {add_at[max(add_at)] * us:.0f} us.",
        f"- Memory per `WorkItem` (tracemalloc over {count:,} items, each with its own ids and timestamps): "
        f"{queued_bytes:.0f} bytes queued, {active_bytes:.0f} bytes active "
        "(acked and heartbeated: three more instants of its own).",
        "",
        f"Targets: `step` at least 5x faster than a Machine per item: **{per_item / pure:.1f}x**; "
        f"at most 2 us per command: **{pure * us:.2f} us**; at most 400 bytes per item: "
        f"**{queued_bytes:.0f} / {active_bytes:.0f} bytes**.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.update:
        path = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
        text = path.read_text()
        begin, end = "<!-- bench_core:begin -->", "<!-- bench_core:end -->"
        head, rest = text.split(begin, 1)
        path.write_text(head + begin + "\n" + report + "\n" + end + rest.split(end, 1)[1])
        print(f"updated {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
