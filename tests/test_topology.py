"""Self-tests of the multi-process Redis topologies in ``tests/topology.py`` (and of
``RedisProcess.restart``): a Sentinel failover that redis-py's Sentinel client
follows, a Redis Cluster with every slot covered, and a slot migration under a
client process that keeps writing."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
import traceback
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from tests.redisproc import RedisProcess
from tests.topology import ClusterGroup, SentinelGroup, TopologyTimeout

SPAWN = mp.get_context("spawn")


def _retry(fn: Any, timeout: float = 10.0) -> Any:
    """Call ``fn`` until it stops raising connection errors (a client finding the new master)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- RedisProcess ------------------------------------------------------------------------------------------

def test_restart_keeps_port_and_directory_and_reloads_the_aof() -> None:
    server = RedisProcess("--appendfsync", "always", appendonly=True,
                          config="maxmemory-policy noeviction\nhz 20\n").start()
    try:
        c = server.client()
        c.set("k", "v")
        c.rpush("l", 1, 2, 3)
        port, directory, pid = server.port, server.dir, server.pid
        assert server.config_path.read_text().startswith("maxmemory-policy")
        server.restart(kill=True, down_for=0.1)  # a crash, then the same port and directory
        assert (server.port, server.dir, server.starts) == (port, directory, 2)
        assert server.pid != pid and server.running
        assert _retry(lambda: c.get("k")) == b"v"
        assert c.lrange("l", 0, -1) == [b"1", b"2", b"3"]
        assert c.config_get("hz") == {"hz": "20"}  # the config file is used again
        server.restart()  # a clean stop (SIGTERM) works too
        assert _retry(lambda: c.get("k")) == b"v"
        c.close()
    finally:
        server.cleanup()
    assert not server.running and not server.dir.exists()


# --- Sentinel (its failover is exercised by tests/test_sentinel.py) -------------------------------------


def test_a_sentinel_group_that_cannot_start_cleans_up() -> None:
    group = SentinelGroup(replicas=1, sentinels=1, master_args=("--no-such-option", "1"))
    with pytest.raises(RuntimeError, match="exited at start"):
        group.start()
    assert not any(p.running or p.dir.exists() for p in [*group.data_nodes, *group.sentinels])
    with pytest.raises(RuntimeError, match="kill_master"):
        group.wait_failover(timeout=0.1)


# --- Cluster -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cluster_group_has_three_masters_covering_every_slot() -> None:
    with ClusterGroup(masters=3) as cluster:
        assert len(cluster.nodes) == 3 and cluster.masters() == cluster.nodes and cluster.replicas() == []
        for node in cluster.nodes:
            c = node.client(decode_responses=True)
            info = c.execute_command("CLUSTER INFO")
            c.close()
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == int(info["cluster_slots_ok"]) == 16384
            assert int(info["cluster_size"]) == 3 and int(info["cluster_known_nodes"]) == 3
        owners = {cluster.slot_owner(s).port for s in (0, 8000, 16383)}
        assert owners == {n.port for n in cluster.nodes}
        assert [(n.host, n.port) for n in cluster.startup_nodes] == cluster.addresses
        rc = cluster.client()
        for i in range(50):
            rc.set(f"k{i}", i)
        assert [int(rc.get(f"k{i}")) for i in range(50)] == list(range(50))
        rc.close()
        # migrate_slot: nothing to do for the owner; a server outside the cluster is refused
        owner = cluster.slot_owner(100)
        assert cluster.migrate_slot(100, owner) == 0 and cluster.slot_owner(100) is owner
        outsider = RedisProcess()
        with pytest.raises(ValueError, match="not a master"):
            cluster.migrate_slot(100, outsider)
        outsider.cleanup()
        with pytest.raises(ValueError):
            cluster.slot_owner(16384)
    assert not any(n.running or n.dir.exists() for n in cluster.nodes)


def cluster_client_worker(ports: list[int], keys: list[str], counter_key: str, stop: Any, acked: Any,
                          out: Any) -> None:
    """In its own process: INCR ``counter_key`` and read ``keys`` over and over through one
    RedisCluster client until ``stop`` is set.  ``acked`` counts acknowledged INCRs."""
    try:
        from redis.cluster import ClusterNode

        rc = redis.RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports], socket_timeout=5)
        errors: list[str] = []
        reads = 0
        i = 0
        while not stop.is_set():
            try:
                rc.incr(counter_key)
                with acked.get_lock():
                    acked.value += 1
                key = keys[i % len(keys)]
                if rc.get(key) != key.encode():
                    errors.append(f"{key} read back wrong")
                reads += 1
            except redis.RedisError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
            i += 1
        rc.close()
        out.put(("done", reads, errors[:20]))
    except BaseException as exc:
        out.put(("error", type(exc).__name__, "".join(traceback.format_exception(exc))[-2000:]))


@pytest.mark.slow
def test_migrate_slot_moves_a_slot_with_its_keys_while_a_client_process_keeps_writing() -> None:
    with ClusterGroup(masters=3) as cluster:
        keys = [f"{{migrate}}:{i}" for i in range(300)]
        slot = key_slot(b"migrate")
        counter = "{migrate}:counter"
        rc = cluster.client()
        for k in keys:
            rc.set(k, k)
        source = cluster.slot_owner(slot)
        target = next(m for m in cluster.masters() if m is not source)
        assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)

        stop, acked, out = SPAWN.Event(), SPAWN.Value("q", 0), SPAWN.Queue()
        proc = SPAWN.Process(target=cluster_client_worker,
                             args=([n.port for n in cluster.nodes], keys, counter, stop, acked, out))
        proc.start()
        try:
            deadline = time.monotonic() + 30
            while acked.value < 50:  # the client is running before the migration starts
                assert proc.is_alive() and time.monotonic() < deadline, "the client process did not get going"
                time.sleep(0.01)
            during = [acked.value]

            def paced(moved: int) -> None:
                time.sleep(0.02)  # let the client interleave with the migration
                during.append(acked.value)

            moved = cluster.migrate_slot(slot, target, batch=20, timeout=60, on_batch=paced)
            after_migration = acked.value
            assert during[-1] > during[0], during  # the client was served during the migration
            while acked.value < after_migration + 50:  # and it keeps going at the new owner
                assert proc.is_alive() and time.monotonic() < deadline + 30, "the client stopped"
                time.sleep(0.01)
        finally:
            stop.set()
            try:
                report = out.get(timeout=30)
            except queue.Empty:
                report = ("error", "Timeout", "no report from the client process")
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        assert report[0] == "done", report
        assert report[2] == [], report  # every INCR and GET succeeded (ASK/MOVED followed)
        assert moved == len(keys) + 1  # the keys and the counter
        assert cluster.slot_owner(slot) is target
        assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert target.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys) + 1
        # the client that set the keys (its slot map predates the move) and a fresh one read them all
        fresh = cluster.client()
        for client in (rc, fresh):
            assert [client.get(k) for k in keys] == [k.encode() for k in keys]
            assert int(client.get(counter)) == acked.value  # no acknowledged INCR was lost
        rc.close()
        fresh.close()


def test_waits_time_out_with_the_servers_logs() -> None:
    from tests.topology import _wait

    server = RedisProcess().start()
    try:
        with pytest.raises(TopologyTimeout, match=r"(?s)timed out after 0.2s waiting for never.*Ready to accept"):
            _wait("never", lambda: None, 0.2, logs=[server])
    finally:
        server.cleanup()
