"""The Work item lifecycle, declared once.

Every rule of api.md §4.1 to §4.5 and §5, in every dialect, is one line of :data:`DECLARATION`, and
that table is loaded into a ``transitions`` :class:`~transitions.Machine`
(``auto_transitions=False``). Read it like h11's ``_state.py``: for a trigger fired
in a source state, the first line whose guards hold decides. A guard written
``!name`` must not hold. ``dest`` ``"="`` stays in the source state (a change that
is accepted); ``None`` changes nothing (a replay or a rejection). Where dialects differ, a guard
of the dialect decides (``checks_worker``, ``stopped_heartbeat_reports``, …: constant for one
:class:`~workstate.Dialect`), so both dialects are this one table.

Nothing else in workstate states a rule: :func:`compile_rules` turns the Machine
into an immutable lookup table (one :class:`Rule` per combination of guard
outcomes), and the step function, the diagrams, the tables and the path generator
all read that table. ``tests/test_rules.py`` proves, exhaustively, that the table
and the Machine agree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from transitions import Machine, Transition

__all__ = [
    "DECLARATION",
    "RULE_TABLE",
    "Entry",
    "Guard",
    "Kind",
    "Line",
    "Reason",
    "Rule",
    "RuleTable",
    "State",
    "Trigger",
    "build_machine",
    "compile_rules",
    "structure_problems",
]


class State(enum.StrEnum):
    """The five states of a work item (api.md §3)."""

    QUEUED = "queued"
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Trigger(enum.StrEnum):
    """What can happen to one item: the API's operations, plus the passing of a deadline."""

    DELIVER = "deliver"  # a poll hands the item to a worker (4.1)
    ACK = "ack"  # 4.2
    HEARTBEAT = "heartbeat"  # 4.3
    STOP = "stop"  # graceful stop, `{"force": false}` (4.4)
    FORCE_STOP = "force_stop"  # `{"force": true}` (4.4)
    UPDATE_METADATA = "update_metadata"  # 4.5
    LAPSE = "lapse"  # a start timeout or a lease deadline passes (5)


class Guard(enum.StrEnum):
    """The conditions that split a trigger's outcomes. Their meaning is in ``workstate.model``."""

    DELIVERABLE = "deliverable"  # never delivered, or last delivered at least the reclaim window ago
    WORKER_CONFLICT = "worker_conflict"  # a Worker-ID was sent and differs from the item's claimant
    DELIVERY_REQUIRED = "delivery_required"  # Policy.ack_requires_delivery
    DELIVERED = "delivered"  # some poll delivered the item
    PRECONDITION_HOLDS = "precondition_holds"  # expected_last_heartbeat matches (or is absent)
    LAPSE_DUE = "lapse_due"  # the item's deadline is at or before now
    EXPIRY_STOPS = "expiry_stops"  # Policy.on_lease_expiry is STOP
    METADATA_FITS = "metadata_fits"  # the merged metadata is within the policy's limits
    # The dialect's guards (workstate.dialect): constant for a dialect, so a lifecycle folds them away.
    CHECKS_WORKER = "checks_worker"  # Dialect.ack_checks_worker
    STOPPED_HEARTBEAT_REPORTS = "stopped_heartbeat_reports"  # Dialect.heartbeat_on_stopped is REPORT
    QUEUED_HEARTBEAT_FAILS_PRECONDITION = "queued_heartbeat_fails_precondition"  # Dialect.heartbeat_on_queued
    STOP_OF_STOPPED_REFUSED = "stop_of_stopped_refused"  # Dialect.stop_on_stopped is CONFLICT


class Kind(enum.Enum):
    """The three kinds of outcome."""

    ACCEPT = "accept"  # 200; the item changes
    REPLAY = "replay"  # 200; the very same item (idempotent)
    REJECT = "reject"  # 4xx; nothing changes


class Reason(enum.Enum):
    """Why a command was rejected, with the HTTP status it answers."""

    status: int
    message: str

    def __new__(cls, value: str, status: int, message: str) -> Reason:
        member = object.__new__(cls)
        member._value_ = value
        member.status = status
        member.message = message
        return member

    NOT_DELIVERABLE = ("not_deliverable", 409, "the work item is not deliverable now")
    WORKER_CONFLICT = ("worker_conflict", 409, "the work item was claimed by another worker")
    NOT_DELIVERED = ("not_delivered", 409, "the work item was not delivered by a poll")
    STOPPING_OR_STOPPED = ("stopping_or_stopped", 409, "the work item is stopping or stopped")
    NOT_ACKED = ("not_acked", 409, "the work item is queued: ack it before heartbeating")
    STOPPED = ("stopped", 409, "the work item is stopped")
    PRECONDITION_FAILED = (
        "precondition_failed",
        412,
        "expected_last_heartbeat does not match: the lease is held by someone else or the item was re-queued",
    )
    METADATA_LIMITS = ("metadata_limits", 400, "metadata exceeds the limits")


S, T = State, Trigger
QUEUED, STARTING, ACTIVE, STOPPING, STOPPED = S.QUEUED, S.STARTING, S.ACTIVE, S.STOPPING, S.STOPPED
LIVE = [QUEUED, STARTING, ACTIVE, STOPPING]
ANY = "*"
ACCEPT, REPLAY = Kind.ACCEPT, Kind.REPLAY
R = Reason

Line = tuple[str, str, Trigger, "State | list[State] | str", "State | str | None", str, "Kind | Reason", str]

# The lifecycle. One line per rule; the first line that matches decides.
# fmt: off
DECLARATION: tuple[Line, ...] = (
    # name                          spec   trigger           source               dest      guards                           outcome                 actions
    ("deliver",                     "4.1", T.DELIVER,         QUEUED,              "=",      "deliverable",                   ACCEPT,                 "record_delivery"),
    ("deliver-not-reclaimable",     "4.1", T.DELIVER,         QUEUED,              None,     "",                              R.NOT_DELIVERABLE,      ""),
    ("deliver-not-queued",          "4.1", T.DELIVER,         [STARTING, ACTIVE, STOPPING, STOPPED], None, "",              R.NOT_DELIVERABLE,      ""),

    ("ack-claimed-by-another",      "4.2", T.ACK,             QUEUED,              None,     "checks_worker worker_conflict", R.WORKER_CONFLICT,      ""),
    ("ack-not-delivered",           "4.2", T.ACK,             QUEUED,              None,     "delivery_required !delivered",  R.NOT_DELIVERED,        ""),
    ("ack",                         "4.2", T.ACK,             QUEUED,              STARTING, "",                              ACCEPT,                 "bind_worker stamp_acknowledged request_dispatch"),
    ("ack-bound-to-another",        "4.2", T.ACK,             [STARTING, ACTIVE],  None,     "checks_worker worker_conflict", R.WORKER_CONFLICT,      ""),
    ("ack-replay",                  "4.2", T.ACK,             [STARTING, ACTIVE],  None,     "",                              REPLAY,                 ""),
    ("ack-after-stop",              "4.2", T.ACK,             [STOPPING, STOPPED], None,     "",                              R.STOPPING_OR_STOPPED,  ""),

    ("heartbeat-queued-not-the-lease", "4.3", T.HEARTBEAT,    QUEUED,              None,     "queued_heartbeat_fails_precondition", R.PRECONDITION_FAILED, ""),
    ("heartbeat-queued",            "4.3", T.HEARTBEAT,       QUEUED,              None,     "",                              R.NOT_ACKED,            ""),
    ("heartbeat-stopped-reported",  "4.3", T.HEARTBEAT,       STOPPED,             None,     "stopped_heartbeat_reports",     REPLAY,                 ""),
    ("heartbeat-stopped",           "4.3", T.HEARTBEAT,       STOPPED,             None,     "",                              R.STOPPED,              ""),
    ("heartbeat-precondition-failed", "4.3", T.HEARTBEAT,     [STARTING, ACTIVE, STOPPING], None, "!precondition_holds",    R.PRECONDITION_FAILED,  ""),
    ("heartbeat-first",             "4.3", T.HEARTBEAT,       STARTING,            ACTIVE,   "",                              ACCEPT,                 "stamp_started grant_lease"),
    ("heartbeat",                   "4.3", T.HEARTBEAT,       ACTIVE,              "=",      "",                              ACCEPT,                 "grant_lease"),
    ("heartbeat-while-stopping",    "4.3", T.HEARTBEAT,       STOPPING,            "=",      "",                              ACCEPT,                 "grant_lease"),

    ("stop-queued",                 "4.4", T.STOP,            QUEUED,              STOPPED,  "",                              ACCEPT,                 "request_stop stamp_stopped"),
    ("stop-requests-drain",         "4.4", T.STOP,            [STARTING, ACTIVE],  STOPPING, "",                              ACCEPT,                 "request_stop"),
    ("stop-confirms",               "4.4", T.STOP,            STOPPING,            STOPPED,  "",                              ACCEPT,                 "stamp_stopped"),
    ("stop-stopped-refused",        "4.4", T.STOP,            STOPPED,             None,     "stop_of_stopped_refused",       R.STOPPED,              ""),
    ("stop-stopped",                "4.4", T.STOP,            STOPPED,             None,     "",                              REPLAY,                 ""),
    ("force-stop",                  "4.4", T.FORCE_STOP,      LIVE,                STOPPED,  "",                              ACCEPT,                 "stamp_stopped"),
    ("force-stop-stopped-refused",  "4.4", T.FORCE_STOP,      STOPPED,             None,     "stop_of_stopped_refused",       R.STOPPED,              ""),
    ("force-stop-stopped",          "4.4", T.FORCE_STOP,      STOPPED,             None,     "",                              REPLAY,                 ""),

    ("metadata-over-limits",        "4.5", T.UPDATE_METADATA, ANY,                 None,     "!metadata_fits",                R.METADATA_LIMITS,      ""),
    ("metadata",                    "4.5", T.UPDATE_METADATA, ANY,                 "=",      "",                              ACCEPT,                 "merge_metadata"),

    ("lapse-nothing-to-lapse",      "5",   T.LAPSE,           [QUEUED, STOPPED],   None,     "",                              REPLAY,                 ""),
    ("lapse-not-due",               "5",   T.LAPSE,           [STARTING, ACTIVE, STOPPING], None, "!lapse_due",             REPLAY,                 ""),
    ("start-timeout",               "5",   T.LAPSE,           STARTING,            QUEUED,   "",                              ACCEPT,                 "requeue"),
    ("lease-expired-stop",          "5",   T.LAPSE,           ACTIVE,              STOPPED,  "expiry_stops",                  ACCEPT,                 "stamp_stopped"),
    ("lease-expired",               "5",   T.LAPSE,           ACTIVE,              QUEUED,   "",                              ACCEPT,                 "requeue"),
    ("drain-expired",               "5",   T.LAPSE,           STOPPING,            STOPPED,  "",                              ACCEPT,                 "stamp_stopped"),
)
# fmt: on


# --- everything below derives from DECLARATION -------------------------------------------------


@attrs.frozen
class Rule:
    """One line of the declaration, as data."""

    name: str
    section: str
    order: int  # position in the declaration
    trigger: Trigger
    sources: tuple[State, ...]
    dest: State | None  # None: stays in its source state
    guards: tuple[tuple[Guard, bool], ...]  # (guard, required value), in declaration order
    kind: Kind
    reason: Reason | None
    actions: tuple[str, ...]

    def target(self, source: State) -> State:
        """The state an item in ``source`` is in after this rule."""
        return source if self.dest is None else self.dest

    @property
    def status(self) -> int:
        return 200 if self.reason is None else self.reason.status

    @property
    def text(self) -> str:
        """A one-line, human reading of the rule."""
        when = " and ".join(g if v else f"not {g}" for g, v in self.guards)
        what = self.reason.message if self.reason else ("replay, item unchanged" if self.kind is REPLAY else "")
        moves = ", ".join(self.actions)
        parts = [f"{self.trigger} in {'/'.join(self.sources)}"]
        if when:
            parts.append(f"when {when}")
        if self.kind is ACCEPT:
            parts.append(f"-> {self.dest or 'same state'} ({moves})")
        else:
            parts.append(f"-> {self.status}: {what}")
        return f"[{self.section} {self.name}] " + " ".join(parts)


class _LineTransition(Transition):
    """A ``transitions`` Transition that carries the identity of its declaration line."""

    def __init__(self, *args: Any, rule: Rule, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rule = rule


class _LifecycleMachine(Machine):
    transition_cls = _LineTransition


def _rule_of(transition: Transition) -> Rule:
    rule: Rule = getattr(transition, "rule")  # noqa: B009 - set by _LineTransition
    return rule


def _parse_guards(text: str) -> tuple[tuple[Guard, bool], ...]:
    return tuple((Guard(word.lstrip("!")), not word.startswith("!")) for word in text.split())


def _as_rule(order: int, line: Line) -> Rule:
    name, section, trigger, source, dest, guards, outcome, actions = line
    sources = list(State) if source == ANY else source if isinstance(source, list) else [source]
    return Rule(
        name=name,
        section=section,
        order=order,
        trigger=Trigger(trigger),
        sources=tuple(State(s) for s in sources),
        dest=None if dest in (None, "=") else State(dest),
        guards=_parse_guards(guards),
        kind=outcome if isinstance(outcome, Kind) else Kind.REJECT,
        reason=outcome if isinstance(outcome, Reason) else None,
        actions=tuple(actions.split()),
    )


def build_machine(declaration: Iterable[Line] = DECLARATION, model: Any = None) -> Machine:
    """Load a declaration into a ``transitions`` Machine (one per use; never one per item)."""
    transitions = []
    for order, line in enumerate(declaration):
        rule = _as_rule(order, line)
        transitions.append(
            {
                "trigger": str(rule.trigger),
                "source": [str(s) for s in rule.sources],
                "dest": line[4] if line[4] in (None, "=") else str(State(line[4])),
                "conditions": [str(g) for g, v in rule.guards if v],
                "unless": [str(g) for g, v in rule.guards if not v],
                "after": list(rule.actions),
                "rule": rule,
            }
        )
    return _LifecycleMachine(
        model=model,
        states=[str(s) for s in State],
        initial=str(QUEUED),
        transitions=transitions,
        auto_transitions=False,
        send_event=True,
    )


@attrs.frozen
class Entry:
    """What one trigger does in one state: the guards it reads, and the rule for each outcome of them.

    ``rules[i]`` decides when guard ``guards[k]`` holds exactly for the bits ``k`` set in ``i``.
    """

    guards: tuple[Guard, ...]
    rules: tuple[Rule, ...]

    def decide(self, values: Mapping[Guard, bool]) -> Rule:
        return self.rules[sum(1 << k for k, g in enumerate(self.guards) if values[g])]


RuleTable = Mapping[tuple[State, Trigger], Entry]


def compile_rules(machine: Machine) -> RuleTable:
    """Read the Machine's transitions into the lookup table that the step function uses.

    For every (state, trigger) the guards named there are enumerated, and each combination of
    their outcomes is resolved by the Machine's own rule: the first transition whose
    conditions all hold. A declaration that leaves a combination undecided, or that has a line
    no combination reaches, is refused.
    """
    table: dict[tuple[State, Trigger], Entry] = {}
    used: set[str] = set()
    for trigger_name, event in machine.events.items():
        for state_name, lines in event.transitions.items():
            guards: list[Guard] = []
            for line in lines:
                for cond in line.conditions:
                    if Guard(str(cond.func)) not in guards:
                        guards.append(Guard(str(cond.func)))
            decided = []
            for bits in range(1 << len(guards)):
                value = {g: bool(bits >> k & 1) for k, g in enumerate(guards)}
                for line in lines:
                    if all(value[Guard(str(c.func))] == c.target for c in line.conditions):
                        decided.append(_rule_of(line))
                        used.add(_rule_of(line).name)
                        break
                else:
                    raise ValueError(f"{trigger_name} in {state_name}: no rule decides guards {value}")
            table[State(state_name), Trigger(trigger_name)] = Entry(tuple(guards), tuple(decided))
    for trigger in Trigger:
        for state in State:
            if (state, trigger) not in table:
                raise ValueError(f"{trigger} in {state}: no rule at all")
    dead = [_rule_of(t).name for e in machine.events.values() for ts in e.transitions.values() for t in ts]
    unused = sorted(set(dead) - used)
    if unused:
        raise ValueError(f"rules no combination of guards reaches: {unused}")
    return table


def rules_of(table: RuleTable) -> tuple[Rule, ...]:
    """Every rule of a table, once each, in declaration order."""
    return tuple(sorted({rule for entry in table.values() for rule in entry.rules}, key=lambda rule: rule.order))


def edges(table: RuleTable) -> Sequence[tuple[State, State, Rule]]:
    """Every (source, target, rule) of an accepted change: the edges of the state diagram."""
    found = {}
    for (state, _trigger), entry in table.items():
        for rule in entry.rules:
            if rule.kind is ACCEPT:
                found[state, rule.target(state), rule.name] = rule
    return [(s, t, r) for (s, t, _), r in found.items()]


def structure_problems(table: RuleTable, initial: State = QUEUED) -> list[str]:
    """Check the shape of a lifecycle: reachability, an absorbing ``stopped``, a way out of every live state."""
    problems = []
    graph: dict[State, set[State]] = {s: set() for s in State}
    for source, target, _ in edges(table):
        graph[source].add(target)

    def reach(start: State) -> set[State]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    unreachable = set(State) - reach(initial)
    if unreachable:
        problems.append(f"states not reachable from {initial}: {sorted(unreachable)}")
    if graph[STOPPED] - {STOPPED}:
        problems.append(f"stopped has exits to {sorted(graph[STOPPED] - {STOPPED})}")
    for state in State:
        if STOPPED not in reach(state):
            problems.append(f"{state} cannot reach stopped")
    for rule in rules_of(table):
        if rule.kind is not ACCEPT and (rule.dest is not None or rule.actions):
            problems.append(f"{rule.name}: a {rule.kind.value} must change nothing")
    return problems


MACHINE = build_machine()
RULE_TABLE: RuleTable = compile_rules(MACHINE)
