"""The conformance suite (issue 13): deterministic, numbered cases from the rules; the reference passes all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workstate import Policy
from workstate.errors import InvalidInput
from workstate.rules import RULE_TABLE, Trigger, rules_of
from workstate.testing.conformance import (
    Call,
    Case,
    NewWork,
    conformance_cases,
    run_case,
    run_conformance,
    selected,
)
from workstate.testing.mutants import AckReplayConflicts, StopStoppedConflicts
from workstate.testing.target import ReferenceTarget

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_passes_every_case() -> None:
    report = run_conformance(ReferenceTarget)
    assert report.ok, report.summary()
    assert len(report.cases) == len(conformance_cases()) > 10_000
    assert report.request_count == sum(case.request_count for case in conformance_cases())
    assert all(case.passed and case.requests for case in report.cases)


def test_case_ids_are_unique_stable_and_short() -> None:
    cases = conformance_cases()
    ids = [case.case_id for case in cases]
    assert len(set(ids)) == len(ids)
    assert [case.case_id for case in conformance_cases(Policy())] == ids  # an equal policy, the same suite
    assert all(1 <= case.request_count <= 6 for case in cases)
    assert "4.2-ack-replay/ack-anon@starting.w=w1.d=w1" in ids  # an ack replay without a Worker-ID
    assert "4.2-ack-bound-to-another/ack-w2@starting.w=w1.d=w1" in ids  # ... and by another worker


PEER_ONLY = {"heartbeat-queued-not-the-lease", "heartbeat-stopped-reported", "stop-stopped-refused"}
PEER_ONLY |= {"force-stop-stopped-refused"}


def test_every_rule_a_request_can_meet_is_the_rule_of_some_case() -> None:
    # A poll's answer names no rule (the server picks the item): its cases are below.
    requested = {rule.name for rule in rules_of(RULE_TABLE) if rule.trigger not in (Trigger.LAPSE, Trigger.DELIVER)}
    stems = {case.case_id.split("/", 1)[0].split("-", 1)[1] for case in conformance_cases()}
    strict = {
        case.case_id.split("/", 1)[0].split("-", 1)[1] for case in conformance_cases(Policy(ack_requires_delivery=True))
    }
    # ack-not-delivered is a policy choice (the spec's policy never requires delivery); the rest are the peer's
    assert requested - stems == {"ack-not-delivered"} | PEER_ONLY
    assert "ack-not-delivered" in strict


def test_polls_and_metadata_limits_have_their_cases() -> None:
    cases = {case.case_id: case for case in conformance_cases()}
    assert "4.1-poll/order/oldest-first" in cases and "4.1-poll/reclaim-default-1ms/poll-w2" in cases
    assert "4.5-metadata-over-limits/metadata-17-keys-after-add" in cases
    assert "4.5-metadata-over-limits/metadata-value-513-chars" in cases


def test_the_boundaries_are_there_on_both_sides() -> None:
    ids = {case.case_id for case in conformance_cases()}
    for stem in ("start-deadline", "lease-deadline", "drain-deadline"):
        assert {f"{stem}{edge}" for edge in ("-1us", "+0us", "+1us")} <= {i.split("/")[1] for i in ids}
    for name in (
        "ttl-min-1",
        "ttl-min",
        "ttl-max",
        "ttl-max+1",
        "ttl-absent",
        "metadata-16-keys-delete-while-add",
        "metadata-17-keys-after-add",
        "metadata-key-65-chars",
        "metadata-value-513-chars",
        "list-limit-101-of-101",
        "list-page-full-last-page",
        "list-before-id-near-start",
        "stats-workers-polling+0us",
        "reclaim-0",
        "token-fraction-9digits-Z",
        "token-whole-second-0digits-+05:30",
        "rebind",
    ):
        assert any(f"/{name}" in case_id for case_id in ids), name


def test_a_failure_names_the_rule_and_shows_both_answers_and_the_requests() -> None:
    report = run_conformance(AckReplayConflicts, only="4.2-ack-replay/ack-w1@starting.w=w1", max_failures=1)
    assert not report.ok
    (failure,) = report.failures
    assert failure.case_id == "4.2-ack-replay/ack-w1@starting.w=w1"
    assert failure.rule.startswith("[4.2 ack-replay]")
    assert failure.where == "status 409, expected 200"
    assert failure.expected is not None and failure.expected.status == 200
    assert not isinstance(failure.actual, str) and failure.actual is not None and failure.actual.status == 409
    assert [exchange.request.target.rsplit("/", 1)[-1] for exchange in failure.requests] == ["ack", "ack"]
    text = failure.render()
    assert "FAILED" in text and "status 409, expected 200" in text and "2. at" in text
    assert "FAILED 4.2-ack-replay/ack-w1@starting.w=w1" in report.summary()


def test_only_progress_and_max_failures() -> None:
    seen: list[tuple[int, int]] = []
    report = run_conformance(ReferenceTarget, only="4.4-stop-stopped/*", progress=lambda d, t, r: seen.append((d, t)))
    assert report.ok and report.cases and all(c.case_id.startswith("4.4-stop-stopped/") for c in report.cases)
    assert seen == [(n, len(report.cases)) for n in range(1, len(report.cases) + 1)]
    assert selected("4.1-poll/x", "poll") and selected("4.1-poll/x", "4.1-*") and not selected("4.1-poll/x", "4.2")
    stopped = run_conformance(StopStoppedConflicts, only="4.4-stop-stopped", max_failures=2)
    assert len(stopped.failures) == 2 and not stopped.cases[-1].passed


def test_the_dialect_and_the_policy_are_checked() -> None:
    assert run_conformance(ReferenceTarget, dialect=None, only="4.7-stats/stats-empty").ok
    assert run_conformance(ReferenceTarget, dialect="qoder", only="4.7-stats/stats-empty").ok
    with pytest.raises(InvalidInput):
        run_conformance(ReferenceTarget, dialect="klingon")
    with pytest.raises(InvalidInput):
        run_conformance(ReferenceTarget, policy="fast")  # type: ignore[arg-type]


def test_the_suite_follows_the_policy() -> None:
    """A server that makes another documented choice passes when the reference is told it, and fails otherwise."""
    policy = Policy(metadata_max_keys=4)
    assert any("metadata-5-keys-after-add" in case.case_id for case in conformance_cases(policy))
    report = run_conformance(lambda: ReferenceTarget(policy=policy), policy=policy, only="metadata")
    assert report.ok
    assert not run_conformance(lambda: ReferenceTarget(policy=policy), only="metadata").ok


def test_a_target_that_raises_fails_its_case_and_is_closed() -> None:
    closed = []

    class Broken(ReferenceTarget):
        def send(self, request, now):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(True)

    case = Case("4.1-poll/x", "poll", (NewWork(), Call("poll", worker="w1")))
    result = run_case(case, Broken)
    assert not result.passed and result.where == "the target raised RuntimeError: boom" and closed == [True]
    assert run_case(case, ReferenceTarget).passed


def test_the_fixture_makes_one_pytest_item_per_case(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            from workstate.testing.mutants import StopStoppedConflicts
            from workstate.testing.target import ReferenceTarget

            workstate_conformance_only = "4.4-stop-stopped/"

            def test_reference(workstate_conformance_case, workstate_conformance):
                workstate_conformance(ReferenceTarget)

            def test_mutant(workstate_conformance_case, workstate_conformance):
                workstate_conformance(StopStoppedConflicts)
            """
        )
    )
    count = sum(case.case_id.startswith("4.4-stop-stopped/") for case in conformance_cases())
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_mine.py")]
    listed = subprocess.run([*command, "--collect-only"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert f"{2 * count} tests collected" in listed.stdout, listed.stdout
    assert "test_reference[4.4-stop-stopped/stop-empty@stopped]" in listed.stdout
    ran = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert ran.returncode == 1
    assert f"{count} failed, {count} passed" in ran.stdout, ran.stdout[-2000:]
    assert "status 409, expected 200" in ran.stdout


def test_the_generated_page_lists_every_case_id() -> None:
    text = (ROOT / "docs" / "conformance.md").read_text()
    state = None
    listed = set()
    for line in text.splitlines():
        if line.startswith("### `@"):
            state = line.removeprefix("### `@").removesuffix("`")
        elif line.startswith("| `"):
            listed.add(line.split("`")[1])
        elif state is not None and line.startswith("`"):
            listed |= {f"{entry.strip().strip('`')}@{state}" for entry in line.split(",")}
    assert listed == {case.case_id for case in conformance_cases()}


def test_the_suite_and_the_command_need_no_hypothesis_and_the_plugin_imports_the_suite_lazily() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import workstate.testing.plugin\n"
        "assert 'workstate.testing.conformance' not in sys.modules\n"
        "import workstate.cli.conform\n"
        "from workstate.testing.conformance import run_conformance\n"
        "from workstate.testing.target import ReferenceTarget\n"
        "print(run_conformance(ReferenceTarget, only='4.7-stats/stats-empty').ok)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr
