"""The ``workstate`` command: walk a work item through its life, or list the rules.

This is an edge of the library: it is allowed to print. It still reads no clock: the
walk runs on a fixed, made-up timeline so its output is the same on every machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO, cast

import attrs

from .._time import UTC, render_timestamp
from ..model import (
    NO_HEARTBEAT,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    Lapse,
    Rejected,
    Stop,
    UpdateMetadata,
    WorkItem,
    explain,
)
from ..rules import RULE_TABLE, rules_of

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)


def _describe(command: Command) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in vars_of(command).items() if v not in (None, False))
    return f"{type(command).__name__}({fields})"


def vars_of(command: Command) -> dict[str, object]:
    return {f.name: getattr(command, f.name) for f in attrs.fields(type(command)) if f.init}


def walk(out: list[str]) -> WorkItem:
    """Walk one item through a whole life (with the mistakes workers make), printing each step."""
    item = WorkItem(
        id="work_019f3be4fd2475d9a784bf2c739e1194",
        environment_id="env_019e64e01a137caf953ac2ac7b42ec5c",
        session_id="sess_019f3be3fa66750bb9a1fbcde85b5fe1",
        created_at=T0,
        metadata={"job": "build"},
    )
    first_token = T0 + timedelta(seconds=4)
    script: list[tuple[float, str, Command]] = [
        (1, "poll delivers the item to w1", Deliver(worker_id="w1")),
        (2, "w2 tries to ack it", Ack(worker_id="w2")),
        (3, "w1 acks", Ack(worker_id="w1")),
        (3.5, "w1 retries the ack (safe)", Ack(worker_id="w1")),
        (4, "w1's first heartbeat", Heartbeat(expected_last_heartbeat=NO_HEARTBEAT, desired_ttl_seconds=30)),
        (20, "w2 heartbeats with a stale token", Heartbeat(expected_last_heartbeat=NO_HEARTBEAT)),
        (19, "w1 heartbeats, clock 1 s behind", Heartbeat(expected_last_heartbeat=first_token)),
        (25, "the job reports progress", UpdateMetadata({"progress": "50%"})),
        (30, "someone asks for a graceful stop", Stop()),
        (34, "w1 heartbeats and learns: stopping", Heartbeat()),
        (40, "w1 drained and confirms", Stop()),
        (41, "a late stop is harmless", Stop(force=True)),
    ]
    out.append(f"A work item's life, starting at {render_timestamp(T0)} (t = seconds after that)")
    out.append("")
    for offset, story, command in script:
        now = T0 + timedelta(seconds=offset)
        why = explain(item, command, now)
        outcome = why.outcome
        mark = "x" if isinstance(outcome, Rejected) else "+"
        out.append(f"t={offset:>5g}  {mark} {story}")
        rule = f"[{why.rule.section} {why.rule.name}]"
        out.append(f"          {_describe(command)} -> {outcome.status} {outcome.item.state}  {rule}")
        for effect in outcome.effects:
            out.append(f"          effect: {effect!r}")
        item = outcome.item

    out.append("")
    out.append("A second item: acked, then the worker vanishes.")
    lost = WorkItem(
        id="work_019f3be4fd2475d9a784bf2c739e1195",
        environment_id=item.environment_id,
        session_id="sess_019f3be3fa66750bb9a1fbcde85b5fe2",
        created_at=T0,
    )
    lost = explain(lost, Ack(worker_id="w3"), T0).outcome.item
    why = explain(lost, Lapse(), T0 + timedelta(seconds=90))
    out.append(f"t=   90  + time passes -> {why.outcome.item.state}  [{why.rule.section} {why.rule.name}]")
    for effect in why.outcome.effects:
        out.append(f"          effect: {effect!r}")
    return item


def list_rules(out: list[str]) -> None:
    for rule in rules_of(RULE_TABLE):
        out.append(rule.text)


@attrs.frozen
class CliCommand:
    """One ``workstate`` subcommand. Modules listed in ``COMMAND_MODULES`` export ``CLI_COMMANDS``.

    ``configure`` adds the command's arguments to its parser; ``run`` does the work, writing to
    ``out``, and returns the exit status (0 fine, 1 the command found a problem, 2 bad arguments).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, TextIO], int]
    description: str | None = None


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


CLI_COMMANDS = (
    CliCommand("walk", "walk one work item through its whole life (the default)", _no_arguments, _run_walk),
    CliCommand("rules", "list every rule of the lifecycle, one per line", _no_arguments, _run_rules),
)

# Each module exports CLI_COMMANDS; the order here is the order of ``workstate --help``.
COMMAND_MODULES = (
    "workstate.cli",
    "workstate.tools.teach",
    "workstate.tools.simulate",
    "workstate.tools.trace",
    "workstate.tools.verify",
)


def commands() -> tuple[CliCommand, ...]:
    found: list[CliCommand] = []
    for name in COMMAND_MODULES:
        module = sys.modules[__name__] if name == __name__ else importlib.import_module(name)
        found.extend(module.CLI_COMMANDS)
    return tuple(found)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workstate", description="The Work item lifecycle, executable.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        child = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.configure(child)
        child.set_defaults(run=command.run)
    return parser


class _Output:
    """``out`` as a command sees it: writes go through, and an ``OSError`` raised while writing or flushing is
    remembered, so :func:`main` tells a failure of the output from one a command met reading its input."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self.failure = exc
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self.failure = exc
            raise

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, ...: the stream's own
        return getattr(self._stream, name)


PIPE_CLOSED = 141
"""The exit status when the reader of the output went away (``| head``): 128 + SIGPIPE, as a shell reports a
command that the signal ended."""

OUTPUT_FAILED = 2
"""The exit status when the output cannot be written (a full disk, ``> /dev/full``): like bad arguments, the
command could not do its job, and 0 or 1 would be taken for a verdict."""


def _silence(stream: object) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so the interpreter's last flush of what is still
    buffered for a dead pipe or a full disk fails nowhere (the recipe of Python's ``signal`` docs)."""
    try:
        fileno = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return  # not a file (a StringIO, a test's capture): nothing buffered in a file
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``workstate`` and return its exit status; the command writes to ``out`` (standard output by default).

    Bad arguments exit with status 2 (argparse's ``SystemExit``). When the output's reader has gone away
    (``workstate check t.jsonl | head``: ``BrokenPipeError``), the command ends quietly with status 141
    (:data:`PIPE_CLOSED`, 128 + SIGPIPE, what a shell shows for a command ended by a closed pipe), after
    pointing standard output at /dev/null as Python's documentation recommends. Any other ``OSError`` writing
    the output (``> /dev/full``) prints one line, ``workstate: cannot write output: ...``, on standard error
    and exits with status 2 (:data:`OUTPUT_FAILED`). Never a traceback for either.
    """
    stream = sys.stdout if out is None else out
    sink = _Output(stream)
    try:
        try:
            args = build_parser().parse_args(argv)
        finally:
            _flush_stdout(sink)  # argparse writes --help to sys.stdout
        run: Callable[[argparse.Namespace, TextIO], int] = getattr(args, "run", _run_walk)
        status = run(args, cast(TextIO, sink))
        sink.flush()
        return status
    except BrokenPipeError:
        _silence(stream)
        return PIPE_CLOSED
    except OSError as exc:
        if exc is not sink.failure:
            raise  # not the output: the command's own business
        _silence(stream)
        try:
            sys.stderr.write(f"workstate: cannot write output: {exc.strerror or exc}\n")
            sys.stderr.flush()
        except OSError:
            pass  # standard error is gone too: the status says it
        return OUTPUT_FAILED


def _flush_stdout(sink: _Output) -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        sink.failure = exc
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
