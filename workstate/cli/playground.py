"""``workstate playground``: ``workstate serve --playground --test-clock --test-routes``, the page at ``/``.

It opens nothing by itself: it prints ``playground on http://HOST:PORT/`` (open that in a browser) beside
``serve``'s lines, and serves until SIGINT or SIGTERM. Needs the ``serve`` extra (uvicorn).

Every shipped dialect is served from the one origin: ``--dialect`` (default ``qoder``) is the primary server's
(``--policy``, ``--record`` and ``--seed-environments`` are its own), and each other dialect has a server of its
own, on its dialect's default policy, under its base path; the page's dialect switch chooses which one it speaks.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from . import CliCommand, serve


def configure(parser: argparse.ArgumentParser) -> None:
    serve.configure(parser)
    parser.set_defaults(playground=True, test_clock=True, test_routes=True)


def run(args: argparse.Namespace, out: TextIO) -> int:
    args.playground = args.test_clock = args.test_routes = True
    return serve.run(args, out)


CLI_COMMANDS = (
    CliCommand(
        "playground",
        "serve the lifecycle playground page beside the API, on the test clock (the serve extra)",
        configure,
        run,
        description=__doc__,
    ),
)
