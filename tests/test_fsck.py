"""``Store.fsck``: every invariant of docs/schema.md broken by hand, reported, repaired.

Contract under test, per invariant:

* a healthy namespace (creates, updates, renames, deletes, execs) is clean;
* a violation made with raw Redis commands is reported as exactly the expected
  problems (code and key), and checking writes nothing;
* ``fsck(repair=True)`` repairs what the records determine, and fsck is then
  clean, or reports only the problems it cannot repair, unchanged;
* a repair never touches a key it does not fix: ``dump_namespace`` before and
  after differ only at the keys named by the test (the change log only when a
  record was committed), and record data is never deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from statestore import Container, ExecConfig, FsckReport, Problem, Store
from statestore._fsckcheck import CODES, analyze
from statestore._sync._clients import redis_cli
from statestore.cli import main
from tests.conftest import dump_namespace
from tests.faces import fsck_phases
from tests.redisproc import RedisProcess

SEP = "\x00"


def new_id() -> str:
    return os.urandom(32).hex()


@dataclass
class World:
    ns: str
    web: Container
    db: Container
    job: Container
    renamed: Container
    web_execs: list[ExecConfig]
    db_exec: ExecConfig

    def key(self, *parts: str) -> str:
        return f"ss:{{{self.ns}}}:" + ":".join(parts)

    def c(self, cid: str) -> str:
        return self.key("c", cid)

    def x(self, xid: str) -> str:
        return self.key("x", xid)

    def name(self, name: str) -> str:
        return self.key("name", name)

    def idx(self, tag: str, fld: str) -> str:
        return self.key("idx", tag, fld)

    @property
    def log(self) -> str:
        return self.key("log")

    @property
    def logseq(self) -> str:
        return self.key("logseq")


def populate(store: Store) -> World:
    """Containers in several states with labels, ports, networks and image IDs, a rename, a delete,
    and execs (one deleted, one run to completion)."""
    cs = store.containers
    web = cs.create(Container.new(
        "nginx:1.27", name="web", labels={"app": "shop", "tier": "front"}, image_id="sha256:" + "a" * 64,
        port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        networks={"front": {"NetworkID": "b" * 64}}))
    web = cs.update(web.id, lambda c: c.state.set_running(pid=10))
    db = cs.create(Container.new("postgres:16", name="db", labels={"app": "shop", "tier": "data"}))
    db = cs.update(db.id, lambda c: c.state.set_running(pid=11))
    job = cs.create(Container.new("busybox", name="job", cmd=["true"]))
    old = cs.create(Container.new("redis:7", name="old", labels={"x": "y"}))
    renamed = cs.rename(old.id, "renamed")
    gone = cs.create(Container.new("alpine", name="gone", labels={"app": "shop"}))
    cs.update(gone.id, lambda c: c.state.set_running(pid=12))
    cs.delete(gone.id)
    xs = [store.execs.create(ExecConfig.new("web", ["sh", "-c", f"echo {i}"])) for i in range(3)]
    store.execs.delete(xs[1].id)
    ran = store.execs.update(xs[0].id, lambda x: x.set_running(pid=99))
    ran = store.execs.update(ran.id, lambda x: x.set_exited(0))
    db_exec = store.execs.create(ExecConfig.new("db", ["psql"]))
    return World(store.namespace, cs.get(web.id), cs.get(db.id), cs.get(job.id), cs.get(renamed.id),
                 [ran, xs[2]], db_exec)


@pytest.fixture
def w(store: Store) -> World:
    return populate(store)


@pytest.fixture
def cli(redis_proc: RedisProcess) -> str:
    """How a manual action starts: redis-cli with the address of the server that was checked."""
    return f"redis-cli -h {redis_proc.host} -p {redis_proc.port}"


def doc_of(client: redis.Redis, key: str) -> dict[str, Any]:
    raw = client.get(key)
    assert isinstance(raw, bytes)
    d: dict[str, Any] = orjson.loads(raw)
    return d


def put_doc(client: redis.Redis, key: str, doc: dict[str, Any]) -> None:
    client.set(key, orjson.dumps(doc))


def b(key: str) -> bytes:
    return key.encode()


def roundtrip(store: Store, client: redis.Redis, expected: Iterable[tuple[str, str]], *,
              manual: Iterable[str] = (), changed: Iterable[str] = ()) -> FsckReport:
    """Check, repair and check again; return the repair's report.

    ``expected``: the (code, key) of every problem; ``manual``: the codes fsck cannot repair;
    ``changed``: the keys a repair may write (every other key must keep its type and value).
    """
    ns = store.namespace
    expected = sorted(expected)
    manual = set(manual)
    before = dump_namespace(client, ns)
    report = store.fsck()
    assert sorted(report.codes()) == expected, report.text()
    assert not report.clean
    for p in report.problems:
        assert p.code in CODES
        assert p.repairable == (p.code not in manual), p.line()
        assert not p.repaired
        if not p.repairable:
            assert p.action and p.action.startswith("redis-cli ") and "not repairable: manual action" in p.line()
    assert dump_namespace(client, ns) == before, "checking wrote something"

    fixed = store.fsck(repair=True)
    assert sorted(fixed.codes()) == expected, fixed.text()
    for p in fixed.problems:
        assert p.repaired == (p.code not in manual), p.line()
    assert fixed.repaired_all == (not manual)

    again = store.fsck()
    left = [p for p in report.problems if p.code in manual]
    assert [(p.code, p.key, p.message) for p in again.problems] == [(p.code, p.key, p.message) for p in left]
    assert again.clean == (not manual)

    after = dump_namespace(client, ns)
    allowed = {b(k) for k in changed}
    for k in before.keys() | after.keys():
        if k not in allowed:
            assert before.get(k) == after.get(k), k
    # a repeated repair has nothing left to do
    assert store.fsck(repair=True).codes() == again.codes()
    assert dump_namespace(client, ns) == after
    return fixed


def last_event(client: redis.Redis, w: World) -> dict[bytes, bytes]:
    (entry,) = client.xrevrange(w.log, count=1)
    fields: dict[bytes, bytes] = entry[1]
    return fields


# --- healthy namespaces ------------------------------------------------------------------------------


def test_healthy_namespace_is_clean(store: Store, client: redis.Redis, w: World) -> None:
    store.containers.update("job", lambda c: c.labels.update(stage="test"))
    store.containers.rename("renamed", "renamed-again")
    store.execs.delete(w.db_exec.id)
    before = dump_namespace(client, w.ns)
    report = store.fsck()
    assert report.clean and report.repaired_all and report.problems == []
    assert report.checked["containers"] == 4 and report.checked["execs"] == 2
    assert report.checked["names"] == 4
    assert report.checked["keys"] == len(before)
    assert report.checked["index_members"] == sum(len(v[1]) for v in before.values() if v[0] == "zset")
    assert report.text() == (
        f"fsck ss:{{{w.ns}}}: clean; checked {len(before)} keys: 4 containers, 2 execs, 4 names, "
        f"{report.checked['index_members']} index members")
    assert report.to_dict()["clean"] is True
    assert store.fsck(repair=True).clean
    assert dump_namespace(client, w.ns) == before


def test_empty_namespace_is_clean(store: Store) -> None:
    report = store.fsck(repair=True)
    assert report.clean and report.checked == {"keys": 0, "containers": 0, "execs": 0, "names": 0,
                                               "index_members": 0}


def test_held_and_released_locks_are_clean(store: Store, w: World) -> None:
    with store.lock("web"):
        assert store.fsck().clean
    assert store.fsck().clean  # the fence key stays behind, and is the schema's


def test_other_namespaces_are_not_read(store: Store, client: redis.Redis, w: World) -> None:
    other = Store(client, namespace=w.ns + "x")
    other.containers.create(Container.new("nginx", name="web"))
    client.set(f"ss:{{{w.ns}x}}:junk", "1")
    assert store.fsck().clean
    assert [p.code for p in other.fsck().problems] == ["orphan-key"]


# --- the report ----------------------------------------------------------------------------------------


def test_report_lines_summary_and_dict(store: Store, client: redis.Redis, w: World, cli: str) -> None:
    client.delete(w.name("web"))
    client.set(w.key("junk"), "1")
    report = store.fsck()
    lines = report.text().splitlines()
    assert lines[0] == (f"ERROR name-missing {w.name('web')} container {w.web.id} has no name key (repairable)")
    assert lines[1] == (f"WARNING orphan-key {w.key('junk')} a string the namespace's schema does not define "
                        f"(not repairable: manual action: {cli} TYPE '{w.key('junk')}')")
    assert lines[2].startswith(f"fsck ss:{{{w.ns}}}: 2 problem(s) (1 error(s), 1 warning(s)); 1 repairable, "
                               "1 not repairable; checked ")
    d = report.to_dict()
    assert orjson.loads(orjson.dumps(d)) == d
    assert d["clean"] is False and d["repaired_all"] is False and d["repair"] is False
    assert d["problems"][0] == {
        "code": "name-missing", "severity": "error", "key": w.name("web"), "record": w.c(w.web.id),
        "message": f"container {w.web.id} has no name key", "repairable": True, "repaired": False,
        "action": None, "error": None}
    fixed = store.fsck(repair=True)
    assert isinstance(fixed.problems[0], Problem)
    assert fixed.text().splitlines()[0].endswith("(repaired)")
    assert "1 repaired, 1 not repairable" in fixed.text().splitlines()[-1]
    assert not fixed.repaired_all


# --- invariant 1 and 3: name keys -------------------------------------------------------------------


def test_name_missing(store: Store, client: redis.Redis, w: World) -> None:
    client.delete(w.name("web"))
    roundtrip(store, client, [("name-missing", w.name("web"))], changed=[w.name("web")])
    assert client.get(w.name("web")) == w.web.id.encode()
    assert store.containers.get("web").version == w.web.version  # the record was not committed


@pytest.mark.parametrize("value", ["garbage", "missing-id"])
def test_name_dangling(store: Store, client: redis.Redis, w: World, value: str) -> None:
    client.set(w.name("ghost"), new_id() if value == "missing-id" else value)
    fixed = roundtrip(store, client, [("name-dangling", w.name("ghost"))], changed=[w.name("ghost")])
    assert fixed.problems[0].record is None
    assert not client.exists(w.name("ghost"))


def test_name_mismatch_second_name_for_a_container(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.name("alias"), w.web.id)
    roundtrip(store, client, [("name-mismatch", w.name("alias"))], changed=[w.name("alias")])
    assert not client.exists(w.name("alias"))
    assert client.get(w.name("web")) == w.web.id.encode()


def test_name_key_holds_another_container(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.name("web"), w.db.id)
    fixed = roundtrip(store, client, [("name-mismatch", w.name("web"))], changed=[w.name("web")])
    assert fixed.problems[0].record == w.c(w.web.id)
    assert client.get(w.name("web")) == w.web.id.encode()
    assert client.get(w.name("db")) == w.db.id.encode()


def test_name_key_holds_a_missing_container(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.name("web"), new_id())
    roundtrip(store, client, [("name-dangling", w.name("web"))], changed=[w.name("web")])
    assert store.containers.get("web").id == w.web.id


def test_name_key_of_wrong_type(store: Store, client: redis.Redis, w: World, cli: str) -> None:
    client.delete(w.name("web"))
    client.hset(w.name("web"), "holder", w.web.id)
    fixed = roundtrip(store, client, [("name-wrongtype", w.name("web"))], manual=["name-wrongtype"])
    assert fixed.problems[0].action == f"{cli} TYPE '{w.name('web')}'"
    assert client.type(w.name("web")) == b"hash"


def test_name_claimed_by_two_containers(store: Store, client: redis.Redis, w: World) -> None:
    """A record edited by hand to take another container's name: the duplicate is not repairable,
    the rest (its old name key and its name index member) is; the record itself is left alone."""
    doc = doc_of(client, w.c(w.job.id))
    doc["Name"] = "/web"
    put_doc(client, w.c(w.job.id), doc)
    roundtrip(store, client, [
        ("index-missing", w.idx("c", "name")),
        ("index-stale", w.idx("c", "name")),
        ("name-conflict", w.name("web")),
        ("name-mismatch", w.name("job")),
    ], manual=["name-conflict"], changed=[w.idx("c", "name"), w.name("job")])
    assert doc_of(client, w.c(w.job.id)) == doc
    assert client.get(w.name("web")) == w.web.id.encode()
    assert not client.exists(w.name("job"))
    members = client.zrange(w.idx("c", "name"), 0, -1)
    assert f"web{SEP}{w.job.id}".encode() in members and f"job{SEP}{w.job.id}".encode() not in members


def test_name_held_by_an_unreadable_container(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.c(w.job.id), b"{not json")
    client.set(w.name("web"), w.job.id)
    roundtrip(store, client, [("name-conflict", w.name("web")), ("record-corrupt", w.c(w.job.id))],
              manual=["name-conflict", "record-corrupt"])
    assert client.get(w.c(w.job.id)) == b"{not json"


# --- invariant 2 and 3: index members -----------------------------------------------------------------


def members_of(w: World) -> dict[tuple[str, str], str]:
    """One member of each index, as the store writes it."""
    cid, xid = w.web.id, w.web_execs[0].id
    return {
        ("c", "id"): cid,
        ("c", "name"): f"web{SEP}{cid}",
        ("c", "status"): f"running{SEP}{cid}",
        ("c", "label"): f"tier{SEP}front{SEP}{cid}",
        ("c", "image"): f"sha256:{'a' * 64}{SEP}{cid}",
        ("c", "network"): f"{'b' * 64}{SEP}{cid}",
        ("x", "id"): xid,
        ("x", "container"): f"{cid}{SEP}{xid}",
    }


INDEXES = [("c", "id"), ("c", "name"), ("c", "status"), ("c", "label"), ("c", "image"), ("c", "network"),
           ("x", "id"), ("x", "container")]


@pytest.mark.parametrize("index", INDEXES, ids=lambda i: ":".join(i))
def test_index_member_missing(store: Store, client: redis.Redis, w: World, index: tuple[str, str]) -> None:
    key = w.idx(*index)
    member = members_of(w)[index]
    assert client.zrem(key, member) == 1
    fixed = roundtrip(store, client, [("index-missing", key)], changed=[key])
    owner = w.c(w.web.id) if index[0] == "c" else w.x(w.web_execs[0].id)
    assert fixed.problems[0].record == owner
    assert client.zscore(key, member) == 0


@pytest.mark.parametrize("index", INDEXES, ids=lambda i: ":".join(i))
def test_index_member_of_a_missing_record(store: Store, client: redis.Redis, w: World,
                                          index: tuple[str, str]) -> None:
    key = w.idx(*index)
    ghost = new_id()
    member = members_of(w)[index].replace(w.web.id if index[0] == "c" else w.web_execs[0].id, ghost)
    client.zadd(key, {member: 0})
    fixed = roundtrip(store, client, [("index-dangling", key)], changed=[key])
    assert fixed.problems[0].record == w.key(index[0], ghost)
    assert client.zscore(key, member) is None


def test_index_member_not_implied_by_its_record(store: Store, client: redis.Redis, w: World) -> None:
    label, name = w.idx("c", "label"), w.idx("c", "name")
    client.zadd(label, {f"app{SEP}other{SEP}{w.web.id}": 0, f"owner{SEP}me{SEP}{w.web.id}": 0})
    client.zadd(name, {f"old-web{SEP}{w.web.id}": 0})
    fixed = roundtrip(store, client, [("index-stale", label), ("index-stale", name)], changed=[label, name])
    assert all(p.record == w.c(w.web.id) for p in fixed.problems)
    assert "2 member(s)" in fixed.problems[0].message
    assert client.zrange(name, 0, -1) == sorted(
        f"{n}{SEP}{c.id}".encode() for n, c in (("web", w.web), ("db", w.db), ("job", w.job),
                                                 ("renamed", w.renamed)))


def test_index_member_without_a_record_id(store: Store, client: redis.Redis, w: World) -> None:
    key = w.idx("c", "label")
    client.zadd(key, {"junk": 0, b"\xff\xfe": 0})
    fixed = roundtrip(store, client, [("index-dangling", key)], changed=[key])
    assert fixed.problems[0].record is None and "do not end in a record ID" in fixed.problems[0].message
    assert client.zscore(key, "junk") is None


def test_many_members_without_a_record_id(store: Store, client: redis.Redis, w: World) -> None:
    key = w.idx("c", "label")
    client.zadd(key, {f"junk{i}": 0 for i in range(5000)})
    fixed = roundtrip(store, client, [("index-dangling", key)], changed=[key])
    assert "5000 member(s)" in fixed.problems[0].message and "(4995 more)" in fixed.problems[0].message
    assert client.zcard(key) == 5  # web and db: app, tier; renamed: x


def test_index_member_with_a_score(store: Store, client: redis.Redis, w: World) -> None:
    key = w.idx("c", "id")
    client.zadd(key, {w.web.id: 5})
    roundtrip(store, client, [("index-score", key)], changed=[key])
    assert client.zscore(key, w.web.id) == 0


def test_index_key_deleted(store: Store, client: redis.Redis, w: World) -> None:
    key = w.idx("c", "status")
    before = client.zrange(key, 0, -1)
    client.delete(key)
    fixed = roundtrip(store, client, [("index-missing", key)] * 4, changed=[key])
    assert {p.record for p in fixed.problems} == {w.c(c.id) for c in (w.web, w.db, w.job, w.renamed)}
    assert client.zrange(key, 0, -1) == before


@pytest.mark.parametrize("index", [("c", "label"), ("c", "status"), ("x", "container")], ids=lambda i: ":".join(i))
@pytest.mark.parametrize("rtype", ["string", "hash"])
def test_index_key_of_wrong_type(store: Store, client: redis.Redis, w: World, index: tuple[str, str],
                                 rtype: str) -> None:
    key = w.idx(*index)
    before = client.zrange(key, 0, -1, withscores=True)
    client.delete(key)
    if rtype == "string":
        client.set(key, "oops")
    else:
        client.hset(key, "a", "b")
    roundtrip(store, client, [("index-wrongtype", key)], changed=[key])
    assert client.zrange(key, 0, -1, withscores=True) == before
    store.containers.update("web", lambda c: c.labels.update(after="repair"))  # commits work again
    assert store.fsck().clean


# --- records -------------------------------------------------------------------------------------------


GARBAGE = {
    "not-json": lambda d: b"\x00\xffnot json{",
    "json-array": lambda d: b"[1, 2]",
    "other-id": lambda d: orjson.dumps({**d, "Id": new_id()}),
    "kind-exec": lambda d: orjson.dumps({**d, "StateStore": {"Schema": 1, "Kind": "exec", "Version": 3}}),
    "bad-execids": lambda d: orjson.dumps({**d, "ExecIDs": ["nope"]}),
    "bad-name": lambda d: orjson.dumps({**d, "Name": "/bad name"}),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_corrupt_container_record(store: Store, client: redis.Redis, w: World, garbage: str, cli: str) -> None:
    """Reported, never repaired or deleted; its name key, index members and execs are left alone."""
    key = w.c(w.web.id)
    bad = GARBAGE[garbage](doc_of(client, key))
    client.set(key, bad)
    fixed = roundtrip(store, client, [("record-corrupt", key)], manual=["record-corrupt"])
    assert fixed.problems[0].action == f"{cli} GET '{key}'"
    assert client.get(key) == bad


def test_corrupt_exec_record(store: Store, client: redis.Redis, w: World) -> None:
    key = w.x(w.web_execs[1].id)
    client.set(key, b'{"ID": 1}')
    roundtrip(store, client, [("record-corrupt", key)], manual=["record-corrupt"])
    assert client.get(key) == b'{"ID": 1}'


@pytest.mark.parametrize("kind", ["c", "x"])
def test_record_key_of_wrong_type(store: Store, client: redis.Redis, w: World, kind: str) -> None:
    key = w.c(w.job.id) if kind == "c" else w.x(w.db_exec.id)
    client.delete(key)
    client.hset(key, "Id", "x")
    roundtrip(store, client, [("record-wrongtype", key)], manual=["record-wrongtype"])
    assert client.hgetall(key) == {b"Id": b"x"}


def test_record_of_a_newer_schema(store: Store, client: redis.Redis, w: World) -> None:
    key = w.c(w.web.id)
    doc = doc_of(client, key)
    doc["StateStore"]["Schema"] = 2
    put_doc(client, key, doc)
    fixed = roundtrip(store, client, [("record-schema-newer", key)], manual=["record-schema-newer"])
    assert "schema 2" in fixed.problems[0].message
    assert doc_of(client, key) == doc


def test_schema_0_record_gets_its_name_and_index_members(store: Store, client: redis.Redis, w: World) -> None:
    """A bare docker inspect document written by hand: fsck adds what statestore does not."""
    imported = Container.new("httpd:2", name="imported", labels={"from": "docker"})
    doc = imported.to_dict()
    del doc["StateStore"]
    key = w.c(imported.id)
    raw = orjson.dumps(doc)
    client.set(key, raw)
    expected = [("name-missing", w.name("imported"))] + [
        ("index-missing", w.idx("c", f)) for f in ("id", "name", "status", "label", "image", "network")]
    roundtrip(store, client, expected, changed=[w.name("imported")] + [w.idx("c", f) for f in
                                                                        ("id", "name", "status", "label",
                                                                         "image", "network")])
    assert client.get(key) == raw  # not rewritten
    assert store.containers.get("imported").id == imported.id
    assert [c.id for c in store.containers.list({"label": "from=docker"}, all=True)] == [imported.id]


# --- invariant 4: ExecIDs and execs ---------------------------------------------------------------------


def set_exec_ids(client: redis.Redis, w: World, ids: list[str] | None) -> dict[str, Any]:
    key = w.c(w.web.id)
    doc = doc_of(client, key)
    doc["ExecIDs"] = ids
    put_doc(client, key, doc)
    return doc


def assert_committed_exec_ids(store: Store, client: redis.Redis, w: World, ids: list[str]) -> None:
    web = store.containers.get(w.web.id)
    assert web.exec_ids == ids
    assert web.version == w.web.version + 1
    ev = last_event(client, w)
    assert ev[b"type"] == b"update" and ev[b"id"] == w.web.id.encode()
    assert ev[b"version"] == str(web.version).encode()
    assert orjson.loads(ev[b"record"]) == web.to_dict()


def test_exec_not_listed(store: Store, client: redis.Redis, w: World) -> None:
    a, b_ = (x.id for x in w.web_execs)
    set_exec_ids(client, w, [a])
    roundtrip(store, client, [("exec-not-listed", w.x(b_))], changed=[w.c(w.web.id), w.log, w.logseq])
    assert_committed_exec_ids(store, client, w, [a, b_])


def test_exec_ids_lists_missing_exec(store: Store, client: redis.Redis, w: World) -> None:
    a, b_ = (x.id for x in w.web_execs)
    set_exec_ids(client, w, [a, new_id(), b_])
    roundtrip(store, client, [("execids-missing-exec", w.c(w.web.id))],
              changed=[w.c(w.web.id), w.log, w.logseq])
    assert_committed_exec_ids(store, client, w, [a, b_])


def test_exec_ids_lists_another_containers_exec(store: Store, client: redis.Redis, w: World) -> None:
    a, b_ = (x.id for x in w.web_execs)
    set_exec_ids(client, w, [a, w.db_exec.id, b_])
    roundtrip(store, client, [("execids-wrong-container", w.c(w.web.id))],
              changed=[w.c(w.web.id), w.log, w.logseq])
    assert_committed_exec_ids(store, client, w, [a, b_])
    assert store.containers.get("db").exec_ids == [w.db_exec.id]


def test_exec_ids_duplicate_and_emptied(store: Store, client: redis.Redis, w: World) -> None:
    a, b_ = (x.id for x in w.web_execs)
    set_exec_ids(client, w, [b_, a, b_])
    roundtrip(store, client, [("execids-duplicate", w.c(w.web.id))], changed=[w.c(w.web.id), w.log, w.logseq])
    assert_committed_exec_ids(store, client, w, [b_, a])
    # all execs gone behind the store's back: ExecIDs goes back to null, as Docker prints it
    client.delete(w.x(a), w.x(b_))
    for f, m in ((w.idx("x", "id"), a), (w.idx("x", "id"), b_), (w.idx("x", "container"), f"{w.web.id}{SEP}{a}"),
                 (w.idx("x", "container"), f"{w.web.id}{SEP}{b_}")):
        client.zrem(f, m)
    assert store.fsck(repair=True).codes() == [("execids-missing-exec", w.c(w.web.id))]
    assert doc_of(client, w.c(w.web.id))["ExecIDs"] is None
    assert store.fsck().clean


def test_exec_of_a_missing_container(store: Store, client: redis.Redis, w: World) -> None:
    """An exec record (with its index members) whose container does not exist: reported, kept."""
    orphan = ExecConfig.new(new_id(), ["sh"])
    doc = orphan.to_dict()
    doc["StateStore"]["Version"] = 1
    key = w.x(orphan.id)
    put_doc(client, key, doc)
    client.zadd(w.idx("x", "id"), {orphan.id: 0})
    client.zadd(w.idx("x", "container"), {f"{orphan.container_id}{SEP}{orphan.id}": 0})
    roundtrip(store, client, [("exec-container-missing", key)], manual=["exec-container-missing"])
    assert doc_of(client, key) == doc


def test_exec_of_an_unreadable_container_is_not_judged(store: Store, client: redis.Redis, w: World) -> None:
    set_exec_ids(client, w, [])
    client.set(w.c(w.web.id), b"garbage")
    assert store.fsck().codes() == [("record-corrupt", w.c(w.web.id))]


# --- the change log --------------------------------------------------------------------------------------


def test_log_of_wrong_type_blocks_only_the_fixes_that_commit(store: Store, client: redis.Redis, w: World) -> None:
    a, b_ = (x.id for x in w.web_execs)
    web_doc = set_exec_ids(client, w, [a])
    client.delete(w.log)
    client.set(w.log, "not a stream")
    client.delete(w.name("db"))
    checked = {p.code: p for p in store.fsck().problems}
    assert checked["exec-not-listed"].status == "repairable" and checked["exec-not-listed"].error is None
    before = dump_namespace(client, w.ns)
    fixed = store.fsck(repair=True)
    assert sorted(fixed.codes()) == [("exec-not-listed", w.x(b_)), ("log-wrongtype", w.log),
                                     ("name-missing", w.name("db"))]
    by_code = {p.code: p for p in fixed.problems}
    assert by_code["name-missing"].repaired
    assert by_code["exec-not-listed"].repairable and not by_code["exec-not-listed"].repaired
    assert "change log" in (by_code["exec-not-listed"].error or "")
    assert "not repaired: " in by_code["exec-not-listed"].line()
    assert not by_code["log-wrongtype"].repairable
    assert not fixed.repaired_all
    after = dump_namespace(client, w.ns)
    assert doc_of(client, w.c(w.web.id)) == web_doc
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {b(w.name("db"))}
    assert sorted(store.fsck().codes()) == [("exec-not-listed", w.x(b_)), ("log-wrongtype", w.log)]
    # once the log is fixed by hand, the rest can be repaired
    client.delete(w.log)
    roundtrip(store, client, [("exec-not-listed", w.x(b_))], changed=[w.c(w.web.id), w.log, w.logseq])
    assert store.containers.get("web").exec_ids == [a, b_]


@pytest.mark.parametrize("breakage", ["list", "twelve", " 12", "012", str(1 << 63)])
def test_log_sequence_counter(store: Store, client: redis.Redis, w: World, breakage: str) -> None:
    client.delete(w.logseq)
    if breakage == "list":
        client.rpush(w.logseq, "1")
        code = "logseq-wrongtype"
    else:
        client.set(w.logseq, breakage)
        with pytest.raises(redis.ResponseError):
            client.incr(w.logseq)  # what fsck calls invalid is what INCR refuses
        code = "logseq-invalid"
    roundtrip(store, client, [(code, w.logseq)], manual=[code])


def test_log_sequence_counter_at_its_largest_is_valid(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.logseq, str((1 << 63) - 2))
    assert store.fsck().clean


# --- locks and keys the schema does not define ----------------------------------------------------------


@pytest.mark.parametrize("value", ["garbage", "json-without-token", "hash"])
def test_unreadable_lock_value(store: Store, client: redis.Redis, w: World, value: str) -> None:
    key = w.key("lock", w.web.id)
    if value == "hash":
        client.hset(key, "token", "1")
    else:
        client.set(key, "garbage" if value == "garbage" else '{"acquired_ms": 1}', px=60_000)
    fixed = roundtrip(store, client, [("lock-unreadable", key)], manual=["lock-unreadable"])
    assert fixed.problems[0].severity == "warning"
    assert client.exists(key)


def test_orphan_keys_are_reported_not_deleted(store: Store, client: redis.Redis, w: World) -> None:
    orphans = [w.key("junk"), w.key("c", "not-an-id"), w.key("x", w.web.id[:12]), w.key("idx", "c", "bogus"),
               w.key("idx", "q", "id"), w.key("name", "-bad"), w.key("log", "extra"), w.key("ev", "container", "x"),
               w.key("lock", "web")]
    for k in orphans[:-1]:
        client.set(k, "1")
    client.hset(orphans[-1], "a", "b")
    fixed = roundtrip(store, client, [("orphan-key", k) for k in orphans], manual=["orphan-key"])
    assert all(p.severity == "warning" for p in fixed.problems)
    assert all(client.exists(k) for k in orphans)


def test_every_single_key_the_schema_names_is_no_orphan(store: Store, client: redis.Redis, w: World) -> None:
    """lockseq, and the keys other parts of statestore add to ``KeySchema`` (the daemon's queues)."""
    from statestore._fsckcheck import _single_keys

    single = _single_keys(store.keys)
    assert {"log", "log_seq", "lock_seq"} <= set(single.values())
    assert not any(k.endswith((":", "*")) for k in single)
    for key, attr in single.items():
        if attr not in ("log", "log_seq"):
            client.set(key, "1")
    assert store.fsck().clean


# --- repairs recheck what they change under WATCH -------------------------------------------------------


def test_repair_rechecks_a_rename_since_the_scan(store: Store, client: redis.Redis, w: World) -> None:
    client.delete(w.name("web"))
    read_namespace, repair = fsck_phases(store)
    analysis = analyze(store.keys, read_namespace(), store.max_record_bytes)
    assert [(p.code, p.key) for p in analysis.problems] == [("name-missing", w.name("web"))]
    store.containers.rename(w.web.id, "web2")  # takes name:web2 in the meantime
    repair(analysis)
    assert analysis.problems[0].repaired
    assert not client.exists(w.name("web"))  # not recreated for a name the container no longer has
    assert store.fsck().clean


def test_repair_does_not_resurrect_a_deleted_record(store: Store, client: redis.Redis, w: World) -> None:
    set_exec_ids(client, w, [w.web_execs[0].id])
    client.zrem(w.idx("c", "label"), f"app{SEP}shop{SEP}{w.web.id}")
    read_namespace, repair = fsck_phases(store)
    analysis = analyze(store.keys, read_namespace(), store.max_record_bytes)
    assert sorted((p.code, p.key) for p in analysis.problems) == [
        ("exec-not-listed", w.x(w.web_execs[1].id)), ("index-missing", w.idx("c", "label"))]
    store.containers.delete("web")
    repair(analysis)
    assert not client.exists(w.c(w.web.id))
    assert client.zrangebylex(w.idx("c", "label"), f"[app{SEP}shop{SEP}{w.web.id}",
                              f"[app{SEP}shop{SEP}{w.web.id}") == []
    assert store.fsck().codes() == [("exec-container-missing", w.x(w.web_execs[1].id))]


def test_repair_of_a_name_the_holder_now_keeps(store: Store, client: redis.Redis, w: World) -> None:
    client.set(w.name("ghost"), new_id())
    read_namespace, repair = fsck_phases(store)
    analysis = analyze(store.keys, read_namespace(), store.max_record_bytes)
    ghost = store.containers.create(Container.new("nginx", name="ghost"))  # reclaims the stale name
    repair(analysis)
    assert client.get(w.name("ghost")) == ghost.id.encode()
    assert store.fsck().clean


@pytest.mark.slow
def test_repairs_during_churn_leave_a_consistent_namespace(client: redis.Redis, namespace: str) -> None:
    """Writers commit while fsck(repair=True) runs in a loop: the scan may see a commit half-way and
    report a problem that is not one, but every repair re-reads under WATCH, so none does harm."""
    import random
    import threading
    import time

    from statestore import StateStoreError

    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        st = Store(client, namespace=namespace)
        mine: list[str] = []
        try:
            while not stop.is_set():
                op = rng.random()
                try:
                    if op < 0.3 or not mine:
                        c = st.containers.create(Container.new("nginx", name=f"w{seed}-{rng.randrange(10**9)}",
                                                               labels={"s": str(seed)}))
                        mine.append(st.containers.update(c.id, lambda x: x.state.set_running(pid=5)).id)
                    elif op < 0.5:
                        st.execs.create(ExecConfig.new(rng.choice(mine), ["sh"]))
                    elif op < 0.6:
                        xs = st.execs.list(rng.choice(mine))
                        if xs:
                            st.execs.delete(xs[0].id)
                    elif op < 0.75:
                        st.containers.rename(rng.choice(mine), f"r{seed}-{rng.randrange(10**9)}")
                    elif op < 0.9:
                        st.containers.update(rng.choice(mine), lambda x: x.labels.update(n=str(rng.random())))
                    else:
                        st.containers.delete(mine.pop(rng.randrange(len(mine))))
                except StateStoreError as exc:
                    if type(exc).__name__ not in ("ConflictError", "NotFoundError", "InvalidStateError"):
                        raise
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    store = Store(client, namespace=namespace)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 1.5
    runs = 0
    try:
        while time.monotonic() < deadline:
            store.fsck(repair=True)
            runs += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert runs > 1
    report = store.fsck()
    assert report.clean, report.text()
    assert report.checked["containers"] > 0


# --- size ----------------------------------------------------------------------------------------------


def test_a_few_hundred_containers(store: Store, client: redis.Redis) -> None:
    ids = []
    for i in range(300):
        c = store.containers.create(Container.new("nginx:1.27", name=f"c{i}", labels={"n": str(i % 7), "k": "v"}))
        if i % 3 == 0:
            c = store.containers.update(c.id, lambda x: x.state.set_running(pid=100 + i))  # noqa: B023
        ids.append(c.id)
    for i in range(0, 60, 3):
        store.execs.create(ExecConfig.new(ids[i], ["sh"]))
    report = store.fsck()
    assert report.clean, report.text()
    assert report.checked["containers"] == 300 and report.checked["execs"] == 20
    ns = store.namespace
    status = f"ss:{{{ns}}}:idx:c:status"
    client.delete(status)
    client.delete(f"ss:{{{ns}}}:idx:c:label")
    client.set(f"ss:{{{ns}}}:idx:c:label", "x")
    client.set(f"ss:{{{ns}}}:c:{ids[5]}", b"garbage")
    fixed = store.fsck(repair=True)
    codes = [p.code for p in fixed.problems]
    assert codes.count("index-missing") == 299 and codes.count("index-wrongtype") == 1
    assert codes.count("record-corrupt") == 1 and len(codes) == 301
    assert sorted(store.fsck().codes()) == [("record-corrupt", f"ss:{{{ns}}}:c:{ids[5]}")]
    assert len(store.containers.list({"label": "k=v"}, all=True)) == 299
    assert len(store.containers.list()) == 100


# --- manual actions name the server ----------------------------------------------------------------------


def test_a_manual_action_reaches_the_server_that_was_checked(
        redis_proc: RedisProcess, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed redis-cli command carries -h/-p/-n of the store's connection (here database 5)."""
    client = redis_proc.client(db=5)
    try:
        ns = "fsck-db5"
        store = Store(client, ns)
        key = f"ss:{{{ns}}}:junk"
        client.set(key, "1")
        want = f"redis-cli -h {redis_proc.host} -p {redis_proc.port} -n 5 TYPE '{key}'"
        assert store.fsck().problems[0].action == want
        url = f"redis://{redis_proc.host}:{redis_proc.port}/5"
        assert main(["--redis-url", url, "--namespace", ns, "fsck"]) == 1
        assert f"manual action: {want}" in capsys.readouterr().out
        store.close()
    finally:
        client.close()


def test_redis_cli_options_come_from_the_connection_settings_never_the_password(tmp_path: Path) -> None:
    plain = redis.Redis(host="db.example", port=6390, db=3, username="ops", password="s3cret")
    assert redis_cli(plain) == "redis-cli -h db.example -p 6390 -n 3 --user ops --askpass"
    tls = redis.Redis(host="db.example", port=6391, ssl=True, ssl_ca_certs=str(tmp_path / "ca.pem"),
                      ssl_certfile=str(tmp_path / "c.pem"), ssl_keyfile=str(tmp_path / "c.key"))
    assert redis_cli(tls) == (f"redis-cli -h db.example -p 6391 --tls --cacert {tmp_path / 'ca.pem'} "
                              f"--cert {tmp_path / 'c.pem'} --key {tmp_path / 'c.key'}")
    assert redis_cli(redis.Redis(host="h", ssl=True, ssl_cert_reqs="none")) == \
        "redis-cli -h h -p 6379 --tls --insecure"
    assert redis_cli(redis.Redis(unix_socket_path="/run/redis it.sock", db=1)) == \
        "redis-cli -s '/run/redis it.sock' -n 1"
    for c in (plain, tls):
        assert "s3cret" not in redis_cli(c)
        c.close()
