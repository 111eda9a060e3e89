"""Shared builders for the tests: items in every state, made only through the public step function."""

from datetime import UTC, datetime, timedelta

from workstate import (
    DEFAULT_POLICY,
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Deliver,
    Heartbeat,
    Policy,
    State,
    Stop,
    WorkItem,
    step,
)

T0 = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
WORK = "work_" + "0" * 31 + "1"
ENV = "env_" + "0" * 31 + "1"
SESS = "sess_" + "0" * 31 + "1"


def fresh(**fields: object) -> WorkItem:
    return WorkItem(id=WORK, environment_id=ENV, session_id=SESS, created_at=T0, **fields)  # type: ignore[arg-type]


def sec(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def must(outcome: object) -> WorkItem:
    assert isinstance(outcome, Accepted), outcome
    return outcome.item


def item_in(
    state: State, worker: str | None = "w1", policy: Policy = DEFAULT_POLICY, delivered: bool = True
) -> WorkItem:
    """An item in ``state`` at about T0 + 4 s, delivered to and acked by ``worker``."""
    item = fresh()
    if state is State.QUEUED:
        return must(step(item, Deliver(worker), sec(1), policy)) if delivered else item
    if state is State.STOPPED:
        return must(step(item, Stop(force=True), sec(1), policy))
    item = must(step(item, Deliver(worker), sec(1), policy))
    item = must(step(item, Ack(worker), sec(2), policy))
    if state is State.STARTING:
        return item
    if state is State.STOPPING:
        return must(step(item, Stop(), sec(3), policy))
    return must(step(item, Heartbeat(NO_HEARTBEAT), sec(3), policy))


LINE_FIELDS = ("name", "section", "trigger", "source", "dest", "guards", "outcome", "actions")


def line(old_name: str, /, **fields: object) -> tuple[object, ...]:
    """The declaration line called ``old_name``, with some fields changed (for broken variants)."""
    from workstate.rules import DECLARATION

    (found,) = [old for old in DECLARATION if old[0] == old_name]
    unknown = set(fields) - set(LINE_FIELDS)
    assert not unknown, unknown
    return tuple(fields.get(key, value) for key, value in zip(LINE_FIELDS, found, strict=True))


def declaration(replace: dict[str, tuple[object, ...] | None], prepend: tuple[tuple[object, ...], ...] = ()) -> tuple:
    """The declaration with lines replaced (None drops one), and extra lines first."""
    from workstate.rules import DECLARATION

    kept = [replace.get(old[0], old) for old in DECLARATION]
    return (*prepend, *[new for new in kept if new is not None])
