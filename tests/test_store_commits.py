"""Commits against a real Redis: versions, compare-and-set, retries, names, indexes, the change log.

A commit writes the record, its name reservation, its index members and one
change-log entry per changed record in one MULTI/EXEC.  Failed commits are
checked with ``dump_namespace``: the whole keyspace of the namespace, the
change log included, must be byte-for-byte what it was.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import orjson
import pytest
import redis

from statestore import (
    AlreadyExistsError,
    ConflictError,
    Container,
    ExecConfig,
    InvalidArgumentError,
    InvalidStateError,
    NameInUseError,
    NotFoundError,
    Store,
)
from statestore._names import generate_name
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess

LOG_FIELDS = {b"seq", b"type", b"kind", b"id", b"name", b"container", b"version", b"status", b"record"}


def new(name: str | None = None, **kw: Any) -> Container:
    return Container.new("nginx:1.27", name=name, **kw)


def start(c: Container) -> None:
    c.state.set_running(pid=4242)


def log_entries(client: redis.Redis, store: Store) -> list[tuple[str, dict[str, bytes]]]:
    return [(i.decode(), {k.decode(): v for k, v in f.items()}) for i, f in client.xrange(store.keys.log)]


def zmembers(client: redis.Redis, store: Store, kind: str, field: str) -> set[bytes]:
    return set(client.zrange(store.keys.index(kind, field), 0, -1))


# --- versions ------------------------------------------------------------------------------


def test_create_is_version_1_and_every_commit_adds_exactly_1(store: Store) -> None:
    c = store.containers.create(new("web"))
    assert c.version == 1
    assert store.containers.get("web").version == 1
    for expected in range(2, 7):
        c = store.containers.update("web", lambda x: x.labels.__setitem__("n", "v"))
        assert c.version == expected
        assert store.containers.get(c.id).version == expected
    c.labels["via"] = "commit"
    committed = store.containers.commit(c)
    assert committed.version == 7
    assert c.version == 6  # the caller's object is not bumped behind its back
    renamed = store.containers.rename("web", "web2")
    assert renamed.version == 8
    assert store.containers.get("web2").version == 8
    assert store.containers.get("web2").labels == {"n": "v", "via": "commit"}


def test_commit_returns_a_record_with_the_revision_of_its_log_entry(store: Store, client: redis.Redis) -> None:
    c = store.containers.create(new("web"))
    entries = log_entries(client, store)
    assert c.revision == entries[-1][0]
    c2 = store.containers.update("web", start)
    assert c2.revision == log_entries(client, store)[-1][0]
    assert store.containers.get("web").revision is None  # a plain read carries no revision


# --- compare-and-set -----------------------------------------------------------------------


def test_commit_on_a_stale_version_raises_conflict_and_writes_nothing(
        store: Store, client: redis.Redis, namespace: str) -> None:
    stale = store.containers.create(new("web"))
    store.containers.update("web", start)  # someone else commits: version 2
    stale.labels["mine"] = "lost"
    before = dump_namespace(client, namespace)
    with pytest.raises(ConflictError) as err:
        store.containers.commit(stale)
    assert err.value.key == store.keys.container(stale.id)
    assert err.value.expected == 1
    assert err.value.actual == 2
    assert dump_namespace(client, namespace) == before
    assert "mine" not in store.containers.get("web").labels


def test_commit_of_a_deleted_record_is_not_found_and_writes_nothing(
        store: Store, client: redis.Redis, namespace: str) -> None:
    c = store.containers.create(new("web"))
    store.containers.delete("web")
    before = dump_namespace(client, namespace)
    with pytest.raises(NotFoundError):
        store.containers.commit(c)
    with pytest.raises(NotFoundError):
        store.containers.update(c.id, start)
    assert dump_namespace(client, namespace) == before


def test_update_retries_the_whole_read_modify_write_on_a_conflict(store: Store, client: redis.Redis) -> None:
    store.containers.create(new("web", labels={"count": "0"}))
    other = Store(client, store.namespace)
    calls: list[int] = []

    def bump(c: Container) -> None:
        calls.append(c.version)
        if len(calls) == 1:
            # a concurrent writer commits between our read and our EXEC
            other.containers.update("web", lambda x: x.labels.__setitem__("other", "yes"))
        c.labels["count"] = str(int(c.labels["count"]) + 1)

    result = store.containers.update("web", bump)
    assert calls == [1, 2]  # re-read after the conflict: the second run saw version 2
    assert result.version == 3
    final = store.containers.get("web")
    assert final.labels == {"count": "1", "other": "yes"}  # nothing lost on either side
    assert final.version == 3


def test_update_function_that_raises_changes_nothing(store: Store, client: redis.Redis, namespace: str) -> None:
    store.containers.create(new("web"))

    class Boom(Exception):
        pass

    def half_done(c: Container) -> None:
        c.labels["half"] = "done"
        c.name = "elsewhere"
        raise Boom("nope")

    before = dump_namespace(client, namespace)
    with pytest.raises(Boom):
        store.containers.update("web", half_done)
    with pytest.raises(InvalidStateError):
        store.containers.update("web", lambda c: c.state.set_paused())  # created -> paused is illegal
    assert dump_namespace(client, namespace) == before
    # the connection went back to the pool unwatched: the next commit works
    assert store.containers.update("web", start).version == 2


def test_update_may_return_a_replacement_record(store: Store) -> None:
    store.containers.create(new("web"))

    def replace(c: Container) -> Container:
        d = c.to_dict()
        d["Config"]["Labels"] = {"replaced": "1"}
        out: Container = Container.from_dict(d)
        return out

    assert store.containers.update("web", replace).labels == {"replaced": "1"}
    assert store.containers.get("web").labels == {"replaced": "1"}


def test_update_leaves_a_returned_replacement_untouched(store: Store) -> None:
    # regression: update() bumped the replacement's version in place and returned a record
    # sharing the replacement's document
    base = store.containers.create(new("web"))
    prepared = base.copy()
    prepared.labels["prepared"] = "1"
    result = store.containers.update("web", lambda c: prepared)
    assert result.version == 2
    assert result.labels == {"prepared": "1"}
    result.labels["later"] = "edit"
    assert prepared.labels == {"prepared": "1"}  # no aliasing between result and the caller's object
    assert prepared.version == 1                 # and no version change behind the caller's back


# --- names -------------------------------------------------------------------------------------


def test_rename_frees_the_old_name_and_moves_every_index(store: Store, client: redis.Redis) -> None:
    c = store.containers.create(new("old-name", labels={"a": "1"}))
    store.containers.create(new("bystander"))
    r = store.containers.rename("/old-name", "/new-name")
    assert r.name == "new-name"
    assert r.to_dict()["Name"] == "/new-name"

    with pytest.raises(NotFoundError):
        store.containers.get("old-name")
    assert store.containers.get("new-name").id == c.id
    assert client.get(store.keys.name("old-name")) is None
    assert client.get(store.keys.name("new-name")) == c.id.encode()
    names = zmembers(client, store, "container", "name")
    assert f"new-name\x00{c.id}".encode() in names
    assert f"old-name\x00{c.id}".encode() not in names
    assert len(names) == 2
    assert [x.id for x in store.containers.list({"name": "^new-name$"}, all=True)] == [c.id]
    assert store.containers.list({"name": "old-name"}, all=True) == []
    # the freed name can be taken by another container at once
    assert store.containers.create(new("old-name")).name == "old-name"
    last = log_entries(client, store)[-2]
    assert last[1]["type"] == b"update" and last[1]["name"] == b"new-name"


def test_rename_to_a_taken_name_names_the_holder_and_writes_nothing(
        store: Store, client: redis.Redis, namespace: str) -> None:
    store.containers.create(new("aa"))
    b = store.containers.create(new("bb"))
    before = dump_namespace(client, namespace)
    with pytest.raises(NameInUseError) as err:
        store.containers.rename("aa", "bb")
    assert err.value.name == "bb"
    assert err.value.holder_id == b.id
    assert str(err.value) == (
        f'Conflict. The container name "/bb" is already in use by container "{b.id}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    with pytest.raises(InvalidArgumentError):
        store.containers.rename("aa", "aa")  # same name
    with pytest.raises(InvalidArgumentError):
        store.containers.rename("aa", "bad name")
    with pytest.raises(NotFoundError):
        store.containers.rename("nosuch", "cc")
    assert dump_namespace(client, namespace) == before


def test_create_with_a_taken_name_leaks_nothing(store: Store, client: redis.Redis, namespace: str) -> None:
    holder = store.containers.create(new("web", labels={"x": "1"}))
    before = dump_namespace(client, namespace)
    loser = new("web", labels={"y": "2"}, image_id="sha256:" + "1" * 64)
    with pytest.raises(NameInUseError) as err:
        store.containers.create(loser)
    assert err.value.holder_id == holder.id
    assert err.value.name == "web"
    assert dump_namespace(client, namespace) == before  # no record, name, index member or log entry
    with pytest.raises(NotFoundError):
        store.containers.get(loser.id)


def test_a_generated_name_that_is_taken_is_retried_with_another(store: Store, client: redis.Redis) -> None:
    first = store.containers.create(Container.new("nginx", rng=random.Random(7)))
    twin = Container.new("nginx", rng=random.Random(7))  # generates the very same name
    assert twin.name == first.name
    second = store.containers.create(twin)
    assert second.name != first.name
    assert re.fullmatch(r"[a-z]+_[a-z]+[0-9]", second.name) or second.name == second.id[:12]
    assert store.containers.get(second.name).id == second.id
    assert store.containers.get(first.name).id == first.id
    assert client.get(store.keys.name(second.name)) == second.id.encode()
    assert client.xlen(store.keys.log) == 2


def test_an_explicit_name_that_is_taken_is_never_replaced(store: Store) -> None:
    store.containers.create(new("fixed"))
    with pytest.raises(NameInUseError):
        store.containers.create(new("fixed"))


def test_generated_name_exhaustion_is_a_name_in_use_error(store: Store) -> None:
    # regression: Containers.create raised AssertionError('unreachable') when the generated
    # names and the short-ID fallback were all taken
    cid = "abcdef" + "0" * 58
    state = random.getstate()
    try:
        random.seed(1234)
        retries = [generate_name(retry=i) for i in range(1, 6)]
        first = generate_name(random.Random(5))
        for name in (first, *retries, cid[:12]):
            store.containers.create(new(name))
        random.seed(1234)  # the store draws the same retry names
        with pytest.raises(NameInUseError):
            store.containers.create(Container.new("nginx", id=cid, rng=random.Random(5)))
    finally:
        random.setstate(state)


def test_a_stale_name_reservation_is_reclaimed(store: Store, client: redis.Redis) -> None:
    gone = "f" * 64  # the name points at a container that no longer exists
    client.set(store.keys.name("web"), gone)
    c = store.containers.create(new("web"))
    assert client.get(store.keys.name("web")) == c.id.encode()
    assert store.containers.get("web").id == c.id


def test_create_with_an_existing_id_is_already_exists(store: Store, client: redis.Redis, namespace: str) -> None:
    c = store.containers.create(new("one"))
    before = dump_namespace(client, namespace)
    with pytest.raises(AlreadyExistsError) as err:
        store.containers.create(new("two", id=c.id))
    assert err.value.id == c.id
    with pytest.raises(InvalidArgumentError):
        store.containers.create(c)  # already committed (version 1)
    assert dump_namespace(client, namespace) == before


# --- the change log -----------------------------------------------------------------------------


def test_every_commit_appends_one_log_entry_per_changed_record(store: Store, client: redis.Redis) -> None:
    c = store.containers.create(new("web", labels={"app": "web"}))
    assert client.xlen(store.keys.log) == 1
    store.containers.update("web", start)
    assert client.xlen(store.keys.log) == 2
    x = store.execs.create(ExecConfig.new("web", ["sh", "-c", "true"]))  # exec + container
    assert client.xlen(store.keys.log) == 4
    store.containers.rename("web", "www")
    assert client.xlen(store.keys.log) == 5
    store.execs.delete(x.id)  # exec + container
    assert client.xlen(store.keys.log) == 7
    store.containers.delete("www")
    assert client.xlen(store.keys.log) == 8

    entries = log_entries(client, store)
    # the rename also carries prev, the name and labels before it (docs/schema.md)
    assert [set(f) - {k.decode() for k in LOG_FIELDS} for _, f in entries] == (
        [set()] * 4 + [{"prev", "action"}] + [set()] * 3)
    assert entries[4][1]["action"] == b"rename"  # rename() names its action (docs/events.md)
    assert all({k.decode() for k in LOG_FIELDS} <= set(f) for _, f in entries)
    assert orjson.loads(entries[4][1]["prev"]) == {"name": "web", "labels": {"app": "web"}}
    summary = [(f["type"], f["kind"], f["version"], f["status"], f["name"]) for _, f in entries]
    assert summary == [
        (b"create", b"container", b"1", b"created", b"web"),
        (b"update", b"container", b"2", b"running", b"web"),
        (b"create", b"exec", b"1", b"created", b""),
        (b"update", b"container", b"3", b"running", b"web"),
        (b"update", b"container", b"4", b"running", b"www"),
        (b"delete", b"exec", b"1", b"created", b""),
        (b"update", b"container", b"5", b"running", b"www"),
        (b"delete", b"container", b"5", b"running", b"www"),
    ]
    ids = [f["id"].decode() for _, f in entries]
    assert ids == [c.id, c.id, x.id, c.id, c.id, x.id, c.id, c.id]
    # each entry carries the record exactly as that commit stored it
    records = [orjson.loads(f["record"]) for _, f in entries]
    assert [r["StateStore"]["Version"] for r in records] == [1, 2, 1, 3, 4, 1, 5, 5]
    assert records[3]["ExecIDs"] == [x.id]
    assert records[6]["ExecIDs"] is None


def test_the_log_entry_is_the_stored_record_of_the_same_commit(store: Store, client: redis.Redis) -> None:
    for i in range(5):
        c = store.containers.create(new(f"c{i}"))
        stored = client.get(store.keys.container(c.id))
        rev, fields = log_entries(client, store)[-1]
        assert fields["record"] == stored
        assert c.revision == rev
        c = store.containers.update(c.id, start)
        rev, fields = log_entries(client, store)[-1]
        assert fields["record"] == client.get(store.keys.container(c.id))
        assert c.revision == rev


def test_failed_commits_append_nothing(store: Store, client: redis.Redis) -> None:
    stale = store.containers.create(new("web"))
    store.containers.create(new("other"))
    store.containers.update("web", lambda x: x.labels.__setitem__("v", "2"))
    n = client.xlen(store.keys.log)
    failures = [
        lambda: store.containers.create(new("web")),
        lambda: store.containers.rename("web", "other"),
        lambda: store.containers.commit(stale),
        lambda: store.execs.create(ExecConfig.new("web", ["sh"])),  # not running
        lambda: store.containers.update("web", lambda x: x.state.set_stopped(0)),  # not running
    ]
    for f in failures:
        with pytest.raises((NameInUseError, ConflictError, InvalidStateError)):
            f()
    assert client.xlen(store.keys.log) == n


# --- snapshot --------------------------------------------------------------------------------------


def test_snapshot_returns_every_record_at_the_last_log_revision(store: Store, client: redis.Redis) -> None:
    assert store.snapshot().revision == "0-0"
    made = [store.containers.create(new(f"c{i}")) for i in range(5)]
    store.containers.update("c1", start)
    x = store.execs.create(ExecConfig.new("c1", ["sh"]))
    store.containers.delete("c4")
    snap = store.snapshot()
    last_id = client.xrevrange(store.keys.log, count=1)[0][0].decode()
    assert snap.revision == last_id
    assert set(snap.containers) == {c.id for c in made[:4]}
    assert set(snap.execs) == {x.id}
    assert snap.containers[made[1].id].exec_ids == [x.id]
    assert snap.containers[made[1].id].version == 3
    assert not snap.corrupt
    for cid, rec in snap.containers.items():
        assert rec == store.containers.get(cid)
    assert snap.execs[x.id] == store.execs.get(x.id)
    # a snapshot is a frozen view: later commits do not show in it
    store.containers.update("c0", start)
    assert snap.containers[made[0].id].status == "created"
    assert store.snapshot().revision != snap.revision


# --- execs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["created", "exited", "paused", "restarting"])
def test_exec_create_requires_a_running_container(
        store: Store, client: redis.Redis, namespace: str, state: str) -> None:
    store.containers.create(new("web"))
    if state != "created":
        store.containers.update("web", start)
    if state == "exited":
        store.containers.update("web", lambda c: c.state.set_stopped(0))
    elif state == "paused":
        store.containers.update("web", lambda c: c.state.set_paused())
    elif state == "restarting":
        store.containers.update("web", lambda c: c.state.set_restarting(1))
    before = dump_namespace(client, namespace)
    with pytest.raises(InvalidStateError) as err:
        store.execs.create(ExecConfig.new("web", ["sh"]))
    assert err.value.current == state
    assert dump_namespace(client, namespace) == before


def test_exec_create_and_delete_keep_exec_ids_and_versions(store: Store, client: redis.Redis) -> None:
    c = store.containers.create(new("web"))
    store.containers.update("web", start)  # version 2
    x1 = store.execs.create(ExecConfig.new("web", ["sh"]))
    x2 = store.execs.create(ExecConfig.new(c.id[:10], ["top"]))
    assert x1.version == 1 and x2.version == 1
    assert x1.container_id == c.id and x2.container_id == c.id
    got = store.containers.get("web")
    assert got.exec_ids == [x1.id, x2.id]
    assert got.version == 4
    assert zmembers(client, store, "exec", "id") == {x1.id.encode(), x2.id.encode()}
    assert zmembers(client, store, "exec", "container") == {
        f"{c.id}\x00{x1.id}".encode(), f"{c.id}\x00{x2.id}".encode()}
    assert {e.id for e in store.execs.list("web")} == {x1.id, x2.id}

    with pytest.raises(AlreadyExistsError):
        store.execs.create(ExecConfig.new("web", ["sh"], id=x1.id))

    gone = store.execs.delete(x1.id[:12])
    assert gone.id == x1.id
    got = store.containers.get("web")
    assert got.exec_ids == [x2.id]
    assert got.version == 5
    assert client.get(store.keys.exec(x1.id)) is None
    assert zmembers(client, store, "exec", "id") == {x2.id.encode()}
    store.execs.delete(x2.id)
    got = store.containers.get("web")
    assert got.exec_ids == []
    assert got.to_dict()["ExecIDs"] is None  # Docker prints null, not []
    assert got.version == 6
    with pytest.raises(NotFoundError):
        store.execs.get(x2.id)


def test_exec_commits_do_not_touch_the_container(store: Store) -> None:
    store.containers.create(new("web"))
    store.containers.update("web", start)
    x = store.execs.create(ExecConfig.new("web", ["sh"]))
    container_version = store.containers.get("web").version
    x = store.execs.update(x.id, lambda e: e.set_running(pid=77))
    assert x.version == 2 and x.running
    x = store.execs.update(x.id, lambda e: e.set_exited(0))
    assert x.version == 3 and x.exit_code == 0 and x.status == "exited"
    assert store.containers.get("web").version == container_version
    with pytest.raises(InvalidArgumentError):
        store.execs.update(x.id, lambda e: e._d.__setitem__("ContainerID", "1" * 64))


def test_container_delete_removes_everything_but_the_log(store: Store, client: redis.Redis, namespace: str) -> None:
    c = store.containers.create(new(
        "web", labels={"a": "1", "b": "2"}, image_id="sha256:" + "ab" * 32,
        networks={"frontnet": {"NetworkID": "f" * 64}, "backnet": {}}))
    store.containers.update("web", start)
    xs = [store.execs.create(ExecConfig.new("web", [f"cmd{i}"])) for i in range(3)]
    n_before = client.xlen(store.keys.log)
    gone = store.containers.delete("web")
    assert gone.id == c.id
    assert gone.exec_ids == [x.id for x in xs]
    assert sorted(dump_namespace(client, namespace)) == sorted([store.keys.log.encode(), store.keys.log_seq.encode()])
    # one entry per removed record: three execs and the container
    tail = log_entries(client, store)[n_before:]
    assert [(f["type"], f["kind"]) for _, f in tail] == [(b"delete", b"exec")] * 3 + [(b"delete", b"container")]
    for ref in ("web", c.id):
        with pytest.raises(NotFoundError):
            store.containers.get(ref)
    for x in xs:
        with pytest.raises(NotFoundError):
            store.execs.get(x.id)
    # the name is free again
    assert store.containers.create(new("web")).name == "web"


# regression test (was a strict xfail before the fix)
def test_conflict_after_exhausted_retries_reports_the_actual_version(store: Store, client: redis.Redis) -> None:
    store.containers.create(new("web"))
    impatient = Store(client, store.namespace, conflict_attempts=2)
    other = Store(client, store.namespace)

    def always_raced(c: Container) -> None:
        other.containers.update("web", lambda x: x.labels.__setitem__("n", str(x.version)))
        c.labels["mine"] = "1"

    with pytest.raises(ConflictError) as err:
        impatient.containers.update("web", always_raced)
    assert err.value.attempts == 2
    assert "mine" not in store.containers.get("web").labels
    assert err.value.actual == store.containers.get("web").version


def test_close_releases_every_connection_the_store_opened(redis_proc: RedisProcess, client: redis.Redis,
                                                          namespace: str) -> None:
    """The store's own pool, the lock renewer's, watchers' and a view's: all closed by close(),
    not left to the garbage collector.  (Every connection carries the URL's client name, and
    the clients derived from it copy it, so the server can count exactly this store's.)"""
    name = f"closing-{namespace}"

    def mine() -> int:
        return sum(1 for c in client.client_list() if c.get("name") == name)

    store = Store.from_url(f"{redis_proc.url}?client_name={name}", namespace=namespace)
    c = store.containers.create(Container.new("nginx:1.27", name="closing"))
    with store.lock(c.id, ttl=0.3) as lease:
        time.sleep(0.2)  # the renewer runs
        store.containers.update(c.id, lambda x: None, lease=lease)
    watch = store.watch(since="0-0", block=0.1)
    next(watch)
    watch.close()
    with store.view() as view:
        assert view.get("closing").id == c.id
    assert mine() >= 2  # the store's own and the renewer's at least
    store.close()
    deadline = time.monotonic() + 5
    while mine() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mine() == 0


def test_an_update_or_commit_carries_its_action_into_the_log_and_the_watch(store: Store, client: redis.Redis) -> None:
    c = store.containers.create(new("web"))
    with store.watch(since=c.revision) as w:
        store.containers.update("web", start, action="start")
        fresh = store.containers.get("web")
        fresh.state.set_stopped(137)
        store.containers.commit(fresh, action="kill=9,die")
        store.containers.update("web", lambda x: x.labels.update(a="b"))  # no action
        events = [next(w) for _ in range(3)]
    assert [e.action for e in events] == ["start", "kill=9,die", ""]
    entries = log_entries(client, store)
    assert [f.get("action") for _, f in entries] == [None, b"start", b"kill=9,die", None]
    assert list(entries[1][1])[-2:] == ["action", "record"]
    before = dump_namespace(client, store.namespace)
    with pytest.raises(InvalidArgumentError):
        store.containers.update("web", start, action="Start Now")
    with pytest.raises(InvalidArgumentError):
        store.containers.commit(store.containers.get("web"), action="")
    assert dump_namespace(client, store.namespace) == before


def test_log_revision_is_the_newest_entry(store: Store) -> None:
    assert store.log_revision() == "0-0"
    c = store.containers.create(new("rev"))
    assert store.log_revision() == c.revision
    store.containers.update("rev", start)
    x = store.execs.create(ExecConfig.new("rev", ["true"]))  # an exec entry, then the container's
    after = store.log_revision()
    assert after != x.revision and after == store.snapshot().revision
