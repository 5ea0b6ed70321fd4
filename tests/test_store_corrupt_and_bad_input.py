"""Corrupt data written behind the store's back, bad input, and an unreachable Redis.

Contract under test:

* a stored value that cannot be decoded raises CorruptRecordError naming its key
  on a direct read, and ``list()``/``snapshot()`` skip it and report it in
  ``.corrupt`` while returning every healthy record;
* a key of the wrong Redis type aborts a commit before anything is written;
* bad input raises a typed InvalidArgumentError (or the documented error) and
  leaves the namespace byte-for-byte unchanged (``dump_namespace``);
* an unreachable Redis surfaces as StoreUnavailableError, never as a
  ``redis.exceptions`` error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from statestore import (
    Container,
    CorruptRecordError,
    ExecConfig,
    InvalidArgumentError,
    NotFoundError,
    SchemaVersionError,
    StateStoreError,
    Store,
    StoreUnavailableError,
)
from tests.conftest import dump_namespace
from tests.redisproc import free_port


def populate(store: Store) -> dict[str, Container]:
    """Three containers (one running with an exec) so corruption has healthy neighbours."""
    out = {}
    for name in ("victim", "alice", "bob"):
        c = store.containers.create(Container.new("nginx:1.27", name=name, labels={"team": "a"}))
        out[name] = store.containers.update(c.id, lambda x: x.state.set_running(pid=7))
    store.execs.create(ExecConfig.new("alice", ["sh"]))
    return out


def assert_reads_report(store: Store, bad_key: str, healthy: set[str], exc_type: type = CorruptRecordError) -> None:
    """list()/snapshot() return every healthy record and name the corrupt one."""
    for result in (store.containers.list(all=True), store.containers.list(),
                   store.containers.list({"label": "team=a"}, all=True)):
        assert {c.name for c in result} == healthy
        assert [e.key for e in result.corrupt] == [bad_key]
        assert all(isinstance(e, exc_type) for e in result.corrupt)
    snap = store.snapshot()
    assert {c.name for c in snap.containers.values()} == healthy
    assert [e.key for e in snap.corrupt] == [bad_key]
    assert len(snap.execs) == 1


# --- garbage in a record ----------------------------------------------------------------------------


def _other_doc(c: Container, other: Container) -> bytes:
    return orjson.dumps(other.to_dict())  # a valid record, but of another ID


GARBAGE: dict[str, Callable[[Container, Container], bytes]] = {
    "not-json": lambda c, o: b"\x00\xffnot json{",
    "truncated": lambda c, o: orjson.dumps(c.to_dict())[:-20],
    "json-array": lambda c, o: b"[1, 2, 3]",
    "json-string": lambda c, o: b'"hello"',
    "other-id": _other_doc,
    "no-id": lambda c, o: orjson.dumps({k: v for k, v in c.to_dict().items() if k != "Id"}),
    "kind-exec": lambda c, o: orjson.dumps({**c.to_dict(), "StateStore": {"Schema": 1, "Kind": "exec", "Version": 2}}),
    "version-string": lambda c, o: orjson.dumps(
        {**c.to_dict(), "StateStore": {"Schema": 1, "Kind": "container", "Version": "2"}}),
    "meta-not-object": lambda c, o: orjson.dumps({**c.to_dict(), "StateStore": "v1"}),
    "labels-not-strings": lambda c, o: orjson.dumps({**c.to_dict(), "Config": {**c.to_dict()["Config"],
                                                                              "Labels": {"a": 1}}}),
    "state-not-object": lambda c, o: orjson.dumps({**c.to_dict(), "State": None}),
    "deep-nesting": lambda c, o: b"[" * 5000 + b"]" * 5000,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_garbage_record_raises_corrupt_on_read_and_is_skipped_by_list(
        store: Store, client: redis.Redis, namespace: str, kind: str) -> None:
    made = populate(store)
    victim = made["victim"]
    key = store.keys.container(victim.id)
    client.set(key, GARBAGE[kind](victim, made["bob"]))
    for ref in (victim.id, "victim", "/victim", victim.id[:12]):
        with pytest.raises(CorruptRecordError) as err:
            store.containers.get(ref)
        assert err.value.key == key
        assert key in str(err.value)
    assert_reads_report(store, key, {"alice", "bob"})

    before = dump_namespace(client, namespace)
    for op in (lambda: store.containers.update("victim", lambda c: None),
               lambda: store.containers.rename("victim", "renamed"),
               lambda: store.containers.delete(victim.id),
               lambda: store.execs.create(ExecConfig.new(victim.id, ["sh"]))):
        with pytest.raises(CorruptRecordError) as err:
            op()
        assert err.value.key == key
    assert dump_namespace(client, namespace) == before
    # the healthy neighbours are still fully usable
    assert store.containers.update("bob", lambda c: c.labels.__setitem__("ok", "1")).version == 3


def test_a_record_over_the_readers_size_cap_is_corrupt(store: Store, client: redis.Redis, namespace: str) -> None:
    populate(store)
    big = store.containers.create(Container.new("nginx", name="big", labels={"pad": "x" * 20_000}))
    small = Store(client, namespace, max_record_bytes=10_000)
    with pytest.raises(CorruptRecordError) as err:
        small.containers.get("big")
    assert err.value.key == store.keys.container(big.id)
    result = small.containers.list(all=True)
    assert {c.name for c in result} == {"victim", "alice", "bob"}
    assert [e.key for e in result.corrupt] == [store.keys.container(big.id)]


# --- wrong Redis types ---------------------------------------------------------------------------------


def test_a_record_key_of_the_wrong_type_is_corrupt(store: Store, client: redis.Redis, namespace: str) -> None:
    made = populate(store)
    key = store.keys.container(made["victim"].id)
    client.delete(key)
    client.hset(key, "Id", made["victim"].id)
    for ref in ("victim", made["victim"].id[:10]):
        with pytest.raises(CorruptRecordError) as err:
            store.containers.get(ref)
        assert err.value.key == key
    assert_reads_report(store, key, {"alice", "bob"})
    before = dump_namespace(client, namespace)
    with pytest.raises(CorruptRecordError) as err:
        store.containers.update(made["victim"].id, lambda c: None)
    assert err.value.key == key
    assert dump_namespace(client, namespace) == before


def test_a_wrong_type_record_read_by_full_id_names_its_key(store: Store, client: redis.Redis) -> None:
    # regression: the plain GET path translated WRONGTYPE without the key ('a statestore key')
    made = populate(store)
    key = store.keys.container(made["victim"].id)
    client.delete(key)
    client.hset(key, "Id", made["victim"].id)
    with pytest.raises(CorruptRecordError) as err:
        store.containers.get(made["victim"].id)
    assert err.value.key == key


INDEXES = [("container", f) for f in ("id", "name", "status", "label", "image", "network")] + [
    ("exec", "id"), ("exec", "container")]


@pytest.mark.parametrize(("kind", "field"), INDEXES, ids=[f"{k}-{f}" for k, f in INDEXES])
def test_a_commit_against_an_index_of_the_wrong_type_writes_nothing(
        store: Store, client: redis.Redis, namespace: str, kind: str, field: str) -> None:
    made = populate(store)
    x = store.execs.list("alice")[0]
    ikey = store.keys.index(kind, field)
    client.delete(ikey)
    client.set(ikey, "not a sorted set")
    before = dump_namespace(client, namespace)
    ops: list[Callable[[], Any]]
    if kind == "container":
        ops = [
            lambda: store.containers.delete("bob"),   # writes every container index
            lambda: store.execs.create(ExecConfig.new("bob", ["sh"])),  # writes both kinds
            lambda: store.containers.create(Container.new("nginx", name="newcomer", labels={"a": "b"})),
            lambda: store.containers.update("bob", lambda c: c.labels.__setitem__("new", "label")),
            lambda: store.containers.rename("bob", "robert"),
            lambda: store.containers.commit(made["victim"]),
        ]
    else:
        ops = [
            lambda: store.containers.delete("alice"),  # removes alice's exec and its members
            lambda: store.execs.create(ExecConfig.new("bob", ["sh"])),
            lambda: store.execs.delete(x.id),
            lambda: store.execs.update(x.id, lambda e: e.set_running(pid=3)),
        ]
    # A commit that writes to the broken index must refuse with nothing written.
    # One that does not touch it (e.g. an exec create never writes the container
    # id index) may succeed, and must leave the broken key alone.
    refused = 0
    for op in ops:
        try:
            op()
        except CorruptRecordError as err:
            assert err.key == ikey
            assert dump_namespace(client, namespace) == before
            refused += 1
        else:
            assert client.get(ikey) == b"not a sorted set"
            before = dump_namespace(client, namespace)
    assert refused >= 2  # at least the delete and the exec create write to the broken index


def test_a_change_log_of_the_wrong_type_blocks_commits_and_snapshots(
        store: Store, client: redis.Redis, namespace: str) -> None:
    populate(store)
    client.delete(store.keys.log)
    client.set(store.keys.log, "not a stream")
    before = dump_namespace(client, namespace)
    for op in (lambda: store.containers.create(Container.new("nginx", name="newcomer")),
               lambda: store.containers.update("bob", lambda c: None),
               lambda: store.containers.delete("bob")):
        with pytest.raises(CorruptRecordError) as err:
            op()
        assert err.value.key == store.keys.log
    with pytest.raises(CorruptRecordError) as err:
        store.snapshot()
    assert err.value.key == store.keys.log
    assert dump_namespace(client, namespace) == before
    assert {c.name for c in store.containers.list(all=True)} == {"victim", "alice", "bob"}


# --- schema versions -------------------------------------------------------------------------------------


def test_a_record_of_a_newer_schema_is_refused(store: Store, client: redis.Redis, namespace: str) -> None:
    made = populate(store)
    key = store.keys.container(made["victim"].id)
    doc = made["victim"].to_dict()
    doc["StateStore"] = {"Schema": 2, "Kind": "container", "Version": 9, "Shards": [1, 2]}
    client.set(key, orjson.dumps(doc))
    for ref in (made["victim"].id, "victim", made["victim"].id[:8]):
        with pytest.raises(SchemaVersionError) as err:
            store.containers.get(ref)
        assert err.value.key == key
        assert err.value.found == 2
        assert err.value.supported == 1
        assert "upgrade statestore" in str(err.value)
    assert_reads_report(store, key, {"alice", "bob"}, SchemaVersionError)
    before = dump_namespace(client, namespace)
    with pytest.raises(SchemaVersionError):
        store.containers.update("victim", lambda c: None)
    assert dump_namespace(client, namespace) == before


DOCKER_INSPECT = {
    "Id": "5c0e" + "9" * 60,
    "Created": "2024-05-01T10:00:00.123456789Z",
    "Path": "nginx",
    "Args": ["-g", "daemon off;"],
    "State": {"Status": "exited", "Running": False, "Paused": False, "Restarting": False,
              "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
              "StartedAt": "2024-05-01T10:00:01.000000000Z", "FinishedAt": "2024-05-01T11:00:00.000000000Z"},
    "Image": "sha256:" + "e" * 64,
    "Name": "/imported",
    "RestartCount": 0,
    "Driver": "overlay2",
    "Platform": "linux",
    "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
    "Mounts": [],
    "Config": {"Hostname": "5c0e99999999", "Image": "nginx:1.25", "Labels": {"origin": "docker"},
               "Cmd": ["nginx", "-g", "daemon off;"], "Env": ["PATH=/usr/bin"]},
    "NetworkSettings": {"Networks": {"bridge": {"NetworkID": "0" * 64}}, "Ports": {}},
    "SomeFutureDockerField": {"kept": True},
}


def test_a_schema_0_record_reads_as_version_0_and_upgrades_on_commit(store: Store, client: redis.Redis) -> None:
    populate(store)
    cid = DOCKER_INSPECT["Id"]
    assert isinstance(cid, str)
    # what an operator's import writes: the bare inspect JSON plus the index entries
    client.set(store.keys.container(cid), orjson.dumps(DOCKER_INSPECT))
    client.set(store.keys.name("imported"), cid)
    client.zadd(store.keys.index("container", "id"), {cid: 0})
    client.zadd(store.keys.index("container", "name"), {f"imported\x00{cid}": 0})
    client.zadd(store.keys.index("container", "status"), {f"exited\x00{cid}": 0})
    client.zadd(store.keys.index("container", "label"), {f"origin\x00docker\x00{cid}": 0})
    client.zadd(store.keys.index("container", "image"), {f"nginx:1.25\x00{cid}": 0})

    for ref in (cid, "imported", "/imported", "5c0e"):
        c = store.containers.get(ref)
        assert c.id == cid
        assert c.version == 0
        assert c.status == "exited"
        assert c.to_dict()["SomeFutureDockerField"] == {"kept": True}
    assert [c.id for c in store.containers.list({"label": "origin=docker"}, all=True)] == [cid]
    assert [c.id for c in store.containers.list({"ancestor": "nginx:1.25"}, all=True)] == [cid]
    assert [c.id for c in store.containers.list({"status": "exited"})] == [cid]
    assert store.snapshot().containers[cid].version == 0

    # a compare-and-set commit from version 0 writes schema 1, version 1
    c = store.containers.get("imported")
    c.labels["migrated"] = "yes"
    committed = store.containers.commit(c)
    assert committed.version == 1
    stored = orjson.loads(client.get(store.keys.container(cid)))
    commit_id = stored["StateStore"].pop("Commit")
    assert isinstance(commit_id, str) and commit_id
    assert stored["StateStore"] == {"Schema": 1, "Kind": "container", "Version": 1}
    assert stored["SomeFutureDockerField"] == {"kept": True}  # unknown fields survive
    _, fields = client.xrevrange(store.keys.log, count=1)[0]
    assert (fields[b"type"], fields[b"version"], fields[b"id"]) == (b"update", b"1", cid.encode())
    assert store.containers.update("imported", lambda x: x.state.set_running(pid=3)).version == 2
    assert store.containers.get("imported").labels == {"origin": "docker", "migrated": "yes"}


# --- bad input --------------------------------------------------------------------------------------------

Op = Callable[[Store, dict[str, Any]], Any]


def _set_label(k: str, v: Any) -> Callable[[Container], None]:
    def fn(c: Container) -> None:
        c.labels[k] = v
    return fn


def _replace_doc(**changes: Any) -> Callable[[Container], Container]:
    def fn(c: Container) -> Container:
        out = Container(c.to_dict())
        out._d.update(changes)
        return out
    return fn


BAD_REFS = ["a b", "x*", "{ns}", "a:b", "a\nb", "x" * 300, "-abc", "ab/cd", "/", "", "ab?", "a[b]"]
BAD_NAMES = ["a", "bad name", "-lead", "x" * 256, "a/b", "", "ab:c", "ab\x00", "ünicode", 5, None]

BAD_INPUT: dict[str, tuple[Op, type[Exception]]] = {
    **{f"get-ref-{i}": ((lambda s, w, r=r: s.containers.get(r)), InvalidArgumentError)
       for i, r in enumerate(BAD_REFS)},
    **{f"update-ref-{i}": ((lambda s, w, r=r: s.containers.update(r, lambda c: None)), InvalidArgumentError)
       for i, r in enumerate(BAD_REFS)},
    **{f"delete-ref-{i}": ((lambda s, w, r=r: s.containers.delete(r)), InvalidArgumentError)
       for i, r in enumerate(BAD_REFS)},
    **{f"exec-ref-{i}": ((lambda s, w, r=r: s.execs.delete(r)), InvalidArgumentError)
       for i, r in enumerate(BAD_REFS)},
    "get-none": (lambda s, w: s.containers.get(None), InvalidArgumentError),  # type: ignore[arg-type]
    "get-int": (lambda s, w: s.containers.get(5), InvalidArgumentError),  # type: ignore[arg-type]
    **{f"rename-{i}": ((lambda s, w, n=n: s.containers.rename("web", n)), InvalidArgumentError)
       for i, n in enumerate(BAD_NAMES)},
    "rename-same": (lambda s, w: s.containers.rename("web", "/web"), InvalidArgumentError),
    "label-nul-key": (lambda s, w: s.containers.update("web", _set_label("k\x00", "v")), InvalidArgumentError),
    "label-nul-value": (lambda s, w: s.containers.update("web", _set_label("k", "a\x00b")), InvalidArgumentError),
    "label-int-value": (lambda s, w: s.containers.update("web", _set_label("k", 1)), InvalidArgumentError),
    "label-empty-key": (lambda s, w: s.containers.update("web", _set_label("", "v")), InvalidArgumentError),
    "label-huge": (lambda s, w: s.containers.update("web", _set_label("k", "v" * 70_000)), InvalidArgumentError),
    "new-label-nul": (lambda s, w: s.containers.create(Container.new("nginx", labels={"a": "\x00"})),
                      InvalidArgumentError),
    "create-label-nul-after-new": (
        lambda s, w: s.containers.create(_labelled(Container.new("nginx", name="fresh"), "a\x00", "b")),
        InvalidArgumentError),
    "update-changes-id": (lambda s, w: s.containers.update("web", _replace_doc(Id="e" * 64)), InvalidArgumentError),
    "update-bad-id": (lambda s, w: s.containers.update("web", _replace_doc(Id="E" * 64)), InvalidArgumentError),
    "update-bad-name": (lambda s, w: s.containers.update("web", _replace_doc(Name="/bad name")),
                        InvalidArgumentError),
    "update-state-none": (lambda s, w: s.containers.update("web", _replace_doc(State=None)), InvalidArgumentError),
    "update-changes-version": (
        lambda s, w: s.containers.update("web", _replace_doc(StateStore={"Schema": 1, "Kind": "container",
                                                                         "Version": 99})),
        InvalidArgumentError),
    "update-returns-str": (lambda s, w: s.containers.update("web", lambda c: "nope"), InvalidArgumentError),  # type: ignore[arg-type,return-value]
    "update-returns-exec": (lambda s, w: s.containers.update("web", lambda c: w["exec"]), InvalidArgumentError),
    "update-exec-ids-bad": (lambda s, w: s.containers.update("web", _replace_doc(ExecIDs=["nope"])),
                            InvalidArgumentError),
    "create-dict": (lambda s, w: s.containers.create(w["web"].to_dict()), InvalidArgumentError),
    "create-none": (lambda s, w: s.containers.create(None), InvalidArgumentError),  # type: ignore[arg-type]
    "create-exec-as-container": (lambda s, w: s.containers.create(w["exec"]), InvalidArgumentError),
    "create-committed": (lambda s, w: s.containers.create(w["web"]), InvalidArgumentError),
    "commit-str": (lambda s, w: s.containers.commit("web"), InvalidArgumentError),  # type: ignore[arg-type]
    "commit-exec-as-container": (lambda s, w: s.containers.commit(w["exec"]), InvalidArgumentError),
    "commit-container-as-exec": (lambda s, w: s.execs.commit(w["web"]), InvalidArgumentError),
    "exec-create-container": (lambda s, w: s.execs.create(w["web"]), InvalidArgumentError),
    "exec-create-committed": (lambda s, w: s.execs.create(w["exec"]), InvalidArgumentError),
    "exec-create-bad-ref": (lambda s, w: s.execs.create(ExecConfig.new("a b", ["sh"])), InvalidArgumentError),
    "exec-create-missing": (lambda s, w: s.execs.create(ExecConfig.new("nosuch", ["sh"])), NotFoundError),
    "exec-new-no-cmd": (lambda s, w: s.execs.create(ExecConfig.new("web", [])), InvalidArgumentError),
    "exec-update-container-id": (
        lambda s, w: s.execs.update(w["exec"].id, lambda e: e._d.__setitem__("ContainerID", "1" * 64)),
        InvalidArgumentError),
    "bad-filter": (lambda s, w: s.containers.list({"nope": "x"}), InvalidArgumentError),
    "bad-filter-status": (lambda s, w: s.containers.list({"status": "up"}), InvalidArgumentError),
    "bad-limit": (lambda s, w: s.containers.list(limit=-5), InvalidArgumentError),
    "exec-list-bad-ref": (lambda s, w: s.execs.list("a*"), InvalidArgumentError),
}


def _labelled(c: Container, k: str, v: str) -> Container:
    c.labels[k] = v  # the live dict bypasses the setter's validation; create() must catch it
    return c


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_typed_error_and_changes_nothing(
        store: Store, client: redis.Redis, namespace: str, case: str) -> None:
    web = store.containers.create(Container.new("nginx:1.27", name="web", labels={"a": "1"}))
    web = store.containers.update("web", lambda c: c.state.set_running(pid=1))
    x = store.execs.create(ExecConfig.new("web", ["sh"]))
    web = store.containers.get("web")
    op, exc_type = BAD_INPUT[case]
    before = dump_namespace(client, namespace)
    with pytest.raises(exc_type):
        op(store, {"web": web, "exec": x})
    assert dump_namespace(client, namespace) == before


def test_oversized_records_are_refused_and_change_nothing(client: redis.Redis, namespace: str) -> None:
    store = Store(client, namespace, max_record_bytes=4096)
    store.containers.create(Container.new("nginx", name="web"))
    store.containers.update("web", lambda c: c.state.set_running(pid=1))
    before = dump_namespace(client, namespace)
    with pytest.raises(InvalidArgumentError, match="4096-byte record cap"):
        store.containers.create(Container.new("nginx", name="big", labels={"pad": "x" * 5000}))
    with pytest.raises(InvalidArgumentError, match="record cap"):
        store.containers.update("web", _set_label("pad", "x" * 5000))
    c = store.containers.get("web")
    c.labels["pad"] = "y" * 5000
    with pytest.raises(InvalidArgumentError):
        store.containers.commit(c)
    assert dump_namespace(client, namespace) == before
    # the cap is on the encoded record: just under it is fine
    assert store.containers.update("web", _set_label("pad", "x" * 1000)).version == 3


@pytest.mark.parametrize("namespace_arg", ["", "has space", "a:b", "{x}", "x" * 65, "-lead", "a*", "n\ns",
                                           None, 7])
def test_invalid_namespaces_are_refused(client: redis.Redis, namespace_arg: Any) -> None:
    keys_before = client.dbsize()
    with pytest.raises(InvalidArgumentError):
        Store(client, namespace_arg)
    assert client.dbsize() == keys_before


@pytest.mark.parametrize("what", ["namespace", "reference", "exec-reference", "id"])
def test_a_trailing_newline_is_invalid_everywhere(store: Store, client: redis.Redis, what: str) -> None:
    # regression: '$'-anchored regexes applied with re.match accepted a trailing newline, so
    # Store(client, 'ns\\n') wrote keys 'ss:{ns\\n}:...' and 'web\\n' reached the Lua key building
    store.containers.create(Container.new("nginx", name="web"))
    keys_before = client.dbsize()
    with pytest.raises(InvalidArgumentError):
        if what == "namespace":
            Store(client, "ns\n").containers.create(Container.new("nginx", name="web"))
        elif what == "reference":
            store.containers.get("web\n")
        elif what == "exec-reference":
            store.execs.get("abc\n")
        else:
            Container.new("nginx", id="a" * 64 + "\n")
    assert client.dbsize() == keys_before


@pytest.mark.parametrize("kwargs", [
    {"changelog_maxlen": 0}, {"changelog_maxlen": True}, {"max_record_bytes": -1},
    {"max_record_bytes": 1.5}, {"conflict_attempts": 0}, {"unavailable_timeout": -1},
])
def test_invalid_store_settings_are_refused(client: redis.Redis, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        Store(client, "fine", **kwargs)


def test_a_store_needs_a_redis_client() -> None:
    with pytest.raises(InvalidArgumentError):
        Store(object(), "fine")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Store.from_url("http://example.invalid/", "fine")


@pytest.mark.parametrize("via", [
    "update",
    "create",  # regression: create() once leaked orjson.JSONEncodeError
])
def test_non_json_values_are_an_invalid_argument(store: Store, client: redis.Redis, namespace: str,
                                                 via: str) -> None:
    store.containers.create(Container.new("nginx", name="web"))
    before = dump_namespace(client, namespace)
    with pytest.raises(InvalidArgumentError):
        if via == "update":
            store.containers.update("web", lambda c: setattr(c.config, "env", {"A=1"}))
        else:
            fresh = Container.new("nginx", name="fresh")
            fresh.config.env = {"A=1"}
            store.containers.create(fresh)
    assert dump_namespace(client, namespace) == before


@pytest.mark.parametrize("meta", [{"Schema": 7}, {"Schema": 0}, {"Kind": "exec"}, {"Version": "2"}])
def test_a_commit_cannot_poison_the_metadata_block(store: Store, client: redis.Redis, namespace: str,
                                                   meta: dict[str, Any]) -> None:
    # regression: commit()/update() wrote whatever StateStore block a record carried, storing
    # records this statestore then refused to read, update or delete
    c = store.containers.create(Container.new("nginx", name="web"))
    before = dump_namespace(client, namespace)
    doc = c.to_dict()
    doc["StateStore"].update(meta)
    with pytest.raises(InvalidArgumentError):
        store.containers.commit(Container.from_dict(doc))
    with pytest.raises(InvalidArgumentError):
        store.containers.commit(Container(doc))

    def tamper(x: Container) -> None:
        x._d["StateStore"].update(meta)

    with pytest.raises(InvalidArgumentError):
        store.containers.update("web", tamper)
    assert dump_namespace(client, namespace) == before
    assert store.containers.get("web").version == 1


# --- Redis unreachable -----------------------------------------------------------------------------------


def _dead_stores() -> list[Store]:
    port = free_port()  # nobody listens here
    no_retry = redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    return [
        Store(no_retry, "gone", unavailable_timeout=0.05),
        Store.from_url(f"redis://127.0.0.1:{port}/0", "gone", unavailable_timeout=0.05),
    ]


UNREACHABLE_OPS: dict[str, Callable[[Store], Any]] = {
    "ping": lambda s: s.ping(),
    "get-id": lambda s: s.containers.get("a" * 64),
    "get-name": lambda s: s.containers.get("web"),
    "get-prefix": lambda s: s.containers.get("abc"),
    "resolve": lambda s: s.containers.resolve("web"),
    "list": lambda s: s.containers.list(),
    "list-label": lambda s: s.containers.list({"label": "a"}, all=True),
    "list-before": lambda s: s.containers.list({"before": "web"}),
    "snapshot": lambda s: s.snapshot(),
    "create": lambda s: s.containers.create(Container.new("nginx", name="web")),
    "update": lambda s: s.containers.update("web", lambda c: None),
    "update-id": lambda s: s.containers.update("a" * 64, lambda c: None),
    "commit": lambda s: s.containers.commit(Container.new("nginx", name="web")),
    "rename": lambda s: s.containers.rename("web", "www"),
    "delete": lambda s: s.containers.delete("web"),
    "exec-get": lambda s: s.execs.get("abc"),
    "exec-create": lambda s: s.execs.create(ExecConfig.new("web", ["sh"])),
    "exec-delete": lambda s: s.execs.delete("b" * 64),
    "exec-list": lambda s: s.execs.list(),
}


@pytest.mark.parametrize("op", sorted(UNREACHABLE_OPS))
def test_an_unreachable_redis_is_store_unavailable(op: str) -> None:
    for store in _dead_stores():
        try:
            with pytest.raises(StoreUnavailableError) as err:
                UNREACHABLE_OPS[op](store)
            assert not isinstance(err.value, rex.RedisError)
            assert isinstance(err.value, StateStoreError)
            assert "unavailable" in str(err.value).lower()
        finally:
            store.close()
            store.client.close()


# --- client flavours (docs/api.md: "decode_responses and protocol=3 both work") ----------------------

CLIENT_FLAVOURS = [
    pytest.param({"protocol": 2}, id="resp2"),
    pytest.param({"protocol": 3}, id="resp3"),
    pytest.param({"protocol": 2, "decode_responses": True}, id="resp2-decoded"),
    pytest.param({"protocol": 3, "decode_responses": True}, id="resp3-decoded"),
]

# regression: decode_responses clients once crashed on non-UTF-8 records; the store now reads
# through its own non-decoding pool


@pytest.mark.parametrize("flavour", CLIENT_FLAVOURS)
def test_every_client_flavour_runs_the_whole_api(redis_proc: Any, namespace: str, flavour: dict[str, Any]) -> None:
    client = redis_proc.client(**flavour)
    try:
        store = Store(client, namespace)
        web = store.containers.create(Container.new("nginx", name="web", labels={"ü": "ö"}))
        store.containers.update("web", lambda c: c.state.set_running(pid=1))
        x = store.execs.create(ExecConfig.new("web", ["sh"]))
        assert store.containers.get(web.id[:6]).exec_ids == [x.id]
        assert [c.name for c in store.containers.list({"label": "ü=ö"})] == ["web"]
        assert [c.name for c in store.containers.list({"name": "^we"}, all=True)] == ["web"]
        assert set(store.snapshot().execs) == {x.id}
        renamed = store.containers.rename("web", "www")
        assert store.snapshot().revision == renamed.revision
        with pytest.raises(NotFoundError):
            store.containers.get("web")
        report = store.fsck()  # reads every key raw: strings, sorted sets with scores, the log
        assert report.clean, report
        assert report.checked["containers"] == 1 and report.checked["execs"] == 1
        assert report.checked["index_members"] > 0
        assert store.containers.delete("www").exec_ids == [x.id]
        assert store.snapshot().containers == {}
    finally:
        client.close()


@pytest.mark.parametrize("flavour", [
    CLIENT_FLAVOURS[0], CLIENT_FLAVOURS[1],
    pytest.param(CLIENT_FLAVOURS[2].values[0], id="resp2-decoded"),
    pytest.param(CLIENT_FLAVOURS[3].values[0], id="resp3-decoded"),
])
def test_a_non_utf8_record_is_corrupt_for_every_client_flavour(
        redis_proc: Any, client: redis.Redis, namespace: str, flavour: dict[str, Any]) -> None:
    populate(Store(client, namespace))
    victim = Store(client, namespace).containers.get("victim")
    key = Store(client, namespace).keys.container(victim.id)
    client.set(key, b"\x00\xff\xfe not utf-8")
    flavoured = redis_proc.client(**flavour)
    try:
        store = Store(flavoured, namespace)
        for ref in (victim.id, "victim"):
            with pytest.raises(CorruptRecordError) as err:
                store.containers.get(ref)
            assert err.value.key == key
        assert_reads_report(store, key, {"alice", "bob"})
    finally:
        flavoured.close()


def test_a_non_utf8_index_member_does_not_break_filtered_lists(
        store: Store, client: redis.Redis, namespace: str) -> None:
    """An operator's stray member in the name or id index is never a crash: lists skip it."""
    made = populate(store)
    client.zadd(store.keys.index("container", "name"), {b"\xff\xfe\x00" + b"f" * 64: 0})
    client.zadd(store.keys.index("container", "id"), {b"\xff" * 64: 0})
    assert {c.name for c in store.containers.list({"name": "ali"}, all=True)} == {"alice"}
    assert {c.id for c in store.containers.list({"id": made["bob"].id[:10]}, all=True)} == {made["bob"].id}
    assert {c.name for c in store.containers.list(all=True)} >= {"alice", "bob"}
