"""What importing costs, by module names (never by timing): the pytest plugin that every pytest run of a project
with workstate installed loads, and ``workstate --help``."""

import json
import subprocess
import sys

HEAVY = ("asyncio", "hypothesis", "httpx", "uvicorn", "http.client", "urllib.request", "ssl", "xml.sax")
"""Modules neither may import: the event loop, the optional dependencies, and the network stack."""


def imported_by(code: str) -> set[str]:
    """The modules ``code`` adds to ``sys.modules`` in a fresh interpreter (after its own ``import pytest``)."""
    program = (
        "import json, sys\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


SUBPACKAGES = ("api", "asgi", "cli", "testing", "tools", "worker")


def core(name: str) -> bool:
    """A module of the core layer: ``workstate`` itself or one of its top-level modules (no subpackage)."""
    parts = name.split(".")
    return parts[0] == "workstate" and (len(parts) == 1 or (len(parts) == 2 and parts[1] not in SUBPACKAGES))


def heavy(found: set[str]) -> set[str]:
    return {name for name in found if any(name == h or name.startswith(h + ".") for h in HEAVY)}


def test_the_pytest_plugin_imports_the_core_at_most() -> None:
    found = imported_by("import workstate.testing.plugin")
    assert "workstate.testing.plugin" in found
    assert heavy(found) == set()
    ours = {name for name in found if name.startswith("workstate")}
    assert {name for name in ours if not core(name)} == {"workstate.testing", "workstate.testing.plugin"}


def test_the_fixture_imports_the_kit_when_used() -> None:
    found = imported_by(
        "import types\n"
        "import workstate.testing.plugin as plugin\n"
        "from workstate.testing.target import ReferenceTarget\n"
        "request = types.SimpleNamespace(module=None)  # the fixture's request: a test module without settings\n"
        "plugin.workstate_lockstep.__wrapped__(request)(ReferenceTarget, max_examples=1, stateful_step_count=1)"
    )
    assert {"hypothesis", "workstate.testing.lockstep"} <= found  # the cost moved to the first use, not away


HELP = "from workstate.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as exit:\n    assert exit.code == 0"


def test_help_imports_the_argument_parsers_only() -> None:
    found = imported_by(HELP.format(argv=["--help"]))
    assert heavy(found) == set()
    ours = {name for name in found if name.startswith("workstate") and not core(name)}
    commands = {name for name in ours if name.startswith("workstate.cli")}
    assert "workstate.cli.simulate" in commands and "workstate.cli.serve" in commands  # every command is listed
    # explain's parser reads OPERATIONS from teach; docgen comes with explain.py's imports. Both import the core only.
    assert ours - commands <= {"workstate.tools", "workstate.tools.teach", "workstate.tools.docgen"}


def test_a_command_still_configures_what_it_runs() -> None:
    found = imported_by(HELP.format(argv=["verify", "--help"]))
    assert "workstate.tools.verify" not in found  # its help needs no engine either
    found = imported_by("from workstate.cli import main\nimport io\nassert main(['rules'], io.StringIO()) == 0")
    assert "workstate.tools.teach" in found
