"""The docs of the dialects are derived: the differences table from the Dialect values, the reach from the rules."""

from __future__ import annotations

import attrs

from workstate import ANTHROPIC, DIALECTS, QODER, Dialect
from workstate.tools import docgen


def test_dialects_page_lists_every_field_of_dialect_with_each_dialects_value() -> None:
    page = docgen.dialects_markdown()
    rows = {line.split(" | ")[0].strip("| `"): line for line in page.splitlines() if line.startswith("| `")}
    assert set(rows) == {field.name for field in attrs.fields(Dialect)}
    assert "`/v1/environments/`" in rows["base_path"] and "`/api/v1/cloud/environments/`" in rows["base_path"]
    assert "`NO_CONTENT`" in rows["stop_answer"] and "`OBJECT`" in rows["stop_answer"]
    assert "guard `stopped_heartbeat_reports`" in rows["heartbeat_on_stopped"]
    assert "KEEP_STARTING" in rows["policy"]
    assert '`{"force": null}` is a 400' in page


def test_a_user_defined_dialect_gets_its_column() -> None:
    other = attrs.evolve(QODER, name="other", base_path="/other/")
    DIALECTS["other"] = other
    try:
        page = docgen.dialects_markdown()
    finally:
        del DIALECTS["other"]
    assert "| field | `qoder` | `anthropic` | `other` |" in page
    assert "`/other/`" in page


def test_each_dialect_reaches_its_own_rules() -> None:
    anthropic = {name for name, _ in docgen.reached(ANTHROPIC)}
    qoder = {name for name, _ in docgen.reached(QODER)}
    assert "heartbeat-stopped-reported" in anthropic and "heartbeat-stopped-reported" not in qoder
    assert "heartbeat-stopped" in qoder and "heartbeat-stopped" not in anthropic
    assert "ack-claimed-by-another" in qoder and "ack-claimed-by-another" not in anthropic
    assert {"stop-stopped-refused", "force-stop-stopped-refused", "heartbeat-queued-not-the-lease"} <= anthropic
    assert "deliver" in anthropic & qoder


def test_the_lifecycle_page_shows_the_reach_per_dialect() -> None:
    page = docgen.lifecycle_markdown().split("## The rules each dialect reaches")[1]
    row = next(line for line in page.splitlines() if line.startswith("| `heartbeat-stopped-reported` |"))
    assert row.endswith("| — | 200 |")
    active = "| `heartbeat-precondition-failed` | `heartbeat` | `active`"
    row = next(line for line in page.splitlines() if line.startswith(active))
    assert "412 `precondition_failed_error` | 412 `invalid_request_error`" in row


def test_a_dialects_table_leaves_out_what_it_never_reaches_and_its_constant_guards() -> None:
    table = docgen.rules_table_markdown(ANTHROPIC)
    assert "`heartbeat-stopped-reported`" in table and "`heartbeat-stopped` |" not in table
    assert "stopped_heartbeat_reports" not in table and "checks_worker" not in table
    rows = docgen.rules_table_json(ANTHROPIC)
    assert {r["error_type"] for r in rows if r["rule"] == "heartbeat-precondition-failed"} == {"invalid_request_error"}
    assert "stopped_heartbeat_reports" in docgen.rules_table_markdown()  # the declaration's table keeps them
