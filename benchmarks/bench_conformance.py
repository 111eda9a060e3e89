"""What the conformance suite costs: generating it, and running it in process and over HTTP.

Run: ``python benchmarks/bench_conformance.py`` (``--update`` rewrites the block in docs/performance.md;
``--smoke`` runs a small subset, for the test suite). Measured in one run on this machine: the suite is
generated afresh (the breadth-first search over the reference included), then run against the in-process
reference (:class:`~workstate.testing.target.ReferenceTarget`), then against the example HTTP server
(``examples/http_server.py`` in test-clock mode, in this process, over one keep-alive connection as
``workstate conform`` uses). Prints the number of cases and requests and the times; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import re
import sys
import time
from pathlib import Path

from workstate.api import Server
from workstate.dialect import DIALECTS, dialect_named
from workstate.testing import conformance
from workstate.testing.http import HttpTarget
from workstate.testing.target import ReferenceTarget

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench_conformance:begin -->", "<!-- bench_conformance:end -->"


def _example() -> object:
    spec = importlib.util.spec_from_file_location("workstate_example_http_server", ROOT / "examples" / "http_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a small subset (the stats cases), for the tests")
    parser.add_argument("--update", action="store_true", help="rewrite the block in docs/performance.md")
    parser.add_argument("--dialect", choices=list(DIALECTS), default="qoder", help="the suite of this dialect")
    args = parser.parse_args()
    only = "4.7-stats/stats-" if args.smoke else None
    dialect = dialect_named(args.dialect)

    started = time.perf_counter()
    cases = conformance.conformance_cases(dialect=dialect)  # the first call generates (then it is cached)
    generated = time.perf_counter() - started
    chosen = [case for case in cases if conformance.selected(case.case_id, only)]
    requests = sum(case.request_count for case in chosen)
    print(f"generated {len(cases):,} cases in {generated:.1f} s; running {len(chosen):,} ({requests:,} requests)")

    started = time.perf_counter()
    report = conformance.run_conformance(lambda: ReferenceTarget(dialect=dialect), dialect=dialect, only=only)
    in_process = time.perf_counter() - started
    assert report.ok, report.summary()
    print(f"in process: {len(report.cases):,} cases, {report.request_count:,} requests in {in_process:.1f} s")

    example = _example()
    served = Server(dialect=dialect)
    with example.serve(served, test_clock=True, test_routes=True) as running:  # type: ignore[attr-defined]
        host, port = running.url.removeprefix("http://").split(":")
        target = HttpTarget(host, int(port), dialect=dialect)
        started = time.perf_counter()
        report = conformance.run_conformance(conformance.shared(target), dialect=dialect, only=only)
        over_http = time.perf_counter() - started
        target.close()
    assert report.ok, report.summary()
    print(f"over HTTP:  {len(report.cases):,} cases, {report.request_count:,} requests in {over_http:.1f} s")
    print(f"            {report.request_count / over_http:,.0f} requests/s (creations not counted)")

    if args.update and not args.smoke and dialect.name == "qoder":  # the page's figures are the qoder suite's
        block = "\n".join(
            [
                "| measure | figure |",
                "|---|---|",
                f"| cases (boundaries + transition cover) | {len(cases):,} |",
                f"| requests (creations through the platform hooks not counted) | {requests:,} |",
                f"| generating the suite (the search over the reference included) | {generated:.1f} s |",
                f"| the whole suite against the in-process reference | {in_process:.1f} s |",
                f"| the whole suite over HTTP against the example server | {over_http:.1f} s |",
                "",
                f"Measured {time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
                f"{platform.machine()}, by `benchmarks/bench_conformance.py --update`.",
            ]
        )
        text = DOC.read_text(encoding="utf-8")
        section = f"{BEGIN}\n{block}\n{END}"
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
        else:
            text += (
                "\n## The conformance suite (`benchmarks/bench_conformance.py`)\n\n```sh\n"
                ".venv/bin/python benchmarks/bench_conformance.py --update\n```\n\n"
                "The suite of docs/conformance.md, generated and run as `run_conformance` and `workstate conform` "
                "run it: each case on a fresh target (in process) or in a fresh environment of one long-lived "
                "server (over HTTP: the example server in this process, so client and server share one core's "
                "worth of interpreter). Budgets (issue 13): 60 s in process, 5 minutes over HTTP.\n\n"
                f"{section}\n"
            )
        DOC.write_text(text, encoding="utf-8")
        print(f"updated {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
