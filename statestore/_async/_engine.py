"""The commit engine: the only code that sends MULTI/EXEC.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as redis
import redis.exceptions as rex
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
)

from .. import _protocol
from .._edge import (
    AUTH_ERRORS,
    CONFLICT_BACKOFF,
    FAST,
    RECONNECT_BACKOFF,
    REDIRECT_ERRORS,
    TRANSIENT_ERRORS,
    Aborted,
    Attempts,
    Durability,
    Fence,
    Lost,
    Plan,
    Unsent,
    pack,
    read_lua,
    text,
    translate,
)
from .._errors import (
    CommitIndeterminateError,
    ConflictError,
    DurabilityError,
    InvalidArgumentError,
    StateStoreError,
    StoreUnavailableError,
)
from .._synchronization import async_cancel_requests, async_settled_reply, async_sleep
from ._clients import derive_client, no_retries

log = logging.getLogger("statestore")

T = TypeVar("T")


async def exchange(conn: Any, cmds: Sequence[tuple[Any, ...]], sent: Callable[[], None] | None = None) -> list[Any]:
    """Send ``cmds`` in one write on ``conn`` and read every reply, raw; an error reply is
    returned in its place (a redis-py exception).  ``sent`` is called once the write is out."""
    await conn.send_packed_command(pack(conn, cmds), check_health=False)
    if sent is not None:
        sent()
    replies: list[Any] = []
    for _ in cmds:
        try:
            replies.append(await conn.read_response())
        except rex.ResponseError as exc:
            replies.append(exc)
    return replies


class AsyncTx:
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

    def _sent(self) -> None:
        self.watched = True  # the WATCH is out: an attempt that ends without EXEC must UNWATCH

    async def read(self, keys: Sequence[str]) -> list[Any]:
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
            replies = await exchange(conn, cmds, self._sent)
        except TRANSIENT_ERRORS as exc:
            raise Unsent(exc) from exc
        for reply in replies:
            if isinstance(reply, REDIRECT_ERRORS):
                raise Unsent(reply)
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



class AsyncScript:
    """A Lua script called by SHA (``EVALSHA``), loaded on first ``NOSCRIPT``.

    Lighter than redis-py's ``Script`` object, whose per-call bookkeeping
    costs about as much as the round trip's client-side work.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, execute: Callable[..., Awaitable[Any]], keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run through ``execute`` (``Engine.execute`` or a client's ``execute_command``)."""
        try:
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            await execute("SCRIPT", "LOAD", self.source)
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)


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


class AsyncEngine:
    """Runs transactions and reads against one Redis, translating every error."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        conflict_attempts: int = 32,
        unavailable_timeout: float = 5.0,
        durability: Durability = FAST,
    ) -> None:
        if conflict_attempts < 1:
            raise InvalidArgumentError("conflict_attempts must be at least 1")
        if unavailable_timeout < 0:
            raise InvalidArgumentError("unavailable_timeout must not be negative")
        self.client = client
        self.pool: Any = client.connection_pool  # (redis-py versions annotate it differently)
        self.conflict_attempts = conflict_attempts
        self.unavailable_timeout = unavailable_timeout
        self.durability = durability
        self._wait: list[tuple[Any, ...]] | None = None  # learned on the first replicated write
        self._apply = AsyncScript(read_lua("apply.lua"))
        self._apply_loaded = False
        # commit ids: unique per transaction, cheap (no syscall per commit)
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)

    # --- connections -------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        try:
            conn: Any = await self.pool.get_connection()
        except AUTH_ERRORS as exc:  # a ConnectionError subclass, but retrying cannot help
            raise translate(exc) from None
        except TRANSIENT_ERRORS as exc:
            raise Unsent(exc) from exc
        except rex.RedisError as exc:
            raise translate(exc) from None
        clean = False
        try:
            yield conn
            clean = True
        except (rex.ResponseError, Aborted, StateStoreError):
            # a complete error reply, an aborted EXEC, or a refusal by the body
            # after UNWATCH: the connection is in step and can be reused
            clean = True
            raise
        finally:
            if not clean:
                # the reply stream or the WATCH state may be out of step: drop it
                await conn.disconnect()
            await self.pool.release(conn)

    async def execute(self, *args: Any, undo: Callable[[Any], Awaitable[None]] | None = None) -> Any:
        """One command on a pooled connection, reply unparsed (raw bytes).

        Leaner than ``client.execute_command``; errors are redis-py's, so wrap
        calls in :meth:`read` for retries and translation.  With ``undo``, a
        caller cancelled while it waits for the reply still reads it and hands
        it to ``undo`` before the cancellation goes on (``async_settled_reply``).
        """
        try:
            async with self._connection() as conn:
                try:
                    pending = async_cancel_requests()
                    await conn.send_packed_command(pack(conn, [args]), check_health=False)
                    if undo is not None:
                        return await async_settled_reply(conn, undo, pending)
                    return await conn.read_response()
                except TRANSIENT_ERRORS:
                    await conn.disconnect()
                    raise
        except Unsent as exc:
            raise exc.cause from None

    async def command(self, *args: Any, key: str | None = None) -> Any:
        """:meth:`execute` with :meth:`read`'s retries and error translation (``key``: the key
        it reads, named in the error when that key holds the wrong type)."""
        return await self.read(functools.partial(self.execute, *args), key)

    async def execute_many(self, cmds: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one round trip on one pooled connection (no transaction),
        replies unparsed; an error reply is returned in its place, as a redis-py exception.

        Errors other than error replies are redis-py's: wrap calls in :meth:`read`.
        """
        if not cmds:
            return []
        try:
            async with self._connection() as conn:
                try:
                    return await exchange(conn, cmds)
                except TRANSIENT_ERRORS:
                    await conn.disconnect()
                    raise
        except Unsent as exc:
            raise exc.cause from None

    async def scan_keys(self, match: str, count: int = 1000) -> list[Any]:
        """Every key matching ``match``, once each, in SCAN order (SCAN to the end, on the
        store's connections; a transient error restarts the scan, with :meth:`read`'s retries)."""
        async def scan() -> list[Any]:
            found: dict[Any, None] = {}
            cursor: Any = 0
            while True:
                cursor, keys = await self.execute("SCAN", cursor, "MATCH", match, "COUNT", count)
                found.update(dict.fromkeys(keys))
                if int(cursor) == 0:
                    return list(found)
        return await self.read(scan)

    async def execute_durable(self, *args: Any) -> tuple[Any, int | None]:
        """:meth:`execute`, then (with replicated durability) WAIT on the same connection.

        Returns the reply and the number of replicas that acknowledged it
        (None with the fast default).  For writes outside the commit engine
        that must survive a failover as commits do (lock acquisitions).
        """
        if not self.durability.replicas:
            return await self.execute(*args), None
        wait = await self._wait_commands()
        try:
            async with self._connection() as conn:
                try:
                    await conn.send_packed_command(pack(conn, [args, *wait]), check_health=False)
                    try:
                        reply = await conn.read_response()
                    except rex.ResponseError as exc:
                        reply = exc
                    acked = await self._read_acks(conn, len(wait))
                except TRANSIENT_ERRORS:
                    await conn.disconnect()
                    raise
        except Unsent as exc:
            raise exc.cause from None
        if isinstance(reply, Exception):
            raise reply
        return reply, acked

    async def _wait_commands(self) -> list[tuple[Any, ...]]:
        """What follows a replicated write; the server is probed for WAITAOF once."""
        if self._wait is None:
            d = self.durability
            aof = await self.read(self._probe_waitaof)
            self._wait = [("WAITAOF", 1, 0, d.timeout_ms)] if aof else []
            self._wait.append(("WAIT", d.replicas, d.timeout_ms))
        return self._wait

    async def _probe_waitaof(self) -> bool:
        """Whether this server has WAITAOF and its AOF is on (then commits wait for its fsync)."""
        info = await self.execute("COMMAND", "INFO", "WAITAOF")
        if not info or info[0] is None:
            return False
        persistence = text(await self.execute("INFO", "persistence"))
        return "aof_enabled:1" in persistence

    async def _read_acks(self, conn: Any, n: int) -> int:
        """Read the replies of ``_wait_commands`` (n of them): the replicas that acknowledged.

        A primary that did not fsync its AOF in time (WAITAOF) counts as no
        acknowledgement at all: the commit is in its memory only.
        """
        acked, fsynced = 0, True
        for _ in range(n):
            reply = await conn.read_response()
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
    async def transact(self, body: Callable[[AsyncTx], Awaitable[Plan]], fence: Fence | None = None, *,
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
        state = Attempts(self.new_commit_id(), replay=replay)
        try:
            return await self._attempt(body, fence, state)  # the common case pays no retry set-up
        except (Aborted, Unsent, Lost) as exc:
            first: BaseException = exc
        conflicts = [1 if isinstance(first, Aborted) else 0]
        started = time.monotonic()

        def lost(exc: Lost) -> CommitIndeterminateError:
            return CommitIndeterminateError(exc.plan.key, exc.cause)

        if isinstance(first, Lost):
            if not replay_safe:
                raise lost(first) from None
            state.lost = first

        def stop(rs: RetryCallState) -> bool:
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, Aborted):
                conflicts[0] += 1
                return conflicts[0] >= self.conflict_attempts
            if isinstance(exc, Lost):
                if not replay_safe:
                    return True
                state.lost = state.lost or exc
            return time.monotonic() - started >= self.unavailable_timeout

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            return CONFLICT_BACKOFF(rs) if isinstance(exc, Aborted) else RECONNECT_BACKOFF(rs)

        retrying = AsyncRetrying(
            stop=stop, wait=wait, retry=retry_if_exception_type((Aborted, Unsent, Lost)), reraise=True
        )
        # the first attempt already failed: back off once before handing over
        if isinstance(first, Aborted) and self.conflict_attempts <= 1:
            raise ConflictError(first.key, first.expected, first.actual, 1)
        await async_sleep(0.0005 if isinstance(first, Aborted) else 0.01)
        try:
            return await retrying(self._attempt, body, fence, state)
        except Aborted as exc:
            raise ConflictError(exc.key, exc.expected, exc.actual, conflicts[0]) from None
        except Lost as exc:
            raise lost(exc) from None
        except Unsent as exc:
            if state.lost is not None:  # an earlier attempt's outcome is still unknown
                raise CommitIndeterminateError(
                    state.lost.plan.key, f"{state.lost.cause}; Redis stayed unavailable for "
                    f"{self.unavailable_timeout:g}s ({exc.cause})") from None
            raise StoreUnavailableError(
                f"Redis is unavailable: {exc.cause} (retried for {self.unavailable_timeout:g}s)"
            ) from None

    async def _attempt(self, body: Callable[[AsyncTx], Awaitable[Plan]], fence: Fence | None, state: Attempts) -> Any:
        if not self._apply_loaded:
            await self.command("SCRIPT", "LOAD", self._apply.source)
            self._apply_loaded = True
        wait = await self._wait_commands() if self.durability.replicas else []
        async with self._connection() as conn:
            tx = AsyncTx(conn, fence, state.commit_id, state.lost.plan if state.lost else None)
            try:
                plan = None
                if state.lost is not None and state.replay is not None:
                    lost = state.lost.plan
                    (raw,) = await tx.read([lost.key])
                    outcome = state.replay(lost, raw)
                    if outcome is not _protocol.NOT_APPLIED:  # it was: this call's result, nothing to write
                        plan = tx.plan(lost.key).settled(outcome)
                if plan is None:
                    plan = await body(tx)
            except BaseException:
                await self._unwatch(conn, tx)
                raise
            if not plan.commands:  # nothing to write (e.g. a lost attempt was applied after all)
                await self._unwatch(conn, tx)
                out = plan.finish([])
                if not wait or state.lost is None:
                    return out
                # the lost attempt was applied, but its WAIT reply was lost with it: wait
                # again (WAIT covers every earlier write of this primary, ours included)
                try:
                    await conn.send_packed_command(pack(conn, wait), check_health=False)
                    acks = await self._read_acks(conn, len(wait))
                except TRANSIENT_ERRORS as again:
                    await conn.disconnect()
                    raise Lost(state.lost.plan, str(again)) from None
                return self._durable(plan.key, acks, out)
            keys, argv = _protocol.encode(plan.commands)
            cmds = [("MULTI",), ("EVALSHA", self._apply.sha, len(keys), *keys, *argv), ("EXEC",), *wait]
            try:
                await conn.send_packed_command(pack(conn, cmds), check_health=False)
            except TRANSIENT_ERRORS as exc:
                # the server may have received part of the buffer but no EXEC
                # arrives on a dropped connection, so nothing is applied
                raise Unsent(exc) from exc
            try:
                queued_errors: list[BaseException] = []
                for _ in range(2):
                    try:
                        await conn.read_response()
                    except rex.ResponseError as exc:
                        queued_errors.append(exc)
                try:
                    result = await conn.read_response()
                    if result and isinstance(result[0], rex.NoScriptError):
                        self._apply_loaded = False  # before anything else can fail (WAIT below)
                except rex.ExecAbortError:
                    cause = queued_errors[0] if queued_errors else rex.ResponseError("EXECABORT")
                    if wait:
                        await self._read_acks(conn, len(wait))
                    if isinstance(cause, REDIRECT_ERRORS):  # the slot moved: nothing was applied
                        raise Unsent(cause) from None
                    raise translate(cause, plan.key) from None
                acked = await self._read_acks(conn, len(wait)) if wait else None
            except TRANSIENT_ERRORS as exc:
                await conn.disconnect()
                raise Lost(plan, str(exc)) from None
            if result is None:
                raise Aborted(plan.key, plan.expected, plan.actual)
            reply = result[0]
            if isinstance(reply, Exception):
                # the script failed before writing anything
                if isinstance(reply, rex.NoScriptError) or str(reply).startswith("NOSCRIPT"):
                    self._apply_loaded = False  # the server lost its scripts (restart, flush)
                    raise Unsent(reply)
                raise translate(reply, plan.key)
            revisions = [text(r) for r in reply]
        return self._durable(plan.key, acked, plan.finish(revisions))

    @staticmethod
    async def _unwatch(conn: Any, tx: AsyncTx) -> None:
        """End the WATCH of an attempt that will not EXEC (disconnect if that fails)."""
        if tx.watched:
            try:
                await conn.send_command("UNWATCH", check_health=False)
                await conn.read_response()
            except Exception:
                await conn.disconnect()  # the WATCH may still be on: never reuse it

    def _durable(self, key: str, acked: int | None, out: Any) -> Any:
        """``out``, or DurabilityError carrying it when too few replicas acknowledged."""
        if acked is not None and acked < self.durability.replicas:
            raise DurabilityError(key, acked, self.durability.replicas, out,
                                  f" within {self.durability.timeout_ms} ms")
        return out

    # --- reads -------------------------------------------------------------------
    async def once(self, fn: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        """Run ``fn`` once, with no retries (for calls that are not idempotent, and callers that
        retry themselves), translating a failure to the statestore error a user should see."""
        try:
            return await fn()
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, key) from None

    async def read(self, fn: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        """Run a read with bounded retries on transient errors, translating failures.

        ``key`` names the key read, for the error when it holds the wrong type.
        """
        try:
            return await fn()
        except AUTH_ERRORS as exc:
            raise translate(exc) from None
        except TRANSIENT_ERRORS:
            pass
        except rex.RedisError as exc:
            raise translate(exc, key) from None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.unavailable_timeout),
                wait=RECONNECT_BACKOFF,
                retry=retry_if_exception_type(TRANSIENT_ERRORS),
                reraise=True,
            ):
                with attempt:
                    try:
                        return await fn()
                    except rex.RedisError as exc:
                        if isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, AUTH_ERRORS):
                            raise
                        raise translate(exc, key) from None
        except TRANSIENT_ERRORS as exc:
            raise StoreUnavailableError(
                f"Redis is unavailable: {exc} (retried for {self.unavailable_timeout:g}s)"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["AsyncEngine", "AsyncScript", "AsyncTx", "own_client"]
