"""The lockstep oracle: drive a server under test and the reference server with the same requests.

:class:`LockstepMachine` is a hypothesis ``RuleBasedStateMachine``. Every step is one thing that
happens in a Work API's life: the platform creates work, the clock moves (forwards, onto a lease
deadline and just after it, and a little backwards), a worker polls, acks, heartbeats, stops,
reads, lists, asks for stats, or a client sends a malformed request. Each step goes to the
:class:`~workstate.testing.target.Target` and to a reference :class:`~workstate.api.Server` at
the same ``now``, and the two answers must agree on the status, ``error.type`` and body, with the
target's own ids, request ids and timestamps mapped onto the reference's:

- environment and work ids are paired when the kit creates them (a bijection);
- generated request ids are paired as they are first seen (a bijection; an ``x-request-id`` the
  client sent must be echoed exactly);
- timestamps compare as instants (``...Z`` and ``...+00:00`` are equal), and a worker echoes its
  own server's ``last_heartbeat``;
- error messages are free text and are not compared.

A disagreement raises :class:`Disagreement`: it names the spec rule the reference applied and lists
every request sent so far (hypothesis shrinks the sequence first). Use :func:`lockstep_test` for a
``TestCase`` class, or :func:`run_lockstep` to run it at once; ``docs/testing-guide.md`` shows both.

Needs ``hypothesis`` (the ``testing`` extra).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import unittest
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import attrs
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from .._time import UTC, render_timestamp
from ..api import Request, Response, Server
from ..dialect import QODER, Dialect
from ..model import (
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    Heartbeat,
    Lapse,
    Stop,
    UpdateMetadata,
    WorkItem,
    explain,
    step,
)
from ..policy import Policy
from .compare import Comparison, instant, show
from .strategies import AUTHORIZATION, build_request, hostile_requests
from .target import Target

__all__ = [
    "Created",
    "Disagreement",
    "LockstepMachine",
    "Sent",
    "LockstepTestCase",
    "lockstep_test",
    "run_lockstep",
]

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
SECTIONS = {
    "poll": "4.1 poll: the oldest deliverable item by creation order, or null",
    "ack": "4.2 ack",
    "heartbeat": "4.3 heartbeat",
    "stop": "4.4 stop",
    "get": "4.5 get",
    "update": "4.5 update metadata",
    "list": "4.6 list",
    "stats": "4.7 queue stats",
    "hostile": "4 order of checks",
}
_UNKNOWN_WORK = "work_" + "f" * 32
_SESSIONS = itertools.count(1)


@attrs.frozen
class Sent:
    """One request of the sequence, as sent to the target (``request``) and to the reference."""

    now: datetime
    request: Request
    reference: Request

    def __str__(self) -> str:
        r = self.request
        headers = dict(r.headers or {})
        return f"at {render_timestamp(self.now)}: {r.method} {r.target} headers={headers!r} body={r.body!r}"


@attrs.frozen
class Created:
    """Something the platform did through the target's creation hooks."""

    now: datetime
    what: str  # "environment" or "work"
    target_id: str
    reference_id: str
    env: str | None = None  # the target's environment id, for work
    session_id: str | None = None
    metadata: Mapping[str, str] | None = None

    def __str__(self) -> str:
        at = render_timestamp(self.now)
        if self.what == "environment":
            return f"at {at}: platform creates an environment -> {self.target_id}"
        meta = dict(self.metadata or {})
        where = f"in {self.env} (session {self.session_id}, metadata {meta})"
        return f"at {at}: platform creates work {where} -> {self.target_id}"


class Disagreement(AssertionError):
    """The target answered a request differently from the reference.

    ``requests`` is every request sent in the failing sequence (the last is the one that
    disagreed), ``history`` the same interleaved with the platform's creation calls, ``rule``
    the spec rule the reference applied, ``where`` the first difference.
    """

    def __init__(
        self,
        *,
        rule: str,
        where: str,
        sent: Sent | None,
        expected: Response | None,
        actual: Response | str | None,
        history: tuple[Sent | Created, ...],
        steps: tuple[tuple[str, dict[str, Any]], ...] = (),
        machine: type[LockstepMachine] | None = None,
    ) -> None:
        self.steps = steps
        self.machine = machine
        self.rule = rule
        self.where = where
        self.sent = sent
        self.expected = expected
        self.actual = actual
        self.history = history
        self.requests = tuple(entry for entry in history if isinstance(entry, Sent))
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["the server under test disagrees with workstate's reference server"]
        if self.sent is not None:
            lines.append(f"request {len(self.requests)} {self.sent}")
        lines.append(f"spec rule: {self.rule}")
        lines.append(f"difference: {self.where}")
        if self.expected is not None:
            lines.append(f"expected (reference): {self.expected.status} {_show(self.expected.json)}")
        if isinstance(self.actual, Response):
            lines.append(f"actual (target):      {self.actual.status} {_show(self.actual.json)}")
        elif self.actual is not None:
            lines.append(f"actual (target):      {self.actual}")
        if self.steps:
            lines.append("the steps (replay them with LockstepMachine.replay):")
            lines += [
                f"  state.{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})" for name, args in self.steps
            ]
        lines.append(f"the sequence ({len(self.requests)} requests; the target's ids):")
        number = 0
        for entry in self.history:
            if isinstance(entry, Sent):
                number += 1
                lines.append(f"  {number}. {entry}")
            else:
                lines.append(f"  -  {entry}")
        return "\n".join(lines)

    def signature(self) -> tuple[str, int | None, int | str | None]:
        """The kind of disagreement: the request (method, last path segment) and the two statuses."""
        request = self.sent.request if self.sent is not None else None
        where = (
            self.where if request is None else f"{request.method} {request.target.partition('?')[0].rsplit('/', 1)[-1]}"
        )
        actual = self.actual.status if isinstance(self.actual, Response) else type(self.actual).__name__
        return where, None if self.expected is None else self.expected.status, actual


def _recorded(method: Callable[..., None]) -> Callable[..., None]:
    """Record a rule's call in ``self.steps`` (so a failing sequence can be replayed and reduced)."""

    @functools.wraps(method)
    def run(self: LockstepMachine, **arguments: Any) -> None:
        self.steps.append((method.__name__, arguments))
        method(self, **arguments)

    return run


_show = show


# --- the machine ----------------------------------------------------------------------------------------------

WORKERS: tuple[str | None, ...] = ("w1", "w2", None, "w3")
DEADLINE_OFFSETS = {"deadline": 0, "deadline+1us": 1, "deadline-1us": -1}
MOVES: tuple[float | str, ...] = (
    1.0,
    0.0,
    0.000001,
    5.0,
    30.0,
    60.0,
    61.0,
    600.0,
    -1.0,
    -0.000001,
    -30.0,
    *DEADLINE_OFFSETS,
)
PATCHES: tuple[dict[str, str | None], ...] = (
    {"job": "x"},
    {"job": None},
    {"stage": "2", "owner": "me"},
    {f"k{i}": "v" for i in range(17)},  # over the default limit of 16 keys
)
METADATA: tuple[dict[str, str], ...] = ({}, {"job": "build"})


class LockstepMachine(RuleBasedStateMachine):
    """Drives ``make_target()`` and a reference ``Server(policy)`` in lockstep; see the module docstring.

    Subclass it and override :meth:`make_target` (and ``policy`` when the server makes another
    documented choice), then take ``TestCase`` from the subclass; or call :func:`lockstep_test`.
    """

    policy: ClassVar[Policy | None] = None
    """The reference's policy (the documented choices the server makes); None: the dialect's ``policy``."""
    dialect: ClassVar[Dialect] = QODER
    """The wire dialect the server speaks: requests are spelled in it, the reference runs its lifecycle, and
    answers are compared in its rendering (its ids format-checked, a 204 empty, its request-id header)."""
    environments: ClassVar[int] = 2
    """How many environments the platform creates at the start."""
    block_ms_values: ClassVar[tuple[str | None, ...]] = (None, "1")
    """``block_ms`` values polls send (a real server may wait that long when nothing is deliverable)."""
    compare_error_param: ClassVar[bool] = True
    """Whether ``error.param`` must agree too (``error.message`` never has to)."""

    def make_target(self) -> Target:
        """A fresh server under test, for one sequence of requests."""
        raise NotImplementedError("override make_target, or use lockstep_test(make_target)")

    def __init__(self) -> None:
        super().__init__()
        self.rules_policy: Policy = self.dialect.policy if self.policy is None else self.policy
        self.reference = Server(self.rules_policy, dialect=self.dialect)
        self.target: Target | None = None
        self.now = T0
        self.history: list[Sent | Created] = []
        self.steps: list[tuple[str, dict[str, Any]]] = []  # the rules run so far, to replay them
        self.comparison = Comparison(compare_error_param=self.compare_error_param, dialect=self.dialect)
        self.ids = self.comparison.ids  # environment and work ids
        self.request_ids = self.comparison.request_ids
        self.envs: list[str] = []  # the reference's ids
        self.works: list[str] = []
        self.homes: dict[str, str] = {}  # work -> environment
        self._pattern: tuple[int, re.Pattern[str]] | None = None
        self.tokens: dict[str, list[tuple[str, str]]] = {}  # work -> (reference, target) last_heartbeat seen

    # --- plumbing ---

    @classmethod
    def replay(cls, steps: Iterable[tuple[str, dict[str, Any]]]) -> Disagreement | None:
        """Run recorded steps on a fresh machine (and target); the disagreement they meet, or None."""
        machine = cls()
        try:
            machine.start()
            for name, arguments in steps:
                getattr(machine, name)(**arguments)
        except Disagreement as failure:
            return failure
        finally:
            machine.teardown()
        return None

    def teardown(self) -> None:
        close = getattr(self.target, "close", None)
        if callable(close):
            close()

    def fail(
        self,
        rule: str,
        where: str,
        sent: Sent | None = None,
        expected: Response | None = None,
        actual: Response | str | None = None,
    ) -> None:
        raise Disagreement(
            rule=rule,
            where=where,
            sent=sent,
            expected=expected,
            actual=actual,
            history=tuple(self.history),
            steps=tuple(self.steps),
            machine=type(self),
        )

    @property
    def server(self) -> Target:
        assert self.target is not None
        return self.target

    def to_target(self, text: str) -> str:
        """``text`` with every reference id replaced by the target's (all at once: the two may overlap)."""
        forward = self.ids.forward
        if self._pattern is None or self._pattern[0] != len(forward):
            names = sorted(forward, key=len, reverse=True)
            self._pattern = (len(forward), re.compile("|".join(map(re.escape, names))))
        return self._pattern[1].sub(lambda match: forward[match[0]], text) if forward else text

    def translate(self, request: Request) -> Request:
        headers = [(name, self.to_target(value)) for name, value in dict(request.headers or {}).items()]
        body = request.body
        if any(ref.encode() in body for ref in self.ids.forward):
            body = self.to_target(body.decode("utf-8")).encode("utf-8")
        return Request(request.method, self.to_target(request.target), headers, body)

    def exchange(
        self,
        operation: str,
        reference: Request,
        target: Request | None = None,
        command: Command | None = None,
        work: str | None = None,
    ) -> tuple[Response, Response]:
        """Send one request to both servers at ``now`` and compare the answers."""
        target_request = self.translate(reference) if target is None else target
        sent = Sent(self.now, target_request, reference)
        self.history.append(sent)
        # The items as the previous request left them: the core's explanation includes any lapse due at now.
        items = {item.id: item for env in self.reference.snapshot() for item in env.items}
        expected = self.reference.handle(reference, self.now)
        rule = self.rule_of(operation, expected, items.get(work or ""), command, items)
        try:
            actual = self.server.send(target_request, self.now)
        except Exception as exc:
            self.fail(rule, f"the target raised {type(exc).__name__}: {exc}", sent, expected, repr(exc))
        if not isinstance(actual, Response):
            self.fail(rule, f"the target answered {actual!r}, not a Response", sent, expected, repr(actual))
        where = self.difference(reference, expected, actual)
        if where is not None:
            self.fail(rule, where, sent, expected, actual)
        return expected, actual

    def rule_of(
        self,
        operation: str,
        response: Response,
        before: WorkItem | None,
        command: Command | None,
        polled: dict[str, WorkItem],
    ) -> str:
        """The spec rule behind the reference's answer, as the core explains it."""
        section = SECTIONS[operation]
        if operation == "poll" and response.status == 200 and isinstance(response.json, dict):
            item = polled.get(response.json.get("id", ""))
            if item is not None and isinstance(command, Deliver):
                return f"{section}; {explain(item, command, self.now, self.rules_policy, dialect=self.dialect)}"
        if before is not None and command is not None:
            explanation = explain(before, command, self.now, self.rules_policy, dialect=self.dialect)
            if explanation.outcome.status == response.status:
                return str(explanation)
        if before is not None and response.status == 200:
            lapsed = step(before, Lapse(), self.now, self.rules_policy, dialect=self.dialect)
            if isinstance(lapsed, Accepted):
                return f"{section}; first {lapsed.rule.text}"
        if response.status != 200 and isinstance(response.json, dict):
            error = response.json.get("error") or {}
            param = f", param {error.get('param')}" if error.get("param") else ""
            return f"{section}: {response.status} {error.get('type')}{param} ({error.get('message')})"
        return section

    def difference(self, request: Request, expected: Response, actual: Response) -> str | None:
        """Where ``actual`` differs from ``expected`` (after mapping ids and instants), or None."""
        self.comparison.compare_error_param = self.compare_error_param
        return self.comparison.difference(request, expected, actual)

    def pick(self, index: int) -> str:
        return self.works[index % len(self.works)]

    def env(self, index: int) -> str:
        return self.envs[index % len(self.envs)]

    def request(
        self,
        operation: str,
        env: str,
        work: str | None = None,
        query: tuple[tuple[str, str], ...] = (),
        worker: str | None = None,
        body: bytes = b"",
    ) -> Request:
        headers = [("Authorization", AUTHORIZATION)]
        if worker is not None:
            headers.append((QODER.worker_header, worker))
        return spoken(build_request(operation, env, work, query, tuple(headers), body), self.dialect)

    def env_of(self, work: str) -> str:
        return self.homes[work]

    # --- the platform ---

    @initialize()
    def start(self) -> None:
        self.target = self.make_target()
        for _ in range(self.environments):
            reference = self.reference.create_environment(now=self.now)
            try:
                created = self.server.create_environment(self.now)
            except Exception as exc:
                self.fail("1 environments", f"create_environment raised {type(exc).__name__}: {exc}")
            self.history.append(Created(self.now, "environment", created, reference))
            if not self.dialect.valid_id("env", created):
                self.fail(
                    "1 environments", f"create_environment returned {created!r}, not {self.dialect.id_rule('env')}"
                )
            if not self.ids.pair(reference, created):
                self.fail("1 environments", f"create_environment returned {created!r} twice")
            self.envs.append(reference)
        self.create_work(env=0, metadata={})
        self.steps.clear()  # the start is not a step

    @rule(env=st.integers(0, 3), metadata=st.sampled_from(METADATA))
    @_recorded
    def create_work(self, env: int, metadata: dict[str, str]) -> None:
        """The platform creates a work item for a new session."""
        # unique in the process: a long-lived target keeps its items
        session = f"{self.dialect.session_prefix}{next(_SESSIONS):032x}"
        target_env = self.ids.forward[self.env(env)]
        reference = self.reference.create_work(self.env(env), session_id=session, metadata=metadata, now=self.now)
        try:
            created = self.server.create_work(target_env, session, metadata, self.now)
        except Exception as exc:
            self.fail("1 work items", f"create_work raised {type(exc).__name__}: {exc}")
        self.history.append(Created(self.now, "work", created, reference, target_env, session, metadata))
        if not self.dialect.valid_id("work", created):
            self.fail("1 work items", f"create_work returned {created!r}, not {self.dialect.id_rule('work')}")
        if not self.ids.pair(reference, created):
            self.fail("1 work items", f"create_work returned {created!r}, an id already in use")
        self.works.append(reference)
        self.homes[reference] = self.env(env)

    # --- the clock ---

    @rule(move=st.sampled_from(MOVES))
    @_recorded
    def clock(self, move: float | str) -> None:
        """Time passes (or steps back a little: a caller's clock may), or lands on the next deadline.

        ``deadline`` is the next start timeout or lease deadline (``-1us``/``+1us``: either side of it).
        """
        if isinstance(move, float):
            self.now += timedelta(seconds=move)
            return
        deadline = self.reference.next_expiry()
        if deadline is not None:
            self.now = deadline + timedelta(microseconds=DEADLINE_OFFSETS[move])

    # --- workers ---

    @rule(
        worker=st.sampled_from(WORKERS),
        env=st.integers(0, 3),
        reclaim=st.sampled_from((None, "0", "5000")),
        block=st.integers(0, 3),
    )
    @_recorded
    def poll(self, worker: str | None, env: int, reclaim: str | None, block: int) -> None:
        query = []
        block_ms = self.block_ms_values[block % len(self.block_ms_values)]
        if block_ms is not None:
            query.append(("block_ms", block_ms))
        if reclaim is not None:
            query.append(("reclaim_older_than_ms", reclaim))
        command = Deliver(worker, None if reclaim is None else int(reclaim))
        self.exchange("poll", self.request("poll", self.env(env), query=tuple(query), worker=worker), command=command)

    @rule(worker=st.sampled_from(WORKERS[:2]), env=st.integers(0, 3), beat=st.booleans())
    @_recorded
    def take_work(self, worker: str, env: int, beat: bool) -> None:
        """A worker's loop (api.md §8): poll with its Worker-ID, ack what it got, and maybe heartbeat."""
        block_ms = self.block_ms_values[-1]
        query = () if block_ms is None else (("block_ms", block_ms),)
        request = self.request("poll", self.env(env), query=query, worker=worker)
        polled, _ = self.exchange("poll", request, command=Deliver(worker))
        if polled.status != 200 or not isinstance(polled.json, dict):
            return
        work = polled.json["id"]
        request = self.request("ack", self.env(env), work, worker=worker)
        acked, _ = self.exchange("ack", request, command=Ack(worker), work=work)
        if acked.status == 200 and beat:
            self.beat(work, (NO_HEARTBEAT, NO_HEARTBEAT), None)

    @rule(worker=st.sampled_from(WORKERS), item=st.integers(0, 7))
    @_recorded
    def ack(self, worker: str | None, item: int) -> None:
        work = self.pick(item)
        request = self.request("ack", self.env_of(work), work, worker=worker)
        self.exchange("ack", request, command=Ack(worker), work=work)

    def beat(self, work: str, pair: tuple[str, str] | None, ttl: str | None) -> None:
        """Heartbeat ``work``, each server with its own ``expected_last_heartbeat`` (``pair``)."""
        queries: list[list[tuple[str, str]]] = [[], []]
        if ttl is not None:
            for query in queries:
                query.append(("desired_ttl_seconds", ttl))
        if pair is not None:
            for query, token in zip(queries, pair, strict=True):
                query.append(("expected_last_heartbeat", token))
        env = self.env_of(work)
        reference = self.request("heartbeat", env, work, tuple(queries[0]))
        target = self.translate(self.request("heartbeat", env, work, tuple(queries[1])))
        command = Heartbeat(None if pair is None else pair[0], None if ttl is None else int(ttl))
        expected_response, actual = self.exchange("heartbeat", reference, target, command, work)
        if expected_response.status == 200:
            self.tokens.setdefault(work, []).append(
                (expected_response.json["last_heartbeat"], actual.json["last_heartbeat"])
            )

    @rule(
        item=st.integers(0, 7),
        expected=st.sampled_from(("none", "latest", "absent", "earlier", "latest+00:00")),
        ttl=st.sampled_from((None, "10", "30", "601")),
    )
    @_recorded
    def heartbeat(self, item: int, expected: str, ttl: str | None) -> None:
        """A heartbeat echoing the last ``last_heartbeat`` seen for the item (or an earlier one, or none)."""
        work = self.pick(item)
        tokens = self.tokens.get(work, [])
        pair: tuple[str, str] | None = None
        if expected == "none" or (expected != "absent" and not tokens):
            pair = (NO_HEARTBEAT, NO_HEARTBEAT)
        elif expected == "earlier":
            pair = tokens[0]
        elif expected.startswith("latest"):
            pair = tokens[-1]
            if expected == "latest+00:00":
                pair = (_offset_form(pair[0]), _offset_form(pair[1]))
        self.beat(work, pair, ttl)

    @rule(item=st.integers(0, 7), force=st.sampled_from((None, False, True)))
    @_recorded
    def stop(self, item: int, force: bool | None) -> None:
        work = self.pick(item)
        body = b"" if force is None else json.dumps({"force": force}).encode()
        request = self.request("stop", self.env_of(work), work, body=body)
        self.exchange("stop", request, command=Stop(bool(force)), work=work)

    @rule(item=st.integers(0, 7))
    @_recorded
    def get(self, item: int) -> None:
        work = self.pick(item)
        self.exchange("get", self.request("get", self.env_of(work), work), work=work)

    @rule(item=st.integers(0, 7), patch=st.sampled_from(PATCHES))
    @_recorded
    def update(self, item: int, patch: dict[str, str | None]) -> None:
        work = self.pick(item)
        body = json.dumps({"metadata": patch}).encode()
        request = self.request("update", self.env_of(work), work, body=body)
        self.exchange("update", request, command=UpdateMetadata(patch), work=work)

    @rule(
        what=st.sampled_from(("stats", "list")),
        env=st.integers(0, 3),
        limit=st.sampled_from((None, "1", "2", "101")),
        cursor=st.sampled_from((None, "page", "after_id", "before_id")),
        item=st.integers(0, 7),
    )
    @_recorded
    def survey(self, what: str, env: int, limit: str | None, cursor: str | None, item: int) -> None:
        """Queue stats, or a page of the list."""
        if what == "stats":
            self.exchange("stats", self.request("stats", self.env(env)))
            return
        query = []
        if limit is not None:
            query.append(("limit", limit))
        if cursor is not None:
            query.append((cursor, self.pick(item)))
        self.exchange("list", self.request("list", self.env(env), query=tuple(query)))

    @rule(data=st.data())
    def hostile(self, data: st.DataObject) -> None:
        """A request that breaks one rule of the surface (bad auth, parameter, body, route, id...)."""
        works = st.sampled_from(self.works) if self.works else st.just(_UNKNOWN_WORK)
        request = spoken(data.draw(hostile_requests(st.sampled_from(self.envs), works), label="request"), self.dialect)
        self.send_raw(request)

    def send_raw(self, request: Request) -> None:
        """Send ``request`` (written with the reference's ids) as it is."""
        self.steps.append(("send_raw", {"request": request}))
        self.exchange("hostile", request)


def spoken(request: Request, dialect: Dialect) -> Request:
    """``request``, written in ``QODER`` (as the kit's strategies build requests), spelled in ``dialect``: its
    base path and its worker header."""
    if dialect == QODER:
        return request
    target = request.target
    if isinstance(target, str) and target.startswith(QODER.base_path):
        target = dialect.base_path + target.removeprefix(QODER.base_path)
    name = QODER.worker_header.lower()
    raw = request.headers or ()
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    headers = [(dialect.worker_header if str(k).lower() == name else k, v) for k, v in pairs]
    return Request(request.method, target, headers, request.body)


def _offset_form(token: str) -> str:
    """The same instant written with ``+00:00`` instead of ``Z`` (a client may re-render it)."""
    found = instant(token)
    if found is None:
        return token
    return found.isoformat(timespec="microseconds")


# --- running it ---------------------------------------------------------------------------------------------


def reduce(failure: Disagreement) -> Disagreement:
    """A shorter sequence with the same kind of disagreement, by removing steps one at a time.

    Hypothesis shrinks first; this removes steps its shrinker left (replaying the remaining steps on
    fresh servers), so the reported sequence is as short as one-step deletions make it.
    """
    machine, best = failure.machine, failure
    if machine is None:
        return failure
    kind = failure.signature()
    progress = True
    while progress:
        progress = False
        for index in range(len(best.steps) - 1, -1, -1):
            found = machine.replay(best.steps[:index] + best.steps[index + 1 :])
            if found is not None and found.signature() == kind and len(found.requests) <= len(best.requests):
                best, progress = found, True
                break
    return best


def _machine(
    make_target: Callable[[], Target], policy: Policy | None, name: str, dialect: Dialect = QODER
) -> type[LockstepMachine]:
    def make(self: LockstepMachine) -> Target:
        return make_target()

    chosen = dialect.policy if policy is None else policy
    namespace = {"make_target": make, "policy": chosen, "dialect": dialect, "__module__": __name__}
    return type(name, (LockstepMachine,), namespace)


class LockstepTestCase(unittest.TestCase):
    """The type of the classes :func:`lockstep_test` returns: a ``unittest.TestCase`` whose ``runTest`` runs
    the lockstep machine ``state_machine`` (against the target it was made for) under ``settings``."""

    state_machine: ClassVar[type[LockstepMachine]]
    """The machine the case runs (its ``make_target`` and ``policy`` are the ones given to :func:`lockstep_test`)."""
    settings: ClassVar[Settings]
    """The hypothesis settings of the run (hypothesis's stateful defaults unless :func:`lockstep_test` got some)."""
    __test__: ClassVar[bool] = False  # this base is no test; the classes lockstep_test makes are

    def runTest(self) -> None:
        try:
            run_state_machine_as_test(self.state_machine, settings=self.settings)
        except Disagreement as failure:
            raise reduce(failure) from None


def lockstep_test(
    make_target: Callable[[], Target],
    *,
    policy: Policy | None = None,
    settings: Settings | None = None,
    name: str = "Lockstep",
    dialect: Dialect = QODER,
) -> type[LockstepTestCase]:
    """A :class:`LockstepTestCase` subclass running the lockstep machine against ``make_target()``.

    Assign it at module level under a name pytest collects (``TestMyServer = lockstep_test(...)``).
    ``make_target`` is called once per generated sequence; ``settings`` are hypothesis settings;
    ``dialect`` (default ``QODER``) is the one the server speaks, ``policy`` (default the dialect's) its choices.
    """
    machine = _machine(make_target, policy, name, dialect)

    def runTest(self: LockstepTestCase) -> None:
        LockstepTestCase.runTest(self)

    runTest.is_hypothesis_test = True  # type: ignore[attr-defined]
    runTest._hypothesis_state_machine_class = machine  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {
        "runTest": runTest,
        "state_machine": machine,
        "__module__": machine.__module__,
        "__test__": True,
    }
    if settings is not None:
        namespace["settings"] = settings
    # machine.TestCase brings hypothesis's stateful settings (no deadline, health checks suppressed) as the default.
    return cast("type[LockstepTestCase]", type(name, (LockstepTestCase, machine.TestCase), namespace))


def run_lockstep(
    make_target: Callable[[], Target],
    *,
    policy: Policy | None = None,
    settings: Settings | None = None,
    dialect: Dialect = QODER,
) -> None:
    """Run the lockstep machine against ``make_target()`` now; raises :class:`Disagreement` on the shrunk failure.

    ``dialect`` (default ``QODER``) is the one the server speaks; ``policy`` defaults to the dialect's.
    """
    try:
        run_state_machine_as_test(_machine(make_target, policy, "Lockstep", dialect), settings=settings)
    except Disagreement as failure:
        raise reduce(failure) from None
