"""Change notifications: ``store.watch`` (the sequenced change log) and the pub/sub payloads.

The ground truth is always the change-log stream itself, read with XRANGE at
the end of a test: a watcher must deliver exactly the entries after its
``since``, in stream order, each once, with consecutive sequence numbers.
Multi-process tests use ``tests/watch_workers.py``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from statestore import (
    Container,
    Event,
    ExecConfig,
    HistoryTrimmedError,
    InvalidArgumentError,
    InvalidStateError,
    LogRegressionError,
    NameInUseError,
    Store,
    StoreUnavailableError,
    Watch,
    parse_revision,
)
from tests import watch_workers
from tests.redisproc import RedisProcess, free_port

_CTX = mp.get_context("spawn")
BIG = 1_000_000  # a changelog_maxlen that trims nothing in these tests


# --- helpers ------------------------------------------------------------------------------------

def log_rows(client: redis.Redis, store: Store) -> list[list[Any]]:
    """Every change-log entry as ``watch_workers.event_row`` shapes it: the ground truth."""
    rows = []
    for rid, f in client.xrange(store.keys.log):
        rows.append([f[b"kind"].decode(), f[b"id"].decode(), int(f[b"version"]), f[b"type"].decode(),
                     rid.decode(), int(f[b"seq"]), f[b"name"].decode(), f[b"container"].decode()])
    return rows


def after(rows: list[list[Any]], since: str) -> list[list[Any]]:
    return [r for r in rows if parse_revision(r[4]) > parse_revision(since)]


def check_history(rows: list[list[Any]]) -> None:
    """Global order (revisions strictly increasing, seq consecutive) and per-record versions."""
    assert rows
    seqs = [r[5] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    revs = [parse_revision(r[4]) for r in rows]
    assert all(a < b for a, b in zip(revs, revs[1:], strict=False))
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for kind, rid, version, etype, rev, *_ in rows:
        prev = last.get((kind, rid))
        if prev is None:
            assert etype != "create" or version == 1, (kind, rid, version, rev)
        else:
            assert prev[1] != "delete", f"{kind} {rid} changed after its delete at {rev}"
            assert etype != "create", f"{kind} {rid} created twice"
            assert version == prev[0] + (0 if etype == "delete" else 1), (kind, rid, prev, version, etype, rev)
        last[(kind, rid)] = (version, etype)


def rows_of(events: list[Event]) -> list[list[Any]]:
    return [watch_workers.event_row(ev) for ev in events]


def drain(w: Watch, timeout: float = 10.0, want: int | None = None) -> list[Event]:
    """Poll until nothing more arrives (or ``want`` events came), within ``timeout``."""
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = w.poll(0.2 if want is not None else 0)
        out += got
        if want is not None and len(out) >= want:
            break
        if not got and want is None:
            break
    return out


def file_rows(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def complete_lines(path: Path) -> int:
    """Lines a watcher has finished writing (it may be in the middle of the next one)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def last_persisted_revision(path: Path) -> tuple[str, int]:
    """The revision of the last complete line (a line cut short by SIGKILL is dropped), and the line count."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if complete != data:
        path.write_bytes(complete)
    lines = complete.decode().splitlines()
    return json.loads(lines[-1])[4], len(lines)


def bump(label: str, value: str) -> Any:
    def change(c: Container) -> None:
        c.labels[label] = value

    return change


def drop_label(label: str) -> Any:
    def change(c: Container) -> None:
        del c.labels[label]

    return change


def find_connection(client: redis.Redis, name: str, exclude: Collection[str] = ()) -> dict[str, Any] | None:
    for conn in client.client_list():
        if conn.get("name") == name and conn["id"] not in exclude:
            return conn
    return None


class Reports:
    """What the children put on their queue; a child's error report fails the test at once."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.items: list[tuple[Any, ...]] = []

    def poll(self, timeout: float = 0.0) -> None:
        try:
            r = self.out.get(timeout=timeout) if timeout > 0 else self.out.get_nowait()
        except queue.Empty:
            return
        assert r[0] != "error", "worker failed:\n" + "\n".join(map(str, r))
        self.items.append(r)

    def until(self, what: str, cond: Any, timeout: float, during: Any = None) -> None:
        """Poll until ``cond()`` holds (running ``during()`` in between); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; reports: {self.items}"
            if during is not None:
                during()
            self.poll(0.01)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [r for r in self.items if r[0] == kind]


@pytest.fixture
def big_store(client: redis.Redis, namespace: str) -> Store:
    return Store(client, namespace, changelog_maxlen=BIG)


# --- many processes ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_watchers_in_other_processes_get_every_commit_once_in_order_despite_kills(
        redis_proc: RedisProcess, client: redis.Redis, big_store: Store, namespace: str, tmp_path: Path) -> None:
    """A writer commits ~3,000 random changes in two phases while three watcher processes record
    every event: one from "0-0", one from the first commit's revision that is SIGKILLed mid-stream
    and restarted from the revision it last persisted, and one from "now" whose Redis connection
    is killed (CLIENT KILL ID) again and again.  Each ends with exactly the log."""
    store = big_store
    port = redis_proc.port
    start = store.containers.create(Container.new("busybox:1.36", name="watch-start"))
    rev0 = start.revision
    assert rev0 is not None
    out = _CTX.Queue()
    files = {tag: tmp_path / f"{tag}.jsonl" for tag in ("from-zero", "killed", "conn-killed")}
    conn_name = f"watch-{namespace}-conn"
    since = {"from-zero": "0-0", "killed": rev0, "conn-killed": None}
    procs: dict[str, Any] = {}
    ready: dict[str, Any] = {}

    def launch(tag: str, from_rev: str | None) -> None:
        ready[tag] = _CTX.Event()
        name = conn_name if tag == "conn-killed" else f"watch-{namespace}-{tag}"
        procs[tag] = _CTX.Process(target=watch_workers.record_watch_worker, daemon=True, args=(
            port, namespace, tag, from_rev, str(files[tag]), name, ready[tag], out))
        procs[tag].start()

    go, phase_done, resume = _CTX.Event(), _CTX.Event(), _CTX.Event()
    writer = _CTX.Process(target=watch_workers.writer_worker, daemon=True,
                          args=(port, namespace, 20240601, [1800, 1800], BIG, go, phase_done, resume, out))
    reports = Reports(out)
    try:
        for tag, rev in since.items():
            launch(tag, rev)
        for tag in since:
            reports.until(f"watcher {tag} to start", ready[tag].is_set, 60)
        writer.start()
        go.set()

        # SIGKILL one watcher while it is consuming the first phase
        reports.until("the killed watcher to get going", lambda: complete_lines(files["killed"]) >= 200, 60)
        os.kill(procs["killed"].pid, signal.SIGKILL)
        procs["killed"].join(10)
        assert procs["killed"].exitcode == -signal.SIGKILL
        resume_from, seen_before_kill = last_persisted_revision(files["killed"])

        # kill the other watcher's connection while the writer pauses (the kill must hit it)
        reports.until("the first phase", phase_done.is_set, 60)
        killed_ids: set[str] = set()

        def kill_connection(required: bool) -> None:
            conn = find_connection(client, conn_name, killed_ids)
            if conn is None:
                assert not required, f"no connection named {conn_name}: {client.client_list()}"
                return  # between a kill and the reconnect
            assert conn["name"] == conn_name  # the watcher's (its store never commits: no other connection)
            assert client.client_kill_filter(_id=conn["id"]) == 1
            killed_ids.add(conn["id"])

        kill_connection(required=True)
        # it reconnects by itself
        reports.until("the watcher to reconnect",
                      lambda: find_connection(client, conn_name, killed_ids) is not None, 20)

        launch("killed", resume_from)  # restarted from the revision it persisted
        resume.set()

        last_kill = [time.monotonic()]

        def keep_killing() -> None:
            if len(killed_ids) < 8 and time.monotonic() - last_kill[0] > 0.05:
                kill_connection(required=False)
                last_kill[0] = time.monotonic()

        reports.until("the writer", lambda: reports.of("written"), 120, keep_killing)
        (written,) = reports.of("written")
        end = store.containers.create(Container.new("busybox:1.36", name=watch_workers.END_NAME))
        reports.until("the watchers", lambda: len(reports.of("watched")) == 3, 120)
        assert sorted(r[1] for r in reports.of("watched")) == ["conn-killed", "from-zero", "killed"]
    finally:
        for p in [writer, *procs.values()]:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        out.close()

    rows = log_rows(client, store)
    assert len(rows) > 2500  # thousands of commits, nothing trimmed
    assert rows[0][4] == rev0 and rows[-1][4] == end.revision
    assert parse_revision(written[2]) < parse_revision(end.revision)
    check_history(rows)
    assert {r[0] for r in rows} == {"container", "exec"}
    assert {r[3] for r in rows} == {"create", "update", "delete"}

    assert file_rows(files["from-zero"]) == rows
    assert file_rows(files["conn-killed"]) == after(rows, rev0)
    killed_rows = file_rows(files["killed"])
    assert killed_rows == after(rows, rev0)
    assert 200 <= seen_before_kill < len(killed_rows)  # really killed mid-stream
    assert len(killed_ids) >= 2, killed_ids  # at least one kill in the pause and one during writes


# --- pub/sub ------------------------------------------------------------------------------------------

def _messages(ps: Any, n: int, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
    """Plain redis-py: the next ``n`` published messages as (channel, parsed JSON payload)."""
    got: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] in ("message", "pmessage"):
            got.append((m["channel"].decode(), json.loads(m["data"])))
    extra = ps.get_message(timeout=0.2)
    assert extra is None or extra["type"] not in ("message", "pmessage"), f"unexpected extra message {extra}"
    return got


def test_a_plain_redis_pubsub_consumer_gets_the_documented_payload_for_every_commit(
        redis_proc: RedisProcess, client: redis.Redis, store: Store, namespace: str) -> None:
    # the consumer side knows only the documented channel names, not statestore
    sub = redis.Redis(port=redis_proc.port)
    everything, execs_only, one_record = sub.pubsub(), sub.pubsub(), sub.pubsub()
    web = Container.new("nginx:1.27", name="web", labels={"app": "web", "tier": "front"})
    everything.psubscribe(f"ss:{{{namespace}}}:ev:*")
    execs_only.psubscribe(f"ss:{{{namespace}}}:ev:exec:*")
    one_record.subscribe(f"ss:{{{namespace}}}:ev:container:{web.id}")
    for ps in (everything, execs_only, one_record):
        assert ps.get_message(timeout=5)["type"] in ("psubscribe", "subscribe")
    # the library names the same channels
    assert store.keys.channel_pattern() == f"ss:{{{namespace}}}:ev:*"
    assert store.keys.channel_pattern("exec") == f"ss:{{{namespace}}}:ev:exec:*"
    assert store.keys.channel("container", web.id) == f"ss:{{{namespace}}}:ev:container:{web.id}"

    c = store.containers.create(web)
    db = store.containers.create(Container.new("postgres:16", name="db"))
    store.containers.update("web", bump("app", "web2"))
    store.containers.rename("web", "web-1")
    store.containers.update(c.id, lambda x: x.state.set_running(pid=42))
    x1 = store.execs.create(ExecConfig.new(c.id, ["sh"]))
    store.execs.update(x1.id, lambda x: x.set_running(7))
    x2 = store.execs.create(ExecConfig.new(c.id, ["top"]))
    x1_gone = store.execs.delete(x1.id)
    store.containers.update(db.id, bump("role", "primary"))
    store.containers.delete(c.id)  # takes x2 with it
    # commits that fail publish nothing (and log nothing)
    with pytest.raises(NameInUseError):
        store.containers.create(Container.new("busybox:1.36", name="db"))
    with pytest.raises(InvalidStateError):
        store.execs.create(ExecConfig.new("db", ["sh"]))

    entries = client.xrange(store.keys.log)
    assert len(entries) == 15
    expected: list[tuple[str, dict[str, Any]]] = []
    for rid, f in entries:
        kind, record = f[b"kind"].decode(), orjson.loads(f[b"record"])
        payload = {
            "namespace": namespace, "type": f[b"type"].decode(), "kind": kind, "id": f[b"id"].decode(),
            "name": f[b"name"].decode(), "container": f[b"container"].decode(), "version": int(f[b"version"]),
            "status": f[b"status"].decode(), "seq": int(f[b"seq"]), "revision": rid.decode(),
        }
        if b"action" in f:  # a commit that names what it did (rename does)
            payload["action"] = f[b"action"].decode()
        if kind == "container":
            payload["image"] = record["Config"]["Image"]
            payload["labels"] = record["Config"]["Labels"] or {}
            assert payload["container"] == payload["id"]
        else:
            assert payload["container"] == c.id and payload["name"] == ""
        expected.append((f"ss:{{{namespace}}}:ev:{kind}:{payload['id']}", payload))

    assert _messages(everything, len(expected)) == expected
    assert _messages(execs_only, 5) == [e for e in expected if e[1]["kind"] == "exec"]
    assert _messages(one_record, 8) == [e for e in expected if e[1]["id"] == web.id]
    # spot checks of the documented values
    first = expected[0][1]
    assert first == {"namespace": namespace, "type": "create", "kind": "container", "id": c.id, "name": "web",
                     "container": c.id, "version": 1, "status": "created", "image": "nginx:1.27",
                     "labels": {"app": "web", "tier": "front"}, "seq": 1, "revision": c.revision}
    assert expected[-1][1]["type"] == "delete" and expected[-1][1]["name"] == "web-1"
    assert expected[-1][1]["status"] == "running" and expected[-1][1]["version"] == 7
    assert [p["seq"] for _, p in expected] == list(range(1, 16))
    # an exec write's commit logs two entries (the exec's, then its container's); it returns the exec's
    assert (expected[8][1]["kind"], expected[8][1]["id"]) == ("exec", x2.id)
    assert x2.revision == expected[8][1]["revision"] != expected[9][1]["revision"]
    assert (expected[10][1]["type"], expected[10][1]["id"]) == ("delete", x1.id)
    assert x1_gone.revision == expected[10][1]["revision"] != expected[11][1]["revision"]
    for ps in (everything, execs_only, one_record):
        ps.close()
    sub.close()


# --- trimming -----------------------------------------------------------------------------------------

def test_watching_from_a_trimmed_revision_raises_history_trimmed(client: redis.Redis, namespace: str) -> None:
    store = Store(client, namespace, changelog_maxlen=20)
    first = store.containers.create(Container.new("busybox:1.36", name="trimmed"))
    for i in range(300):
        store.containers.update(first.id, bump("n", str(i)))
    entries = client.xrange(store.keys.log)
    assert 20 <= len(entries) < 150  # approximate MAXLEN: trimmed, but not below the cap
    oldest, oldest_seq = entries[0][0].decode(), int(entries[0][1][b"seq"])
    assert oldest_seq > 1

    with pytest.raises(HistoryTrimmedError) as ei:
        store.watch(since=first.revision).poll(0)
    assert (ei.value.since, ei.value.first_available) == (first.revision, oldest)

    with pytest.raises(HistoryTrimmedError) as ei:
        next(store.watch(since="0-0"))  # "from the beginning" is impossible once trimmed
    assert (ei.value.since, ei.value.first_available) == ("0-0", oldest)
    assert ei.value.missing == oldest_seq - 1

    # from a revision still in the log: the rest, exactly
    w = store.watch(since=oldest)
    got = drain(w, want=len(entries) - 1)
    assert [ev.seq for ev in got] == [int(f[b"seq"]) for _, f in entries[1:]]
    assert [ev.revision for ev in got] == [r.decode() for r, _ in entries[1:]]
    assert [ev.version for ev in got] == list(range(got[0].version, got[0].version + len(got)))
    w.close()


def test_a_watcher_that_falls_behind_the_cap_gets_history_trimmed_not_a_gap(
        client: redis.Redis, namespace: str) -> None:
    store = Store(client, namespace, changelog_maxlen=20)
    w = store.watch(block=0.2)
    assert w.poll(0) == []
    c = store.containers.create(Container.new("busybox:1.36", name="slowpoke"))
    (ev,) = w.poll(5)
    assert (ev.type, ev.revision, ev.seq) == ("create", c.revision, 1)
    for i in range(300):  # while the watcher does not read
        store.containers.update(c.id, bump("n", str(i)))
    oldest_id, oldest = client.xrange(store.keys.log, count=1)[0]

    for attempt in (w.poll, lambda: next(w)):
        with pytest.raises(HistoryTrimmedError) as ei:
            attempt()
        assert ei.value.since == c.revision
        assert ei.value.first_available == oldest_id.decode()
        assert ei.value.missing == int(oldest[b"seq"]) - 2  # every entry after seq 1 up to the oldest
        assert w.revision == c.revision  # nothing after the gap was delivered
    w.close()


# --- positions, filters, polling, closing ---------------------------------------------------------------

def test_since_none_starts_now_zero_starts_at_the_beginning_and_a_revision_is_exclusive(
        client: redis.Redis, big_store: Store) -> None:
    store = big_store
    assert store.snapshot().revision == "0-0"
    w_empty = store.watch(since=store.snapshot().revision)  # a snapshot of an empty log: "0-0"
    w_now_empty = store.watch()
    assert w_now_empty.poll(0) == []
    a = store.containers.create(Container.new("busybox:1.36", name="aa"))
    b = store.containers.update("aa", bump("k", "1"))
    w_now = store.watch()
    assert w_now.poll(0) == []  # positioned after b
    assert w_now.revision == b.revision
    c = store.containers.update("aa", bump("k", "2"))

    assert [e.revision for e in drain(store.watch(since="0-0"))] == [a.revision, b.revision, c.revision]
    assert [e.revision for e in drain(w_empty)] == [a.revision, b.revision, c.revision]
    assert [e.revision for e in drain(w_now_empty)] == [a.revision, b.revision, c.revision]
    assert [e.revision for e in drain(store.watch(since=a.revision))] == [b.revision, c.revision]
    assert [e.revision for e in drain(w_now)] == [c.revision]
    assert drain(store.watch(since=c.revision)) == []
    snap = store.snapshot()
    assert snap.revision == c.revision
    assert [e.version for e in drain(store.watch(since="0-0"))] == [1, 2, 3]
    rows = log_rows(client, store)
    check_history(rows)


def test_events_carry_the_commit_and_the_record(big_store: Store) -> None:
    store = big_store
    w = store.watch()
    w.poll(0)
    c = store.containers.create(Container.new("alpine:3.20", name="ev", labels={"app": "x"}))
    store.containers.update(c.id, lambda x: x.state.set_running(pid=9))
    x = store.execs.create(ExecConfig.new("ev", ["sh"]))
    gone = store.containers.delete("ev")
    evs = drain(w, want=6)
    assert [(e.kind, e.type, e.version) for e in evs] == [
        ("container", "create", 1), ("container", "update", 2), ("exec", "create", 1),
        ("container", "update", 3), ("exec", "delete", 1), ("container", "delete", 3)]
    assert [e.seq for e in evs] == list(range(1, 7))
    assert evs[0].revision == c.revision
    # one commit, two consecutive entries: the exec's, then its container's; the write returns the exec's
    assert x.revision == evs[2].revision != evs[3].revision
    assert evs[3].seq == evs[2].seq + 1 and evs[3].id == c.id
    assert evs[5].revision == gone.revision
    assert isinstance(evs[0].record, Container) and evs[0].record.to_dict() == c.to_dict()
    assert evs[0].labels == {"app": "x"} and evs[0].name == "ev" and evs[0].status == "created"
    assert evs[1].status == "running"
    assert isinstance(evs[2].record, ExecConfig) and evs[2].container_id == c.id and evs[2].labels == {}
    assert evs[2].name == "" and evs[2].status == "created"
    assert evs[3].record is not None and evs[3].record.exec_ids == [x.id]
    # a delete carries the last state of the record
    assert evs[5].record is not None and evs[5].record.to_dict() == gone.to_dict()
    assert evs[4].record is not None and evs[4].record.id == x.id
    assert orjson.loads(evs[5].raw) == gone.to_dict()
    w.close()


def _filter_scenario(store: Store) -> dict[str, Any]:
    web = store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "web", "tier": "front"}))
    db = store.containers.create(Container.new("postgres:16", name="db", labels={"app": "db"}))
    plain = store.containers.create(Container.new("busybox:1.36", name="plain"))
    for c in (web, db, plain):
        store.containers.update(c.id, lambda x: x.state.set_running(pid=5))
    xw = store.execs.create(ExecConfig.new("web", ["sh"]))
    xd = store.execs.create(ExecConfig.new("db", ["psql"]))
    store.execs.update(xw.id, lambda x: x.set_running(11))
    store.containers.update("web", bump("tier", "back"))
    store.containers.update("db", drop_label("app"))
    store.execs.delete(xd.id)
    store.containers.delete("web")
    store.containers.delete("plain")
    return {"web": web.id, "db": db.id, "plain": plain.id, "xw": xw.id, "xd": xd.id}


def _expected(evs: list[Event], kinds: tuple[str, ...] = ("container", "exec"),
              types: tuple[str, ...] = ("create", "update", "delete"), ids: set[str] | None = None,
              labels: tuple[tuple[str, str | None], ...] = ()) -> list[str]:
    out = []
    for e in evs:
        if e.kind not in kinds or e.type not in types:
            continue
        if ids is not None and e.id not in ids and e.container_id not in ids:
            continue
        have = e.record.labels if isinstance(e.record, Container) else {}
        if any(k not in have or (v is not None and have[k] != v) for k, v in labels):
            continue
        out.append(e.revision)
    return out


def test_filters_select_by_kind_id_label_and_type(big_store: Store) -> None:
    store = big_store
    ids = _filter_scenario(store)
    everything = drain(store.watch(since="0-0"))
    assert len(everything) == 18

    def revs(**kw: Any) -> list[str]:
        w = store.watch(since="0-0", **kw)
        got = [e.revision for e in drain(w)]
        assert w.revision == everything[-1].revision  # filtered events still advance the position
        w.close()
        return got

    assert revs(kinds=["exec"]) == _expected(everything, kinds=("exec",))
    assert revs(kinds="container") == _expected(everything, kinds=("container",))
    assert revs(types=["delete"]) == _expected(everything, types=("delete",))
    assert revs(types="create", kinds=["exec"]) == _expected(everything, types=("create",), kinds=("exec",))
    # a container ID selects the container and its execs' events; an exec ID only the exec's
    web = revs(ids=[ids["web"]])
    assert web == _expected(everything, ids={ids["web"]})
    assert {e.kind for e in everything if e.revision in web} == {"container", "exec"}
    assert len(web) == 8
    assert revs(ids=ids["xd"]) == _expected(everything, ids={ids["xd"]})
    assert len(revs(ids=[ids["xd"]])) == 2
    assert revs(ids=[ids["web"], ids["db"]]) == _expected(everything, ids={ids["web"], ids["db"]})
    # labels: "key" and "key=value", all must hold; exec events carry no labels; a container
    # that stops matching is a "leave" (test_watch_selectors.py), left out here with types
    plain = ["create", "update", "delete"]
    assert revs(labels=["app"], types=plain) == _expected(everything, labels=(("app", None),))
    assert revs(labels=["app=web"]) == _expected(everything, labels=(("app", "web"),))
    assert revs(labels=["app=web", "tier=front"], types=plain) == _expected(
        everything, labels=(("app", "web"), ("tier", "front")))
    left = [e for e in everything if e.type == "update" and e.previous is not None]
    assert revs(labels=["app"], types=["leave"]) == [left[1].revision]  # db lost its app label
    assert revs(labels=["app=web", "tier=front"], types=["leave"]) == [left[0].revision]  # tier=back
    assert revs(labels=["app=nope"]) == []
    assert len(revs(labels=["app=web"])) == 5  # create, start, the ExecIDs update, tier=back, delete
    assert revs(labels=["app"], types=["delete"], kinds=["container"]) == _expected(
        everything, kinds=("container",), types=("delete",), labels=(("app", None),))
    assert revs(ids=[]) == []


def test_a_single_label_selector_string_works_like_a_one_element_list(big_store: Store) -> None:
    store = big_store
    _filter_scenario(store)
    as_list = [e.revision for e in drain(store.watch(since="0-0", labels=["app=web"]))]
    assert as_list
    assert [e.revision for e in drain(store.watch(since="0-0", labels="app=web"))] == as_list


def test_poll_returns_what_is_there_within_the_timeout(big_store: Store) -> None:
    store = big_store
    w = store.watch(block=5)
    assert w.poll() == []  # non-blocking
    assert w.poll(0.2) == []  # waits at most the timeout
    c = store.containers.create(Container.new("busybox:1.36", name="polled"))
    got = w.poll(10)
    assert [(e.type, e.revision) for e in got] == [("create", c.revision)]
    for i in range(5):
        store.containers.update(c.id, bump("n", str(i)))
    got = drain(w, want=5)
    assert [e.version for e in got] == [2, 3, 4, 5, 6]
    assert w.poll(0) == []

    # a commit made while a poll waits ends the wait
    result: list[list[Event]] = []
    t = threading.Thread(target=lambda: result.append(w.poll(30)), daemon=True)
    t.start()
    time.sleep(0.1)
    d = store.containers.update(c.id, bump("n", "last"))
    t.join(10)
    assert not t.is_alive()
    assert [e.revision for e in result[0]] == [d.revision]
    w.close()


# regression test (was a strict xfail until the fix)
def test_poll_with_a_sub_millisecond_timeout_returns(big_store: Store) -> None:
    store = big_store
    c = store.containers.create(Container.new("busybox:1.36", name="tiny"))
    w = store.watch()
    w.poll(0)
    result: list[list[Event]] = []
    t = threading.Thread(target=lambda: result.append(w.poll(0.0005)), daemon=True)
    t.start()
    t.join(2)
    hung = t.is_alive()
    if hung:
        store.containers.update(c.id, bump("n", "wake"))  # an entry ends the endless block
        t.join(10)
    w.close()
    assert not hung, "poll(0.0005) was still blocked after 2 s"
    assert result == [[]]


def test_close_from_another_thread_ends_the_iteration(big_store: Store) -> None:
    store = big_store
    w = store.watch(block=0.2)
    got: list[Event] = []
    failures: list[BaseException] = []
    started = threading.Event()

    def consume() -> None:
        try:
            w.poll(0)
            started.set()
            for ev in w:
                got.append(ev)
        except BaseException as exc:  # the test asserts there is none
            failures.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert started.wait(10)
    c = store.containers.create(Container.new("busybox:1.36", name="closing"))
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.revision for e in got] == [c.revision]
    w.close()
    t.join(10)
    assert not t.is_alive(), "iteration did not stop after close()"
    assert failures == []
    store.containers.update(c.id, bump("after", "close"))
    assert len(got) == 1
    with pytest.raises(StopIteration):
        next(w)


# regression test (was a strict xfail until the fix)
def test_close_releases_the_watch_connection(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    name = f"closing-{namespace}"
    store = Store(redis.Redis(port=redis_proc.port, client_name=name), namespace)
    w = store.watch(block=0.1)
    assert w.poll(0) == []
    assert find_connection(client, name) is not None
    w.close()
    with pytest.raises(StopIteration):
        next(w)
    deadline = time.monotonic() + 1.5
    while find_connection(client, name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert find_connection(client, name) is None, "the closed watch still holds its connection"


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"since": "abc"}, {"since": "1-"}, {"since": "-1"}, {"since": "1-2-3"}, {"since": ""}, {"since": "0"},
    {"since": 12}, {"since": b"0-0"}, {"since": "\uff11-0"}, {"since": " 1-0"},
    {"kinds": ["pod"]}, {"kinds": "containers"}, {"kinds": ["container", "volume"]},
    {"types": ["restart"]}, {"types": "Create"},
    {"ids": ["abc"]}, {"ids": ["A" * 64]}, {"ids": [None]}, {"ids": "xyz"}, {"ids": ["a" * 63]},
    {"labels": [""]}, {"labels": [1]}, {"labels": [None]},
    {"block": 0}, {"block": -1}, {"block": 61}, {"block": True}, {"block": "1"}, {"block": float("nan")},
    {"block": None},
    {"reconnect_timeout": 0}, {"reconnect_timeout": -1}, {"reconnect_timeout": float("nan")},
], ids=repr)
def test_bad_arguments_are_invalid_argument_errors(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        store.watch(**kwargs)


@pytest.mark.parametrize("batch", [0, -1, True, 1.5])
def test_bad_batch_is_an_invalid_argument_error(store: Store, batch: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        Watch(store, batch=batch)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"reconnect_timeout": "1"}),
    pytest.param({"reconnect_timeout": True}),
    pytest.param({"ids": 5}),
    pytest.param({"kinds": 5}),
    pytest.param({"labels": 5}),
], ids=repr)
def test_badly_typed_arguments_are_invalid_argument_errors(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        store.watch(**kwargs)


# regression test (was a strict xfail until the fix)
def test_a_revision_beyond_the_stream_id_range_is_an_invalid_argument(store: Store) -> None:
    store.containers.create(Container.new("busybox:1.36", name="big"))
    with pytest.raises(InvalidArgumentError):
        store.watch(since=f"{2**64}-0").poll(0)


# --- the log going backwards --------------------------------------------------------------------------------

@pytest.mark.parametrize("deleted", ["log and counter", "counter only"])
def test_a_log_that_goes_backwards_raises_log_regression(client: redis.Redis, big_store: Store,
                                                          deleted: str) -> None:
    store = big_store
    c = store.containers.create(Container.new("busybox:1.36", name="regress"))
    for i in range(5):
        last = store.containers.update(c.id, bump("n", str(i)))
    w = store.watch(since=c.revision)
    assert [e.seq for e in drain(w, want=5)] == [2, 3, 4, 5, 6]
    assert w.revision == last.revision
    # a failover to a replica that lost writes: the log (and its counter) restart
    if deleted == "log and counter":
        client.delete(store.keys.log, store.keys.log_seq)
    else:
        client.delete(store.keys.log_seq)
    time.sleep(0.002)  # the new entry's ID is in a later millisecond, so XREAD returns it
    again = store.containers.update(c.id, bump("n", "again"))
    assert parse_revision(again.revision) > parse_revision(last.revision)  # the revision alone looks fine
    assert int(client.xrevrange(store.keys.log, count=1)[0][1][b"seq"]) == 1  # the seq restarted
    for attempt in (w.poll, lambda: next(w)):
        with pytest.raises(LogRegressionError) as ei:
            attempt()
        assert ei.value.last_revision == last.revision
        assert ei.value.found_revision == again.revision
        assert w.revision == last.revision  # never delivered silently
    if deleted == "log and counter":
        # from the beginning of the new log it is consistent again
        assert [(e.seq, e.revision) for e in drain(store.watch(since="0-0"))] == [(1, again.revision)]
    w.close()


# regression test (was a strict xfail until the fix)
def test_resuming_from_a_revision_a_failover_lost_asks_for_a_relist(client: redis.Redis, big_store: Store,
                                                                     namespace: str) -> None:
    store = big_store
    c = store.containers.create(Container.new("busybox:1.36", name="lost"))
    store.containers.update(c.id, bump("n", "1"))
    replica = {k: client.dump(k) for k in client.scan_iter(match=f"ss:{{{namespace}}}:*")}
    persisted = store.containers.update(c.id, bump("n", "2")).revision  # what a watcher saved last
    for k in client.scan_iter(match=f"ss:{{{namespace}}}:*"):  # the failover: back to the replica's data
        client.delete(k)
    for k, v in replica.items():
        client.restore(k, 0, v)
    time.sleep(0.002)
    store.containers.update(c.id, bump("n", "2-again"))
    with pytest.raises((HistoryTrimmedError, LogRegressionError)):
        store.watch(since=persisted).poll(0)


# --- connections ------------------------------------------------------------------------------------------

def test_reconnect_timeout_bounds_a_watch_on_a_dead_server() -> None:
    store = Store(redis.Redis(port=free_port()), "dead")
    w = store.watch(reconnect_timeout=0.3)
    with pytest.raises(StoreUnavailableError):
        w.poll(0)
    w.close()


@pytest.mark.slow
def test_a_watch_resumes_after_the_redis_server_restarts(aof_server: RedisProcess) -> None:
    client = aof_server.client()
    store = Store(client, "restart", changelog_maxlen=BIG)
    start = store.containers.create(Container.new("busybox:1.36", name="before"))
    got: list[Event] = []
    failures: list[BaseException] = []
    w = store.watch(since=start.revision, block=0.2)

    def consume() -> None:
        try:
            for ev in w:
                got.append(ev)
                time.sleep(0.002)  # a slow consumer: the server dies with entries still to read
                if ev.type == "create" and ev.name == "after":
                    return
        except BaseException as exc:
            failures.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    c = start
    for i in range(300):
        c = store.containers.update(c.id, bump("n", str(i)))
    assert len(got) < 300
    old_pid = aof_server.proc.pid if aof_server.proc else None
    aof_server.kill()  # SIGKILL: what was acknowledged is on disk (appendfsync always)
    if aof_server.proc is not None and aof_server.proc.stderr is not None:
        aof_server.proc.stderr.close()
    time.sleep(0.3)
    aof_server.start()
    assert aof_server.proc is not None and aof_server.proc.pid != old_pid
    for i in range(100):
        c = store.containers.update(c.id, bump("m", str(i)))
    end = store.containers.create(Container.new("busybox:1.36", name="after"))
    t.join(60)
    assert not t.is_alive() and failures == []
    rows = log_rows(client, store)
    assert len(rows) == 402 and rows[-1][4] == end.revision
    check_history(rows)
    assert rows_of(got) == after(rows, start.revision)
    w.close()
    client.close()


# --- client flavours ------------------------------------------------------------------------------------

# regression: RESP3 XREAD replies ({stream: [[entries]]}) once broke watch and view


@pytest.mark.parametrize("flavour", [
    "resp2",
    "decoded",
    "blocking-pool",
    pytest.param("resp3"),
    pytest.param("resp3-decoded"),
])
def test_watch_and_view_work_with_every_client_flavour(redis_proc: RedisProcess, namespace: str,
                                                       flavour: str) -> None:
    kw: dict[str, Any] = {
        "resp2": {}, "decoded": {"decode_responses": True}, "resp3": {"protocol": 3},
        "resp3-decoded": {"protocol": 3, "decode_responses": True}, "blocking-pool": {},
    }[flavour]
    if flavour == "blocking-pool":
        user = redis.Redis(connection_pool=redis.BlockingConnectionPool(port=redis_proc.port, max_connections=4))
    else:
        user = redis.Redis(port=redis_proc.port, **kw)
    store = Store(user, namespace)
    try:
        c = store.containers.create(Container.new("busybox:1.36", name="flavour", labels={"k": "v"}))
        w = store.watch(since="0-0", block=0.2)
        evs = drain(w, want=1)
        assert [(e.type, e.revision, e.seq) for e in evs] == [("create", c.revision, 1)]
        assert isinstance(evs[0].record, Container) and evs[0].labels == {"k": "v"}
        u = store.containers.update(c.id, bump("k", "w"))
        assert [e.revision for e in drain(w, want=1)] == [u.revision]
        w.close()
        with store.view() as view:
            u = store.containers.update(c.id, bump("k", "x"))
            assert view.wait_for(u.revision or "", timeout=5)
            assert view.get("flavour").labels == {"k": "x"}
    finally:
        store.close()
        user.close()
