"""What a step of the lifecycle costs, against the hand-written limit and the usual state-machine libraries.

Run: ``python benchmarks/bench_core.py`` (``--quick`` for a short run; ``--update`` rewrites the
figures block of docs/performance.md). Prints figures and ratios; asserts nothing about speed.

The lifecycle driven everywhere: deliver, ack, first heartbeat (NO_HEARTBEAT), five heartbeats
echoing the token, graceful stop, confirming stop: 10 commands, built once outside the timed region.

All contenders run **interleaved**: in every round each of them runs the same lifecycles once (on
fresh items prepared outside the timed region), in an order rotated from round to round, so that a
change in the machine's load hits them all alike. The report gives, per contender, the median cost
per command over the rounds and its spread (interquartile range and min-max), and each ratio to
``step`` computed within a round and then summarized the same way.

Contenders:

- ``step``: workstate's pure step function (frozen values, lazy expiry, the checks).
- the hand-written limit (:func:`hand_step`): the same rules (qoder dialect, ``Policy()``) as plain
  functions over a ``typing.NamedTuple``, with the lazy expiry of the start timeout and the lease
  before each command, the item's ``clock`` for time that goes backwards, the heartbeat token rule and
  the metadata limits. It returns the new item and the name of the deciding rule, but no effect
  objects and no argument checks: what a competent user would hand-write for speed. Before
  anything is timed, every run checks it equal to ``step`` on fuzzed commands (:func:`check_limit`)
  and aborts at the first difference.
- a competent ``transitions`` usage (:class:`CompetentWork`): guards and actions as model methods,
  ``send_event=False`` (the command and the instant are the trigger's arguments), internal
  transitions (``dest=None``) for every stay so no exit/enter callbacks run, the same rules and lazy
  expiry (the ``lapse`` trigger is fired when a deadline is due before a command), and an answer
  callback per rule so the caller learns which rule decided (``step`` and the limit tell it too).
  **One shared Machine**, built once: a Machine per item costs about a millisecond to build (printed
  below), and ``add_model`` costs time proportional to the models already registered (printed
  below), so a competent user with many items keeps plain model objects that carry a ``state``
  attribute and fires ``machine.events[name].trigger(model, ...)``, which is exactly what the
  trigger method ``add_model`` would put on the model does.
- the usual ``transitions`` usage (the earlier baseline): every guard of the declaration (the dialect's
  too) as a property and every action as a callback (the same code as the competent model's),
  ``send_event=True``, reflexive transitions, no expiry check; one Machine per item, and one shared
  Machine with ``add_model``/``remove_model`` around each lifecycle.
- ``python-statemachine`` 3.x (the ``bench`` extra): the same rules in its idiom (``State``,
  transitions with ``cond=``/``unless=``, internal self-transitions for stays, callbacks on the
  machine), one machine instance per item (its idiom: the instance holds the current state), built
  outside the timed region. Skipped, with a line saying so, when the package is not installed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import attrs
from transitions import Machine

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    QODER,
    Ack,
    Deliver,
    Heartbeat,
    Lapse,
    OnLeaseExpiry,
    OnStartTimeout,
    State,
    Stop,
    UpdateMetadata,
    WorkItem,
    render_timestamp,
    step,
)
from workstate.rules import DECLARATION, Kind, build_machine

try:
    import statemachine as psm
except ImportError:  # the `bench` extra is not installed
    psm = None

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
TIMES = [T0 + timedelta(seconds=i + 1) for i in range(10)]
ENV = "env_" + "e" * 32
ONE = timedelta(seconds=1)
MICRO = timedelta(microseconds=1)
POLICY = DEFAULT_POLICY
LAPSE = Lapse()


def new_item(n: int) -> WorkItem:
    created = T0 - timedelta(microseconds=n)  # each item its own instant, as in real life
    return WorkItem(id=f"work_{n:032x}", environment_id=ENV, session_id=f"sess_{n:032x}", created_at=created)


SCRIPT: list[tuple[str, Any, datetime]] = [
    ("deliver", Deliver("w1"), TIMES[0]),
    ("ack", Ack("w1"), TIMES[1]),
    ("heartbeat", Heartbeat(NO_HEARTBEAT), TIMES[2]),
    *[("heartbeat", Heartbeat(TIMES[i - 1] if i > 3 else TIMES[2]), TIMES[i]) for i in range(3, 8)],
    ("stop", Stop(), TIMES[8]),
    ("stop", Stop(), TIMES[9]),
]
COMMANDS = len(SCRIPT)


def run_step(items: list[WorkItem]) -> None:
    for item in items:
        for _trigger, command, at in SCRIPT:
            item = step(item, command, at).item
        assert item.state is State.STOPPED


# --- the hand-written limit: the same rules as plain functions over a NamedTuple --------------------------


class Item(NamedTuple):
    """A work item as a hand-writer keeps it: WorkItem's fields, in its order, in a tuple."""

    id: str
    environment_id: str
    session_id: str
    created_at: datetime
    state: State
    acknowledged_at: datetime | None
    started_at: datetime | None
    latest_heartbeat_at: datetime | None
    stop_requested_at: datetime | None
    stopped_at: datetime | None
    metadata: Mapping[str, str]
    worker_id: str | None
    delivered_at: datetime | None
    delivered_to: str | None
    ttl_seconds: int | None
    clock: datetime
    version: int
    data_type: str


FIELDS = tuple(field.name for field in attrs.fields(WorkItem))
if Item._fields != FIELDS:  # the benchmark's twin must follow WorkItem
    raise SystemExit(f"WorkItem's fields changed: {FIELDS} != {Item._fields}")

QUEUED, STARTING, ACTIVE, STOPPING, STOPPED = State
_new = tuple.__new__
START_TIMEOUT = timedelta(seconds=POLICY.start_timeout_seconds)
RECLAIM_MS = POLICY.reclaim_older_than_ms
TTL_DEFAULT, TTL_MIN, TTL_MAX = POLICY.default_ttl_seconds, POLICY.min_ttl_seconds, POLICY.max_ttl_seconds
MAX_KEYS, MAX_KEY, MAX_VALUE = (
    POLICY.metadata_max_keys,
    POLICY.metadata_max_key_length,
    POLICY.metadata_max_value_length,
)
_TTL: dict[int, timedelta] = {}
if (
    POLICY.on_start_timeout is not OnStartTimeout.REQUEUE
    or POLICY.on_lease_expiry is not OnLeaseExpiry.REQUEUE
    or POLICY.ack_requires_delivery
    or QODER.guards
    != {
        "checks_worker": True,
        "stopped_heartbeat_reports": False,
        "queued_heartbeat_fails_precondition": False,
        "stop_of_stopped_refused": False,
    }
):
    raise SystemExit("the hand-written limit is written for Policy() and the qoder dialect as they were")


def as_tuple(item: WorkItem) -> Item:
    return Item(*(getattr(item, name) for name in FIELDS))


def _deadline(item: Item) -> datetime | None:
    st = item.state
    if st is ACTIVE or st is STOPPING:
        latest = item.latest_heartbeat_at
        if latest is not None:
            ttl = _TTL.get(item.ttl_seconds)  # type: ignore[arg-type]
            if ttl is None:
                ttl = _TTL[item.ttl_seconds] = timedelta(seconds=item.ttl_seconds)  # type: ignore[arg-type]
            return latest + ttl
    if (st is STARTING or st is STOPPING) and item.acknowledged_at is not None:
        return item.acknowledged_at + START_TIMEOUT
    return None


def _lapse(item: Item, deadline: datetime) -> tuple[Item, str]:
    i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, dat, dto, ttl, clk, ver, dt = item
    at = deadline if deadline > clk else clk
    if st is STOPPING:
        new = _new(Item, (i, e, s, c, STOPPED, ack, sta, hb, sreq, at, md, w, dat, dto, ttl, at, ver + 1, dt))
        return new, "drain-expired"
    new = _new(Item, (i, e, s, c, QUEUED, None, None, None, sreq, stp, md, None, None, None, None, at, ver + 1, dt))
    return new, "start-timeout" if st is STARTING else "lease-expired"


def _deliver(item: Item, cmd: Deliver, now: datetime) -> tuple[Item, str]:
    if item.state is not QUEUED:
        return item, "deliver-not-queued"
    i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, dat, _, ttl, clk, ver, dt = item
    at = now if now > clk else clk
    if dat is not None:
        window = RECLAIM_MS if cmd.reclaim_older_than_ms is None else cmd.reclaim_older_than_ms
        if (at - dat) // MICRO < window * 1000:
            return item, "deliver-not-reclaimable"
    new = _new(Item, (i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, at, cmd.worker_id, ttl, at, ver + 1, dt))
    return new, "deliver"


def _ack(item: Item, cmd: Ack, now: datetime) -> tuple[Item, str]:
    i, e, s, c, st, _, sta, hb, sreq, stp, md, w, dat, dto, ttl, clk, ver, dt = item
    if st is STOPPING or st is STOPPED:
        return item, "ack-after-stop"
    wid = cmd.worker_id
    claimant = w if w is not None else dto
    conflict = wid is not None and claimant is not None and wid != claimant
    if st is not QUEUED:
        return item, "ack-bound-to-another" if conflict else "ack-replay"
    if conflict:
        return item, "ack-claimed-by-another"
    at = now if now > clk else clk
    w = wid if wid is not None else dto
    return _new(Item, (i, e, s, c, STARTING, at, sta, hb, sreq, stp, md, w, dat, dto, ttl, at, ver + 1, dt)), "ack"


def _heartbeat(item: Item, cmd: Heartbeat, now: datetime) -> tuple[Item, str]:
    i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, dat, dto, ttl, clk, ver, dt = item
    if st is QUEUED:
        return item, "heartbeat-queued"
    if st is STOPPED:
        return item, "heartbeat-stopped"
    expected = cmd.expected_last_heartbeat
    if expected is not None:
        if expected is NO_HEARTBEAT or expected == NO_HEARTBEAT:
            holds = hb is None
        else:
            holds = hb is not None and not cmd.matches_nothing and cmd.expected_instant == hb
        if not holds:
            return item, "heartbeat-precondition-failed"
    at = now if now > clk else clk
    token = at if hb is None or at > hb else hb + MICRO
    ttl = cmd.desired_ttl_seconds
    ttl = TTL_DEFAULT if ttl is None else TTL_MIN if ttl < TTL_MIN else TTL_MAX if ttl > TTL_MAX else ttl
    if st is STARTING:
        new = _new(Item, (i, e, s, c, ACTIVE, ack, token, token, sreq, stp, md, w, dat, dto, ttl, token, ver + 1, dt))
        return new, "heartbeat-first"
    new = _new(Item, (i, e, s, c, st, ack, sta, token, sreq, stp, md, w, dat, dto, ttl, token, ver + 1, dt))
    return new, "heartbeat" if st is ACTIVE else "heartbeat-while-stopping"


def _stop(item: Item, cmd: Stop, now: datetime) -> tuple[Item, str]:
    i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, dat, dto, ttl, clk, ver, dt = item
    if st is STOPPED:
        return item, "force-stop-stopped" if cmd.force else "stop-stopped"
    at = now if now > clk else clk
    if cmd.force:
        new = _new(Item, (i, e, s, c, STOPPED, ack, sta, hb, sreq, at, md, w, dat, dto, ttl, at, ver + 1, dt))
        return new, "force-stop"
    if st is QUEUED:
        new = _new(Item, (i, e, s, c, STOPPED, ack, sta, hb, at, at, md, w, dat, dto, ttl, at, ver + 1, dt))
        return new, "stop-queued"
    if st is STOPPING:
        new = _new(Item, (i, e, s, c, STOPPED, ack, sta, hb, sreq, at, md, w, dat, dto, ttl, at, ver + 1, dt))
        return new, "stop-confirms"
    new = _new(Item, (i, e, s, c, STOPPING, ack, sta, hb, at, stp, md, w, dat, dto, ttl, at, ver + 1, dt))
    return new, "stop-requests-drain"


def _update_metadata(item: Item, cmd: UpdateMetadata, now: datetime) -> tuple[Item, str]:
    merged = dict(item.metadata)
    for key, value in cmd.metadata.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_KEYS or not all(1 <= len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in merged.items()):
        return item, "metadata-over-limits"
    return item._replace(metadata=merged, version=item.version + 1), "metadata"  # rare: no need to be quick


_HANDLERS: dict[type, Callable[[Item, Any, datetime], tuple[Item, str]]] = {
    Deliver: _deliver,
    Ack: _ack,
    Heartbeat: _heartbeat,
    Stop: _stop,
    UpdateMetadata: _update_metadata,
}


def hand_step(item: Item, cmd: Any, now: datetime) -> tuple[Item, str]:
    """The hand-written limit: the lapse due at ``now`` first, then the command. Returns (item, rule name)."""
    st = item.state
    kind = type(cmd)
    if st is STARTING or st is ACTIVE or st is STOPPING:
        deadline = _deadline(item)
        if deadline is not None and (deadline <= now or deadline <= item.clock):
            item, lapsed = _lapse(item, deadline)
            if kind is Lapse:
                return item, lapsed
        elif kind is Lapse:
            return item, "lapse-not-due"
    elif kind is Lapse:
        return item, "lapse-nothing-to-lapse"
    return _HANDLERS[kind](item, cmd, now)


def run_hand(items: list[Item]) -> None:
    for item in items:
        for _trigger, command, at in SCRIPT:
            item = hand_step(item, command, at)[0]
        assert item.state is STOPPED


# --- the check: the limit equals step on fuzzed commands ----------------------------------------------------

_STEPS_US = (0, 1, 999, 250_000, 4_999_000, 5_000_000, 9_999_999, 30_000_000, 59_999_999, 60_000_000, 61_000_000)


def _random_command(rng: random.Random, item: WorkItem) -> Any:
    workers = (None, "w1", "w2")
    kind = rng.choices(("deliver", "ack", "heartbeat", "stop", "metadata", "lapse"), (4, 4, 6, 2, 1, 1))[0]
    if kind == "deliver":
        return Deliver(rng.choice(workers), rng.choice((None, None, 0, 1, 5000, 60_000, rng.randrange(10**6))))
    if kind == "ack":
        return Ack(rng.choice(workers))
    if kind == "heartbeat":
        latest = item.latest_heartbeat_at
        base = latest or item.clock
        expected = rng.choice(
            (
                None,
                NO_HEARTBEAT,
                "NO_" + "HEARTBEAT",  # an equal string that is not the constant itself
                latest,
                latest,
                base + MICRO,
                base - timedelta(microseconds=rng.randrange(1, 10**7)),
                render_timestamp(base),
                render_timestamp(base).replace("Z", "+00:00"),
                render_timestamp(base)[:-1] + "1Z",  # finer than a microsecond: matches nothing
            )
        )
        ttl = rng.choice((None, None, 1, 10, 11, 60, 600, 601, rng.randrange(1, 2000)))
        return Heartbeat(expected, ttl)
    if kind == "stop":
        return Stop(rng.random() < 0.3)
    if kind == "metadata":
        keys = ["a", "b", "c", "", "k" * 64, "k" * 65] + [f"x{n}" for n in range(20)]
        patch = {rng.choice(keys): rng.choice((None, "v", "v" * 512, "v" * 513)) for _ in range(rng.randrange(1, 8))}
        return UpdateMetadata(patch)
    return LAPSE


def _difference(done: Any, mine: Item, rule: str) -> str | None:
    item = done.item
    if done.rule.name != rule:
        return f"rule {done.rule.name} (step) != {rule} (limit)"
    for name in FIELDS:
        theirs, ours = getattr(item, name), getattr(mine, name)
        if name == "metadata":
            theirs, ours = dict(theirs), dict(ours)
        if theirs != ours or (name == "state" and theirs is not ours):
            return f"{name}: {theirs!r} (step) != {ours!r} (limit)"
    return None


def check_limit(sequences: int, length: int, seed: int = 17) -> int:
    """Run the limit and ``step`` side by side on random command sequences; abort at the first difference.

    Returns how many commands were compared. Time moves by random steps forward and backward (the
    start timeout, leases, the reclaim window and the clock are all crossed), so every state is met.
    """
    rng = random.Random(seed)
    compared = 0
    met: set[str] = set()
    for n in range(sequences):
        item = new_item(n)
        mine = as_tuple(item)
        now = item.created_at
        for _ in range(length):
            delta = rng.choice(_STEPS_US) + rng.randrange(0, 2)
            now += timedelta(microseconds=-delta if rng.random() < 0.2 else delta)
            command = _random_command(rng, item)
            done = step(item, command, now)
            mine, rule = hand_step(mine, command, now)
            compared += 1
            met.add(rule)
            problem = _difference(done, mine, rule)
            if problem is not None:
                raise SystemExit(
                    f"the hand-written limit differs from step (sequence {n}, command {command!r} at {now}):\n"
                    f"  {problem}\n  item before: {item!r}"
                )
            item = done.item
    unmet = {line[0] for line in DECLARATION if _folded(line) is not None} - met
    if unmet:
        raise SystemExit(f"the fuzzed commands never reached the rules {sorted(unmet)}: the check is too weak")
    return compared


# --- a competent transitions usage ------------------------------------------------------------------------

# Guards that are constant for the qoder dialect and Policy(): a competent user folds them away.
FOLDED = {
    **QODER.guards,
    "delivery_required": POLICY.ack_requires_delivery,
    "expiry_stops": POLICY.on_lease_expiry is OnLeaseExpiry.STOP,
}


def _folded(line: tuple[Any, ...]) -> list[str] | None:
    """The guards of a declaration line left once the constant ones are folded, or None if the line never applies."""
    kept = []
    for word in line[5].split():
        name = word.lstrip("!")
        if name in FOLDED:
            if FOLDED[name] != (not word.startswith("!")):
                return None
        else:
            kept.append(word)
    return kept


class CompetentWork:
    """A mutable work item for a shared ``transitions`` Machine: guards and actions are its methods, called with
    the trigger's arguments (the command and the instant ``at``, the later of now and the item's clock)."""

    def __init__(self, item: WorkItem) -> None:
        for name in FIELDS:
            setattr(self, name, getattr(item, name))
        self.state = str(item.state)
        self.answer = ""

    # guards
    def deliverable(self, cmd: Deliver, at: datetime) -> bool:
        if self.delivered_at is None:
            return True
        window = RECLAIM_MS if cmd.reclaim_older_than_ms is None else cmd.reclaim_older_than_ms
        return (at - self.delivered_at) // MICRO >= window * 1000

    def worker_conflict(self, cmd: Ack, at: datetime) -> bool:
        claimant = self.worker_id if self.worker_id is not None else self.delivered_to
        return cmd.worker_id is not None and claimant is not None and cmd.worker_id != claimant

    def delivered(self, cmd: Any, at: datetime) -> bool:
        return self.delivered_at is not None

    def precondition_holds(self, cmd: Heartbeat, at: datetime) -> bool:
        expected = cmd.expected_last_heartbeat
        if expected is None:
            return True
        if expected is NO_HEARTBEAT or expected == NO_HEARTBEAT:
            return self.latest_heartbeat_at is None
        latest = self.latest_heartbeat_at
        return latest is not None and not cmd.matches_nothing and cmd.expected_instant == latest

    def lapse_due(self, cmd: Any, at: datetime) -> bool:
        deadline = self.deadline()
        return deadline is not None and deadline <= at

    def metadata_fits(self, cmd: UpdateMetadata, at: datetime) -> bool:
        merged = cmd.merged(self.metadata)
        return len(merged) <= MAX_KEYS and all(
            1 <= len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in merged.items()
        )

    def deadline(self) -> datetime | None:
        st = self.state
        if (st == "active" or st == "stopping") and self.latest_heartbeat_at is not None:
            return self.latest_heartbeat_at + timedelta(seconds=self.ttl_seconds)
        if (st == "starting" or st == "stopping") and self.acknowledged_at is not None:
            return self.acknowledged_at + START_TIMEOUT
        return None

    # actions
    def advance(self, cmd: Any, at: datetime) -> None:
        self.version += 1
        self.clock = at

    def count(self, cmd: Any, at: datetime) -> None:
        self.version += 1

    def record_delivery(self, cmd: Deliver, at: datetime) -> None:
        self.delivered_at, self.delivered_to = at, cmd.worker_id

    def bind_worker(self, cmd: Ack, at: datetime) -> None:
        self.worker_id = cmd.worker_id if cmd.worker_id is not None else self.delivered_to

    def stamp_acknowledged(self, cmd: Any, at: datetime) -> None:
        self.acknowledged_at = at

    def request_dispatch(self, cmd: Any, at: datetime) -> None:
        pass

    def token(self, at: datetime) -> datetime:
        latest = self.latest_heartbeat_at
        return at if latest is None or at > latest else latest + MICRO

    def stamp_started(self, cmd: Any, at: datetime) -> None:
        self.started_at = self.token(at)

    def grant_lease(self, cmd: Heartbeat, at: datetime) -> None:
        ttl = cmd.desired_ttl_seconds
        self.ttl_seconds = TTL_DEFAULT if ttl is None else min(max(ttl, TTL_MIN), TTL_MAX)
        self.latest_heartbeat_at = self.clock = self.token(at)

    def request_stop(self, cmd: Any, at: datetime) -> None:
        self.stop_requested_at = at

    def stamp_stopped(self, cmd: Any, at: datetime) -> None:
        self.stopped_at = at

    def requeue(self, cmd: Any, at: datetime) -> None:
        self.acknowledged_at = self.started_at = self.latest_heartbeat_at = self.ttl_seconds = None
        self.worker_id = self.delivered_at = self.delivered_to = None

    def merge_metadata(self, cmd: UpdateMetadata, at: datetime) -> None:
        self.metadata = cmd.merged(self.metadata)


def _answer(name: str) -> Callable[..., None]:
    def answer(self: CompetentWork, cmd: Any, at: datetime) -> None:
        self.answer = name

    return answer


def competent_machine() -> Machine:
    """The shared Machine: every line of the declaration that applies to qoder and Policy(), in its order."""
    transitions = []
    for line in DECLARATION:
        guards = _folded(line)
        if guards is None:
            continue
        name, _, trigger, source, dest, _, outcome, actions = line
        ident = "answer_" + name.replace("-", "_")
        setattr(CompetentWork, ident, _answer(name))
        sources = (
            [str(s) for s in State]
            if source == "*"
            else [str(s) for s in (source if isinstance(source, list) else [source])]
        )
        after = [ident]
        if outcome is Kind.ACCEPT:
            after = ["count" if "merge_metadata" in actions else "advance", *actions.split(), ident]
        transitions.append(
            {
                "trigger": str(trigger),
                "source": sources,
                "dest": None if dest in (None, "=") else str(dest),  # every stay internal: no exit/enter callbacks
                "conditions": [g for g in guards if not g.startswith("!")],
                "unless": [g[1:] for g in guards if g.startswith("!")],
                "after": after,
            }
        )
    return Machine(
        model=None,
        states=[str(s) for s in State],
        initial="queued",
        transitions=transitions,
        auto_transitions=False,
        send_event=False,
    )


COMPETENT = competent_machine()
EVENTS = COMPETENT.events


def competent_step(model: CompetentWork, trigger: str, cmd: Any, now: datetime) -> str:
    """One command, the lapse due at ``now`` first (an explicit lapse is the lapse itself)."""
    deadline = model.deadline()
    clock = model.clock
    if deadline is not None and (deadline <= now or deadline <= clock):
        EVENTS["lapse"].trigger(model, LAPSE, deadline if deadline > clock else clock)
        if trigger == "lapse":
            return model.answer
        clock = model.clock
    EVENTS[trigger].trigger(model, cmd, now if now > clock else clock)
    return model.answer


def run_competent(models: list[CompetentWork]) -> None:
    events = EVENTS
    for model in models:
        for trigger, cmd, now in SCRIPT:
            deadline = model.deadline()
            clock = model.clock
            if deadline is not None and (deadline <= now or deadline <= clock):
                events["lapse"].trigger(model, LAPSE, deadline if deadline > clock else clock)
                clock = model.clock
            events[trigger].trigger(model, cmd, now if now > clock else clock)
        assert model.state == "stopped", model.state


# --- the usual transitions usage (the earlier baseline) -----------------------------------------------------


class MutableWork:
    """A plain mutable work item that a transitions Machine drives the usual way: every guard of the declaration
    a property, every action a callback taking the event (the same guard and action code as the competent model,
    reading the command and the instant from the model)."""

    def __init__(self, item: WorkItem) -> None:
        self.__dict__.update({name: getattr(item, name) for name in FIELDS if name != "state"})
        self.command: Any = None
        self.at: datetime = T0

    deadline = CompetentWork.deadline
    token = CompetentWork.token


for _guard in {str(g) for line in DECLARATION for g in line[5].replace("!", "").split()}:
    if _guard in FOLDED:  # the dialect's and the policy's guards: constants, but still evaluated as properties
        setattr(MutableWork, _guard, property(lambda self, value=FOLDED[_guard]: value))
    else:
        _check = getattr(CompetentWork, _guard)
        setattr(MutableWork, _guard, property(lambda self, check=_check: check(self, self.command, self.at)))
for _name in {a for line in DECLARATION for a in line[7].split()}:
    _action = getattr(CompetentWork, _name)

    def _run(self: MutableWork, event: Any, run: Any = _action) -> None:
        run(self, self.command, self.at)

    setattr(MutableWork, _name, _run)


def drive_usual(model: Any) -> None:
    for trigger, command, at in SCRIPT:
        model.command, model.at = command, at
        getattr(model, trigger)()  # the trigger method transitions put on the model
    assert model.state == "stopped", model.state


def run_usual_per_item(models: list[MutableWork]) -> None:
    for model in models:
        drive_usual(model)


def run_usual_shared(machine: Machine, models: list[MutableWork]) -> None:
    for model in models:
        machine.add_model(model, initial="queued")
        drive_usual(model)
        machine.remove_model(model)


# --- python-statemachine 3.x --------------------------------------------------------------------------------

if psm is not None:
    from statemachine import State as S

    class WorkMachine(psm.StateMachine):  # type: ignore[misc,name-defined]
        """The same rules in python-statemachine's idiom; the item's fields live on the machine instance."""

        queued = S(initial=True)
        starting = S()
        active = S()
        stopping = S()
        stopped = S()  # not final: commands on a stopped item still answer

        deliver = (
            queued.to.itself(internal=True, cond="deliverable", on="record_delivery")
            | queued.to.itself(internal=True, on="refuse")
            | starting.to.itself(internal=True, on="refuse")
            | active.to.itself(internal=True, on="refuse")
            | stopping.to.itself(internal=True, on="refuse")
            | stopped.to.itself(internal=True, on="refuse")
        )
        ack = (
            queued.to.itself(internal=True, cond="worker_conflict", on="refuse")
            | queued.to(starting, on="acknowledge")
            | starting.to.itself(internal=True, cond="worker_conflict", on="refuse")
            | active.to.itself(internal=True, cond="worker_conflict", on="refuse")
            | starting.to.itself(internal=True, on="replay")
            | active.to.itself(internal=True, on="replay")
            | stopping.to.itself(internal=True, on="refuse")
            | stopped.to.itself(internal=True, on="refuse")
        )
        heartbeat = (
            queued.to.itself(internal=True, on="refuse")
            | stopped.to.itself(internal=True, on="refuse")
            | starting.to.itself(internal=True, unless="precondition_holds", on="refuse")
            | active.to.itself(internal=True, unless="precondition_holds", on="refuse")
            | stopping.to.itself(internal=True, unless="precondition_holds", on="refuse")
            | starting.to(active, on="start")
            | active.to.itself(internal=True, on="grant_lease")
            | stopping.to.itself(internal=True, on="grant_lease")
        )
        stop = (
            queued.to(stopped, on="stop_queued")
            | starting.to(stopping, on="request_stop")
            | active.to(stopping, on="request_stop")
            | stopping.to(stopped, on="stamp_stopped")
            | stopped.to.itself(internal=True, on="replay")
        )
        force_stop = (
            queued.to(stopped, on="stamp_stopped")
            | starting.to(stopped, on="stamp_stopped")
            | active.to(stopped, on="stamp_stopped")
            | stopping.to(stopped, on="stamp_stopped")
            | stopped.to.itself(internal=True, on="replay")
        )
        lapse = (
            queued.to.itself(internal=True, on="replay")
            | stopped.to.itself(internal=True, on="replay")
            | starting.to.itself(internal=True, unless="lapse_due", on="replay")
            | active.to.itself(internal=True, unless="lapse_due", on="replay")
            | stopping.to.itself(internal=True, unless="lapse_due", on="replay")
            | starting.to(queued, on="requeue")
            | active.to(queued, on="requeue")
            | stopping.to(stopped, on="stamp_stopped")
        )

        def __init__(self, item: WorkItem) -> None:
            for name in FIELDS:
                if name != "state":
                    setattr(self, name, getattr(item, name))
            super().__init__()

        # guards (python-statemachine passes the event's keyword arguments by name)
        deliverable = CompetentWork.deliverable
        worker_conflict = CompetentWork.worker_conflict
        precondition_holds = CompetentWork.precondition_holds
        lapse_due = CompetentWork.lapse_due

        def deadline(self) -> datetime | None:
            st = self.current_state_value
            if (st == "active" or st == "stopping") and self.latest_heartbeat_at is not None:
                return self.latest_heartbeat_at + timedelta(seconds=self.ttl_seconds)
            if (st == "starting" or st == "stopping") and self.acknowledged_at is not None:
                return self.acknowledged_at + START_TIMEOUT
            return None

        # actions
        def refuse(self, cmd: Any, at: datetime) -> None:
            pass

        def replay(self, cmd: Any, at: datetime) -> None:
            pass

        def _advance(self, at: datetime) -> None:
            self.version += 1
            self.clock = at

        def record_delivery(self, cmd: Deliver, at: datetime) -> None:
            self._advance(at)
            self.delivered_at, self.delivered_to = at, cmd.worker_id

        def acknowledge(self, cmd: Ack, at: datetime) -> None:
            self._advance(at)
            self.worker_id = cmd.worker_id if cmd.worker_id is not None else self.delivered_to
            self.acknowledged_at = at

        token = CompetentWork.token

        def start(self, cmd: Heartbeat, at: datetime) -> None:
            self.started_at = self.token(at)
            self.grant_lease(cmd, at)

        def grant_lease(self, cmd: Heartbeat, at: datetime) -> None:
            self.version += 1
            ttl = cmd.desired_ttl_seconds
            self.ttl_seconds = TTL_DEFAULT if ttl is None else min(max(ttl, TTL_MIN), TTL_MAX)
            self.latest_heartbeat_at = self.clock = self.token(at)

        def stop_queued(self, cmd: Any, at: datetime) -> None:
            self._advance(at)
            self.stop_requested_at = self.stopped_at = at

        def request_stop(self, cmd: Any, at: datetime) -> None:
            self._advance(at)
            self.stop_requested_at = at

        def stamp_stopped(self, cmd: Any, at: datetime) -> None:
            self._advance(at)
            self.stopped_at = at

        def requeue(self, cmd: Any, at: datetime) -> None:
            self._advance(at)
            self.acknowledged_at = self.started_at = self.latest_heartbeat_at = self.ttl_seconds = None
            self.worker_id = self.delivered_at = self.delivered_to = None

    def run_psm(machines: list[Any]) -> None:
        for machine in machines:
            for trigger, cmd, now in SCRIPT:
                deadline = machine.deadline()
                clock = machine.clock
                if deadline is not None and (deadline <= now or deadline <= clock):
                    machine.send("lapse", cmd=LAPSE, at=deadline if deadline > clock else clock)
                    clock = machine.clock
                machine.send(trigger, cmd=cmd, at=now if now > clock else clock)
            assert machine.current_state_value == "stopped", machine.current_state_value


def check_scripted(final: WorkItem) -> list[str]:
    """Each library contender on the scripted lifecycle ends where ``step`` does (every field)."""
    checked = []
    model = CompetentWork(new_item(0))
    for trigger, cmd, now in SCRIPT:
        competent_step(model, trigger, cmd, now)
    candidates: list[tuple[str, Any]] = [("transitions (competent)", model)]
    if psm is not None:
        machine = WorkMachine(new_item(0))
        run_psm([machine])
        candidates.append(("python-statemachine", machine))
    for label, done in candidates:
        for name in FIELDS:
            theirs = getattr(final, name)
            ours = (
                getattr(done, name) if name != "state" or label != "python-statemachine" else done.current_state_value
            )
            if name == "metadata":
                theirs, ours = dict(theirs), dict(ours)
            if theirs != ours:
                raise SystemExit(f"{label} ends the scripted lifecycle with {name}={ours!r}, step with {theirs!r}")
        checked.append(label)
    return checked


def check_competent_fuzzed(sequences: int, length: int, seed: int = 18) -> int:
    """The competent transitions usage against step on fuzzed commands (answers and every field)."""
    rng = random.Random(seed)
    compared = 0
    for n in range(sequences):
        item = new_item(n)
        model = CompetentWork(item)
        now = item.created_at
        for _ in range(length):
            delta = rng.choice(_STEPS_US) + rng.randrange(0, 2)
            now += timedelta(microseconds=-delta if rng.random() < 0.2 else delta)
            command = _random_command(rng, item)
            done = step(item, command, now)
            answer = competent_step(model, str(command.trigger), command, now)
            compared += 1
            mine = Item(*(State(model.state) if f == "state" else getattr(model, f) for f in FIELDS))
            problem = _difference(done, mine, answer)
            if problem is not None:
                raise SystemExit(f"competent transitions differs from step (sequence {n}, {command!r}): {problem}")
            item = done.item
    return compared


# --- measuring ------------------------------------------------------------------------------------------------


def interleaved(
    contenders: dict[str, tuple[Callable[[], Any], Callable[[Any], None], int]], rounds: int
) -> dict[str, list[float]]:
    """Per contender, its cost per command in each round. A contender is (prepare, run, commands): ``prepare``
    (not timed) makes fresh input, ``run`` is timed on it. Each round runs every contender once, the order
    rotated by one from round to round; one uncounted warm-up round first."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(-1, rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            prepare, run, commands = contenders[name]
            data = prepare()
            gc.collect()
            start = time.perf_counter()
            run(data)
            elapsed = time.perf_counter() - start
            if round_ >= 0:
                samples[name].append(elapsed / commands)
    return samples


def spread(values: list[float]) -> tuple[float, float, float, float, float]:
    """(median, first quartile, third quartile, min, max)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3, min(values), max(values)


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


def copier_costs(number: int) -> dict[str, float]:
    """What building a new WorkItem from one with three fields changed costs, done three ways (seconds each):
    a generated function setting each slot through its descriptor (workstate's copier before issue 17), a
    mutable twin class with the same ``__slots__`` filled then given ``__class__ = WorkItem``, and
    ``attrs.evolve`` (runs ``__init__`` and its checks)."""
    item = step(step(new_item(1), Ack("w1"), T0 + ONE).item, Heartbeat(NO_HEARTBEAT), T0 + 2 * ONE).item
    changes = {"state": State.ACTIVE, "version": item.version + 1, "clock": T0 + 3 * ONE}
    names = FIELDS
    env: dict[str, Any] = {"_new": object.__new__, "WorkItem": WorkItem}
    lines = ["def by_descriptors(item, ch):", "    new = _new(WorkItem)"]
    for name in names:
        env[f"_set_{name}"] = WorkItem.__dict__[name].__set__
        lines.append(f"    _set_{name}(new, {f'ch[{name!r}]' if name in changes else f'item.{name}'})")
    lines.append("    return new")

    class Twin:
        __slots__ = WorkItem.__slots__

    env["Twin"] = Twin
    lines += ["def by_twin(item, ch):", "    new = _new(Twin)"]
    lines += [f"    new.{name} = {f'ch[{name!r}]' if name in changes else f'item.{name}'}" for name in names]
    lines += ["    new.__class__ = WorkItem", "    return new"]
    exec("\n".join(lines), env)  # noqa: S102 - generated from WorkItem's fields
    tuple_item = as_tuple(item)

    def by_tuple() -> Item:
        i, e, s, c, _, ack, sta, hb, sreq, stp, md, w, dat, dto, ttl, _, _, dt = tuple_item
        st, clk, ver = changes["state"], changes["clock"], changes["version"]
        return _new(Item, (i, e, s, c, st, ack, sta, hb, sreq, stp, md, w, dat, dto, ttl, clk, ver, dt))

    ways = {
        "each slot through its descriptor": lambda: env["by_descriptors"](item, changes),
        "mutable twin + `__class__` assignment": lambda: env["by_twin"](item, changes),
        "`attrs.evolve`": lambda: attrs.evolve(item, **changes),
    }
    expected = attrs.evolve(item, **changes)
    for label, make in ways.items():
        made = make()
        if type(made) is not WorkItem or made != expected or made.clock != expected.clock:
            raise SystemExit(f"copier {label} builds a different item")
    ways["the limit's NamedTuple, by position"] = by_tuple
    return {label: min(timeit.repeat(make, number=number, repeat=5)) / number for label, make in ways.items()}


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
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds")
    parser.add_argument("--update", action="store_true", help="rewrite the figures in docs/performance.md")
    args = parser.parse_args()
    n = 60 if args.quick else 1000
    rounds = 5 if args.quick else 15
    load_start = load()

    started = time.perf_counter()
    compared = check_limit(sequences=2000, length=25)
    competent_compared = check_competent_fuzzed(sequences=100 if args.quick else 400, length=25)
    final = new_item(0)
    for _trigger, cmd, at in SCRIPT:
        final = step(final, cmd, at).item
    scripted = check_scripted(final)
    print(
        f"checked: the hand-written limit equals step on {compared:,} fuzzed commands (2,000 seeded sequences of 25, "
        f"time stepping forward and backward; every field and the deciding rule); competent transitions on "
        f"{competent_compared:,}; {', '.join(scripted)} end the scripted lifecycle as step does "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if psm is None:
        print("python-statemachine is not installed (pip install -e '.[bench]'): its contender is skipped")

    items = [new_item(i) for i in range(n)]
    tuples = [as_tuple(i) for i in items]
    usual_models = [MutableWork(i) for i in items]
    start = time.perf_counter()
    for model in usual_models:
        build_machine(model=model)
    machine_build = (time.perf_counter() - start) / n
    fresh = [{k: v for k, v in m.__dict__.items() if k in FIELDS} for m in usual_models]

    def reset_usual() -> list[MutableWork]:
        for model, fields in zip(usual_models, fresh, strict=True):
            model.__dict__.update(fields)
            model.state = "queued"
        return usual_models

    shared = build_machine()
    contenders: dict[str, tuple[Callable[[], Any], Callable[[Any], None], int]] = {
        "step": (lambda: items, run_step, n * COMMANDS),
        "limit": (lambda: tuples, run_hand, n * COMMANDS),
        "competent": (lambda: [CompetentWork(i) for i in items], run_competent, n * COMMANDS),
        "usual_per_item": (reset_usual, run_usual_per_item, n * COMMANDS),
        "usual_shared": (
            lambda: [MutableWork(i) for i in items],
            lambda models: run_usual_shared(shared, models),
            n * COMMANDS,
        ),
    }
    psm_build = 0.0
    if psm is not None:
        start = time.perf_counter()
        for i in items[:50]:
            WorkMachine(i)
        psm_build = (time.perf_counter() - start) / 50
        contenders["psm"] = (lambda: [WorkMachine(i) for i in items], run_psm, n * COMMANDS)
    samples = interleaved(contenders, rounds)

    # add_model is O(number of models already registered): measure one registration at 0 and at 20k.
    crowd = build_machine()
    add_at: dict[int, float] = {}
    for registered in (0, 2_000 if args.quick else 20_000):
        for model in [MutableWork(items[0]) for _ in range(registered - len(crowd.models))]:
            crowd.add_model(model, initial="queued")
        probes = [MutableWork(items[0]) for _ in range(20)]
        start = time.perf_counter()
        for probe in probes:
            crowd.add_model(probe, initial="queued")
        add_at[registered] = (time.perf_counter() - start) / len(probes)
        for probe in probes:
            crowd.remove_model(probe)
    del crowd

    copiers = copier_costs(20_000 if args.quick else 200_000)
    count = 10_000 if args.quick else 100_000
    queued_bytes = bytes_per_item(count, lifecycle=False)
    active_bytes = bytes_per_item(count, lifecycle=True)
    load_end = load()

    us = 1e6
    labels = {
        "step": "workstate `step` (pure, frozen values, lazy expiry, checks)",
        "limit": "hand-written limit (same rules, NamedTuple, lazy expiry)",
        "competent": "transitions, competent (method guards, `send_event=False`, internal stays, shared Machine)",
        "usual_per_item": "transitions, usual: one Machine per item (property guards, reflexive stays, no expiry)",
        "usual_shared": "transitions, usual: one shared Machine, add_model/remove_model per lifecycle",
        "psm": f"python-statemachine {getattr(psm, '__version__', '')} (cond/unless, internal stays, machine per item)",
    }
    ratios = {
        name: [cost / base for cost, base in zip(samples[name], samples["step"], strict=True)] for name in samples
    }
    limit_ratio = [base / cost for base, cost in zip(samples["step"], samples["limit"], strict=True)]

    def cell(values: list[float], scale: float, fmt: str) -> tuple[str, str, str]:
        median, q1, q3, low, high = spread(values)
        return (
            f"{median * scale:{fmt}}",
            f"{q1 * scale:{fmt}}-{q3 * scale:{fmt}}",
            f"{low * scale:{fmt}}-{high * scale:{fmt}}",
        )

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine_facts()}; "
        f"{n} lifecycles x {COMMANDS} commands per contender per round, {rounds} interleaved rounds "
        f"(order rotated each round, one warm-up round uncounted). The machine was shared with other work: "
        f"load average {load_start} at the start, {load_end} at the end.",
        "",
        "| way of running the lifecycle | per command: median | IQR | min-max "
        "| vs `step`, per round: median | IQR | min-max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in samples:
        cost, cost_iqr, cost_range = cell(samples[name], us, ".2f")
        ratio, ratio_iqr, ratio_range = cell(ratios[name], 1, ".2f")
        lines.append(
            f"| {labels[name]} | {cost} us | {cost_iqr} | {cost_range} | {ratio}x | {ratio_iqr} | {ratio_range} |"
        )
    step_vs_limit = spread(limit_ratio)
    competent_vs_step = spread(ratios["competent"])
    lines += [
        "",
        f"- The limit was checked equal to `step` on {compared:,} fuzzed commands before timing (every field of "
        f"the item and the deciding rule of every answer); competent transitions on {competent_compared:,}.",
        f"- Building one usual transitions Machine for one item: {machine_build * us:.0f} us"
        + (f"; one python-statemachine instance: {psm_build * us:.0f} us." if psm is not None else "."),
        f"- `add_model` with 0 models registered: {add_at[0] * us:.0f} us; "
        f"with {max(add_at):,}: {add_at[max(add_at)] * us:.0f} us.",
        "- A new WorkItem from one with three fields changed (timeit, best of 5): "
        + "; ".join(f"{label} {cost * 1e9:.0f} ns" for label, cost in copiers.items())
        + ".",
        f"- Memory per `WorkItem` (tracemalloc over {count:,} items, each with its own ids and timestamps): "
        f"{queued_bytes:.0f} bytes queued, {active_bytes:.0f} bytes active "
        "(acked and heartbeated: three more instants of its own).",
        "",
        f"Targets (issue 17 point 2): `step` at most 1.5x the hand-written limit: **{step_vs_limit[0]:.2f}x** "
        f"(per-round IQR {step_vs_limit[1]:.2f}-{step_vs_limit[2]:.2f}, range {step_vs_limit[3]:.2f}-"
        f"{step_vs_limit[4]:.2f}); `step` at least 4x faster than competent transitions: "
        f"**{competent_vs_step[0]:.2f}x** (IQR {competent_vs_step[1]:.2f}-{competent_vs_step[2]:.2f}, range "
        f"{competent_vs_step[3]:.2f}-{competent_vs_step[4]:.2f}). Memory: at most 400 bytes per item: "
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
