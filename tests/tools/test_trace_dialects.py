"""``workstate check --dialect``: a trace of the peer dialect is judged by its own rules and wire, and every
point where the peer differs is wrong under ``qoder`` and right under ``anthropic``."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workstate import ANTHROPIC, QODER, Dialect
from workstate._time import UTC, render_timestamp
from workstate.api import CounterIds, Request, Server
from workstate.cli import main
from workstate.tools.trace import Kind, check_lines

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


class Recorder:
    """A reference server of ``dialect`` whose every exchange is written as a trace line, with a label."""

    def __init__(self, dialect: Dialect, ids: CounterIds | None = None) -> None:
        self.dialect = dialect
        self.server = Server(dialect=dialect, ids=ids)
        self.env = self.server.create_environment(now=T0)
        self.lines: list[str] = []
        self.labels: list[str | None] = []

    def work(self, n: int) -> str:
        session = self.dialect.new_id("session", n)
        if self.dialect is ANTHROPIC:
            session = ANTHROPIC.session_prefix + QODER.ids.render(n)  # an id both dialects' formats hold
        return self.server.create_work(self.env, session_id=session, now=T0)

    def send(
        self,
        t: float,
        method: str,
        work: str | None = None,
        operation: str | None = None,
        *,
        worker: str | None = None,
        query: str = "",
        body: bytes = b"",
        label: str | None = None,
    ) -> Any:
        target = self.dialect.path(self.env, work, operation) + (f"?{query}" if query else "")
        headers = {"Authorization": "Bearer k"}
        if worker is not None:
            headers[self.dialect.worker_header] = worker
        now = T0 + timedelta(seconds=t)
        answer = self.server.handle(Request(method, target, headers, body), now)
        self.lines.append(
            json.dumps(
                {
                    "time": render_timestamp(now),
                    "request": {"method": method, "target": target, "headers": headers, "body": body.decode() or None},
                    "response": {"status": answer.status, "body": answer.json},
                }
            )
        )
        self.labels.append(label)
        return answer.json


def peer_scenario() -> Recorder:
    """A whole peer lifecycle touching every difference of the dialect; ids in a format both dialects hold."""
    r = Recorder(ANTHROPIC, ids=CounterIds(dialect=QODER))
    first, second, third = r.work(1), r.work(2), r.work(3)
    r.send(0, "GET", second)
    r.send(0, "GET", third, label="secret: null")
    r.send(0, "GET", operation="poll", worker="w1")
    r.send(0.5, "POST", first, "ack", worker="w2", label="ack by another worker: 200")
    beat = r.send(1, "POST", first, "heartbeat", query="expected_last_heartbeat=NO_HEARTBEAT")
    r.send(
        2,
        "POST",
        first,
        "heartbeat",
        query="expected_last_heartbeat=2026-07-01T08:00:00.000000Z",
        label="412 with details",
    )
    r.send(3, "POST", first, "heartbeat", query=f"expected_last_heartbeat={beat['last_heartbeat']}")
    r.send(
        4, "POST", second, "heartbeat", query="expected_last_heartbeat=NO_HEARTBEAT", label="heartbeat on queued: 412"
    )
    r.send(5, "POST", first, "stop", label="stop: 204")
    r.send(6, "POST", first, "stop", body=b'{"force": true}', label="force stop: 204")
    r.send(7, "POST", first, "heartbeat", label="heartbeat on stopped: 200 stopped, lease_extended false")
    r.send(8, "POST", first, "stop", label="stop on stopped: 409")
    r.send(9, "GET", first)
    r.send(10, "GET", query="limit=2", label="list: {data, next_page}")
    return r


def as_qoder(lines: list[str]) -> list[str]:
    """The same exchanges spelled as the qoder dialect spells requests (paths, worker header, session ids)."""
    out = []
    for text in lines:
        line = json.loads(text)
        request = line["request"]
        request["target"] = request["target"].replace(ANTHROPIC.base_path, QODER.base_path)
        request["headers"] = {
            (QODER.worker_header if k == ANTHROPIC.worker_header else k): v for k, v in request["headers"].items()
        }
        out.append(json.dumps(line).replace(f'"{ANTHROPIC.session_prefix}', f'"{QODER.session_prefix}'))
    return out


def wrong_lines(lines: list[str], dialect: Dialect) -> set[int]:
    report = check_lines(lines, dialect=dialect)
    return {f.line for f in report.findings if f.kind in (Kind.DIVERGENCE, Kind.MALFORMED)}


def test_a_legal_peer_trace_is_judged_legal_in_its_dialect() -> None:
    r = peer_scenario()
    report = check_lines(r.lines, dialect=ANTHROPIC)
    assert report.exit_status == 0, [f.to_json() for f in report.findings]
    assert not report.of_kind(Kind.NOT_JUDGED)
    assert report.exchanges == len(r.lines)


def test_every_peer_difference_is_wrong_under_qoder_and_right_under_anthropic() -> None:
    r = peer_scenario()
    qoder = as_qoder(r.lines)
    wrong = wrong_lines(qoder, QODER)
    differences = {n for n, label in enumerate(r.labels, 1) if label is not None and label != "secret: null"}
    assert differences <= wrong, {r.labels[n - 1] for n in differences - wrong}
    # Spelled as the peer spells them, the very same answers are legal in the peer's dialect.
    assert wrong_lines(r.lines, ANTHROPIC) == set()


def test_the_peers_secret_is_an_unknown_key_under_qoder_read_tolerantly() -> None:
    r = peer_scenario()
    report = check_lines(as_qoder(r.lines), dialect=QODER)
    notes = " ".join(d for f in report.of_kind(Kind.NOTE) for d in f.differences)
    assert "unknown key secret" in notes


def _edit(lines: list[str], number: int, status: int, body: Any) -> list[str]:
    line = json.loads(lines[number - 1])
    line["response"] = {"status": status, "body": body}
    return [*lines[: number - 1], json.dumps(line), *lines[number:]]


def _line_of(r: Recorder, label: str) -> int:
    return r.labels.index(label) + 1


@pytest.mark.parametrize(
    ("label", "status", "body"),
    [
        ("heartbeat on stopped: 200 stopped, lease_extended false", 409, None),  # qoder's answer, not the peer's
        ("stop on stopped: 409", 200, "object"),
        ("stop: 204", 200, "object"),
        ("heartbeat on queued: 412", 409, None),
        ("ack by another worker: 200", 409, None),
    ],
)
def test_an_illegal_peer_answer_is_flagged(label: str, status: int, body: Any) -> None:
    r = peer_scenario()
    number = _line_of(r, label)
    if body == "object":
        body = json.loads(r.lines[-2])["response"]["body"]  # a work object (the last GET of the first item)
    elif body is None:
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}, "request_id": "req_1"}
    edited = _edit(r.lines, number, status, body)
    assert number in wrong_lines(edited, ANTHROPIC)


def test_a_412_whose_details_do_not_show_the_item_is_flagged() -> None:
    r = peer_scenario()
    number = _line_of(r, "412 with details")
    body = json.loads(r.lines[number - 1])["response"]["body"]
    body["error"]["details"]["current_state"]["state"] = "queued"
    assert number in wrong_lines(_edit(r.lines, number, 412, body), ANTHROPIC)
    del body["error"]["details"]
    assert number in wrong_lines(_edit(r.lines, number, 412, body), ANTHROPIC)


def test_a_stopped_report_that_extends_the_lease_is_flagged() -> None:
    r = peer_scenario()
    number = _line_of(r, "heartbeat on stopped: 200 stopped, lease_extended false")
    body = json.loads(r.lines[number - 1])["response"]["body"]
    body["lease_extended"] = True
    assert number in wrong_lines(_edit(r.lines, number, 200, body), ANTHROPIC)


def test_timestamps_with_nanoseconds_are_judged_by_instant() -> None:
    r = peer_scenario()
    fine = []
    for text in r.lines:  # a server written in Go renders nanoseconds: the same instants, finer digits
        line = json.loads(text)
        rendered = json.dumps(line["response"])
        line["response"] = json.loads(rendered.replace('000Z"', '000123Z"'))
        fine.append(json.dumps(line))
    assert fine != r.lines
    report = check_lines(fine, dialect=ANTHROPIC)
    assert report.exit_status == 0, [f.to_json() for f in report.findings]


def test_the_check_command_takes_the_dialect(tmp_path: Path) -> None:
    path = tmp_path / "peer.jsonl"
    path.write_text("\n".join(peer_scenario().lines) + "\n")
    out = io.StringIO()
    assert main(["check", str(path), "--dialect", "anthropic"], out) == 0
    assert out.getvalue().startswith("OK: ")
    out = io.StringIO()
    assert main(["check", str(path)], out) == 1  # qoder by default: no route of the peer's paths is legal
    assert (
        main(["check", str(path), "--dialect", "anthropic", "--policy", "on_start_timeout=requeue"], io.StringIO()) == 0
    )


def test_a_peer_400_of_an_unseen_item_does_not_make_its_environment_cloud() -> None:
    """The peer's errors name no param: a metadata-limit 400 on an item the trace never showed says nothing of
    the environment's kind, so later lines are still judged as a self_hosted environment's."""
    r = peer_scenario()
    first = json.loads(r.lines[0])
    env_path = first["request"]["target"].rsplit("/", 1)[0]
    over = json.dumps(
        {
            "time": first["time"],
            "request": {
                "method": "POST",
                "target": env_path + "/work_" + "9" * 32,
                "headers": {"Authorization": "Bearer k"},
                "body": json.dumps({"metadata": {"k" * 300: "v"}}),
            },
            "response": {
                "status": 400,
                "body": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "m"},
                    "request_id": "r",
                },
            },
        }
    )
    report = check_lines([over, *r.lines], dialect=ANTHROPIC)
    assert not report.of_kind(Kind.DIVERGENCE), [f.to_json() for f in report.findings]
    broken = _edit([over, *r.lines], _line_of(r, "stop: 204") + 1, 409, json.loads(r.lines[-1])["response"]["body"])
    assert _line_of(r, "stop: 204") + 1 in wrong_lines(broken, ANTHROPIC)  # still judged
