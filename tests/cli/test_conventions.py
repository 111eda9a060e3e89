"""The conventions every command keeps (issue 18, points 4 and 5): --version, help with no command, --json,
--policy, one vocabulary, and output without Python reprs."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workstate import __version__
from workstate.cli import main
from workstate.rules import State
from workstate.tools.teach import ALIASES, OPERATIONS


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out) == 0, argv
    return out.getvalue()


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "workstate", "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"workstate {__version__}\n")
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: workstate ") and "simulate" in err and "--version" in err


def test_walk_json_is_the_walk() -> None:
    document = json.loads(run("walk", "--json"))
    assert document["start"] == "2026-07-01T08:15:01.000000Z" and document["dialect"] == "qoder"
    first, second = document["items"]
    assert first["steps"][0] == {
        "t": 1,
        "at": "2026-07-01T08:15:02.000000Z",
        "story": "poll delivers the item to w1",
        "trigger": "deliver",
        "command": "Deliver(worker_id='w1')",
        "accepted": True,
        "status": 200,
        "error_type": None,
        "state": "queued",
        "rule": "deliver",
        "section": "4.1",
        "effects": [],
    }
    assert [step["state"] for step in first["steps"]][-1] == "stopped"
    assert {step["trigger"] for step in first["steps"]} <= set(OPERATIONS)
    assert second["steps"][-1]["trigger"] == "lapse" and second["steps"][-1]["state"] == "queued"
    text = run("walk")
    for step in first["steps"]:  # the text and the document tell the same walk
        assert (
            f"{step['command']} -> {step['status']} {step['state']}  [api.md §{step['section']} {step['rule']}]" in text
        )


def test_explain_json_is_the_answer() -> None:
    document = json.loads(run("explain", "--state", "stopping", "--op", "ack", "--json"))
    assert document["op"] == "ack" and document["state"] == "stopping" and document["accepted"] is False
    assert (document["status"], document["error_type"]) == (409, "invalid_request_error")
    assert document["rule"]["name"] == "ack-after-stop" and document["rule"]["section"] == "4.2"
    assert document["summary"] == run("explain", "--state", "stopping", "--op", "ack").splitlines()[0]
    assert isinstance(document["guards"], dict) and document["assumed"]


def test_policy_reaches_walk_and_explain() -> None:
    assert "ttl_seconds=90" in run("walk", "--policy", "default_ttl_seconds=90")
    assert "ttl_seconds=90" not in run("walk")
    default = json.loads(run("explain", "--state", "active", "--op", "heartbeat", "--expired", "--json"))
    stops = json.loads(
        run(
            "explain",
            "--state",
            "active",
            "--op",
            "heartbeat",
            "--expired",
            "--policy",
            "on_lease_expiry=stop",
            "--json",
        )
    )
    assert default["lapse"]["name"] != stops["lapse"]["name"]
    assert "the given Policy(on_lease_expiry=stop)" in stops["assumed"][-1]


@pytest.mark.parametrize("command", [["walk"], ["explain", "--state", "active", "--op", "ack"]])
@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("nonsense=1", "the fields: default_ttl_seconds, min_ttl_seconds, "),
        ("on_lease_expiry=later", "on_lease_expiry takes requeue | stop"),
        ("ack_requires_delivery=maybe", "ack_requires_delivery takes true | false"),
        ("default_ttl_seconds=soon", "takes an integer"),
    ],
)
def test_a_bad_policy_names_the_valid_fields_and_values(
    capsys: pytest.CaptureFixture[str], command: list[str], policy: str, says: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--policy", policy])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_serve_names_the_valid_fields_of_a_bad_policy(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("uvicorn")
    assert main(["serve", "--port", "0", "--policy", "on_lease_expiry=later"]) == 2
    assert "on_lease_expiry takes requeue | stop" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("alias", "spelled"),
    [
        (["--op", "poll"], "deliver"),
        (["--op", "update"], "update_metadata"),
        (["--op", "stop", "--force"], "force_stop"),
    ],
)
@pytest.mark.parametrize("state", [str(s) for s in State])
def test_the_aliases_answer_as_the_rules_spell_it(alias: list[str], spelled: str, state: str) -> None:
    answer = run("explain", "--state", state, *alias)
    assert answer == run("explain", "--state", state, "--op", spelled)
    assert answer.startswith(f"{spelled} on a")
    assert json.loads(run("explain", "--state", state, *alias, "--json"))["op"] == spelled


def test_the_vocabulary_is_the_rules_triggers(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(OPERATIONS) == {"deliver", "ack", "heartbeat", "stop", "force_stop", "update_metadata", "lapse"}
    assert ALIASES == {"poll": "deliver", "update": "update_metadata"}
    triggers = {line.split("] ")[1].split()[0] for line in run("rules").splitlines()}
    assert triggers == set(OPERATIONS)  # the rules, the diagram and explain: one spelling
    diagram = run("diagram")
    assert [trigger for trigger in OPERATIONS if trigger not in diagram] == []
    assert not re.search(r"\b(poll|update)\b", diagram)
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "poll (= deliver)" in shown and "update (= update_metadata)" in shown and "(= force_stop)" in shown


REPRS = ("datetime.datetime(", "mappingproxy(", "<State.", "State.", "OnLeaseExpiry.", "OnStartTimeout.", "Kind.")


def _outputs() -> dict[str, str]:
    runs = {"walk": ["walk"], "rules": ["rules"], "table": ["table"], "table json": ["table", "--format", "json"]}
    runs["walk anthropic"] = ["walk", "--dialect", "anthropic"]
    for state in State:
        for op in OPERATIONS:
            runs[f"explain {state} {op}"] = ["explain", "--state", str(state), "--op", op]
            runs[f"explain {state} {op} anthropic"] = [
                "explain",
                "--state",
                str(state),
                "--op",
                op,
                "--dialect",
                "anthropic",
            ]
    return {name: run(*argv) for name, argv in runs.items()}


def test_no_python_reprs_in_walk_explain_rules_or_table() -> None:
    outputs = _outputs()
    assert "2026-07-01T08:15:05.000000Z" in outputs["walk"]  # instants as RFC 3339
    leaks = {name: [r for r in REPRS if r in text] for name, text in outputs.items()}
    assert {name: found for name, found in leaks.items() if found} == {}


DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def documented(command: str) -> dict[str, Any]:
    """The example document of ``### `COMMAND --json` `` in docs/cli.md (its "..." elided, still JSON)."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"### `{command} --json`\n\n```json\n(.*?)```", text, re.S)
    assert match, f"docs/cli.md has no example for {command} --json"
    parsed: dict[str, Any] = json.loads(match.group(1))
    return parsed


def test_the_documented_shapes_are_the_printed_ones(capsys: pytest.CaptureFixture[str]) -> None:
    walk, doc = json.loads(run("walk", "--json")), documented("walk")
    assert set(walk) == set(doc) and set(walk["items"][0]["steps"][0]) == set(doc["items"][0]["steps"][0])
    explain, doc = json.loads(run("explain", "--state", "stopping", "--op", "ack", "--json")), documented("explain")
    assert set(explain) == set(doc) and set(explain["rule"]) == set(doc["rule"])
    assert explain["summary"] == doc["summary"]
    argv = ["simulate", "--items", "60", "--workers", "3", "--duration", "20", "--no-progress", "--json"]
    simulate, doc = json.loads(run(*argv)), documented("simulate")
    assert simulate["command"] == doc["command"] and simulate["items"] == doc["items"]
    assert set(simulate) == set(doc) and set(simulate["start_latency_seconds"]) == set(doc["start_latency_seconds"])
    conform = documented("conform")
    assert set(conform) >= {"ok", "interrupted", "cases"} and set(conform["cases"][0]) == {
        "id",
        "rule",
        "passed",
        "where",
        "expected",
        "actual",
        "requests",
    }


@pytest.mark.parametrize(
    "command",
    [["walk"], ["explain", "--state", "queued", "--op", "ack"], ["simulate", "--items", "5", "--no-progress"]],
)
def test_json_to_a_file_that_cannot_be_written_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "report.json"
    assert main([*command, "--json", str(missing)], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err == f"workstate {command[0]}: --json: cannot write {missing}: No such file or directory\n"


def test_json_to_a_file_keeps_the_text(tmp_path: Path) -> None:
    path = tmp_path / "walk.json"
    assert run("walk", "--json", str(path)) == run("walk")
    assert json.loads(path.read_text()) == json.loads(run("walk", "--json"))
