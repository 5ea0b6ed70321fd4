"""Redis restarts, through the public API only.

* An AOF (``appendfsync always``) Redis is SIGKILLed under a workload of several
  committing processes and restarted on the same port and directory about a
  second later: every acknowledged commit survives, counters equal the
  acknowledged increments (indeterminate ones allowed either way, and counted),
  ``fsck`` is clean, and a watcher process that ran across the restart delivered
  every change-log entry once, in order.
* With Redis down longer than ``unavailable_timeout``, a get, an update and a lock
  call raise ``StoreUnavailableError`` after about that budget; once Redis is back
  the same store works again.
* An RDB-only Redis restarted from an older snapshot (writes lost): a watcher
  raises ``LogRegressionError`` instead of going on silently, a ``View`` relists,
  and what the view shows is checked against ``statestore/_async/_view.py``'s documented
  contract.

The figures printed (restart to first commit, commits acknowledged) are
measurements, not assertions.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from statestore import (
    CommitIndeterminateError,
    Container,
    Event,
    LogRegressionError,
    NotFoundError,
    Store,
    StoreUnavailableError,
    View,
    parse_revision,
)
from tests import restart_workers
from tests.redisproc import RedisProcess
from tests.restart_workers import BIG, COUNTER_LABEL, increment

CTX = mp.get_context("spawn")
END_NAME = "restart-end"


def complete_lines(path: Path) -> list[str]:
    """The lines a child has finished writing (it may be in the middle of the next one)."""
    if not path.exists():
        return []
    data = path.read_text()
    return data[: data.rfind("\n") + 1].splitlines()


def log_rows(client: redis.Redis, store: Store) -> list[list[Any]]:
    """Every change-log entry as the watch worker writes it (without its timestamp)."""
    return [[f[b"kind"].decode(), f[b"id"].decode(), int(f[b"version"]), f[b"type"].decode(), rid.decode(),
             int(f[b"seq"]), f[b"name"].decode(), f[b"container"].decode()]
            for rid, f in client.xrange(store.keys.log)]


def drain_reports(out: Any, procs: list[Any], want: int, timeout: float) -> list[tuple[Any, ...]]:
    """``want`` reports from the children (a child that died without one fails the test)."""
    reports: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    while len(reports) < want:
        try:
            reports.append(out.get(timeout=0.2))
            continue
        except queue.Empty:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(reports)} of {want} reports within {timeout:g}s: {reports}")
        if all(not p.is_alive() for p in procs):
            try:
                reports.append(out.get(timeout=2))
                continue
            except queue.Empty:
                raise AssertionError(f"children exited without reporting: {reports}, "
                                     f"exit codes {[p.exitcode for p in procs]}") from None
    return reports


def until(what: str, cond: Callable[[], bool], timeout: float, procs: list[Any], out: Any) -> None:
    """Wait for ``cond``; fail early with the child's report if a child died."""
    deadline = time.monotonic() + timeout
    while not cond():
        dead = [p for p in procs if not p.is_alive()]
        if dead:
            try:
                report = out.get(timeout=2)
            except queue.Empty:
                report = None
            raise AssertionError(f"a child exited while waiting for {what}: {report} "
                                 f"(exit codes {[p.exitcode for p in procs]})")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# --- 1. acknowledged commits survive a SIGKILL of an AOF Redis ----------------------------------------------

WORKERS = 3
SHARED = 4
BUDGET = 15.0  # the workers' unavailable_timeout: far longer than the ~1 s outage


@pytest.mark.slow
def test_acknowledged_commits_survive_a_sigkill_and_restart_and_a_watcher_resumes_in_order(
        aof_server: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns, url = "durable", aof_server.url
    admin = Store.from_url(url, namespace=ns, unavailable_timeout=BUDGET, changelog_maxlen=BIG)
    shared = [admin.containers.create(Container.new("busybox:1.36", name=f"shared-{i}",
                                                    labels={COUNTER_LABEL: "0"})).id for i in range(SHARED)]
    stop, out = CTX.Event(), CTX.Queue()
    watch_path = tmp_path / "watch.jsonl"
    paths = [tmp_path / f"worker-{i}.jsonl" for i in range(WORKERS)]
    watcher = CTX.Process(target=restart_workers.watch_worker,
                          args=(url, ns, "0-0", str(watch_path), END_NAME, out))
    workers = [CTX.Process(target=restart_workers.commit_worker,
                           args=(url, ns, i, shared, BUDGET, str(p), stop, out)) for i, p in enumerate(paths)]
    procs = [watcher, *workers]

    def acked() -> int:
        return sum(len(complete_lines(p)) for p in paths)

    try:
        for p in procs:
            p.start()
        until("commits and events before the kill",
              lambda: acked() >= 250 and len(complete_lines(watch_path)) >= 100, 90, procs, out)
        aof_server.kill()  # SIGKILL mid-workload: what was acknowledged is on disk (appendfsync always)
        t_kill = time.time()
        lines_at_kill, watched_at_kill = acked(), len(complete_lines(watch_path))
        time.sleep(1.0)
        t_restart = time.time()
        aof_server.start()  # same port, same directory: the AOF is loaded again
        t_up = time.time()
        until("commits after the restart", lambda: acked() >= lines_at_kill + 250, 60 + BUDGET, procs, out)
        stop.set()
        reports = drain_reports(out, workers, WORKERS, BUDGET + 30)
        for p in workers:
            p.join(10)
        end = admin.containers.create(Container.new("busybox:1.36", name=END_NAME))
        reports += drain_reports(out, [watcher], 1, 60)
        watcher.join(10)
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)

    assert sorted(r[0] for r in reports) == ["done"] * WORKERS + ["watched"], reports
    rows = [json.loads(line) for p in paths for line in complete_lines(p)]
    ops = Counter(r["op"] for r in rows)
    conflicts = sum(r[2].get("conflict", 0) for r in reports if r[0] == "done")
    assert ops["unavailable"] == 0, [r for r in rows if r["op"] == "unavailable"][:3]  # the budget covered it

    snap = admin.snapshot()
    versions = {cid: c.version for cid, c in snap.containers.items()}
    # every acknowledged commit is there, at least at the acknowledged version
    for r in rows:
        if r["op"] in ("create", "inc"):
            assert r["id"] in versions, f"acknowledged {r['op']} of {r['id']} lost"
            assert versions[r["id"]] >= r["version"], (r, versions[r["id"]])
    created = {r["id"] for r in rows if r["op"] == "create"}
    maybe_created = {r["id"] for r in rows if r["op"] == "create?"}
    assert set(versions) - {end.id} <= set(shared) | created | maybe_created  # nothing else appeared
    incs = Counter(r["id"] for r in rows if r["op"] == "inc")
    unknown = Counter(r["id"] for r in rows if r["op"] == "inc?")
    inc_versions: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r["op"] == "inc":
            inc_versions[r["id"]].append(r["version"])
    for cid in set(shared) | created | (maybe_created & set(versions)):
        c = snap.containers[cid]
        count = int(c.labels[COUNTER_LABEL])
        # each acknowledged increment is in the counter; an indeterminate one may or may not be
        assert incs[cid] <= count <= incs[cid] + unknown[cid], (cid, incs[cid], unknown[cid], count)
        assert c.version == 1 + count  # every commit of these records after the create is one increment
        assert len(set(inc_versions[cid])) == len(inc_versions[cid])  # no two acknowledgements of one version
    report = admin.fsck()
    assert report.clean, report.text()

    # the watcher: one process across the restart, every entry of the log once, in order
    log = log_rows(admin.client, admin)
    watched = [json.loads(line) for line in complete_lines(watch_path)]
    assert [w[:8] for w in watched] == log
    assert next(r for r in reports if r[0] == "watched")[1] == len(log)
    assert [r[5] for r in log] == list(range(1, len(log) + 1))
    revisions = [parse_revision(r[4]) for r in log]
    assert all(a < b for a, b in zip(revisions, revisions[1:], strict=False))
    last_version: dict[str, int] = {}
    for kind, rid, version, etype, *_ in watched:
        assert kind == "container" and etype in ("create", "update")
        assert version == last_version.get(rid, 0) + 1, (rid, last_version.get(rid), version)
        last_version[rid] = version
    assert last_version == versions  # each record's events end at its stored version
    assert 0 < watched_at_kill < len(watched)
    assert any(w[8] > t_restart for w in watched[watched_at_kill:])

    acknowledged = [r for r in rows if r["op"] in ("create", "inc")]
    first = min(r["t"] for r in acknowledged if r["t"] > t_restart)
    before = sum(1 for r in acknowledged if r["t"] <= t_kill)
    in_flight = Counter(r["op"] for r in rows if r["t0"] < t_kill < r["t"])  # calls the outage interrupted
    with capsys.disabled():
        print(f"\nrestart durability: {len(acknowledged)} commits acknowledged by {WORKERS} processes "
              f"({before} before the SIGKILL, {len(acknowledged) - before} after), "
              f"{ops['inc?'] + ops['create?']} indeterminate (CommitIndeterminateError: "
              f"{ops['inc?']} increments, {ops['create?']} creates), {conflicts} ConflictErrors, "
              f"{ops['unavailable']} StoreUnavailableErrors; {len(log)} events watched; "
              f"calls in progress at the kill that completed after the restart: {dict(in_flight)}\n"
              f"  down {t_restart - t_kill:.2f}s; server answering {t_up - t_restart:.3f}s after the restart; "
              f"first acknowledged commit {first - t_restart:.3f}s after the restart "
              f"({first - t_up:.3f}s after the server answered, {first - t_kill:.2f}s after the kill)")
    admin.close()


# --- 2. the retry budget ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_calls_give_up_after_the_budget_while_redis_is_down_and_the_same_store_works_when_it_is_back(
        aof_server: RedisProcess, capsys: pytest.CaptureFixture[str]) -> None:
    budget = 1.5
    store = Store.from_url(aof_server.url, namespace="budget", unavailable_timeout=budget)
    made = store.containers.create(Container.new("busybox:1.36", name="web", labels={COUNTER_LABEL: "0"}))
    store.containers.update("web", increment)
    with store.lock("web", ttl=5.0, timeout=5.0):
        pass
    aof_server.kill()
    took: dict[str, float] = {}
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: store.containers.get("web"),
        "update": lambda: store.containers.update("web", increment),
        "lock": lambda: store.lock("web", ttl=5.0, timeout=5.0),
    }
    for name, call in calls.items():
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError) as ei:
            call()
        took[name] = time.monotonic() - t0
        # Redis was down before the call: nothing was sent, so the outcome is not in doubt
        assert not isinstance(ei.value, CommitIndeterminateError), (name, ei.value)
        assert took[name] < budget + 5, (name, took[name])   # bounded by the budget (plus a loose margin)
        assert took[name] >= budget / 2, (name, took[name])  # it retried instead of failing at once
    with capsys.disabled():
        print(f"\nwith Redis down, budget {budget:g}s: " + ", ".join(f"{k} raised after {v:.2f}s"
                                                                     for k, v in took.items()))

    aof_server.start()  # same port and directory; the store object is not rebuilt
    assert store.containers.get("web").version == 2
    with store.lock("web", ttl=5.0, timeout=5.0) as lease:
        done = store.containers.update("web", increment, lease=lease)
    assert (done.id, done.version, done.labels[COUNTER_LABEL]) == (made.id, 3, "2")
    assert [c.name for c in store.containers.list(all=True)] == ["web"]
    report = store.fsck()
    assert report.clean, report.text()
    store.close()


# --- 3. a restart that lost writes (RDB only) ----------------------------------------------------------------

@dataclass
class Regression:
    """What one RDB-restart scenario observed (see ``rdb_regression``)."""

    ids: dict[str, str]                          # name -> container ID
    saved: dict[str, int | None]                 # versions in the RDB snapshot
    shown: dict[str, int | None]                 # what the view showed just before the crash
    after: dict[str, int | None]                 # what the view showed after its relist
    stored: dict[str, int | None]                # what the store holds after the restart and one commit
    pre_kill_events: list[tuple[str, str, int]]  # (name, type, version) the watcher delivered before the crash
    watch_events: list[tuple[str, str, int]]     # everything it delivered
    watch_error: BaseException | None
    last_pre_kill_revision: str
    new_commit_revision: str
    relists_before: int
    relists_after: int
    regressions_before: int = 0
    regressions_after: int = 0
    samples: list[tuple[str, int | None]] = field(default_factory=list)  # (name, version) in read order
    view_revisions: list[str] = field(default_factory=list)
    later_create: int | None = None              # the view's version of a container created after the relist


def _view_versions(view: View, ids: dict[str, str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, cid in ids.items():
        try:
            out[name] = view.get(cid).version
        except NotFoundError:
            out[name] = None
    return out


@pytest.fixture(scope="module")
def rdb_regression() -> Iterator[Regression]:
    """An RDB-only Redis: commits, SAVE, more commits seen by a watcher and a view, SIGKILL,
    restart from the older RDB, one new commit; record what the watcher and the view did."""
    server = RedisProcess().start()  # no AOF, no automatic saves: only the explicit SAVE below persists
    store = Store.from_url(server.url, namespace="rdb", unavailable_timeout=10.0, changelog_maxlen=BIG)
    admin = server.client()
    view: View | None = None
    stop_sampling = threading.Event()
    threads: list[threading.Thread] = []
    try:
        ids = {}
        for name in ("a", "b", "c"):
            ids[name] = store.containers.create(Container.new("busybox:1.36", name=f"rdb-{name}")).id
        store.containers.update(ids["a"], increment)
        assert admin.save()
        snap = store.snapshot()
        saved: dict[str, int | None] = {n: snap.containers[i].version for n, i in ids.items()}

        view = live = store.view()
        watch = store.watch(since=snap.revision, block=0.2, reconnect_timeout=30.0)
        got: list[Event] = []
        failure: list[BaseException] = []

        def consume() -> None:
            try:
                for ev in watch:
                    got.append(ev)
            except BaseException as exc:
                failure.append(exc)

        threads.append(threading.Thread(target=consume, name="rdb-watcher", daemon=True))
        threads[-1].start()

        # after the snapshot: three updates of a, two of b, a new container d, the delete of c
        for _ in range(3):
            last = store.containers.update(ids["a"], increment)
        for _ in range(2):
            last = store.containers.update(ids["b"], increment)
        d = store.containers.create(Container.new("busybox:1.36", name="rdb-d"))
        ids["d"] = d.id
        saved["d"] = None
        last = store.containers.delete(ids["c"])
        assert last.revision is not None and view.wait_for(last.revision, timeout=10)
        deadline = time.monotonic() + 10
        while len(got) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        names = {i: n for n, i in ids.items()}
        pre_kill = [(names[e.id], e.type, e.version) for e in got]
        shown = _view_versions(view, ids)
        relists_before = view.relists
        regressions_before = view.regressions

        samples: list[tuple[str, int | None]] = []
        revisions: list[str] = []

        def sample() -> None:
            while not stop_sampling.is_set():
                for name, v in _view_versions(live, ids).items():
                    samples.append((name, v))
                revisions.append(live.revision)
                time.sleep(0.002)

        threads.append(threading.Thread(target=sample, name="rdb-sampler", daemon=True))
        threads[-1].start()

        server.restart(kill=True, down_for=0.3)  # SIGKILL; the restart loads the older dump.rdb
        assert store.containers.get(ids["a"]).version == saved["a"]  # the writes after SAVE are gone
        time.sleep(0.002)  # the new entry's ID is in a later millisecond than anything before the crash
        new = store.containers.update(ids["b"], increment)  # the log's sequence numbers go backwards here
        assert new.revision is not None
        threads[0].join(30)
        assert not threads[0].is_alive(), "the watcher neither raised nor stopped"
        deadline = time.monotonic() + 30
        while view.relists <= relists_before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert view.wait_for(new.revision, timeout=30)
        time.sleep(0.05)  # a few more samples after the relist
        stop_sampling.set()
        threads[1].join(10)
        after = _view_versions(view, ids)
        stored: dict[str, int | None] = {}
        for name, cid in ids.items():
            try:
                stored[name] = store.containers.get(cid).version
            except NotFoundError:
                stored[name] = None
        e = store.containers.create(Container.new("busybox:1.36", name="rdb-e"))
        assert e.revision is not None and view.wait_for(e.revision, timeout=10)
        watch.close()
        yield Regression(
            ids=ids, saved=saved, shown=shown, after=after, stored=stored, pre_kill_events=pre_kill,
            watch_events=[(names.get(ev.id, ev.id), ev.type, ev.version) for ev in got],
            watch_error=failure[0] if failure else None, last_pre_kill_revision=last.revision,
            new_commit_revision=new.revision, relists_before=relists_before, relists_after=view.relists,
            regressions_before=regressions_before, regressions_after=view.regressions,
            samples=samples, view_revisions=revisions, later_create=view.get("rdb-e").version,
        )
    finally:
        stop_sampling.set()
        if view is not None:
            view.close()
        store.close()
        admin.close()
        server.cleanup()


@pytest.mark.slow
def test_after_a_restart_that_lost_writes_the_watcher_raises_log_regression_and_the_view_relists(
        rdb_regression: Regression) -> None:
    r = rdb_regression
    # the precondition: the restart really went back to the snapshot
    assert r.stored == {"a": 2, "b": 2, "c": 1, "d": None}
    assert r.saved == {"a": 2, "b": 1, "c": 1, "d": None}
    assert r.shown == {"a": 5, "b": 3, "c": None, "d": 1}
    # the watcher delivered what it saw before the crash, then refused to go on
    assert r.pre_kill_events == [("a", "update", 3), ("a", "update", 4), ("a", "update", 5), ("b", "update", 2),
                                 ("b", "update", 3), ("d", "create", 1), ("c", "delete", 1)]
    assert r.watch_events == r.pre_kill_events  # nothing of the older state was served
    assert isinstance(r.watch_error, LogRegressionError), r.watch_error
    assert r.watch_error.last_revision == r.last_pre_kill_revision
    assert r.watch_error.found_revision == r.new_commit_revision
    # the view relisted (the documented reaction to LogRegressionError) and went on
    assert r.relists_before == 0 and r.relists_after >= 1
    assert r.after["d"] is None  # "records missing from the new list are gone"
    assert r.after["c"] == 1     # the lost delete: the store holds c again, and so does the view
    assert r.later_create == 1   # and it keeps following the log
    # view.revision never goes back (docs/api.md)
    keys = [parse_revision(x) for x in r.view_revisions]
    assert keys and all(a <= b for a, b in zip(keys, keys[1:], strict=False))


@pytest.mark.slow
def test_after_a_restart_that_lost_writes_the_view_adopts_the_store_and_says_so(
        rdb_regression: Regression) -> None:
    """The View's documented contract (statestore/_async/_view.py, docs/api.md "Regressions"): versions
    never go back, except when the store itself lost commits; then the view adopts what Redis holds
    and counts it in ``regressions`` -- never silently."""
    r = rdb_regression
    assert r.regressions_before == 0 and r.regressions_after >= 1
    # it converged to the store, the older versions included (a: 5 -> 2, b: 3 -> 2)
    assert r.after == r.stored
    # before the regression the view only went forward
    highest: dict[str, int] = {}
    for name, v in r.shown.items():
        if v is not None:
            highest[name] = v
    assert r.shown == {"a": 5, "b": 3, "c": None, "d": 1}
    # every version it showed during the episode is one it showed before, or the store's current one
    for name, v in r.samples:
        if v is None:
            continue
        if v < highest.get(name, 0):
            assert v == r.stored[name], (name, v)
