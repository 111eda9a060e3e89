"""The layout's promises, checked on the code's own syntax trees (not by hope, not line by line).

(a) no module imports another module's private (``_name``) names;
(b) nothing outside ``cli/`` and the named I/O adapters reads a clock, sleeps, draws randomness, opens
    sockets, files or threads, runs processes, or prints;
(c) no layer imports a higher one: core < api < worker, tools < testing, cli.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workstate"

# The layers, lowest first. A module's layer is that of the longest prefix of its dotted name listed here.
LAYERS: dict[str, int] = {
    "workstate": 0,  # the pure lifecycle core: rules, model, policy, invariants, errors
    "workstate.api": 1,  # the sans-I/O HTTP-shaped surface: wire, routes, codec, indexes, Server
    "workstate.worker": 2,  # the sans-I/O worker driver
    "workstate.tools": 2,  # the pure engines behind the commands
    "workstate.testing": 3,  # the oracle kit
    "workstate.cli": 3,  # the commands
    "workstate.__main__": 3,
    "workstate.asgi": 3,  # the ASGI edge over api.Server (serves tools.openapi's document)
    "workstate.stores": 3,  # the database stores under api.Server (api.store's protocol)
}

# The places that may touch the outside, and why. Everything else must be pure.
IO_PLACES: dict[str, str] = {
    "workstate/cli/": "the commands: argparse, printing, progress, clocks, files, exit codes",
    "workstate/__main__.py": "python -m workstate: runs the CLI",
    "workstate/testing/http.py": "the kit's HTTP target: a real client over sockets (http.client)",
    "workstate/testing/target.py": "the kit's AsyncBridge: runs an async server's coroutines on an event loop",
    "workstate/worker/runner.py": "the worker runner: httpx, asyncio tasks and sleeps, the clock, jitter",
    "workstate/asgi/": "the ASGI edge: the wall clock, a threading.Lock, the record stream, body timeouts",
    "workstate/testing/asgi.py": "the kit's AsgiTarget: runs an ASGI app's coroutines on a private event loop",
    "workstate/stores/": "the database stores: sqlite3 and psycopg connections, files, locks, random ids",
}

# Modules whose import alone means I/O, time, concurrency or randomness.
IO_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "gc",
        "http",
        "io",
        "multiprocessing",
        "os",
        "pathlib",
        "random",
        "secrets",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "socketserver",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib.request",
    }
)
IO_CALLS = frozenset({"print", "open", "input", "breakpoint"})
CLOCK_METHODS = frozenset({"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"})


def modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported(name: str, path: Path, tree: ast.Module) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names taken from it) for every import in the module, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module, [alias.name for alias in node.names]


def layer(module: str) -> int | None:
    best = None
    for prefix, rank in LAYERS.items():
        inside = module == prefix or module.startswith(prefix + ".")
        if inside and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return None if best is None else best[1]


def is_io_place(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == place or (place.endswith("/") and relative.startswith(place)) for place in IO_PLACES)


ALL = list(modules())


def test_the_architecture_page_matches_the_tree() -> None:
    """Each row of docs/architecture.md's table names a folder and exactly the modules in it."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`workstate/" in line]
    seen = set()
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        (folder,) = re.findall(r"`(workstate/[a-z]*/?)`", cells[1])
        named = {n for n in re.findall(r"`([A-Za-z_]+\.py)`", cells[3]) if n != "__init__.py"}
        path = ROOT / folder
        present = {p.name for p in path.glob("*.py")} - {"__init__.py", "__main__.py"}
        assert named == present, f"{folder}: the page names {sorted(named)}, the tree holds {sorted(present)}"
        seen.add(path.resolve())
    rooms = {PACKAGE.resolve(), *(p.resolve() for p in PACKAGE.iterdir() if (p / "__init__.py").exists())}
    assert seen == rooms, "every folder of the package has its row, and no row names a missing one"
    top = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    core = {"rules.py", "model.py", "policy.py", "dialect.py", "record.py", "invariants.py", "errors.py", "_time.py"}
    core |= {"_values.py"}
    assert top <= core, "the top level holds the pure lifecycle core only"


@pytest.mark.parametrize(("name", "path", "tree"), ALL, ids=[name for name, _, _ in ALL])
def test_no_module_imports_a_private_name_of_another(name: str, path: Path, tree: ast.Module) -> None:
    for line, module, names in imported(name, path, tree):
        if module == name or not module.startswith("workstate"):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.relative_to(ROOT)}:{line} imports {private} from {module}"


@pytest.mark.parametrize(("name", "path", "tree"), ALL, ids=[name for name, _, _ in ALL])
def test_no_layer_imports_a_higher_one(name: str, path: Path, tree: ast.Module) -> None:
    own = layer(name)
    assert own is not None, f"{name} is in no layer of LAYERS"
    for line, module, _ in imported(name, path, tree):
        other = layer(module)
        if other is not None:
            assert other <= own, f"{path.relative_to(ROOT)}:{line}: layer {own} imports {module} (layer {other})"


@pytest.mark.parametrize(
    ("name", "path", "tree"),
    [m for m in ALL if not is_io_place(m[1])],
    ids=[name for name, path, _ in ALL if not is_io_place(path)],
)
def test_pure_code_touches_nothing_outside(name: str, path: Path, tree: ast.Module) -> None:
    where = path.relative_to(ROOT)
    for line, module, names in imported(name, path, tree):
        for full in [module, *(f"{module}.{n}" for n in names)]:
            root = full.split(".")[0]
            assert root not in IO_MODULES and full not in IO_MODULES, f"{where}:{line} imports {full}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                assert func.id not in IO_CALLS, f"{where}:{node.lineno} calls {func.id}()"
            elif isinstance(func, ast.Attribute) and func.attr in CLOCK_METHODS:
                owner = func.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                assert owner_name not in ("datetime", "date"), f"{where}:{node.lineno} reads the clock"


def test_the_purity_check_has_teeth(tmp_path: Path) -> None:
    """The checks above catch what they promise to: each bad line below is found."""
    bad = {
        "import time\n": "imports time",
        "from random import choice\n": "imports random",
        "print('x')\n": "calls print",
        "from datetime import datetime\nx = datetime.now()\n": "reads the clock",
        "with open('f') as f:\n    pass\n": "calls open",
    }
    for source, what in bad.items():
        path = PACKAGE / "tools" / "example.py"
        tree = ast.parse(source)
        with pytest.raises(AssertionError, match=what):
            test_pure_code_touches_nothing_outside("workstate.tools.example", path, tree)
    with pytest.raises(AssertionError, match="imports"):
        test_no_layer_imports_a_higher_one(
            "workstate.model", PACKAGE / "model.py", ast.parse("from .api import Server\n")
        )
    with pytest.raises(AssertionError, match="imports"):
        test_no_module_imports_a_private_name_of_another(
            "workstate.api.server", PACKAGE / "api" / "server.py", ast.parse("from ..model import _ID\n")
        )


def _wire_words_in(tree: ast.AST) -> set[str]:
    """The dialects' base paths and header names that a module's string constants (not its docstrings) spell."""
    from workstate import DIALECTS

    paths = {d.base_path.rstrip("/") for d in DIALECTS.values()}
    headers = {
        h.lower() for d in DIALECTS.values() for h in (d.worker_header, *d.ignored_headers, d.request_id_header or "")
    }
    headers |= {h.lower() for d in DIALECTS.values() for h in d.auth_headers if h.lower() != "authorization"}
    headers.discard("")
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found |= {p for p in paths if p in node.value}
            found |= {h for h in headers if node.value.lower() == h}
    return found


def test_base_paths_and_header_names_are_written_in_the_dialects_only() -> None:
    """The wire's spellings are data of workstate/dialect.py: no other module of the package writes a base path or a
    dialect's header name (the API layer reads them from the Dialect it is given)."""
    spelled = {
        p.relative_to(ROOT).as_posix(): sorted(words)
        for p in PACKAGE.rglob("*.py")
        if p.name != "dialect.py" and (words := _wire_words_in(ast.parse(p.read_text())))
    }
    spelled.update(
        {
            p.relative_to(ROOT).as_posix(): ["a base path"]
            for p in PACKAGE.rglob("*")
            if p.suffix in (".html", ".js", ".css") and any(b in p.read_text() for b in ("/environments/",))
        }
    )
    assert spelled == {}


def test_the_wire_words_check_has_teeth() -> None:
    assert _wire_words_in(ast.parse('P = "/v1/environments"\nH = {"worker-id": 1}\n')) == {
        "/v1/environments",
        "worker-id",
    }
    assert _wire_words_in(ast.parse('"""Under /v1/environments, a Worker-ID."""\n')) == set()


def test_test_file_basenames_are_unique() -> None:
    """pytest imports test modules by basename (``pythonpath = ["tests"]``, no packages): two ``test_x.py`` in two
    folders break collection of the whole suite."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        seen.setdefault(path.name, []).append(path.relative_to(ROOT).as_posix())
    assert {name: paths for name, paths in seen.items() if len(paths) > 1 and name != "conftest.py"} == {}
