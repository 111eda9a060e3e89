"""The store protocol (``workstate.api.store``): every store answers its queries as their contract says (checked
against brute force over the items it holds), compare-and-set refuses stale writes, and the server on a store
retries a conflicting request from a fresh read, then answers 503, and reports changes only once committed."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from workstate import State, WorkItem, next_deadline
from workstate.api import MemoryStore, Request, Server, Store, StoreConflict, Transaction
from workstate.api.store import FOREVER, EnvironmentKind, micros
from workstate.stores.sqlite import SqliteStore

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer t", "Worker-ID": "w1"}
BASE = "/api/v1/cloud/environments"
WINDOW = timedelta(seconds=30)

STORES: dict[str, Callable[[], Store]] = {"memory": MemoryStore, "sqlite": lambda: SqliteStore(":memory:")}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Any:
    made = STORES[request.param]()
    yield made
    made.close()


def test_the_stores_satisfy_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    tx = store.begin()
    assert isinstance(tx, Transaction)
    tx.rollback()


def _items(rng: random.Random, env: str, count: int) -> list[WorkItem]:
    """Queued (fresh or delivered), starting and stopped items at scattered instants (ids not in creation order)."""
    made = []
    for number in range(count):
        created = T0 + timedelta(seconds=rng.randrange(50))
        item = WorkItem(
            id=f"work_{rng.getrandbits(128):032x}",
            environment_id=env,
            session_id=f"sess_{number + 1:032x}",
            created_at=created,
        )
        kind = rng.random()
        if kind < 0.6:
            at = created + timedelta(seconds=rng.randrange(40))
            item = attrs.evolve(item, delivered_at=at, delivered_to="w1", clock=at, version=1)
        elif kind < 0.7:
            at = created + timedelta(seconds=5)
            item = attrs.evolve(item, state=State.STOPPED, stopped_at=at, clock=at, version=1)
        made.append(item)
    return made


@pytest.mark.parametrize("seed", range(3))
def test_queries_answer_as_their_contract_over_the_items_held(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    tx = store.begin()
    tx.add_environment("env_" + "1" * 32, EnvironmentKind.SELF_HOSTED, T0)
    tx.add_environment("env_" + "2" * 32, EnvironmentKind.CLOUD, T0)
    env = "env_" + "1" * 32
    items = _items(rng, env, 60)
    for item in items:
        tx.put(env, item, None, next_deadline(item))
    queued = sorted((i for i in items if i.state is State.QUEUED), key=lambda i: (i.created_at, i.id))

    assert [e.id for e in tx.environments()] == ["env_" + "1" * 32, "env_" + "2" * 32]
    assert tx.environment("env_" + "2" * 32).kind is EnvironmentKind.CLOUD  # type: ignore[union-attr]
    assert tx.environment("env_" + "3" * 32) is None
    assert [i.id for i in tx.items(env)] == sorted(i.id for i in items)
    for until in (None, FOREVER, T0 + timedelta(seconds=30), T0 - timedelta(days=1)):
        wanted = [i for i in queued if i.delivered_at is None or (until is not None and i.delivered_at <= until)]
        first = tx.candidates(env, until, None, 5)
        assert first and first[0] == wanted[0] and first == wanted[: len(first)]  # a prefix, never a skip
        after = (wanted[2].created_at, wanted[2].id)
        assert tx.candidates(env, until, after, 4) == wanted[3:7]
        counts = tx.queue_counts(env, until)
        delivered = [i for i in queued if i.delivered_at is not None]
        assert counts.fresh == len(queued) - len(delivered)
        assert counts.delivered == len(delivered)
        assert counts.reclaimable == len(
            [i for i in delivered if until is not None and i.delivered_at is not None and i.delivered_at <= until]
        )
        assert counts.oldest_created_at == queued[0].created_at
    ids = sorted(i.id for i in items)
    assert [i.id for i in tx.page(env, None, None, 7)] == ids[:7]
    assert [i.id for i in tx.page(env, ids[10], None, 5)] == ids[11:16]
    assert [i.id for i in tx.page(env, None, ids[10], 4)] == ids[6:10]
    assert [i.id for i in tx.page(env, None, ids[2], 10)] == ids[:2]
    assert tx.live_item(items[0].session_id) == (items[0].id if items[0].live else None)
    tx.commit()


def test_compare_and_set_refuses_stale_and_duplicate_writes(store: Store) -> None:
    tx = store.begin()
    env = "env_" + "1" * 32
    tx.add_environment(env, EnvironmentKind.SELF_HOSTED, T0)
    with pytest.raises(StoreConflict):
        tx.add_environment(env, EnvironmentKind.SELF_HOSTED, T0)
    item = WorkItem(id="work_" + "1" * 32, environment_id=env, session_id="sess_" + "1" * 32, created_at=T0)
    tx.put(env, item, None, None)
    with pytest.raises(StoreConflict):
        tx.put(env, item, None, None)  # it exists: an insert is a conflict
    moved = attrs.evolve(item, delivered_at=T0, clock=T0, version=1)
    tx.put(env, moved, 0, None)
    with pytest.raises(StoreConflict):
        tx.put(env, attrs.evolve(moved, version=2), 0, None)  # version 0 is gone
    assert tx.item(env, item.id) == moved
    other = WorkItem(id="work_" + "2" * 32, environment_id=env, session_id=item.session_id, created_at=T0)
    if not isinstance(store, MemoryStore):  # a database enforces one live item per session itself
        with pytest.raises(StoreConflict):
            tx.put(env, other, None, None)
    tx.commit()


def test_deadlines_polls_and_secrets(store: Store) -> None:
    tx = store.begin()
    env = "env_" + "1" * 32
    tx.add_environment(env, EnvironmentKind.SELF_HOSTED, T0)
    for number, seconds in enumerate((30, 10, 20), 1):
        item = WorkItem(id=f"work_{number:032x}", environment_id=env, session_id=f"sess_{number:032x}", created_at=T0)
        tx.put(env, item, None, T0 + timedelta(seconds=seconds))
    assert tx.next_deadline() == T0 + timedelta(seconds=10)
    assert [i.id for _, i in tx.due(T0 + timedelta(seconds=25), 10)] == [f"work_{2:032x}", f"work_{3:032x}"]
    tx.put(env, attrs.evolve(tx.item(env, f"work_{1:032x}"), version=1), 0, None)  # type: ignore[arg-type]
    assert tx.due(T0 + timedelta(days=1), 10) == [] or all(
        i.id != f"work_{1:032x}" for _, i in tx.due(T0 + timedelta(days=1), 10)
    )
    tx.record_poll(env, "w1", T0, WINDOW)
    tx.record_poll(env, "w2", T0 + timedelta(seconds=10), WINDOW)
    tx.record_poll(env, "w3", T0 + timedelta(seconds=5), WINDOW)  # behind the newest: stamped at it
    assert dict(tx.polls(env))["w3"] == T0 + timedelta(seconds=10)
    assert tx.workers_polling(env, T0 + timedelta(seconds=20), WINDOW) == 3
    assert tx.workers_polling(env, T0 + timedelta(seconds=30), WINDOW) == 2  # w1's poll is exactly 30 s old
    tx.record_poll(env, "w2", T0 + timedelta(seconds=35), WINDOW)  # the window moves: w1 is forgotten
    assert [w for w, _ in tx.polls(env)] == ["w2", "w3"]
    assert tx.secret(env, f"work_{1:032x}") is None
    tx.set_secret(env, f"work_{1:032x}", "s3cret")
    assert tx.secret(env, f"work_{1:032x}") == "s3cret"
    tx.set_secret(env, f"work_{1:032x}", None)
    assert tx.secret(env, f"work_{1:032x}") is None
    tx.commit()


def test_micros_sorts_as_time() -> None:
    instants = [T0 - timedelta(days=400 * 365), T0, T0 + timedelta(microseconds=1), FOREVER]
    assert [micros(i) for i in instants] == sorted(micros(i) for i in instants)
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0


# --- the server on a store: one transaction per call, the retry loop ----------------------------------------


class Flaky:
    """A memory store whose next ``conflicts`` transactions conflict at their first read (before they write: a memory
    store does not roll back, so this is where a conflict can be staged)."""

    def __init__(self, conflicts: int) -> None:
        self.inner = MemoryStore()
        self.conflicts = conflicts
        self.begun = self.committed = self.rolled_back = 0

    def begin(self) -> Any:
        self.begun += 1
        outer = self

        class Tx:
            def __getattr__(self, name: str) -> Any:
                return getattr(outer.inner, name)

            def due(self, *args: Any) -> Any:
                if outer.conflicts > 0:
                    outer.conflicts -= 1
                    raise StoreConflict("another process moved it")
                return outer.inner.due(*args)

            def commit(self) -> None:
                outer.committed += 1

            def rollback(self) -> None:
                outer.rolled_back += 1

        return Tx()

    def close(self) -> None:
        pass


def test_a_conflicting_request_is_retried_from_a_fresh_read() -> None:
    flaky = Flaky(0)
    seen: list[str] = []
    server = Server(store=flaky, on_change=lambda env, old, new: seen.append(new.state.value))
    env = server.create_environment(now=T0)
    server.create_work(env, session_id="sess_" + "1" * 32, now=T0)
    seen.clear()
    flaky.conflicts = 3
    response = server.handle(Request("GET", f"{BASE}/{env}/work/poll", AUTH), T0)
    assert response.status == 200 and response.json["state"] == "queued"
    assert flaky.rolled_back == 3 and seen == ["queued"]  # reported once, after the commit


def test_a_request_that_keeps_conflicting_is_answered_503_and_changes_nothing() -> None:
    flaky = Flaky(0)
    server = Server(store=flaky, retries=2)
    env = server.create_environment(now=T0)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T0)
    before = server.snapshot()
    flaky.conflicts = 10**6
    response = server.handle(Request("GET", f"{BASE}/{env}/work/poll", AUTH), T0)
    assert response.status == 503 and response.json["error"]["type"] == "api_error"
    assert "3 attempts" in response.json["error"]["message"]
    flaky.conflicts = 0
    assert server.snapshot() == before and server.work(env, work) == before[0].items[0]
    flaky.conflicts = 10**6
    with pytest.raises(StoreConflict):
        server.create_work(env, session_id="sess_" + "2" * 32, now=T0)


def test_the_server_checks_its_store_and_retries() -> None:
    with pytest.raises(Exception, match="store"):
        Server(store=object())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="retries"):
        Server(retries=-1)


def test_memory_store_is_the_default_and_shared_state_is_visible() -> None:
    store = MemoryStore()
    one = Server(store=store)
    env = one.create_environment(now=T0)
    assert isinstance(Server().store, MemoryStore)
    two = Server(store=store)  # a second server on the same store answers from the same state
    assert two.environment_kind(env) is EnvironmentKind.SELF_HOSTED


def test_sweep_is_bounded_and_expire_takes_everything_due() -> None:
    server = Server()
    env = server.create_environment(now=T0)
    for number in range(5):
        work = server.create_work(env, session_id=f"sess_{number + 1:032x}", now=T0)
        poll = server.handle(Request("GET", f"{BASE}/{env}/work/poll", AUTH), T0)
        assert poll.json["id"] == work
        assert server.handle(Request("POST", f"{BASE}/{env}/work/{work}/ack", AUTH), T0).status == 200
    later = T0 + timedelta(days=1)
    assert server.sweep(later, limit=2) == 2
    assert server.sweep(later, limit=2) == 2
    assert server.expire(later) == 1
    assert server.next_expiry() is None
    with pytest.raises(Exception, match="limit"):
        server.sweep(later, limit=0)
