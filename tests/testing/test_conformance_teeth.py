"""Teeth (issue 13 point 4): the conformance suite alone catches every wrong server of workstate.testing.mutants.

Each mutant must fail some case, the same case on every run, with at most 6 requests; the reference passes
that case (so the failure is the mutant's).
"""

from __future__ import annotations

import re

import pytest

from workstate.testing import mutants
from workstate.testing.conformance import conformance_cases, run_case, run_conformance
from workstate.testing.target import ReferenceTarget

REGISTRY: tuple[type[mutants.Mutant], ...] = getattr(mutants, "ALL_MUTANTS", mutants.MUTANTS)


def test_the_registry_holds_the_six_old_mutants_and_more() -> None:
    assert set(mutants.MUTANTS) <= set(REGISTRY)
    assert len(set(REGISTRY)) == len(REGISTRY) >= 36


def _masked(where: str | None) -> str:
    """A difference with session ids masked (each run gives its items fresh sessions)."""
    return re.sub(r"sess(ion)?_[0-9a-f]{32}", "sess_*", where or "")


@pytest.mark.parametrize("mutant", REGISTRY, ids=lambda mutant: mutant.__name__)
def test_the_suite_alone_catches_the_mutant(mutant: type[mutants.Mutant]) -> None:
    report = run_conformance(mutant, max_failures=1)
    assert not report.ok, f"{mutant.__name__} ({mutant.mistake}) passes every conformance case"
    (failure,) = report.failures
    assert 1 <= len(failure.requests) <= 6, failure.render()
    case = {case.case_id: case for case in conformance_cases()}[failure.case_id]
    again = run_case(case, mutant)
    assert not again.passed and _masked(again.where) == _masked(failure.where)  # the same case, the same difference
    assert run_case(case, ReferenceTarget).passed


def test_the_guides_ten_lines_fail_a_wrong_server() -> None:
    """docs/testing-guide.md's first example is no smoke test: pointed at a wrong server, it fails."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "testing-guide.md").read_text()
    code = text.split("## Ten lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "run_conformance(make_target)" in code and "return ReferenceTarget()" in code
    wrong = code.replace("return ReferenceTarget()", "return AckReplayConflicts()")
    wrong = "from workstate.testing.mutants import AckReplayConflicts\n" + wrong.replace(
        "report = run_conformance(make_target)", "report = run_conformance(make_target, max_failures=1)"
    )
    with pytest.raises(AssertionError, match=r"4\.2-ack-replay"):
        exec(compile(wrong, "testing-guide.md", "exec"), {})


@pytest.mark.parametrize("mutant", mutants.PEER_MUTANTS, ids=lambda mutant: mutant.__name__)
def test_the_anthropic_suite_alone_catches_the_peer_mutant(mutant: type[mutants.Mutant]) -> None:
    """Each wrong server of the peer dialect fails a case of the anthropic suite, deterministically, and the
    peer reference passes that case."""
    dialect = mutant.dialect
    report = run_conformance(mutant, dialect=dialect, max_failures=1)
    assert not report.ok, f"{mutant.__name__} ({mutant.mistake}) passes every anthropic case"
    (failure,) = report.failures
    assert 1 <= len(failure.requests) <= 6, failure.render()
    case = {case.case_id: case for case in conformance_cases(dialect=dialect)}[failure.case_id]
    again = run_case(case, mutant, dialect=dialect)
    assert not again.passed and _masked(again.where) == _masked(failure.where)
    assert run_case(case, lambda: ReferenceTarget(dialect=dialect), dialect=dialect).passed
    assert run_case(case, ReferenceTarget, dialect=dialect).passed is False  # a qoder server fails it too
