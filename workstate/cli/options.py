"""Options that several commands share: ``--policy NAME=VALUE``, ``--dialect qoder|anthropic``, ``--json [FILE]``
and ``--progress`` / ``--no-progress``."""

from __future__ import annotations

import argparse
import enum
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..dialect import DIALECTS, QODER, Dialect, dialect_named
from ..errors import WorkstateError
from ..policy import Policy

INTERRUPTED = 130
"""The exit status after Ctrl-C (SIGINT): 128 + 2, what a shell shows for a command the signal ended."""


def add_policy_option(parser: argparse.ArgumentParser, help: str = "a Policy field the server uses") -> None:
    """``--policy NAME=VALUE``, repeatable; read with :func:`policy_from_pairs`."""
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"{help}; repeatable (the fields and their values: docs/policy.md)",
    )


def _values(default: object) -> str:
    """The values a field of ``default``'s type takes, as ``--policy`` reads them."""
    if isinstance(default, enum.Enum):
        return " | ".join(str(member.value) for member in type(default))
    if isinstance(default, bool):
        return "true | false"
    return "an integer" if isinstance(default, int) else "a number"


def policy_from_pairs(pairs: list[str], base: Policy | None = None) -> Policy:
    """``Policy`` from ``name=value`` pairs over ``base`` (``Policy()`` when None; a dialect's ``Dialect.policy``);
    values are read by the type of the field's default. A pair that names no field, or a value of the wrong kind,
    raises :class:`~workstate.errors.WorkstateError` whose message names the valid fields (for a bad name) or
    the field's valid values (for an enum or bool field)."""
    fields: dict[str, Any] = {}
    defaults = {f.name: f.default for f in attrs.fields(Policy)}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in defaults:
            what = f"no Policy field {name!r}" if sep else "NAME=VALUE"
            raise WorkstateError(
                f"--policy takes NAME=VALUE with a Policy field name, got {pair!r} ({what}); "
                f"the fields: {', '.join(defaults)}",
                param="policy",
            )
        default = defaults[name]
        try:
            if isinstance(default, enum.Enum):
                fields[name] = type(default)(text.lower())
            elif isinstance(default, bool):
                fields[name] = {"true": True, "false": False}[text.lower()]
            elif isinstance(default, int):
                fields[name] = int(text)
            else:
                fields[name] = float(text)
        except (ValueError, KeyError):
            raise WorkstateError(
                f"--policy {name}: cannot read {text!r}; {name} takes {_values(default)}", param="policy"
            ) from None
    try:
        return attrs.evolve(Policy() if base is None else base, **fields)
    except WorkstateError as exc:
        raise WorkstateError(f"--policy: {exc.message}", param="policy") from None


def add_dialect_option(
    parser: argparse.ArgumentParser, help: str = "the wire dialect: how the API is spelled and which rules apply"
) -> None:
    """``--dialect NAME``, one of :data:`workstate.DIALECTS` (default ``qoder``); read with :func:`dialect_of`."""
    parser.add_argument("--dialect", choices=list(DIALECTS), default=QODER.name, help=f"{help} (default: {QODER.name})")


def dialect_of(args: argparse.Namespace) -> Dialect:
    """The :class:`~workstate.Dialect` that ``--dialect`` named (``qoder`` when the command has no such option)."""
    return dialect_named(getattr(args, "dialect", None) or QODER.name)


def add_json_option(parser: argparse.ArgumentParser, shape: str) -> None:
    """``--json [FILE]``: the report as one JSON document, on standard output (no FILE, or ``-``) instead of the
    text, or written to FILE (the text still printed). ``shape`` names the document's section of docs/cli.md.
    Read with :func:`write_json`."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help=f"print the report as JSON instead of text (the shape: {shape}); with FILE (not -), write it there "
        "and print the text too",
    )


def json_to_stdout(args: argparse.Namespace) -> bool:
    """Whether ``--json`` asked for the JSON on standard output (in place of the text report)."""
    return getattr(args, "json", None) == "-"


def write_json(args: argparse.Namespace, out: TextIO, document: object, default: Any = None) -> None:
    """Write ``document`` where ``--json`` said: ``out`` for ``-``, else the file. A file that cannot be written
    raises :class:`~workstate.errors.WorkstateError` (``--json: cannot write FILE: ...``); a failure of ``out``
    is :func:`workstate.cli.main`'s."""
    text = json.dumps(document, indent=2, default=default) + "\n"
    if json_to_stdout(args):
        out.write(text)
    elif args.json is not None:
        try:
            Path(args.json).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise WorkstateError(f"--json: cannot write {args.json}: {exc.strerror or exc}", param="json") from None


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress``, refused together; read with :func:`shows_progress`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="show a progress bar on stderr even when not a TTY")
    group.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def shows_progress(args: argparse.Namespace, stream: TextIO | None = None) -> bool:
    """Whether to draw a progress bar on ``stream`` (standard error): ``--progress``, or a terminal unless
    ``--no-progress``."""
    stream = sys.stderr if stream is None else stream
    if args.no_progress:
        return False
    return bool(args.progress or getattr(stream, "isatty", lambda: False)())


def eta(elapsed: float, fraction: float) -> str:
    """``ETA 1m05s``: the time left if the rest goes at the pace so far (``ETA --`` before any progress)."""
    if fraction <= 0 or elapsed <= 0:
        return "ETA --"
    left = max(0.0, elapsed * (1 - fraction) / fraction)
    minutes, seconds = divmod(round(left), 60)
    return f"ETA {minutes}m{seconds:02d}s" if minutes else f"ETA {seconds}s"
