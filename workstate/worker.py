"""The worker driver: one worker's side of the lifecycle (spec section 8), sans-I/O.

:class:`Worker` decides what a worker sends and when; the caller does the I/O and the waiting.
Every call takes ``now`` (the worker's clock) and returns :class:`Actions`: the requests to send
(:class:`Send`, each with an id to answer with), events for the application (:class:`StartWork`,
:class:`Drain`, :class:`Abort`, :class:`Finished`, :class:`Dropped`, :class:`Halted`) and the
time to call :meth:`Worker.wake` next. The caller answers every send exactly once, with
:meth:`Worker.receive` (a :class:`~workstate.api.Response`) or :meth:`Worker.fail` (no response:
timeout, connection error); answers to sends the driver no longer waits for are ignored, so a
duplicated or late response is harmless.

The loop (spec section 8):

- poll with ``Worker-ID`` and ``block_ms=999`` while fewer than ``concurrency`` items are held;
- ack with the same ``Worker-ID``; a 409 (or another final 4xx) drops the item;
- first heartbeat with ``NO_HEARTBEAT``; then one every ``ttl/2`` (at most 30 s), echoing the
  ``last_heartbeat`` of the latest reply as it was sent; :class:`StartWork` once the first
  heartbeat holds the lease;
- 412 or 409 on a heartbeat, ``lease_extended: false``, or a whole TTL without a successful
  heartbeat (counted from when that heartbeat was sent, less ``lease_margin_seconds``, at most a
  quarter of the TTL): the lease
  is lost; :class:`Abort`, and no stop is sent;
- ``state: "stopping"`` in a heartbeat reply: :class:`Drain`; the application calls
  :meth:`Worker.done` when drained and the driver confirms with a stop;
- on completion (:meth:`Worker.done` while running) a graceful stop, then a confirming stop;
  a stop is only sent while the lease is believed held (stop checks no lease on the server);
- 429, 5xx and network faults are retried with capped exponential backoff and jitter from an
  injected source; any other 4xx is final.

The driver reads no clock, draws no random number (``jitter`` is injected), and never sleeps.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import attrs

from ._time import aware
from .api import Request, Response
from .codec import DecodeError, HeartbeatObject, WorkObject
from .errors import InvalidInput
from .model import NO_HEARTBEAT, valid_id
from .rules import State

__all__ = [
    "Abort",
    "Actions",
    "Drain",
    "Dropped",
    "Event",
    "Finished",
    "Halted",
    "RetryPolicy",
    "Send",
    "StartWork",
    "Worker",
]

BASE_PATH = "/api/v1/cloud/environments/"
HEARTBEAT_CAP_SECONDS = 30.0
"""Heartbeats go every ``ttl/2``, at most this far apart (spec section 8)."""


# --- what the driver emits ---------------------------------------------------------------------------


@attrs.frozen
class Send:
    """A request to send. Answer it with ``receive(id, response, now)`` or ``fail(id, now)``."""

    id: int
    request: Request
    work_id: str | None  # None for a poll


@attrs.frozen
class StartWork:
    """The lease is held: run this item's session."""

    work_id: str
    session_id: str
    work: WorkObject


@attrs.frozen
class Drain:
    """A graceful stop was requested: wind down, then call :meth:`Worker.done`."""

    work_id: str


@attrs.frozen
class Abort:
    """The lease is lost: stop running this item at once. No stop is sent; the item is someone else's."""

    work_id: str
    reason: str


@attrs.frozen
class Finished:
    """The item is done with. ``confirmed``: a stop reply showed it ``stopped``."""

    work_id: str
    reason: str
    confirmed: bool = True


@attrs.frozen
class Dropped:
    """An item given up before it started (ack refused, or a final error before the first heartbeat)."""

    work_id: str
    reason: str
    status: int | None = None


@attrs.frozen
class Halted:
    """Polling stopped for good: the server answered a poll with a final 4xx (e.g. 401, 403, 404)."""

    status: int
    reason: str


Event: TypeAlias = StartWork | Drain | Abort | Finished | Dropped | Halted


@attrs.frozen
class Actions:
    """What to do after a call: send ``sends``, hand ``events`` to the application, wake at ``wake_at``."""

    sends: tuple[Send, ...] = ()
    events: tuple[Event, ...] = ()
    wake_at: datetime | None = None


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with jitter: the n-th retry waits ``d/2 + jitter() * d/2`` where
    ``d = min(cap_seconds, base_seconds * 2**n)``. ``max_attempts`` bounds the retries of one ack or
    stop (a heartbeat retries until its lease runs out; a poll retries for ever)."""

    base_seconds: float = 0.25
    cap_seconds: float = 8.0
    max_attempts: int = 8

    def __attrs_post_init__(self) -> None:
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise InvalidInput("RetryPolicy needs 0 < base_seconds <= cap_seconds", param="base_seconds")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidInput("RetryPolicy.max_attempts must be a positive integer", param="max_attempts")

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before retry number ``attempt`` (0 for the first retry), given ``jitter`` in [0, 1)."""
        d = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt, 62))
        return d / 2 + jitter * d / 2


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


# --- the driver ----------------------------------------------------------------------------------------


class Phase(enum.Enum):
    ACKING = "acking"  # ack sent (or to be retried)
    FIRST_BEAT = "first_beat"  # acked; first heartbeat (NO_HEARTBEAT) sent
    RUNNING = "running"  # lease held, the application runs the item
    DRAINING = "draining"  # lease held, state stopping: the application drains
    STOPPING = "stopping"  # the application is done: stop sent until a reply shows stopped


class _Item:
    __slots__ = (
        "attempt",
        "done",
        "drained",
        "inflight",
        "lease_until",
        "next_beat",
        "phase",
        "retry_at",
        "session_id",
        "started",
        "token",
        "ttl",
        "work",
        "work_id",
    )

    def __init__(self, work: WorkObject) -> None:
        self.work = work
        self.work_id = work.id
        self.session_id = work.session_id
        self.phase = Phase.ACKING
        self.token = NO_HEARTBEAT  # expected_last_heartbeat, echoed exactly as the server sent it
        self.ttl: int | None = None
        self.lease_until: datetime | None = None  # believed, on the worker's clock
        self.next_beat: datetime | None = None
        self.inflight: int | None = None  # the id of the one request in flight for this item
        self.retry_at: datetime | None = None
        self.attempt = 0
        self.done = False  # the application finished (or drained)
        self.started = False  # StartWork emitted
        self.drained = False  # Drain emitted


class Worker:
    """One worker's driver (see the module docstring). Not thread-safe; one caller drives it.

    ``jitter`` returns floats in [0, 1) (e.g. ``random.Random(seed).random``); without it there is
    no jitter. ``ttl_seconds`` is sent as ``desired_ttl_seconds`` (None: the server's default).
    ``idle_poll_seconds`` is the pause after an empty poll (a server holds a poll for ``block_ms``;
    one that answers at once should not be polled in a busy loop).
    """

    def __init__(
        self,
        environment_id: str,
        worker_id: str,
        *,
        token: str = "token",
        concurrency: int = 1,
        ttl_seconds: int | None = None,
        retry: RetryPolicy | None = None,
        jitter: Callable[[], float] | None = None,
        lease_margin_seconds: float = 1.0,
        idle_poll_seconds: float = 1.0,
        block_ms: int = 999,
    ) -> None:
        if not valid_id("env_", environment_id):
            raise InvalidInput(f"environment_id must be 'env_' and 32 hex digits, got {environment_id!r}", param="env")
        if not isinstance(worker_id, str) or not worker_id or worker_id.strip(" \t") != worker_id:
            raise InvalidInput(f"worker_id must be a non-empty header value, got {worker_id!r}", param="worker_id")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput(f"concurrency must be a positive integer, got {concurrency!r}", param="concurrency")
        if ttl_seconds is not None and (isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int)):
            raise InvalidInput(f"ttl_seconds must be a positive integer, got {ttl_seconds!r}", param="ttl_seconds")
        if ttl_seconds is not None and ttl_seconds < 1:
            raise InvalidInput(f"ttl_seconds must be a positive integer, got {ttl_seconds!r}", param="ttl_seconds")
        if not 1 <= block_ms <= 999:
            raise InvalidInput(f"block_ms must be from 1 to 999, got {block_ms!r}", param="block_ms")
        if lease_margin_seconds < 0 or idle_poll_seconds < 0:
            raise InvalidInput("lease_margin_seconds and idle_poll_seconds must be >= 0", param="lease_margin_seconds")
        self.environment_id = environment_id
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.retry = RetryPolicy() if retry is None else retry
        self._jitter = jitter
        self._margin = timedelta(seconds=lease_margin_seconds)
        self._idle = timedelta(seconds=idle_poll_seconds)
        self._headers = {"Authorization": f"Bearer {token}", "Worker-ID": worker_id}
        self._work_path = f"{BASE_PATH}{environment_id}/work/"
        self._poll_request = Request("GET", f"{BASE_PATH}{environment_id}/work/poll?block_ms={block_ms}", self._headers)
        self._ttl_query = "" if ttl_seconds is None else f"&desired_ttl_seconds={ttl_seconds}"
        self._items: dict[str, _Item] = {}
        self._sends: dict[int, tuple[str | None, datetime]] = {}  # id -> (work id, when sent)
        self._next_id = 0
        self._poll_inflight: int | None = None
        self._poll_at: datetime | None = None  # when to poll next (None: now, if there is room)
        self._poll_attempt = 0
        self._halted = False
        self._out: list[Send] = []
        self._events: list[Event] = []

    # --- what the application and the I/O layer call ---

    def start(self, now: datetime) -> Actions:
        """Begin: the first poll."""
        return self.wake(now)

    def wake(self, now: datetime) -> Actions:
        """Time passed: send what is due (retries, heartbeats, polls) and notice leases that ran out."""
        now = aware(now)
        for item in list(self._items.values()):
            self._due(item, now)
        return self._flush(now)

    def receive(self, send_id: int, response: Response, now: datetime) -> Actions:
        """The response to send ``send_id`` arrived."""
        now = aware(now)
        found = self._sends.pop(send_id, None)
        if found is not None:
            work_id, sent_at = found
            if work_id is None:
                self._on_poll(send_id, response, now)
            else:
                item = self._items.get(work_id)
                if item is not None and item.inflight == send_id:
                    item.inflight = None
                    self._on_item(item, response, sent_at, now)
        return self._flush(now)

    def fail(self, send_id: int, now: datetime, reason: str = "no response") -> Actions:
        """Send ``send_id`` got no response (timeout, connection error): retried like a 5xx."""
        now = aware(now)
        found = self._sends.pop(send_id, None)
        if found is not None:
            work_id = found[0]
            if work_id is None:
                if self._poll_inflight == send_id:
                    self._poll_inflight = None
                    self._poll_backoff(now)
            else:
                item = self._items.get(work_id)
                if item is not None and item.inflight == send_id:
                    item.inflight = None
                    self._retry(item, now, reason)
        return self._flush(now)

    def done(self, work_id: str, now: datetime) -> Actions:
        """The application finished this item (or drained it): stop it and confirm."""
        now = aware(now)
        item = self._items.get(work_id)
        if item is not None and not item.done and item.phase in (Phase.RUNNING, Phase.DRAINING):
            item.done = True
            if item.inflight is None:
                self._begin_stop(item, now)
        return self._flush(now)

    # --- what the driver holds, for the caller and for checks ---

    @property
    def items(self) -> tuple[str, ...]:
        """The work ids this worker holds (acked or acking, not yet finished, dropped or aborted)."""
        return tuple(self._items)

    def lease_until(self, work_id: str) -> datetime | None:
        """Until when (worker's clock) this worker believes it holds the lease on ``work_id``, or None."""
        item = self._items.get(work_id)
        return None if item is None else item.lease_until

    def phase(self, work_id: str) -> Phase | None:
        item = self._items.get(work_id)
        return None if item is None else item.phase

    @property
    def in_flight(self) -> int:
        """How many sends await an answer."""
        return len(self._sends)

    @property
    def halted(self) -> bool:
        return self._halted

    def next_wake(self) -> datetime | None:
        """The earliest instant at which :meth:`wake` has something to do, or None."""
        times: list[datetime] = []
        room = len(self._items) < self.concurrency
        if self._poll_at is not None and self._poll_inflight is None and room and not self._halted:
            times.append(self._poll_at)
        for item in self._items.values():
            if item.inflight is not None:
                pass
            elif item.retry_at is not None:
                times.append(item.retry_at)
            elif item.next_beat is not None and not item.done:
                times.append(item.next_beat)
            if item.lease_until is not None:
                times.append(item.lease_until)
        return min(times) if times else None

    # --- internals ---

    def _send(self, request: Request, work_id: str | None, now: datetime) -> int:
        self._next_id += 1
        send_id = self._next_id
        self._sends[send_id] = (work_id, now)
        self._out.append(Send(send_id, request, work_id))
        return send_id

    def _flush(self, now: datetime) -> Actions:
        if (
            not self._halted
            and self._poll_inflight is None
            and len(self._items) < self.concurrency
            and (self._poll_at is None or self._poll_at <= now)
        ):
            self._poll_at = None
            self._poll_inflight = self._send(self._poll_request, None, now)
        sends, events = tuple(self._out), tuple(self._events)
        self._out.clear()
        self._events.clear()
        return Actions(sends, events, self.next_wake())

    def _delay(self, attempt: int) -> timedelta:
        jitter = 1.0 if self._jitter is None else self._jitter()
        return timedelta(seconds=self.retry.delay(attempt, jitter))

    def _poll_backoff(self, now: datetime) -> None:
        self._poll_at = now + self._delay(self._poll_attempt)
        self._poll_attempt += 1

    def _on_poll(self, send_id: int, response: Response, now: datetime) -> None:
        if self._poll_inflight != send_id:
            return
        self._poll_inflight = None
        status = response.status
        if status != 200:
            if _retryable(status):
                self._poll_backoff(now)
            else:
                self._halted = True
                self._events.append(Halted(status, f"poll answered {status}: {_error_message(response)}"))
            return
        try:
            work = None if response.json is None else WorkObject.from_json(response.json)
        except DecodeError:
            self._poll_backoff(now)  # a malformed reply is a server fault: back off and poll again
            return
        self._poll_attempt = 0
        if work is None:
            self._poll_at = now + self._idle
            return
        if work.id in self._items or work.environment_id != self.environment_id:
            return  # a redelivery of an item held already (our ack's reply was lost): the ack covers it
        item = self._items[work.id] = _Item(work)
        self._send_ack(item, now)

    def _send_ack(self, item: _Item, now: datetime) -> None:
        item.retry_at = None
        item.inflight = self._send(
            Request("POST", f"{self._work_path}{item.work_id}/ack", self._headers), item.work_id, now
        )

    def _send_heartbeat(self, item: _Item, now: datetime) -> None:
        item.retry_at = None
        target = f"{self._work_path}{item.work_id}/heartbeat?expected_last_heartbeat={item.token}{self._ttl_query}"
        item.inflight = self._send(Request("POST", target, self._headers), item.work_id, now)

    def _send_stop(self, item: _Item, now: datetime) -> None:
        item.retry_at = None
        item.inflight = self._send(
            Request("POST", f"{self._work_path}{item.work_id}/stop", self._headers), item.work_id, now
        )

    def _begin_stop(self, item: _Item, now: datetime) -> None:
        """Send a stop (graceful, or the confirmation), but only while the lease is believed held."""
        if item.lease_until is None or now >= item.lease_until:
            self._lose(item, now, "the lease ran out before the stop was sent")
            return
        item.phase = Phase.STOPPING
        item.attempt = 0
        self._send_stop(item, now)

    def _forget(self, item: _Item) -> None:
        self._items.pop(item.work_id, None)
        if item.inflight is not None:
            self._sends.pop(item.inflight, None)
            item.inflight = None

    def _lose(self, item: _Item, now: datetime, reason: str) -> None:
        """The lease is lost (or the item was never ours): give it up without a stop."""
        self._forget(item)
        if item.started:
            self._events.append(Abort(item.work_id, reason))
        else:
            self._events.append(Dropped(item.work_id, reason))

    def _finish(self, item: _Item, reason: str, confirmed: bool = True) -> None:
        self._forget(item)
        self._events.append(Finished(item.work_id, reason, confirmed))

    def _due(self, item: _Item, now: datetime) -> None:
        if item.lease_until is not None and now >= item.lease_until:
            self._lose(item, now, "no successful heartbeat for a whole TTL")
            return
        if item.inflight is not None:
            return
        if item.retry_at is not None:
            if now >= item.retry_at:
                item.retry_at = None
                self._resend(item, now)
            return
        if item.next_beat is not None and now >= item.next_beat and not item.done:
            item.attempt = 0
            self._send_heartbeat(item, now)

    def _resend(self, item: _Item, now: datetime) -> None:
        phase = item.phase
        if phase is Phase.ACKING:
            self._send_ack(item, now)
        elif phase is Phase.STOPPING:
            self._begin_stop(item, now)
        else:
            self._send_heartbeat(item, now)

    def _retry(self, item: _Item, now: datetime, reason: str) -> None:
        """A retryable failure (429, 5xx, no response) of the item's request."""
        if (
            item.phase is not Phase.STOPPING
            and item.lease_until is None
            and item.attempt + 1 >= self.retry.max_attempts
        ):
            self._lose(item, now, f"gave up after {item.attempt + 1} attempts: {reason}")
            return
        if item.phase is Phase.STOPPING and item.attempt + 1 >= self.retry.max_attempts:
            self._finish(item, f"stop not confirmed after {item.attempt + 1} attempts: {reason}", confirmed=False)
            return
        at = now + self._delay(item.attempt)
        item.attempt += 1
        if item.lease_until is not None and at >= item.lease_until:
            at = item.lease_until  # the lease runs out first: wake then, and lose it
        item.retry_at = at

    def _on_item(self, item: _Item, response: Response, sent_at: datetime, now: datetime) -> None:
        status = response.status
        if _retryable(status):
            self._retry(item, now, f"{status}: {_error_message(response)}")
            return
        phase = item.phase
        if phase is Phase.ACKING:
            self._on_ack(item, response, now)
        elif phase is Phase.STOPPING:
            self._on_stop(item, response, now)
        else:
            self._on_heartbeat(item, response, sent_at, now)

    def _on_ack(self, item: _Item, response: Response, now: datetime) -> None:
        if response.status != 200:
            self._forget(item)
            self._events.append(Dropped(item.work_id, f"ack answered {response.status}", response.status))
            return
        item.phase = Phase.FIRST_BEAT
        item.attempt = 0
        self._send_heartbeat(item, now)

    def _on_heartbeat(self, item: _Item, response: Response, sent_at: datetime, now: datetime) -> None:
        status = response.status
        if status != 200:
            why = {412: "412: another holds the lease", 409: "409: the item moved on"}.get(status)
            self._lose(item, now, why or f"heartbeat answered {status}: {_error_message(response)}")
            return
        try:
            beat = HeartbeatObject.from_json(response.json)
            token = response.json["last_heartbeat"]
        except (DecodeError, TypeError, KeyError):
            self._retry(item, now, "malformed heartbeat reply")
            return
        if not beat.lease_extended:
            self._lose(item, now, "lease_extended: false")
            return
        self._granted(item, token, beat.ttl_seconds, sent_at)
        item.attempt = 0
        stopping = beat.state is State.STOPPING
        if item.phase is Phase.FIRST_BEAT:
            if stopping:  # stopped before it began: nothing to drain
                item.done = True
                self._begin_stop(item, now)
                return
            item.phase = Phase.RUNNING
            item.started = True
            self._events.append(StartWork(item.work_id, item.session_id, item.work))
        elif stopping and item.phase is Phase.RUNNING:
            item.phase = Phase.DRAINING
            item.drained = True
            self._events.append(Drain(item.work_id))
        if item.done:
            self._begin_stop(item, now)

    def _granted(self, item: _Item, token: str, ttl: int, sent_at: datetime) -> None:
        """A heartbeat sent at ``sent_at`` succeeded: the lease holds until ``sent_at + ttl`` (less the margin)."""
        item.token = token
        item.ttl = ttl
        lease = timedelta(seconds=ttl)
        item.lease_until = sent_at + lease - min(self._margin, lease / 4)
        item.next_beat = sent_at + timedelta(seconds=min(ttl / 2, HEARTBEAT_CAP_SECONDS))

    def _on_stop(self, item: _Item, response: Response, now: datetime) -> None:
        if response.status != 200:
            self._finish(item, f"stop answered {response.status}: {_error_message(response)}", confirmed=False)
            return
        state = response.json.get("state") if isinstance(response.json, dict) else None
        if state == State.STOPPED.value:
            self._finish(
                item, "drained" if item.drained else "completed" if item.started else "stopped before it started"
            )
        elif state == State.STOPPING.value:
            item.attempt = 0
            self._begin_stop(item, now)  # the graceful stop took: confirm it
        else:
            self._finish(item, f"stop left the item {state!r}", confirmed=False)


def _error_message(response: Response) -> str:
    body: Any = response.json
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message
    return "no error message"
