"""The project's promises about itself: the Quick start, CI, dependencies, the commands the docs show."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert text.lstrip().startswith("# workstate")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Quick start holds exactly one code block"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_readme_starts_with_a_quick_start_of_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Quick start"
    install_and_run, install_and_test = quick_start()
    assert "pip install ." in install_and_run and install_and_run.endswith("workstate simulate")
    assert "'.[test]'" in install_and_test and "pytest" in install_and_test


def test_ci_runs_the_readmes_test_command_and_the_checks() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in script and 'eval "$test_command"' in script
    for check in ("ruff check", "ruff format --check", "mypy --strict workstate"):
        assert check in script
    extracted = subprocess.run(
        ["bash", "-c", "awk '/^## Quick start/{q=1} q && /^```/{n++; next} q && n==1' README.md | sed -n 2p"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == quick_start()[1]


def test_runtime_dependencies_are_transitions_and_attrs_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(re.split(r"[<>=!~ ]", d)[0] for d in project["dependencies"]) == ["attrs", "transitions"]
    assert project["requires-python"] == ">=3.11"
    assert {"test", "dev"} <= set(project["optional-dependencies"])
    assert project["scripts"]["workstate"] == "workstate.cli:main"
    assert (ROOT / "workstate" / "py.typed").exists()


def test_python_dash_m_workstate_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "workstate", "rules"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    assert "[4.2 ack-after-stop]" in result.stdout


def shell_sessions() -> list[tuple[list[str], list[str]]]:
    """``$ workstate ...`` lines in the README's and docs' sh blocks, with the lines shown after them."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            lines = block.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("$ workstate "):
                    shown = []
                    for after in lines[i + 1 :]:
                        if after.startswith("$ "):
                            break
                        shown.append(after)
                    found.append((line[len("$ workstate ") :].split(), shown))
    return found


def test_shown_cli_sessions_print_what_they_show() -> None:
    import io

    from workstate.cli import main

    sessions = shell_sessions()
    assert any(args[:1] == ["explain"] for args, _ in sessions)
    for args, shown in sessions:
        out = io.StringIO()
        main(args, out)
        printed = out.getvalue().splitlines()
        for line in shown:
            if line.strip() and "..." not in line:
                assert line in printed, (args, line, printed)
