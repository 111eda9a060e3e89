"""The wrong servers of workstate.testing.mutants: each deviates from the reference on its own witness."""

from collections.abc import Iterator
from datetime import datetime

import pytest

from workstate import ANTHROPIC
from workstate.api import Request, Response
from workstate.testing.mutants import (
    ALL_MUTANTS,
    MUTANTS,
    NEW_MUTANTS,
    PEER_MUTANTS,
    Mutant,
    Step,
    ack,
    create,
    describe,
    deviation,
    poll,
    replay,
)
from workstate.testing.target import ReferenceTarget

SECTIONS = ("4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "5", "6")


@pytest.mark.parametrize("mutant", ALL_MUTANTS, ids=lambda m: m.__name__)
def test_every_mutant_deviates_on_its_witness(mutant: type[Mutant]) -> None:
    assert 1 <= len(mutant.witness) <= 6
    found = deviation(mutant)
    assert found is not None, f"{mutant.__name__} answers its witness like the reference"
    index, expected, actual = found
    assert mutant.witness[index].method in ("GET", "POST")  # a request, not a creation, tells them apart
    assert expected != actual


@pytest.mark.parametrize("mutant", ALL_MUTANTS, ids=lambda m: m.__name__)
def test_the_reference_agrees_with_itself_on_every_witness(mutant: type[Mutant]) -> None:
    first = replay(ReferenceTarget(), mutant.witness)
    assert first == replay(ReferenceTarget(), mutant.witness)
    assert any(status for status, _ in first)  # at least one request was answered


@pytest.mark.parametrize("mutant", ALL_MUTANTS, ids=lambda m: m.__name__)
def test_every_mutant_is_documented(mutant: type[Mutant]) -> None:
    assert any(word in (mutant.__doc__ or "") for word in ("spec", "docs/", "api.md"))
    assert mutant.mistake
    assert mutant.section and all(part.strip() in SECTIONS or part.strip() == "4" for part in mutant.section.split(","))


def test_the_registry() -> None:
    assert len(NEW_MUTANTS) >= 30
    assert ALL_MUTANTS[: len(MUTANTS)] == MUTANTS
    assert len(set(ALL_MUTANTS)) == len(ALL_MUTANTS)
    assert set(describe()) == {m.__name__ for m in ALL_MUTANTS}
    covered = {part.strip() for m in NEW_MUTANTS for part in m.section.split(",")}
    assert set(SECTIONS) <= covered, set(SECTIONS) - covered


def test_a_mutant_that_behaves_is_not_reported() -> None:
    """The witness check has teeth: a 'mutant' that is the reference deviates on nothing."""

    class Honest(Mutant):
        witness = (create(), poll(0, "w1"))

    assert deviation(Honest) is None


def test_replay_leaves_out_generated_request_ids_and_messages() -> None:
    """Two servers that word errors differently, with their own request ids, agree; an echo is compared."""

    class Reworded(ReferenceTarget):
        def send(self, request: Request, now: datetime) -> Response:
            response = self.server.handle(request, now)
            if response.status >= 400:
                body = {**response.json, "request_id": "req_other"}
                body["error"] = {**body["error"], "message": "something else"}
                return Response(response.status, body, b"")
            return response

    steps = (Step(0, "GET", "{env}/work/" + "work_" + "e" * 32),)
    assert replay(Reworded(), steps) == replay(ReferenceTarget(), steps)
    echoed = (Step(0, "GET", "{env}/work/" + "work_" + "e" * 32, headers=(("x-request-id", "r1"),)),)
    assert replay(Reworded(), echoed) != replay(ReferenceTarget(), echoed)


def _all() -> Iterator[type[Mutant]]:
    yield from ALL_MUTANTS


def test_mutants_are_fresh_targets() -> None:
    """Each class called with no arguments is a fresh target: replaying twice gives the same answers."""
    for mutant in _all():
        assert replay(mutant(), mutant.witness) == replay(mutant(), mutant.witness), mutant.__name__


@pytest.mark.parametrize("mutant", PEER_MUTANTS, ids=lambda m: m.__name__)
def test_every_peer_mutant_deviates_on_its_witness_in_its_dialect(mutant: type[Mutant]) -> None:
    assert mutant.dialect is ANTHROPIC and mutant not in ALL_MUTANTS
    assert 1 <= len(mutant.witness) <= 6
    assert mutant.mistake and "docs/dialects.md" in (mutant.__doc__ or "")
    found = deviation(mutant)
    assert found is not None, f"{mutant.__name__} answers its witness like the peer reference"
    index, expected, actual = found
    assert mutant.witness[index].method in ("GET", "POST") and expected != actual
    reference = replay(ReferenceTarget(dialect=ANTHROPIC), mutant.witness, ANTHROPIC)
    assert reference == replay(ReferenceTarget(dialect=ANTHROPIC), mutant.witness, ANTHROPIC)
    assert replay(mutant(), mutant.witness, ANTHROPIC) == replay(mutant(), mutant.witness, ANTHROPIC)  # fresh


def test_a_witness_is_spelled_in_the_dialect_it_is_replayed_in() -> None:
    """The same witness, replayed in each dialect against that dialect's reference: ack by another worker is 409
    where the dialect checks the worker, and 200 where it does not."""
    steps = (create(), poll(0, "w1"), ack(1, "w2"))
    assert [status for status, _ in replay(ReferenceTarget(), steps)] == [0, 200, 409]
    assert [status for status, _ in replay(ReferenceTarget(dialect=ANTHROPIC), steps, ANTHROPIC)] == [0, 200, 200]
