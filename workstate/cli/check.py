"""``workstate check TRACE.jsonl``: judge traffic recorded from a real server against the reference.

The judging is :class:`workstate.tools.trace.TraceCheck`, fed one line at a time; this module reads the
options (``--policy`` ``NAME=VALUE`` pairs into a :class:`~workstate.Policy`, ``--skew``; where ``--policy``
and ``--dialect`` are not given, the trace's header line names them), reads the file or standard input
(``-``) line by line (a byte-order mark skipped, a byte that is not UTF-8 left to make its line malformed),
and prints each finding as it is found, as text, every line escaped for a terminal, or as JSON (the findings
spooled to a temporary file so the report's counts come first). Memory does not grow with the trace's
length. When some answer diverged on a policy-controlled value, the trace is judged again under the values
the divergence points to and the report names the ``--policy`` that explains it. Exit status: 0 every answer
legal, 1 a divergence or a malformed line, 2 bad arguments or a file that cannot be read or holds no exchange.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from ..dialect import QODER, dialect_named
from ..errors import WorkstateError
from . import CliCommand
from .options import add_dialect_option, add_policy_option, policy_from_pairs

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
    parser.add_argument(
        "trace", metavar="TRACE", help="the trace: one JSON exchange per line (docs/trace.md); - for standard input"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="how to report (default: text)")
    parser.add_argument(
        "--skew", type=float, default=1.0, help="seconds a recorded timestamp may differ from the reference's (1)"
    )
    add_policy_option(
        parser,
        "a Policy field the recorded server uses (over the trace header's policy, else the dialect's default)",
    )
    add_dialect_option(
        parser,
        "the recorded server's dialect: its paths, worker header and envelopes, and its rules "
        "(default: the trace header's, else qoder)",
    )
    parser.set_defaults(dialect=None)  # not given: the trace's header names it
    parser.add_argument(
        "--no-hints",
        dest="hints",
        action="store_false",
        help="do not judge the trace again under the policy values a divergence points to (--policy hints)",
    )


_HINTED = 4  # divergences whose candidate policies are tried
_TRIES = 8  # re-judgings of the whole trace, at most


def _surface_signals() -> None:
    """Nothing, as a Python call: a Ctrl-C that ended a blocked read of standard input (the read returns, and
    the pending KeyboardInterrupt is raised at the interpreter's next check) is raised here, inside the loop's
    ``try``, instead of after it (where it escaped as a traceback)."""


def _tee(source: BinaryIO, copy: BinaryIO) -> Iterator[bytes]:
    """The lines of ``source`` as they arrive, each also written to ``copy`` (so it can be read again)."""
    for raw in source:
        copy.write(raw)
        yield raw


def _lines(handle: Iterable[bytes]) -> Iterator[str]:
    """The lines of a trace, read one at a time: split on \\n only, a trailing \\r dropped, a byte-order mark
    at the start skipped, a byte that is not UTF-8 kept (surrogateescape) to make its line malformed."""
    first = True
    for raw in handle:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if first:
            first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        yield raw.decode("utf-8", errors="surrogateescape")


def _indented(value: Any) -> str:
    return textwrap.indent(json.dumps(value, indent=2), "    ")


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ..tools.trace import Kind, TraceCheck, policy_hints

    encoding = getattr(out, "encoding", None)

    def emit(text: str) -> None:  # every line printed passes here: nothing from the trace reaches a terminal raw
        out.write(_printable(text, encoding) + "\n")

    def refuse(message: str) -> int:
        sys.stderr.write(_printable(f"workstate check: {message}", getattr(sys.stderr, "encoding", None)) + "\n")
        return 2

    with contextlib.ExitStack() as stack:
        try:
            given = args.dialect is not None
            dialect = dialect_named(args.dialect) if given else QODER
            # --policy fields apply over the header's policy, else over the dialect's (read here, checked now)
            given_policy = policy_from_pairs(args.policy, dialect.policy)
            named = {pair.partition("=")[0] for pair in args.policy}
            overrides = {field: getattr(given_policy, field) for field in named}
            if not 0 <= args.skew <= 86400:
                raise WorkstateError(f"--skew must be from 0 to 86400 seconds, got {args.skew}", param="skew")
            if not args.trace:
                raise WorkstateError("the TRACE path is empty", param="trace")
            if args.trace == "-":
                # Standard input is judged as it arrives; a copy on disk lets the hints judge it again.
                handle: BinaryIO = stack.enter_context(tempfile.TemporaryFile())
                source: Iterable[bytes] = _tee(sys.stdin.buffer, handle)
            else:
                handle = stack.enter_context(Path(args.trace).open("rb"))
                source = handle
        except WorkstateError as exc:
            return refuse(exc.message)
        except OSError as exc:
            return refuse(f"cannot read {args.trace}: {exc.strerror or exc}")
        name = "<stdin>" if args.trace == "-" else args.trace
        skew = timedelta(seconds=args.skew)
        check = TraceCheck(
            None, skew=skew, dialect=dialect if given else None, hints=_HINTED if args.hints else 0, overrides=overrides
        )
        spool: IO[str] | None = (
            stack.enter_context(tempfile.TemporaryFile("w+", encoding="ascii")) if (args.format == "json") else None
        )
        any_findings = False
        interrupted = False
        try:
            for text in _lines(source):
                for f in check.feed(text):
                    if spool is not None:  # the report's head comes first: findings wait on disk, not in memory
                        spool.write(("" if not any_findings else ",\n") + _indented(f.to_json()))
                        any_findings = True
                        continue
                    emit(f"{name}:{f.line}: {f.kind.value}: {f.request}")
                    if f.kind is not Kind.MALFORMED and f.kind is not Kind.NOTE:
                        emit(f"    rule:     {f.rule}")
                        emit(f"    expected: {f.expected}")
                        emit(f"    actual:   {f.actual}")
                    for difference in f.differences:
                        emit(f"    - {difference}")
            _surface_signals()
        except OSError as exc:
            return refuse(f"cannot read {args.trace}: {exc.strerror or exc}")
        except KeyboardInterrupt:  # Ctrl-C: the report of the lines judged so far, exit 130
            interrupted = True
        if check.exchanges == 0 and not any(check.counts.values()) and not interrupted:
            return refuse(f"{name}: no exchange to check")
        hints: tuple[str, ...] = ()
        if check.candidates and check.checker is not None and not interrupted:
            used = check.checker

            def again() -> Iterator[str]:
                handle.seek(0)
                return _lines(handle)

            hints = policy_hints(again, check.candidates, used.policy, skew=skew, dialect=used.dialect, tries=_TRIES)
        report = check.report(hints)
        if spool is not None:
            head = json.dumps({**report.head_json(), **({"interrupted": True} if interrupted else {})}, indent=2)
            spool.seek(0)
            out.write(head[:-2] + ',\n  "findings": [')
            if any_findings:
                out.write("\n")
                shutil.copyfileobj(spool, out)
                out.write("\n  ]\n}\n")
            else:
                out.write("]\n}\n")
            return 130 if interrupted else report.exit_status
        for hint in hints:
            emit(f"hint: {hint}")
        if interrupted:
            emit(f"INTERRUPTED after line {check.lines}: " + report.summary())
            return 130
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
