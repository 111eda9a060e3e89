"""``workstate work --url URL --token T [...] -- CMD ARGS...``: run a command once per work item.

The worker is :class:`workstate.worker.runner.Runner` (the sans-I/O driver over httpx; the ``worker``
extra, ``pip install 'workstate[worker]'``). For every item whose lease it holds, CMD runs as a child
process in its own session, with the item's ids in ``WORKSTATE_WORK_ID``, ``WORKSTATE_ENVIRONMENT_ID``,
``WORKSTATE_SESSION_ID`` (and ``WORKSTATE_WORKER_ID``) and the work object as one line of JSON on its
standard input; its standard output and error are this process's. When CMD exits, the item is stopped and
the stop confirmed. A drain (the server asked for a graceful stop) sends CMD SIGTERM, then SIGKILL after
``--grace`` seconds; a lost lease kills it (SIGKILL) at once and sends no stop: the item is someone else's.
On Linux a child is also killed when this process dies (even by SIGKILL), so no orphan works on an item
whose lease nobody renews.

One line per event on standard output: ``start``, ``spawn``, ``drain``, ``sigterm``, ``sigkill``,
``exit``, ``abort``, ``finished``, ``dropped``, ``abandoned``, ``halted``, ``shutdown``, each with
``key=value`` fields (the work id, the pid, a reason). SIGINT (Ctrl-C) or SIGTERM drains every running item
(as a drain request does), polls no more and exits with 130 (SIGINT) or 143 (SIGTERM) once every stop is
confirmed; a second signal kills the children at once. Exit status 1 when the server refused a poll for
good (401, 403, 404), 2 for bad arguments or a missing httpx.

``--dialect qoder|anthropic`` (:data:`workstate.DIALECTS`) is the wire the server speaks: the URL then carries
that dialect's base path (``/v1/environments/env_...`` for ``anthropic``) and the worker its paths and headers.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TextIO

from ..dialect import DIALECTS, QODER
from ..errors import WorkstateError
from . import CliCommand

if TYPE_CHECKING:
    import asyncio  # imported where it runs: `workstate --help` does not pay for it

INSTALL_HINT = "pip install 'workstate[worker]'"
ENVIRONMENT = ("WORKSTATE_WORK_ID", "WORKSTATE_ENVIRONMENT_ID", "WORKSTATE_SESSION_ID", "WORKSTATE_WORKER_ID")
_PR_SET_PDEATHSIG = 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        required=True,
        help=f"the environment's URL (http://HOST:PORT{QODER.base_path}env_..., or the --dialect's base path), "
        "or the server's with --environment",
    )
    parser.add_argument("--environment", metavar="ENV", help="the environment id, when --url does not name it")
    parser.add_argument(
        "--token", default=os.environ.get("WORKSTATE_TOKEN"), help="the bearer token (default: $WORKSTATE_TOKEN)"
    )
    parser.add_argument(
        "--dialect", choices=tuple(DIALECTS), default=QODER.name, help=f"the wire dialect (default {QODER.name})"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="items run at once (default 1)")
    parser.add_argument(
        "--worker-id", help="the worker identity, in the dialect's worker header (default: host name and process id)"
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL on a drain (default 10)"
    )
    parser.add_argument("--ttl", type=int, help="desired_ttl_seconds of every heartbeat (default: the server's)")
    parser.add_argument(
        "--request-timeout", type=float, default=10.0, help="seconds a request may take (default 10; below a lease)"
    )
    parser.add_argument("--idle-poll", type=float, default=1.0, help="seconds to wait after an empty poll (default 1)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run per item")


def _fields(**values: object) -> str:
    return " ".join(
        f"{key}={json.dumps(value) if isinstance(value, str) and ' ' in value else value}"
        for key, value in values.items()
        if value is not None
    )


def _die_with(parent: int) -> Callable[[], None]:
    """Linux: what the child runs between fork and exec so that it gets SIGKILL when ``parent`` dies."""

    def arrange() -> None:  # pragma: no cover - runs in the child
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(137)

    return arrange


def _kill(pid: int, sig: signal.Signals) -> None:
    """Signal the child's process group (it leads its own session), else the child."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    def fail(message: str) -> int:
        sys.stderr.write(f"workstate work: {message}\n")
        return 2

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return fail("give the command to run after --, e.g. workstate work --url URL --token T -- ./job.sh")
    if args.token is None:
        return fail("--token is required (or set WORKSTATE_TOKEN)")
    if not args.grace >= 0:
        return fail(f"--grace must be 0 or more seconds, got {args.grace}")
    from ..worker import runner

    try:
        runner.require_httpx()
    except runner.MissingExtra:
        return fail(f"httpx is not installed: {INSTALL_HINT}")
    try:
        return asyncio.run(_work(args, cmd, out))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place: nothing ran yet
        return 128 + signal.SIGINT
    except WorkstateError as exc:
        option = {"environment_id": "--environment", "ttl_seconds": "--ttl", "idle_poll_seconds": "--idle-poll"}
        name = option.get(exc.param or "", "--" + (exc.param or "url").replace("_", "-"))
        return fail(f"{name}: {exc.message}")


async def _work(args: argparse.Namespace, cmd: list[str], out: TextIO) -> int:
    import asyncio

    from ..worker import runner as r
    from ..worker.driver import Abort, Drain, Dropped, Finished, Halted, StartWork

    def say(event: str, **values: object) -> None:
        out.write(f"{event} {_fields(**values)}".rstrip() + "\n")
        out.flush()

    hurry = asyncio.Event()  # a second signal: kill the children at once

    def on_event(note: r.Note) -> None:
        if isinstance(note, StartWork):
            say("start", work_id=note.work_id, session_id=note.session_id)
        elif isinstance(note, Drain):
            say("drain", work_id=note.work_id)
        elif isinstance(note, Abort):
            say("abort", work_id=note.work_id, reason=note.reason)
        elif isinstance(note, Finished):
            say("finished", work_id=note.work_id, reason=note.reason, confirmed=str(note.confirmed).lower())
        elif isinstance(note, Dropped):
            say("dropped", work_id=note.work_id, reason=note.reason, status=note.status)
        elif isinstance(note, Halted):
            say("halted", status=note.status, reason=note.reason)
        elif isinstance(note, r.Abandoned):
            say("abandoned", work_id=note.work_id, reason=note.reason)
        else:
            say("error", work_id=note.work_id, reason=f"{type(note.error).__name__}: {note.error}")

    async def handler(job: r.Job, cancel: r.Cancel) -> None:
        env = dict(os.environ)
        env.update(zip(ENVIRONMENT, (job.work_id, job.environment_id, job.session_id, worker.worker_id), strict=True))
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()) if sys.platform == "linux" else None,
            )
        except OSError as exc:
            say("error", work_id=job.work_id, reason=f"cannot run {cmd[0]}: {exc.strerror or exc}")
            return  # the item is stopped: a command that cannot start would fail on every worker
        say("spawn", work_id=job.work_id, pid=proc.pid)
        try:
            await _feed(proc, json.dumps(job.to_json()).encode() + b"\n")
            exited = asyncio.ensure_future(proc.wait())
            await _until(exited, cancel.wait(), hurry.wait())
            if not exited.done():
                if cancel.lost or hurry.is_set():
                    _kill(proc.pid, signal.SIGKILL)
                    say("sigkill", work_id=job.work_id, pid=proc.pid, reason=cancel.reason)
                else:
                    _kill(proc.pid, signal.SIGTERM)
                    say("sigterm", work_id=job.work_id, pid=proc.pid, reason=cancel.reason)
                    await _until(exited, cancel.wait_lost(), hurry.wait(), timeout=args.grace)
                    if not exited.done():
                        _kill(proc.pid, signal.SIGKILL)
                        why = cancel.reason if cancel.lost else "the grace period ended"
                        say("sigkill", work_id=job.work_id, pid=proc.pid, reason=why)
            code = await exited
            say("exit", work_id=job.work_id, pid=proc.pid, status=code)
        finally:
            if proc.returncode is None:  # cancelled: the worker is going away
                _kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(BaseException):
                    await asyncio.shield(proc.wait())

    worker = r.Runner(
        args.url,
        handler,
        token=args.token,
        dialect=args.dialect,
        concurrency=args.concurrency,
        worker_id=args.worker_id,
        environment_id=args.environment,
        ttl_seconds=args.ttl,
        request_timeout=args.request_timeout,
        idle_poll_seconds=args.idle_poll,
        on_event=on_event,
    )
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            say("shutdown", signal=signal.Signals(signum).name, worker_id=worker.worker_id)
            worker.stop(drain=True)
        else:
            hurry.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    say("ready", worker_id=worker.worker_id, environment_id=worker.environment_id, url=worker.base_url)
    try:
        halted = await worker.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if received:
        return 128 + received[0]
    return 1 if halted is not None else 0


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """Write the work JSON to the child's stdin and close it; a child that does not read it is no fault."""

    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.close()


async def _until(
    first: asyncio.Future[int], *others: Coroutine[Any, Any, object], timeout: float | None = None
) -> None:
    """Until ``first`` is done, any of ``others`` returns, or ``timeout`` seconds passed."""
    import asyncio

    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(other) for other in others]
    try:
        await asyncio.wait([first, *waiters], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


CLI_COMMANDS = (
    CliCommand(
        "work",
        "run a command once per work item (a worker: poll, ack, heartbeat, stop)",
        configure,
        run,
        description="Run CMD once per work item the server hands this worker: the item's ids in WORKSTATE_WORK_ID, "
        "WORKSTATE_ENVIRONMENT_ID, WORKSTATE_SESSION_ID, the work JSON on stdin; SIGTERM then SIGKILL on a drain, "
        "SIGKILL on a lost lease; the item stopped when CMD exits. Ctrl-C drains and exits.",
    ),
)
