"""Indeterminate commits: the connection is lost after EXEC was sent.

A proxy (tests/faultproxy.py) either delivers the transaction and drops its
reply (the commit applied, the client cannot know) or drops the EXEC (nothing
applied).  Either way the store must end with the change applied exactly
once, and report it as done -- or, when another writer changed the record in
between so that the outcome cannot be told, raise CommitIndeterminateError.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import redis

from statestore import CommitIndeterminateError, Container, ExecConfig, NotFoundError, Store

from .faultproxy import FaultProxy
from .redisproc import RedisProcess


@pytest.fixture
def proxy(redis_proc: RedisProcess) -> Iterator[FaultProxy]:
    p = FaultProxy(redis_proc.port).start()
    yield p
    p.close()


@pytest.fixture
def pstore(proxy: FaultProxy, namespace: str) -> Iterator[Store]:
    s = Store.from_url(proxy.url, namespace=namespace, unavailable_timeout=5.0)
    yield s
    s.close()


def _count(c: Container) -> int:
    return int(c.labels.get("count", "0"))


def _bump(c: Container) -> None:
    c.labels["count"] = str(_count(c) + 1)


def _stored(client: redis.Redis, store: Store, cid: str) -> dict[str, object]:
    raw = client.get(store.keys.container(cid))
    assert raw is not None
    doc: dict[str, object] = orjson.loads(raw)
    return doc


@pytest.mark.parametrize("mode", ["drop_reply", "drop_exec"])
def test_a_lost_update_is_applied_exactly_once(pstore: Store, proxy: FaultProxy, client: redis.Redis,
                                               mode: str) -> None:
    c = pstore.containers.create(Container.new(name="web", image="nginx"))
    proxy.arm(mode)
    out = pstore.containers.update(c.id, _bump)
    assert proxy.fired == 1
    assert out.version == 2 and _count(out) == 1
    now = pstore.containers.get(c.id)
    assert now.version == 2 and _count(now) == 1  # not twice
    meta = _stored(client, pstore, c.id)["StateStore"]
    assert isinstance(meta, dict) and meta["Commit"] == out.to_dict()["StateStore"]["Commit"]
    # the change log has exactly one update event for it
    entries = client.xrange(pstore.keys.log)
    assert [e[1][b"type"] for e in entries] == [b"create", b"update"]


@pytest.mark.parametrize("mode", ["drop_reply", "drop_exec"])
def test_a_lost_create_is_reported_as_created(pstore: Store, proxy: FaultProxy, client: redis.Redis,
                                              mode: str) -> None:
    proxy.arm(mode)
    c = pstore.containers.create(Container.new(name="db", image="postgres"))
    assert proxy.fired == 1
    assert c.version == 1
    assert pstore.containers.get("db").id == c.id
    assert len(client.xrange(pstore.keys.log)) == 1


@pytest.mark.parametrize("mode", ["drop_reply", "drop_exec"])
def test_a_lost_delete_is_reported_as_deleted(pstore: Store, proxy: FaultProxy, client: redis.Redis,
                                              mode: str) -> None:
    c = pstore.containers.create(Container.new(name="tmp", image="busybox"))
    proxy.arm(mode)
    gone = pstore.containers.delete(c.id)
    assert proxy.fired == 1
    assert gone.id == c.id and gone.version == 1
    with pytest.raises(NotFoundError):
        pstore.containers.get(c.id)
    assert [e[1][b"type"] for e in client.xrange(pstore.keys.log)] == [b"create", b"delete"]
    assert pstore.fsck().problems == []


def test_a_lost_compare_and_set_commit_is_not_a_conflict(pstore: Store, proxy: FaultProxy) -> None:
    c = pstore.containers.create(Container.new(name="cas", image="x"))
    c.labels["k"] = "v"
    proxy.arm("drop_reply")
    out = pstore.containers.commit(c)
    assert proxy.fired == 1
    assert out.version == 2 and out.labels["k"] == "v"
    assert pstore.containers.get(c.id).version == 2


def test_a_lost_exec_create_is_applied_once(pstore: Store, proxy: FaultProxy) -> None:
    c = pstore.containers.create(Container.new(name="run", image="x"))
    pstore.containers.update(c.id, lambda x: x.state.set_running(pid=42))
    proxy.arm("drop_reply")
    x = pstore.execs.create(ExecConfig.new(c.id, ["sh"]))
    assert proxy.fired == 1
    assert x.version == 1
    assert pstore.containers.get(c.id).exec_ids == [x.id]
    assert [e.id for e in pstore.execs.list()] == [x.id]


def test_another_writer_in_between_makes_the_outcome_unknown(pstore: Store, proxy: FaultProxy,
                                                             redis_proc: RedisProcess, namespace: str) -> None:
    c = pstore.containers.create(Container.new(name="busy", image="x"))
    other = Store.from_url(redis_proc.url, namespace=namespace)
    try:
        proxy.arm("drop_reply", hook=lambda: other.containers.update(c.id, _bump))
        with pytest.raises(CommitIndeterminateError) as info:
            pstore.containers.update(c.id, _bump)
        assert "another writer" in str(info.value)
        # both increments happened (ours, then the other writer's) and nothing more
        now = pstore.containers.get(c.id)
        assert now.version == 3 and _count(now) == 2
    finally:
        other.close()


def test_a_lost_update_whose_exec_was_dropped_is_not_ambiguous_with_a_writer_in_between(
        pstore: Store, proxy: FaultProxy, redis_proc: RedisProcess, namespace: str) -> None:
    """Not applied, and another writer committed version 2: the retry applies on top (version 3)."""
    c = pstore.containers.create(Container.new(name="busy2", image="x"))
    other = Store.from_url(redis_proc.url, namespace=namespace)
    try:
        proxy.arm("drop_exec", hook=None)
        other.containers.update(c.id, _bump)  # before the faulty commit: plain contention
        out = pstore.containers.update(c.id, _bump)
        assert out.version == 3 and _count(out) == 2
    finally:
        other.close()
