"""`workstate check` streams: standard input, the header line, the policy hint, counts in the right number."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from workstate import ANTHROPIC, QODER, Dialect, Policy
from workstate.api import Request, Server
from workstate.asgi import RecordInOrder
from workstate.cli import main
from workstate.policy import ConflictErrorType
from workstate.tools.trace import Kind, TraceCheck, check_lines, header_line, parse_header

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
BASE = "/api/v1/cloud/environments"


def recorded(policy: Policy, *, header: bool) -> list[str]:
    """A short legal trace of a server of ``policy``: poll, ack, a heartbeat, a stop, written by RecordInOrder."""
    server = Server(policy)
    stream = io.StringIO()
    if header:
        stream.write(header_line(policy, QODER))
    recorder = RecordInOrder(stream)
    env = server.create_environment(now=T)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T)
    base = f"{BASE}/{env}/work"
    steps = [
        ("GET", f"{base}/poll", None),
        ("POST", f"{base}/{work}/ack", None),
        ("POST", f"{base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", None),
        ("POST", f"{base}/{work}/stop", '{"force": true}'),
        ("POST", f"{base}/{work}/stop", None),
    ]
    for ticket, (method, target, body) in enumerate(steps):
        now = T + timedelta(seconds=ticket + 1)
        headers = {"Authorization": "Bearer t", "Worker-ID": "w1"}
        response = server.handle(Request(method, target, headers, (body or "").encode()), now)
        recorder.write(ticket, now, method, target, (headers, body), response)
    return stream.getvalue().splitlines()


def test_the_header_round_trips_every_policy_field_and_a_dialect_that_is_not_shipped() -> None:
    policy = Policy(default_ttl_seconds=30, conflict_error_type=ConflictErrorType.CONFLICT_ERROR)
    line = header_line(policy, ANTHROPIC)
    body = json.loads(line)["workstate_trace"]
    assert body["dialect"] == "anthropic"
    assert set(body["policy"]) == {f.name for f in attrs.fields(Policy)}
    read = parse_header(line, 1)
    assert read is not None and (read.policy, read.dialect) == (policy, ANTHROPIC)
    other = attrs.evolve(QODER, name="mine", worker_header="X-Worker")
    custom = parse_header(header_line(policy, other), 1)
    assert custom is not None and custom.dialect == other
    assert isinstance(json.loads(header_line(policy, other))["workstate_trace"]["dialect"], dict)
    with pytest.raises(ValueError, match="not a field"):
        parse_header('{"workstate_trace": {"format": 1, "dialect": "qoder", "policy": {"ttl": 1}}}', 1)
    assert parse_header(recorded(Policy(), header=False)[0], 1) is None  # an exchange is no header


def test_the_header_names_the_policy_when_none_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = Policy(default_ttl_seconds=30)
    with_header = recorded(policy, header=True)
    report = check_lines(with_header)
    assert report.exit_status == 0 and report.header is not None and report.header.policy == policy
    assert check_lines(with_header[1:]).exit_status == 1  # without it, the default TTL of 60 s judges
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(with_header) + "\n")
    assert main(["check", str(path)]) == 0
    assert main(["check", str(path), "--policy", "list_max_limit=50"]) == 0  # over the header's policy, TTL 30 kept
    assert main(["check", str(path), "--policy", "default_ttl_seconds=45"]) == 1  # what is given is used
    out = capsys.readouterr().out
    assert "--policy default_ttl_seconds=45 disagrees with the trace's header (default_ttl_seconds=30)" in out
    assert main(["check", str(path), "--dialect", "anthropic", "--format", "json"]) == 1
    notes = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["kind"] == "note"]
    assert any(
        "--dialect anthropic disagrees with the trace's header (dialect qoder)" in n["differences"][0] for n in notes
    )


def test_a_header_that_cannot_be_read_is_malformed_and_the_trace_still_checked() -> None:
    lines = recorded(Policy(), header=False)
    bad = '{"workstate_trace": {"format": 1, "dialect": "klingon", "policy": {}}}'
    report = check_lines([bad, *lines])
    assert [(f.line, f.kind) for f in report.findings] == [(1, Kind.MALFORMED)]
    assert "klingon" in report.findings[0].differences[0] and report.exchanges == len(lines)


def test_a_divergence_on_a_policy_value_names_the_policy_that_explains_it(tmp_path: Path) -> None:
    lines = recorded(Policy(default_ttl_seconds=30), header=False)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "workstate", "check", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "hint: line 3: --policy default_ttl_seconds=30 would explain it" in done.stdout
    quiet = subprocess.run(
        [sys.executable, "-m", "workstate", "check", str(path), "--no-hints"], capture_output=True, text=True
    )
    assert "hint:" not in quiet.stdout and quiet.returncode == 1


def test_check_dash_reads_standard_input_and_counts_in_the_right_number() -> None:
    lines = recorded(Policy(), header=False)
    one = subprocess.run(
        [sys.executable, "-m", "workstate", "check", "-"], input=lines[0] + "\n", capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr
    assert "OK: 1 exchange on 1 line: 0 divergent" in one.stdout
    many = subprocess.run(
        [sys.executable, "-m", "workstate", "check", "-"], input="\n".join(lines), capture_output=True, text=True
    )
    assert f"OK: {len(lines)} exchanges on {len(lines)} lines" in many.stdout
    empty = subprocess.run([sys.executable, "-m", "workstate", "check", "-"], input="", capture_output=True, text=True)
    assert empty.returncode == 2 and "<stdin>: no exchange to check" in empty.stderr


def test_streamed_json_is_the_report_as_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [*recorded(Policy(default_ttl_seconds=30), header=False), "{oops"]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["check", str(path), "--format", "json", "--no-hints"]) == 1
    streamed = json.loads(capsys.readouterr().out)
    assert streamed == check_lines(lines).to_json()
    assert streamed["malformed"] == 1 and streamed["divergences"] >= 1


def test_the_stream_keeps_no_finding_and_reads_its_lines_once() -> None:
    lines = recorded(Policy(default_ttl_seconds=30), header=False)
    check = TraceCheck()
    found = [f for text in iter(lines) for f in check.feed(text)]
    report = check.report()
    assert report.findings == () and check.kept == []
    assert report.count(Kind.DIVERGENCE) == len([f for f in found if f.kind is Kind.DIVERGENCE]) >= 1
    assert report.summary() == check_lines(lines).summary()
    assert report.exit_status == 1
    with pytest.raises(Exception, match="dialect"):
        TraceCheck(dialect="qoder")  # type: ignore[arg-type]
    assert isinstance(QODER, Dialect)


def test_standard_input_is_judged_as_it_arrives_and_ctrl_c_reports_what_was_judged() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "workstate", "check", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("{oops\n")
    child.stdin.flush()
    assert child.stdout.readline().startswith("<stdin>:1: malformed")  # judged before the input ends
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert "INTERRUPTED after line 1: 0 exchanges on 1 line: 0 divergent, 1 malformed" in out
    assert "Traceback" not in err
