"""``workstate simulate``: a fleet of worker drivers against the reference server, under faults, by seed.

A deterministic discrete-event simulation: one event queue keyed by simulated time, no wall clock,
no sleeping. N :class:`~workstate.worker.Worker` drivers poll, ack, heartbeat and stop work items
on one :class:`~workstate.api.Server`; the network between them loses, duplicates and delays
requests and responses, the server sometimes answers 503, workers crash (right after an ack,
while running an item, while draining) and come back under a new Worker-ID, are cut off from the
network for a while, and run on clocks skewed against the server's; an operator stops items from
outside; new work arrives over time. Every random choice comes from sources the caller injects:
``make_random(config.seed)`` draws the run's choices, and each worker's retry jitter comes from its own
``make_random(bits)``, ``bits`` drawn from the first (the command passes ``random.Random``). The same seed
and the same factory give the same run.

After every step the invariants of api.md §7 are checked (:mod:`workstate.invariants`) on
what that step touched: every item the server wrote (1, 2, 3, 8), the item a rejected request or
an ack replay named (5, 4), the leases the drivers believe they hold on the item a driver call
touched (7). No work lost (6) and stats agreeing with the queue (9) are checked periodically and
at the end.
"""

from __future__ import annotations

import enum
import heapq
import math
import shlex
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from .._time import UTC
from ..api import Request, Response, Server
from ..api.codec import dumps
from ..dialect import DIALECTS, QODER, Dialect
from ..errors import InvalidInput
from ..invariants import (
    Violation,
    item_problems,
    lease_problems,
    rejection_problems,
    replay_problems,
    stats_problems,
)
from ..model import WorkItem
from ..policy import Policy
from ..rules import State
from ..worker import Abort, Actions, Drain, Dropped, Finished, Halted, Send, StartWork, Worker

__all__ = [
    "Faults",
    "RandomFactory",
    "RandomSource",
    "Report",
    "SimConfig",
    "SimulationInterrupted",
    "default_policy",
    "simulate",
]

T0 = datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC)
_AUTH = {"Authorization": "Bearer operator"}
_FORCE = dumps({"force": True})


# The caps of a run, measured on a 2-core machine (docs/worker-guide.md): each one alone finishes within
# minutes; 10,000 workers over 1,000 simulated seconds (10,000,000 worker-seconds) took about ten minutes,
# 1,000,000 items about three minutes and 0.7 GB. Idle workers poll once a simulated second, so the cost of
# a run grows with workers x duration, which has its own cap.
MAX_WORKERS = 10_000
MAX_ITEMS = 1_000_000
MAX_DURATION = 86_400.0  # simulated seconds
MAX_WORKER_SECONDS = 10_000_000  # workers x duration
MAX_CONCURRENCY = 1_000
MAX_FAULT_LEVEL = 100.0


def _invalid(name: str, what: str, value: object) -> InvalidInput:
    return InvalidInput(f"{name} must be {what}, got {value!r}", param=name)


def _whole(low: int, high: int | None = None) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: an integer (not a bool) from ``low`` to ``high``."""
    what = f"an integer >= {low:,}" if high is None else f"an integer from {low:,} to {high:,}"

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise _invalid(attribute.name, what, value)

    return check


def _real(low: float, high: float, *, above_low: bool = False) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: a finite number (int or float, not a bool) in [low, high], or (low, high]."""
    what = f"a number {'above' if above_low else 'from'} {low:,g} {'and at most' if above_low else 'to'} {high:,g}"

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _invalid(attribute.name, what, value)
        if value > high or value < low or (above_low and value == low):
            raise _invalid(attribute.name, what, value)

    return check


def _of_type(kind: type, what: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, kind):
            raise _invalid(attribute.name, what, value)

    return check


def _callable(_instance: Any, attribute: Any, value: Any) -> None:
    if not callable(value):
        raise _invalid(attribute.name, "callable (a Worker class or a function that makes one)", value)


_RATE = _real(0.0, 1.0)


@attrs.frozen
class Faults:
    """Fault rates; ``Faults.scaled(1.0)`` is the default mix, ``Faults.scaled(0)`` none at all.

    Every rate is a probability from 0 to 1; ``skew_seconds`` from 0 to 86,400. Anything else raises
    :class:`~workstate.errors.InvalidInput` naming the field.
    """

    lose_request: float = attrs.field(default=0.0, validator=_RATE)
    lose_response: float = attrs.field(default=0.0, validator=_RATE)
    duplicate_request: float = attrs.field(default=0.0, validator=_RATE)
    duplicate_response: float = attrs.field(default=0.0, validator=_RATE)
    slow: float = attrs.field(default=0.0, validator=_RATE)  # a message delayed past the request timeout
    server_error: float = attrs.field(default=0.0, validator=_RATE)  # the server answers 503 without handling it
    crash_after_ack: float = attrs.field(default=0.0, validator=_RATE)
    crash_while_running: float = attrs.field(default=0.0, validator=_RATE)
    crash_while_draining: float = attrs.field(default=0.0, validator=_RATE)
    # per started item: the worker is cut off from the network for a while
    partition: float = attrs.field(default=0.0, validator=_RATE)
    # per created item: an operator stops it at some point (a fifth forced)
    outside_stop: float = attrs.field(default=0.0, validator=_RATE)
    # each worker's clock is off by up to this much, either way
    skew_seconds: float = attrs.field(default=0.0, validator=_real(0.0, MAX_DURATION))

    @classmethod
    def scaled(cls, level: float) -> Faults:
        """The default mix times ``level``, a finite number >= 0: each rate capped at 0.5, the skew at 30 s."""
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level < math.inf:
            raise _invalid("level", "a finite number >= 0", level)

        def p(rate: float) -> float:
            return min(0.5, rate * level)

        return cls(
            lose_request=p(0.01),
            lose_response=p(0.01),
            duplicate_request=p(0.01),
            duplicate_response=p(0.01),
            slow=p(0.005),
            server_error=p(0.01),
            crash_after_ack=p(0.005),
            crash_while_running=p(0.005),
            crash_while_draining=p(0.02),
            partition=p(0.005),
            outside_stop=p(0.03),
            skew_seconds=min(30.0, 2.0 * level),
        )


WorkerFactory = Callable[..., Worker]


class RandomSource(Protocol):
    """What the simulation draws from: the methods of ``random.Random`` it uses."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...

    def expovariate(self, lambd: float) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


RandomFactory = Callable[[int], RandomSource]
"""Makes a :class:`RandomSource` from a seed (an integer >= 0), e.g. ``random.Random``: :func:`simulate` calls
it once with ``config.seed`` and once per worker (re)start with 64 bits drawn from the first source."""


def default_policy(dialect: Dialect) -> Policy:
    """A simulation's default policy: the dialect's, with a 20 s start timeout (a run is minutes long)."""
    return attrs.evolve(dialect.policy if isinstance(dialect, Dialect) else Policy(), start_timeout_seconds=20.0)


@attrs.frozen
class SimConfig:
    """One simulation. Every field is checked when the config is made: a value out of its domain raises
    :class:`~workstate.errors.InvalidInput` naming the field, before anything runs.

    ``seed`` an integer >= 0 (``random.Random`` gives a negative seed the run of its absolute value, so
    negative seeds are refused); ``workers`` 1 to 10,000; ``items`` 1 to 1,000,000; ``duration`` more than 0
    and at most 86,400 simulated seconds; ``workers * duration`` at most 10,000,000 worker-seconds (idle
    workers poll every simulated second: that is about ten minutes of running); ``concurrency`` 1 to 1,000;
    ``ttl_seconds`` 1 to 86,400; ``work_seconds`` 0 to 86,400; ``request_timeout`` more than 0 and at most
    3,600; ``faults`` a :class:`Faults`; ``policy`` a :class:`~workstate.Policy` (default: the dialect's, with a
    20 s start timeout); ``worker_factory`` callable (given ``dialect=`` when the dialect is not ``qoder``);
    ``check`` and ``stop_at_first_violation`` bools; ``dialect`` (by keyword) a :class:`~workstate.Dialect`, the
    one the reference server and the worker drivers speak.
    """

    seed: int = attrs.field(default=1, validator=_whole(0))
    workers: int = attrs.field(default=25, validator=_whole(1, MAX_WORKERS))
    items: int = attrs.field(default=5000, validator=_whole(1, MAX_ITEMS))
    # simulated seconds over which items arrive
    duration: float = attrs.field(default=600.0, validator=_real(0.0, MAX_DURATION, above_low=True))
    faults: Faults = attrs.field(factory=lambda: Faults.scaled(1.0), validator=_of_type(Faults, "a Faults value"))
    concurrency: int = attrs.field(default=4, validator=_whole(1, MAX_CONCURRENCY))
    ttl_seconds: int = attrs.field(default=10, validator=_whole(1, 86_400))
    # mean time an item runs (exponential), a tenth of the items ten times longer
    work_seconds: float = attrs.field(default=3.0, validator=_real(0.0, MAX_DURATION))
    request_timeout: float = attrs.field(default=2.0, validator=_real(0.0, 3600.0, above_low=True))
    # the dialect the server and the drivers speak (set by keyword; declared here so that policy's default reads it)
    dialect: Dialect = attrs.field(default=QODER, kw_only=True, validator=_of_type(Dialect, "a Dialect"))
    policy: Policy = attrs.field(
        default=attrs.Factory(lambda self: default_policy(self.dialect), takes_self=True),
        validator=_of_type(Policy, "a Policy"),
    )
    worker_factory: WorkerFactory = attrs.field(default=Worker, validator=_callable)
    check: bool = attrs.field(default=True, validator=_of_type(bool, "True or False"))
    stop_at_first_violation: bool = attrs.field(default=False, validator=_of_type(bool, "True or False"))

    def __attrs_post_init__(self) -> None:
        if self.workers * self.duration > MAX_WORKER_SECONDS:
            raise InvalidInput(
                f"workers x duration must be at most {MAX_WORKER_SECONDS:,} worker-seconds (about ten minutes of "
                f"running), got {self.workers:,} x {self.duration:,g}",
                param="workers",
            )


@attrs.frozen
class Report:
    seed: int
    config: SimConfig
    simulated_seconds: float
    created: int
    completed: int  # lifecycles a worker ran and confirmed stopped
    drained: int  # stopped from outside while running; the worker drained and confirmed
    stopped_otherwise: int  # stopped before a worker ran them, or by a lapse in stopping, or forced
    live_at_end: int
    requeued: tuple[tuple[str, int], ...]
    statuses: tuple[tuple[str, int], ...]  # "heartbeat 412" -> count
    worker_events: tuple[tuple[str, int], ...]
    faults_injected: tuple[tuple[str, int], ...]
    start_latency: tuple[float, ...]  # seconds from creation to a worker's StartWork, sorted
    requests: int
    violations: tuple[Violation, ...]
    events: int
    interrupted: bool = False  # Ctrl-C stopped the run: the counts so far, no final checks

    @property
    def ok(self) -> bool:
        return not self.violations

    def percentile(self, q: float) -> float | None:
        data = self.start_latency
        if not data:
            return None
        return data[min(len(data) - 1, int(q * len(data)))]

    def render(self) -> str:
        command, unset = _command_line(self.config)
        lines = [command]
        if unset:
            lines.append(f"  (set from Python; the command line cannot set: {', '.join(unset)})")
        lines += [
            f"simulated {self.simulated_seconds:,.0f} s, {self.events:,} events, {self.requests:,} requests",
        ]
        if self.interrupted:
            lines.append("INTERRUPTED (Ctrl-C): a partial report, the counts so far; the final checks did not run")
        lines += [
            "",
            f"work items created            {self.created:>8,}",
            f"  lifecycles completed        {self.completed:>8,}   (ran, stopped, confirmed by the worker)",
            f"  drained after outside stop  {self.drained:>8,}",
            f"  stopped otherwise           {self.stopped_otherwise:>8,}   (before running, forced, or drain expired)",
            f"  still live at the end       {self.live_at_end:>8,}",
        ]
        lines.append("re-queued")
        lines += [f"  {why:<28}{n:>8,}" for why, n in self.requeued] or ["  none"]
        lines.append("conflicts and precondition failures seen")
        lines += [f"  {what:<28}{n:>8,}" for what, n in self.statuses] or ["  none"]
        lines.append("worker events")
        lines += [f"  {what:<28}{n:>8,}" for what, n in self.worker_events]
        lines.append("faults injected")
        lines += [f"  {what:<28}{n:>8,}" for what, n in self.faults_injected] or ["  none"]
        if self.start_latency:
            marks = ", ".join(f"p{int(q * 100)} {self.percentile(q) or 0.0:.2f} s" for q in (0.5, 0.9, 0.99))
            lines.append(f"creation to start             {marks}, max {self.start_latency[-1]:.2f} s")
        lines.append("")
        if self.violations:
            lines.append(f"BROKEN INVARIANTS: {len(self.violations)} (reproduce with --seed {self.seed})")
            lines += [f"  {v}" for v in self.violations[:20]]
            if len(self.violations) > 20:
                lines.append(f"  ... and {len(self.violations) - 20} more")
        elif self.interrupted:
            lines.append("every invariant of api.md §7 held after every step so far")
        else:
            lines.append("every invariant of api.md §7 held after every step")
        return "\n".join(lines)


class SimulationInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) during :func:`simulate`: still a ``KeyboardInterrupt``, carrying in
    ``report`` what the run had seen so far (``Report.interrupted`` set; the final checks did not run)."""

    def __init__(self, report: Report) -> None:
        super().__init__("simulation interrupted")
        self.report = report


_CLI_FIELDS = ("seed", "workers", "items", "duration", "faults", "concurrency", "dialect", "policy")


def _policy_words(policy: Policy, base: Policy) -> list[str]:
    """The ``--policy NAME=VALUE`` words that make ``policy`` from ``base`` (none when they are equal)."""
    words: list[str] = []
    for field in attrs.fields(Policy):
        value = getattr(policy, field.name)
        if value == getattr(base, field.name):
            continue
        shown = (
            value.value
            if isinstance(value, enum.Enum)
            else str(value).lower()
            if isinstance(value, bool)
            else repr(value)
        )
        words += ["--policy", f"{field.name}={shown}"]
    return words


def _command_line(config: SimConfig) -> tuple[str, tuple[str, ...]]:
    """The ``workstate simulate`` command that makes ``config`` (every option that changes the run, with
    values that read back exactly), and the fields it cannot set: when there are none, it reproduces the run."""
    level = _level(config.faults)
    words = ["workstate", "simulate", "--seed", str(config.seed), "--workers", str(config.workers)]
    words += ["--items", str(config.items), "--duration", _exact(float(config.duration))]
    if level is not None:
        words += ["--faults", _exact(level)]
    words += ["--concurrency", str(config.concurrency)]
    shipped = DIALECTS.get(config.dialect.name) == config.dialect  # --dialect names only the shipped ones
    if config.dialect != QODER and shipped:
        words += ["--dialect", config.dialect.name]
    default = type(config)(dialect=config.dialect)
    words += _policy_words(config.policy, default.policy)
    unset = ["faults"] if level is None else []
    unset += [] if shipped else ["dialect"]
    unset += [
        field.name
        for field in attrs.fields(type(config))
        if field.name not in _CLI_FIELDS and getattr(config, field.name) != getattr(default, field.name)
    ]
    return shlex.join(words), tuple(sorted(unset, key=[f.name for f in attrs.fields(type(config))].index))


def _exact(value: float) -> str:
    """``value`` in as few digits as read back to the very same float (``600`` rather than ``600.0``)."""
    text = repr(value)  # the shortest digits that read back to the same float
    return text.removesuffix(".0")


# The rates of Faults.scaled(1); each saturates at 0.5 (and the skew at 30 s) as the level grows.
_BASE = Faults.scaled(1.0)


def _level(faults: Faults) -> float | None:
    """The ``--faults`` level from 0 to 100 whose :meth:`Faults.scaled` mix is ``faults`` (the simplest such
    number), or None when no level gives it. A rate alone will not do: ``scaled`` caps every rate at 0.5,
    so 50 and 100 agree on ``lose_request``; the rates not yet capped tell them apart."""
    if faults == Faults.scaled(0.0):
        return 0.0
    guesses = [MAX_FAULT_LEVEL]
    for field in attrs.fields(Faults):
        value, base = getattr(faults, field.name), getattr(_BASE, field.name)
        cap = 30.0 if field.name == "skew_seconds" else 0.5
        if base and 0 < value < cap:
            guesses.append(value / base)
    for guess in guesses:
        if not 0 < guess <= MAX_FAULT_LEVEL:
            continue
        near, below, above = [guess], guess, guess  # the division may be a float or two off
        for _ in range(4):
            below, above = math.nextafter(below, 0.0), math.nextafter(above, math.inf)
            near += [below, above]
        for candidate in sorted(near, key=lambda x: len(_exact(x))):
            if 0 < candidate <= MAX_FAULT_LEVEL and Faults.scaled(candidate) == faults:
                return float(_exact(candidate))
    return None


_heappush, _heappop = heapq.heappush, heapq.heappop

# event kinds
_ARRIVE, _RESPOND, _TIMEOUT, _WAKE, _APP, _CRASH, _RESTART, _CREATE, _OUTSIDE, _STATS = range(10)


class _Proc:
    """One worker process: its driver, its incarnation, its clock skew and what its application runs."""

    __slots__ = ("cut_until", "driver", "held", "incarnation", "index", "running", "skew", "wake_at")

    def __init__(self, index: int, incarnation: int, driver: Worker, skew: timedelta) -> None:
        self.index = index
        self.incarnation = incarnation
        self.driver = driver
        self.skew = skew  # worker clock = true time + skew
        self.wake_at: datetime | None = None
        self.held: set[str] = set()  # items this driver believes it holds a lease on
        self.running: dict[str, int] = {}  # work id -> application run token
        self.cut_until: datetime | None = None  # partitioned from the network until then


class _Sim:
    def __init__(
        self, config: SimConfig, make_random: RandomFactory, progress: Callable[[float, int, int], None] | None
    ) -> None:
        self.c = config
        self.check = config.check
        self.f = config.faults
        self.make_random = make_random
        self.rng = make_random(config.seed)
        self.changes: list[tuple[WorkItem | None, WorkItem]] = []  # every item the server wrote, not yet checked
        self.server = Server(config.policy, dialect=config.dialect, on_change=self._changed)
        self.env = self.server.create_environment(now=T0)
        self.queue: list[tuple[datetime, int, int, Any]] = []
        self.seq = 0
        self.now = T0
        self.items: dict[str, WorkItem] = {}  # the shadow: every item as the server last wrote it
        self.created_at: dict[str, datetime] = {}
        self.queued = 0
        self.live = 0
        self.holders: dict[str, dict[str, datetime]] = {}  # work id -> worker id -> believed deadline (true time)
        self.violations: list[Violation] = []
        self.requeued: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.worker_events: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.latency: list[float] = []
        self.completed = self.drained = 0
        self.requests = 0
        self.events = 0
        self.timeout = timedelta(seconds=config.request_timeout)
        self.progress = progress
        self.procs: list[_Proc] = []
        self.run_token = 0
        self.sessions = 0
        self.last_wake: tuple[datetime, _Proc | None] = (T0, None)
        self.busy = 0
        self.arrivals: list[tuple[datetime, int]] = []  # the items' creations not yet queued, the latest first

    # --- the queue ---

    def _changed(self, env: str, old: WorkItem | None, new: WorkItem) -> None:
        self.changes.append((old, new))

    def push(self, at: datetime, kind: int, payload: Any) -> None:
        self.seq = seq = self.seq + 1
        _heappush(self.queue, (at, seq, kind, payload))

    def _next_arrival(self) -> None:
        if self.arrivals:
            at, seq = self.arrivals.pop()
            heapq.heappush(self.queue, (at, seq, _CREATE, None))

    def seconds(self, s: float) -> timedelta:
        return timedelta(seconds=s)  # the hot paths call timedelta itself

    # --- setup ---

    def spawn(self, index: int, incarnation: int) -> _Proc:
        f, rng = self.f, self.rng
        skew = timedelta(seconds=(rng.random() * 2 - 1) * f.skew_seconds)
        jitter = self.make_random(rng.getrandbits(64)).random
        dialect = {} if self.c.dialect == QODER else {"dialect": self.c.dialect}
        driver = self.c.worker_factory(
            self.env,
            f"w{index}" if incarnation == 0 else f"w{index}.{incarnation}",
            concurrency=self.c.concurrency,
            ttl_seconds=self.c.ttl_seconds,
            jitter=jitter,
            lease_margin_seconds=1.0,
            idle_poll_seconds=1.0,
            **dialect,
        )
        proc = _Proc(index, incarnation, driver, skew)
        if index < len(self.procs):
            self.procs[index] = proc
        else:
            self.procs.append(proc)
        self.apply(proc, driver.start(self.now + skew), None)
        return proc

    def run(self) -> Report:
        c, rng = self.c, self.rng
        arrivals = self.arrivals
        for i in range(c.items):  # arrivals spread over the duration, the first fifth at once
            offset = 0.0 if i < c.items // 5 else rng.random() * c.duration
            self.seq += 1
            arrivals.append((T0 + timedelta(seconds=offset), self.seq))
        # Only the next arrival waits in the queue (on_create queues the one after it): a queue of every
        # arrival made each push and pop cost log(items). Each keeps the number it was drawn with, so the
        # events come out in the very order one queue of them all gave.
        arrivals.sort(reverse=True)
        self._next_arrival()
        for i in range(c.workers):
            self.spawn(i, 0)
        self.push(T0 + timedelta(seconds=5), _STATS, None)
        limit = T0 + timedelta(seconds=c.duration * 2 + 3600)
        handlers: dict[int, Callable[[Any], None]] = {
            _ARRIVE: self.on_arrive,
            _RESPOND: self.on_respond,
            _TIMEOUT: self.on_timeout,
            _WAKE: self.on_wake,
            _APP: self.on_app,
            _CRASH: self.on_crash,
            _RESTART: self.on_restart,
            _CREATE: self.on_create,
            _OUTSIDE: self.on_outside,
            _STATS: self.on_stats,
        }
        try:
            self._loop(handlers, limit)
        except KeyboardInterrupt:
            raise SimulationInterrupted(attrs.evolve(self.report(), interrupted=True)) from None
        self.final_checks()
        return self.report()

    def _loop(self, handlers: dict[int, Callable[[Any], None]], limit: datetime) -> None:
        c = self.c
        created_all = False
        queue, created_at, violations, progress = self.queue, self.created_at, self.violations, self.progress
        items, first_violation = c.items, c.stop_at_first_violation
        dispatch = [handlers[kind] for kind in range(len(handlers))]
        while queue:
            at, _, kind, payload = _heappop(queue)
            if at > limit:
                break
            self.now = at
            self.events = events = self.events + 1
            dispatch[kind](payload)
            if not created_all and len(created_at) == items:
                created_all = True
            if created_all and self.live == 0 and not any(p.driver.items for p in self.procs):
                break
            if progress is not None and events % 4096 == 0:
                progress((at - T0).total_seconds(), len(created_at) - self.live, items)
            if violations and first_violation:
                break

    # --- driver plumbing ---

    def apply(self, proc: _Proc, actions: Actions, touched: str | None) -> None:
        """Carry out a driver's actions: schedule its sends, hand its events to the application, its wake."""
        for send in actions.sends:
            self.transmit(proc, send)
        for event in actions.events:
            self.on_event(proc, event)
        wake = actions.wake_at
        if wake is not None and wake != proc.wake_at:
            proc.wake_at = wake
            at = wake - proc.skew
            self.push(at if at > self.now else self.now, _WAKE, (proc, proc.incarnation))
        if self.check:
            if touched is None:
                held = proc.held
                for work_id in held.union(proc.driver.items) if held else proc.driver.items:
                    self.check_lease(proc, work_id)
            else:
                self.check_lease(proc, touched)

    def check_lease(self, proc: _Proc, work_id: str) -> None:
        until = proc.driver.lease_until(work_id)
        wid = proc.driver.worker_id
        if until is None:
            if work_id in proc.held:
                proc.held.discard(work_id)
                holders = self.holders.get(work_id)
                if holders is not None:
                    holders.pop(wid, None)
            return
        proc.held.add(work_id)
        holders = self.holders.setdefault(work_id, {})
        holders[wid] = until - proc.skew
        if len(holders) > 1:
            found = lease_problems(((w, work_id, d) for w, d in holders.items()), self.now)
            for v in found:
                self.violation(v)
            for w, d in list(holders.items()):  # forget expired beliefs
                if d <= self.now:
                    del holders[w]

    def violation(self, v: Violation) -> None:
        if len(self.violations) < 1000:
            self.violations.append(attrs.evolve(v, message=f"{v.message} (t={self.t():.3f} s)"))

    def t(self) -> float:
        return (self.now - T0).total_seconds()

    def transmit(self, proc: _Proc, send: Send) -> None:
        f, rng, now = self.f, self.rng, self.now
        sent = now
        if proc.cut_until is not None and now < proc.cut_until:
            self.injected["request lost (partition)"] += 1
            self.push(now + self.timeout, _TIMEOUT, (proc, proc.incarnation, send.id))
            return
        if rng.random() < f.lose_request:
            self.injected["request lost"] += 1
            self.push(now + self.timeout, _TIMEOUT, (proc, proc.incarnation, send.id))
            return
        delay = 0.001 + rng.random() * 0.02
        if rng.random() < f.slow:
            self.injected["request slow"] += 1
            delay += self.c.request_timeout
        self.push(now + timedelta(seconds=delay), _ARRIVE, (proc, proc.incarnation, send, sent, False))
        if rng.random() < f.duplicate_request:
            self.injected["request duplicated"] += 1
            self.push(
                now + timedelta(seconds=delay + rng.random() * 0.5), _ARRIVE, (proc, proc.incarnation, send, sent, True)
            )
        if send.work_id is not None and send.request.target.endswith("/ack") and rng.random() < f.crash_after_ack:
            self.injected["crash after ack"] += 1
            self.push(now + timedelta(seconds=0.0005), _CRASH, (proc, proc.incarnation))

    # --- server side ---

    def serve(self, request: Request, work_id: str | None) -> Response:
        """One request through the server at ``now``, with the invariants checked on what it touched."""
        server, now = self.server, self.now
        self.requests += 1
        server.expire(now)
        if self.changes:
            self.absorb(self.changes)
            self.changes = []
        before = None if work_id is None else self.items.get(work_id)
        response = server.handle(request, now)
        changes = self.changes
        if changes:
            self.changes = []
            self.absorb(changes)
        if self.c.check and before is not None:
            after = self.items[work_id]  # type: ignore[index]
            if response.status >= 400:
                for v in rejection_problems(before, after):
                    self.violation(v)
            elif request.target.endswith("/ack") and before.state in (State.STARTING, State.ACTIVE):
                for v in replay_problems(before, after):
                    self.violation(v)
        return response

    def absorb(self, changes: list[tuple[WorkItem | None, WorkItem]]) -> None:
        policy, items, check = self.c.policy, self.items, self.c.check
        for old, new in changes:
            shadow = items.get(new.id)
            if old is not shadow:  # the server wrote over an item it never showed us
                self.violation(Violation(6, new.id, "the server replaced an item the simulation never saw"))
            items[new.id] = new
            if check:
                for v in item_problems(old, new, policy):
                    self.violation(v)
            was_q = old is not None and old.state is State.QUEUED
            is_q = new.state is State.QUEUED
            self.queued += is_q - was_q
            was_live = old is not None and old.state is not State.STOPPED
            is_live = new.state is not State.STOPPED
            self.live += is_live - was_live
            if old is not None and is_q and not was_q:
                self.requeued["start timeout" if old.state is State.STARTING else "lease expired"] += 1

    def on_arrive(self, payload: Any) -> None:
        proc, incarnation, send, sent, duplicate = payload
        f, rng = self.f, self.rng
        if rng.random() < f.server_error:
            self.injected["server answered 503"] += 1
            response = Response(503, {"type": "error"}, b'{"type":"error"}')
        else:
            response = self.serve(send.request, send.work_id)
            if response.status in (409, 412):
                self.statuses[f"{_endpoint(send.request.target)} {response.status}"] += 1
        if duplicate:
            return  # the copy's response is dropped by the network
        if proc.cut_until is not None and self.now < proc.cut_until:
            self.injected["response lost (partition)"] += 1
            self.push(sent + self.timeout, _TIMEOUT, (proc, incarnation, send.id))
            return
        if rng.random() < f.lose_response:
            self.injected["response lost"] += 1
            self.push(max(self.now, sent + self.timeout), _TIMEOUT, (proc, incarnation, send.id))
            return
        back = self.now + timedelta(seconds=0.001 + rng.random() * 0.02)
        if rng.random() < f.slow:
            self.injected["response slow"] += 1
            back += self.timeout
        if back - sent >= self.timeout:
            self.push(sent + self.timeout, _TIMEOUT, (proc, incarnation, send.id))
        self.push(back, _RESPOND, (proc, incarnation, send, response))
        if rng.random() < f.duplicate_response:
            self.injected["response duplicated"] += 1
            self.push(back + timedelta(seconds=rng.random() * 0.2), _RESPOND, (proc, incarnation, send, response))

    # --- worker side ---

    def alive(self, proc: _Proc, incarnation: int) -> bool:
        return self.procs[proc.index] is proc and proc.incarnation == incarnation

    def on_respond(self, payload: Any) -> None:
        proc, incarnation, send, response = payload
        if proc.incarnation == incarnation and self.procs[proc.index] is proc:  # alive(), inline: every response
            self.apply(proc, proc.driver.receive(send.id, response, self.now + proc.skew), send.work_id)

    def on_timeout(self, payload: Any) -> None:
        proc, incarnation, send_id = payload
        if self.alive(proc, incarnation):
            self.apply(proc, proc.driver.fail(send_id, self.now + proc.skew, "timeout"), None)

    def on_wake(self, payload: Any) -> None:
        proc: _Proc
        proc, incarnation = payload
        if (
            proc.wake_at is not None
            and proc.incarnation == incarnation
            and self.procs[proc.index] is proc
            and proc.wake_at - proc.skew <= self.now
        ):
            if self.now == self.last_wake[0] and proc is self.last_wake[1]:
                self.busy += 1
                if self.busy > 1000:
                    raise RuntimeError(f"{proc.driver.worker_id} asks to be woken at {proc.wake_at} again and again")
            else:
                self.busy = 0
                self.last_wake = (self.now, proc)
            proc.wake_at = None
            self.apply(proc, proc.driver.wake(self.now + proc.skew), None)

    def on_event(self, proc: _Proc, event: Any) -> None:
        rng, f, now = self.rng, self.f, self.now
        self.worker_events[type(event).__name__] += 1
        if isinstance(event, StartWork):
            self.latency.append((now - self.items[event.work_id].created_at).total_seconds())
            self.run_token += 1
            proc.running[event.work_id] = self.run_token
            mean = self.c.work_seconds * (10 if rng.random() < 0.1 else 1)
            runs = rng.expovariate(1 / mean) if mean > 0 else 0.0
            self.push(now + timedelta(seconds=runs), _APP, (proc, proc.incarnation, event.work_id, self.run_token))
            if rng.random() < f.crash_while_running:
                self.injected["crash while running"] += 1
                self.push(now + timedelta(seconds=rng.random() * runs), _CRASH, (proc, proc.incarnation))
            if rng.random() < f.outside_stop:
                self.injected["outside stop while running"] += 1
                self.push(now + timedelta(seconds=rng.random() * runs), _OUTSIDE, event.work_id)
            if rng.random() < f.partition:
                self.injected["partition"] += 1
                start = now + timedelta(seconds=rng.random() * runs)
                self.push(start, _CRASH, (proc, -1 - proc.incarnation))  # negative incarnation: a partition
        elif isinstance(event, Drain):
            self.run_token += 1
            proc.running[event.work_id] = self.run_token
            self.push(
                now + timedelta(seconds=rng.random() * 2), _APP, (proc, proc.incarnation, event.work_id, self.run_token)
            )
            if rng.random() < f.crash_while_draining:
                self.injected["crash while draining"] += 1
                self.push(now + timedelta(seconds=rng.random()), _CRASH, (proc, proc.incarnation))
        elif isinstance(event, Abort | Dropped):
            proc.running.pop(event.work_id, None)
        elif isinstance(event, Finished):
            proc.running.pop(event.work_id, None)
            if event.confirmed and event.reason == "completed":
                self.completed += 1
            elif event.confirmed and event.reason == "drained":
                self.drained += 1
        elif isinstance(event, Halted):  # pragma: no cover - the simulation's requests are all well-formed
            self.violation(Violation(5, None, f"a worker halted: {event.reason}"))

    def on_app(self, payload: Any) -> None:
        proc, incarnation, work_id, token = payload
        if self.alive(proc, incarnation) and proc.running.get(work_id) == token:
            del proc.running[work_id]
            self.apply(proc, proc.driver.done(work_id, self.now + proc.skew), work_id)

    def on_crash(self, payload: Any) -> None:
        proc, incarnation = payload
        if incarnation < 0:  # a partition: cut off for a while (long enough, often, to lose the lease)
            if self.alive(proc, -1 - incarnation):
                proc.cut_until = self.now + timedelta(seconds=self.rng.uniform(2, 3 * self.c.ttl_seconds))
            return
        if not self.alive(proc, incarnation):
            return
        for work_id in list(proc.held):  # a dead process holds nothing
            holders = self.holders.get(work_id)
            if holders is not None:
                holders.pop(proc.driver.worker_id, None)
        proc.incarnation = -(10**9)  # every event of this process is now stale
        self.push(self.now + timedelta(seconds=self.rng.uniform(1, 10)), _RESTART, (proc.index, incarnation + 1))

    def on_restart(self, payload: Any) -> None:
        index, incarnation = payload
        self.spawn(index, incarnation)

    # --- the platform and the operator ---

    def on_create(self, payload: Any) -> None:
        self._next_arrival()
        self.sessions += 1
        server = self.server
        server.expire(self.now)
        if self.changes:
            self.absorb(self.changes)
            self.changes = []
        work_id = server.create_work(self.env, session_id=self.c.dialect.new_id("session", self.sessions), now=self.now)
        self.absorb(self.changes)
        self.changes = []
        self.created_at[work_id] = self.now
        if self.rng.random() < self.f.outside_stop / 3:
            self.injected["outside stop"] += 1
            self.push(self.now + timedelta(seconds=self.rng.random() * 20), _OUTSIDE, work_id)

    def on_outside(self, work_id: str) -> None:
        force = self.rng.random() < 0.2
        request = Request("POST", self.c.dialect.path(self.env, work_id, "stop"), _AUTH, _FORCE if force else b"")
        self.serve(request, work_id)

    def on_stats(self, payload: Any) -> None:
        response = self.serve(Request("GET", self.c.dialect.path(self.env, operation="stats"), _AUTH), None)
        if self.c.check and response.status == 200:
            stats = response.json
            for v in stats_problems(self.env, stats["depth"], stats["pending"], self.queued):
                self.violation(v)
        self.push(self.now + timedelta(seconds=5), _STATS, None)

    def final_checks(self) -> None:
        self.on_stats(None)
        seen: dict[str, State] = {}
        for env in self.server.snapshot():
            for item in env.items:
                if item.id in seen:
                    self.violation(Violation(6, item.id, "the item is held twice"))
                seen[item.id] = item.state
        for work_id in self.created_at:
            if work_id not in seen:
                self.violation(Violation(6, work_id, "a created item can no longer be found"))
            elif seen[work_id] is not self.items[work_id].state:
                self.violation(Violation(6, work_id, "the server and the simulation disagree on the item's state"))

    def report(self) -> Report:
        live = sum(1 for item in self.items.values() if item.state is not State.STOPPED)
        stopped = len(self.items) - live
        return Report(
            seed=self.c.seed,
            config=self.c,
            simulated_seconds=self.t(),
            created=len(self.created_at),
            completed=self.completed,
            drained=self.drained,
            stopped_otherwise=stopped - self.completed - self.drained,
            live_at_end=live,
            requeued=tuple(sorted((k, v) for k, v in self.requeued.items() if v)),
            statuses=tuple(sorted(self.statuses.items())),
            worker_events=tuple(sorted(self.worker_events.items())),
            faults_injected=tuple(sorted(self.injected.items())),
            start_latency=tuple(sorted(self.latency)),
            requests=self.requests,
            violations=tuple(self.violations),
            events=self.events,
        )


def _endpoint(target: str) -> str:
    path = target.partition("?")[0]
    return path.rsplit("/", 1)[-1]


def simulate(
    config: SimConfig, make_random: RandomFactory, progress: Callable[[float, int, int], None] | None = None
) -> Report:
    """Run one simulation, drawing every random choice from sources ``make_random`` makes (``random.Random``,
    or anything that makes a :class:`RandomSource` from a seed); the same config (seed included) and factory
    give the same report. ``progress``, when given, is called now and then with (simulated seconds, items
    done, items). A ``make_random`` that is not callable raises :class:`~workstate.errors.InvalidInput`.
    Ctrl-C (``KeyboardInterrupt``) while it runs raises :class:`SimulationInterrupted`, whose ``report`` is
    the partial report."""
    if not callable(make_random):
        raise _invalid("make_random", "callable (random.Random, or a function of a seed)", make_random)
    return _Sim(config, make_random, progress).run()
