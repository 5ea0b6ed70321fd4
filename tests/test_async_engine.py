"""The async commit engine (``statestore/_async/_engine.py``, the source of the generated sync one).

On the suite's private redis-server: commits from many coroutines and from several OS
processes lose no update, a cancelled commit either happened or did not and leaves the
connection pool usable, and Redis errors reach the caller as statestore errors.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis
import redis.asyncio as aioredis

from statestore import ConflictError, StorePermissionError, StoreUnavailableError
from statestore._async._engine import AsyncEngine, AsyncTx, own_client
from statestore._edge import Plan

from .async_engine_workers import increment, increment_worker
from .procs import run_processes
from .redisproc import RedisProcess, free_port


def _engine(redis_proc: RedisProcess, **kw: object) -> AsyncEngine:
    return AsyncEngine(own_client(aioredis.Redis(port=redis_proc.port)), **kw)  # type: ignore[arg-type]


def test_sixty_four_coroutines_lose_no_update(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    key = f"{namespace}:counter"

    async def main() -> None:
        engine = _engine(redis_proc, conflict_attempts=10_000)
        try:
            await asyncio.gather(*(increment(engine, key) for _ in range(64 * 5)))
        finally:
            await engine.client.aclose()

    asyncio.run(main())
    assert client.get(key) == b"320"


@pytest.mark.slow
def test_three_processes_of_sixteen_coroutines_lose_no_update(redis_proc: RedisProcess, client: redis.Redis,
                                                             namespace: str) -> None:
    key = f"{namespace}:counter"
    reports = run_processes(increment_worker, [(redis_proc.port, key, 16, 20)] * 3)
    assert reports == [("ok", 320)] * 3, reports
    assert client.get(key) == b"960"


def test_a_real_conflict_raised_by_the_body_is_not_retried(redis_proc: RedisProcess, namespace: str) -> None:
    calls = 0

    async def body(tx: AsyncTx) -> Plan:
        nonlocal calls
        calls += 1
        await tx.read([f"{namespace}:x"])
        raise ConflictError(f"{namespace}:x", 1, 2)

    async def main() -> None:
        engine = _engine(redis_proc)
        try:
            with pytest.raises(ConflictError):
                await engine.transact(body)
            # the connection went back to the pool unwatched: a commit on it succeeds
            await increment(engine, f"{namespace}:x")
        finally:
            await engine.client.aclose()

    asyncio.run(main())
    assert calls == 1


def test_cancelled_commits_either_happened_or_not_and_the_pool_stays_usable(
        redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    """Commits cancelled at random points: each key ends at 0 or 1, never half-written, and the
    same engine commits normally afterwards (no connection left watching or out of step)."""
    keys = [f"{namespace}:k{i}" for i in range(200)]
    rng = random.Random(7)

    async def main() -> None:
        engine = _engine(redis_proc)
        try:
            tasks = [asyncio.create_task(increment(engine, k)) for k in keys]
            for task in tasks:
                if rng.random() < 0.7:
                    await asyncio.sleep(rng.random() * 0.0005)
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
            assert any(isinstance(r, asyncio.CancelledError) for r in results)
            for k in keys:  # every connection of the pool is fit for the next commit
                await increment(engine, k)
        finally:
            await engine.client.aclose()

    before = len(client.client_list())
    asyncio.run(main())
    values = [client.get(k) for k in keys]
    assert set(values) == {b"1", b"2"}, values  # some cancelled commits happened, some did not
    # a cancelled commit's connection was dropped or returned, never leaked: all are closed now
    deadline = time.monotonic() + 5
    while len(client.client_list()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(client.client_list()) <= before


def test_redis_errors_reach_the_caller_as_statestore_errors(redis_proc: RedisProcess, namespace: str) -> None:
    async def main() -> None:
        down = AsyncEngine(own_client(aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)),
                           unavailable_timeout=0.3)
        with pytest.raises(StoreUnavailableError, match="retried for 0.3s"):
            await increment(down, f"{namespace}:x")
        with pytest.raises(StoreUnavailableError):
            await down.read(lambda: down.execute("GET", "x"))
        await down.client.aclose()
        refused = AsyncEngine(own_client(aioredis.Redis(port=redis_proc.port, username="nobody", password="x")))
        with pytest.raises(StorePermissionError):
            await refused.read(lambda: refused.execute("GET", "x"))
        with pytest.raises(StorePermissionError):
            await increment(refused, f"{namespace}:x")
        await refused.client.aclose()

    asyncio.run(main())
