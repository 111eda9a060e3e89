"""``workstate conform --url URL``: run the conformance suite against a live server.

The suite is :func:`workstate.testing.conformance.run_conformance`; the server must implement the
test-clock contract of docs/testing-guide.md (``X-Workstate-Now`` on every request, the ``/_test``
creation routes), which :class:`~workstate.testing.http.HttpTarget` speaks. This module reads the
options, shows a progress bar on stderr, prints a summary table (and every failure), writes the JSON and
JUnit reports asked for, and chooses the exit status: 0 every case passed, 1 a case failed, 2 bad arguments
or no server at the URL, 130 Ctrl-C (after the partial report of the cases run so far).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from .._time import render_timestamp
from ..errors import WorkstateError
from . import CliCommand
from .options import (
    INTERRUPTED,
    add_dialect_option,
    add_policy_option,
    add_progress_options,
    dialect_of,
    eta,
    json_to_stdout,
    policy_from_pairs,
)

if TYPE_CHECKING:
    from ..dialect import Dialect
    from ..testing.conformance import CaseResult, ConformanceReport, Exchange
    from ..testing.http import HttpTarget


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080 (a path is a base path)")
    add_policy_option(parser, "a Policy field the server under test uses (the reference is given the same)")
    add_dialect_option(parser, "the wire dialect the server speaks: the suite of its lifecycle, in its spelling")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help='every case\'s result as JSON (the shape: docs/cli.md "conform --json"): on stdout instead of the '
        "text with no FILE or -, else written to FILE (the text still printed)",
    )
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report to FILE (one testcase per case)")
    parser.add_argument(
        "--only", metavar="PATTERN", help="run the cases whose id contains PATTERN or matches it (glob)"
    )
    parser.add_argument("--token", default="Bearer workstate-test", help="the Authorization of the /_test routes")
    add_progress_options(parser)


def _response(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return {"status": value.status, "body": value.json}


def _case_json(case: CaseResult) -> dict[str, Any]:
    return {
        "id": case.case_id,
        "rule": case.rule,
        "passed": case.passed,
        "where": case.where,
        "expected": _response(case.expected),
        "actual": _response(case.actual),
        "requests": [_request(exchange) for exchange in case.requests],
    }


def _request(exchange: Exchange) -> dict[str, Any]:
    """One request as sent to the server under test: JSON values, not Python reprs (the body as text, so a
    body that is not JSON, as some cases send on purpose, reads as it went)."""
    sent = exchange.request
    headers = sent.headers or {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        "at": render_timestamp(exchange.now),
        "method": sent.method,
        "target": sent.target,
        "headers": {str(name): str(value) for name, value in pairs},
        "body": bytes(sent.body).decode("utf-8", "replace"),
    }


def _junit(report: ConformanceReport, seconds: float) -> str:
    from xml.sax.saxutils import escape, quoteattr  # imports urllib.request: only when a report is written

    failed = len(report.failures)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name="workstate-conformance" tests="{len(report.cases)}" failures="{failed}" '
        f'errors="0" time="{seconds:.3f}">',
    ]
    for case in report.cases:
        name = quoteattr(case.case_id)
        classname = quoteattr(f"conformance.{case.section}")
        if case.passed:
            lines.append(f"  <testcase classname={classname} name={name}/>")
            continue
        lines.append(f"  <testcase classname={classname} name={name}>")
        lines.append(f"    <failure message={quoteattr(case.where or '')}>{escape(case.render())}</failure>")
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"


class _Bar:
    """A one-line progress bar on a terminal; on anything else a line every tenth of the run (none with
    ``show`` false). It keeps every result, so that Ctrl-C can report the cases run so far."""

    def __init__(self, stream: TextIO, show: bool = True) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.show = show
        self.failed = 0
        self.shown = -1
        self.results: list[CaseResult] = []
        self.started = time.monotonic()

    def __call__(self, done: int, total: int, result: CaseResult) -> None:
        self.results.append(result)
        self.failed += not result.passed
        tenth = done * 10 // total
        if not self.show:
            return
        if not self.tty and tenth == self.shown and done != total:
            return
        if self.tty and done % 50 and done != total:
            return
        self.shown = tenth
        filled = done * 30 // total
        left = f"finished in {time.monotonic() - self.started:.1f} s" if done == total else self._eta(done / total)
        bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done / total:4.0%}"
        line = f"{bar} {done}/{total} cases, {self.failed} failed, {left}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done == total:
            self.stream.write("\n")
        self.stream.flush()

    def _eta(self, fraction: float) -> str:
        return eta(time.monotonic() - self.started, fraction)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ..testing.compare import show
    from ..testing.conformance import T0, run_conformance, shared
    from ..testing.http import HttpTarget

    def refuse(message: str) -> int:
        sys.stderr.write(f"workstate conform: {message}\n")
        return 2

    dialect = dialect_of(args)
    try:
        policy = policy_from_pairs(args.policy, dialect.policy)
    except WorkstateError as exc:
        return refuse(exc.message)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        return refuse(f"--url must be http://HOST:PORT[/BASE], got {args.url!r}")
    host, port, base = url.hostname, url.port or 80, url.path.rstrip("/")
    probe = HttpTarget(host, port, base_path=base, authorization=args.token, dialect=dialect)
    try:
        probe.create_environment(T0)
    except (OSError, WorkstateError) as exc:
        return refuse(f"no server that speaks the test-clock contract at {args.url}: {exc}{_other(probe, dialect)}")
    finally:
        probe.close()
    salt = time.time_ns() & 0xFFFF_FFFF_FFFF  # sessions unique across runs against one long-lived server
    counter = itertools.count(1)

    def sessions() -> str:
        return f"{dialect.session_prefix}{salt:012x}{next(counter):020x}"

    target = HttpTarget(host, port, base_path=base, authorization=args.token, dialect=dialect)
    started = time.perf_counter()
    bar = _Bar(sys.stderr, show=not args.no_progress)
    interrupted = False
    try:
        report = run_conformance(
            shared(target), policy=policy, dialect=dialect, only=args.only, progress=bar, sessions=sessions
        )
    except KeyboardInterrupt:  # Ctrl-C: the cases run so far
        from ..testing.conformance import ConformanceReport

        interrupted = True
        report = ConformanceReport(tuple(bar.results))
        sys.stderr.write(f"\nworkstate conform: interrupted after {len(report.cases)} cases: a partial report\n")
    finally:
        target.close()
    seconds = time.perf_counter() - started
    if not report.cases and not interrupted:
        return refuse(f"--only {args.only!r} selects no case")
    status = _report(args, out, report, seconds, interrupted, show)
    return INTERRUPTED if interrupted and status != 2 else status


def _report(
    args: argparse.Namespace, out: TextIO, report: ConformanceReport, seconds: float, interrupted: bool, show: Any
) -> int:
    """Print the report (text, or with ``--json`` alone the JSON) and write the files asked for; the status."""
    document = {
        "ok": report.ok and not interrupted,
        "interrupted": interrupted,
        "dialect": args.dialect,
        "url": args.url,
        "passed": len(report.cases) - len(report.failures),
        "failed": len(report.failures),
        "requests": report.request_count,
        "seconds": round(seconds, 3),
        "sections": {
            section: {"cases": total, "failed": failed} for section, (total, failed) in report.by_section().items()
        },
        "cases": [_case_json(case) for case in report.cases],
    }
    if json_to_stdout(args):
        out.write(json.dumps(document, indent=2, default=show) + "\n")
    else:
        _text(out, report, seconds, interrupted)
    try:
        if args.json is not None and not json_to_stdout(args):
            Path(args.json).write_text(json.dumps(document, indent=2, default=show) + "\n", encoding="utf-8")
        if args.junit:
            Path(args.junit).write_text(_junit(report, seconds), encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"workstate conform: cannot write the report: {exc.strerror or exc}\n")
        return 2
    return 0 if report.ok else 1


def _text(out: TextIO, report: ConformanceReport, seconds: float, interrupted: bool) -> None:
    for case in report.failures[:20]:
        out.write(case.render() + "\n\n")
    if len(report.failures) > 20:
        out.write(f"... and {len(report.failures) - 20} more failures (--json or --junit lists them all)\n\n")
    out.write(report.summary() + "\n")
    verdict = "INTERRUPTED" if interrupted else "OK" if report.ok else "FAIL"
    out.write(f"{verdict}: {len(report.cases) - len(report.failures)} of {len(report.cases)} cases passed")
    out.write(f" ({report.request_count} requests, {seconds:.1f} s)\n")


def _other(probe: HttpTarget, dialect: Dialect) -> str:
    """A hint naming the shipped dialects whose ids the server at ``probe`` makes, when ``dialect`` is not one."""
    from ..dialect import DIALECTS
    from ..testing.conformance import T0

    spoken = []
    for name, other in DIALECTS.items():
        if other != dialect:
            probe.dialect = other
            try:
                probe.create_environment(T0)
            except (OSError, WorkstateError):
                continue
            finally:
                probe.close()
            spoken.append(name)
    return f" (its ids are those of --dialect {' or '.join(spoken)})" if spoken else ""


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "conform",
        "run the conformance suite against a live server (test-clock contract)",
        _configure,
        _run,
        "Run every case of workstate's conformance suite (docs/conformance.md) against the server at URL, "
        "which must implement the test-clock contract of docs/testing-guide.md (X-Workstate-Now, the /_test "
        "routes). Progress goes to stderr, the summary table to stdout. Exit status: 0 every case passed, "
        "1 a case failed, 2 bad arguments or no such server.",
    ),
)
