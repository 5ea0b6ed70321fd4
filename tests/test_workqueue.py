"""The public work queue (statestore.workqueue): delivery, take-over, results, typed errors.

Each item goes to exactly one consumer, also across OS processes; an item
whose consumer stopped touching it is taken over with its owner and delivery
count; ``finish`` acknowledges, deletes and reports in one transaction; bad
input is refused before anything is written; and a Redis failure surfaces
as a ``StateStoreError`` subclass, never a redis-py exception.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest
import redis

from statestore import (
    Container,
    InvalidArgumentError,
    StateStoreError,
    Store,
    StorePermissionError,
    StoreUnavailableError,
)
from statestore.workqueue import ACTIONS, GROUP, Result, WorkQueue
from tests.redisproc import RedisProcess


def cid() -> str:
    return Container.new("busybox").id


def test_submit_refuses_bad_input_and_writes_nothing(store: Store, client: redis.Redis) -> None:
    q = WorkQueue(store)
    with pytest.raises(InvalidArgumentError, match="unknown action"):
        q.submit("frobnicate", cid())
    with pytest.raises(InvalidArgumentError, match="container"):
        q.submit("start", "")
    with pytest.raises(InvalidArgumentError, match="plain JSON"):
        q.submit("start", cid(), when=object())
    with pytest.raises(InvalidArgumentError):
        q.read("r1", 0, 0.01)
    with pytest.raises(InvalidArgumentError):
        q.results(block=-1)
    assert client.exists(store.keys.work_queue, store.keys.work_results) == 0


def test_items_go_round_from_submit_to_result(store: Store, client: redis.Redis) -> None:
    q = WorkQueue(store)
    q.ensure_group()
    q.ensure_group()  # already there: nothing to do
    q.register("r1")
    assert q.consumers() == ["r1"]
    c = cid()
    item = q.submit("start", c, hang=0.5)
    assert q.length() == 1
    got = q.read("r1", 10, 0.05)
    assert [(e.id, e.fields["action"], e.fields["container"], e.fields["args"]) for e in got] == [
        (item, "start", c, '{"hang":0.5}')]
    assert q.read("r1", 10, 0.01) == []  # delivered once
    assert q.pending() == (1, {"r1": 1})
    q.finish(item, {"item": item, "replica": "r1", "action": "start", "container": c, "ok": "1",
                    "conflicts": 2, "duration_ms": 1.5, "status": "running", "actions": 3, "deliveries": 1})
    assert q.length() == 0 and q.pending().total == 0
    (r,) = q.results()
    assert isinstance(r, Result)
    assert (r.item, r.replica, r.ok, r.conflicts, r.duration_ms, r.status, r.actions) == (
        item, "r1", True, 2, 1.5, "running", 3)
    assert q.results(after=r.entry) == []
    assert q.results(after=r.entry, block=0.02) == []


def test_an_idle_item_is_taken_over_with_its_owner_and_deliveries(store: Store) -> None:
    q = WorkQueue(store)
    q.ensure_group()
    a = q.submit("stop", cid())
    b = q.submit("pause", cid())
    assert [e.id for e in q.read("dead", 10, 0.05)] == [a, b]
    q.touch("dead", [b])  # b is still being worked on; a is not
    assert q.take_over("live", idle=5.0, count=10) == []  # not idle long enough
    time.sleep(0.3)
    q.touch("dead", [b])
    claimed = q.take_over("live", idle=0.2, count=10)
    assert [(c.id, c.owner, c.deliveries, c.fields["action"]) for c in claimed] == [(a, "dead", 2, "stop")]
    assert claimed[0].idle_ms >= 200
    assert q.pending() == (2, {"dead": 1, "live": 1})


def test_an_item_deleted_meanwhile_is_acknowledged_not_taken_over(store: Store, client: redis.Redis) -> None:
    q = WorkQueue(store)
    q.ensure_group()
    a = q.submit("kill", cid())
    q.read("dead", 1, 0.05)
    client.xdel(store.keys.work_queue, a)
    time.sleep(0.15)
    assert q.take_over("live", idle=0.1, count=5) == []
    assert q.pending().total == 0


def test_a_deleted_group_is_created_again_by_read(store: Store, client: redis.Redis) -> None:
    q = WorkQueue(store)
    q.ensure_group()
    client.delete(store.keys.work_queue)
    assert q.read("r1", 1, 0.01) == []  # NOGROUP: created again, nothing this time
    item = q.submit("start", cid())
    assert [e.id for e in q.read("r1", 1, 0.05)] == [item]


def test_redis_failures_are_typed_errors() -> None:
    server = RedisProcess().start()
    try:
        with Store(server.client(socket_timeout=0.5), namespace="wq-down", unavailable_timeout=0.5) as store:
            q = WorkQueue(store)
            q.ensure_group()
            server.stop()
            for call in (lambda: q.submit("start", cid()), lambda: q.read("r1", 1, 0.01), q.results,
                         q.pending, q.length, q.ensure_group, lambda: q.finish("1-1", {"ok": "1"})):
                with pytest.raises(StoreUnavailableError) as err:
                    call()
                assert isinstance(err.value, StateStoreError) and not isinstance(err.value, redis.RedisError)
    finally:
        server.cleanup()


def test_an_acl_refusal_is_a_permission_error(redis_proc: RedisProcess, client: redis.Redis,
                                              namespace: str) -> None:
    user = f"wq-{namespace}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=[f"ss:{{{namespace}}}:*"],
                       commands=["+@all", "-xadd"])
    try:
        with Store(redis.Redis(host=redis_proc.host, port=redis_proc.port, username=user, password="pw"),
                   namespace=namespace) as store:
            q = WorkQueue(store)
            with pytest.raises(StorePermissionError, match="work queue's ACL"):
                q.submit("start", cid())
            assert q.results() == []  # XREAD is granted
    finally:
        client.acl_deluser(user)


# --- several OS processes: each item to exactly one ---------------------------------------------

def _consume(url: str, namespace: str, name: str, start: float, out: Any) -> None:
    store = Store(redis.Redis.from_url(url), namespace=namespace)
    q = WorkQueue(store)
    while time.time() < start:
        time.sleep(0.001)
    got: list[str] = []
    idle = 0
    while idle < 20:
        entries = q.read(name, 5, 0.02)
        idle = 0 if entries else idle + 1
        for e in entries:
            got.append(e.id)
            q.finish(e.id, {"item": e.id, "replica": name, "action": e.fields["action"], "ok": "1"})
    store.close()
    out.put((name, got))


def test_each_item_goes_to_exactly_one_of_several_processes(redis_proc: RedisProcess, store: Store) -> None:
    q = WorkQueue(store)
    q.ensure_group()
    items = {q.submit(ACTIONS[k % len(ACTIONS)], cid()) for k in range(300)}
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    start = time.time() + 1.5
    procs = [ctx.Process(target=_consume, args=(redis_proc.url, store.namespace, f"p{k}", start, out))
             for k in range(3)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    delivered = [i for ids in got.values() for i in ids]
    assert sorted(delivered) == sorted(items)  # every item, once
    assert sum(1 for ids in got.values() if ids) >= 2  # shared out, not all to one process
    results = q.results(count=1000)
    assert sorted(r.item for r in results) == sorted(items)
    assert {r.replica for r in results} == {name for name, ids in got.items() if ids}
    assert q.length() == 0 and q.pending().total == 0
    assert GROUP == "replicas"
