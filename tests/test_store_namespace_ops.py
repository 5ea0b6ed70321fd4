"""Store.log_sequence and Store.delete_namespace, against a private redis-server."""

from __future__ import annotations

import pytest
import redis

from statestore import Container, CorruptRecordError, Store
from tests.conftest import dump_namespace


def test_log_sequence_counts_every_logged_change(store: Store) -> None:
    assert store.log_sequence() == 0
    web = store.containers.create(Container.new("nginx", name="web"))
    store.containers.update(web.id, lambda c: c.labels.update(app="shop"))
    assert store.log_sequence() == 2
    events = list(store.watch(since="0-0", block=0.05).poll(0.2))
    assert [e.seq for e in events] == [1, 2]
    store.containers.delete("web")
    assert store.log_sequence() == 3


def test_a_tampered_sequence_counter_is_a_corrupt_record_error(store: Store, client: redis.Redis) -> None:
    client.set(store.keys.log_seq, "not a number")
    with pytest.raises(CorruptRecordError, match="sequence"):
        store.log_sequence()


def test_delete_namespace_removes_this_namespace_only(store: Store, client: redis.Redis, namespace: str) -> None:
    other_ns = namespace + "-other"
    with Store(client, namespace=other_ns) as other:
        other.containers.create(Container.new("redis", name="db"))
        before_other = dump_namespace(client, other_ns)
        for k in range(600):  # more than one DEL batch
            store.containers.create(Container.new("busybox", name=f"c{k}"))
        held = len(dump_namespace(client, namespace))
        assert held > 1200  # a record and a name key each, the index sets, the log, its counter
        assert store.delete_namespace() == held
        assert dump_namespace(client, namespace) == {}
        assert dump_namespace(client, other_ns) == before_other
        assert store.log_sequence() == 0 and store.containers.list(all=True) == []
        store.containers.create(Container.new("busybox", name="again"))  # the namespace works again
        assert [c.name for c in store.containers.list(all=True)] == ["again"]
