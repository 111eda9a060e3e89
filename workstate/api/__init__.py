"""The sans-I/O HTTP-shaped surface of the Work API: HTTP-shaped values in, HTTP-shaped values out.

:mod:`~workstate.api.wire`: the values a server exchanges with its HTTP edge (:class:`Request`,
:class:`Response`, :class:`Headers`) and the reading of a request (query, headers, bearer token,
bodies), refusing what cannot be read with a :class:`~workstate.api.wire.Refusal`; the server and
``workstate check`` read requests with the same functions.

:mod:`~workstate.api.routes`: the one route table, spelled by a :class:`~workstate.Dialect` (its base
path and worker header; :data:`BASE_PATH` is ``QODER.base_path``), the operation names,
:func:`~workstate.api.routes.route` from a method and path to an operation, and what each endpoint reads
from a request (the worker header, a heartbeat's query, a stop's or an update's body). A new endpoint goes
here; a new dialect is a new ``Dialect`` value.

:mod:`~workstate.api.codec`: the JSON of the wire: strict parsing, the work-item, heartbeat, list,
stats and error objects, and their encodings.

:mod:`~workstate.api.index`: the ordered indexes the server keeps over an environment's items (the
fresh queue, the treap of delivered items, the polls window), so that no request scans the items.

:mod:`~workstate.api.server`: the reference :class:`Server`: environments and their items, the check
order, the expiry heap, and every endpoint answered through the core's :func:`workstate.step`; with
its pluggable parts (:class:`Access` and an :data:`Authorizer`, an :data:`IdSource`, an
:data:`OnChange` hook) and the errors of its own operations. A durable store goes beside it, fed by
``on_change``.

Nothing here reads a clock, opens a socket or a file, or imports from ``workstate.worker``,
``workstate.tools``, ``workstate.testing`` or ``workstate.cli``: the package depends on the core only.
"""

from .routes import BASE_PATH, PARAM_OF_REASON
from .server import (
    Access,
    Authorizer,
    CounterIds,
    DuplicateId,
    EnvironmentKind,
    EnvironmentSnapshot,
    IdSource,
    NotSelfHosted,
    OnChange,
    Server,
    SessionBusy,
    UnknownEnvironment,
    allow_any,
)
from .store import MemoryStore, QueueCounts, Store, StoreConflict, Transaction
from .wire import REQUEST_ID_MAX_LENGTH, Headers, Request, Response, bearer_token, echoed_request_id

__all__ = [
    "BASE_PATH",
    "PARAM_OF_REASON",
    "REQUEST_ID_MAX_LENGTH",
    "Access",
    "Authorizer",
    "CounterIds",
    "DuplicateId",
    "EnvironmentKind",
    "EnvironmentSnapshot",
    "Headers",
    "IdSource",
    "MemoryStore",
    "OnChange",
    "NotSelfHosted",
    "QueueCounts",
    "Request",
    "Response",
    "Server",
    "SessionBusy",
    "Store",
    "StoreConflict",
    "Transaction",
    "UnknownEnvironment",
    "allow_any",
    "bearer_token",
    "echoed_request_id",
]
