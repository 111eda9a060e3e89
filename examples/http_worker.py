"""A real worker process: the sans-I/O driver (:mod:`workstate.worker`) over ``http.client``.

    python examples/http_worker.py http://127.0.0.1:8080 env_... --worker-id w1 --ttl 10 --work-seconds 3
    python examples/http_worker.py http://127.0.0.1:8080 env_... --dialect anthropic   # the peer's wire

This is an edge: it reads the clock, sleeps and talks to a server. The "work" is a sleep of
``--work-seconds`` per item (interrupted by a drain or a lost lease). Every start and end of an
item is written to stdout (or ``--log``) as one JSON line with the wall-clock time:
``{"event": "start" | "abort" | "finished" | "dropped" | "drain", "work_id", "worker", "time", ...}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

from workstate import DIALECTS
from workstate.api import Request, Response
from workstate.api.codec import DecodeError, loads
from workstate.errors import InvalidInput
from workstate.worker import Abort, Actions, Drain, Dropped, Finished, Halted, Send, StartWork, Worker


def _now() -> datetime:
    return datetime.now(UTC)


class HttpWorker:
    """Runs a :class:`Worker` against ``base_url``; the application's work is a timed sleep."""

    def __init__(self, base_url: str, driver: Worker, work_seconds: float, log: TextIO, timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.driver = driver
        self.work_seconds = work_seconds
        self.log = log
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None
        self.finish_at: dict[str, float] = {}  # work id -> monotonic time its work is done
        self.wake_at: datetime | None = None

    def record(self, event: str, work_id: str | None, **extra: object) -> None:
        line = {"event": event, "work_id": work_id, "worker": self.driver.worker_id, "time": time.time(), **extra}
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    def exchange(self, request: Request) -> Response | None:
        """One request over HTTP; None when no response came (connection error, timeout, garbage)."""
        for _ in range(2):  # a kept-alive connection the server closed is retried once on a new one
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = dict(request.headers or {})  # type: ignore[arg-type]
                self.connection.request(request.method, request.target, body=request.body, headers=headers)
                reply = self.connection.getresponse()
                body = reply.read()
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                continue
            try:
                value = loads(body) if body else None
            except DecodeError:
                return None
            return Response(reply.status, value, body)
        return None

    def apply(self, actions: Actions) -> None:
        pending: list[Send] = list(actions.sends)
        self.handle_events(actions)
        self.wake_at = actions.wake_at
        while pending:
            send = pending.pop(0)
            response = self.exchange(send.request)
            now = _now()
            result = self.driver.fail(send.id, now) if response is None else self.driver.receive(send.id, response, now)
            pending += result.sends
            self.handle_events(result)
            self.wake_at = result.wake_at

    def handle_events(self, actions: Actions) -> None:
        for event in actions.events:
            if isinstance(event, StartWork):
                self.finish_at[event.work_id] = time.monotonic() + self.work_seconds
                self.record("start", event.work_id)
            elif isinstance(event, Drain):
                self.finish_at[event.work_id] = min(self.finish_at.get(event.work_id, 0.0), time.monotonic() + 0.1)
                self.record("drain", event.work_id)
            elif isinstance(event, Abort):
                self.finish_at.pop(event.work_id, None)
                self.record("abort", event.work_id, reason=event.reason)
            elif isinstance(event, Finished):
                self.finish_at.pop(event.work_id, None)
                self.record("finished", event.work_id, reason=event.reason, confirmed=event.confirmed)
            elif isinstance(event, Dropped):
                self.record("dropped", event.work_id, reason=event.reason)
            elif isinstance(event, Halted):
                self.record("halted", None, reason=event.reason)

    def run(self, max_seconds: float) -> int:
        stop_at = time.monotonic() + max_seconds
        self.apply(self.driver.start(_now()))
        while time.monotonic() < stop_at and not self.driver.halted:
            for work_id, at in list(self.finish_at.items()):
                if time.monotonic() >= at:
                    del self.finish_at[work_id]
                    self.apply(self.driver.done(work_id, _now()))
            self.apply(self.driver.wake(_now()))
            pause = 0.5
            if self.wake_at is not None:
                pause = min(pause, (self.wake_at - _now()).total_seconds())
            if self.finish_at:
                pause = min(pause, min(self.finish_at.values()) - time.monotonic())
            time.sleep(max(0.005, pause))
        return 1 if self.driver.halted else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A worker process: the workstate driver over http.client.")
    parser.add_argument("url", help="base URL of the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("environment", help="environment id (env_...)")
    parser.add_argument("--worker-id", default="w1")
    parser.add_argument("--token", default="token")
    parser.add_argument("--ttl", type=int, default=None, help="desired_ttl_seconds")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--work-seconds", type=float, default=3.0, help="how long each item's work takes")
    parser.add_argument("--idle-poll-seconds", type=float, default=0.2)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long")
    parser.add_argument("--log", help="append the JSON lines here instead of stdout")
    parser.add_argument("--dialect", choices=tuple(DIALECTS), default="qoder", help="the wire dialect (default qoder)")
    args = parser.parse_args(argv)
    try:
        driver = Worker(
            args.environment,
            args.worker_id,
            token=args.token,
            concurrency=args.concurrency,
            ttl_seconds=args.ttl,
            idle_poll_seconds=args.idle_poll_seconds,
            lease_margin_seconds=0.5,
            jitter=random.random,  # an edge may draw randomness; the driver only takes it
            dialect=args.dialect,
        )
    except InvalidInput as exc:  # the driver names the option it refuses
        names = {"environment_id": "environment", "ttl_seconds": "--ttl"}  # the rest: --the-parameter
        option = names.get(exc.param or "", "--" + (exc.param or "option").replace("_", "-"))
        parser.error(f"{option}: {exc.message}")
    try:
        log = open(args.log, "a") if args.log else sys.stdout  # noqa: SIM115 - open for the life of the process
    except OSError as exc:
        parser.error(f"--log: cannot open {args.log}: {exc.strerror}")
    return HttpWorker(args.url, driver, args.work_seconds, log).run(args.max_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
