"""statestore: a container engine's state in Redis, shared by many daemon replicas.

Records are versioned ``docker inspect``-shaped JSON; writers commit with
optimistic WATCH/MULTI transactions that update the record, its name, its
indexes and its change-log entry atomically; readers get deep copies and never
wait on a writer.  See docs/api.md.
"""

from ._errors import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    CommitIndeterminateError,
    ConflictError,
    CorruptRecordError,
    DurabilityError,
    HistoryTrimmedError,
    InconsistentStoreError,
    InvalidArgumentError,
    InvalidStateError,
    LockLostError,
    LockTimeoutError,
    LogRegressionError,
    NameInUseError,
    NotFoundError,
    SchemaVersionError,
    StateStoreError,
    StorePermissionError,
    StoreUnavailableError,
)
from ._events import Event, parse_revision
from ._filters import parse_filter_args
from ._fsckcheck import FsckReport, Problem
from ._lockinfo import LockInfo, LockList
from ._loglines import LogLine
from ._model import (
    Config,
    Container,
    ExecConfig,
    Health,
    HostConfig,
    NetworkSettings,
    ProcessConfig,
    State,
)
from ._results import RecordList, Snapshot
from ._sync._lock import Lease
from ._sync._logs import Logs
from ._sync._store import Containers, Execs, Store
from ._sync._view import View
from ._sync._watch import Watch

__version__ = "0.1.0"

__all__ = [
    # the store
    "Store",
    "Containers",
    "Execs",
    "Snapshot",
    "RecordList",
    "Lease",
    "LockInfo",
    "LockList",
    "Logs",
    "LogLine",
    "Watch",
    "Event",
    "View",
    "FsckReport",
    "Problem",
    # records
    "Container",
    "ExecConfig",
    "State",
    "Health",
    "Config",
    "HostConfig",
    "NetworkSettings",
    "ProcessConfig",
    # helpers
    "parse_filter_args",
    "parse_revision",
    # errors
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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("statestore._"):
        _obj.__module__ = "statestore"
del _name, _obj
