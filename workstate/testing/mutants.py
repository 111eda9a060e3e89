"""Deliberately wrong servers: the oracle kit's teeth.

Each mutant is the reference server with one mistake that real servers make, packaged as a
:class:`~workstate.testing.target.Target`. The kit's own tests prove that the lockstep machine
finds every one of them with a short counterexample; use them the same way to check that your
harness (your ``make_target``, your clock hook, your HTTP adapter) really compares answers:

    from workstate.testing.lockstep import run_lockstep
    from workstate.testing.mutants import MUTANTS

    for mutant in MUTANTS:
        run_lockstep(mutant)  # each must raise Disagreement

None of them edits the reference: they wrap a :class:`~workstate.api.Server` (or subclass it).

:data:`MUTANTS` are the six the lockstep kit's own tests hunt; :data:`ALL_MUTANTS` adds the wrong servers
of issue 13, spread over every section of the spec. Every class in :data:`ALL_MUTANTS` carries a
``witness``: a short, fixed sequence of :class:`Step` values that, replayed with :func:`replay`, gets a
different answer from it than from the reference (``tests/testing/test_mutants.py`` proves it for each).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import attrs

from .. import render_timestamp
from ..api import BASE_PATH, CounterIds, Request, Response, Server
from ..api.codec import ErrorEnvelope, StatsObject, dumps, encode_work
from ..api.index import CreationKey
from ..api.routes import route
from ..api.server import Environment
from ..api.wire import Refusal, bearer_token, echoed_request_id
from ..dialect import (
    ANTHROPIC,
    QODER,
    Dialect,
    ErrorStyle,
    ListStyle,
    QueuedHeartbeat,
    StopAnswer,
    StopOfStopped,
    StoppedHeartbeat,
)
from ..model import Accepted, Deliver, WorkItem, step
from ..policy import (
    DEFAULT_POLICY,
    LARGEST,
    ConflictErrorType,
    LimitOverMax,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    TimestampMatch,
)
from ..rules import State
from .target import ReferenceTarget, Target

__all__ = [
    "MUTANTS",
    "PEER_MUTANTS",
    "AckIgnoresWorkerId",
    "AckReplayConflicts",
    "HeartbeatIgnoresPrecondition",
    "LeaseNeverLapses",
    "LifoPoll",
    "Mutant",
    "StopStoppedConflicts",
]

_WORKER = QODER.worker_header
"""The worker header as a witness spells it; :func:`replay` sends it as the target's dialect names it."""
_WORKER_KEY = _WORKER.lower()
_ITEM_PATH = re.compile(re.escape(BASE_PATH) + r"([^/?]+)/work/([^/?]+)(?:/([a-z]+))?(?:\?(.*))?")


# --- witnesses: short fixed request sequences, replayed against any target --------------------------------

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
"""The instant a witness starts at (the default environment is created then)."""

AUTH: tuple[tuple[str, str], ...] = (("Authorization", "Bearer test-token"),)
_US = timedelta(microseconds=1)


@attrs.frozen
class Step:
    """One step of a witness, at ``T0 + seconds``.

    ``method`` is ``GET`` or ``POST`` (a request), ``CREATE`` (the platform creates a work item in the
    default environment, with ``metadata``) or ``ENV`` (the platform creates another environment).
    In ``path`` (below the base path) and ``query``, ``{env}``, ``{env1}``, … are the environments and
    ``{w0}``, ``{w1}``, … the work items created so far, in order.
    """

    seconds: float
    method: str
    path: str = ""
    query: str = ""
    headers: tuple[tuple[str, str], ...] = AUTH
    body: bytes = b""
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)


def stamp(seconds: float) -> str:
    """The rendered instant ``T0 + seconds`` (what a heartbeat at that instant answers as ``last_heartbeat``)."""
    return render_timestamp(T0 + timedelta(seconds=seconds))


def create(seconds: float = 0, /, **metadata: str) -> Step:
    return Step(seconds, "CREATE", metadata=tuple(metadata.items()))


def _worker(worker: str | None, extra: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    return AUTH + extra + (((_WORKER, worker),) if worker is not None else ())


def poll(seconds: float, worker: str | None = None, query: str = "") -> Step:
    return Step(seconds, "GET", "{env}/work/poll", query, _worker(worker))


def ack(seconds: float, worker: str | None = None, n: int = 0) -> Step:
    return Step(seconds, "POST", f"{{env}}/work/{{w{n}}}/ack", "", _worker(worker))


def heartbeat(seconds: float, query: str = "", n: int = 0) -> Step:
    return Step(seconds, "POST", f"{{env}}/work/{{w{n}}}/heartbeat", query)


def stop(seconds: float, body: bytes = b"", n: int = 0) -> Step:
    return Step(seconds, "POST", f"{{env}}/work/{{w{n}}}/stop", body=body)


FORCE = b'{"force": true}'


def get(seconds: float, n: int = 0, env: str = "{env}") -> Step:
    return Step(seconds, "GET", f"{env}/work/{{w{n}}}")


def update(seconds: float, body: Any, n: int = 0) -> Step:
    return Step(seconds, "POST", f"{{env}}/work/{{w{n}}}", body=json.dumps(body).encode())


def listing(seconds: float, query: str = "") -> Step:
    return Step(seconds, "GET", "{env}/work", query)


def stats(seconds: float) -> Step:
    return Step(seconds, "GET", "{env}/work/stats")


Witness = tuple[Step, ...]
Answer = tuple[int, Any]


def replay(target: Target, witness: Witness, dialect: Dialect = QODER) -> list[Answer]:
    """The answers of ``target`` to ``witness``: (status, JSON) per request, ``(0, id)`` per creation.

    The requests are spelled in ``dialect`` (its base path, its worker header, its session ids). An error's
    ``message`` is left out (prose, never compared); its ``request_id`` is kept only when the request sent an
    ``x-request-id`` that the server owes an echo (else it is the server's own).
    """
    envs = [target.create_environment(T0)]
    works: list[str] = []
    answers: list[Answer] = []
    for one in witness:
        names = {f"env{i}" if i else "env": env for i, env in enumerate(envs)}
        names.update({f"w{i}": work for i, work in enumerate(works)})
        if one.method == "ENV":
            envs.append(target.create_environment(one.now))
            answers.append((0, len(envs) - 1))
            continue
        if one.method == "CREATE":
            session = dialect.session_prefix + format(len(works) + 1, "032x")
            works.append(target.create_work(envs[0], session, dict(one.metadata), one.now))
            answers.append((0, len(works) - 1))
            continue
        path = one.path.format(**names)
        query = one.query.format(**names)
        headers = tuple((dialect.worker_header if k == _WORKER else k, v) for k, v in one.headers)
        request = Request(one.method, dialect.base_path + path + ("?" + query if query else ""), headers, one.body)
        response = target.send(request, one.now)
        body = response.json
        if isinstance(body, dict) and body.get("type") == "error":  # messages are prose: never compared
            if echoed_request_id(headers) is None:
                body = {key: value for key, value in body.items() if key != "request_id"}
            if isinstance(body.get("error"), dict):
                body = {**body, "error": {k: v for k, v in body["error"].items() if k != "message"}}
        answers.append((response.status, body))
    return answers


def deviation(mutant: type[Target], witness: Witness | None = None) -> tuple[int, Answer, Answer] | None:
    """The first answer of ``witness`` (default: the mutant's own) where ``mutant`` and the reference differ:
    (its index, the reference's answer, the mutant's), or None when they agree throughout."""
    steps: Witness = getattr(mutant, "witness", ()) if witness is None else witness
    dialect: Dialect = getattr(mutant, "dialect", QODER)
    expected = replay(ReferenceTarget(dialect=dialect), steps, dialect)
    actual = replay(mutant(), steps, dialect)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want != got:
            return index, want, got
    return None


class Mutant(ReferenceTarget):
    """A reference server with one mistake (``mistake`` says which)."""

    mistake = ""
    section = ""
    """The section of docs/api.md the mistake breaks."""
    witness: ClassVar[Witness] = ()
    """A fixed request sequence on which this mutant's answers differ from the reference's."""
    dialect: ClassVar[Dialect] = QODER
    """The dialect the mutant claims to speak (its witness is replayed, and its suite run, in it)."""

    def __init__(self, server: Server | None = None) -> None:
        super().__init__(server)
        self._request_ids = CounterIds(start=2**64)

    def route_of(self, request: Request) -> tuple[str, str, str | None] | None:
        """(operation, environment id, work id) of a routable request, else None."""
        method, target = request.method, request.target
        if not isinstance(method, str) or not isinstance(target, str):
            return None
        try:
            return route(method, target.partition("?")[0])
        except Refusal:
            return None

    @staticmethod
    def query_of(request: Request) -> dict[str, str]:
        return dict(parse_qsl(request.target.partition("?")[2], keep_blank_values=True))

    @staticmethod
    def with_query(request: Request, query: Mapping[str, str]) -> Request:
        path = request.target.partition("?")[0]
        text = "&".join(f"{key}={value}" for key, value in query.items())
        return Request(request.method, path + ("?" + text if text else ""), request.headers, request.body)

    def items(self, now: datetime) -> dict[str, WorkItem]:
        """Every item (by id) as it stands at ``now``, expiry applied."""
        self.server.expire(now)
        return {item.id: item for env in self.server.snapshot() for item in env.items}

    def item(self, env: str, work: str | None, now: datetime) -> WorkItem | None:
        self.server.expire(now)
        return None if work is None else self.server.work(env, work)

    def keep(self, old: WorkItem, **changes: Any) -> WorkItem:
        """Store ``old`` with ``changes`` (the mutant's own write) and return it."""
        new = attrs.evolve(old, **changes)
        self.server.adopt(new)
        return new

    @staticmethod
    def answer(response: Response, body: Any) -> Response:
        return Response(response.status, body, dumps(body), response.headers, response.effects, response.rule)

    def error(self, request: Request, status: int, error_type: str, message: str, param: str | None = None) -> Response:
        envelope = ErrorEnvelope(
            request_id=echoed_request_id(request.headers) or self._request_ids("req_"),
            error_type=error_type,
            message=message,
            param=param,
        ).to_json()
        return Response(status, envelope, dumps(envelope))

    def action(self, request: Request) -> tuple[str | None, str | None, dict[str, str]]:
        """(work id, action segment, query) of a request on one item; (None, None, {}) otherwise."""
        match = _ITEM_PATH.fullmatch(request.target) if isinstance(request.target, str) else None
        if match is None or request.method != "POST":
            return None, None, {}
        return match[2], match[3], dict(parse_qsl(match[4] or "", keep_blank_values=True))

    def state_of(self, work: str, now: datetime) -> State | None:
        """The item's state at ``now``, before the request."""
        self.server.expire(now)
        for env in self.server.snapshot():
            for item in env.items:
                if item.id == work:
                    return item.state
        return None

    def conflict(self, request: Request, message: str) -> Response:
        """A 409 ``invalid_request_error``, as this server would write it."""
        headers = {name.lower(): value for name, value in dict(request.headers or {}).items()}
        envelope = ErrorEnvelope(
            request_id=headers.get("x-request-id") or self._request_ids("req_"),
            error_type="invalid_request_error",
            message=message,
        ).to_json()
        return Response(409, envelope, dumps(envelope))


class AckReplayConflicts(Mutant):
    """Answers 409 to an ack of an item already acked (api.md §4.2: a replay is 200, unchanged)."""

    mistake = "ack replay answers 409"
    section = "4.2"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), ack(2, "w1"))

    def send(self, request: Request, now: datetime) -> Response:
        work, action, _ = self.action(request)
        if action == "ack" and work is not None and self.state_of(work, now) in (State.STARTING, State.ACTIVE):
            response = self.server.handle(request, now)
            if response.status == 200:
                return self.conflict(request, "the work item was already acknowledged")
            return response
        return self.server.handle(request, now)


class HeartbeatIgnoresPrecondition(Mutant):
    """Ignores ``expected_last_heartbeat`` (api.md §4.3: a mismatch is 412, and the lease stays with its holder)."""

    mistake = "heartbeat ignores expected_last_heartbeat"
    section = "4.3"
    witness = (
        create(),
        poll(0, "w1"),
        ack(1, "w1"),
        heartbeat(2, "expected_last_heartbeat=NO_HEARTBEAT"),
        heartbeat(3, "expected_last_heartbeat=NO_HEARTBEAT"),
    )

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        if response.status == 412:  # a rejection changed nothing: answer as if the precondition were absent
            path, _, raw = request.target.partition("?")
            kept = "&".join(p for p in raw.split("&") if not p.startswith("expected_last_heartbeat="))
            request = Request(request.method, path + ("?" + kept if kept else ""), request.headers, request.body)
            return self.server.handle(request, now)
        return response


class LeaseNeverLapses(Mutant):
    """Never re-queues (or stops) an item whose lease deadline passed (api.md §5).

    The leases it grants are as long as a policy allows, while its heartbeat replies still report
    the TTL the spec's policy grants: from the outside, a lease that is never enforced.
    """

    mistake = "a lapsed lease is never re-queued"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2), get(62))

    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        self.reported = policy
        endless = Policy(default_ttl_seconds=LARGEST, min_ttl_seconds=LARGEST, max_ttl_seconds=LARGEST)
        super().__init__(Server(endless))

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        _, action, query = self.action(request)
        if action == "heartbeat" and response.status == 200:
            desired = query.get("desired_ttl_seconds")
            ttl = self.reported.clamp_ttl(None if desired is None else int(desired))
            body = {**response.json, "ttl_seconds": ttl}
            return Response(200, body, dumps(body), response.headers, response.effects)
        return response


class _LifoServer(Server):
    def _deliverable(self, env: Environment, milliseconds: int, now: datetime) -> CreationKey | None:
        """The newest deliverable item instead of the oldest (the core still judges deliverability)."""
        found: list[WorkItem] = [
            item
            for item in env.items.values()
            if item.state is State.QUEUED
            and isinstance(step(item, Deliver(None, milliseconds), now, self.policy), Accepted)
        ]
        if not found:
            return None
        newest = max(found, key=lambda item: (item.created_at, item.id))
        return newest.created_at, newest.id


class LifoPoll(Mutant):
    """Poll hands out the newest deliverable item (api.md §4.1: the oldest, by creation order)."""

    mistake = "poll is LIFO"
    section = "4.1"
    witness = (create(0), create(1), poll(2, "w1"))

    def __init__(self) -> None:
        super().__init__(_LifoServer())


class StopStoppedConflicts(Mutant):
    """Answers 409 to a stop of a ``stopped`` item (api.md §4.4: 200, unchanged)."""

    mistake = "stop on stopped answers 409"
    section = "4.4"
    witness = (create(), stop(0), stop(1))

    def send(self, request: Request, now: datetime) -> Response:
        work, action, _ = self.action(request)
        if action == "stop" and work is not None and self.state_of(work, now) is State.STOPPED:
            response = self.server.handle(request, now)
            if response.status == 200:
                return self.conflict(request, "the work item is already stopped")
            return response
        return self.server.handle(request, now)


class AckIgnoresWorkerId(Mutant):
    """Lets any worker ack an item delivered to another (api.md §4.2: 409, claimed by another worker)."""

    mistake = "ack ignores the Worker-ID"
    section = "4.2"
    witness = (create(), poll(0, "w1"), ack(1, "w2"))

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        _, action, _ = self.action(request)
        if action == "ack" and response.status == 409 and response.json["error"].get("param") == _WORKER:
            headers = [(k, v) for k, v in dict(request.headers or {}).items() if k.lower() != _WORKER_KEY]
            return self.server.handle(Request(request.method, request.target, headers, request.body), now)
        return response


# --- issue 13: the wrong servers the deterministic suite must catch, section by section --------------------

_NOBODY = "work_" + "e" * 32  # a well-formed work id no witness creates
_NOWHERE = "env_" + "e" * 32
_HB = "expected_last_heartbeat="


def _policy(**changes: Any) -> Server:
    return Server(attrs.evolve(DEFAULT_POLICY, **changes))


def _headers(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in dict(request.headers or {}).items()}


def _body(request: Request) -> Any:
    try:
        return json.loads(request.body) if request.body else None
    except (ValueError, TypeError):
        return None


# 4.1 poll


class _ExclusiveReclaimServer(Server):
    def _deliverable(self, env: Environment, milliseconds: int, now: datetime) -> CreationKey | None:
        # `now - delivered_at > window` instead of `>=`: the reclaim cutoff one microsecond earlier
        return super()._deliverable(env, milliseconds, now - _US if milliseconds else now)


class ReclaimWindowExclusive(Mutant):
    """Reclaims a delivered, unacked item only once *more* than the window has passed (api.md §4.1: at least)."""

    mistake = "the reclaim window is compared with > instead of >="
    section = "4.1"
    witness = (create(), poll(0, "w1"), poll(5, "w2"))

    def __init__(self) -> None:
        super().__init__(_ExclusiveReclaimServer())


class RedeliveryKeepsWorkerId(Mutant):
    """A redelivery without ``Worker-ID`` keeps the stored one (api.md §4.1: a delivery without the header
    clears it)."""

    mistake = "a delivery without Worker-ID keeps the old one"
    section = "4.1"
    witness = (create(), poll(0, "w1"), poll(5), ack(6, "w2"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "poll" or _WORKER_KEY in _headers(request):
            return self.server.handle(request, now)
        before = self.items(now)
        response = self.server.handle(request, now)
        if response.status == 200 and isinstance(response.json, dict):
            old = before.get(response.json["id"])
            new = self.server.work(found[1], response.json["id"])
            if old is not None and new is not None and old.delivered_to is not None:
                self.keep(new, delivered_to=old.delivered_to)
        return response


class PollIgnoresReclaimParameter(Mutant):
    """Ignores ``reclaim_older_than_ms`` and always uses the default 5 s (api.md §4.1: the request's window)."""

    mistake = "poll ignores reclaim_older_than_ms"
    section = "4.1"
    witness = (create(), poll(0, "w1"), poll(1, "w2", "reclaim_older_than_ms=0"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        query = self.query_of(request)
        if found is not None and found[0] == "poll" and query.get("reclaim_older_than_ms", "x").isdigit():
            del query["reclaim_older_than_ms"]
            request = self.with_query(request, query)
        return self.server.handle(request, now)


class PollAcceptsBlockZero(Mutant):
    """Takes ``block_ms=0`` as "do not block" (api.md §4.1: 1..999 or absent; 0 is 400)."""

    mistake = "block_ms=0 is accepted"
    section = "4.1"
    witness = (poll(0, "w1", "block_ms=0"),)

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        query = self.query_of(request)
        if found is not None and found[0] == "poll" and query.get("block_ms") == "0":
            del query["block_ms"]
            request = self.with_query(request, query)
        return self.server.handle(request, now)


# 4.2 ack


class AckReplayRestamps(Mutant):
    """An ack replay on a ``starting`` item restamps ``acknowledged_at`` (api.md §4.2: 200, item unchanged)."""

    mistake = "an ack replay restamps acknowledged_at"
    section = "4.2"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), ack(2, "w1"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "ack":
            return self.server.handle(request, now)
        old = self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        if response.status == 200 and old is not None and old.state is State.STARTING:
            at = max(now, old.clock)
            new = self.keep(old, acknowledged_at=at, clock=at, version=old.version + 1)
            return self.answer(response, encode_work(new))
        return response


class AckRequiresDelivery(Mutant):
    """Refuses (409) an ack of a never-delivered item: the ``ack_requires_delivery`` choice hard-wired on
    (api.md §4.2: allowed by default; only the policy makes it 409)."""

    mistake = "ack of a never-delivered item answers 409 under the default policy"
    section = "4.2"
    witness = (create(), ack(0, "w1"))

    def __init__(self) -> None:
        super().__init__(_policy(ack_requires_delivery=True))


class AckConflictErrorType(Mutant):
    """Answers its 409s with ``error.type`` ``conflict_error`` (api.md §6: ``invalid_request_error`` by default)."""

    mistake = "409 answers conflict_error"
    section = "4.2, 6"
    witness = (create(), poll(0, "w1"), ack(1, "w2"))

    def __init__(self) -> None:
        super().__init__(_policy(conflict_error_type=ConflictErrorType.CONFLICT_ERROR))


class AckBindsPollWorker(Mutant):
    """Binds the Worker-ID stored at poll even when the ack names one (api.md §4.2: the ack's, else the poll's)."""

    mistake = "ack binds the poll's Worker-ID, not the ack's"
    section = "4.2"
    witness = (create(), poll(0), ack(1, "w1"), ack(2, "w2"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "ack":
            return self.server.handle(request, now)
        old = self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        new = None if found[2] is None else self.server.work(found[1], found[2])
        if response.status == 200 and old is not None and old.state is State.QUEUED and new is not None:
            self.keep(new, worker_id=old.delivered_to)
        return response


class AckInStoppingReplays(Mutant):
    """Answers an ack of a ``stopping`` item 200, unchanged, like a replay (api.md §4.2: 409)."""

    mistake = "ack in stopping answers 200"
    section = "4.2"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2), ack(3, "w1"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        response = self.server.handle(request, now)
        if found is not None and found[0] == "ack" and response.status == 409:
            item = self.server.work(found[1], found[2] or "")
            if item is not None and item.state is State.STOPPING:
                return Response(200, encode_work(item), dumps(encode_work(item)))
        return response


# 4.3 heartbeat


class TtlMaxClampOffByOne(Mutant):
    """Clamps ``desired_ttl_seconds`` to 599 (api.md §4.3: 10..600)."""

    mistake = "the TTL's upper clamp is 599"
    section = "4.3"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2, "desired_ttl_seconds=600"))

    def __init__(self) -> None:
        super().__init__(_policy(max_ttl_seconds=599))


class TtlMinClampOffByOne(Mutant):
    """Clamps ``desired_ttl_seconds`` from 11 (api.md §4.3: 10..600)."""

    mistake = "the TTL's lower clamp is 11"
    section = "4.3"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2, "desired_ttl_seconds=10"))

    def __init__(self) -> None:
        super().__init__(_policy(min_ttl_seconds=11))


class DefaultTtlThirty(Mutant):
    """Grants 30 s when no ``desired_ttl_seconds`` is sent (api.md §4.3: the default TTL is 60 s)."""

    mistake = "the default TTL is 30 s"
    section = "4.3"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2))

    def __init__(self) -> None:
        super().__init__(_policy(default_ttl_seconds=30))


class LeaseNotExtendedWhileStopping(Mutant):
    """Answers ``lease_extended: false`` to a heartbeat on a ``stopping`` item (api.md §4.3: true on every 200)."""

    mistake = "lease_extended is false in stopping"
    section = "4.3"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2), heartbeat(3))

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        body = response.json
        if (
            response.status == 200
            and isinstance(body, dict)
            and body.get("state") == "stopping"
            and "ttl_seconds" in body
        ):
            return self.answer(response, {**body, "lease_extended": False})
        return response


class HeartbeatNotStrictlyIncreasing(Mutant):
    """Stamps a heartbeat at ``now`` even when the previous one was at ``now`` too (api.md §4.3: ``last_heartbeat``
    strictly increases; the second is the previous plus one microsecond)."""

    mistake = "last_heartbeat is not strictly increasing"
    section = "4.3"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2), heartbeat(2))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "heartbeat":
            return self.server.handle(request, now)
        old = self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        if response.status == 200 and old is not None and old.latest_heartbeat_at == now:
            new = self.server.work(found[1], found[2] or "")
            if new is not None:
                self.keep(new, latest_heartbeat_at=now)
                return self.answer(response, {**response.json, "last_heartbeat": render_timestamp(now)})
        return response


class PreconditionExactString(Mutant):
    """Compares ``expected_last_heartbeat`` as a string (api.md §4.3: as an instant; any RFC 3339 spelling matches)."""

    mistake = "the heartbeat precondition compares strings"
    section = "4.3"
    witness = (
        create(),
        poll(0, "w1"),
        ack(1, "w1"),
        heartbeat(2, _HB + "NO_HEARTBEAT"),
        heartbeat(3, _HB + "2026-07-01T08:00:02Z"),
    )

    def __init__(self) -> None:
        super().__init__(_policy(timestamp_match=TimestampMatch.EXACT))


class PreconditionBeforeState(Mutant):
    """Checks the heartbeat precondition before the state: 412 on a ``queued`` item (api.md §4.3: 409 first)."""

    mistake = "heartbeat checks 412 before 409"
    section = "4.3"
    witness = (create(), poll(0, "w1"), heartbeat(1, _HB + stamp(0)))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        response = self.server.handle(request, now)
        expected = self.query_of(request).get("expected_last_heartbeat")
        if found is not None and found[0] == "heartbeat" and response.status == 409 and expected is not None:
            item = self.server.work(found[1], found[2] or "")
            latest = None if item is None or item.latest_heartbeat_at is None else item.latest_heartbeat_at
            if expected != ("NO_HEARTBEAT" if latest is None else render_timestamp(latest)):
                return self.error(request, 412, "precondition_failed_error", "precondition failed", _HB[:-1])
        return response


# 4.4 stop


class ForceStopKeepsStopping(Mutant):
    """A forced stop of a ``stopping`` item leaves it ``stopping`` (api.md §4.4: force stops any live item)."""

    mistake = "force stop keeps a stopping item stopping"
    section = "4.4"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2), stop(3, FORCE))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is not None and found[0] == "stop" and _body(request) == {"force": True}:
            item = self.item(found[1], found[2], now)
            if item is not None and item.state is State.STOPPING:
                return Response(200, encode_work(item), dumps(encode_work(item)))
        return self.server.handle(request, now)


class ConfirmStopRestampsRequested(Mutant):
    """The confirming stop of a ``stopping`` item overwrites ``stop_requested_at`` (api.md §4.4: only
    ``stopped_at``)."""

    mistake = "stop_requested_at is overwritten by the confirming stop"
    section = "4.4"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2), stop(3))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "stop":
            return self.server.handle(request, now)
        old = self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        new = self.server.work(found[1], found[2] or "")
        stopped = new is not None and new.state is State.STOPPED and new.stopped_at is not None
        if response.status == 200 and old is not None and old.state is State.STOPPING and new is not None and stopped:
            return self.answer(response, encode_work(self.keep(new, stop_requested_at=new.stopped_at)))
        return response


class ForceStopStampsRequested(Mutant):
    """A forced stop of a running item sets ``stop_requested_at`` (api.md §4.4: force leaves it unchanged)."""

    mistake = "force stop stamps stop_requested_at"
    section = "4.4"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2, FORCE))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is None or found[0] != "stop" or _body(request) != {"force": True}:
            return self.server.handle(request, now)
        old = self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        new = self.server.work(found[1], found[2] or "")
        if response.status == 200 and old is not None and old.live and new is not None and not new.stop_requested_at:
            return self.answer(response, encode_work(self.keep(new, stop_requested_at=new.stopped_at)))
        return response


class QueuedStopDrains(Mutant):
    """Answers a graceful stop of a ``queued`` item with ``stopping`` (api.md §4.4: a queued item goes straight
    to ``stopped``; there is no worker to drain). It stores ``stopped``: only the answer is wrong."""

    mistake = "a graceful stop of a queued item answers stopping"
    section = "4.4"
    witness = (create(), stop(0))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        old = None if found is None or found[0] != "stop" else self.item(found[1], found[2], now)
        response = self.server.handle(request, now)
        if old is not None and old.state is State.QUEUED and response.status == 200 and _body(request) in (None, {}):
            return self.answer(response, {**response.json, "state": "stopping", "stopped_at": None})
        return response


class StopIgnoresForce(Mutant):
    """Reads ``{"force": true}`` as a graceful stop (api.md §4.4: force stops any live item at once)."""

    mistake = "stop ignores force"
    section = "4.4"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2, FORCE))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is not None and found[0] == "stop" and _body(request) == {"force": True}:
            request = Request(request.method, request.target, request.headers, b"")
        return self.server.handle(request, now)


class StopRejectsEmptyObject(Mutant):
    """Answers 400 to a stop whose body is ``{}`` (api.md §4.4: empty, ``{}`` or ``{"force": …}``)."""

    mistake = "stop refuses the body {}"
    section = "4.4"
    witness = (create(), stop(0, b"{}"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        empty = request.body and _body(request) == {}
        if found is not None and found[0] == "stop" and empty and self.item(found[1], found[2], now) is not None:
            return self.error(request, 400, "invalid_request_error", "force is required", "force")
        return self.server.handle(request, now)


# 4.5 get and update


class GetSkipsExpiry(Mutant):
    """Answers a get with the item as stored, before the expiry due at ``now`` (api.md §4 and §5: expiry first)."""

    mistake = "get does not apply expiry"
    section = "4.5, 5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), get(62))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        stale = None if found is None or found[0] != "get" else self.server.work(found[1], found[2] or "")
        response = self.server.handle(request, now)
        if stale is not None and response.status == 200:
            return self.answer(response, encode_work(stale))
        return response


class GetAcrossEnvironments(Mutant):
    """Finds a work item by id in any environment (api.md §4.5: the item of the environment in the path, else 404)."""

    mistake = "get finds an item of another environment"
    section = "4.5"
    witness = (create(), Step(0, "ENV"), get(1, env="{env1}"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        response = self.server.handle(request, now)
        if found is not None and found[0] == "get" and response.status == 404:
            item = self.items(now).get(found[2] or "")
            elsewhere = item is not None and found[1] != item.environment_id
            if item is not None and elsewhere and self.server.environment_kind(found[1]) is not None:
                return Response(200, encode_work(item), dumps(encode_work(item)))
        return response


class _UpdateMutant(Mutant):
    def patch(self, request: Request, now: datetime) -> tuple[WorkItem, dict[str, Any]] | None:
        """(item, metadata patch) of an update request the reference would read, else None."""
        found = self.route_of(request)
        body = _body(request)
        if found is None or found[0] != "update" or not isinstance(body, dict):
            return None
        item = self.item(found[1], found[2], now)
        patch = body.get("metadata")
        if item is None or set(body) != {"metadata"} or not isinstance(patch, dict):
            return None
        return item, patch


class MetadataLimitBeforeMerge(_UpdateMutant):
    """Counts the keys as the item's plus the patch's, deletes included, before the merge (api.md §4.5: the
    limits hold after the merge, so a patch that deletes one key and adds another to 16 keys is fine)."""

    mistake = "the metadata key limit is checked before the merge"
    section = "4.5"
    witness = (
        create(**{f"k{n:02}": "v" for n in range(16)}),
        update(0, {"metadata": {"k00": None, "new": "v"}}),
    )

    def send(self, request: Request, now: datetime) -> Response:
        found = self.patch(request, now)
        if found is not None and len(set(found[0].metadata) | set(found[1])) > self.server.policy.metadata_max_keys:
            return self.error(request, 400, "invalid_request_error", "too many metadata keys", "metadata")
        return self.server.handle(request, now)


class DeleteMissingKeyRejected(_UpdateMutant):
    """Answers 400 to a patch that deletes a key the item does not have (api.md §4.5: null deletes; nothing to do)."""

    mistake = "deleting a missing metadata key is 400"
    section = "4.5"
    witness = (create(), update(0, {"metadata": {"gone": None}}))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.patch(request, now)
        if found is not None and any(v is None and k not in found[0].metadata for k, v in found[1].items()):
            return self.error(request, 400, "invalid_request_error", "no such metadata key", "metadata")
        return self.server.handle(request, now)


class ValueLength513Accepted(Mutant):
    """Accepts a 513-character metadata value (api.md §4.5: at most 512)."""

    mistake = "a 513-character metadata value is accepted"
    section = "4.5"
    witness = (create(), update(0, {"metadata": {"k": "x" * 513}}))

    def __init__(self) -> None:
        super().__init__(_policy(metadata_max_value_length=513))


class KeyLength65Accepted(Mutant):
    """Accepts a 65-character metadata key (api.md §4.5: keys of 1..64 characters)."""

    mistake = "a 65-character metadata key is accepted"
    section = "4.5"
    witness = (create(), update(0, {"metadata": {"k" * 65: "v"}}))

    def __init__(self) -> None:
        super().__init__(_policy(metadata_max_key_length=65))


class UpdateStoppedConflicts(_UpdateMutant):
    """Answers 409 to a metadata update of a ``stopped`` item (api.md §4.5: allowed in every state)."""

    mistake = "update of a stopped item is 409"
    section = "4.5"
    witness = (create(), stop(0), update(1, {"metadata": {"k": "v"}}))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.patch(request, now)
        if found is not None and found[0].state is State.STOPPED:
            return self.conflict(request, "the work item is stopped")
        return self.server.handle(request, now)


class NullMetadataClears(Mutant):
    """Reads ``{"metadata": null}`` as "delete every key" (api.md §4.5: 400)."""

    mistake = "metadata null clears the metadata"
    section = "4.5"
    witness = (create(a="1"), update(0, {"metadata": None}))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        if found is not None and found[0] == "update" and _body(request) == {"metadata": None}:
            item = self.item(found[1], found[2], now)
            if item is not None:
                body = json.dumps({"metadata": dict.fromkeys(item.metadata)}).encode()
                request = Request(request.method, request.target, request.headers, body)
        return self.server.handle(request, now)


# 4.6 list


class _ListMutant(Mutant):
    def listed(self, request: Request) -> tuple[str, dict[str, str]] | None:
        found = self.route_of(request)
        return None if found is None or found[0] != "list" else (found[1], self.query_of(request))

    def order(self, env: str) -> list[str]:
        return [item.id for snap in self.server.snapshot() if snap.id == env for item in snap.items]


class HasMoreOnFullLastPage(_ListMutant):
    """Says ``has_more`` whenever a page is full, the last one too (api.md §4.6: only when items follow)."""

    mistake = "has_more is true on a full last page"
    section = "4.6"
    witness = (create(0), create(1), listing(2, "limit=2"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.listed(request)
        response = self.server.handle(request, now)
        if found is None or response.status != 200 or "before_id" in found[1]:
            return response
        body = response.json
        policy = self.server.policy
        limit = int(found[1]["limit"]) if found[1].get("limit", "").isdigit() else policy.list_default_limit
        if not body["has_more"] and body["data"] and len(body["data"]) == min(limit, policy.list_max_limit):
            return self.answer(response, {**body, "has_more": True, "next_page": body["last_id"]})
        return response


class LimitOverMaxRejected(Mutant):
    """Answers 400 to ``limit=101`` (api.md §4.6: capped at 100; only the policy makes it 400)."""

    mistake = "limit 101 is refused, not capped"
    section = "4.6"
    witness = (listing(0, "limit=101"),)

    def __init__(self) -> None:
        super().__init__(_policy(list_limit_over_max=LimitOverMax.REJECT))


class BeforeIdInclusive(_ListMutant):
    """A ``before_id`` page includes the cursor's own item (api.md §4.6: the items immediately before it)."""

    mistake = "before_id is off by one (inclusive)"
    section = "4.6"
    witness = (create(0), create(1), listing(2, "before_id={w1}"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.listed(request)
        if found is not None and found[1].get("before_id") in (order := self.order(found[0])):
            at = order.index(found[1]["before_id"])
            query = {**found[1], "before_id": order[at + 1] if at + 1 < len(order) else "work_" + "f" * 32}
            request = self.with_query(request, query)
        return self.server.handle(request, now)


class AfterIdInclusive(_ListMutant):
    """An ``after_id`` page starts at the cursor's own item (api.md §4.6: the items after it)."""

    mistake = "after_id is inclusive"
    section = "4.6"
    witness = (create(0), create(1), listing(2, "after_id={w0}"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.listed(request)
        if found is not None and found[1].get("after_id") in (order := self.order(found[0])):
            at = order.index(found[1]["after_id"])
            query = dict(found[1])
            if at:
                query["after_id"] = order[at - 1]
            else:
                del query["after_id"]
            request = self.with_query(request, query)
        return self.server.handle(request, now)


class BackwardPageHasMoreForward(_ListMutant):
    """A ``before_id`` page's ``has_more`` says whether items *follow* it (docs/server-guide.md "Paging the
    list": it says whether items precede ``first_id``, and ``next_page`` is ``first_id``)."""

    mistake = "a before_id page's has_more points forwards"
    section = "4.6"
    witness = (create(0), create(1), create(2), listing(3, "before_id={w1}&limit=1"))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.listed(request)
        response = self.server.handle(request, now)
        if found is None or response.status != 200 or "before_id" not in found[1] or not response.json["data"]:
            return response
        body, order = response.json, self.order(found[0])
        more = order.index(body["last_id"]) + 1 < len(order)
        return self.answer(response, {**body, "has_more": more, "next_page": body["last_id"] if more else None})


class ListNewestFirst(_ListMutant):
    """Lists newest first (api.md §4.6: ascending id order, which is creation order)."""

    mistake = "list is in descending order"
    section = "4.6"
    witness = (create(0), create(1), listing(2))

    def send(self, request: Request, now: datetime) -> Response:
        found = self.listed(request)
        response = self.server.handle(request, now)
        if found is None or response.status != 200 or len(response.json["data"]) < 2:
            return response
        data = list(reversed(response.json["data"]))
        body = {**response.json, "data": data, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        if body["has_more"]:
            body["next_page"] = body["last_id"]
        return self.answer(response, body)


# 4.7 stats


class _StatsServer(Server):
    def _stats(self, env: Environment, now: datetime) -> StatsObject:
        return self.wrong(env, now, super()._stats(env, now))

    def wrong(self, env: Environment, now: datetime, right: StatsObject) -> StatsObject:
        return right


class _DepthCountsPending(_StatsServer):
    def wrong(self, env: Environment, now: datetime, right: StatsObject) -> StatsObject:
        return attrs.evolve(right, depth=right.depth + right.pending)


class DepthCountsPending(Mutant):
    """Counts pending items in ``depth`` too (api.md §4.7: ``depth`` is the deliverable ones; ``depth + pending``
    = the queued items)."""

    mistake = "depth counts pending items"
    section = "4.7"
    witness = (create(), poll(0, "w1"), stats(1))

    def __init__(self) -> None:
        super().__init__(_DepthCountsPending())


class _PollingWindowInclusive(_StatsServer):
    def wrong(self, env: Environment, now: datetime, right: StatsObject) -> StatsObject:
        return attrs.evolve(right, workers_polling=env.polls.count(now - _US))


class WorkersPollingWindowInclusive(Mutant):
    """Counts a worker that polled exactly 30 s ago in ``workers_polling`` (api.md §4.7: in the last 30 s)."""

    mistake = "the workers_polling window is off by one (inclusive)"
    section = "4.7"
    witness = (poll(0, "w1"), stats(30))

    def __init__(self) -> None:
        super().__init__(_PollingWindowInclusive())


class _OldestIncludesStopped(_StatsServer):
    def wrong(self, env: Environment, now: datetime, right: StatsObject) -> StatsObject:
        times = [item.created_at for item in env.items.values() if item.state in (State.QUEUED, State.STOPPED)]
        return attrs.evolve(right, oldest_queued_at=min(times, default=None))


class OldestQueuedIncludesStopped(Mutant):
    """Takes ``oldest_queued_at`` over queued and stopped items (api.md §4.7: queued items only)."""

    mistake = "oldest_queued_at counts stopped items"
    section = "4.7"
    witness = (create(0), create(1), stop(2), stats(3))

    def __init__(self) -> None:
        super().__init__(_OldestIncludesStopped())


class _RecordsRejectedPolls(Server):
    def handle(self, request: Request, now: datetime) -> Response:
        response = super().handle(request, now)
        worker = _headers(request).get(_WORKER_KEY)
        try:
            found = route(request.method, request.target.partition("?")[0])
        except Refusal:
            return response
        env = self._envs.get(found[1])
        if found[0] == "poll" and response.status == 400 and worker and env is not None:
            env.polls.record(worker, now)
        return response


class RejectedPollCounted(Mutant):
    """Counts the Worker-ID of a rejected (400) poll in ``workers_polling`` (api.md §6: a rejected request
    changes nothing, anywhere)."""

    mistake = "a rejected poll counts for workers_polling"
    section = "4.7, 6"
    witness = (poll(0, "w1", "block_ms=0"), stats(1))

    def __init__(self) -> None:
        super().__init__(_RecordsRejectedPolls())


# 6 errors and the check order


class AuthBeforeRoute(Mutant):
    """Answers 401 to an unauthenticated request for no route (api.md §4: 404 for a target that is no route, first)."""

    mistake = "401 is checked before the route's 404"
    section = "4, 6"
    witness = (Step(0, "GET", "nothing/here", headers=()),)

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        authorization = _headers(request).get("authorization")
        if response.status == 404 and self.route_of(request) is None and bearer_token(authorization) is None:
            return self.error(request, 401, "authentication_error", "send Authorization: Bearer <token>")
        return response


class ParamBeforeUnknownEnvironment(Mutant):
    """Checks a poll's parameters before the environment: 400, not 404, for a bad ``block_ms`` in an unknown
    environment (api.md §4: 404 environment, then 400 parameters)."""

    mistake = "400 parameters before 404 environment"
    section = "4, 6"
    witness = (Step(0, "GET", _NOWHERE + "/work/poll", "block_ms=0"),)

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        response = self.server.handle(request, now)
        if found is not None and found[0] == "poll" and response.status == 404:
            block = self.query_of(request).get("block_ms")
            if block is not None and not (block.isdigit() and 1 <= int(block) <= 999):
                return self.error(request, 400, "invalid_request_error", "block_ms must be 1..999", "block_ms")
        return response


class RequestIdNotEchoed(Mutant):
    """Generates its own ``request_id`` even when the request sent ``x-request-id`` (api.md §6: it is echoed)."""

    mistake = "an error's request_id does not echo x-request-id"
    section = "6"
    witness = (Step(0, "GET", "{env}/work/" + _NOBODY, headers=(*AUTH, ("x-request-id", "req-witness-1"))),)

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        if isinstance(response.json, dict) and response.json.get("type") == "error":
            return self.answer(response, {**response.json, "request_id": self._request_ids("req_")})
        return response


class PreconditionFailedType(Mutant):
    """Answers a failed heartbeat precondition 412 with ``error.type`` ``invalid_request_error`` (api.md §6:
    ``precondition_failed_error``)."""

    mistake = "412 answers invalid_request_error"
    section = "4.3, 6"
    witness = HeartbeatIgnoresPrecondition.witness

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        if response.status == 412:
            error = {**response.json["error"], "type": "invalid_request_error"}
            return self.answer(response, {**response.json, "error": error})
        return response


class UnknownWorkBeforeBadBody(Mutant):
    """Answers 404 for an unknown work item before reading a bad body (api.md §4: 400 parameters and body, then
    404 work item)."""

    mistake = "404 work item before 400 body"
    section = "4, 6"
    witness = (Step(0, "POST", "{env}/work/" + _NOBODY + "/stop", body=b"{oops"),)

    def send(self, request: Request, now: datetime) -> Response:
        found = self.route_of(request)
        response = self.server.handle(request, now)
        unknown = found is not None and found[2] is not None and self.server.work(found[1], found[2]) is None
        if found is not None and unknown and response.status == 400 and self.server.environment_kind(found[1]):
            return self.error(request, 404, "not_found_error", "work item not found")
        return response


# 5 time and leases


class _LapseHook(Mutant):
    """Applies the expiry itself before each request, then rewrites every item that lapsed."""

    def send(self, request: Request, now: datetime) -> Response:
        before = {item.id: item for env in self.server.snapshot() for item in env.items}
        after = self.items(now)
        for work, new in after.items():
            old = before.get(work)
            if old is not None and old.state is not new.state:
                self.lapsed(old, new, now)
        return self.server.handle(request, now)

    def lapsed(self, old: WorkItem, new: WorkItem, now: datetime) -> None:
        raise NotImplementedError


class DrainLapseStampedAtNow(_LapseHook):
    """Stamps a lapsed drain's ``stopped_at`` when the lapse is observed (api.md §5: at the deadline)."""

    mistake = "a drain lapse is stamped at now, not at the deadline"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2), stop(3), get(100))

    def lapsed(self, old: WorkItem, new: WorkItem, now: datetime) -> None:
        if old.state is State.STOPPING and new.state is State.STOPPED:
            self.keep(new, stopped_at=max(now, new.clock), clock=max(now, new.clock))


class LapseClearsMetadata(_LapseHook):
    """A re-queue clears the item's metadata (api.md §5: it clears the ack, start, heartbeat, worker and delivery)."""

    mistake = "a lapse clears the metadata"
    section = "5"
    witness = (create(a="1"), poll(0, "w1"), ack(1, "w1"), get(61))

    def lapsed(self, old: WorkItem, new: WorkItem, now: datetime) -> None:
        if new.state is State.QUEUED:
            self.keep(new, metadata={})


class LapseKeepsWorkerId(_LapseHook):
    """A re-queue keeps the bound Worker-ID as the stored one (api.md §5: cleared; the item is anyone's)."""

    mistake = "a lapse keeps the Worker-ID"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), ack(61, "w2"))

    def lapsed(self, old: WorkItem, new: WorkItem, now: datetime) -> None:
        if new.state is State.QUEUED and old.worker_id is not None and old.delivered_at is not None:
            self.keep(new, delivered_to=old.worker_id, delivered_at=old.delivered_at)


class _LateExpiry(Server):
    def expire(self, now: datetime) -> int:
        return super().expire(now - _US)  # a deadline lapses one microsecond after it, not at it


class LapseAfterDeadline(Mutant):
    """Lapses an item only after its deadline (api.md §5: expiry takes effect at the deadline instant)."""

    mistake = "expiry is one microsecond late (> instead of >=)"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2), get(62))

    def __init__(self) -> None:
        super().__init__(_LateExpiry())


class StartTimeoutOffByOne(Mutant):
    """Re-queues an unstarted item 61 s after its ack (api.md §5: the start timeout is 60 s)."""

    mistake = "the start timeout is 61 s"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), get(61))

    def __init__(self) -> None:
        super().__init__(_policy(start_timeout_seconds=61))


class StartTimeoutKeepsStarting(Mutant):
    """Leaves an item that never heartbeats ``starting`` for ever (api.md §5: re-queued after the start timeout)."""

    mistake = "the start timeout never re-queues"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), get(61))

    def __init__(self) -> None:
        super().__init__(_policy(on_start_timeout=OnStartTimeout.KEEP_STARTING))


class ActiveLapseStops(Mutant):
    """Stops an ``active`` item whose lease ran out (api.md §5: it is re-queued)."""

    mistake = "a lapsed lease stops the item"
    section = "5"
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2), get(62))

    def __init__(self) -> None:
        super().__init__(_policy(on_lease_expiry=OnLeaseExpiry.STOP))


MUTANTS: tuple[type[Mutant], ...] = (
    AckReplayConflicts,
    HeartbeatIgnoresPrecondition,
    LeaseNeverLapses,
    LifoPoll,
    StopStoppedConflicts,
    AckIgnoresWorkerId,
)
"""The six mutants the lockstep kit's own tests hunt; each class called with no arguments is a fresh target."""

NEW_MUTANTS: tuple[type[Mutant], ...] = (
    ReclaimWindowExclusive,
    RedeliveryKeepsWorkerId,
    PollIgnoresReclaimParameter,
    PollAcceptsBlockZero,
    AckReplayRestamps,
    AckRequiresDelivery,
    AckConflictErrorType,
    AckBindsPollWorker,
    AckInStoppingReplays,
    TtlMaxClampOffByOne,
    TtlMinClampOffByOne,
    DefaultTtlThirty,
    LeaseNotExtendedWhileStopping,
    HeartbeatNotStrictlyIncreasing,
    PreconditionExactString,
    PreconditionBeforeState,
    ForceStopKeepsStopping,
    ConfirmStopRestampsRequested,
    ForceStopStampsRequested,
    QueuedStopDrains,
    StopIgnoresForce,
    StopRejectsEmptyObject,
    GetSkipsExpiry,
    GetAcrossEnvironments,
    MetadataLimitBeforeMerge,
    DeleteMissingKeyRejected,
    ValueLength513Accepted,
    KeyLength65Accepted,
    UpdateStoppedConflicts,
    NullMetadataClears,
    HasMoreOnFullLastPage,
    LimitOverMaxRejected,
    BeforeIdInclusive,
    AfterIdInclusive,
    BackwardPageHasMoreForward,
    ListNewestFirst,
    DepthCountsPending,
    WorkersPollingWindowInclusive,
    OldestQueuedIncludesStopped,
    RejectedPollCounted,
    AuthBeforeRoute,
    ParamBeforeUnknownEnvironment,
    RequestIdNotEchoed,
    PreconditionFailedType,
    UnknownWorkBeforeBadBody,
    DrainLapseStampedAtNow,
    LapseClearsMetadata,
    LapseKeepsWorkerId,
    LapseAfterDeadline,
    StartTimeoutOffByOne,
    StartTimeoutKeepsStarting,
    ActiveLapseStops,
)
"""The wrong servers of issue 13, by section of docs/api.md (poll, ack, heartbeat, stop, get and update, list, stats,
errors and check order, time and leases)."""

ALL_MUTANTS: tuple[type[Mutant], ...] = MUTANTS + NEW_MUTANTS
"""Every mutant, the old six first; each has a ``section``, a ``mistake`` and a ``witness``."""


# --- the peer dialect's wrong servers: a server of ANTHROPIC that gets one of its differences wrong ---------


class _PeerMutant(Mutant):
    """A reference server of the ``anthropic`` dialect whose dialect value has one field wrong (``wrong``)."""

    dialect: ClassVar[Dialect] = ANTHROPIC
    wrong: ClassVar[Mapping[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__(Server(dialect=attrs.evolve(ANTHROPIC, **self.wrong)))


def _key_header(key: str = "test-token") -> tuple[tuple[str, str], ...]:
    return ((ANTHROPIC.auth_headers[-1], key),)


class PeerStoppedHeartbeatConflicts(_PeerMutant):
    """Answers 409 to a heartbeat on a ``stopped`` item (docs/dialects.md: the peer answers 200 ``stopped``, so
    a force-stopped session ends within one heartbeat, not one lease)."""

    mistake = "heartbeat on stopped answers 409"
    section = "4.3"
    wrong: ClassVar[Mapping[str, Any]] = {"heartbeat_on_stopped": StoppedHeartbeat.CONFLICT}
    witness = (create(), poll(0, "w1"), ack(1, "w1"), heartbeat(2, _HB + "NO_HEARTBEAT"), stop(3, FORCE), heartbeat(4))


class PeerAckChecksWorker(_PeerMutant):
    """Refuses an ack by another worker identity (docs/dialects.md: the peer's lease has no binding to a worker)."""

    mistake = "ack compares the worker identity (409)"
    section = "4.2"
    wrong: ClassVar[Mapping[str, Any]] = {"ack_checks_worker": True}
    witness = (create(), poll(0, "w1"), ack(1, "w2"))


class PeerStopAnswersObject(_PeerMutant):
    """Answers a stop with 200 and the work object (docs/dialects.md: the peer answers 204, no body)."""

    mistake = "stop answers 200 with the object"
    section = "4.4"
    wrong: ClassVar[Mapping[str, Any]] = {"stop_answer": StopAnswer.OBJECT}
    witness = (create(), poll(0, "w1"), ack(1, "w1"), stop(2, FORCE))


class PeerQueuedHeartbeatConflicts(_PeerMutant):
    """Answers 409 to a heartbeat on a ``queued`` item (docs/dialects.md: the peer answers 412 with the item's
    ``current_state``)."""

    mistake = "heartbeat on queued answers 409"
    section = "4.3"
    wrong: ClassVar[Mapping[str, Any]] = {"heartbeat_on_queued": QueuedHeartbeat.CONFLICT}
    witness = (create(), heartbeat(1, _HB + "NO_HEARTBEAT"))


class PeerStopOfStoppedReplays(_PeerMutant):
    """Answers a stop of a ``stopped`` item as a replay (docs/dialects.md: the peer answers 409)."""

    mistake = "stop of stopped is a replay"
    section = "4.4"
    wrong: ClassVar[Mapping[str, Any]] = {"stop_on_stopped": StopOfStopped.REPLAY}
    witness = (create(), stop(1, FORCE), stop(2, FORCE))


class PeerListFullEnvelope(_PeerMutant):
    """Lists with the ``qoder`` envelope (docs/dialects.md: the peer's list is ``{data, next_page}``)."""

    mistake = "list answers first_id, last_id and has_more"
    section = "4.6"
    wrong: ClassVar[Mapping[str, Any]] = {"list_style": ListStyle.FULL}
    witness = (create(), listing(1))


class PeerPreconditionParamEnvelope(_PeerMutant):
    """Answers a failed heartbeat precondition with ``precondition_failed_error`` and no ``details``
    (docs/dialects.md: the peer's 412 is an ``invalid_request_error`` carrying ``details.current_state``)."""

    mistake = "the 412 has the qoder envelope"
    section = "4.3"
    wrong: ClassVar[Mapping[str, Any]] = {"error_style": ErrorStyle.PARAM}
    witness = (
        create(),
        poll(0, "w1"),
        ack(1, "w1"),
        heartbeat(2, _HB + "NO_HEARTBEAT"),
        heartbeat(3, _HB + "NO_HEARTBEAT"),
    )


class PeerRejectsApiKey(_PeerMutant):
    """Reads the key from ``Authorization`` only (docs/dialects.md: the peer's key header is accepted too)."""

    mistake = "the x-api-key header is not accepted"
    section = "6"
    wrong: ClassVar[Mapping[str, Any]] = {"auth_headers": ("Authorization",)}
    witness = (create(), Step(0, "GET", "{env}/work/poll", "", _key_header()))


class PeerStartTimeoutRequeues(Mutant):
    """Re-queues an acked item never heartbeated after the start timeout (docs/dialects.md: the peer keeps it
    ``starting``; the dialect's policy is ``keep_starting``)."""

    mistake = "the start timeout re-queues (the qoder policy)"
    section = "5"
    dialect: ClassVar[Dialect] = ANTHROPIC
    witness = (create(), poll(0, "w1"), ack(1, "w1"), get(62))

    def __init__(self) -> None:
        super().__init__(Server(QODER.policy, dialect=ANTHROPIC))


PEER_MUTANTS: tuple[type[Mutant], ...] = (
    PeerStoppedHeartbeatConflicts,
    PeerAckChecksWorker,
    PeerStopAnswersObject,
    PeerQueuedHeartbeatConflicts,
    PeerStopOfStoppedReplays,
    PeerListFullEnvelope,
    PeerPreconditionParamEnvelope,
    PeerRejectsApiKey,
    PeerStartTimeoutRequeues,
)
"""Wrong servers of the ``anthropic`` dialect (``dialect = ANTHROPIC``): each gets one peer difference wrong.
Their witnesses are replayed, and the suite run, in that dialect (``run_conformance(m, dialect=m.dialect)``)."""


def describe() -> Mapping[str, str]:
    """Mutant name -> the mistake it makes, for every mutant of :data:`ALL_MUTANTS` (the ``qoder`` ones)."""
    return {mutant.__name__: mutant.mistake for mutant in ALL_MUTANTS}
