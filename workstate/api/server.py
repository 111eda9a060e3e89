"""The reference server: the whole Work API as a sans-I/O request -> response model.

:class:`Server` takes HTTP-shaped :class:`Request` values and returns HTTP-shaped :class:`Response`
values for every endpoint of api.md §4 (the public contract is in
``docs/server-guide.md``). It reads no clock, opens no socket, starts no thread and draws no random
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
- State lives in a store (``Server(store=...)``, :mod:`workstate.api.store`; default a :class:`MemoryStore`,
  today's indexes). One transaction per request: read, decide with ``step``, write with compare-and-set on
  ``version``; on a :class:`~workstate.api.store.StoreConflict` the whole request is retried from a fresh
  read (``retries`` times), then answered 503 (``api_error``). The store only narrows: a poll steps
  ``Deliver`` over the store's candidates in creation order and takes the first accepted.
- Every call first applies the expiry due at ``now`` to every item (:meth:`Server.expire`, driven by
  the store's deadline index), so the lazy path and the eager sweep cannot disagree. Time passing is not a
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
import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

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
from .codec import ErrorEnvelope, HeartbeatObject, ListEnvelope, StatsObject, dumps, encode_work, heartbeat_json
from .index import CreationKey
from .routes import params_of_reasons, read_heartbeat, read_stop, read_update, read_worker, route
from .store import (
    FOREVER,
    Environment,
    EnvironmentInfo,
    EnvironmentKind,
    MemoryStore,
    Store,
    StoreConflict,
    Transaction,
)
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
    "StoreConflict",
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
_CANDIDATES = 16  # how many candidates a poll asks the store for at a time
_DUE = 64  # how many due items the expiry asks the store for at a time
_T = TypeVar("_T")


# --- typed errors of the server's own operations -------------------------------------------------


class UnknownEnvironment(WorkstateError):
    """``create_work`` named an environment this server does not have."""

    status_hint = 404


class NotSelfHosted(WorkstateError):
    """Work was created in an environment that is not ``self_hosted`` (api.md §1)."""

    status_hint = 400


class SessionBusy(WorkstateError):
    """The session already has a live (not ``stopped``) work item (api.md §1)."""

    status_hint = 409

    def __init__(self, message: str, *, session_id: str, work_id: str) -> None:
        super().__init__(message, param="session_id")
        self.session_id = session_id
        self.work_id = work_id


class DuplicateId(WorkstateError):
    """The id source handed out an id that is already in use."""

    status_hint = 500


# --- pluggable parts ----------------------------------------------------------------------------------


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
    :class:`CounterIds` in the dialect's format; on a database shared by processes, one that cannot collide,
    such as ``workstate.stores.RandomIds``). State changes only through :meth:`create_environment`,
    :meth:`create_work`, :meth:`handle` and :meth:`expire`.

    ``store`` (a :class:`~workstate.api.store.Store`) holds the state: None is a fresh
    :class:`~workstate.api.store.MemoryStore`; ``workstate.stores.sqlite.SqliteStore`` and
    ``workstate.stores.postgres.PostgresStore`` keep it in a database, which several servers may share. Every
    call runs in one of its transactions; a compare-and-set that finds a row changed
    (:class:`~workstate.api.store.StoreConflict`) retries the call from a fresh read up to ``retries`` times,
    then :meth:`handle` answers 503 and the other calls raise the ``StoreConflict``. A server is used by one
    thread at a time (``workstate.asgi`` holds a lock around it).

    ``on_change`` (an :data:`OnChange`) is told of every item the server writes -- created, moved by a
    request, or lapsed by time -- once the call's transaction committed, in the order the writes happened:
    the place to audit items. It must not raise: an exception propagates to the caller and the write stands.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        dialect: Dialect = QODER,
        authorizer: Authorizer | None = None,
        ids: IdSource | None = None,
        on_change: OnChange | None = None,
        store: Store | None = None,
        retries: int = 8,
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
        if store is not None and not isinstance(store, Store):
            raise InvalidInput(f"store must be a Store or None, got {shown(store)}", param="store")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInput(f"retries must be a non-negative integer, got {shown(retries)}", param="retries")
        self._on_change = on_change
        self.policy = policy
        self.dialect = dialect
        self._lifecycle = LIFECYCLE.in_dialect(dialect)
        self._step = self._lifecycle.step
        self._params = params_of_reasons(dialect)
        self._auth_headers = tuple(name.lower() for name in dialect.auth_headers)
        self._authorizer = authorizer
        self._ids: IdSource = CounterIds(dialect=dialect) if ids is None else ids
        self._secret_dialect = dialect.issues_secrets
        # A policy's numbers are at most a billion (policy.LARGEST): these never overflow.
        self._stats_window = timedelta(milliseconds=policy.reclaim_older_than_ms)
        self._polling_window = timedelta(seconds=policy.workers_polling_window_seconds)
        self._store: Store = MemoryStore(self._polling_window) if store is None else store
        self._retries = retries
        # The call in progress (a server is used by one thread at a time): its transaction, the changes to
        # report once it commits, and what the poll's choice stepped (so the poll need not step it again).
        self._tx: Transaction = self._store if isinstance(self._store, MemoryStore) else MemoryStore()
        self._inside = False  # whether a call's transaction is open
        self._changes: list[tuple[str, WorkItem | None, WorkItem]] = []
        self._poll_command: Deliver | None = None
        self._chosen: tuple[WorkItem, Accepted, datetime] | None = None

    @property
    def store(self) -> Store:
        """The store this server keeps its state in."""
        return self._store

    @property
    def _envs(self) -> dict[str, Environment]:
        """A :class:`MemoryStore`'s environments by id (for subclasses that look inside it; empty otherwise)."""
        store = self._store
        return store.envs if isinstance(store, MemoryStore) else {}

    @property
    def _live(self) -> dict[str, str]:
        """A :class:`MemoryStore`'s session index (session id -> its live item's id; for tests)."""
        store = self._store
        return store.live if isinstance(store, MemoryStore) else {}

    @property
    def _deadlines(self) -> list[tuple[datetime, str, str]]:
        """A :class:`MemoryStore`'s deadline heap (for tests; empty otherwise)."""
        store = self._store
        return store.deadline_heap if isinstance(store, MemoryStore) else []

    # --- transactions ---

    def _run(self, call: Callable[[Transaction], _T]) -> _T:
        """Run ``call`` in a transaction and commit it; from a fresh read again on a conflict (``retries`` times).

        A typed error (:class:`~workstate.errors.WorkstateError`) of the call is raised after the commit (what
        the call wrote before it, the expiry due at ``now``, stands); any other exception rolls back.
        """
        if self._inside:
            return call(self._tx)  # a call made from within a call (a subclass's hook): the same transaction
        conflict: StoreConflict | None = None
        for _ in range(self._retries + 1):
            tx: Transaction | None = None
            refused: WorkstateError | None = None
            try:
                tx = self._store.begin()
                self._tx, self._inside = tx, True
                try:
                    result = call(tx)
                except StoreConflict:
                    raise
                except WorkstateError as exc:
                    refused = exc
                finally:
                    self._inside = False
                tx.commit()
            except StoreConflict as exc:
                conflict = exc
                self._abandon(tx)
                continue
            except BaseException:
                self._abandon(tx)
                raise
            if self._changes:
                self._report()
            if refused is not None:
                raise refused
            return result
        assert conflict is not None
        raise StoreConflict(
            f"the store kept changing under this call: {self._retries + 1} attempts conflicted ({conflict.message})"
        )

    def _abandon(self, tx: Transaction | None) -> None:
        self._changes.clear()
        if tx is not None:
            with contextlib.suppress(Exception):  # the transaction is lost either way; the first error is the one
                tx.rollback()

    def _report(self) -> None:
        changes, self._changes = self._changes, []
        on_change = self._on_change
        assert on_change is not None
        for env_id, old, new in changes:
            on_change(env_id, old, new)

    def _write(self, tx: Transaction, env_id: str, old: WorkItem | None, new: WorkItem) -> None:
        """Put ``new`` in place of ``old`` (compare-and-set on the version read): the one place that writes items."""
        tx.put(env_id, new, None if old is None else old.version, next_deadline(new, self.policy))
        if self._secret_dialect and (
            not new.live or (new.state is _QUEUED and old is not None and old.state is not _QUEUED)
        ):
            tx.set_secret(env_id, new.id, None)  # the delivery is over (stopped, re-queued): so is its secret
        if self._on_change is not None:
            self._changes.append((env_id, old, new))

    # --- what the platform does (not through the endpoints) ---

    def create_environment(self, kind: EnvironmentKind | str = EnvironmentKind.SELF_HOSTED, *, now: datetime) -> str:
        """Create an environment (``self_hosted`` or ``cloud``) and return its id."""
        now = aware(now)
        env_kind = _environment_kind(kind)

        def create(tx: Transaction) -> str:
            env_id = self._ids("env_")
            if not self.dialect.valid_id("env", env_id):
                raise InvalidId(f"the id source gave {shown(env_id)}, not {self.dialect.id_rule('env')}", param="env")
            if tx.environment(env_id) is not None:
                raise DuplicateId(f"the id source gave {env_id} twice", param="env")
            tx.add_environment(env_id, env_kind, now)
            return env_id

        return self._run(create)

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
        return self._run(lambda tx: self._create_work(tx, env, session_id, metadata, now, data_type))

    def _create_work(
        self,
        tx: Transaction,
        env: str,
        session_id: str,
        metadata: Mapping[str, str] | None,
        now: datetime,
        data_type: str,
    ) -> str:
        environment = tx.environment(env) if isinstance(env, str) else None
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
        self.expire(now)  # whether the session's item is still live is a question about `now` (this transaction)
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
        holder = tx.live_item(session_id)
        if holder is not None:
            raise SessionBusy(
                f"session {session_id} already has a live work item ({holder})", session_id=session_id, work_id=holder
            )
        work_id = self._ids("work_")
        if not dialect.valid_id("work", work_id):
            raise InvalidId(f"the id source gave {shown(work_id)}, not {dialect.id_rule('work')}", param="id")
        if tx.item(env, work_id) is not None:
            raise DuplicateId(f"the id source gave {work_id} twice", param="id")
        self._write(tx, env, None, attrs.evolve(item, id=work_id))
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

        def add(tx: Transaction) -> str:
            if tx.environment(env_id) is not None:
                raise DuplicateId(f"environment {env_id} exists already", param="env")
            tx.add_environment(env_id, env_kind, now)
            return env_id

        return self._run(add)

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

        def adopt(tx: Transaction) -> None:
            environment = tx.environment(item.environment_id)
            if environment is None:
                raise UnknownEnvironment(f"environment {shown(item.environment_id)} not found", param="env")
            if environment.kind is not EnvironmentKind.SELF_HOSTED:
                raise NotSelfHosted(f"environment {item.environment_id} is {environment.kind.value}", param="env")
            old = tx.item(environment.id, item.id)
            if old is not None and old.created_at != item.created_at:
                raise InvalidInput(f"created_at of {item.id} cannot change", param="created_at")
            holder = tx.live_item(item.session_id)
            was_live = old is not None and old.live and old.session_id == item.session_id  # then it is the holder
            if item.live and holder is not None and not was_live:
                raise SessionBusy(
                    f"session {item.session_id} already has a live work item ({holder})",
                    session_id=item.session_id,
                    work_id=holder,
                )
            self._write(tx, environment.id, old, item)

        self._run(adopt)

    def work(self, env_id: str, work_id: str) -> WorkItem | None:
        """The item ``work_id`` of environment ``env_id`` as it stands (no expiry applied), or None."""
        if not isinstance(env_id, str) or not isinstance(work_id, str):
            return None
        store = self._store
        if type(store) is MemoryStore:  # its own transaction, and a read: no transaction to open (the checker's path)
            return store.item(env_id, work_id)
        return self._run(lambda tx: tx.item(env_id, work_id))

    def environment_kind(self, env_id: str) -> EnvironmentKind | None:
        """The kind of environment ``env_id``, or None when this server does not have it."""
        if not isinstance(env_id, str):
            return None
        store = self._store
        if type(store) is MemoryStore:  # as in work(): a read of the store that is its own transaction
            environment: EnvironmentInfo | None = store.environment(env_id)
        else:
            environment = self._run(lambda tx: tx.environment(env_id))
        return None if environment is None else environment.kind

    def deliverable(self, env_id: str, now: datetime, reclaim_older_than_ms: int | None = None) -> str | None:
        """The id of the item a poll of ``env_id`` at ``now`` would deliver, or None; changes nothing.

        (Expiry due at ``now`` is applied first, as every call does.) ``reclaim_older_than_ms`` is
        None (the policy's) or what a poll accepts, a non-negative integer; anything else raises
        :class:`~workstate.errors.InvalidInput` naming it.
        """
        now = aware(now)
        if reclaim_older_than_ms is not None:
            Deliver(reclaim_older_than_ms=reclaim_older_than_ms)  # the poll's own check of the window (api.md §4.1)
        window = self.policy.reclaim_older_than_ms if reclaim_older_than_ms is None else reclaim_older_than_ms

        def find(tx: Transaction) -> str | None:
            self.expire(now)
            environment = tx.environment(env_id) if isinstance(env_id, str) else None
            if environment is None or environment.kind is not EnvironmentKind.SELF_HOSTED:
                return None
            self._poll_command = None
            found = self._deliverable(environment, window, now)
            return None if found is None else found[1]

        return self._run(find)

    # --- time ---

    def expire(self, now: datetime) -> int:
        """Apply every start timeout and lease expiry due at ``now`` (api.md §5); return how many.

        Driven by the store's deadline index: the cost grows with the number of items that lapse, not with the
        number of items held. :meth:`handle`, :meth:`create_work` and :meth:`deliverable` call it first (inside
        their own transaction: called from within a call it joins that call's), so calling it yourself changes
        no answer.
        """
        now = aware(now)
        if self._inside:
            return self._expire(self._tx, now)
        return self._run(lambda tx: self._expire(tx, now))

    def sweep(self, now: datetime, limit: int = 256) -> int:
        """The eager sweep: apply at most ``limit`` of the lapses due at ``now`` (earliest deadline first), in one
        transaction; return how many. ``workstate serve`` on a database calls it periodically, in any number of
        processes at once (each lapse is a compare-and-set; a conflict retries the batch from a fresh read)."""
        now = aware(now)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive integer, got {shown(limit)}", param="limit")
        return self._run(lambda tx: self._expire(tx, now, limit))

    def _expire(self, tx: Transaction, now: datetime, limit: int | None = None) -> int:
        if type(tx) is MemoryStore:  # nothing due (every request asks): the heap's first entry says so at once
            heap = tx.deadline_heap
            if not heap or heap[0][0] > now:
                return 0
        policy = self.policy
        lapsed = 0
        while limit is None or lapsed < limit:
            due = tx.due(now, _DUE if limit is None else min(_DUE, limit - lapsed))
            if not due:
                break
            moved = 0
            for env_id, item in due:
                outcome = self._step(item, _LAPSE, now, policy)
                if isinstance(outcome, Accepted):
                    self._write(tx, env_id, item, outcome.item)
                    moved += 1
            if not moved:  # nothing due could lapse (never, for a store keeping the deadlines it was given)
                break
            lapsed += moved
        return lapsed

    def next_expiry(self) -> datetime | None:
        """The earliest instant at which :meth:`expire` will have something to do, or None."""
        return self._run(lambda tx: tx.next_deadline())

    # --- state, for tests and for servers that persist it ---

    def snapshot(self) -> tuple[EnvironmentSnapshot, ...]:
        """Everything a response can depend on, as one comparable, hashable value.

        Left out: the id source's counters (request ids differ per request by nature), the delivery secrets
        and the indexes, which are derived from the items.
        """

        def read(tx: Transaction) -> tuple[EnvironmentSnapshot, ...]:
            return tuple(
                EnvironmentSnapshot(
                    id=env.id,
                    kind=env.kind,
                    created_at=env.created_at,
                    items=tuple(tx.items(env.id)),
                    polls=tuple(tx.polls(env.id)),
                )
                for env in tx.environments()
            )

        return self._run(read)

    # --- the HTTP surface ---

    def handle(self, request: Request, now: datetime) -> Response:
        """Answer one request at ``now``. Never raises for any request value; a naive ``now`` is a ValueError."""
        now = aware(now)
        headers = read_headers(getattr(request, "headers", None))
        try:
            return self._run(lambda tx: self._answer(tx, request, headers, now))
        except StoreConflict as conflict:
            return self._refused(Refusal(503, "api_error", f"{conflict.message}; retry the request"), headers)

    def _answer(self, tx: Transaction, request: Request, headers: dict[str, str | None], now: datetime) -> Response:
        self.expire(now)  # joins this transaction (a subclass may override how time passes: the mutants do)
        try:
            return self._dispatch(tx, request, headers, now)
        except Refusal as refusal:
            return self._refused(refusal, headers)

    def _refused(self, refusal: Refusal, headers: dict[str, str | None]) -> Response:
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

    def _dispatch(self, tx: Transaction, request: Request, headers: dict[str, str | None], now: datetime) -> Response:
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
        env = tx.environment(env_id)
        if env is None:
            not_found(f"environment {shown(env_id)} not found")
        if env.kind is not EnvironmentKind.SELF_HOSTED:
            bad(f"environment {env_id} is {env.kind.value}: the work endpoints need a self_hosted environment")

        params = parse_query(query) if query else {}
        body = getattr(request, "body", b"")
        if operation == "poll":
            return self._poll(tx, env, params, headers, body, now)
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
        item = tx.item(env_id, work_id)
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
            self._write(tx, env_id, item, outcome.item)
        if operation == "heartbeat":
            if isinstance(outcome, Replayed):  # rule heartbeat-stopped-reported: the dialect reports the stop
                report = HeartbeatObject.reported(outcome.item, self.policy.default_ttl_seconds)
                return _ok(report.to_json(), outcome.effects, outcome.rule)
            return _ok(heartbeat_json(outcome.item), outcome.effects, outcome.rule)
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
        self,
        tx: Transaction,
        env: EnvironmentInfo,
        params: dict[str, str],
        headers: dict[str, str | None],
        body: Any,
        now: datetime,
    ) -> Response:
        """Poll (api.md §4.1): the oldest deliverable item by creation order, or ``null``."""
        block = param(params, "block_ms")
        if block is not None and not 1 <= integer(block, "block_ms", "an integer from 1 to 999") <= 999:
            bad(f"block_ms must be an integer from 1 to 999, got {shown(block)}", "block_ms")
        reclaim_text = param(params, "reclaim_older_than_ms")
        reclaim = None
        if reclaim_text is not None:
            reclaim = integer(reclaim_text, "reclaim_older_than_ms", "a non-negative integer")
        worker = read_worker(headers, self.dialect)
        no_body(body)

        command = Deliver(worker, reclaim)
        self._poll_command, self._chosen = command, None
        found = self._deliverable(env, self.policy.reclaim_older_than_ms if reclaim is None else reclaim, now)
        if worker is not None:
            tx.record_poll(env.id, worker, now, self._polling_window)
        if found is None:
            return _ok(None)
        chosen = self._chosen
        if chosen is not None and chosen[0].id == found[1] and chosen[2] == now:
            item, outcome = chosen[0], chosen[1]  # the choice stepped this very command at this very instant
        else:  # a subclass chose otherwise: the core still decides
            candidate = tx.item(env.id, found[1])
            if candidate is None:
                raise RuntimeError(f"poll chose {found[1]}, which the store does not hold")
            item = candidate
            stepped = self._step(item, command, now, self.policy)
            if not isinstance(stepped, Accepted):  # the choice and the core disagree: a bug, never an answer
                raise RuntimeError(f"poll chose {item.id}, which the core does not deliver: {stepped.rule.name}")
            outcome = stepped
        self._write(tx, env.id, item, outcome.item)
        secret = self._issue_secret(tx, env.id, item.id) if self._secret_dialect else None
        return _ok(encode_work(outcome.item, self.dialect, secret), outcome.effects)

    def _issue_secret(self, tx: Transaction, env_id: str, work_id: str) -> str:
        """A new delivery's secret (``issues_secrets``): base64url JSON ``{"sessions_token": ...}`` without
        padding, whose token comes from the id source (deterministic, as every id here: a reference server, not
        a vault). It replaces the item's previous one: only the latest delivery's secret authorizes."""
        token = self._ids("sessions_token_")
        text = json.dumps({"sessions_token": token}, separators=(",", ":")).encode("utf-8")
        secret = base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")
        tx.set_secret(env_id, work_id, secret)
        return secret

    def _delivery_secret(self, token: str, operation: str, env_id: str, work_id: str | None) -> bool:
        """Whether ``token`` is the secret of the latest delivery of the item an ack, heartbeat or stop names: it
        authorizes those like the environment key (the authorizer is not asked)."""
        if not self._secret_dialect or work_id is None or operation not in _SECRET_OPERATIONS:
            return False
        return self._tx.secret(env_id, work_id) == token

    def _deliverable(self, env: Any, milliseconds: int, now: datetime) -> CreationKey | None:
        """The creation key of the oldest item a poll with this reclaim window delivers at ``now``: the first of
        the store's candidates, in creation order, that the core delivers (``step`` decides; the store narrows).

        The narrowing is the core's rule (guard ``deliverable``) read for queued items: never delivered, or
        ``max(now, clock) - delivered_at >= window``; a queued, delivered item's clock is its ``delivered_at``
        (a delivery stamps both, and nothing that leaves an item queued moves its clock; the stateful test
        checks this), so that is ``delivered_at <= now - window``, or every delivered item when the window
        is zero. A subclass may override how a poll chooses (the mutants do); the core still judges the choice.
        """
        window = _window(milliseconds)
        if window is None:  # a window longer than any timeline: nothing delivered is reclaimable
            until = None
        elif not window:
            until = FOREVER
        else:
            until = _minus(now, window)
        tx, policy, step = self._tx, self.policy, self._step
        command = self._poll_command or Deliver(None, milliseconds)
        after: CreationKey | None = None
        while True:
            batch = tx.candidates(env.id, until, after, _CANDIDATES)
            if not batch:
                return None
            for item in batch:
                outcome = step(item, command, now, policy)
                if isinstance(outcome, Accepted):
                    self._chosen = (item, outcome, now)
                    return item.created_at, item.id
            last = batch[-1]
            after = (last.created_at, last.id)

    def _stats(self, env: Any, now: datetime) -> StatsObject:
        """Queue stats (api.md §4.7) under the policy's reclaim window; ``depth + pending`` = queued items."""
        window = self._stats_window  # the same reading of the core's rule as a poll's (see _deliverable)
        tx = self._tx
        counts = tx.queue_counts(env.id, FOREVER if not window else _minus(now, window))
        return StatsObject(
            depth=counts.fresh + counts.reclaimable,
            pending=counts.delivered - counts.reclaimable,
            oldest_queued_at=counts.oldest_created_at,
            workers_polling=tx.workers_polling(env.id, now, self._polling_window),
        )

    def _list(self, env: EnvironmentInfo, params: dict[str, str], body: Any) -> Response:
        """List (api.md §4.6): ascending id order, ``limit`` items, one cursor at most."""
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

        # One more than the page, in the direction asked for: has_more says whether items lie beyond the page
        # (after last_id, or for before_id before first_id); next_page is the cursor that continues that way.
        backward = "before_id" in cursors
        if backward:
            rows = self._tx.page(env.id, None, cursors["before_id"], limit + 1)
        else:
            rows = self._tx.page(env.id, cursors.get("after_id") or cursors.get("page"), None, limit + 1)
        more = len(rows) > limit
        items = (rows[1:] if backward else rows[:limit]) if more else rows
        page = ListEnvelope.of(list(items), has_more=more, backward=backward)
        return _ok(page.to_json(dialect))


def _ok(value: Any, effects: tuple[Effect, ...] = (), rule: Rule | None = None) -> Response:
    return Response(200, value, dumps(value), JSON_HEADERS, effects, rule)
