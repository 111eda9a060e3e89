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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from ..api import BASE_PATH, CounterIds, Request, Response, Server
from ..api.codec import ErrorEnvelope, dumps
from ..api.index import CreationKey
from ..api.server import Environment
from ..model import Accepted, Deliver, WorkItem, step
from ..policy import DEFAULT_POLICY, LARGEST, Policy
from ..rules import State
from .target import ReferenceTarget

__all__ = [
    "MUTANTS",
    "AckIgnoresWorkerId",
    "AckReplayConflicts",
    "HeartbeatIgnoresPrecondition",
    "LeaseNeverLapses",
    "LifoPoll",
    "Mutant",
    "StopStoppedConflicts",
]

_ITEM_PATH = re.compile(re.escape(BASE_PATH) + r"([^/?]+)/work/([^/?]+)(?:/([a-z]+))?(?:\?(.*))?")


class Mutant(ReferenceTarget):
    """A reference server with one mistake (``mistake`` says which)."""

    mistake = ""

    def __init__(self, server: Server | None = None) -> None:
        super().__init__(server)
        self._request_ids = CounterIds(start=2**64)

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
    """Answers 409 to an ack of an item already acked (spec 4.2: a replay is 200, unchanged)."""

    mistake = "ack replay answers 409"

    def send(self, request: Request, now: datetime) -> Response:
        work, action, _ = self.action(request)
        if action == "ack" and work is not None and self.state_of(work, now) in (State.STARTING, State.ACTIVE):
            response = self.server.handle(request, now)
            if response.status == 200:
                return self.conflict(request, "the work item was already acknowledged")
            return response
        return self.server.handle(request, now)


class HeartbeatIgnoresPrecondition(Mutant):
    """Ignores ``expected_last_heartbeat`` (spec 4.3: a mismatch is 412, and the lease stays with its holder)."""

    mistake = "heartbeat ignores expected_last_heartbeat"

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        if response.status == 412:  # a rejection changed nothing: answer as if the precondition were absent
            path, _, raw = request.target.partition("?")
            kept = "&".join(p for p in raw.split("&") if not p.startswith("expected_last_heartbeat="))
            request = Request(request.method, path + ("?" + kept if kept else ""), request.headers, request.body)
            return self.server.handle(request, now)
        return response


class LeaseNeverLapses(Mutant):
    """Never re-queues (or stops) an item whose lease deadline passed (spec 5).

    The leases it grants are as long as a policy allows, while its heartbeat replies still report
    the TTL the spec's policy grants: from the outside, a lease that is never enforced.
    """

    mistake = "a lapsed lease is never re-queued"

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
    """Poll hands out the newest deliverable item (spec 4.1: the oldest, by creation order)."""

    mistake = "poll is LIFO"

    def __init__(self) -> None:
        super().__init__(_LifoServer())


class StopStoppedConflicts(Mutant):
    """Answers 409 to a stop of a ``stopped`` item (spec 4.4: 200, unchanged)."""

    mistake = "stop on stopped answers 409"

    def send(self, request: Request, now: datetime) -> Response:
        work, action, _ = self.action(request)
        if action == "stop" and work is not None and self.state_of(work, now) is State.STOPPED:
            response = self.server.handle(request, now)
            if response.status == 200:
                return self.conflict(request, "the work item is already stopped")
            return response
        return self.server.handle(request, now)


class AckIgnoresWorkerId(Mutant):
    """Lets any worker ack an item delivered to another (spec 4.2: 409, claimed by another worker)."""

    mistake = "ack ignores the Worker-ID"

    def send(self, request: Request, now: datetime) -> Response:
        response = self.server.handle(request, now)
        _, action, _ = self.action(request)
        if action == "ack" and response.status == 409 and response.json["error"].get("param") == "Worker-ID":
            headers = [(k, v) for k, v in dict(request.headers or {}).items() if k.lower() != "worker-id"]
            return self.server.handle(Request(request.method, request.target, headers, request.body), now)
        return response


MUTANTS: tuple[type[Mutant], ...] = (
    AckReplayConflicts,
    HeartbeatIgnoresPrecondition,
    LeaseNeverLapses,
    LifoPoll,
    StopStoppedConflicts,
    AckIgnoresWorkerId,
)
"""Every mutant; each class called with no arguments is a fresh target."""


def describe() -> Mapping[str, str]:
    """Mutant name -> the mistake it makes."""
    return {mutant.__name__: mutant.mistake for mutant in MUTANTS}
