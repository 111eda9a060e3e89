"""``workstate simulate``: a fleet of worker drivers against the reference server, under faults, by seed.

The simulation is :func:`workstate.tools.simulate.simulate`; this module reads and checks the options,
gives the simulation ``random.Random`` as its source of randomness (seeded by ``--seed``: the report's
first line reproduces the run), draws the progress bar on standard error and prints the report. Exit
status 0 every invariant held, 1 one broke, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from typing import TextIO

from ..errors import InvalidInput
from . import CliCommand
from .options import add_dialect_option, dialect_of

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
    parser.add_argument("--progress", action="store_true", help="show a progress bar on stderr even when not a TTY")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_dialect_option(parser, "the dialect the reference server and the worker drivers speak")


def _description() -> str:
    from ..tools.simulate import MAX_CONCURRENCY, MAX_DURATION, MAX_ITEMS, MAX_WORKER_SECONDS, MAX_WORKERS

    return (
        "Simulate a fleet of worker drivers against the reference server, under faults, checking every invariant "
        "after every step; the report's first line is the command that reproduces the run exactly. "
        f"Sizes are capped so that a run finishes: --workers at most {MAX_WORKERS:,}, --items at most {MAX_ITEMS:,}, "
        f"--duration at most {MAX_DURATION:,.0f} simulated seconds, --concurrency at most {MAX_CONCURRENCY:,}, and "
        f"--workers x --duration at most {MAX_WORKER_SECONDS:,} worker-seconds (idle workers poll every simulated "
        "second; 10,000 workers over 1,000 s took about ten minutes on two cores, 1,000,000 items about three "
        "minutes and 0.7 GB)."
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


def _progress_bar(stream: TextIO, duration: float) -> Callable[[float, int, int], None]:
    def show(seconds: float, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} items done, t={seconds:,.0f} s")
        stream.flush()

    return show


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ..tools.simulate import Faults, SimConfig, simulate

    try:
        config = SimConfig(
            seed=args.seed,
            workers=args.workers,
            items=args.items,
            duration=args.duration,
            faults=Faults.scaled(args.faults),
            concurrency=args.concurrency,
            dialect=dialect_of(args),
        )
    except InvalidInput as exc:  # what no single option breaks: workers x duration
        option = "--" + (exc.param or "workers").replace("_", "-")
        sys.stderr.write(f"workstate simulate: {option}: {exc.message}\n")
        return 2
    show = (args.progress or sys.stderr.isatty()) and not args.no_progress
    progress = _progress_bar(sys.stderr, args.duration) if show else None
    report = simulate(config, random.Random, progress)
    if progress is not None:
        sys.stderr.write("\n")
    out.write(report.render() + "\n")
    return 0 if report.ok else 1


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "simulate",
        "simulate a fleet of workers against the reference server, under faults, checking every invariant",
        _configure,
        _run,
    ),
)
