"""durability="replicated": commits and lock acquisitions wait for replica acknowledgements (WAIT)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import orjson
import pytest
import redis

from statestore import Container, DurabilityError, InvalidArgumentError, Store

from .redisproc import RedisProcess


def _wait_link(replica: redis.Redis, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = replica.info("replication")
        if info.get("master_link_status") == "up":
            return
        time.sleep(0.05)
    raise AssertionError("the replica did not finish its initial sync")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RedisProcess, RedisProcess]]:
    primary = RedisProcess("--repl-diskless-sync-delay", "0").start()
    replica = RedisProcess("--replicaof", "127.0.0.1", str(primary.port), "--repl-diskless-sync-delay", "0").start()
    try:
        _wait_link(replica.client())
        yield primary, replica
    finally:
        for p in (replica, primary):
            p.stop()
            p.cleanup()


def _wait_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_an_acknowledged_commit_is_already_on_the_replica(pair: tuple[RedisProcess, RedisProcess]) -> None:
    primary, replica = pair
    rc = replica.client()
    with Store.from_url(primary.url, namespace="dur1", durability="replicated", replicas=1,
                        durability_timeout=5.0) as store:
        assert store.durability == "replicated"
        c = store.containers.create(Container.new(name="web", image="nginx"))
        for i in range(20):
            c = store.containers.update(c.id, lambda x, i=i: x.labels.__setitem__("n", str(i)))
            # WAIT returned >= 1: the replica has this very version, no polling needed
            doc = orjson.loads(rc.get(store.keys.container(c.id)))
            assert doc["StateStore"]["Version"] == c.version
        with store.lock(c.id) as lease:
            raw = rc.get(store.keys.lock(c.id))
            assert raw is not None and orjson.loads(raw)["token"] == lease.token


def test_the_fast_default_sends_no_wait(pair: tuple[RedisProcess, RedisProcess]) -> None:
    primary, _ = pair
    pc = primary.client()
    before = _wait_calls(pc)
    with Store.from_url(primary.url, namespace="dur2") as store:
        assert store.durability == "fast"
        c = store.containers.create(Container.new(name="aa", image="x"))
        store.containers.update(c.id, lambda x: None)
    assert _wait_calls(pc) == before
    with Store.from_url(primary.url, namespace="dur2b", durability="replicated") as store:
        store.containers.create(Container.new(name="aa", image="x"))
    assert _wait_calls(pc) == before + 1


def test_too_few_acknowledgements_raise_durability_error_with_the_result(
        pair: tuple[RedisProcess, RedisProcess]) -> None:
    primary, _ = pair
    with Store.from_url(primary.url, namespace="dur3", durability="replicated", replicas=2,
                        durability_timeout=0.2) as store:
        with pytest.raises(DurabilityError) as info:
            store.containers.create(Container.new(name="db", image="postgres"))
        err = info.value
        assert (err.acknowledged, err.required) == (1, 2)
        assert isinstance(err.result, Container) and err.result.version == 1
        assert "may be lost" in str(err)
        # applied on the primary: the commit is there, and is not retried or undone
        assert store.containers.get("db").id == err.result.id
        assert store.fsck().problems == []


def test_a_stopped_replica_makes_commits_report_durability_errors(
        pair: tuple[RedisProcess, RedisProcess]) -> None:
    primary, replica = pair
    with Store.from_url(primary.url, namespace="dur4", durability="replicated", replicas=1,
                        durability_timeout=0.3) as store:
        c = store.containers.create(Container.new(name="ww", image="x"))
        replica.signal(signal.SIGSTOP)
        try:
            with pytest.raises(DurabilityError) as info:
                store.containers.update(c.id, lambda x: x.labels.__setitem__("k", "v"))
            assert info.value.acknowledged == 0
        finally:
            replica.signal(signal.SIGCONT)
        # once the replica is back it catches up and commits are acknowledged again
        out = store.containers.update(c.id, lambda x: x.labels.__setitem__("k", "w"))
        assert out.version == 3
        doc = orjson.loads(replica.client().get(store.keys.container(c.id)))
        assert doc["Config"]["Labels"] == {"k": "w"}


def test_an_unreplicated_lock_acquisition_is_released_and_reported(
        pair: tuple[RedisProcess, RedisProcess]) -> None:
    primary, _ = pair
    with Store.from_url(primary.url, namespace="dur5") as fast:
        c = fast.containers.create(Container.new(name="ll", image="x"))
    with Store.from_url(primary.url, namespace="dur5", durability="replicated", replicas=2,
                        durability_timeout=0.2) as store:
        with pytest.raises(DurabilityError, match="lock acquisition"):
            store.lock(c.id, timeout=1)
        assert store.locks() == []
    with Store.from_url(primary.url, namespace="dur5") as fast:
        with fast.lock(c.id, timeout=1):
            pass


@pytest.mark.parametrize("kwargs, why", [
    ({"durability": "paranoid"}, "durability must be"),
    ({"durability": "replicated", "replicas": 0}, "replicas must be"),
    ({"durability": "replicated", "replicas": True}, "replicas must be"),
    ({"durability": "replicated", "durability_timeout": 0}, "durability_timeout"),
])
def test_bad_durability_settings_are_refused(pair: tuple[RedisProcess, RedisProcess],
                                             kwargs: dict[str, object], why: str) -> None:
    primary, _ = pair
    with pytest.raises(InvalidArgumentError, match=why):
        Store(primary.client(), namespace="dur6", **kwargs)  # type: ignore[arg-type]
