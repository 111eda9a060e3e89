"""The wire codec: every object both ways; strict JSON and required keys, tolerant of keys it does not know."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from helpers import T0, item_in
from hypothesis import given
from hypothesis import strategies as st

from workstate import InvalidInput, State, WorkItem, render_timestamp
from workstate.api.codec import (
    ERROR_TYPES,
    DecodeError,
    ErrorEnvelope,
    HeartbeatObject,
    ListEnvelope,
    StatsObject,
    WorkObject,
    decode_poll,
    dumps,
    encode_work,
    loads,
    unknown_keys,
    work_state,
)

# --- strategies ------------------------------------------------------------------------------------------

HEX = st.text("0123456789abcdef", min_size=32, max_size=32)
INSTANT = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(8999, 12, 31), timezones=st.just(UTC))
MAYBE = st.none() | INSTANT
TEXT = st.text(max_size=20)
WORK_OBJECTS = st.builds(
    WorkObject,
    id=HEX.map("work_".__add__),
    environment_id=HEX.map("env_".__add__),
    session_id=HEX.map("sess_".__add__),
    state=st.sampled_from(State),
    created_at=INSTANT,
    acknowledged_at=MAYBE,
    started_at=MAYBE,
    latest_heartbeat_at=MAYBE,
    stop_requested_at=MAYBE,
    stopped_at=MAYBE,
    metadata=st.dictionaries(TEXT, TEXT, max_size=4),
)
HEARTBEATS = st.builds(
    HeartbeatObject,
    last_heartbeat=INSTANT,
    lease_extended=st.booleans(),
    state=st.sampled_from(State),
    ttl_seconds=st.integers(1, 10**6),
)
STATS = st.builds(
    StatsObject,
    depth=st.integers(0, 10**9),
    pending=st.integers(0, 10**9),
    oldest_queued_at=MAYBE,
    workers_polling=st.integers(0, 10**9),
)
LISTS = st.builds(
    lambda objects, has_more: ListEnvelope(
        data=tuple(sorted({o.id: o for o in objects}.values(), key=lambda o: o.id)), has_more=has_more
    ),
    st.lists(WORK_OBJECTS, max_size=4),
    st.booleans(),
)
ERRORS = st.builds(
    ErrorEnvelope,
    request_id=TEXT,
    error_type=st.sampled_from(sorted(ERROR_TYPES)) | TEXT.filter(bool),
    message=TEXT,
    param=st.none() | TEXT,
)


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "strategy"),
    [
        (WorkObject, WORK_OBJECTS),
        (HeartbeatObject, HEARTBEATS),
        (StatsObject, STATS),
        (ListEnvelope, LISTS),
        (ErrorEnvelope, ERRORS),
    ],
)
def test_every_object_round_trips_through_json_bytes(kind: Any, strategy: Any) -> None:
    @given(strategy)
    def round_trip(value: Any) -> None:
        wire = dumps(value.to_json())
        assert wire.isascii()
        assert kind.from_bytes(wire) == value
        assert kind.from_json(json.loads(wire)) == value

    round_trip()


@pytest.mark.parametrize("state", list(State))
def test_a_model_item_encodes_as_its_wire_object(state: State) -> None:
    item = item_in(state)
    assert encode_work(item) == WorkObject.of(item).to_json()
    decoded = WorkObject.from_bytes(dumps(encode_work(item)))
    assert decoded == WorkObject.of(item)
    assert decoded.state is state and decoded.session_id == item.session_id and decoded.type == "work"


def test_the_work_object_has_exactly_the_spec_fields_rendered_as_the_spec_does() -> None:
    item = item_in(State.ACTIVE)
    value = encode_work(item)
    assert list(value) == [
        "id",
        "type",
        "environment_id",
        "data",
        "state",
        "created_at",
        "acknowledged_at",
        "started_at",
        "latest_heartbeat_at",
        "stop_requested_at",
        "stopped_at",
        "metadata",
    ]
    assert value["type"] == "work" and value["data"] == {"type": "session", "id": item.session_id}
    assert value["created_at"] == "2026-07-01T08:15:01.000000Z"
    assert value["latest_heartbeat_at"] == render_timestamp(item.latest_heartbeat_at)
    assert value["stopped_at"] is None


def test_the_heartbeat_object_of_a_leased_item() -> None:
    item = item_in(State.ACTIVE)
    beat = HeartbeatObject.of(item)
    assert beat.to_json() == {
        "type": "work_heartbeat",
        "last_heartbeat": render_timestamp(item.latest_heartbeat_at),
        "lease_extended": True,
        "state": "active",
        "ttl_seconds": 60,
    }
    with pytest.raises(InvalidInput):
        HeartbeatObject.of(item_in(State.STARTING))


def test_the_list_envelope_derives_its_cursors() -> None:
    items = [
        WorkObject.of(
            WorkItem(id=f"work_{i:032x}", environment_id="env_" + "0" * 32, session_id=f"sess_{i:032x}", created_at=T0)
        )
        for i in range(3)
    ]
    page = ListEnvelope(data=tuple(items), has_more=True)
    assert page.to_json()["first_id"] == items[0].id
    assert page.last_id == page.next_page == items[2].id
    assert ListEnvelope(data=(), has_more=False).to_json() == {
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
        "next_page": None,
    }


def test_the_error_envelope_leaves_out_an_absent_param() -> None:
    assert ErrorEnvelope(request_id="r", error_type="not_found_error", message="m").to_json() == {
        "type": "error",
        "request_id": "r",
        "error": {"type": "not_found_error", "message": "m"},
    }
    with_param = ErrorEnvelope(request_id="r", error_type="invalid_request_error", message="m", param="limit")
    assert with_param.to_json()["error"]["param"] == "limit"


def test_decoding_accepts_any_rfc3339_spelling_and_renders_the_spec_form() -> None:
    value = encode_work(item_in(State.QUEUED))
    value["created_at"] = "2026-07-01T10:15:01+02:00"
    decoded = WorkObject.from_json(value)
    assert decoded.created_at == T0
    assert decoded.to_json()["created_at"] == "2026-07-01T08:15:01.000000Z"
    value["created_at"] = "2026-07-01T08:15:01Z"  # the public reference's own example spelling
    assert WorkObject.from_json(value).created_at == T0


def test_decode_poll_reads_an_item_or_null() -> None:
    item = item_in(State.QUEUED)
    assert decode_poll(b"null") is None
    assert decode_poll(dumps(encode_work(item))) == WorkObject.of(item)
    with pytest.raises(DecodeError):
        decode_poll(b"[]")


def test_aware_datetimes_in_other_zones_encode_in_utc() -> None:
    local = T0.astimezone(timezone(timedelta(hours=-7)))
    beat = HeartbeatObject(last_heartbeat=local, lease_extended=True, state=State.ACTIVE, ttl_seconds=10)
    assert beat.to_json()["last_heartbeat"] == "2026-07-01T08:15:01.000000Z"


# --- strictness -----------------------------------------------------------------------------------------------


def work_json(**changes: Any) -> dict[str, Any]:
    value = encode_work(item_in(State.ACTIVE))
    for key, new in changes.items():
        if new is KeyError:
            del value[key]
        else:
            value[key] = new
    return value


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ([], None),
        (work_json(id=KeyError), "id"),
        (work_json(id="work_1"), "id"),
        (work_json(id="work_" + "A" * 32), "id"),
        (work_json(environment_id="work_" + "0" * 32), "environment_id"),
        (work_json(type="Work"), "type"),
        (work_json(state="running"), "state"),
        (work_json(state=None), "state"),
        (work_json(created_at=None), "created_at"),
        (work_json(created_at="2026-07-01T08:15:01"), "created_at"),
        (work_json(created_at=1751357701), "created_at"),
        (work_json(started_at="yesterday"), "started_at"),
        (work_json(metadata={"a": 1}), "metadata"),
        (work_json(metadata=None), "metadata"),
        (work_json(metadata=[]), "metadata"),
        (work_json(data={"type": "session"}), "data.id"),
        (work_json(data={"type": "job", "id": "sess_" + "0" * 32}), "data.type"),
        (work_json(data={"type": "session", "id": "sess_x"}), "data.id"),
        (work_json(data=None), "data"),
    ],
)
def test_work_objects_are_decoded_strictly(value: Any, param: str | None) -> None:
    with pytest.raises(DecodeError) as caught:
        WorkObject.from_json(value)
    assert caught.value.param == param
    assert isinstance(caught.value, InvalidInput)


@pytest.mark.parametrize(
    ("kind", "value", "param"),
    [
        (
            HeartbeatObject,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "x",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 1,
            },
            "last_heartbeat",
        ),
        (
            HeartbeatObject,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:01Z",
                "lease_extended": 1,
                "state": "active",
                "ttl_seconds": 1,
            },
            "lease_extended",
        ),
        (
            HeartbeatObject,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:01Z",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 0,
            },
            "ttl_seconds",
        ),
        (
            HeartbeatObject,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:01Z",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": True,
            },
            "ttl_seconds",
        ),
        (
            HeartbeatObject,
            {
                "type": "heartbeat",
                "last_heartbeat": "2026-07-01T08:15:01Z",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 5,
            },
            "type",
        ),
        (
            StatsObject,
            {"type": "work_queue_stats", "depth": -1, "pending": 0, "oldest_queued_at": None, "workers_polling": 0},
            "depth",
        ),
        (
            StatsObject,
            {"type": "work_queue_stats", "depth": 0, "pending": 1.5, "oldest_queued_at": None, "workers_polling": 0},
            "pending",
        ),
        (
            StatsObject,
            {"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": "", "workers_polling": 0},
            "oldest_queued_at",
        ),
        (
            StatsObject,
            {"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": None},
            "workers_polling",
        ),
        (ListEnvelope, {"data": {}, "first_id": None, "last_id": None, "has_more": False, "next_page": None}, "data"),
        (
            ListEnvelope,
            {"data": [], "first_id": "work_" + "0" * 32, "last_id": None, "has_more": False, "next_page": None},
            "first_id",
        ),
        (
            ListEnvelope,
            {"data": [], "first_id": None, "last_id": None, "has_more": "no", "next_page": None},
            "has_more",
        ),
        (
            ListEnvelope,
            {
                "data": [work_json()],
                "first_id": work_json()["id"],
                "last_id": work_json()["id"],
                "has_more": True,
                "next_page": None,
            },
            "next_page",
        ),
        (
            ListEnvelope,
            {"data": [work_json(state="x")], "first_id": None, "last_id": None, "has_more": False, "next_page": None},
            "data[0].state",
        ),
        (
            ListEnvelope,
            {
                "data": [work_json(), work_json()],
                "first_id": work_json()["id"],
                "last_id": work_json()["id"],
                "has_more": False,
                "next_page": None,
            },
            "data",
        ),
        (ErrorEnvelope, {"type": "error", "request_id": "r", "error": {"type": "", "message": "m"}}, "error.type"),
        (
            ErrorEnvelope,
            {"type": "error", "request_id": "r", "error": {"type": "t", "message": "m", "param": None}},
            "error.param",
        ),
        (ErrorEnvelope, {"type": "error", "request_id": 5, "error": {"type": "t", "message": "m"}}, "request_id"),
        (ErrorEnvelope, {"type": "error", "request_id": "r", "error": {"type": "t"}}, "error.message"),
        (ErrorEnvelope, {"type": "err", "request_id": "r", "error": {"type": "t", "message": "m"}}, "type"),
    ],
)
def test_other_objects_are_decoded_strictly(kind: Any, value: Any, param: str) -> None:
    with pytest.raises(DecodeError) as caught:
        kind.from_json(value)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff",
        b"\xef\xbb\xbf{}",
        b"NaN",
        b"[Infinity]",
        b"-Infinity",
        b'{"a": 1, "a": 1}',
        b'"\\ud800"',
        b'{"\\udc00": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
        b"{} {}",
        "{}".encode("utf-16"),
    ],
)
def test_loads_is_strict_json(data: bytes) -> None:
    with pytest.raises(DecodeError):
        loads(data)


def test_loads_accepts_what_json_is() -> None:
    assert loads(b' {"a": [1, 2.5, true, null, "\\u00e9\\ud83d\\ude00"]} ') == {"a": [1, 2.5, True, None, "é😀"]}
    assert loads("[]") == [] and loads(memoryview(b"null")) is None and loads(bytearray(b"1")) == 1


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=8,
    )
)
def test_dumps_and_loads_round_trip_any_json_value(value: Any) -> None:
    wire = dumps(value)
    assert wire.isascii() and loads(wire) == value


def test_work_state_reads_only_whose_object_it_is_and_its_state() -> None:
    work, env = "work_" + "1" * 32, "env_" + "2" * 32
    good = {"type": "work", "id": work, "environment_id": env, "state": "stopping", "created_at": "not read"}
    assert work_state(good, work, env) is State.STOPPING
    for bad in (
        None,
        [],
        {**good, "type": "work_heartbeat"},
        {**good, "id": "work_" + "3" * 32},
        {**good, "environment_id": "env_" + "3" * 32},
        {**good, "state": "paused"},
        {k: v for k, v in good.items() if k != "state"},
    ):
        with pytest.raises(DecodeError):
            work_state(bad, work, env)


# --- issue 11: replies are read tolerantly (unknown keys ignored), JSON syntax stays strict ----------------

EXTRA_KEYS = st.dictionaries(
    st.sampled_from(["secret", "extra", "details", "x", "lease_updated_at", "request-id"]),
    st.none() | st.booleans() | st.integers() | TEXT | st.lists(st.integers(), max_size=2),
    min_size=1,
    max_size=3,
)


def nested_objects(kind: Any, value: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every JSON object of a reply, with its path: where a server might add keys."""
    found = [(path, value)]
    prefix = f"{path}." if path else ""
    if kind is WorkObject:
        found.append((f"{prefix}data", value["data"]))
    elif kind is ListEnvelope:
        for i, item in enumerate(value["data"]):
            found += nested_objects(WorkObject, item, f"{prefix}data[{i}]")
    elif kind is ErrorEnvelope:
        found.append((f"{prefix}error", value["error"]))
    return found


@pytest.mark.parametrize(
    ("kind", "strategy"),
    [
        (WorkObject, WORK_OBJECTS),
        (HeartbeatObject, HEARTBEATS),
        (StatsObject, STATS),
        (ListEnvelope, LISTS),
        (ErrorEnvelope, ERRORS),
    ],
)
def test_issue11_1_reply_decoders_ignore_unknown_keys(kind: Any, strategy: Any) -> None:
    @given(strategy, st.data())
    def tolerant(value: Any, data: st.DataObject) -> None:
        wire = value.to_json()
        added = []
        for path, obj in nested_objects(kind, wire):
            extra = {k: v for k, v in (data.draw(st.none() | EXTRA_KEYS) or {}).items() if k not in obj}
            obj.update(extra)
            added += [f"{path}.{key}" if path else key for key in extra]
        assert kind.from_json(wire) == value  # the unknown keys are ignored ...
        assert kind.from_bytes(dumps(wire)) == value
        assert sorted(unknown_keys(wire, kind)) == sorted(added)  # ... and named, for a checker's notes

    tolerant()


def test_issue11_1_a_poll_answer_with_a_secret_is_read() -> None:
    item = item_in(State.QUEUED)
    value = {**encode_work(item), "secret": None}
    assert decode_poll(dumps(value)) == WorkObject.of(item)
    assert unknown_keys(value, WorkObject) == ("secret",)
    assert work_state({**value, "secret": "s3cr3t"}, item.id, item.environment_id) is State.QUEUED


def test_issue11_1_unknown_keys_names_every_path() -> None:
    work = {**work_json(secret=None), "data": {"type": "session", "id": "sess_" + "0" * 32, "extra": 1}}
    assert unknown_keys(work, WorkObject) == ("data.extra", "secret")  # in the order they appear
    page = {
        "data": [work_json(), work_json(secret="s")],
        "first_id": None,
        "last_id": None,
        "has_more": False,
        "next_page": None,
        "total": 2,
    }
    assert unknown_keys(page, ListEnvelope) == ("data[1].secret", "total")
    error = {"type": "error", "request_id": "r", "error": {"type": "t", "message": "m", "details": {"a": 1}}}
    assert unknown_keys(error, ErrorEnvelope) == ("error.details",)
    assert unknown_keys({**error, "error": {"type": "t", "message": "m", "param": "p"}}, ErrorEnvelope) == ()
    beat = {**HeartbeatObject.of(item_in(State.ACTIVE)).to_json(), "lease_updated_at": None}
    assert unknown_keys(beat, HeartbeatObject) == ("lease_updated_at",)
    stats = {"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": None, "workers_polling": 0}
    assert unknown_keys({**stats, "x": []}, StatsObject) == ("x",)
    assert unknown_keys(encode_work(item_in(State.ACTIVE)), WorkObject) == ()
    # what is not an object (a poll's null, a malformed reply) has no keys to name; decoding judges its shape
    for odd in (None, [], "work", {**work_json(), "data": None}, {**work_json(), "data": ["x"]}):
        assert unknown_keys(odd, WorkObject) == ()
    assert unknown_keys({**page, "data": {"x": 1}}, ListEnvelope) == ("total",)  # data is no array: not looked into
    assert unknown_keys({**page, "data": [None, 1, {"secret": 1}]}, ListEnvelope) == ("data[2].secret", "total")
    with pytest.raises(InvalidInput) as caught:
        unknown_keys({}, dict)
    assert caught.value.param == "kind"


@pytest.mark.parametrize(
    ("kind", "value", "param"),
    [
        (WorkObject, work_json(secret=None, id=KeyError), "id"),
        (WorkObject, work_json(secret=None, state=1), "state"),
        (WorkObject, work_json(secret=None, data={"type": "session", "x": 1}), "data.id"),
        (
            ListEnvelope,
            {"data": [work_json(secret=None, metadata=None)], "first_id": None, "last_id": None, "has_more": False},
            "next_page",
        ),
        (
            ListEnvelope,
            {
                "data": [work_json(secret=None, metadata=None)],
                "first_id": None,
                "last_id": None,
                "has_more": False,
                "next_page": None,
                "x": 1,
            },
            "data[0].metadata",
        ),
        (ErrorEnvelope, {"type": "error", "request_id": "r", "error": {"details": {}, "message": "m"}}, "error.type"),
        (ErrorEnvelope, {"type": "error", "error": {"type": "t", "message": "m"}, "x": 1}, "request_id"),
        (
            HeartbeatObject,
            {
                "type": "work_heartbeat",
                "last_heartbeat": "x",
                "lease_extended": True,
                "state": "active",
                "ttl_seconds": 1,
                "x": 1,
            },
            "last_heartbeat",
        ),
        (
            StatsObject,
            {"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": None, "x": 0},
            "workers_polling",
        ),
    ],
)
def test_issue11_1_tolerant_decoding_still_demands_the_known_keys_with_their_types(
    kind: Any, value: Any, param: str
) -> None:
    test_other_objects_are_decoded_strictly(kind, value, param)


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 1, "secret": NaN}',
        b'{"secret": null, "secret": null}',
        b'{"data": {"type": "session", "type": "session"}}',
        b'{"secret": Infinity}',
    ],
)
def test_issue11_1_json_syntax_stays_strict_for_replies(data: bytes) -> None:
    with pytest.raises(DecodeError):
        loads(data)
    with pytest.raises(DecodeError):
        decode_poll(data)


def test_issue11_5b_a_backward_page_names_its_first_item_as_next_page() -> None:
    items = [
        WorkObject.of(
            WorkItem(id=f"work_{i:032x}", environment_id="env_" + "0" * 32, session_id=f"sess_{i:032x}", created_at=T0)
        )
        for i in range(3)
    ]
    page = ListEnvelope(data=tuple(items[1:]), has_more=True, backward=True)
    assert page.to_json()["next_page"] == items[1].id
    again = ListEnvelope.from_json(page.to_json())
    assert again == page and again.backward
    forward = ListEnvelope(data=tuple(items[1:]), has_more=True)
    assert ListEnvelope.from_json(forward.to_json()) == forward and forward.next_page == items[2].id
    wrong = dict(page.to_json(), next_page="work_" + "f" * 32)
    with pytest.raises(DecodeError):
        ListEnvelope.from_json(wrong)
