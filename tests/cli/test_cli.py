import errno
import io
import os
import subprocess
import sys
from typing import TextIO

import attrs
import pytest

from workstate.cli import main
from workstate.cli import walk as walk_commands
from workstate.rules import DECLARATION


def test_the_walk_tells_a_whole_life(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["walk"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "Ack(worker_id='w2') -> 409 queued  [api.md §4.2 ack-claimed-by-another]",
        "-> 200 starting  [api.md §4.2 ack-replay]",
        "-> 412 active  [api.md §4.3 heartbeat-precondition-failed]",
        "Heartbeat() -> 200 stopping  [api.md §4.3 heartbeat-while-stopping]",
        "Stop() -> 200 stopped  [api.md §4.4 stop-confirms]",
        "-> queued  [api.md §5 start-timeout]",
        "effect: DispatchRequested()",
        "effect: StopRequested(at=2026-07-01T08:15:31.000000Z)",
        "UpdateMetadata(metadata={'progress': '50%'}) -> 200 active",
        "effect: Requeued(at=2026-07-01T08:16:01.000000Z, from_state=starting)",
    ):
        assert expected in out
    assert main(["walk"]) == 0
    assert capsys.readouterr().out == out  # no clock read: the same lines every time


def test_rules_lists_every_rule_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DECLARATION)
    assert [line.split("]")[0].split()[-1] for line in lines] == [line[0] for line in DECLARATION]


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fly"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


class Refusing(io.StringIO):
    """An output whose write (or, when ``on_flush``, whose flush) raises ``error``."""

    def __init__(self, error: OSError, on_flush: bool = False) -> None:
        super().__init__()
        self.error = error
        self.on_flush = on_flush

    def write(self, text: str) -> int:
        if not self.on_flush:
            raise self.error
        return super().write(text)

    def flush(self) -> None:
        if self.on_flush:
            raise self.error


@pytest.mark.parametrize("on_flush", [False, True])
def test_a_closed_pipe_ends_quietly(capsys: pytest.CaptureFixture[str], on_flush: bool) -> None:
    assert main(["rules"], Refusing(BrokenPipeError(errno.EPIPE, "Broken pipe"), on_flush)) == 141
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("on_flush", [False, True])
@pytest.mark.parametrize("command", [["rules"], ["walk"], ["table"], ["diagram"]])
def test_output_that_cannot_be_written_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], command: list[str], on_flush: bool
) -> None:
    assert main(command, Refusing(OSError(errno.ENOSPC, "No space left on device"), on_flush)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "workstate: cannot write output: No space left on device\n"


def test_an_oserror_that_is_not_the_output_is_not_called_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def reads(args: object, out: TextIO) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    monkeypatch.setattr(walk_commands, "CLI_COMMANDS", (attrs.evolve(walk_commands.CLI_COMMANDS[1], run=reads),))
    with pytest.raises(FileNotFoundError):
        main(["rules"], io.StringIO())


def _run_with_stdout(stdout: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workstate", *argv], stdout=stdout, stderr=subprocess.PIPE, text=True, check=False
    )


def test_a_pipe_with_no_reader_ends_quietly_with_141() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        done = _run_with_stdout(write_end, "rules")
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["table", "rules", "walk", "diagram"])
def test_a_full_device_gives_one_line_and_exit_2(command: str) -> None:
    with open("/dev/full", "w") as full:
        done = _run_with_stdout(full.fileno(), command)
    assert done.returncode == 2
    assert done.stderr == "workstate: cannot write output: No space left on device\n"
