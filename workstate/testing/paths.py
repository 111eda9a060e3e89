"""Shortest request sequences that reach every edge of the transition table.

An edge is one (state, trigger, rule) of :data:`workstate.rules.RULE_TABLE`: what one operation does in
one state under one outcome of its guards. :func:`shortest_paths` finds, for every edge, a shortest
sequence of core steps (from a fresh ``queued`` item) whose last step is decided by that rule in that
state. The sequences come from the same breadth-first exploration as ``workstate verify``
(:func:`workstate.tools.verify.explore`, two workers and one item), run under the policies that some rules
need (:data:`COVERAGE_POLICIES`), in each shipped dialect (:data:`COVERAGE_DIALECTS`: the peer's rules are
reached only in its lifecycle, ``LIFECYCLE.in_dialect(ANTHROPIC)``): a poll is the core's ``Deliver``, time
passing is a ``Lapse``. A path names the dialect it runs in.

Use them to drive a server or a worker through every rule by name::

    from workstate.testing.paths import shortest_paths

    for edge, path in shortest_paths().items():
        outcome = path.replay()
        assert outcome.rule.name == edge.rule

This module needs nothing beyond workstate itself (no hypothesis).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import attrs

from ..dialect import ANTHROPIC, QODER, Dialect
from ..errors import InvalidInput
from ..model import LIFECYCLE, Command, Lifecycle, Outcome, WorkItem
from ..policy import DEFAULT_POLICY, OnLeaseExpiry, Policy
from ..rules import RuleTable, State, Trigger
from ..tools.verify import MAX_DEPTH, Move, Result, System, explore, path_to, replay

__all__ = ["COVERAGE_DIALECTS", "COVERAGE_POLICIES", "Edge", "Path", "edges", "shortest_paths"]

COVERAGE_POLICIES: tuple[Policy, ...] = (
    DEFAULT_POLICY,
    Policy(ack_requires_delivery=True, on_lease_expiry=OnLeaseExpiry.STOP),
)
"""The spec's policy, then one under which the rules that need a policy choice are reached."""
COVERAGE_DIALECTS: tuple[Dialect, ...] = (QODER, ANTHROPIC)
"""The dialects searched, in order: a later one only adds the edges an earlier one never reaches."""


@attrs.frozen(order=True)
class Edge:
    """One (state, trigger, rule name) of a transition table."""

    state: State
    trigger: Trigger
    rule: str

    def __str__(self) -> str:
        return f"{self.rule}@{self.state}"


@attrs.frozen
class Path:
    """A shortest sequence of ``(now, command)`` steps from ``item`` whose last step takes ``edge``, in
    ``dialect`` (its lifecycle: ``lifecycle.in_dialect(dialect)``)."""

    edge: Edge
    policy: Policy
    item: WorkItem
    steps: tuple[tuple[datetime, Command], ...]
    dialect: Dialect = QODER

    def replay(self, lifecycle: Lifecycle = LIFECYCLE) -> Outcome:
        """Run the steps through ``lifecycle.in_dialect(self.dialect).step``; the outcome of the last one."""
        spoken = lifecycle.in_dialect(self.dialect)
        item = self.item
        outcome = None
        for now, command in self.steps:
            outcome = spoken.step(item, command, now, self.policy)
            item = outcome.item
        assert outcome is not None  # a path has at least one step
        return outcome

    def before_last(self, lifecycle: Lifecycle = LIFECYCLE) -> WorkItem:
        """The item as the last step meets it."""
        spoken = lifecycle.in_dialect(self.dialect)
        item = self.item
        for now, command in self.steps[:-1]:
            item = spoken.step(item, command, now, self.policy).item
        return item


def edges(table: RuleTable | None = None) -> frozenset[Edge]:
    """Every edge of ``table`` (the spec's table by default)."""
    table = LIFECYCLE.table if table is None else table
    return frozenset(
        Edge(state, trigger, rule.name) for (state, trigger), entry in table.items() for rule in entry.rules
    )


def shortest_paths(lifecycle: Lifecycle = LIFECYCLE, depth: int = 5) -> dict[Edge, Path]:
    """For every edge reachable within ``depth`` moves, a shortest path to it (sorted by edge).

    The policies of :data:`COVERAGE_POLICIES` are tried in order; a later one only adds the edges an
    earlier one did not reach, or reaches in fewer steps. Then the same in each later dialect of
    :data:`COVERAGE_DIALECTS`, which only adds the edges no earlier dialect reaches.

    ``lifecycle`` must be a :class:`~workstate.Lifecycle` and ``depth`` an integer from 0 to 1000 (the cap of
    :func:`workstate.tools.verify.explore`; not a bool); anything else raises
    :class:`~workstate.errors.InvalidInput` naming the argument.
    """
    if not isinstance(lifecycle, Lifecycle):
        raise InvalidInput(f"lifecycle must be a workstate.Lifecycle, got {lifecycle!r}", param="lifecycle")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be an integer from 0 to {MAX_DEPTH}, got {depth!r}", param="depth")
    if lifecycle is LIFECYCLE and depth == 5:
        return dict(_default_paths())
    return _search(lifecycle, depth)


@functools.cache
def _default_paths() -> tuple[tuple[Edge, Path], ...]:
    return tuple(_search(LIFECYCLE, 5).items())


def _search(lifecycle: Lifecycle, depth: int) -> dict[Edge, Path]:
    best: dict[Edge, Path] = {}
    for dialect in COVERAGE_DIALECTS:
        found = _search_in(lifecycle.in_dialect(dialect), depth, dialect)
        best.update({edge: path for edge, path in found.items() if edge not in best})
    return dict(sorted(best.items()))


def _search_in(lifecycle: Lifecycle, depth: int, dialect: Dialect) -> dict[Edge, Path]:
    best: dict[Edge, Path] = {}
    policies = COVERAGE_POLICIES if dialect == QODER else (dialect.policy, *COVERAGE_POLICIES)
    for policy in policies:
        system = System(2, 1, lifecycle, policy)
        parents: dict[Any, tuple[Any, Move] | None] = {}
        first: dict[Edge, tuple[Any, Move, int]] = {}

        def seen(_level: int, key: Any, move: Move, result: Result, first: dict[Edge, Any] = first) -> None:
            for index, record in enumerate(result.steps):
                edge = Edge(record.state, record.command.trigger, record.outcome.rule.name)
                if edge not in first:
                    first[edge] = (key, move, index)

        explore(2, 1, depth, lifecycle, policy, on_step=seen, stop_at_violation=False, parents=parents)
        for edge, (key, move, index) in first.items():
            moves = [*path_to(parents, key), move]
            results = replay(system, moves)
            steps = [(r.now, r.command) for result in results[:-1] for r in result.steps]
            last = results[-1].steps[: index + 1]
            steps += [(r.now, r.command) for r in last]
            path = Path(edge, policy, system.initial().items[0], tuple(steps), dialect)
            if edge not in best or len(path.steps) < len(best[edge].steps):
                best[edge] = path
    return dict(sorted(best.items()))
