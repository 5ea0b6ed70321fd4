"""Per-container output logs (``statestore/_async/_logs.py``, generated ``_sync/_logs.py``), on both faces.

Contract under test:

* ``append``/``append_many`` write entries ``s``/``d`` to ``ss:{ns}:logs:<id>`` while the container
  exists (one script call: all or none), capped with ``MAXLEN ~``; NotFoundError (nothing written)
  when it does not;
* ``read`` selects by ``since``/``until`` (Unix seconds against the entry IDs' milliseconds),
  ``after`` and ``tail``, oldest first, paged by ``count``;
* ``follow`` returns what came after a position, waits up to ``block`` for it in steps the socket
  timeout allows, and holds no other caller up meanwhile;
* bad input is InvalidArgumentError before anything is sent; Redis failures are statestore errors;
* fsck accepts a container's log, reports a log without its container (``logs-orphan``) and deletes
  it with ``--repair``, and reports a log of the wrong type (``logs-wrongtype``).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import pytest
import redis

from statestore import (
    Container,
    CorruptRecordError,
    InvalidArgumentError,
    NotFoundError,
    Store,
    StoreUnavailableError,
    _loglines,
)
from statestore._async._logs import AsyncLogs
from statestore._edge import Plan
from statestore._fsckcheck import CODES, WARNING, _single_keys, analyze
from statestore._keys import LOGS_CATEGORY, KeySchema
from statestore._loglines import DEFAULT_MAXLEN, LogLine, after_time
from statestore._sync._logs import Logs
from tests.conftest import dump_namespace
from tests.faces import Portal, StoreFace, _Proxy, fsck_phases
from tests.redisproc import RedisProcess, free_port

ID_A = "a" * 64


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both faces (overrides conftest's ``face``, which ``store`` uses)."""
    return str(request.param)


def logs_of(store: Any) -> Any:
    """The logs part wired to ``store`` as ``Store.__init__`` will wire it (``AsyncLogs(self)``), behind the
    blocking adapter on the async face."""
    if isinstance(store, StoreFace):
        return _Proxy(AsyncLogs(store._target), store._portal)
    return Logs(store)


@pytest.fixture
def logs(store: Store) -> Any:
    return logs_of(store)


@pytest.fixture
def cid(store: Store) -> str:
    return store.containers.create(Container.new("busybox", name="talker")).id


def server_ms(client: redis.Redis) -> int:
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000


# --- keys --------------------------------------------------------------------------------------------


def test_the_log_key_is_a_family_of_the_namespace() -> None:
    ks = KeySchema("prod")
    key = ks.logs(ID_A)
    assert key == f"ss:{{prod}}:logs:{ID_A}"
    assert ks.logs_prefix == "ss:{prod}:logs:"
    assert ks.parse(key) == (LOGS_CATEGORY, ID_A) == ("logs", ID_A)
    assert ks.parse(ks.log) == ("log", "")  # the change log is another key
    assert key not in _single_keys(ks) and ks.logs_prefix not in _single_keys(ks)
    for bad in ("a:b", "x*", "", "{x}", None):
        with pytest.raises(InvalidArgumentError):
            ks.logs(bad)  # type: ignore[arg-type]


def test_window_maps_times_to_stream_ids() -> None:
    top = 2**64 - 1
    assert _loglines.window(None, None, None) == ("0-0", f"{top}-{top}")
    assert _loglines.window(1.0, 2.0, None) == ("1000-0", f"2000-{top}")
    # an entry's time is its millisecond: since takes the first whole millisecond at or after it
    assert _loglines.window(1.0005, 1.9999, None) == ("1001-0", f"1999-{top}")
    assert _loglines.window(1_700_000_000.123, None, None) == ("1700000000123-0", f"{top}-{top}")
    assert _loglines.window(None, None, "1000-7") == ("1000-8", f"{top}-{top}")
    assert _loglines.window(None, None, f"5-{top}") == ("6-0", f"{top}-{top}")
    assert _loglines.window(3.0, None, "1000-7") == ("3000-0", f"{top}-{top}")  # the later start wins
    assert _loglines.window(3.0, 2.0, None) is None
    assert _loglines.window(None, 1.0, "1000-0") == ("1000-1", f"1000-{top}")
    assert _loglines.window(None, 1.0, f"1000-{top}") is None
    assert after_time(0) == "0-0"
    assert after_time(2.0) == f"1999-{top}"


# --- append and read ------------------------------------------------------------------------------------


def test_append_then_read_returns_the_lines_in_order(store: Store, logs: Any, cid: str,
                                                     client: redis.Redis) -> None:
    t0 = server_ms(client)
    first = logs.append(cid, "stdout", b"hello\n")
    second = logs.append(cid, "stderr", "caf\u00e9 went wrong\n")
    third = logs.append(cid, "stdout", b"\xff\x00raw bytes, no newline")
    t1 = server_ms(client)
    got = logs.read(cid)
    assert [g.id for g in got] == [first, second, third]
    assert [(g.stream, g.data) for g in got] == [
        ("stdout", b"hello\n"), ("stderr", "caf\u00e9 went wrong\n".encode()),
        ("stdout", b"\xff\x00raw bytes, no newline")]
    assert all(isinstance(g, LogLine) for g in got)
    for g in got:
        ms = int(g.id.split("-")[0])
        assert g.time_ns == ms * 1_000_000 and t0 <= ms <= t1
        assert g.time == pytest.approx(ms / 1000)
    # what Redis holds: one stream, fields s and d
    raw = client.xrange(store.keys.logs(cid))
    assert [(i.decode(), f) for i, f in raw] == [
        (first, {b"s": b"stdout", b"d": b"hello\n"}),
        (second, {b"s": b"stderr", b"d": "caf\u00e9 went wrong\n".encode()}),
        (third, {b"s": b"stdout", b"d": b"\xff\x00raw bytes, no newline"})]
    with pytest.raises(AttributeError):
        got[0].data = b"x"  # frozen


def test_append_many_writes_all_in_order_in_one_call(store: Store, logs: Any, cid: str,
                                                     client: redis.Redis) -> None:
    items = [("stdout" if i % 3 else "stderr", f"line {i}\n") for i in range(250)]
    ids = logs.append_many(cid, items)
    assert len(ids) == 250 and len(set(ids)) == 250
    got = logs.read(cid)
    assert [g.id for g in got] == ids
    assert [(g.stream, g.data.decode()) for g in got] == items
    assert logs.append_many(cid, []) == []
    assert client.xlen(store.keys.logs(cid)) == 250


def test_tail_is_the_last_lines_oldest_first(logs: Any, cid: str) -> None:
    ids = logs.append_many(cid, [("stdout", f"{i}") for i in range(20)])
    assert [g.id for g in logs.read(cid, tail=5)] == ids[-5:]
    assert [g.data for g in logs.read(cid, tail=1)] == [b"19"]
    assert logs.read(cid, tail=0) == []
    assert [g.id for g in logs.read(cid, tail=100)] == ids
    assert [g.id for g in logs.read(cid, tail=3, after=ids[10])] == ids[-3:]
    assert [g.id for g in logs.read(cid, tail=3, after=ids[17])] == ids[18:]


def test_count_pages_and_after_continues(logs: Any, cid: str) -> None:
    ids = logs.append_many(cid, [("stdout", f"{i}") for i in range(25)])
    seen: list[str] = []
    after = None
    while True:
        page = logs.read(cid, count=10, after=after)
        if not page:
            break
        assert len(page) <= 10
        seen += [g.id for g in page]
        after = page[-1].id
    assert seen == ids
    assert logs.read(cid, after=ids[-1]) == []
    assert [g.id for g in logs.read(cid, after="0-0")] == ids


def test_since_and_until_select_by_the_entry_ids_milliseconds(store: Store, logs: Any, cid: str,
                                                             client: redis.Redis) -> None:
    # entries at known times (1000 ms, 1000 ms, 2000 ms, 3000 ms), written as an appender would
    key = store.keys.logs(cid)
    for eid, text in (("1000-0", "a"), ("1000-1", "b"), ("2000-0", "c"), ("3000-5", "d")):
        client.xadd(key, {"s": "stdout", "d": text}, id=eid)

    def data(**kw: Any) -> str:
        return "".join(g.data.decode() for g in logs.read(cid, **kw))

    assert data() == "abcd"
    assert data(since=1.0) == "abcd" and data(since=1) == "abcd" and data(since=0) == "abcd"
    assert data(since=1.0005) == "cd"
    assert data(since=2.0) == "cd"
    assert data(until=2.0) == "abc" and data(until=2) == "abc"
    assert data(until=1.9999) == "ab"
    assert data(since=2.0, until=2.0) == "c"
    assert data(since=3.5) == "" and data(until=0.5) == ""
    assert data(since=2.5, until=1.5) == ""
    assert data(since=1.0, until=2.0, tail=2) == "bc"
    assert data(since=1.0, after="1000-0") == "bcd"
    assert data(since=2.0, after="1000-0") == "cd"
    lines = logs.read(cid, since=3)
    assert [(g.id, g.time_ns, g.time) for g in lines] == [("3000-5", 3_000_000_000, 3.0)]
    # follow from a time on
    assert "".join(g.data.decode() for g in logs.follow(cid, after_time(2.0), block=0)) == "cd"


def test_a_container_without_a_log_has_no_lines(logs: Any, cid: str) -> None:
    assert logs.read(cid) == [] and logs.read(cid, tail=10) == []
    assert logs.read(ID_A) == []  # no such container: nothing to read either
    assert logs.follow(cid, "0-0", block=0) == []


def test_last_id_is_where_to_follow_from_for_new_lines_only(logs: Any, cid: str) -> None:
    assert logs.last_id(cid) == "0-0"
    ids = logs.append_many(cid, [("stdout", "old"), ("stderr", "older")])
    assert logs.last_id(cid) == ids[-1]
    assert logs.follow(cid, logs.last_id(cid), block=0) == []
    new = logs.append(cid, "stdout", "new")
    assert [(g.id, g.data) for g in logs.follow(cid, ids[-1], block=0)] == [(new, b"new")]


# --- the cap --------------------------------------------------------------------------------------------


def test_maxlen_caps_the_log_approximately_keeping_the_newest(store: Store, logs: Any, cid: str,
                                                               client: redis.Redis) -> None:
    ids: list[str] = []
    for batch in range(10):
        ids += logs.append_many(cid, [("stdout", f"{batch}.{i}") for i in range(100)], maxlen=50)
    length = client.xlen(store.keys.logs(cid))
    node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    # MAXLEN ~ trims whole nodes only: at least the newest 50 stay, and less than a node more
    assert 50 <= length < 50 + node
    kept = [g.id for g in logs.read(cid, count=1000)]
    assert kept == ids[-length:]
    assert [g.id for g in logs.read(cid, tail=50)] == ids[-50:]
    # one at a time too
    for i in range(300):
        logs.append(cid, "stderr", f"{i}", maxlen=10)
    assert 10 <= client.xlen(store.keys.logs(cid)) < 10 + node
    assert logs.read(cid, tail=1)[0].data == b"299"
    assert DEFAULT_MAXLEN == 10_000


# --- follow ---------------------------------------------------------------------------------------------


def test_follow_returns_what_is_there_at_once(logs: Any, cid: str) -> None:
    ids = logs.append_many(cid, [("stdout", "one"), ("stderr", "two"), ("stdout", "three")])
    t = time.monotonic()
    got = logs.follow(cid, ids[0], block=5)
    assert time.monotonic() - t < 1
    assert [(g.id, g.stream, g.data) for g in got] == [(ids[1], "stderr", b"two"), (ids[2], "stdout", b"three")]
    assert [g.id for g in logs.follow(cid, "0-0", count=2)] == ids[:2]


def test_follow_times_out_with_no_lines(logs: Any, cid: str) -> None:
    last = logs.append(cid, "stdout", "x")
    t = time.monotonic()
    assert logs.follow(cid, last, block=0.3) == []
    assert 0.25 <= time.monotonic() - t < 2
    t = time.monotonic()
    assert logs.follow(cid, last, block=0) == []
    assert time.monotonic() - t < 0.5


def test_follow_wakes_for_a_line_while_others_use_the_store(store: Store, logs: Any, cid: str) -> None:
    last = logs.append(cid, "stdout", "before")
    out: dict[str, Any] = {}

    def follower() -> None:
        t = time.monotonic()
        out["lines"] = logs.follow(cid, last, block=10)
        out["took"] = time.monotonic() - t

    th = threading.Thread(target=follower)
    th.start()
    time.sleep(0.3)  # the follower is blocked in XREAD now
    # meanwhile the store answers everyone else at once (the follower has a connection to itself)
    t = time.monotonic()
    for _ in range(20):
        assert store.containers.get(cid).id == cid
        assert [g.data for g in logs.read(cid)] == [b"before"]
    assert time.monotonic() - t < 1.5
    new = logs.append(cid, "stderr", "after")
    th.join(5)
    assert not th.is_alive()
    assert [(g.id, g.stream, g.data) for g in out["lines"]] == [(new, "stderr", b"after")]
    assert out["took"] < 5


def test_a_long_follow_waits_in_steps_the_socket_timeout_allows(face: str, redis_proc: RedisProcess,
                                                                namespace: str) -> None:
    """With a 0.4 s socket timeout, a 1.2 s follow is three reads of at most 0.32 s, not a socket timeout."""
    url = f"redis://127.0.0.1:{redis_proc.port}/0?socket_timeout=0.4"
    if face == "async":
        from statestore import aio

        portal = Portal()

        async def make() -> aio.Store:
            return aio.Store.from_url(url, namespace)

        s: Any = StoreFace(portal.run(make()), portal)
    else:
        s = Store.from_url(url, namespace)
    with s:
        lg = logs_of(s)
        c = s.containers.create(Container.new("busybox")).id
        assert lg._max_block == pytest.approx(0.32)
        t = time.monotonic()
        assert lg.follow(c, "0-0", block=1.2) == []
        assert 1.1 <= time.monotonic() - t < 3
        lg.append(c, "stdout", "late")
        assert [g.data for g in lg.follow(c, "0-0", block=1.2)] == [b"late"]


# --- delete ---------------------------------------------------------------------------------------------


def test_delete_removes_the_log(store: Store, logs: Any, cid: str, client: redis.Redis) -> None:
    logs.append_many(cid, [("stdout", "a"), ("stdout", "b")])
    assert client.exists(store.keys.logs(cid)) == 1
    assert logs.delete(cid) is None
    assert client.exists(store.keys.logs(cid)) == 0
    assert logs.read(cid) == []
    logs.delete(cid)  # nothing left: no error
    assert store.containers.get(cid).id == cid  # the container is untouched


def test_a_commit_plan_can_delete_a_log_with_the_container(store: Store, logs: Any, cid: str,
                                                           client: redis.Redis) -> None:
    """What ``containers.delete`` adds to its plan: apply.lua runs a DEL of a stream key (it type-checks
    only the keys it ZADDs, ZREMs and XADDs to)."""
    logs.append_many(cid, [("stdout", "a"), ("stderr", "b")])
    target = store._target if isinstance(store, StoreFace) else store
    keys = target.keys

    def body(tx: Any) -> Plan:
        plan = tx.plan(keys.container(cid))
        plan.add("DEL", keys.logs(cid))
        plan.finish = lambda revisions: "done"
        return plan

    async def abody(tx: Any) -> Plan:
        return body(tx)

    if isinstance(store, StoreFace):
        assert store._portal.run(target._engine.transact(abody)) == "done"
    else:
        assert target._engine.transact(body) == "done"
    assert client.exists(keys.logs(cid)) == 0


# --- bad input and failures -------------------------------------------------------------------------------

BAD_IDS = ["", "abc", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "talker", None, 5, b"a" * 64]


def test_bad_input_is_refused_before_anything_is_written(store: Store, logs: Any, cid: str,
                                                         client: redis.Redis, namespace: str) -> None:
    logs.append(cid, "stdout", "kept")
    before = dump_namespace(client, namespace)
    calls: list[tuple[str, Any]] = []
    for bad in BAD_IDS:
        calls += [("append", lambda b=bad: logs.append(b, "stdout", "x")),
                  ("append_many", lambda b=bad: logs.append_many(b, [("stdout", "x")])),
                  ("read", lambda b=bad: logs.read(b)),
                  ("follow", lambda b=bad: logs.follow(b, "0-0", block=0)),
                  ("delete", lambda b=bad: logs.delete(b)),
                  ("last_id", lambda b=bad: logs.last_id(b))]
    for s in ("stdin", "STDOUT", "", None, b"stdout", 1):
        calls.append(("stream", lambda s=s: logs.append(cid, s, "x")))
    for d in (None, 5, ["x"], "\ud800", b"x" * (_loglines.MAX_DATA_BYTES + 1)):
        calls.append(("data", lambda d=d: logs.append(cid, "stdout", d)))
    for m in (0, -1, True, 1.5, "10", None):
        calls.append(("maxlen", lambda m=m: logs.append(cid, "stdout", "x", maxlen=m)))
    # append_many checks every item before sending any: a bad one at the end writes nothing
    for items in ([("stdout", "ok"), ("stdin", "bad")], [("stdout", "ok"), ("stdout",)], [("stdout", "ok"), "x"],
                  "stdout", b"xy", 5, [("stdout", "x")] * (_loglines.MAX_BATCH + 1)):
        calls.append(("items", lambda i=items: logs.append_many(cid, i)))
    for kw in ({"since": -1}, {"since": math.nan}, {"since": math.inf}, {"since": "1"}, {"since": True},
               {"until": -0.5}, {"until": "now"}, {"until": 1e30}, {"tail": -1}, {"tail": True}, {"tail": "5"},
               {"tail": 1.0}, {"count": 0}, {"count": -3}, {"count": _loglines.MAX_COUNT + 1}, {"after": "abc"},
               {"after": "1-2-3"}, {"after": "$"}, {"after": "1"}, {"after": 5}, {"after": f"{2**64}-0"}):
        calls.append((f"read {kw}", lambda kw=kw: logs.read(cid, **kw)))
    for fkw in ({"block": -1}, {"block": math.nan}, {"block": True}, {"block": "1"}, {"block": 1e9}, {"count": 0}):
        calls.append((f"follow {fkw}", lambda kw=fkw: logs.follow(cid, "0-0", **kw)))
    for after in ("$", ">", "", "1-x", None):
        calls.append(("follow after", lambda a=after: logs.follow(cid, a, block=0)))
    for what, call in calls:
        with pytest.raises(InvalidArgumentError):
            call()
            pytest.fail(f"{what} was accepted")
    assert dump_namespace(client, namespace) == before


def test_append_to_a_missing_container_writes_nothing(store: Store, logs: Any, client: redis.Redis,
                                                      namespace: str) -> None:
    before = dump_namespace(client, namespace)
    with pytest.raises(NotFoundError):
        logs.append(ID_A, "stdout", "x")
    with pytest.raises(NotFoundError):
        logs.append_many(ID_A, [("stdout", "x"), ("stderr", "y")])
    assert dump_namespace(client, namespace) == before
    assert client.exists(store.keys.logs(ID_A)) == 0
    # once created (by the ID it was given), its output is taken
    c = store.containers.create(Container.new("busybox", id=ID_A))
    assert logs.append(c.id, "stdout", "x")
    store.containers.delete(c.id)
    logs.delete(c.id)
    with pytest.raises(NotFoundError):
        logs.append(c.id, "stdout", "after the delete")
    assert client.exists(store.keys.logs(ID_A)) == 0


def test_a_log_key_of_another_type_is_a_corrupt_record_error(store: Store, logs: Any, cid: str,
                                                            client: redis.Redis, namespace: str) -> None:
    key = store.keys.logs(cid)
    client.set(key, "not a stream")
    before = dump_namespace(client, namespace)
    for call in (lambda: logs.append(cid, "stdout", "x"), lambda: logs.append_many(cid, [("stdout", "x")] * 3),
                 lambda: logs.read(cid), lambda: logs.read(cid, tail=3), lambda: logs.follow(cid, "0-0", block=0),
                 lambda: logs.last_id(cid),
                 lambda: logs.follow(cid, "0-0", block=0.1)):
        with pytest.raises(CorruptRecordError) as err:
            call()
        assert err.value.key == key
    assert dump_namespace(client, namespace) == before
    logs.delete(cid)  # DEL takes any type
    assert logs.append(cid, "stdout", "fresh") and [g.data for g in logs.read(cid)] == [b"fresh"]


def test_an_unreachable_redis_is_store_unavailable(face: str, namespace: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    if face == "async":
        from statestore import aio

        portal = Portal()

        async def make() -> aio.Store:
            return aio.Store.from_url(url, namespace, unavailable_timeout=0.2)

        s: Any = StoreFace(portal.run(make()), portal)
    else:
        s = Store.from_url(url, namespace, unavailable_timeout=0.2)
    with s:
        lg = logs_of(s)
        for call in (lambda: lg.append(ID_A, "stdout", "x"), lambda: lg.read(ID_A), lambda: lg.read(ID_A, tail=2),
                     lambda: lg.follow(ID_A, "0-0", block=0.1), lambda: lg.delete(ID_A), lambda: lg.last_id(ID_A)):
            with pytest.raises(StoreUnavailableError):
                call()


# --- fsck -------------------------------------------------------------------------------------------------


def test_fsck_accepts_the_log_of_an_existing_container(store: Store, logs: Any, cid: str) -> None:
    logs.append_many(cid, [("stdout", "a"), ("stderr", "b")])
    report = store.fsck()
    assert report.clean, report.text()
    assert report.checked["keys"] >= 1


def test_fsck_reports_and_deletes_a_log_without_its_container(store: Store, logs: Any, cid: str,
                                                             client: redis.Redis, namespace: str) -> None:
    other = store.containers.create(Container.new("busybox", name="other")).id
    logs.append_many(cid, [("stdout", "a"), ("stderr", "b")])
    logs.append(other, "stdout", "kept")
    # the container goes; then something that does not check for it writes its log again
    store.containers.delete(cid)
    client.xadd(store.keys.logs(cid), {"s": "stdout", "d": "late"})
    # and an orphan of another type, and a key of the family that names no container
    junk = store.keys.logs(ID_A)
    client.set(junk, "x")
    stray = store.keys.logs_prefix + "notanid"
    client.xadd(stray, {"s": "stdout", "d": "x"})
    before = dump_namespace(client, namespace)

    report = store.fsck()
    assert sorted(report.codes()) == sorted([("logs-orphan", store.keys.logs(cid)), ("logs-orphan", junk),
                                             ("orphan-key", stray)])
    assert dump_namespace(client, namespace) == before  # checking writes nothing
    orphan = next(p for p in report.problems if p.key == store.keys.logs(cid))
    assert orphan.severity == WARNING and orphan.repairable and not orphan.repaired
    assert orphan.record == store.keys.container(cid)
    assert cid in orphan.message and "does not exist" in orphan.message
    assert "holds a string" in next(p for p in report.problems if p.key == junk).message
    assert "logs-orphan" in CODES and "logs-wrongtype" in CODES

    fixed = store.fsck(repair=True)
    assert {(p.code, p.key, p.repaired) for p in fixed.problems} == {
        ("logs-orphan", store.keys.logs(cid), True), ("logs-orphan", junk, True), ("orphan-key", stray, False)}
    after = dump_namespace(client, namespace)
    # only the two orphans went: the other container's log and everything else are as they were
    assert {k.decode() for k in before.keys() - after.keys()} == {store.keys.logs(cid), junk}
    assert {k: v for k, v in before.items() if k in after} == after
    assert [g.data for g in logs.read(other)] == [b"kept"]
    assert store.fsck().codes() == [("orphan-key", stray)]


def test_fsck_repair_keeps_a_log_whose_container_came_back(store: Store, logs: Any, client: redis.Redis) -> None:
    cid = os.urandom(32).hex()
    client.xadd(store.keys.logs(cid), {"s": "stdout", "d": "a"})  # a log, and no container (yet)
    scan, repair = fsck_phases(store)
    analysis = analyze(store.keys, scan(), store.max_record_bytes)
    assert [(p.code, p.key) for p in analysis.problems] == [("logs-orphan", store.keys.logs(cid))]
    store.containers.create(Container.new("busybox", id=cid))  # between the scan and the repair
    repair(analysis)
    assert client.exists(store.keys.logs(cid)) == 1  # re-read under WATCH: its container exists again
    assert [g.data for g in logs.read(cid)] == [b"a"]
    assert store.fsck().clean


def test_fsck_reports_a_log_of_the_wrong_type(store: Store, cid: str, client: redis.Redis, namespace: str) -> None:
    key = store.keys.logs(cid)
    client.rpush(key, "x")
    report = store.fsck(repair=True)
    assert report.codes() == [("logs-wrongtype", key)]
    p = report.problems[0]
    assert not p.repairable and not p.repaired and p.action is not None and p.action.endswith(f"TYPE '{key}'")
    assert "holds a list" in p.message
    assert client.type(key) == b"list"  # left for an operator

