"""Child-process entry points for tests/test_locks.py (multiprocessing "spawn" context).

Every function here runs in a fresh interpreter: it builds its own redis
client and Store from the port and namespace it is given, and reports to the
parent through a queue as ``(tag, payload)`` tuples.  A worker that fails
reports ``("error", traceback text)`` instead of dying silently, so the test
shows the child's exception.  Every wait has a timeout: a broken test must
never leave a child behind.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from statestore import Store
from statestore._errors import LockLostError

Queue = Any  # a multiprocessing queue (its class is not importable as a type)
Event = Any  # a multiprocessing event


@contextmanager
def _store(port: int, namespace: str, **kw: Any) -> Iterator[Store]:
    client = redis.Redis(port=port)
    store = Store(client, namespace, **kw)
    try:
        yield store
    finally:
        store.close()
        client.close()


def _report(out: Queue, fn: Callable[[], Any]) -> None:
    try:
        out.put(("ok", fn()))
    except BaseException:  # the parent must see the child's failure
        out.put(("error", f"pid {os.getpid()}:\n{traceback.format_exc()}"))


def increment(port: int, namespace: str, container_id: str, cycles: int, go: Event, out: Queue) -> None:
    """``cycles`` lock-protected read-modify-write cycles on RestartCount, slow inside the lock.

    Reports ``("ready", pid)``, waits for ``go``, then reports ``("ok", cycles)`` with one
    ``(t_acquired, t_released, token, count_written, version_written, release_ok)`` per cycle.
    The times are ``time.monotonic()`` (system-wide on Linux) taken just after ``lock()``
    returned and just before ``release()`` was called, so each recorded interval lies inside
    the real holding interval.
    """
    def run() -> list[tuple[float, float, int, int, int, bool]]:
        cycles_done: list[tuple[float, float, int, int, int, bool]] = []
        with _store(port, namespace, replica_id=f"inc-{os.getpid()}") as store:
            out.put(("ready", os.getpid()))
            if not go.wait(60):
                raise RuntimeError("never told to start")
            rng = random.Random(os.getpid())
            for _ in range(cycles):
                lease = store.lock(container_id, ttl=5.0, timeout=30.0)
                t_acquired = time.monotonic()
                record = store.containers.get(container_id)
                time.sleep(rng.uniform(0.005, 0.010))  # the slow part of the "action"
                record.restart_count = record.restart_count + 1
                committed = store.containers.commit(record, lease=lease)
                t_released = time.monotonic()
                ok = lease.release()
                cycles_done.append((t_acquired, t_released, lease.token, committed.restart_count,
                                    committed.version, ok))
        return cycles_done

    _report(out, run)


def hold_and_meet(port: int, namespace: str, container_id: str, barrier: Any, out: Queue) -> None:
    """Take one container's lock and, while holding it, wait at ``barrier`` for a peer."""
    def run() -> int:
        with _store(port, namespace) as store:
            with store.lock(container_id, ttl=10.0, timeout=5.0) as lease:
                barrier.wait(20)  # BrokenBarrierError if the peer cannot hold its lock meanwhile
                return lease.token

    _report(out, run)


def stale_holder(port: int, namespace: str, container_id: str, ttl: float, go: Event, out: Queue) -> None:
    """Lock, read, report ``("locked", token, version)``, wait for ``go``, then commit with the lease.

    The parent SIGSTOPs this process while it waits, past the TTL, and lets
    another holder commit; on SIGCONT the commit here must be fenced off.
    Reports ``("ok", result dict)``.
    """
    def run() -> dict[str, Any]:
        lost_calls: list[Any] = []
        lost_event = threading.Event()

        def on_lost(lease: Any) -> None:
            lost_calls.append(lease.token)
            lost_event.set()

        with _store(port, namespace, replica_id="stale") as store:
            lease = store.lock(container_id, ttl=ttl, timeout=5.0, on_lost=on_lost)
            record = store.containers.get(container_id)
            out.put(("locked", (lease.token, record.version)))
            if not go.wait(60):
                raise RuntimeError("never told to go on")
            record.labels["writer"] = "stale"
            result: dict[str, Any] = {"token": lease.token}
            try:
                store.containers.commit(record, lease=lease)
                result["commit"] = "committed"
            except LockLostError as exc:
                result["commit"] = "LockLostError"
                result["error_token"] = exc.token
            except Exception as exc:  # anything else is a failure the parent reports
                result["commit"] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            result["lost"] = lease.lost
            result["lost_reason"] = lease.lost_reason
            result["on_lost_fired"] = lost_event.wait(10)
            result["on_lost_calls"] = list(lost_calls)
            result["release"] = lease.release()
            result["on_lost_calls_after_release"] = list(lost_calls)
            return result

    _report(out, run)


def hold_until_killed(port: int, namespace: str, container_id: str, ttl: float, out: Queue) -> None:
    """Lock with ``ttl`` (renewed in the background), report ``("locked", token)``, then hang."""
    with _store(port, namespace, replica_id="doomed") as store:
        lease = store.lock(container_id, ttl=ttl, timeout=5.0)
        out.put(("locked", lease.token))
        time.sleep(120)  # the parent SIGKILLs us long before this ends


def hang_in_lock(port: int, namespace: str, container_id: str, ttl: float, release: Event,
                 out: Queue) -> None:
    """Lock and "hang" inside the lock until the parent sets ``release`` (at most 60 s).

    Reports ``("locked", (token, pid))`` once held and ``("ok", release_ok)`` at the end.
    """
    def run() -> bool:
        with _store(port, namespace, replica_id="hanging-replica") as store:
            lease = store.lock(container_id, ttl=ttl, timeout=5.0)
            out.put(("locked", (lease.token, os.getpid())))
            release.wait(60)  # the hanging action
            return lease.release()

    _report(out, run)


def read_everything(port: int, namespace: str, containers: list[tuple[str, str]], rounds: int,
                    go: Event, out: Queue) -> None:
    """Run get (ID, name, prefix), list() and snapshot() ``rounds`` times; report what was seen.

    ``containers`` is ``[(id, name), ...]``.  Reports ``("ready", pid)``, waits for ``go``,
    then reports ``("ok", summary)`` where the summary counts the calls and records any mismatch.
    """
    def run() -> dict[str, Any]:
        calls = 0
        problems: list[str] = []
        with _store(port, namespace) as store:
            out.put(("ready", os.getpid()))
            if not go.wait(60):
                raise RuntimeError("never told to start")
            for _ in range(rounds):
                for cid, name in containers:
                    for ref in (cid, name, "/" + name, cid[:12]):
                        got = store.containers.get(ref)
                        calls += 1
                        if got.id != cid or got.name != name:
                            problems.append(f"get({ref!r}) returned {got.id[:12]} {got.name}")
                    execs = store.execs.list(cid)
                    calls += 1
                    if any(x.container_id != cid for x in execs):
                        problems.append(f"execs.list({cid[:12]}) returned another container's exec")
                ids = {c.id for c in store.containers.list(all=True)}
                calls += 1
                snap = store.snapshot()
                calls += 1
                for cid, name in containers:
                    if cid not in ids:
                        problems.append(f"list() misses {cid[:12]}")
                    if cid not in snap.containers or snap.get(name).id != cid:
                        problems.append(f"snapshot() misses {cid[:12]}")
        return {"calls": calls, "problems": problems}

    _report(out, run)


def take_token(port: int, namespace: str, container_id: str, out: Queue) -> None:
    """Lock and release once; report the token."""
    def run() -> int:
        with _store(port, namespace) as store:
            with store.lock(container_id, ttl=5.0, timeout=10.0) as lease:
                return lease.token

    _report(out, run)
