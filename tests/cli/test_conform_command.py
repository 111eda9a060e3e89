"""workstate conform --url: the conformance suite against a live server (the example HTTP server here)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest
from sigint_helpers import interrupt_after

from workstate import ANTHROPIC
from workstate.cli import main
from workstate.testing.conformance import conformance_cases, selected
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


@pytest.fixture
def peer_url() -> Iterator[str]:
    """``workstate serve --dialect anthropic`` with the test clock and routes, on a free loopback port."""
    command = [sys.executable, "-m", "workstate", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--dialect", "anthropic", "--test-clock", "--test-routes"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "listening on http://127.0.0.1:PORT", once it accepts connections
        assert line.startswith("listening on http://127.0.0.1:"), line + server.stdout.read()
        # the access log follows, a line per request: drained, so the pipe never fills and stalls the server
        threading.Thread(target=server.stdout.read, daemon=True).start()
        yield line.split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_conform_passes_workstate_serve_in_the_anthropic_dialect(
    peer_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for only in ("!*@*", "*@stopped*"):  # the boundaries, and the cover of stopped items (the peer's own rules)
        report = tmp_path / "report.json"
        status = main(["conform", "--url", peer_url, "--dialect", "anthropic", "--only", only, "--json", str(report)])
        out, _ = capsys.readouterr()
        expected = [c.case_id for c in conformance_cases(dialect=ANTHROPIC) if selected(c.case_id, only)]
        assert status == 0, out[-3000:]
        assert f"OK: {len(expected)} of {len(expected)} cases passed" in out
        assert [case["id"] for case in json.loads(report.read_text())["cases"]] == expected
    assert any("heartbeat-stopped-reported" in case_id for case_id in expected)


def test_each_dialects_suite_fails_a_server_of_the_other(
    peer_url: str, example_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # qoder's suite against the peer server: refused at once, its ids are another dialect's
    assert main(["conform", "--url", peer_url, "--only", "4.7-stats/stats-empty"]) == 2
    assert "(its ids are those of --dialect anthropic)" in capsys.readouterr().err
    # the peer's suite against a qoder server (whose ids the peer's format admits): every case fails
    assert main(["conform", "--url", example_url, "--dialect", "anthropic", "--only", "4.7-stats/stats-"]) == 1
    out = capsys.readouterr().out
    assert "FAILED 4.7-stats/stats-empty" in out and "passed" in out and " 0 of " in out


def test_json_alone_prints_the_document_on_stdout(example_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    only = "4.7-stats/stats-"
    assert main(["conform", "--url", example_url, "--only", only, "--json", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)  # nothing but the JSON on stdout
    expected = [c.case_id for c in conformance_cases() if selected(c.case_id, only)]
    assert [case["id"] for case in document["cases"]] == expected
    assert document["ok"] is True and document["interrupted"] is False
    assert (document["passed"], document["failed"], document["dialect"]) == (len(expected), 0, "qoder")
    assert document["sections"] == {"4.7": {"cases": len(expected), "failed": 0}}
    assert err == ""  # --no-progress: no bar
    shape = re.search(r"### `conform --json`\n\n```json\n(.*?)```", (ROOT / "docs" / "cli.md").read_text(), re.S)
    assert shape is not None
    documented = json.loads(shape.group(1))  # docs/cli.md's example has the printed shape
    assert set(document) == set(documented) and set(document["cases"][0]) == set(documented["cases"][0])
    sent = document["cases"][0]["requests"][-1]  # a request is JSON values, in the documented shape
    assert set(sent) == set(documented["cases"][0]["requests"][0])
    assert sent["method"] == "GET" and sent["target"].endswith("/stats") and sent["body"] == ""
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    assert sent["at"].endswith("Z") and headers["authorization"].startswith("Bearer ")
    assert main(["conform", "--url", example_url, "--only", only, "--json", "-", "--no-progress"]) == 0
    assert [case["id"] for case in json.loads(capsys.readouterr().out)["cases"]] == expected


def test_the_bar_shows_a_percentage_an_eta_and_reaches_100(
    example_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conform", "--url", example_url, "--only", "4.7-stats/stats-", "--progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert "ETA " in lines[0] and lines[-1].split("]")[1].startswith(" 100% ") and "finished in" in lines[-1]


def test_progress_and_no_progress_are_refused_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["conform", "--url", "http://127.0.0.1:9", "--progress", "--no-progress"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.fixture
def served_url() -> Iterator[str]:
    """``workstate serve`` (qoder) with the test clock and routes, in its own process, on a free loopback port."""
    command = [sys.executable, "-m", "workstate", "serve", "--host", "127.0.0.1", "--port", "0", "--test-clock"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + server.stdout.read()
        threading.Thread(target=server.stdout.read, daemon=True).start()
        yield line.split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ctrl_c_prints_the_partial_report_and_exits_130(served_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = interrupt_after(["conform", "--url", served_url, "--json", str(report)], " cases, ")
    assert done.status == 130 and "Traceback" not in done.err
    assert "workstate conform: interrupted after " in done.err
    assert "INTERRUPTED: " in done.out and "all " in done.out  # the summary of the cases run so far
    document = json.loads(report.read_text())
    assert document["interrupted"] is True and document["ok"] is False
    assert 0 < len(document["cases"]) < len(conformance_cases())
