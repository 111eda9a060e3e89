"""Code examples in the README and docs/ run, and print what they say they print."""

import contextlib
import io
import re
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
    from workstate.docgen import drifted

    assert drifted(ROOT) == [], "run: python -m workstate.docgen"


def test_drift_is_detected(tmp_path: Path) -> None:
    from workstate.docgen import GENERATED, drifted, main

    (tmp_path / "docs").mkdir()
    assert sorted(drifted(tmp_path)) == sorted(GENERATED)  # nothing written yet
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
