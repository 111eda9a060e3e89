"""``--dialect`` on the commands that run or show the rules: explain, walk, rules, table, diagram."""

from __future__ import annotations

import io
import json

import pytest

from workstate.cli import main


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out) == 0
    return out.getvalue()


def test_explain_in_the_peer_dialect_answers_the_peers_rule() -> None:
    text = run("explain", "--dialect", "anthropic", "--state", "stopped", "--op", "heartbeat")
    first = text.splitlines()[0]
    assert first.startswith("heartbeat on a stopped item -> 200")
    assert "state stopped, lease_extended false" in first
    assert "[rule heartbeat-stopped-reported," in first
    assert "dialect anthropic" in text and "Policy(on_start_timeout=keep_starting)" in text


def test_explain_defaults_to_qoder() -> None:
    text = run("explain", "--state", "stopped", "--op", "heartbeat")
    assert text.startswith("heartbeat on a stopped item -> 409 invalid_request_error")
    assert run("explain", "--dialect", "qoder", "--state", "stopped", "--op", "heartbeat") == text


def test_explain_in_the_peer_dialect_has_no_worker_conflict_and_a_412_of_its_own() -> None:
    ack = run("explain", "--dialect", "anthropic", "--state", "starting", "--op", "ack", "--worker-id", "w2")
    assert ack.startswith("ack on a starting item -> 200")
    qoder = run("explain", "--state", "starting", "--op", "ack", "--worker-id", "w2")
    assert qoder.startswith("ack on a starting item -> 409")
    beat = run("explain", "--dialect", "anthropic", "--state", "active", "--op", "heartbeat", "--expected", "stale")
    assert beat.startswith("heartbeat on an active item -> 412 invalid_request_error")


def test_rules_table_and_diagram_take_the_dialect() -> None:
    rules = run("rules", "--dialect", "anthropic")
    assert "heartbeat-stopped-reported" in rules and "heartbeat-stopped]" not in rules
    assert "heartbeat-stopped-reported" in run("rules")  # the declaration: every rule
    rows = json.loads(run("table", "--format", "json", "--dialect", "qoder"))
    assert "heartbeat-stopped-reported" not in {r["rule"] for r in rows}
    assert "`heartbeat-stopped-reported`" in run("table", "--dialect", "anthropic")
    assert "stopped_heartbeat_reports" not in run("diagram", "--format", "dot", "--dialect", "anthropic")
    assert "ack-replay" not in run("walk", "--dialect", "anthropic").split("w2 tries")[1].split("\n")[1]


def test_an_unknown_dialect_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["explain", "--dialect", "nope", "--state", "queued", "--op", "poll"], io.StringIO())
    assert exc.value.code == 2


def test_the_command_line_of_the_issue_answers_the_peers_rule() -> None:
    """``workstate explain --dialect anthropic --state stopped --op heartbeat``, run as a process."""
    import subprocess
    import sys

    argv = ["explain", "--dialect", "anthropic", "--state", "stopped", "--op", "heartbeat"]
    done = subprocess.run(
        [sys.executable, "-m", "workstate", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("heartbeat on a stopped item -> 200, item unchanged (replay): state stopped")
    assert "lease_extended false" in first and "[rule heartbeat-stopped-reported," in first
    assert "  guards: stopped_heartbeat_reports=yes" in done.stdout.splitlines()
