"""Lookups against a real Redis: Docker's reference rules (exact ID, exact name, unique prefix).

moby's ``GetContainer`` tries an exact ID, then an exact name, then a unique
ID prefix; a name therefore shadows an ID prefix (moby #17247), an ambiguous
prefix is refused naming the prefix (moby #38345), and the texts of the
errors are Docker's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from statestore import (
    AmbiguousReferenceError,
    Container,
    ExecConfig,
    InvalidArgumentError,
    NotFoundError,
    Store,
)
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess


def make_id(prefix: str, fill: str = "0") -> str:
    """A valid 64-hex ID starting with ``prefix``."""
    return (prefix + fill * 64)[:64]


def create(store: Store, name: str, cid: str | None = None, *, running: bool = False,
           **kw: object) -> Container:
    c = store.containers.create(Container.new("busybox:1.36", name=name, id=cid, **kw))  # type: ignore[arg-type]
    if running:
        c = store.containers.update(c.id, lambda x: x.state.set_running(pid=100))
    return c


# --- containers ---------------------------------------------------------------------


def test_exact_id(store: Store) -> None:
    a = create(store, "alpha")
    create(store, "beta")
    got = store.containers.get(a.id)
    assert got.id == a.id
    assert got.name == "alpha"
    assert got == a
    assert store.containers.resolve(a.id) == a.id


@pytest.mark.parametrize("ref", ["web-1", "/web-1"])
def test_exact_name_with_and_without_slash(store: Store, ref: str) -> None:
    w = create(store, "web-1")
    create(store, "web-10")  # a longer name that starts with the same text is not a match
    got = store.containers.get(ref)
    assert got.id == w.id
    assert got.name == "web-1"
    assert got.to_dict()["Name"] == "/web-1"
    assert store.containers.resolve(ref) == w.id


def test_unique_id_prefix_of_every_length(store: Store) -> None:
    a = create(store, "alpha", make_id("abcdef0123", "1"))
    b = create(store, "beta", make_id("abcdef0124", "2"))
    create(store, "gamma", make_id("ff", "3"))
    for n in range(10, 64):
        assert store.containers.get(a.id[:n]).id == a.id
        assert store.containers.get(b.id[:n]).id == b.id
    assert store.containers.get("f").name == "gamma"  # one character is enough when unique
    assert store.containers.resolve("abcdef0123") == a.id


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisProcess]:
    """A server of this module's own, so command statistics see only this module's calls."""
    with RedisProcess().start() as proc:
        yield proc


def test_prefix_lookup_reads_the_id_index_not_every_record(private_redis: RedisProcess) -> None:
    client = private_redis.client()
    store = Store(client, "prefixstats")
    ids = [make_id(f"{i:04x}", "a") for i in range(300)]
    for i, cid in enumerate(ids):
        store.containers.create(Container.new("busybox:1.36", name=f"c{i}", id=cid))
    client.config_resetstat()

    assert store.containers.get("012b").id == ids[0x12b]
    with pytest.raises(AmbiguousReferenceError):
        store.containers.get("01")  # 0100..01ff: 256 candidates, still no scan
    with pytest.raises(NotFoundError):
        store.containers.get("ffff")

    stats = client.info("commandstats")
    assert "cmdstat_scan" not in stats
    assert "cmdstat_keys" not in stats
    # per lookup: one lexicographic range (LIMIT 2) and the scores of the index's two ends (all
    # zero, or lex ranges would be unreliable), each O(log N); at most the one hit and a name probe read
    assert stats["cmdstat_zrange"]["calls"] == 3 * 3
    assert stats["cmdstat_get"]["calls"] <= 6
    client.close()


def test_a_name_shadows_an_id_prefix(store: Store) -> None:
    target = create(store, "first", make_id("abc1", "7"))
    shadow = create(store, "abc", make_id("9999", "8"))
    assert store.containers.get("abc").id == shadow.id          # the name wins over the prefix
    assert store.containers.get("/abc").id == shadow.id
    assert store.containers.get("abc1").id == target.id         # a longer prefix is no name
    assert store.containers.get("ab").id == target.id           # only one ID starts with "ab"
    assert store.containers.resolve("abc") == shadow.id
    # once the name is gone, the same text is a prefix again
    store.containers.rename("abc", "other")
    assert store.containers.get("abc").id == target.id


def test_a_64_hex_name_versus_an_id(store: Store) -> None:
    x = make_id("c0ffee", "1")
    y = make_id("deadbeef", "2")
    owner = create(store, "owner", x)
    impostor = create(store, x)                 # a container *named* like the other's ID
    hexnamed = create(store, y)                 # a 64-hex name that is nobody's ID
    assert impostor.name == x

    assert store.containers.get(x).id == owner.id          # an exact ID beats a name
    assert store.containers.get("/" + x).id == impostor.id  # with the slash it can only be a name
    assert store.containers.get(y).id == hexnamed.id       # no such ID: the name answers
    assert store.containers.resolve(y) == hexnamed.id

    store.containers.delete(owner.id)
    assert store.containers.get(x).id == impostor.id        # the ID is gone: now the name answers


def test_an_ambiguous_prefix_names_the_prefix(store: Store, client: redis.Redis, namespace: str) -> None:
    a = create(store, "one", make_id("aa1", "0"))
    b = create(store, "two", make_id("aa2", "0"))
    before = dump_namespace(client, namespace)
    for ref in ("a", "aa"):
        with pytest.raises(AmbiguousReferenceError) as err:
            store.containers.get(ref)
        assert err.value.prefix == ref
        assert str(err.value) == f"multiple IDs found with provided prefix: {ref}"
        with pytest.raises(AmbiguousReferenceError):
            store.containers.resolve(ref)
    assert store.containers.get("aa1").id == a.id
    assert store.containers.get("aa2").id == b.id
    assert dump_namespace(client, namespace) == before


@pytest.mark.parametrize("ref", ["nosuch", "/nosuch", "fff", make_id("fe", "e"), "web-1x"])
def test_a_missing_reference_is_not_found_with_dockers_text(store: Store, ref: str) -> None:
    create(store, "web-1", make_id("ab", "1"))
    with pytest.raises(NotFoundError) as err:
        store.containers.get(ref)
    assert str(err.value) == f"No such container: {ref}"
    assert err.value.reference == ref
    assert err.value.kind == "container"
    with pytest.raises(NotFoundError):
        store.containers.resolve(ref)


@pytest.mark.parametrize("ref", ["", "/"])
def test_an_empty_reference_is_invalid(store: Store, ref: str) -> None:
    create(store, "web")
    with pytest.raises(InvalidArgumentError, match="prefix can't be empty"):
        store.containers.get(ref)
    with pytest.raises(InvalidArgumentError, match="prefix can't be empty"):
        store.execs.get(ref)


def test_a_deleted_containers_name_and_id_no_longer_resolve(store: Store) -> None:
    c = create(store, "ephemeral")
    store.containers.delete("ephemeral")
    for ref in ("ephemeral", c.id, c.id[:12]):
        with pytest.raises(NotFoundError):
            store.containers.get(ref)


# --- execs ---------------------------------------------------------------------------


def test_exec_lookups_by_exact_id_and_unique_prefix(store: Store) -> None:
    c = create(store, "host", running=True)
    e1 = store.execs.create(ExecConfig.new("host", ["sh"], id=make_id("e1a", "0")))
    e2 = store.execs.create(ExecConfig.new(c.id, ["top"], id=make_id("e1b", "0")))
    e3 = store.execs.create(ExecConfig.new(c.id[:8], ["ps"], id=make_id("77", "0")))

    assert store.execs.get(e1.id) == e1
    assert store.execs.get(e2.id).process_config.entrypoint == "top"
    assert store.execs.get("e1a").id == e1.id
    assert store.execs.get("e1b").id == e2.id
    assert store.execs.get("7").id == e3.id
    assert store.execs.resolve("e1b") == e2.id
    for x in (e1, e2, e3):
        assert store.execs.get(x.id).container_id == c.id

    with pytest.raises(AmbiguousReferenceError) as err:
        store.execs.get("e1")
    assert err.value.prefix == "e1"
    assert str(err.value) == "multiple IDs found with provided prefix: e1"


@pytest.mark.parametrize("ref", ["e9", "host", "/host", make_id("e1a", "f")])
def test_exec_lookups_have_no_names_and_say_exec_instance(store: Store, ref: str) -> None:
    create(store, "host", running=True)
    store.execs.create(ExecConfig.new("host", ["sh"], id=make_id("e1a", "0")))
    with pytest.raises(NotFoundError) as err:
        store.execs.get(ref)
    assert str(err.value) == f"No such exec instance: {ref}"
    assert err.value.kind == "exec"


# --- every read is a fresh deep copy ------------------------------------------------------


def test_every_read_returns_a_fresh_object(store: Store, client: redis.Redis, namespace: str) -> None:
    created = create(store, "web", make_id("5eed", "1"), labels={"app": "web"}, running=True)
    x = store.execs.create(ExecConfig.new("web", ["sh"]))
    before = dump_namespace(client, namespace)
    reads = [
        created,
        store.containers.get(created.id),
        store.containers.get("web"),
        store.containers.get("/web"),
        store.containers.get("5eed"),
        store.containers.list()[0],
        store.containers.list({"label": "app=web"}, all=True)[0],
        store.snapshot().get("web"),
        store.snapshot().containers[created.id],
    ]
    assert len({id(r) for r in reads}) == len(reads)
    assert len({id(r._d) for r in reads}) == len(reads)  # no two share a document
    for r in reads:
        r.labels["app"] = "hacked"
        r.labels["extra"] = "x"
        r.name = "renamed-in-memory"
        r.state.set_stopped(1)
        r.to_dict()  # still a valid record
    fresh = store.containers.get("web")
    assert fresh.labels == {"app": "web"}
    assert fresh.status == "running"
    assert fresh.version == created.version + 1  # the exec create bumped it, nothing else did

    xs = [x, store.execs.get(x.id), store.execs.get(x.id[:6]), store.snapshot().execs[x.id]]
    for xr in xs:
        xr.can_remove = True
        xr.set_running(pid=5)
    assert not store.execs.get(x.id).running
    assert dump_namespace(client, namespace) == before


def test_snapshot_lookups_follow_the_same_rules(store: Store) -> None:
    target = create(store, "first", make_id("abc1", "7"))
    shadow = create(store, "abc", make_id("9999", "8"))
    create(store, "second", make_id("abc2", "7"))
    hexname = make_id("c0ffee", "1")
    named = create(store, hexname, make_id("d00d", "2"))  # a fixed ID: a random one could start "99"
    snap = store.snapshot()
    for ref in ("abc", "/abc", "abc1", "abc2", "99", "first", "/first", target.id, hexname, "/" + hexname):
        assert snap.get(ref).id == store.containers.get(ref).id, ref
    assert snap.get("abc").id == shadow.id
    assert snap.get(hexname).id == named.id
    for bad in ("ab", "a"):
        with pytest.raises(AmbiguousReferenceError):
            snap.get(bad)
        with pytest.raises(AmbiguousReferenceError):
            store.containers.get(bad)
    with pytest.raises(NotFoundError, match="No such container: zzz"):
        snap.get("zzz")
