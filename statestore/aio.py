"""statestore for asyncio programs: the same store, with coroutines.

``from statestore.aio import Store`` gives the async face of ``statestore.Store``:
the same surface and behaviour (it is the source the sync face is generated
from), on a ``redis.asyncio`` client::

    async with Store.from_url("redis://127.0.0.1:6379/0", namespace="prod") as store:
        c = await store.containers.create(Container.new("nginx:1.27", name="web"))
        async with store.lock(c.id) as lease:
            await store.containers.update(c.id, start, lease=lease)
        async for event in store.watch(since=c.revision):
            ...

Records, lists, snapshots, lock listings, fsck reports, change events and
errors are the very classes of ``statestore`` (import them from there, or from
here).  What differs: every call that talks to Redis is a coroutine; a lease
is an async context manager whose loss can be awaited (``await
lease.wait_lost()``); a watch is an async iterator closed with ``aclose()``;
``await store.view()`` returns a View whose reads (``get``, ``list``,
``execs``) are plain calls, never I/O, and whose ``wait_for`` is awaited; the
lock renewer and the View's follower are tasks of the running event loop.
Cancelling a call is safe: a cancelled commit either happened or did not (its
connection is dropped, never reused mid-reply), a cancelled lock acquisition
holds no lock, a cancelled watch read drops its connection.  See docs/api.md.
"""

from . import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    CommitIndeterminateError,
    ConflictError,
    Container,
    CorruptRecordError,
    DurabilityError,
    Event,
    ExecConfig,
    FsckReport,
    HistoryTrimmedError,
    InconsistentStoreError,
    InvalidArgumentError,
    InvalidStateError,
    LockInfo,
    LockList,
    LockLostError,
    LockTimeoutError,
    LogLine,
    LogRegressionError,
    NameInUseError,
    NotFoundError,
    Problem,
    RecordList,
    SchemaVersionError,
    Snapshot,
    StateStoreError,
    StorePermissionError,
    StoreUnavailableError,
    parse_filter_args,
    parse_revision,
)
from ._async._lock import AsyncLease as Lease
from ._async._logs import AsyncLogs as Logs
from ._async._store import AsyncContainers as Containers
from ._async._store import AsyncExecs as Execs
from ._async._store import AsyncStore as Store
from ._async._view import AsyncView as View
from ._async._watch import AsyncWatch as Watch

__all__ = [
    # the async store
    "Store",
    "Containers",
    "Execs",
    "Lease",
    "Logs",
    "Watch",
    "View",
    # shared with statestore
    "LogLine",
    "Snapshot",
    "RecordList",
    "LockInfo",
    "LockList",
    "Event",
    "FsckReport",
    "Problem",
    "Container",
    "ExecConfig",
    "parse_filter_args",
    "parse_revision",
    "StateStoreError",
    "AlreadyExistsError",
    "AmbiguousReferenceError",
    "CommitIndeterminateError",
    "DurabilityError",
    "ConflictError",
    "CorruptRecordError",
    "HistoryTrimmedError",
    "InconsistentStoreError",
    "InvalidArgumentError",
    "InvalidStateError",
    "LockLostError",
    "LockTimeoutError",
    "LogRegressionError",
    "NameInUseError",
    "NotFoundError",
    "SchemaVersionError",
    "StorePermissionError",
    "StoreUnavailableError",
]

for _cls in (Store, Containers, Execs, Lease, Watch, View):
    _cls.__module__ = "statestore.aio"
    _cls.__qualname__ = _cls.__name__ = _cls.__name__.removeprefix("Async")
del _cls
