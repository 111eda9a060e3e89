"""Issue 11, the reference server's points: 3 (the server half: what an error message echoes), 4 (memory and
cost bounded by what matters), 5a (an RFC 3339 timestamp workstate cannot hold is 412), 5b (a backward
page's ``next_page`` walks backwards) and 5d (empty bytes-like bodies, lone surrogates in x-request-id).

Every test is named after its point; each failed before the change it covers. Complexity is shown by
counting what a call touches or by the size of the server's structures, never by timing.
"""

import io
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_api import World, assert_error, check_response

from workstate import (
    NO_HEARTBEAT,
    Ack,
    Heartbeat,
    OnLeaseExpiry,
    Policy,
    State,
    TimestampMatch,
    WorkItem,
    cli,
    explain,
    render_timestamp,
    step,
)
from workstate.api import Request, Server, SessionBusy
from workstate.api.codec import loads

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer t"}


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# --- 4a: workers_polling --------------------------------------------------------------------------------------


def test_issue11_4_workers_polling_memory_is_pruned() -> None:
    """10,000 Worker-IDs poll one a second: the server keeps only those inside the 30 s window, and
    stats count them right (before: every id ever seen was kept, and stats walked them all)."""
    w = World()
    for i in range(10_000):
        assert w.poll(f"w{i}", seconds=i).status == 200
        if i % 1000 == 999:
            assert len(w.server._envs[w.env].polls) <= 31
    assert w.stats(seconds=9_999).workers_polling == 30  # polled at 9,970 .. 9,999 s
    assert w.stats(seconds=10_010).workers_polling == 19
    assert w.stats(seconds=10_029).workers_polling == 0
    (snapshot,) = w.server.snapshot()
    assert len(snapshot.polls) <= 31


class _Counting(OrderedDict[str, datetime]):
    """The poll record, counting the entries a walk over it reads."""

    read = 0

    def __iter__(self) -> Iterator[str]:
        for key in super().__iter__():
            type(self).read += 1
            yield key

    def __reversed__(self) -> Iterator[str]:
        for key in super().__reversed__():
            type(self).read += 1
            yield key


def test_issue11_4_stats_touch_only_the_worker_ids_inside_the_window() -> None:
    w = World()
    for i in range(2_000):
        w.poll(f"w{i}", seconds=i / 100)  # 20 s of polls
    for i in range(20):
        w.poll(f"late{i}", seconds=100 + i)  # everything before is out of the window now
    polls = w.server._envs[w.env].polls
    counting = _Counting(polls._latest)
    polls._latest = counting
    for seconds in (119, 125, 140, 200):
        _Counting.read = 0
        found = w.stats(seconds=seconds).workers_polling
        assert found == sum(1 for i in range(20) if 100 + i > seconds - 30)
        assert _Counting.read <= 21  # at most the ids inside the window, and one more


@attrs.frozen
class _Poll:
    worker: str
    seconds: float


@attrs.frozen
class _Stats:
    seconds: float


def _straightforward(events: list[Any], window: float) -> list[int]:
    """workers_polling as stated (api.py's docstring), computed from every poll ever made: a poll is stamped
    at ``now`` or at the environment's latest poll, whichever is later; stats count the Worker-IDs whose
    latest stamp is less than the window before ``now`` or that latest poll, whichever is later."""
    latest: dict[str, float] = {}
    answers = []
    for event in events:
        newest = max(latest.values(), default=None)
        end = event.seconds if newest is None or event.seconds > newest else newest
        if isinstance(event, _Poll):
            latest[event.worker] = end
        else:
            answers.append(sum(1 for stamp in latest.values() if stamp > end - window))
    return answers


EVENTS = st.lists(
    st.one_of(
        st.builds(_Poll, st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 120).map(lambda s: s / 2)),
        st.builds(_Stats, st.integers(0, 120).map(lambda s: s / 2)),
    ),
    max_size=40,
)


def _served(events: list[Any], window: float) -> list[int]:
    w = World(Policy(workers_polling_window_seconds=window))
    answers = []
    for event in events:
        if isinstance(event, _Poll):
            assert w.poll(event.worker, seconds=event.seconds).status == 200
        else:
            answers.append(w.stats(seconds=event.seconds).workers_polling)
        assert len(w.server._envs[w.env].polls) <= 5
    return answers


@given(events=EVENTS, window=st.sampled_from([1.0, 5.0, 30.0]))
def test_issue11_4_workers_polling_answers_as_the_straightforward_count(events: list[Any], window: float) -> None:
    """Any sequence, the clock jumping both ways: the pruned record answers what every poll ever made says."""
    assert _served(events, window) == _straightforward(events, window)


@given(events=EVENTS, window=st.sampled_from([1.0, 5.0, 30.0]))
def test_issue11_4_workers_polling_with_a_clock_that_never_goes_back_is_unchanged(
    events: list[Any], window: float
) -> None:
    """While ``now`` never goes back, the answers are the old ones: the ids whose latest poll is less than
    the window before ``now``."""
    events = sorted(events, key=lambda e: e.seconds)
    latest: dict[str, float] = {}
    old = []
    for event in events:
        if isinstance(event, _Poll):
            latest[event.worker] = event.seconds
        else:
            old.append(sum(1 for stamp in latest.values() if stamp > event.seconds - window))
    assert _served(events, window) == old


# --- 4b: one live item per session, found without a scan --------------------------------------------------------


class _Items(dict[str, WorkItem]):
    """An environment's items, counting every walk over them."""

    walks = 0

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()

    def __iter__(self) -> Iterator[str]:
        type(self).walks += 1
        return super().__iter__()


def test_issue11_4_create_work_and_adopt_for_a_busy_session_touch_no_other_item() -> None:
    server = Server()
    envs = [server.create_environment(now=T) for _ in range(2)]
    busy = "sess_" + "b" * 32
    for n in range(500):
        server.create_work(envs[n % 2], session_id=f"sess_{n:032x}", now=T)
    holder = server.create_work(envs[1], session_id=busy, now=T)
    for env in envs:
        server._envs[env].items = _Items(server._envs[env].items)
    _Items.walks = 0
    with pytest.raises(SessionBusy) as caught:
        server.create_work(envs[0], session_id=busy, now=T)
    assert caught.value.work_id == holder
    stranger = WorkItem(id="work_" + "e" * 32, environment_id=envs[0], session_id=busy, created_at=T)
    with pytest.raises(SessionBusy) as caught:
        server.adopt(stranger)
    assert caught.value.work_id == holder
    assert _Items.walks == 0  # before: every item of every environment was looked at
    server.adopt(attrs.evolve(server.work(envs[1], holder), metadata={"k": "v"}))  # its own item: no conflict
    assert _Items.walks == 0


def test_issue11_4_the_session_index_follows_every_write_including_expiry() -> None:
    server = Server(Policy(on_lease_expiry=OnLeaseExpiry.STOP))
    env = server.create_environment(now=T)
    session = "sess_" + "a" * 32
    work = server.create_work(env, session_id=session, now=T)
    base = f"/api/v1/cloud/environments/{env}/work"
    assert server.handle(Request("GET", base + "/poll", AUTH), at(1)).status == 200
    assert server.handle(Request("POST", f"{base}/{work}/ack", AUTH), at(2)).status == 200
    beat = server.handle(Request("POST", f"{base}/{work}/heartbeat?desired_ttl_seconds=10", AUTH), at(3))
    assert beat.status == 200
    with pytest.raises(SessionBusy):
        server.create_work(env, session_id=session, now=at(12.999))
    second = server.create_work(env, session_id=session, now=at(13))  # the lease lapsed to stopped at 13 s
    assert server.work(env, work).state is State.STOPPED
    with pytest.raises(SessionBusy):  # the index moved to the new item
        server.create_work(env, session_id=session, now=at(14))
    # adopt: replacing a live item by a stopped one frees its session; by one of another session moves it
    server.adopt(attrs.evolve(server.work(env, second), state=State.STOPPED, stopped_at=at(15), clock=at(15)))
    other = "sess_" + "c" * 32
    third = server.create_work(env, session_id=session, now=at(16))
    server.adopt(attrs.evolve(server.work(env, third), session_id=other))
    fourth = server.create_work(env, session_id=session, now=at(17))
    with pytest.raises(SessionBusy) as caught:
        server.create_work(env, session_id=other, now=at(17))
    assert caught.value.work_id == third and fourth != third


# --- 5a: an RFC 3339 timestamp workstate cannot hold ------------------------------------------------------------

UNHOLDABLE = [
    "2026-07-01T08:15:04.000000001Z",  # nanoseconds
    "2016-12-31T23:59:60Z",  # a leap second
    "2026-07-01T08:15:60.5+02:00",
    "0000-01-01T00:00:00Z",  # a year before workstate's range
    "0999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-01:00",  # after it (and past datetime.max in UTC)
    "9500-01-01T00:00:00Z",
]


@pytest.mark.parametrize("policy", [Policy(), Policy(timestamp_match=TimestampMatch.EXACT)])
@pytest.mark.parametrize("value", UNHOLDABLE)
def test_issue11_5a_an_rfc3339_timestamp_workstate_cannot_hold_is_412(value: str, policy: Policy) -> None:
    w = World(policy)
    for state in ("starting", "active", "stopping"):
        work = w.bring(state)
        envelope = assert_error(
            w.heartbeat(work, seconds=4, expected_last_heartbeat=value), 412, "expected_last_heartbeat"
        )
        assert envelope.error_type == "precondition_failed_error"
    for state in ("queued", "stopped"):  # the state is checked before the precondition
        assert_error(w.heartbeat(w.bring(state), seconds=4, expected_last_heartbeat=value), 409)


@pytest.mark.parametrize("value", UNHOLDABLE)
def test_issue11_5a_the_core_and_explain_agree_a_timestamp_it_cannot_hold_matches_nothing(value: str) -> None:
    item = WorkItem(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "1" * 32, created_at=T
    )
    item = step(item, Ack("w1"), at(1)).item
    item = step(item, Heartbeat(NO_HEARTBEAT), at(1)).item  # active, with a heartbeat
    assert item.state is State.ACTIVE
    command = Heartbeat(value)
    assert command.expected_last_heartbeat == value and command.expected_instant is None
    for policy in (Policy(), Policy(timestamp_match=TimestampMatch.EXACT)):
        outcome = step(item, command, at(2), policy)
        assert outcome.status == 412 and outcome.item is item
        explanation = explain(item, command, at(2), policy)
        assert explanation.outcome == outcome and "precondition_holds=no" in str(explanation)
    fresh = WorkItem(
        id="work_" + "2" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "2" * 32, created_at=T
    )
    assert step(fresh, command, at(2)).status == 409  # queued: the state is checked before the precondition
    out = io.StringIO()  # `workstate explain` says the same
    assert cli.main(["explain", "--state", "active", "--op", "heartbeat", "--expected", value], out) == 0
    assert out.getvalue().startswith("heartbeat on an active item -> 412 precondition_failed_error")


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-29T00:00:00Z",  # no such day
        "2026-13-01T00:00:00Z",
        "2026-07-01T24:00:00Z",
        "2026-07-01T08:60:00Z",
        "2026-07-01T08:15:61Z",
        "2026-07-01T08:15:04+24:00",
        "2026-07-01T08:15:04+01:60",
        "2026-07-01T08:15:04.Z",
        "12026-07-01T08:15:04Z",
        "2026-07-01T08:15:04",
    ],
)
def test_issue11_5a_a_timestamp_that_is_not_rfc3339_stays_400(value: str) -> None:
    w = World()
    work = w.bring("active")
    assert_error(w.heartbeat(work, seconds=4, expected_last_heartbeat=value), 400, "expected_last_heartbeat")


def test_issue11_5a_holdable_spellings_still_match() -> None:
    w = World()
    work = w.bring("active")  # last heartbeat at 3 s
    token = render_timestamp(at(3)).replace("Z", "000Z")  # nine fraction digits, the extra ones zero
    assert w.heartbeat(work, seconds=4, expected_last_heartbeat=token).status == 200


# --- 5b: a backward page's next_page walks backwards ---------------------------------------------------------


@pytest.mark.parametrize("limit", [2, 3])
def test_issue11_5b_following_next_page_as_before_id_walks_backwards(limit: int) -> None:
    """7 items; from the end, follow next_page as before_id (as the typed client qca-sdk does): every
    item exactly once, the pages in reverse order, each page still ascending."""
    w = World()
    works = [w.work() for _ in range(7)]
    pages: list[list[str]] = []
    query: dict[str, Any] = {"limit": str(limit), "before_id": "work_" + "f" * 32}
    while True:
        page = w.list(**query).json
        ids = [item["id"] for item in page["data"]]
        assert ids == sorted(ids)
        pages.append(ids)
        assert page["has_more"] == (works.index(ids[0]) > 0)  # items precede first_id
        if not page["has_more"]:
            assert page["next_page"] is None
            break
        assert page["next_page"] == page["first_id"]
        query["before_id"] = page["next_page"]
    assert [i for ids in reversed(pages) for i in ids] == works
    assert len(pages) == -(-7 // limit)


def test_issue11_5b_forward_pages_are_unchanged() -> None:
    w = World()
    works = [w.work() for _ in range(7)]
    seen: list[str] = []
    query: dict[str, Any] = {"limit": "3"}
    while True:
        page = w.list(**query).json
        seen += [item["id"] for item in page["data"]]
        if page["next_page"] is None:
            break
        assert page["next_page"] == page["last_id"]
        query["page"] = page["next_page"]
    assert seen == works
    empty = w.list(before_id=works[0]).json
    assert empty["data"] == [] and not empty["has_more"] and empty["next_page"] is None


# --- 5d: empty bodies and lone surrogates ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", bytearray(), memoryview(b""), memoryview(bytearray())])
def test_issue11_5d_every_empty_bytes_like_body_is_an_empty_body(body: Any) -> None:
    w = World()
    work, queued = w.work(), w.work()
    base = w.target("")
    for method, target in [
        ("GET", base + "/poll"),
        ("GET", base),
        ("GET", base + "/stats"),
        ("GET", f"{base}/{work}"),
        ("POST", f"{base}/{work}/ack"),
    ]:
        response = w.raw(Request(method, target, AUTH, body), T)
        assert response.status == 200, (method, target, response.json)
    assert w.raw(Request("POST", f"{base}/{queued}/stop", AUTH, body), T).json["state"] == "stopped"


@pytest.mark.parametrize("value", ["\ud800", "req-\udfff", "a\udc80b"])
def test_issue11_5d_a_request_id_with_a_lone_surrogate_is_not_echoed(value: str) -> None:
    w = World()
    response = w.raw(Request("GET", w.target("/poll?block_ms=0"), {**AUTH, "x-request-id": value}), T)
    assert response.status == 400
    assert loads(response.body) == response.json  # the codec reads the answer (it refuses lone surrogates)
    assert response.json["request_id"].startswith("req_")


# --- 3: what an error message echoes --------------------------------------------------------------------------

BIG = 8 * 1024 * 1024


def _small(response: Any) -> None:
    check_response(response)
    assert response.status >= 400
    assert len(response.body) < 2048, len(response.body)


def test_issue11_3_an_8_mb_target_gives_a_small_error() -> None:
    w = World()
    work = w.work()
    base = w.target("")
    for target in [
        "/" + "x" * BIG,
        "/api/v1/cloud/environments/" + "e" * BIG + "/work",  # 404 environment
        f"{base}/{'w' * BIG}",  # 404 work item
        f"{base}/{'w' * BIG}/ack",
        f"{base}/poll?block_ms={'9' * BIG}",
        f"{base}/poll?reclaim_older_than_ms=1{'x' * BIG}",
        f"{base}?limit={'x' * BIG}",
        f"{base}?before_id={'x' * BIG}",
        f"{base}/{work}/heartbeat?expected_last_heartbeat={'x' * BIG}",
        f"{base}/{work}/heartbeat?expected_last_heartbeat=2026-07-01T08:15:04.{'1' * BIG}Z&desired_ttl_seconds=0",
        f"{base}/{work}/heartbeat?desired_ttl_seconds={'x' * BIG}",
    ]:
        for method in ("GET", "POST", "X" * BIG):
            _small(w.raw(Request(method, target, AUTH), T))


def test_issue11_3_header_values_and_body_fragments_are_echoed_short() -> None:
    w = World(authorizer=lambda access: False)
    _small(w.raw(Request("GET", "/api/v1/cloud/environments/" + "e" * BIG + "/work", AUTH), T))  # 403
    w = World()
    work = w.work()
    base = w.target("")
    _small(w.raw(Request("GET", base + "/poll", {**AUTH, "Worker-ID": "\n" + "w" * BIG}), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"force": "' + b"x" * BIG + b'"}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"force": [' + b"1," * (BIG // 16) + b"1]}"), T))
    _small(w.raw(Request("POST", f"{base}/{work}/stop", AUTH, b'{"' + b"k" * BIG + b'": 1}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": {"k": ' + b"9" * 4000 + b"}}"), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": "' + b"x" * BIG + b'"}'), T))
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b'{"metadata": {"' + b"k" * BIG + b'": 5}}'), T))
    key = b'"' + b"k" * BIG + b'"'
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b"{" + key + b": 1, " + key + b": 2}"), T))  # the codec's
    _small(w.raw(Request("POST", f"{base}/{work}", AUTH, b"x" * BIG), T))
    _small(w.raw(Request("GET", base + "/poll", {**AUTH, "x-request-id": "r" * 64}, b"x"), T))


def test_issue11_3_an_excerpt_says_what_was_cut_and_escapes_it() -> None:
    w = World()
    response = w.raw(Request("GET", w.target("/poll?block_ms=" + "9" * 1000), AUTH), T)
    message = response.json["error"]["message"]
    assert "'" + "9" * 64 + "'... (1,000 characters)" in message
    response = w.raw(Request("GET", w.target("/poll"), {**AUTH, "Worker-ID": "a\nb"}), T)
    assert "'a\\nb'" in response.json["error"]["message"]


def test_issue11_3_an_overlong_request_id_is_not_echoed() -> None:
    """No answer echoes unbounded input: an x-request-id over REQUEST_ID_MAX_LENGTH gets a generated id."""
    from workstate.api import REQUEST_ID_MAX_LENGTH, Request, Server

    server = Server()
    for length, echoed in ((REQUEST_ID_MAX_LENGTH, True), (REQUEST_ID_MAX_LENGTH + 1, False), (8 << 20, False)):
        rid = "r" * length
        resp = server.handle(
            Request("GET", "/nowhere", headers={"x-request-id": rid}), now=datetime(2026, 7, 1, tzinfo=UTC)
        )
        assert resp.status == 404
        assert (resp.json["request_id"] == rid) is echoed
        assert len(resp.body) < 2048 or echoed
