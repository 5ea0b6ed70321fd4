"""Per-container action locks with TTL, renewal and fencing tokens.

Theory of operation
-------------------
Stateful actions on one container (start, stop, pause, rename, remove,
exec...) are serialized across every replica by a lock on that container:
the key ``ss:{ns}:lock:<id>`` holds a small JSON holder record (fencing token,
replica id, host, pid, acquisition time, TTL) and expires after the TTL.
Reads never look at it: ``get``, ``list`` and ``snapshot`` cannot wait on a
lock, whatever its holder is doing.

* **Acquire** is one script: if the key is free and the container exists, it
  takes the next value of the namespace's token counter (``INCR``, so tokens
  strictly increase per container, across replicas and client restarts) and
  sets the key with ``PX ttl``.  A waiter that finds the lock taken blocks on
  ``BLPOP`` of the container's wake-up list for at most the lock's remaining
  TTL (or its own timeout), so it wakes within a round trip of a release and
  at the latest when a crashed holder's TTL runs out.
* **Release** is compare-and-delete by token, and pushes one wake-up for the
  next waiter.  Releasing a lock that already expired changes nothing in
  Redis, returns ``False`` and marks the lease lost (and logs it).
* **Renewal**: one background thread per store keeps every live lease alive,
  renewing at a third of its TTL with compare-and-extend.  A lease knows it is
  lost when a renewal finds another token (or none), or when its own deadline
  (last successful renewal + TTL, on the monotonic clock) passes without a
  renewal -- which is what a holder that was paused (GC, SIGSTOP) or cut off
  sees when it resumes.  ``lease.lost`` turns true, ``on_lost`` fires and
  ``wait_lost`` returns.  The renewer is a thread in the sync face and a task
  in the async face (``_synchronization.Worker``).
* **Fencing**: acquisition also writes the new token to the container's
  fence key (``ss:{ns}:lockfence:<id>``), which nothing else changes.  A
  commit made with a lease WATCHes the fence key and, in the same round trip
  as its reads, checks that the fence key and the lock key both still hold
  the lease's token (see ``_edge.Fence``).  A stale holder therefore gets
  LockLostError and writes nothing, even if its own renewer has not noticed
  yet: if the next holder acquired after the check, the WATCH on the fence
  key aborts the EXEC and the retry sees the new token.  The lock is only an
  efficiency measure; the fenced commit is what makes it safe.

Why a separate fence key: a renewal (``PEXPIRE``) counts as a modification
for WATCH, so watching the lock key itself would abort every commit whose
work outlasts a third of the TTL, forever.  The fence key changes only when
ownership changes.  A lock that merely expires between the check and EXEC
(nobody took over) lets that commit through: no other holder exists whose
work it could overwrite.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from .._edge import Fence, read_lua
from .._errors import (
    DurabilityError,
    InvalidArgumentError,
    LockLostError,
    LockTimeoutError,
    NotFoundError,
    StateStoreError,
)
from .._lockinfo import WAKE_TTL_MS, LockInfo, LockList, positive
from .._refs import parse_reference
from .._synchronization import AsyncCondition, AsyncFlag, AsyncWorker, async_uncancelled
from ._clients import derive_client, no_retries
from ._engine import AsyncScript
from ._parts import StoreParts


class _Resolver(Protocol):
    async def resolve(self, ref: str) -> str: ...


class LockSource(StoreParts, Protocol):
    """What the locks use of the store that makes them (a ``Store``): its namespace, keys,
    client (cloned for the renewer) and engine, and reference resolution."""

    @property
    def containers(self) -> _Resolver: ...


log = logging.getLogger("statestore.lock")



class AsyncLease:
    """Proof of holding one container's action lock.

    Use it as a context manager (released on exit) and pass it to commits
    (``update(..., lease=lease)``) so they are fenced.
    """

    def __init__(self, manager: AsyncLockManager, container_id: str, token: int, ttl: float,
                 started: float, on_lost: Callable[[AsyncLease], None] | None) -> None:
        self._manager = manager
        self.namespace = manager.store.namespace
        self.container_id = container_id
        self.token = token
        self.ttl = ttl
        self.acquired_at = started
        self._valid_until = started + ttl
        self._on_lost = on_lost
        self._lost_reason: str | None = None
        self._released = False
        self._release_result: bool | None = None
        self._mutex = threading.Lock()  # held for no I/O: the same in both faces
        self._settled: AsyncFlag | None = None  # made by wait_lost; set when lost or released

    # --- state -------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        """True once the lock is known, or must be assumed, to belong to someone else."""
        if self._lost_reason is not None:
            return True
        if not self._released and time.monotonic() > self._valid_until:
            self._mark_lost("not renewed within its TTL (paused or cut off from Redis?)")
            return True
        return False

    @property
    def lost_reason(self) -> str | None:
        self.lost  # noqa: B018 - evaluates the deadline
        return self._lost_reason

    @property
    def released(self) -> bool:
        return self._released

    @property
    def fence(self) -> Fence:
        """What a commit checks: raises LockLostError unless the lease is live."""
        if self._released:
            raise LockLostError(self.container_id, self.token, "the lease was released")
        if self.lost:
            raise LockLostError(self.container_id, self.token, self._lost_reason or "lost")
        keys = self._manager.store.keys
        return Fence(keys.lock_fence(self.container_id), keys.lock(self.container_id), self.token,
                     self._fenced_out)

    def _fenced_out(self, reason: str) -> LockLostError:
        self._mark_lost(reason)
        return LockLostError(self.container_id, self.token, reason)

    def _mark_lost(self, reason: str) -> None:
        with self._mutex:
            if self._lost_reason is not None:
                return
            self._lost_reason = reason
        if self._settled is not None:
            self._settled.set()
        log.warning("lock of container %s (token %d) lost: %s", self.container_id[:12], self.token,
                    reason)
        if self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception:  # a callback must not kill the renewer
                log.exception("on_lost callback failed")

    async def wait_lost(self, timeout: float | None = None) -> bool:
        """Wait until the lease is lost (True) or released, or ``timeout`` seconds pass (False).

        Wakes when a renewal finds the lock gone, a fenced commit finds it taken over, or the
        lease's own deadline passes without a renewal.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._settled is None:  # before the first check: a change after it sets the flag
            self._settled = AsyncFlag()
        settled = self._settled
        while True:
            if self.lost:
                return True
            now = time.monotonic()
            if self._released or (deadline is not None and now >= deadline):
                return False
            until = self._valid_until - now  # by then it is lost unless renewed (the renewer moves it)
            step = max(0.001, min(until, 0.5) if deadline is None else min(until, deadline - now, 0.5))
            await settled.wait(step)

    # --- release -------------------------------------------------------------------
    async def release(self) -> bool:
        """Release the lock.  False (and ``lost``) if it had already expired or moved on.

        Idempotent: later calls return the first call's answer.  If Redis cannot
        be reached the error propagates and the lease stays held (and renewed),
        so the caller may retry; the lock expires by its TTL otherwise.
        """
        with self._mutex:
            if self._released:
                return bool(self._release_result)
            self._released = True
        try:
            ok = await self._manager._release(self)
        except BaseException:
            with self._mutex:
                self._released = False
            raise
        self._release_result = ok
        if self._settled is not None:
            self._settled.set()
        if not ok:
            self._mark_lost("it had expired before it was released")
        return ok

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.release()
        except Exception:  # do not mask the with-block's own exception
            log.exception("releasing lock of container %s failed", self.container_id[:12])

    def __repr__(self) -> str:
        state = "released" if self._released else "lost" if self.lost else "held"
        return f"Lease(container={self.container_id[:12]!r}, token={self.token}, {state})"


def _bounded_client(client: Any) -> Any:
    """A client for the renewer: short socket timeouts and no client-side retries.

    A renewal must fail fast when Redis hangs, so the lease can be declared
    lost at its deadline instead of after the user's client gives up (redis-py
    defaults to retries with backoff and no timeout).
    """
    derived = derive_client(client, max_connections=2, socket_timeout=1.0, socket_connect_timeout=1.0,
                            retry=no_retries(), retry_on_timeout=False)
    return client if derived is None else derived


class AsyncLockManager:
    """Acquires, renews and releases the leases of one store."""

    def __init__(self, store: LockSource, replica_id: str | None, wedged_after: float) -> None:
        self.store = store
        self.wedged_after = positive("wedged_after", wedged_after)
        self.holder = {
            "replica": replica_id or f"{socket.gethostname()}:{os.getpid()}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        client = store.client

        self._client = client
        self._acquire_script = AsyncScript(read_lua("lock_acquire.lua"))
        self._release_script = AsyncScript(read_lua("lock_release.lua"))
        self._renew_client = _bounded_client(client)
        self._renew_script = AsyncScript(read_lua("lock_renew.lua"))
        sock_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._max_block = 1.0 if not sock_timeout else max(0.01, float(sock_timeout) * 0.8)
        self._heap: list[tuple[float, int, AsyncLease]] = []
        self._next_wake = float("inf")  # when the renewer thread will next wake by itself
        self._seq = itertools.count()
        self._cond = AsyncCondition()
        self._worker: AsyncWorker | None = None
        self._closed = False
        self._pid = os.getpid()

    # --- acquire --------------------------------------------------------------------
    async def acquire(self, ref: str, ttl: float = 10.0, timeout: float | None = 5.0,
                      on_lost: Callable[[AsyncLease], None] | None = None) -> AsyncLease:
        ttl = positive("ttl", ttl)
        if timeout is not None:
            timeout = positive("timeout", timeout)
        if ttl < 0.01:
            raise InvalidArgumentError("ttl must be at least 0.01 s")
        if on_lost is not None and not callable(on_lost):
            raise InvalidArgumentError("on_lost must be callable")
        r = parse_reference(ref)
        # a full ID needs no resolving round trip: the acquire script checks that
        # the container exists, and only if it does not is ref tried as a name
        cid = r.bare if r.full_id else await self.store.containers.resolve(ref)
        keys = self.store.keys
        lock_key, wake_key = keys.lock(cid), keys.lock_wake(cid)
        ttl_ms = max(1, int(ttl * 1000))
        wait_flag_ms = int(self._max_block * 1000) + 200  # outlives one BLPOP of ours
        # the holder JSON after '{"token":N,"acquired_ms":M,' (the script writes those)
        holder = orjson.dumps({**self.holder, "ttl_ms": ttl_ms})[1:]
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        engine = self.store._engine
        # with replicated durability an acquisition waits for the replicas like a commit: a
        # lock (and its fencing token) lost in a failover could be granted twice with the same token
        durable = bool(engine.durability.replicas)
        acks: list[int | None] = [None]

        async def execute_durable(*args: Any) -> Any:
            reply, acks[0] = await engine.execute_durable(*args)
            return reply

        while True:
            t0 = time.monotonic()

            async def undo(reply: Any, cid: str = cid) -> None:  # the lock a cancelled caller got after all
                if isinstance(reply, list) and int(reply[0]) == 1:
                    await self._drop(cid, int(reply[1]))

            execute: Callable[..., Awaitable[Any]] = (
                execute_durable if durable else functools.partial(engine.execute, undo=undo))
            call = engine.read(functools.partial(
                self._acquire_script, execute,
                (lock_key, keys.lock_seq, keys.container(cid), keys.lock_fence(cid), keys.lock_waiters(cid)),
                (ttl_ms, holder, wait_flag_ms)))
            # a cancelled caller waits for the reply of the script it sent, never leaving a lock
            # behind: the engine settles the reply, or (waiting for replicas as well) the whole call
            status, value = await async_uncancelled(call, undo) if durable else await call
            status, value = int(status), int(value)
            if status == 1:
                lease = AsyncLease(self, cid, value, ttl, t0, on_lost)
                if acks[0] is not None and acks[0] < engine.durability.replicas:
                    try:
                        await lease.release()
                    except StateStoreError:
                        pass  # then it expires by its TTL
                    raise DurabilityError(lock_key, acks[0], engine.durability.replicas, None,
                                          " (a lock acquisition; the lock was released again)")
                try:
                    await self._track(lease)
                except BaseException:  # interrupted before the caller got the lease
                    await self._drop(cid, value)
                    raise
                return lease
            if status == -1:
                resolved = await self.store.containers.resolve(ref)  # NotFoundError if nothing
                if resolved == cid:  # created... and deleted again meanwhile
                    raise NotFoundError("container", ref)
                cid = resolved
                lock_key, wake_key = keys.lock(cid), keys.lock_wake(cid)
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise LockTimeoutError(cid, float(timeout or 0), await self._holder_of(cid))
            # sleep until a release wakes us, the holder's TTL runs out, or we time out
            wait = value / 1000.0 + 0.002 if value > 0 else 0.002
            if deadline is not None:
                wait = min(wait, deadline - now)
            wait = max(0.001, min(wait, self._max_block))
            await engine.command("BLPOP", wake_key, f"{wait:.3f}")

    async def _holder_of(self, cid: str) -> dict[str, Any] | None:
        key = self.store.keys.lock(cid)
        raw = await self.store._engine.command("GET", key, key=key)
        if raw is None:
            return None
        try:
            holder: dict[str, Any] = orjson.loads(raw)
            return holder
        except orjson.JSONDecodeError:
            return None

    async def _drop(self, cid: str, token: int) -> None:
        """Release the lock ``token`` holds on ``cid``, taken for a caller that is gone (cancelled);
        once, no retries: if that fails, the lock expires by its TTL."""
        keys, engine = self.store.keys, self.store._engine
        try:
            await engine.once(functools.partial(
                self._release_script, engine.execute,
                (keys.lock(cid), keys.lock_wake(cid), keys.lock_waiters(cid)), (token, WAKE_TTL_MS)))
            log.info("released the lock of container %s (token %d): its caller was cancelled", cid[:12], token)
        except Exception as exc:
            log.warning("could not release the lock of container %s (token %d) taken for a cancelled "
                        "caller; it expires by its TTL: %s", cid[:12], token, exc)

    # --- release ---------------------------------------------------------------------
    async def _release(self, lease: AsyncLease) -> bool:
        keys = self.store.keys
        ok = await self.store._engine.read(functools.partial(
            self._release_script, self.store._engine.execute,
            (keys.lock(lease.container_id), keys.lock_wake(lease.container_id),
             keys.lock_waiters(lease.container_id)), (lease.token, WAKE_TTL_MS)))
        return bool(int(ok))

    # --- renewal ---------------------------------------------------------------------
    async def _track(self, lease: AsyncLease) -> None:
        async with self._cond:
            if self._worker is None or not self._worker.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._closed = False
                self._heap = [e for e in self._heap if not e[2].released]
                self._next_wake = float("inf")
                self._worker = AsyncWorker(self._run, name="statestore-lock-renewer")
                self._worker.start()
            due = lease.acquired_at + lease.ttl / 3
            heapq.heappush(self._heap, (due, next(self._seq), lease))
            # wake the renewer only if it would otherwise sleep past this lease's
            # due time: short-lived leases cost no thread switch at all
            if due < self._next_wake:
                self._next_wake = due
                self._cond.notify()

    async def _run(self) -> None:
        while True:
            async with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    # released leases stay in the heap until they come due (then
                    # they are skipped): dropping them early would mean waking up
                    self._next_wake = self._heap[0][0] if self._heap else float("inf")
                    await self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._closed:
                    return
                _, _, lease = heapq.heappop(self._heap)
            if lease.released or lease._lost_reason is not None:
                continue
            next_due = await self._renew(lease)
            if next_due is not None:
                async with self._cond:
                    heapq.heappush(self._heap, (next_due, next(self._seq), lease))

    async def _renew(self, lease: AsyncLease) -> float | None:
        """Renew one lease; the time of its next renewal, or None if it is finished."""
        if lease.released or lease.lost:
            return None
        keys = self.store.keys
        t0 = time.monotonic()
        try:
            ok = int(await self._renew_script(self._renew_client.execute_command, (keys.lock(lease.container_id),),
                                        (lease.token, max(1, int(lease.ttl * 1000)))))
        except Exception as exc:  # Redis unreachable: keep trying until the deadline
            if time.monotonic() >= lease._valid_until:
                lease._mark_lost(f"renewal failed until the TTL ran out ({exc})")
                return None
            return time.monotonic() + min(lease.ttl / 10, 0.5)
        if ok:
            lease._valid_until = t0 + lease.ttl
            return t0 + lease.ttl / 3
        if not lease.released:
            lease._mark_lost("it expired or was taken over before it could be renewed")
        return None

    async def aclose(self) -> None:
        async with self._cond:
            self._closed = True
            self._cond.notify()
        if self._worker is not None:
            await self._worker.join(timeout=2)
        if self._renew_client is not self.store.client:
            await self._renew_client.aclose()

    # --- observation -------------------------------------------------------------------
    async def locks(self) -> LockList:
        """Every held lock of the namespace (SCAN over the lock keys)."""
        keys = self.store.keys
        engine = self.store._engine

        async def read_all(cmds: list[tuple[Any, ...]]) -> list[Any]:
            replies = await engine.execute_many(cmds)
            for r in replies:
                if isinstance(r, Exception):
                    raise r  # (a lock key of the wrong type: translated by engine.read)
            return replies

        lock_keys = await engine.scan_keys(keys.lock_prefix + "*")
        if not lock_keys:
            return LockList()
        cmds: list[tuple[Any, ...]] = []
        for k in lock_keys:
            cmds += [("GET", k), ("PTTL", k)]
        replies = await engine.read(functools.partial(read_all, [*cmds, ("TIME",)]))
        secs, micros = replies[-1]
        now_ms = int(secs) * 1000 + int(micros) // 1000
        out = LockList()
        for i, k in enumerate(lock_keys):
            raw, pttl = replies[2 * i], replies[2 * i + 1]
            if raw is None:
                out.unreadable += 1  # released between SCAN and GET (or unreadable: counted alike)
                continue
            key = k.decode() if isinstance(k, bytes) else str(k)
            try:
                h = orjson.loads(raw)
                info = LockInfo(
                    container_id=key[len(keys.lock_prefix):], token=int(h["token"]),
                    replica=str(h.get("replica", "")), host=str(h.get("host", "")),
                    pid=int(h.get("pid", 0)), acquired_ms=int(h["acquired_ms"]),
                    age=max(0.0, (now_ms - int(h["acquired_ms"])) / 1000.0),
                    ttl_left=max(0.0, int(pttl) / 1000.0),
                    wedged=(now_ms - int(h["acquired_ms"])) / 1000.0 > self.wedged_after,
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("unreadable lock record at %s", key)
                out.unreadable += 1
                continue
            out.append(info)
        out.sort(key=lambda li: li.acquired_ms)  # (in place: the count stays with it)
        return out


__all__ = ["AsyncLease", "AsyncLockManager", "LockInfo", "LockList"]
