"""Real processes: worker processes over loopback; one is killed mid-lease and its item is finished by another."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workstate import Policy, State
from workstate.api import Server

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))


from http_server import serve  # noqa: E402

TTL = 4  # heartbeats every 2 s, a lease believed for 3.5 s: 1.5 s of slack for a loaded machine
WORK_SECONDS = 3.0
DEADLINE = 60.0  # generous: only "eventually" is asserted


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    complete = path.read_text().split("\n")[:-1]  # a line still being written has no newline yet
    return [json.loads(line) for line in complete if line.strip()]


def wait_for(condition: Any, deadline: float, what: str) -> Any:
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def test_a_killed_workers_item_is_requeued_and_finished_by_another(tmp_path: Path) -> None:
    policy = Policy(min_ttl_seconds=1, default_ttl_seconds=TTL, start_timeout_seconds=2.0, reclaim_older_than_ms=500)
    server = Server(policy)
    now = datetime.now(UTC)
    env = server.create_environment(now=now)
    work = [server.create_work(env, session_id=f"sess_{i + 1:032x}", now=now) for i in range(4)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"w{i}.jsonl" for i in range(3)]
    with serve(server) as http:
        try:
            for i, log in enumerate(logs):
                command = [
                    sys.executable,
                    str(ROOT / "examples" / "http_worker.py"),
                    http.url,
                    env,
                    f"--worker-id=w{i}",
                    f"--ttl={TTL}",
                    f"--work-seconds={WORK_SECONDS}",
                    f"--log={log}",
                    "--max-seconds=90",
                ]
                procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            deadline = time.monotonic() + DEADLINE

            def first_start() -> tuple[int, str] | None:
                for i, log in enumerate(logs):
                    starts = [e for e in read_log(log) if e["event"] == "start"]
                    if starts:
                        return i, starts[0]["work_id"]
                return None

            victim, victim_item = wait_for(first_start, deadline, "a worker to start an item")
            procs[victim].send_signal(signal.SIGKILL)  # in the middle of its lease: its work takes 3 s
            procs[victim].wait()
            killed_at = time.time()

            def all_stopped() -> bool:
                with http.lock:
                    (snapshot,) = http.reference.snapshot()
                return all(item.state is State.STOPPED for item in snapshot.items)

            def all_logged() -> bool:  # a worker logs "finished" after the stop's answer reaches it
                done = {e["work_id"] for log in logs for e in read_log(log) if e["event"] == "finished"}
                return done >= set(work)

            wait_for(all_stopped, deadline, "every item to be stopped")
            wait_for(all_logged, deadline, "every finished item to be logged")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    # Merged from every worker's log, in the order things happened (not log by log).
    events = sorted((e for log in logs for e in read_log(log)), key=lambda e: e["time"])
    by_item: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["work_id"] is not None:
            by_item.setdefault(e["work_id"], []).append(e)

    # Nothing lost: every item was finished (confirmed stopped) by a live worker.
    victim_id = f"w{victim}"
    for wid in work:
        finished = [e for e in by_item.get(wid, []) if e["event"] == "finished" and e["confirmed"]]
        assert len(finished) == 1, (wid, by_item.get(wid))
        if wid == victim_item:
            assert finished[0]["worker"] != victim_id

    # The killed worker's item was re-queued and run to the end by another worker, after the kill.
    starts = [e for e in by_item[victim_item] if e["event"] == "start"]
    assert starts[0]["worker"] == victim_id
    rescuer = [e for e in starts if e["worker"] != victim_id]
    assert rescuer and rescuer[0]["time"] > killed_at  # it began after the victim died
    with_server = next(i for i in server.snapshot()[0].items if i.id == victim_item)
    assert with_server.stopped_at is not None and with_server.acknowledged_at is not None

    # Never two workers running one item at once: per item, each run ends before the next begins.
    for wid, seen in by_item.items():
        runs: list[tuple[float, float, str]] = []
        open_runs: dict[str, float] = {}
        for e in sorted(seen, key=lambda e: e["time"]):
            if e["event"] == "start":
                open_runs[e["worker"]] = e["time"]
            elif e["event"] in ("abort", "finished") and e["worker"] in open_runs:
                runs.append((open_runs.pop(e["worker"]), e["time"], e["worker"]))
        for worker, began in open_runs.items():  # a run the kill cut short ended with the process
            assert worker == victim_id
            runs.append((began, killed_at, worker))
        runs.sort()
        for (_, end, a), (begin, _, b) in itertools.pairwise(runs):
            assert end <= begin, f"{wid}: {a} ran until {end}, {b} began at {begin}"
