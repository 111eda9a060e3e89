"""``workstate walk`` (the default command) and ``workstate rules``: one item's whole life, and every rule.

The lines come from :func:`workstate.tools.teach.walk` and :func:`~workstate.tools.teach.list_rules`;
this module prints them.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ..tools.teach import list_rules, walk
from . import CliCommand


def _run_walk(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []
    walk(lines)
    out.write("\n".join(lines) + "\n")
    return 0


def _run_rules(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []
    list_rules(lines)
    out.write("\n".join(lines) + "\n")
    return 0


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand("walk", "walk one work item through its whole life (the default)", _no_arguments, _run_walk),
    CliCommand("rules", "list every rule of the lifecycle, one per line", _no_arguments, _run_rules),
)
