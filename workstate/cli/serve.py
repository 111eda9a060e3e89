"""``workstate serve``: the reference server over HTTP, :class:`workstate.asgi.WorkstateApp` under uvicorn.

Needs the ``serve`` extra (``pip install 'workstate[serve]'``). Prints each seeded environment's id, then
``listening on http://HOST:PORT`` once it accepts connections (with ``--port 0``, the port it got), then one
access-log line per request; SIGINT or SIGTERM shuts it down cleanly and flushes ``--record``.

``--db PATH`` keeps the state in a SQLite file (created when missing; ``workstate.stores.sqlite``), ``--db
postgresql://...`` in PostgreSQL (the ``postgres`` extra; ``workstate.stores.postgres``): the state outlives the
process, and several processes may serve one database. Ids then come from ``workstate.stores.RandomIds`` (no two
processes share one), and unless ``--test-clock`` is given an eager sweep applies the lapses due every
``--sweep-seconds`` (each request applies those due anyway).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..dialect import DIALECTS, dialect_named
from ..errors import WorkstateError
from . import CliCommand
from .options import add_policy_option, policy_from_pairs

if TYPE_CHECKING:
    from ..api import Server
    from ..asgi import WorkstateApp

INSTALL_HINT = "pip install 'workstate[serve]'"


def configure(parser: argparse.ArgumentParser) -> None:
    from ..asgi import NOW_HEADER, TEST_PREFIX  # here and in run: `workstate --help` imports no asgi

    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0: any free port)")
    parser.add_argument("--dialect", choices=list(DIALECTS), default="qoder", help="the wire dialect (default qoder)")
    add_policy_option(parser)
    parser.add_argument("--test-clock", action="store_true", help=f"honour {NOW_HEADER}; serves the test routes too")
    parser.add_argument("--test-routes", action="store_true", help=f"serve POST {TEST_PREFIX}[/{{env}}/work]")
    parser.add_argument("--record", type=Path, metavar="FILE", help="append every exchange to this trace (JSON lines)")
    parser.add_argument(
        "--seed-environments", type=int, default=0, metavar="N", help="create N self_hosted environments first"
    )
    parser.add_argument(
        "--playground", action="store_true", help="serve the playground page at / too (workstate playground)"
    )
    parser.add_argument(
        "--db", metavar="PATH|postgresql://...", help="keep the state in a SQLite file or a PostgreSQL database"
    )
    parser.add_argument(
        "--sweep-seconds", type=float, default=1.0, metavar="S", help="with --db: sweep the due lapses every S seconds"
    )


def _listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and without
    # that every keep-alive answer waits for the client's delayed ACK (about 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from ..api import Server
    from ..asgi import WorkstateApp
    from ..asgi.playground import PlaygroundApp
    from ..stores import RandomIds, open_store

    try:
        import uvicorn
    except ImportError:
        sys.stderr.write(f"workstate serve: uvicorn is not installed: {INSTALL_HINT}\n")
        return 2
    if args.seed_environments < 0:
        sys.stderr.write("workstate serve: --seed-environments must be 0 or more\n")
        return 2
    if not args.sweep_seconds > 0:
        sys.stderr.write("workstate serve: --sweep-seconds must be positive\n")
        return 2
    try:
        policy = policy_from_pairs(args.policy, dialect_named(args.dialect).policy)  # over the dialect's defaults
    except WorkstateError as exc:
        sys.stderr.write(f"workstate serve: {exc.message}\n")
        return 2
    try:
        sock = _listener(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(f"workstate serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        return 2
    import sqlite3

    store = None
    if args.db:
        try:
            store = open_store(args.db, polling_window=timedelta(seconds=policy.workers_polling_window_seconds))
        except ImportError as exc:
            sock.close()
            sys.stderr.write(f"workstate serve: {exc}: pip install 'workstate[postgres]'\n")
            return 2
        except (OSError, WorkstateError, sqlite3.Error) as exc:
            sock.close()
            sys.stderr.write(f"workstate serve: cannot open --db {args.db}: {getattr(exc, 'message', exc)}\n")
            return 2
    record = args.record.open("a", encoding="utf-8") if args.record else None
    if record is not None:  # the header line: the policy and dialect served, which `workstate check` reads
        from ..tools.trace import header_line

        record.write(header_line(policy, dialect_named(args.dialect)))
    printing = threading.Lock()

    def say(line: str) -> None:
        with printing:
            out.write(line + "\n")
            out.flush()

    try:
        dialect = dialect_named(args.dialect)
        served = None if store is None else Server(policy, dialect=dialect, store=store, ids=RandomIds(dialect))
        app = (PlaygroundApp if getattr(args, "playground", False) else WorkstateApp)(
            served,
            policy=policy,
            dialect=args.dialect,
            test_clock=args.test_clock,
            test_routes=args.test_routes,
            record=record,
            access_log=say,
        )
        for _ in range(args.seed_environments):
            say(f"environment {app.seed_environment()}")
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=30)
        server = uvicorn.Server(config)
        host, port = sock.getsockname()[:2]
        shown_host = f"[{host}]" if ":" in host else host

        async def serve() -> None:
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if server.started:
                say(f"listening on http://{shown_host}:{port}")
                if isinstance(app, PlaygroundApp):
                    say(f"playground on http://{shown_host}:{port}/")
            sweeping = None
            if served is not None and not args.test_clock:
                sweeping = asyncio.create_task(_sweep(app, served, args.sweep_seconds))
            try:
                await task
            finally:
                if sweeping is not None:
                    sweeping.cancel()

        # uvicorn shuts down gracefully on SIGINT/SIGTERM (the lifespan's shutdown flushes the record), then raises
        # the signal again for its caller: here both end the command with status 0.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        sock.close()
        if record is not None:
            record.close()
        if store is not None:
            store.close()
    return 0


async def _sweep(app: WorkstateApp, server: Server, seconds: float) -> None:
    """The eager sweep on a database: every ``seconds``, the lapses due now (a bounded batch each time, under the
    app's lock; any number of processes may sweep one database). A failing sweep is reported and tried again."""
    import asyncio

    while True:
        await asyncio.sleep(seconds)
        try:
            with app.lock:
                server.sweep(app.clock())
        except Exception as exc:  # a conflict or a lost connection: the next sweep (or request) does it
            sys.stderr.write(f"workstate serve: sweep failed: {type(exc).__name__}: {exc}\n")


CLI_COMMANDS = (
    CliCommand(
        "serve", "serve the reference server over HTTP (the serve extra: uvicorn)", configure, run, description=__doc__
    ),
)
