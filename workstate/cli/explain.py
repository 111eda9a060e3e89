"""``workstate explain``, ``workstate diagram`` and ``workstate table``: the lifecycle, to ask and to look at.

The answers come from :mod:`workstate.tools.teach` (an item walked to the asked state by the rules, and
:func:`workstate.explain` on it), the pictures and tables from :mod:`workstate.tools.docgen`; this module
reads the options and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..dialect import DIALECTS
from ..errors import InvalidInput, WorkstateError
from ..rules import State
from ..tools import docgen
from ..tools.teach import ALIASES, OPERATIONS, explain_case, explain_json, operation, show, summary
from . import CliCommand
from .options import (
    add_dialect_option,
    add_json_option,
    add_policy_option,
    dialect_of,
    json_to_stdout,
    policy_from_pairs,
    write_json,
)

# The options of explain_case, each the dest of the option of the same name.
_OPTIONS = ("worker_id", "expected", "force", "metadata", "undelivered", "expired")


def _run_explain(args: argparse.Namespace, out: TextIO) -> int:
    dialect = dialect_of(args)
    try:
        policy = policy_from_pairs(args.policy, dialect.policy)
        why, assumed = explain_case(
            args.state, args.op, dialect=dialect, policy=policy, **{name: getattr(args, name) for name in _OPTIONS}
        )
    except InvalidInput as exc:
        args.parser.error(exc.message)
    except WorkstateError as exc:  # a bad --policy
        args.parser.error(exc.message)
    op = operation(args.op, force=args.force)
    if args.json is not None:
        try:
            write_json(args, out, explain_json(why, State(args.state), op, assumed, dialect, policy))
        except WorkstateError as exc:
            sys.stderr.write(f"workstate explain: {exc.message}\n")
            return 2
        if json_to_stdout(args):
            return 0
    out.write(summary(why, State(args.state), op, dialect, policy) + "\n")
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
    parser.add_argument(
        "--op",
        required=True,
        choices=[*OPERATIONS, *ALIASES],
        metavar="OP",
        help=f"the operation, as the rules spell it: {', '.join(OPERATIONS)}; also accepted: "
        + ", ".join(f"{alias} (= {name})" for alias, name in ALIASES.items())
        + ", stop --force (= force_stop). The answer names the rules' spelling",
    )
    parser.add_argument("--worker-id", help="the worker identity sent (deliver, ack); the item's worker is w1")
    parser.add_argument(
        "--expected",
        metavar="LAST_HEARTBEAT",
        help="heartbeat's expected_last_heartbeat: NO_HEARTBEAT, latest, stale, or an RFC 3339 timestamp",
    )
    parser.add_argument("--force", action="store_true", help="stop with {'force': true}: --op force_stop")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="update_metadata's metadata"
    )
    parser.add_argument("--undelivered", action="store_true", help="a queued item no poll delivered")
    parser.add_argument("--expired", action="store_true", help="ask at the item's deadline (a lapse applies first)")
    add_dialect_option(parser, "whose rules decide, under the dialect's default policy")
    add_policy_option(parser, "a Policy field the rules read, over the dialect's default policy")
    add_json_option(parser, 'docs/cli.md "explain --json"')
    parser.set_defaults(parser=parser)


def _check_explain(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.parser
    op = operation(args.op)
    if args.worker_id is not None and op not in ("deliver", "ack"):
        parser.error("--worker-id goes with --op deliver (poll) or ack")
    if args.expected is not None and op != "heartbeat":
        parser.error("--expected goes with --op heartbeat")
    if args.force and op not in ("stop", "force_stop"):
        parser.error("--force goes with --op stop (it makes it force_stop)")
    if args.metadata and op != "update_metadata":
        parser.error("--metadata goes with --op update_metadata (update)")
    if any("=" not in pair for pair in args.metadata):
        parser.error("--metadata takes KEY=VALUE")
    if args.undelivered and args.state != "queued":
        parser.error("--undelivered goes with --state queued")


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    _check_explain(args)
    return _run_explain(args, out)


def _configure_diagram(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid", help="default: mermaid")
    parser.add_argument(
        "--dialect",
        choices=list(DIALECTS),
        help="only the changes this dialect reaches, its constant guards left out (mermaid, dot; "
        "default: every rule of the declaration)",
    )
    parser.set_defaults(parser=parser)


def _diagram(args: argparse.Namespace, out: TextIO) -> int:
    dialect = None if args.dialect is None else dialect_of(args)
    if args.format == "svg":
        if dialect is not None:
            args.parser.error("--dialect goes with --format mermaid or dot (the picture is the whole declaration)")
        text = docgen.svg()
    else:
        text = {"mermaid": docgen.mermaid, "dot": docgen.dot}[args.format](dialect)
    out.write(text if text.endswith("\n") else text + "\n")
    return 0


def _configure_table(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("md", "json"), default="md", help="default: md (Markdown)")
    parser.add_argument(
        "--dialect",
        choices=list(DIALECTS),
        help="only the rules this dialect reaches, its constant guards left out, error.type as it answers "
        "(default: every rule of the declaration)",
    )


def _table(args: argparse.Namespace, out: TextIO) -> int:
    dialect = None if args.dialect is None else dialect_of(args)
    if args.format == "json":
        out.write(json.dumps(docgen.rules_table_json(dialect), indent=2) + "\n")
    else:
        out.write(docgen.rules_table_markdown(dialect) + "\n")
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
        "outcome and the rule that decided it with its section of docs/api.md, then the assumptions made. "
        'Example: workstate explain --state stopping --op ack  ("what happens if I ack an item that is stopping?")',
    ),
)
