"""The reference server: the whole Work API as a sans-I/O request -> response model.

:class:`Server` takes HTTP-shaped :class:`Request` values and returns HTTP-shaped :class:`Response`
values for every endpoint of ``work-api.md`` section 4 (the public contract is
``reference-server.md``). It reads no clock, opens no socket, starts no thread and draws no random
number: time comes in as ``now``, ids come from an injectable, deterministic source. Every rule of
the lifecycle is the core's (:func:`workstate.step`); this module adds only what an HTTP surface
and a collection of items need: the check order, the environments and their items, the queue and
the clock. It reads requests with :mod:`workstate.api.wire`, routes them with
:mod:`workstate.api.routes`, keeps its queue in the indexes of :mod:`workstate.api.index` and
writes replies with :mod:`workstate.api.codec`.

Decisions taken here where the spec is silent:

- Check order: an unknown route (or a known path with another method) is 404 before anything
  else; then 401, 403, 404 environment, 400 not ``self_hosted``, 400 parameters (query in the
  endpoint's order, then ``Worker-ID``, then the body), 404 work item, then the rules.
- Every call first applies the expiry due at ``now`` to every item (:meth:`Server.expire`, driven by
  a deadline heap), so the lazy path and the eager sweep cannot disagree. Time passing is not a
  change a request makes: "a rejected request changes nothing" holds for the state at ``now``.
- A rejected request (any 4xx) records nothing, not even a poll for ``workers_polling``.
- How a request is read (query, headers, ``Authorization``, bodies): see :mod:`workstate.api.wire`;
  how a path is routed and what each endpoint reads: see :mod:`workstate.api.routes`.
- Error messages show every value they were given through :func:`workstate._time.shown`:
  ``repr``-escaped and cut to its first 64 characters (with how many there were), so an 8 MB target
  gets an answer of a few hundred bytes; a message is never longer than 1,024 characters.
- ``expected_last_heartbeat``: a valid RFC 3339 timestamp that names no instant workstate can hold
  (finer than a microsecond, a leap second, a year out of range) is a precondition that matches no
  heartbeat: 412 after the state's 409s, as the core has it (:class:`~workstate.Heartbeat`); a
  string that is not RFC 3339 is 400.
- List: pages go in the direction of their cursor. For ``page``, ``after_id`` or no cursor,
  ``has_more`` says whether items follow ``last_id`` and ``next_page`` is ``last_id`` (follow it as
  ``page`` or ``after_id``); for ``before_id`` (the ``limit`` items just before it, ascending),
  ``has_more`` says whether items precede ``first_id`` and ``next_page`` is ``first_id`` (follow it
  as ``before_id``, and the pages walk backwards). ``next_page`` is null without ``has_more``.
  Cursors must be well-formed work ids but need not exist.
- ``workers_polling``: a poll is stamped at ``now``, or at the environment's newest poll stamp when
  ``now`` is behind it (stamps never go backwards, like an item's timeline); stats count the
  Worker-IDs whose latest stamp is less than the window before ``now`` or that newest stamp,
  whichever is later. While ``now`` never goes back, that is "polled in the window before ``now``";
  when it went back, a poll "later" than ``now`` still counts. An id stamped a window or more before
  the newest stamp can never count again and is forgotten, so memory and the cost of stats are
  those of the ids inside one window.
- Dialects (``Server(dialect=...)``): paths, headers, ids, envelopes and stop's answer are the dialect's;
  every lifecycle decision is ``LIFECYCLE.in_dialect(dialect).step``. A dialect of ``ErrorStyle.DETAILS``
  renders no ``param`` (its envelope has ``details`` instead) and sends the request id in its
  ``request_id_header`` too; its 412 carries ``details.current_state`` of the item as it stands at ``now``
  (``lease_updated_at`` is the item's clock: the instant of the lifecycle's last change to it).
  A heartbeat's ``Replayed`` outcome (rule ``heartbeat-stopped-reported``) is rendered as the heartbeat
  object with ``lease_extended: false``. Unknown query parameters (``beta=true``) and headers are ignored
  in every dialect.
- ``create_work`` and ``adopt`` find a session's live item through an index (session -> live
  item) that every write keeps, expiry included: O(1), however many items there are.
"""

from __future__ import annotations

import base64
import bisect
import enum
import heapq
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import attrs

from .._time import aware, render_timestamp, shown
from ..dialect import QODER, Dialect, ErrorStyle, ListStyle, StopAnswer
from ..errors import InvalidId, InvalidInput, InvalidMetadata, WorkstateError
from ..model import (
    LIFECYCLE,
    Accepted,
    Ack,
    Command,
    Deliver,
    Effect,
    Lapse,
    Rejected,
    Replayed,
    UpdateMetadata,
    WorkItem,
    next_deadline,
)
from ..policy import LimitOverMax, Policy
from ..rules import Reason, Rule, State
from .codec import ErrorEnvelope, HeartbeatObject, ListEnvelope, StatsObject, dumps, encode_work
from .index import CreationKey, Delivered, FreshQueue, Polls, is_fresh
from .routes import params_of_reasons, read_heartbeat, read_stop, read_update, read_worker, route
from .wire import (
    JSON_HEADERS,
    Headers,
    Refusal,
    Request,
    Response,
    api_key,
    bad,
    bearer_token,
    echoed,
    integer,
    no_body,
    not_found,
    param,
    parse_query,
    read_headers,
)

__all__ = [
    "Access",
    "Authorizer",
    "CounterIds",
    "DuplicateId",
    "Environment",
    "EnvironmentKind",
    "EnvironmentSnapshot",
    "IdSource",
    "OnChange",
    "NotSelfHosted",
    "Server",
    "SessionBusy",
    "UnknownEnvironment",
    "allow_any",
]

_PLACEHOLDER = "work_" + "0" * 32
_NO_HEADERS = Headers()
_SECRET_OPERATIONS = frozenset({"ack", "heartbeat", "stop"})
_NO_PATCH = UpdateMetadata({})
_QUEUED = State.QUEUED
_LAPSE = Lapse()
_MESSAGE_LIMIT = 1024  # the longest error message answered (every value in one is cut short by _time.shown)


# --- typed errors of the server's own operations -------------------------------------------------


class UnknownEnvironment(WorkstateError):
    """``create_work`` named an environment this server does not have."""

    status_hint = 404


class NotSelfHosted(WorkstateError):
    """Work was created in an environment that is not ``self_hosted`` (spec section 1)."""

    status_hint = 400


class SessionBusy(WorkstateError):
    """The session already has a live (not ``stopped``) work item (spec section 1)."""

    status_hint = 409

    def __init__(self, message: str, *, session_id: str, work_id: str) -> None:
        super().__init__(message, param="session_id")
        self.session_id = session_id
        self.work_id = work_id


class DuplicateId(WorkstateError):
    """The id source handed out an id that is already in use."""

    status_hint = 500


# --- pluggable parts ----------------------------------------------------------------------------------


class EnvironmentKind(enum.StrEnum):
    SELF_HOSTED = "self_hosted"
    CLOUD = "cloud"


@attrs.frozen
class Access:
    """What an authorizer judges: who (the bearer token) wants to do what, where."""

    token: str
    operation: str  # one of routes.OPERATIONS: poll, ack, heartbeat, stop, get, update, list, stats
    environment_id: str
    work_id: str | None


Authorizer: TypeAlias = Callable[[Access], bool]
IdSource: TypeAlias = Callable[[str], str]
"""Given a prefix (``env_``, ``work_`` or ``req_``), a new id with that prefix."""
OnChange: TypeAlias = Callable[[str, "WorkItem | None", "WorkItem"], None]
"""Called with (environment id, the item before or None when created, the item after) for every item written."""


def allow_any(access: Access) -> bool:
    """The default authorizer: every well-formed bearer token may do everything."""
    return True


class CounterIds:
    """The default id source: a counter per prefix, rendered in ``dialect``'s id format (``QODER``: 32 lowercase
    hex digits; ``ANTHROPIC``: ``"01"`` and 24 base62 digits).

    Deterministic (two sources given the same calls give the same ids) and sorting in creation order.
    """

    __slots__ = ("_format", "_next", "_start")

    def __init__(self, start: int = 1, dialect: Dialect = QODER) -> None:
        self._next: dict[str, int] = {}
        self._start = start
        self._format = dialect.ids

    def __call__(self, prefix: str) -> str:
        number = self._next.get(prefix, self._start)
        self._next[prefix] = number + 1
        return prefix + self._format.render(number)


def _minus(now: datetime, delta: timedelta) -> datetime | None:
    """``now - delta``, or None when that is before the first representable instant."""
    try:
        return now - delta
    except OverflowError:
        return None


def _window(milliseconds: int) -> timedelta | None:
    """A reclaim window, or None when it is longer than any timeline (nothing delivered is reclaimable)."""
    try:
        return timedelta(milliseconds=milliseconds)
    except OverflowError:
        return None


# --- environments -------------------------------------------------------------------------------------------


@attrs.frozen
class EnvironmentSnapshot:
    """Everything a response can depend on about one environment (see :meth:`Server.snapshot`)."""

    id: str
    kind: EnvironmentKind
    created_at: datetime
    items: tuple[WorkItem, ...]  # ascending id
    polls: tuple[tuple[str, datetime], ...]  # (Worker-ID, latest poll as stamped), by Worker-ID: those that may count


class Environment:
    """One environment's items and the indexes over them (all derived from ``items``, but ``polls``).

    The server's own bookkeeping, public for subclasses that override how a poll chooses (the mutants of
    :mod:`workstate.testing.mutants` do); its fields may change with the server.
    """

    __slots__ = ("created_at", "delivered", "fresh", "id", "items", "kind", "order", "polls")

    def __init__(self, env_id: str, kind: EnvironmentKind, created_at: datetime, polling_window: timedelta) -> None:
        self.id = env_id
        self.kind = kind
        self.created_at = created_at
        self.items: dict[str, WorkItem] = {}
        self.order: list[str] = []  # every id, ascending: the list endpoint
        self.fresh = FreshQueue()  # queued items never delivered
        self.delivered = Delivered()  # queued items delivered by a poll
        self.polls = Polls(polling_window)  # Worker-ID -> latest poll, inside the workers-polling window

    def oldest_queued(self) -> CreationKey | None:
        fresh = self.fresh.oldest(self.items)
        found = None if fresh is None else (fresh.created_at, fresh.id)
        delivered = self.delivered.oldest()
        if delivered is not None and (found is None or delivered < found):
            return delivered
        return found


def _environment_kind(kind: EnvironmentKind | str) -> EnvironmentKind:
    try:
        return EnvironmentKind(kind)
    except ValueError:
        kinds = [k.value for k in EnvironmentKind]
        raise InvalidInput(f"kind must be one of {kinds}, got {shown(kind)}", param="kind") from None


# --- the server -----------------------------------------------------------------------------------------------


class Server:
    """The reference server. ``Server()`` uses the spec's policy and accepts any non-empty bearer token.

    ``dialect`` (default :data:`~workstate.QODER`) is how it speaks: its paths, headers, ids and envelopes, and
    the lifecycle it runs (``LIFECYCLE.in_dialect(dialect)``: every decision is still the core's ``step``);
    ``policy`` defaults to the dialect's (``dialect.policy``).

    In a dialect with ``issues_secrets``, a poll's answer carries a per-delivery ``secret`` (base64url JSON
    ``{"sessions_token": ...}``, no padding) that authorizes that item's ack, heartbeat and stop like the
    environment key (the authorizer is not asked) until the delivery ends: the item is delivered again,
    re-queued or stopped. Secrets take no part in :meth:`snapshot`.

    ``authorizer`` decides 403s (it sees an :class:`Access`); ``ids`` hands out ids (default
    :class:`CounterIds` in the dialect's format). State changes only through :meth:`create_environment`,
    :meth:`create_work`, :meth:`handle` and :meth:`expire`.

    ``on_change`` (an :data:`OnChange`) is told of every item the server writes -- created, moved by a
    request, or lapsed by time -- right after the write, in the order they happen: the place to persist
    items or to audit them. It must not raise: an exception propagates to the caller and the write stands.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        dialect: Dialect = QODER,
        authorizer: Authorizer | None = None,
        ids: IdSource | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        if not isinstance(dialect, Dialect):
            raise InvalidInput(f"dialect must be a Dialect, got {shown(dialect)}", param="dialect")
        if policy is None:
            policy = dialect.policy
        if not isinstance(policy, Policy):
            raise InvalidInput(f"policy must be a Policy, got {shown(policy)}", param="policy")
        for name, value in (("authorizer", authorizer), ("ids", ids), ("on_change", on_change)):
            if value is not None and not callable(value):
                raise InvalidInput(f"{name} must be callable or None, got {shown(value)}", param=name)
        self._on_change = on_change
        self.policy = policy
        self.dialect = dialect
        self._lifecycle = LIFECYCLE.in_dialect(dialect)
        self._step = self._lifecycle.step
        self._params = params_of_reasons(dialect)
        self._auth_headers = tuple(name.lower() for name in dialect.auth_headers)
        self._authorizer = authorizer
        self._ids: IdSource = CounterIds(dialect=dialect) if ids is None else ids
        self._envs: dict[str, Environment] = {}
        # session id -> the id of its live item (spec section 1: at most one), kept by _store on every write
        self._live: dict[str, str] = {}
        # (environment id, work id) -> the secret of the item's latest delivery (dialects with issues_secrets)
        self._secrets: dict[tuple[str, str], str] = {}
        self._deadlines: list[tuple[datetime, str, str]] = []  # (deadline, work id, environment id)
        self._timed = 0  # how many items have a deadline
        # A policy's numbers are at most a billion (policy.LARGEST): these never overflow.
        self._stats_window = timedelta(milliseconds=policy.reclaim_older_than_ms)
        self._polling_window = timedelta(seconds=policy.workers_polling_window_seconds)

    # --- what the platform does (not through the endpoints) ---

    def create_environment(self, kind: EnvironmentKind | str = EnvironmentKind.SELF_HOSTED, *, now: datetime) -> str:
        """Create an environment (``self_hosted`` or ``cloud``) and return its id."""
        now = aware(now)
        env_kind = _environment_kind(kind)
        env_id = self._ids("env_")
        if not self.dialect.valid_id("env", env_id):
            raise InvalidId(f"the id source gave {shown(env_id)}, not {self.dialect.id_rule('env')}", param="env")
        if env_id in self._envs:
            raise DuplicateId(f"the id source gave {env_id} twice", param="env")
        self._envs[env_id] = Environment(env_id, env_kind, now, self._polling_window)
        return env_id

    def create_work(
        self,
        env: str,
        *,
        session_id: str,
        metadata: Mapping[str, str] | None = None,
        now: datetime,
        data_type: str = "session",
    ) -> str:
        """Create a ``queued`` work item for ``session_id`` in ``env`` and return its id.

        ``data_type`` is ``"session"``, or ``"healthcheck"`` (a health probe) in a dialect with
        ``healthcheck_items``; a session id is checked in the dialect's format (``sess_`` and 32 hex digits,
        ``session_`` and 1 to 64 letters or digits), a health probe's id as a work item holds it.

        Raises :class:`UnknownEnvironment`, :class:`NotSelfHosted`, :class:`SessionBusy` (the session
        has a live item at ``now``), or an :class:`~workstate.errors.InvalidInput` for a malformed
        session id, data type or metadata (:class:`~workstate.errors.InvalidMetadata` also over the policy's limits).
        """
        now = aware(now)
        environment = self._envs.get(env) if isinstance(env, str) else None
        if environment is None:
            raise UnknownEnvironment(f"environment {shown(env)} not found", param="env")
        if environment.kind is not EnvironmentKind.SELF_HOSTED:
            raise NotSelfHosted(f"environment {env} is {environment.kind.value}, not self_hosted", param="env")
        dialect = self.dialect
        if data_type == "healthcheck" and not dialect.healthcheck_items:
            raise InvalidInput(f"the {dialect.name} dialect has no healthcheck work items", param="data_type")
        if data_type == "session" and not dialect.valid_id("session", session_id):
            raise InvalidId(
                f"session_id must be {dialect.id_rule('session')}, got {shown(session_id)}", param="session_id"
            )
        self.expire(now)  # whether the session's item is still live is a question about `now`
        # One item is built (and checked) before an id is spent; then it gets its id (checked again).
        item = WorkItem(
            id=_PLACEHOLDER,
            environment_id=env,
            session_id=session_id,
            created_at=now,
            metadata={} if metadata is None else metadata,
            data_type=data_type,
        )
        if item.metadata:  # the limits are the core's rule: an empty patch leaves exactly this metadata to judge
            fits = self._step(item, _NO_PATCH, now, self.policy)
            if isinstance(fits, Rejected):
                raise InvalidMetadata(f"{fits.reason.message} [{fits.rule.section} {fits.rule.name}]", param="metadata")
        holder = self._live.get(session_id)
        if holder is not None:
            raise SessionBusy(
                f"session {session_id} already has a live work item ({holder})", session_id=session_id, work_id=holder
            )
        work_id = self._ids("work_")
        if not dialect.valid_id("work", work_id):
            raise InvalidId(f"the id source gave {shown(work_id)}, not {dialect.id_rule('work')}", param="id")
        if work_id in environment.items:
            raise DuplicateId(f"the id source gave {work_id} twice", param="id")
        item = attrs.evolve(item, id=work_id)
        order = environment.order
        if not order or work_id > order[-1]:
            order.append(work_id)
        else:
            bisect.insort(order, work_id)
        self._store(environment, None, item)
        return work_id

    # --- adopting state that exists elsewhere (a recorded trace, a persisted store) ---

    def adopt_environment(
        self, env_id: str, kind: EnvironmentKind | str = EnvironmentKind.SELF_HOSTED, *, now: datetime
    ) -> str:
        """Add an environment under an id chosen elsewhere (e.g. seen in a recorded trace); return it.

        Raises :class:`~workstate.errors.InvalidId` for a malformed id, :class:`DuplicateId` for one
        this server already has, :class:`~workstate.errors.InvalidInput` for an unknown kind.
        """
        now = aware(now)
        env_kind = _environment_kind(kind)
        if not self.dialect.valid_id("env", env_id):
            raise InvalidId(f"env must be {self.dialect.id_rule('env')}, got {shown(env_id)}", param="env")
        if env_id in self._envs:
            raise DuplicateId(f"environment {env_id} exists already", param="env")
        self._envs[env_id] = Environment(env_id, env_kind, now, self._polling_window)
        return env_id

    def adopt(self, item: WorkItem) -> None:
        """Hold ``item`` exactly as it is: a new item under its own id, or in place of the one with its id.

        For items that exist elsewhere (seen mid-life in a recorded trace, loaded from a store). The
        item is a checked :class:`~workstate.WorkItem`, so it agrees with its state; no rule is run.
        Raises :class:`~workstate.errors.InvalidInput` when it would change an item's ``created_at``,
        :class:`UnknownEnvironment`, :class:`NotSelfHosted`, or :class:`SessionBusy` when the
        item is live and its session has another live item; nothing changes then.
        """
        if type(item) is not WorkItem:
            raise InvalidInput(f"item must be a WorkItem, got {shown(item)}", param="item")
        environment = self._envs.get(item.environment_id)
        if environment is None:
            raise UnknownEnvironment(f"environment {shown(item.environment_id)} not found", param="env")
        if environment.kind is not EnvironmentKind.SELF_HOSTED:
            raise NotSelfHosted(f"environment {item.environment_id} is {environment.kind.value}", param="env")
        old = environment.items.get(item.id)
        if old is not None and old.created_at != item.created_at:
            raise InvalidInput(f"created_at of {item.id} cannot change", param="created_at")
        holder = self._live.get(item.session_id)
        was_live = old is not None and old.live and old.session_id == item.session_id  # then it is the holder
        if item.live and holder is not None and not was_live:
            raise SessionBusy(
                f"session {item.session_id} already has a live work item ({holder})",
                session_id=item.session_id,
                work_id=holder,
            )
        if old is None:
            bisect.insort(environment.order, item.id)
        self._store(environment, old, item)

    def work(self, env_id: str, work_id: str) -> WorkItem | None:
        """The item ``work_id`` of environment ``env_id`` as it stands (no expiry applied), or None."""
        environment = self._envs.get(env_id) if isinstance(env_id, str) else None
        return None if environment is None or not isinstance(work_id, str) else environment.items.get(work_id)

    def environment_kind(self, env_id: str) -> EnvironmentKind | None:
        """The kind of environment ``env_id``, or None when this server does not have it."""
        environment = self._envs.get(env_id) if isinstance(env_id, str) else None
        return None if environment is None else environment.kind

    def deliverable(self, env_id: str, now: datetime, reclaim_older_than_ms: int | None = None) -> str | None:
        """The id of the item a poll of ``env_id`` at ``now`` would deliver, or None; changes nothing.

        (Expiry due at ``now`` is applied first, as every call does.) ``reclaim_older_than_ms`` is
        None (the policy's) or what a poll accepts, a non-negative integer; anything else raises
        :class:`~workstate.errors.InvalidInput` naming it.
        """
        now = aware(now)
        if reclaim_older_than_ms is not None:
            Deliver(reclaim_older_than_ms=reclaim_older_than_ms)  # the poll's own check of the window (spec 4.1)
        self.expire(now)
        environment = self._envs.get(env_id) if isinstance(env_id, str) else None
        if environment is None or environment.kind is not EnvironmentKind.SELF_HOSTED:
            return None
        window = self.policy.reclaim_older_than_ms if reclaim_older_than_ms is None else reclaim_older_than_ms
        found = self._deliverable(environment, window, now)
        return None if found is None else found[1]

    # --- time ---

    def expire(self, now: datetime) -> int:
        """Apply every start timeout and lease expiry due at ``now`` (spec section 5); return how many.

        Driven by a heap of deadlines: the cost grows with the number of items that lapse (and
        the stale entries they leave), not with the number of items held. :meth:`handle` and
        :meth:`create_work` call it first, so calling it yourself changes no answer.
        """
        now = aware(now)
        heap = self._deadlines
        policy = self.policy
        lapsed = 0
        while heap and heap[0][0] <= now:
            deadline, work_id, env_id = heapq.heappop(heap)
            environment = self._envs[env_id]
            item = environment.items[work_id]
            if next_deadline(item, policy) != deadline:
                continue  # the item moved on since this deadline was set
            outcome = self._step(item, _LAPSE, now, policy)
            if isinstance(outcome, Accepted):
                self._store(environment, item, outcome.item)
                lapsed += 1
        return lapsed

    def next_expiry(self) -> datetime | None:
        """The earliest instant at which :meth:`expire` will have something to do, or None."""
        heap = self._deadlines
        while heap:
            deadline, work_id, env_id = heap[0]
            if next_deadline(self._envs[env_id].items[work_id], self.policy) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    # --- state, for tests and for servers that persist it ---

    def snapshot(self) -> tuple[EnvironmentSnapshot, ...]:
        """Everything a response can depend on, as one comparable, hashable value.

        Left out: the id source's counters (request ids differ per request by nature) and the
        indexes, which are derived from the items.
        """
        return tuple(
            EnvironmentSnapshot(
                id=env.id,
                kind=env.kind,
                created_at=env.created_at,
                items=tuple(env.items[i] for i in env.order),
                polls=tuple(sorted(env.polls.items())),
            )
            for env in sorted(self._envs.values(), key=lambda e: e.id)
        )

    # --- keeping the indexes ---

    def _store(self, env: Environment, old: WorkItem | None, new: WorkItem) -> None:
        """Put ``new`` in place of ``old`` and bring every index along: the one place that writes items."""
        env.items[new.id] = new
        was_fresh, now_fresh = is_fresh(old), is_fresh(new)
        if was_fresh and not now_fresh:
            env.fresh.drop()
        elif now_fresh and not was_fresh:
            env.fresh.add(new, env.items)
        old_at = old.delivered_at if old is not None and old.state is _QUEUED else None
        new_at = new.delivered_at if new.state is _QUEUED else None
        if old_at != new_at:
            key = (new.created_at, new.id)
            if old_at is not None:
                env.delivered.remove(old_at, key)
            if new_at is not None:
                env.delivered.insert(new_at, key)
        deadline = next_deadline(new, self.policy)
        previous = None if old is None else next_deadline(old, self.policy)
        if deadline != previous:
            self._timed += (deadline is not None) - (previous is not None)
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, new.id, env.id))
                if len(self._deadlines) > 2 * self._timed + 64:
                    self._compact_deadlines()
        if old is None or not old.live or old.session_id != new.session_id:  # the session index follows
            if old is not None and old.live:
                del self._live[old.session_id]  # it held this item: a session has one live item at most
            if new.live:
                self._live[new.session_id] = new.id
        elif not new.live:
            del self._live[old.session_id]
        if self._secrets and (not new.live or (new.state is _QUEUED and old is not None and old.state is not _QUEUED)):
            self._secrets.pop((env.id, new.id), None)  # the delivery is over (stopped, re-queued): so is its secret
        if self._on_change is not None:
            self._on_change(env.id, old, new)

    def _compact_deadlines(self) -> None:
        """Drop the entries of deadlines that moved (a heartbeat moves one every time): amortized O(1)."""
        envs, policy = self._envs, self.policy
        self._deadlines = sorted(
            {entry for entry in self._deadlines if next_deadline(envs[entry[2]].items[entry[1]], policy) == entry[0]}
        )

    # --- the HTTP surface ---

    def handle(self, request: Request, now: datetime) -> Response:
        """Answer one request at ``now``. Never raises for any request value; a naive ``now`` is a ValueError."""
        now = aware(now)
        self.expire(now)
        headers = read_headers(getattr(request, "headers", None))
        try:
            return self._dispatch(request, headers, now)
        except Refusal as refusal:
            message = refusal.message
            if len(message) > _MESSAGE_LIMIT:  # every value we embed is short (shown); this bounds the codec's too
                message = message[:_MESSAGE_LIMIT] + "..."
            request_id = echoed(headers) or self._ids("req_")
            envelope = ErrorEnvelope(
                request_id=request_id,
                error_type=refusal.error_type,
                message=message,
                param=refusal.param,
                details=refusal.details,
            ).to_json(self.dialect)
            answer_headers = JSON_HEADERS
            if self.dialect.request_id_header is not None:
                answer_headers = Headers({**JSON_HEADERS, self.dialect.request_id_header: request_id})
            return Response(refusal.status, envelope, dumps(envelope), answer_headers, rule=refusal.rule)

    def _credential(self, headers: dict[str, str | None]) -> str | None:
        """The key a request carries in one of the dialect's ``auth_headers`` (``Authorization: Bearer KEY``, or a
        bare ``KEY`` in another such header), else None."""
        for name in self._auth_headers:
            value = headers.get(name)
            token = bearer_token(value) if name == "authorization" else api_key(value)
            if token is not None:
                return token
        return None

    def _dispatch(self, request: Request, headers: dict[str, str | None], now: datetime) -> Response:
        method, target = getattr(request, "method", None), getattr(request, "target", None)
        if not isinstance(method, str) or not isinstance(target, str):
            not_found("no such route")
        path, _, query = target.partition("?")
        dialect = self.dialect
        operation, env_id, work_id = route(method, path, dialect)

        token = self._credential(headers)
        if token is None:
            ways = " or ".join(
                f"{name}: Bearer <token>" if name.lower() == "authorization" else f"{name}: <token>"
                for name in dialect.auth_headers
            )
            raise Refusal(401, "authentication_error", f"send {ways}")
        if (
            self._authorizer is not None
            and not self._delivery_secret(token, operation, env_id, work_id)
            and not self._authorizer(Access(token, operation, env_id, work_id))
        ):
            raise Refusal(403, "permission_error", f"not authorized to {operation} in {shown(env_id)}")
        env = self._envs.get(env_id)
        if env is None:
            not_found(f"environment {shown(env_id)} not found")
        if env.kind is not EnvironmentKind.SELF_HOSTED:
            bad(f"environment {env_id} is {env.kind.value}: the work endpoints need a self_hosted environment")

        params = parse_query(query) if query else {}
        body = getattr(request, "body", b"")
        if operation == "poll":
            return self._poll(env, params, headers, body, now)
        if operation == "list":
            return self._list(env, params, body)
        if operation == "stats":
            no_body(body)
            return _ok(self._stats(env, now).to_json())

        command: Command | None = None
        if operation == "ack":
            # A dialect that does not check the worker on ack does not read its header there: the command names
            # no worker, and the ack binds the delivery's (action bind_worker).
            command = Ack(read_worker(headers, dialect) if dialect.ack_checks_worker else None)
            no_body(body)
        elif operation == "heartbeat":
            command = read_heartbeat(params)
            no_body(body)
        elif operation == "stop":
            command = read_stop(body)
        elif operation == "update":
            command = read_update(body)
        else:
            no_body(body)
        assert work_id is not None
        item = env.items.get(work_id)
        if item is None:
            not_found(f"work item {shown(work_id)} not found in {env_id}")
        if command is None:  # get
            return _ok(encode_work(item, dialect))
        outcome = self._step(item, command, now, self.policy)
        if isinstance(outcome, Rejected):
            rule = outcome.rule
            reason = outcome.reason
            details = None
            if reason is Reason.PRECONDITION_FAILED and dialect.error_style is ErrorStyle.DETAILS:
                details = self._precondition_details(outcome.item)
            raise Refusal(
                outcome.status,
                outcome.error_type(self.policy, dialect),
                f"{reason.message} [{rule.section} {rule.name}]",
                self._params.get(reason),
                rule,
                details,
            )
        if isinstance(outcome, Accepted):
            self._store(env, item, outcome.item)
        if operation == "heartbeat":
            if isinstance(outcome, Replayed):  # rule heartbeat-stopped-reported: the dialect reports the stop
                report = HeartbeatObject.reported(outcome.item, self.policy.default_ttl_seconds)
                return _ok(report.to_json(), outcome.effects, outcome.rule)
            return _ok(HeartbeatObject.of(outcome.item).to_json(), outcome.effects, outcome.rule)
        if operation == "stop" and dialect.stop_answer is StopAnswer.NO_CONTENT:
            return Response(204, None, b"", _NO_HEADERS, outcome.effects, outcome.rule)
        return _ok(encode_work(outcome.item, dialect), outcome.effects, outcome.rule)

    def _precondition_details(self, item: WorkItem) -> dict[str, Any]:
        """The ``details`` of a failed heartbeat precondition in a dialect of ``ErrorStyle.DETAILS``: the item's
        lease as it stands (``current_state``). ``lease_updated_at`` is the item's clock: the instant of the
        last change the lifecycle made to it (the delivery, ack, heartbeat, re-queue or stop that moved it last),
        which for a lease is when it was granted, renewed or taken back; ``ttl_seconds`` is the TTL of the lease
        the item holds, or the policy's default when it holds none (never acked, or re-queued)."""
        latest = item.latest_heartbeat_at
        return {
            "error_code": "heartbeat_precondition_failed",
            "error_visibility": "user_facing",
            "current_state": {
                "state": item.state.value,
                "last_heartbeat": None if latest is None else render_timestamp(latest),
                "lease_updated_at": render_timestamp(item.clock),
                "lease_extended": False,
                "ttl_seconds": self.policy.default_ttl_seconds if item.ttl_seconds is None else item.ttl_seconds,
            },
        }

    def _poll(
        self, env: Environment, params: dict[str, str], headers: dict[str, str | None], body: Any, now: datetime
    ) -> Response:
        """Poll (spec 4.1): the oldest deliverable item by creation order, or ``null``."""
        block = param(params, "block_ms")
        if block is not None and not 1 <= integer(block, "block_ms", "an integer from 1 to 999") <= 999:
            bad(f"block_ms must be an integer from 1 to 999, got {shown(block)}", "block_ms")
        reclaim_text = param(params, "reclaim_older_than_ms")
        reclaim = None
        if reclaim_text is not None:
            reclaim = integer(reclaim_text, "reclaim_older_than_ms", "a non-negative integer")
        worker = read_worker(headers, self.dialect)
        no_body(body)

        found = self._deliverable(env, self.policy.reclaim_older_than_ms if reclaim is None else reclaim, now)
        if worker is not None:
            env.polls.record(worker, now)
        if found is None:
            return _ok(None)
        item = env.items[found[1]]
        outcome = self._step(item, Deliver(worker, reclaim), now, self.policy)
        if not isinstance(outcome, Accepted):  # the index and the core disagree: a bug, never an answer
            raise RuntimeError(f"poll index chose {item.id}, which the core does not deliver: {outcome.rule.name}")
        self._store(env, item, outcome.item)
        secret = self._issue_secret(env.id, item.id) if self.dialect.issues_secrets else None
        return _ok(encode_work(outcome.item, self.dialect, secret), outcome.effects)

    def _issue_secret(self, env_id: str, work_id: str) -> str:
        """A new delivery's secret (``issues_secrets``): base64url JSON ``{"sessions_token": ...}`` without
        padding, whose token comes from the id source (deterministic, as every id here: a reference server, not
        a vault). It replaces the item's previous one: only the latest delivery's secret authorizes."""
        token = self._ids("sessions_token_")
        text = json.dumps({"sessions_token": token}, separators=(",", ":")).encode("utf-8")
        secret = base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")
        self._secrets[env_id, work_id] = secret
        return secret

    def _delivery_secret(self, token: str, operation: str, env_id: str, work_id: str | None) -> bool:
        """Whether ``token`` is the secret of the latest delivery of the item an ack, heartbeat or stop names: it
        authorizes those like the environment key (the authorizer is not asked)."""
        if work_id is None or operation not in _SECRET_OPERATIONS:
            return False
        return self._secrets.get((env_id, work_id)) == token

    def _deliverable(self, env: Environment, milliseconds: int, now: datetime) -> CreationKey | None:
        """The creation key of the oldest item a poll with this reclaim window delivers at ``now``.

        The core's rule (guard ``deliverable``): never delivered, or ``max(now, clock) -
        delivered_at >= window``. A queued, delivered item's clock is its ``delivered_at`` (a
        delivery stamps both, and nothing that leaves an item queued moves its clock; the
        stateful test checks this), so that is ``delivered_at <= now - window``, or every
        delivered item when the window is zero: a prefix of the treap.
        """
        fresh = env.fresh.oldest(env.items)
        best = None if fresh is None else (fresh.created_at, fresh.id)
        window = _window(milliseconds)
        if not len(env.delivered) or window is None:  # None: a window longer than any timeline
            return best
        if window:
            cutoff = _minus(now, window)
            found = None if cutoff is None else env.delivered.oldest(cutoff)
        else:
            found = env.delivered.oldest()
        if found is not None and (best is None or found < best):
            return found
        return best

    def _stats(self, env: Environment, now: datetime) -> StatsObject:
        """Queue stats (spec 4.7) under the policy's reclaim window; ``depth + pending`` = queued items."""
        delivered = len(env.delivered)
        window = self._stats_window  # the same reading of the core's rule as a poll's (see _deliverable)
        reclaimable = delivered if not window else env.delivered.count(now - window)
        pending = delivered - reclaimable
        oldest = env.oldest_queued()
        return StatsObject(
            depth=len(env.fresh) + delivered - pending,
            pending=pending,
            oldest_queued_at=None if oldest is None else oldest[0],
            workers_polling=env.polls.count(now),
        )

    def _list(self, env: Environment, params: dict[str, str], body: Any) -> Response:
        """List (spec 4.6): ascending id order, ``limit`` items, one cursor at most."""
        policy = self.policy
        limit_text = param(params, "limit")
        limit = policy.list_default_limit
        if limit_text is not None:
            limit = integer(limit_text, "limit", "a positive integer")
            if limit < 1:
                bad(f"limit must be a positive integer, got {shown(limit_text)}", "limit")
            if limit > policy.list_max_limit:
                if policy.list_limit_over_max is LimitOverMax.REJECT:
                    bad(f"limit must be at most {policy.list_max_limit}, got {shown(limit_text)}", "limit")
                limit = policy.list_max_limit
        dialect = self.dialect
        next_style = dialect.list_style is ListStyle.NEXT_PAGE
        cursors = {}
        for name in ("page",) if next_style else ("page", "before_id", "after_id"):
            value = param(params, name)
            if value is not None:
                if not dialect.valid_id("work", value):
                    what = "a cursor from next_page" if next_style else "a work id"
                    bad(f"{name} must be {what} ({dialect.id_rule('work')}), got {shown(value)}", name)
                cursors[name] = value
        if len(cursors) > 1:
            names = sorted(cursors)
            bad(f"page, before_id and after_id are mutually exclusive; got {', '.join(names)}", names[1])
        no_body(body)

        order = env.order
        backward = "before_id" in cursors
        if backward:
            end = bisect.bisect_left(order, cursors["before_id"])
            start = max(0, end - limit)
        else:
            after = cursors.get("after_id") or cursors.get("page")
            start = 0 if after is None else bisect.bisect_right(order, after)
            end = min(len(order), start + limit)
        ids = order[start:end]
        # has_more: whether items lie beyond the page in the direction it was asked for (after last_id, or
        # for before_id before first_id); next_page is the cursor that continues in that direction.
        more = bool(ids) and (start > 0 if backward else end < len(order))
        page = ListEnvelope.of([env.items[i] for i in ids], has_more=more, backward=backward)
        return _ok(page.to_json(dialect))


def _ok(value: Any, effects: tuple[Effect, ...] = (), rule: Rule | None = None) -> Response:
    return Response(200, value, dumps(value), JSON_HEADERS, effects, rule)
