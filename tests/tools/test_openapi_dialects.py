"""The OpenAPI document of the peer dialect: its paths, worker header, 204 stop and envelopes, and real answers of
the reference server in that dialect validate against it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from workstate import ANTHROPIC, QODER
from workstate._time import UTC
from workstate.api import Request, Server
from workstate.tools.openapi import document

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
PEER = document("anthropic")


def _operations(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        op["operationId"]: (path, op) for path, entry in doc["paths"].items() for key, op in entry.items()
        if key != "parameters"
    }  # fmt: skip


def test_the_peer_document_speaks_the_peers_wire() -> None:
    ops = _operations(PEER)
    assert all(path.startswith(ANTHROPIC.base_path) for path, _ in ops.values())
    assert PEER["x-base-path"] == ANTHROPIC.base_path
    assert "204" in ops["stop"][1]["responses"] and "200" not in ops["stop"][1]["responses"]
    poll_headers = {p["name"] for p in ops["poll"][1]["parameters"] if p["in"] == "header"}
    assert ANTHROPIC.worker_header in poll_headers
    assert not {p["name"] for p in ops["ack"][1]["parameters"] if p["in"] == "header"} & {ANTHROPIC.worker_header}
    assert {p["name"] for p in ops["list"][1]["parameters"] if p["in"] == "query"} == {"limit", "page"}
    schemas = PEER["components"]["schemas"]
    assert set(schemas["WorkList"]["required"]) == {"data", "next_page"}
    assert "details" in schemas["ErrorDetail"]["properties"] and "param" not in schemas["ErrorDetail"]["properties"]
    assert "secret" in schemas["Work"]["required"]
    assert "stopped" in ops["heartbeat"][1]["responses"]["200"]["description"]


def test_the_committed_documents_are_the_generated_ones() -> None:
    assert json.loads((ROOT / "docs" / "openapi-anthropic.json").read_text(encoding="utf-8")) == PEER
    assert json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")) == document(QODER)
    with pytest.raises(ValueError, match="no OpenAPI document"):
        document("nope")


def _valid(value: Any, schema: str) -> None:
    jsonschema.validate(value, {"$ref": f"#/components/schemas/{schema}", "components": PEER["components"]})


def test_the_peer_servers_answers_validate_against_its_document() -> None:
    server = Server(dialect=ANTHROPIC)
    env = server.create_environment(now=T)
    server.create_work(env, session_id=ANTHROPIC.new_id("session", 1), now=T)
    server.create_work(env, session_id=ANTHROPIC.new_id("session", 2), now=T)
    auth = {"Authorization": "Bearer k"}

    def send(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        return server.handle(Request(method, target, {**auth, **(headers or {})}, body), T + timedelta(seconds=1))

    polled = send("GET", ANTHROPIC.path(env, operation="poll"), headers={ANTHROPIC.worker_header: "w1"})
    _valid(polled.json, "Work")
    work = polled.json["id"]
    _valid(send("POST", ANTHROPIC.path(env, work, "ack")).json, "Work")
    _valid(send("POST", ANTHROPIC.path(env, work, "heartbeat")).json, "Heartbeat")
    failed = send("POST", ANTHROPIC.path(env, work, "heartbeat") + "?expected_last_heartbeat=NO_HEARTBEAT")
    assert failed.status == 412
    _valid(failed.json, "Error")
    _valid(send("GET", ANTHROPIC.path(env) + "?limit=1").json, "WorkList")
    _valid(send("GET", ANTHROPIC.path(env, operation="stats")).json, "Stats")
    stopped = send("POST", ANTHROPIC.path(env, work, "stop"), b'{"force": true}')
    assert stopped.status == 204 and stopped.json is None
    _valid(send("POST", ANTHROPIC.path(env, work, "heartbeat")).json, "Heartbeat")
    refused = send("POST", ANTHROPIC.path(env, work, "stop"))
    assert refused.status == 409
    _valid(refused.json, "Error")
