"""workstate: the exact, executable definition of the Work item lifecycle.

The rules are declared once in :mod:`workstate.rules`; :func:`step` runs them as a pure
function over frozen :class:`WorkItem` values::

    from datetime import datetime, timezone
    from workstate import Ack, Heartbeat, NO_HEARTBEAT, WorkItem, step

    now = datetime(2026, 7, 1, 8, 15, 1, tzinfo=timezone.utc)
    item = WorkItem(id="work_" + "0" * 32, environment_id="env_" + "0" * 32,
                    session_id="sess_" + "0" * 32, created_at=now)
    item = step(item, Ack(worker_id="w1"), now).item                      # starting
    outcome = step(item, Heartbeat(expected_last_heartbeat=NO_HEARTBEAT), now)  # active
"""

from ._time import parse_timestamp, render_timestamp
from .dialect import ANTHROPIC, DIALECTS, QODER, Dialect
from .errors import (
    InvalidCommand,
    InvalidDialect,
    InvalidId,
    InvalidInput,
    InvalidItem,
    InvalidMetadata,
    InvalidPolicy,
    InvalidTimestamp,
    NaiveDatetime,
    WorkstateError,
)
from .model import (
    LIFECYCLE,
    NO_HEARTBEAT,
    Accepted,
    Ack,
    Command,
    Deliver,
    DispatchRequested,
    Effect,
    Explanation,
    Heartbeat,
    Lapse,
    LeaseGranted,
    Lifecycle,
    Outcome,
    Rejected,
    Replayed,
    Requeued,
    Stop,
    Stopped,
    StopRequested,
    UpdateMetadata,
    WorkItem,
    accepts,
    explain,
    next_deadline,
    step,
)
from .policy import (
    DEFAULT_POLICY,
    ConflictErrorType,
    LimitOverMax,
    OnLeaseExpiry,
    OnStartTimeout,
    Policy,
    TimestampMatch,
)
from .rules import Guard, Kind, Reason, Rule, State, Trigger

__version__ = "0.1.0"

__all__ = [
    "ANTHROPIC",
    "DEFAULT_POLICY",
    "DIALECTS",
    "LIFECYCLE",
    "NO_HEARTBEAT",
    "Accepted",
    "Ack",
    "Command",
    "ConflictErrorType",
    "Deliver",
    "Dialect",
    "DispatchRequested",
    "Effect",
    "Explanation",
    "Guard",
    "Heartbeat",
    "InvalidCommand",
    "InvalidDialect",
    "InvalidId",
    "InvalidInput",
    "InvalidItem",
    "InvalidMetadata",
    "InvalidPolicy",
    "InvalidTimestamp",
    "Kind",
    "Lapse",
    "LeaseGranted",
    "Lifecycle",
    "LimitOverMax",
    "NaiveDatetime",
    "OnLeaseExpiry",
    "OnStartTimeout",
    "Outcome",
    "Policy",
    "QODER",
    "Reason",
    "Rejected",
    "Replayed",
    "Requeued",
    "Rule",
    "State",
    "Stop",
    "StopRequested",
    "Stopped",
    "TimestampMatch",
    "Trigger",
    "UpdateMetadata",
    "WorkItem",
    "WorkstateError",
    "accepts",
    "explain",
    "next_deadline",
    "parse_timestamp",
    "render_timestamp",
    "step",
]
