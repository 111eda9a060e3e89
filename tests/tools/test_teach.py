"""workstate diagram, table and explain."""

import json
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from workstate import DEFAULT_POLICY, Ack, Deliver, Heartbeat, Lapse, State, Stop, UpdateMetadata, explain
from workstate.cli import main
from workstate.model import error_type
from workstate.rules import DECLARATION, RULE_TABLE, Reason, rules_of
from workstate.tools.docgen import mermaid, rules_table_markdown
from workstate.tools.teach import OPERATIONS, representative


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def bad(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_ack_on_a_stopping_item_is_answered_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, "explain", "--state", "stopping", "--op", "ack").splitlines()[0]
    assert first == (
        "ack on a stopping item -> 409 invalid_request_error: the work item is stopping or stopped"
        "  [rule ack-after-stop, api.md §4.2]"
    )


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("op", OPERATIONS)
def test_explain_agrees_with_step_in_every_state(capsys: pytest.CaptureFixture[str], state: State, op: str) -> None:
    out = run(capsys, "explain", "--state", str(state), "--op", op)
    first = out.splitlines()[0]
    rules = [rule for rule in rules_of(RULE_TABLE) if f"[rule {rule.name}, api.md §{rule.section}]" in first]
    assert len(rules) == 1
    rule = rules[0]
    assert state in rule.sources and f" -> {rule.status}" in first
    if rule.reason is not None:
        assert error_type(rule.reason, DEFAULT_POLICY) in first
    assert "assumed: " in out


def test_the_representative_items_are_in_their_state() -> None:
    for state in State:
        item, assumed = representative(state)
        assert item.state is state and assumed
    assert representative(State.QUEUED, delivered=False)[0].delivered_at is None


def test_explain_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert "[rule ack-claimed-by-another," in run(
        capsys, "explain", "--state", "queued", "--op", "ack", "--worker-id", "w2"
    )
    assert "[rule ack-replay," in run(capsys, "explain", "--state", "active", "--op", "ack", "--worker-id", "w1")
    assert "412 precondition_failed_error" in run(
        capsys, "explain", "--state", "active", "--op", "heartbeat", "--expected", "stale"
    )
    assert "200, now active  [rule heartbeat," in run(
        capsys, "explain", "--state", "active", "--op", "heartbeat", "--expected", "latest"
    )
    assert "now stopped  [rule force-stop," in run(capsys, "explain", "--state", "active", "--op", "stop", "--force")
    assert "now stopping  [rule stop-requests-drain," in run(capsys, "explain", "--state", "active", "--op", "stop")
    out = run(capsys, "explain", "--state", "active", "--op", "heartbeat", "--expired")
    assert "(first lease-expired [api.md §5]: now queued) -> 409" in out and "[rule heartbeat-queued," in out
    assert "[rule ack-not-delivered," not in run(capsys, "explain", "--state", "queued", "--op", "ack", "--undelivered")
    assert "400 invalid_request_error" in run(
        capsys, "explain", "--state", "stopped", "--op", "update", "--metadata", "k=" + "v" * 600
    )


DEFAULT_COMMANDS = {
    "deliver": Deliver(),
    "ack": Ack(),
    "heartbeat": Heartbeat(),
    "stop": Stop(),
    "force_stop": Stop(force=True),
    "update_metadata": UpdateMetadata({"progress": "50%"}),
    "lapse": Lapse(),
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("op", OPERATIONS)
def test_explain_prints_the_rule_the_library_decides(capsys: pytest.CaptureFixture[str], state: State, op: str) -> None:
    item, _ = representative(state)
    why = explain(item, DEFAULT_COMMANDS[op], item.clock + timedelta(seconds=1))
    first = run(capsys, "explain", "--state", str(state), "--op", op).splitlines()[0]
    assert first.endswith(f"[rule {why.rule.name}, api.md §{why.rule.section}]")
    assert f"-> {why.outcome.status}" in first


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["explain"], "required"),
        (["explain", "--state", "paused", "--op", "ack"], "invalid choice"),
        (["explain", "--state", "queued", "--op", "fly"], "invalid choice"),
        (["explain", "--state", "queued", "--op", "ack", "--force"], "--force goes with --op stop"),
        (["explain", "--state", "queued", "--op", "stop", "--worker-id", "w1"], "--worker-id goes with"),
        (["explain", "--state", "queued", "--op", "ack", "--expected", "latest"], "--expected goes with"),
        (["explain", "--state", "active", "--op", "heartbeat", "--expected", "soon"], "RFC 3339"),
        (["explain", "--state", "active", "--op", "update", "--metadata", "novalue"], "KEY=VALUE"),
        (["explain", "--state", "active", "--op", "ack", "--undelivered"], "--undelivered goes with"),
        (["explain", "--state", "stopped", "--op", "lapse", "--expired"], "no deadline"),
        (["explain", "--state", "queued", "--op", "ack", "--worker-id", ""], "worker_id"),
        (["diagram", "--format", "png"], "invalid choice"),
        (["table", "--format", "csv"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    err = bad(capsys, *argv)
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["diagram", "table", "explain"])
def test_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--format" in capsys.readouterr().out or command == "explain"


def test_diagram_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "diagram") == mermaid() + "\n"
    assert run(capsys, "diagram", "--format", "mermaid") == mermaid() + "\n"
    dot = run(capsys, "diagram", "--format", "dot")
    assert dot.startswith("digraph lifecycle {") and '"stopping" -> "stopped"' in dot
    assert ET.fromstring(run(capsys, "diagram", "--format", "svg")).tag.endswith("svg")


def test_table_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "table") == rules_table_markdown() + "\n"
    rows = json.loads(run(capsys, "table", "--format", "json"))
    assert {row["rule"] for row in rows} == {line[0] for line in DECLARATION}
    assert len(rows) == sum(len(rule.sources) for rule in rules_of(RULE_TABLE))
    after_stop = next(row for row in rows if row["rule"] == "ack-after-stop" and row["state"] == "stopping")
    assert after_stop["status"] == Reason.STOPPING_OR_STOPPED.status
    assert after_stop["error_type"] == "invalid_request_error"
