"""A seeded random walk of requests, sent to several servers at once, every answer and state compared.

``walk(servers, seed, steps)`` drives servers that started equal (same policy, dialect and id source: their ids
match) with the same creations, requests and instants, and asserts after every step that each answered exactly
as the first (status, body, headers) and that each ``snapshot()`` equals the first's. The requests cover every
endpoint, good and bad: polls with reclaim windows, acks by the right and the wrong worker, heartbeats with and
without the precondition, stops, gets, updates, list pages in both directions, stats, malformed ones, and time
moving forwards, onto deadlines and backwards.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from workstate import QODER, Dialect
from workstate.api import Request, Response, Server

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WORKERS = ("w1", "w2", "w3")
JUMPS = (-5.0, -0.000001, 0.0, 0.000001, 1.0, 5.0, 10.0, 30.0, 59.0, 60.0, 61.0, 300.0, 700.0)


def _same(responses: list[Response], what: str) -> None:
    first = responses[0]
    for other in responses[1:]:
        assert (other.status, other.json, dict(other.headers)) == (first.status, first.json, dict(first.headers)), (
            f"{what}: {first.status} {first.json} != {other.status} {other.json}"
        )


def walk(servers: list[Server], seed: int, steps: int = 200, dialect: Dialect = QODER) -> int:
    """Drive ``servers`` through ``steps`` random steps of ``seed``; return how many requests answered 200."""
    rng = random.Random(seed)
    now = T0
    base = dialect.base_path.rstrip("/")
    auth = {"Authorization": "Bearer t"}
    envs = [s.create_environment(now=now) for s in servers]
    assert len(set(envs)) == 1
    env = envs[0]
    works: list[str] = []
    beats: dict[str, str] = {}
    sessions = 0
    ok = 0
    for number in range(steps):
        choice = rng.random()
        request: Request | None = None
        if choice < 0.12:
            sessions += 1
            session = dialect.new_id("session", sessions)
            metadata = {"k": str(rng.randrange(3))} if rng.random() < 0.3 else None
            made: list[Any] = []
            for server in servers:
                try:
                    made.append(server.create_work(env, session_id=session, metadata=metadata, now=now))
                except Exception as exc:
                    made.append(type(exc))
            assert len(set(map(str, made))) == 1, made
            if isinstance(made[0], str):
                works.append(made[0])
        elif choice < 0.22:
            now += timedelta(seconds=rng.choice(JUMPS))
        elif choice < 0.24:
            deadlines = [s.next_expiry() for s in servers]
            assert len(set(deadlines)) == 1, deadlines
            if deadlines[0] is not None:
                now = max(now, deadlines[0]) + timedelta(microseconds=rng.choice((-1, 0, 1)))
        elif choice < 0.26:
            assert len({s.expire(now) for s in servers}) == 1
        else:
            request = _request(rng, base, env, works, beats, auth)
        if request is not None:
            responses = [s.handle(request, now) for s in servers]
            _same(responses, f"step {number} {request.method} {request.target}")
            if responses[0].status == 200:
                ok += 1
                body = responses[0].json
                if isinstance(body, dict) and isinstance(body.get("last_heartbeat"), str):
                    beats[request.target.split("/")[-2]] = body["last_heartbeat"]
        snapshots = [s.snapshot() for s in servers]
        assert all(shot == snapshots[0] for shot in snapshots[1:]), f"step {number}: the states differ"
    return ok


def _request(
    rng: random.Random, base: str, env: str, works: list[str], beats: dict[str, str], auth: dict[str, str]
) -> Request:
    worker = rng.choice(WORKERS)
    headers = {**auth, "Worker-ID": worker}
    root = f"{base}/{env}/work"
    kind = rng.random()
    work = rng.choice(works) if works and rng.random() < 0.95 else "work_" + "e" * 32
    if kind < 0.25:
        query = rng.choice(("", "?reclaim_older_than_ms=0", "?reclaim_older_than_ms=5000", "?block_ms=0", "?x=1"))
        return Request("GET", f"{root}/poll{query}", headers)
    if kind < 0.40:
        return Request("POST", f"{root}/{work}/ack", headers)
    if kind < 0.55:
        query = []
        if rng.random() < 0.5 and work in beats:
            query.append(f"expected_last_heartbeat={beats[work]}")
        if rng.random() < 0.3:
            query.append(f"desired_ttl_seconds={rng.choice((1, 10, 60, 3600))}")
        return Request("POST", f"{root}/{work}/heartbeat" + ("?" + "&".join(query) if query else ""), headers)
    if kind < 0.63:
        body = rng.choice((b"", b'{"force": true}', b'{"force": false}', b"{"))
        return Request("POST", f"{root}/{work}/stop", headers, body)
    if kind < 0.70:
        return Request("GET", f"{root}/{work}", headers)
    if kind < 0.75:
        patch = json.dumps({"metadata": {"k": rng.choice(("a", "b", None))}}).encode()
        return Request("PATCH", f"{root}/{work}", headers, patch)
    if kind < 0.88:
        query = [f"limit={rng.choice((1, 2, 3, 50))}"]
        if works and rng.random() < 0.6:
            query.append(f"{rng.choice(('after_id', 'before_id', 'page'))}={rng.choice(works)}")
        return Request("GET", f"{root}?{'&'.join(query)}", headers)
    if kind < 0.96:
        return Request("GET", f"{root}/stats", headers)
    return Request("POST", f"{root}/{work}/ack", {"Worker-ID": worker})  # no credentials: 401
