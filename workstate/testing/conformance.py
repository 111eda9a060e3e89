"""The conformance suite: a deterministic, case-numbered test of a Work API server, generated from the rules.

Random sampling (the lockstep kit) explores; this suite *proves* the finite part. Its cases come from
the rule table, the policy and the reference server, and every case is run on a fresh target and a
fresh reference :class:`~workstate.api.Server` side by side: every request of the case goes to both at
the same ``now``, and the answers must agree under the kit's one comparison
(:class:`~workstate.testing.compare.Comparison`: status, ``error.type`` and body, ids, request ids
and timestamp spellings mapped). Two families of cases:

- **transition cover** (``cover``): a breadth-first search over the reference, with one and two workers
  and one and two items, reaches every abstract state (each item's state, bound and delivered
  Worker-ID, whether its delivery is reclaimable, how many heartbeats it had) by a shortest request
  sequence; from each, every request class is probed: ack with the same, another or no Worker-ID;
  heartbeat with the current, a stale, ``NO_HEARTBEAT``, a re-spelled or no token, and invalid
  parameters; graceful, forced and invalid stops; get; updates; poll by each worker and with
  ``reclaim_older_than_ms=0``; list; stats;
- **boundaries**: both sides of, and exactly at, every guard and limit (deadlines, reclaim windows,
  TTL clamps, metadata after the merge, list limits and cursors, stats windows, timestamp spellings,
  Worker-ID rebinding, the order of checks).

Each case has a stable id (``4.2-ack-replay/ack-w2@starting.w1``: the rule the last request exercises,
the request class, the state it met), the rule, its requests, and on failure the expected and actual
answers and where they first differ. :func:`run_conformance` runs the suite; ``docs/conformance.md``
lists every case id; ``workstate conform --url`` runs it against a live server.

Pure: no clock, no I/O, no third-party package beyond workstate's own.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import attrs

from .._time import UTC, parse_timestamp, render_timestamp
from ..api import Request, Response, Server
from ..dialect import DIALECTS, QODER, Dialect, ListStyle
from ..errors import InvalidInput, WorkstateError
from ..model import NO_HEARTBEAT
from ..policy import OnStartTimeout, Policy
from .compare import Comparison, show
from .target import Target

__all__ = [
    "AUTHORIZATION",
    "Call",
    "Case",
    "CaseResult",
    "ConformanceReport",
    "Exchange",
    "NewEnv",
    "NewWork",
    "NextPage",
    "T0",
    "Token",
    "Wait",
    "WorkRef",
    "conformance_cases",
    "dialect_of",
    "markdown",
    "run_case",
    "run_conformance",
    "selected",
    "shared",
]

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
"""The instant every case starts at."""
AUTHORIZATION = "Bearer workstate-conformance"
UNKNOWN_WORK = "work_" + "f" * 32
"""A well-formed work id (in every shipped dialect's format) that no case creates."""
UNKNOWN_ENV = "env_" + "f" * 32
_MALFORMED = {"work_x": "work", "env_x": "env"}
"""The malformed ids the cases send, by kind: a dialect where one is well formed gets it spelled with a ``-``."""
_SESSIONS = itertools.count(1)


# --- what a case is made of ---------------------------------------------------------------------------------


@attrs.frozen
class WorkRef:
    """The ``index``-th work item the case created, in each server's own id."""

    index: int

    def __str__(self) -> str:
        return f"<work {self.index}>"


@attrs.frozen
class Token:
    """A heartbeat token of item ``item``, each server's own ``last_heartbeat``, re-spelled as asked.

    ``which``: ``latest`` (``NO_HEARTBEAT`` before any), ``stale`` (the first of two or more, else an instant
    before the item existed). ``digits`` (0..9) and ``offset`` (minutes east of UTC) spell the same instant
    another way; None keeps the server's own text.
    """

    item: int
    which: str = "latest"
    digits: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        spelled = "" if self.digits is None and self.offset is None else f", {self.digits} digits, offset {self.offset}"
        return f"<{self.which} token of work {self.item}{spelled}>"


@attrs.frozen
class NextPage:
    """The ``next_page`` cursor of the case's latest list answer, each server's own (opaque in some dialects)."""

    def __str__(self) -> str:
        return "<the latest next_page>"


Value = str | WorkRef | Token | NextPage


@attrs.frozen
class NewWork:
    """The platform creates a work item (in environment ``env``, with ``metadata``)."""

    env: int = 0
    metadata: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"platform creates work in env {self.env} (metadata {dict(self.metadata)})"


@attrs.frozen
class NewEnv:
    """The platform creates another ``self_hosted`` environment (the first exists from the start)."""

    def __str__(self) -> str:
        return "platform creates an environment"


@attrs.frozen
class Wait:
    """The clock moves by ``seconds``, or (``deadline`` set) lands ``deadline`` microseconds from the next expiry."""

    seconds: float = 0.0
    deadline: int | None = None

    def __str__(self) -> str:
        if self.deadline is not None:
            return f"the clock lands on the next deadline {self.deadline:+d} us"
        return f"the clock moves {self.seconds:+g} s"


@attrs.frozen
class Call:
    """One request. ``env`` and ``work`` are indexes of what the case created (or literal ids)."""

    op: str
    work: int | str | None = None
    env: int | str = 0
    query: tuple[tuple[str, Value], ...] = ()
    worker: str | None = None
    body: bytes = b""
    authorization: str | None = AUTHORIZATION
    headers: tuple[tuple[str, str], ...] = ()
    method: str | None = None
    path: str | None = None
    """A literal path (``{env}`` and ``{work}`` filled in) instead of the operation's route."""

    def __str__(self) -> str:
        parts = [self.op if self.path is None else f"{self.method} {self.path}"]
        if self.work is not None:
            parts.append(f"work {self.work}")
        if self.query:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.query))
        if self.worker is not None:
            parts.append(f"Worker-ID {self.worker}")
        if self.body:
            parts.append(f"body {self.body.decode('utf-8', 'replace')}")
        return " ".join(parts)


Action = NewEnv | NewWork | Wait | Call


@attrs.frozen
class Case:
    """One numbered case: ``script`` is run from a fresh target (one environment, ``T0``)."""

    case_id: str
    rule: str
    script: tuple[Action, ...]

    @property
    def section(self) -> str:
        return self.case_id.split("-", 1)[0]

    @property
    def request_count(self) -> int:
        return sum(isinstance(action, Call) for action in self.script)


@attrs.frozen
class Exchange:
    """One request of a run: as sent to the target and to the reference, at ``now``, with both answers."""

    now: datetime
    request: Request
    reference: Request
    expected: Response
    actual: Response | str | None

    def __str__(self) -> str:
        r = self.request
        return (
            f"at {render_timestamp(self.now)}: {r.method} {r.target} headers={dict(r.headers or {})!r} body={r.body!r}"
        )


@attrs.frozen
class CaseResult:
    """The outcome of one case. On failure ``where`` is the first difference; ``expected``/``actual`` the answers."""

    case_id: str
    rule: str
    passed: bool
    requests: tuple[Exchange, ...]
    expected: Response | None = None
    actual: Response | str | None = None
    where: str | None = None

    @property
    def section(self) -> str:
        return self.case_id.split("-", 1)[0]

    def render(self) -> str:
        """A failure as text: the case, the rule, the difference, both answers and every request."""
        lines = [f"{self.case_id}: {'passed' if self.passed else 'FAILED'}", f"  rule: {self.rule}"]
        if not self.passed:
            lines.append(f"  difference: {self.where}")
            if self.expected is not None:
                lines.append(f"  expected (reference): {self.expected.status} {show(self.expected.json)}")
            if isinstance(self.actual, Response):
                lines.append(f"  actual (target):      {self.actual.status} {show(self.actual.json)}")
            elif self.actual is not None:
                lines.append(f"  actual (target):      {self.actual}")
        lines.append(f"  requests ({len(self.requests)}, the target's ids):")
        lines += [f"    {n}. {exchange}" for n, exchange in enumerate(self.requests, 1)]
        return "\n".join(lines)


@attrs.frozen
class ConformanceReport:
    """Every case's result, in suite order."""

    cases: tuple[CaseResult, ...]

    @property
    def ok(self) -> bool:
        return all(case.passed for case in self.cases)

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if not case.passed)

    @property
    def request_count(self) -> int:
        return sum(len(case.requests) for case in self.cases)

    def by_section(self) -> dict[str, tuple[int, int]]:
        """Section -> (cases, failures), in the order sections first appear."""
        table: dict[str, tuple[int, int]] = {}
        for case in self.cases:
            total, failed = table.get(case.section, (0, 0))
            table[case.section] = (total + 1, failed + (not case.passed))
        return table

    def summary(self) -> str:
        """A table of cases and failures per section of docs/api.md, then a line per failure."""
        rows = [f"{'section':<10} {'cases':>6} {'failed':>6}"]
        rows += [f"{section:<10} {total:>6} {failed:>6}" for section, (total, failed) in self.by_section().items()]
        failed = len(self.failures)
        rows.append(f"{'all':<10} {len(self.cases):>6} {failed:>6}   ({self.request_count} requests)")
        rows += [f"FAILED {case.case_id}: {case.where}" for case in self.failures]
        return "\n".join(rows)


# --- running one case -----------------------------------------------------------------------------------


class _Failed(Exception):
    def __init__(self, where: str, expected: Response | None, actual: Response | str | None) -> None:
        super().__init__(where)
        self.where, self.expected, self.actual = where, expected, actual


def _spell(text: str, digits: int | None, offset: int | None) -> str:
    """The instant of ``text`` spelled with ``digits`` fraction digits and a UTC offset of ``offset`` minutes."""
    if digits is None and offset is None:
        return text
    try:
        moment = parse_timestamp(text)
    except WorkstateError:
        return text
    zone = timezone(timedelta(minutes=offset or 0))
    local = moment.astimezone(zone)
    fraction = f"{local.microsecond:06d}" + "000"
    shown_digits = 6 if digits is None else digits
    stem = local.strftime("%Y-%m-%dT%H:%M:%S") + ("." + fraction[:shown_digits] if shown_digits else "")
    if offset is None:
        return stem + "Z"
    sign = "+" if offset >= 0 else "-"
    return f"{stem}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


class _Run:
    """One case on a fresh reference and (unless None) a fresh target."""

    def __init__(
        self, policy: Policy, target: Target | None, sessions: Callable[[], str], dialect: Dialect = QODER
    ) -> None:
        self.reference = _reference(policy, dialect)
        self.dialect = dialect
        self.target = target
        self.sessions = sessions
        self.comparison = Comparison(dialect=dialect)
        self.now = T0
        self.envs: list[tuple[str, str]] = []
        self.works: list[tuple[str, str]] = []
        self.tokens: dict[int, list[tuple[str, str]]] = {}
        self.exchanges: list[Exchange] = []
        self.last: Response | None = None
        self.acked: set[int] = set()  # items an ack moved out of queued (in the reference)
        self.pages: list[tuple[str, str]] = []  # the next_page cursors of the list answers, (reference, target)
        self._env()

    def _env(self) -> None:
        reference = self.reference.create_environment(now=self.now)
        created = reference
        if self.target is not None:
            try:
                created = self.target.create_environment(self.now)
            except Exception as exc:
                raise _Failed(f"create_environment raised {type(exc).__name__}: {exc}", None, repr(exc)) from None
            if not self.dialect.valid_id("env", created):
                rule = self.dialect.id_rule("env")
                raise _Failed(f"create_environment returned {created!r}, not {rule}", None, repr(created))
            if not self.comparison.ids.pair(reference, created):
                raise _Failed(f"create_environment returned {created!r}, an id already in use", None, repr(created))
        self.envs.append((reference, created))

    def do(self, action: Action) -> None:
        if isinstance(action, NewWork):
            self._work(action)
        elif isinstance(action, NewEnv):
            self._env()
        elif isinstance(action, Wait):
            if action.deadline is None:
                self.now += timedelta(seconds=action.seconds)
            else:
                deadline = self.reference.next_expiry()
                if deadline is not None:
                    self.now = deadline + timedelta(microseconds=action.deadline)
        else:
            self._call(action)

    def _work(self, action: NewWork) -> None:
        session = self.sessions()
        metadata = dict(action.metadata)
        env_ref, env_target = self.envs[action.env]
        reference = self.reference.create_work(env_ref, session_id=session, metadata=metadata, now=self.now)
        created = reference
        if self.target is not None:
            try:
                created = self.target.create_work(env_target, session, metadata, self.now)
            except Exception as exc:
                raise _Failed(f"create_work raised {type(exc).__name__}: {exc}", None, repr(exc)) from None
            if not self.dialect.valid_id("work", created):
                rule = self.dialect.id_rule("work")
                raise _Failed(f"create_work returned {created!r}, not {rule}", None, repr(created))
            if not self.comparison.ids.pair(reference, created):
                raise _Failed(f"create_work returned {created!r}, an id already in use", None, repr(created))
        self.works.append((reference, created))

    def _value(self, value: Value, side: int) -> str:
        if isinstance(value, WorkRef):
            return self.works[value.index][side]
        if isinstance(value, NextPage):
            return self.pages[-1][side] if self.pages else ""
        if isinstance(value, Token):
            tokens = self.tokens.get(value.item, [])
            if value.which == "stale":
                text = tokens[0][side] if len(tokens) > 1 else render_timestamp(T0 - timedelta(seconds=1))
            else:
                text = tokens[-1][side] if tokens else NO_HEARTBEAT
            return text if text == NO_HEARTBEAT else _spell(text, value.digits, value.offset)
        return self._spelled(value)

    def _spelled(self, value: str) -> str:
        """``value``, or (a malformed id of the cases that is well formed in this dialect) a malformed spelling."""
        kind = _MALFORMED.get(value)
        return value + "-" if kind is not None and self.dialect.valid_id(kind, value) else value

    def _id(self, value: int | str | None, pool: list[tuple[str, str]], side: int) -> str | None:
        if isinstance(value, int):
            return pool[value][side]
        return None if value is None else self._spelled(value)

    def request(self, call: Call, side: int) -> Request:
        env = self._id(call.env, self.envs, side) or ""
        work = self._id(call.work, self.works, side)
        dialect = self.dialect
        headers = [] if call.authorization is None else [(dialect.auth_headers[0], call.authorization)]
        if call.worker is not None:
            headers.append((dialect.worker_header, call.worker))
        headers += list(call.headers)
        if call.path is not None:
            path = call.path.format(base=dialect.base_path, env=env, work=work or "")
            method = call.method or "GET"
        else:
            operation = {"update": None, "get": None, "list": None}.get(call.op, call.op)
            if call.op in ("poll", "stats"):
                path = dialect.path(env, operation=call.op)
            elif call.op == "list":
                path = dialect.path(env)
            else:
                path = dialect.path(env, work or "", operation)
            method = "POST" if call.op in ("ack", "heartbeat", "stop", "update") else "GET"
        if call.query:
            path += "?" + "&".join(f"{quote(k, safe='')}={quote(self._value(v, side), safe='')}" for k, v in call.query)
        return Request(method, path, headers, call.body)

    def _call(self, call: Call) -> None:
        reference = self.request(call, 0)
        expected = self.reference.handle(reference, self.now)
        self.last = expected
        if self.target is None:
            actual: Response | str | None = expected
            target_request = reference
        else:
            target_request = self.request(call, 1)
            try:
                actual = self.target.send(target_request, self.now)
            except Exception as exc:
                actual = repr(exc)
                self.exchanges.append(Exchange(self.now, target_request, reference, expected, actual))
                raise _Failed(f"the target raised {type(exc).__name__}: {exc}", expected, actual) from None
        self.exchanges.append(Exchange(self.now, target_request, reference, expected, actual))
        if not isinstance(actual, Response):
            raise _Failed(f"the target answered {actual!r}, not a Response", expected, repr(actual))
        if self.target is not None:
            where = self.comparison.difference(reference, expected, actual)
            if where is not None:
                raise _Failed(where, expected, actual)
        if (
            call.op == "ack"
            and isinstance(call.work, int)
            and expected.rule is not None
            and expected.rule.name == "ack"
        ):
            self.acked.add(call.work)
        if call.op == "list" and isinstance(expected.json, dict) and isinstance(expected.json.get("next_page"), str):
            target_page = actual.json.get("next_page") if isinstance(actual.json, dict) else None
            self.pages.append((expected.json["next_page"], str(target_page or expected.json["next_page"])))
        if call.op == "heartbeat" and call.work is not None and isinstance(call.work, int) and expected.status == 200:
            target_token = actual.json.get("last_heartbeat") if isinstance(actual.json, dict) else None
            if isinstance(expected.json, dict) and expected.json.get("state") == "stopped":
                return  # a stopped item's reported heartbeat (a dialect that answers so) extends no lease
            self.tokens.setdefault(call.work, []).append(
                (expected.json["last_heartbeat"], str(target_token or expected.json["last_heartbeat"]))
            )


def _reference(policy: Policy, dialect: Dialect) -> Server:
    return Server(policy, dialect=dialect)


def _default_sessions(dialect: Dialect = QODER) -> Callable[[], str]:
    return lambda: f"{dialect.session_prefix}{next(_SESSIONS):032x}"  # 32 hex digits: an id body in every format


def dialect_of(dialect: Dialect | str | None) -> Dialect:
    """``dialect`` as a :class:`~workstate.Dialect`: a Dialect, a shipped dialect's name, or None (``QODER``)."""
    if dialect is None:
        return QODER
    if isinstance(dialect, Dialect):
        return dialect
    if isinstance(dialect, str) and dialect in DIALECTS:
        return DIALECTS[dialect]
    known = ", ".join(DIALECTS)
    raise InvalidInput(f"dialect must be a Dialect or one of {known}, got {dialect!r}", param="dialect")


def _policy_of(policy: Policy | None, dialect: Dialect) -> Policy:
    if policy is None:
        return dialect.policy
    if not isinstance(policy, Policy):
        raise InvalidInput(f"policy must be a Policy, got {policy!r}", param="policy")
    return policy


def run_case(
    case: Case,
    make_target: Callable[[], Target],
    *,
    policy: Policy | None = None,
    dialect: Dialect | str | None = None,
    sessions: Callable[[], str] | None = None,
) -> CaseResult:
    """Run one case on ``make_target()`` and a fresh reference; the target is closed after (if it has ``close``).

    ``dialect`` (default ``QODER``) is the one the case was generated in; ``policy`` defaults to the dialect's.
    """
    spoken = dialect_of(dialect)
    policy = _policy_of(policy, spoken)
    target = make_target()
    run: _Run | None = None
    try:
        run = _Run(policy, target, sessions or _default_sessions(spoken), spoken)
        for action in case.script:
            run.do(action)
    except _Failed as failure:
        exchanges = () if run is None else tuple(run.exchanges)
        return CaseResult(case.case_id, case.rule, False, exchanges, failure.expected, failure.actual, failure.where)
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    return CaseResult(case.case_id, case.rule, True, tuple(run.exchanges))


class _Kept:
    """``target`` without its ``close``: the view :func:`shared` hands to every case."""

    __slots__ = ("target",)

    def __init__(self, target: Target) -> None:
        self.target = target

    def send(self, request: Request, now: datetime) -> Response:
        return self.target.send(request, now)

    def create_environment(self, now: datetime) -> str:
        return self.target.create_environment(now)

    def create_work(self, env: str, session_id: str, metadata: Mapping[str, str], now: datetime) -> str:
        return self.target.create_work(env, session_id, metadata, now)


def shared(target: Target) -> Callable[[], Target]:
    """A ``make_target`` for :func:`run_conformance` that hands every case the one ``target`` (one keep-alive
    connection, one long-lived server), never closing it: each case makes its own environment, so none sees
    another's. The caller closes ``target`` when the run is over."""
    kept = _Kept(target)
    return lambda: kept


def selected(case_id: str, only: str | None) -> bool:
    """Whether ``only`` keeps the case: None keeps every case; else the id contains it or matches it as a glob;
    a leading ``!`` inverts (``!*@*`` keeps the boundaries, dropping the transition cover, whose ids hold ``@``)."""
    if only is not None and only.startswith("!"):
        return not selected(case_id, only[1:])
    return only is None or only in case_id or fnmatch.fnmatchcase(case_id, only)


def run_conformance(
    make_target: Callable[[], Target],
    *,
    policy: Policy | None = None,
    dialect: Dialect | str | None = None,
    only: str | None = None,
    progress: Callable[[int, int, CaseResult], None] | None = None,
    sessions: Callable[[], str] | None = None,
    max_failures: int | None = None,
) -> ConformanceReport:
    """Run every case (or those ``only`` selects) against fresh targets from ``make_target()``.

    ``dialect`` is the wire dialect the server speaks (a :class:`~workstate.Dialect` or a shipped one's
    name; default ``QODER``): the cases are generated from that dialect's lifecycle and sent in its
    spelling, and the answers compared in its rendering. ``policy`` is the reference's (give it the
    documented choices your server makes; default: the dialect's ``policy``). ``only`` keeps the
    cases whose id contains it or matches it as a glob (``4.2-*``; ``!`` first inverts: see :func:`selected`).
    ``progress(done, total, result)``
    is called after each case; ``sessions()`` makes a fresh session id per work item (the default
    counts up within the process: give a long-lived server that outlives the process a salted one).
    ``max_failures`` stops the run after that many failing cases (the report then holds the cases run).
    """
    spoken = dialect_of(dialect)
    policy = _policy_of(policy, spoken)
    chosen = [case for case in conformance_cases(policy, spoken) if selected(case.case_id, only)]
    results = []
    for number, case in enumerate(chosen, 1):
        result = run_case(case, make_target, policy=policy, dialect=spoken, sessions=sessions)
        results.append(result)
        if progress is not None:
            progress(number, len(chosen), result)
        if max_failures is not None and not result.passed:
            max_failures -= 1
            if max_failures <= 0:
                break
    return ConformanceReport(tuple(results))


# --- generating the suite ----------------------------------------------------------------------------------

_SECTION_OF_OP = {
    "poll": "4.1",
    "ack": "4.2",
    "heartbeat": "4.3",
    "stop": "4.4",
    "get": "4.5",
    "update": "4.5",
    "list": "4.6",
    "stats": "4.7",
}


def _probe_rule(op: str, response: Response) -> tuple[str, str]:
    """(id stem, rule text) of what the reference did with the last request of a case."""
    rule = response.rule
    if rule is not None:
        return f"{rule.section}-{rule.name}", rule.text
    section = _SECTION_OF_OP.get(op, "4")
    if response.status >= 400 and isinstance(response.json, dict):
        error = response.json.get("error") or {}
        param = error.get("param")
        text = f"{section} {op}: {response.status} {error.get('type')}" + (f", param {param}" if param else "")
        return f"{section}-{op}-{response.status}", text
    return f"{section}-{op}", f"{section} {op}: {response.status}"


def _simulate(script: Iterable[Action], policy: Policy, dialect: Dialect) -> _Run:
    run = _Run(policy, None, _counting(dialect), dialect)
    for action in script:
        run.do(action)
    return run


def _counting(dialect: Dialect) -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{dialect.session_prefix}{next(counter):032x}"


def _case(stem: str, label: str, script: tuple[Action, ...], policy: Policy, dialect: Dialect) -> Case:
    """A case whose id starts with the rule the reference applies to the request it probes.

    That is the last request, unless it is a ``get`` right after another request (which it observes).
    """
    probed = len(script) - 1
    if isinstance(script[-1], Call) and script[-1].op == "get" and len(script) > 1 and isinstance(script[-2], Call):
        probed -= 1
    run = _simulate(script[: probed + 1], policy, dialect)
    probe = script[probed]
    assert isinstance(probe, Call) and run.last is not None
    rule_stem, text = _probe_rule(probe.op, run.last)
    return Case(f"{rule_stem}/{stem}{label}", text, script)


# transition cover


def _moves(workers: tuple[str, ...], items: int) -> list[tuple[str, Action]]:
    found: list[tuple[str, Action]] = []
    for worker in (*workers, None):
        found.append((f"poll-{worker or 'anon'}", Call("poll", worker=worker)))
    for item in range(items):
        for worker in (*workers, None):
            found.append((f"ack{item}-{worker or 'anon'}", Call("ack", item, worker=worker)))
        found.append((f"beat{item}", Call("heartbeat", item, query=(("expected_last_heartbeat", Token(item)),))))
        found.append((f"stop{item}", Call("stop", item)))
        found.append((f"force{item}", Call("stop", item, body=b'{"force": true}')))
    found.append(("deadline", Wait(deadline=0)))
    found.append(("reclaim", Wait(seconds=5.0)))
    return found


def _key(run: _Run) -> tuple[Any, ...]:
    """The abstract state: per item, what the rules can tell apart."""
    run.reference.expire(run.now)
    key = []
    for index, (work, _) in enumerate(run.works):
        item = run.reference.work(run.envs[0][0], work)
        assert item is not None
        window = timedelta(milliseconds=run.reference.policy.reclaim_older_than_ms)
        reclaimable = item.delivered_at is not None and item.delivered_at <= run.now - window
        beats = min(len(run.tokens.get(index, [])), 2)
        requeued = item.state == "queued" and index in run.acked
        delivered = item.delivered_at is not None
        key.append((str(item.state), item.worker_id, item.delivered_to, delivered, reclaimable, beats, requeued))
    return tuple(key)


def _label(key: tuple[Any, ...]) -> str:
    """The abstract state as text: per item ``state[.requeued][.w=bound][.d=delivered-to][.reclaimable][.hbN]``."""
    parts = []
    for state, worker, delivered_to, delivered, reclaimable, beats, requeued in key:
        text = state + (".requeued" if requeued else "") + (f".w={worker}" if worker else "")
        if delivered:
            text += f".d={delivered_to or 'anon'}" + (".reclaimable" if reclaimable else "")
        if beats:
            text += f".hb{beats}"
        parts.append(text)
    return "+".join(parts)


def _probes(items: int) -> list[tuple[str, Call]]:
    found: list[tuple[str, Call]] = []
    for worker in ("w1", "w2", None):
        found.append((f"poll-{worker or 'anon'}", Call("poll", worker=worker)))
    found.append(("poll-w2-reclaim0", Call("poll", worker="w2", query=(("reclaim_older_than_ms", "0"),))))
    found.append(("list", Call("list")))
    found.append(("stats", Call("stats")))
    for item in range(items):
        n = "" if items == 1 else str(item)
        for worker in ("w1", "w2", None):
            found.append((f"ack{n}-{worker or 'anon'}", Call("ack", item, worker=worker)))
        beat = "expected_last_heartbeat"
        for name, query in (
            ("current", ((beat, Token(item)),)),
            ("stale", ((beat, Token(item, "stale")),)),
            ("no-heartbeat", ((beat, NO_HEARTBEAT),)),
            ("absent", ()),
            ("current-offset", ((beat, Token(item, offset=0)),)),
            ("ttl-zero", (("desired_ttl_seconds", "0"),)),
            ("token-garbage", ((beat, "yesterday"),)),
        ):
            found.append((f"heartbeat{n}-{name}", Call("heartbeat", item, query=query)))
        for name, body in (
            ("empty", b""),
            ("empty-object", b"{}"),
            ("graceful", b'{"force": false}'),
            ("force", b'{"force": true}'),
            ("force-invalid", b'{"force": "yes"}'),
        ):
            found.append((f"stop{n}-{name}", Call("stop", item, body=body)))
        found.append((f"get{n}", Call("get", item)))
        for name, body in (
            ("add", b'{"metadata": {"stage": "2"}}'),
            ("delete", b'{"metadata": {"job": null}}'),
            ("invalid", b"[]"),
        ):
            found.append((f"update{n}-{name}", Call("update", item, body=body)))
    return found


_COVER_CONFIGS: tuple[tuple[tuple[str, ...], int, int], ...] = (
    (("w1",), 1, 5),  # one worker, one item
    (("w1", "w2"), 1, 4),  # two workers, one item
    (("w1", "w2"), 2, 3),  # two workers, two items
)
"""(workers, items, most requests in a prefix) of the breadth-first searches."""


def _canonical(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """``key`` with the Worker-IDs renamed in order of appearance: states that differ only by names are one."""
    names: dict[str, str] = {}
    for entry in key:
        for worker in (entry[1], entry[2]):
            if worker is not None and worker not in names:
                names[worker] = f"w{len(names) + 1}"
    return tuple((e[0], names.get(e[1]), names.get(e[2]), *e[3:]) for e in key)


def _cover(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    seen: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[Action, ...]]] = {}
    for workers, items, depth in _COVER_CONFIGS:
        start: tuple[Action, ...] = tuple(NewWork(metadata=(("job", "build"),)) for _ in range(items))
        frontier = [start]
        first = _key(_simulate(start, policy, dialect))
        seen.setdefault(_canonical(first), (first, start))
        for _level in range(depth):
            following = []
            for script in frontier:
                for _name, move in _moves(workers, items):
                    longer = (*script, move)
                    if isinstance(move, Wait) and isinstance(script[-1], Wait):
                        continue
                    key = _key(_simulate(longer, policy, dialect))
                    if _canonical(key) not in seen:
                        seen[_canonical(key)] = (key, longer)
                        following.append(longer)
            frontier = following
    for key, prefix in seen.values():
        label = "@" + _label(key)
        for name, probe in _probes(len(key)):
            yield _case(name, label, (*prefix, probe), policy, dialect)


# boundaries

_BEAT = "expected_last_heartbeat"


def _take(item: int = 0, worker: str = "w1") -> tuple[Action, ...]:
    return (Call("poll", worker=worker), Call("ack", item, worker=worker))


def _active(item: int = 0, worker: str = "w1", ttl: str | None = None) -> tuple[Action, ...]:
    query: tuple[tuple[str, Value], ...] = ((_BEAT, NO_HEARTBEAT),)
    if ttl is not None:
        query += (("desired_ttl_seconds", ttl),)
    return (*_take(item, worker), Call("heartbeat", item, query=query))


_EDGES = {"-1us": -1, "+0us": 0, "+1us": 1}


def _time_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    one = (NewWork(),)
    for edge, offset in _EDGES.items():
        at = Wait(deadline=offset)
        yield _case(f"start-deadline{edge}/get", "", (*one, *_take(), at, Call("get", 0)), policy, dialect)
        yield _case(
            f"start-deadline{edge}/first-heartbeat",
            "",
            (*one, *_take(), at, Call("heartbeat", 0, query=((_BEAT, NO_HEARTBEAT),))),
            policy,
            dialect,
        )
        yield _case(f"lease-deadline{edge}/get", "", (*one, *_active(), at, Call("get", 0)), policy, dialect)
        yield _case(
            f"lease-deadline{edge}/heartbeat",
            "",
            (*one, *_active(), at, Call("heartbeat", 0, query=((_BEAT, Token(0)),))),
            policy,
            dialect,
        )
        yield _case(
            f"lease-deadline{edge}/poll-w2", "", (*one, *_active(), at, Call("poll", worker="w2")), policy, dialect
        )
        yield _case(f"lease-deadline{edge}/stats", "", (*one, *_active(), at, Call("stats")), policy, dialect)
        yield _case(
            f"drain-deadline{edge}/get", "", (*one, *_active(), Call("stop", 0), at, Call("get", 0)), policy, dialect
        )
        yield _case(
            f"lease-deadline{edge}/ttl-601", "", (*one, *_active(ttl="601"), at, Call("get", 0)), policy, dialect
        )
        yield _case(f"lease-deadline{edge}/ttl-9", "", (*one, *_active(ttl="9"), at, Call("get", 0)), policy, dialect)
    late = Wait(deadline=1_000_000)
    yield _case("drain-deadline+1s/get", "", (*one, *_active(), Call("stop", 0), late, Call("get", 0)), policy, dialect)
    yield _case("drain-deadline+1s/list", "", (*one, *_active(), Call("stop", 0), late, Call("list")), policy, dialect)
    yield _case("lease-deadline+1s/list", "", (*one, *_active(), late, Call("list")), policy, dialect)
    yield _case("start-deadline+1s/stats", "", (*one, *_take(), late, Call("stats")), policy, dialect)
    yield _case(
        "lease-deadline+1s/requeued-taken-by-w2",
        "",
        (*one, *_active(), late, Call("poll", worker="w2"), Call("ack", 0, worker="w2")),
        policy,
        dialect,
    )
    yield _case(
        "lease-deadline+1s/old-holder-beats",
        "",
        (*one, *_active(), late, *_take(0, "w2"), Call("heartbeat", 0, query=((_BEAT, Token(0)),))),
        policy,
        dialect,
    )
    yield _case("start-deadline+1s/ack-w2", "", (*one, *_take(), late, Call("ack", 0, worker="w2")), policy, dialect)
    yield _case("lease-deadline+1s/ack-w2", "", (*one, *_active(), late, Call("ack", 0, worker="w2")), policy, dialect)
    yield _case(
        "start-deadline+1s/ack-w1",
        "",
        (*one, *_take(), late, Call("ack", 0, worker="w1"), Call("get", 0)),
        policy,
        dialect,
    )
    if policy.on_start_timeout is OnStartTimeout.KEEP_STARTING:  # no deadline to land on: wait past the timeout
        for edge, shift in (("-1us", -0.000001), ("+0us", 0.0), ("+1us", 0.000001), ("+1h", 3600.0)):
            past = Wait(policy.start_timeout_seconds + shift)
            yield _case(f"start-timeout-kept{edge}/get", "", (*one, *_take(), past, Call("get", 0)), policy, dialect)
            first = Call("heartbeat", 0, query=((_BEAT, NO_HEARTBEAT),))
            yield _case(f"start-timeout-kept{edge}/first-heartbeat", "", (*one, *_take(), past, first), policy, dialect)
            yield _case(
                f"start-timeout-kept{edge}/poll-w2",
                "",
                (*one, *_take(), past, Call("poll", worker="w2")),
                policy,
                dialect,
            )
            yield _case(f"start-timeout-kept{edge}/stats", "", (*one, *_take(), past, Call("stats")), policy, dialect)
    yield _case("clock-backwards/heartbeat", "", (*one, *_active(), Wait(-30.0), Call("heartbeat", 0)), policy, dialect)
    yield _case("clock-backwards/stop", "", (*one, *_take(), Wait(-30.0), Call("stop", 0)), policy, dialect)
    yield _case(
        "heartbeat-same-instant/token",
        "",
        (*one, *_active(), Call("heartbeat", 0, query=((_BEAT, Token(0)),)), Call("get", 0)),
        policy,
        dialect,
    )


def _reclaim_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    window = policy.reclaim_older_than_ms / 1000
    one = (NewWork(),)
    for edge, shift in (("-1ms", -0.001), ("+0ms", 0.0), ("+1ms", 0.001)):
        wait = Wait(window + shift)
        yield _case(
            f"reclaim-default{edge}/poll-w2",
            "",
            (*one, Call("poll", worker="w1"), wait, Call("poll", worker="w2")),
            policy,
            dialect,
        )
        yield _case(
            f"reclaim-1000{edge}/poll-w2",
            "",
            (
                *one,
                Call("poll", worker="w1"),
                Wait(1 + shift),
                Call("poll", worker="w2", query=(("reclaim_older_than_ms", "1000"),)),
            ),
            policy,
            dialect,
        )
        yield _case(
            f"reclaim-default{edge}/stats", "", (*one, Call("poll", worker="w1"), wait, Call("stats")), policy, dialect
        )
        yield _case(
            f"reclaim-default{edge}/ack-w2",
            "",
            (*one, Call("poll", worker="w1"), wait, Call("ack", 0, worker="w2")),
            policy,
            dialect,
        )
    yield _case(
        "reclaim-0/poll-w2",
        "",
        (*one, Call("poll", worker="w1"), Call("poll", worker="w2", query=(("reclaim_older_than_ms", "0"),))),
        policy,
        dialect,
    )
    yield _case(
        "reclaim-0/redelivered-ack-w1",
        "",
        (
            *one,
            Call("poll", worker="w1"),
            Call("poll", worker="w2", query=(("reclaim_older_than_ms", "0"),)),
            Call("ack", 0, worker="w1"),
        ),
        policy,
        dialect,
    )
    full = Wait(window)
    yield _case(
        "rebind/redelivered-to-w2-ack-w1",
        "",
        (*one, Call("poll", worker="w1"), full, Call("poll", worker="w2"), Call("ack", 0, worker="w1")),
        policy,
        dialect,
    )
    yield _case(
        "rebind/redelivered-to-w2-ack-w2",
        "",
        (*one, Call("poll", worker="w1"), full, Call("poll", worker="w2"), Call("ack", 0, worker="w2"), Call("get", 0)),
        policy,
        dialect,
    )
    yield _case(
        "rebind/cleared-by-anon-poll-ack-w2",
        "",
        (*one, Call("poll", worker="w1"), full, Call("poll"), Call("ack", 0, worker="w2")),
        policy,
        dialect,
    )
    yield _case(
        "rebind/anon-ack-binds-delivered",
        "",
        (*one, Call("poll", worker="w1"), Call("ack", 0), Call("ack", 0, worker="w2")),
        policy,
        dialect,
    )
    yield _case(
        "rebind/ack-without-poll", "", (*one, Call("ack", 0, worker="w1"), Call("ack", 0, worker="w2")), policy, dialect
    )
    two = (NewWork(), NewWork())
    yield _case("order/oldest-first", "", (*two, Call("poll", worker="w1"), Call("poll", worker="w2")), policy, dialect)
    yield _case(
        "order/created-later",
        "",
        (
            NewWork(),
            Wait(1.0),
            NewWork(),
            Call("poll", worker="w1"),
            Call("poll", worker="w2"),
            Call("poll", worker="w1"),
        ),
        policy,
        dialect,
    )
    yield _case(
        "order/requeued-keeps-creation-order",
        "",
        (*two, *_active(), Wait(deadline=1), Call("poll", worker="w2")),
        policy,
        dialect,
    )
    yield _case(
        "order/stopped-skipped",
        "",
        (*two, Call("stop", 0, body=b'{"force": true}'), Call("poll", worker="w1")),
        policy,
        dialect,
    )
    for name, value in (
        ("block-1", "1"),
        ("block-999", "999"),
        ("block-0", "0"),
        ("block-1000", "1000"),
        ("block-x", "x"),
    ):
        yield _case(
            f"poll-{name}", "", (*one, Call("poll", worker="w1", query=(("block_ms", value),))), policy, dialect
        )
    for name, value in (("reclaim-minus-1", "-1"), ("reclaim-x", "x"), ("reclaim-empty", "")):
        yield _case(
            f"poll-{name}",
            "",
            (*one, Call("poll", worker="w1", query=(("reclaim_older_than_ms", value),))),
            policy,
            dialect,
        )


def _ttl_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    low, high = policy.min_ttl_seconds, policy.max_ttl_seconds
    values = {
        "min-1": str(low - 1),
        "min": str(low),
        "max": str(high),
        "max+1": str(high + 1),
        "1": "1",
        "0": "0",
        "minus-1": "-1",
        "x": "x",
        "float": "10.5",
    }
    for name, value in values.items():
        query: tuple[tuple[str, Value], ...] = ((_BEAT, NO_HEARTBEAT), ("desired_ttl_seconds", value))
        yield _case(f"ttl-{name}", "", (NewWork(), *_take(), Call("heartbeat", 0, query=query)), policy, dialect)
    yield _case("ttl-absent", "", (NewWork(), *_take(), Call("heartbeat", 0)), policy, dialect)
    yield _case(
        "ttl-second-beat-absent",
        "",
        (NewWork(), *_active(ttl=str(high)), Call("heartbeat", 0, query=((_BEAT, Token(0)),))),
        policy,
        dialect,
    )


def _spelling_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    for label, start in (("whole-second", ()), ("fraction", (Wait(0.123456),))):
        for digits in range(10):
            for name, offset in (("Z", None), ("+00:00", 0), ("+05:30", 330), ("-08:00", -480)):
                if digits not in (0, 3, 6, 9) and name != "Z":
                    continue
                token = Token(0, digits=digits, offset=offset)
                script = (NewWork(), *start, *_active(), Call("heartbeat", 0, query=((_BEAT, token),)))
                yield _case(f"token-{label}-{digits}digits-{name}", "", script, policy, dialect)
    for name, text in (
        ("lowercase-t", "2026-07-01t08:15:01.000000z"),
        ("no-offset", "2026-07-01T08:15:01.000000"),
        ("date-only", "2026-07-01"),
        ("empty", ""),
        ("no-heartbeat-lowercase", "no_heartbeat"),
    ):
        yield _case(
            f"token-{name}", "", (NewWork(), *_active(), Call("heartbeat", 0, query=((_BEAT, text),))), policy, dialect
        )


def _metadata_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    most = policy.metadata_max_keys
    keys, values = policy.metadata_max_key_length, policy.metadata_max_value_length

    def held(n: int) -> tuple[tuple[str, str], ...]:
        return tuple((f"k{i:02d}", "v") for i in range(n))

    def update(patch: Mapping[str, str | None], start: tuple[tuple[str, str], ...]) -> tuple[Action, ...]:
        return (
            NewWork(metadata=start),
            Call("update", 0, body=json.dumps({"metadata": patch}).encode()),
            Call("get", 0),
        )

    yield _case(f"metadata-{most}-keys-after-add", "", update({"new": "v"}, held(most - 1)), policy, dialect)
    yield _case(f"metadata-{most + 1}-keys-after-add", "", update({"new": "v"}, held(most)), policy, dialect)
    yield _case(
        f"metadata-{most}-keys-delete-while-add", "", update({"k00": None, "new": "v"}, held(most)), policy, dialect
    )
    yield _case(
        f"metadata-{most + 1}-keys-delete-missing-while-add",
        "",
        update({"missing": None, "new": "v"}, held(most)),
        policy,
        dialect,
    )
    yield _case(f"metadata-{most}-keys-overwrite", "", update({"k00": "w"}, held(most)), policy, dialect)
    patch: dict[str, str | None] = {f"p{i:02d}": "v" for i in range(most)}
    yield _case(f"metadata-patch-{most}-adds", "", update(patch, ()), policy, dialect)
    yield _case(
        f"metadata-patch-{most}-adds-1-delete-missing", "", update({**patch, "gone": None}, ()), policy, dialect
    )
    yield _case(f"metadata-patch-{most + 1}-adds", "", update({**patch, "extra": "v"}, ()), policy, dialect)
    yield _case(f"metadata-key-{keys}-chars", "", update({"k" * keys: "v"}, ()), policy, dialect)
    yield _case(f"metadata-key-{keys + 1}-chars", "", update({"k" * (keys + 1): "v"}, ()), policy, dialect)
    yield _case("metadata-key-empty", "", update({"": "v"}, ()), policy, dialect)
    yield _case(f"metadata-value-{values}-chars", "", update({"k": "v" * values}, ()), policy, dialect)
    yield _case(f"metadata-value-{values + 1}-chars", "", update({"k": "v" * (values + 1)}, ()), policy, dialect)
    yield _case("metadata-value-empty", "", update({"k": ""}, ()), policy, dialect)
    yield _case("metadata-delete-missing", "", update({"missing": None}, (("job", "build"),)), policy, dialect)
    yield _case("metadata-delete-held", "", update({"job": None}, (("job", "build"),)), policy, dialect)
    for name, body in (
        ("no-metadata", b"{}"),
        ("metadata-null", b'{"metadata": null}'),
        ("value-number", b'{"metadata": {"k": 1}}'),
        ("other-key", b'{"metadata": {}, "x": 1}'),
        ("not-json", b"{"),
        ("empty-body", b""),
        ("array", b"[]"),
    ):
        yield _case(f"update-{name}", "", (NewWork(), Call("update", 0, body=body), Call("get", 0)), policy, dialect)
    for name, body in (
        ("empty-object", b"{}"),
        ("other-key", b'{"force": false, "x": 1}'),
        ("force-null", b'{"force": null}'),
        ("not-json", b"{"),
    ):
        yield _case(
            f"stop-{name}", "", (NewWork(), *_take(), Call("stop", 0, body=body), Call("get", 0)), policy, dialect
        )
    stopped = (NewWork(), Call("stop", 0, body=b'{"force": true}'))
    yield _case("update-stopped", "", (*stopped, Call("update", 0, body=b'{"metadata": {"a": "b"}}')), policy, dialect)


def _list_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    most = policy.list_max_limit
    default = policy.list_default_limit

    def listing(n: int, *query: tuple[str, Value]) -> tuple[Action, ...]:
        return (*(NewWork() for _ in range(n)), Call("list", query=tuple(query)))

    yield _case("list-empty", "", (Call("list"),), policy, dialect)
    yield _case("list-limit-1", "", listing(3, ("limit", "1")), policy, dialect)
    yield _case(f"list-default-{default}-of-{default + 1}", "", listing(default + 1), policy, dialect)
    yield _case(f"list-default-{default}-of-{default}", "", listing(default), policy, dialect)
    yield _case(f"list-limit-{most}-of-{most}", "", listing(most, ("limit", str(most))), policy, dialect)
    yield _case(f"list-limit-{most}-of-{most + 1}", "", listing(most + 1, ("limit", str(most))), policy, dialect)
    yield _case(
        f"list-limit-{most + 1}-of-{most + 1}", "", listing(most + 1, ("limit", str(most + 1))), policy, dialect
    )
    for name, value in (("0", "0"), ("minus-1", "-1"), ("x", "x"), ("empty", "")):
        yield _case(f"list-limit-{name}", "", listing(1, ("limit", value)), policy, dialect)
    for cursor in ("page", "after_id", "before_id"):
        for where, index in (("first", 0), ("second", 1), ("last", 3)):
            yield _case(
                f"list-{cursor}-{where}", "", listing(4, ("limit", "2"), (cursor, WorkRef(index))), policy, dialect
            )
        yield _case(f"list-{cursor}-unknown", "", listing(2, (cursor, UNKNOWN_WORK)), policy, dialect)
        yield _case(f"list-{cursor}-malformed", "", listing(2, (cursor, "work_x")), policy, dialect)
    yield _case("list-page-full-last-page", "", listing(4, ("limit", "2"), ("page", WorkRef(1))), policy, dialect)
    yield _case("list-before-id-near-start", "", listing(4, ("limit", "1"), ("before_id", WorkRef(1))), policy, dialect)
    yield _case(
        "list-before-id-full-first-page", "", listing(4, ("limit", "2"), ("before_id", WorkRef(2))), policy, dialect
    )
    yield _case("list-two-cursors", "", listing(2, ("page", WorkRef(0)), ("before_id", WorkRef(1))), policy, dialect)
    yield _case("list-states", "", (NewWork(), NewWork(), *_active(), Call("stop", 1), Call("list")), policy, dialect)


def _stats_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    window = policy.workers_polling_window_seconds
    for edge, shift in (("-1us", -0.000001), ("+0us", 0.0), ("+1us", 0.000001)):
        yield _case(
            f"stats-workers-polling{edge}",
            "",
            (NewWork(), Call("poll", worker="w1"), Wait(window + shift), Call("stats")),
            policy,
            dialect,
        )
    yield _case("stats-empty", "", (Call("stats"),), policy, dialect)
    for name, query in (("block-0", "block_ms=0"), ("reclaim-x", "reclaim_older_than_ms=x")):
        key, _, value = query.partition("=")
        yield _case(
            f"stats-after-rejected-poll-{name}",
            "",
            (Call("poll", worker="w1", query=((key, value),)), Call("stats")),
            policy,
            dialect,
        )
    yield _case(
        "stats-after-poll-of-other-env",
        "",
        (NewEnv(), Call("poll", env=1, worker="w1"), Call("stats")),
        policy,
        dialect,
    )
    yield _case("stats-anonymous-poll", "", (Call("poll"), Call("stats")), policy, dialect)
    yield _case(
        "stats-two-workers",
        "",
        (Call("poll", worker="w1"), Call("poll", worker="w2"), Call("poll", worker="w1"), Call("stats")),
        policy,
        dialect,
    )
    yield _case("stats-queued", "", (NewWork(), NewWork(), Call("stats")), policy, dialect)
    reclaim = policy.reclaim_older_than_ms / 1000
    for edge, shift in (("-1ms", -0.001), ("+0ms", 0.0), ("+1ms", 0.001)):
        yield _case(
            f"stats-pending-reclaim{edge}",
            "",
            (NewWork(), NewWork(), Call("poll", worker="w1"), Wait(reclaim + shift), Call("stats")),
            policy,
            dialect,
        )
    yield _case(
        "stats-oldest-after-ack", "", (NewWork(), Wait(1.0), NewWork(), *_take(), Call("stats")), policy, dialect
    )
    yield _case("stats-after-lapse", "", (NewWork(), *_active(), Wait(deadline=0), Call("stats")), policy, dialect)
    yield _case("stats-after-stop", "", (NewWork(), Call("stop", 0), Call("stats")), policy, dialect)


def _error_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    item_ops = ("ack", "heartbeat", "stop", "get", "update")
    update_body = b'{"metadata": {}}'
    for op in ("poll", "list", "stats", *item_ops):
        work = 0 if op in item_ops else None
        body = update_body if op == "update" else b""
        yield _case(
            f"{op}-no-authorization", "", (NewWork(), Call(op, work, body=body, authorization=None)), policy, dialect
        )
        yield _case(
            f"{op}-bearer-empty", "", (NewWork(), Call(op, work, body=body, authorization="Bearer ")), policy, dialect
        )
        yield _case(
            f"{op}-basic", "", (NewWork(), Call(op, work, body=body, authorization="Basic dXNlcg==")), policy, dialect
        )
        yield _case(f"{op}-unknown-env", "", (NewWork(), Call(op, work, env=UNKNOWN_ENV, body=body)), policy, dialect)
        yield _case(f"{op}-malformed-env", "", (NewWork(), Call(op, work, env="env_x", body=body)), policy, dialect)
        yield _case(
            f"{op}-unknown-env-no-auth",
            "",
            (NewWork(), Call(op, work, env=UNKNOWN_ENV, body=body, authorization=None)),
            policy,
            dialect,
        )
        yield _case(
            f"{op}-request-id-echoed",
            "",
            (
                NewWork(),
                Call(
                    op,
                    UNKNOWN_WORK if work is not None else None,
                    body=body,
                    headers=(("x-request-id", "req-conformance-1"),),
                ),
            ),
            policy,
            dialect,
        )
        if work is not None:
            yield _case(f"{op}-unknown-work", "", (NewWork(), Call(op, UNKNOWN_WORK, body=body)), policy, dialect)
            yield _case(f"{op}-malformed-work", "", (NewWork(), Call(op, "work_x", body=body)), policy, dialect)
            yield _case(
                f"{op}-other-env-work", "", (NewWork(), Call(op, 0, env=UNKNOWN_ENV, body=body)), policy, dialect
            )
        if op not in ("stop", "update"):
            yield _case(f"{op}-body-empty-object", "", (NewWork(), Call(op, work, body=b"{}")), policy, dialect)
            yield _case(f"{op}-body-not-json", "", (NewWork(), Call(op, work, body=b"{")), policy, dialect)
    order = (
        ("unknown-work-bad-ttl", Call("heartbeat", UNKNOWN_WORK, query=(("desired_ttl_seconds", "0"),))),
        ("unknown-env-bad-ttl", Call("heartbeat", 0, env=UNKNOWN_ENV, query=(("desired_ttl_seconds", "0"),))),
        ("queued-bad-token", Call("heartbeat", 0, query=((_BEAT, "x"),))),
        ("queued-bad-force", Call("stop", UNKNOWN_WORK, body=b'{"force": 1}')),
        ("poll-unknown-env-bad-block", Call("poll", env=UNKNOWN_ENV, query=(("block_ms", "0"),))),
        ("list-bad-limit-no-auth", Call("list", query=(("limit", "0"),), authorization=None)),
    )
    for name, call in order:
        yield _case(f"order-{name}", "", (NewWork(), call), policy, dialect)
    for name, method, path in (
        ("unknown-route", "GET", "{base}{env}/jobs"),
        ("ack-with-get", "GET", "{base}{env}/work/{work}/ack"),
        ("poll-with-post", "POST", "{base}{env}/work/poll"),
        ("unknown-action", "POST", "{base}{env}/work/{work}/finish"),
        ("root", "GET", "/"),
        ("trailing-slash", "GET", "{base}{env}/work/"),
    ):
        yield _case(f"route-{name}", "", (NewWork(), Call("route", 0, method=method, path=path)), policy, dialect)
        yield _case(
            f"route-{name}-no-authorization",
            "",
            (NewWork(), Call("route", 0, method=method, path=path, authorization=None)),
            policy,
            dialect,
        )
    for op in ("ack", "heartbeat", "stop", "get", "update"):
        body = update_body if op == "update" else b""
        yield _case(
            f"{op}-work-of-other-env", "", (NewWork(), NewEnv(), Call(op, 0, env=1, body=body)), policy, dialect
        )
    yield _case("list-other-env", "", (NewWork(), NewEnv(), NewWork(1), Call("list", env=1)), policy, dialect)
    yield _case(
        "poll-other-env",
        "",
        (NewWork(), NewEnv(), Call("poll", env=1, worker="w1"), Call("poll", worker="w1")),
        policy,
        dialect,
    )
    yield _case("stats-other-env", "", (NewWork(), NewEnv(), Call("stats", env=1)), policy, dialect)


def _dialect_cases(policy: Policy, dialect: Dialect) -> Iterator[Case]:
    """The cases of what only some dialects have (none for ``QODER``): more key headers, headers clients send
    that are ignored, and (``ListStyle.NEXT_PAGE``) walking a list by its ``next_page`` cursors."""
    item_ops = ("ack", "heartbeat", "stop", "get", "update")
    update_body = b'{"metadata": {}}'
    key = AUTHORIZATION.removeprefix("Bearer ")
    for header in dialect.auth_headers[1:]:
        name = header.lower()
        for op in ("poll", "list", "stats", *item_ops):
            work = 0 if op in item_ops else None
            body = update_body if op == "update" else b""
            for label, value in (("", key), ("-empty", ""), ("-bearer", AUTHORIZATION)):
                call = Call(op, work, body=body, authorization=None, headers=((header, value),))
                yield _case(f"{op}-{name}{label}", "", (NewWork(), call), policy, dialect)
            both = Call(op, work, body=body, authorization="Basic dXNlcg==", headers=((header, key),))
            yield _case(f"{op}-{name}-beside-basic", "", (NewWork(), both), policy, dialect)
    for header in dialect.ignored_headers:
        name = header.lower()
        sent = ((header, "workstate-conformance"),)
        yield _case(f"poll-with-{name}", "", (NewWork(), Call("poll", worker="w1", headers=sent)), policy, dialect)
        yield _case(f"ack-with-{name}", "", (NewWork(), *_take()[:1], Call("ack", 0, headers=sent)), policy, dialect)
        beat = Call("heartbeat", 0, query=((_BEAT, NO_HEARTBEAT),), headers=sent)
        yield _case(f"heartbeat-with-{name}", "", (NewWork(), *_take(), beat), policy, dialect)
        yield _case(f"stop-with-{name}", "", (NewWork(), Call("stop", 0, headers=sent)), policy, dialect)
        yield _case(f"list-with-{name}", "", (NewWork(), Call("list", headers=sent)), policy, dialect)
    if dialect.ignored_headers:
        beta = (("beta", "true"),)
        yield _case("poll-beta-query", "", (NewWork(), Call("poll", worker="w1", query=beta)), policy, dialect)
        beat = Call("heartbeat", 0, query=(*beta, (_BEAT, NO_HEARTBEAT)))
        yield _case("heartbeat-beta-query", "", (NewWork(), *_take(), beat), policy, dialect)
    if dialect.list_style is ListStyle.NEXT_PAGE:
        for items, limit in ((5, 2), (4, 2), (3, 1)):
            walk: list[Action] = [NewWork() for _ in range(items)]
            walk.append(Call("list", query=(("limit", str(limit)),)))
            for page in range(1, -(-items // limit)):  # every page after the first, the last one's null cursor
                walk.append(Call("list", query=(("limit", str(limit)), ("page", NextPage()))))
                yield _case(f"list-next-page-{items}-by-{limit}-page-{page + 1}", "", tuple(walk), policy, dialect)
        changed = (NewWork(), NewWork(), NewWork(), Call("list", query=(("limit", "1"),)), Call("stop", 0))
        yield _case(
            "list-next-page-after-stop", "", (*changed, Call("list", query=(("page", NextPage()),))), policy, dialect
        )
        for cursor in ("before_id", "after_id"):
            yield _case(
                f"list-{cursor}-ignored-with-page",
                "",
                (
                    NewWork(),
                    NewWork(),
                    NewWork(),
                    Call("list", query=(("limit", "1"),)),
                    Call("list", query=(("limit", "1"), ("page", NextPage()), (cursor, WorkRef(0)))),
                ),
                policy,
                dialect,
            )


def _generate(policy: Policy, dialect: Dialect) -> tuple[Case, ...]:
    found: list[Case] = []
    for family in (
        _time_cases,
        _reclaim_cases,
        _ttl_cases,
        _spelling_cases,
        _metadata_cases,
        _list_cases,
        _stats_cases,
        _error_cases,
        _dialect_cases,
        _cover,
    ):
        found.extend(family(policy, dialect))
    ids: dict[str, int] = {}
    unique = []
    for case in found:
        count = ids.get(case.case_id, 0)
        ids[case.case_id] = count + 1
        unique.append(case if not count else attrs.evolve(case, case_id=f"{case.case_id}#{count + 1}"))
    return tuple(unique)


@functools.cache
def _cached(policy: Policy, dialect: Dialect) -> tuple[Case, ...]:
    return _generate(policy, dialect)


def conformance_cases(policy: Policy | None = None, dialect: Dialect | str | None = None) -> tuple[Case, ...]:
    """Every case of the suite for ``policy`` in ``dialect``, in suite order (the same every time).

    ``dialect`` defaults to ``QODER``, ``policy`` to the dialect's. The cases come from the rules the
    dialect's lifecycle (``LIFECYCLE.in_dialect(dialect)``) reaches, so each dialect has its own suite.
    """
    spoken = dialect_of(dialect)
    return _cached(_policy_of(policy, spoken), spoken)


# --- the generated page ------------------------------------------------------------------------------------


def _script_text(script: Iterable[Action], dialect: Dialect = QODER) -> str:
    shown = (str(action).replace("{base}", dialect.base_path) for action in script)
    if dialect.worker_header != QODER.worker_header:  # a Call shows its worker under the default header's name
        shown = (text.replace(f"{QODER.worker_header} ", f"{dialect.worker_header} ") for text in shown)
    return "; ".join(shown) or "nothing"


def markdown(policy: Policy | None = None, dialect: Dialect | str | None = None) -> str:
    """``docs/conformance.md``: every case id of the suite (written by ``python -m workstate.cli.docgen``).

    ``dialect`` (default ``QODER``) and ``policy`` (default the dialect's) choose the suite, as in
    :func:`conformance_cases`; the page of another dialect names it in its title.
    """
    spoken = dialect_of(dialect)
    cases = conformance_cases(policy, spoken)
    cover = [case for case in cases if "@" in case.case_id]
    boundaries = [case for case in cases if "@" not in case.case_id]
    requests = sum(case.request_count for case in cases)
    title = "# The conformance suite" + ("" if spoken == QODER else f" of the `{spoken.name}` dialect")
    under = "the spec's policy" if spoken == QODER else "the dialect's policy"
    call, command = "run_conformance(make_target)", "workstate conform --url URL"
    if spoken != QODER:
        call = f"run_conformance(make_target, dialect={spoken.name.upper()})"
        command += f" --dialect {spoken.name}"
    lines = [
        title,
        "",
        "<!-- generated by `python -m workstate.cli.docgen` from workstate/testing/conformance.py: do not edit -->",
        "",
        f"{len(cases):,} cases, {requests:,} requests, under {under}: {len(boundaries)} boundary cases",
        f"and {len(cover):,} transition-cover cases. Run them with `{call}`",
        "(`workstate.testing.conformance`), the `workstate_conformance` pytest fixture, or",
        f"`{command}` against a live server (docs/testing-guide.md). Every case starts from a",
        f"fresh environment at {render_timestamp(T0)}; every request of a case is compared, the last one is the probe.",
        "",
        "A case id is `SECTION-RULE/NAME`: the section of api.md (`4.2`: api.md §4.2) and the rule (of",
        "`workstate/rules.py`, or the",
        "operation and status when no lifecycle rule decides) that the reference applies to the probe, and the",
        "case's name. Transition-cover ids end in `@STATE`, the abstract state the probe meets: per item",
        "`state[.requeued][.w=bound Worker-ID][.d=delivered to][.reclaimable][.hbN heartbeats]`, items joined by",
        "`+`. `--only PATTERN` (and `only=`) selects by substring or glob; `!*@*` keeps the boundary cases only.",
        "",
        "## Boundaries",
        "",
        "| case | rule | script |",
        "|---|---|---|",
    ]
    for case in boundaries:
        rule = case.rule.replace("|", "/")
        lines.append(f"| `{case.case_id}` | {rule} | {_script_text(case.script, spoken).replace('|', '/')} |")
    lines += [
        "",
        "## Transition cover",
        "",
        "Each abstract state, reached by its shortest request sequence (breadth-first over the reference with",
        "one and two workers, one and two items), then every probe from it; the ids are `RULE/PROBE@STATE`.",
    ]
    by_state: dict[str, list[Case]] = {}
    for case in cover:
        by_state.setdefault(case.case_id.split("@", 1)[1], []).append(case)
    for state, group in by_state.items():
        prefix = group[0].script[:-1]
        lines += ["", f"### `@{state}`", "", f"Reached by: {_script_text(prefix, spoken)}.", ""]
        lines.append(", ".join(f"`{case.case_id.split('@', 1)[0]}`" for case in group))
    return "\n".join(lines) + "\n"
