"""The worker runner: the sans-I/O driver (:mod:`workstate.worker.driver`) with real I/O (an **I/O** adapter).

:func:`run` (or :class:`Runner`, which can be stopped) polls a server over HTTP with an
``httpx.AsyncClient`` (keep-alive; the optional extra ``workstate[worker]``), hands every item whose
lease it holds to an async ``handler(job, cancel)`` and, when the handler returns, tells the driver
:meth:`~workstate.worker.Worker.done`, so that the driver stops the item and confirms the stop.

Every rule stays in the driver: what to send, when, what a reply means, when a lease is lost. The
runner only does what the driver cannot: it sends each :class:`~workstate.worker.Send` (one task per
request, so a slow reply holds up nothing else), answers it with ``receive`` or, when no reply came
(timeout, connection error, a 200 whose body is no JSON), ``fail``; it sleeps until the ``wake_at`` of
the latest :class:`~workstate.worker.Actions` (or until something happened) and calls ``wake``; and it
turns the driver's events into the handler's life:

- :class:`~workstate.worker.StartWork`: ``handler(job, cancel)`` starts (after an earlier run of the
  same item, given up on a lost lease, has returned: two runs of one item never overlap here);
- :class:`~workstate.worker.Drain`: ``cancel`` is set with ``kind == "drain"``: wind down, then return;
- :class:`~workstate.worker.Abort` (the lease is lost): ``cancel`` is set with ``kind == "lost"``: stop
  at once. No stop is sent and ``done`` is not called when the handler returns: the item is someone
  else's now;
- :meth:`Runner.stop`: no new polls (the poll in flight is dropped: the server redelivers what it
  might have handed out, as after a lost reply); with ``drain=True`` every running handler's ``cancel``
  is set with ``kind == "shutdown"``. The runner returns once every handler has returned and every stop
  is confirmed (or given up). An item acked but not yet started is left to its lease (the server's
  policy decides what a lapse does), as :class:`Abandoned` reports.

``dialect`` (a :class:`~workstate.Dialect` or its name in :data:`workstate.DIALECTS`) is the wire the server
speaks; the environment URL carries its base path, and the driver its paths and headers.

Request timeouts stay below the lease: a request for an item whose lease is held gets at most the
time left of that lease (and never more than ``request_timeout``); a poll gets its ``block_ms`` more.
Cancelling :meth:`Runner.run` cancels every request and every handler (their ``finally`` runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import attrs

from ..api import Response
from ..api.codec import DecodeError, WorkObject, loads
from ..dialect import DIALECTS, QODER, Dialect, dialect_named
from ..errors import InvalidInput, WorkstateError
from .driver import Abort, Actions, Drain, Dropped, Event, Finished, Halted, RetryPolicy, Send, StartWork, Worker

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DIALECTS",
    "INSTALL_HINT",
    "Abandoned",
    "Cancel",
    "CancelKind",
    "HandlerFailed",
    "Job",
    "MissingExtra",
    "Note",
    "Runner",
    "as_dialect",
    "require_httpx",
    "run",
]

INSTALL_HINT = "pip install 'workstate[worker]'"
"""What to install for the runner (httpx)."""

CancelKind: TypeAlias = Literal["drain", "shutdown", "lost"]


class MissingExtra(WorkstateError, ImportError):
    """httpx, which the runner needs, is not installed."""


def require_httpx() -> Any:
    """The httpx module, or :class:`MissingExtra` naming what to install."""
    try:
        import httpx
    except ImportError:
        raise MissingExtra(f"the worker runner needs httpx: {INSTALL_HINT}", param="httpx") from None
    return httpx


@attrs.frozen
class Job:
    """An item whose lease the runner holds, as the handler gets it."""

    work_id: str
    environment_id: str
    session_id: str
    work: WorkObject

    def to_json(self) -> dict[str, Any]:
        """The work object as the wire shows it."""
        return self.work.to_json()


class Cancel:
    """The handler's signal to stop: unset while it may work on; set once, with a ``kind`` and a ``reason``.

    ``kind`` is ``"drain"`` (the server asked for a graceful stop), ``"shutdown"`` (the runner is
    stopping) or ``"lost"`` (the lease is lost: stop at once, the item is someone else's). A drain or a
    shutdown can become ``"lost"`` later (the lease ran out while the handler wound down); nothing else
    changes once set.
    """

    def __init__(self) -> None:
        self.kind: CancelKind | None = None
        self.reason: str | None = None
        self._set = asyncio.Event()
        self._lost = asyncio.Event()

    def is_set(self) -> bool:
        return self._set.is_set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    async def wait(self) -> None:
        """Until the signal is set (any kind)."""
        await self._set.wait()

    async def wait_lost(self) -> None:
        """Until the lease is lost."""
        await self._lost.wait()

    def trigger(self, kind: CancelKind, reason: str) -> None:
        """Set the signal (the runner does this; a handler's tests may too)."""
        if self.kind == "lost" or (self.kind is not None and kind != "lost"):
            return
        self.kind, self.reason = kind, reason
        self._set.set()
        if kind == "lost":
            self._lost.set()


@attrs.frozen
class Abandoned:
    """The runner stopped before this acked item started: it is left to its lease."""

    work_id: str
    reason: str


@attrs.frozen
class HandlerFailed:
    """The handler raised; the item is stopped as if it had returned (a failing item is not retried for ever)."""

    work_id: str
    error: BaseException = attrs.field(eq=False)


Note: TypeAlias = Event | Abandoned | HandlerFailed
Handler: TypeAlias = Callable[[Job, Cancel], Awaitable[object]]

_HEADER_CHARS = re.compile(r"[^\x21-\x7e]")


def _now() -> datetime:
    return datetime.now(UTC)


def _default_worker_id() -> str:
    host = _HEADER_CHARS.sub("-", socket.gethostname()) or "worker"
    return f"{host}-{os.getpid()}"


def as_dialect(dialect: Dialect | str) -> Dialect:
    """A :class:`~workstate.Dialect`, or the shipped one named so (:data:`workstate.DIALECTS`); else
    :class:`~workstate.errors.InvalidDialect` (an :class:`~workstate.errors.InvalidInput`) naming the known ones."""
    return dialect if isinstance(dialect, Dialect) else dialect_named(dialect)


def split_url(url: str, environment_id: str | None, dialect: Dialect | str = QODER) -> tuple[str, str]:
    """``(base URL, environment id)`` from an environment's URL (``http://host:port``, the dialect's base path,
    ``env_…``) or a server's URL and ``environment_id``. The base URL keeps any path before the base path."""
    dialect = as_dialect(dialect)
    if not isinstance(url, str):
        raise InvalidInput(f"url must be a string, got {url!r}", param="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidInput(f"url must be an http:// or https:// URL without query, got {url!r}", param="url")
    base_path = dialect.base_path
    path = parts.path
    found = None
    at = path.find(base_path.rstrip("/"))
    if at >= 0:
        rest = path[at + len(base_path) :].strip("/")
        path = path[:at]
        found = rest.split("/")[0] if rest else None
    if found is not None and environment_id is not None and found != environment_id:
        raise InvalidInput(f"url names {found}, environment_id {environment_id}", param="environment_id")
    env = found or environment_id
    if env is None:
        raise InvalidInput(f"url must name an environment ({base_path}env_…), or give environment_id", param="url")
    if not dialect.valid_id("env", env):
        raise InvalidInput(
            f"environment id must be {dialect.id_rule('env')} ({dialect.name}), got {env!r}", param="environment_id"
        )
    return f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}/", env


class _Run:
    """One start of one item: its job, its signal and the handler's task."""

    __slots__ = ("cancel", "job", "lost", "task")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.cancel = Cancel()
        self.lost = False
        self.task: asyncio.Task[None] | None = None


class Runner:
    """Runs a :class:`~workstate.worker.Worker` over HTTP (see the module docstring). One :meth:`run` per runner.

    ``url``: the environment's URL, or the server's with ``environment_id``. ``worker_id``: sent as
    the dialect's worker header (default: host name and process id). ``on_event`` is called with every driver event and
    every :class:`Abandoned` and :class:`HandlerFailed`, in order. ``transport``: httpx's (e.g. an
    ``httpx.MockTransport`` in a test; default: TCP). The other keywords go to the driver.
    """

    def __init__(
        self,
        url: str,
        handler: Handler,
        *,
        token: str,
        dialect: Dialect | str = QODER,
        concurrency: int = 1,
        worker_id: str | None = None,
        environment_id: str | None = None,
        ttl_seconds: int | None = None,
        request_timeout: float = 10.0,
        lease_margin_seconds: float = 1.0,
        idle_poll_seconds: float = 1.0,
        block_ms: int = 999,
        retry: RetryPolicy | None = None,
        on_event: Callable[[Note], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        dialect = as_dialect(dialect)
        self.base_url, env = split_url(url, environment_id, dialect)
        if isinstance(request_timeout, bool) or not isinstance(request_timeout, int | float) or request_timeout <= 0:
            raise InvalidInput(
                f"request_timeout must be a positive number, got {request_timeout!r}", param="request_timeout"
            )
        self.driver = Worker(
            env,
            _default_worker_id() if worker_id is None else worker_id,
            token=token,
            concurrency=concurrency,
            ttl_seconds=ttl_seconds,
            retry=retry,
            jitter=random.random,  # an edge may draw randomness; the driver only takes it
            lease_margin_seconds=lease_margin_seconds,
            idle_poll_seconds=idle_poll_seconds,
            block_ms=block_ms,
            dialect=dialect,
        )
        self.environment_id = env
        self.dialect = dialect
        self._handler = handler
        self._timeout = float(request_timeout)
        self._poll_extra = block_ms / 1000
        self._on_event = on_event
        self._transport = transport
        self._runs: dict[str, _Run] = {}  # started items whose Finished or Abort has not come
        self._handlers: set[asyncio.Task[None]] = set()  # handler tasks not yet returned (lost ones too)
        self._latest: dict[str, asyncio.Task[None]] = {}  # work id -> its latest handler task, until it returns
        self._io: set[asyncio.Task[None]] = set()
        self._polls: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        self._wake_at: datetime | None = None
        self._stopping = False
        self._started = False
        self._client: httpx.AsyncClient | None = None
        self.halted: Halted | None = None

    @property
    def worker_id(self) -> str:
        return self.driver.worker_id

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, *, drain: bool = True) -> None:
        """Poll no more; with ``drain``, signal every running handler (``kind == "shutdown"``). :meth:`run`
        returns once the handlers have returned and their stops are confirmed. Safe to call again."""
        self._stopping = True
        for task in list(self._polls):
            task.cancel()
        if drain:
            for item in self._runs.values():
                item.cancel.trigger("shutdown", "the worker is shutting down")
        if self._changed is not None:
            self._changed.set()

    async def run(self) -> Halted | None:
        """Work until stopped (None) or until the server refused a poll for good (the :class:`Halted` event,
        once the running handlers are done)."""
        if self._started:
            raise InvalidInput("a Runner runs once", param="runner")
        self._started = True
        httpx = require_httpx()
        self._changed = asyncio.Event()
        # one connection per item and one for the polls; an idle one is closed before a server would (uvicorn's
        # default keep-alive is 5 s), so that a request rarely meets a connection the server is closing
        limits = httpx.Limits(max_connections=self.driver.concurrency + 2, keepalive_expiry=4.0)
        async with httpx.AsyncClient(
            base_url=self.base_url, limits=limits, timeout=self._timeout, transport=self._transport
        ) as client:
            self._client = client
            try:
                self._apply(self.driver.start(_now()))
                while not self._over():
                    self._changed.clear()
                    delay = None
                    if self._wake_at is not None:
                        delay = max(0.0, (self._wake_at - _now()).total_seconds())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), delay)
                    self._apply(self.driver.wake(_now()))
            finally:
                await self._cancel_all()
        return self.halted

    # --- the loop's parts ---

    def _over(self) -> bool:
        return (self._stopping or self.halted is not None) and not self._runs and not self._handlers

    async def _cancel_all(self) -> None:
        tasks = [*self._io, *self._handlers]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _apply(self, actions: Actions) -> None:
        for send in actions.sends:
            if send.work_id is None and self._stopping:
                continue  # no new polls: left unanswered, the driver polls no more
            task = asyncio.get_running_loop().create_task(self._exchange(send))
            self._io.add(task)
            task.add_done_callback(self._io.discard)
            if send.work_id is None:
                self._polls.add(task)
                task.add_done_callback(self._polls.discard)
        for event in actions.events:
            self._event(event)
        self._wake_at = actions.wake_at
        if self._changed is not None:
            self._changed.set()

    def _note(self, note: Note) -> None:
        if self._on_event is not None:
            self._on_event(note)

    def _event(self, event: Event) -> None:
        self._note(event)
        if isinstance(event, StartWork):
            if self._stopping or self.halted is not None:
                self._note(Abandoned(event.work_id, "the worker is stopping: left to its lease"))
                return
            job = Job(event.work_id, self.environment_id, event.session_id, event.work)
            self._start(_Run(job))
        elif isinstance(event, Drain):
            found = self._runs.get(event.work_id)
            if found is not None:
                found.cancel.trigger("drain", "a graceful stop was requested")
        elif isinstance(event, Abort):
            found = self._runs.pop(event.work_id, None)
            if found is not None:
                found.lost = True
                found.cancel.trigger("lost", event.reason)
        elif isinstance(event, Finished | Dropped):
            self._runs.pop(event.work_id, None)
        elif isinstance(event, Halted):
            self.halted = event

    def _start(self, item: _Run) -> None:
        work_id = item.job.work_id
        earlier = self._latest.get(work_id)  # an earlier run of this item, given up on a lost lease
        self._runs[work_id] = item
        task = asyncio.get_running_loop().create_task(self._run_handler(item, earlier))
        item.task = task
        self._latest[work_id] = task
        self._handlers.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._handlers.discard(task)
            if self._latest.get(work_id) is task:
                del self._latest[work_id]

        task.add_done_callback(finished)

    async def _run_handler(self, item: _Run, earlier: asyncio.Task[None] | None) -> None:
        if earlier is not None:  # two runs of one item never overlap: the earlier one returns first
            await asyncio.gather(earlier, return_exceptions=True)
        if item.lost:
            return  # the lease went while waiting
        try:
            await self._handler(item.job, item.cancel)
        except Exception as exc:
            self._note(HandlerFailed(item.job.work_id, exc))
        if not item.lost and self._runs.get(item.job.work_id) is item:
            self._apply(self.driver.done(item.job.work_id, _now()))

    async def _exchange(self, send: Send) -> None:
        """Send one request; answer the driver with what came back (or with ``fail``)."""
        assert self._client is not None
        request = send.request
        timeout = self._timeout
        if send.work_id is None:
            timeout += self._poll_extra
        else:
            lease = self.driver.lease_until(send.work_id)
            if lease is not None:  # below the lease: a reply later than that is no use
                timeout = max(0.05, min(timeout, (lease - _now()).total_seconds()))
        headers = dict(request.headers or {})  # the driver sends a dict
        try:
            reply = await self._client.request(
                request.method, request.target, headers=headers, content=request.body or None, timeout=timeout
            )
        except (require_httpx().HTTPError, OSError) as exc:
            self._apply(
                self.driver.fail(send.id, _now(), f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            )
            return
        body = reply.content
        status = reply.status_code
        try:
            value = loads(body) if body else None
        except DecodeError as exc:
            if status == 200:  # a success the driver cannot read: like no reply
                self._apply(self.driver.fail(send.id, _now(), f"a 200 whose body is no JSON: {exc.message}"))
                return
            value = None  # an error's status decides; its body (a proxy's page) does not matter
        response = Response(status, value, body, dict(reply.headers))
        self._apply(self.driver.receive(send.id, response, _now()))


async def run(
    url: str,
    handler: Handler,
    *,
    token: str,
    dialect: Dialect | str = QODER,
    concurrency: int = 1,
    worker_id: str | None = None,
    **options: Any,
) -> Halted | None:
    """Run ``handler(job, cancel)`` for every item a server at ``url`` hands this worker, until cancelled or
    until the server refuses a poll for good (then the :class:`~workstate.worker.Halted` event is returned).
    ``options`` are :class:`Runner`'s other keywords. To stop it cleanly, use a :class:`Runner`."""
    runner = Runner(url, handler, token=token, dialect=dialect, concurrency=concurrency, worker_id=worker_id, **options)
    return await runner.run()
