"""``workstate check TRACE.jsonl``: judge traffic recorded from a real server against the reference.

The judging is :func:`workstate.tools.trace.check_lines`; this module reads the options (``--policy``
``NAME=VALUE`` pairs into a :class:`~workstate.Policy`, ``--skew``), reads the file (a byte-order mark
skipped, a byte that is not UTF-8 left to make its line malformed), and prints the report as text, every
line escaped for a terminal, or as JSON. Exit status: 0 every answer legal, 1 a divergence or a malformed
line, 2 bad arguments or a file that cannot be read or holds no exchange.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from ..errors import WorkstateError
from . import CliCommand
from .options import add_dialect_option, add_policy_option, dialect_of, policy_from_pairs

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def _printable(text: str, encoding: str | None = None) -> str:
    """``text`` safe for a terminal: every control character (C0, DEL, C1), lone surrogate and U+2028/2029
    becomes a ``\\xNN`` or ``\\uNNNN`` escape, and what ``encoding`` cannot encode a backslash escape."""
    text = _UNPRINTABLE.sub(_escape, text)
    if encoding is not None:
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    return text


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", help="the trace: one JSON exchange per line (docs/trace.md)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="how to report (default: text)")
    parser.add_argument(
        "--skew", type=float, default=1.0, help="seconds a recorded timestamp may differ from the reference's (1)"
    )
    add_policy_option(parser, "a Policy field the recorded server uses (over the dialect's default policy)")
    add_dialect_option(parser, "the recorded server's dialect: its paths, worker header and envelopes, and its rules")


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ..tools.trace import BLANK, Kind, check_lines, split_lines

    encoding = getattr(out, "encoding", None)

    def emit(text: str) -> None:  # every line printed passes here: nothing from the trace reaches a terminal raw
        out.write(_printable(text, encoding) + "\n")

    def refuse(message: str) -> int:
        sys.stderr.write(_printable(f"workstate check: {message}", getattr(sys.stderr, "encoding", None)) + "\n")
        return 2

    try:
        dialect = dialect_of(args)
        policy = policy_from_pairs(args.policy, dialect.policy)
        if not 0 <= args.skew <= 86400:
            raise WorkstateError(f"--skew must be from 0 to 86400 seconds, got {args.skew}", param="skew")
        if not args.trace:
            raise WorkstateError("the TRACE path is empty", param="trace")
        data = Path(args.trace).read_bytes()
    except WorkstateError as exc:
        return refuse(exc.message)
    except OSError as exc:
        return refuse(f"cannot read {args.trace}: {exc.strerror or exc}")
    # A byte-order mark at the start is skipped; a byte that is not UTF-8 makes its line malformed.
    lines = split_lines(data.decode("utf-8-sig", errors="surrogateescape"))
    if not any(line.strip(BLANK) for line in lines):
        return refuse(f"{args.trace}: no exchange to check")
    report = check_lines(lines, policy, skew=timedelta(seconds=args.skew), dialect=dialect)
    if args.format == "json":
        out.write(json.dumps(report.to_json(), indent=2) + "\n")  # ASCII: JSON escapes what is not
        return report.exit_status
    for f in report.findings:
        emit(f"{args.trace}:{f.line}: {f.kind.value}: {f.request}")
        if f.kind is not Kind.MALFORMED and f.kind is not Kind.NOTE:
            emit(f"    rule:     {f.rule}")
            emit(f"    expected: {f.expected}")
            emit(f"    actual:   {f.actual}")
        for difference in f.differences:
            emit(f"    - {difference}")
    emit(("FAIL: " if report.exit_status else "OK: ") + report.summary())
    return report.exit_status


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "check",
        "judge a recorded trace (JSON lines) against the reference server",
        _configure,
        _run,
        "Replay every exchange of TRACE through the reference server and report each answer the spec does "
        "not allow, by line. Exit status: 0 every answer legal, 1 a divergence or a malformed line, 2 bad "
        "arguments, or a file that cannot be read or holds no exchange.",
    ),
)
