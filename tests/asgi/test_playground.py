"""Issue 19: the playground page in a real browser.

``workstate playground`` runs as a real process on 127.0.0.1 (port 0); headless Chromium (Debian's ``chromium``,
never a downloaded one) driven by Playwright loads the page and walks one item through its whole life by clicking,
checking at each step the highlighted state of the diagram, the items table and the rule the log shows; it provokes
a 409 and a 412, then lets a second item's lease run out and sees it re-queued. A second walk switches to the peer
dialect (anthropic, served beside qoder from the same origin) and sees its differences: an ack by another worker
taken (no worker check), a force stop's 204 with no body, a heartbeat on the stopped item answered 200 with
``lease_extended: false``; each dialect's items stay its own. A screenshot of each step goes to
``$WORKSTATE_ARTIFACTS`` (default: the test's tmp_path). Every wait is bounded; the server and the browser are always
stopped. Without chromium or playwright the test is skipped, naming the install step (CI fails on a skip).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workstate import ANTHROPIC, QODER

STARTUP = 60.0  # the longest the command may take to print its listening line
WAIT_MS = 15_000  # the longest any wait in the page lasts
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class Playground:
    """A running ``workstate playground`` on 127.0.0.1: ``url``."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workstate", "playground", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._url: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            url = self._url.get(timeout=STARTUP)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            raise AssertionError(f"workstate playground printed no URL: {self.lines} {self.stderr[-2000:]}")
        self.url = url

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if line.startswith("playground on http://"):
                self._url.put(line.removeprefix("playground on "))
        self._url.put(None)

    def stop(self) -> None:
        self.stderr = ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.stderr = self.process.stderr.read()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    return path


@pytest.fixture
def playwright_api() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install '.[test]'")
    return sync_playwright


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("WORKSTATE_ARTIFACTS") or tmp_path) / "playground"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(chromium: str, playwright_api: Any) -> Iterator[Any]:
    server = Playground()
    try:
        with playwright_api() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=WAIT_MS)
            try:
                tab = browser.new_page(viewport={"width": 1440, "height": 1000})
                tab.set_default_timeout(WAIT_MS)
                tab.route("**/*", lambda route: _loopback_only(route, server.url))
                tab.goto(server.url)
                tab.wait_for_selector("body[data-ready=true]")
                yield tab
            finally:
                browser.close()
    finally:
        server.stop()


def _loopback_only(route: Any, url: str) -> None:
    if route.request.url.startswith(url):
        route.continue_()
    else:
        route.abort()


class Steps:
    """Clicks on the page, each waited for, and a screenshot after each."""

    def __init__(self, tab: Any, folder: Path) -> None:
        self.tab = tab
        self.folder = folder
        self.count = 0

    def click(self, button: str) -> None:
        done = int(self.tab.get_attribute("body", "data-done") or 0)
        self.tab.click(f"#{button}")
        self.tab.wait_for_function(f"Number(document.body.dataset.done || 0) > {done}", timeout=WAIT_MS)
        assert self.tab.text_content("#status") == "ready"

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.tab.screenshot(path=str(path), full_page=True)
        return path

    def latest(self) -> tuple[str, str]:
        """The newest log entry's head line and rule line."""
        head = self.tab.text_content("#log li:first-child .head") or ""
        rule = self.tab.text_content("#log li:first-child .rule") or ""
        return head, rule

    def highlighted(self) -> list[str]:
        return list(self.tab.eval_on_selector_all("#diagram rect.state.selected", "rs => rs.map(r => r.dataset.state)"))

    def row(self, item: str) -> list[str]:
        return list(
            self.tab.eval_on_selector_all(f'#items tr[data-id="{item}"] td', "cs => cs.map(c => c.textContent)")
        )

    def selected_item(self) -> str:
        return str(self.tab.input_value("#item"))


def test_one_item_s_whole_life_by_clicking(page: Any, artifacts: Path) -> None:
    steps = Steps(page, artifacts)
    assert page.locator("#dialect option").all_text_contents() == [
        f"qoder ({QODER.path('{env}')})",
        f"anthropic ({ANTHROPIC.path('{env}')})",
    ]  # both dialects served, the page's own first, as the config route says
    assert page.text_content("#worker-label") == "Worker (Worker-ID)"

    steps.click("new-env")
    head, rule = steps.latest()
    assert " 201" in head and "test route" in rule
    steps.click("new-item")
    item = steps.selected_item()
    assert item.startswith("work_") and steps.highlighted() == ["queued"]
    steps.shot("created")

    page.fill("#worker", "worker-a")
    steps.click("poll")
    head, rule = steps.latest()
    assert "worker-a: GET" in head and "/poll" in head and head.endswith("200")
    assert rule.startswith("[4.1 deliver] deliver in queued when deliverable")
    assert steps.highlighted() == ["queued"]
    steps.shot("polled")

    steps.click("ack")
    head, rule = steps.latest()
    assert head.endswith("200") and rule.startswith("[4.2 ack] ack in queued -> starting")
    assert steps.highlighted() == ["starting"]
    assert steps.row(item)[1:3] == ["starting", "worker-a"]
    assert page.input_value("#expected") == "NO_HEARTBEAT"  # what worker-a has seen: no heartbeat yet
    steps.shot("acked")

    page.fill("#worker", "worker-b")  # another worker acks: 409, and the rule says why
    assert page.input_value("#expected") == ""  # worker-b has seen no token for this item
    steps.click("ack")
    head, rule = steps.latest()
    assert "worker-b: POST" in head and head.endswith("409")
    assert rule.startswith("[4.2 ack-bound-to-another]") and "claimed by another worker" in rule
    assert "worker_conflict=yes" in rule and steps.highlighted() == ["starting"]
    steps.shot("conflict-409")

    page.fill("#worker", "worker-a")
    assert page.input_value("#expected") == "NO_HEARTBEAT"
    steps.click("heartbeat")
    head, rule = steps.latest()
    assert "expected_last_heartbeat=NO_HEARTBEAT" in head and head.endswith("200")
    assert rule.startswith("[4.3 heartbeat-first] heartbeat in starting -> active")
    assert steps.highlighted() == ["active"]
    first_token = page.input_value("#expected")
    assert first_token.startswith("20")  # prefilled with the token the heartbeat answered
    steps.shot("heartbeat-first")

    page.fill("#seconds", "5")
    steps.click("advance")
    head, rule = steps.latest()
    assert "clock +5 s" in head and rule == "no item lapses"
    steps.click("heartbeat")
    head, rule = steps.latest()
    assert rule.startswith("[4.3 heartbeat] heartbeat in active")
    assert page.input_value("#expected") != first_token

    page.fill("#expected", first_token)  # a stale token: 412, and the rule says why
    steps.click("heartbeat")
    head, rule = steps.latest()
    assert head.endswith("412")
    assert rule.startswith("[4.3 heartbeat-precondition-failed]") and "expected_last_heartbeat does not match" in rule
    assert steps.highlighted() == ["active"]
    steps.shot("stale-412")

    steps.click("stop")  # a graceful stop asks the worker to drain
    head, rule = steps.latest()
    assert '{"force":false}' in head and rule.startswith("[4.4 stop-requests-drain]")
    assert steps.highlighted() == ["stopping"]
    steps.shot("stopping")
    steps.click("stop")  # the worker confirms
    head, rule = steps.latest()
    assert rule.startswith("[4.4 stop-confirms] stop in stopping -> stopped")
    assert steps.highlighted() == ["stopped"] and steps.row(item)[1] == "stopped"
    steps.shot("stopped")

    # A second item: polled, acked, heartbeated, then its worker vanishes and its lease runs out.
    steps.click("new-item")
    second = steps.selected_item()
    assert second != item and steps.highlighted() == ["queued"]
    for button in ("poll", "ack", "heartbeat"):
        steps.click(button)
    assert steps.highlighted() == ["active"]
    deadline = steps.row(second)[3]
    assert deadline != "-"
    steps.click("next-deadline")
    head, rule = steps.latest()
    assert "clock to the next deadline" in head
    assert rule.startswith(f"{second}: [5 lease-expired] lapse in active -> queued (requeue)")
    assert "lapse_due=yes" in rule  # the guard values that decided it
    assert steps.highlighted() == ["queued"]
    assert steps.row(second)[1:3] == ["queued", "-"]
    assert page.text_content("#where") == f"{second} is queued"
    occupied = page.eval_on_selector_all("#diagram rect.state.occupied", "rs => rs.map(r => r.dataset.state)")
    assert sorted(occupied) == ["queued", "stopped"]  # both items, each in its state
    shot = steps.shot("lease-expired-requeued")

    steps.click("list")
    head, rule = steps.latest()
    assert head.endswith("200") and "no lifecycle rule" in rule
    assert page.input_value("#cursor").startswith("work_")  # the next page's cursor, prefilled
    done = int(page.get_attribute("body", "data-done") or 0)
    page.focus("#stats")  # the keyboard works too: a focused button, Enter
    page.keyboard.press("Enter")
    page.wait_for_function(f"Number(document.body.dataset.done || 0) > {done}", timeout=WAIT_MS)
    head, rule = steps.latest()
    assert "/stats" in head and head.endswith("200")
    assert shot.stat().st_size > 10_000


def test_the_peer_dialect_by_clicking(page: Any, artifacts: Path) -> None:
    folder = artifacts / "anthropic"
    folder.mkdir(exist_ok=True)
    steps = Steps(page, folder)
    steps.click("new-env")  # a qoder environment and item first: the peer's server has neither
    steps.click("new-item")
    qoder_item = steps.selected_item()

    page.select_option("#dialect", "anthropic")
    assert page.text_content("#worker-label") == f"Worker ({ANTHROPIC.worker_header})"
    assert page.text_content("#env") == "none" and page.locator("#items tbody tr").count() == 0
    assert page.is_disabled("#poll") and "stop answers 204" in (page.text_content("#dialect-help") or "")
    steps.click("new-env")
    head, rule = steps.latest()
    assert "/_playground/anthropic/_test/environments" in head and head.endswith("201") and "test route" in rule
    env = page.text_content("#env") or ""
    assert ANTHROPIC.valid_id("env", env) and not QODER.valid_id("env", env)
    steps.click("new-item")
    item = steps.selected_item()
    assert ANTHROPIC.valid_id("work", item) and steps.highlighted() == ["queued"]
    steps.shot("anthropic-created")

    page.fill("#worker", "worker-a")
    steps.click("poll")
    head, rule = steps.latest()
    assert f"worker-a: GET {ANTHROPIC.path(env, operation='poll')}" in head and head.endswith("200")
    assert rule.startswith("[4.1 deliver] deliver in queued when deliverable")
    assert '"secret"' in (page.text_content("#log li:first-child pre") or "")  # the peer's work object
    steps.shot("anthropic-polled")

    page.fill("#worker", "worker-b")  # another worker acks: taken in the peer, which does not check the worker
    steps.click("ack")
    head, rule = steps.latest()
    assert "worker-b: POST" in head and head.endswith("200")
    assert rule.startswith("[4.2 ack] ack in queued -> starting") and "checks_worker=no" in rule
    note = page.text_content("#log li:first-child .note") or ""
    assert f"no {ANTHROPIC.worker_header} header sent" in note  # the peer's ack sends no worker header
    assert steps.highlighted() == ["starting"]
    assert steps.row(item)[1:3] == ["starting", "worker-a"]  # the ack binds the delivery's worker
    assert page.input_value("#expected") == "NO_HEARTBEAT"
    steps.shot("anthropic-acked-by-another")

    steps.click("heartbeat")
    head, rule = steps.latest()
    assert "expected_last_heartbeat=NO_HEARTBEAT" in head and head.endswith("200")
    assert rule.startswith("[4.3 heartbeat-first] heartbeat in starting -> active")
    assert steps.highlighted() == ["active"]
    steps.shot("anthropic-heartbeat-first")

    page.check("#force")
    steps.click("stop")
    head, rule = steps.latest()
    assert '{"force":true}' in head and head.endswith("204")  # the peer's stop: no content
    assert rule.startswith("[4.4 force-stop]")
    assert page.locator("#log li:first-child .note").count() == 0  # the explanation expected the 204 too
    assert page.text_content("#log li:first-child pre") == "(no body)"
    assert steps.highlighted() == ["stopped"] and steps.row(item)[1] == "stopped"
    steps.shot("anthropic-force-stop-204")

    steps.click("heartbeat")  # the stopped item's heartbeat: 200, the worker learns to end the session
    head, rule = steps.latest()
    assert head.endswith("200") and rule.startswith("[4.3 heartbeat-stopped-reported]")
    body = page.text_content("#log li:first-child pre") or ""
    assert '"lease_extended": false' in body and '"state": "stopped"' in body
    assert steps.highlighted() == ["stopped"]
    shot = steps.shot("anthropic-heartbeat-stopped")

    steps.click("list")
    head, rule = steps.latest()
    assert head.endswith("200") and '"next_page"' in (page.text_content("#log li:first-child pre") or "")
    assert page.locator("#cursor-kind option").all_text_contents()[1:] == ["page"]

    page.select_option("#dialect", "qoder")  # back: qoder's items, its own
    assert page.text_content("#worker-label") == f"Worker ({QODER.worker_header})"
    assert page.eval_on_selector_all("#items tbody tr", "rs => rs.map(r => r.dataset.id)") == [qoder_item]
    assert page.text_content("#where") == f"{qoder_item} is queued"
    page.select_option("#dialect", "anthropic")
    assert steps.row(item)[1] == "stopped" and page.text_content("#env") == env
    assert shot.stat().st_size > 10_000


def test_every_control_is_labelled_and_reachable(page: Any) -> None:
    unlabelled = page.eval_on_selector_all(
        "input, select, textarea", "cs => cs.filter(c => c.labels.length === 0).map(c => c.id)"
    )
    assert unlabelled == []
    buttons = page.eval_on_selector_all("button", "bs => bs.filter(b => !b.textContent.trim()).length")
    assert buttons == 0
    page.focus("#new-env")
    page.keyboard.press("Tab")  # "New item" is disabled until an environment exists: the next control
    assert page.evaluate("document.activeElement.id") == "new-metadata"
