"""Every citation points at a section of docs/api.md or an invariant of docs/invariants.md that exists, and every
relative link of the README and docs/ resolves inside the repository.

The project cites its reference in one form: ``api.md §4.2`` (a section of docs/api.md; ``§`` is used for
nothing else) and ``invariants.md #3`` (an invariant of docs/invariants.md). Rule labels as the core prints
them, ``[4.2 ack-after-stop]``, carry a section number too and are checked the same way. Citations are read from
the package's source, the docs, the README, the tests, and what the CLI prints (explain for every state and
operation, walk, rules, table).
"""

import io
import re
from pathlib import Path

import attrs
import pytest

from workstate import Policy, State
from workstate.cli import main
from workstate.rules import RULE_TABLE, rules_of
from workstate.tools.teach import OPERATIONS

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
INVARIANTS = ROOT / "docs" / "invariants.md"
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted((ROOT / "workstate").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))

SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
INVARIANT = re.compile(r"invariants\.md #(\d+)")
RULE_LABEL = re.compile(r"\[(\d+(?:\.\d+)?) [a-z][a-z-]*\]")
LEGACY = re.compile(
    r"spec sections?\b|\bspec \d|\bsections? \d|work-api\.md|reference-server\.md|\.\./shared|shared/spec"
)

# Files a colleague is changing now; their citation edits are listed in issue 18's report. Remove each entry once
# its file cites api.md / invariants.md (the test then holds it to the one form too).
PENDING: set[str] = set()


def anchors(path: Path) -> set[str]:
    """The fragment ids of a Markdown page: explicit ``<a id>`` anchors and GitHub's heading slugs."""
    text = path.read_text()
    found = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def api_sections() -> set[str]:
    text = API.read_text()
    headings = set(re.findall(r"^## (\d+(?:\.\d+)?) \S", text, re.M))
    ids = set(re.findall(r'<a id="section-(\d+(?:\.\d+)?)"></a>\n## \1 ', text))
    assert headings == ids, f"every numbered heading of api.md has its anchor: {sorted(headings ^ ids)}"
    return headings


def invariant_numbers() -> set[str]:
    text = INVARIANTS.read_text()
    return set(re.findall(r'<a id="invariant-(\d+)"></a>\n## \1 ', text))


def cli_output() -> str:
    runs = [["walk"], ["rules"], ["table"]]
    runs += [["explain", "--state", str(state), "--op", op] for state in State for op in OPERATIONS]
    out = io.StringIO()
    for argv in runs:
        status = main(argv, out=out)
        assert status == 0, argv
    return out.getvalue()


def texts() -> list[tuple[str, str]]:
    found = [(str(path.relative_to(ROOT)), path.read_text()) for path in [*MARKDOWN, *SOURCES]]
    return [*found, ("workstate CLI output", cli_output())]


def test_api_md_keeps_the_section_numbers_of_the_reference() -> None:
    expected = {str(n) for n in range(1, 10)} | {f"4.{n}" for n in range(1, 8)}
    assert api_sections() == expected
    assert "## Dialects" in API.read_text() and "Placeholder" in API.read_text()


def test_invariants_md_states_the_nine_invariants_and_where_each_is_checked() -> None:
    assert invariant_numbers() == {str(n) for n in range(1, 10)}
    text = INVARIANTS.read_text()
    for check in ("change_problems", "timeline_problems", "replay_problems", "rejection_problems"):
        assert f"`{check}`" in text
    for check in ("lease_problems", "liveness_problems", "stats_problems"):
        assert f"`{check}`" in text


def test_every_cited_section_and_invariant_exists() -> None:
    sections, invariants = api_sections(), invariant_numbers()
    missing = []
    count = 0
    for name, text in texts():
        for match in [*SECTION.finditer(text), *RULE_LABEL.finditer(text)]:
            count += 1
            if match.group(1) not in sections:
                missing.append(f"{name}: {match.group(0)}")
        for match in INVARIANT.finditer(text):
            count += 1
            if match.group(1) not in invariants:
                missing.append(f"{name}: {match.group(0)}")
    assert missing == []
    assert count > 100  # the forms above are the ones in use: a change of form must change this test


def test_the_rules_and_the_policy_cite_sections_that_exist() -> None:
    sections = api_sections()
    assert {rule.section for rule in rules_of(RULE_TABLE)} <= sections
    assert {field.metadata["spec"] for field in attrs.fields(Policy)} <= sections


def test_explain_cites_api_md() -> None:
    out = io.StringIO()
    assert main(["explain", "--state", "stopping", "--op", "ack"], out=out) == 0
    assert "[rule ack-after-stop, api.md §4.2]" in out.getvalue()


def test_nothing_cites_the_spec_users_do_not_have() -> None:
    stale = []
    for name, text in texts():
        if name in PENDING or name.startswith("tests/"):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if LEGACY.search(line):
                stale.append(f"{name}:{number}: {line.strip()}")
    assert stale == []


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda path: path.name)
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not a file of the repository
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        outside = not resolved.is_relative_to(ROOT) or not resolved.exists()
        if outside or (fragment and resolved.suffix == ".md" and fragment not in anchors(resolved)):
            broken.append(target)
    assert broken == []
