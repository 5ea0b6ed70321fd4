"""Entry points for the multi-process tests of the async commit engine (``tests/test_async_engine.py``).

Importable at module level for the ``spawn`` start method; a child builds its own
``redis.asyncio`` client from the port it is given, waits on the barrier and reports
one tuple (it never raises: an error is reported as ``("error", text)``).
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import redis.asyncio as aioredis

from statestore._async._engine import AsyncEngine, AsyncTx, own_client
from statestore._edge import Plan


async def increment(engine: AsyncEngine, key: str) -> None:
    """Add one to the integer at ``key`` in a WATCH/MULTI commit (retried on conflicts)."""

    async def body(tx: AsyncTx) -> Plan:
        (raw,) = await tx.read([key])
        plan = tx.plan(key)
        plan.add("SET", key, str(int(raw or 0) + 1))
        return plan

    await engine.transact(body)


async def increments(port: int, key: str, coroutines: int, each: int) -> int:
    client = own_client(aioredis.Redis(port=port, max_connections=coroutines))
    engine = AsyncEngine(client, conflict_attempts=10_000)
    try:

        async def one() -> None:
            for _ in range(each):
                await increment(engine, key)

        await asyncio.gather(*(one() for _ in range(coroutines)))
        return coroutines * each
    finally:
        await client.aclose()


def increment_worker(port: int, key: str, coroutines: int, each: int, barrier: Any, out: Any) -> None:
    try:
        barrier.wait(30)
        out.put(("ok", asyncio.run(increments(port, key, coroutines, each))))
    except BaseException:  # report, never raise: the parent asserts on the report
        out.put(("error", traceback.format_exc()))
