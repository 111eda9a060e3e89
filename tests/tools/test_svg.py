"""docs/lifecycle.svg is well-formed SVG that shows every state and every arrow, with no text on other text."""

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from workstate.rules import RULE_TABLE, State, edges
from workstate.tools.docgen import Box, edge_labels, lifecycle_layout, svg

ROOT = Path(__file__).resolve().parents[2]
NS = "{http://www.w3.org/2000/svg}"


def parsed() -> ET.Element:
    return ET.fromstring((ROOT / "docs" / "lifecycle.svg").read_text())


def text_boxes(root: ET.Element) -> list[tuple[str, Box]]:
    """Each text element's box, computed from the SVG alone (monospace: 0.6 em a character)."""
    size = float(root.get("font-size", "16"))
    found = []
    for text in root.iter(f"{NS}text"):
        content = text.text or ""
        x, y = float(text.get("x", "0")), float(text.get("y", "0"))
        assert text.get("text-anchor") == "middle"
        width = len(content) * 0.6 * size
        found.append((content, Box(x - width / 2, y - 0.8 * size, width, 1.05 * size)))
    return found


def test_it_is_well_formed_svg_with_a_viewbox() -> None:
    root = parsed()
    assert root.tag == f"{NS}svg"
    left, top, width, height = (float(v) for v in root.get("viewBox", "").split())
    assert width > 0 and height > 0
    for _, box in text_boxes(root):  # everything drawn is inside the view
        assert left <= box.x and box.x + box.w <= left + width
        assert top <= box.y and box.y + box.h <= top + height


def test_every_state_and_every_edge_label_appears() -> None:
    root = parsed()
    texts = [content for content, _ in text_boxes(root)]
    for state in State:
        assert texts.count(str(state)) == 1
    for (source, target), names in edge_labels().items():
        for name in names:
            assert name in texts, f"{source} -> {target}: {name}"
    for _, _, rule in edges(RULE_TABLE):
        assert any(t.startswith(str(rule.trigger)) for t in texts)


def test_one_arrow_per_pair_of_states_that_an_accepted_change_joins() -> None:
    drawn = {
        (p.get("data-source"), p.get("data-target")) for p in parsed().iter(f"{NS}path") if p.get("class") == "edge"
    }
    assert drawn == {(str(s), str(t)) for s, t, _ in edges(RULE_TABLE)}


def test_no_text_overlaps_other_text_or_a_state() -> None:
    root = parsed()
    boxes = text_boxes(root)
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
    layout = lifecycle_layout()
    for label in layout.labels:
        for state, box in layout.states.items():
            assert not label.box.overlaps(box), f"{label.lines} overlaps {state}"


def test_overlap_is_detected() -> None:
    assert Box(0, 0, 10, 10).overlaps(Box(5, 5, 10, 10))
    assert not Box(0, 0, 10, 10).overlaps(Box(10, 0, 10, 10))


def test_the_committed_picture_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "lifecycle.svg").read_text() == svg()


@pytest.mark.skipif(
    shutil.which("rsvg-convert") is None and not Path("/usr/bin/chromium").exists(),
    reason="no renderer: apt-get install librsvg2-bin (.ci/run does)",
)
def test_it_renders(tmp_path: Path) -> None:
    source = ROOT / "docs" / "lifecycle.svg"
    if Path("/usr/bin/chromium").exists():
        out = tmp_path / "shot.png"
        cmd = [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={out}",
            source.as_uri(),
        ]
    else:
        out = tmp_path / "lifecycle.png"
        cmd = ["rsvg-convert", str(source), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
