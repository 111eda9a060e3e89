"""``workstate walk`` (the default command) and ``workstate rules``: one item's whole life, and every rule.

The lines come from :func:`workstate.tools.teach.walk` and :func:`~workstate.tools.teach.list_rules`;
this module prints them (or, with ``--json``, the walk's document: docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..dialect import DIALECTS
from ..errors import WorkstateError
from ..tools.teach import list_rules, walk, walk_json
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


def _run_walk(args: argparse.Namespace, out: TextIO) -> int:
    dialect = dialect_of(args)
    try:
        policy = policy_from_pairs(args.policy, dialect.policy)
    except WorkstateError as exc:
        args.parser.error(exc.message)
    if args.json is not None:
        try:
            write_json(args, out, walk_json(dialect, policy))
        except WorkstateError as exc:
            sys.stderr.write(f"workstate walk: {exc.message}\n")
            return 2
        if json_to_stdout(args):
            return 0
    lines: list[str] = []
    walk(lines, dialect, policy)
    out.write("\n".join(lines) + "\n")
    return 0


def _run_rules(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []
    list_rules(lines, None if args.dialect is None else dialect_of(args))
    out.write("\n".join(lines) + "\n")
    return 0


def _configure_walk(parser: argparse.ArgumentParser) -> None:
    add_dialect_option(parser, "whose rules the walk follows, under the dialect's default policy")
    add_policy_option(parser, "a Policy field the rules read, over the dialect's default policy")
    add_json_option(parser, 'docs/cli.md "walk --json"')
    parser.set_defaults(parser=parser)


def _configure_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dialect",
        choices=list(DIALECTS),
        help="only the rules this dialect reaches (default: every rule of the declaration)",
    )


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand("walk", "walk one work item through its whole life (start here)", _configure_walk, _run_walk),
    CliCommand("rules", "list every rule of the lifecycle, one per line", _configure_rules, _run_rules),
)
