"""Issue 15: AsgiTarget, any ASGI app as a kit target in process; the lockstep kit passes the ASGI app and
catches a mutant served through it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from helpers import FIND, PASS
from hypothesis import settings

from workstate.api import Request, Response
from workstate.asgi import WorkstateApp
from workstate.testing.asgi import AsgiTarget
from workstate.testing.http import CreationFailed
from workstate.testing.lockstep import Disagreement, run_lockstep
from workstate.testing.mutants import StopStoppedConflicts
from workstate.testing.target import Target

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


class TargetBackend:
    """A kit target (a mutant) as the backend an app serves: handle, create_environment, create_work."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.seen = 0

    def handle(self, request: Request, now: datetime) -> Response:
        self.seen += 1
        return self.target.send(request, now)

    def create_environment(self, kind: str = "self_hosted", *, now: datetime) -> str:
        assert kind == "self_hosted"
        return self.target.create_environment(now)

    def create_work(
        self, env: str, *, session_id: str, metadata: Mapping[str, str] | None = None, now: datetime
    ) -> str:
        return self.target.create_work(env, session_id, metadata or {}, now)


def test_requests_carry_now_and_creations_go_through_the_test_routes() -> None:
    app = WorkstateApp(test_clock=True)
    with AsgiTarget(app) as target:
        env = target.create_environment(T)
        wid = target.create_work(env, "sess_" + "1" * 32, {"a": "b"}, T)
        reply = target.send(
            Request("GET", f"/api/v1/cloud/environments/{env}/work/{wid}", {"Authorization": "Bearer t"}), T
        )
    assert reply.status == 200 and reply.json["created_at"] == "2026-07-01T08:15:01.000000Z"
    assert reply.json["metadata"] == {"a": "b"} and reply.headers["content-type"] == "application/json"


def test_a_failed_creation_is_a_typed_error() -> None:
    with AsgiTarget(WorkstateApp(test_clock=True)) as target, pytest.raises(CreationFailed):
        target.create_work("env_" + "e" * 32, "sess_" + "1" * 32, {}, T)


def test_the_kit_passes_the_asgi_app() -> None:
    log: list[str] = []
    made: list[AsgiTarget] = []

    def make() -> AsgiTarget:
        made.append(AsgiTarget(WorkstateApp(test_clock=True, access_log=log.append)))
        return made[-1]

    run_lockstep(make, settings=settings(PASS, max_examples=40))
    assert len(made) >= 40
    assert sum(" /api/v1/cloud/environments/" in line for line in log) > 200  # requests really went through the apps


def test_the_kit_catches_a_mutant_served_through_the_asgi_app() -> None:
    backend = TargetBackend(StopStoppedConflicts())
    app = WorkstateApp(backend, test_clock=True)  # one long-lived server: each sequence makes new environments
    with pytest.raises(Disagreement) as caught:
        run_lockstep(lambda: AsgiTarget(app), settings=settings(FIND, max_examples=60))
    assert backend.seen > 0
    assert len(caught.value.requests) == 2  # stop, stop again
    assert "stop-stopped" in caught.value.rule
