"""The watch-fed View: equal to a fresh snapshot once it has caught up, never older than before,
read-your-writes through ``wait_for``, and recovery by relisting.

Multi-process tests use ``tests/watch_workers.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from statestore import (
    Container,
    ExecConfig,
    InvalidArgumentError,
    NotFoundError,
    Snapshot,
    Store,
    View,
    parse_revision,
)
from tests import watch_workers
from tests.faces import background
from tests.redisproc import RedisProcess

_CTX = mp.get_context("spawn")


# --- helpers ------------------------------------------------------------------------------------

def outcome(fn: Callable[[str], Any], ref: str) -> tuple[str, Any]:
    try:
        rec = fn(ref)
    except Exception as exc:  # the error's class is the outcome
        return ("error", type(exc).__name__)
    return ("ok", rec.to_dict())


def refs_for(ids: list[str], names: list[str]) -> list[str]:
    """IDs, their prefixes (ambiguous ones included), names with and without '/', and misses."""
    refs = ["0", "f", "ff", "no-such-name", "", "bad ref", "/", "a" * 64]
    for rid in ids:
        refs += [rid, rid[:1], rid[:2], rid[:3], rid[:12], rid[:63]]
    for name in names:
        refs += [name, "/" + name]
    return refs


LIST_QUERIES: list[tuple[dict[str, Any] | None, bool, int | None]] = [
    (None, True, None), (None, False, None), (None, True, 3), ({"status": "exited"}, True, None),
    ({"status": ["running", "created"]}, True, None), ({"label": "grp=a"}, True, None),
    ({"label": ["w", "grp"]}, True, None), ({"name": "shared"}, True, None),
    ({"ancestor": "nginx:1.27"}, True, None),
]


def assert_view_matches(view: View, snap: Snapshot, store: Store | None = None) -> None:
    """Every container and exec, lookups and lists: the view answers as the snapshot (and the store)."""
    assert view.revision == snap.revision
    assert {c.id: c.to_dict() for c in view.list(all=True)} == {i: c.to_dict() for i, c in snap.containers.items()}
    assert {x.id: x.to_dict() for x in view.execs()} == {i: x.to_dict() for i, x in snap.execs.items()}
    assert len(view) == len(snap.containers)
    for cid, c in snap.containers.items():
        got = view.get(cid)
        assert got == c and got.version == c.version
        assert {x.id for x in view.execs(cid)} == set(c.exec_ids or ())
    names = [c.name for c in snap.containers.values()]
    for ref in refs_for(sorted(snap.containers), names):
        assert outcome(view.get, ref) == outcome(snap.get, ref), ref
        if store is not None:
            assert outcome(view.get, ref) == outcome(store.containers.get, ref), ref
    for ref in refs_for(sorted(snap.execs), []):
        assert outcome(view.get_exec, ref) == outcome(snap.get_exec, ref), ref
        if store is not None:
            assert outcome(view.get_exec, ref) == outcome(store.execs.get, ref), ref
    for filters, all_, limit in LIST_QUERIES:
        mine = [c.to_dict() for c in view.list(filters, all=all_, limit=limit)]
        assert mine == [c.to_dict() for c in snap.list(filters, all=all_, limit=limit)], filters
        if store is not None:
            assert mine == [c.to_dict() for c in store.containers.list(filters, all=all_, limit=limit)], filters


def bump(label: str, value: str) -> Any:
    def change(c: Container) -> None:
        c.labels[label] = value

    return change


def run_writers(port: int, namespace: str, writers: int, ops: int, seed: int) -> list[tuple[Any, ...]]:
    out = _CTX.Queue()
    barrier = _CTX.Barrier(writers)
    procs = [_CTX.Process(target=watch_workers.random_writer, daemon=True,
                          args=(port, namespace, w, seed + w, ops, barrier, out)) for w in range(writers)]
    for p in procs:
        p.start()
    reports: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 120
    try:
        while len(reports) < writers:
            try:
                r = out.get(timeout=0.1)
            except queue.Empty:
                assert time.monotonic() < deadline, f"writers did not finish: {reports}"
                continue
            assert r[0] != "error", "writer failed:\n" + "\n".join(map(str, r))
            reports.append(r)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        out.close()
    return reports


# --- the view under a concurrent workload --------------------------------------------------------------

@pytest.mark.slow
def test_the_view_equals_a_fresh_snapshot_after_a_concurrent_random_workload(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    seeded = [store.containers.create(Container.new("busybox:1.36", name=f"seed-{i}", labels={"grp": "b"}))
              for i in range(5)]
    view = store.view()
    assert view.wait_for(seeded[-1].revision or "", timeout=10)
    seen_versions: dict[str, int] = {}
    seen_revisions: list[tuple[int, int]] = []
    problems: list[str] = []
    samples = [0]
    stop = threading.Event()
    rng = random.Random(7)

    def sample() -> None:
        try:
            while not stop.is_set():
                seen_revisions.append(parse_revision(view.revision))
                listed = view.list(all=True)
                for c in rng.sample(listed, min(len(listed), 5)) if listed else ():
                    try:
                        got = view.get(c.id)
                    except NotFoundError:
                        continue  # deleted since the list
                    for rid, version in ((c.id, c.version), (got.id, got.version)):
                        if version < seen_versions.get(rid, 0):
                            problems.append(f"{rid} went back from version {seen_versions[rid]} to {version}")
                        seen_versions[rid] = max(version, seen_versions.get(rid, 0))
                samples[0] += 1
                time.sleep(0.001)
        except BaseException as exc:  # reported below
            problems.append(repr(exc))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        reports = run_writers(redis_proc.port, namespace, writers=3, ops=400, seed=1000)
    finally:
        stop.set()
        sampler.join(10)
    committed = {k: sum(r[2].get(k, 0) for r in reports) for k in watch_workers.OPS}
    # the workload really did all of it, concurrently
    assert all(committed[k] > 0 for k in watch_workers.OPS), committed

    last = max((r[3] for r in reports if r[3]), key=parse_revision)
    snap = store.snapshot()
    assert parse_revision(snap.revision) >= parse_revision(last)
    assert view.wait_for(snap.revision, timeout=30)
    assert problems == []
    assert samples[0] > 20 and len(seen_versions) > 20
    assert seen_revisions == sorted(seen_revisions)
    assert_view_matches(view, snap, store)
    assert view.relists == 0  # nothing was trimmed: the log alone kept it up to date
    view.close()


# --- read-your-writes -----------------------------------------------------------------------------------

def test_wait_for_a_commits_revision_gives_read_your_writes(store: Store) -> None:
    with store.view() as view:
        c = store.containers.create(Container.new("alpine:3.20", name="ryw", labels={"a": "1"}))
        assert view.wait_for(c.revision or "", timeout=5)
        assert view.get("ryw").version == 1
        for i in range(20):
            c = store.containers.update(c.id, bump("a", str(i)))
            assert view.wait_for(c.revision or "", timeout=5) is True
            got = view.get(c.id)
            assert got.version == c.version and got.labels["a"] == str(i)
            assert got == store.containers.get(c.id)
        c = store.containers.rename("ryw", "ryw-2")
        assert view.wait_for(c.revision or "", timeout=5)
        assert view.get("ryw-2").id == c.id
        with pytest.raises(NotFoundError):
            view.get("ryw")
        c = store.containers.update(c.id, lambda x: x.state.set_running(pid=3))
        x = store.execs.create(ExecConfig.new(c.id, ["sh"]))
        assert view.wait_for(x.revision or "", timeout=5)
        assert view.get_exec(x.id) == store.execs.get(x.id)
        assert [e.id for e in view.execs("ryw-2")] == [x.id]
        gone = store.containers.delete(c.id)
        assert view.wait_for(gone.revision or "", timeout=5)
        with pytest.raises(NotFoundError):
            view.get(c.id)
        with pytest.raises(NotFoundError):
            view.get_exec(x.id)
        assert view.execs() == [] and len(view) == 0

        # a revision nobody committed yet: a bounded wait that says False
        ms, _ = parse_revision(view.revision)
        assert view.wait_for(f"{ms + 3_600_000}-0", timeout=0.2) is False
        assert view.wait_for(f"{ms + 3_600_000}-0", timeout=0) is False
        assert view.wait_for(gone.revision or "", timeout=0) is True
        assert view.wait_for("0-0", timeout=0) is True
        with pytest.raises(InvalidArgumentError):
            view.wait_for("latest", timeout=0)


def test_view_reads_are_private_copies(store: Store) -> None:
    c = store.containers.create(Container.new("alpine:3.20", name="copy", labels={"k": "v"}))
    with store.view() as view:
        assert view.wait_for(c.revision or "", timeout=5)
        mine = view.get("copy")
        mine.labels["k"] = "changed"
        mine.name = "other"
        listed = view.list(all=True)
        listed[0].labels["x"] = "y"
        assert view.get("copy").labels == {"k": "v"}
        assert view.get("copy") == store.containers.get("copy")


def test_view_lookups_match_the_store_including_ambiguous_prefixes(store: Store, client: redis.Redis) -> None:
    ids = ["abc" + f"{i:x}" * 61 for i in (1, 2)] + ["abd" + "3" * 61, "f00" + "4" * 61]
    made = [store.containers.create(Container.new("busybox:1.36", name=f"lk-{i}", id=cid))
            for i, cid in enumerate(ids)]
    # a container whose name looks like another one's ID prefix
    store.containers.create(Container.new("busybox:1.36", name="abd3"))
    store.containers.update("lk-0", lambda x: x.state.set_running(pid=1))
    x1 = store.execs.create(ExecConfig.new("lk-0", ["sh"], id="e1" + "0" * 62))
    store.execs.create(ExecConfig.new("lk-0", ["sh"], id="e1" + "1" * 62))
    last = store.containers.update(made[3].id, bump("grp", "a"))
    with store.view() as view:
        assert view.wait_for(last.revision or "", timeout=5)
        assert_view_matches(view, store.snapshot(), store)
        assert outcome(view.get, "abc") == ("error", "AmbiguousReferenceError")
        assert outcome(view.get, "abd3")[1]["Name"] == "/abd3"  # a name wins over an ID prefix
        assert outcome(view.get_exec, "e1") == ("error", "AmbiguousReferenceError")
        assert view.get_exec("e10") == x1
        assert outcome(view.get, "") == ("error", "InvalidArgumentError")


# --- relisting -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_view_that_falls_behind_a_trimmed_log_relists_and_converges(
        redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    """The view runs in its own process, which is SIGSTOPped while far more than the cap is committed."""
    store = Store(client, namespace, changelog_maxlen=20)
    cs = [store.containers.create(Container.new("busybox:1.36", name=f"old-{i}", labels={"grp": "a"}))
          for i in range(8)]
    for c in cs[:4]:
        store.containers.update(c.id, lambda x: x.state.set_running(pid=2))
        store.execs.create(ExecConfig.new(c.id, ["sh"]))
    commands, out = _CTX.Queue(), _CTX.Queue()
    child = _CTX.Process(target=watch_workers.view_worker, args=(redis_proc.port, namespace, commands, out),
                         daemon=True)
    child.start()
    try:
        ready = out.get(timeout=60)
        assert ready[0] == "ready", ready
        pid, view_rev = ready[1], ready[2]
        os.kill(pid, signal.SIGSTOP)
        try:
            # while it sleeps: deletes (with execs), creates, renames (a swap), exec churn, 300+ updates
            store.containers.delete(cs[0].id)
            store.containers.delete(cs[5].id)
            store.containers.rename(cs[1].id, "tmp-name")
            store.containers.rename(cs[2].id, "old-1")
            store.containers.rename(cs[1].id, "old-2")
            new = [store.containers.create(Container.new("nginx:1.27", name=f"new-{i}")) for i in range(4)]
            reborn = store.containers.create(Container.new("nginx:1.27", name="old-0"))  # a deleted one's name
            for x in store.execs.list(cs[3].id):
                store.execs.delete(x.id)
            store.execs.create(ExecConfig.new(cs[2].id, ["top"]))
            for i in range(300):
                store.containers.update(new[i % 4].id, bump("n", str(i)))
            store.containers.update(cs[7].id, bump("grp", "b"))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert client.xrange(store.keys.log, view_rev, view_rev) == []  # trimmed past the view
        snap = store.snapshot()
        commands.put(snap.revision)
        report = out.get(timeout=90)
        assert report[0] == "view", report
        _, caught_up, relists, revision, containers, execs, by_name = report
        assert caught_up is True
        assert relists >= 1
        assert revision == snap.revision
        assert containers == {i: c.to_dict() for i, c in snap.containers.items()}
        assert execs == {i: x.to_dict() for i, x in snap.execs.items()}
        assert by_name == {c.name: i for i, c in snap.containers.items()}
        assert (by_name["old-0"], by_name["old-1"], by_name["old-2"]) == (reborn.id, cs[2].id, cs[1].id)
        assert cs[0].id not in containers and cs[5].id not in containers

        # and it keeps following the log after the relist
        more = store.containers.update(cs[7].id, bump("after", "relist"))
        commands.put(more.revision)
        report = out.get(timeout=60)
        assert report[0] == "view" and report[1] is True
        assert report[4][cs[7].id] == store.containers.get(cs[7].id).to_dict()
        commands.put(None)
        assert out.get(timeout=30) == ("closed",)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(5)
        commands.close()
        out.close()


def test_a_view_relists_when_the_log_goes_backwards(client: redis.Redis, store: Store) -> None:
    c = store.containers.create(Container.new("busybox:1.36", name="back", labels={"grp": "a"}))
    d = store.containers.create(Container.new("busybox:1.36", name="doomed"))
    with store.view() as view:
        assert view.wait_for(d.revision or "", timeout=5)
        assert view.relists == 0
        client.delete(store.keys.log, store.keys.log_seq)  # the log restarts (seq 1 again)
        time.sleep(0.002)
        e = store.containers.update(c.id, bump("n", "1"))
        assert view.wait_for(e.revision or "", timeout=10)
        deadline = time.monotonic() + 10
        while view.relists < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert view.relists >= 1
        f = store.containers.delete(d.id)
        g = store.containers.create(Container.new("busybox:1.36", name="fresh"))
        assert view.wait_for(g.revision or "", timeout=10)
        assert parse_revision(g.revision or "") > parse_revision(f.revision or "")
        assert_view_matches(view, store.snapshot(), store)


def _dump(client: redis.Redis, namespace: str) -> dict[bytes, bytes]:
    return {k: client.dump(k) for k in client.scan_iter(match=f"ss:{{{namespace}}}:*")}  # type: ignore[misc]


def _restore(client: redis.Redis, namespace: str, dump: dict[bytes, bytes]) -> None:
    for k in list(client.scan_iter(match=f"ss:{{{namespace}}}:*")):
        client.delete(k)
    for k, v in dump.items():
        client.restore(k, 0, v)


# regression test (was a strict xfail until the fix)
def test_after_a_failover_that_lost_commits_the_view_converges_to_the_store(
        client: redis.Redis, store: Store, namespace: str) -> None:
    c = store.containers.create(Container.new("busybox:1.36", name="fo", labels={"n": "0"}))
    c = store.containers.update(c.id, bump("n", "1"))
    replica = _dump(client, namespace)  # what a lagging replica holds: version 2
    with store.view() as view:
        lost = store.containers.update(c.id, bump("n", "lost-3"))
        lost = store.containers.update(c.id, bump("n", "lost-4"))
        assert view.wait_for(lost.revision or "", timeout=5)
        assert view.get("fo").labels["n"] == "lost-4"
        _restore(client, namespace, replica)  # the failover: versions 3 and 4 are gone
        time.sleep(0.002)
        now = store.containers.update(c.id, bump("n", "new-3"))
        now = store.containers.update(c.id, bump("n", "new-4"))
        assert now.version == 4
        assert view.wait_for(now.revision or "", timeout=10)
        assert view.relists >= 1
        # read-your-writes: the view must show the commit just made, not the lost one
        assert view.get("fo").labels["n"] == "new-4"
        assert_view_matches(view, store.snapshot(), store)


def test_close_stops_the_view(store: Store) -> None:
    def view_threads() -> int:
        return background(store, "statestore-view")

    before = view_threads()
    view = store.view()
    assert view_threads() == before + 1
    c = store.containers.create(Container.new("busybox:1.36", name="closed-view"))
    assert view.wait_for(c.revision or "", timeout=5)
    view.close()
    assert view_threads() == before
    rev = view.revision
    store.containers.update(c.id, bump("k", "v"))
    time.sleep(0.1)
    assert view.revision == rev  # a closed view no longer follows the log
    assert view.get(c.id).version == 1


def test_a_view_closed_right_after_it_opened_leaves_no_thread_behind(store: Store) -> None:
    """close() racing the view's start: the watch it is about to open must not outlive it
    (it used to block in XREAD until its socket timeout, after close() had given up on it)."""
    store.containers.create(Container.new("nginx", name="web"))
    for _ in range(10):
        with store.view() as view:
            assert view.get("web").name == "web"
        assert background(store, "statestore-view") == 0
