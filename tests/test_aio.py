"""The async face, ``statestore.aio``: its surface on a real Redis, and the multi-process
guarantees of the sync face proven again for it (no lost update across processes, fencing of a
paused holder, a gap-free watch across CLIENT KILL, cancellation at random points leaving fsck
clean)."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing as mp
import os
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

import statestore
from statestore import (
    ConflictError,
    Container,
    ExecConfig,
    LockLostError,
    LockTimeoutError,
    NameInUseError,
    NotFoundError,
    Store,
    aio,
)

from . import aio_workers
from .procs import run_processes
from .redisproc import RedisProcess

CTX = mp.get_context("spawn")


def _store(redis_proc: RedisProcess, namespace: str, **kw: Any) -> aio.Store:
    return aio.Store(aioredis.Redis(port=redis_proc.port), namespace, **kw)


def test_the_async_face_shares_the_sync_faces_data_classes() -> None:
    for name in ("Container", "ExecConfig", "RecordList", "Snapshot", "Event", "LockInfo", "LockList",
                 "FsckReport", "StateStoreError", "NotFoundError"):
        assert getattr(aio, name) is getattr(statestore, name), name
    for name in ("Store", "Containers", "Execs", "Lease", "Watch", "View"):
        assert getattr(aio, name) is not getattr(statestore, name)
        assert getattr(aio, name).__module__ == "statestore.aio" and getattr(aio, name).__name__ == name


def test_records_lookups_lists_and_snapshots(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    sync = Store(client, namespace)

    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "web"}))
            assert c.version == 1 and c.revision
            with pytest.raises(NameInUseError):
                await store.containers.create(Container.new("nginx:1.27", name="web"))
            for ref in (c.id, "web", "/web", c.id[:12]):
                assert (await store.containers.get(ref)).id == c.id
            assert await store.containers.resolve("web") == c.id
            with pytest.raises(NotFoundError):
                await store.containers.get("nope")

            def start(r: Container) -> None:
                r.state.set_running(pid=42)

            running = await store.containers.update("web", start)
            assert running.status == "running" and running.version == 2
            stale = c
            with pytest.raises(ConflictError):
                await store.containers.commit(stale)
            x = await store.execs.create(ExecConfig.new(c.id, ["sh"]))
            assert [e.id for e in await store.execs.list(c.id)] == [x.id]
            assert [r.id for r in await store.containers.list()] == [c.id]
            assert [r.id for r in await store.containers.list({"label": "app=web"}, all=True)] == [c.id]
            renamed = await store.containers.rename(c.id, "web2")
            snap = await store.snapshot()
            assert snap.get("web2").id == c.id and snap.revision == renamed.revision
            assert await store.log_sequence() == 5
            assert (await store.namespaces())[namespace] == {"containers": 1, "execs": 1}
            await store.ping()
            report = await store.fsck()
            assert report.clean, report.text()
            await store.containers.delete("web2")
            assert await store.containers.list(all=True) == []

    asyncio.run(main())
    assert sync.containers.list(all=True) == []  # the sync face sees what the async one did
    assert sync.log_sequence() == 7  # the delete logged the exec's and the container's
    sync.close()


def test_locks_fence_commits_and_report_loss(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="locked"))
            async with store.lock(c.id, ttl=0.3) as lease:
                assert [i.container_id for i in await store.locks()] == [c.id]
                with pytest.raises(LockTimeoutError):
                    await store.lock(c.id, timeout=0.1)
                await asyncio.sleep(0.7)  # the renewer task keeps it alive past its TTL
                assert not lease.lost
                await store.containers.update(c.id, lambda r: r.labels.update(a="1"), lease=lease)
                assert await lease.wait_lost(0.05) is False
                # someone deletes the lock key: the renewer notices and the lease knows
                client.delete(store.keys.lock(c.id))
                assert await lease.wait_lost(2) is True
                with pytest.raises(LockLostError):
                    await store.containers.update(c.id, lambda r: r.labels.update(a="2"), lease=lease)
            assert lease.released
            assert (await store.containers.get(c.id)).labels == {"a": "1"}

    asyncio.run(main())


def test_a_cancelled_lock_acquisition_holds_no_lock(redis_proc: RedisProcess, namespace: str) -> None:
    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="contended"))
            held = await store.lock(c.id, ttl=5)
            waiter = asyncio.create_task(store.lock(c.id, timeout=10))
            await asyncio.sleep(0.2)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert await held.release() is True
            assert await store.locks() == []
            async with store.lock(c.id, timeout=1):  # free at once
                pass
            assert await store.locks() == []

    asyncio.run(main())


def test_lock_is_awaited_or_entered(redis_proc: RedisProcess, namespace: str) -> None:
    """``store.lock()`` gives the lease when awaited (or run as a task) and, with ``async with``,
    releases it at the end of the block, also when the block raises."""
    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="both-ways"))
            lease = await store.lock(c.id)
            assert isinstance(lease, aio.Lease) and not lease.released
            assert [i.token for i in await store.locks()] == [lease.token]
            assert await lease.release() is True
            lease = await asyncio.create_task(store.lock(c.id))
            async with lease:  # the awaited lease is an async context manager too
                pass
            assert lease.released
            with pytest.raises(RuntimeError, match="inside"):
                async with store.lock(c.id) as entered:
                    assert isinstance(entered, aio.Lease) and not entered.released
                    raise RuntimeError("inside")
            assert entered.released and await store.locks() == []
            held = await store.lock(c.id)
            with pytest.raises(LockTimeoutError):
                async with store.lock(c.id, timeout=0.1):
                    raise AssertionError("entered a lock another lease holds")
            assert [i.token for i in await store.locks()] == [held.token]
            await held.release()
            never = store.lock(c.id)
            never.close()  # dropped without being awaited: no warning, no lock
            assert await store.locks() == []

    asyncio.run(main())


BUSY_LUA = """local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop
return 1"""


def test_a_lock_taken_for_a_cancelled_caller_is_released(
        redis_proc: RedisProcess, namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    """The acquire script is sent, then the caller is cancelled before the reply: Redis (busy
    with a slow script) runs the acquisition afterwards.  The lock it took is released at once,
    not left until its TTL, and the caller sees its cancellation."""
    caplog.set_level(logging.INFO, logger="statestore")

    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="late-reply"))
            other = aioredis.Redis(port=redis_proc.port)
            try:
                busy = asyncio.create_task(other.eval(BUSY_LUA, 0, 300_000))  # Redis busy for 0.3 s
                await asyncio.sleep(0.05)
                task = asyncio.create_task(store.lock(c.id, ttl=60))
                await asyncio.sleep(0.05)  # the script is sent; its reply waits for the busy script
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert busy.done() and await busy == 1  # the cancellation waited for the reply
                assert await store.locks() == []
                assert await other.get(store.keys.lock_seq) == b"1"  # the acquisition did run
                async with store.lock(c.id, timeout=0.5) as lease:
                    assert lease.token == 2
            finally:
                await other.aclose()

    asyncio.run(main())
    assert any("its caller was cancelled" in r.getMessage() for r in caplog.records)


async def _cancel_lock(store: aio.Store, cid: str, pause: Callable[[], Awaitable[None]],
                       outcomes: dict[str, int], where: str) -> None:
    """Start ``store.lock(cid)``, ``pause``, cancel it, and check that no lock is left: a
    cancelled acquisition holds none, one that got its lease can release it."""
    task = asyncio.create_task(store.lock(cid, ttl=60))
    await pause()
    task.cancel()
    try:
        lease = await task
    except asyncio.CancelledError:
        outcomes["cancelled"] += 1
    else:
        outcomes["acquired"] += 1
        assert await lease.release() is True
    assert await store.locks() == [], f"a lock is left after cancelling {where}"


def test_lock_acquisitions_cancelled_at_random_points_leave_no_lock(redis_proc: RedisProcess, namespace: str) -> None:
    """A task cancelled anywhere in ``store.lock()`` holds no lock afterwards (not even until
    the TTL), and a task that did get its lease can release it."""
    rng = random.Random(11)
    outcomes = {"acquired": 0, "cancelled": 0}

    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="cancelled-locks"))
            for _ in range(200):
                delay = rng.choice([0, 0, 0.0001, 0.0002, 0.0005])
                await _cancel_lock(store, c.id, functools.partial(asyncio.sleep, delay), outcomes, f"after {delay} s")

    asyncio.run(main())
    assert outcomes["cancelled"] > 0, outcomes


def test_a_cancellation_during_the_acquire_send_is_not_swallowed(redis_proc: RedisProcess, namespace: str) -> None:
    """Cancelled one loop turn after it started, an acquisition is in redis-py's send (through
    ``asyncio.wait_for``, which on Python 3.11 swallows a cancellation that arrives as the send
    completes): the caller must still see the cancellation, and no lock is left."""
    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="send-cancel"))
            for _ in range(20):
                task = asyncio.create_task(store.lock(c.id, ttl=60))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await store.locks() == []

    asyncio.run(main())


def test_lock_acquisitions_cancelled_after_each_loop_step_leave_no_lock(
        redis_proc: RedisProcess, namespace: str) -> None:
    """The same, cancelling after 0, 1, 2, ... turns of the event loop: every suspension point
    of an acquisition in turn (taking a connection, the send, the wait for the reply), with
    no timing luck involved, until the acquisitions run to the end (how many turns that takes
    depends on the redis-py version)."""
    outcomes = {"acquired": 0, "cancelled": 0}

    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            c = await store.containers.create(Container.new("busybox", name="stepped-locks"))
            complete = 0  # consecutive steps at which every try ran to the end
            for steps in range(300):
                before = outcomes["acquired"]
                for _ in range(5):
                    async def turns(steps: int = steps) -> None:
                        for _ in range(steps):
                            await asyncio.sleep(0)
                    await _cancel_lock(store, c.id, turns, outcomes, f"after {steps} turns of the loop")
                complete = complete + 1 if outcomes["acquired"] - before == 5 else 0
                if complete == 5:
                    break  # later steps add nothing

    asyncio.run(main())
    assert outcomes["cancelled"] > 0 and outcomes["acquired"] > 0, outcomes


def test_watch_and_view(redis_proc: RedisProcess, namespace: str) -> None:
    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            first = await store.containers.create(Container.new("busybox", name="aa"))
            view = await store.view()
            async with store.watch(since=first.revision) as w:
                b = await store.containers.create(Container.new("busybox", name="bb"))
                await store.containers.delete("aa")
                events = [await w.__anext__(), await w.__anext__()]
                assert [(e.type, e.name) for e in events] == [("create", "bb"), ("delete", "aa")]
                assert await w.poll(0.05) == []
            assert await view.wait_for(b.revision or "", timeout=5)
            await view.wait_for(events[1].revision, timeout=5)
            assert [c.name for c in view.list(all=True)] == ["bb"]
            assert view.get("bb").id == b.id
            await view.aclose()
            # a cancelled watch read drops its connection and the store goes on
            w2 = store.watch()
            task = asyncio.create_task(w2.__anext__())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await w2.aclose()
            assert (await store.containers.get("bb")).id == b.id

    asyncio.run(main())
    assert not [t for t in threading.enumerate() if t.name in ("statestore-view", "statestore-lock-renewer")]


def test_from_url_and_bad_input(redis_proc: RedisProcess, namespace: str) -> None:
    async def main() -> None:
        async with aio.Store.from_url(redis_proc.url, namespace) as store:
            await store.containers.create(Container.new("busybox", name="url"))
            assert len(await store.containers.list(all=True)) == 1
        with pytest.raises(statestore.InvalidArgumentError):
            aio.Store(redis.Redis(port=redis_proc.port), namespace)  # a sync client
        with pytest.raises(statestore.InvalidArgumentError):
            aio.Store.from_url("nonsense://x", namespace)

    asyncio.run(main())


def test_commits_cancelled_at_random_points_leave_fsck_clean(redis_proc: RedisProcess, namespace: str) -> None:
    rng = random.Random(11)

    async def main() -> None:
        async with _store(redis_proc, namespace) as store:
            base = [await store.containers.create(Container.new("busybox", name=f"c{i}")) for i in range(20)]

            async def churn(i: int) -> None:
                c = base[i % len(base)]
                op = i % 4
                if op == 0:
                    await store.containers.create(Container.new("busybox", name=f"n{i}", labels={"i": str(i)}))
                elif op == 1:
                    await store.containers.update(c.id, lambda r: r.labels.update(k=str(i)))
                elif op == 2:
                    await store.containers.rename(c.id, f"r{i}")
                else:
                    await store.containers.update(c.id, lambda r: r.labels.pop("k", None))

            cancelled = 0
            for round_ in range(10):
                tasks = [asyncio.create_task(churn(round_ * 40 + i)) for i in range(40)]
                await asyncio.sleep(rng.random() * 0.01)
                for t in tasks:
                    if rng.random() < 0.5:
                        t.cancel()
                for r in await asyncio.gather(*tasks, return_exceptions=True):
                    if isinstance(r, asyncio.CancelledError):
                        cancelled += 1
                    elif isinstance(r, BaseException) and not isinstance(r, NameInUseError | ConflictError):
                        raise r
            assert cancelled > 0
            report = await store.fsck()
            assert report.clean, report.text()
            # the store still works on the same pool
            await store.containers.create(Container.new("busybox", name="after"))

    asyncio.run(main())


# --- several processes ----------------------------------------------------------------------------
@pytest.mark.slow
def test_coroutines_in_three_processes_lose_no_update(redis_proc: RedisProcess, client: redis.Redis,
                                                      namespace: str) -> None:
    sync = Store(client, namespace)
    c = sync.containers.create(Container.new("busybox", name="counted"))
    reports = run_processes(aio_workers.increment_worker, [(redis_proc.port, namespace, c.id, 8, 15)] * 3,
                            timeout=120)
    assert reports == [("ok", 120)] * 3, reports
    assert sync.containers.get(c.id).labels[aio_workers.COUNTER] == "360"
    sync.close()


@pytest.mark.slow
def test_a_paused_async_holder_is_fenced_off(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    sync = Store(client, namespace)
    c = sync.containers.create(Container.new("busybox", name="paused"))
    out, go = CTX.Queue(), CTX.Event()
    p = CTX.Process(target=aio_workers.stale_holder, args=(redis_proc.port, namespace, c.id, 1.0, go, out),
                    daemon=True)
    p.start()
    try:
        tag, token1 = out.get(timeout=60)
        assert tag == "locked", token1
        assert p.pid is not None
        os.kill(p.pid, signal.SIGSTOP)
        try:
            lease2 = sync.lock(c.id, ttl=10, timeout=10)  # free once the paused holder's TTL ran out
            assert lease2.token > token1
            sync.containers.update(c.id, lambda r: r.labels.update(writer="second"), lease=lease2)
        finally:
            os.kill(p.pid, signal.SIGCONT)
        go.set()
        tag, result = out.get(timeout=60)
        assert tag == "ok", result
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
    assert result == {"commit": "LockLostError", "wait_lost": True, "lost": True, "release": False}
    assert sync.containers.get(c.id).labels == {"writer": "second"}
    assert lease2.release() is True
    sync.close()


@pytest.mark.slow
def test_an_async_watch_is_gap_free_across_client_kill(redis_proc: RedisProcess, client: redis.Redis,
                                                       namespace: str) -> None:
    sync = Store(client, namespace)
    start = sync.containers.create(Container.new("busybox", name="start"))
    n = 300
    name = f"aiowatch-{namespace}"
    out, ready = CTX.Queue(), CTX.Event()
    p = CTX.Process(target=aio_workers.watch_worker, args=(redis_proc.port, namespace, start.revision, name, n,
                                                           ready, out), daemon=True)
    p.start()
    kills = 0
    try:
        assert ready.wait(60)
        for i in range(n):
            sync.containers.update(start.id, lambda r, i=i: r.labels.update(i=str(i)))
            if i % 40 == 20:
                for conn in client.client_list():
                    if conn.get("name") == name and "xread" in conn.get("cmd", ""):
                        kills += client.client_kill_filter(_id=conn["id"])
                time.sleep(0.05)
        tag, seen, reconnects = out.get(timeout=60)
        assert tag == "watched", seen
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
    assert kills >= 3 and reconnects >= 1
    assert [s for s, _, _ in seen] == list(range(seen[0][0], seen[0][0] + n))  # every entry once, in order
    assert [v for _, _, v in seen] == list(range(2, n + 2))
    sync.close()
