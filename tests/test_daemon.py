"""``statestore daemon``: real replica processes against the suite's private redis-server.

Work goes through the namespace's work queue (``statestore.daemon.submit``)
and comes back on the results stream; the tests look at the store, the locks
and the queue from outside, as an operator would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statestore import Container, InvalidArgumentError, Store, daemon
from statestore.daemon import Result
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


class Replicas:
    """Starts replica processes for one namespace and cleans them up."""

    def __init__(self, redis_proc: RedisProcess, namespace: str, tmp_path: Path) -> None:
        self.url = redis_proc.url
        self.namespace = namespace
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.store = Store.from_url(self.url, namespace=namespace)
        daemon.ensure_group(self.store)
        self.last = "0-0"
        self.results: list[Result] = []

    def start(self, rid: str, *extra: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "STATESTORE_REDIS_URL"}
        env["PYTHONPATH"] = str(ROOT)
        log = open(self.tmp / f"{rid}.log", "ab")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            [sys.executable, "-m", "statestore", "--redis-url", self.url, "--namespace", self.namespace,
             "daemon", "--replica-id", rid, "--latency-ms", "1:5", "--health-interval", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        self.procs[rid] = proc
        wait_for(lambda: rid in self.consumers() or proc.poll() is not None, 20, f"replica {rid} registered")
        assert proc.poll() is None, self.log(rid)
        return proc

    def consumers(self) -> set[str]:
        found = self.store.client.xinfo_consumers(self.store.keys.work_queue, daemon.GROUP)
        return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in found}

    def log(self, rid: str) -> str:
        return (self.tmp / f"{rid}.log").read_text(errors="replace")

    def submit(self, action: str, container: str, **args: Any) -> str:
        return daemon.submit(self.store, action, container, **args)

    def wait(self, items: list[str], timeout: float = 15) -> dict[str, Result]:
        """The results of these work items (waits for all of them)."""
        want = set(items)
        deadline = time.monotonic() + timeout
        while True:
            got = {r.item: r for r in self.results if r.item in want}
            if len(got) == len(want):
                return got
            assert time.monotonic() < deadline, f"no result for {want - set(got)} within {timeout}s"
            for r in daemon.read_results(self.store, self.last, block=0.1):
                self.last = r.entry
                self.results.append(r)

    def create(self, *names: str, start: bool = False) -> list[str]:
        ids = [Container.new("busybox").id for _ in names]
        res = self.wait([self.submit("create", cid, name=n, image="nginx:1.27") for cid, n in zip(ids, names,
                                                                                                   strict=True)])
        assert all(r.ok for r in res.values()), res
        if start:
            res = self.wait([self.submit("start", cid) for cid in ids])
            assert all(r.ok and r.status == "running" for r in res.values()), res
        return ids

    def pending(self) -> int:
        p = self.store.client.xpending(self.store.keys.work_queue, daemon.GROUP)
        return int(p["pending"] if isinstance(p, dict) else p[0])

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.store.close()


@pytest.fixture
def replicas(redis_proc: RedisProcess, namespace: str, tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(redis_proc, namespace, tmp_path)
    try:
        yield r
    finally:
        r.close()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


def running_container(store: Store, name: str) -> str:
    """A running container made directly in the store (no replica's runtime knows it)."""
    c = store.containers.create(Container.new("nginx:1.27", name=name))
    return store.containers.update(c.id, lambda x: x.state.set_running(pid=4242)).id


def held_by(store: Store, cid: str) -> str | None:
    return next((li.replica for li in store.locks() if li.container_id == cid), None)


# --- actions -------------------------------------------------------------------------------------------


def test_actions_from_the_queue_are_performed_under_the_containers_locks(replicas: Replicas) -> None:
    replicas.start("r1")
    replicas.start("r2")
    store = replicas.store
    web, db, job = replicas.create("web", "db", "job", start=True)
    assert {r.replica for r in replicas.results} <= {"r1", "r2"}

    res = replicas.wait([replicas.submit("exec", web, cmd=["ls", "/"]), replicas.submit("pause", db),
                         replicas.submit("rename", job, name="job-2")])
    assert all(r.ok for r in res.values()), res
    assert store.containers.get("db").status == "paused"
    assert store.containers.get("job-2").id == job
    (xid,) = store.containers.get(web).exec_ids
    assert store.execs.get(xid).status == "exited" and store.execs.get(xid).exit_code == 0

    # an action waits for the container's lock: hold it here, and the replica can only finish after release
    with store.lock(db, ttl=5, timeout=2):
        item = replicas.submit("unpause", db)
        time.sleep(0.8)
        assert store.containers.get(db).status == "paused"
    r = replicas.wait([item])[item]
    assert r.ok and r.status == "running" and r.duration_ms >= 500

    # while a replica acts, the lock is its own (the runtime hangs 1 s in this stop)
    item = replicas.submit("stop", web, hang=1.0)
    wait_for(lambda: held_by(store, web) is not None, 5, "the stop holds web's lock")
    assert held_by(store, web) in ("r1", "r2")
    r = replicas.wait([item])[item]
    assert r.ok and r.status == "exited" and r.duration_ms >= 1000
    assert held_by(store, web) is None

    # illegal transitions, missing containers and runtime failures are failed actions, not crashes
    bad = [replicas.submit("unpause", web), replicas.submit("start", Container.new("x").id),
           replicas.submit("start", web, fail=True), replicas.submit("remove", db)]
    res = replicas.wait(bad)
    assert [res[i].ok for i in bad] == [False] * 4
    assert res[bad[0]].error.startswith("InvalidStateError: cannot unpause container")
    assert res[bad[1]].error.startswith("NotFoundError: No such container")
    assert res[bad[2]].error.startswith("RuntimeFailure:")
    assert "container is running" in res[bad[3]].error
    assert store.containers.get(web).status == "exited"

    res = replicas.wait([replicas.submit("remove", db, force=True), replicas.submit("restart", job),
                         replicas.submit("kill", job)])
    assert all(r.ok for r in res.values() if r.action != "kill"), res  # kill fails if it comes first
    assert {c.name for c in store.containers.list(all=True)} == {"web", "job-2"}
    assert all(p.poll() is None for p in replicas.procs.values())
    # every successful action counted once in the container's own commit
    for c in store.containers.list(all=True):
        ok = sum(r.ok for r in replicas.results if r.container == c.id)
        assert daemon.counter(c) == ok
    assert replicas.pending() == 0 and store.client.xlen(store.keys.work_queue) == 0


def test_submit_refuses_unknown_actions(replicas: Replicas) -> None:
    with pytest.raises(InvalidArgumentError):
        daemon.submit(replicas.store, "frobnicate", Container.new("x").id)


def test_exit_after_n_items(replicas: Replicas) -> None:
    proc = replicas.start("r1", "--exit-after", "2")
    replicas.create("one", "two")
    assert proc.wait(10) == 0
    assert "stopped (--exit-after 2): 2 actions" in replicas.log("r1")


def test_replicated_durability_without_replicas_fails_actions_and_leaves_no_lock(replicas: Replicas) -> None:
    """--durability replicated reaches the store: with no replica to acknowledge, the lock
    acquisition raises DurabilityError, the action fails with it and the lock is released."""
    replicas.start("r1", "--durability", "replicated", "--durability-timeout", "0.05")
    cid = replicas.store.containers.create(Container.new("nginx:1.27", name="lonely")).id
    item = replicas.submit("start", cid)
    r = replicas.wait([item])[item]
    assert not r.ok and "0 of 1 required replica(s) acknowledged" in r.error
    assert replicas.store.locks() == []
    assert replicas.store.containers.get(cid).status == "created"


@pytest.mark.parametrize("args, message", [
    (["--lock-ttl", "5", "--claim-idle", "4"], "--claim-idle must be longer than --lock-ttl"),
    (["--durability", "eventual"], 'invalid argument "eventual" for "--durability" flag'),
    (["--replica-id", "bad id"], "invalid replica id"),
])
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    argv = ["--replica-id", "r1", *args] if args[0] != "--replica-id" else args
    out = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", "redis://127.0.0.1:1/0", "daemon",
                          *argv], capture_output=True, text=True, timeout=30, env={**os.environ,
                                                                                    "PYTHONPATH": str(ROOT)})
    assert out.returncode == 125  # a usage error, as docker's
    assert message in out.stderr and "Traceback" not in out.stderr


# --- stopping and dying ------------------------------------------------------------------------------


def test_sigterm_drains_the_actions_in_flight_and_exits_0(replicas: Replicas) -> None:
    proc = replicas.start("r1", "--max-inflight", "4")
    ids = replicas.create("c1", "c2", "c3", "c4")
    items = [replicas.submit("start", cid, hang=0.7) for cid in ids]
    wait_for(lambda: len(replicas.store.locks()) == 4, 5, "four actions in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    res = replicas.wait(items, timeout=1)
    assert all(r.ok and r.status == "running" for r in res.values()), res  # finished, not abandoned
    assert replicas.store.locks() == []
    assert replicas.pending() == 0
    assert "draining 4 action(s) in flight" in replicas.log("r1")


def test_a_killed_replica_leaves_no_container_stuck_and_its_work_is_taken_over(replicas: Replicas) -> None:
    store = replicas.store
    opts = ("--lock-ttl", "0.8", "--claim-idle", "1.6")
    a = replicas.start("a", *opts, "--hang", "web")
    web = running_container(store, "web")
    item = replicas.submit("stop", web)  # a's runtime hangs in it, holding web's lock
    wait_for(lambda: held_by(store, web) == "a", 5, "a holds web's lock")
    replicas.start("b", *opts)
    time.sleep(2.5)  # longer than claim-idle: a is alive and keeps its item, b must not take it
    assert held_by(store, web) == "a"
    assert item not in {r.item for r in daemon.read_results(store)}

    a.kill()
    a.wait(5)
    killed = time.monotonic()
    wait_for(lambda: held_by(store, web) != "a", 3, "a's lock expired")
    assert time.monotonic() - killed <= 0.8 + 0.5  # no longer than the lock TTL (plus polling)
    r = replicas.wait([item], timeout=10)[item]
    assert r.replica == "b" and r.deliveries == 2 and r.ok and r.status == "exited"
    assert "took over item" in replicas.log("b") and "from replica a" in replicas.log("b")
    assert store.containers.get(web).status == "exited"
    assert replicas.pending() == 0


def test_a_hung_container_stops_neither_other_replicas_nor_queries(replicas: Replicas) -> None:
    store = replicas.store
    opts = ("--lock-timeout", "0.5", "--drain-timeout", "0.5")
    a = replicas.start("a", *opts, "--hang", "stuck")
    stuck = running_container(store, "stuck")
    others = replicas.create(*[f"c{i}" for i in range(8)], start=True)
    item = replicas.submit("stop", stuck)
    wait_for(lambda: held_by(store, stuck) == "a", 5, "a holds stuck's lock")
    b = replicas.start("b", *opts)

    t0 = time.monotonic()
    work = [replicas.submit(action, cid) for cid in others for action in ("exec", "restart", "exec")]
    blocked = replicas.submit("pause", stuck)
    slowest = 0.0
    done: dict[str, Result] = {}
    while len(done) < len(work) + 1:
        for ref in (stuck, "stuck", stuck[:8]):  # inspect the hung container, by ID, name and prefix
            q = time.monotonic()
            assert store.containers.get(ref).status == "running"
            slowest = max(slowest, time.monotonic() - q)
        q = time.monotonic()
        assert stuck in {c.id for c in store.containers.list()}
        slowest = max(slowest, time.monotonic() - q)
        done.update(replicas.wait([i for i in [*work, blocked] if i not in done][:1]))
    assert time.monotonic() - t0 < 10
    assert all(done[i].ok for i in work), [done[i].error for i in work if not done[i].ok]
    assert {done[i].replica for i in work} == {"a", "b"}  # a keeps working too
    assert not done[blocked].ok and done[blocked].error.startswith("LockTimeoutError: timed out after 0.5s")
    assert "held by replica a" in done[blocked].error
    assert slowest < 0.5, slowest
    assert held_by(store, stuck) == "a"

    # shutting down: the hung call is interrupted, its lock released, its item left for another replica
    a.send_signal(signal.SIGTERM)
    assert a.wait(15) == 0
    assert "interrupting 1 action(s)" in replicas.log("a")
    assert held_by(store, stuck) is None
    b.send_signal(signal.SIGTERM)
    assert b.wait(15) == 0
    assert item not in {r.item for r in daemon.read_results(store)}
    assert replicas.pending() == 1


def test_queue_actions_log_the_docker_event_actions_they_performed(replicas: Replicas) -> None:
    replicas.start("r1")
    (cid,) = replicas.create("acted", start=True)
    for action, args in [("pause", {}), ("unpause", {}), ("rename", {"name": "acted2"}), ("stop", {}),
                         ("restart", {}), ("kill", {}), ("remove", {})]:
        res = replicas.wait([replicas.submit(action, cid, **args)])
        assert all(r.ok for r in res.values()), res
    with replicas.store.watch(since="0-0", ids=[cid], until=replicas.store.snapshot().revision) as w:
        actions = [(e.type, e.action) for e in w]
    assert actions == [("create", ""), ("update", "start"), ("update", "pause"), ("update", "unpause"),
                       ("update", "rename"), ("update", "kill=15,die,stop"), ("update", "start,restart"),
                       ("update", "kill=9,die"), ("update", ""), ("delete", "")]
