"""The declaration, the compiled table and the Machine: they agree, and every rule is exercised by name."""

from collections.abc import Callable
from typing import Any

import pytest
from helpers import T0, declaration, fresh, item_in, line, sec

from workstate import (
    ANTHROPIC,
    NO_HEARTBEAT,
    QODER,
    Accepted,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    Lapse,
    OnLeaseExpiry,
    Policy,
    Rejected,
    Replayed,
    State,
    Stop,
    Trigger,
    UpdateMetadata,
    WorkItem,
    step,
)
from workstate.rules import (
    DECLARATION,
    MACHINE,
    RULE_TABLE,
    Guard,
    Kind,
    build_machine,
    compile_rules,
    edges,
    rules_of,
    structure_problems,
)

# --- the table is the Machine ---------------------------------------------------------------------


ACTION_NAMES = {action for line in DECLARATION for action in line[7].split()}


class Probe:
    """A model for the Machine whose guards are plain attributes and whose actions do nothing."""

    def __getattr__(self, name: str) -> Any:
        if name in ACTION_NAMES:
            return lambda event: None
        raise AttributeError(name)


def fire(state: State, trigger: Trigger, values: dict[Guard, bool]) -> tuple[str, str]:
    """Fire ``trigger`` the usual transitions way and report (rule fired, state reached)."""
    probe = Probe()
    machine = build_machine(model=probe)
    fired: list[Any] = []
    machine.finalize_event = [lambda event: fired.append(event.transition if event.result else None)]
    machine.set_state(str(state), model=probe)
    for guard, value in values.items():
        setattr(probe, str(guard), value)
    probe.trigger(str(trigger))
    assert len(fired) == 1 and fired[0] is not None, f"{trigger} in {state} with {values}: no transition fired"
    return fired[0].rule.name, probe.state


def combinations() -> list[tuple[State, Trigger, int]]:
    return [(s, t, i) for (s, t), entry in RULE_TABLE.items() for i in range(1 << len(entry.guards))]


def test_table_covers_every_state_and_trigger() -> None:
    assert set(RULE_TABLE) == {(s, t) for s in State for t in Trigger}


@pytest.mark.parametrize(("state", "trigger", "index"), combinations())
def test_table_agrees_with_machine(state: State, trigger: Trigger, index: int) -> None:
    entry = RULE_TABLE[state, trigger]
    values = {g: bool(index >> k & 1) for k, g in enumerate(entry.guards)}
    rule = entry.decide(values)
    fired_rule, reached = fire(state, trigger, values)
    assert fired_rule == rule.name
    assert reached == rule.target(state)


def test_exhaustive_space_is_what_we_think() -> None:
    # 5 states x 7 triggers, with guards: the finite space the test above walks entirely.
    assert len(combinations()) == sum(1 << len(e.guards) for e in RULE_TABLE.values())
    assert len(combinations()) > len(State) * len(Trigger)


def test_every_declaration_line_is_one_rule() -> None:
    names = [line[0] for line in DECLARATION]
    assert len(names) == len(set(names))
    assert [r.name for r in rules_of(RULE_TABLE)] == names


# --- structure ------------------------------------------------------------------------------------


def test_structure_of_the_lifecycle() -> None:
    assert MACHINE.initial == "queued"
    assert list(MACHINE.states) == [s.value for s in State]
    assert structure_problems(RULE_TABLE) == []
    assert not [(s, t) for s, t, _ in edges(RULE_TABLE) if s is State.STOPPED and t is not State.STOPPED]


def test_structure_check_catches_an_exit_from_stopped() -> None:
    table = compile_rules(
        build_machine(declaration({"stop-stopped": line("stop-stopped", dest=State.QUEUED, outcome=Kind.ACCEPT)}))
    )
    assert any("stopped has exits" in p for p in structure_problems(table))


def test_structure_check_catches_a_live_state_with_no_way_out() -> None:
    stuck = [State.STOPPING, State.STOPPED]
    table = compile_rules(
        build_machine(
            declaration(
                {
                    "force-stop": line("force-stop", source=[State.QUEUED, State.STARTING, State.ACTIVE]),
                    "force-stop-stopped": line("force-stop-stopped", source=stuck),
                    "stop-confirms": None,
                    "stop-stopped": line("stop-stopped", source=stuck),
                    "drain-expired": line("drain-expired", dest=None, outcome=Kind.REPLAY, actions=""),
                }
            )
        )
    )
    assert "stopping cannot reach stopped" in structure_problems(table)


def test_structure_check_catches_an_unreachable_state() -> None:
    no_heartbeat = line("heartbeat-first", dest=None, outcome=Kind.REPLAY, actions="")
    table = compile_rules(build_machine(declaration({"heartbeat-first": no_heartbeat})))
    assert any("not reachable" in p and "active" in p for p in structure_problems(table))


def test_structure_check_catches_a_rejection_that_changes_something() -> None:
    bad = line("ack-after-stop", actions="stamp_acknowledged")
    assert any(
        "must change nothing" in p
        for p in structure_problems(compile_rules(build_machine(declaration({"ack-after-stop": bad}))))
    )


def test_compile_refuses_an_undecided_combination() -> None:
    with pytest.raises(ValueError, match="no rule decides"):
        compile_rules(build_machine(declaration({"ack": None})))


def test_compile_refuses_a_missing_trigger() -> None:
    with pytest.raises(ValueError, match="no rule at all"):
        compile_rules(build_machine(declaration({"heartbeat-stopped": None, "heartbeat-stopped-reported": None})))


def test_compile_refuses_a_dead_line() -> None:
    # After the unconditional "deliver-not-reclaimable", nothing can reach this line.
    shadowed = (
        *DECLARATION,
        ("deliver-shadowed", "4.1", Trigger.DELIVER, State.QUEUED, None, "deliverable", Kind.REPLAY, ""),
    )
    with pytest.raises(ValueError, match="deliver-shadowed"):
        compile_rules(build_machine(shadowed))


# --- every rule, by name --------------------------------------------------------------------------

Case = Callable[[], tuple[WorkItem, Command, Any, Policy]]
STOP_AT_EXPIRY = Policy(on_lease_expiry=OnLeaseExpiry.STOP)
NEEDS_DELIVERY = Policy(ack_requires_delivery=True)
DEFAULT = Policy()

# rule name -> (how to get there, expected outcome type, expected state after)
EXAMPLES: dict[str, tuple[Case, type, State]] = {
    "deliver": (lambda: (fresh(), Deliver("w1"), sec(1), DEFAULT), Accepted, State.QUEUED),
    "deliver-not-reclaimable": (
        lambda: (item_in(State.QUEUED), Deliver("w2"), sec(2), DEFAULT),
        Rejected,
        State.QUEUED,
    ),
    "deliver-not-queued": (lambda: (item_in(State.ACTIVE), Deliver("w2"), sec(10), DEFAULT), Rejected, State.ACTIVE),
    "ack-claimed-by-another": (lambda: (item_in(State.QUEUED), Ack("w2"), sec(2), DEFAULT), Rejected, State.QUEUED),
    "ack-not-delivered": (lambda: (fresh(), Ack("w1"), sec(2), NEEDS_DELIVERY), Rejected, State.QUEUED),
    "ack": (lambda: (item_in(State.QUEUED), Ack("w1"), sec(2), DEFAULT), Accepted, State.STARTING),
    "ack-bound-to-another": (lambda: (item_in(State.ACTIVE), Ack("w2"), sec(5), DEFAULT), Rejected, State.ACTIVE),
    "ack-replay": (lambda: (item_in(State.STARTING), Ack(), sec(5), DEFAULT), Replayed, State.STARTING),
    "ack-after-stop": (lambda: (item_in(State.STOPPING), Ack("w1"), sec(5), DEFAULT), Rejected, State.STOPPING),
    "heartbeat-queued": (lambda: (item_in(State.QUEUED), Heartbeat(), sec(5), DEFAULT), Rejected, State.QUEUED),
    "heartbeat-stopped": (
        lambda: (item_in(State.STOPPED), Heartbeat(NO_HEARTBEAT), sec(5), DEFAULT),
        Rejected,
        State.STOPPED,
    ),
    "heartbeat-precondition-failed": (
        lambda: (item_in(State.ACTIVE), Heartbeat(NO_HEARTBEAT), sec(5), DEFAULT),
        Rejected,
        State.ACTIVE,
    ),
    "heartbeat-first": (
        lambda: (item_in(State.STARTING), Heartbeat(NO_HEARTBEAT), sec(5), DEFAULT),
        Accepted,
        State.ACTIVE,
    ),
    "heartbeat": (lambda: (item_in(State.ACTIVE), Heartbeat(sec(3)), sec(5), DEFAULT), Accepted, State.ACTIVE),
    "heartbeat-while-stopping": (
        lambda: (item_in(State.STOPPING), Heartbeat(NO_HEARTBEAT), sec(5), DEFAULT),
        Accepted,
        State.STOPPING,
    ),
    "stop-queued": (lambda: (item_in(State.QUEUED), Stop(), sec(5), DEFAULT), Accepted, State.STOPPED),
    "stop-requests-drain": (lambda: (item_in(State.ACTIVE), Stop(), sec(5), DEFAULT), Accepted, State.STOPPING),
    "stop-confirms": (lambda: (item_in(State.STOPPING), Stop(), sec(5), DEFAULT), Accepted, State.STOPPED),
    "stop-stopped": (lambda: (item_in(State.STOPPED), Stop(), sec(5), DEFAULT), Replayed, State.STOPPED),
    "force-stop": (lambda: (item_in(State.ACTIVE), Stop(force=True), sec(5), DEFAULT), Accepted, State.STOPPED),
    "force-stop-stopped": (
        lambda: (item_in(State.STOPPED), Stop(force=True), sec(5), DEFAULT),
        Replayed,
        State.STOPPED,
    ),
    # the rules only the anthropic dialect reaches (IN_DIALECT below)
    "heartbeat-queued-not-the-lease": (
        lambda: (item_in(State.QUEUED), Heartbeat(), sec(5), ANTHROPIC.policy),
        Rejected,
        State.QUEUED,
    ),
    "heartbeat-stopped-reported": (
        lambda: (item_in(State.STOPPED), Heartbeat(NO_HEARTBEAT), sec(5), ANTHROPIC.policy),
        Replayed,
        State.STOPPED,
    ),
    "stop-stopped-refused": (
        lambda: (item_in(State.STOPPED), Stop(), sec(5), ANTHROPIC.policy),
        Rejected,
        State.STOPPED,
    ),
    "force-stop-stopped-refused": (
        lambda: (item_in(State.STOPPED), Stop(force=True), sec(5), ANTHROPIC.policy),
        Rejected,
        State.STOPPED,
    ),
    "metadata-over-limits": (
        lambda: (fresh(), UpdateMetadata({str(i): "v" for i in range(17)}), sec(1), DEFAULT),
        Rejected,
        State.QUEUED,
    ),
    "metadata": (
        lambda: (item_in(State.STOPPED), UpdateMetadata({"k": "v"}), sec(5), DEFAULT),
        Accepted,
        State.STOPPED,
    ),
    "lapse-nothing-to-lapse": (lambda: (item_in(State.QUEUED), Lapse(), sec(9999), DEFAULT), Replayed, State.QUEUED),
    "lapse-not-due": (lambda: (item_in(State.ACTIVE), Lapse(), sec(10), DEFAULT), Replayed, State.ACTIVE),
    "start-timeout": (lambda: (item_in(State.STARTING), Lapse(), sec(62), DEFAULT), Accepted, State.QUEUED),
    "lease-expired-stop": (lambda: (item_in(State.ACTIVE), Lapse(), sec(63), STOP_AT_EXPIRY), Accepted, State.STOPPED),
    "lease-expired": (lambda: (item_in(State.ACTIVE), Lapse(), sec(63), DEFAULT), Accepted, State.QUEUED),
    "drain-expired": (lambda: (item_in(State.STOPPING), Lapse(), sec(62), DEFAULT), Accepted, State.STOPPED),
}


IN_DIALECT = {
    name: ANTHROPIC
    for name in (
        "heartbeat-queued-not-the-lease",
        "heartbeat-stopped-reported",
        "stop-stopped-refused",
        "force-stop-stopped-refused",
    )
}


def test_every_rule_has_a_named_example() -> None:
    assert set(EXAMPLES) == {r.name for r in rules_of(RULE_TABLE)}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_rule(name: str) -> None:
    case, kind, state = EXAMPLES[name]
    item, command, now, policy = case()
    outcome = step(item, command, now, policy, IN_DIALECT.get(name, QODER))
    assert outcome.rule.name == name
    assert type(outcome) is kind
    assert outcome.item.state is state
    assert outcome.status == outcome.rule.status
    if kind is Accepted:
        assert outcome.item.version == item.version + 1
    else:
        assert outcome.item is item  # replays and rejections hand back the very same item


def test_rule_statuses_match_the_spec() -> None:
    assert {r.name: r.status for r in rules_of(RULE_TABLE) if r.kind is Kind.REJECT} == {
        "deliver-not-reclaimable": 409,
        "deliver-not-queued": 409,
        "ack-claimed-by-another": 409,
        "ack-not-delivered": 409,
        "ack-bound-to-another": 409,
        "ack-after-stop": 409,
        "heartbeat-queued": 409,
        "heartbeat-queued-not-the-lease": 412,
        "heartbeat-stopped": 409,
        "stop-stopped-refused": 409,
        "force-stop-stopped-refused": 409,
        "heartbeat-precondition-failed": 412,
        "metadata-over-limits": 400,
    }


def test_t0_is_the_reference_pages_time() -> None:
    assert T0.isoformat() == "2026-07-01T08:15:01+00:00"
