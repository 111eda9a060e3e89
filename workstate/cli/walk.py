"""``workstate walk`` (the default command) and ``workstate rules``: one item's whole life, and every rule.

The lines come from :func:`workstate.tools.teach.walk` and :func:`~workstate.tools.teach.list_rules`;
this module prints them.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ..dialect import DIALECTS
from ..tools.teach import list_rules, walk
from . import CliCommand
from .options import add_dialect_option, dialect_of


def _run_walk(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []
    walk(lines, dialect_of(args))
    out.write("\n".join(lines) + "\n")
    return 0


def _run_rules(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []
    list_rules(lines, None if args.dialect is None else dialect_of(args))
    out.write("\n".join(lines) + "\n")
    return 0


def _configure_walk(parser: argparse.ArgumentParser) -> None:
    add_dialect_option(parser, "whose rules the walk follows, under the dialect's default policy")


def _configure_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dialect",
        choices=list(DIALECTS),
        help="only the rules this dialect reaches (default: every rule of the declaration)",
    )


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand("walk", "walk one work item through its whole life (the default)", _configure_walk, _run_walk),
    CliCommand("rules", "list every rule of the lifecycle, one per line", _configure_rules, _run_rules),
)
