"""Per-container action locks: exclusion, fencing, expiry, renewal, observability, bad input.

Multi-process tests use the "spawn" context; the child entry points are in
tests/lock_workers.py and talk to the test through one queue each.  Timing
appears only as generous bounds the lock's contract demands (a crashed holder's
lock is free within its TTL; a waiter gives up after its timeout); whether two
holders overlapped is decided by comparing recorded monotonic intervals, and
whether readers waited is decided by checking that the lock was still held
when they had finished.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from typing import Any

import orjson
import pytest
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from statestore import Container, ExecConfig, Lease, Store
from statestore._errors import (
    InvalidArgumentError,
    LockLostError,
    LockTimeoutError,
    NotFoundError,
    StateStoreError,
    StoreUnavailableError,
)
from tests import lock_workers
from tests.conftest import dump_namespace
from tests.faces import forged_lease
from tests.redisproc import RedisProcess, free_port

CTX = mp.get_context("spawn")


# --- helpers ---------------------------------------------------------------------------------
class Children:
    """Child processes that are always reaped (SIGKILLed if still alive) when the block ends."""

    def __init__(self) -> None:
        self.procs: list[BaseProcess] = []

    def start(self, target: Callable[..., None], *args: Any) -> BaseProcess:
        p = CTX.Process(target=target, args=args, daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()  # works on a SIGSTOPped child too
            p.join(10)
            p.close()


def get_msg(q: Any, timeout: float, watch: list[BaseProcess]) -> tuple[str, Any]:
    """The next message of ``q``; fails the test on a child's error report or crash."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tag, payload = q.get(timeout=0.2)
        except queue.Empty:
            for p in watch:
                if p.exitcode not in (None, 0):
                    pytest.fail(f"child {p.pid} died with exit code {p.exitcode} without reporting")
            if time.monotonic() > deadline:
                pytest.fail(f"no message from the children within {timeout}s")
            continue
        if tag == "error":
            pytest.fail(f"child failed:\n{payload}")
        return tag, payload


def collect(q: Any, want: dict[str, int], timeout: float, watch: list[BaseProcess]) -> dict[str, list[Any]]:
    """Exactly ``want[tag]`` messages of each tag, in whatever order they come."""
    got: dict[str, list[Any]] = {tag: [] for tag in want}
    deadline = time.monotonic() + timeout
    while any(len(got[t]) < n for t, n in want.items()):
        tag, payload = get_msg(q, max(0.5, deadline - time.monotonic()), watch)
        assert tag in want and len(got[tag]) < want[tag], f"unexpected message {tag!r}: {payload!r}"
        got[tag].append(payload)
    return got


def new_container(store: Store, name: str, *, running: bool = False) -> Container:
    c = store.containers.create(Container.new(image="busybox:1.36", name=name))
    if running:
        c.state.set_running(4242)
        c = store.containers.commit(c)
    return c


def lock_value(client: redis.Redis, store: Store, container_id: str) -> dict[str, Any] | None:
    raw = client.get(store.keys.lock(container_id))
    return None if raw is None else dict(orjson.loads(raw))


def durable_state(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace except the short-lived lock wake-up lists (they expire)."""
    return {k: v for k, v in dump_namespace(client, namespace).items() if b":lockwake:" not in k}


@contextmanager
def other_store(redis_proc: RedisProcess, namespace: str, **kw: Any) -> Iterator[Store]:
    """A second store on its own client: another replica of the same namespace."""
    c = redis_proc.client()
    s = Store(c, namespace, **kw)
    try:
        yield s
    finally:
        s.close()
        c.close()


@pytest.fixture
def make_store(client: redis.Redis, namespace: str) -> Iterator[Callable[..., Store]]:
    """Stores on the test's client (the test's namespace unless told), closed after the test."""
    made: list[Store] = []

    def make(ns: str | None = None, **kw: Any) -> Store:
        s = Store(client, namespace if ns is None else ns, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# --- mutual exclusion ----------------------------------------------------------------------------
N_PROCS, M_CYCLES = 4, 25


@pytest.mark.slow
def test_lock_serializes_slow_read_modify_write_across_processes(
        redis_proc: RedisProcess, store: Store, namespace: str) -> None:
    c = new_container(store, "counter")
    out, go = CTX.Queue(), CTX.Event()
    with Children() as kids:
        for _ in range(N_PROCS):
            kids.start(lock_workers.increment, redis_proc.port, namespace, c.id, M_CYCLES, go, out)
        collect(out, {"ready": N_PROCS}, 60, kids.procs)
        go.set()
        results = collect(out, {"ok": N_PROCS}, 120, kids.procs)["ok"]

    assert [len(r) for r in results] == [M_CYCLES] * N_PROCS
    cycles = sorted((tuple(x) for r in results for x in r), key=lambda x: x[0])
    assert all(x[5] is True for x in cycles), "a release of a held lock must return True"

    # no update lost, version consistent
    final = store.containers.get(c.id)
    assert final.restart_count == N_PROCS * M_CYCLES
    assert final.version == c.version + N_PROCS * M_CYCLES

    # the holding intervals, in acquisition order, never intersect
    for before, after in zip(cycles, cycles[1:], strict=False):
        assert before[1] < after[0], f"holders overlapped: {before[:3]} and {after[:3]}"
    # tokens strictly increase in acquisition order, and each commit saw the previous one
    tokens = [x[2] for x in cycles]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert [x[3] for x in cycles] == list(range(1, N_PROCS * M_CYCLES + 1))
    assert [x[4] for x in cycles] == list(range(c.version + 1, c.version + 1 + N_PROCS * M_CYCLES))
    assert store.locks() == []


@pytest.mark.slow
def test_locks_of_different_containers_are_held_at_the_same_time(
        redis_proc: RedisProcess, store: Store, namespace: str) -> None:
    a, b = new_container(store, "alpha"), new_container(store, "beta")
    out, barrier = CTX.Queue(), CTX.Barrier(2)
    with Children() as kids:
        # each child waits, inside its lock, for the other to be inside its own lock too
        kids.start(lock_workers.hold_and_meet, redis_proc.port, namespace, a.id, barrier, out)
        kids.start(lock_workers.hold_and_meet, redis_proc.port, namespace, b.id, barrier, out)
        tokens = collect(out, {"ok": 2}, 60, kids.procs)["ok"]
    assert len(set(tokens)) == 2
    assert store.locks() == []


# --- pause, crash, renewal -----------------------------------------------------------------------
@pytest.mark.slow
def test_paused_holder_is_fenced_off_and_told(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "paused")
    out, go = CTX.Queue(), CTX.Event()
    with Children() as kids:
        p = kids.start(lock_workers.stale_holder, redis_proc.port, namespace, c.id, 1.0, go, out)
        tag, (token1, version_read) = get_msg(out, 60, [p])
        assert tag == "locked" and version_read == c.version
        assert p.pid is not None
        os.kill(p.pid, signal.SIGSTOP)  # the holder "pauses" (GC, VM freeze...) inside its lock
        try:
            lease2 = store.lock(c.id, ttl=10.0, timeout=10.0)  # free once the paused TTL runs out
            assert lease2.token > token1
            store.containers.update(c.id, lambda r: r.labels.update(writer="second"), lease=lease2)
        finally:
            os.kill(p.pid, signal.SIGCONT)
        go.set()
        tag, result = get_msg(out, 30, [p])
        assert tag == "ok"
        p.join(10)

    assert result["commit"] == "LockLostError", result
    assert result["error_token"] == token1
    assert result["lost"] is True and result["lost_reason"], result
    assert result["on_lost_fired"] is True and result["on_lost_calls"] == [token1], result
    # releasing after expiry: False, and on_lost is not called a second time
    assert result["release"] is False
    assert result["on_lost_calls_after_release"] == [token1]

    # the stale holder neither wrote nor released the second holder's lock
    assert [(i.container_id, i.token) for i in store.locks()] == [(c.id, lease2.token)]
    assert lock_value(client, store, c.id)["token"] == lease2.token  # type: ignore[index]
    assert not lease2.lost
    final = store.containers.get(c.id)
    assert final.labels == {"writer": "second"}
    assert final.version == c.version + 1
    assert lease2.release() is True
    assert store.locks() == []


@pytest.mark.slow
def test_killed_holder_lock_is_taken_by_a_waiter_within_its_ttl(
        redis_proc: RedisProcess, store: Store, namespace: str) -> None:
    ttl = 1.0
    c = new_container(store, "doomed")
    out = CTX.Queue()
    got: dict[str, Any] = {}

    def waiter() -> None:
        try:
            lease = store.lock(c.id, ttl=5.0, timeout=20.0)
            got["at"] = time.monotonic()
            got["lease"] = lease
        except BaseException as exc:  # reported below
            got["error"] = exc

    with Children() as kids:
        p = kids.start(lock_workers.hold_until_killed, redis_proc.port, namespace, c.id, ttl, out)
        tag, token1 = get_msg(out, 60, [p])
        assert tag == "locked"
        th = threading.Thread(target=waiter)
        th.start()
        try:
            time.sleep(0.5)  # let the waiter block; the holder keeps renewing meanwhile
            assert not got, f"the waiter must still be waiting: {got}"
            killed_at = time.monotonic()
            p.kill()
            p.join(10)
        finally:
            th.join(30)
    assert "error" not in got, got.get("error")
    lease: Lease = got["lease"]
    assert lease.token > token1
    assert got["at"] - killed_at < ttl + 1.5
    [info] = store.locks()
    assert (info.token, info.pid) == (lease.token, os.getpid())
    assert lease.release() is True


def test_renewal_keeps_a_short_ttl_lease_alive_through_fenced_commits(store: Store) -> None:
    c = new_container(store, "renewed")
    lease = store.lock(c.id, ttl=0.5)
    commits = 0
    end = time.monotonic() + 2.0
    # commit continuously: the renewer's PEXPIRE on the watched lock key keeps aborting
    # some of these transactions, which must be retried without the caller noticing
    while time.monotonic() < end:
        rec = store.containers.get(c.id)
        rec.restart_count = rec.restart_count + 1
        store.containers.commit(rec, lease=lease)
        store.containers.update(c.id, lambda r: setattr(r, "restart_count", r.restart_count + 1),
                                lease=lease)
        commits += 2
    assert not lease.lost and lease.lost_reason is None and not lease.released
    [info] = store.locks()
    assert info.container_id == c.id and info.token == lease.token
    assert 0 < info.ttl_left <= 0.5
    assert info.age > 1.5  # it outlived its TTL three times over
    final = store.containers.update(c.id, lambda r: r.labels.update(done="yes"), lease=lease)
    assert final.restart_count == commits
    assert final.version == c.version + commits + 1
    assert lease.release() is True
    assert store.locks() == []


def test_fenced_update_slower_than_the_renewal_period_commits(make_store: Callable[..., Store]) -> None:
    # renewals must not abort fenced transactions: with few conflict attempts, an update whose
    # function outlasts the renewal period would otherwise never commit
    store = make_store(conflict_attempts=2)
    c = new_container(store, "slowfn")
    with store.lock(c.id, ttl=0.3) as lease:  # renewed every 0.1 s
        def slow(r: Container) -> None:
            time.sleep(0.25)  # e.g. the update function inspects something slow
            r.labels["slow"] = "done"

        updated = store.containers.update(c.id, slow, lease=lease)
        assert not lease.lost
    assert updated.labels == {"slow": "done"} and updated.version == c.version + 1


# --- reads never wait ----------------------------------------------------------------------------
@pytest.mark.slow
def test_reads_do_not_wait_for_a_hanging_lock_holder(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    a, b = new_container(store, "held-one"), new_container(store, "free-one")
    out, go, release = CTX.Queue(), CTX.Event(), CTX.Event()
    refs = [(a.id, "held-one"), (b.id, "free-one")]
    with Children() as kids:
        holder = kids.start(lock_workers.hang_in_lock, redis_proc.port, namespace, a.id, 1.0, release, out)
        readers = [kids.start(lock_workers.read_everything, redis_proc.port, namespace, refs, 15, go, out)
                   for _ in range(2)]
        first = collect(out, {"locked": 1, "ready": 2}, 60, kids.procs)
        [(token, holder_pid)] = first["locked"]
        go.set()
        # the test process reads too, while the lock is held
        assert store.containers.get("held-one").id == a.id
        assert store.containers.get(a.id[:10]).id == a.id
        assert {x.id for x in store.containers.list(all=True)} == {a.id, b.id}
        assert set(store.snapshot().containers) == {a.id, b.id}
        summaries = collect(out, {"ok": 2}, 60, readers)["ok"]
        # every reader finished while the holder was still hanging inside its lock
        assert holder.is_alive()
        assert lock_value(client, store, a.id)["token"] == token  # type: ignore[index]
        [info] = store.locks()
        assert (info.container_id, info.token, info.pid, info.replica) == (a.id, token, holder_pid,
                                                                           "hanging-replica")
        assert info.host == socket.gethostname()
        release.set()
        tag, released = get_msg(out, 30, [holder])
        assert (tag, released) == ("ok", True)
    for s in summaries:
        assert s["problems"] == []
        assert s["calls"] == 15 * (2 * 5 + 2)
    assert store.locks() == []
    assert store.containers.get(a.id).version == a.version  # nobody wrote


# --- release semantics ----------------------------------------------------------------------------
def test_release_is_true_once_then_harmless(redis_proc: RedisProcess, client: redis.Redis,
                                            store: Store, namespace: str) -> None:
    c = new_container(store, "released")
    lease = store.lock(c.id)
    assert not lease.released and not lease.lost
    assert lease.release() is True
    assert lease.released and not lease.lost and lease.lost_reason is None
    assert lock_value(client, store, c.id) is None
    with other_store(redis_proc, namespace) as other:
        lease2 = other.lock(c.id, timeout=2.0)
        # a second release neither fails nor touches the next holder's lock
        assert lease.release() is True
        assert lock_value(client, store, c.id)["token"] == lease2.token  # type: ignore[index]
        assert not lease2.lost
        assert lease2.release() is True
    # the context manager releases on exit, also when the block raises
    with pytest.raises(RuntimeError), store.lock(c.id) as lease3:
        raise RuntimeError("action failed")
    assert lease3.released and lock_value(client, store, c.id) is None


def test_release_after_the_lock_moved_on_is_false_and_harmless(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "expired")
    reasons: list[str | None] = []
    lease = store.lock(c.id, ttl=10.0, on_lost=lambda lz: reasons.append(lz.lost_reason))
    # the key expires under the holder (failover, eviction, a pause the local clock missed)
    client.delete(store.keys.lock(c.id))
    with other_store(redis_proc, namespace) as other:
        lease2 = other.lock(c.id, timeout=2.0)
        assert lease2.token > lease.token
        assert lease.release() is False
        assert lease.lost and lease.lost_reason and lease.released
        assert len(reasons) == 1 and reasons[0]
        assert lease.release() is False  # still harmless
        assert lock_value(client, store, c.id)["token"] == lease2.token  # type: ignore[index]
        assert not lease2.lost
        assert lease2.release() is True
    assert len(reasons) == 1


def test_only_the_holders_token_releases_or_commits(client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "forged")
    with store.lock(c.id) as lease:
        before = durable_state(client, namespace)
        for token in (lease.token + 1, lease.token - 1, 0):
            forged = forged_lease(store, c.id, token)
            assert forged.release() is False
            assert lock_value(client, store, c.id)["token"] == lease.token  # type: ignore[index]
            forged2 = forged_lease(store, c.id, token)
            rec = store.containers.get(c.id)
            rec.labels["forged"] = "yes"
            with pytest.raises(LockLostError):
                store.containers.commit(rec, lease=forged2)
            assert forged2.lost
        assert durable_state(client, namespace) == before
        assert not lease.lost
        rec = store.containers.get(c.id)
        rec.labels["real"] = "yes"
        assert store.containers.commit(rec, lease=lease).labels == {"real": "yes"}


def test_a_failing_on_lost_callback_does_not_stop_renewals(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    doomed_c, kept_c = new_container(store, "doomed"), new_container(store, "kept")
    calls: list[int] = []

    def explode(lease: Lease) -> None:
        calls.append(lease.token)
        raise RuntimeError("callback bug")

    doomed = store.lock(doomed_c.id, ttl=0.3, on_lost=explode)
    kept = store.lock(kept_c.id, ttl=0.3)
    client.delete(store.keys.lock(doomed_c.id))
    with other_store(redis_proc, namespace) as other, other.lock(doomed_c.id, timeout=2.0):
        deadline = time.monotonic() + 10
        while not calls:  # the renewer finds the other token and calls back (polling, not lease.lost)
            assert time.monotonic() < deadline, "on_lost never called"
            time.sleep(0.02)
        time.sleep(1.0)  # several renewal periods of the other lease, after the callback blew up
        assert not kept.lost, kept.lost_reason
        holders = {i.container_id: i.token for i in store.locks()}
        assert holders[kept_c.id] == kept.token and holders[doomed_c.id] > doomed.token
    assert calls == [doomed.token]
    assert kept.release() is True and doomed.release() is False


# --- fencing --------------------------------------------------------------------------------------
def test_fence_is_checked_in_redis_not_only_by_the_local_clock(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "fenced")
    fired = threading.Event()
    lease = store.lock(c.id, ttl=30.0, on_lost=lambda _l: fired.set())
    client.delete(store.keys.lock(c.id))  # lost without the holder's clock knowing
    with other_store(redis_proc, namespace) as other, other.lock(c.id, timeout=2.0) as lease2:
        before = durable_state(client, namespace)
        rec = store.containers.get(c.id)
        rec.labels["stale"] = "yes"
        with pytest.raises(LockLostError) as ei:
            store.containers.commit(rec, lease=lease)
        assert ei.value.token == lease.token and ei.value.container_id == c.id
        assert lease.lost and fired.is_set()
        assert durable_state(client, namespace) == before
        assert other.containers.update(c.id, lambda r: r.labels.update(ok="yes"), lease=lease2).version == \
            c.version + 1
    assert lease.release() is False


def test_lock_taken_over_between_read_and_exec_aborts_the_commit(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "raced")
    calls: list[int] = []
    with other_store(redis_proc, namespace) as other:
        lease = store.lock(c.id, ttl=30.0)
        taken: list[Lease] = []

        def change(r: Container) -> None:
            calls.append(1)
            if not taken:  # after the fenced read, before EXEC: the lock moves to another holder
                client.delete(store.keys.lock(c.id))
                taken.append(other.lock(c.id, timeout=2.0))
            r.labels["stale"] = "yes"

        with pytest.raises(LockLostError):
            store.containers.update(c.id, change, lease=lease)
        assert len(calls) == 1  # the retry stopped at the fence, before calling change again
        after = store.containers.get(c.id)
        assert after.version == c.version and after.labels == {}
        assert lease.lost
        assert taken[0].release() is True


def test_fenced_writes_on_container_and_execs(client: redis.Redis, store: Store, namespace: str) -> None:
    c = new_container(store, "worker", running=True)
    with store.lock("worker") as lease:
        x = store.execs.create(ExecConfig.new("worker", ["sh"]), lease=lease)
        x.set_running(99)
        x = store.execs.commit(x, lease=lease)
        x = store.execs.update(x.id, lambda e: e.set_exited(0), lease=lease)
        assert x.status == "exited"
        store.execs.delete(x.id, lease=lease)
        renamed = store.containers.rename(c.id, "worker2", lease=lease)
        assert renamed.name == "worker2"
        store.containers.delete("worker2", lease=lease)
    assert lease.released
    with pytest.raises(NotFoundError):
        store.containers.get(c.id)
    with pytest.raises(NotFoundError):
        store.lock(c.id)


# --- observability --------------------------------------------------------------------------------
def test_locks_show_holder_identity_age_ttl_and_wedged(client: redis.Redis, namespace: str,
                                                       make_store: Callable[..., Store]) -> None:
    store = make_store(replica_id="replica-7", wedged_after=0.2)
    c = new_container(store, "observed")
    assert store.locks() == []
    with store.lock(c.id, ttl=5.0) as lease:
        [info] = store.locks()
        secs, micros = client.time()
        now_ms = secs * 1000 + micros // 1000
        assert info.container_id == c.id and info.token == lease.token
        assert (info.replica, info.host, info.pid) == ("replica-7", socket.gethostname(), os.getpid())
        assert 0 <= now_ms - info.acquired_ms < 5000
        assert 0 <= info.age < 5.0
        assert 0 < info.ttl_left <= 5.0
        assert info.wedged is False
        # held longer than wedged_after: reported as wedged (polling, no fixed sleep)
        deadline = time.monotonic() + 10
        while not (info := store.locks()[0]).wedged:
            assert time.monotonic() < deadline, "never reported as wedged"
            time.sleep(0.05)
        assert info.age > 0.2 and info.token == lease.token
        # another store of the namespace sees it with its own threshold
        assert make_store().locks()[0].wedged is False
    assert store.locks() == []
    # without a replica id the holder is named by host and pid
    default = make_store()
    with default.lock(c.id):
        [info] = default.locks()
        assert info.replica == f"{socket.gethostname()}:{os.getpid()}"
    # other namespaces are not shown
    assert make_store(namespace + "-other").locks() == []


# --- tokens ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tokens_strictly_increase_across_stores_processes_and_clients(
        redis_proc: RedisProcess, store: Store, namespace: str) -> None:
    c, other_c = new_container(store, "tokens"), new_container(store, "others")
    tokens: list[int] = []
    with store.lock(c.id) as lease:
        tokens.append(lease.token)
    with other_store(redis_proc, namespace, replica_id="second") as s2:
        with s2.lock("tokens") as lease:
            tokens.append(lease.token)
        with s2.lock(other_c.id):  # other containers draw from the same counter: still increasing
            pass
    out = CTX.Queue()
    with Children() as kids:
        p = kids.start(lock_workers.take_token, redis_proc.port, namespace, c.id, out)
        tag, token = get_msg(out, 60, [p])
        tokens.append(token)
    with other_store(redis_proc, namespace) as s3, s3.lock(c.id[:8]) as lease:
        tokens.append(lease.token)
    with store.lock(c.id) as lease:
        tokens.append(lease.token)
    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False)), tokens


# --- timeouts -------------------------------------------------------------------------------------
def test_waiting_gives_up_after_the_timeout_naming_the_holder(make_store: Callable[..., Store]) -> None:
    holder = make_store(replica_id="holder-r")
    waiter = make_store(replica_id="waiter-r")
    c = new_container(holder, "contended")
    with holder.lock(c.id, ttl=30.0) as lease:
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError) as ei:
            waiter.lock("contended", timeout=0.5)
        elapsed = time.monotonic() - t0
        assert not lease.lost
        with pytest.raises(LockTimeoutError):  # not re-entrant, even for the holding store
            holder.lock(c.id, timeout=0.2)
    assert 0.45 <= elapsed < 0.5 + 3.0
    err = ei.value
    assert isinstance(err, TimeoutError)
    assert err.container_id == c.id and err.timeout == 0.5
    assert err.holder is not None
    assert (err.holder["replica"], err.holder["pid"], err.holder["token"]) == ("holder-r", os.getpid(), lease.token)
    assert err.holder["host"] == socket.gethostname()
    assert "holder-r" in str(err)


def test_waiter_gets_the_lock_on_release_long_before_the_ttl(make_store: Callable[..., Store]) -> None:
    holder, waiter = make_store(), make_store()
    c = new_container(holder, "handover")
    lease = holder.lock(c.id, ttl=30.0)
    timer = threading.Timer(0.3, lease.release)
    timer.start()
    try:
        t0 = time.monotonic()
        with waiter.lock(c.id, timeout=None) as lease2:  # None: wait as long as it takes
            waited = time.monotonic() - t0
            assert lease.released and lease2.token > lease.token
    finally:
        timer.join()
    assert waited < 10.0  # released after 0.3 s; the 30 s TTL played no part


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["", "/", "*", "a b", "ab*", "x\n", None, 42])
def test_lock_rejects_invalid_references(client: redis.Redis, store: Store, namespace: str, ref: Any) -> None:
    new_container(store, "present")
    before = durable_state(client, namespace)
    with pytest.raises(InvalidArgumentError):
        store.lock(ref)
    assert durable_state(client, namespace) == before


@pytest.mark.parametrize("ref", ["missing", "f" * 64, "0123abc"])
def test_lock_on_a_missing_container_is_not_found(client: redis.Redis, store: Store, namespace: str,
                                                  ref: str) -> None:
    new_container(store, "present")
    before = durable_state(client, namespace)
    with pytest.raises(NotFoundError):
        store.lock(ref)
    assert durable_state(client, namespace) == before  # not even a token was drawn


@pytest.mark.parametrize("kwargs", [
    {"ttl": 0}, {"ttl": -1}, {"ttl": math.nan}, {"ttl": math.inf}, {"ttl": -math.inf}, {"ttl": "10"},
    {"ttl": None}, {"ttl": True}, {"ttl": 0.001},
    {"timeout": 0}, {"timeout": -0.5}, {"timeout": math.nan}, {"timeout": math.inf}, {"timeout": "5"},
    {"timeout": False},
    {"on_lost": 42}, {"on_lost": "callback"},
])
def test_lock_rejects_bad_arguments(client: redis.Redis, store: Store, namespace: str,
                                    kwargs: dict[str, Any]) -> None:
    c = new_container(store, "present")
    before = durable_state(client, namespace)
    with pytest.raises(InvalidArgumentError):
        store.lock(c.id, **kwargs)
    assert durable_state(client, namespace) == before


@pytest.mark.parametrize("wedged_after", [0, -1, math.nan, math.inf, "30"])
def test_store_rejects_bad_wedged_after(client: redis.Redis, namespace: str, wedged_after: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Store(client, namespace, wedged_after=wedged_after)


def _exec_for(store: Store, container: str) -> ExecConfig:
    return store.execs.create(ExecConfig.new(container, ["true"]))


# each entry: name -> (store, container A's id, container B's id, lease) -> performs one write on B
WRITES_ON_B: dict[str, Callable[[Store, str, str, Any], Any]] = {
    "containers.update(id)": lambda s, a, b, lease: s.containers.update(
        b, lambda r: r.labels.update(x="y"), lease=lease),
    "containers.update(name)": lambda s, a, b, lease: s.containers.update(
        "bee", lambda r: r.labels.update(x="y"), lease=lease),
    "containers.commit": lambda s, a, b, lease: s.containers.commit(s.containers.get(b), lease=lease),
    "containers.rename": lambda s, a, b, lease: s.containers.rename(b, "bee2", lease=lease),
    "containers.delete": lambda s, a, b, lease: s.containers.delete("bee", lease=lease),
    "execs.create": lambda s, a, b, lease: s.execs.create(ExecConfig.new(b, ["ls"]), lease=lease),
    "execs.update": lambda s, a, b, lease: s.execs.update(
        s.execs.list(b)[0].id, lambda x: x.set_running(7), lease=lease),
    "execs.commit": lambda s, a, b, lease: s.execs.commit(s.execs.list(b)[0], lease=lease),
    "execs.delete": lambda s, a, b, lease: s.execs.delete(s.execs.list(b)[0].id, lease=lease),
}


@pytest.mark.parametrize("write", list(WRITES_ON_B))
def test_lease_of_another_container_is_rejected_and_nothing_written(
        client: redis.Redis, store: Store, namespace: str, write: str) -> None:
    a = new_container(store, "ay", running=True)
    b = new_container(store, "bee", running=True)
    _exec_for(store, b.id)
    with store.lock(a.id) as lease_a:
        before = durable_state(client, namespace)
        with pytest.raises(InvalidArgumentError):
            WRITES_ON_B[write](store, a.id, b.id, lease_a)
        assert durable_state(client, namespace) == before
        assert not lease_a.lost


# regression: _check_lease compared only container IDs, so a lease from another namespace's store fenced the
# write against that namespace's lock
def test_lease_of_another_namespace_is_rejected(client: redis.Redis, namespace: str,
                                                make_store: Callable[..., Store]) -> None:
    here, there = make_store(), make_store(namespace + "-there")
    mine = new_container(here, "same-id")
    there.containers.create(Container.new(image="busybox:1.36", name="same-id", id=mine.id))
    with here.lock(mine.id) as lease:
        before = durable_state(client, namespace + "-there")
        with pytest.raises(InvalidArgumentError):
            there.containers.update(mine.id, lambda r: r.labels.update(x="y"), lease=lease)
        assert durable_state(client, namespace + "-there") == before


@pytest.mark.parametrize("write", list(WRITES_ON_B))
def test_released_lease_cannot_write(client: redis.Redis, store: Store, namespace: str, write: str) -> None:
    b = new_container(store, "bee", running=True)
    _exec_for(store, b.id)
    with store.lock(b.id) as lease:
        pass
    before = durable_state(client, namespace)
    with pytest.raises(LockLostError):
        WRITES_ON_B[write](store, b.id, b.id, lease)
    assert durable_state(client, namespace) == before


# regression: _Repository._on_record and Execs.create read lease.container_id before checking the lease's type,
# so a non-Lease raised AttributeError, not InvalidArgumentError
@pytest.mark.parametrize("write", list(WRITES_ON_B))
def test_a_non_lease_is_an_invalid_argument(client: redis.Redis, store: Store, namespace: str, write: str) -> None:
    b = new_container(store, "bee", running=True)
    _exec_for(store, b.id)
    before = durable_state(client, namespace)
    with pytest.raises(InvalidArgumentError):
        WRITES_ON_B[write](store, b.id, b.id, "not-a-lease")
    assert durable_state(client, namespace) == before


def fast_failing_client(port: int) -> redis.Redis:
    """A client without redis-py's own retries, so statestore's timeouts decide how long it tries."""
    return redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))


def test_unreachable_redis_raises_store_errors_only(namespace: str) -> None:
    dead = fast_failing_client(free_port())
    store = Store(dead, namespace, unavailable_timeout=0.3)
    try:
        with pytest.raises(StoreUnavailableError):
            store.lock("f" * 64, timeout=1.0)
        with pytest.raises(StoreUnavailableError):
            store.locks()
    finally:
        store.close()
        dead.close()


@pytest.mark.slow
def test_redis_gone_while_holding_marks_the_lease_lost(namespace: str) -> None:
    server = RedisProcess().start()
    client = fast_failing_client(server.port)
    store = Store(client, namespace, unavailable_timeout=0.3)
    try:
        c = new_container(store, "orphan")
        fired = threading.Event()
        lease = store.lock(c.id, ttl=0.5, on_lost=lambda _l: fired.set())
        server.kill()
        assert fired.wait(0.5 + 3.0), "on_lost did not fire after Redis went away"
        assert lease.lost and lease.lost_reason
        with pytest.raises(LockLostError):
            store.containers.update(c.id, lambda r: r.labels.update(x="y"), lease=lease)
        try:
            released = lease.release()
        except StateStoreError:
            pass  # Redis is gone: a statestore error is fine, a redis-py one is not
        else:
            assert released is False
        with pytest.raises(StoreUnavailableError):
            store.lock(c.id, timeout=0.5)
        with pytest.raises(StoreUnavailableError):
            store.locks()
    except rex.RedisError as exc:  # pragma: no cover - this is the failure being tested for
        pytest.fail(f"a redis-py exception escaped: {exc!r}")
    finally:
        store.close()
        client.close()
        server.cleanup()


# regression: the renewer blocked in a Redis call (socket timeout x client retries) while Redis hung, so on_lost
# did not fire at the lease's deadline
@pytest.mark.slow
def test_on_lost_fires_by_the_deadline_when_redis_hangs(namespace: str) -> None:
    server = RedisProcess().start()
    client = server.client()  # redis-py defaults: 5 s socket timeout, retries with backoff
    store = Store(client, namespace)
    try:
        c = new_container(store, "partitioned")
        fired = threading.Event()
        lease = store.lock(c.id, ttl=0.3, on_lost=lambda _l: fired.set())
        server.signal(signal.SIGSTOP)  # Redis stops answering (a hang or a partition without RST)
        try:
            # nobody polls lease.lost here: the renewer alone must notice the deadline and tell us
            assert fired.wait(0.3 + 1.7), "on_lost did not fire by the deadline"
        finally:
            server.signal(signal.SIGCONT)
        assert lease.lost
    finally:
        store.close()
        client.close()
        server.cleanup()


def test_locks_counts_the_lock_keys_it_cannot_report(store: Store, client: redis.Redis) -> None:
    """A lock key holding something that is not a lock record is counted as unreadable, not reported."""
    from statestore import LockList

    c = store.containers.create(Container.new("busybox", name="held"))
    with store.lock("held"):
        client.set(store.keys.lock("f" * 64), b"not a lock record")
        locks = store.locks()
        assert isinstance(locks, LockList)
        assert [li.container_id for li in locks] == [c.id] and locks.unreadable == 1
    client.delete(store.keys.lock("f" * 64))
    assert store.locks() == [] and store.locks().unreadable == 0
