"""Sentinel failover: acknowledged writes, the change log going back, and the typed errors.

Every topology is private (``tests/topology.py``: redis-servers and Sentinels on free loopback
ports), started and stopped by the test.  The writers of the failover tests are separate OS
processes (``tests/failover_writer.py``, driven by ``tests/failover_scenario.py``).  Times are
printed, never asserted; the bounds below only keep a broken failover from hanging the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from statestore import (
    Container,
    DurabilityError,
    LogRegressionError,
    Store,
    StoreUnavailableError,
)
from tests.failover_scenario import DATA_NODE_ARGS, run_failover, sentinel_url
from tests.topology import SentinelGroup

pytestmark = pytest.mark.slow


@pytest.fixture
def groups() -> Iterator[Callable[..., SentinelGroup]]:
    """Start SentinelGroups; every one is stopped at teardown, whatever happened."""
    started: list[SentinelGroup] = []

    def start(**kw: Any) -> SentinelGroup:
        kw.setdefault("master_args", DATA_NODE_ARGS)
        g = SentinelGroup(**kw)
        started.append(g)
        return g.start()

    yield start
    for g in started:
        g.stop()


@pytest.fixture(scope="module")
def small_group() -> Iterator[SentinelGroup]:
    """A master, one replica, one Sentinel: for the tests that do not fail over."""
    g = SentinelGroup(replicas=1, sentinels=1, master_args=DATA_NODE_ARGS)
    try:
        yield g.start()
    finally:
        g.stop()


def _bump(c: Container) -> None:
    c.labels["n"] = str(int(c.labels.get("n", "0")) + 1)


# --- 1 and 2: a failover under a continuous writer ------------------------------------------------------

def test_replicated_commits_acknowledged_before_a_failover_survive_it() -> None:
    """A master, two replicas, three Sentinels; a writer process commits with
    ``durability="replicated", replicas=1`` through the Sentinel URL and records each acknowledgement;
    the master is SIGKILLed mid-run and the writer goes on through the new master.  Every acknowledged
    commit is in the new master's history (no record missing or older than acknowledged; per record,
    acknowledged commits <= final version), every counter is its acknowledged increments plus some of
    the unknown ones, and fsck is clean.  The time from the kill to the first commit acknowledged by
    the new master is printed (``recovery``)."""
    run = run_failover("replicated", namespace="replicated")
    print(f"\n{run.summary()}")
    assert run.writer_rc == 0, run.writer_stderr
    assert run.acked_after_failover > 0, "the writer was never acknowledged by the new master"
    assert run.recovery is not None
    assert run.lost == 0 and run.older == 0, run.lost_examples
    assert run.counter_violations == []
    assert run.fsck_clean, run.fsck_text


def test_fast_commits_through_a_failover_report_what_was_lost() -> None:
    """The same with the fast default: what was lost is printed, not asserted (on loopback a SIGKILL
    rarely loses anything; tools/failover_loss.py runs it repeatedly, docs/operations.md has figures)."""
    run = run_failover("fast", namespace="fast")
    print(f"\n{run.summary()}")
    if run.lost:
        print("lost (acknowledged, then not in the new master's history):", *run.lost_examples, sep="\n  ")
    assert run.writer_rc == 0, run.writer_stderr
    assert run.acked_after_failover > 0, "the writer was never acknowledged by the new master"


def test_a_stalled_master_that_comes_back_acknowledges_no_replicated_commit_it_then_loses() -> None:
    """SIGSTOP the master until the Sentinels agree on a new one, then SIGCONT it: the writer's
    connection to it is still open, so it goes on talking to the old master until the Sentinels
    turn it into a replica (several seconds).  With the fast default every commit it takes then
    is acknowledged and lost (tools/failover_loss.py measures it); with replicated durability no
    replica acknowledges them, so the writer gets DurabilityError instead, and nothing it was told
    is committed is lost."""
    run = run_failover("replicated", fault="pause", namespace="zombie")
    print(f"\n{run.summary()}")
    assert run.writer_rc == 0, run.writer_stderr
    assert run.acked_after_failover > 0, "the writer was never acknowledged after the old master was demoted"
    assert run.lost == 0 and run.older == 0, run.lost_examples
    assert run.counter_violations == []
    assert run.fsck_clean, run.fsck_text


# --- 3: the change log goes back ---------------------------------------------------------------------------

def _poll_until_error(watch: Any, timeout: float) -> list[Any]:
    """Poll ``watch`` until it raises (the exception propagates) or ``timeout`` runs out;
    returns what it delivered meanwhile."""
    delivered: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivered += watch.poll(0.5)
    return delivered


def test_a_failover_to_a_replica_that_missed_writes_is_seen_as_a_regression(
        groups: Callable[..., SentinelGroup]) -> None:
    """The replica stops applying the replication stream (``CLIENT PAUSE WRITE`` on it: a lagging
    replica), the master takes commits a watcher and a View see, the master is SIGKILLed and the
    Sentinels promote that replica (the only one).  The next commit on the new master gets a
    sequence number the watcher has already passed: the watcher raises LogRegressionError
    instead of delivering it, and the View relists (a regression: ``view.regressions``) and serves
    what the new master holds, older versions included."""
    g = groups(replicas=1, sentinels=3)
    master, replica = g.master(), g.replicas()[0]
    store = Store.from_url(sentinel_url(g), namespace="regress", unavailable_timeout=30)
    mc, rc = master.client(), replica.client(socket_timeout=5)
    watcher = view = fresh = None
    try:
        ids = [store.containers.create(Container.new("busybox", labels={"n": "0"})).id for _ in range(3)]
        base = store.containers.update(ids[0], _bump)
        assert mc.wait(1, 5000) == 1, "the replica did not acknowledge the first commits"
        watcher = store.watch(since=base.revision, block=0.5, reconnect_timeout=30)
        view = store.view()
        assert view.wait_for(base.revision, timeout=10)
        kept = {rid: store.containers.get(rid).version for rid in ids}

        rc.execute_command("CLIENT", "PAUSE", 30000, "WRITE")
        paused = time.monotonic()
        newest = {}
        for rid in ids:
            for _ in range(2):
                newest[rid] = store.containers.update(rid, _bump)
        lost_rev = newest[ids[-1]].revision
        seen = []
        deadline = time.monotonic() + 10
        while (not seen or seen[-1].revision != lost_rev) and time.monotonic() < deadline:
            seen += watcher.poll(0.2)
        assert [e.revision for e in seen][-1:] == [lost_rev], "the watcher did not see the commits"
        assert view.wait_for(lost_rev, timeout=10)
        assert view.get(ids[0]).version == newest[ids[0]].version
        last_seq = seen[-1].seq

        g.kill_master()
        deadline = time.monotonic() + 10
        while rc.info("replication")["master_link_status"] != "down":
            assert time.monotonic() < deadline, "the replica did not notice its master died"
            time.sleep(0.01)
        rc.execute_command("CLIENT", "UNPAUSE")
        print(f"\nreplica paused for {time.monotonic() - paused:.3f}s")
        for rid in ids:  # the setup worked: the replica never applied the commits the watcher saw
            doc = orjson.loads(rc.get(store.keys.container(rid)))
            assert doc["StateStore"]["Version"] == kept[rid]

        new, took = g.wait_failover(timeout=30)
        assert new == replica.address
        print(f"failover to the lagging replica took {took:.2f}s")

        after = store.containers.update(ids[1], _bump)   # the first commit on the new master
        assert after.version == kept[ids[1]] + 1 < newest[ids[1]].version

        with pytest.raises(LogRegressionError) as exc_info:
            delivered = _poll_until_error(watcher, 30)
            pytest.fail(f"no LogRegressionError within 30 s; delivered {delivered}")
        err = exc_info.value
        assert err.last_revision == lost_rev
        assert err.found_revision == after.revision
        assert f"(seq {last_seq})" in str(err)

        # a watch started from a revision the new master never had is a regression too
        fresh = store.watch(since=lost_rev, reconnect_timeout=10)
        with pytest.raises(LogRegressionError):
            fresh.poll(0)

        deadline = time.monotonic() + 30
        while view.relists < 1:
            assert time.monotonic() < deadline, "the View did not relist after the log went back"
            time.sleep(0.05)
        assert view.regressions >= 1  # counted as a regression: it adopted older versions, openly
        assert view.wait_for(after.revision, timeout=10)
        for rid in ids:  # the View serves what the store holds now, not the versions it lost
            assert view.get(rid).version == store.containers.get(rid).version
        assert view.get(ids[1]).version == after.version
        assert store.fsck().clean
    finally:
        for w in (watcher, fresh, view):
            if w is not None:
                w.close()
        store.close()
        mc.close()
        rc.close()


# --- 4: typed errors ------------------------------------------------------------------------------------------

def test_an_unknown_service_name_is_unavailable_within_the_timeout(small_group: SentinelGroup) -> None:
    url = sentinel_url(small_group, service="no-such-service")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as exc_info:
        with Store.from_url(url, namespace="nosvc", unavailable_timeout=1.0) as store:
            store.containers.create(Container.new("busybox"))
    took = time.monotonic() - started
    assert "No master found" in str(exc_info.value) or "no-such-service" in str(exc_info.value)
    assert took < 1.0 + 5.0, f"took {took:.1f}s with unavailable_timeout=1"


def test_no_sentinel_answering_is_unavailable_within_the_timeout() -> None:
    from tests.redisproc import free_ports

    dead = free_ports(2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        with Store.from_url(f"redis+sentinel://127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}/mymaster/0",
                            namespace="nosentinel", unavailable_timeout=1.0) as store:
            store.ping()
    assert time.monotonic() - started < 1.0 + 5.0


def _stored(client: redis.Redis, store: Store, rid: str) -> dict[str, Any]:
    raw = client.get(store.keys.container(rid))
    assert raw is not None, "the record is not on the master"
    doc: dict[str, Any] = orjson.loads(raw)
    return doc


def test_more_replicas_required_than_live_is_a_durability_error_for_a_committed_record(
        small_group: SentinelGroup) -> None:
    master = small_group.master().client()
    with Store.from_url(sentinel_url(small_group), namespace="toomany", durability="replicated",
                        replicas=2, durability_timeout=0.3) as store:
        assert store.durability == "replicated"
        new = Container.new("busybox", name="web", labels={"n": "0"})
        with pytest.raises(DurabilityError) as exc_info:
            store.containers.create(new)
        err = exc_info.value
        assert (err.acknowledged, err.required) == (1, 2)
        assert isinstance(err.result, Container)
        assert err.result.id == new.id and err.result.version == 1
        assert err.key == store.keys.container(new.id)
        doc = _stored(master, store, new.id)
        assert doc == err.result.to_dict()

        with pytest.raises(DurabilityError) as exc_info:
            store.containers.update("web", _bump)
        result = exc_info.value.result
        assert isinstance(result, Container) and result.version == 2 and result.labels["n"] == "1"
        assert _stored(master, store, new.id) == result.to_dict()
        # the fast default on the same data does not wait
        with Store(master, namespace="toomany") as fast:
            assert fast.containers.update("web", _bump).version == 3
    master.close()


def test_a_commit_whose_wait_reply_was_lost_still_waits_for_the_replicas(small_group: SentinelGroup) -> None:
    """The connection drops while the commit waits in ``WAIT`` (here: ``CLIENT KILL`` of the
    waiting client).  The retry finds the commit applied (its commit id) and must still not
    report it acknowledged by replicas that never acknowledged it: DurabilityError, not success."""
    master = small_group.master().client()
    killed: list[int] = []
    stop = threading.Event()

    def kill_waiting_clients() -> None:
        admin = small_group.master().client(decode_responses=True)
        try:
            while not stop.is_set() and not killed:
                for c in admin.client_list():
                    if c.get("cmd") == "wait":
                        admin.client_kill_filter(_id=c["id"])
                        killed.append(int(c["id"]))
                        break
                time.sleep(0.01)
        finally:
            admin.close()

    killer = threading.Thread(target=kill_waiting_clients, daemon=True)
    try:
        with Store.from_url(sentinel_url(small_group), namespace="lostwait", durability="replicated",
                            replicas=2, durability_timeout=1.5) as store:
            new = Container.new("busybox", labels={"n": "0"})
            killer.start()
            with pytest.raises(DurabilityError) as exc_info:
                store.containers.create(new)
            assert killed, "the waiting client was never killed: the test did not exercise a lost reply"
            assert exc_info.value.acknowledged < 2
            assert _stored(master, store, new.id)["StateStore"]["Version"] == 1
    finally:
        stop.set()
        killer.join(10)
        master.close()


def test_a_primary_without_enough_replicas_refuses_a_commit_as_unavailable_not_corrupt() -> None:
    """``min-replicas-to-write`` (the server-side guard against a stale primary taking writes)
    refuses the commit's first write inside the script: that is StoreUnavailableError naming
    NOREPLICAS, nothing is written, and the change-log counter is not reported as corrupt."""
    from tests.conftest import dump_namespace
    from tests.redisproc import RedisProcess

    proc = RedisProcess("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10").start()
    client = proc.client()
    try:
        store = Store(client, namespace="noreplicas", unavailable_timeout=1.0)
        with pytest.raises(StoreUnavailableError, match="NOREPLICAS") as exc_info:
            store.containers.create(Container.new("busybox", name="web"))
        assert type(exc_info.value) is StoreUnavailableError
        assert dump_namespace(client, "noreplicas") == {}
    finally:
        client.close()
        proc.cleanup()
