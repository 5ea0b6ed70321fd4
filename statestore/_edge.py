"""The Redis edge's policy, shared by both faces' I/O (``_async``/``_sync``), with no I/O of its own.

One table maps redis-py's exceptions to statestore's (:func:`translate`, and the
error classes the I/O code retries on); one pacing for every retry
(:class:`Backoff`); one way to turn a reply into text (:func:`text`) and
commands into RESP (``pack``).  The commit engine's data -- the plan a
transaction body returns, the fence a leased commit checks, the durability a
commit waits for, the internal outcomes of an attempt -- live here too, so the
async engine and the sync one generated from it share them (see
``_async/_engine.py`` for the theory of operation).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import redis.exceptions as rex
from tenacity import RetryCallState

from . import _protocol
from ._errors import (
    CorruptRecordError,
    InvalidArgumentError,
    StateStoreError,
    StorePermissionError,
    StoreUnavailableError,
)

try:  # hiredis packs a command in C; redis-py's packer re-encodes every argument in Python
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None  # type: ignore[assignment]




def pack(conn: Any, cmds: Sequence[tuple[Any, ...]]) -> Any:
    """RESP for ``cmds`` (arguments are str, bytes or int only)."""
    if _hiredis_pack is not None:
        return [b"".join([_hiredis_pack(c) for c in cmds])]
    return conn.pack_commands(cmds)


def text(value: Any) -> str:
    """A Redis reply (bytes) as text ("" for nil); bytes that are not UTF-8 show as ``\\xNN`` escapes."""
    if type(value) is bytes:
        return value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Backoff:
    """The edge's one retry pacing: capped exponential backoff with full jitter, the wait of
    tenacity's ``wait_random_exponential`` (an instance is a tenacity ``wait``), with
    ``delay(attempt)`` for the loops that are not tenacity's (watch reconnects, view
    relists, the daemon's queue reads)."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 failed so far)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** min(max(attempt, 1) - 1, 40)))

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.delay(retry_state.attempt_number)


#: commit attempts that lost a race (a watched key changed): retried at once, briefly spread
CONFLICT_BACKOFF = Backoff(0.001, 0.1)
#: anything waiting for Redis to answer again (lost connections, failovers, restarts)
RECONNECT_BACKOFF = Backoff(0.02, 1.0)


def translate(exc: BaseException, key: str | None = None) -> StateStoreError:
    """Map a redis-py exception to the statestore error a user should see."""
    if isinstance(exc, StateStoreError):
        return exc
    msg = str(exc)
    if isinstance(exc, rex.NoPermissionError) or msg.startswith("NOPERM") or \
            "The user executing the script can't" in msg:  # Redis 7.0, a refusal inside a script
        return StorePermissionError(f"Redis refused access: {msg}")
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError):
        return StorePermissionError(f"Redis authentication failed: {msg}")
    if isinstance(exc, rex.ResponseError) and "WRONGTYPE" in msg:
        where = key or "a statestore key"
        m = re.search(r"statestore (?:index|key) (\S+?),?(?: holds a (\w+))?(?:$|,| )", msg)
        if m:
            where = m.group(1)
            if "not an integer counter" in msg:
                return CorruptRecordError(where, "is not an integer counter (the change-log sequence)")
            if m.group(2):
                return CorruptRecordError(where, f"holds a {m.group(2)}, expected another Redis type")
        return CorruptRecordError(where, "holds a value of the wrong Redis type")
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
        return StoreUnavailableError(f"Redis is unavailable: {msg or type(exc).__name__}")
    if isinstance(exc, rex.ReadOnlyError | rex.BusyLoadingError):
        return StoreUnavailableError(f"Redis cannot take the request now: {msg}")
    if isinstance(exc, rex.RedisError):
        return StoreUnavailableError(f"Redis error: {msg}")
    raise exc


#: connection errors that retrying cannot fix
AUTH_ERRORS = (rex.AuthenticationError, rex.AuthorizationError)
# Redis Cluster: the namespace's slot moved (MOVED), is moving (ASK, TRYAGAIN) or
# its shard has no primary right now (CLUSTERDOWN, MASTERDOWN): retried like a
# lost connection (see ``_cluster``)
REDIRECT_ERRORS = (rex.AskError, rex.TryAgainError, rex.ClusterDownError, rex.MasterDownError)
TRANSIENT_ERRORS = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ReadOnlyError,
              ConnectionResetError, BrokenPipeError, *REDIRECT_ERRORS)
#: what a reconnect can fix, for a reader that owns its connection (a watch): the transient
#: errors and any OSError of the socket
RECONNECT_ERRORS = (*TRANSIENT_ERRORS, OSError)
#: the root of redis-py's errors (``translate`` maps each to a statestore error)
REDIS_ERROR = rex.RedisError


class Aborted(Exception):
    """EXEC returned nil: a watched key changed.  Internal; triggers a retry."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        super().__init__(key)
        self.key, self.expected, self.actual = key, expected, actual


class Unsent(Exception):
    """A transient connection error before EXEC was sent.  Internal; triggers a retry."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Lost(Exception):
    """The connection was lost after EXEC was sent: ``plan`` may or may not be applied.

    Internal: a replay-safe transaction is retried (its body recognises its own
    commit id); any other raises CommitIndeterminateError.
    """

    def __init__(self, plan: Plan, cause: str) -> None:
        super().__init__(cause)
        self.plan, self.cause = plan, cause


@dataclass
class Attempts:
    """What the attempts of one transaction share."""

    commit_id: str
    lost: Lost | None = None
    #: the replay decision (``transact``'s ``replay``)
    replay: Callable[[Plan, Any], Any] | None = None


@dataclass
class Plan:
    """What one transaction writes, produced by a body from what it read.

    ``commands`` are ``(name, key, *args)`` with name SET, DEL, ZADD or ZREM, and
    ``_protocol.EventOp``s; the engine applies them in order with ``apply.lua``
    inside MULTI/EXEC (``_protocol.encode`` writes its arguments).
    The IDs of the change-log entries, in order, are the commit's revisions;
    ``finish`` turns them into the value the transaction returns.
    """

    key: str
    commands: list[_protocol.Op] = field(default_factory=list)
    finish: Callable[[list[str]], Any] = lambda revisions: None
    expected: int | None = None
    actual: int | None = None
    #: recorded with every record the plan writes (``StateStore.Commit``), so that a
    #: retry after a lost EXEC reply can tell whether this commit was applied
    commit_id: str = ""
    #: the version the plan gives ``key`` (None: deleted, or not a record)
    version: int | None = None

    def add(self, *command: Any) -> None:
        """A SET, DEL, ZADD or ZREM: ``(name, key, *args)``."""
        self.commands.append(command)

    def log(self, event: _protocol.EventOp) -> None:
        """A record change's event (``_protocol.event``)."""
        self.commands.append(event)

    def settled(self, result: Any) -> Plan:
        """This plan as one that writes nothing and returns ``result``."""
        self.commands.clear()
        self.finish = lambda revisions: result
        return self


@dataclass(frozen=True)
class Fence:
    """A lock a commit must still hold (see ``_lock``'s theory of operation).

    The engine WATCHes ``fence_key`` (the owner's token, changed only by an
    acquisition) with the transaction's first read, GETs it and ``lock_key``
    in the same round trip, and calls :meth:`check`; ``lost(reason)`` builds
    the error to raise.
    """

    fence_key: str
    lock_key: str
    token: int
    lost: Callable[[str], StateStoreError]

    def check(self, fence_raw: Any, lock_raw: Any) -> None:
        if fence_raw is not None and text(fence_raw) != str(self.token):
            raise self.lost(f"the lock was taken over (token {text(fence_raw)})")
        if lock_raw is None:
            raise self.lost("the lock expired")
        try:
            token = int(orjson.loads(lock_raw)["token"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise self.lost("the lock key holds an unreadable value") from None
        if token != self.token:
            raise self.lost(f"the lock is now held with token {token}")
        # A missing fence key with our token still in the lock: the container
        # was deleted (a delete removes the fence key).  We still own the lock;
        # the body reads the record under WATCH and reports NotFoundError.


@functools.cache
def read_lua(name: str) -> str:
    return resources.files("statestore").joinpath("_lua", name).read_text()


@dataclass(frozen=True)
class Durability:
    """When a commit counts as done (``Store(durability=...)``).

    ``replicas`` 0 is the fast default: done when the primary applied it.
    Otherwise each commit is followed, on the same connection and in the same
    write, by ``WAIT replicas timeout_ms``; fewer acknowledgements raise
    DurabilityError.  Where the server has ``WAITAOF`` (Redis 7.2+) and the
    primary has AOF on, the commit also waits for the primary's own fsync.
    """

    replicas: int = 0
    timeout_ms: int = 1000

    @classmethod
    def parse(cls, durability: str, replicas: int, timeout: float) -> Durability:
        if durability == "fast":
            return cls(0, 0)
        if durability != "replicated":
            raise InvalidArgumentError(f"durability must be 'fast' or 'replicated', not {durability!r}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise InvalidArgumentError("replicas must be a positive integer")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise InvalidArgumentError("durability_timeout must be a positive number of seconds")
        return cls(replicas, max(1, int(timeout * 1000)))


#: the default: a commit is done when the primary applied it
FAST = Durability()


__all__ = ["AUTH_ERRORS", "CONFLICT_BACKOFF", "FAST", "RECONNECT_BACKOFF", "RECONNECT_ERRORS", "REDIRECT_ERRORS",
           "REDIS_ERROR", "TRANSIENT_ERRORS", "Backoff", "Durability", "Fence", "Plan", "pack", "read_lua", "text",
           "translate"]
