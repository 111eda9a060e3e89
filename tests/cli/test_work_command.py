"""``workstate work``: real worker processes against ``workstate serve`` on loopback (issue 15, point 5).

Every wait is bounded and every process is ended by the test; nothing asserts how long anything took.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from workstate import ANTHROPIC
from workstate.api import BASE_PATH

WORKSTATE = [sys.executable, "-m", "workstate"]
DEADLINE = 90.0  # generous, for a loaded two-core machine: only "eventually" is asserted
# 6 s leases: heartbeats every 3 s, a lease believed for 5 s (a 1 s margin): 2 s of slack for a loaded machine
POLICY = ["min_ttl_seconds=1", "default_ttl_seconds=6", "start_timeout_seconds=2", "reclaim_older_than_ms=500"]

# The command each item runs: it records its start (with its environment and its stdin), a SIGTERM, and its
# end, one JSON line each, in MARKERS; a "long" item runs until SIGTERM, the others until RELEASE exists.
CHILD = r"""
import json, os, signal, sys, time
markers, release = sys.argv[1], sys.argv[2]
work = json.loads(sys.stdin.readline())
def mark(event, **extra):
    line = {"event": event, "pid": os.getpid(), "time": time.time(), "work_id": os.environ["WORKSTATE_WORK_ID"]}
    line.update(extra)
    with open(markers, "a") as f:
        f.write(json.dumps(line) + "\n")
def term(signum, frame):
    mark("sigterm")
    mark("end")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
env = os.environ
mark("start", worker=env["WORKSTATE_WORKER_ID"], stdin_id=work["id"], stdin_session=work["data"]["id"],
     env=env["WORKSTATE_ENVIRONMENT_ID"], session=env["WORKSTATE_SESSION_ID"], kind=work["metadata"].get("kind"))
stop_at = time.monotonic() + 60
while time.monotonic() < stop_at:
    if work["metadata"].get("kind") != "long" and os.path.exists(release):
        break
    time.sleep(0.05)
mark("end")
"""


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    complete = path.read_text().split("\n")[:-1]  # a line still being written has no newline yet
    return [json.loads(line) for line in complete if line.strip()]


def read_log(path: Path) -> list[dict[str, str]]:
    """A worker's event lines: ``event key=value ...``."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().split("\n")[:-1]:
        event, *fields = line.split(" ")
        entry = {"event": event}
        for field in fields:
            key, _, value = field.partition("=")
            if key.isidentifier():
                entry[key] = value
        events.append(entry)
    return events


def wait_for(condition: Callable[[], Any], deadline: float, what: str) -> Any:
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def gone(pid: int) -> bool:
    """The process has exited (or is a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def end(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(timeout=30)


def serving(tmp_path: Path, *extra: str) -> Iterator[str]:
    """``workstate serve --test-routes`` with short leases (and ``extra`` options); yields its URL."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*WORKSTATE, "serve", "--port", "0", "--test-routes", *(f"--policy={p}" for p in POLICY), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        line = wait_for(
            lambda: next((x for x in log.read_text().splitlines() if x.startswith("listening on ")), None),
            time.monotonic() + DEADLINE,
            "workstate serve to listen",
        )
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``workstate serve --test-routes`` with short leases; yields its URL."""
    yield from serving(tmp_path)


@pytest.fixture
def peer_server(tmp_path: Path) -> Iterator[str]:
    """The same in the ``anthropic`` dialect."""
    yield from serving(tmp_path, "--dialect", "anthropic")


def create(client: httpx.Client, url: str, items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    env = client.post(f"{url}/_test/environments", json={}).json()["id"]
    work = [client.post(f"{url}/_test/environments/{env}/work", json=item).json()["id"] for item in items]
    return env, work


@pytest.mark.skipif(sys.platform != "linux", reason="a killed worker's child dies with it on Linux (PR_SET_PDEATHSIG)")
def test_workers_share_items_survive_a_kill_and_pass_an_operator_stop_to_the_child(server: str, tmp_path: Path) -> None:
    markers, release = tmp_path / "markers.jsonl", tmp_path / "release"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    client = httpx.Client(headers={"Authorization": "Bearer operator"}, timeout=30)
    items = [
        {"session_id": f"sess_{i + 1:032x}", "metadata": {"kind": "long" if i == 0 else "short"}} for i in range(5)
    ]
    env, work = create(client, server, items)
    long_item = work[0]  # delivered first: the oldest
    env_url = f"{server}{BASE_PATH}{env}"
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    errors = [tmp_path / f"w{i}.err" for i in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + DEADLINE
    try:
        for i, (log, err) in enumerate(zip(logs, errors, strict=True)):
            with log.open("wb") as out, err.open("wb") as error:
                command = [*WORKSTATE, "work", "--url", env_url, "--token", "t", f"--worker-id=w{i}"]
                command += [
                    "--idle-poll=0.1",
                    "--grace=20",
                    "--",
                    sys.executable,
                    str(child),
                    str(markers),
                    str(release),
                ]
                procs.append(subprocess.Popen(command, stdout=out, stderr=error))

        def started() -> dict[str, dict[str, Any]] | None:
            first = {}
            for m in read_lines(markers):
                if m["event"] == "start":
                    first.setdefault(m["work_id"], m)
            return first if long_item in first and len(first) >= 2 else None

        first_starts = wait_for(started, deadline, "the long item and a short one to start")
        victim_start = next(m for wid, m in first_starts.items() if wid != long_item)
        victim_item, victim_pid = victim_start["work_id"], victim_start["pid"]
        victim = int(victim_start["worker"].removeprefix("w"))
        procs[victim].send_signal(signal.SIGKILL)  # in the middle of its lease: its child waits for RELEASE
        procs[victim].wait(timeout=30)
        killed_at = time.time()
        wait_for(lambda: gone(victim_pid), deadline, "the killed worker's child to die with it")

        # An operator's graceful stop of the long item reaches its child as SIGTERM.
        assert client.post(f"{env_url}/work/{long_item}/stop", json={}).status_code == 200
        release.touch()

        def all_stopped() -> bool:
            listing = client.get(f"{env_url}/work").json()
            return {item["state"] for item in listing["data"]} == {"stopped"} and len(listing["data"]) == len(work)

        def all_logged() -> bool:  # a worker logs "finished" once the confirming stop's reply reached it
            done = {e["work_id"] for log in logs for e in read_log(log) if e["event"] == "finished"}
            return done >= set(work)

        wait_for(all_stopped, deadline, "every item to be stopped")
        wait_for(all_logged, deadline, "every finished item to be logged")
        survivors = [proc for i, proc in enumerate(procs) if i != victim]
        for proc in survivors:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: drain (nothing runs now) and exit
        statuses = [proc.wait(timeout=30) for proc in survivors]
    finally:
        end(procs)
        client.close()

    assert statuses == [130, 130]
    for i, err in enumerate(errors):
        if i != victim:
            assert "Traceback" not in err.read_text()
            assert read_log(logs[i])[-1]["event"] == "shutdown"

    # Every item stopped exactly once: one confirmed finish in all the workers' logs, none by the victim after all.
    events = [dict(e, worker=f"w{i}") for i, log in enumerate(logs) for e in read_log(log)]
    for wid in work:
        finished = [e for e in events if e["event"] == "finished" and e["work_id"] == wid]
        assert [e["confirmed"] for e in finished] == ["true"], (wid, finished)
    (rescue,) = [e for e in events if e["event"] == "finished" and e["work_id"] == victim_item]
    assert rescue["worker"] != f"w{victim}"
    (drained,) = [e for e in events if e["event"] == "finished" and e["work_id"] == long_item]
    assert drained["reason"] == "drained"
    assert any(e["event"] == "sigterm" and e["work_id"] == long_item for e in events)
    assert not any(e["event"] in ("error", "halted") for e in events)

    # The children: each saw its own item's ids in its environment and on stdin; the long one got SIGTERM.
    seen = read_lines(markers)
    starts = [m for m in seen if m["event"] == "start"]
    for m in starts:
        assert m["stdin_id"] == m["work_id"] and m["env"] == env and m["session"] == m["stdin_session"]
    assert [m["work_id"] for m in seen if m["event"] == "sigterm"] == [long_item]
    # The killed worker's item ran again, in another worker's child that began after the kill.
    again = [m for m in starts if m["work_id"] == victim_item and m["pid"] != victim_pid]
    assert again and again[0]["worker"] != f"w{victim}" and again[0]["time"] > killed_at

    # Never two children running one item at once (the markers, merged in time order, show it); nothing lost.
    for wid in work:
        runs: list[tuple[float, float, int]] = []
        begun: dict[int, float] = {}
        for m in sorted((m for m in seen if m["work_id"] == wid), key=lambda m: m["time"]):
            if m["event"] == "start":
                begun[m["pid"]] = m["time"]
            elif m["event"] == "end":
                runs.append((begun.pop(m["pid"]), m["time"], m["pid"]))
        assert set(begun) <= {victim_pid}  # only the killed worker's child never ended: it died with its worker
        runs += [(began, killed_at, pid) for pid, began in begun.items()]
        runs.sort()
        assert runs, wid
        for (_, stop, a), (start, _, b) in itertools.pairwise(runs):
            assert stop <= start, f"{wid}: child {a} ran until {stop}, child {b} began at {start}"


def run_work(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code, *args] if code else [*WORKSTATE, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_without_httpx_it_names_the_extra_and_exits_2() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None; from workstate.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    done = run_work(
        "work", "--url", f"http://127.0.0.1:1{BASE_PATH}env_" + "0" * 32, "--token", "t", "--", "true", code=code
    )
    assert done.returncode == 2
    assert done.stderr == "workstate work: httpx is not installed: pip install 'workstate[worker]'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://127.0.0.1:1", "--token", "t", "--", "true"], "--url: url must name an environment"),
        (["--url", f"http://127.0.0.1:1{BASE_PATH}env_" + "0" * 32, "--token", "t"], "give the command to run"),
        (["--url", f"http://127.0.0.1:1{BASE_PATH}env_" + "0" * 32, "--", "true"], "--token is required"),
        (
            [
                "--url",
                f"http://127.0.0.1:1{BASE_PATH}env_" + "0" * 32,
                "--token",
                "t",
                "--concurrency",
                "0",
                "--",
                "true",
            ],
            "--concurrency: concurrency must be a positive integer",
        ),
        (
            ["--url", f"http://127.0.0.1:1{BASE_PATH}env_" + "0" * 32, "--token", "t", "--grace", "-1", "--", "true"],
            "--grace must be 0 or more",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WORKSTATE_TOKEN"}
    done = run_work("work", *args, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"workstate work: {message}") and done.stderr.count("\n") == 1, done.stderr


def test_an_unknown_dialect_is_refused() -> None:
    done = run_work("work", "--url", "http://127.0.0.1:1", "--token", "t", "--dialect", "nope", "--", "true")
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr and "anthropic" in done.stderr


def test_the_anthropic_dialect_runs_an_item_to_its_stop(peer_server: str, tmp_path: Path) -> None:
    """``workstate work --dialect anthropic`` against ``workstate serve --dialect anthropic``: the item's command
    runs with the peer's ids, and the item ends stopped (one force stop, answered 204)."""
    client = httpx.Client(headers={"Authorization": "Bearer operator"}, timeout=30)
    env, (wid,) = create(client, peer_server, [{"session_id": ANTHROPIC.new_id("session", 1)}])
    env_url = peer_server + ANTHROPIC.path(env).removesuffix("/work")
    seen = tmp_path / "seen.txt"
    command = [*WORKSTATE, "work", "--dialect", "anthropic", "--url", env_url, "--token", "t", "--idle-poll=0.1"]
    script = f"import os; open({str(seen)!r}, 'w').write(os.environ['WORKSTATE_SESSION_ID'])"
    log = tmp_path / "w.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "--", sys.executable, "-c", script], stdout=out)
    try:
        deadline = time.monotonic() + DEADLINE
        wait_for(lambda: any(e["event"] == "finished" for e in read_log(log)), deadline, "the item to finish")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        end([proc])
        client.close()
    assert seen.read_text() == ANTHROPIC.new_id("session", 1)
    (finished,) = [e for e in read_log(log) if e["event"] == "finished"]
    assert (finished["work_id"], finished["confirmed"]) == (wid, "true")
    item = httpx.get(peer_server + ANTHROPIC.path(env, wid), headers={"Authorization": "Bearer t"}, timeout=30)
    assert item.json()["state"] == "stopped"


def test_a_refused_poll_exits_1_with_a_halted_line(server: str) -> None:
    done = run_work("work", "--url", f"{server}{BASE_PATH}env_" + "f" * 32, "--token", "t", "--", "true")
    assert done.returncode == 1
    assert [line.split(" ")[0] for line in done.stdout.splitlines()] == ["ready", "halted"]
    assert "status=404" in done.stdout


# One worker, one item, and a command that records what reaches it: "term" traps SIGTERM and exits,
# "stubborn" ignores it; both otherwise run until killed (at most a minute).
SOLO = r"""
import os, signal, sys, time
mode, markers = sys.argv[1], sys.argv[2]
def mark(event):
    with open(markers, "a") as f:
        f.write(f"{event} {os.getpid()}\n")
def term(signum, frame):
    mark("sigterm")
    if mode == "term":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
mark("start")
stop_at = time.monotonic() + 60
while time.monotonic() < stop_at:
    time.sleep(0.05)
"""


def solo(server: str, tmp_path: Path, mode: str, *extra: str) -> tuple[httpx.Client, str, str, Any, Path, Path]:
    child = tmp_path / "solo.py"
    child.write_text(SOLO)
    client = httpx.Client(headers={"Authorization": "Bearer operator"}, timeout=30)
    env, (wid,) = create(client, server, [{"session_id": "sess_" + "1" * 32}])
    env_url = f"{server}{BASE_PATH}{env}"
    log, markers = tmp_path / "w.log", tmp_path / "markers.txt"
    command = [*WORKSTATE, "work", "--url", env_url, "--token", "t", "--idle-poll=0.1", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "--", sys.executable, str(child), mode, str(markers)], stdout=out)
    return client, env_url, wid, proc, log, markers


def events_of(log: Path) -> list[str]:
    return [e["event"] for e in read_log(log)]


def test_a_lost_lease_kills_the_command_at_once_and_stops_nothing(server: str, tmp_path: Path) -> None:
    client, env_url, wid, proc, log, markers = solo(server, tmp_path, "term")
    deadline = time.monotonic() + DEADLINE
    try:
        wait_for(lambda: markers.exists() and "start" in markers.read_text(), deadline, "the command to start")
        # Stopped by force under the worker: its next heartbeat meets 409, the lease is lost.
        assert client.post(f"{env_url}/work/{wid}/stop", json={"force": True}).status_code == 200
        wait_for(lambda: "exit" in events_of(log), deadline, "the command to be killed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        end([proc])
        client.close()
    assert events_of(log)[:3] == ["ready", "start", "spawn"]
    assert events_of(log)[3:] == ["abort", "sigkill", "exit", "shutdown"]
    assert "status=-9" in log.read_text()
    assert "sigterm" not in markers.read_text()  # killed, not asked


def test_a_drain_sends_sigterm_then_sigkill_after_the_grace(server: str, tmp_path: Path) -> None:
    client, env_url, wid, proc, log, markers = solo(server, tmp_path, "stubborn", "--grace=0.5")
    deadline = time.monotonic() + DEADLINE
    try:
        wait_for(lambda: markers.exists() and "start" in markers.read_text(), deadline, "the command to start")
        assert client.post(f"{env_url}/work/{wid}/stop", json={}).status_code == 200
        wait_for(lambda: "finished" in events_of(log), deadline, "the drained item to finish")
        state = client.get(f"{env_url}/work/{wid}").json()["state"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        end([proc])
        client.close()
    assert state == "stopped"
    assert events_of(log)[3:] == ["drain", "sigterm", "sigkill", "exit", "finished", "shutdown"]
    assert "reason=drained confirmed=true" in log.read_text()
    assert "grace" in next(line for line in log.read_text().splitlines() if line.startswith("sigkill"))
    assert "sigterm" in markers.read_text()


def test_ctrl_c_drains_the_running_command_and_exits_130(server: str, tmp_path: Path) -> None:
    client, env_url, wid, proc, log, markers = solo(server, tmp_path, "term")
    deadline = time.monotonic() + DEADLINE
    try:
        wait_for(lambda: markers.exists() and "start" in markers.read_text(), deadline, "the command to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        item = client.get(f"{env_url}/work/{wid}").json()
    finally:
        end([proc])
        client.close()
    assert events_of(log)[3:] == ["shutdown", "sigterm", "exit", "finished"]
    assert "reason=completed confirmed=true" in log.read_text()
    assert item["state"] == "stopped"
    assert "sigterm" in markers.read_text()
