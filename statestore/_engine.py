"""The commit engine: the only code that sends MULTI/EXEC.

Theory of operation
-------------------
A commit is an optimistic transaction on one pinned connection:

1. **Read under WATCH.**  ``WATCH k1 k2 ...`` and a ``GET`` per key are sent
   as *one* write and their replies read together (one round trip, where
   ``redis-py``'s ``pipeline.watch()`` followed by reads costs two).  A commit
   made with a lock lease also watches the lock's fence key and reads the
   lock in that round trip (:class:`Fence`).
2. **Plan.**  The caller's body decodes what it read, applies its change in
   memory and returns a :class:`Plan`: the record writes, the index diff and
   one change-log ``XADD`` per changed record.  A body may read again
   (``tx.read``) before planning; those keys are watched too.
3. **Apply.**  ``MULTI``, one ``EVALSHA`` of ``apply.lua`` carrying the whole
   plan, and ``EXEC`` go out as one write.  If any watched key changed since
   step 1, ``EXEC`` returns nil and nothing was applied: the engine re-runs
   the body from step 1 with jittered exponential backoff (tenacity), at most
   ``conflict_attempts`` times, then raises :class:`ConflictError`.  A body
   that detects a real conflict itself (a compare-and-set on a stale version)
   raises ConflictError and is never retried.  The script first checks the
   Redis type of every sorted set and stream it will write, and refuses the
   whole plan if one is wrong (an operator replaced a key): Redis does not
   roll back a MULTI or a script whose command fails half-way, so this check
   is what makes "all or nothing" hold even then.  One script call is also
   cheaper for the client than packing and parsing each write separately.

Why it is safe: every key whose value the plan depends on (the record, the
names it takes or frees, the lock's fence key) is WATCHed, and every key the
plan writes is written inside the one MULTI/EXEC, so either the whole plan
applies on exactly the state it was computed from, or none of it does.
Index sorted sets and the change log are written but not watched: their new
content is a function of the watched records alone (members carry the record
ID), so concurrent commits on other records cannot invalidate the plan, and
two replicas creating records at once do not conflict.

Connections: the WATCH state lives on the connection, so a connection goes
back to the pool only after ``EXEC`` or ``UNWATCH``; on any I/O error it is
disconnected instead.  A connection error before ``EXEC`` was sent is retried
(the transaction had no effect); after it was sent the outcome is unknown and
:class:`CommitIndeterminateError` tells the caller to re-read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import orjson
import redis
import redis.exceptions as rex
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
)

from . import _protocol
from ._clients import derive_client, no_retries
from ._errors import (
    CommitIndeterminateError,
    ConflictError,
    CorruptRecordError,
    DurabilityError,
    InvalidArgumentError,
    StateStoreError,
    StorePermissionError,
    StoreUnavailableError,
)

log = logging.getLogger("statestore")

T = TypeVar("T")



try:  # hiredis packs a command in C; redis-py's packer re-encodes every argument in Python
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None  # type: ignore[assignment]


def _pack(conn: Any, cmds: Sequence[tuple[Any, ...]]) -> Any:
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
_AUTH = (rex.AuthenticationError, rex.AuthorizationError)
# Redis Cluster: the namespace's slot moved (MOVED), is moving (ASK, TRYAGAIN) or
# its shard has no primary right now (CLUSTERDOWN, MASTERDOWN): retried like a
# lost connection (see ``_cluster``)
_REDIRECT = (rex.AskError, rex.TryAgainError, rex.ClusterDownError, rex.MasterDownError)
_TRANSIENT = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ReadOnlyError,
              ConnectionResetError, BrokenPipeError, *_REDIRECT)
#: what a reconnect can fix, for a reader that owns its connection (a watch): the transient
#: errors and any OSError of the socket
RECONNECT_ERRORS = (*_TRANSIENT, OSError)
AUTH_ERRORS = _AUTH
#: the root of redis-py's errors (``translate`` maps each to a statestore error)
REDIS_ERROR = rex.RedisError


class _Aborted(Exception):
    """EXEC returned nil: a watched key changed.  Internal; triggers a retry."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        super().__init__(key)
        self.key, self.expected, self.actual = key, expected, actual


class _Unsent(Exception):
    """A transient connection error before EXEC was sent.  Internal; triggers a retry."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Lost(Exception):
    """The connection was lost after EXEC was sent: ``plan`` may or may not be applied.

    Internal: a replay-safe transaction is retried (its body recognises its own
    commit id); any other raises CommitIndeterminateError.
    """

    def __init__(self, plan: Plan, cause: str) -> None:
        super().__init__(cause)
        self.plan, self.cause = plan, cause


@dataclass
class _Attempts:
    """What the attempts of one transaction share."""

    commit_id: str
    lost: _Lost | None = None
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


class Tx:
    """The read side of one transaction attempt, on a pinned connection.

    ``commit_id`` is the same for every attempt of one transaction.  ``lost``
    is the plan of an earlier attempt whose EXEC reply never came (None
    normally): the body must then check whether that plan was applied before
    planning again (see ``Store`` and docs/design.md, "Indeterminate commits").
    """

    def __init__(self, conn: Any, fence: Fence | None = None, commit_id: str = "",
                 lost: Plan | None = None) -> None:
        self._conn = conn
        self._fence = fence
        self.watched = False
        self.commit_id = commit_id
        self.lost = lost

    def plan(self, key: str, expected: int | None = None) -> Plan:
        """A new plan for this transaction (it carries the commit id)."""
        return Plan(key=key, expected=expected, commit_id=self.commit_id)

    def read(self, keys: Sequence[str]) -> list[Any]:
        """WATCH ``keys`` and return their values (None when missing), in one round trip."""
        if not keys:
            return []
        conn = self._conn
        fence, self._fence = self._fence, None
        watch = keys if fence is None else [fence.fence_key, *keys]
        gets = keys if fence is None else [fence.fence_key, fence.lock_key, *keys]
        cmds: list[tuple[Any, ...]] = [("WATCH", *watch)]
        cmds.extend(("GET", k) for k in gets)
        try:
            conn.send_packed_command(_pack(conn, cmds), check_health=False)
            self.watched = True
            replies: list[Any] = []
            for _ in cmds:
                try:
                    replies.append(conn.read_response())
                except rex.ResponseError as exc:
                    replies.append(exc)
        except _TRANSIENT as exc:
            raise _Unsent(exc) from exc
        for reply in replies:
            if isinstance(reply, _REDIRECT):
                raise _Unsent(reply)
        if isinstance(replies[0], Exception):
            raise translate(replies[0])
        values = replies[1 : 1 + len(gets)]
        for k, v in zip(gets, values, strict=True):
            if isinstance(v, Exception):
                raise translate(v, k)
        if fence is not None:
            fence.check(values[0], values[1])
            return values[2:]
        return values


@functools.cache
def _read_lua(name: str) -> str:
    return resources.files("statestore").joinpath("_lua", name).read_text()


class Script:
    """A Lua script called by SHA (``EVALSHA``), loaded on first ``NOSCRIPT``.

    Lighter than redis-py's ``Script`` object, whose per-call bookkeeping
    costs about as much as the round trip's client-side work.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, execute: Callable[..., Any], keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run through ``execute`` (``Engine.execute`` or a client's ``execute_command``)."""
        try:
            return execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            execute("SCRIPT", "LOAD", self.source)
            return execute("EVALSHA", self.sha, len(keys), *keys, *args)


def own_client(client: redis.Redis, min_socket_timeout: float | None = None) -> redis.Redis:
    """A client on a pool of the store's own, with the caller's connection settings.

    The store reads raw bytes (``decode_responses`` off: a record that is not
    valid UTF-8 must be reported as corrupt, not crash the reply parser) and
    does its own bounded retries (the client's retry policy off, so
    ``unavailable_timeout`` is what bounds a call).  ``min_socket_timeout``
    raises a shorter socket timeout (for replicated durability's WAIT).  Pools
    that cannot be cloned are used as they are, unless they decode responses.
    """
    overrides: dict[str, Any] = {"decode_responses": False, "retry": no_retries()}
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if min_socket_timeout is not None and socket_timeout is not None and socket_timeout < min_socket_timeout:
        # a replicated commit's WAIT blocks up to durability_timeout: the socket must outlast it,
        # or an applied commit would look lost
        overrides["socket_timeout"] = min_socket_timeout
    derived = derive_client(client, **overrides)
    if derived is not None:
        return derived
    pool = client.connection_pool
    if pool.connection_kwargs.get("decode_responses"):
        raise InvalidArgumentError(
            f"cannot use a {type(pool).__name__} with decode_responses=True: statestore reads raw bytes")
    return client


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


class Engine:
    """Runs transactions and reads against one Redis, translating every error."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        conflict_attempts: int = 32,
        unavailable_timeout: float = 5.0,
        durability: Durability = Durability(),
    ) -> None:
        if conflict_attempts < 1:
            raise InvalidArgumentError("conflict_attempts must be at least 1")
        if unavailable_timeout < 0:
            raise InvalidArgumentError("unavailable_timeout must not be negative")
        self.client = client
        self.pool = client.connection_pool
        self.conflict_attempts = conflict_attempts
        self.unavailable_timeout = unavailable_timeout
        self.durability = durability
        self._wait: list[tuple[Any, ...]] | None = None  # learned on the first replicated write
        self._apply = Script(_read_lua("apply.lua"))
        self._apply_loaded = False
        # commit ids: unique per transaction, cheap (no syscall per commit)
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)

    # --- connections -------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            conn = self.pool.get_connection()
        except _AUTH as exc:  # a ConnectionError subclass, but retrying cannot help
            raise translate(exc) from None
        except _TRANSIENT as exc:
            raise _Unsent(exc) from exc
        except rex.RedisError as exc:
            raise translate(exc) from None
        clean = False
        try:
            yield conn
            clean = True
        except (rex.ResponseError, _Aborted, StateStoreError):
            # a complete error reply, an aborted EXEC, or a refusal by the body
            # after UNWATCH: the connection is in step and can be reused
            clean = True
            raise
        finally:
            if not clean:
                # the reply stream or the WATCH state may be out of step: drop it
                conn.disconnect()  # type: ignore[no-untyped-call]
            self.pool.release(conn)

    def execute(self, *args: Any) -> Any:
        """One command on a pooled connection, reply unparsed (raw bytes).

        Leaner than ``client.execute_command``; errors are redis-py's, so wrap
        calls in :meth:`read` for retries and translation.
        """
        try:
            with self._connection() as conn:
                try:
                    conn.send_packed_command(_pack(conn, [args]), check_health=False)
                    return conn.read_response()
                except _TRANSIENT:
                    conn.disconnect()
                    raise
        except _Unsent as exc:
            raise exc.cause from None

    def execute_durable(self, *args: Any) -> tuple[Any, int | None]:
        """:meth:`execute`, then (with replicated durability) WAIT on the same connection.

        Returns the reply and the number of replicas that acknowledged it
        (None with the fast default).  For writes outside the commit engine
        that must survive a failover as commits do (lock acquisitions).
        """
        if not self.durability.replicas:
            return self.execute(*args), None
        wait = self._wait_commands()
        try:
            with self._connection() as conn:
                try:
                    conn.send_packed_command(_pack(conn, [args, *wait]), check_health=False)
                    try:
                        reply = conn.read_response()
                    except rex.ResponseError as exc:
                        reply = exc
                    acked = self._read_acks(conn, len(wait))
                except _TRANSIENT:
                    conn.disconnect()
                    raise
        except _Unsent as exc:
            raise exc.cause from None
        if isinstance(reply, Exception):
            raise reply
        return reply, acked

    def _wait_commands(self) -> list[tuple[Any, ...]]:
        """What follows a replicated write; the server is probed for WAITAOF once."""
        if self._wait is None:
            d = self.durability
            aof = self.read(self._probe_waitaof)
            self._wait = [("WAITAOF", 1, 0, d.timeout_ms)] if aof else []
            self._wait.append(("WAIT", d.replicas, d.timeout_ms))
        return self._wait

    def _probe_waitaof(self) -> bool:
        """Whether this server has WAITAOF and its AOF is on (then commits wait for its fsync)."""
        info = self.execute("COMMAND", "INFO", "WAITAOF")
        if not info or info[0] is None:
            return False
        persistence = text(self.execute("INFO", "persistence"))
        return "aof_enabled:1" in persistence

    def _read_acks(self, conn: Any, n: int) -> int:
        """Read the replies of ``_wait_commands`` (n of them): the replicas that acknowledged.

        A primary that did not fsync its AOF in time (WAITAOF) counts as no
        acknowledgement at all: the commit is in its memory only.
        """
        acked, fsynced = 0, True
        for _ in range(n):
            reply = conn.read_response()
            if isinstance(reply, list):  # WAITAOF: [local fsyncs, replica fsyncs]
                fsynced = int(reply[0]) >= 1
            else:
                acked = int(reply)
        if not fsynced:
            log.warning("the primary did not fsync a commit to its AOF within %d ms", self.durability.timeout_ms)
            return 0
        return acked

    def new_commit_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    # --- transactions --------------------------------------------------------------
    def transact(self, body: Callable[[Tx], Plan], fence: Fence | None = None, *,
                 replay: Callable[[Plan, Any], Any] | None = None) -> Any:
        """Run ``body`` under WATCH and apply its plan atomically; see the module doc.

        With a ``fence``, the lock key is watched and its token checked in the
        first read: a commit by a holder that lost its lock raises and writes nothing.
        ``replay`` (``_protocol.replay_outcome`` for a record kind): after an attempt
        whose EXEC reply was lost, the retry first reads the lost plan's key and asks
        ``replay(lost_plan, value)`` whether that attempt was applied: its result ends
        the call, ``_protocol.NOT_APPLIED`` runs the body again, and an error (it
        cannot be told) is raised.  Without it, such an attempt raises
        CommitIndeterminateError.
        """
        replay_safe = replay is not None
        state = _Attempts(self.new_commit_id(), replay=replay)
        try:
            return self._attempt(body, fence, state)  # the common case pays no retry set-up
        except (_Aborted, _Unsent, _Lost) as exc:
            first: BaseException = exc
        conflicts = [1 if isinstance(first, _Aborted) else 0]
        started = time.monotonic()

        def lost(exc: _Lost) -> CommitIndeterminateError:
            return CommitIndeterminateError(exc.plan.key, exc.cause)

        if isinstance(first, _Lost):
            if not replay_safe:
                raise lost(first) from None
            state.lost = first

        def stop(rs: RetryCallState) -> bool:
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, _Aborted):
                conflicts[0] += 1
                return conflicts[0] >= self.conflict_attempts
            if isinstance(exc, _Lost):
                if not replay_safe:
                    return True
                state.lost = state.lost or exc
            return time.monotonic() - started >= self.unavailable_timeout

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            return CONFLICT_BACKOFF(rs) if isinstance(exc, _Aborted) else RECONNECT_BACKOFF(rs)

        retrying = Retrying(
            stop=stop, wait=wait, retry=retry_if_exception_type((_Aborted, _Unsent, _Lost)), reraise=True
        )
        # the first attempt already failed: back off once before handing over
        if isinstance(first, _Aborted) and self.conflict_attempts <= 1:
            raise ConflictError(first.key, first.expected, first.actual, 1)
        time.sleep(0.0005 if isinstance(first, _Aborted) else 0.01)
        try:
            return retrying(self._attempt, body, fence, state)
        except _Aborted as exc:
            raise ConflictError(exc.key, exc.expected, exc.actual, conflicts[0]) from None
        except _Lost as exc:
            raise lost(exc) from None
        except _Unsent as exc:
            if state.lost is not None:  # an earlier attempt's outcome is still unknown
                raise CommitIndeterminateError(
                    state.lost.plan.key, f"{state.lost.cause}; Redis stayed unavailable for "
                    f"{self.unavailable_timeout:g}s ({exc.cause})") from None
            raise StoreUnavailableError(
                f"Redis is unavailable: {exc.cause} (retried for {self.unavailable_timeout:g}s)"
            ) from None

    def _attempt(self, body: Callable[[Tx], Plan], fence: Fence | None, state: _Attempts) -> Any:
        if not self._apply_loaded:
            self.read(functools.partial(self.execute, "SCRIPT", "LOAD", self._apply.source))
            self._apply_loaded = True
        wait = self._wait_commands() if self.durability.replicas else []
        with self._connection() as conn:
            tx = Tx(conn, fence, state.commit_id, state.lost.plan if state.lost else None)
            try:
                plan = None
                if state.lost is not None and state.replay is not None:
                    lost = state.lost.plan
                    (raw,) = tx.read([lost.key])
                    outcome = state.replay(lost, raw)
                    if outcome is not _protocol.NOT_APPLIED:  # it was: this call's result, nothing to write
                        plan = tx.plan(lost.key).settled(outcome)
                if plan is None:
                    plan = body(tx)
            except BaseException:
                self._unwatch(conn, tx)
                raise
            if not plan.commands:  # nothing to write (e.g. a lost attempt was applied after all)
                self._unwatch(conn, tx)
                out = plan.finish([])
                if not wait or state.lost is None:
                    return out
                # the lost attempt was applied, but its WAIT reply was lost with it: wait
                # again (WAIT covers every earlier write of this primary, ours included)
                try:
                    conn.send_packed_command(_pack(conn, wait), check_health=False)
                    acks = self._read_acks(conn, len(wait))
                except _TRANSIENT as again:
                    conn.disconnect()
                    raise _Lost(state.lost.plan, str(again)) from None
                return self._durable(plan.key, acks, out)
            keys, argv = _protocol.encode(plan.commands)
            cmds = [("MULTI",), ("EVALSHA", self._apply.sha, len(keys), *keys, *argv), ("EXEC",), *wait]
            try:
                conn.send_packed_command(_pack(conn, cmds), check_health=False)
            except _TRANSIENT as exc:
                # the server may have received part of the buffer but no EXEC
                # arrives on a dropped connection, so nothing is applied
                raise _Unsent(exc) from exc
            try:
                queued_errors: list[BaseException] = []
                for _ in range(2):
                    try:
                        conn.read_response()
                    except rex.ResponseError as exc:
                        queued_errors.append(exc)
                try:
                    result = conn.read_response()
                    if result and isinstance(result[0], rex.NoScriptError):
                        self._apply_loaded = False  # before anything else can fail (WAIT below)
                except rex.ExecAbortError:
                    cause = queued_errors[0] if queued_errors else rex.ResponseError("EXECABORT")
                    if wait:
                        self._read_acks(conn, len(wait))
                    if isinstance(cause, _REDIRECT):  # the slot moved: nothing was applied
                        raise _Unsent(cause) from None
                    raise translate(cause, plan.key) from None
                acked = self._read_acks(conn, len(wait)) if wait else None
            except _TRANSIENT as exc:
                conn.disconnect()
                raise _Lost(plan, str(exc)) from None
            if result is None:
                raise _Aborted(plan.key, plan.expected, plan.actual)
            reply = result[0]
            if isinstance(reply, Exception):
                # the script failed before writing anything
                if isinstance(reply, rex.NoScriptError) or str(reply).startswith("NOSCRIPT"):
                    self._apply_loaded = False  # the server lost its scripts (restart, flush)
                    raise _Unsent(reply)
                raise translate(reply, plan.key)
            revisions = [text(r) for r in reply]
        return self._durable(plan.key, acked, plan.finish(revisions))

    @staticmethod
    def _unwatch(conn: Any, tx: Tx) -> None:
        """End the WATCH of an attempt that will not EXEC (disconnect if that fails)."""
        if tx.watched:
            try:
                conn.send_command("UNWATCH", check_health=False)
                conn.read_response()
            except Exception:
                conn.disconnect()  # the WATCH may still be on: never reuse it

    def _durable(self, key: str, acked: int | None, out: Any) -> Any:
        """``out``, or DurabilityError carrying it when too few replicas acknowledged."""
        if acked is not None and acked < self.durability.replicas:
            raise DurabilityError(key, acked, self.durability.replicas, out,
                                  f" within {self.durability.timeout_ms} ms")
        return out

    # --- reads -------------------------------------------------------------------
    def once(self, fn: Callable[[], T], key: str | None = None) -> T:
        """Run ``fn`` once, with no retries (for calls that are not idempotent, and callers that
        retry themselves), translating a failure to the statestore error a user should see."""
        try:
            return fn()
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, key) from None

    def read(self, fn: Callable[[], T], key: str | None = None) -> T:
        """Run a read with bounded retries on transient errors, translating failures.

        ``key`` names the key read, for the error when it holds the wrong type.
        """
        try:
            return fn()
        except _AUTH as exc:
            raise translate(exc) from None
        except _TRANSIENT:
            pass
        except rex.RedisError as exc:
            raise translate(exc, key) from None
        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.unavailable_timeout),
                wait=RECONNECT_BACKOFF,
                retry=retry_if_exception_type(_TRANSIENT),
                reraise=True,
            ):
                with attempt:
                    try:
                        return fn()
                    except rex.RedisError as exc:
                        if isinstance(exc, _TRANSIENT) and not isinstance(exc, _AUTH):
                            raise
                        raise translate(exc, key) from None
        except _TRANSIENT as exc:
            raise StoreUnavailableError(
                f"Redis is unavailable: {exc} (retried for {self.unavailable_timeout:g}s)"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["AUTH_ERRORS", "CONFLICT_BACKOFF", "RECONNECT_BACKOFF", "RECONNECT_ERRORS", "REDIS_ERROR", "Backoff",
           "Durability", "Engine", "Fence", "Plan", "Script", "Tx", "own_client", "text", "translate"]
