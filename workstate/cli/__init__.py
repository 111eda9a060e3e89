"""The ``workstate`` command: :func:`main` (the entry point) and the registry of its subcommands.

The commands are the edge of the library: one module of this package per command, or per group of
commands that share options (:data:`COMMAND_MODULES`), each exporting ``CLI_COMMANDS``. They parse
arguments, read and write files, print, show progress and time themselves; what they compute comes from
the pure engines in :mod:`workstate.tools`. ``python -m workstate.cli.docgen`` (not a subcommand)
rewrites the generated documentation.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

import attrs


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


# Each module exports CLI_COMMANDS; the order here is the order of ``workstate --help``.
COMMAND_MODULES = (
    "workstate.cli.walk",
    "workstate.cli.explain",
    "workstate.cli.simulate",
    "workstate.cli.check",
    "workstate.cli.verify",
    "workstate.cli.conform",
    "workstate.cli.serve",
    "workstate.cli.playground",
    "workstate.cli.work",
)

NO_COMMAND = 2
"""The exit status of ``workstate`` with no command: it prints the help on standard error, as ``ruff`` and
``git`` do, and exits with the status of a usage error (a script that forgot the command fails)."""


def commands() -> tuple[CliCommand, ...]:
    """Every subcommand, in the order of :data:`COMMAND_MODULES` (each module's ``CLI_COMMANDS``, read now)."""
    found: list[CliCommand] = []
    for name in COMMAND_MODULES:
        found.extend(importlib.import_module(name).CLI_COMMANDS)
    return tuple(found)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``workstate`` parser. Given the ``argv`` it will parse, it configures only the command named there (the
    others are listed with their help), so ``workstate --help`` runs no command's ``configure``: a command module
    imports its engine in ``configure`` and ``run``, never at import."""
    chosen = None if argv is None else next((word for word in argv if not word.startswith("-")), "")
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="workstate",
        description="The Work item lifecycle, executable. Start with `workstate walk`; every command's options "
        "and its --json shape: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"workstate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        child = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        if chosen is None or command.name == chosen:
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

    ``--version`` prints ``workstate X.Y.Z`` and exits 0; no command prints the help on standard error and
    returns 2 (:data:`NO_COMMAND`). Bad arguments exit with status 2 (argparse's ``SystemExit``). When the
    output's reader has gone away (``workstate check t.jsonl | head``: ``BrokenPipeError``), the command ends
    quietly with status 141 (:data:`PIPE_CLOSED`, 128 + SIGPIPE, what a shell shows for a command ended by a
    closed pipe), after
    pointing standard output at /dev/null as Python's documentation recommends. Any other ``OSError`` writing
    the output (``> /dev/full``) prints one line, ``workstate: cannot write output: ...``, on standard error
    and exits with status 2 (:data:`OUTPUT_FAILED`). Never a traceback for either.
    """
    stream = sys.stdout if out is None else out
    sink = _Output(stream)
    try:
        try:
            words = sys.argv[1:] if argv is None else argv
            parser = build_parser(words)
            args = parser.parse_args(words)
        finally:
            _flush_stdout(sink)  # argparse writes --help and --version to sys.stdout
        run: Callable[[argparse.Namespace, TextIO], int] | None = getattr(args, "run", None)
        if run is None:  # no command: the help, on standard error, and a usage error's status
            parser.print_help(sys.stderr)
            return NO_COMMAND
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
