"""What the oracle kit drives: a :class:`Target` (a server under test), and adapters to one.

A target answers one :class:`~workstate.api.Request` at a given ``now`` with a
:class:`~workstate.api.Response`, and offers the two things the platform does outside the
endpoints: create an environment and create a work item. That is all the kit needs; it never
looks inside a server.

- :class:`ReferenceTarget`: the reference :class:`~workstate.api.Server` (or a subclass) as a target.
- :class:`AsyncBridge`: an ``async`` server as a synchronous target (a private event loop runs it).
- :class:`workstate.testing.http.HttpTarget`: a server over HTTP (in its own module).

This module needs no third-party package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Protocol, runtime_checkable

from ..api import Request, Response, Server
from ..dialect import QODER, Dialect
from ..policy import Policy

__all__ = ["AsyncBridge", "AsyncTarget", "ReferenceTarget", "Target"]


@runtime_checkable
class Target(Protocol):
    """A Work API server under test, driven synchronously.

    ``send`` must answer as the server would at ``now`` (a real server needs a test clock that
    the kit sets: see docs/testing-guide.md). ``create_environment`` makes a ``self_hosted``
    environment and ``create_work`` a ``queued`` item in it, both at ``now``, returning the
    server's own ids; the kit maps them onto the reference's.
    """

    def send(self, request: Request, now: datetime) -> Response: ...

    def create_environment(self, now: datetime) -> str: ...

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str: ...


class AsyncTarget(Protocol):
    """An ``async`` server under test: :class:`Target` with coroutines."""

    async def send(self, request: Request, now: datetime) -> Response: ...

    async def create_environment(self, now: datetime) -> str: ...

    async def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str: ...


class ReferenceTarget:
    """The reference server (or any :class:`~workstate.api.Server` subclass) as a :class:`Target`.

    Without ``server``, a fresh ``Server(policy, dialect=dialect)``: ``dialect`` defaults to ``QODER`` and
    ``policy`` to the dialect's.
    """

    def __init__(self, server: Server | None = None, *, policy: Policy | None = None, dialect: Dialect = QODER) -> None:
        self.server = Server(policy, dialect=dialect) if server is None else server

    def send(self, request: Request, now: datetime) -> Response:
        return self.server.handle(request, now)

    def create_environment(self, now: datetime) -> str:
        return self.server.create_environment(now=now)

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
        return self.server.create_work(env, session_id=session_id, metadata=metadata, now=now)


class AsyncBridge:
    """Run an :class:`AsyncTarget` (or three coroutine functions) as a synchronous :class:`Target`.

    The bridge owns a private event loop and runs each call to completion on it, so the async
    server's tasks, connections and locks all live on one loop. Close the bridge (or use it as a
    context manager) to close the loop. Do not use it from inside a running event loop.
    """

    def __init__(
        self,
        target: AsyncTarget | None = None,
        *,
        send: Callable[[Request, datetime], Awaitable[Response]] | None = None,
        create_environment: Callable[[datetime], Awaitable[str]] | None = None,
        create_work: Callable[[str, str, Mapping[str, str], datetime], Awaitable[str]] | None = None,
    ) -> None:
        if target is not None:
            send = send or target.send
            create_environment = create_environment or target.create_environment
            create_work = create_work or target.create_work
        if send is None or create_environment is None or create_work is None:
            raise TypeError("AsyncBridge needs an async target, or all of send, create_environment and create_work")
        self._send = send
        self._create_environment = create_environment
        self._create_work = create_work
        self._loop = asyncio.new_event_loop()

    def send(self, request: Request, now: datetime) -> Response:
        return self._loop.run_until_complete(self._send(request, now))

    def create_environment(self, now: datetime) -> str:
        return self._loop.run_until_complete(self._create_environment(now))

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
        return self._loop.run_until_complete(self._create_work(env, session_id, metadata, now))

    def call(self, awaitable: Awaitable[object]) -> object:
        """Run any other coroutine on the bridge's loop (e.g. an async server's own shutdown)."""

        async def wrapped() -> object:
            return await awaitable

        return self._loop.run_until_complete(wrapped())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def __enter__(self) -> AsyncBridge:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
