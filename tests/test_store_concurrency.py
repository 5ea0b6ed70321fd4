"""Concurrency claims, tested with several OS processes against a real Redis.

Every child (``tests/workers.py``) opens its own connection and Store, and all
children of a test wait on one barrier so they really contend.  The parent
checks the final state in Redis, not what the children say alone.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from statestore import Container, NotFoundError, Snapshot, Store
from tests import workers
from tests.conftest import dump_namespace
from tests.procs import run_processes
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow

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
    # update() absorbs contention itself (32 attempts with backoff): escapes to the caller (each
    # retried by the worker, so the count above stays exact) must stay exceptional
    assert sum(r[2] for r in reports) <= processes * per_process // 100, reports


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


def test_renames_and_creates_racing_for_one_name_have_one_winner(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    renamers = [store.containers.create(Container.new("busybox:1.36", name=f"r{i}")) for i in range(3)]
    creators = [f"{i:x}" * 64 for i in (7, 8, 9)]
    args = [(redis_proc.port, namespace, "rename", c.id, "prize") for c in renamers]
    args += [(redis_proc.port, namespace, "create", cid, "prize") for cid in creators]
    reports = run_processes(workers.claim_name_worker, args)

    winners = [r for r in reports if r[0] == "won"]
    assert len(winners) == 1, reports
    winner = winners[0][1]
    assert {r[2] for r in reports if r[0] == "in_use"} == {winner}
    assert store.containers.get("prize").id == winner
    assert client.get(store.keys.name("prize")) == winner.encode()

    # every surviving container holds exactly its own name; nothing else is reserved
    expected = {c.id: ("prize" if c.id == winner else c.name) for c in renamers}
    if winner in creators:
        expected[winner] = "prize"
    snap = store.snapshot()
    assert {cid: c.name for cid, c in snap.containers.items()} == expected
    name_keys = {k.decode()[len(store.keys.name_prefix):]: client.get(k).decode()  # type: ignore[union-attr]
                 for k in client.scan_iter(match=store.keys.name_prefix + "*")}
    assert name_keys == {n: cid for cid, n in expected.items()}
    members = {m.decode() for m in client.zrange(store.keys.index("container", "name"), 0, -1)}
    assert members == {f"{n}\x00{cid}" for cid, n in expected.items()}


def _check_snapshot_integrity(snap: Snapshot) -> None:
    assert not snap.corrupt
    for xid, x in snap.execs.items():
        owner = snap.containers.get(x.container_id)
        assert owner is not None, f"exec {xid} of missing container {x.container_id} at {snap.revision}"
        assert xid in owner.exec_ids, f"exec {xid} not in its container's ExecIDs at {snap.revision}"
    for cid, c in snap.containers.items():
        for xid in c.exec_ids:
            assert xid in snap.execs, f"{cid} lists missing exec {xid} at {snap.revision}"
            assert snap.execs[xid].container_id == cid


def test_snapshots_taken_during_churn_are_always_consistent(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    revisions: list[tuple[int, int]] = []

    def take() -> None:
        snap = store.snapshot()
        _check_snapshot_integrity(snap)
        ms, seq = snap.revision.split("-")
        revisions.append((int(ms), int(seq)))

    processes, rounds = 3, 30
    reports = run_processes(workers.churn_worker, [(redis_proc.port, namespace, w, rounds)
                                                   for w in range(processes)], while_waiting=take)
    assert len(set(revisions)) > 10  # the checks really ran while the workers wrote
    assert revisions == sorted(revisions)  # the revision never goes backwards

    final = store.snapshot()
    _check_snapshot_integrity(final)
    alive = {cid for r in reports for cid in r[2]}
    alive_execs = {xid for r in reports for xid in r[3]}
    assert set(final.containers) == alive
    assert set(final.execs) == alive_execs
    assert all(c.version == 5 for c in final.containers.values())  # create, start, 2 execs, 1 exec delete
    assert {m.decode() for m in client.zrange(store.keys.index("container", "id"), 0, -1)} == alive
    assert {m.decode() for m in client.zrange(store.keys.index("exec", "id"), 0, -1)} == alive_execs
    per_round = 1 + 1 + 2 * 2 + 2  # create, start, two exec creates, one exec delete
    deletes = 2  # the even rounds' container delete and its remaining exec
    even = (rounds + 1) // 2
    assert client.xlen(store.keys.log) == processes * (rounds * per_round + even * deletes)


def test_a_container_delete_racing_exec_creates_leaves_no_orphan(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    c = store.containers.create(Container.new("busybox:1.36", name="target"))
    store.containers.update("target", lambda x: x.state.set_running(pid=1))
    args: list[tuple[Any, ...]] = [(redis_proc.port, namespace, "exec", c.id) for _ in range(3)]
    args.append((redis_proc.port, namespace, "delete", c.id))
    reports = run_processes(workers.exec_or_delete_worker, args)

    made = {xid for r in reports if r[0] == "execs" for xid in r[1]}
    deleted = [r for r in reports if r[0] == "deleted"]
    assert len(deleted) == 1
    assert len(made) >= 10  # the delete waited for execs to pile up
    # the delete removed exactly the execs that were committed before it: all of them
    assert set(deleted[0][1]) == made
    assert sorted(dump_namespace(client, namespace)) == sorted([store.keys.log.encode(), store.keys.log_seq.encode()])
    kinds = [(f[b"type"], f[b"kind"]) for _, f in client.xrange(store.keys.log)]
    assert kinds.count((b"delete", b"exec")) == len(made)
    assert kinds.count((b"create", b"exec")) == len(made)


def test_compare_and_set_commits_from_many_processes_have_one_winner(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    c = store.containers.create(Container.new("busybox:1.36", name="cas"))
    tags = [f"p{i}" for i in range(6)]
    reports = run_processes(workers.cas_worker, [(redis_proc.port, namespace, "commit", c.id, t) for t in tags])

    won = [r for r in reports if r[0] == "won"]
    lost = [r for r in reports if r[0] == "conflict"]
    assert len(won) == 1 and len(lost) == len(tags) - 1, reports
    assert won[0][2] == 2
    assert all((r[2], r[3]) == (1, 2) for r in lost)  # each loser learns it read 1 and 2 is stored
    final = store.containers.get("cas")
    assert final.version == 2
    assert final.labels == {"winner": won[0][1]}
    assert client.xlen(store.keys.log) == 2


def test_racing_deletes_of_one_container_delete_it_once(
        redis_proc: RedisProcess, store: Store, namespace: str, client: redis.Redis) -> None:
    c = store.containers.create(Container.new("busybox:1.36", name="doomed", labels={"a": "b"}))
    reports = run_processes(workers.cas_worker,
                            [(redis_proc.port, namespace, "delete", c.id, f"p{i}") for i in range(5)])
    assert sorted(r[0] for r in reports) == ["deleted"] + ["not_found"] * 4, reports
    assert sorted(dump_namespace(client, namespace)) == sorted([store.keys.log.encode(), store.keys.log_seq.encode()])
    assert [f[b"type"] for _, f in client.xrange(store.keys.log)] == [b"create", b"delete"]
