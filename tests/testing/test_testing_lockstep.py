"""The lockstep oracle kit: the reference passes it, every mutant fails it with a short, named counterexample."""

import asyncio
from collections.abc import Mapping
from datetime import datetime

import pytest
from helpers import EXPECTED_RULE, FIND, PASS
from hypothesis import Phase, settings

from workstate import render_timestamp
from workstate.api import CounterIds, Request, Response, Server
from workstate.api.codec import dumps
from workstate.testing.lockstep import Disagreement, lockstep_test, run_lockstep
from workstate.testing.mutants import MUTANTS, AckReplayConflicts, StopStoppedConflicts
from workstate.testing.target import AsyncBridge, ReferenceTarget, Target


def test_the_reference_passes_against_itself() -> None:
    """A second reference server agrees on every answer, and the sequences reach every status and state."""
    seen: set[object] = set()

    class Watched(ReferenceTarget):
        def send(self, request: Request, now: datetime) -> Response:
            response = self.server.handle(request, now)
            seen.add(response.status)
            if isinstance(response.json, dict):
                seen.add(response.json.get("state"))
            return response

    run_lockstep(Watched, settings=PASS)
    assert {200, 400, 401, 404, 409, 412} <= seen
    assert {"queued", "starting", "active", "stopping", "stopped"} <= seen


def test_ids_request_ids_and_timestamp_forms_are_mapped() -> None:
    """A server with other ids, other request ids and ``+00:00`` timestamps agrees: only real differences fail."""

    class Other(ReferenceTarget):
        def __init__(self) -> None:
            super().__init__(Server(ids=CounterIds(start=7777)))

        def send(self, request: Request, now: datetime) -> Response:
            response = self.server.handle(request, now)
            body = _reformat(response.json)
            return Response(response.status, body, dumps(body), response.headers)

    run_lockstep(Other, settings=PASS)


def _reformat(value: object) -> object:
    """Every timestamp written ``+00:00`` instead of ``Z``."""
    if isinstance(value, dict):
        return {k: _reformat(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reformat(v) for v in value]
    if isinstance(value, str) and value.endswith("Z") and value[:4].isdigit():
        return value[:-1] + "+00:00"
    return value


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_every_mutant_is_found_with_at_most_8_requests(mutant: type[Target]) -> None:
    with pytest.raises(Disagreement) as caught:
        run_lockstep(mutant, settings=FIND)
    failure = caught.value
    assert 1 <= len(failure.requests) <= 8, str(failure)
    assert failure.requests[-1] == failure.sent
    assert EXPECTED_RULE[mutant.__name__] in failure.rule, str(failure)
    text = str(failure)
    assert f"the sequence ({len(failure.requests)} requests" in text
    for number, sent in enumerate(failure.requests, 1):
        assert f"  {number}. at {render_timestamp(sent.now)}: {sent.request.method} {sent.request.target}" in text


def test_hypothesis_shrinking_and_the_reduction_together() -> None:
    """With hypothesis' own shrink phase too (the default), as a TestCase class the way users write it."""
    case = lockstep_test(StopStoppedConflicts, settings=settings(FIND, phases=list(Phase), max_examples=30))
    with pytest.raises(Disagreement) as caught:
        case("runTest").runTest()
    assert len(caught.value.requests) == 2  # stop, then stop again
    assert "4.4 stop-stopped" in caught.value.rule or "4.4 force-stop-stopped" in caught.value.rule


def test_a_failure_replays_from_its_steps() -> None:
    with pytest.raises(Disagreement) as caught:
        run_lockstep(AckReplayConflicts, settings=FIND)
    failure = caught.value
    assert failure.machine is not None
    again = failure.machine.replay(failure.steps)
    assert again is not None and again.signature() == failure.signature()
    assert "state.ack(" in str(failure)


def test_request_ids_must_be_one_per_request() -> None:
    class SameRequestId(ReferenceTarget):
        def send(self, request: Request, now: datetime) -> Response:
            response = self.server.handle(request, now)
            if isinstance(response.json, dict) and response.json.get("type") == "error":
                headers = {k.lower(): v for k, v in dict(request.headers or {}).items()}
                if "x-request-id" not in headers:
                    body = {**response.json, "request_id": "req_always_the_same"}
                    return Response(response.status, body, dumps(body))
            return response

    with pytest.raises(Disagreement) as caught:
        run_lockstep(SameRequestId, settings=FIND)
    assert "request_id" in caught.value.where


def test_a_target_that_raises_is_a_disagreement() -> None:
    class Crashes(ReferenceTarget):
        def send(self, request: Request, now: datetime) -> Response:
            if request.method == "POST" and request.target.endswith("/stop"):
                raise RuntimeError("boom")
            return self.server.handle(request, now)

    with pytest.raises(Disagreement) as caught:
        run_lockstep(Crashes, settings=FIND)
    assert "raised RuntimeError: boom" in caught.value.where
    assert len(caught.value.requests) == 1


def test_the_async_bridge_runs_an_async_server() -> None:
    loops: set[int] = set()

    class AsyncServer:
        def __init__(self) -> None:
            self.server = Server()

        async def send(self, request: Request, now: datetime) -> Response:
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0)
            return self.server.handle(request, now)

        async def create_environment(self, now: datetime) -> str:
            return self.server.create_environment(now=now)

        async def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
            return self.server.create_work(env, session_id=session_id, metadata=metadata, now=now)

    bridges: list[AsyncBridge] = []

    def make() -> AsyncBridge:
        bridges.append(AsyncBridge(AsyncServer()))
        return bridges[-1]

    run_lockstep(make, settings=settings(PASS, max_examples=20))
    assert loops and len(bridges) > 1  # the server ran on the bridges' loops
    assert all(bridge._loop.is_closed() for bridge in bridges)  # the machine closes its target


def test_the_async_bridge_needs_all_three_coroutines() -> None:
    async def send(request: Request, now: datetime) -> Response:
        raise AssertionError

    with pytest.raises(TypeError):
        AsyncBridge(send=send)


def test_the_lockstep_kit_speaks_the_peer_dialect() -> None:
    """Driven in the anthropic dialect, the peer reference agrees with itself (its paths, worker header, ids,
    204 stops and stopped reports), and reaches the peer's own answers."""
    from workstate import ANTHROPIC, QODER

    seen: set[object] = set()

    class Watched(ReferenceTarget):
        def send(self, request: Request, now: datetime) -> Response:
            seen.add(
                ("path", request.target.startswith(ANTHROPIC.base_path), request.target.startswith(QODER.base_path))
            )
            response = self.server.handle(request, now)
            seen.add(response.status)
            if isinstance(response.json, dict) and response.json.get("type") == "work_heartbeat":
                seen.add(("heartbeat", response.json.get("state")))
            return response

    run_lockstep(lambda: Watched(dialect=ANTHROPIC), dialect=ANTHROPIC, settings=PASS)
    assert {200, 204, 412, ("path", True, False)} <= seen and ("path", False, True) not in seen


@pytest.mark.parametrize("name", ["PeerStoppedHeartbeatConflicts", "PeerStopAnswersObject", "PeerAckChecksWorker"])
def test_the_lockstep_kit_finds_peer_mutants_in_their_dialect(name: str) -> None:
    from workstate.testing import mutants

    mutant = getattr(mutants, name)
    with pytest.raises(Disagreement) as found:
        run_lockstep(mutant, dialect=mutant.dialect, settings=FIND)
    assert found.value.requests
    with pytest.raises(Disagreement):  # a qoder machine driving a peer server disagrees at once (other paths)
        run_lockstep(lambda: ReferenceTarget(dialect=mutant.dialect), settings=FIND)
