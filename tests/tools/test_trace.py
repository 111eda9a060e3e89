"""``workstate check TRACE.jsonl``: recorded traffic judged against the reference server."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from workstate import OnLeaseExpiry, Policy, WorkItem, render_timestamp
from workstate._time import parse_timestamp
from workstate.api import DuplicateId, Request, Server, SessionBusy, UnknownEnvironment
from workstate.cli import main
from workstate.errors import InvalidInput
from workstate.tools.trace import Checker, Kind, check_lines, parse_line

ROOT = Path(__file__).resolve().parents[2]
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


# --- hostile traces ------------------------------------------------------------------------------------------

ACTIVE = work_object(
    "active",
    acknowledged_at="2026-07-01T08:13:22.000000Z",
    started_at="2026-07-01T08:13:23.000000Z",
    latest_heartbeat_at="2026-07-01T08:13:23.000000Z",
)
GET = f"{BASE}/{ENV}/work/{WORK}"
# what must never reach a terminal raw: C0 (with NUL, ESC, CR, LF, tab), DEL, C1, lone surrogates, U+2028/2029
RAW = set(map(chr, [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0xD800, 0xE000)]))


def run_check(path: Path, *options: str) -> tuple[int, str, str]:
    """``workstate check`` in a child process whose stdout is strict UTF-8, as on a terminal."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "workstate", "check", *options, str(path)],
        capture_output=True,
        env=env,
        cwd=ROOT,
    )
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


def printed(path: Path, *options: str, encoding: str = "utf-8") -> tuple[int, str]:
    out = io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="")
    status = main(["check", *options, str(path)], out)
    out.flush()
    assert isinstance(out.buffer, io.BytesIO)
    return status, out.buffer.getvalue().decode(encoding)


def assert_clean(text: str) -> None:
    for line in text.split("\n"):
        assert not RAW & set(line), repr(line)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (exchange(0, "GET", GET + "\ud800", 200, None), "lone surrogate"),
        (exchange(0, "GET", GET, 200, work_object("act\udc00ive")), "lone surrogate"),
        (exchange(0, "GET", GET, 200, {"\udfff": "x"}), "lone surrogate"),
        (exchange(0, "GET", GET, 200, None).replace(WORK, WORK + "\udcff"), "not UTF-8"),  # a raw \xff, read
        (exchange(0, "G\ud800T", GET, 200, None), "lone surrogate"),
    ],
)
def test_lone_surrogates_and_bytes_that_are_not_utf8_make_a_line_malformed(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_line(line, 1)
    report = check_lines([line])
    assert [(f.line, f.kind) for f in report.findings] == [(1, Kind.MALFORMED)]


def test_a_trace_with_lone_surrogates_or_invalid_utf8_is_reported_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = exchange(1, "GET", GET, 200, ACTIVE)
    path.write_bytes(
        b"\n".join(
            [
                exchange(0, "GET", GET + "\ud800", 200, None).encode(),
                exchange(0, "GET", GET, 200, None).replace(WORK, WORK + "X").encode().replace(b"X", b"\xff"),
                exchange(0, "GET", GET, 200, work_object("act\udc00ive")).encode(),
                good.encode(),
            ]
        )
        + b"\n"
    )
    status, out, err = run_check(path)
    assert (status, err) == (1, "")
    assert "FAIL: 1 exchange on 4 lines: 0 divergent, 3 malformed" in out
    for number in (1, 2, 3):
        assert f"t.jsonl:{number}: malformed" in out
    assert "the byte 0xff" in out


@pytest.mark.parametrize("depth", [98, 99, 150, 989, 5000])
def test_nesting_deeper_than_100_levels_is_malformed(depth: int) -> None:
    body = "[" * depth + "]" * depth
    line = exchange(0, "GET", GET, 200, None).replace('"body": null}}', f'"body": {body}}}}}')
    lines = [exchange(0, "GET", GET, 200, ACTIVE), line]
    report = check_lines(lines)  # never a RecursionError
    levels = depth + 2  # the line's object and its response hold the body
    if levels > 100:
        assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.MALFORMED)]
        assert "nested deeper than 100 levels" in report.findings[0].differences[0]
    else:
        assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)]
        assert report.findings[0].actual.startswith("200 [[[")


def test_a_deep_body_is_reported_by_the_command(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = exchange(1, "GET", GET, 200, None).replace('"body": null}}', '"body": ' + "[" * 989 + "]" * 989 + "}}")
    path.write_text(exchange(0, "GET", GET, 200, ACTIVE) + "\n" + deep + "\n")
    assert printed(path)[0] == 1
    assert "deep.jsonl:2: malformed" in printed(path)[1]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\r"])
def test_lines_are_split_on_newline_only(tmp_path: Path, separator: str) -> None:
    """A line holding a character that str.splitlines splits on keeps its number, and so do the lines after."""
    path = tmp_path / "t.jsonl"
    odd = exchange(0, "GET", GET, 200, work_object("active", metadata={"note": "a" + separator + "b"}))
    odd = odd.replace("\\u2028", "\u2028").replace("\\u2029", "\u2029").replace("\\u0085", "\x85")
    odd = odd.replace("\\f", "\x0c").replace("\\u000b", "\x0b").replace("\\u001c", "\x1c").replace("\\r", "\r")
    assert separator in odd
    path.write_bytes(
        "\r\n".join([odd, exchange(1, "GET", "/nowhere", 404, error("not_found_error")), "{oops", ""]).encode()
    )
    status, out = printed(path, "--format", "json")
    data = json.loads(out)
    assert status == 1 and data["lines"] == 3
    lines = [f["line"] for f in data["findings"]]
    assert lines[-1] == 3 and set(lines) <= {1, 3}  # line 1 may be malformed (a raw control character)


def test_crlf_line_ends_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\r\n".join(line.encode() for line in example_lines()) + b"\r\n")
    status, out = printed(path)
    assert status == 0 and out.startswith("OK: 23 exchanges on 23 lines")


def test_a_bom_at_the_start_of_the_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(example_lines()).encode())
    status, out = printed(path)
    assert status == 0 and out.startswith("OK: 23 exchanges on 23 lines: 0 divergent, 0 malformed")
    # anywhere else it is not JSON
    lines = example_lines()
    path.write_bytes("\n".join([lines[0], "\ufeff" + lines[1], *lines[2:]]).encode())
    status, out = printed(path)
    assert status == 1 and "bom.jsonl:2: malformed" in out
    assert check_lines(["\ufeff" + lines[0]]).findings[0].kind is Kind.MALFORMED


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    for where in ('"body": null}}', '"status": 200'):
        line = exchange(0, "GET", GET, 200, None)
        line = line.replace(where, where.replace("null", constant).replace("200", constant))
        assert constant in line
        with pytest.raises(ValueError, match=f"not JSON: {constant} is not JSON"):
            parse_line(line, 1)
        assert check_lines([line]).findings[0].kind is Kind.MALFORMED
    nested = exchange(0, "GET", GET, 200, {"a": [1, 2]}).replace("2]", f"{constant}]")
    assert check_lines([nested]).findings[0].kind is Kind.MALFORMED


@pytest.mark.parametrize("text", ["", "\n", "\n\n  \n\t\n", "\r\n", "\ufeff", "\ufeff\n  \n"])
def test_an_empty_or_blank_trace_is_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(text, encoding="utf-8", newline="")
    for options in ([], ["--format", "json"]):
        assert main(["check", *options, str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"workstate check: {path}: no exchange to check\n"


def test_a_trace_of_malformed_lines_only_is_checked_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n\x0c\n")
    status, out = printed(path)
    assert status == 1 and "FAIL: 0 exchanges on 2 lines: 0 divergent, 2 malformed" in out


def test_an_empty_path_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", ""]) == 2
    err = capsys.readouterr().err
    assert err == "workstate check: the TRACE path is empty\n"


def test_a_directory_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- impossible answers are divergences, whatever the trace never showed ------------------------------------


def test_a_200_whose_body_is_not_a_work_object_is_a_divergence_even_mid_life() -> None:
    lines = [
        exchange(0, "GET", GET, 200, ACTIVE),  # seeded mid-life: its TTL is unknown
        exchange(0.5, "GET", GET, 200, {"id": 5, "state": ["x"]}),
        exchange(0.6, "GET", GET, 200, "<html>500</html>"),
        exchange(0.7, "POST", GET, 200, "<html>500</html>"),  # update metadata
        exchange(0.8, "POST", f"{GET}/stop", 200, [1]),
        exchange(0.9, "POST", f"{GET}/ack", 200, "ok", {"Worker-ID": "w9"}),  # 409 or 200: the worker is unknown
        exchange(1, "POST", f"{GET}/heartbeat", 200, ACTIVE),  # a work object where a heartbeat object is due
        exchange(1.1, "GET", GET, 200, ACTIVE | {"id": "work_" + "2" * 32}),  # another item's object
        exchange(1.2, "GET", GET, 200, ACTIVE | {"environment_id": "env_" + "f" * 32}),
        exchange(1.25, "POST", f"{GET}/ack", 409, "<html>409</html>", {"Worker-ID": "w9"}),  # not an envelope
        exchange(1.3, "GET", GET, 200, ACTIVE),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(n, Kind.DIVERGENCE) for n in range(2, 11)]
    by_line = {f.line: f for f in report.findings}
    assert by_line[3].differences == ("body: not a work object: the value must be a JSON object, got str",)
    assert by_line[3].rule == "4.5 get" and by_line[3].expected == "200 state=active"
    assert "body: not a heartbeat object" in by_line[7].differences[-1]
    assert by_line[8].differences == (f"id: expected {WORK} (the target's), got work_{'2' * 32}",)
    assert by_line[9].differences == (f"environment_id: expected {ENV} (the target's), got env_{'f' * 32}",)
    for finding in report.findings:
        assert not any("first seen mid-life" in d for d in finding.differences), finding


def test_a_200_not_a_work_object_about_an_item_never_shown_is_a_divergence() -> None:
    for body in ("<html>oops</html>", {"id": 5}, None):
        report = check_lines([exchange(0, "GET", GET, 200, body)])
        assert [(f.kind, f.rule, f.expected) for f in report.findings] == [
            (Kind.DIVERGENCE, "4.5 get", "200 work object")
        ]
        assert report.findings[0].differences[0].startswith("body: not a work object")
        assert "never shown" not in str(report.findings[0])
    other = exchange(0, "GET", GET, 200, work_object("queued", id="work_" + "2" * 32))
    assert check_lines([other]).findings[0].differences == (f"id: expected {WORK} (the target's), got work_{'2' * 32}",)
    elsewhere = exchange(0, "GET", GET, 200, work_object("queued", environment_id="env_" + "f" * 32))
    assert [(f.kind, f.differences) for f in check_lines([elsewhere]).findings] == [
        (Kind.DIVERGENCE, (f"environment_id: expected {ENV} (the target's), got env_{'f' * 32}",))
    ]
    html = check_lines([exchange(0, "POST", f"{GET}/ack", 409, "<html>409</html>")]).findings[0]
    assert (html.kind, html.rule, html.expected) == (Kind.DIVERGENCE, "6 errors", "409 error envelope")
    assert html.differences[0].startswith("body: not an error envelope")
    beat = check_lines([exchange(0, "POST", f"{GET}/heartbeat", 200, "<html>")]).findings[0]
    assert (beat.kind, beat.rule, beat.expected) == (Kind.DIVERGENCE, "4.3 heartbeat", "200 heartbeat object")
    # a heartbeat's answer does not show the item: a good one is still not judged
    ok_beat = {
        "type": "work_heartbeat",
        "last_heartbeat": "2026-07-01T08:15:01.000000Z",
        "lease_extended": True,
        "state": "active",
        "ttl_seconds": 60,
    }
    assert check_lines([exchange(0, "POST", f"{GET}/heartbeat", 200, ok_beat)]).findings[0].kind is Kind.NOT_JUDGED


def test_a_200_list_that_is_not_a_list_envelope_is_a_divergence_even_mid_life() -> None:
    lines = [
        exchange(0, "GET", GET, 200, ACTIVE),
        exchange(1, "GET", f"{BASE}/{ENV}/work", 200, "<html>"),
        exchange(2, "GET", f"{BASE}/{ENV}/work", 200, {"data": [ACTIVE]}),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE), (3, Kind.DIVERGENCE)]
    assert report.findings[0].differences == ("body: not a list envelope: the value must be a JSON object, got str",)
    assert report.findings[1].differences[0].startswith("body: not a list envelope: the object lacks")


# --- what the trace says is printed escaped -------------------------------------------------------------------

FORGED = GET + "\x1b]0;pwned\x07\x1b[31mRED\r\nFAKE: OK\x00\x7f\x9b\u2028\u2029\t"


def test_control_characters_from_a_trace_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "ansi.jsonl"
    path.write_text(
        "\n".join(
            [
                exchange(0, "GET", FORGED, 200, ACTIVE),
                exchange(1, "GE\x1bT", GET, 200, work_object("\x1b[2J")),
                exchange(2, "GET", "/x\x9b", 404, {"error": "\x1b[2J\u2028"}, {"x-request-id": "\x1b\x9b"}),
                exchange(3, "GET", "/y", 200, "\x1b[2J\x00"),
                '{"time": "\\u001b[2J", "request": {}, "response": {}}',
                exchange(5, "GET", "/nowhere", 404, error("not_found_error")).replace("{", "{\x1b", 1),
            ]
        )
        + "\n"
    )
    status, out = printed(path)
    assert status == 1
    assert_clean(out)
    assert "\\x1b]0;pwned\\x07\\x1b[31mRED\\r\\nFAKE: OK\\x00\\x7f\\x9b\\u2028\\u2029\\t" in out
    assert not any(line.startswith("FAKE") for line in out.split("\n"))
    assert "GE\\x1bT" in out and "\\x1b[2J" in out
    status, code_out, err = run_check(path)
    assert (status, err) == (1, "") and code_out == out
    status, out = printed(path, "--format", "json")
    assert_clean(out)
    assert json.loads(out)["findings"][0]["request"] == "GET " + FORGED  # JSON escapes, losslessly


def test_the_trace_path_is_printed_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a\x1b[2Jb\udcff.jsonl"
    try:
        path.write_text(exchange(0, "GET", "/nowhere", 200, None) + "\n")
    except (UnicodeEncodeError, OSError):
        pytest.skip("the file system does not take such a name")
    status, out = printed(path)
    assert status == 1 and "a\\x1b[2Jb\\udcff.jsonl:1: divergence" in out
    assert_clean(out)
    missing = tmp_path / "gone\x1b\udcff.jsonl"
    assert main(["check", str(missing)]) == 2
    err = capsys.readouterr().err
    assert_clean(err)
    assert "gone\\x1b\\udcff.jsonl" in err


def test_text_the_output_cannot_encode_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(exchange(0, "GET", "/caf\u00e9\U0001f600", 200, None) + "\n", encoding="utf-8")
    status, out = printed(path, encoding="ascii")
    assert status == 1 and "GET /caf\\xe9\\U0001f600" in out
    status, out = printed(path)
    assert "GET /caf\u00e9\U0001f600" in out  # printable text that can be encoded is printed as it is


# --- misuse from Python ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: check_lines([], skew=5), "skew"),  # type: ignore[arg-type]
        (lambda: check_lines([], skew=None), "skew"),  # type: ignore[arg-type]
        (lambda: check_lines([], skew=timedelta(seconds=-1)), "skew"),
        (lambda: check_lines([], skew=timedelta(days=2)), "skew"),
        (lambda: check_lines([], policy="x"), "policy"),  # type: ignore[arg-type]
        (lambda: check_lines([None]), "lines"),  # type: ignore[list-item]
        (lambda: check_lines(["", b"{}"]), "lines"),  # type: ignore[list-item]
        (lambda: check_lines(exchange(0, "GET", "/x", 404, None)), "lines"),
        (lambda: check_lines(b"{}\n"), "lines"),  # type: ignore[arg-type]
        (lambda: check_lines(5), "lines"),  # type: ignore[arg-type]
        (lambda: Checker(skew=1.0), "skew"),  # type: ignore[arg-type]
        (lambda: parse_line(5, 1), "text"),  # type: ignore[arg-type]
    ],
)
def test_misuse_from_python_is_invalid_input_naming_the_argument(call: Any, param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.param == param


def test_skew_is_used_when_it_is_valid() -> None:
    lines = [
        exchange(0, "GET", GET, 200, ACTIVE),
        exchange(
            1, "POST", f"{GET}/stop", 200, ACTIVE | {"state": "stopping", "stop_requested_at": "2026-07-01T08:15:04Z"}
        ),
    ]
    assert check_lines(lines, skew=timedelta(seconds=3)).findings == ()
    assert check_lines(lines, skew=timedelta(0)).findings[0].kind is Kind.NOT_JUDGED


# --- which x-request-id an error echoes: one rule, the reference's (workstate.api.echoed_request_id) ---------


@pytest.mark.parametrize(
    ("headers", "echoed"),
    [
        ({"x-request-id": "mine"}, "mine"),
        ({"X-Request-ID": " \tmine \t"}, "mine"),  # surrounding spaces and tabs go
        ([("x-request-id", "a"), ("X-Request-Id", "a")], "a"),  # twice, the same value: one header
        ({}, None),
        ({"x-request-id": " \t"}, None),  # empty
        ({"x-request-id": "abc\x00def"}, None),  # CR, LF or NUL: HTTP cannot carry it
        ({"x-request-id": "a\r\nb"}, None),
        ({"x-request-id": "a\nb"}, None),
        ([("x-request-id", "a"), ("X-Request-Id", "b")], None),  # twice, different values: malformed
        ({"x-request-id": "a", "X-Request-Id": "b"}, None),  # as a trace's headers object holds it
    ],
)
def test_the_echoed_request_id_is_the_reference_servers_rule(headers: Any, echoed: str | None) -> None:
    from workstate import api

    assert "echoed_request_id" in api.__all__
    assert api.echoed_request_id(headers) == echoed
    server = Server()
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    refused = server.handle(Request("GET", "/nowhere", [("Authorization", "Bearer t"), *pairs]), T)
    assert refused.status == 404
    if echoed is None:
        assert refused.json["request_id"] == "req_" + "0" * 31 + "1"  # generated
    else:
        assert refused.json["request_id"] == echoed


@pytest.mark.parametrize(
    "headers",
    [
        {"x-request-id": "abc\x00def"},
        {"x-request-id": "a\r\nb"},
        {"x-request-id": "a", "X-Request-Id": "b"},
        {"x-request-id": ""},
    ],
)
def test_an_x_request_id_the_reference_does_not_echo_needs_no_echo_in_a_trace(headers: dict[str, str]) -> None:
    """The recorded server generated its own request id, as the reference does: legal (reviewer's crafted.py)."""
    server = Server()
    env = server.create_environment(now=T)
    target = f"{BASE}/{env}/work/work_{'f' * 32}"
    answer = server.handle(Request("GET", target, [("Authorization", "Bearer t"), *headers.items()]), T)
    assert answer.status == 404 and answer.json["request_id"].startswith("req_")
    for request_id in (answer.json["request_id"], "req_" + "a" * 32):  # the reference's, or a real server's own
        body = answer.json | {"request_id": request_id}
        assert check_lines([exchange(0, "GET", target, 404, body, headers)]).findings == ()
    # an id that is echoed must still be echoed
    echoed = check_lines([exchange(0, "GET", target, 404, answer.json, {"x-request-id": " abc\t"})])
    assert echoed.findings[0].kind is Kind.DIVERGENCE
    assert echoed.findings[0].differences == (
        f"request_id: expected the x-request-id 'abc', got {answer.json['request_id']!r}",
    )


# --- lists: an item the trace never showed may exist --------------------------------------------------------


class Recorder:
    """The reference server, with the exchanges asked for recorded as trace lines; items are created off the
    trace (as ``examples/http_server.py``'s test routes create them)."""

    def __init__(self) -> None:
        self.server = Server()
        self.now = T
        self.env = self.server.create_environment(now=T)
        self.base = f"{BASE}/{self.env}/work"
        self.sessions = 0

    def create(self) -> str:
        self.sessions += 1
        return self.server.create_work(self.env, session_id=f"sess_{self.sessions:032x}", now=self.now)

    def answer(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
        self.now += timedelta(seconds=1)
        request = Request(method, target, {"Authorization": "Bearer t", **(headers or {})}, body)
        response = self.server.handle(request, self.now)
        return {
            "time": self.now.isoformat(),
            "request": {
                "method": method,
                "target": target,
                "headers": dict(request.headers),  # type: ignore[arg-type]
                "body": body.decode() if body else None,
            },
            "response": {"status": response.status, "body": response.json},
        }

    def line(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> str:
        return json.dumps(self.answer(method, target, headers, body))


def test_a_list_is_not_judged_where_an_item_the_trace_never_showed_could_explain_it() -> None:
    """Reviewer's trace t1.jsonl:55: items created off the trace make ``has_more`` true where the replay,
    which knows only the items the trace showed, says false; that is legal, so not judged."""
    rec = Recorder()
    ids = [rec.create() for _ in range(5)]
    lines = [
        rec.line("GET", f"{rec.base}?limit=2"),  # 0 1, has_more: 2 3 4 are unseen
        rec.line("GET", f"{rec.base}?limit=1&after_id={ids[0]}"),  # 1, has_more
        rec.line("GET", f"{rec.base}?page={ids[1]}&limit=1"),  # 2, has_more
        rec.line("GET", f"{rec.base}?before_id={ids[3]}&limit=10"),  # 0 1 2: nothing precedes 0, agreed
        rec.line("GET", f"{rec.base}?before_id={ids[4]}&limit=1"),  # 3, has_more: 0 1 2 precede, known
        rec.line("GET", f"{rec.base}?limit=4"),  # 0 1 2 3: all known, 4 unseen
        rec.line("GET", f"{rec.base}?after_id={ids[2]}"),  # 3 4: 4 seen now, nothing follows
        rec.line("GET", f"{rec.base}?limit=4"),  # now judged: 4 is known
    ]
    report = check_lines(lines)
    assert report.exit_status == 0
    assert [(f.line, f.kind) for f in report.findings] == [(n, Kind.NOT_JUDGED) for n in (1, 2, 3, 6)]
    for finding in report.findings:
        assert finding.differences[0] == "has_more: expected False, got True"
        assert "the trace never showed" in finding.differences[-1]
    assert report.findings[0].differences[-1] == (
        f"an item the trace never showed may follow {ids[1]} (the page holds the limit, 2 items)"
    )


def test_issue11_5b_a_backward_page_is_judged_in_its_own_direction() -> None:
    """A ``before_id`` page's ``has_more`` says whether items precede ``first_id`` (its ``next_page``): an unseen
    item may explain it on a full page; on a short page nothing can precede, so it is a divergence."""
    rec = Recorder()
    ids = [rec.create() for _ in range(3)]
    short = rec.answer("GET", f"{rec.base}?before_id={ids[2]}&limit=5")  # 0 1: nothing precedes 0
    short["response"]["body"].update(has_more=True, next_page=ids[0])
    lines = [
        rec.line("GET", f"{rec.base}?before_id={ids[2]}&limit=1"),  # 1, has_more: 0 precedes, unseen
        rec.line("GET", f"{rec.base}?before_id={ids[2]}&limit=2"),  # 0 1: 0 seen now, nothing precedes it
        json.dumps(short),
    ]
    first = json.loads(lines[0])["response"]["body"]
    assert first["has_more"] is True and first["next_page"] == ids[1] == first["first_id"]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(1, Kind.NOT_JUDGED), (3, Kind.DIVERGENCE)]
    assert report.findings[0].differences[-1] == (
        f"an item the trace never showed may precede {ids[1]} (the page holds the limit, 1 items)"
    )
    assert "has_more: expected False, got True" in report.findings[1].differences


def list_line(rec: Recorder, target: str, change: Any) -> str:
    """A list the reference answers, then changed as a wrong server would answer it (first/last/next kept in step)."""
    value = rec.answer("GET", target)
    page = value["response"]["body"]
    change(page)
    page["first_id"] = page["data"][0]["id"] if page["data"] else None
    page["last_id"] = page["data"][-1]["id"] if page["data"] else None
    page["next_page"] = page["last_id"] if page["has_more"] else None
    return json.dumps(value)


def test_what_no_unseen_item_can_explain_in_a_list_is_a_divergence() -> None:
    rec = Recorder()
    ids = [rec.create() for _ in range(4)]
    everything = rec.line("GET", f"{rec.base}?limit=5")  # every item known from here on
    shown = json.loads(everything)["response"]["body"]["data"]
    stop = rec.answer("POST", f"{rec.base}/{ids[0]}/stop")  # a change the trace does not show
    assert stop["response"]["status"] == 200
    cases = {
        # has_more on a page shorter than the limit: nothing can follow
        "short": list_line(rec, f"{rec.base}?limit=3&after_id={ids[1]}", lambda p: p.update(has_more=True)),
        # a known item follows, but has_more is false
        "follows": list_line(rec, f"{rec.base}?limit=2", lambda p: p.update(has_more=False)),
        # a known item skipped
        "skipped": list_line(rec, f"{rec.base}?limit=2", lambda p: p["data"].__setitem__(1, shown[2])),
        # more items than the limit
        "limit": list_line(rec, f"{rec.base}?limit=1", lambda p: p["data"].append(shown[1])),
        # creation order broken
        "order": list_line(rec, f"{rec.base}?limit=2&after_id={ids[1]}", lambda p: p["data"].reverse()),
        # a known (queued) item shown in another state: stopped by an exchange the trace does not show
        "state": rec.line("GET", f"{rec.base}?limit=1"),
        # has_more with an empty page
        "empty": list_line(rec, f"{rec.base}?after_id={ids[3]}", lambda p: p.update(has_more=True)),
    }
    for name, line in cases.items():
        report = check_lines([everything, line])
        assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)], name
    assert check_lines([everything, cases["short"]]).findings[0].differences == ("has_more: expected False, got True",)
    assert check_lines([everything, cases["limit"]]).findings[0].differences[0] == (
        "data: 2 items, more than the limit 1"
    )
    assert check_lines([everything, cases["state"]]).findings[0].differences == (
        "data[0].state: expected queued, got stopped",
        "data[0].stop_requested_at: expected null, got " + stop["response"]["body"]["stop_requested_at"],
        "data[0].stopped_at: expected null, got " + stop["response"]["body"]["stopped_at"],
    )
    # without the line that showed every item, what an unseen item may explain is legal or not judged
    alone = {name: check_lines([line]).exit_status for name, line in cases.items()}
    assert alone == {"short": 1, "follows": 0, "skipped": 0, "limit": 1, "order": 1, "state": 0, "empty": 1}


def legal_traffic(seed: int, exchanges: int = 150) -> list[str]:
    """Random legal traffic of the reference server: items created off the trace, and some of the answers
    that change nothing (get, list, stats) left out of it."""
    rnd = random.Random(seed)
    rec = Recorder()
    items = [rec.create() for _ in range(8)]
    tokens: dict[str, str] = {}
    lines = []
    for _ in range(exchanges):
        rec.now += timedelta(seconds=rnd.choice([0, 0.3, 3, 40, 200]))
        work = rnd.choice(items)
        headers = {"Worker-ID": rnd.choice(["w1", "w2", "w3"])} if rnd.random() < 0.8 else {}
        op = rnd.choice(["poll", "ack", "heartbeat", "heartbeat", "stop", "get", "list", "list", "stats", "create"])
        if op == "create":
            if len(items) < 30:
                items.append(rec.create())
            continue
        if op == "poll":
            value = rec.answer("GET", f"{rec.base}/poll?reclaim_older_than_ms={rnd.choice([0, 5000, 60000])}", headers)
        elif op == "ack":
            value = rec.answer("POST", f"{rec.base}/{work}/ack", headers)
        elif op == "heartbeat":
            token = tokens.get(work, "NO_HEARTBEAT").replace("+", "%2B")
            value = rec.answer("POST", f"{rec.base}/{work}/heartbeat?expected_last_heartbeat={token}", headers)
            if value["response"]["status"] == 200:
                tokens[work] = value["response"]["body"]["last_heartbeat"]
        elif op == "stop":
            value = rec.answer("POST", f"{rec.base}/{work}/stop", headers, rnd.choice([b"", b'{"force": true}']))
        elif op == "get":
            value = rec.answer("GET", f"{rec.base}/{work}", headers)
        elif op == "list":
            cursor = rnd.choice(["", f"&after_id={work}", f"&before_id={work}", f"&page={work}"])
            value = rec.answer("GET", f"{rec.base}?limit={rnd.choice([1, 2, 3, 20])}{cursor}", headers)
        else:
            value = rec.answer("GET", f"{rec.base}/stats", headers)
        if op in ("get", "list", "stats") and rnd.random() < 0.3:
            continue  # read-only: leaving it out of the trace changes nothing
        lines.append(json.dumps(value))
    return lines


def test_legal_traffic_with_items_the_trace_never_showed_has_no_divergence() -> None:
    """Like the reviewer's traces: legal traffic of the reference, items created off the trace."""
    unseen = 0
    for seed in range(12):
        lines = legal_traffic(seed)
        for start in (0, len(lines) // 3, 2 * len(lines) // 3):  # a trace may start anywhere
            report = check_lines(lines[start:])
            assert [f for f in report.findings if f.kind is not Kind.NOT_JUDGED] == [], (seed, start)
            unseen += sum("has_more: expected False, got True" in f.differences for f in report.findings)
    assert unseen >= 10  # the traffic does meet lists that items never shown make longer


def test_a_poll_may_deliver_an_item_whose_lease_the_trace_never_saw_lapse() -> None:
    """An item first seen ``active`` has an unknown TTL: its lease may have lapsed (60 s here, 600 s assumed),
    so a poll that hands it out again is not judged; a poll handing out an item nothing can requeue still is."""
    rec = Recorder()
    first = rec.create()
    rec.answer("GET", f"{rec.base}/poll", {"Worker-ID": "w1"})
    rec.answer("POST", f"{rec.base}/{first}/ack", {"Worker-ID": "w1"})
    rec.answer("POST", f"{rec.base}/{first}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", {"Worker-ID": "w1"})
    shown = rec.line("GET", f"{rec.base}/{first}")  # the trace starts here: active, its TTL unknown
    rec.now += timedelta(seconds=120)  # the 60 s lease lapses: requeued
    poll = rec.line("GET", f"{rec.base}/poll", {"Worker-ID": "w2"})
    assert json.loads(poll)["response"]["body"]["id"] == first
    report = check_lines([shown, poll])
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED)]
    assert report.findings[0].differences == (
        f"delivered: expected null, got {first}",
        f"{first} is not deliverable: the work item is not deliverable now",
        f"{first} was first seen mid-life; its ttl is unknown",
    )
    stopped = json.loads(shown)
    stopped["response"]["body"].update(state="stopped", stopped_at=stopped["time"])
    report = check_lines([json.dumps(stopped), poll])  # a stopped item is never delivered again
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)]


def test_a_list_showing_an_item_the_replay_cannot_adopt_is_not_judged() -> None:
    other = "work_" + "2" * 32
    lines = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, work_object("queued")),
        # another live item of the same session: the replay cannot hold both; as for a get or a poll, not judged
        exchange(
            1,
            "GET",
            f"{BASE}/{ENV}/work?after_id={WORK}",
            200,
            {
                "data": [work_object("queued") | {"id": other}],
                "first_id": other,
                "last_id": other,
                "has_more": False,
                "next_page": None,
            },
        ),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED)]
    assert report.findings[0].differences[0].startswith(f"could not seed {other}: ")


def test_a_key_given_twice_in_one_object_makes_the_line_malformed() -> None:
    good = (ROOT / "examples" / "trace.jsonl").read_text(encoding="utf-8").split("\n")[0]
    assert parse_line(good, 1).status == 200
    twice = good.replace('{"time":', '{"time":"2026-07-01T08:15:01Z","time":', 1)
    with pytest.raises(ValueError, match="duplicate key 'time'"):
        parse_line(twice, 1)
    header_twice = good.replace('"headers":{', '"headers":{"Worker-ID":"w1","Worker-ID":"w2",', 1)
    report = check_lines([good, header_twice])
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.MALFORMED)]


def _recorded(server: Server, lines: list[str], at: float, request: Request, body: Any = None) -> Any:
    """Send ``request`` at T + ``at`` and record the exchange (with ``body`` in place of the answer's, if given)."""
    response = server.handle(request, T + timedelta(seconds=at))
    shown = response.json if body is None else body
    lines.append(
        json.dumps(
            {
                "time": render_timestamp(T + timedelta(seconds=at)),
                "request": {"method": request.method, "target": request.target, "headers": dict(request.headers),
                            "body": request.body.decode() if request.body else None},
                "response": {"status": response.status, "body": shown},
            }
        )
    )  # fmt: skip
    return response.json


@pytest.mark.parametrize("stop", ["none", "graceful", "forced"])
def test_no_unseen_lapse_makes_a_stopped_stopping_or_freshly_leased_item_deliverable(stop: str) -> None:
    server = Server()
    env = server.create_environment(now=T)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T)
    base = f"/api/v1/cloud/environments/{env}/work"
    w1, w2 = {"Authorization": "Bearer t", "Worker-ID": "w1"}, {"Authorization": "Bearer t", "Worker-ID": "w2"}
    for at, request in [(0, Request("GET", base + "/poll", w1)), (1, Request("POST", f"{base}/{work}/ack", w1)),
                        (2, Request("POST", f"{base}/{work}/heartbeat", w1))]:  # fmt: skip
        assert server.handle(request, T + timedelta(seconds=at)).status == 200  # off the trace
    lines: list[str] = []
    shown = _recorded(server, lines, 3, Request("GET", f"{base}/{work}", w1))  # seen mid-life, TTL unknown
    if stop != "none":
        body = b'{"force": true}' if stop == "forced" else b""
        shown = _recorded(server, lines, 4, Request("POST", f"{base}/{work}/stop", w1, body))
    # a wrong server hands the item out at 5 s: stopped and stopping items never lapse into the queue, and an
    # active item heartbeated at 2 s holds its lease until at least 2 s + the shortest TTL (10 s)
    _recorded(server, lines, 5, Request("GET", base + "/poll", w2), body=shown)
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(len(lines), Kind.DIVERGENCE)]


@pytest.mark.parametrize("change", [{"metadata": {"k": "v"}}, {"state": "starting"}])
def test_an_unseen_lapse_explains_no_change_a_lapse_cannot_make_in_a_list(change: dict[str, Any]) -> None:
    server = Server()
    env = server.create_environment(now=T)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T)
    base = f"/api/v1/cloud/environments/{env}/work"
    w1 = {"Authorization": "Bearer t", "Worker-ID": "w1"}
    for at, request in [(0, Request("GET", base + "/poll", w1)), (1, Request("POST", f"{base}/{work}/ack", w1)),
                        (2, Request("POST", f"{base}/{work}/heartbeat", w1))]:  # fmt: skip
        assert server.handle(request, T + timedelta(seconds=at)).status == 200
    lines: list[str] = []
    _recorded(server, lines, 3, Request("GET", f"{base}/{work}", w1))  # active, TTL unknown
    listed = server.handle(Request("GET", base, w1), T + timedelta(seconds=600)).json  # long after any lease
    wrong = {**listed, "data": [{**listed["data"][0], **change}]}
    _recorded(server, lines, 600, Request("GET", base, w1), body=wrong)
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)]


# --- issue 11, point 2: legal traffic the checker called wrong --------------------------------------------------


def _leased(rec: Recorder, *, stop: bool) -> tuple[str, str, list[str]]:
    """An item polled, acked and heartbeated (the default TTL, 60 s) off the trace, then (if ``stop``) asked to
    stop; the trace starts with a get of it, so its TTL is unknown to the checker. Returns the item, its
    ``last_heartbeat`` and the trace so far."""
    work = rec.create()
    w1 = {"Worker-ID": "w1"}
    rec.answer("GET", f"{rec.base}/poll", w1)
    rec.answer("POST", f"{rec.base}/{work}/ack", w1)
    beat = rec.answer("POST", f"{rec.base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", w1)
    assert beat["response"]["body"]["ttl_seconds"] == 60
    if stop:
        rec.answer("POST", f"{rec.base}/{work}/stop", w1)
    return work, beat["response"]["body"]["last_heartbeat"], [rec.line("GET", f"{rec.base}/{work}")]


@pytest.mark.parametrize("seen", ["stopping", "active, the lease lapse stops it"])
def test_issue11_2a_unknown_ttl_lapse_of_stopping_not_judged(seen: str) -> None:
    """Seen ``stopping`` with its TTL unknown, the item lapses into ``stopped`` at heartbeat + 60 s (the default
    TTL). A list long after shows it so: legal for a TTL in the policy's range, though the replay, which assumes
    the largest TTL, lapsed it at heartbeat + 600 s. Not judged, and reported once. (The same for an ``active``
    item under ``on_lease_expiry=stop``.)"""
    policy = Policy(on_lease_expiry=OnLeaseExpiry.STOP) if seen.startswith("active") else Policy()
    rec = Recorder()
    rec.server = Server(policy)
    rec.env = rec.server.create_environment(now=rec.now)
    rec.base = f"{BASE}/{rec.env}/work"
    work, beat, lines = _leased(rec, stop=seen == "stopping")
    rec.now += timedelta(seconds=700)  # past heartbeat + 600 s: the replay lapsed it too, later
    lines += [rec.line("GET", rec.base), rec.line("GET", rec.base), rec.line("GET", f"{rec.base}/{work}")]
    shown = json.loads(lines[1])["response"]["body"]["data"][0]
    assert shown["state"] == "stopped"
    assert parse_timestamp(shown["stopped_at"], "x") == parse_timestamp(beat, "x") + timedelta(seconds=60)
    report = check_lines(lines, policy)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED)]
    assert report.exit_status == 0
    # a stop time no TTL of the policy's range explains (heartbeat + 5 s; the shortest TTL is 10 s) still diverges
    early = json.loads(lines[1])
    early["response"]["body"]["data"][0]["stopped_at"] = render_timestamp(
        parse_timestamp(beat, "x") + timedelta(seconds=5)
    )
    report = check_lines([lines[0], json.dumps(early)], policy)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)]


def test_issue11_2b_times_behind_created_at_keep_the_poll_delivery() -> None:
    """The trace's clock is 1 ms behind the server that stamped ``created_at``: the poll's delivery to w1 (at
    the item's own clock, as the core keeps timelines monotonic) must not be lost, so w2's ack owes 409."""
    older_id = "work_" + "0" * 32
    older = work_object("queued", id=older_id, data={"type": "session", "id": "sess_" + "9" * 32})
    younger = work_object("queued", created_at=render_timestamp(T + timedelta(milliseconds=1)))
    lines = [
        exchange(-1, "GET", f"{BASE}/{ENV}/work/{older_id}", 200, older),  # its delivery unknown
        exchange(0, "GET", f"{BASE}/{ENV}/work/poll", 200, younger, {"Worker-ID": "w1"}),  # older may be taken
        exchange(
            0.5, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 409, error("invalid_request_error"), {"Worker-ID": "w2"}
        ),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED)]
    # and a 200 for w2 is the divergence
    lines[2] = exchange(0.5, "POST", f"{BASE}/{ENV}/work/{WORK}/ack", 200, younger, {"Worker-ID": "w2"})
    report = check_lines(lines)
    assert [(f.line, f.kind, f.rule) for f in report.findings][1:] == [
        (3, Kind.DIVERGENCE, "4.2 ack-claimed-by-another")
    ]


@pytest.mark.parametrize("first", ["get", "ack", "stop", "heartbeat", "update", "unauthorized"])
def test_issue11_2c_environment_seen_only_through_a_404_is_not_assumed(first: str) -> None:
    """An empty self_hosted environment answers an item lookup 404 too: such an answer does not show that the
    environment exists, so a later 404 to a poll, a list or stats is legal."""
    gone = "env_" + "d" * 32
    item = f"{BASE}/{gone}/work/{WORK}"
    method, target = {
        "get": ("GET", item),
        "ack": ("POST", item + "/ack"),
        "stop": ("POST", item + "/stop"),
        "heartbeat": ("POST", item + "/heartbeat"),
        "update": ("POST", item),
        "unauthorized": ("GET", item),
    }[first]
    seen = exchange(0, method, target, 404, error("not_found_error"))
    if first == "update":  # with a valid body: without one, an existing environment answers 400 first
        seen = seen.replace('"body": null}, "response"', '"body": "{}"}, "response"')
    if first == "unauthorized":  # a 401 is decided before the environment: it does not show it either
        seen = json.dumps(json.loads(seen) | {"response": {"status": 401, "body": error("authentication_error")}})
        seen = seen.replace('"Authorization": "Bearer t"', '"Authorization": "Basic x"')
    lines = [
        seen,
        exchange(1, "GET", f"{BASE}/{gone}/work/poll", 404, error("not_found_error")),
        exchange(2, "GET", f"{BASE}/{gone}/work", 404, error("not_found_error")),
        exchange(3, "GET", f"{BASE}/{gone}/work/stats", 404, error("not_found_error")),
        exchange(4, "GET", item, 404, error("not_found_error")),
    ]
    report = check_lines(lines)
    assert report.findings == ()
    # an environment that does exist (created off the trace) is still seeded from the first answer showing it
    report = check_lines([lines[0], exchange(1, "GET", f"{BASE}/{gone}/work/poll", 200, None), *lines[2:]])
    assert [(f.line, f.kind) for f in report.findings] == [(3, Kind.DIVERGENCE), (4, Kind.DIVERGENCE)]


def test_issue11_2d_body_less_204_stop_is_reported_once() -> None:
    """A 204 with no body where the stop's 200 was owed is one divergence; the recorded server did stop the
    item (a 2xx), so the reference keeps its change and the later lines that show it agree."""
    rec = Recorder()
    work = rec.create()
    w1 = {"Worker-ID": "w1"}
    lines = [
        rec.line("GET", f"{rec.base}/poll", w1),
        rec.line("POST", f"{rec.base}/{work}/ack", w1),
        rec.line("POST", f"{rec.base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", w1),
    ]
    stop = rec.answer("POST", f"{rec.base}/{work}/stop", w1)
    assert stop["response"]["body"]["state"] == "stopping"
    stop["response"] = {"status": 204, "body": None}
    lines += [
        json.dumps(stop),
        rec.line("GET", f"{rec.base}/{work}"),
        rec.line("POST", f"{rec.base}/{work}/ack", w1),
        rec.line("GET", rec.base),
        rec.line("POST", f"{rec.base}/{work}/stop", w1),
        rec.line("GET", f"{rec.base}/{work}"),
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind, f.differences) for f in report.findings] == [
        (4, Kind.DIVERGENCE, ("status: expected 200, got 204",))
    ]


def test_issue11_2e_poll_skipping_an_older_known_deliverable_item_is_a_divergence() -> None:
    """An older item whose delivery the trace showed is deliverable again (its reclaim window passed); a poll
    that hands out a younger item first seen there cannot be justified by the younger item's unknown history."""
    older = work_object("queued")
    younger = work_object("queued", id="work_" + "2" * 32, created_at="2026-07-01T08:10:00.000000Z")
    younger["data"] = {"type": "session", "id": "sess_" + "6" * 32}
    lines = [
        exchange(0, "GET", f"{BASE}/{ENV}/work/poll", 200, older, {"Worker-ID": "w1"}),  # delivered: known
        exchange(10, "GET", f"{BASE}/{ENV}/work/poll", 200, younger, {"Worker-ID": "w2"}),  # older waits since 5 s
    ]
    report = check_lines(lines)
    assert [(f.line, f.kind, f.rule) for f in report.findings] == [
        (2, Kind.DIVERGENCE, "4.1 poll: the oldest deliverable item by creation order, else null")
    ]
    assert f"{WORK} is deliverable and older by creation order" in report.findings[0].differences
    # an older item with an unknown delivery in between excuses only itself, not the known one
    oldest = work_object("queued", id="work_" + "0" * 32, created_at="2026-07-01T07:00:00.000000Z")
    oldest["data"] = {"type": "session", "id": "sess_" + "7" * 32}
    report = check_lines([exchange(-1, "GET", f"{BASE}/{ENV}/work/{oldest['id']}", 200, oldest), *lines])
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED), (3, Kind.DIVERGENCE)]
    assert f"{WORK} is deliverable and older by creation order" in report.findings[1].differences
    # ... while unknown deliveries of every older deliverable item still leave the pick not judged
    report = check_lines([exchange(-1, "GET", f"{BASE}/{ENV}/work/{WORK}", 200, older), lines[1]])
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.NOT_JUDGED)]


def test_issue11_2b_times_behind_a_heartbeat_of_a_stopping_item_starts_nothing() -> None:
    """Also found with a trace clock behind the server's: a heartbeat that leaves an item ``stopping`` (stopped
    before it started) sets no ``started_at``; taking the recorded ``last_heartbeat`` must not invent one."""
    server = Server()
    env = server.create_environment(now=T)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T)
    base = f"/api/v1/cloud/environments/{env}/work"
    w1 = {"Authorization": "Bearer t", "Worker-ID": "w1"}
    lines: list[str] = []
    for at, request in [
        (1, Request("GET", base + "/poll", w1)),
        (2, Request("POST", f"{base}/{work}/ack", w1)),
        (3, Request("POST", f"{base}/{work}/stop", w1)),  # stopping, never started
        (4, Request("POST", f"{base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", w1)),
        (30, Request("POST", f"{base}/{work}/stop", w1)),  # the confirmation
    ]:
        _recorded(server, lines, at, request)
    behind = [json.loads(line) for line in lines]
    for value in behind:  # the trace's clock is 1 ms behind the server that stamped the answers
        value["time"] = render_timestamp(parse_timestamp(value["time"], "time") - timedelta(milliseconds=1))
    assert json.loads(lines[-1])["response"]["body"]["started_at"] is None
    assert check_lines([json.dumps(value) for value in behind]).findings == ()


# --- issue 11, point 1: replies are read tolerantly ------------------------------------------------------------


def test_issue11_1_unknown_reply_keys_are_notes_not_divergences(tmp_path: Path) -> None:
    """Other servers of this API family add keys to their replies (a poll answer's ``"secret": null``, an
    error's ``details``): not a divergence. The checker notes each unknown key path once per kind of object,
    and judges the answer by the fields it knows."""
    rec = Recorder()
    work = rec.create()
    w1, w2 = {"Worker-ID": "w1"}, {"Worker-ID": "w2"}
    values = [
        rec.answer("GET", f"{rec.base}/poll", w1),
        rec.answer("POST", f"{rec.base}/{work}/ack", w1),
        rec.answer("POST", f"{rec.base}/{work}/ack", w2),  # 409
        rec.answer("POST", f"{rec.base}/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", w1),
        rec.answer("GET", f"{rec.base}/{work}"),
        rec.answer("GET", rec.base),
        rec.answer("GET", f"{rec.base}/stats"),
        rec.answer("POST", f"{rec.base}/{work}/stop", w1),
        rec.answer("GET", f"{rec.base}/{work}"),
    ]
    assert [v["response"]["status"] for v in values] == [200, 200, 409, 200, 200, 200, 200, 200, 200]
    bodies = [v["response"]["body"] for v in values]
    bodies[0] |= {"secret": None}
    bodies[0]["data"] |= {"extra": 1}
    bodies[1] |= {"secret": None}
    bodies[2] |= {"details": "x"}
    bodies[2]["error"] |= {"code": "claimed"}
    bodies[3] |= {"lease_id": "l1"}
    bodies[4] |= {"secret": "s"}
    bodies[5] |= {"object": "list"}
    bodies[5]["data"][0] |= {"secret": None}
    bodies[6] |= {"queue": "default"}
    bodies[7] |= {"secret": None}
    bodies[8] |= {"secret": None, "region": "eu"}
    lines = [json.dumps(v) for v in values]
    report = check_lines(lines)
    assert report.exit_status == 0
    work_keys, error_keys, list_keys = ("data.extra", "secret"), ("error.code", "details"), ("data[0].secret", "object")
    assert [(f.line, f.kind.value, f.differences) for f in report.findings] == [
        (1, "note", tuple(f"unknown key {key} in a work object: ignored" for key in work_keys)),
        (3, "note", tuple(f"unknown key {key} in an error envelope: ignored" for key in error_keys)),
        (4, "note", ("unknown key lease_id in a heartbeat object: ignored",)),
        (6, "note", tuple(f"unknown key {key} in a list envelope: ignored" for key in list_keys)),
        (7, "note", ("unknown key queue in a stats object: ignored",)),
        (9, "note", ("unknown key region in a work object: ignored",)),
    ]
    assert report.to_json()["notes"] == 6 and report.to_json()["divergences"] == 0
    assert report.summary().endswith(", 6 notes")
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    status, out = printed(path)
    assert (
        status == 0 and "t.jsonl:1: note: GET " in out and "    - unknown key secret in a work object: ignored" in out
    )
    # read tolerantly, judged by what is known: a wrong answer with an unknown key is still a divergence
    wrong = json.loads(lines[2])
    wrong["response"] = {"status": 200, "body": bodies[1]}
    report = check_lines([*lines[:2], json.dumps(wrong)])
    assert [(f.line, f.kind) for f in report.findings] == [(1, Kind.NOTE), (3, Kind.DIVERGENCE)]
    assert report.findings[1].rule == "4.2 ack-bound-to-another"


# --- issue 13: the stats numbers are judged, within what the unknowns allow ----------------------------------


def _stats_line(rec: Recorder, change: Any = None) -> str:
    value = rec.answer("GET", f"{rec.base}/stats")
    if change is not None:
        change(value["response"]["body"])
    return json.dumps(value)


def test_stats_numbers_the_items_and_polls_of_the_trace_force_are_judged() -> None:
    rec = Recorder()
    rec.create()  # the one the poll delivers
    second = rec.create()
    rec.now += timedelta(seconds=10)
    shown = [
        rec.line("GET", f"{rec.base}/{second}"),  # queued, its delivery unknown: deliverable or pending
        rec.line("GET", f"{rec.base}/poll", {"Worker-ID": "w1"}),  # delivers `first`: pending for 5 s
    ]
    honest = _stats_line(rec)
    assert json.loads(honest)["response"]["body"]["pending"] == 1
    assert check_lines([*shown, honest]).findings == ()
    oldest = json.loads(honest)["response"]["body"]["oldest_queued_at"]
    cases = {
        "pending": (lambda b: b.update(pending=0, depth=2), "pending: 0, but 1 items the trace showed"),
        "sum": (lambda b: b.update(pending=1, depth=0), "depth + pending: 1, but 2 items"),
        "null": (lambda b: b.update(oldest_queued_at=None), "oldest_queued_at: null with depth + pending = 2"),
        "empty": (lambda b: b.update(depth=0, pending=0, oldest_queued_at=None), "depth + pending: 0, but 2 items"),
        "later": (
            lambda b: b.update(oldest_queued_at="2026-07-01T09:00:00.000000Z"),
            f"oldest_queued_at: 2026-07-01T09:00:00.000000Z, but {oldest} is the created_at",
        ),
        "polling": (lambda b: b.update(workers_polling=0), "workers_polling: 0, but 1 workers polled"),
    }
    for name, (change, message) in cases.items():
        rec_copy_line = json.loads(honest)
        change(rec_copy_line["response"]["body"])
        report = check_lines([*shown, json.dumps(rec_copy_line)])
        assert [(f.line, f.kind, f.rule) for f in report.findings] == [(3, Kind.DIVERGENCE, "4.7 stats")], name
        assert any(d.startswith(message) for d in report.findings[0].differences), (name, report.findings[0])
    # What an unseen item or an unseen poll explains is legal: more depth, more pending, an older item, more workers.
    for change in (
        lambda b: b.update(depth=b["depth"] + 3),
        lambda b: b.update(pending=b["pending"] + 1),
        lambda b: b.update(oldest_queued_at="2026-07-01T07:00:00.000000Z"),
        lambda b: b.update(workers_polling=7),
    ):
        line = json.loads(honest)
        change(line["response"]["body"])
        assert check_lines([*shown, json.dumps(line)]).findings == ()
    # Without the lines that showed the items and the poll, nothing is forced.
    assert (
        check_lines(
            [
                json.dumps(
                    dict(
                        json.loads(honest),
                        response={
                            "status": 200,
                            "body": {
                                "type": "work_queue_stats",
                                "depth": 0,
                                "pending": 0,
                                "oldest_queued_at": None,
                                "workers_polling": 0,
                            },
                        },
                    )
                )
            ]
        ).findings
        == ()
    )


def test_stats_at_the_edges_of_a_window_are_not_judged_within_the_skew() -> None:
    """The reclaim window and the workers-polling window end at an instant the recorded server's clock may not
    have reached yet: around them (two skews), neither answer is wrong."""
    rec = Recorder()
    rec.create()
    poll = rec.line("GET", f"{rec.base}/poll", {"Worker-ID": "w1"})
    for seconds in (3.5, 4.5, 5, 5.5, 6.5, 28.5, 29.5, 30, 31):
        at = json.loads(poll)["time"]
        base = parse_timestamp(at) + timedelta(seconds=seconds)
        for depth, pending, polling in ((0, 1, 1), (1, 0, 1), (0, 1, 0), (1, 0, 0)):
            body = {
                "type": "work_queue_stats",
                "depth": depth,
                "pending": pending,
                "oldest_queued_at": "2026-07-01T08:15:01.000000Z",
                "workers_polling": polling,
            }
            line = json.dumps(
                {
                    "time": base.isoformat(),
                    "request": {
                        "method": "GET",
                        "target": f"{rec.base}/stats",
                        "headers": {"Authorization": "Bearer t"},
                        "body": None,
                    },
                    "response": {"status": 200, "body": body},
                }
            )
            findings = check_lines([poll, line]).findings
            wrong_pending = pending == 0 and seconds < 5 - 2
            wrong_depth = depth == 0 and seconds >= 5 + 2
            wrong_polling = polling == 0 and seconds < 30 - 2
            assert bool(findings) is (wrong_pending or wrong_depth or wrong_polling), (seconds, depth, pending, polling)


def stats_traffic(seed: int, exchanges: int = 160) -> list[str]:
    """Legal traffic heavy in polls and stats, with steps around the windows, items created off the trace, and
    every line's time up to half a second off the recorded server's clock (the default skew is 1 s)."""
    rnd = random.Random(seed)
    rec = Recorder()
    items = [rec.create() for _ in range(4)]
    lines = []
    for _ in range(exchanges):
        rec.now += timedelta(seconds=rnd.choice([0, 0.5, 2, 4, 5, 6, 25, 29, 30, 31, 60, 61]))
        work = rnd.choice(items)
        headers = {"Worker-ID": rnd.choice(["w1", "w2", "w3", "w4"])} if rnd.random() < 0.8 else {}
        op = rnd.choice(["poll", "poll", "ack", "heartbeat", "stop", "stats", "stats", "stats", "create", "get"])
        if op == "create":
            if len(items) < 20:
                items.append(rec.create())
            continue
        if op == "poll":
            value = rec.answer("GET", f"{rec.base}/poll?reclaim_older_than_ms={rnd.choice([0, 5000, 9000])}", headers)
        elif op == "ack":
            value = rec.answer("POST", f"{rec.base}/{work}/ack", headers)
        elif op == "heartbeat":
            value = rec.answer("POST", f"{rec.base}/{work}/heartbeat?desired_ttl_seconds=10", headers)
        elif op == "stop":
            value = rec.answer("POST", f"{rec.base}/{work}/stop", headers, rnd.choice([b"", b'{"force": true}']))
        elif op == "get":
            value = rec.answer("GET", f"{rec.base}/{work}", headers)
        else:
            value = rec.answer("GET", f"{rec.base}/stats", headers)
            shift = timedelta(milliseconds=rnd.randint(-500, 500))
            value["time"] = (parse_timestamp(value["time"]) + shift).isoformat()
        if op in ("get", "stats") and rnd.random() < 0.3:
            continue
        lines.append(json.dumps(value))
    return lines


def test_legal_stats_traffic_has_no_divergence() -> None:
    """Never report legal traffic as wrong: stats judged on traffic that starts anywhere, with unseen items,
    unseen polls (before the trace began) and clocks off by up to half the skew."""
    judged = 0
    for seed in range(16):
        lines = stats_traffic(seed)
        for start in (0, len(lines) // 4, len(lines) // 2):
            report = check_lines(lines[start:])
            assert [f for f in report.findings if f.kind is not Kind.NOT_JUDGED] == [], (seed, start)
            judged += sum('"work_queue_stats"' in line for line in lines[start:])
    assert judged >= 300


def test_an_item_the_replay_just_requeued_is_not_counted_within_the_skew() -> None:
    """The lease ran out at an instant the recorded server's clock had not reached when it answered stats
    (its clock 0.3 s behind the line's): the item is still active there, and the answer is legal."""
    rec = Recorder()
    work = rec.create()
    lines = [
        rec.line("GET", f"{rec.base}/poll", {"Worker-ID": "w1"}),
        rec.line("POST", f"{rec.base}/{work}/ack", {"Worker-ID": "w1"}),
        rec.line("POST", f"{rec.base}/{work}/heartbeat?desired_ttl_seconds=10", {"Worker-ID": "w1"}),
    ]
    rec.now += timedelta(seconds=8.7)  # the answer comes at the lease's deadline minus 0.3 s
    late = rec.answer("GET", f"{rec.base}/stats")
    assert late["response"]["body"]["depth"] == 0
    late["time"] = (parse_timestamp(late["time"]) + timedelta(seconds=0.6)).isoformat()  # written 0.3 s after it
    assert check_lines([*lines, json.dumps(late)]).findings == ()
    late["time"] = (parse_timestamp(late["time"]) + timedelta(seconds=3)).isoformat()  # long after: it is queued
    report = check_lines([*lines, json.dumps(late)])
    assert [f.kind for f in report.findings] == [Kind.DIVERGENCE]
    assert report.findings[0].differences == (
        "depth: 0, but 1 items the trace showed are deliverable",
        "depth + pending: 0, but 1 items the trace showed are queued",
    )


def test_a_backward_page_cannot_claim_unseen_items_before_a_complete_first_page() -> None:
    """A first page shorter than its limit showed every item up to its last (ids ascend with creation, and
    items never disappear): a later before_id page that says items precede the first of them is wrong. The
    same page is legal when no such line came first (an unseen item may precede it)."""
    rec = Recorder()
    ids = [rec.create() for _ in range(3)]
    everything = rec.line("GET", f"{rec.base}?limit=20")
    page = json.loads(rec.line("GET", f"{rec.base}?before_id={ids[2]}&limit=2"))
    assert page["response"]["body"]["has_more"] is False
    page["response"]["body"].update(has_more=True, next_page=ids[1])  # "more follow", the forward reading
    report = check_lines([everything, json.dumps(page)])
    assert [(f.line, f.kind) for f in report.findings] == [(2, Kind.DIVERGENCE)]
    assert report.findings[0].differences == (
        "has_more: expected False, got True",
        f"nothing precedes {ids[0]}: a first page at line 1 showed every item up to {ids[2]}",
    )
    assert [f.kind for f in check_lines([json.dumps(page)]).findings] == [Kind.NOT_JUDGED]
    # Items created after the complete page have larger ids: a backward page among them is still judged as before.
    later = [rec.create() for _ in range(2)]
    legal = rec.line("GET", f"{rec.base}?before_id={later[1]}&limit=1")  # [later[0]], has_more: known items precede
    assert check_lines([everything, legal]).findings == ()


def test_the_default_skew_hides_a_restamp_by_less_than_a_second_and_skew_0_finds_it() -> None:
    """docs/trace.md: what the default skew of 1 s hides (an ack replay restamping acknowledged_at 0.5 s later)."""
    from workstate.api import Request
    from workstate.testing.mutants import AckReplayRestamps

    mutant = AckReplayRestamps()
    env = mutant.create_environment(T)
    work = mutant.create_work(env, "sess_" + "1" * 32, {}, T)
    lines = []
    for seconds, method, path in ((1, "GET", "poll"), (2, "POST", f"{work}/ack"), (2.5, "POST", f"{work}/ack")):
        at = T + timedelta(seconds=seconds)
        target = f"{BASE}/{env}/work/{path}"
        headers = {"Authorization": "Bearer t", "Worker-ID": "w1"}
        response = mutant.send(Request(method, target, headers, b""), at)
        request = {"method": method, "target": target, "headers": headers, "body": None}
        lines.append(
            json.dumps({"time": at.isoformat(), "request": request, "response": {"status": 200, "body": response.json}})
        )
    assert check_lines(lines).findings == ()
    exact = check_lines(lines, skew=timedelta(0))
    assert [(f.line, f.kind) for f in exact.findings] == [(3, Kind.DIVERGENCE)]
    assert exact.findings[0].differences[0].startswith("acknowledged_at")
