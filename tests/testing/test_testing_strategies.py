"""The kit's strategies generate what they say: valid ids and instants, requests that reach the rules
(well-formed) or break one rule of the surface (hostile), and command sequences the core accepts as input."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from workstate import WorkItem, parse_timestamp, step
from workstate.api import Server
from workstate.model import valid_id
from workstate.testing import strategies as ws

T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
FEW = settings(max_examples=200)


def world() -> tuple[Server, str, str]:
    server = Server()
    env = server.create_environment(now=T)
    work = server.create_work(env, session_id="sess_" + "1" * 32, now=T)
    return server, env, work


SERVER, ENV, WORK = world()  # ids are deterministic: every example's fresh server has these


@FEW
@given(ws.ids("env_"), ws.ids("work_"), ws.ids("sess_"))
def test_ids_are_well_formed(env: str, work: str, session: str) -> None:
    assert valid_id("env_", env) and valid_id("work_", work) and valid_id("sess_", session)


@FEW
@given(st.data())
def test_rfc3339_strings_name_the_drawn_instant(data: st.DataObject) -> None:
    instant = data.draw(ws.timestamps())
    text = data.draw(ws.rfc3339(st.just(instant)))
    assert parse_timestamp(text) == instant


@FEW
@given(ws.well_formed_requests(st.just(ENV), st.just(WORK)))
def test_well_formed_requests_pass_the_surface(request: object) -> None:
    server, _, _ = world()
    response = server.handle(request, T)  # type: ignore[arg-type]
    assert response.status in (200, 409, 412) or (
        response.status == 400 and response.json["error"]["param"] == "metadata"
    ), response.json


@FEW
@given(ws.hostile_requests(st.just(ENV), st.just(WORK)))
def test_hostile_requests_are_refused_and_change_nothing(request: object) -> None:
    server, _, _ = world()
    before = server.snapshot()
    response = server.handle(request, T)  # type: ignore[arg-type]
    assert 400 <= response.status < 500, (request, response.json)
    assert server.snapshot() == before


@FEW
@given(ws.command_sequences())
def test_command_sequences_drive_the_core(sequence: list) -> None:
    item = WorkItem(id=WORK, environment_id=ENV, session_id="sess_" + "1" * 32, created_at=T)
    for now, command in sequence:
        outcome = step(item, command, now)
        assert outcome.status in (200, 400, 409, 412)
        item = outcome.item
    assert item.clock >= T


@FEW
@given(ws.requests(st.just(ENV), st.just(WORK), hostile=True))
def test_requests_never_make_the_server_raise(request: object) -> None:
    server, _, _ = world()
    assert server.handle(request, T).status in (200, 400, 401, 404, 409, 412)  # type: ignore[arg-type]
