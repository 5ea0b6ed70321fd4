"""A broken index never stops a query, and never makes one answer with another record.

Each index key is broken three ways (a value of the wrong Redis type, a member with a
non-zero score, which makes lexicographic ranges unreliable, and a garbage member that
names no record) and a name key is made to point at another container.  Every read
must still give the healthy answer, warn on the ``statestore.index`` logger (and in
``RecordList.warnings``) naming the broken key and suggesting ``statestore fsck
--repair``, and ``fsck --repair`` must then fix the key.  Against a real redis-server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from statestore import AmbiguousReferenceError, Container, ExecConfig, NotFoundError, Store
from statestore.cli import main
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def index_log() -> Iterator[_Collect]:
    """What the reads log on ``statestore.index`` (a handler of its own: the CLI turns propagation off)."""
    handler = _Collect()
    logger = logging.getLogger("statestore.index")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def cid(prefix: str) -> str:
    return (prefix * 64)[:64]


def populate(store: Store) -> dict[str, Any]:
    web = store.containers.create(Container.new(
        "nginx:1.27", name="web", id=cid("a1"), labels={"app": "web"}, networks={"frontnet": {"NetworkID": "e" * 64}}))
    store.containers.update("web", lambda c: c.state.set_running(pid=10))
    db = store.containers.create(Container.new(
        "postgres:16", name="db", id=cid("b2"), labels={"app": "db"}, networks={"backnet": {"NetworkID": "d" * 64}}))
    store.containers.update("db", lambda c: c.state.set_running(pid=11))
    store.containers.update("db", lambda c: c.state.set_stopped(3))
    paused = store.containers.create(Container.new("busybox:1.36", name="paused1", id=cid("c3")))
    store.containers.update("paused1", lambda c: c.state.set_running(pid=12))
    store.containers.update("paused1", lambda c: c.state.set_paused())
    dead = store.containers.create(Container.new("busybox:1.36", name="dead1", id=cid("c4")))
    store.containers.update("dead1", lambda c: c.state.set_dead())
    x = store.execs.create(ExecConfig.new("web", ["sh"], id=cid("f5")))
    return {"web": web, "db": db, "paused1": paused, "dead1": dead, "exec": x}


QUERIES: list[tuple[dict[str, list[str]], bool]] = [
    ({}, False), ({}, True), ({"status": ["exited"]}, True), ({"label": ["app=web"]}, False),
    ({"label": ["app"]}, True), ({"ancestor": ["nginx:1.27"]}, True), ({"network": ["frontnet"]}, True),
    ({"name": ["we"]}, True), ({"id": [cid("a1")[:6]]}, True), ({"exited": ["3"]}, True),
]


def answers(store: Store) -> list[Any]:
    out: list[Any] = [[c.name for c in store.containers.list(f, all=a)] for f, a in QUERIES]
    out.append(sorted(store.snapshot().containers))
    out.append([x.id for x in store.execs.list()])
    out.append([x.id for x in store.execs.list("web")])
    out.append([x.id for x in store.execs.list("db")])
    out.append(store.containers.get(cid("a1")[:6]).name)
    out.append(store.execs.get(cid("f5")[:6]).id)
    return out


# (kind, field) -> the read that must report a broken key of that index, by how it is broken:
# a list (its warnings) or a lookup (None: it has only the log)
Reader = Callable[[Store], "tuple[str, ...] | None"]


def _list(f: dict[str, list[str]], a: bool) -> Reader:
    return lambda s: s.containers.list(f, all=a).warnings


def _get(ref: str, kind: str = "container") -> Reader:
    def read(s: Store) -> None:
        (s.containers if kind == "container" else s.execs).get(ref)
    return read


ID_PREFIX = cid("a1")[:6]
REPORTER: dict[tuple[str, str], dict[str, Reader]] = {
    ("container", "status"): dict.fromkeys(("wrongtype", "score", "garbage"), _list({}, False)),
    ("container", "label"): dict.fromkeys(("wrongtype", "score", "garbage"), _list({"label": ["app=web"]}, True)),
    ("container", "image"): dict.fromkeys(("wrongtype", "score", "garbage"), _list({"ancestor": ["nginx:1.27"]}, True)),
    ("container", "network"): dict.fromkeys(("wrongtype", "score", "garbage"),
                                            _list({"network": ["frontnet"]}, True)),
    # the name and id filters read their whole index by rank: scores do not matter there
    ("container", "name"): {"wrongtype": _list({"name": ["we"]}, True)},
    ("container", "id"): {"wrongtype": _list({}, True), "score": _get(ID_PREFIX), "garbage": _list({}, True)},
    ("exec", "container"): dict.fromkeys(("wrongtype", "score", "garbage"), lambda s: s.execs.list("web").warnings),
    ("exec", "id"): {"wrongtype": lambda s: s.execs.list().warnings, "score": _get(cid("f5")[:6], "exec"),
                     "garbage": lambda s: s.execs.list().warnings},
}
CASES = [(k, f, m) for (k, f), modes in REPORTER.items() for m in ("wrongtype", "score", "garbage")]


# the start of a member in the range the reporting read reads
IN_RANGE = {"status": b"running\x00", "label": b"app\x00web\x00", "image": b"nginx:1.27\x00",
            "network": b"frontnet\x00", "name": b"", "id": b"", "container": cid("a1").encode() + b"\x00"}


def break_index(client: redis.Redis, key: str, field: str, mode: str) -> None:
    if mode == "wrongtype":
        client.delete(key)
        client.set(key, "junk")
    elif mode == "score":  # a negative score sorts "~~" first, which breaks lex ranges
        client.zadd(key, {b"zz-not-a-member": 7, b"~~not-a-member": -7})
    else:  # a member in that range whose ID part names no record, and one that ends in no ID
        client.zadd(key, {IN_RANGE[field] + b"9" * 64: 0, IN_RANGE[field] + b"not-an-id": 0})


@pytest.mark.parametrize(("kind", "field", "mode"), CASES, ids=[f"{k}-{f}-{m}" for k, f, m in CASES])
def test_a_broken_index_never_stops_a_query_and_fsck_repairs_it(
        store: Store, client: redis.Redis, namespace: str, index_log: _Collect,
        kind: str, field: str, mode: str) -> None:
    populate(store)
    healthy = answers(store)
    assert index_log.messages == []
    key = store.keys.index(kind, field)
    break_index(client, key, field, mode)
    broken = dump_namespace(client, namespace)

    assert answers(store) == healthy  # every read still gives the healthy answer
    assert dump_namespace(client, namespace) == broken  # and a read changes nothing
    reporter = REPORTER[(kind, field)].get(mode)
    if reporter is not None:
        index_log.messages.clear()
        warnings = reporter(store)
        assert index_log.messages, "the read did not report the broken index"
        for msg in index_log.messages:
            assert key in msg and "statestore fsck --repair" in msg
        if warnings is not None:
            assert list(warnings) == index_log.messages

    report = store.fsck(repair=True)
    assert report.repaired_all, report.text()
    assert store.fsck().clean
    index_log.messages.clear()
    assert answers(store) == healthy
    assert index_log.messages == []


def test_a_plain_ps_lists_through_a_wrong_type_status_index(
        store: Store, client: redis.Redis, redis_proc: RedisProcess, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    populate(store)
    key = store.keys.index("container", "status")
    client.delete(key)
    client.set(key, "junk")
    base = ["--redis-url", redis_proc.url, "--namespace", namespace]
    assert main([*base, "ps", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert sorted(r["Names"] for r in rows) == ["paused1", "web"]
    assert f"Warning: index {key} holds a string, not a sorted set" in err
    assert "statestore fsck --repair" in err and "corrupt record" not in err and "Error" not in err

    assert main([*base, "fsck", "--repair"]) == 0
    capsys.readouterr()
    assert main([*base, "ps", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert sorted(orjson.loads(line)["Names"] for line in out.splitlines()) == ["paused1", "web"]
    assert err == ""


# --- name keys -----------------------------------------------------------------------------------------


def test_a_name_key_naming_another_container_never_answers_with_it(
        store: Store, client: redis.Redis, namespace: str, index_log: _Collect) -> None:
    made = populate(store)
    nkey = store.keys.name("paused1")
    client.set(nkey, made["dead1"].id)
    before = dump_namespace(client, namespace)
    with pytest.raises(NotFoundError):
        store.containers.get("paused1")
    with pytest.raises(NotFoundError):
        store.containers.get("/paused1")
    with pytest.raises(NotFoundError):
        store.containers.resolve("paused1")
    with pytest.raises(NotFoundError):  # writes resolve the same way: dead1 is left alone
        store.containers.update("paused1", lambda c: c.labels.__setitem__("x", "y"))
    with pytest.raises(NotFoundError):
        store.lock("paused1", timeout=0.5)
    assert dump_namespace(client, namespace) == before
    assert index_log.messages
    for msg in index_log.messages:
        assert nkey in msg and made["dead1"].id[:12] in msg and "statestore fsck --repair" in msg
    # the container itself is still found by ID and ID prefix, and dead1 by its own name
    assert store.containers.get(made["paused1"].id[:5]).name == "paused1"
    assert store.containers.get("dead1").id == made["dead1"].id
    assert store.fsck(repair=True).repaired_all
    assert store.containers.get("paused1").id == made["paused1"].id


def test_a_bad_name_key_falls_through_to_an_id_prefix(
        store: Store, client: redis.Redis, index_log: _Collect) -> None:
    made = populate(store)
    # "a1a1" is an ID prefix of web; a name key of that name pointing at db is ignored, not obeyed
    client.set(store.keys.name("a1a1"), made["db"].id)
    assert store.containers.get("a1a1").name == "web"
    assert store.containers.resolve("a1a1") == made["web"].id
    assert any(store.keys.name("a1a1") in m for m in index_log.messages)
    # a name key of the wrong type is passed over the same way
    index_log.messages.clear()
    client.delete(store.keys.name("a1a1"))
    client.hset(store.keys.name("a1a1"), "holder", made["db"].id)
    assert store.containers.get("a1a1").name == "web"
    assert any(store.keys.name("a1a1") in m and "holds a hash" in m for m in index_log.messages)
    # a genuine name still wins over a prefix, with nothing to report
    index_log.messages.clear()
    store.containers.create(Container.new("busybox:1.36", name="b2b2"))
    assert store.containers.get("b2b2").name == "b2b2"
    assert index_log.messages == []


def test_cli_inspect_of_a_tampered_name_prints_no_other_container(
        store: Store, client: redis.Redis, redis_proc: RedisProcess, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    made = populate(store)
    nkey = store.keys.name("paused1")
    client.set(nkey, made["dead1"].id)
    assert main(["--redis-url", redis_proc.url, "--namespace", namespace, "inspect", "paused1"]) == 1
    out, err = capsys.readouterr()
    assert orjson.loads(out) == []
    assert made["dead1"].id not in out
    assert f"Warning: index {nkey} names container {made['dead1'].id[:12]}" in err
    assert "statestore fsck --repair" in err
    assert "Error: No such container: paused1" in err


def test_an_id_index_with_bad_members_still_resolves_prefixes_exactly(
        store: Store, client: redis.Redis, index_log: _Collect) -> None:
    made = populate(store)
    key = store.keys.index("container", "id")
    # a member next to web's ID that names no record must neither hide web nor make "a1" ambiguous
    client.zadd(key, {"a1" + "0" * 62: 0})
    assert store.containers.get("a1").id == made["web"].id
    assert any(key in m for m in index_log.messages)
    with pytest.raises(AmbiguousReferenceError):
        store.containers.get("c")  # paused1 and dead1 both start with "c"
    with pytest.raises(NotFoundError):
        store.containers.get("a10")
    client.delete(key)
    client.set(key, "junk")
    assert store.containers.get("a1").id == made["web"].id
    with pytest.raises(AmbiguousReferenceError):
        store.containers.get("c")
