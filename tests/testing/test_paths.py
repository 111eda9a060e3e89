"""Path coverage: every edge of the transition table is reached by a shortest path, and exercised by name."""

import subprocess
import sys

import pytest

from workstate import LIFECYCLE, InvalidInput, explain
from workstate.testing.paths import Edge, Path, edges, shortest_paths

PATHS = shortest_paths()


@pytest.mark.parametrize(("edge", "path"), list(PATHS.items()), ids=[str(edge) for edge in PATHS])
def test_the_path_ends_on_its_edge(edge: Edge, path: Path) -> None:
    outcome = path.replay()
    assert outcome.rule.name == edge.rule
    now, command = path.steps[-1]
    why = explain(path.before_last(), command, now, path.policy, dialect=path.dialect)
    assert (why.state, command.trigger, why.rule.name) == (edge.state, edge.trigger, edge.rule)


def test_every_edge_of_the_table_is_covered() -> None:
    assert set(PATHS) == set(edges(LIFECYCLE.table))
    assert len(PATHS) == sum(len(set(entry.rules)) for entry in LIFECYCLE.table.values())


def test_paths_are_shortest_for_a_few_known_edges() -> None:
    lengths = {str(edge): len(path.steps) for edge, path in PATHS.items()}
    assert lengths["ack@queued"] == 1
    assert lengths["deliver-not-reclaimable@queued"] == 2  # poll, poll again inside the window
    assert lengths["heartbeat-first@starting"] == 2  # ack, heartbeat
    assert lengths["lease-expired@active"] == 3  # ack, heartbeat, time passes


def test_a_shallower_search_reaches_fewer_edges() -> None:
    shallow = shortest_paths(depth=2)
    assert set(shallow) < set(PATHS)
    assert all(len(path.steps) <= 2 for path in shallow.values())


def test_paths_import_without_hypothesis() -> None:
    code = "import sys; sys.modules['hypothesis'] = None; import workstate.testing.paths as p; print(len(p.edges()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(PATHS)


@pytest.mark.parametrize(
    ("param", "kwargs"),
    [
        ("lifecycle", {"lifecycle": "x"}),
        ("lifecycle", {"lifecycle": None}),
        ("depth", {"depth": 5.0}),
        ("depth", {"depth": True}),
        ("depth", {"depth": -1}),
        ("depth", {"depth": 1001}),
    ],
)
def test_misuse_is_a_typed_error_naming_the_argument(param: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        shortest_paths(**kwargs)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert param in caught.value.message
