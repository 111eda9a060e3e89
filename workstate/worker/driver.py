"""The worker driver: one worker's side of the lifecycle (api.md §8), sans-I/O.

:class:`Worker` decides what a worker sends and when; the caller does the I/O and the waiting.
Every call takes ``now`` (the worker's clock) and returns :class:`Actions`: the requests to send
(:class:`Send`, each with an id to answer with), events for the application (:class:`StartWork`,
:class:`Drain`, :class:`Abort`, :class:`Finished`, :class:`Dropped`, :class:`Halted`) and the
time to call :meth:`Worker.wake` next (never earlier than ``now``). The caller answers every send
exactly once, with :meth:`Worker.receive` (a :class:`~workstate.api.Response`) or
:meth:`Worker.fail` (no response: timeout, connection error); answers to sends the driver no
longer waits for are ignored, so a duplicated or late response is harmless.

The loop (api.md §8):

- poll with the dialect's worker header (``Worker-ID``) and ``block_ms=999`` while fewer than ``concurrency``
  items are held;
- ack (with the same worker header where the dialect's ack compares it); a 409 (or another final 4xx) drops
  the item; a health probe (``data.type`` ``healthcheck``) is stopped once acked, with no session;
- first heartbeat with ``NO_HEARTBEAT``; then one every ``ttl/2`` (at most 30 s), echoing the
  ``last_heartbeat`` of the latest reply as it was sent (percent-encoded in the query);
  :class:`StartWork` once the first heartbeat holds the lease;
- 412 or 409 on a heartbeat, ``lease_extended: false``, a heartbeat reply that arrives after the
  lease it grants ran out, or a whole TTL without a successful heartbeat (each lease counted from
  when its heartbeat was sent, less ``lease_margin_seconds``, at most a quarter of the TTL): the
  lease is lost and no stop is sent: :class:`Abort` while the application runs the item
  (:class:`Dropped` before :class:`StartWork`; ``Finished(confirmed=False)`` once it is done);
- ``state: "stopping"`` in a heartbeat reply: :class:`Drain`; the application calls
  :meth:`Worker.done` when drained and the driver confirms with a stop;
- on completion (:meth:`Worker.done` while running) a graceful stop, then a confirming stop;
  a stop is only sent while the lease is believed held (stop checks no lease on the server), and
  heartbeats go on while a stop is retried (one request per item in flight at a time);
- 408, 429, 5xx, network faults, malformed replies and any status the request does not owe that
  is no 4xx (1xx, a 2xx other than 200, 3xx: a proxy's or a misconfigured server's answer) are
  retried with capped exponential backoff and jitter from an injected source; any other 4xx is
  final (api.md §8: "treat other 4xx as final"). A reply is read tolerantly: keys the driver
  does not know (e.g. a ``secret``) are ignored (see :mod:`workstate.codec`).

Dialects (:class:`~workstate.Dialect`, ``dialect=``; :data:`~workstate.QODER` by default): the paths, the worker
header and the id formats are the dialect's. Where its stop answers 204 (``anthropic``) the driver's stop is one
``{"force": true}`` whose 204 finishes the item, and a 409 to a stop (the dialect's stop of a stopped item) is
the item stopped already. A heartbeat reply ``{"state": "stopped", "lease_extended": false}`` (the peer's answer
after a force stop) ends the session at once with :class:`Abort`, as a 409 does in ``qoder``; a 412 is a lost
lease in both, its ``error.details.current_state`` named in the reason where the reply carries it.

The driver reads no clock, draws no random number (``jitter`` is injected), and never sleeps.
Bad arguments raise :class:`~workstate.errors.InvalidInput` and change nothing.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias, TypeGuard
from urllib.parse import quote

import attrs

from .._time import LATEST, aware
from ..api import Request, Response, bearer_token
from ..api.codec import DecodeError, HeartbeatObject, WorkObject, work_state
from ..dialect import QODER, Dialect, StopAnswer, StopOfStopped, dialect_named
from ..errors import InvalidInput
from ..model import NO_HEARTBEAT
from ..rules import RULE_TABLE, State, Trigger, edges

_HEARTBEAT_STATES = frozenset(target for _, target, rule in edges(RULE_TABLE) if rule.trigger is Trigger.HEARTBEAT)
"""The states a 200 heartbeat can leave an item in (from the lifecycle's own rules)."""

__all__ = [
    "HEARTBEAT_CAP_SECONDS",
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

HEARTBEAT_CAP_SECONDS = 30.0
"""Heartbeats go every ``ttl/2``, at most this far apart (api.md §8)."""
MAX_SECONDS = 3600.0
"""The longest pause, margin or backoff cap the driver takes (an hour)."""

_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")
"""A header value as HTTP carries it: visible ASCII, with spaces or tabs only inside."""


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


def _real(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with jitter: the n-th retry waits ``d/2 + jitter() * d/2`` where
    ``d = min(cap_seconds, base_seconds * 2**n)`` (n = 0 for the first retry). ``max_attempts``
    counts attempts, the first send included, of one ack, first heartbeat or stop (1: never
    retried); a later heartbeat is retried until its lease runs out, a poll for ever."""

    base_seconds: float = 0.25
    cap_seconds: float = 8.0
    max_attempts: int = 8

    def __attrs_post_init__(self) -> None:
        for name in ("base_seconds", "cap_seconds"):
            value = getattr(self, name)
            if not _real(value):
                raise InvalidInput(f"RetryPolicy.{name} must be a finite number of seconds, got {value!r}", param=name)
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise InvalidInput("RetryPolicy needs 0 < base_seconds <= cap_seconds", param="base_seconds")
        if self.cap_seconds > MAX_SECONDS:
            raise InvalidInput(
                f"RetryPolicy.cap_seconds must be at most {MAX_SECONDS:g}, got {self.cap_seconds!r}",
                param="cap_seconds",
            )
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidInput("RetryPolicy.max_attempts must be a positive integer", param="max_attempts")

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before retry number ``attempt`` (0 for the first retry), given ``jitter`` in [0, 1)."""
        d = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt, 62))
        return d / 2 + jitter * d / 2


def _final(status: int) -> bool:
    """Whether a status other than 200 is final: a 4xx, but for 408 and 429. Every other status (5xx, and the
    1xx, 2xx and 3xx no request of the Work API owes) is a fault, retried (api.md §8 makes only 4xx final)."""
    return 400 <= status < 500 and status not in (408, 429)


# --- what a reply means, judged before anything changes -------------------------------------------------


@attrs.frozen
class _Retry:
    """No response, 408, 429, 5xx, another status that is neither 200 nor a 4xx, or a malformed reply: try again
    after a backoff."""

    reason: str


@attrs.frozen
class _Refused:
    """A final answer: a 4xx other than 408 and 429. ``current_state``: the item's state where a 412 names it
    (``error.details.current_state.state``, a dialect's detail)."""

    status: int
    message: str
    current_state: str | None = None


@attrs.frozen
class _Beat:
    beat: HeartbeatObject
    token: str  # last_heartbeat exactly as the server sent it
    sent_at: datetime  # when the heartbeat was sent (worker's clock): its lease counts from here
    lease_until: datetime  # believed, on the worker's clock


_Kind: TypeAlias = Literal["poll", "ack", "heartbeat", "stop"]
_Verdict: TypeAlias = _Retry | _Refused | _Beat | WorkObject | State | None


# --- the driver ----------------------------------------------------------------------------------------


class Phase(enum.Enum):
    ACKING = "acking"  # ack sent (or to be retried)
    FIRST_BEAT = "first_beat"  # acked; first heartbeat (NO_HEARTBEAT) sent (or to be retried)
    RUNNING = "running"  # lease held, the application runs the item
    DRAINING = "draining"  # lease held, state stopping: the application drains
    STOPPING = "stopping"  # the application is done: stop sent until a reply shows stopped; heartbeats go on


class _Item:
    """One item held. Two timers: ``retry_at`` for the ack or the stop, ``next_beat`` for heartbeats."""

    __slots__ = (
        "attempt",
        "beat_attempt",
        "confirming",
        "drained",
        "inflight",
        "kind",
        "lease_until",
        "next_beat",
        "phase",
        "probe",
        "retry_at",
        "session_id",
        "started",
        "token",
        "ttl",
        "work",
        "work_id",
    )

    def __init__(self, work: WorkObject, now: datetime) -> None:
        self.work = work
        self.work_id = work.id
        self.session_id = work.session_id
        self.phase = Phase.ACKING
        self.token = NO_HEARTBEAT  # expected_last_heartbeat, echoed exactly as the server sent it
        self.ttl: int | None = None
        self.lease_until: datetime | None = None  # believed, on the worker's clock
        self.next_beat: datetime | None = None  # when a heartbeat goes (None: none due, or one in flight)
        self.retry_at: datetime | None = now  # when the ack or the stop goes (None: none due, or in flight)
        self.attempt = 0  # failed attempts of the current ack or stop
        self.beat_attempt = 0  # failed heartbeats in a row
        self.inflight: int | None = None  # the id of the one request in flight for this item
        self.kind: _Kind | None = None  # what that request is
        self.started = False  # StartWork emitted
        self.drained = False  # Drain emitted
        self.confirming = False  # the server holds it stopping: a stop now confirms (a lapse would only stop it)
        self.probe = work.data_type != "session"  # a health probe: acked, then stopped; no session, no heartbeat


def _bad(message: str, param: str) -> InvalidInput:
    return InvalidInput(message, param=param)


def _seconds(value: object, param: str) -> float:
    if not _real(value) or not 0 <= value <= MAX_SECONDS:
        raise _bad(f"{param} must be a number of seconds from 0 to {MAX_SECONDS:g}, got {value!r}", param)
    return float(value)


def _send_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"send_id must be the integer id of a Send, got {value!r}", "send_id")
    return value


def _work_id(value: object) -> str:
    if not isinstance(value, str):
        raise _bad(f"work_id must be a string, got {value!r}", "work_id")
    return value


class Worker:
    """One worker's driver (see the module docstring). Not thread-safe; one caller drives it.

    ``jitter`` returns floats in [0, 1) (e.g. ``random.Random(seed).random``); without it there is
    no jitter. ``ttl_seconds`` is sent as ``desired_ttl_seconds`` (None: the server's default).
    ``idle_poll_seconds`` is the pause after an empty poll (a server holds a poll for ``block_ms``;
    one that answers at once should not be polled in a busy loop). ``worker_id`` must be a header
    value (visible ASCII, spaces or tabs only inside) and ``token`` a bearer token68, as the
    reference server parses them; seconds are at most :data:`MAX_SECONDS`.
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
        dialect: Dialect | str = QODER,
    ) -> None:
        dialect = _dialect(dialect)
        if not dialect.valid_id("env", environment_id):
            raise _bad(
                f"environment_id must be {dialect.id_rule('env')} ({dialect.name}), got {environment_id!r}",
                "environment_id",
            )
        if not isinstance(worker_id, str) or _HEADER_VALUE.fullmatch(worker_id) is None:
            raise _bad(
                f"worker_id must be a header value (visible ASCII, spaces or tabs only inside), got {worker_id!r}",
                "worker_id",
            )
        if not isinstance(token, str) or bearer_token(f"Bearer {token}") != token:
            raise _bad("token must be a bearer token68 (letters, digits, -._~+/ then any '=')", "token")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise _bad(f"concurrency must be a positive integer, got {concurrency!r}", "concurrency")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1
        ):
            raise _bad(f"ttl_seconds must be a positive integer, got {ttl_seconds!r}", "ttl_seconds")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise _bad(f"retry must be a RetryPolicy, got {retry!r}", "retry")
        if jitter is not None and not callable(jitter):
            raise _bad(f"jitter must be a function returning floats in [0, 1), got {jitter!r}", "jitter")
        margin = _seconds(lease_margin_seconds, "lease_margin_seconds")
        idle = _seconds(idle_poll_seconds, "idle_poll_seconds")
        if isinstance(block_ms, bool) or not isinstance(block_ms, int) or not 1 <= block_ms <= 999:
            raise _bad(f"block_ms must be an integer from 1 to 999, got {block_ms!r}", "block_ms")
        self.environment_id = environment_id
        self.worker_id = worker_id
        self.dialect = dialect
        self.concurrency = concurrency
        self.retry = RetryPolicy() if retry is None else retry
        self._jitter = jitter
        self._margin = timedelta(seconds=margin)
        self._idle = timedelta(seconds=idle)
        self._authorization = f"Bearer {token}"
        self._poll_target = f"{dialect.path(environment_id, operation='poll')}?block_ms={block_ms}"
        # a dialect whose stop answers 204 (no body, so no state to read) is stopped with force: one stop, done
        self._force_stop = dialect.stop_answer is StopAnswer.NO_CONTENT
        self._ttl_query = "" if ttl_seconds is None else f"&desired_ttl_seconds={ttl_seconds}"
        self._items: dict[str, _Item] = {}
        self._sends: dict[int, tuple[str | None, datetime]] = {}  # every send owed an answer: (work id, when sent)
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
        return self._flush(aware(now))

    def receive(self, send_id: int, response: Response, now: datetime) -> Actions:
        """The response to send ``send_id`` arrived."""
        if type(send_id) is not int:  # the common case checked cheaply first (this runs for every response)
            send_id = _send_id(send_id)
        if not isinstance(response, Response):
            raise _bad(f"response must be a workstate.api.Response, got {type(response).__name__}", "response")
        status = response.status
        if not (type(status) is int and 100 <= status <= 599) and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise _bad(f"response.status must be an HTTP status from 100 to 599, got {status!r}", "response")
        now = aware(now)
        self._answer(send_id, response, "", now)
        return self._flush(now)

    def fail(self, send_id: int, now: datetime, reason: str = "no response") -> Actions:
        """Send ``send_id`` got no response (timeout, connection error): retried like a 5xx."""
        send_id = _send_id(send_id)
        if not isinstance(reason, str):
            raise _bad(f"reason must be a string, got {reason!r}", "reason")
        now = aware(now)
        self._answer(send_id, None, reason, now)
        return self._flush(now)

    def done(self, work_id: str, now: datetime) -> Actions:
        """The application finished this item (or drained it): stop it and confirm."""
        work_id = _work_id(work_id)
        now = aware(now)
        item = self._items.get(work_id)
        if item is not None and item.phase in (Phase.RUNNING, Phase.DRAINING):
            if item.lease_until is None or now >= item.lease_until:
                self._lose(item, now, "the lease ran out before the stop was sent")
            else:
                self._begin_stop(item, now, confirming=item.phase is Phase.DRAINING)  # once no heartbeat is in flight
        return self._flush(now)

    # --- what the driver holds, for the caller and for checks ---

    @property
    def items(self) -> tuple[str, ...]:
        """The work ids this worker holds (acked or acking, not yet finished, dropped or aborted)."""
        return tuple(self._items)

    def lease_until(self, work_id: str) -> datetime | None:
        """Until when (worker's clock) this worker believes it holds the lease on ``work_id``, or None."""
        item = self._items.get(_work_id(work_id))
        return None if item is None else item.lease_until

    def phase(self, work_id: str) -> Phase | None:
        item = self._items.get(_work_id(work_id))
        return None if item is None else item.phase

    @property
    def in_flight(self) -> int:
        """How many sends the caller still owes an answer (those of items given up included)."""
        return len(self._sends)

    @property
    def halted(self) -> bool:
        return self._halted

    def next_wake(self) -> datetime | None:
        """The earliest instant at which :meth:`wake` has something to do, or None."""
        # a running minimum (the first of equal instants kept, as min() keeps it), no list: this runs after
        # every call of the driver
        best: datetime | None = None
        items = self._items
        if (
            self._poll_at is not None
            and self._poll_inflight is None
            and len(items) < self.concurrency
            and not self._halted
        ):
            best = self._poll_at
        for item in items.values():
            at = item.lease_until
            if at is not None and (best is None or at < best):
                best = at
            if item.inflight is None:
                at = item.retry_at
                if at is not None and (best is None or at < best):
                    best = at
                at = item.next_beat if item.retry_at is None or not item.confirming else _beat_at(item)
                if at is not None and (best is None or at < best):
                    best = at
        return best

    # --- answers ---

    def _answer(self, send_id: int, response: Response | None, reason: str, now: datetime) -> None:
        """Judge the answer and draw the jitter a retry needs first; only then change anything."""
        found = self._sends.get(send_id)
        if found is None:
            return  # never sent, or answered already
        work_id, sent_at = found
        if work_id is None:
            current = self._poll_inflight == send_id
            verdict = self._judge("poll", response, reason, sent_at) if current else None
            jitter = self._draw() if isinstance(verdict, _Retry) else 0.0
            del self._sends[send_id]
            if current:
                self._poll_inflight = None
                self._on_poll(verdict, jitter, now)
            return
        item = self._items.get(work_id)
        if item is None or item.inflight != send_id or item.kind is None:
            del self._sends[send_id]  # the item was given up (or taken again) since
            return
        kind = item.kind
        verdict = self._judge(kind, response, reason, sent_at, work_id)
        retrying = isinstance(verdict, _Retry) and not self._gives_up(item, kind)
        jitter = self._draw() if retrying else 0.0
        del self._sends[send_id]
        item.inflight = item.kind = None
        if isinstance(verdict, _Retry):
            self._retry(item, kind, verdict.reason, jitter, now)
        elif kind == "ack":
            self._on_ack(item, verdict, now)
        elif kind == "heartbeat":
            self._on_heartbeat(item, verdict, now)
        else:
            self._on_stop(item, verdict, now)

    def _judge(
        self, kind: _Kind, response: Response | None, reason: str, sent_at: datetime, work_id: str | None = None
    ) -> _Verdict:
        """What an answer means, without changing anything. A 200 that is not the answer the request owes
        (another item, a heartbeat in a state no heartbeat answers) is malformed: retried like a 5xx. Keys the
        answer holds besides those the driver reads are ignored."""
        if response is None:
            return _Retry(reason)
        status = response.status
        if kind == "stop" and status == 204 and self._force_stop:
            return State.STOPPED  # the dialect's stop answer (no body): the force stop took
        if kind == "stop" and status == 409 and self.dialect.stop_on_stopped is StopOfStopped.CONFLICT:
            return State.STOPPED  # the dialect refuses a stop of a stopped item: it is stopped already
        if status != 200:
            if _final(status):
                return _Refused(status, _error_message(response), _current_state(response))
            return _Retry(f"{status}: {_error_message(response)}")
        body = response.json
        try:
            if kind == "ack" or kind == "stop":  # the driver reads only whose work object it is, and its state
                assert work_id is not None
                state = work_state(body, work_id, self.environment_id)
                return None if kind == "ack" else state
            if kind == "heartbeat":
                beat = HeartbeatObject.from_json(body)
                # a dialect reports a stopped item with a 200 (lease_extended false): the session must end at once
                ended = beat.state is State.STOPPED and not beat.lease_extended
                if beat.state not in _HEARTBEAT_STATES and not ended:
                    return _Retry(f"malformed heartbeat reply: a heartbeat never leaves an item {beat.state.value!r}")
                lease = timedelta(seconds=beat.ttl_seconds)
                lease_until = sent_at + lease - min(self._margin, lease / 4)
                if lease_until > LATEST:
                    raise OverflowError
                return _Beat(beat, body["last_heartbeat"], sent_at, lease_until)
            work = None if body is None else _read_work(body, self.dialect)  # a poll's answer: null or an item
        except DecodeError as exc:
            return _Retry(f"malformed {kind} reply: {exc.message}")
        except OverflowError:
            return _Retry(f"malformed {kind} reply: ttl_seconds out of range")
        if work is not None and work.environment_id != self.environment_id:
            return _Retry(f"malformed {kind} reply: an item of environment {work.environment_id}")
        return work

    def _draw(self) -> float:
        if self._jitter is None:
            return 1.0
        value = self._jitter()
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise _bad(f"jitter must return a number in [0, 1), got {value!r}", "jitter")
        return float(value)

    def _delay(self, attempt: int, jitter: float) -> timedelta:
        return timedelta(seconds=self.retry.delay(attempt, jitter))

    def _on_poll(self, verdict: _Verdict, jitter: float, now: datetime) -> None:
        if isinstance(verdict, _Retry):  # a server fault or no response: back off and poll again
            self._poll_at = now + self._delay(self._poll_attempt, jitter)
            self._poll_attempt += 1
            return
        if isinstance(verdict, _Refused):
            self._halted = True
            self._events.append(Halted(verdict.status, f"poll answered {verdict.status}: {verdict.message}"))
            return
        self._poll_attempt = 0
        if not isinstance(verdict, WorkObject):
            self._poll_at = now + self._idle
            return
        if verdict.id in self._items:
            return  # a redelivery of an item held already (our ack is slow or was lost): the ack covers it
        self._items[verdict.id] = _Item(verdict, now)

    def _gives_up(self, item: _Item, kind: _Kind) -> bool:
        """Whether one more failure of ``kind`` is the last attempt (a heartbeat with a lease never is)."""
        if kind == "heartbeat":
            return item.lease_until is None and item.beat_attempt + 1 >= self.retry.max_attempts
        return item.attempt + 1 >= self.retry.max_attempts

    def _retry(self, item: _Item, kind: _Kind, reason: str, jitter: float, now: datetime) -> None:
        """A retryable failure (see :class:`_Retry`) of the item's request."""
        if self._gives_up(item, kind):
            n = (item.beat_attempt if kind == "heartbeat" else item.attempt) + 1
            attempts = f"{n} attempt{'' if n == 1 else 's'}"
            if kind == "stop":
                self._finish(item, f"stop not confirmed after {attempts}: {reason}", confirmed=False)
            else:
                self._lose(item, now, f"gave up after {attempts}: {reason}")
            return
        if kind == "heartbeat":  # retried until the lease runs out (the lease's own wake-up ends it)
            item.next_beat = now + self._delay(item.beat_attempt, jitter)
            item.beat_attempt += 1
        else:
            item.retry_at = now + self._delay(item.attempt, jitter)
            item.attempt += 1

    def _on_ack(self, item: _Item, verdict: _Verdict, now: datetime) -> None:
        if isinstance(verdict, _Refused):
            self._forget(item)
            self._events.append(Dropped(item.work_id, f"ack answered {verdict.status}", verdict.status))
            return
        if item.probe:  # the ack answered the probe: stop it (no session runs, no heartbeat holds a lease)
            self._begin_stop(item, now, confirming=True)
            return
        item.phase = Phase.FIRST_BEAT
        item.attempt = 0
        item.beat_attempt = 0
        item.next_beat = now

    def _on_heartbeat(self, item: _Item, verdict: _Verdict, now: datetime) -> None:
        if isinstance(verdict, _Refused):
            status = verdict.status
            why = {412: "412: another holds the lease", 409: "409: the item moved on"}.get(status)
            if status == 412 and verdict.current_state is not None:
                why = f"412: another holds the lease (the item is {verdict.current_state})"
            self._lose(item, now, why or f"heartbeat answered {status}: {verdict.message}")
            return
        assert isinstance(verdict, _Beat)
        beat = verdict.beat
        if beat.state is State.STOPPED:
            if item.phase is Phase.STOPPING:  # our stop took (its reply was lost): nothing more to send
                self._finish(item, "stopped (a heartbeat reply showed it)")
            else:  # stopped by someone else (a force stop): end the session now, send nothing
                self._lose(item, now, "the item was stopped (heartbeat: state stopped, lease_extended: false)")
            return
        if not beat.lease_extended:
            self._lose(item, now, "lease_extended: false")
            return
        if now >= verdict.lease_until:  # the reply came too late: the lease it grants is over already
            self._lose(item, now, "the heartbeat reply came after the lease it granted ran out")
            return
        item.token = verdict.token
        item.ttl = beat.ttl_seconds
        item.lease_until = verdict.lease_until
        item.next_beat = verdict.sent_at + timedelta(seconds=min(beat.ttl_seconds / 2, HEARTBEAT_CAP_SECONDS))
        item.beat_attempt = 0
        stopping = beat.state is State.STOPPING
        if item.phase is Phase.FIRST_BEAT:
            if stopping:  # stopped before it began: nothing to drain, confirm the stop
                self._begin_stop(item, now, confirming=True)
                return
            item.phase = Phase.RUNNING
            item.started = True
            self._events.append(StartWork(item.work_id, item.session_id, item.work))
        elif stopping and item.phase is Phase.RUNNING:
            item.phase = Phase.DRAINING
            item.drained = True
            self._events.append(Drain(item.work_id))

    def _on_stop(self, item: _Item, verdict: _Verdict, now: datetime) -> None:
        if isinstance(verdict, _Refused):
            message = f"stop answered {verdict.status}: {verdict.message}"
            self._finish(item, message, confirmed=False)
            return
        assert isinstance(verdict, State)
        if verdict is State.STOPPED:
            if item.probe:
                self._finish(item, f"{item.work.data_type} answered")
            else:
                self._finish(
                    item, "drained" if item.drained else "completed" if item.started else "stopped before it started"
                )
        elif verdict is State.STOPPING:
            self._begin_stop(item, now, confirming=True)  # the graceful stop took: confirm it (a new stop)
        else:
            self._finish(item, f"stop left the item {verdict.value!r}", confirmed=False)

    # --- sending ---

    def _headers(self, kind: _Kind) -> dict[str, str]:
        """A new dict for every request: a caller may add to one request's headers. The worker's identity goes on
        every poll, and on the other requests where the dialect's ack compares it (the ``qoder`` dialect)."""
        headers = {"Authorization": self._authorization}
        if kind == "poll" or self.dialect.ack_checks_worker:
            headers[self.dialect.worker_header] = self.worker_id
        return headers

    def _send_request(self, request: Request, work_id: str | None, now: datetime) -> int:
        self._next_id += 1
        send_id = self._next_id
        self._sends[send_id] = (work_id, now)
        self._out.append(Send(send_id, request, work_id))
        return send_id

    def _send(self, item: _Item, kind: _Kind, now: datetime) -> None:
        target = self.dialect.path(self.environment_id, item.work_id, kind)
        if kind == "heartbeat":
            target += f"?expected_last_heartbeat={quote(item.token, safe='')}{self._ttl_query}"
        headers, body = self._headers(kind), b""
        if kind == "stop" and self._force_stop:
            headers["Content-Type"] = "application/json"
            body = b'{"force":true}'
        item.kind = kind
        item.inflight = self._send_request(Request("POST", target, headers, body), item.work_id, now)

    def _begin_stop(self, item: _Item, now: datetime, *, confirming: bool) -> None:
        """A new stop (graceful, or the confirmation): due now, with its own attempts."""
        item.phase = Phase.STOPPING
        item.confirming = confirming
        item.attempt = 0
        item.retry_at = now

    def _due(self, item: _Item, now: datetime) -> None:
        """Notice a lease that ran out; else send the item's heartbeat, ack or stop if one is due."""
        if item.lease_until is not None and now >= item.lease_until:
            self._lose(item, now, "no successful heartbeat for a whole TTL")
            return
        if item.inflight is not None:
            return
        beat, other = _beat_at(item), item.retry_at
        if beat is not None and now >= beat and (other is None or beat <= other):
            item.next_beat = None  # the heartbeat first: the stop resumes after its reply
            self._send(item, "heartbeat", now)
        elif other is not None and now >= other:
            item.retry_at = None
            if item.phase is Phase.ACKING:
                self._send(item, "ack", now)
            elif item.lease_until is None and not item.probe:
                self._lose(item, now, "the lease ran out before the stop was sent")
            else:
                self._send(item, "stop", now)  # only while the lease is believed held

    def _flush(self, now: datetime) -> Actions:
        # a cheap look first: _due only where something may be due (_due changes only its own item, so the
        # items are looked at before any is acted on)
        due = [
            item
            for item in self._items.values()
            if (item.lease_until is not None and now >= item.lease_until)
            or (
                item.inflight is None
                and (
                    (item.retry_at is not None and now >= item.retry_at)
                    or (item.next_beat is not None and now >= item.next_beat)
                )
            )
        ]
        for item in due:
            self._due(item, now)
        if (
            not self._halted
            and self._poll_inflight is None
            and len(self._items) < self.concurrency
            and (self._poll_at is None or self._poll_at <= now)
        ):
            self._poll_at = None
            self._poll_inflight = self._send_request(
                Request("GET", self._poll_target, self._headers("poll")), None, now
            )
        sends, events = tuple(self._out), tuple(self._events)
        self._out.clear()
        self._events.clear()
        return Actions(sends, events, self.next_wake())

    # --- giving items up ---

    def _forget(self, item: _Item) -> None:
        """Hold the item no more; a send still in flight stays owed an answer, which is then ignored."""
        self._items.pop(item.work_id, None)
        item.inflight = item.kind = None

    def _lose(self, item: _Item, now: datetime, reason: str) -> None:
        """The lease is lost (or the item was never ours): give it up without a stop.

        :class:`Abort` if the application runs (or drains) the item, :class:`Dropped` if it never
        started, ``Finished(confirmed=False)`` if the application is done with it and the stop was
        not confirmed yet.
        """
        self._forget(item)
        if item.phase is Phase.STOPPING:
            self._events.append(Finished(item.work_id, f"stop not confirmed: {reason}", confirmed=False))
        elif item.started:
            self._events.append(Abort(item.work_id, reason))
        else:
            self._events.append(Dropped(item.work_id, reason))

    def _finish(self, item: _Item, reason: str, confirmed: bool = True) -> None:
        self._forget(item)
        self._events.append(Finished(item.work_id, reason, confirmed))


def _dialect(value: object) -> Dialect:
    """A :class:`~workstate.Dialect`, or the shipped one of that name; :class:`InvalidInput` otherwise."""
    return value if isinstance(value, Dialect) else dialect_named(value)  # type: ignore[arg-type]


def _read_work(body: Any, dialect: Dialect) -> WorkObject:
    """A poll's work object, decoded tolerantly in the dialect (a peer's ``secret`` is read, unknown keys ignored)."""
    return WorkObject.from_json(body, dialect=dialect)


def _current_state(response: Response) -> str | None:
    """``error.details.current_state.state`` of an error answer (a dialect's 412 names the item's state), or None."""
    body: Any = response.json
    found: Any = body
    for key in ("error", "details", "current_state", "state"):
        found = found.get(key) if isinstance(found, dict) else None
    return found if isinstance(found, str) else None


def _error_message(response: Response) -> str:
    body: Any = response.json
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message
    return "no error message"


def _beat_at(item: _Item) -> datetime | None:
    """When the item's next heartbeat goes (None: not now).

    While a graceful stop is retried the server may still hold the item ``active``, and a lapse would
    re-queue work the application has finished: heartbeats keep their usual times. Once the server holds
    it ``stopping`` (the stop being retried is the confirmation), a lapse would only stop it, and a
    confirmation whose reply was lost has stopped it already (a heartbeat would meet a 409 and leave the
    worker unsure): a retry due while the lease holds goes first, and only when the next retry falls after
    the lease's end does a heartbeat go, halfway from its usual time to the end of the lease.
    """
    beat = item.next_beat
    if beat is None or item.retry_at is None or not item.confirming or item.lease_until is None:
        return beat
    if item.retry_at < item.lease_until:
        return None
    return max(beat, beat + (item.lease_until - beat) / 2)
