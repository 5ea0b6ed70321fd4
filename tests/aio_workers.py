"""Entry points for the multi-process tests of the async face (``tests/test_aio.py``).

Importable at module level for the ``spawn`` start method.  Each child builds its own
``redis.asyncio`` client and ``statestore.aio.Store`` from the port and namespace it is
given and reports plain tuples through a queue; it never raises (an error is reported).
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import redis.asyncio as aioredis

from statestore import ConflictError, Container, StateStoreError
from statestore.aio import Store

COUNTER = "counter"


def _bump(c: Container) -> None:
    c.labels[COUNTER] = str(int(c.labels.get(COUNTER, "0")) + 1)


def _error(out: Any) -> None:
    out.put(("error", traceback.format_exc()[-3000:]))


async def _increments(port: int, namespace: str, cid: str, coroutines: int, each: int) -> int:
    async with Store(aioredis.Redis(port=port, max_connections=coroutines), namespace,
                     conflict_attempts=1000) as store:

        async def one() -> int:
            done = 0
            while done < each:
                try:
                    await store.containers.update(cid, _bump)
                except ConflictError:
                    continue  # the engine's retries ran out: try again, the count stays exact
                done += 1
            return done

        return sum(await asyncio.gather(*(one() for _ in range(coroutines))))


def increment_worker(port: int, namespace: str, cid: str, coroutines: int, each: int, barrier: Any,
                     out: Any) -> None:
    try:
        barrier.wait(60)
        out.put(("ok", asyncio.run(_increments(port, namespace, cid, coroutines, each))))
    except BaseException:
        _error(out)


async def _stale_holder(port: int, namespace: str, cid: str, ttl: float, go: Any, out: Any) -> None:
    async with Store(aioredis.Redis(port=port), namespace) as store:
        lease = await store.lock(cid, ttl=ttl)
        out.put(("locked", lease.token))
        await asyncio.to_thread(go.wait, 60)  # the parent SIGSTOPs this process meanwhile
        result: dict[str, Any] = {}
        try:
            await store.containers.update(cid, lambda c: c.labels.update(writer="stale"), lease=lease)
            result["commit"] = "ok"
        except StateStoreError as exc:
            result["commit"] = type(exc).__name__
        result["wait_lost"] = await lease.wait_lost(5)
        result["lost"] = lease.lost
        result["release"] = await lease.release()
        out.put(("ok", result))


def stale_holder(port: int, namespace: str, cid: str, ttl: float, go: Any, out: Any) -> None:
    try:
        asyncio.run(_stale_holder(port, namespace, cid, ttl, go, out))
    except BaseException:
        _error(out)


async def _watch(port: int, namespace: str, since: str, client_name: str, count: int, ready: Any,
                 out: Any) -> None:
    client = aioredis.Redis(port=port, client_name=client_name)
    async with Store(client, namespace) as store:
        seen: list[tuple[int, str, int]] = []
        reconnects = 0

        def on_connection(connected: bool, reason: str) -> None:
            nonlocal reconnects
            reconnects += connected

        async with store.watch(since=since, block=0.2, on_connection=on_connection) as w:
            ready.set()
            async for ev in w:
                seen.append((ev.seq, ev.id, ev.version))
                if len(seen) >= count:
                    break
        out.put(("watched", seen, reconnects))


def watch_worker(port: int, namespace: str, since: str, client_name: str, count: int, ready: Any,
                 out: Any) -> None:
    try:
        asyncio.run(_watch(port, namespace, since, client_name, count, ready, out))
    except BaseException:
        _error(out)
