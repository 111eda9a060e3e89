"""The conformance suite speaks every dialect (issue 14): each dialect's suite comes from its own lifecycle, the
reference passes it, and it fails a server of the other dialect."""

from __future__ import annotations

import attrs
import pytest

from workstate import ANTHROPIC, QODER, Dialect
from workstate.api import Request, Response
from workstate.dialect import QueuedHeartbeat, StopOfStopped, StoppedHeartbeat
from workstate.testing.conformance import conformance_cases, dialect_of, markdown, run_case, run_conformance
from workstate.testing.target import ReferenceTarget

PEER_RULES = {
    "heartbeat-queued-not-the-lease",
    "heartbeat-stopped-reported",
    "stop-stopped-refused",
    "force-stop-stopped-refused",
}
QODER_RULES = {"ack-claimed-by-another", "ack-bound-to-another"}


def _rules(dialect: Dialect) -> set[str]:
    return {case.case_id.split("/", 1)[0].split("-", 1)[1] for case in conformance_cases(dialect=dialect)}


def test_each_dialects_suite_comes_from_the_rules_its_lifecycle_reaches() -> None:
    peer, qoder = _rules(ANTHROPIC), _rules(QODER)
    assert peer >= PEER_RULES and not QODER_RULES & peer
    assert qoder >= QODER_RULES and not PEER_RULES & qoder
    assert conformance_cases(dialect="anthropic") == conformance_cases(ANTHROPIC.policy, ANTHROPIC)
    ids = [case.case_id for case in conformance_cases(dialect=ANTHROPIC)]
    assert len(set(ids)) == len(ids)
    for stem in (
        "4.1-poll/poll-x-api-key",
        "4.1-poll/poll-with-anthropic-beta",
        "4.6-list/list-next-page-5-by-2-page-3",
    ):
        assert stem in ids, stem
    assert "4.5-get/start-timeout-kept+1h/get" in ids  # keep_starting: no deadline, so the suite waits past it
    assert not any("x-api-key" in i or "next-page" in i or "start-timeout-kept" in i for i in _ids(QODER))


def _ids(dialect: Dialect) -> list[str]:
    return [case.case_id for case in conformance_cases(dialect=dialect)]


def test_the_reference_passes_the_anthropic_suite() -> None:
    report = run_conformance(lambda: ReferenceTarget(dialect=ANTHROPIC), dialect=ANTHROPIC)
    assert report.ok, report.summary()
    assert len(report.cases) == len(conformance_cases(dialect=ANTHROPIC)) > 5_000


def test_the_requests_are_spelled_in_the_dialect_and_answers_compared_in_its_rendering() -> None:
    (case,) = [
        c for c in conformance_cases(dialect=ANTHROPIC) if c.case_id == "4.4-force-stop/stop-force@active.w=w1.d=w1.hb1"
    ]
    result = run_case(case, lambda: ReferenceTarget(dialect=ANTHROPIC), dialect=ANTHROPIC)
    assert result.passed
    poll, *_, stop = result.requests
    assert poll.request.target.startswith(ANTHROPIC.base_path)
    assert dict(poll.request.headers or {}).get(ANTHROPIC.worker_header) == "w1"
    assert stop.expected.status == 204 and stop.expected.body == b""


class _StopAnswersWithABody(ReferenceTarget):
    """A peer server whose 204 carries a body."""

    def send(self, request: Request, now: object) -> Response:
        response = super().send(request, now)  # type: ignore[arg-type]
        return Response(response.status, None, b"null", response.headers) if response.status == 204 else response


class _NoRequestIdHeader(ReferenceTarget):
    def send(self, request: Request, now: object) -> Response:
        response = super().send(request, now)  # type: ignore[arg-type]
        header = ANTHROPIC.request_id_header or ""
        headers = [(k, v) for k, v in (response.headers or {}).items() if k.lower() != header.lower()]
        return Response(response.status, response.json, response.body, headers)


def test_the_comparison_checks_the_empty_body_and_the_request_id_header() -> None:
    stop = "4.4-force-stop/stop-force@active.w=w1.d=w1.hb1"
    (case,) = [c for c in conformance_cases(dialect=ANTHROPIC) if c.case_id == stop]
    body = run_case(case, lambda: _StopAnswersWithABody(dialect=ANTHROPIC), dialect=ANTHROPIC)
    assert not body.passed and body.where is not None and "expected no body" in body.where
    error = "4.5-get-404/get-unknown-work"
    (case,) = [c for c in conformance_cases(dialect=ANTHROPIC) if c.case_id == error]
    missing = run_case(case, lambda: _NoRequestIdHeader(dialect=ANTHROPIC), dialect=ANTHROPIC)
    assert not missing.passed and missing.where is not None and "request-id" in missing.where


@pytest.mark.parametrize(("suite", "server"), [(ANTHROPIC, QODER), (QODER, ANTHROPIC)], ids=["anthropic", "qoder"])
def test_each_dialects_suite_fails_a_server_of_the_other(suite: Dialect, server: Dialect) -> None:
    report = run_conformance(lambda: ReferenceTarget(dialect=server), dialect=suite, max_failures=1)
    assert not report.ok
    # the same wire with the other dialect's lifecycle differences (and policy) fails too, in the rules' cases
    other = QODER if suite is ANTHROPIC else ANTHROPIC
    lifecycle = {
        name: getattr(other, name)
        for name in ("ack_checks_worker", "heartbeat_on_stopped", "heartbeat_on_queued", "stop_on_stopped", "policy")
    }
    hybrid = attrs.evolve(suite, **lifecycle)
    for rule in sorted(QODER_RULES if suite is QODER else PEER_RULES):
        failed = run_conformance(
            lambda: ReferenceTarget(dialect=hybrid), dialect=suite, only=f"*-{rule}/*", max_failures=1
        )
        assert not failed.ok, rule
        assert run_conformance(lambda: ReferenceTarget(dialect=suite), dialect=suite, only=f"*-{rule}/*").ok


def test_the_dialect_value_shapes_the_suite() -> None:
    assert dialect_of(None) is QODER and dialect_of("anthropic") is ANTHROPIC and dialect_of(ANTHROPIC) is ANTHROPIC
    kinder = attrs.evolve(
        ANTHROPIC,
        heartbeat_on_stopped=StoppedHeartbeat.CONFLICT,
        heartbeat_on_queued=QueuedHeartbeat.CONFLICT,
        stop_on_stopped=StopOfStopped.REPLAY,
    )
    assert not PEER_RULES & _rules(kinder)  # a user's dialect gets the suite of its own rules
    assert run_conformance(lambda: ReferenceTarget(dialect=kinder), dialect=kinder, only="@stopped").ok


def test_the_anthropic_page_names_its_dialect() -> None:
    page = markdown(dialect=ANTHROPIC)
    assert page.startswith("# The conformance suite of the `anthropic` dialect")
    assert "--dialect anthropic" in page and "`4.1-poll/poll-x-api-key`" in page
    assert ANTHROPIC.base_path in page and "{base}" not in page
    assert QODER.base_path in markdown() and "{base}" not in markdown()
