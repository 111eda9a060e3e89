"""``workstate verify``: bounded model checking from the command line.

The search is :func:`workstate.tools.verify.explore`; this module checks the options (and that the
``--trace`` path could be written, before the search), times the search and shows its progress on
standard error, pauses the garbage collector while it runs (:func:`gc_paused`), prints the figures and
writes the shortest counterexample's trace, if there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from ..errors import WorkstateError
from ..model import LIFECYCLE, Lifecycle
from . import CliCommand
from .options import add_dialect_option, add_policy_option, dialect_of, policy_from_pairs


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a long search, and restore it after.

    The search allocates millions of tuples and never a reference cycle; the cyclic collector walks them again
    and again for nothing (about 40% of the time at depth 9). Results do not depend on it. This is a
    process-wide switch, so :func:`~workstate.tools.verify.explore` never flips it itself: the ``verify``
    command and the benchmark wrap their search in it, and a library caller may choose to.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="how many workers (default 2)")
    parser.add_argument("--items", type=int, default=2, help="how many work items (default 2)")
    parser.add_argument(
        "--depth",
        type=int,
        default=8,
        help=f"how many moves deep to search, 0 to {DEPTH_BOUND} (default 8); the states double about every level",
    )
    parser.add_argument(
        "--max-states",
        type=int,
        metavar="N",
        help="stop cleanly before holding more than N states, with a partial report (default: no bound)",
    )
    parser.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="stop cleanly when the process's peak memory passes SIZE (e.g. 2G, 500M; default: no bound)",
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write the counterexample's trace to FILE (checked before the search; written only if one is found)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--candidate",
        metavar="MODULE:NAME",
        help="verify this rule set instead of the spec's (a workstate.Lifecycle, or a function returning one) "
        "and compare it with the spec's, transition by transition (the shortest distinguishing sequence)",
    )
    add_dialect_option(parser, "whose lifecycle to explore, under its default policy; the trace is in its wire")
    add_policy_option(parser, "a Policy field the model runs under, over the dialect's default policy")


DEPTH_BOUND = 100
"""The deepest ``--depth`` the command takes: beyond it no size of the model finishes on any machine (W=2, I=2
about doubles its states every level; even W=1, I=1 grows every level). ``explore`` itself takes 1000."""

BYTES_PER_STATE = 1500
"""What the search holds per state, at most (measured in benchmarks/bench_verify.py; docs/performance.md)."""

_SIZES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int | None:
    """``2G``, ``500M``, ``64k``, ``1000000`` (bytes) as bytes; None when it is not a size."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _SIZES else (text, "")
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value * _SIZES[unit]) if value > 0 else None


def _peak_bytes() -> int:
    """This process's peak resident memory so far (``ru_maxrss``: kilobytes on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _positive(value: int, name: str, largest: int) -> str | None:
    return None if 1 <= value <= largest else f"{name} must be from 1 to {largest}, got {value}"


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """``workstate verify``: search, print the figures, and the shortest counterexample if there is one."""
    from ..tools.verify import MAX_DEPTH, MAX_SIZE, System, differ, explore, summary, trace_lines

    err = sys.stderr if err is None else err
    problems = [
        p
        for p in (
            _positive(args.workers, "--workers", MAX_SIZE),
            _positive(args.items, "--items", MAX_SIZE),
            None
            if 0 <= args.depth <= DEPTH_BOUND
            else f"--depth must be from 0 to {DEPTH_BOUND} (the bound of this command; the states grow with "
            f"every level), got {args.depth}",
            None
            if args.max_states is None or args.max_states >= 1
            else f"--max-states must be 1 or more, got {args.max_states}",
            None
            if args.max_memory is None or parse_size(args.max_memory) is not None
            else f"--max-memory takes a size such as 2G, 500M or 64K, got {args.max_memory!r}",
        )
        if p
    ]
    assert DEPTH_BOUND <= MAX_DEPTH
    if problems:
        err.write("workstate verify: " + "; ".join(problems) + "\n")
        return 2
    unwritable = _unwritable(args.trace)
    if unwritable:
        err.write(f"workstate verify: --trace: {unwritable}\n")
        return 2
    candidate = None
    if args.candidate is not None:
        candidate, problem = _load(args.candidate)
        if candidate is None:
            err.write(f"workstate verify: --candidate: {problem}\n")
            return 2
    dialect = dialect_of(args)
    reference = LIFECYCLE.in_dialect(dialect)
    if candidate is not None:
        candidate = candidate.in_dialect(dialect)
    try:
        policy = policy_from_pairs(args.policy, dialect.policy)
    except WorkstateError as exc:  # a bad --policy names the fields, or the field's values
        err.write(f"workstate verify: --policy: {exc.message}\n")
        return 2
    started = time.perf_counter()

    def progress(level: int, states: int, transitions: int) -> None:
        if not args.quiet:
            elapsed = time.perf_counter() - started
            err.write(f"depth {level}: {states:,} states, {transitions:,} transitions, {elapsed:.1f} s\n")
            err.flush()

    memory = None if args.max_memory is None else parse_size(args.max_memory)
    interrupted = False

    def on_interrupt(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True  # the search stops at its next check, with a partial report

    def should_stop() -> str | None:
        if interrupted:
            return "interrupted"
        if memory is not None and _peak_bytes() > memory:
            return f"the memory budget of {args.max_memory} is spent"
        return None

    previous = signal.signal(signal.SIGINT, on_interrupt) if _main_thread() else None
    difference = None
    try:
        with gc_paused():
            report = explore(
                args.workers,
                args.items,
                args.depth,
                lifecycle=reference if candidate is None else candidate,
                policy=policy,
                progress=progress,
                max_states=args.max_states,
                should_stop=should_stop,
            )
            if candidate is not None and report.incomplete is None and not interrupted:
                difference = differ(args.workers, args.items, args.depth, candidate, reference, policy)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the search's checks
        out.write("interrupted\n")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    elapsed = time.perf_counter() - started
    for text in summary(report, elapsed):
        out.write(text + "\n")
    if report.incomplete is not None:
        out.flush()
        return 130 if interrupted else 0
    if candidate is not None:
        if difference is None:
            out.write(f"the candidate answers as the spec's rules on every sequence up to depth {args.depth}\n")
        else:
            out.write("\n".join(difference.lines()) + "\n")
    found = report.counterexample
    if found is None:
        return 0 if difference is None else 1
    system = System(args.workers, args.items, reference if candidate is None else candidate, policy)
    lines = trace_lines(system, found.moves)
    if args.trace is not None:
        try:
            with open(args.trace, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        except OSError as exc:  # the path was fine before the search; it is not any more
            err.write(f"workstate verify: --trace: cannot write {args.trace!r}: {exc.strerror or exc}\n")
            return 2
        out.write(f"trace written to {args.trace}\n")
    else:
        out.write("\n".join(lines) + "\n")
    return 1


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _load(spec: str) -> tuple[Lifecycle | None, str]:
    """The Lifecycle named ``MODULE:NAME`` (a function is called with no arguments), or None and why not."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        return None, f"expected MODULE:NAME, got {spec!r}"
    try:
        found: object = getattr(importlib.import_module(module_name), name)
        if callable(found) and not isinstance(found, Lifecycle):
            found = found()
    except Exception as exc:  # an import or a factory that fails: said, not a traceback
        return None, f"cannot load {spec!r}: {type(exc).__name__}: {exc}"
    if not isinstance(found, Lifecycle):
        return None, f"{spec!r} is not a workstate.Lifecycle (got {type(found).__name__})"
    return found, ""


def _unwritable(path: str | None) -> str | None:
    """Why the trace could not be written to ``path`` (None: it could, or there is no path), found before the
    search and without touching the file: an existing file must be writable, a new one needs its directory
    to exist and to be writable (what is left, e.g. a full disk, is caught when the trace is written)."""
    if path is None:
        return None
    if not path:
        return "the path is empty"
    try:
        if os.path.isdir(path):
            return f"cannot write {path!r}: it is a directory"
        if os.path.exists(path):
            return None if os.access(path, os.W_OK) else f"cannot write {path!r}: permission denied"
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            return f"cannot write {path!r}: no directory {directory!r}"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"cannot write {path!r}: permission denied in {directory!r}"
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return f"cannot write {path!r}: {getattr(exc, 'strerror', None) or exc}"
    return None


CLI_COMMANDS: tuple[CliCommand, ...] = (
    CliCommand(
        "verify",
        "search every interleaving of requests from W workers on I items up to a depth (bounded model checking)",
        _configure,
        run,
        "Search every interleaving of requests from W workers on I items, breadth first, up to --depth moves, "
        "checking the invariants after every move; print the shortest counterexample if one breaks. "
        f"Bounds: --workers and --items 1 to 5, --depth 0 to {DEPTH_BOUND}. Cost (docs/performance.md): "
        "about 6,000 states per second on a quiet 2-core machine (2,500 to 3,000 when it is shared), about 1,100 "
        f"bytes per state (at most {BYTES_PER_STATE:,}); the states about double every level for W=2, I=2 (61,059 "
        "at depth 8, 302,240 at depth 10, 1,147,638 at depth 12: 7.5 minutes, 1.2 GB), faster with more workers "
        "or items. "
        "--max-states and --max-memory stop the search cleanly with a partial report (no counterexample up to "
        "depth d, level d+1 incomplete; exit 0); so does Ctrl-C (exit 130). Exit status: 0 no counterexample, "
        "1 a counterexample (or, with --candidate, a difference), 2 bad arguments.",
    ),
)
