"""Issue 4, part 3: the oracle kit against the example HTTP server over real loopback sockets.

The example server (``examples/http_server.py``, standard library) serves a reference ``Server`` in
test-clock mode; the kit's ``HttpTarget`` talks to it with ``http.client``. A correct server
passes; a wrong one served the same way is caught with a short counterexample.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

import pytest
from helpers import EXPECTED_RULE, FIND, PASS
from hypothesis import settings
from test_http_server import example

from workstate.api import Request, Response, Server
from workstate.testing.http import HttpTarget
from workstate.testing.lockstep import Disagreement, run_lockstep
from workstate.testing.mutants import AckReplayConflicts, HeartbeatIgnoresPrecondition, LifoPoll
from workstate.testing.target import Target


class Served:
    """A kit Target (here: a wrong server) behind the example server's ``Server``-shaped interface."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def handle(self, request: Request, now: datetime) -> Response:
        return self.target.send(request, now)

    def create_environment(self, kind: str = "self_hosted", *, now: datetime) -> str:
        assert kind == "self_hosted"
        return self.target.create_environment(now)

    def create_work(self, env: str, *, session_id: str, metadata: Mapping[str, str] | None, now: datetime) -> str:
        return self.target.create_work(env, session_id, metadata or {}, now)


@contextmanager
def served(server: Server | Served) -> Iterator[tuple[str, int]]:
    with example.serve(server, test_clock=True) as running:
        host, port = running.url.removeprefix("http://").split(":")
        yield host, int(port)


def test_the_kit_passes_the_example_server_over_http() -> None:
    with served(Server()) as (host, port):
        run_lockstep(lambda: HttpTarget(host, port), settings=settings(PASS, max_examples=20))


@pytest.mark.parametrize(
    "wrong", [AckReplayConflicts, HeartbeatIgnoresPrecondition, LifoPoll], ids=lambda c: c.__name__
)
def test_the_kit_catches_a_wrong_server_served_over_http(wrong: type[Target]) -> None:
    with served(Served(wrong())) as (host, port), pytest.raises(Disagreement) as caught:
        run_lockstep(lambda: HttpTarget(host, port), settings=settings(FIND, max_examples=60))
    assert 1 <= len(caught.value.requests) <= 8
    assert EXPECTED_RULE[wrong.__name__] in caught.value.rule
