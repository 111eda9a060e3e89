"""Issue 15, point 3: the OpenAPI 3.1 document of the Work API, and schemathesis against the ASGI app in process.

The document is generated (workstate.tools.openapi), committed as docs/openapi.json (drift-tested with the other
generated docs) and served at /openapi.json. schemathesis generates requests for every operation from it and
checks every answer: no 5xx, every status documented for its operation, the body conforming to its schema,
the content type and headers documented. Examples are bounded and derandomized.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from workstate.api import Request, Server
from workstate.api.routes import OPERATIONS
from workstate.asgi import WorkstateApp
from workstate.tools.openapi import document

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
AUTH = {"Authorization": "Bearer schemathesis"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


ENV = "env_" + "0" * 31 + "1"
WORKS = [f"work_{n:032x}" for n in range(1, 6)]


def _app() -> WorkstateApp:
    """An app whose environments exist and hold items in every state, so generated requests reach the rules."""
    server = Server()
    env = server.create_environment(now=T)
    assert env == ENV
    server.create_environment("cloud", now=T)
    worker = {**AUTH, "Worker-ID": "w1"}
    for n in range(5):
        assert server.create_work(env, session_id=f"sess_{n + 1:032x}", metadata={"n": str(n)}, now=T) == WORKS[n]
    for steps in (["poll"], ["poll", "ack"], ["poll", "ack", "heartbeat"], ["poll", "ack", "heartbeat", "stop"]):
        for operation in steps:
            if operation == "poll":
                polled = server.handle(Request("GET", f"/api/v1/cloud/environments/{env}/work/poll", worker), T)
                wid = polled.json["id"]
            else:
                target = f"/api/v1/cloud/environments/{env}/work/{wid}/{operation}"
                assert server.handle(Request("POST", target, worker), T).status == 200
    return WorkstateApp(server, clock=lambda: T)


APP = _app()
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)


def test_the_document_names_every_operation_once() -> None:
    doc = document()
    found = [op["operationId"] for path in doc["paths"].values() for key, op in path.items() if key != "parameters"]
    assert sorted(found) == sorted(OPERATIONS)
    assert doc["openapi"] == "3.1.0"


def test_every_operation_documents_the_statuses_the_server_can_answer() -> None:
    doc = document()
    by_id = {op["operationId"]: op for path in doc["paths"].values() for key, op in path.items() if key != "parameters"}
    for name, op in by_id.items():
        assert {"200", "400", "401", "403", "404", "413"} <= set(op["responses"]), name
    assert "412" in by_id["heartbeat"]["responses"] and "412" not in by_id["ack"]["responses"]
    assert "409" in by_id["ack"]["responses"] and "409" not in by_id["poll"]["responses"]


def test_the_committed_document_is_the_generated_one_and_the_app_serves_it() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == document()
    served = APP.answer("GET", "/openapi.json", [], b"")
    assert served.status == 200 and json.loads(served.body) == committed


def test_a_codec_key_without_a_schema_fails_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    import workstate.tools.openapi as openapi

    properties = {**openapi._PROPERTIES, "Stats": dict(openapi._PROPERTIES["Stats"])}
    del properties["Stats"]["depth"]
    monkeypatch.setattr(openapi, "_PROPERTIES", properties)
    with pytest.raises(ValueError, match=r"Stats\.depth"):
        document()


SETTINGS = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@SCHEMA.parametrize()
@SETTINGS
def test_schemathesis_finds_no_failure(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_schemathesis_on_the_seeded_items_finds_no_failure_and_reaches_every_operation() -> None:
    """The same checks with the path naming the seeded environment and one of its items (queued, delivered,
    starting, active, stopping or stopped), so 200s, 409s and 412s are answered and checked against the schema;
    every operation is answered 200 at least once."""
    from hypothesis import given

    seen: dict[str, set[int]] = {}

    def check(case: schemathesis.Case) -> None:
        case.path_parameters = {**(case.path_parameters or {}), "environment_id": ENV}
        if "work_id" in case.path_parameters:
            case.path_parameters["work_id"] = WORKS[len(repr(case.query)) % len(WORKS)]
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        seen.setdefault(case.operation.definition.raw["operationId"], set()).add(response.status_code)

    for result in SCHEMA.get_all_operations():
        run = given(case=result.ok().as_strategy())(lambda case: check(case))
        SETTINGS(run)()
    assert sorted(seen) == sorted(OPERATIONS)
    assert all(200 in statuses for statuses in seen.values()), seen
    assert 409 in seen["ack"] | seen["heartbeat"], seen


def test_schemathesis_covers_every_operation() -> None:
    labels = {result.ok().label for result in SCHEMA.get_all_operations()}
    assert len(labels) == len(OPERATIONS), labels


def test_schemathesis_catches_an_undocumented_status() -> None:
    """The checks have teeth: with 404 left out of the document, a get of an unknown item fails."""
    from hypothesis import given

    trimmed = document()
    for path in trimmed["paths"].values():
        for key, op in path.items():
            if key != "parameters":
                op["responses"].pop("404", None)
    schema = schemathesis.openapi.from_dict(trimmed)
    schema.app = _app()
    operation = schema.find_operation_by_id("get")

    @given(case=operation.as_strategy())
    @settings(SETTINGS, max_examples=20)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    with pytest.raises(BaseException, match="Undocumented status code") as caught:
        run()
    assert "404" in str(caught.value) or any("404" in str(e) for e in getattr(caught.value, "exceptions", ()))
