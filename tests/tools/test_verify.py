"""workstate verify: the bounded model checker finds each broken rule set with a shortest counterexample,
finds none in the spec's rules, and writes traces the reference server answers identically."""

import json
import random
from collections.abc import Callable
from datetime import datetime

import pytest
from helpers import BROKEN

from workstate import LIFECYCLE, InvalidInput, Lapse, Lifecycle, State, parse_timestamp
from workstate.api import Request, Server
from workstate.cli import main
from workstate.tools.verify import T0, Move, MoveKind, System, World, explore, summary, trace_lines

# The size and depth at which each broken rule set is caught (and the spec's rules are not).
WORKERS, ITEMS, DEPTH = 2, 1, 5


def test_the_spec_rules_give_no_counterexample() -> None:
    for workers, items, depth in ((WORKERS, ITEMS, DEPTH), (2, 2, 4), (3, 1, 4)):
        report = explore(workers, items, depth)
        assert report.counterexample is None
        assert report.states > 1 and report.transitions >= report.states - 1
        assert report.depth_reached == depth


def test_a_bounded_search_says_it_was_bounded() -> None:
    # The state space is infinite (a heartbeat at the instant of the last one bumps the token by a
    # microsecond), so the search stops at the bound, and says so.
    report = explore(1, 1, 12)
    assert report.counterexample is None
    assert not report.exhausted
    assert report.depth_reached == 12
    assert explore(1, 1, 11).states < report.states


@pytest.mark.parametrize("bug", list(BROKEN))
def test_verify_finds_the_broken_rule_set(bug: str) -> None:
    broken: Callable[[], Lifecycle] = BROKEN[bug]
    report = explore(WORKERS, ITEMS, DEPTH, broken())
    found = report.counterexample
    assert found is not None, bug
    assert found.violations
    length = len(found.moves)
    assert 1 <= length <= DEPTH
    # Shortest: one move less finds nothing.
    assert explore(WORKERS, ITEMS, length - 1, broken()).counterexample is None
    # The counterexample replays: the moves lead to the same violations.
    system = System(WORKERS, ITEMS, broken())
    world = system.initial()
    for move in found.moves:
        result = system.apply(world, move)
        world = result.world
    assert [str(v) for v in result.violations] == [str(v) for v in found.violations]
    # The spec's rules survive the same moves.
    spec = System(WORKERS, ITEMS)
    world = spec.initial()
    for move in found.moves:
        result = spec.apply(world, move)
        world = result.world
        assert not result.violations


EXPECTED_INVARIANT = {
    "heartbeat ignores the precondition": 7,
    "ack succeeds in stopping": 2,
    "a lapse forgets to clear the bound Worker-ID": 2,
    "a lapsed lease is never re-queued": 8,
    "ack replay answers 409": 4,
}


@pytest.mark.parametrize("bug", list(BROKEN))
def test_the_broken_invariant_is_the_expected_one(bug: str) -> None:
    found = explore(WORKERS, ITEMS, DEPTH, BROKEN[bug]()).counterexample
    assert found is not None
    assert EXPECTED_INVARIANT[bug] in {v.invariant for v in found.violations}


def replay_against_server(lines: list[str], items: int) -> list[tuple[int, object, int, object]]:
    """Each line's recorded (status, body) next to the reference server's answer to its request."""
    server = Server()
    env = server.create_environment(now=T0)
    for n in range(items):
        server.create_work(env, session_id=f"sess_{n + 1:032x}", now=T0)
    found = []
    for text in lines:
        line = json.loads(text)
        request = line["request"]
        body = b"" if request["body"] is None else request["body"].encode()
        response = server.handle(
            Request(request["method"], request["target"], request["headers"], body), parse_timestamp(line["time"])
        )
        found.append((line["response"]["status"], line["response"]["body"], response.status, response.json))
    return found


def random_moves(system: System, rng: random.Random, length: int) -> list[Move]:
    world: World = system.initial()
    moves = []
    for _ in range(length):
        move = rng.choice(system.moves(world))
        moves.append(move)
        world = system.apply(world, move).world
    return moves


@pytest.mark.parametrize("seed", range(40))
def test_traces_of_the_spec_rules_are_what_the_reference_server_answers(seed: int) -> None:
    rng = random.Random(seed)
    workers, items = rng.choice([(1, 1), (2, 1), (2, 2), (3, 2)])
    system = System(workers, items)
    lines = trace_lines(system, random_moves(system, rng, 25))
    assert lines
    for recorded_status, recorded, status, answered in replay_against_server(lines, items):
        assert (recorded_status, recorded) == (status, answered)


@pytest.mark.parametrize("bug", list(BROKEN))
def test_a_counterexample_trace_is_well_formed_and_shows_the_deviation(bug: str) -> None:
    system = System(WORKERS, ITEMS, BROKEN[bug]())
    found = explore(WORKERS, ITEMS, DEPTH, system.lifecycle).counterexample
    assert found is not None
    lines = trace_lines(system, found.moves)
    requests = [m for m in found.moves if m.kind is not MoveKind.ADVANCE]
    closing = ITEMS if found.moves[-1].kind is MoveKind.ADVANCE else 0
    assert len(lines) == ITEMS + len(requests) + closing  # opening GETs, one line per request, closing GETs
    times = []
    for text in lines:
        line = json.loads(text)
        assert set(line) == {"time", "request", "response"}
        assert set(line["request"]) == {"method", "target", "headers", "body"}
        assert line["request"]["headers"]["Authorization"] == "Bearer t"
        times.append(datetime.fromisoformat(line["time"].replace("Z", "+00:00")))
    assert times == sorted(times)
    # The reference server (the spec's rules) answers at least one line differently, except where the
    # broken part is not on the wire (the bound Worker-ID of a queued item shows in no reply).
    answers = replay_against_server(lines, ITEMS)
    visible = bug != "a lapse forgets to clear the bound Worker-ID"
    assert any((a, b) != (c, d) for a, b, c, d in answers) == visible


def test_worker_symmetry_merges_renamed_worlds() -> None:
    system = System(2, 1)
    world = system.initial()
    by_w1 = system.apply(world, Move(MoveKind.ACK, worker=0, item=0)).world
    by_w2 = system.apply(world, Move(MoveKind.ACK, worker=1, item=0)).world
    assert by_w1 != by_w2
    assert system.key(by_w1) == system.key(by_w2)
    polled = system.apply(world, Move(MoveKind.POLL, worker=0)).world
    assert system.key(polled) != system.key(by_w1)


def test_stopped_items_are_interchangeable_but_live_ones_keep_their_order() -> None:
    system = System(1, 2)
    world = system.initial()
    first = system.apply(world, Move(MoveKind.FORCE_STOP, item=0)).world
    second = system.apply(world, Move(MoveKind.FORCE_STOP, item=1)).world
    assert system.key(first) == system.key(second)
    acked_first = system.apply(world, Move(MoveKind.ACK, worker=0, item=0)).world
    acked_second = system.apply(world, Move(MoveKind.ACK, worker=0, item=1)).world
    assert system.key(acked_first) != system.key(acked_second)  # poll order tells them apart


def test_time_advances_to_before_at_and_after_the_next_deadline() -> None:
    system = System(1, 1)
    acked = system.apply(system.initial(), Move(MoveKind.ACK, worker=0, item=0)).world
    assert LIFECYCLE.step(acked.items[0], Lapse(), T0).item.state is State.STARTING  # nothing due yet
    advances = [m.at for m in system.moves(acked) if m.kind is MoveKind.ADVANCE]
    assert len(advances) == 3
    assert [(t - advances[1]).total_seconds() for t in advances] == [-0.000001, 0.0, 0.000001]
    assert (advances[1] - T0).total_seconds() == 60  # the start timeout


def test_the_command_reports_figures_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--workers", "1", "--items", "1", "--depth", "3"]) == 0
    captured = capsys.readouterr()
    assert "no counterexample up to depth 3" in captured.out
    for word in ("states explored:", "transitions:", "depth reached: 3", "time taken:"):
        assert word in captured.out
    assert "depth 3:" in captured.err  # progress goes to stderr
    assert main(["verify", "--workers", "1", "--items", "1", "--depth", "2", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_bad_sizes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--workers", "0"]) == 2
    assert main(["verify", "--depth", "-1"]) == 2
    assert "--workers must be from 1 to 5" in capsys.readouterr().err


def test_the_summary_prints_a_counterexample() -> None:
    report = explore(WORKERS, ITEMS, DEPTH, BROKEN["ack replay answers 409"]())
    text = "\n".join(summary(report))
    assert "counterexample (2 moves):" in text
    assert "1. ack item 1 by w1" in text
    assert "broken: invariant 4" in text
    assert "no counterexample" not in text


def test_the_key_keeps_ties_only_where_a_rule_can_turn_on_them() -> None:
    # The spec's rules never rewrite an instant that must not come after another set one: no order kept.
    assert System(2, 2).tie_fields == frozenset()
    # Ack accepted in stopping rewrites acknowledged_at while started_at and the heartbeat may be set.
    broken = System(2, 1, BROKEN["ack succeeds in stopping"]())
    assert broken.tie_fields == {"started_at", "latest_heartbeat_at"}


@pytest.mark.parametrize("seed", range(10))
def test_memoised_moves_give_what_a_fresh_system_gives(seed: int) -> None:
    # A system's memos (steps, lapses, deliveries, checks, key columns) are warmed by walks; every move from a
    # world they visited, asked again, agrees with a system that has seen nothing but that move's world.
    rng = random.Random(seed)
    workers, items = rng.choice([(2, 1), (2, 2), (3, 2)])
    warm = System(workers, items)
    visited: list[World] = []
    for _ in range(5):
        world = warm.initial()
        for _ in range(20):
            visited.append(world)
            world = warm.apply(world, rng.choice(warm.moves(world))).world
            warm.key(world)
    for world in rng.sample(visited, 40):
        for move in rng.sample(warm.moves(world), 5):
            first = warm.apply(world, move)
            again = warm.apply(world, move)  # from the memos
            expected = System(workers, items).apply(world, move)
            assert first == again == expected
            assert warm.key(again.world) == System(workers, items).key(expected.world)


def test_bad_sizes_and_depths_are_typed_errors() -> None:
    for call in (lambda: System(0, 1), lambda: System(1, 6), lambda: explore(1, 1, -1), lambda: explore(1, 1, True)):
        with pytest.raises(InvalidInput):
            call()


def test_a_move_of_another_system_is_refused() -> None:
    system = System(1, 1)
    with pytest.raises(InvalidInput, match="not a move of this system"):
        system.apply(system.initial(), Move(MoveKind.ACK, worker=1, item=0))


class NotALifecycle:
    """Looks a little like a Lifecycle (it has a table), but is not one."""

    table = ()


MISUSES: list[tuple[str, Callable[[], object]]] = [
    ("lifecycle", lambda: explore(1, 1, 1, lifecycle="x")),  # type: ignore[arg-type]
    ("lifecycle", lambda: explore(1, 1, 1, lifecycle=NotALifecycle())),  # type: ignore[arg-type]
    ("lifecycle", lambda: System(1, 1, "x")),  # type: ignore[arg-type]
    ("policy", lambda: explore(1, 1, 1, policy="x")),  # type: ignore[arg-type]
    ("policy", lambda: System(1, 1, policy=None)),  # type: ignore[arg-type]
    ("progress", lambda: explore(1, 1, 1, progress=5)),  # type: ignore[arg-type]
    ("on_step", lambda: explore(1, 1, 1, on_step=5)),  # type: ignore[arg-type]
    ("parents", lambda: explore(1, 1, 1, parents=[])),  # type: ignore[arg-type]
    ("stop_at_violation", lambda: explore(1, 1, 1, stop_at_violation="no")),  # type: ignore[arg-type]
    ("workers", lambda: explore(True, 1, 1)),
    ("items", lambda: explore(1, True, 1)),
    ("workers", lambda: System(True, 1)),
    ("items", lambda: System(1, False)),
    ("items", lambda: System(1, 6)),
    ("depth", lambda: explore(1, 1, 1001)),
    ("depth", lambda: explore(1, 1, 2.0)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("param", "call"), MISUSES, ids=[f"{p}-{n}" for n, (p, _) in enumerate(MISUSES)])
def test_misuse_is_a_typed_error_naming_the_argument(param: str, call: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.param == param
    assert param in caught.value.message


class Enough(Exception):
    pass


def test_depth_1000_is_the_cap_and_is_accepted() -> None:
    def stop(level: int, states: int, transitions: int) -> None:
        raise Enough  # the search started: the depth was accepted

    with pytest.raises(Enough):
        explore(1, 1, 1000, progress=stop)


# --- issue 13: the lifecycle's own actions, and the differential check ------------------------------------


def _noted(item: object, cmd: object, at: object, policy: object, new: object, fx: list[object]) -> None:
    """A new action that writes nothing (a variant's bookkeeping)."""


def _with_new_action() -> Lifecycle:
    """The spec's rules, with an action the global ACTIONS table does not have on the ack line."""
    from helpers import declaration, line

    from workstate.model import ACTIONS, Action

    ack = line("ack", actions="bind_worker stamp_acknowledged request_dispatch note")
    return Lifecycle(declaration({"ack": ack}), actions={**ACTIONS, "note": Action(_noted, frozenset())})


def test_verify_reads_the_lifecycles_own_actions() -> None:
    """A variant with an action of its own is explored (it raised KeyError: verify read the global ACTIONS)."""
    variant = _with_new_action()
    report = explore(1, 1, 4, variant)
    assert report.counterexample is None
    assert report.states == explore(1, 1, 4).states
    assert System(1, 1, variant).tie_fields == System(1, 1).tie_fields


def _ack_by_another_answers_200() -> Lifecycle:
    from helpers import declaration

    return Lifecycle(declaration({"ack-claimed-by-another": None}))


DIFFERENT = {**BROKEN, "ack by another worker answers 200": _ack_by_another_answers_200}
SHORTEST = {
    "heartbeat ignores the precondition": 2,
    "ack succeeds in stopping": 3,
    "a lapse forgets to clear the bound Worker-ID": 3,
    "a lapsed lease is never re-queued": 3,
    "ack replay answers 409": 2,
    "ack by another worker answers 200": 2,
}


def test_the_invariants_alone_miss_an_ack_by_another_worker() -> None:
    """Why the differential check exists: this variant keeps every invariant of api.md §7."""
    assert explore(2, 1, 6, _ack_by_another_answers_200()).counterexample is None


@pytest.mark.parametrize("bug", list(DIFFERENT))
def test_differ_finds_every_variant_with_the_shortest_sequence(bug: str) -> None:
    from workstate.tools.verify import differ, observe

    found = differ(2, 1, 8, DIFFERENT[bug]())
    assert found is not None, bug
    assert len(found.moves) == SHORTEST[bug]
    assert found.expected != found.actual
    assert differ(2, 1, len(found.moves) - 1, DIFFERENT[bug]()) is None  # shortest: one move less finds none
    # The sequence replays: every move but the last answers alike, the last one differently.
    mine, spec = System(2, 1, DIFFERENT[bug]()), System(2, 1)
    a, b = mine.initial(), spec.initial()
    for n, move in enumerate(found.moves):
        ours, theirs = mine.apply(a, move), spec.apply(b, move)
        assert (observe(ours) == observe(theirs)) is (n < len(found.moves) - 1)
        a, b = ours.world, theirs.world
    assert observe(theirs) == found.expected and observe(ours) == found.actual
    assert found.lines()[0] == f"the candidate differs from the reference after {len(found.moves)} moves:"


def test_differ_finds_no_difference_between_equal_rule_sets() -> None:
    from workstate.tools.verify import differ

    assert differ(2, 1, 6, Lifecycle()) is None
    assert differ(1, 2, 5, _with_new_action()) is None  # a new action that writes nothing changes no answer


def test_differ_checks_its_arguments() -> None:
    from workstate.tools.verify import differ

    with pytest.raises(InvalidInput) as caught:
        differ(2, 1, 3, LIFECYCLE, reference="spec")  # type: ignore[arg-type]
    assert caught.value.param == "reference"
    with pytest.raises(InvalidInput) as caught:
        differ(2, 1, -1, LIFECYCLE)
    assert caught.value.param == "depth"


def test_the_search_keeps_the_counts_of_every_level() -> None:
    # The per-item search (cells, numbered key parts, packed codes) visits exactly the states and transitions
    # the search by whole worlds and canonical keys visited (docs/performance.md's table, W=2, I=2).
    levels: list[tuple[int, int, int]] = []
    explore(2, 2, 6, progress=lambda *figures: levels.append(figures))
    assert levels == [
        (1, 6, 22),
        (2, 38, 141),
        (3, 184, 915),
        (4, 787, 4_444),
        (5, 2_847, 19_108),
        (6, 8_748, 69_392),
    ]


@pytest.mark.parametrize("seed", range(6))
def test_the_search_code_tells_worlds_apart_exactly_as_the_key_does(seed: int) -> None:
    # Worlds from random walks: two have one code exactly when they have one canonical key; the unrolled code of
    # two items is the general one; and the world rebuilt from a world's cells is that world.
    from workstate.tools.verify import _code_of_two

    rng = random.Random(seed)
    workers, items = rng.choice([(2, 1), (2, 2), (3, 2), (2, 3)])
    system = System(workers, items)
    worlds: list[World] = []
    for _ in range(6):
        world = system.initial()
        for _ in range(25):
            worlds.append(world)
            world = system.apply(world, rng.choice(system.moves(world))).world
    codes = {}
    for world in worlds:
        cells = system._cells_of(world)
        code = system._code(cells)
        if items == 2:
            assert _code_of_two(cells) == code
        assert system._world_of(cells) == world
        codes.setdefault(code, system.key(world))
        assert codes[code] == system.key(world)
    assert len(codes) == len({system.key(world) for world in worlds}) > 1
