"""Shared builders for the tests: items in every state, made only through the public step function."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings

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
from workstate.model import ACTIONS, Action, Lifecycle
from workstate.rules import Kind, Reason
from workstate.worker import Worker

ROOT = Path(__file__).resolve().parent.parent

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


# --- teeth: broken rule sets the property suite and the model checker must catch ---------------------------


def _requeue_keeping_worker(item: WorkItem, cmd: Any, at: datetime, policy: Policy, new: Any, fx: list[Any]) -> None:
    ACTIONS["requeue"].run(item, cmd, at, policy, new, fx)
    new.worker_id = item.worker_id  # the bug: the bound Worker-ID survives the re-queue


BROKEN: dict[str, Callable[[], Lifecycle]] = {
    "heartbeat ignores the precondition": lambda: Lifecycle(declaration({"heartbeat-precondition-failed": None})),
    "ack succeeds in stopping": lambda: Lifecycle(
        declaration(
            {"ack-after-stop": line("ack-after-stop", source=State.STOPPED)},
            prepend=(
                line("ack", name="ack-in-stopping", source=State.STOPPING, actions="bind_worker stamp_acknowledged"),
            ),
        )
    ),
    "a lapse forgets to clear the bound Worker-ID": lambda: Lifecycle(
        actions={**ACTIONS, "requeue": Action(_requeue_keeping_worker, ACTIONS["requeue"].writes)}
    ),
    "a lapsed lease is never re-queued": lambda: Lifecycle(
        declaration({"lease-expired": line("lease-expired", dest=None, outcome=Kind.REPLAY, actions="")})
    ),
    "ack replay answers 409": lambda: Lifecycle(
        declaration({"ack-replay": line("ack-replay", outcome=Reason.WORKER_CONFLICT)})
    ),
}


# --- the lockstep kit's settings in these tests, and the rule each old mutant breaks ----------------------

# Finding: up to 100 sequences of up to 30 steps. The kit's own reduction (one-step deletions, replayed)
# makes the counterexample short, so hypothesis' slow shrink phase is left out here (one test keeps it).
FIND = settings(
    max_examples=100,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
PASS = settings(FIND, max_examples=200, stateful_step_count=30)

EXPECTED_RULE = {
    "AckReplayConflicts": "4.2 ack-replay",
    "HeartbeatIgnoresPrecondition": "4.3 heartbeat-precondition-failed",
    "LeaseNeverLapses": "5 lease-expired",
    "LifoPoll": "4.1 poll",
    "StopStoppedConflicts": "stop",  # stop-stopped or force-stop-stopped
    "AckIgnoresWorkerId": "4.2 ack-",  # claimed by another / bound to another
}


class Stubborn(Worker):
    """A broken driver: it keeps working after a 412 (or any lost lease), as if it were a passing hiccup."""

    def _lose(self, item: Any, now: datetime, reason: str) -> None:
        if not item.started or reason.startswith("the lease ran out"):
            super()._lose(item, now, reason)
            return
        ttl = item.ttl or 10
        item.lease_until = now + timedelta(seconds=ttl)  # "we still hold it"
        item.next_beat = now + timedelta(seconds=ttl / 2)
        item.attempt = 0
        item.retry_at = None
