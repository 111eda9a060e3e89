"""``workstate check TRACE.jsonl``: recorded traffic judged against the reference server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from workstate import WorkItem
from workstate.api import DuplicateId, Request, Server, SessionBusy, UnknownEnvironment
from workstate.cli import main
from workstate.errors import InvalidInput
from workstate.trace import Kind, check_lines, parse_line

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "trace.jsonl"
BASE = "/api/v1/cloud/environments"
T = datetime.fromisoformat("2026-07-01T08:15:01+00:00")
ENV = "env_" + "e" * 32
WORK = "work_" + "1" * 32


def example_lines() -> list[str]:
    return EXAMPLE.read_text().splitlines()


def edit(lines: list[str], number: int, change: Any) -> None:
    value = json.loads(lines[number - 1])
    change(value)
    lines[number - 1] = json.dumps(value)


def exchange(t: float, method: str, target: str, status: int, body: Any, headers: dict[str, str] | None = None) -> str:
    return json.dumps(
        {
            "time": (T + timedelta(seconds=t)).isoformat(),
            "request": {
                "method": method,
                "target": target,
                "headers": {"Authorization": "Bearer t", **(headers or {})},
                "body": None,
            },
            "response": {"status": status, "body": body},
        }
    )


def work_object(state: str, **stamps: str | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": WORK,
        "type": "work",
        "environment_id": ENV,
        "data": {"type": "session", "id": "sess_" + "5" * 32},
        "state": state,
        "created_at": "2026-07-01T08:00:00.000000Z",
        "acknowledged_at": None,
        "started_at": None,
        "latest_heartbeat_at": None,
        "stop_requested_at": None,
        "stopped_at": None,
        "metadata": {},
    }
    value.update(stamps)
    return value


def error(status_type: str) -> dict[str, Any]:
    return {"type": "error", "request_id": "req_x", "error": {"type": status_type, "message": "no"}}


# --- the example trace and its schema -----------------------------------------------------------------


def test_the_example_trace_follows_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "trace.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    lines = example_lines()
    assert len(lines) >= 20
    for line in lines:
        assert list(validator.iter_errors(json.loads(line))) == []
    assert list(
        validator.iter_errors({"time": "now", "request": {}, "response": {"status": 99}})
    )  # the schema has teeth


def test_the_example_covers_what_it_should() -> None:
    """Several environments (one of them cloud), and an item first seen mid-life (active, by a get)."""
    values = [json.loads(line) for line in example_lines()]
    envs = {v["request"]["target"].split("/")[5] for v in values if v["request"]["target"].startswith(BASE)}
    assert len(envs) >= 3
    first = values[0]["response"]["body"]
    assert values[0]["request"]["method"] == "GET" and first["state"] == "active"


def test_the_clean_example_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 23 exchanges on 23 lines: 0 divergent, 0 malformed, 0 not judged")


def test_a_hand_corrupted_copy_is_caught_line_by_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = example_lines()
    assert json.loads(lines[3])["response"]["status"] == 409
    edit(lines, 4, lambda v: v["response"].update(status=200))  # a 200 where 409 was due (ack by another worker)
    edit(lines, 10, lambda v: v["response"]["body"].update(state="active"))  # a wrong state in the body
    edit(lines, 14, lambda v: v["response"].update(status=409))  # a wrong status (412 was due)
    lines[16] = '{"time": "2026-07-01T08:15:17Z", "request": '  # a malformed line
    edit(lines, 20, lambda v: v["response"]["body"].update(stopped_at=None, state="stopping"))  # force stop ignored
    corrupted = tmp_path / "corrupted.jsonl"
    corrupted.write_text("\n".join(lines) + "\n")

    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [
        (4, Kind.DIVERGENCE),
        (10, Kind.DIVERGENCE),
        (14, Kind.DIVERGENCE),
        (17, Kind.MALFORMED),
        (20, Kind.DIVERGENCE),
    ]
    by_line = {f.line: f for f in report.findings}
    assert by_line[4].rule == "4.2 ack-claimed-by-another"
    assert (by_line[4].expected, by_line[4].differences) == (
        "409 invalid_request_error",
        ("status: expected 409, got 200",),
    )
    assert by_line[10].rule == "4.4 stop-requests-drain"
    assert by_line[10].differences == ("state: expected stopping, got active",)
    assert by_line[14].rule == "4.3 heartbeat-precondition-failed" and by_line[14].expected.startswith("412")
    assert by_line[20].rule == "4.4 force-stop"
    assert "state: expected stopped, got stopping" in by_line[20].differences

    assert main(["check", str(corrupted)]) == 1
    out = capsys.readouterr().out
    for number in (4, 10, 14, 17, 20):
        assert f"corrupted.jsonl:{number}: " in out
    assert "FAIL: 22 exchanges on 23 lines: 4 divergent, 1 malformed" in out
    assert main(["check", "--format", "json", str(corrupted)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["line"] for f in data["findings"]] == [4, 10, 14, 17, 20]
    assert data["exit_status"] == 1 and data["divergences"] == 4


def test_bad_arguments_and_unreadable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["check", "--policy", "nonsense", str(EXAMPLE)]) == 2
    assert main(["check", "--policy", "default_ttl_seconds=x", str(EXAMPLE)]) == 2
    assert main(["check", "--skew", "-1", str(EXAMPLE)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["check"])
    assert exit_.value.code == 2


def test_a_policy_can_be_named(tmp_path: Path) -> None:
    lines = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, work_object("queued")),
        exchange(1, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 409, error("conflict_error")),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines))
    assert main(["check", str(path)]) in (0, 1)
    report = check_lines(lines)
    # the ack of a never-delivered item is allowed by default: a 409 is a divergence unless delivery is unknown
    assert [f.kind for f in report.findings] == [Kind.NOT_JUDGED]
    assert (
        main(
            [
                "check",
                "--policy",
                "ack_requires_delivery=true",
                "--policy",
                "conflict_error_type=conflict_error",
                str(path),
            ]
        )
        == 0
    )


# --- malformed lines ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "must be a JSON object"),
        ("{", "not JSON"),
        ('{"time": "2026-07-01T08:15:01Z", "request": {}, "response": {}}', "request.method is missing"),
        ('{"time": "yesterday", "request": {}, "response": {}}', "time"),
        ('{"time": 5, "request": {}, "response": {}}', "time"),
        (exchange(0, "GET", "/x", 200, None).replace('"status": 200', '"status": 700'), "response.status"),
        (exchange(0, "GET", "/x", 200, None).replace('"status": 200', '"status": true'), "response.status"),
        (exchange(0, "GET", "x", 200, None), "request.target"),
        (exchange(0, "", "/x", 200, None), "request.method"),
        (
            exchange(0, "GET", "/x", 200, None).replace('"body": null}, "response"', '"body": 5}, "response"'),
            "request.body",
        ),
        (exchange(0, "GET", "/x", 200, None).replace('"Bearer t"', "7"), "request.headers"),
        (exchange(0, "GET", "/x", 200, None)[:-1] + ', "extra": 1}', "extra is not a field"),
    ],
)
def test_malformed_lines_are_named(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_line(text, 1)
    report = check_lines([text, "", exchange(0, "GET", "/nowhere", 404, error("not_found_error"))])
    assert [(f.line, f.kind) for f in report.findings] == [(1, Kind.MALFORMED)]
    assert report.exchanges == 1 and report.lines == 3 and report.exit_status == 1


# --- seeding what the trace first sees mid-life ----------------------------------------------------------


def test_an_item_first_seen_in_an_answer_that_changed_it_is_seeded_then_judged() -> None:
    acked = work_object("starting", acknowledged_at="2026-07-01T08:15:01.000000Z")
    lines = [
        exchange(0, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, acked, {"Worker-ID": "w1"}),
        exchange(1, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, acked, {"Worker-ID": "w1"}),
        exchange(
            2,
            "POST",
            f"{BASE}/{ENV}/work/{WORK}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT",
            200,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:03.000250Z",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 60,
            },
        ),
        # the recorded timestamp (250 µs off the trace's time) is the real one: echoing it holds
        exchange(
            3,
            "POST",
            f"{BASE}/{ENV}/work/{WORK}/heartbeat?expected_last_heartbeat=2026-07-01T08:15:03.000250Z",
            200,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:04.000000Z",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 60,
            },
        ),
        exchange(
            4,
            "POST",
            f"{BASE}/{ENV}/work/{WORK}/stop",
            200,
            work_object(
                "stopping",
                acknowledged_at="2026-07-01T08:15:01.000000Z",
                started_at="2026-07-01T08:15:03.000250Z",
                latest_heartbeat_at="2026-07-01T08:15:04.000000Z",
                stop_requested_at="2026-07-01T08:15:05.000000Z",
            ),
        ),
        exchange(5, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, acked),  # 409 was due: stopping
    ]
    report = check_lines(lines)
    assert report.seeded == 1
    assert [(f.line, f.kind, f.rule) for f in report.findings] == [(6, Kind.DIVERGENCE, "4.2 ack-after-stop")]


def test_what_a_mid_life_object_does_not_show_is_not_judged() -> None:
    started = work_object("starting", acknowledged_at="2026-07-01T08:14:30.000000Z")
    lines = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, started),
        # bound to someone we never saw: a 409 for w2 may be right
        exchange(1, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 409, error("invalid_request_error"), {"Worker-ID": "w2"}),
        exchange(2, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, started, {"Worker-ID": "w1"}),
        # now w1 is known to be bound: w2 gets 409, and a 200 for w2 is a divergence
        exchange(3, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, started, {"Worker-ID": "w2"}),
        # a request about an item the trace never showed cannot be judged
        exchange(4, "POST", f"{BASE}/{ENV}/work/work_{'7' * 32}/ack", 409, error("invalid_request_error")),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [
        (2, Kind.NOT_JUDGED),
        (4, Kind.DIVERGENCE),
        (5, Kind.NOT_JUDGED),
    ]
    assert report.findings[1].rule == "4.2 ack-bound-to-another"
    assert report.exit_status == 1
    assert check_lines(lines[:3] + lines[4:]).exit_status == 0  # not judged is not a divergence


def test_environments_are_seeded_with_their_kind_or_absence() -> None:
    cloud = "env_" + "c" * 32
    gone = "env_" + "d" * 32
    lines = [
        exchange(0, "GET", f"{BASE}/{cloud}/work/poll", 400, error("invalid_request_error")),
        exchange(1, "GET", f"{BASE}/{cloud}/work/stats", 400, error("invalid_request_error")),
        exchange(2, "GET", f"{BASE}/{gone}/work", 404, error("not_found_error")),
        exchange(3, "GET", f"{BASE}/{gone}/work/poll", 404, error("not_found_error")),
        exchange(
            4,
            "GET",
            f"{BASE}/{ENV}/work/poll?block_ms=0",
            400,
            error("invalid_request_error")
            | {"error": {"type": "invalid_request_error", "message": "x", "param": "block_ms"}},
        ),
        exchange(5, "GET", f"{BASE}/{ENV}/work/poll", 200, None),
        exchange(
            6,
            "GET",
            f"{BASE}/{cloud}/work",
            200,
            {"data": [], "first_id": None, "last_id": None, "has_more": False, "next_page": None},
        ),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(7, Kind.DIVERGENCE)]
    assert report.findings[0].differences == ("status: expected 400, got 200",)


def test_a_poll_must_deliver_the_oldest_deliverable_item() -> None:
    older = work_object("queued")
    newer = work_object("queued", id="work_" + "2" * 32, created_at="2026-07-01T08:10:00.000000Z")
    newer["data"] = {"type": "session", "id": "sess_" + "6" * 32}
    lines = [
        exchange(
            0,
            "GET",
            f"{BASE}/{ENV}/work?limit=5",
            200,
            {"data": [older, newer], "first_id": WORK, "last_id": newer["id"], "has_more": False, "next_page": None},
        ),
        exchange(1, "GET", f"{BASE}/{ENV}/work/poll", 200, newer, {"Worker-ID": "w1"}),  # LIFO
        exchange(2, "GET", f"{BASE}/{ENV}/work/poll", 200, older, {"Worker-ID": "w1"}),
        exchange(3, "GET", f"{BASE}/{ENV}/work/poll", 200, older, {"Worker-ID": "w1"}),  # delivered 1 s ago
        exchange(4, "GET", f"{BASE}/{ENV}/work/poll", 200, None),
    ]
    report = check_lines(lines)
    # the delivery of items seen by a list is unknown: the LIFO pick cannot be judged yet
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED), (4, Kind.DIVERGENCE)]
    assert report.findings[1].rule == "4.1 deliver-not-reclaimable"
    # seen fresh by polls instead, the LIFO pick is a divergence
    report = check_lines([lines[2].replace('"w1"', '"w0"'), lines[1], lines[4]])
    assert [(f.line, f.kind) for f in report.findings] == []
    fresh = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, older),
        exchange(1, "GET", f"{BASE}/{ENV}/work/poll", 200, older, {"Worker-ID": "w1"}),
    ]
    report = check_lines([*fresh, exchange(7, "GET", f"{BASE}/{ENV}/work/poll", 200, None)])
    assert [(f.line, f.kind, f.rule) for f in report.findings] == [
        (3, Kind.DIVERGENCE, "4.1 poll: the oldest deliverable item by creation order, else null")
    ]


def test_403_is_the_authorizers_word_and_5xx_is_not_judged() -> None:
    lines = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, work_object("queued")),
        exchange(1, "POST", f"{BASE}/{ENV}/work/{WORK}/stop", 403, error("permission_error")),
        exchange(2, "GET", f"{BASE}/{ENV}/work/{WORK}", 503, "upstream down"),
        exchange(3, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, work_object("queued")),  # the 403 changed nothing
        exchange(4, "GET", "/nowhere", 403, error("permission_error")),  # 404 comes first
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(3, Kind.NOT_JUDGED), (5, Kind.DIVERGENCE)]


def test_request_ids_must_be_echoed() -> None:
    lines = [exchange(0, "GET", "/nowhere", 404, error("not_found_error"), {"x-request-id": "mine"})]
    assert check_lines(lines).findings[0].differences == ("request_id: expected the x-request-id 'mine', got 'req_x'",)


# --- the adoption API the checker uses (workstate.api) ----------------------------------------------------


def test_adopt_holds_an_item_as_it_is_and_refuses_what_it_cannot() -> None:
    server = Server()
    assert server.adopt_environment(ENV, now=T) == ENV
    with pytest.raises(DuplicateId):
        server.adopt_environment(ENV, now=T)
    with pytest.raises(InvalidInput):
        server.adopt_environment("env_x", now=T)
    item = WorkItem(
        id=WORK,
        environment_id=ENV,
        session_id="sess_" + "5" * 32,
        created_at=T,
        state="starting",
        acknowledged_at=T,
        worker_id="w1",
    )
    server.adopt(item)
    assert server.work(ENV, WORK) is item
    answer = server.handle(
        Request("POST", f"{BASE}/{ENV}/work/{WORK}/ack", {"Authorization": "Bearer t", "Worker-ID": "w2"}), T
    )
    assert answer.status == 409 and answer.rule is not None and answer.rule.name == "ack-bound-to-another"
    other = attrs.evolve(item, id="work_" + "2" * 32)
    with pytest.raises(SessionBusy):
        server.adopt(other)  # the session has a live item already
    assert server.work(ENV, other.id) is None
    with pytest.raises(UnknownEnvironment):
        server.adopt(attrs.evolve(item, environment_id="env_" + "0" * 32))
    with pytest.raises(InvalidInput):
        server.adopt(attrs.evolve(item, created_at=T - timedelta(seconds=1)))
    stopped = attrs.evolve(item, state="stopped", stopped_at=T, version=3)
    server.adopt(stopped)
    server.adopt(other)  # the session is free now
    assert server.deliverable(ENV, T) is None
    queued = WorkItem(id="work_" + "3" * 32, environment_id=ENV, session_id="sess_" + "7" * 32, created_at=T)
    server.adopt(queued)
    assert server.deliverable(ENV, T) == queued.id
    assert server.deliverable("env_" + "0" * 32, T) is None
    assert (
        server.handle(Request("GET", f"{BASE}/{ENV}/work", {"Authorization": "Bearer t"}), T).json["first_id"] == WORK
    )
