"""Code examples in the README and docs/ run, and print what they say they print."""

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            found.append((path.name, text[: match.start()].count("\n") + 1, match.group(1)))
    return found


def expected_output(code: str) -> list[str]:
    """Comment lines right after a print(...) are what it prints."""
    lines, expected, after_print = code.splitlines(), [], False
    for line in lines:
        if line.startswith("print("):
            after_print = True
        elif after_print and line.startswith("# "):
            expected.append(line[2:])
        else:
            after_print = False
    return expected


@pytest.mark.parametrize(("name", "line", "code"), python_blocks(), ids=lambda v: str(v)[:20])
def test_doc_example_runs(name: str, line: int, code: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{name}:{line}", "exec"), {})
    printed = out.getvalue().splitlines()
    for want in expected_output(code):
        assert want in printed, f"{name}:{line} should print {want!r}; printed {printed!r}"


def test_there_are_examples() -> None:
    assert any(name == "README.md" for name, _, _ in python_blocks())


def test_generated_docs_match_the_code() -> None:
    from workstate.cli.docgen import drifted

    assert drifted(ROOT) == [], "run: python -m workstate.cli.docgen"


def test_drift_is_detected(tmp_path: Path) -> None:
    from workstate.cli.docgen import drifted, main
    from workstate.tools.docgen import GENERATED

    (tmp_path / "docs").mkdir()
    expected = [*GENERATED, "docs/conformance.md", "docs/conformance-anthropic.md"]
    assert sorted(drifted(tmp_path)) == sorted(expected)  # nothing written yet
    assert main(["--root", str(tmp_path)]) == 0
    assert drifted(tmp_path) == []
    first = next(iter(GENERATED))
    (tmp_path / first).write_text((tmp_path / first).read_text().replace("ack", "akc", 1))
    assert drifted(tmp_path) == [first]
    assert main(["--check", "--root", str(tmp_path)]) == 1


def test_the_diagram_has_every_state_and_the_table_every_rule() -> None:
    from workstate.rules import DECLARATION, State

    text = (ROOT / "docs" / "lifecycle.md").read_text()
    for state in State:
        assert f"    {state.value} -->" in text or f"--> {state.value}" in text
    for line in DECLARATION:
        assert f"| `{line[0]}` |" in text


def test_one_command_regenerates_every_generated_doc(tmp_path: Path) -> None:
    from workstate.cli.docgen import main
    from workstate.tools.docgen import GENERATED

    assert {"docs/lifecycle.md", "docs/policy.md", "docs/errors.md", "docs/lifecycle.svg"} <= set(GENERATED)
    assert main(["--check", "--root", str(ROOT)]) == 0
    assert main(["--root", str(tmp_path)]) == 0  # makes docs/ itself
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (ROOT / name).read_text()


def test_the_docs_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workstate.cli.docgen", "--check", "--root", str(ROOT)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("name", ["docs/errors.md", "docs/lifecycle.svg", "docs/policy.md", "docs/conformance.md"])
def test_drift_of_each_generated_file_is_detected(tmp_path: Path, name: str) -> None:
    from workstate.cli.docgen import drifted, main

    main(["--root", str(tmp_path)])
    (tmp_path / name).write_text((tmp_path / name).read_text() + " ")
    assert drifted(tmp_path) == [name]


def test_errors_lists_every_reason_with_the_rules_that_raise_it() -> None:
    from workstate.model import error_type
    from workstate.rules import RULE_TABLE, Reason, rules_of

    text = (ROOT / "docs" / "errors.md").read_text()
    for reason in Reason:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{reason.name}` |"))
        assert f"| {reason.status} | `{error_type(reason)}` |" in row and reason.message in row
        for rule in rules_of(RULE_TABLE):
            assert (f"`{rule.name}` ({rule.section})" in row) == (rule.reason is reason)
        if reason.status == 409:
            assert "`conflict_error` with `Policy(conflict_error_type=ConflictErrorType.CONFLICT_ERROR)`" in row
    for status, kind in [(401, "authentication_error"), (403, "permission_error"), (404, "not_found_error")]:
        assert f"| {status} | `{kind}` |" in text


@pytest.mark.parametrize("name", ["tutorial.md", "server-guide.md"])
def test_the_guides_assert_what_their_examples_print(name: str) -> None:
    blocks = [code for doc, _, code in python_blocks() if doc == name]
    assert blocks and all(expected_output(code) for code in blocks)


def test_the_picture_is_linked() -> None:
    assert "](lifecycle.svg)" in (ROOT / "docs" / "lifecycle.md").read_text()
