"""``workstate diagram``, ``workstate table`` and ``workstate explain``: the lifecycle, to look at and to ask.

An edge of the library (it prints). Everything shown is derived: the diagrams and tables from the
rule table (:mod:`workstate.docgen`), the answers of ``explain`` from :func:`workstate.explain` on an
item that was walked to the asked state by :func:`workstate.step`.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any, TextIO

import attrs

from .._time import UTC, render_timestamp
from ..cli import CliCommand
from ..errors import InvalidInput
from ..model import (
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    Explanation,
    Heartbeat,
    Lapse,
    Rejected,
    Stop,
    UpdateMetadata,
    WorkItem,
    explain,
    next_deadline,
    step,
)
from ..policy import DEFAULT_POLICY
from ..rules import Kind, State
from . import docgen

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WORKER = "w1"
OPERATIONS = ("poll", "ack", "heartbeat", "stop", "update", "lapse")
"""The API's operations on one item (``update``: update metadata), plus ``lapse``: time passing."""

# How a representative item reaches each state: the worker loop of spec section 8, one step at a time.
_PATH: tuple[tuple[float, Command], ...] = (
    (0, Deliver(worker_id=WORKER)),
    (1, Ack(worker_id=WORKER)),
    (2, Heartbeat(expected_last_heartbeat=NO_HEARTBEAT)),
    (3, Stop()),
    (4, Stop()),
)


def representative(state: State, *, delivered: bool = True) -> tuple[WorkItem, list[str]]:
    """An item in ``state``, walked there by :func:`step` along a worker's loop, and what that assumes."""
    item = WorkItem(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id="sess_" + "1" * 32, created_at=T0
    )
    steps: list[str] = []
    path = _PATH if delivered else _PATH[1:]
    if state is not State.QUEUED:
        for offset, command in path:
            outcome = step(item, command, T0 + timedelta(seconds=offset))
            assert isinstance(outcome, Accepted), outcome
            item = outcome.item
            steps.append(f"{type(command).__name__}")
            if item.state is state:
                break
    elif delivered:
        item = step(item, path[0][1], T0).item
        steps.append("Deliver")
    assert item.state is state, (item.state, state)
    assumed = [
        f"item walked to {state} by {' -> '.join(steps) or 'nothing: fresh'}"
        + (f" (bound to Worker-ID {item.worker_id})" if item.worker_id else "")
    ]
    if state is State.QUEUED:
        assumed.append(f"delivered to {WORKER} by a poll" if delivered else "never delivered by a poll")
    if item.latest_heartbeat_at is not None:
        assumed.append(f"latest heartbeat {render_timestamp(item.latest_heartbeat_at)}")
    return item, assumed


def show(value: Any) -> str:
    """A command or effect as ``Name(field=value, ...)``, instants in the spec's rendering, defaults left out."""
    parts = []
    for field in attrs.fields(type(value)):
        v = getattr(value, field.name)
        if not field.init or v == field.default:
            continue
        shown = render_timestamp(v) if isinstance(v, datetime) else str(v) if isinstance(v, State) else repr(v)
        parts.append(f"{field.name}={shown}")
    return f"{type(value).__name__}({', '.join(parts)})"


def _command(args: argparse.Namespace, item: WorkItem) -> Command:
    op = args.op
    if op == "poll":
        return Deliver(worker_id=args.worker_id)
    if op == "ack":
        return Ack(worker_id=args.worker_id)
    if op == "heartbeat":
        expected: datetime | str | None = args.expected
        if expected == "latest":
            expected = item.latest_heartbeat_at or NO_HEARTBEAT
        elif expected == "stale":
            expected = T0 - timedelta(seconds=1)
        return Heartbeat(expected_last_heartbeat=expected)
    if op == "stop":
        return Stop(force=args.force)
    if op == "update":
        patch = dict(pair.split("=", 1) for pair in args.metadata) or {"progress": "50%"}
        return UpdateMetadata(patch)
    return Lapse()


def explain_case(args: argparse.Namespace) -> tuple[Explanation, list[str]]:
    """The explanation of ``--op`` on a representative item in ``--state``, and the assumptions made."""
    state = State(args.state)
    item, assumed = representative(state, delivered=not args.undelivered)
    deadline = next_deadline(item, DEFAULT_POLICY)
    if args.expired:
        if deadline is None:
            raise InvalidInput(f"a {state} item has no deadline that could pass", param="--expired")
        now = deadline
        assumed.append(f"now = {render_timestamp(now)}: the item's deadline has come")
    else:
        now = item.clock + timedelta(seconds=1)
        ahead = f", before the item's deadline {render_timestamp(deadline)} (--expired: at it)" if deadline else ""
        assumed.append(f"now = {render_timestamp(now)}{ahead}")
    command = _command(args, item)
    assumed.append(f"request: {show(command)}, default Policy()")
    return explain(item, command, now, DEFAULT_POLICY), assumed


def summary(why: Explanation, state: State, op: str) -> str:
    """One line: the status, the result (or ``error.type`` and message) and the deciding rule."""
    outcome, rule = why.outcome, why.rule
    where = f"{op} on {'an' if state[0] in 'aeiou' else 'a'} {state} item"
    if why.lapse is not None:
        where += f" (first {why.lapse.name} [{why.lapse.section}]: now {why.state})"
    if isinstance(outcome, Rejected):
        result = f"{outcome.status} {outcome.error_type()}: {outcome.reason.message}"
    elif rule.kind is Kind.REPLAY:
        result = f"{outcome.status}, item unchanged (replay)"
    else:
        result = f"{outcome.status}, now {outcome.item.state}"
    return f"{where} -> {result}  [rule {rule.name}, spec section {rule.section}]"


def _run_explain(args: argparse.Namespace, out: TextIO) -> int:
    try:
        why, assumed = explain_case(args)
    except InvalidInput as exc:
        args.parser.error(exc.message)
    out.write(summary(why, State(args.state), args.op) + "\n")
    out.write(f"  rule: {why.rule.text}\n")
    guards = ", ".join(f"{g}={'yes' if v else 'no'}" for g, v in why.guards) or "none read"
    out.write(f"  guards: {guards}\n")
    for effect in why.outcome.effects:
        out.write(f"  effect: {show(effect)}\n")
    for line in assumed:
        out.write(f"  assumed: {line}\n")
    return 0


def _configure_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", required=True, choices=[str(s) for s in State], help="the item's state")
    parser.add_argument("--op", required=True, choices=OPERATIONS, help="the operation (update: update metadata)")
    parser.add_argument("--worker-id", help="the Worker-ID header sent (poll, ack); the item's worker is w1")
    parser.add_argument(
        "--expected",
        metavar="LAST_HEARTBEAT",
        help="heartbeat's expected_last_heartbeat: NO_HEARTBEAT, latest, stale, or an RFC 3339 timestamp",
    )
    parser.add_argument("--force", action="store_true", help="stop with {'force': true}")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="update's metadata")
    parser.add_argument("--undelivered", action="store_true", help="a queued item no poll delivered")
    parser.add_argument("--expired", action="store_true", help="ask at the item's deadline (a lapse applies first)")
    parser.set_defaults(parser=parser)


def _check_explain(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.parser
    if args.worker_id is not None and args.op not in ("poll", "ack"):
        parser.error("--worker-id goes with --op poll or ack")
    if args.expected is not None and args.op != "heartbeat":
        parser.error("--expected goes with --op heartbeat")
    if args.force and args.op != "stop":
        parser.error("--force goes with --op stop")
    if args.metadata and args.op != "update":
        parser.error("--metadata goes with --op update")
    if any("=" not in pair for pair in args.metadata):
        parser.error("--metadata takes KEY=VALUE")
    if args.undelivered and args.state != "queued":
        parser.error("--undelivered goes with --state queued")


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    _check_explain(args)
    return _run_explain(args, out)


def _configure_diagram(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid", help="default: mermaid")


def _diagram(args: argparse.Namespace, out: TextIO) -> int:
    text = {"mermaid": docgen.mermaid, "dot": docgen.dot, "svg": docgen.svg}[args.format]()
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def _configure_table(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("md", "json"), default="md", help="default: md (Markdown)")


def _table(args: argparse.Namespace, out: TextIO) -> int:
    if args.format == "json":
        out.write(json.dumps(docgen.rules_table_json(), indent=2) + "\n")
    else:
        out.write(docgen.rules_table_markdown() + "\n")
    return 0


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "diagram",
        "print the lifecycle's state diagram",
        _configure_diagram,
        _diagram,
        "Print the state diagram, generated from the rules: mermaid (for Markdown), dot (graphviz) or svg.",
    ),
    CliCommand(
        "table",
        "print every rule: state x operation x condition -> result, status, error.type",
        _configure_table,
        _table,
    ),
    CliCommand(
        "explain",
        "what an operation does to an item in a state, and the rule that decides it",
        _configure_explain,
        _explain,
        "Build a representative item in --state (walked there by the rules), apply --op to it, and print the "
        "outcome and the rule that decided it with its spec section, then the assumptions made. "
        'Example: workstate explain --state stopping --op ack  ("what happens if I ack an item that is stopping?")',
    ),
)
