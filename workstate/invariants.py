"""The invariants of api.md §7 (each stated, with where it is checked, in docs/invariants.md), as pure checks.

They are stated here from the spec, independently of the rules that are supposed to keep them,
so that the simulator, the model checker and test suites can each hold a system (the core, the
reference server, or a server under test) to them. Every check returns a list of
:class:`Violation` values (empty when the invariant holds); none raises for a violation.

==  ======================================================================================
1   ``stopped`` is absorbing: no request moves an item out of it or changes its timestamps.
2   Timestamps agree with state.
3   ``created_at <= acknowledged_at <= started_at <= latest_heartbeat_at`` where set, and
    ``stopped_at`` is the latest of all.
4   Ack replays by the bound (or an unnamed) worker change nothing.
5   Rejected requests change nothing.
6   No work is lost: every created item can always be found, in exactly one state.
7   Lease exclusivity among workers that follow the conditional-heartbeat protocol.
8   Liveness under a policy with timeouts: every live item that is not queued has a deadline.
9   Stats agree with list: ``depth + pending`` = the number of queued items.
==  ======================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from ._time import render_timestamp
from .model import WorkItem, next_deadline
from .policy import OnStartTimeout, Policy
from .rules import State

__all__ = [
    "HAS",
    "HAS_NOT",
    "INVARIANTS",
    "TIMESTAMPS",
    "Violation",
    "change_problems",
    "item_problems",
    "lease_problems",
    "liveness_problems",
    "rejection_problems",
    "replay_problems",
    "stats_problems",
    "timeline_problems",
]

INVARIANTS = {
    1: "stopped is absorbing",
    2: "timestamps agree with state",
    3: "timestamps are ordered",
    4: "ack replays change nothing",
    5: "rejected requests change nothing",
    6: "no work is lost",
    7: "lease exclusivity",
    8: "liveness",
    9: "stats agree with list",
}

# The item's timestamps, in the order invariants.md #3 reads them.
TIMESTAMPS = ("created_at", "acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at")

# Invariant 2, from the spec's words: what each state has, and has not.
HAS = {
    State.QUEUED: (),
    State.STARTING: ("acknowledged_at",),
    State.ACTIVE: ("started_at", "latest_heartbeat_at"),
    State.STOPPING: ("stop_requested_at",),
    State.STOPPED: ("stopped_at",),
}
HAS_NOT = {
    State.QUEUED: ("acknowledged_at", "started_at", "latest_heartbeat_at", "stopped_at"),
    State.STARTING: ("started_at",),
    State.ACTIVE: (),
    State.STOPPING: ("stopped_at",),
    State.STOPPED: (),
}


@attrs.frozen
class Violation:
    """One broken invariant: its number in api.md §7, the item (if one), and what was seen."""

    invariant: int
    work_id: str | None
    message: str

    @property
    def name(self) -> str:
        return INVARIANTS[self.invariant]

    def __str__(self) -> str:
        where = f" ({self.work_id})" if self.work_id else ""
        return f"invariant {self.invariant}, {self.name}{where}: {self.message} [invariants.md #{self.invariant}]"


def timeline_problems(item: WorkItem) -> list[Violation]:
    """Invariants 2 and 3 for one item."""
    found = [Violation(2, item.id, f"{item.state} lacks {n}") for n in HAS[item.state] if getattr(item, n) is None]
    found += [
        Violation(2, item.id, f"{item.state} has {n}") for n in HAS_NOT[item.state] if getattr(item, n) is not None
    ]
    chain = [getattr(item, n) for n in TIMESTAMPS[:4] if getattr(item, n) is not None]
    if chain != sorted(chain):
        found.append(Violation(3, item.id, "created_at <= acknowledged_at <= started_at <= latest_heartbeat_at"))
    stamps = [getattr(item, n) for n in TIMESTAMPS if getattr(item, n) is not None]
    if item.stopped_at is not None and max(stamps) != item.stopped_at:
        found.append(Violation(3, item.id, "stopped_at is not the latest timestamp"))
    return found


def change_problems(old: WorkItem | None, new: WorkItem | None) -> list[Violation]:
    """Invariants 1 and 6 across one step: a stopped item stays stopped with the same timestamps; an item that
    existed still exists."""
    if old is None:
        return []
    if new is None:
        return [Violation(6, old.id, f"the item ({old.state}) can no longer be found")]
    if old.state is not State.STOPPED:
        return []
    if new.state is not State.STOPPED:
        return [Violation(1, old.id, f"stopped -> {new.state}")]
    changed = [n for n in TIMESTAMPS if getattr(old, n) != getattr(new, n)]
    return [Violation(1, old.id, f"a stopped item's {', '.join(changed)} changed")] if changed else []


def _same(before: WorkItem, after: WorkItem) -> list[str]:
    return [f.name for f in attrs.fields(WorkItem) if getattr(before, f.name) != getattr(after, f.name)]


def rejection_problems(before: WorkItem, after: WorkItem) -> list[Violation]:
    """Invariant 5: ``after`` (the item once a request was rejected) is ``before`` (the item as it stood at that
    instant, after any lapse that was due)."""
    changed = _same(before, after)
    return [Violation(5, before.id, f"a rejected request changed {', '.join(changed)}")] if changed else []


def replay_problems(before: WorkItem, after: WorkItem) -> list[Violation]:
    """Invariant 4: an ack replay left the item as it was."""
    changed = _same(before, after)
    return [Violation(4, before.id, f"an ack replay changed {', '.join(changed)}")] if changed else []


def lease_problems(holders: Iterable[tuple[str, str, datetime]], now: datetime) -> list[Violation]:
    """Invariant 7: ``holders`` are ``(worker_id, work_id, lease_deadline)`` as each protocol-following worker
    believes them; at ``now``, no two workers may hold an unexpired lease on one item."""
    by_item: dict[str, set[str]] = {}
    for worker, work, until in holders:
        if until > now:
            by_item.setdefault(work, set()).add(worker)
    return [
        Violation(7, work, f"workers {', '.join(sorted(workers))} each hold an unexpired lease")
        for work, workers in sorted(by_item.items())
        if len(workers) > 1
    ]


def liveness_problems(item: WorkItem, policy: Policy, now: datetime | None = None) -> list[Violation]:
    """Invariant 8: with no further requests, a live item reaches ``queued`` or ``stopped``: it has a next
    deadline, and (given ``now``) that deadline has not passed while the item is still waiting on it. Under
    ``KEEP_STARTING``, an item that never heartbeated may wait (in ``starting``, or in ``stopping`` for its
    confirmation) -- the policy's own choice."""
    if item.state is State.QUEUED or item.state is State.STOPPED:
        return []
    deadline = next_deadline(item, policy)
    if deadline is None:
        waits = policy.on_start_timeout is OnStartTimeout.KEEP_STARTING and item.latest_heartbeat_at is None
        if waits and item.state in (State.STARTING, State.STOPPING):
            return []
        return [Violation(8, item.id, f"a {item.state} item has no deadline: it can stay {item.state} forever")]
    if now is not None and deadline <= now:
        return [Violation(8, item.id, f"its deadline {render_timestamp(deadline)} passed and it is still {item.state}")]
    return []


def stats_problems(environment_id: str, depth: int, pending: int, queued: int) -> list[Violation]:
    """Invariant 9: ``depth + pending`` (stats) equals the number of queued items (list)."""
    if depth + pending == queued:
        return []
    return [Violation(9, None, f"{environment_id}: depth {depth} + pending {pending} != {queued} queued items")]


def item_problems(old: WorkItem | None, new: WorkItem, policy: Policy) -> list[Violation]:
    """Invariants 1, 2, 3 and 8 for an item after a step (``old`` is the item before it, if it existed)."""
    return change_problems(old, new) + timeline_problems(new) + liveness_problems(new, policy)
