"""Bounded model checking: every interleaving of requests from W workers on I items, up to a depth.

:func:`explore` is pure: it visits, breadth first, every state a small environment reaches through the
Work API's requests (poll, ack, heartbeat with a correct, stale or absent precondition, graceful and
forced stop, metadata update) and the passing of time, and checks the invariants of spec section 7
(:mod:`workstate.invariants`) on every transition. The items are the core's frozen
:class:`~workstate.WorkItem` values moved by a :class:`~workstate.Lifecycle`'s ``step``; around them the
model keeps what the reference server adds (the clock, and a poll that delivers the oldest deliverable
item by creation order, asking the core's own ``deliver`` rule of each item in turn) and what each
worker knows (its last heartbeat token per item and the lease it believes it holds).

Time is abstracted into the instants that matter: from a state at ``now``, time advances to just
before, at and just after each deadline (start timeout, lease, the drain of a stopping item), each
reclaim window and each lease a worker believes it holds. States are deduplicated by a canonical key
that keeps instants relative to ``now`` and forgets what cannot matter any more; the key is also
reduced by the symmetry of workers and of stopped items. ``docs/verification.md`` argues soundness.

``workstate verify`` (the CLI command below) prints the figures and, if an invariant breaks, the
shortest counterexample as a trace in the ``workstate check`` format.
"""

from __future__ import annotations

import argparse
import enum
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, TextIO, cast

import attrs

from ._time import MICROSECOND, UTC, render_timestamp
from .api import BASE_PATH
from .cli import CliCommand
from .codec import ErrorEnvelope, HeartbeatObject, encode_work
from .invariants import (
    HAS_NOT,
    Violation,
    item_problems,
    lease_problems,
    rejection_problems,
    replay_problems,
    stats_problems,
    timeline_problems,
)
from .model import (
    ACTIONS,
    LIFECYCLE,
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    Lapse,
    Lifecycle,
    Outcome,
    Rejected,
    Replayed,
    Stop,
    UpdateMetadata,
    WorkItem,
    consistency_problems,
    error_type,
    next_deadline,
)
from .policy import DEFAULT_POLICY, Policy
from .rules import Reason, State

__all__ = [
    "T0",
    "Counterexample",
    "Move",
    "MoveKind",
    "Precondition",
    "Report",
    "StepRecord",
    "System",
    "World",
    "explore",
    "path_to",
    "replay",
    "trace_lines",
]

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
"""When every item of a verified environment is created."""

_LAPSE = Lapse()
_STALE = T0 - timedelta(seconds=1)  # a precondition that names no heartbeat of any item
_NO_TIME = 1 << 62  # key codes: an absent instant
_OLD = 1 << 60  # key codes: an instant too far behind now to matter, by rank
_PARAM_OF_REASON = {  # the error envelope's `param`, as the reference server names it
    Reason.METADATA_LIMITS: "metadata",
    Reason.PRECONDITION_FAILED: "expected_last_heartbeat",
    Reason.WORKER_CONFLICT: "Worker-ID",
}


class MoveKind(enum.StrEnum):
    """What happens next: one request, or time passing."""

    POLL = "poll"
    ACK = "ack"
    HEARTBEAT = "heartbeat"
    STOP = "stop"
    FORCE_STOP = "force_stop"
    UPDATE = "update"  # metadata within the limits
    UPDATE_OVER = "update_over_limits"  # metadata over the limits (always a 400)
    ADVANCE = "advance"  # time passes to `at`


class Precondition(enum.StrEnum):
    """The ``expected_last_heartbeat`` a heartbeat sends."""

    CORRECT = "correct"  # the sender's own last token, or NO_HEARTBEAT: the protocol
    STALE = "stale"  # an instant that is no heartbeat of the item
    ABSENT = "absent"  # an unconditional heartbeat


@attrs.frozen
class Move:
    """One transition: a request by ``worker`` (index, or None for the platform or an outsider) on
    ``item`` (index), or time advancing to ``at``."""

    kind: MoveKind
    worker: int | None = None
    item: int | None = None
    precondition: Precondition | None = None
    at: datetime | None = None

    def __str__(self) -> str:
        if self.kind is MoveKind.ADVANCE:
            assert self.at is not None
            return f"time -> {render_timestamp(self.at)}"
        who = "" if self.worker is None else f" by w{self.worker + 1}"
        what = "" if self.item is None else f" item {self.item + 1}"
        pre = "" if self.precondition is None else f" ({self.precondition} precondition)"
        return f"{self.kind}{what}{pre}{who}"


@attrs.frozen
class World:
    """One state of the environment: the instant, the items, and each worker's knowledge.

    ``tokens[w][i]`` is worker ``w``'s last heartbeat token for item ``i``; ``leases[w][i]`` the deadline
    of the lease it believes it holds on it (None: none).
    """

    now: datetime
    items: tuple[WorkItem, ...]
    tokens: tuple[tuple[datetime | None, ...], ...]
    leases: tuple[tuple[datetime | None, ...], ...]


@attrs.frozen
class StepRecord:
    """One core step a move made: the item index, the state it met, the command, the instant and the outcome."""

    item: int
    state: State
    command: Command
    now: datetime
    outcome: Outcome


@attrs.frozen
class Result:
    """What a move did: the next world, the core steps it made, its HTTP status and reply, and what broke."""

    world: World
    steps: tuple[StepRecord, ...]
    status: int | None  # None for time passing
    violations: tuple[Violation, ...]


def _worker_name(index: int) -> str:
    return f"w{index + 1}"


class System:
    """The environment under verification: ``workers`` workers, ``items`` items, a lifecycle and a policy."""

    def __init__(
        self, workers: int, items: int, lifecycle: Lifecycle = LIFECYCLE, policy: Policy = DEFAULT_POLICY
    ) -> None:
        if not (isinstance(workers, int) and 1 <= workers <= 5 and isinstance(items, int) and 1 <= items <= 5):
            raise ValueError(f"workers and items must be integers from 1 to 5, got {workers!r} and {items!r}")
        self.workers = workers
        self.n_items = items
        self.lifecycle = lifecycle
        self.policy = policy
        self.environment_id = f"env_{1:032x}"
        self.work_ids = tuple(f"work_{i + 1:032x}" for i in range(items))
        over = "k" * (policy.metadata_max_key_length + 1)
        self.patches = {MoveKind.UPDATE: {"progress": "1"}, MoveKind.UPDATE_OVER: {over: "x"}}
        # Instants further behind `now` than this cannot decide anything any more (see docs/verification.md).
        self.horizon = timedelta(
            seconds=max(policy.default_ttl_seconds, policy.start_timeout_seconds, policy.reclaim_older_than_ms / 1000)
        ) + timedelta(seconds=1)
        self._horizon_us = self.horizon // MICROSECOND
        # A delivery further behind now than the reclaim window is reclaimable for good (polls send the default).
        self._window_us = policy.reclaim_older_than_ms * 1000
        self._perms = tuple(itertools.permutations(range(workers)))
        self.tie_fields = _tie_fields(lifecycle)
        self._tie_index = tuple(k for k, name in enumerate(_STAMPS) if name in self.tie_fields)
        self._requests = self._request_moves()
        self._bases: dict[tuple[int, datetime], tuple[WorkItem, tuple[Any, ...]]] = {}

    # --- states and moves ---

    def initial(self) -> World:
        items = tuple(
            WorkItem(id=wid, environment_id=self.environment_id, session_id="sess_" + wid[5:], created_at=T0)
            for wid in self.work_ids
        )
        none = tuple(tuple(None for _ in items) for _ in range(self.workers))
        return World(T0, items, none, none)

    def _request_moves(self) -> tuple[Move, ...]:
        moves = [Move(MoveKind.POLL, worker=w) for w in range(self.workers)]
        for i in range(self.n_items):
            moves += [Move(MoveKind.ACK, worker=w, item=i) for w in range(self.workers)]
            moves += [Move(MoveKind.HEARTBEAT, w, i, Precondition.CORRECT) for w in range(self.workers)]
            moves += [Move(MoveKind.HEARTBEAT, None, i, p) for p in (Precondition.STALE, Precondition.ABSENT)]
            moves += [Move(kind, item=i) for kind in (MoveKind.STOP, MoveKind.FORCE_STOP)]
            moves += [Move(kind, item=i) for kind in (MoveKind.UPDATE, MoveKind.UPDATE_OVER)]
        return tuple(moves)

    def events(self, world: World) -> list[datetime]:
        """Where time may advance to: just before, at and just after the next instant that matters (a deadline,
        the end of a reclaim window, the end of a lease a worker believes it holds)."""
        found: set[datetime] = set()
        window = timedelta(milliseconds=self.policy.reclaim_older_than_ms)
        for item in world.items:
            deadline = next_deadline(item, self.policy)
            if deadline is not None:
                found.add(deadline)
            if item.state is State.QUEUED and item.delivered_at is not None:
                found.add(item.delivered_at + window)
        for row in world.leases:
            found.update(until for until in row if until is not None)
        now = world.now
        later = [t for t in found if t + MICROSECOND > now]
        if not later:
            return []
        first = min(later)
        return [t for t in (first - MICROSECOND, first, first + MICROSECOND) if t > now]

    def moves(self, world: World) -> list[Move]:
        """Every move from ``world``: each request, then each instant time may advance to."""
        now = world.now
        return [*self._requests, *(Move(MoveKind.ADVANCE, at=t) for t in self.events(world) if t > now)]

    # --- applying a move ---

    def apply(self, world: World, move: Move) -> Result:
        """The result of ``move`` in ``world``, with every invariant it breaks."""
        if move.kind is MoveKind.ADVANCE:
            return self._advance(world, move)
        if move.kind is MoveKind.POLL:
            return self._poll(world, move)
        return self._request(world, move)

    def _step(self, item: WorkItem, command: Command, now: datetime) -> Outcome:
        return self.lifecycle.step(item, command, now, self.policy)

    def _advance(self, world: World, move: Move) -> Result:
        assert move.at is not None
        now = move.at
        items = list(world.items)
        steps = []
        violations: list[Violation] = []
        for i, item in enumerate(world.items):
            outcome = self._step(item, _LAPSE, now)
            steps.append(StepRecord(i, item.state, _LAPSE, now, outcome))
            after = outcome.item
            if after is not item:
                items[i] = after
                violations += self._item_checks(item, after)
            deadline = next_deadline(after, self.policy)
            if after.live and after.state is not State.QUEUED and deadline is not None and deadline <= now:
                violations.append(
                    Violation(
                        8, after.id, f"its deadline {render_timestamp(deadline)} passed and it is still {after.state}"
                    )
                )
        leases = tuple(tuple(None if u is None or u <= now else u for u in row) for row in world.leases)
        new = World(now, tuple(items), world.tokens, leases)
        return Result(new, tuple(steps), None, tuple(violations + self._world_checks(new)))

    def _poll(self, world: World, move: Move) -> Result:
        """The oldest item (creation order) that the core's deliver rule accepts, or null (spec 4.1)."""
        assert move.worker is not None
        command = Deliver(_worker_name(move.worker))
        steps = []
        for i, item in enumerate(world.items):  # items are created in id order, all at T0
            outcome = self._step(item, command, world.now)
            steps.append(StepRecord(i, item.state, command, world.now, outcome))
            if isinstance(outcome, Accepted):
                items = (*world.items[:i], outcome.item, *world.items[i + 1 :])
                new = attrs.evolve(world, items=items)
                violations = self._item_checks(item, outcome.item) + self._world_checks(new)
                return Result(new, tuple(steps), 200, tuple(violations))
            if not isinstance(outcome, Rejected) or outcome.item is not item:
                raise AssertionError(f"a poll that delivers nothing changed {item.id}: {outcome.rule.name}")
        return Result(world, tuple(steps), 200, tuple(self._world_checks(world)))

    def _command(self, world: World, move: Move) -> Command:
        assert move.item is not None
        kind = move.kind
        if kind is MoveKind.ACK:
            assert move.worker is not None
            return Ack(_worker_name(move.worker))
        if kind is MoveKind.HEARTBEAT:
            if move.precondition is Precondition.ABSENT:
                return Heartbeat()
            if move.precondition is Precondition.STALE:
                return Heartbeat(_STALE)
            assert move.worker is not None
            return Heartbeat(world.tokens[move.worker][move.item] or NO_HEARTBEAT)
        if kind is MoveKind.STOP or kind is MoveKind.FORCE_STOP:
            return Stop(force=kind is MoveKind.FORCE_STOP)
        return UpdateMetadata(self.patches[kind])

    def _request(self, world: World, move: Move) -> Result:
        assert move.item is not None
        i, w, now = move.item, move.worker, world.now
        before = world.items[i]
        command = self._command(world, move)
        outcome = self._step(before, command, now)
        after = outcome.item
        violations = self._item_checks(before, after) if after is not before else []
        if isinstance(outcome, Rejected):
            violations += rejection_problems(before, after)
        replaying = isinstance(command, Ack) and before.worker_id in (None, command.worker_id)
        if replaying and before.state in (State.STARTING, State.ACTIVE):  # invariant 4: by the bound worker
            violations += replay_problems(before, after)
            if outcome.status != 200:
                violations.append(
                    Violation(4, before.id, f"an ack replay by the bound worker answered {outcome.status}")
                )
        tokens, leases = world.tokens, world.leases
        if w is not None:  # what the worker learns from the reply
            token, lease = tokens[w][i], leases[w][i]
            if isinstance(command, Ack):
                if not isinstance(outcome, Replayed):  # 409: drop the item; 200: a new assignment
                    token = lease = None
            elif isinstance(command, Heartbeat):
                if isinstance(outcome, Rejected):  # 409 or 412: the lease is lost
                    token = lease = None
                else:
                    token = after.latest_heartbeat_at
                    lease = after.lease_deadline
            tokens = _replace(tokens, w, i, token)
            leases = _replace(leases, w, i, lease)
        if after is before and tokens is world.tokens and leases is world.leases:
            new = world
        else:
            items = world.items if after is before else (*world.items[:i], after, *world.items[i + 1 :])
            # A reply stamped ahead of now (a heartbeat token bumped by a microsecond): the next request comes
            # no earlier than that instant (so that repeated heartbeats at one instant do not run away).
            new = World(max(now, after.clock), items, tokens, leases)
        steps = (StepRecord(i, before.state, command, now, outcome),)
        if new.now > now:  # and what is due at that instant lapses, as the server's expiry sweep does
            passed = self._advance(new, Move(MoveKind.ADVANCE, at=new.now))
            return Result(passed.world, steps + passed.steps, outcome.status, tuple(violations) + passed.violations)
        violations += self._world_checks(new)
        return Result(new, steps, outcome.status, tuple(violations))

    # --- invariants ---

    def _item_checks(self, before: WorkItem, after: WorkItem) -> list[Violation]:
        found = item_problems(before, after, self.policy)
        # The core's own statement of invariant 2 adds section 5: a queued item has no bound Worker-ID or lease.
        known = {v.message for v in found}
        found += [Violation(2, after.id, p) for p in consistency_problems(after) if p not in known]
        return found

    def _world_checks(self, world: World) -> list[Violation]:
        holders = [
            (_worker_name(w), world.items[i].id, until)
            for w, row in enumerate(world.leases)
            for i, until in enumerate(row)
            if until is not None
        ]
        found = lease_problems(holders, world.now)
        queued = [item for item in world.items if item.state is State.QUEUED]
        depth = sum(1 for item in queued if isinstance(self._step(item, Deliver(), world.now), Accepted))
        found += stats_problems(self.environment_id, depth, len(queued) - depth, len(queued))
        return found

    # --- the canonical key ---

    def _ties(self, item: WorkItem, stamps: tuple[datetime | None, ...], now: datetime) -> tuple[Any, ...]:
        """What the ordering checks (invariants 2 and 3) can still tell of a live item's instants.

        An inconsistent item keeps the full order. For a consistent one (every instant at or before its
        clock, in the order the checks want), every instant a later step stamps is at or after the clock,
        and the checks are all "at or before"; so a future check can only fail on a *tie*: an instant
        ``g`` that equals the clock, when a rule rewrites an instant that must not come after ``g``. Only
        the ties of :attr:`tie_fields` (derived from the lifecycle's rules) are kept, with whether the
        clock equals ``now`` (a request stamps ``now``) and whether the deadline is at or before the clock
        (a lapse stamps the later of the two). For the spec's rules that set is empty.
        """
        if consistency_problems(item) or timeline_problems(item):
            return (1, *_ranks(stamps))
        if not self._tie_index:
            return (0,)
        clock = item.clock
        deadline = next_deadline(item, self.policy)
        return (
            0,
            clock == now,
            deadline is not None and deadline <= clock,
            *(-1 if (t := stamps[k]) is None else t == clock for k in self._tie_index),
        )

    def _base(self, item: WorkItem, now: datetime) -> tuple[Any, ...]:
        stamps = (  # as _STAMPS names them
            item.created_at,
            item.acknowledged_at,
            item.started_at,
            item.latest_heartbeat_at,
            item.stop_requested_at,
            item.stopped_at,
            item.delivered_at,
            item.clock,
        )
        if not item.live:
            return (_STATE_CODE[item.state], _ranks(stamps))
        horizon = self._horizon_us
        st = item.state
        latest = item.latest_heartbeat_at
        exact = (  # only what a rule can still read in this state
            _behind(now, item.acknowledged_at, horizon) if latest is None and st is not State.QUEUED else _NO_TIME,
            _behind(now, latest, horizon),
            _behind(now, item.delivered_at, self._window_us) if st is State.QUEUED else _NO_TIME,
            min(0, (now - item.clock) // MICROSECOND),  # the clock matters only when it is ahead of now
        )
        return (_STATE_CODE[st], item.ttl_seconds or 0, *self._ties(item, stamps, now), *exact)

    def key(self, world: World) -> tuple[Any, ...]:
        """A value equal for worlds whose futures are the same up to renaming workers and stopped items.

        Per item: its state, the order of all its instants, the instants a rule can still read (those an
        expiry, a reclaim window or the heartbeat token depend on) as microseconds behind ``now`` while
        within the horizon, and per worker whether its token is none, the item's latest or stale, and
        how far ahead the lease it believes in runs. A stopped item keeps only its state and order
        (no rule reads more of it); metadata and ``version`` are left out (no guard depends on them for
        the requests the model sends). See docs/verification.md.
        """
        now = world.now
        workers = self.workers
        columns: list[tuple[bool, tuple[Any, ...], str | None, str | None, list[int], list[int]]] = []
        cache = self._bases
        for i, item in enumerate(world.items):
            found = cache.get((id(item), now))
            if found is None:  # the item's part of the key, once per (item, now): items are shared by many worlds
                found = cache[id(item), now] = (item, self._base(item, now))
            base = found[1]
            if not item.live:
                columns.append((False, base, None, None, [], []))
                continue
            latest = item.latest_heartbeat_at
            tokens = [0 if row[i] is None else 1 if row[i] == latest else 2 for row in world.tokens]
            leases = [_NO_TIME if (u := row[i]) is None else (now - u) // MICROSECOND for row in world.leases]
            columns.append((True, base, item.worker_id, item.delivered_to, tokens, leases))
        best: tuple[Any, ...] | None = None
        for perm in self._perms:
            names: dict[str | None, int] = {None: 0, **{_worker_name(w): 1 + perm[w] for w in range(workers)}}
            live, stopped = [], []
            for is_live, base, bound, delivered, tokens, leases in columns:
                if not is_live:
                    stopped.append(base)
                    continue
                knowledge = [0] * (2 * workers)
                for w in range(workers):
                    knowledge[perm[w]] = tokens[w]
                    knowledge[workers + perm[w]] = leases[w]
                live.append((*base, names[bound], names[delivered], *knowledge))
            candidate = (tuple(live), tuple(sorted(stopped)))
            if best is None or candidate < best:
                best = candidate
        assert best is not None
        return best


_STATE_CODE = {state: n for n, state in enumerate(State)}
_STAMPS = (
    "created_at",
    "acknowledged_at",
    "started_at",
    "latest_heartbeat_at",
    "stop_requested_at",
    "stopped_at",
    "delivered_at",
    "clock",
)
# The ordering checks (invariant 3, and the core's consistency): per instant, those that must not be
# earlier than it. All are "at or before" checks.
_CHAIN = ("created_at", "acknowledged_at", "started_at", "latest_heartbeat_at")
_NOT_EARLIER: dict[str, frozenset[str]] = {
    **{name: frozenset((*_CHAIN[k + 1 :], "stopped_at")) for k, name in enumerate(_CHAIN)},
    "created_at": frozenset(_STAMPS[1:-1]),
    "stop_requested_at": frozenset({"stopped_at"}),
    "delivered_at": frozenset({"stopped_at"}),
    "stopped_at": frozenset(),
}


def _settable(state: State) -> set[str]:
    """The instants a consistent item in ``state`` may have set: those neither the spec's invariant 2
    (:mod:`workstate.invariants`) nor the core's ``consistency_problems`` forbid there (asked of a probe
    with every instant set)."""
    probe = SimpleNamespace(
        **{name: T0 for name in _STAMPS}, state=state, worker_id=None, delivered_to=None, ttl_seconds=1
    )
    problems = set(consistency_problems(cast(WorkItem, probe)))
    return {g for g in _STAMPS if g not in HAS_NOT[state] and f"{state} has {g}" not in problems}


def _tie_fields(lifecycle: Lifecycle) -> frozenset[str]:
    """The instants whose ties with the clock a future ordering check can turn on: ``g`` such that some
    rule, in a state where ``g`` may be set (invariant 2), stamps an instant that must not come after ``g``."""
    found: set[str] = set()
    for (state, _trigger), entry in lifecycle.table.items():
        allowed = _settable(state)
        for rule in entry.rules:
            for action in rule.actions:
                if action == "requeue":  # it clears instants, it stamps none
                    continue
                for written in ACTIONS[action].writes:
                    found |= _NOT_EARLIER.get(written, frozenset()) & allowed
    return frozenset(found)


def _behind(now: datetime, t: datetime | None, horizon: int) -> int:
    """Microseconds ``t`` lies behind ``now``, or a marker when it is absent or older than the horizon."""
    if t is None:
        return _NO_TIME
    behind = (now - t) // MICROSECOND
    return behind if behind <= horizon else _OLD


def _ranks(stamps: tuple[datetime | None, ...]) -> tuple[int, ...]:
    """The order of the instants: each one's rank among the distinct ones (-1 for absent)."""
    distinct = sorted({t for t in stamps if t is not None})
    return tuple(-1 if t is None else distinct.index(t) for t in stamps)


def _replace(
    table: tuple[tuple[datetime | None, ...], ...], w: int, i: int, value: datetime | None
) -> tuple[tuple[datetime | None, ...], ...]:
    if table[w][i] == value:
        return table
    row = (*table[w][:i], value, *table[w][i + 1 :])
    return (*table[:w], row, *table[w + 1 :])


# --- the search ---------------------------------------------------------------------------------


@attrs.frozen
class Counterexample:
    """The shortest sequence of moves that breaks an invariant, with what each move did."""

    moves: tuple[Move, ...]
    results: tuple[Result, ...]
    violations: tuple[Violation, ...]


@attrs.frozen
class Report:
    """What :func:`explore` found."""

    workers: int
    items: int
    depth: int  # the bound asked for
    states: int  # distinct states (by canonical key)
    transitions: int  # moves applied
    depth_reached: int  # the deepest level that had a new state
    exhausted: bool  # every reachable state was visited (a level added no new state)
    counterexample: Counterexample | None


Progress = Callable[[int, int, int], None]
"""Called after each level with (depth, states, transitions)."""
OnStep = Callable[[int, Any, Move, Result], None]
"""Called for every transition with (depth of the parent, the parent's key, the move, its result)."""


def explore(
    workers: int,
    items: int,
    depth: int,
    lifecycle: Lifecycle = LIFECYCLE,
    policy: Policy = DEFAULT_POLICY,
    *,
    progress: Progress | None = None,
    on_step: OnStep | None = None,
    stop_at_violation: bool = True,
    parents: dict[Any, tuple[Any, Move] | None] | None = None,
) -> Report:
    """Breadth-first search of every state reachable in at most ``depth`` moves; the first violation found
    is on a shortest path (all moves of one level are tried before any of the next).

    ``parents``, when given, is filled with every visited key and the (parent key, move) that first reached
    it (for :func:`path_to`).
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
    system = System(workers, items, lifecycle, policy)
    root = system.initial()
    root_key = system.key(root)
    if parents is None:
        parents = {}
    parents.clear()
    parents[root_key] = None
    frontier: list[tuple[Any, World]] = [(root_key, root)]
    transitions = 0
    reached = 0
    exhausted = False
    for level in range(depth):
        following: list[tuple[Any, World]] = []
        for key, world in frontier:
            for move in system.moves(world):
                result = system.apply(world, move)
                transitions += 1
                if on_step is not None:
                    on_step(level, key, move, result)
                if result.violations and stop_at_violation:
                    found = _counterexample(system, parents, key, move)
                    return Report(workers, items, depth, len(parents), transitions, level + 1, False, found)
                if result.world is world:
                    continue
                child = system.key(result.world)
                if child not in parents:
                    parents[child] = (key, move)
                    following.append((child, result.world))
        if progress is not None:
            progress(level + 1, len(parents), transitions)
        if not following:
            exhausted = True
            break
        reached = level + 1
        frontier = following
    return Report(workers, items, depth, len(parents), transitions, reached, exhausted, None)


def path_to(parents: dict[Any, tuple[Any, Move] | None], key: Any) -> list[Move]:
    """The moves from the initial world to the world with ``key``."""
    moves: list[Move] = []
    link = parents[key]
    while link is not None:
        key, move = link
        moves.append(move)
        link = parents[key]
    moves.reverse()
    return moves


def replay(system: System, moves: Sequence[Move]) -> list[Result]:
    """The result of each move, applied in order from the initial world."""
    world = system.initial()
    results = []
    for move in moves:
        result = system.apply(world, move)
        results.append(result)
        world = result.world
    return results


def _counterexample(
    system: System, parents: dict[Any, tuple[Any, Move] | None], key: Any, last: Move
) -> Counterexample:
    moves = (*path_to(parents, key), last)
    results = replay(system, moves)
    return Counterexample(moves, tuple(results), results[-1].violations)


# --- the trace ----------------------------------------------------------------------------------


def _line(
    now: datetime, method: str, target: str, worker: str | None, body: str | None, status: int, reply: Any
) -> str:
    headers = {"Authorization": "Bearer t"}
    if worker is not None:
        headers["Worker-ID"] = worker
    request = {"method": method, "target": target, "headers": headers, "body": body}
    return json.dumps(
        {"time": render_timestamp(now), "request": request, "response": {"status": status, "body": reply}}
    )


def trace_lines(system: System, moves: Sequence[Move]) -> list[str]:
    """The moves as a trace in the ``workstate check`` format (one JSON object per line).

    It opens with a GET of every item (so the trace knows every item from the start) and, when the
    last move is time passing, closes with a GET of every item at that instant. Error replies carry
    the request ids the reference server's default id source would give.
    """
    world = system.initial()
    base = f"{BASE_PATH}{system.environment_id}/work"
    lines = [_line(world.now, "GET", f"{base}/{item.id}", None, None, 200, encode_work(item)) for item in world.items]
    errors = 0
    for move in moves:
        result = system.apply(world, move)
        now = result.world.now
        worker = None if move.worker is None else _worker_name(move.worker)
        if move.kind is MoveKind.ADVANCE:
            world = result.world
            continue
        if move.kind is MoveKind.POLL:
            delivered = [s.outcome.item for s in result.steps if isinstance(s.outcome, Accepted)]
            lines.append(
                _line(now, "GET", f"{base}/poll", worker, None, 200, encode_work(delivered[0]) if delivered else None)
            )
            world = result.world
            continue
        assert move.item is not None
        target = f"{base}/{system.work_ids[move.item]}"
        step = result.steps[0]  # the request (a lapse at a later instant may follow it)
        body: str | None = None
        command = step.command
        if isinstance(command, Ack):
            target += "/ack"
        elif isinstance(command, Heartbeat):
            target += "/heartbeat"
            expected = command.expected_last_heartbeat
            if expected is not None:
                text = expected if isinstance(expected, str) else render_timestamp(expected)
                target += f"?expected_last_heartbeat={text}"
        elif isinstance(command, Stop):
            target += "/stop"
            body = '{"force": true}' if command.force else None
        elif isinstance(command, UpdateMetadata):
            body = json.dumps({"metadata": dict(command.metadata)})
        outcome = step.outcome
        reply: Any = encode_work(outcome.item)
        if isinstance(command, Heartbeat) and not isinstance(outcome, Rejected):
            reply = HeartbeatObject.of(outcome.item).to_json()
        if isinstance(outcome, Rejected):
            errors += 1
            rule = outcome.rule
            reply = ErrorEnvelope(
                request_id=f"req_{errors:032x}",
                error_type=error_type(outcome.reason, system.policy),
                message=f"{outcome.reason.message} [{rule.section} {rule.name}]",
                param=_PARAM_OF_REASON.get(outcome.reason),
            ).to_json()
        lines.append(_line(now, "POST", target, worker, body, outcome.status, reply))
        world = result.world
    if moves and moves[-1].kind is MoveKind.ADVANCE:
        lines += [
            _line(world.now, "GET", f"{base}/{item.id}", None, None, 200, encode_work(item)) for item in world.items
        ]
    return lines


# --- the command --------------------------------------------------------------------------------


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="how many workers (default 2)")
    parser.add_argument("--items", type=int, default=2, help="how many work items (default 2)")
    parser.add_argument("--depth", type=int, default=8, help="how many moves deep to search (default 8)")
    parser.add_argument("--trace", metavar="FILE", help="write the counterexample's trace to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _positive(value: int, name: str, largest: int) -> str | None:
    return None if 1 <= value <= largest else f"{name} must be from 1 to {largest}, got {value}"


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """``workstate verify``: search, print the figures, and the shortest counterexample if there is one."""
    err = sys.stderr if err is None else err
    problems = [
        p
        for p in (
            _positive(args.workers, "--workers", 5),
            _positive(args.items, "--items", 5),
            None if 0 <= args.depth <= 1000 else f"--depth must be from 0 to 1000, got {args.depth}",
        )
        if p
    ]
    if problems:
        err.write("workstate verify: " + "; ".join(problems) + "\n")
        return 2
    started = time.perf_counter()

    def progress(level: int, states: int, transitions: int) -> None:
        if not args.quiet:
            elapsed = time.perf_counter() - started
            err.write(f"depth {level}: {states:,} states, {transitions:,} transitions, {elapsed:.1f} s\n")
            err.flush()

    report = explore(args.workers, args.items, args.depth, progress=progress)
    elapsed = time.perf_counter() - started
    for text in summary(report, elapsed):
        out.write(text + "\n")
    found = report.counterexample
    if found is None:
        return 0
    lines = trace_lines(System(args.workers, args.items), found.moves)
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        out.write(f"trace written to {args.trace}\n")
    else:
        out.write("\n".join(lines) + "\n")
    return 1


def summary(report: Report, seconds: float | None = None) -> Iterator[str]:
    """The figures and the verdict, as lines."""
    yield f"workers {report.workers}, items {report.items}, depth bound {report.depth}"
    yield f"states explored: {report.states:,}"
    yield f"transitions: {report.transitions:,}"
    more = " (every reachable state visited)" if report.exhausted else ""
    yield f"depth reached: {report.depth_reached}{more}"
    if seconds is not None:
        yield f"time taken: {seconds:.2f} s"
    found = report.counterexample
    if found is None:
        yield f"no counterexample up to depth {report.depth}"
        return
    yield f"counterexample ({len(found.moves)} moves):"
    for n, move in enumerate(found.moves, 1):
        yield f"  {n}. {move}"
    for violation in found.violations:
        yield f"  broken: {violation}"


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "verify",
        "search every interleaving of requests from W workers on I items up to a depth (bounded model checking)",
        _configure,
        run,
    ),
)
