"""The model checker in the peer dialect: its lifecycle keeps every invariant, differs from qoder's where the
dialects differ, and its traces are what the reference server of the dialect answers."""

from __future__ import annotations

import json
import random

import pytest

from workstate import ANTHROPIC, LIFECYCLE, QODER
from workstate._time import parse_timestamp
from workstate.api import Request, Server
from workstate.tools.verify import Move, MoveKind, Precondition, System, World, differ, explore, trace_lines

PEER = LIFECYCLE.in_dialect(ANTHROPIC)


def test_the_peer_lifecycle_keeps_every_invariant() -> None:
    report = explore(2, 1, 7, PEER, ANTHROPIC.policy)
    assert report.counterexample is None
    assert report.states > 100


def test_the_peer_lifecycle_differs_from_qoders_where_the_dialects_differ() -> None:
    poll, ack_by_w2 = Move(MoveKind.POLL, worker=0), Move(MoveKind.ACK, worker=1, item=0)
    stop = Move(MoveKind.FORCE_STOP, item=0)
    beat = Move(MoveKind.HEARTBEAT, None, 0, Precondition.ABSENT)
    answers = {}
    for name, lifecycle, policy in (("qoder", LIFECYCLE, QODER.policy), ("anthropic", PEER, ANTHROPIC.policy)):
        system = System(2, 1, lifecycle, policy)
        world = system.initial()
        statuses = []
        for move in (poll, ack_by_w2, stop, beat, stop):
            result = system.apply(world, move)
            statuses.append(result.status)
            world = result.world
        answers[name] = statuses
    assert answers == {"qoder": [200, 409, 200, 409, 200], "anthropic": [200, 200, 200, 200, 409]}
    assert differ(2, 1, 4, LIFECYCLE.in_dialect(ANTHROPIC), PEER, ANTHROPIC.policy) is None  # itself: no difference


def test_no_worker_conflict_in_the_peer_dialect() -> None:
    system = System(2, 1, PEER, ANTHROPIC.policy)
    world = system.initial()
    rejected = set()
    rng = random.Random(7)
    for _ in range(400):
        move = rng.choice(system.moves(world))
        result = system.apply(world, move)
        for record in result.steps:
            reason = getattr(record.outcome, "reason", None)
            if reason is not None:
                rejected.add(reason.name)
        world = result.world
    assert "WORKER_CONFLICT" not in rejected
    assert rejected  # the walk did meet rejections


def _moves(system: System, rng: random.Random, length: int) -> list[Move]:
    world: World = system.initial()
    moves = []
    for _ in range(length):
        move = rng.choice(system.moves(world))
        moves.append(move)
        world = system.apply(world, move).world
    return moves


@pytest.mark.parametrize("seed", range(20))
def test_peer_traces_are_what_the_reference_server_of_the_dialect_answers(seed: int) -> None:
    rng = random.Random(seed)
    workers, items = rng.choice([(1, 1), (2, 1), (2, 2)])
    system = System(workers, items, PEER, ANTHROPIC.policy)
    lines = trace_lines(system, _moves(system, rng, 25))
    server = Server(dialect=ANTHROPIC)
    world = system.initial()
    server.adopt_environment(system.environment_id, now=world.now)
    for item in world.items:
        server.adopt(item)
    for text in lines:
        line = json.loads(text)
        request = line["request"]
        assert request["target"].startswith(ANTHROPIC.base_path)
        body = b"" if request["body"] is None else request["body"].encode()
        answer = server.handle(
            Request(request["method"], request["target"], request["headers"], body), parse_timestamp(line["time"])
        )
        assert (line["response"]["status"], line["response"]["body"]) == (answer.status, answer.json), text


def test_the_verify_command_takes_the_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    from workstate.cli import main

    assert main(["verify", "--dialect", "anthropic", "--workers", "2", "--items", "1", "--depth", "5", "--quiet"]) == 0
    assert "no counterexample up to depth 5" in capsys.readouterr().out


@pytest.mark.parametrize("seed", range(10))
def test_peer_traces_are_legal_to_workstate_check_in_the_dialect(seed: int) -> None:
    from workstate.tools.trace import Kind, check_lines

    rng = random.Random(seed)
    system = System(2, 2, PEER, ANTHROPIC.policy)
    report = check_lines(trace_lines(system, _moves(system, rng, 25)), dialect=ANTHROPIC)
    assert report.exit_status == 0 and not report.of_kind(Kind.NOT_JUDGED), [f.to_json() for f in report.findings]
