"""Concurrency claims, tested with several OS processes against a real Redis.

Every child (``tests/workers.py``) opens its own connection and Store, and all
children of a test wait on one barrier so they really contend.  The parent
checks the final state in Redis, not what the children say alone.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from statestore import Container, NotFoundError, Store
from tests import workers
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow

_CTX = mp.get_context("spawn")


def run_processes(target: Callable[..., None], arg_sets: Sequence[tuple[Any, ...]],
                  timeout: float = 60.0) -> list[tuple[Any, ...]]:
    """Start one spawned process per argument tuple, all released by one barrier; collect reports."""
    out = _CTX.Queue()
    barrier = _CTX.Barrier(len(arg_sets))
    procs = [_CTX.Process(target=target, args=(*args, barrier, out), daemon=True) for args in arg_sets]
    for p in procs:
        p.start()
    reports: list[tuple[Any, ...]] = []
    try:
        for _ in procs:
            reports.append(out.get(timeout=timeout))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {len(procs)} workers reported within {timeout}s: {reports}")
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
        out.close()
    errors = [r for r in reports if r[0] == "error"]
    assert not errors, "worker failed:\n" + "\n".join(str(e) for e in errors)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def test_parallel_updates_of_one_counter_lose_nothing(redis_proc: RedisProcess, store: Store,
                                                      namespace: str, client: redis.Redis) -> None:
    processes, per_process = 8, 200
    c = store.containers.create(Container.new("busybox:1.36", name="counter",
                                              labels={workers.COUNTER_LABEL: "0"}))
    # half the workers address the record by name, half by full ID: both paths must be exact
    refs = ["counter" if i % 2 else c.id for i in range(processes)]
    reports = run_processes(workers.increment_worker,
                            [(redis_proc.port, namespace, ref, per_process) for ref in refs])

    assert sorted(r[:2] for r in reports) == [("done", per_process)] * processes
    final = store.containers.get("counter")
    assert final.labels[workers.COUNTER_LABEL] == str(processes * per_process)
    assert final.version == 1 + processes * per_process
    # one change-log entry per successful commit, each with the next version
    entries = client.xrange(store.keys.log)
    assert len(entries) == 1 + processes * per_process
    versions = [int(f[b"version"]) for _, f in entries]
    assert versions == list(range(1, 2 + processes * per_process))
    # update() absorbs contention itself (32 attempts with backoff): nothing escaped to the caller
    assert sum(r[2] for r in reports) == 0, reports


@pytest.mark.parametrize("contenders", [6])
def test_name_race_has_exactly_one_winner(redis_proc: RedisProcess, store: Store, namespace: str,
                                          client: redis.Redis, contenders: int) -> None:
    ids = [f"{i:x}" * 64 for i in range(1, contenders + 1)]  # 111..., 222..., distinct full IDs
    reports = run_processes(workers.name_race_worker,
                            [(redis_proc.port, namespace, "contested", cid) for cid in ids])

    winners = [r for r in reports if r[0] == "won"]
    losers = [r for r in reports if r[0] == "in_use"]
    assert len(winners) == 1, reports
    assert len(losers) == contenders - 1, reports
    winner_id = winners[0][1]
    assert winners[0][2] == 1
    for _, name, holder, _loser_id in losers:
        assert name == "contested"
        assert holder == winner_id

    # exactly one record, one name reservation, one member in every index
    assert store.containers.get("contested").id == winner_id
    for cid in ids:
        if cid != winner_id:
            with pytest.raises(NotFoundError):
                store.containers.get(cid)
    dump = dump_namespace(client, namespace)
    records = [k for k in dump if k.startswith(store.keys.record_prefix("container").encode())]
    names = [k for k in dump if k.startswith(store.keys.name_prefix.encode())]
    assert records == [store.keys.container(winner_id).encode()]
    assert names == [store.keys.name("contested").encode()]
    assert client.get(store.keys.name("contested")) == winner_id.encode()
    assert client.zrange(store.keys.index("container", "id"), 0, -1) == [winner_id.encode()]
    assert client.zrange(store.keys.index("container", "name"), 0, -1) == [f"contested\x00{winner_id}".encode()]
    assert client.zrange(store.keys.index("container", "label"), 0, -1) == [f"race\x001\x00{winner_id}".encode()]
    assert client.xlen(store.keys.log) == 1
    assert len(store.containers.list(all=True)) == 1


def test_parallel_creates_of_distinct_containers_never_conflict(tmp_path: Any) -> None:
    # A private server: the EXEC count below must only see this test's commits.
    server = RedisProcess().start()
    try:
        client = server.client()
        namespace = "bulk"
        store = Store(client, namespace)
        processes, per_process = 4, 100
        client.config_resetstat()
        reports = run_processes(workers.bulk_create_worker,
                                [(server.port, namespace, w, per_process) for w in range(processes)])
        stats = client.info("commandstats")
        created = {cid for r in reports for cid in r[2]}
        assert len(created) == processes * per_process

        # every create committed on its first EXEC: creates of different records never
        # abort each other (indexes and the change log are written, not watched)
        assert stats["cmdstat_exec"]["calls"] == processes * per_process
        id_index = {m.decode() for m in client.zrange(store.keys.index("container", "id"), 0, -1)}
        assert id_index == created
        listed = store.containers.list(all=True)
        assert {c.id for c in listed} == created
        assert not listed.corrupt
        for w in range(processes):
            mine = store.containers.list({"label": f"worker={w}"}, all=True)
            assert {c.name for c in mine} == {f"w{w}-{n}" for n in range(per_process)}
        assert client.xlen(store.keys.log) == processes * per_process
        client.close()
    finally:
        server.cleanup()
