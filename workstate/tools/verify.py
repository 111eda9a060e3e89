"""Bounded model checking: every interleaving of requests from W workers on I items, up to a depth.

:func:`explore` is pure: it visits, breadth first, every state a small environment reaches through the
Work API's requests (poll, ack, heartbeat with a correct, stale or absent precondition, graceful and
forced stop, metadata update) and the passing of time, and checks the invariants of api.md §7
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

Pure: the search takes its sizes and returns a :class:`Report`; :func:`summary` and :func:`trace_lines`
turn one into lines. ``workstate verify`` (:mod:`workstate.cli.verify`) times the search, shows its
progress, prints the figures and, if an invariant breaks, the shortest counterexample as a trace in the
``workstate check`` format.
"""

from __future__ import annotations

import enum
import itertools
import json
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import attrs

from .._time import MICROSECOND, UTC, render_timestamp
from ..api.codec import ErrorEnvelope, HeartbeatObject, encode_work
from ..api.routes import params_of_reasons
from ..dialect import QODER, Dialect, ErrorStyle, StopAnswer
from ..errors import InvalidInput
from ..invariants import (
    HAS_NOT,
    Violation,
    item_problems,
    lease_problems,
    rejection_problems,
    replay_problems,
    stats_problems,
    timeline_problems,
)
from ..model import (
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
from ..policy import DEFAULT_POLICY, Policy
from ..rules import Reason, State

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
    "Difference",
    "differ",
    "explore",
    "observe",
    "path_to",
    "replay",
    "summary",
    "trace_lines",
]

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
"""When every item of a verified environment is created."""

_LAPSE = Lapse()
_STALE = T0 - timedelta(seconds=1)  # a precondition that names no heartbeat of any item
_NO_TIME = 1 << 62  # key codes: an absent instant
_OLD = 1 << 60  # key codes: an instant too far behind now to matter, by rank


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


MAX_SIZE = 5
"""The most workers, and the most items, a :class:`System` has."""
MAX_DEPTH = 1000
"""The deepest search :func:`explore` (and ``workstate verify --depth``) accepts."""


def _check_size(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise InvalidInput(f"{name} must be an integer from 1 to {MAX_SIZE}, got {value!r}", param=name)


def _check_rules(lifecycle: object, policy: object) -> None:
    if not isinstance(lifecycle, Lifecycle):
        raise InvalidInput(f"lifecycle must be a workstate.Lifecycle, got {lifecycle!r}", param="lifecycle")
    if not isinstance(policy, Policy):
        raise InvalidInput(f"policy must be a workstate.Policy, got {policy!r}", param="policy")


class System:
    """The environment under verification: ``workers`` workers, ``items`` items, a lifecycle and a policy.

    ``workers`` and ``items`` are integers from 1 to 5 (not bools), ``lifecycle`` a
    :class:`~workstate.Lifecycle`, ``policy`` a :class:`~workstate.Policy`; anything else raises
    :class:`~workstate.errors.InvalidInput` naming the argument.
    """

    def __init__(
        self, workers: int, items: int, lifecycle: Lifecycle = LIFECYCLE, policy: Policy = DEFAULT_POLICY
    ) -> None:
        _check_size(workers, "workers")
        _check_size(items, "items")
        _check_rules(lifecycle, policy)
        self.workers = workers
        self.n_items = items
        self.lifecycle = lifecycle
        self.dialect: Dialect = lifecycle.dialect  # whose rules decide, and how trace_lines spells the wire
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
        # Each renaming of workers (w -> perm[w]): the new names of Worker-IDs, and which old worker each new
        # position holds (the inverse permutation).
        self._renamings = tuple(
            (
                {None: 0, **{_worker_name(w): 1 + perm[w] for w in range(workers)}},
                tuple(perm.index(p) for p in range(workers)),
            )
            for perm in itertools.permutations(range(workers))
        )
        self._renaming_range = range(len(self._renamings))
        self.tie_fields = _tie_fields(lifecycle)
        self._tie_index = tuple(k for k, name in enumerate(_STAMPS) if name in self.tie_fields)
        self._requests = self._request_moves()
        self._request_index = {move: n for n, move in enumerate(self._requests)}
        # Per request move, the command when it does not depend on the world (None: a correct heartbeat).
        self._fixed = tuple(None if m.kind is MoveKind.POLL else self._fixed_command(m) for m in self._requests)
        self._deliver = tuple(Deliver(_worker_name(w)) for w in range(workers))
        # Memos. Worlds share items (a move changes at most one), so what a step does to an item at an instant
        # is computed once. Keys that use id() keep the item alive in the value, so an id is never reused.
        self._columns: dict[tuple[Any, ...], tuple[WorkItem, Any, Any]] = {}
        self._steps: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._lapses: dict[tuple[int, datetime], tuple[WorkItem, Outcome, tuple[Violation, ...]]] = {}
        self._delivers: dict[tuple[int, int | None, datetime], tuple[WorkItem, Outcome]] = {}
        self._checked_world: World | None = None
        self._checked: list[Violation] = []
        self._delivery_checks: dict[tuple[int, int, datetime], tuple[WorkItem, list[Violation]]] = {}
        self._lease_checks: dict[tuple[Any, datetime], list[Violation]] = {}
        self._stats_checks: dict[tuple[Any, ...], tuple[tuple[WorkItem, ...], list[Violation]]] = {}
        # The search's cells (see _cell), and the small integer naming each distinct part of a key: a column of
        # a live item under one renaming, or a stopped item's base. The numbers are never dropped (the search's
        # codes are made of them); they hold no item.
        self._cells: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._numbers: dict[tuple[Any, ...], int] = {}
        self._n_moves = len(self._requests)
        self._items: dict[WorkItem, WorkItem] = {}  # one item per value, for the cells
        self._aliases: list[WorkItem] = []
        self._epoch = 0  # how many times the memos were dropped
        self._coherent: dict[int, tuple[WorkItem, bool]] = {}  # per item: consistent and in order (see _ties)

    def remembered(self) -> int:
        """How many results the memos hold (the search calls :meth:`forget` when it passes a bound)."""
        return (
            len(self._columns)
            + len(self._steps)
            + len(self._lapses)
            + len(self._delivers)
            + len(self._delivery_checks)
            + len(self._lease_checks)
            + len(self._stats_checks)
            + len(self._cells)
            + len(self._items)
            + len(self._coherent)
        )

    def forget(self) -> None:
        """Drop the memos (they keep every item they saw alive): the search calls it after each level, so what it
        holds is bounded by the frontier, not by every state it ever saw. Results do not change."""
        for memo in (
            self._columns,
            self._steps,
            self._lapses,
            self._delivers,
            self._delivery_checks,
            self._lease_checks,
            self._stats_checks,
            self._coherent,
        ):
            memo.clear()
        for cell in self._cells.values():  # cells name the cells their moves reach: no cycle outlives the memo
            cell[6].clear()
        self._cells.clear()
        self._epoch += 1  # the cells the search holds from before are stale
        self._items.clear()
        self._aliases.clear()
        self._checked_world = None
        self._checked = []

    # --- states and moves ---

    def initial(self) -> World:
        items = tuple(
            WorkItem(
                id=wid,
                environment_id=self.environment_id,
                session_id=self.dialect.prefix("session") + wid[5:],
                created_at=T0,
            )
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

    @property
    def requests(self) -> tuple[Move, ...]:
        """The request moves, in the order :meth:`moves` lists them (the same in every world)."""
        return self._requests

    def moves(self, world: World) -> list[Move]:
        """Every move from ``world``: each request, then each instant time may advance to."""
        now = world.now
        return [*self._requests, *(Move(MoveKind.ADVANCE, at=t) for t in self.events(world) if t > now)]

    # --- applying a move ---

    def apply(self, world: World, move: Move) -> Result:
        """The result of ``move`` in ``world``, with every invariant it breaks."""
        if move.kind is MoveKind.ADVANCE:
            return self._advance(world, move)
        n = self._request_index.get(move)
        if n is None:
            raise InvalidInput(f"not a move of this system: {move}", param="move")
        return self.apply_request(world, n)

    def apply_request(self, world: World, n: int) -> Result:
        """The result of the ``n``-th request move (the order of :meth:`moves`) in ``world``."""
        move = self._requests[n]
        if move.kind is MoveKind.POLL:
            return self._poll(world, move)
        return Result(*self._request(world, move, n))

    def _step(self, item: WorkItem, command: Command, now: datetime) -> Outcome:
        return self.lifecycle.step(item, command, now, self.policy)

    def _lapse(self, item: WorkItem, now: datetime) -> tuple[WorkItem, Outcome, tuple[Violation, ...]]:
        """A lapse of ``item`` at ``now``, and what it breaks (memoised per item and instant)."""
        memo = (id(item), now)
        found = self._lapses.get(memo)
        if found is not None:
            return found
        outcome = self._step(item, _LAPSE, now)
        after = outcome.item
        violations = self._item_checks(item, after) if after is not item else []
        deadline = next_deadline(after, self.policy)
        if after.live and after.state is not State.QUEUED and deadline is not None and deadline <= now:
            violations.append(
                Violation(
                    8, after.id, f"its deadline {render_timestamp(deadline)} passed and it is still {after.state}"
                )
            )
        found = self._lapses[memo] = (item, outcome, tuple(violations))
        return found

    def _advance(self, world: World, move: Move) -> Result:
        assert move.at is not None
        now = move.at
        items = list(world.items)
        steps = []
        violations: list[Violation] = []
        for i, item in enumerate(world.items):
            _, outcome, broken = self._lapse(item, now)
            steps.append(StepRecord(i, item.state, _LAPSE, now, outcome))
            items[i] = outcome.item
            violations += broken
        leases = world.leases
        if any(u is not None and u <= now for row in leases for u in row):
            leases = tuple(tuple(None if u is None or u <= now else u for u in row) for row in leases)
        new = World(now, tuple(items), world.tokens, leases)
        return Result(new, tuple(steps), None, tuple(violations + self._world_checks(new)))

    def _poll(self, world: World, move: Move) -> Result:
        """The oldest item (creation order) that the core's deliver rule accepts, or null (api.md §4.1)."""
        assert move.worker is not None
        command = self._deliver[move.worker]
        steps = []
        for i, item in enumerate(world.items):  # items are created in id order, all at T0
            outcome = self._delivered(item, move.worker, world.now)
            steps.append(StepRecord(i, item.state, command, world.now, outcome))
            if isinstance(outcome, Accepted):
                items = (*world.items[:i], outcome.item, *world.items[i + 1 :])
                new = attrs.evolve(world, items=items)
                violations = self._delivered_checks(item, move.worker, world.now) + self._world_checks(new)
                return Result(new, tuple(steps), 200, tuple(violations))
            if not isinstance(outcome, Rejected) or outcome.item is not item:
                raise AssertionError(f"a poll that delivers nothing changed {item.id}: {outcome.rule.name}")
        return Result(world, tuple(steps), 200, tuple(self._world_checks(world)))

    def _delivered_checks(self, item: WorkItem, worker: int, now: datetime) -> list[Violation]:
        """What delivering ``item`` to ``worker`` at ``now`` breaks on the item, memoised."""
        memo = (id(item), worker, now)
        found = self._delivery_checks.get(memo)
        if found is None:
            after = self._delivered(item, worker, now).item
            found = self._delivery_checks[memo] = (item, self._item_checks(item, after))
        return list(found[1])

    def _delivered(self, item: WorkItem, worker: int | None, now: datetime) -> Outcome:
        """``Deliver`` to ``worker`` (None: the stats' deliverability question) of ``item`` at ``now``, memoised."""
        memo = (id(item), worker, now)
        found = self._delivers.get(memo)
        if found is None:
            command = Deliver() if worker is None else self._deliver[worker]
            found = self._delivers[memo] = (item, self._step(item, command, now))
        return found[1]

    def _fixed_command(self, move: Move) -> Command | None:
        """The command of a request move, or None when it depends on the world (a correct heartbeat)."""
        if move.kind is MoveKind.HEARTBEAT and move.precondition is Precondition.CORRECT:
            return None
        return self._command(cast(World, None), move)

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

    def _decide(self, before: WorkItem, command: Command, now: datetime) -> tuple[Outcome, tuple[Violation, ...]]:
        """The outcome of a request and what it breaks on the item (invariants 1-5, 8): a function of the
        item, the command and the instant only, so :meth:`_request` memoises it."""
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
        return outcome, tuple(violations)

    def _request(
        self, world: World, move: Move, n: int
    ) -> tuple[World, tuple[StepRecord, ...], int | None, tuple[Violation, ...]]:
        """A request other than a poll: the fields of its :class:`Result` (the search reads two of them)."""
        assert move.item is not None
        i, w, now = move.item, move.worker, world.now
        before = world.items[i]
        command = self._fixed[n]
        token = None
        if command is None:  # a correct heartbeat: the sender's token
            assert w is not None
            token = world.tokens[w][i]
        memo = (id(before), n, token, now)
        found = self._steps.get(memo)
        if found is None:
            found = self._steps[memo] = self._decided(before, command or Heartbeat(token or NO_HEARTBEAT), i, w, now)
        _, outcome, broken, steps, learned = found
        after = outcome.item
        tokens, leases = world.tokens, world.leases
        if learned is not None:  # what the worker learns from the reply
            assert w is not None
            tokens = _replace(tokens, w, i, learned[0])
            leases = _replace(leases, w, i, learned[1])
        if after is before and tokens is world.tokens and leases is world.leases:
            new = world
        else:
            items = world.items if after is before else (*world.items[:i], after, *world.items[i + 1 :])
            # A reply stamped ahead of now (a heartbeat token bumped by a microsecond): the next request comes
            # no earlier than that instant (so that repeated heartbeats at one instant do not run away).
            clock = after.clock
            new = World(clock if clock > now else now, items, tokens, leases)
        if new.now > now:  # and what is due at that instant lapses, as the server's expiry sweep does
            passed = self._advance(new, Move(MoveKind.ADVANCE, at=new.now))
            return (passed.world, steps + passed.steps, outcome.status, broken + passed.violations)
        checks = self._world_checks(new)
        return (new, steps, outcome.status, (*broken, *checks) if checks else broken)

    def _decided(self, before: WorkItem, command: Command, i: int, w: int | None, now: datetime) -> tuple[Any, ...]:
        """What a request does that depends only on the item, the command and the instant (memoised by
        :meth:`_request`): the item it holds alive, the outcome, what it breaks on the item, its step
        record, and the (token, lease) the sender learns from the reply (None: nothing changes)."""
        outcome, broken = self._decide(before, command, now)
        after = outcome.item
        learned: tuple[datetime | None, datetime | None] | None = None
        if w is not None:
            if isinstance(command, Ack):
                if not isinstance(outcome, Replayed):  # 409: drop the item; 200: a new assignment
                    learned = (None, None)
            elif isinstance(command, Heartbeat):
                # 409 or 412: the lease is lost; a replay (a dialect that reports a stopped item, rule
                # heartbeat-stopped-reported: lease_extended false) extends nothing, so the worker ends it too
                if isinstance(outcome, Rejected | Replayed):
                    learned = (None, None)
                else:
                    learned = (after.latest_heartbeat_at, after.lease_deadline)
        steps = (StepRecord(i, before.state, command, now, outcome),)
        return (before, outcome, broken, steps, learned)

    # --- invariants ---

    def _item_checks(self, before: WorkItem, after: WorkItem) -> list[Violation]:
        found = item_problems(before, after, self.policy)
        # The core's own statement of invariant 2 adds api.md §5: a queued item has no bound Worker-ID or lease.
        known = {v.message for v in found}
        found += [Violation(2, after.id, p) for p in consistency_problems(after) if p not in known]
        return found

    def _world_checks(self, world: World) -> list[Violation]:
        """Invariants 7 and 9 of ``world``: functions of the believed leases and ``now``, and of the queued items
        and ``now``, so memoised on those. The last world checked is remembered too (held, so compared by
        identity): the search tries every move of a world in a row, and a refused request leaves it as it was."""
        if world is self._checked_world:
            return self._checked
        now = world.now
        memo = (world.leases, now)
        leased = self._lease_checks.get(memo)
        if leased is None:
            holders = [
                (_worker_name(w), world.items[i].id, until)
                for w, row in enumerate(world.leases)
                for i, until in enumerate(row)
                if until is not None
            ]
            leased = self._lease_checks[memo] = lease_problems(holders, now)
        items = world.items
        memo_items = (*map(id, items), now)
        stats = self._stats_checks.get(memo_items)
        if stats is None:
            queued = [item for item in items if item.state is State.QUEUED]
            depth = sum(1 for item in queued if isinstance(self._delivered(item, None, now), Accepted))
            problems = stats_problems(self.environment_id, depth, len(queued) - depth, len(queued))
            stats = self._stats_checks[memo_items] = (items, problems)
        self._checked_world, self._checked = world, leased + stats[1]
        return self._checked

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
        coherent = self._coherent.get(id(item))
        if coherent is None:
            coherent = self._coherent[id(item)] = (item, not (consistency_problems(item) or timeline_problems(item)))
        if not coherent[1]:
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
        token_rows, lease_rows = world.tokens, world.leases
        cache = self._columns
        columns = []
        stopped = []
        for i, item in enumerate(world.items):
            knowledge = (*[row[i] for row in token_rows], *[row[i] for row in lease_rows])
            memo = (id(item), now, knowledge)
            found = cache.get(memo)
            if found is None:  # an item's column of the key, per renaming: items are shared by many worlds
                column = self._column(item, now, knowledge)
                found = cache[memo] = (item, column, None if column is not None else self._base(item, now))
            if found[1] is None:
                stopped.append(found[2])
            else:
                columns.append(found[1])
        best = min(tuple(column[r] for column in columns) for r in self._renaming_range)
        return (best, tuple(sorted(stopped)))

    def columns(self, world: World) -> list[tuple[Any, ...]]:
        """Per item (in order), its part of the key under each renaming of workers (a stopped item's base,
        the same under every renaming): what :func:`differ` joins for two worlds under one renaming."""
        now = world.now
        found = []
        for i, item in enumerate(world.items):
            knowledge = (*[row[i] for row in world.tokens], *[row[i] for row in world.leases])
            column = self._column(item, now, knowledge)
            found.append(column if column is not None else (self._base(item, now),) * len(self._renamings))
        return found

    def _cell(self, item: WorkItem, now: datetime, knowledge: tuple[datetime | None, ...]) -> tuple[Any, ...]:
        """What the search needs of one item (with what its workers know of it, ``knowledge`` as :meth:`key`
        builds it) at ``now``, memoised: ``(item, live, numbers, leased, now, knowledge, moves)``. ``numbers``
        names the item's part of :meth:`key`: per renaming of workers for a live item (a tuple), or its base
        for a stopped one (an int); ``leased`` is whether two workers hold an unexpired lease on it (invariant
        7 is per item); ``moves`` holds, per request move, what :meth:`_cell_move` found (None: not asked yet).
        """
        memo = (id(item), now, knowledge)
        found = self._cells.get(memo)
        if found is not None:
            return found
        # Items equal in value, reached along different interleavings, share one cell (and so their memoised moves).
        canonical = self._items.setdefault(item, item)
        if canonical is not item:
            found = self._cells[memo] = self._cell(canonical, now, knowledge)
            self._aliases.append(item)  # held while its id keys the memo
            return found
        numbers = self._numbers
        column = self._column(item, now, knowledge)
        part: Any
        if column is None:
            part = numbers.setdefault(self._base(item, now), len(numbers))
        else:
            part = tuple(numbers.setdefault(value, len(numbers)) for value in column)
        if len(numbers) > _NUMBERS:
            raise InvalidInput(f"more than {_NUMBERS:,} distinct parts of keys: the search is too large", param="depth")
        holders = [(_worker_name(w), item.id, u) for w, u in enumerate(knowledge[self.workers :]) if u is not None]
        leased = bool(lease_problems(holders, now))
        found = self._cells[memo] = (item, column is not None, part, leased, now, knowledge, [None] * self._n_moves)
        return found

    def _cell_move(self, cell: tuple[Any, ...], n: int) -> Any:
        """What request move ``n`` does to the item of ``cell``, as the search needs it (stored in the cell).

        A poll (``n`` below the workers): False when the item's deliver rule refuses it, else (what delivering it
        breaks on the item, the cell it becomes). A request on the cell's item: (whether it breaks an invariant
        on the item, the cell reached: None when nothing changes, :data:`_ELSEWHERE` when the reply moves time
        on, which the search leaves to :meth:`_request`)."""
        item, now, know = cell[0], cell[4], cell[5]
        move = self._requests[n]
        w = move.worker
        if move.kind is MoveKind.POLL:
            assert w is not None
            outcome = self._delivered(item, w, now)
            if isinstance(outcome, Accepted):
                found: Any = (bool(self._delivered_checks(item, w, now)), self._cell(outcome.item, now, know))
            elif not isinstance(outcome, Rejected) or outcome.item is not item:
                raise AssertionError(f"a poll that delivers nothing changed {item.id}: {outcome.rule.name}")
            else:
                found = False
            cell[6][n] = found
            return found
        i = move.item
        assert i is not None
        command = self._fixed[n]
        token = None
        if command is None:  # a correct heartbeat: the sender's token
            assert w is not None
            token = know[w]
        memo = (id(item), n, token, now)
        decided = self._steps.get(memo)
        if decided is None:
            decided = self._steps[memo] = self._decided(item, command or Heartbeat(token or NO_HEARTBEAT), i, w, now)
        outcome, broken, learned = decided[1], decided[2], decided[4]
        after = outcome.item
        if after.clock > now:
            found = (bool(broken), _ELSEWHERE)
        else:
            knew = know
            if learned is not None:  # what the worker learns from the reply
                assert w is not None
                workers = self.workers
                if know[w] != learned[0] or know[workers + w] != learned[1]:
                    changed = list(know)
                    changed[w], changed[workers + w] = learned
                    knew = tuple(changed)
            reached = None if after is item and knew is know else self._cell(after, now, knew)
            found = (bool(broken), reached)
        cell[6][n] = found
        return found

    def _cells_of(self, world: World) -> list[tuple[Any, ...]]:
        """The :meth:`_cell` of every item of ``world``, in order."""
        now = world.now
        token_rows, lease_rows = world.tokens, world.leases
        return [
            self._cell(item, now, (*[row[i] for row in token_rows], *[row[i] for row in lease_rows]))
            for i, item in enumerate(world.items)
        ]

    def _world_of(self, cells: Sequence[tuple[Any, ...]]) -> World:
        """The world whose cells are ``cells`` (all at one instant): what :meth:`apply` reaches, by value."""
        known = list(zip(*[cell[5] for cell in cells], strict=True))
        return World(
            cells[0][4], tuple(cell[0] for cell in cells), tuple(known[: self.workers]), tuple(known[self.workers :])
        )

    def _code(self, cells: Sequence[tuple[Any, ...]]) -> int:
        """The search's code of a world from its cells: one integer, equal for two worlds exactly when their
        :meth:`key` is (each part of the key is named by its own number, so the least tuple of the live items'
        numbers over the renamings picks one member of the same orbit as the key's least tuple; the stopped
        items' numbers follow, sorted; the count of live items closes it)."""
        live = []
        stopped = []
        for cell in cells:
            if cell[1]:
                live.append(cell[2])
            else:
                stopped.append(cell[2])
        best = 0
        if live:
            for part in min(zip(*live, strict=True)):
                best = best << 32 | part
        if stopped:
            stopped.sort()
            for part in stopped:
                best = best << 32 | part
        return best << 3 | len(live)

    def _column(self, item: WorkItem, now: datetime, knowledge: tuple[datetime | None, ...]) -> Any:
        """A live item's part of the key under each renaming of workers (None for a stopped item): its base,
        its bound and delivered Worker-IDs renamed, and per renamed worker whether its token is none, the
        item's latest heartbeat or stale, and how far behind ``now`` the lease it believes in ends."""
        if not item.live:
            return None
        base = self._base(item, now)
        workers = self.workers
        latest = item.latest_heartbeat_at
        tokens = [0 if t is None else 1 if t == latest else 2 for t in knowledge[:workers]]
        leases = [_NO_TIME if u is None else (now - u) // MICROSECOND for u in knowledge[workers:]]
        bound, delivered = item.worker_id, item.delivered_to
        return tuple(
            (*base, names[bound], names[delivered], *[tokens[w] for w in order], *[leases[w] for w in order])
            for names, order in self._renamings
        )


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
                for written in lifecycle.actions[action].writes:
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
    incomplete: str | None = None  # why the search stopped inside level depth_reached + 1 (a budget, Ctrl-C)


Progress = Callable[[int, int, int], None]
"""Called after each level with (depth, states, transitions)."""
ShouldStop = Callable[[], "str | None"]
"""Asked every few thousand transitions: None to go on, or why the search stops there (a budget spent)."""
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
    max_states: int | None = None,
    should_stop: ShouldStop | None = None,
) -> Report:
    """Breadth-first search of every state reachable in at most ``depth`` moves; the first violation found
    is on a shortest path (all moves of one level are tried before any of the next).

    ``parents``, when given, is filled with every visited key and the (parent key, move) that first reached
    it (for :func:`path_to`); without it the search keeps each state compactly (see :func:`_search`).

    Budgets: ``max_states`` stops the search before it holds more states; ``should_stop`` is called every
    few thousand transitions and stops it when it returns a reason (the command's ``--max-memory`` and
    Ctrl-C). A stopped search returns a partial :class:`Report`: ``incomplete`` says why, ``depth_reached``
    is the last complete level, and no counterexample lies within it.

    ``workers`` and ``items`` are integers from 1 to 5; ``depth`` an integer from 0 to 1000 (:data:`MAX_DEPTH`,
    the cap of ``workstate verify --depth``: the states grow with every level, and even W=1, I=1 grows
    linearly); ``lifecycle`` a :class:`~workstate.Lifecycle`; ``policy`` a :class:`~workstate.Policy`;
    ``progress`` and ``on_step`` None or callable; ``stop_at_violation`` a bool; ``parents`` None or a dict.
    Bools are not integers here. Anything else raises :class:`~workstate.errors.InvalidInput` naming the
    argument, before the search starts.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be an integer from 0 to {MAX_DEPTH}, got {depth!r}", param="depth")
    _check_size(workers, "workers")
    _check_size(items, "items")
    _check_rules(lifecycle, policy)
    for name, given in (("progress", progress), ("on_step", on_step)):
        if given is not None and not callable(given):
            raise InvalidInput(f"{name} must be None or callable, got {given!r}", param=name)
    if not isinstance(stop_at_violation, bool):
        raise InvalidInput(
            f"stop_at_violation must be True or False, got {stop_at_violation!r}", param="stop_at_violation"
        )
    if parents is not None and not isinstance(parents, dict):
        raise InvalidInput(f"parents must be None or a dict (it is filled in), got {parents!r}", param="parents")
    if max_states is not None and (isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1):
        raise InvalidInput(f"max_states must be None or a positive integer, got {max_states!r}", param="max_states")
    if should_stop is not None and not callable(should_stop):
        raise InvalidInput(f"should_stop must be None or callable, got {should_stop!r}", param="should_stop")
    return _search(
        workers, items, depth, lifecycle, policy, progress, on_step, stop_at_violation, parents, max_states, should_stop
    )


def _search(
    workers: int,
    items: int,
    depth: int,
    lifecycle: Lifecycle,
    policy: Policy,
    progress: Progress | None,
    on_step: OnStep | None,
    stop_at_violation: bool,
    parents: dict[Any, tuple[Any, Move] | None] | None,
    max_states: int | None = None,
    should_stop: ShouldStop | None = None,
) -> Report:
    """The search, in compact form. A state is one integer, its code (:meth:`System._code`): each distinct part
    of a canonical key (a live item's column under one renaming of workers, a stopped item's base) is numbered
    once, exactly (no hashing, so no two keys are ever confused), and the code packs the numbers of the key's
    least member; two worlds have one code exactly when they have one key. The codes are kept in one set; each
    state has a number, and two arrays hold its parent's number and the code of the move that reached it (a
    request's index, or the number of requests plus the index of the instant among the world's advances), from
    which the path is rebuilt by replaying. The frontier holds (number, world) pairs for one level only.

    A move is computed per item, not per world: a world is expanded from its items' cells (:meth:`System._cell`:
    the item, what the workers know of it, its numbers, whether it breaks invariant 7), a request reads what it
    does to its item's cell (memoised in the cell), and the code and the checks of the world it reaches come from
    the cells; the world itself is built only when its code is new. A reply that moves time on, and every move
    when ``on_step`` is given, take the general path (:meth:`System.apply`). The System's memos, which keep items
    alive, are dropped when they pass a bound; the numbers are kept."""
    system = System(workers, items, lifecycle, policy)
    root = system.initial()
    root_key = system.key(root) if parents is not None or on_step is not None else None
    if parents is not None:
        parents.clear()
        parents[root_key] = None
    seen: set[int] = {system._code(system._cells_of(root))}
    parent_of = array("q", [-1])
    move_of = array("l", [-1])
    frontier: list[tuple[int, World, Any]] = [(0, root, None)]  # and the world's cells, with their epoch
    keys: list[Any] | None = [root_key] if root_key is not None else None
    transitions = 0
    reached = 0
    exhausted = False
    requests = system.requests
    n_requests = len(requests)
    check_every = _CHECK_EVERY
    # Per request move, the item it is on (None for a poll).
    targets = [m.item for m in requests]
    cell_of, cell_move = system._cell, system._cell_move
    code_of = _code_of_two if items == 2 else system._code

    def report(level: int, found: Counterexample | None, incomplete: str | None = None) -> Report:
        return Report(workers, items, depth, len(seen), transitions, level, exhausted, found, incomplete=incomplete)

    result: Result | None = None
    for level in range(depth):
        following: list[tuple[int, World, Any]] = []
        frontier.reverse()  # expanded in order, each world let go once expanded: the level shrinks as the next grows
        while frontier:
            number, world, made = frontier.pop()
            if system.remembered() > max(_MEMO_BOUND, len(seen) // 2):  # memos keep items alive: bounded by the states
                system.forget()
            now = world.now
            cells = made[1] if made is not None and made[0] == system._epoch else system._cells_of(world)
            # Invariant 7 is per item: a move that changes one cell breaks it when another cell, or the new one, does.
            # (Invariant 9 cannot break in the model: its pending count is the queued count less the depth.)
            leased = sum(cell[3] for cell in cells)
            advances = [Move(MoveKind.ADVANCE, at=t) for t in system.events(world) if t > now]
            key = None if keys is None else keys[number]
            for n in range(n_requests + len(advances)):
                reached_world: World | None = None
                code: int | None = None
                if on_step is not None:  # every move builds its Result for on_step
                    move = requests[n] if n < n_requests else advances[n - n_requests]
                    result = system.apply(world, move)
                    reached_world, bad = result.world, bool(result.violations)
                elif n < n_requests:
                    move = requests[n]
                    i = targets[n]
                    if i is None:  # a poll: the oldest item the deliver rule accepts (as _poll)
                        reached_world, bad = world, leased > 0
                        for k, cell in enumerate(cells):
                            delivered = cell[6][n]
                            if delivered is None:
                                delivered = cell_move(cell, n)
                            if delivered is False:
                                continue
                            breaks, after = delivered
                            bad = breaks or leased - cell[3] + after[3] > 0
                            changed = cells.copy()
                            changed[k] = after
                            reached_world, code = None, code_of(changed)
                            break
                    else:  # the bulk of the moves: the item's memoised step, and the cell it reaches
                        cell = cells[i]
                        done = cell[6][n] or cell_move(cell, n)
                        breaks, after = done
                        if after is None:  # nothing changes
                            reached_world, bad = world, breaks or leased > 0
                        elif after is _ELSEWHERE:  # time moves on with the reply: the general path
                            reached_world, _, _, violations = system._request(world, move, n)
                            bad = bool(violations)
                        else:
                            bad = breaks or leased - cell[3] + after[3] > 0
                            changed = cells.copy()
                            changed[i] = after
                            code = code_of(changed)
                else:  # time passes: every item lapses at the instant (as _advance), and expired leases are forgotten
                    move = advances[n - n_requests]
                    at = cast(datetime, move.at)
                    bad = False
                    changed = []
                    for cell in cells:
                        lapsed = system._lapse(cell[0], at)
                        bad = bad or bool(lapsed[2])
                        know = cell[5]
                        if any(u is not None and u <= at for u in know[workers:]):
                            know = (*know[:workers], *[None if u is None or u <= at else u for u in know[workers:]])
                        changed.append(cell_of(lapsed[1].item, at, know))
                    bad = bad or any(cell[3] for cell in changed)
                    code = code_of(changed)
                transitions += 1
                if on_step is not None:
                    assert result is not None
                    on_step(level, key, move, result)
                if bad and stop_at_violation:
                    moves = (*_path(system, parent_of, move_of, number), move)
                    results = replay(system, moves)
                    found_ = Counterexample(moves, tuple(results), results[-1].violations)
                    return report(level + 1, found_)
                if not transitions % check_every and should_stop is not None:
                    why = should_stop()
                    if why is not None:
                        return report(reached, None, why)
                if reached_world is world:
                    continue
                if code is None:  # a world the general path built: its cells
                    assert reached_world is not None
                    changed = system._cells_of(reached_world)
                    code = code_of(changed)
                if code not in seen:
                    if max_states is not None and len(seen) >= max_states:
                        return report(reached, None, f"the budget of {max_states:,} states is spent")
                    seen.add(code)
                    if reached_world is None:  # built only for a new state, from its cells
                        reached_world = system._world_of(changed)
                    parent_of.append(number)
                    move_of.append(n)
                    child = len(parent_of) - 1
                    if keys is not None:
                        child_key = system.key(reached_world)
                        keys.append(child_key)
                        if parents is not None:
                            parents[child_key] = (key, move)
                    following.append((child, reached_world, (system._epoch, changed)))
        if progress is not None:
            progress(level + 1, len(seen), transitions)
        if not following:
            exhausted = True
            break
        reached = level + 1
        frontier = following
    return report(reached, None)


def _code_of_two(cells: Sequence[tuple[Any, ...]]) -> int:
    """:meth:`System._code` for two items, unrolled (the search's most common size, and its hottest call)."""
    a, b = cells
    first: int
    second: int
    if a[1]:
        if b[1]:
            first, second = min(zip(a[2], b[2], strict=True))
            return (first << 32 | second) << 3 | 2
        first, second = min(a[2]), b[2]
        return (first << 32 | second) << 3 | 1
    if b[1]:
        first, second = min(b[2]), a[2]
        return (first << 32 | second) << 3 | 1
    first, second = sorted((a[2], b[2]))
    return (first << 32 | second) << 3


_ELSEWHERE = ("elsewhere",)  # a cell's move whose reply moves time on (see System._cell_move)
_NUMBERS = (1 << 32) - 1  # the most distinct parts of keys (System._code packs their numbers in 32 bits)
_CHECK_EVERY = 2048  # transitions between two calls of should_stop
_MEMO_BOUND = 200_000  # results the memos may hold (or half the states) before the search drops them


def _path(system: System, parent_of: array[int], move_of: array[int], number: int) -> list[Move]:
    """The moves from the initial world to state ``number``, rebuilt from the move codes by replaying."""
    codes = []
    while number > 0:
        codes.append(move_of[number])
        number = parent_of[number]
    codes.reverse()
    world = system.initial()
    moves = []
    requests = system.requests
    for code in codes:
        if code < len(requests):
            move = requests[code]
        else:
            move = [Move(MoveKind.ADVANCE, at=t) for t in system.events(world) if t > world.now][code - len(requests)]
        moves.append(move)
        world = system.apply(world, move).world
    return moves


# --- the differential check ---------------------------------------------------------------------


Observation = tuple[int | None, tuple[tuple[Any, ...], ...]]
"""What a move shows: its HTTP status (None for time passing) and, per item it touched, the item's index,
the status, the ``error.type`` of a rejection (else None) and the item as the wire shows it."""


def observe(result: Result, policy: Policy = DEFAULT_POLICY, dialect: Dialect | None = None) -> Observation:
    """What ``result`` shows from the outside. A poll's refusals to deliver an item are left out (a poll
    answers the one item it delivers, or null); a lapse shows only the item it leaves (its outcome kind is the
    model's bookkeeping). Rule names are not compared: a variant may name its rules as it likes."""
    seen: list[tuple[Any, ...]] = []
    for record in result.steps:
        outcome = record.outcome
        command = record.command
        if isinstance(command, Deliver) and not isinstance(outcome, Accepted):
            continue
        wire = encode_work(outcome.item, QODER if dialect is None else dialect)
        if isinstance(command, Lapse):
            seen.append((record.item, None, None, wire))
            continue
        kind = (
            error_type(outcome.reason, policy, QODER if dialect is None else dialect)
            if isinstance(outcome, Rejected)
            else None
        )
        seen.append((record.item, outcome.status, kind, wire))
    return result.status, tuple(seen)


@attrs.frozen
class Difference:
    """The shortest move sequence on which a candidate lifecycle and the reference answer differently.

    ``moves`` lead there from the initial world (every move but the last answers alike); ``expected`` is
    what the reference shows for the last move and ``actual`` what the candidate shows; ``states`` the
    pairs of worlds explored.
    """

    moves: tuple[Move, ...]
    expected: Observation
    actual: Observation
    states: int

    def lines(self) -> list[str]:
        """The difference, as lines for a person."""
        out = [f"the candidate differs from the reference after {len(self.moves)} moves:"]
        out += [f"  {n}. {move}" for n, move in enumerate(self.moves, 1)]
        out.append(f"  reference: {_shown(self.expected)}")
        out.append(f"  candidate: {_shown(self.actual)}")
        return out


def _shown(observation: Observation) -> str:
    status, seen = observation
    parts = [] if status is None else [f"status {status}"]
    for index, item_status, kind, wire in seen:
        text = f"item {index + 1} {wire['state']}"
        if kind is not None:
            text += f" ({item_status} {kind})"
        stamps = {k: v for k, v in wire.items() if k.endswith("_at") and k != "created_at" and v is not None}
        parts.append(text + (f" {stamps}" if stamps else ""))
    return "; ".join(parts) or "nothing"


def differ(
    workers: int,
    items: int,
    depth: int,
    candidate: Lifecycle,
    reference: Lifecycle = LIFECYCLE,
    policy: Policy = DEFAULT_POLICY,
) -> Difference | None:
    """The shortest sequence of moves (at most ``depth``) after which ``candidate`` and ``reference`` answer
    differently, or None when they answer alike on every sequence up to ``depth``.

    Breadth first over pairs of worlds driven by the same moves: each request of the model, and time
    advancing to just before, at and just after the next instant either world cares about. After every move
    the two :func:`observe` values are compared: the status, each touched item's status and ``error.type``,
    and the item as the wire shows it (timestamps, state, metadata). Pairs are deduplicated by the two
    canonical keys under one common renaming of workers (never two separate ones, which could merge pairs
    that are not alike), and the difference between the two clocks. Arguments are checked as
    :func:`explore` checks them.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be an integer from 0 to {MAX_DEPTH}, got {depth!r}", param="depth")
    _check_size(workers, "workers")
    _check_size(items, "items")
    _check_rules(candidate, policy)
    if not isinstance(reference, Lifecycle):
        raise InvalidInput(f"reference must be a workstate.Lifecycle, got {reference!r}", param="reference")
    mine, spec = System(workers, items, candidate, policy), System(workers, items, reference, policy)
    renamings = range(len(mine._renamings))

    def key(a: World, b: World) -> tuple[Any, ...]:
        ours, theirs = mine.columns(a), spec.columns(b)
        best = min(tuple((x[r], y[r]) for x, y in zip(ours, theirs, strict=True)) for r in renamings)
        return (best, (b.now - a.now) // MICROSECOND)

    root = (mine.initial(), spec.initial())
    parents: dict[Any, tuple[Any, Move] | None] = {key(*root): None}
    frontier = [(key(*root), *root)]
    for _level in range(depth):
        following = []
        for at, a, b in frontier:
            latest = max(a.now, b.now)
            instants = sorted({t for t in (*mine.events(a), *spec.events(b)) if t > latest})
            for move in (*mine.requests, *(Move(MoveKind.ADVANCE, at=t) for t in instants)):
                ours, theirs = mine.apply(a, move), spec.apply(b, move)
                actual, expected = observe(ours, policy, reference.dialect), observe(theirs, policy, reference.dialect)
                if actual != expected:
                    moves = (*path_to(parents, at), move)
                    return Difference(moves, expected, actual, len(parents))
                child = key(ours.world, theirs.world)
                if child not in parents:
                    parents[child] = (at, move)
                    following.append((child, ours.world, theirs.world))
        if not following:
            break
        frontier = following
    return None


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
    now: datetime,
    method: str,
    target: str,
    worker: str | None,
    body: str | None,
    status: int,
    reply: Any,
    dialect: Dialect,
) -> str:
    headers = {dialect.auth_headers[0]: "Bearer t"}
    if worker is not None:
        headers[dialect.worker_header] = worker
    request = {"method": method, "target": target, "headers": headers, "body": body}
    return json.dumps(
        {"time": render_timestamp(now), "request": request, "response": {"status": status, "body": reply}}
    )


def trace_lines(system: System, moves: Sequence[Move]) -> list[str]:
    """The moves as a trace in the ``workstate check`` format (one JSON object per line).

    It opens with a GET of every item (so the trace knows every item from the start) and, when the
    last move is time passing, closes with a GET of every item at that instant. Error replies carry
    the request ids the reference server's default id source would give. The wire is the system's dialect's
    (``system.dialect``: paths, the worker header, the work object, stop's answer, the error envelope).
    """
    dialect = system.dialect
    params = params_of_reasons(dialect)
    world = system.initial()
    base = dialect.path(system.environment_id)

    def line(now: datetime, method: str, target: str, worker: str | None, body: str | None, *reply: Any) -> str:
        return _line(now, method, target, worker, body, reply[0], reply[1], dialect)

    lines = [
        line(world.now, "GET", f"{base}/{item.id}", None, None, 200, encode_work(item, dialect)) for item in world.items
    ]
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
            polled = encode_work(delivered[0], dialect) if delivered else None
            lines.append(line(now, "GET", f"{base}/poll", worker, None, 200, polled))
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
        status = outcome.status
        reply: Any = encode_work(outcome.item, dialect)
        if isinstance(command, Heartbeat) and isinstance(outcome, Replayed):  # heartbeat-stopped-reported
            reply = HeartbeatObject.reported(outcome.item, system.policy.default_ttl_seconds).to_json()
        elif isinstance(command, Heartbeat) and not isinstance(outcome, Rejected):
            reply = HeartbeatObject.of(outcome.item).to_json()
        elif (
            isinstance(command, Stop)
            and not isinstance(outcome, Rejected)
            and dialect.stop_answer is StopAnswer.NO_CONTENT
        ):
            status, reply = 204, None
        if isinstance(outcome, Rejected):
            errors += 1
            rule = outcome.rule
            reply = ErrorEnvelope(
                request_id=dialect.new_id("req", errors),  # what the server's default id source gives
                error_type=error_type(outcome.reason, system.policy, dialect),
                message=f"{outcome.reason.message} [{rule.section} {rule.name}]",
                param=params.get(outcome.reason),
                details=_details(outcome, system.policy, dialect),
            ).to_json(dialect)
        if isinstance(command, Ack) and not dialect.ack_checks_worker:
            worker = None  # the dialect's ack reads no worker header (Anthropic-Worker-ID is sent on poll only)
        lines.append(line(now, "POST", target, worker, body, status, reply))
        world = result.world
    if moves and moves[-1].kind is MoveKind.ADVANCE:
        lines += [
            line(world.now, "GET", f"{base}/{item.id}", None, None, 200, encode_work(item, dialect))
            for item in world.items
        ]
    return lines


def _details(outcome: Rejected, policy: Policy, dialect: Dialect) -> dict[str, Any] | None:
    """The ``details`` the reference server gives a failed heartbeat precondition in a dialect whose errors carry
    them (the item's lease as it stands), else None."""
    if outcome.reason is not Reason.PRECONDITION_FAILED or dialect.error_style is not ErrorStyle.DETAILS:
        return None
    item = outcome.item
    latest = item.latest_heartbeat_at
    return {
        "error_code": "heartbeat_precondition_failed",
        "error_visibility": "user_facing",
        "current_state": {
            "state": item.state.value,
            "last_heartbeat": None if latest is None else render_timestamp(latest),
            "lease_updated_at": render_timestamp(item.clock),
            "lease_extended": False,
            "ttl_seconds": policy.default_ttl_seconds if item.ttl_seconds is None else item.ttl_seconds,
        },
    }


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
    if found is None and report.incomplete is not None:
        yield (
            f"no counterexample up to depth {report.depth_reached}, level {report.depth_reached + 1} incomplete "
            f"({report.incomplete})"
        )
        return
    if found is None:
        yield f"no counterexample up to depth {report.depth}"
        return
    yield f"counterexample ({len(found.moves)} moves):"
    for n, move in enumerate(found.moves, 1):
        yield f"  {n}. {move}"
    for violation in found.violations:
        yield f"  broken: {violation}"
