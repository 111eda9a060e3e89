"""The server's index of delivered items: the hand-written treap against ``sortedcontainers``.

Run: ``python benchmarks/bench_index.py`` (``--update`` rewrites the figures block of
docs/performance.md; ``--smoke`` runs tiny sizes, only to check that the script runs). Prints
figures; asserts nothing but that every contender gives the same answers.

The index holds the queued items a poll delivered, by delivery time; the server asks it, per poll,
"the oldest item by creation delivered at or before ``now - window``" (``oldest(until)``: the item a
poll reclaims), and per stats request "how many were delivered at or before ``now - window``"
(``count(until)``) and "the oldest of all" (``oldest()``). It inserts at delivery and removes at ack
or at a reclaim (which inserts the item again at its new delivery).

Contenders, all behind the same four calls:

- ``treap``: :class:`workstate.api.index.Delivered`, every subtree knowing its size and its oldest
  key: each question is one walk down the tree.
- ``sorted, prefix scan``: a ``SortedList`` of ``(delivered_at, key)`` (count: one bisection) and one
  of ``(key, delivered_at)`` (``oldest()``: its first element); ``oldest(until)`` takes the minimum key
  over the prefix delivered at or before ``until`` (``min`` over ``islice``, at C speed).
- ``sorted, bounded dual scan``: the same two lists; ``oldest(until)`` first walks the creation order
  from the oldest key, for at most as many steps as the prefix is long, and stops at the first item
  delivered at or before ``until``; only if that finds none does it scan the prefix. Its cost is at
  most about twice the smaller of the two scans.

Workloads, each at 1,000, 10,000 and 100,000 pending (delivered, unacked) items:

- ``steady``: a healthy fleet. Every step is a poll: it reclaims the oldest reclaimable item if
  there is one, else delivers a fresh item; each delivered item is acked ``pending`` steps later,
  except one in a hundred, which its worker abandons; a stats request every ten polls. The window
  is longer than the ack delay, so only abandoned items become reclaimable.
- ``backlog``: the fleet comes back after an outage. All pending items were delivered more than a
  window ago (delivery order shuffled against creation order, as earlier reclaims leave it); every
  step is a poll that reclaims the oldest reclaimable item, half of which are acked at once, the
  rest abandoned again; a stats request every ten polls; the whole run lies within one window.
  Measured from the middle of the drain (half the backlog reclaimed), where both scans of the
  ``SortedList`` contenders are long: the prefix is what is still to reclaim, and the oldest keys
  are those reclaimed within the window.

Rounds alternate the order of the contenders; each round builds every contender afresh from the
same starting state (not timed) and times the same steps. Figures are microseconds per step (one
poll with its writes, and a tenth of a stats request): the median over the rounds, and the range.
"""

from __future__ import annotations

import argparse
import gc
import operator
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from workstate.api.index import CreationKey, Delivered

try:
    from sortedcontainers import SortedList
except ImportError:  # the sortedcontainers contenders are skipped, with a note
    SortedList = None

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WINDOW = timedelta(seconds=5)  # Policy.reclaim_older_than_ms, the default
DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench_index:begin -->", "<!-- bench_index:end -->"
_SECOND = operator.itemgetter(1)
_LAST = (datetime.max.replace(tzinfo=UTC), "")  # sorts after every key at the same instant


class Index(Protocol):
    def __len__(self) -> int: ...
    def insert(self, at: datetime, key: CreationKey) -> None: ...
    def remove(self, at: datetime, key: CreationKey) -> None: ...
    def oldest(self, until: datetime | None = None) -> CreationKey | None: ...
    def count(self, until: datetime) -> int: ...


class SortedPrefixScan:
    """Two ``SortedList``: by delivery (count, the prefix) and by creation (the oldest of all)."""

    def __init__(self, entries: Iterable[tuple[datetime, CreationKey]]) -> None:
        entries = list(entries)
        self.by_at = SortedList(entries)
        self.by_key = SortedList((key, at) for at, key in entries)

    def __len__(self) -> int:
        return len(self.by_at)

    def insert(self, at: datetime, key: CreationKey) -> None:
        self.by_at.add((at, key))
        self.by_key.add((key, at))

    def remove(self, at: datetime, key: CreationKey) -> None:
        self.by_at.remove((at, key))
        self.by_key.remove((key, at))

    def count(self, until: datetime) -> int:
        return int(self.by_at.bisect_right((until, _LAST)))

    def oldest(self, until: datetime | None = None) -> CreationKey | None:
        if until is None:
            return self.by_key[0][0] if self.by_key else None
        end = self.count(until)
        return self.oldest_in_prefix(until, end) if end else None

    def oldest_in_prefix(self, until: datetime, end: int) -> CreationKey:
        """The oldest key of the first ``end`` entries by delivery (those delivered at or before ``until``)."""
        return min(self.by_at.islice(0, end), key=_SECOND)[1]


class SortedDualScan(SortedPrefixScan):
    """As :class:`SortedPrefixScan`, but the prefix's oldest is first sought in creation order, as far as it is long."""

    def oldest_in_prefix(self, until: datetime, end: int) -> CreationKey:
        steps = end
        for key, at in self.by_key:
            if at <= until:
                return key
            steps -= 1
            if not steps:
                break
        return min(self.by_at.islice(0, end), key=_SECOND)[1]


def treap(entries: Iterable[tuple[datetime, CreationKey]]) -> Index:
    index = Delivered()
    for at, key in entries:
        index.insert(at, key)
    return index


def key_of(n: int) -> CreationKey:
    return T0 + timedelta(microseconds=n), f"work_{n:032x}"


# --- the workloads: a starting state, and the steps timed from it ----------------------------------------


class Workload:
    """A starting state and a deterministic run of steps over any index; the run's answers are its digest.

    A step is a poll at the next tick (:meth:`served` makes its writes) and, every tenth step, a stats
    request.
    """

    name = ""

    def __init__(self, pending: int, steps: int, seed: int) -> None:
        self.pending = pending
        self.steps = steps
        self.repeats = 1  # runs per round (each from the starting state), for runs too short to time alone
        self.seed = seed
        self.start: list[tuple[datetime, CreationKey]] = []
        self.now = T0
        self.tick = WINDOW / (4 * pending)

    def served(self, index: Index, step: int, now: datetime, found: CreationKey | None, rng: random.Random) -> int:
        """The writes of the poll of ``step``, which found ``found`` to reclaim (or None); a digest of them."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the starting state (of everything :meth:`served` keeps beside the index)."""

    def steps_of(self, index: Index, steps: int, rng: random.Random, now: datetime) -> tuple[datetime, int]:
        """Run ``steps`` steps from ``now``: the clock after them, and a digest of every answer."""
        tick, digest, served = self.tick, 0, self.served
        oldest, count = index.oldest, index.count
        for step in range(steps):
            now += tick
            digest += served(index, step, now, oldest(now - WINDOW), rng)
            if step % 10 == 0:
                digest += count(now - WINDOW) + (oldest() is not None)
        return now, digest

    def run(self, index: Index) -> tuple[float, int]:
        """Seconds taken by the steps from the starting state, and a digest of every answer."""
        self.reset()
        rng = random.Random(self.seed + 1)
        started = time.perf_counter()
        _, digest = self.steps_of(index, self.steps, rng, self.now)
        return time.perf_counter() - started, digest + len(index)


class Steady(Workload):
    name = "steady"

    def __init__(self, pending: int, steps: int, seed: int) -> None:
        super().__init__(pending, steps, seed)  # the ack delay, `pending` steps, is a quarter of the window
        self.acks: dict[int, tuple[datetime, CreationKey]] = {}  # step -> the delivery acked then
        self.abandoned: dict[CreationKey, datetime] = {}  # key -> when it was delivered
        self.created = 0
        warm = Delivered()
        warmup = 8 * pending  # two windows: the abandoned items are in their reclaim cycle
        self.now, _ = self.steps_of(warm, warmup, random.Random(seed), T0)
        self.start = _entries(warm)
        self.saved = ({step - warmup: entry for step, entry in self.acks.items()}, dict(self.abandoned), self.created)

    def reset(self) -> None:
        acks, abandoned, self.created = self.saved
        self.acks, self.abandoned = dict(acks), dict(abandoned)

    def served(self, index: Index, step: int, now: datetime, found: CreationKey | None, rng: random.Random) -> int:
        if found is not None:  # an abandoned delivery, reclaimed
            index.remove(self.abandoned.pop(found), found)
            key = found
        else:
            self.created += 1
            key = key_of(self.created)
        index.insert(now, key)
        if rng.random() < 0.01:
            self.abandoned[key] = now
        else:
            self.acks[step + self.pending] = (now, key)
        due = self.acks.pop(step, None)
        if due is not None:
            index.remove(*due)
        return found is not None


class Backlog(Workload):
    name = "backlog"

    def __init__(self, pending: int, steps: int, seed: int) -> None:
        super().__init__(pending, min(steps, pending // 4), seed)  # the drain goes on from its middle
        self.repeats = max(1, steps // self.steps)
        rng = random.Random(seed)
        delivered = [T0 + i * (WINDOW / pending) for i in range(pending)]
        rng.shuffle(delivered)
        warm = Delivered()
        for n, at in enumerate(delivered):
            warm.insert(at, key_of(n + 1))
        self.at_of = {key: at for at, key in _entries(warm)}  # key -> when it was delivered
        outage = T0 + 3 * WINDOW  # everything delivered is reclaimable; the steps below stay within one window
        self.now, _ = self.steps_of(warm, pending // 2, random.Random(seed + 2), outage)
        self.start = _entries(warm)
        self.saved = dict(self.at_of)

    def reset(self) -> None:
        self.at_of = dict(self.saved)

    def served(self, index: Index, step: int, now: datetime, found: CreationKey | None, rng: random.Random) -> int:
        if found is None:
            return 0
        at_of = self.at_of
        index.remove(at_of[found], found)
        index.insert(now, found)
        at_of[found] = now
        if rng.random() < 0.5:  # its worker acks it
            index.remove(now, found)
            del at_of[found]
        return found[0].microsecond


def _entries(index: Delivered) -> list[tuple[datetime, CreationKey]]:
    """Every (delivered_at, key) of a treap, in order."""
    out: list[tuple[datetime, CreationKey]] = []
    stack: list[Any] = []
    node = index.root
    while stack or node is not None:
        while node is not None:
            stack.append(node)
            node = node.left
        node = stack.pop()
        out.append((node.at, node.key))
        node = node.right
    return out


# --- measuring ----------------------------------------------------------------------------------------


def contenders() -> dict[str, Callable[[list[tuple[datetime, CreationKey]]], Index]]:
    found: dict[str, Callable[[list[tuple[datetime, CreationKey]]], Index]] = {"treap": treap}
    if SortedList is not None:
        found["sorted, prefix scan"] = SortedPrefixScan
        found["sorted, bounded dual scan"] = SortedDualScan
    return found


def measure(workload: Workload, rounds: int) -> dict[str, list[float]]:
    """Microseconds per step of every contender, one figure per round; the contenders alternate in order."""
    builders = contenders()
    names = list(builders)
    figures: dict[str, list[float]] = {name: [] for name in names}
    digests: dict[str, int] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            total = 0.0
            for _ in range(workload.repeats):
                index = builders[name](workload.start)
                gc.collect()
                seconds, digest = workload.run(index)
                total += seconds
                if digests.setdefault(name, digest) != digest or digest != digests[names[0]]:
                    raise SystemExit(f"{name} answered differently on {workload.name} at {workload.pending:,}")
            figures[name].append(total / (workload.steps * workload.repeats) * 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that the script runs")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per contender (default 7)")
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    args = parser.parse_args()
    sizes = (100, 300) if args.smoke else (1_000, 10_000, 100_000)
    rounds = 2 if args.smoke else args.rounds
    steps = 100 if args.smoke else 2_000

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} ({_cores()}), Python "
        f"{platform.python_version()}, sortedcontainers "
        f"{_version()}: {steps:,} steps per round, {rounds} rounds alternating the order of the contenders; "
        "microseconds per step, median [min, max].",
        "",
    ]
    if SortedList is None:
        note = "sortedcontainers is not installed: its contenders are skipped (pip install sortedcontainers)"
        print(f"note: {note}")
        lines += [f"Note: {note}.", ""]
    names = list(contenders())
    lines += ["| workload | pending | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for kind in (Steady, Backlog):
        for size in sizes:
            workload = kind(size, steps, seed=size)
            figures = measure(workload, rounds)
            cells = [_cell(figures[name]) for name in names]
            lines.append(f"| {workload.name} | {size:,} | " + " | ".join(cells) + " |")
            print(lines[-1])
            sys.stdout.flush()
    report = "\n".join(lines)
    print()
    print(report)
    if args.update and not args.smoke:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + BEGIN + "\n" + report + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
        print(f"updated {DOC}", file=sys.stderr)


def _cell(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} [{min(samples):.1f}, {max(samples):.1f}]"


def _cores() -> str:
    import os

    count = os.cpu_count()
    return f"{count} cores" if count else "cores unknown"


def _version() -> str:
    if SortedList is None:
        return "not installed"
    from importlib.metadata import version

    return version("sortedcontainers")


if __name__ == "__main__":
    main()
