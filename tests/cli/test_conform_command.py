"""workstate conform --url: the conformance suite against a live server (the example HTTP server here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest

from workstate.cli import main
from workstate.testing.conformance import conformance_cases
from workstate.testing.mutants import LifoPoll

ROOT = Path(__file__).resolve().parents[2]


def _example() -> ModuleType:
    name = "workstate_example_http_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "http_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_url() -> Iterator[str]:
    with _example().serve(test_clock=True, test_routes=True) as running:
        yield running.url


def test_conform_passes_the_example_server(
    example_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    status = main(["conform", "--url", example_url, "--json", str(report), "--junit", str(junit)])  # the whole suite
    out, err = capsys.readouterr()
    expected = [case.case_id for case in conformance_cases()]
    assert status == 0, out[-3000:]
    assert f"OK: {len(expected)} of {len(expected)} cases passed" in out
    assert "4.6 " in out and "all " in out  # the summary table, a row per section
    assert f"{len(expected)}/{len(expected)} cases, 0 failed" in err  # the progress bar, on stderr
    document = json.loads(report.read_text())
    assert document["ok"] is True and [case["id"] for case in document["cases"]] == expected
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("tests") == str(len(expected)) and suite.get("failures") == "0"


def test_conform_fails_a_wrong_server_and_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "junit.xml"
    with _example().serve(LifoPoll().server, test_clock=True, test_routes=True) as running:
        status = main(["conform", "--url", running.url, "--only", "4.1-poll/order/", "--junit", str(junit)])
    out, _ = capsys.readouterr()
    assert status == 1
    assert "FAILED 4.1-poll/order/oldest-first" in out and "FAIL:" in out
    failures = ElementTree.parse(junit).getroot().findall("testcase/failure")
    assert failures and "oldest-first" in ElementTree.tostring(ElementTree.parse(junit).getroot(), encoding="unicode")


def test_conform_refuses_bad_arguments(example_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conform", "--url", "ftp://x"]) == 2
    assert main(["conform", "--url", example_url, "--policy", "nonsense=1"]) == 2
    assert main(["conform", "--url", example_url, "--only", "no-such-case"]) == 2
    assert main(["conform", "--url", example_url, "--only", "!*@*", "--dialect", "qoder"]) == 0  # the boundaries
    assert main(["conform", "--url", "http://127.0.0.1:9"]) == 2  # nothing listens on the discard port
    err = capsys.readouterr().err
    assert "--url must be" in err and "no case" in err and "no server" in err
