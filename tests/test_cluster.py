"""statestore on a real Redis Cluster: every feature, through both ways of connecting, on every master.

One 3-master cluster (``tests/topology.py``) serves the whole module.  A
namespace is one hash slot (every key carries the hash tag ``{<namespace>}``),
so each test picks fresh namespaces whose slots land on the master it wants,
and runs against a store made either with
``Store(redis.RedisCluster(startup_nodes=...))`` (a client with
``decode_responses=True``, which the store must not inherit) or with
``Store.from_url("redis+cluster://h:p,h:p")`` naming only nodes that do *not*
own the namespace (the store has to find the owner itself).

What is proved here, beyond "it answers":

* commits, lookups, lists, snapshots, locks, watch, fsck behave as on one
  server, on each of the three masters;
* every key of a namespace is on its slot owner and nowhere else;
* the pub/sub notifications (classic ``PUBLISH`` from the commit script) reach
  subscribers on *every* node, not only the owner;
* several OS processes incrementing one counter through the cluster lose nothing;
* moving a namespace's slot to another master while one process commits and
  another reads loses no acknowledged commit, fails no read, and the stores
  follow the slot;
* when a primary is killed, the store follows the replica the cluster promotes.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
import redis
from redis.crc import key_slot

from statestore import (
    AmbiguousReferenceError,
    ConflictError,
    Container,
    ExecConfig,
    LockTimeoutError,
    NameInUseError,
    NotFoundError,
    Store,
)
from tests import cluster_workers as cw
from tests.procs import SPAWN, reap, run_processes
from tests.redisproc import RedisProcess
from tests.topology import ClusterGroup
from tests.workers import COUNTER_LABEL, bump

_CTX = SPAWN
KINDS = ("cluster", "url")
_counter = itertools.count()


# --- the cluster and its namespaces ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterGroup]:
    group = ClusterGroup(masters=3, replicas_per_master=0)
    group.start(timeout=60)
    try:
        yield group
    finally:
        group.stop()


def slot_of(namespace: str) -> int:
    return key_slot(f"ss:{{{namespace}}}:log".encode())


def namespace_on(cluster: ClusterGroup, master: RedisProcess, tag: str) -> str:
    """A namespace never used before whose slot the master ``master`` owns."""
    for _ in range(2000):
        ns = f"{tag}{os.getpid()}-{next(_counter)}"
        if cluster.slot_owner(slot_of(ns)) is master:
            return ns
    raise AssertionError(f"no namespace found for master {master.port}")


def other_nodes(cluster: ClusterGroup, node: RedisProcess) -> list[RedisProcess]:
    return [n for n in cluster.nodes if n is not node and n.running]


def open_store(cluster: ClusterGroup, kind: str, namespace: str, **kwargs: Any) -> Store:
    """A store of ``kind``; its startup nodes are the nodes that do NOT own the namespace."""
    owner = cluster.slot_owner(slot_of(namespace))
    seeds = [n.address for n in other_nodes(cluster, owner)]
    return cw.open_store(kind, seeds, namespace, **kwargs)


@pytest.fixture(params=[(k, m) for m in range(3) for k in KINDS], ids=lambda p: f"{p[0]}-master{p[1]}")
def ns_store(request: pytest.FixtureRequest, cluster: ClusterGroup) -> Iterator[Store]:
    """A store on a fresh namespace owned by master ``m``, connected the ``k`` way."""
    kind, m = request.param
    master = cluster.masters()[m]
    store = open_store(cluster, kind, namespace_on(cluster, master, "t"))
    assert cw.router_of(store).address() == master.address
    try:
        yield store
    finally:
        cw.close_store(store)


def owner_of(cluster: ClusterGroup, store: Store) -> RedisProcess:
    return cluster.slot_owner(slot_of(store.namespace))


def new(name: str, cid: str | None = None, **kw: Any) -> Container:
    return Container.new("busybox:1.36", name=name, id=cid, **kw)


# --- topology -----------------------------------------------------------------------------------------


def test_namespaces_land_on_every_master(cluster: ClusterGroup) -> None:
    masters = cluster.masters()
    assert len(masters) == 3
    picked = {m.port: namespace_on(cluster, m, "spread") for m in masters}
    slots = {ns: slot_of(ns) for ns in picked.values()}
    # three slots, three different owners: every master serves one of the namespaces
    assert {cluster.slot_owner(s).port for s in slots.values()} == {m.port for m in masters}
    for port, ns in picked.items():
        assert redis.crc.key_slot(f"ss:{{{ns}}}:c:{'0' * 64}".encode()) == slots[ns]  # one slot per namespace
        for kind in KINDS:
            store = open_store(cluster, kind, ns)
            try:
                store.containers.create(new(f"probe-{kind}"))
                assert cw.router_of(store).current == ("127.0.0.1", port)
                assert cw.router_of(store).slot == slots[ns]
            finally:
                cw.close_store(store)


# --- commits and lookups ------------------------------------------------------------------------------


def test_commits_and_lookups(ns_store: Store) -> None:
    s = ns_store
    a = s.containers.create(new("alpha", "abc1" + "0" * 60, labels={"app": "shop"}))
    b = s.containers.create(new("beta", "abc2" + "1" * 60))
    assert (a.version, b.version) == (1, 1)
    # exact ID, name (with and without the slash), unique prefix, ambiguous prefix, missing
    assert s.containers.get(a.id).name == "alpha"
    assert s.containers.get("/beta").id == b.id
    assert s.containers.get("abc1").id == a.id
    assert s.containers.resolve("abc2") == b.id
    with pytest.raises(AmbiguousReferenceError, match="multiple IDs found with provided prefix: abc"):
        s.containers.get("abc")
    with pytest.raises(NotFoundError):
        s.containers.get("nosuch")
    with pytest.raises(NameInUseError):
        s.containers.create(new("alpha"))

    # update, compare-and-set, rename
    stale = s.containers.get("alpha")
    a2 = s.containers.update("alpha", lambda c: c.state.set_running(pid=4242))
    assert (a2.version, a2.status) == (2, "running")
    with pytest.raises(ConflictError) as ei:
        s.containers.commit(stale)
    assert (ei.value.expected, ei.value.actual) == (1, 2)
    fresh = s.containers.get(a.id)
    fresh.labels["tier"] = "front"
    assert s.containers.commit(fresh).version == 3
    renamed = s.containers.rename("alpha", "gamma")
    assert renamed.name == "gamma" and renamed.version == 4
    with pytest.raises(NotFoundError):
        s.containers.get("alpha")
    assert s.containers.get("gamma").labels == {"app": "shop", "tier": "front"}

    # execs: create (the container is running), lookup by prefix, update, list, delete
    x = s.execs.create(ExecConfig.new("gamma", ["sh", "-c", "date"]))
    assert s.containers.get("gamma").exec_ids == [x.id]
    assert s.execs.get(x.id[:10]).container_id == a.id
    x2 = s.execs.update(x.id, lambda e: e.set_running(pid=77))
    assert (x2.status, x2.version) == ("running", 2)
    y = s.execs.create(ExecConfig.new(a.id, ["true"]))
    assert [e.id for e in s.execs.list(container="gamma")] == sorted([x.id, y.id])
    s.execs.delete(y.id)
    assert s.containers.get("gamma").exec_ids == [x.id]

    # deleting the container takes its execs and frees its name
    s.containers.delete("gamma")
    with pytest.raises(NotFoundError):
        s.execs.get(x.id)
    assert s.containers.create(new("gamma")).name == "gamma"
    assert sorted(c.name for c in s.containers.list(all=True)) == ["beta", "gamma"]


def test_list_filters_and_snapshot(ns_store: Store) -> None:
    s = ns_store
    made = []
    for i in range(6):
        c = s.containers.create(new(f"web-{i}", labels={"app": "shop" if i % 2 else "blog", "i": str(i)}))
        if i < 4:
            c = s.containers.update(c.id, lambda x: x.state.set_running(pid=100))
        if i == 3:
            c = s.containers.update(c.id, lambda x: x.state.set_stopped(1))
        made.append(c)
    assert sorted(c.name for c in s.containers.list()) == ["web-0", "web-1", "web-2"]
    assert sorted(c.name for c in s.containers.list(all=True)) == [f"web-{i}" for i in range(6)]
    assert sorted(c.name for c in s.containers.list({"label": "app=shop"}, all=True)) == ["web-1", "web-3", "web-5"]
    assert [c.name for c in s.containers.list({"status": "exited"}, all=True)] == ["web-3"]
    assert sorted(c.name for c in s.containers.list({"status": "created"}, all=True)) == ["web-4", "web-5"]
    assert [c.name for c in s.containers.list({"name": "web-2"}, all=True)] == ["web-2"]
    assert [c.name for c in s.containers.list({"label": ["app=shop", "i=1"]})] == ["web-1"]
    x = s.execs.create(ExecConfig.new("web-0", ["ls"]))

    snap = s.snapshot()
    # the newest change-log entry: the container's update, right after the exec's own (x.revision)
    newest = s.client.xrevrange(s.keys.log, count=2)
    assert (snap.revision, x.revision) == tuple(r.decode() for r, _ in newest)
    assert set(snap.containers) == {c.id for c in made}
    assert list(snap.execs) == [x.id]
    assert snap.get("web-3").status == "exited"
    assert snap.get("web-0").exec_ids == [x.id]
    listed = s.containers.list(all=True)
    assert listed.revision == snap.revision


# --- locks -------------------------------------------------------------------------------------------


def test_locks_renew_release_and_a_second_store_waits(ns_store: Store, cluster: ClusterGroup) -> None:
    s = ns_store
    c = s.containers.create(new("locked"))
    other_kind = "url" if isinstance(s.user_client, redis.RedisCluster) and not s._owns_client else "cluster"
    s2 = open_store(cluster, other_kind, s.namespace)
    try:
        lease = s.lock("locked", ttl=0.5, timeout=2.0)
        [info] = s.locks()
        assert (info.container_id, info.token) == (c.id, lease.token)
        # renewal: held for longer than its TTL, the lock is still there and still ours
        time.sleep(0.8)
        assert not lease.lost
        assert s.client.get(s.keys.lock(c.id)) is not None
        # a fenced commit with the lease
        assert s.containers.update("locked", lambda x: x.labels.update(a="1"), lease=lease).version == 2
        # the second store cannot take it while it is held ...
        with pytest.raises(LockTimeoutError):
            s2.lock("locked", timeout=0.2)
        # ... and a waiting one gets it after the release
        got: dict[str, Any] = {}
        waiting = threading.Event()

        def wait_for_lock() -> None:
            waiting.set()
            try:
                got["lease"] = s2.lock(c.id, ttl=5.0, timeout=15.0)
                got["at"] = time.monotonic()
            except BaseException as exc:
                got["error"] = exc

        t = threading.Thread(target=wait_for_lock)
        t.start()
        waiting.wait(5)
        time.sleep(0.3)
        assert "lease" not in got and "error" not in got  # still waiting while held
        released_at = time.monotonic()
        assert lease.release() is True
        t.join(20)
        assert not t.is_alive()
        assert "error" not in got, got
        lease2 = got["lease"]
        assert got["at"] >= released_at
        assert lease2.token > lease.token  # fencing tokens only grow
        # the old lease is fenced out
        with pytest.raises(Exception, match="released"):
            s.containers.update("locked", lambda x: x.labels.update(b="1"), lease=lease)
        s2.containers.update("locked", lambda x: x.labels.update(b="2"), lease=lease2)
        assert lease2.release() is True
        assert s.locks() == []
        assert s.containers.get("locked").labels == {"a": "1", "b": "2"}
    finally:
        cw.close_store(s2)


# --- change notifications -----------------------------------------------------------------------------


def _changes(s: Store) -> list[tuple[str, str, int]]:
    """A fixed series of commits; the (type, kind, version) events it must produce, in order."""
    c = s.containers.create(new("watched"))
    s.containers.update(c.id, lambda x: x.state.set_running(pid=1))
    x = s.execs.create(ExecConfig.new(c.id, ["id"]))
    s.containers.rename("watched", "seen")
    s.execs.delete(x.id)
    s.containers.delete("seen")
    return [("create", "container", 1), ("update", "container", 2), ("create", "exec", 1),
            ("update", "container", 3), ("update", "container", 4), ("delete", "exec", 1),
            ("update", "container", 5), ("delete", "container", 5)]


def test_watch_yields_every_event_in_order(ns_store: Store) -> None:
    s = ns_store
    s.containers.create(new("before"))
    since = s.snapshot().revision
    w = s.watch(since=since)
    try:
        expected = _changes(s)
        events: list[Any] = []
        deadline = time.monotonic() + 15
        while len(events) < len(expected) and time.monotonic() < deadline:
            events += w.poll(timeout=0.5)
    finally:
        w.close()
    assert [(e.type, e.kind, e.version) for e in events] == expected
    seqs = [e.seq for e in events]
    assert seqs == list(range(2, 2 + len(expected)))  # the namespace's 2nd entry on, no gap


def _collect(pubsubs: Sequence[Any], n: int, timeout: float) -> list[list[tuple[str, dict[str, Any]]]]:
    got: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in pubsubs]
    deadline = time.monotonic() + timeout
    while any(len(g) < n for g in got) and time.monotonic() < deadline:
        for ps, g in zip(pubsubs, got, strict=True):
            msg = ps.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is not None and msg["type"] == "pmessage":
                ch = msg["channel"]
                g.append((ch.decode() if isinstance(ch, bytes) else ch, orjson.loads(msg["data"])))
    return got


def test_pubsub_messages_reach_every_node(ns_store: Store, cluster: ClusterGroup) -> None:
    """Classic PUBLISH (from the commit script) is broadcast over the cluster bus: a
    subscriber on any node gets the documented ``ss:{ns}:ev:<kind>:<id>`` messages."""
    s = ns_store
    owner = owner_of(cluster, s)
    pattern = s.keys.channel_pattern()
    clients = [n.client(socket_timeout=5) for n in other_nodes(cluster, owner)]
    pubsubs: list[Any] = [c.pubsub() for c in clients]
    # and a RedisCluster's own pub/sub (it subscribes on the node serving the pattern's slot: the owner)
    rc = cluster.client()
    rc_ps = rc.pubsub()
    pubsubs.append(rc_ps)
    try:
        for ps in pubsubs:
            ps.psubscribe(pattern)
            deadline = time.monotonic() + 5
            while ps.get_message(timeout=0.1) is None and time.monotonic() < deadline:
                pass  # the psubscribe confirmation
        assert rc_ps.get_pubsub_node().port == owner.port  # type: ignore[no-untyped-call]
        expected = _changes(s)
        got = _collect(pubsubs, len(expected), timeout=15)
    finally:
        for ps in pubsubs:
            ps.close()
        for c in clients:
            c.close()
        rc.close()
    first = got[0]
    assert [(m["type"], m["kind"], m["version"]) for _, m in first] == expected
    for ch, m in first:
        assert ch == s.keys.channel(m["kind"], m["id"])
        assert ch.startswith(f"ss:{{{s.namespace}}}:ev:{m['kind']}:")
        assert m["namespace"] == s.namespace
    assert [m["seq"] for _, m in first] == list(range(1, 1 + len(expected)))
    # every node's subscriber got the same messages, in the same order
    for other in got[1:]:
        assert other == first


# --- consistency and isolation ------------------------------------------------------------------------


def _keys_on(node: RedisProcess, pattern: str) -> set[bytes]:
    c = node.client()
    try:
        return set(c.scan_iter(match=pattern, count=1000))
    finally:
        c.close()


def test_fsck_clean_and_keys_only_on_the_owner(ns_store: Store, cluster: ClusterGroup) -> None:
    s = ns_store
    for i in range(5):
        c = s.containers.create(new(f"n{i}", labels={"k": str(i)}))
        s.containers.update(c.id, lambda x: x.state.set_running(pid=10))
        s.execs.create(ExecConfig.new(c.id, ["true"]))
    lease = s.lock("n0", ttl=5)  # lock keys too: lock, lockfence, lockseq
    try:
        report = s.fsck()
        assert report.clean, report
        owner = owner_of(cluster, s)
        mine = _keys_on(owner, s.keys.match_all)
        assert s.keys.lock(s.containers.resolve("n0")).encode() in mine
        assert {s.keys.log.encode(), s.keys.log_seq.encode(), s.keys.lock_seq.encode()} <= mine
        assert len(mine) >= 5 * 2 + 5 + 6  # records, execs, names, indexes...
        slot = slot_of(s.namespace)
        oc = owner.client()
        try:
            assert oc.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(mine)
        finally:
            oc.close()
        for other in other_nodes(cluster, owner):
            assert _keys_on(other, f"*{{{s.namespace}}}*") == set(), other.port
    finally:
        lease.release()


# --- several processes --------------------------------------------------------------------------------


@pytest.mark.slow
def test_processes_incrementing_one_counter_lose_nothing(cluster: ClusterGroup) -> None:
    master = cluster.masters()[1]
    ns = namespace_on(cluster, master, "count")
    seeds = [n.address for n in other_nodes(cluster, master)]
    processes, per_process = 3, 150
    with cw.open_store("url", seeds, ns) as store:
        c = store.containers.create(new("counter", labels={COUNTER_LABEL: "0"}))
        kinds = ["url", "cluster", "url"]
        refs = [c.id, "counter", c.id[:12]]
        reports = run_processes(cw.increment_worker,
                                [(kinds[i], seeds, ns, refs[i], per_process) for i in range(processes)])
        assert sorted(r[:2] for r in reports) == [("done", per_process)] * processes
        final = store.containers.get("counter")
        assert final.labels[COUNTER_LABEL] == str(processes * per_process)
        assert final.version == 1 + processes * per_process
        versions = [int(f[b"version"]) for _, f in store.client.xrange(store.keys.log)]
        assert versions == list(range(1, 2 + processes * per_process))
        assert store.fsck().clean


# --- resharding during a workload ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reads_in_the_middle_of_a_migration_wait_for_it(cluster: ClusterGroup, kind: str) -> None:
    """While a namespace's slot is half migrated (some keys on the importing node, the
    slot still MIGRATING on the source), a lookup script that reads a key it did not
    declare gets "non local key" from Redis.  That is a redirection, not a corrupt key:
    every read must wait for the migration (bounded by unavailable_timeout) and then
    answer correctly: no CorruptRecordError, no record reported corrupt and left out."""
    source, target = cluster.masters()[1], cluster.masters()[0]
    ns = namespace_on(cluster, source, "half")
    store = open_store(cluster, kind, ns, unavailable_timeout=20.0)
    try:
        c = store.containers.create(new("web", labels={"app": "shop"}))
        store.containers.update("web", lambda x: x.state.set_running(pid=5))
        x = store.execs.create(ExecConfig.new("web", ["top"]))
        calls: dict[str, Callable[[], Any]] = {
            "get by name": lambda: store.containers.get("web").id,
            "get by prefix": lambda: store.containers.get(c.id[:12]).id,
            "get by full ID": lambda: store.containers.get(c.id).id,
            "exec by prefix": lambda: store.execs.get(x.id[:12]).id,
            "list": lambda: ([r.id for r in store.containers.list({"label": "app=shop"})],
                             store.containers.list().corrupt),
            "snapshot": lambda: (sorted(store.snapshot().containers), store.snapshot().corrupt),
        }
        expected = {"get by name": c.id, "get by prefix": c.id, "get by full ID": c.id, "exec by prefix": x.id,
                    "list": ([c.id], ()), "snapshot": ([c.id], ())}
        results: dict[tuple[int, str], Any] = {}

        def run(at: int, name: str, fn: Callable[[], Any]) -> None:
            try:
                results[(at, name)] = fn()
            except Exception as exc:
                results[(at, name)] = exc

        threads: list[threading.Thread] = []

        def each_batch(moved: int) -> None:
            if moved == 1:
                # the records first (GETKEYSINSLOT's own order would move them anywhere): then
                # the scripts' declared keys (log, indexes) are still here and their records not
                src = source.client()
                try:
                    src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS",
                                        store.keys.container(c.id), store.keys.exec(x.id))
                finally:
                    src.close()
            # one key more is on the target: start every call in this state of the migration
            for name, fn in calls.items():
                threads.append(threading.Thread(target=run, args=(moved, name, fn)))
                threads[-1].start()
            time.sleep(0.15)

        moved = cluster.migrate_slot(slot_of(ns), target, batch=1, timeout=30, on_batch=each_batch)
        for t in threads:
            t.join(30)
        assert moved >= 8 and len(results) == moved * len(calls)
        wrong = {k: v for k, v in results.items() if v != expected[k[1]]}
        assert wrong == {}, "\n".join(f"after {at} keys moved, {name}: {v!r}"
                                      for (at, name), v in sorted(wrong.items()))
        assert cw.router_of(store).current == target.address
        assert store.fsck().clean
    finally:
        cw.close_store(store)




@pytest.mark.slow
def test_moving_a_namespace_slot_under_load_loses_nothing(cluster: ClusterGroup) -> None:
    """One process commits increments continuously, another reads (in the moving namespace
    and in a bystander namespace on the same source master), while the namespace's slot
    is migrated key by key to another master.  Every acknowledged increment is in the
    counter, no read fails, and every store ends up talking to the new owner."""
    source = cluster.masters()[0]
    target = cluster.masters()[2]
    ns = namespace_on(cluster, source, "move")
    bystander = namespace_on(cluster, source, "stay")
    seeds = [n.address for n in cluster.nodes]
    with cw.open_store("url", seeds, ns) as store, cw.open_store("url", seeds, bystander) as other:
        # Enough keys that the migration takes many batches.  Redis 7.0 hands out a slot's keys
        # newest first (GETKEYSINSLOT), so the fillers created after the counter move before it
        # (commits go on meanwhile), then the counter, and the keys every commit and list touch
        # (log, indexes: created with the first filler) last: commits wait from the counter's move on.
        for i in range(150):
            if i == 75:
                counter = store.containers.create(new("counter", labels={COUNTER_LABEL: "0", "group": "g1"}))
            store.containers.create(new(f"filler-{i}", labels={"group": f"g{i % 7}"}))
        other.containers.create(new("counter", labels={"group": "g1"}))
        keys_before = len(_keys_on(source, store.keys.match_all))

        stop = _CTX.Event()
        acked = _CTX.Value("q", 0)
        reads = _CTX.Value("q", 0)
        out = _CTX.Queue()
        barrier = _CTX.Barrier(2)
        procs = [
            _CTX.Process(target=cw.commit_loop_worker,
                         args=("cluster", seeds, ns, counter.id, stop, acked, barrier, out), daemon=True),
            _CTX.Process(target=cw.read_loop_worker,
                         args=("url", seeds, [ns, bystander], "counter", stop, reads, barrier, out), daemon=True),
        ]
        for p in procs:
            p.start()
        try:
            def wait_until(what: str, cond: Callable[[], bool], timeout: float = 60) -> None:
                deadline = time.monotonic() + timeout
                while not cond():
                    if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                        stop.set()
                        pytest.fail(f"timed out waiting for {what}; workers alive: "
                                    f"{[p.is_alive() for p in procs]}; {_drain(out)}")
                    time.sleep(0.01)

            wait_until("the workload to start", lambda: acked.value >= 50 and reads.value >= 5)
            acked_at_start, reads_at_start = acked.value, reads.value

            counter_moved: list[float] = []
            probe = source.client()

            def slow_batches(moved: int) -> None:
                if not counter_moved:
                    try:
                        probe.exists(store.keys.container(counter.id))  # still here: answered
                    except redis.ResponseError:  # ASK: it is on the target now
                        counter_moved.append(time.monotonic())
                time.sleep(0.02)  # let client traffic run between batches

            migration_started = time.monotonic()
            try:
                moved = cluster.migrate_slot(slot_of(ns), target, batch=10, timeout=60, on_batch=slow_batches)
            finally:
                probe.close()
            migration_ended = time.monotonic()
            assert moved == keys_before
            assert cluster.slot_owner(slot_of(ns)) is target
            # keep going after the move until both workers made progress on the new owner
            a0, r0 = acked.value, reads.value
            wait_until("commits and reads after the move", lambda: acked.value >= a0 + 50 and reads.value >= r0 + 5)
            stop.set()
            reports: list[tuple[Any, ...]] = []
            while len(reports) < 2:
                reports.append(out.get(timeout=30))
        finally:
            stop.set()
            reap(procs)
            out.close()
        errors = [r for r in reports if r[0] == "error"]
        assert not errors, "worker failed:\n" + "\n".join(str(e) for e in errors)
        commit_report = next(r for r in reports if len(r) == 8)
        read_report = next(r for r in reports if len(r) == 4)
        _, n_acked, indeterminate, commit_errors, slowest_commit, ack_times, moves, address = commit_report
        _, read_stats, read_errors, read_moves = read_report

        # no acknowledged commit lost, none applied twice (a commit waits for the migration up to
        # unavailable_timeout, 5 s: only a slower migration may fail one, typed and not applied)
        budget = 5.0
        assert indeterminate == 0, indeterminate
        if migration_ended - migration_started > budget:
            assert set(commit_errors) <= {"StoreUnavailableError"}, commit_errors
        else:
            assert commit_errors == {}, commit_errors
        final = store.containers.get(counter.id)
        assert int(final.labels[COUNTER_LABEL]) == n_acked
        assert final.version == 1 + n_acked
        # reads never failed, in the moving namespace or the bystander (the same budget)
        if migration_ended - migration_started > budget:
            assert set(read_errors) <= {"StoreUnavailableError"}, read_errors
        else:
            assert read_errors == {}, read_errors
            assert read_stats[ns][1] == 0, read_stats
        assert read_stats[bystander][1] == 0, read_stats
        # every store followed the slot: the writer, the reader, and this process's store
        assert (moves, address) == (1, target.address)
        assert read_moves == {ns: 1, bystander: 0}
        assert cw.router_of(store).current == target.address and cw.router_of(store).moves == 1
        assert cw.router_of(other).current == source.address and cw.router_of(other).moves == 0
        # the namespace is whole on the target and gone from the source
        assert _keys_on(source, store.keys.match_all) == set()
        assert len(_keys_on(target, store.keys.match_all)) == keys_before
        report = store.fsck()
        assert report.clean, report
        assert counter_moved, "the counter's record never left the source during the migration"
        during = sum(1 for t in ack_times if migration_started <= t <= counter_moved[0])
        waited = sum(1 for t in ack_times if counter_moved[0] < t <= migration_ended)
        print(f"\nslot {slot_of(ns)} ({keys_before} keys) moved in {migration_ended - migration_started:.2f}s "
              f"(the counter's record {counter_moved[0] - migration_started:.2f}s in); commits: "
              f"{acked_at_start} before, {during} during the migration up to the counter's move, {waited} after it "
              f"until the end of the migration, {n_acked} in all; slowest commit "
              f"{slowest_commit * 1000:.0f} ms; reads: {reads_at_start} rounds before, slowest "
              f"{read_stats[ns][2] * 1000:.0f} ms (moving), {read_stats[bystander][2] * 1000:.0f} ms (bystander)")


def _drain(q: Any) -> list[Any]:
    got = []
    try:
        while True:
            got.append(q.get_nowait())
    except queue.Empty:
        return got


# --- a primary fails inside the cluster ---------------------------------------------------------------


def _replica_of(group: ClusterGroup, primary: RedisProcess) -> RedisProcess:
    for n in group.nodes:
        if n is not primary and n.running:
            c = n.client(decode_responses=True)
            try:
                info = c.info("replication")
            finally:
                c.close()
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                return n
    raise AssertionError(f"no replica of {primary.port}")


def _wait_replica_caught_up(primary: RedisProcess, replica: RedisProcess, timeout: float = 10) -> None:
    """Until the replica has applied everything the primary wrote so far (INFO replication offsets)."""
    pc, rc = primary.client(decode_responses=True), replica.client(decode_responses=True)
    try:
        target = int(pc.info("replication")["master_repl_offset"])
        deadline = time.monotonic() + timeout
        while int(rc.info("replication").get("slave_repl_offset", -1)) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"replica {replica.port} did not reach offset {target} in {timeout}s")
            time.sleep(0.02)
    finally:
        pc.close()
        rc.close()


@pytest.mark.slow
def test_store_follows_the_replica_promoted_after_its_primary_dies() -> None:
    """SIGKILL the primary of a namespace's slot in a cluster with one replica per master.
    The cluster promotes that primary's replica; the store's next call waits (bounded by
    unavailable_timeout) and lands on it, and so does a watch.  Replication is
    asynchronous, so the test lets the replica catch up before the kill: then no
    acknowledged commit may be missing afterwards."""
    with ClusterGroup(masters=3, replicas_per_master=1, node_timeout_ms=1000) as group:
        victim = group.masters()[0]
        heir = _replica_of(group, victim)
        ns = namespace_on(group, victim, "fail")
        bystander_ns = namespace_on(group, group.masters()[1], "calm")
        seeds = [n.address for n in group.nodes]
        store = cw.open_store("cluster", seeds, ns, unavailable_timeout=20.0)
        bystander = cw.open_store("url", seeds, bystander_ns, unavailable_timeout=20.0)
        try:
            c = store.containers.create(new("counter", labels={COUNTER_LABEL: "0"}))
            bystander.containers.create(new("other"))
            w = store.watch(since=c.revision, reconnect_timeout=20.0)
            acked = 0
            for _ in range(20):
                store.containers.update("counter", bump)
                acked += 1
            assert cw.router_of(store).current == victim.address
            _wait_replica_caught_up(victim, heir)

            killed_at = time.monotonic()
            victim.kill()
            store.containers.update("counter", bump)  # waits for the promotion, then commits
            acked += 1
            first_commit_after = time.monotonic() - killed_at
            other = bystander.containers.get("other")  # another shard's namespace answers too
            assert _wait_for_new_owner(group, slot_of(ns), victim, timeout=30) is heir
            assert cw.router_of(store).current == heir.address
            assert cw.router_of(store).moves == 1
            for _ in range(20):
                store.containers.update("counter", bump)
                acked += 1
            final = store.containers.get("counter")
            assert final.labels[COUNTER_LABEL] == str(acked)
            assert final.version == 1 + acked
            assert other.name == "other"
            assert store.fsck().clean
            # the watch went on across the failover: every update, in order, once
            events: list[Any] = []
            deadline = time.monotonic() + 20
            while len(events) < acked and time.monotonic() < deadline:
                events += w.poll(timeout=0.5)
            w.close()
            assert [e.version for e in events] == list(range(2, 2 + acked))
            print(f"\nprimary {victim.port} killed; the first commit after it returned in {first_commit_after:.2f}s, "
                  f"from the promoted replica {heir.port}")
        finally:
            cw.close_store(store)
            cw.close_store(bystander)


def _wait_for_new_owner(group: ClusterGroup, slot: int, old: RedisProcess, timeout: float) -> RedisProcess:
    deadline = time.monotonic() + timeout
    while True:
        try:
            owner = group.slot_owner(slot)
            if owner is not old:
                return owner
        except (redis.RedisError, OSError, LookupError, StopIteration):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"slot {slot} still not served by a new primary after {timeout}s")
        time.sleep(0.1)


# --- found while testing the failover -----------------------------------------------------------------


def test_replicated_commit_whose_wait_outlasts_the_socket_timeout(cluster: ClusterGroup) -> None:
    """The WAIT of a replicated commit is read under a socket timeout that outlasts
    durability_timeout (the store raises a shorter one), and a NOSCRIPT reply (a freshly promoted
    primary has no script cache) reloads the script: both commits are applied once each and
    reported as DurabilityError (applied, not acknowledged)."""
    master = cluster.masters()[2]  # no replicas in this module's cluster: WAIT 1 always times out
    ns = namespace_on(cluster, master, "dur")
    rc = redis.RedisCluster(startup_nodes=cluster.startup_nodes, socket_timeout=0.5)
    store = Store(rc, namespace=ns, durability="replicated", replicas=1, durability_timeout=1.0,
                  unavailable_timeout=2.0)
    outcomes: list[str] = []
    try:
        try:
            store.containers.create(new("web"))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        mc = master.client()
        try:
            mc.script_flush()  # as on a freshly promoted replica: the commit script is not cached
        finally:
            mc.close()
        try:
            store.containers.update("web", lambda x: x.labels.update(a="1"))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        # both commits are applied (DurabilityError's meaning), once each
        assert (outcomes, store.containers.get("web").version) == (["DurabilityError"] * 2, 2)
    finally:
        store.close()
        rc.close()


# --- tools/bench_cluster.py -----------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_cluster_tool_runs_and_cleans_up() -> None:
    """A tiny run of tools/bench_cluster.py: every section prints, the exit status is 0, and the
    cluster it started is gone afterwards (its ports refuse connections)."""
    import re
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
    res = subprocess.run([sys.executable, str(root / "tools" / "bench_cluster.py"), "--quick", "--configs", "1x1",
                          "--duration", "0.3", "--reps", "1", "--capacity", "300", "--bus-messages", "2000"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    for needle in ("statestore commits/s", "server CPU per commit", "pub/sub broadcast",
                   "cluster against a standalone redis-server", "shard memory", "ps -a (all 300)",
                   "move the namespace's slot", "store followed: yes", "0 of", "bytes per notification per other node"):
        assert needle in out, (needle, out)
    ports = [int(p) for p in re.search(r"ports ([\d, ]+);", out).group(1).split(", ")]  # type: ignore[union-attr]
    assert len(ports) == 3
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
