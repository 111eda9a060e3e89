"""``workstate simulate``: a fleet of worker drivers against the reference server, under faults, by seed.

The simulation is :func:`workstate.tools.simulate.simulate`; this module reads and checks the options,
gives the simulation ``random.Random`` as its source of randomness (seeded by ``--seed``: the report's
first line reproduces the run), draws the progress bar on standard error and prints the report (or, with
``--json``, the report as JSON: docs/cli.md). Exit status 0 every invariant held, 1 one broke, 2 bad
arguments, 130 Ctrl-C (after printing the partial report).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import InvalidInput, WorkstateError
from . import CliCommand
from .options import (
    INTERRUPTED,
    add_dialect_option,
    add_json_option,
    add_policy_option,
    add_progress_options,
    dialect_of,
    eta,
    json_to_stdout,
    policy_from_pairs,
    shows_progress,
    write_json,
)

if TYPE_CHECKING:
    from ..tools.simulate import Report

# The engine (workstate.tools.simulate, which imports the reference server and the worker driver) is imported by
# configure and run, never at import: `workstate --help` lists this command without it.


def _configure(parser: argparse.ArgumentParser) -> None:
    from ..tools.simulate import MAX_CONCURRENCY, MAX_DURATION, MAX_ITEMS, MAX_WORKERS, SimConfig

    parser.description = _description()
    d = SimConfig()
    parser.add_argument("--seed", type=_seed, default=d.seed, help=f"random seed, an integer >= 0 (default {d.seed})")
    parser.add_argument(
        "--workers",
        type=_whole_option(MAX_WORKERS),
        default=d.workers,
        help=f"worker processes, 1 to {MAX_WORKERS:,} (default {d.workers})",
    )
    parser.add_argument(
        "--items",
        type=_whole_option(MAX_ITEMS),
        default=d.items,
        help=f"work items created, 1 to {MAX_ITEMS:,} (default {d.items})",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=d.duration,
        help=f"simulated seconds over which items arrive, more than 0, at most {MAX_DURATION:,.0f} "
        f"(default {d.duration:g})",
    )
    parser.add_argument(
        "--faults",
        type=_fault_level,
        default=1.0,
        help="fault level from 0 to 100: 0 none, 1 the default mix (default), 2 twice as many, ...",
    )
    parser.add_argument(
        "--concurrency",
        type=_whole_option(MAX_CONCURRENCY),
        default=d.concurrency,
        help=f"items per worker at once, 1 to {MAX_CONCURRENCY:,} (default {d.concurrency})",
    )
    add_progress_options(parser)
    add_dialect_option(parser, "the dialect the reference server and the worker drivers speak")
    add_policy_option(
        parser,
        "a Policy field the reference server uses, over the dialect's default policy with "
        "start_timeout_seconds=20 (the report's first line repeats it)",
    )
    add_json_option(parser, 'docs/cli.md "simulate --json"')


def _description() -> str:
    from ..tools.simulate import MAX_CONCURRENCY, MAX_DURATION, MAX_ITEMS, MAX_WORKER_SECONDS, MAX_WORKERS

    return (
        "Simulate a fleet of worker drivers against the reference server, under faults, checking every invariant "
        "after every step; the report's first line is the command that reproduces the run exactly. "
        f"Sizes are capped so that a run finishes: --workers at most {MAX_WORKERS:,}, --items at most {MAX_ITEMS:,}, "
        f"--duration at most {MAX_DURATION:,.0f} simulated seconds, --concurrency at most {MAX_CONCURRENCY:,}, and "
        f"--workers x --duration at most {MAX_WORKER_SECONDS:,} worker-seconds (idle workers poll every simulated "
        "second; 10,000 workers over 1,000 s took about ten minutes on two cores, 1,000,000 items about three "
        "minutes and 0.7 GB). --duration is the time over which items arrive: the run goes on until every item is "
        "settled, so the report's 'simulated N s' is longer. Ctrl-C prints the partial report and exits 130."
    )


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _seed(text: str) -> int:
    value = _integer(text)
    if value < 0:  # random.Random(-7) is random.Random(7): a negative seed would only alias another
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _whole_option(largest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _integer(text)
        if not 1 <= value <= largest:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {largest:,}, got {text}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def _duration(text: str) -> float:
    from ..tools.simulate import MAX_DURATION

    value = _number(text)
    if not 0 < value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_DURATION:,.0f} seconds, got {text}")
    return value


def _fault_level(text: str) -> float:
    from ..tools.simulate import MAX_FAULT_LEVEL

    value = _number(text)
    if not 0 <= value <= MAX_FAULT_LEVEL:
        raise argparse.ArgumentTypeError(f"must be from 0 (none) to {MAX_FAULT_LEVEL:g}, got {text}")
    return value


class _ProgressBar:
    """``[#####.....]  42% 2,100/5,000 items done, t=311 s, ETA 8s`` on one line of ``stream``, redrawn;
    :meth:`finish` draws it at 100% (the run is over, whatever is still live) with the time it took."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.shown = 0

    def __call__(self, seconds: float, done: int, total: int) -> None:
        fraction = min(1.0, done / total) if total else 1.0
        self._draw(fraction, f"{done:,}/{total:,} items done, t={seconds:,.0f} s, {eta(self._elapsed(), fraction)}")

    def finish(self, report: Report) -> None:
        done = report.created - report.live_at_end
        tail = "interrupted" if report.interrupted else f"finished in {self._elapsed():.1f} s"
        fraction = done / report.config.items if report.interrupted else 1.0
        total = report.config.items
        self._draw(fraction, f"{done:,}/{total:,} items done, t={report.simulated_seconds:,.0f} s, {tail}")
        self.stream.write("\n")
        self.stream.flush()

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _draw(self, fraction: float, text: str) -> None:
        filled = int(self.WIDTH * fraction)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} {text}"
        self.stream.write("\r" + line.ljust(self.shown))
        self.shown = len(line)
        self.stream.flush()


def report_json(report: Report, wall_seconds: float) -> dict[str, Any]:
    """``workstate simulate --json``: the report as a JSON-ready document (its shape: docs/cli.md)."""
    marks = {f"p{int(q * 100)}": report.percentile(q) for q in (0.5, 0.9, 0.99)}
    return {
        "command": report.render().splitlines()[0],
        "ok": report.ok,
        "interrupted": report.interrupted,
        "seed": report.seed,
        "dialect": report.config.dialect.name,
        "simulated_seconds": report.simulated_seconds,
        "wall_seconds": round(wall_seconds, 3),
        "events": report.events,
        "requests": report.requests,
        "items": {
            "created": report.created,
            "completed": report.completed,
            "drained": report.drained,
            "stopped_otherwise": report.stopped_otherwise,
            "live_at_end": report.live_at_end,
        },
        "requeued": dict(report.requeued),
        "statuses": dict(report.statuses),
        "worker_events": dict(report.worker_events),
        "faults_injected": dict(report.faults_injected),
        "start_latency_seconds": None if not report.start_latency else {**marks, "max": report.start_latency[-1]},
        "violations": [
            {"invariant": v.invariant, "name": v.name, "work_id": v.work_id, "message": v.message}
            for v in report.violations
        ],
    }


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ..tools.simulate import Faults, SimConfig, SimulationInterrupted, default_policy, simulate

    dialect = dialect_of(args)
    try:
        policy = policy_from_pairs(args.policy, default_policy(dialect))
    except WorkstateError as exc:
        sys.stderr.write(f"workstate simulate: {exc.message}\n")
        return 2
    try:
        config = SimConfig(
            seed=args.seed,
            workers=args.workers,
            items=args.items,
            duration=args.duration,
            faults=Faults.scaled(args.faults),
            concurrency=args.concurrency,
            dialect=dialect,
            policy=policy,
        )
    except InvalidInput as exc:  # what no single option breaks: workers x duration
        option = "--" + (exc.param or "workers").replace("_", "-")
        sys.stderr.write(f"workstate simulate: {option}: {exc.message}\n")
        return 2
    progress = _ProgressBar(sys.stderr) if shows_progress(args) else None
    started = time.monotonic()
    try:
        report = simulate(config, random.Random, progress)
    except SimulationInterrupted as stopped:
        report = stopped.report
    except KeyboardInterrupt:  # before the run began: nothing to report
        sys.stderr.write("\nworkstate simulate: interrupted before the run began\n")
        return INTERRUPTED
    if progress is not None:
        progress.finish(report)
    try:
        write_json(args, out, report_json(report, time.monotonic() - started))
    except WorkstateError as exc:
        sys.stderr.write(f"workstate simulate: {exc.message}\n")
        return 2
    if not json_to_stdout(args):
        out.write(report.render() + "\n")
    if report.interrupted:
        return INTERRUPTED
    return 0 if report.ok else 1


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "simulate",
        "simulate a fleet of workers against the reference server, under faults, checking every invariant",
        _configure,
        _run,
    ),
)
