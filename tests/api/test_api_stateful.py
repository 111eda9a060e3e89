"""The server under arbitrary sequences of requests: several environments, items and workers, and a
clock that jumps (also backwards, and exactly onto deadlines). After every step, every invariant
of api.md §7 is checked, and the server's answers are compared with a brute-force reading of
its own items through the core's ``step``:

- poll answers the oldest item that the core would deliver, and stats count what the core would;
- stats agree with list (``depth + pending`` = the queued items listed);
- no work is lost (every created item is listed, in exactly one environment and one state);
- protocol-following workers never both hold an unexpired lease on one item;
- a rejected request changes nothing; an ack replay changes nothing;
- a twin server that gets no explicit ``expire`` calls answers exactly the same (lazy = eager).

The invariants are stated here from the spec, not taken from the server or the core.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from test_api import check_response

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    Accepted,
    Deliver,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    State,
    TimestampMatch,
    WorkItem,
    parse_timestamp,
    render_timestamp,
    step,
)
from workstate.api import Request, Response, Server, SessionBusy
from workstate.api.codec import HeartbeatObject, ListEnvelope, StatsObject, WorkObject
from workstate.invariants import change_problems, lease_problems, liveness_problems, stats_problems
from workstate.invariants import timeline_problems as _timeline_problems

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WORKERS = ("w1", "w2", "w3")
SESSIONS = tuple(f"sess_{i:032x}" for i in range(1, 7))
AUTH = "Bearer t"
POLICIES = [
    DEFAULT_POLICY,
    Policy(on_lease_expiry=OnLeaseExpiry.STOP),
    Policy(on_start_timeout=OnStartTimeout.KEEP_STARTING),
    Policy(ack_requires_delivery=True, reclaim_older_than_ms=0),
    Policy(timestamp_match=TimestampMatch.EXACT, workers_polling_window_seconds=5, start_timeout_seconds=2.5),
]
JUMPS = [-90.0, -5.0, -0.000001, 0.0, 0.000001, 1.0, 4.999, 5.0, 10.0, 30.0, 59.0, 60.0, 61.0, 200.0, 700.0]


def timeline_problems(item: WorkItem) -> list[str]:
    """Invariants 2 and 3 (workstate.invariants), as messages."""
    return [v.message for v in _timeline_problems(item)]


def deliverable(item: WorkItem, reclaim: int | None, now: datetime, policy: Policy) -> bool:
    return item.state is State.QUEUED and isinstance(step(item, Deliver(None, reclaim), now, policy), Accepted)


class ServerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()

    @initialize(policy=st.sampled_from(POLICIES))
    def setup(self, policy: Policy) -> None:
        self.policy = policy
        self.server = Server(policy)  # gets an explicit expire(now) before everything
        self.twin = Server(policy)  # gets none: expiry happens inside its calls only
        self.now = T
        self.worker_clock = T  # workers' clocks are monotonic: the latest `now` seen
        self.envs = []
        for kind in ("self_hosted", "self_hosted", "cloud"):
            env = self.server.create_environment(kind, now=T)
            assert self.twin.create_environment(kind, now=T) == env
            self.envs.append(env)
        self.cloud = self.envs.pop()
        self.created: dict[str, str] = {}  # work id -> environment
        self.polls: dict[str, dict[str, datetime]] = {env: {} for env in self.envs}
        self.previous: dict[str, WorkItem] = {}
        self.held: dict[str, dict[str, str | None]] = {w: {} for w in WORKERS}  # acked items -> token
        self.leases: dict[tuple[str, str], datetime] = {}  # (worker, work) -> lease deadline

    # --- plumbing ---

    def items(self) -> dict[str, WorkItem]:
        self.server.expire(self.now)
        return {item.id: item for env in self.server.snapshot() for item in env.items}

    def send(
        self, method: str, env: str, path: str = "", query: dict[str, str] | None = None, **kwargs: Any
    ) -> Response:
        target = f"/api/v1/cloud/environments/{env}/work{path}" + ("?" + urlencode(query) if query else "")
        headers = {"Authorization": AUTH}
        if kwargs.get("worker") is not None:
            headers["Worker-ID"] = kwargs["worker"]
        request = Request(method, target, headers, kwargs.get("body", b""))
        self.server.expire(self.now)
        before = self.server.snapshot()
        response = self.server.handle(request, self.now)
        twin = self.twin.handle(request, self.now)
        check_response(response)
        assert (twin.status, twin.json) == (response.status, response.json), "lazy and eager expiry disagree"
        after = self.server.snapshot()
        assert self.twin.snapshot() == after
        if response.status != 200:
            assert after == before, "a rejected request changed the server"  # invariant 5
        return response

    def env_of(self, index: int) -> str:
        return self.envs[index % len(self.envs)]

    def pick(self, index: int) -> str | None:
        ids = sorted(self.created)
        return ids[index % len(ids)] if ids else None

    # --- the clock ---

    @rule(jump=st.sampled_from(JUMPS))
    def advance(self, jump: float) -> None:
        self.now += timedelta(seconds=jump)
        self.worker_clock = max(self.worker_clock, self.now)

    @rule(before=st.booleans())
    def to_next_deadline(self, before: bool) -> None:
        deadline = self.server.next_expiry()
        if deadline is not None:
            self.now = deadline - timedelta(microseconds=1 if before else 0)
            self.worker_clock = max(self.worker_clock, self.now)

    # --- the platform ---

    @rule(env=st.integers(0, 2), session=st.sampled_from(SESSIONS), metadata=st.sampled_from([None, {"job": "x"}]))
    def create(self, env: int, session: str, metadata: dict[str, str] | None) -> None:
        target = self.cloud if env == 2 else self.env_of(env)
        busy = any(i.session_id == session and i.state is not State.STOPPED for i in self.items().values())
        outcomes = []
        for server in (self.server, self.twin):
            try:
                outcomes.append(server.create_work(target, session_id=session, metadata=metadata, now=self.now))
            except SessionBusy:
                outcomes.append("busy")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1]
        if env == 2:
            assert outcomes[0] == "NotSelfHosted"
        elif busy:
            assert outcomes[0] == "busy"
        else:
            self.created[outcomes[0]] = target

    # --- workers following the protocol (api.md §8) ---

    @rule(
        worker=st.sampled_from(WORKERS),
        env=st.integers(0, 1),
        reclaim=st.sampled_from([None, "0", "5000", "60000"]),
        beat=st.booleans(),
    )
    def protocol_poll_and_ack(self, worker: str, env: int, reclaim: str | None, beat: bool) -> None:
        """Poll (Worker-ID, block_ms=999), ack with the same Worker-ID, and maybe the first heartbeat at once."""
        target = self.env_of(env)
        items = self.items()
        window = None if reclaim is None else int(reclaim)
        candidates = [
            i for i in items.values() if i.environment_id == target and deliverable(i, window, self.now, self.policy)
        ]
        expected = min(candidates, key=lambda i: (i.created_at, i.id)) if candidates else None
        query = {"block_ms": "999"} | ({} if reclaim is None else {"reclaim_older_than_ms": reclaim})
        response = self.send("GET", target, "/poll", query, worker=worker)
        assert response.status == 200
        newest = max(self.polls[target].values(), default=self.now)  # a poll is stamped never behind the newest
        self.polls[target][worker] = max(newest, self.now)
        if expected is None:
            assert response.json is None
            return
        polled = WorkObject.from_json(response.json)
        assert polled.id == expected.id and polled.state is State.QUEUED
        assert self.items()[polled.id].delivered_to == worker
        ack = self.send("POST", target, f"/{polled.id}/ack", worker=worker)
        assert ack.status == 200 and ack.json["state"] == "starting"
        self.held[worker][polled.id] = None
        if beat:
            self.protocol_heartbeat(worker, sorted(self.held[worker]).index(polled.id), None)

    @precondition(lambda self: any(self.held.values()))
    @rule(worker=st.sampled_from(WORKERS), index=st.integers(0, 10), ttl=st.sampled_from([None, "10", "60", "600"]))
    def protocol_heartbeat(self, worker: str, index: int, ttl: str | None) -> None:
        held = sorted(self.held[worker])
        if not held:
            return
        work = held[index % len(held)]
        token = self.held[worker][work]
        if (worker, work) in self.leases and self.leases[worker, work] <= self.worker_clock:
            self.abandon(worker, work)  # no successful heartbeat for a whole TTL: the lease is lost
            return
        query = {"expected_last_heartbeat": token or NO_HEARTBEAT} | (
            {} if ttl is None else {"desired_ttl_seconds": ttl}
        )
        response = self.send("POST", self.created[work], f"/{work}/heartbeat", query, worker=worker)
        if response.status == 200:
            beat = HeartbeatObject.from_json(response.json)
            assert beat.lease_extended and beat.state in (State.ACTIVE, State.STOPPING)
            if token is not None:
                assert beat.last_heartbeat > parse_timestamp(token)  # the fencing token strictly increases
            self.held[worker][work] = render_timestamp(beat.last_heartbeat)
            self.leases[worker, work] = beat.last_heartbeat + timedelta(seconds=beat.ttl_seconds)
        else:
            assert response.status in (409, 412)
            self.abandon(worker, work)

    @precondition(lambda self: any(self.held.values()))
    @rule(worker=st.sampled_from(WORKERS), index=st.integers(0, 10), force=st.booleans())
    def protocol_finish(self, worker: str, index: int, force: bool) -> None:
        """Normal completion while holding the lease: one forced stop, or a graceful stop and a confirmation."""
        leased = sorted(w for (k, w), until in self.leases.items() if k == worker and until > self.worker_clock)
        if not leased:
            return
        work = leased[index % len(leased)]
        for body in [b'{"force": true}'] if force else [b"", b"{}"]:
            assert self.send("POST", self.created[work], f"/{work}/stop", body=body).status == 200
        assert self.items()[work].state is State.STOPPED
        self.abandon(worker, work)

    def abandon(self, worker: str, work: str) -> None:
        self.held[worker].pop(work, None)
        self.leases.pop((worker, work), None)

    # --- anyone else: unnamed workers, other workers, operators ---

    @precondition(lambda self: self.created)
    @rule(index=st.integers(0, 50), worker=st.sampled_from([None, *WORKERS, "rogue"]))
    def ack(self, index: int, worker: str | None) -> None:
        work = self.pick(index)
        assert work is not None
        before = self.items()[work]
        response = self.send("POST", self.created[work], f"/{work}/ack", worker=worker)
        after = self.items()[work]
        if before.state in (State.STARTING, State.ACTIVE) and worker in (None, before.worker_id):
            assert response.status == 200 and after == before  # invariant 4
        if response.status == 200 and before.state is State.QUEUED:
            assert after.state is State.STARTING and after.worker_id == (worker or before.delivered_to)

    @precondition(lambda self: self.created)
    @rule(index=st.integers(0, 50), expected=st.sampled_from([None, NO_HEARTBEAT, "stale"]))
    def rogue_heartbeat(self, index: int, expected: str | None) -> None:
        work = self.pick(index)
        assert work is not None
        query = {}
        if expected == "stale":
            query["expected_last_heartbeat"] = render_timestamp(self.now - timedelta(seconds=1))
        elif expected is not None:
            query["expected_last_heartbeat"] = expected
        response = self.send("POST", self.created[work], f"/{work}/heartbeat", query)
        assert response.status in (200, 409, 412)

    @precondition(lambda self: self.created)
    @rule(index=st.integers(0, 50), body=st.sampled_from([b"", b"{}", b'{"force": false}', b'{"force": true}']))
    def stop(self, index: int, body: bytes) -> None:
        work = self.pick(index)
        assert work is not None
        before = self.items()[work]
        response = self.send("POST", self.created[work], f"/{work}/stop", body=body)
        assert response.status == 200
        after = self.items()[work]
        if b"true" in body or before.state in (State.QUEUED, State.STOPPING, State.STOPPED):
            assert after.state is State.STOPPED
        else:
            assert after.state is State.STOPPING

    @precondition(lambda self: self.created)
    @rule(
        index=st.integers(0, 50),
        patch=st.dictionaries(st.sampled_from(["a", "b", "job", "x" * 65]), st.sampled_from([None, "v", "w" * 513])),
    )
    def update_metadata(self, index: int, patch: dict[str, str | None]) -> None:
        work = self.pick(index)
        assert work is not None
        before = self.items()[work]
        response = self.send("POST", self.created[work], f"/{work}", body=json.dumps({"metadata": patch}).encode())
        after = self.items()[work]
        if response.status == 200:
            expected = {k: v for k, v in {**before.metadata, **patch}.items() if v is not None}
            assert dict(after.metadata) == expected == response.json["metadata"]
        else:
            assert response.status == 400 and response.json["error"]["param"] == "metadata"

    @rule(
        what=st.sampled_from(["get", "list", "stats"]),
        env=st.integers(0, 1),
        limit=st.sampled_from([None, "1", "3", "101"]),
        cursor=st.sampled_from([None, "page", "before_id", "after_id"]),
        index=st.integers(0, 50),
    )
    def observe(self, what: str, env: int, limit: str | None, cursor: str | None, index: int) -> None:
        if what == "get":
            self.get(index)
        elif what == "list":
            self.list_page(env, limit, cursor, index)
        else:
            self.stats(env)

    def get(self, index: int) -> None:
        work = self.pick(index)
        if work is None:
            return
        response = self.send("GET", self.created[work], f"/{work}")
        assert WorkObject.from_json(response.json) == WorkObject.of(self.items()[work])

    def list_page(self, env: int, limit: str | None, cursor: str | None, index: int) -> None:
        target = self.env_of(env)
        ids = sorted(i.id for i in self.items().values() if i.environment_id == target)
        query = {} if limit is None else {"limit": limit}
        position = self.pick(index)
        if cursor is not None and position is not None:
            query[cursor] = position
        response = self.send("GET", target, "", query)
        value = response.json
        size = min(int(limit or 20), 100)
        if cursor == "before_id" and position is not None:  # a backward page: more means items before it
            expected = [i for i in ids if i < position][-size:]
            more = bool(expected) and ids[0] < expected[0]
            assert value["next_page"] == (expected[0] if more else None)
            value = {**value, "next_page": value["last_id"] if more else None}  # ListEnvelope reads forward pages
        else:
            after = position if cursor in ("page", "after_id") else None
            expected = [i for i in ids if after is None or i > after][:size]
            more = bool(expected) and ids[-1] > expected[-1]
        page = ListEnvelope.from_json(value)
        assert [x.id for x in page.data] == expected
        assert page.has_more == more

    def stats(self, env: int) -> None:
        target = self.env_of(env)
        queued = [i for i in self.items().values() if i.environment_id == target and i.state is State.QUEUED]
        depth = sum(deliverable(i, None, self.now, self.policy) for i in queued)
        window = timedelta(seconds=self.policy.workers_polling_window_seconds)
        end = max([self.now, *self.polls[target].values()])  # now, or the newest poll when the clock went back
        polling = sum(1 for at in self.polls[target].values() if at > end - window)
        response = self.send("GET", target, "/stats")
        assert StatsObject.from_json(response.json) == StatsObject(
            depth=depth,
            pending=len(queued) - depth,
            oldest_queued_at=min((i.created_at for i in queued), default=None),
            workers_polling=polling,
        )

    @rule(
        env=st.integers(0, 2),
        case=st.sampled_from(
            [
                ("GET", "/poll", {"block_ms": "0"}, b""),
                ("GET", "/poll", {}, b"[]"),
                ("GET", "", {"limit": "0"}, b""),
                ("GET", "", {"page": "x"}, b""),
                ("POST", "/{work}/heartbeat", {"desired_ttl_seconds": "0"}, b""),
                ("POST", "/{work}/stop", {}, b'{"force": 1}'),
                ("POST", "/{work}", {}, b'{"metadata": 5}'),
                ("POST", "/{work}/ack", {}, b"x"),
                ("GET", "/work_" + "f" * 32, {}, b""),
            ]
        ),
        index=st.integers(0, 50),
    )
    def rejected(self, env: int, case: tuple[str, str, dict[str, str], bytes], index: int) -> None:
        method, path, query, body = case
        work = self.pick(index) or "work_" + "e" * 32
        target = self.cloud if env == 2 else self.env_of(env)
        response = self.send(method, target, path.format(work=work), query, body=body)
        assert response.status in (400, 404)  # and `send` checked that it changed nothing

    # --- invariants of api.md §7 ---

    @invariant()
    def section_7(self) -> None:
        items = self.items()
        for work, item in items.items():
            assert timeline_problems(item) == [], (item, timeline_problems(item))  # 2, 3
            assert change_problems(self.previous.get(work), item) == []  # 1: stopped is absorbing
            if item.state is State.QUEUED and item.delivered_at is not None:
                assert item.clock == item.delivered_at  # what the server's poll index relies on
            assert liveness_problems(item, self.policy) == []  # 8: every live item has a way back
        self.previous = items
        # 6: no work lost -- every created item is listed in its environment, in exactly one state
        listed: dict[str, str] = {}
        for env in self.envs:
            queued_listed = 0
            cursor: str | None = None
            while True:
                query = {"limit": "100"} | ({} if cursor is None else {"page": cursor})
                page = ListEnvelope.from_json(self.send("GET", env, "", query).json)
                for obj in page.data:
                    assert obj.id not in listed
                    listed[obj.id] = env
                    assert obj == WorkObject.of(items[obj.id])
                    queued_listed += obj.state is State.QUEUED
                cursor = page.next_page
                if cursor is None:
                    break
            # 9: stats agree with list
            stats = StatsObject.from_json(self.send("GET", env, "/stats").json)
            assert stats_problems(env, stats.depth, stats.pending, queued_listed) == []
        assert listed == self.created
        # one live item per session, and the server's index of them (what create_work and adopt read) agrees
        live_items = [i for i in items.values() if i.state is not State.STOPPED]
        live = {i.session_id: i.id for i in live_items}
        assert len(live) == len(live_items)
        assert self.server._live == live == self.twin._live
        # 7: lease exclusivity among protocol-following workers (judged on the workers' monotonic clock)
        holders = [(worker, work, until) for (worker, work), until in self.leases.items()]
        assert lease_problems(holders, self.worker_clock) == []

    def teardown(self) -> None:
        """8: liveness under a policy with timeouts -- with no further requests every live item ends
        queued or stopped once its deadlines pass."""
        if not hasattr(self, "policy"):
            return
        far = self.now + timedelta(days=1)
        self.server.expire(far)
        for item in self.items().values():
            if self.policy.on_start_timeout is OnStartTimeout.REQUEUE:
                assert item.state in (State.QUEUED, State.STOPPED), item
            elif item.state not in (State.QUEUED, State.STOPPED):  # waits for a first heartbeat or a stop
                assert item.state in (State.STARTING, State.STOPPING) and item.latest_heartbeat_at is None, item
        assert self.server.next_expiry() is None


ServerMachine.TestCase.settings = settings(settings.default, stateful_step_count=50)
TestServerMachine = ServerMachine.TestCase


def machine_with_items() -> ServerMachine:
    machine = ServerMachine()
    machine.setup(DEFAULT_POLICY)
    machine.create(0, SESSIONS[0], None)
    machine.create(1, SESSIONS[1], None)
    machine.section_7()
    return machine


def test_teeth_a_lost_item_is_noticed() -> None:
    machine = machine_with_items()
    machine.created["work_" + "9" * 32] = machine.envs[0]
    with pytest.raises(AssertionError):
        machine.section_7()


def test_teeth_two_leases_on_one_item_are_noticed() -> None:
    machine = machine_with_items()
    work = sorted(machine.created)[0]
    machine.leases["w1", work] = machine.leases["w2", work] = T + timedelta(seconds=60)
    with pytest.raises(AssertionError):
        machine.section_7()


def test_teeth_a_changed_stopped_item_is_noticed() -> None:
    machine = machine_with_items()
    work = sorted(machine.created)[0]
    machine.stop(0, b'{"force": true}')
    machine.section_7()
    old = machine.previous[work]
    machine.previous[work] = _forged(old, stopped_at=old.stopped_at - timedelta(seconds=1))
    with pytest.raises(AssertionError):
        machine.section_7()


def test_teeth_timeline_problems_are_found() -> None:
    item = WorkItem(id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id=SESSIONS[0], created_at=T)
    assert timeline_problems(item) == []
    assert "queued has stopped_at" in timeline_problems(_forged(item, stopped_at=T))
    assert "stopped lacks stopped_at" in timeline_problems(_forged(item, state=State.STOPPED))
    late = _forged(item, state=State.STOPPED, stopped_at=T, acknowledged_at=T + timedelta(seconds=1))
    assert "stopped_at is not the latest timestamp" in timeline_problems(late)
    early = _forged(item, state=State.STARTING, acknowledged_at=T - timedelta(seconds=1))
    assert timeline_problems(early) == ["created_at <= acknowledged_at <= started_at <= latest_heartbeat_at"]


def _forged(item: WorkItem, **fields: Any) -> WorkItem:
    """An item the core would refuse to build: fields set past the constructor's checks."""
    forged = attrs.evolve(item)
    for name, value in fields.items():
        object.__setattr__(forged, name, value)
    return forged
