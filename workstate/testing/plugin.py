"""The pytest plugin of the oracle kit: the ``workstate_lockstep`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever workstate is
installed. Importing it needs nothing but workstate (hypothesis is imported when the fixture is
used), so an installation without the ``testing`` extra does not break anyone's pytest::

    def test_my_server(workstate_lockstep):
        workstate_lockstep(make_my_target, max_examples=50)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ..policy import DEFAULT_POLICY, Policy
from .target import Target

__all__ = ["workstate_lockstep"]


@pytest.fixture
def workstate_lockstep() -> Callable[..., None]:
    """Run the lockstep machine against a target now: ``workstate_lockstep(make_target, policy=..., **settings)``.

    Keyword arguments other than ``policy`` are hypothesis settings (``max_examples``,
    ``stateful_step_count``, ...). A disagreement fails the test with the shrunk sequence.
    """

    def run(make_target: Callable[[], Target], *, policy: Policy = DEFAULT_POLICY, **settings: Any) -> None:
        try:
            from hypothesis import settings as Settings

            from .lockstep import run_lockstep
        except ImportError as exc:  # pragma: no cover - depends on the installation
            pytest.fail(f"the workstate oracle kit needs hypothesis: pip install 'workstate[testing]' ({exc})")
        run_lockstep(make_target, policy=policy, settings=Settings(**settings) if settings else None)

    return run
