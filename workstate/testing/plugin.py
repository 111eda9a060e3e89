"""The pytest plugin of the oracle kit: the ``workstate_lockstep`` and ``workstate_conformance`` fixtures.

Registered through the ``pytest11`` entry point, so it is active wherever workstate is
installed. Importing it needs nothing but workstate (hypothesis is imported when the fixture is
used), so an installation without the ``testing`` extra does not break anyone's pytest::

    def test_my_server(workstate_lockstep):
        workstate_lockstep(make_my_target, max_examples=50)

A test that takes a ``workstate_conformance_case`` argument is parametrized with every case of the
conformance suite (one pytest item per case, named by its id); ``workstate_conformance`` runs the case::

    def test_conformance(workstate_conformance_case, workstate_conformance):
        workstate_conformance(make_my_target)

A module-level ``workstate_dialect`` (a :class:`~workstate.Dialect` or its name: ``"qoder"``, the default, or
``"anthropic"``) chooses the wire the reference speaks, ``workstate_policy`` (a :class:`~workstate.Policy`;
default: the dialect's) the reference's policy, and ``workstate_conformance_only`` (a pattern, as
``run_conformance(only=...)``) a subset of the cases. Both fixtures also take ``dialect=`` and ``policy=``. The
suite is imported when such a test is collected, never before.

Importing the plugin (which pytest does in every session of every project that has workstate installed)
imports nothing but pytest, which is loaded already: workstate itself, hypothesis and the kit are imported
when a fixture is used or a case is collected. (``st.from_type(WorkItem)`` needs no plugin: see
:mod:`workstate.testing.hypothesis_hook`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..dialect import Dialect
    from ..policy import Policy
    from .target import Target

__all__ = ["pytest_generate_tests", "workstate_conformance", "workstate_lockstep"]


def _dialect(given: Dialect | str | None, module: Any) -> Dialect:
    """The dialect asked for: ``given``, else the module's ``workstate_dialect``, else qoder."""
    from .conformance import dialect_of

    return dialect_of(given if given is not None else getattr(module, "workstate_dialect", None))


@pytest.fixture
def workstate_lockstep(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Run the lockstep machine against a target now: ``workstate_lockstep(make_target, policy=..., dialect=...,
    **settings)``.

    Keyword arguments other than ``policy`` and ``dialect`` are hypothesis settings (``max_examples``,
    ``stateful_step_count``, ...). A disagreement fails the test with the shrunk sequence.
    """

    def run(
        make_target: Callable[[], Target],
        *,
        policy: Policy | None = None,
        dialect: Dialect | str | None = None,
        **settings: Any,
    ) -> None:
        try:
            from hypothesis import settings as Settings

            from .lockstep import run_lockstep
        except ImportError as exc:  # pragma: no cover - depends on the installation
            pytest.fail(f"the workstate oracle kit needs hypothesis: pip install 'workstate[testing]' ({exc})")
        spoken = _dialect(dialect, request.module)
        given = policy if policy is not None else getattr(request.module, "workstate_policy", None)
        run_lockstep(make_target, policy=given, settings=Settings(**settings) if settings else None, dialect=spoken)

    return run


CASE_ARGUMENT = "workstate_conformance_case"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that takes ``workstate_conformance_case`` with the suite's cases (ids as pytest ids)."""
    if CASE_ARGUMENT not in metafunc.fixturenames:
        return
    from .conformance import conformance_cases, selected

    policy = getattr(metafunc.module, "workstate_policy", None)
    dialect = _dialect(None, metafunc.module)
    only = getattr(metafunc.module, "workstate_conformance_only", None)
    cases = [case for case in conformance_cases(policy, dialect) if selected(case.case_id, only)]
    metafunc.parametrize(CASE_ARGUMENT, cases, ids=[case.case_id for case in cases])


@pytest.fixture
def workstate_conformance(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Run conformance against a target: ``workstate_conformance(make_target, policy=..., dialect=...)``.

    In a test parametrized with ``workstate_conformance_case`` it runs that one case; elsewhere the whole
    suite. A failing case fails the test with the rule, the difference, both answers and every request.
    """

    def run(
        make_target: Callable[[], Target], *, policy: Policy | None = None, dialect: Dialect | str | None = None
    ) -> None:
        from .conformance import Case, run_case, run_conformance

        chosen: Policy | None = policy if policy is not None else getattr(request.module, "workstate_policy", None)
        spoken = _dialect(dialect, request.module)
        callspec = getattr(request.node, "callspec", None)
        case = callspec.params.get(CASE_ARGUMENT) if callspec is not None else None
        if isinstance(case, Case):
            result = run_case(case, make_target, policy=chosen, dialect=spoken)
            if not result.passed:
                pytest.fail(result.render(), pytrace=False)
            return
        report = run_conformance(make_target, policy=chosen, dialect=spoken)
        if not report.ok:
            failures = "\n\n".join(failure.render() for failure in report.failures[:5])
            pytest.fail(f"{report.summary()}\n\n{failures}", pytrace=False)

    return run
