"""Selector enter/leave events and progress marks, against a private redis-server.

A watch with a label or name selector yields ``leave`` when an update makes a container stop
matching and ``enter`` when one makes it start; it decides from the change-log entry's ``prev``
field, so a watch resumed from an old revision (which never saw the earlier state) is exact.
A filtered watch with ``progress=`` yields ``progress`` marks so that its resume point survives
trimming of what it filtered out.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from typing import Any

import orjson
import pytest
import redis

from statestore import Container, Event, ExecConfig, HistoryTrimmedError, InvalidArgumentError, Store, Watch
from tests.redisproc import RedisProcess

BIG = 1_000_000


@pytest.fixture
def big_store(client: redis.Redis, namespace: str) -> Store:
    return Store(client, namespace, changelog_maxlen=BIG)


def drain(w: Watch, want: int | None = None, timeout: float = 10.0) -> list[Event]:
    """Poll until nothing more is there (or ``want`` events came, within ``timeout``)."""
    out: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = w.poll(0.2 if want is not None else 0)
        out += got
        if (want is not None and len(out) >= want) or (want is None and not got):
            break
    return out


def relabel(**labels: str | None) -> Any:
    def change(c: Container) -> None:
        for k, v in labels.items():
            if v is None:
                c.labels.pop(k, None)
            else:
                c.labels[k] = v

    return change


def kinds_types(evs: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.type) for e in evs]


# --- the change-log entry carries what selectors need of the state before an update ----------------

def test_an_update_that_changes_name_or_labels_logs_the_previous_ones(client: redis.Redis, big_store: Store) -> None:
    store = big_store
    web = store.containers.create(Container.new("nginx", name="web", labels={"app": "web"}))
    store.containers.update("web", lambda c: c.state.set_running(pid=3))
    store.containers.update("web", relabel(app="shop", tier="front"))
    store.containers.rename("web", "front")
    store.execs.create(ExecConfig.new("front", ["sh"]))
    store.containers.delete("front")
    entries = [{k.decode(): v for k, v in f.items()} for _, f in client.xrange(store.keys.log)]
    prev = [orjson.loads(e["prev"]) if "prev" in e else None for e in entries]
    assert prev == [None, None, {"name": "web", "labels": {"app": "web"}},
                    {"name": "web", "labels": {"app": "shop", "tier": "front"}}, None, None, None, None]
    for e in entries:  # the record stays the last field; prev (then action, if any) comes just before it
        assert list(e)[-1] == "record"
        if "prev" in e:
            assert list(e)[-3 if "action" in e else -2] == "prev"
    with store.watch(since=web.revision) as w:
        evs = drain(w)
    assert [e.previous for e in evs] == [None, ("web", {"app": "web"}), ("web", {"app": "shop", "tier": "front"}),
                                          None, None, None, None]


# --- enter and leave ------------------------------------------------------------------------------

def _leave_and_return(store: Store) -> dict[str, str]:
    web = store.containers.create(Container.new("nginx", name="web", labels={"app": "web"}))
    store.containers.create(Container.new("redis", name="db", labels={"app": "db"}))
    store.containers.update("web", relabel(app="other"))          # leaves app=web
    store.containers.update("web", lambda c: c.state.set_running(pid=3))  # outside: nothing
    store.containers.update("db", lambda c: c.state.set_running(pid=4))   # never inside: nothing
    store.containers.update("web", relabel(app="web"))            # enters again
    store.containers.update("web", relabel(tier="front"))         # still inside: update
    store.containers.delete("web")
    return {"web": web.id, "created": web.revision or ""}


def test_a_label_selector_reports_a_record_leaving_and_entering(big_store: Store) -> None:
    store = big_store
    w = store.watch(labels=["app=web"], block=0.2)
    assert w.poll(0) == []
    _leave_and_return(store)
    evs = drain(w, want=5)
    assert kinds_types(evs) == [("web", "create"), ("web", "leave"), ("web", "enter"), ("web", "update"),
                                ("web", "delete")]
    leave = evs[1]
    assert leave.record is not None and leave.labels == {"app": "other"}  # the record as it is now
    assert leave.previous == ("web", {"app": "web"})
    assert drain(w) == []
    w.close()


def test_a_watch_resumed_after_the_record_was_created_still_sees_it_leave(big_store: Store) -> None:
    store = big_store
    ids = _leave_and_return(store)
    # this watch never saw the create, so only the entry itself says the record matched before
    with store.watch(since=ids["created"], labels="app=web") as w:
        evs = drain(w)
    assert [e.type for e in evs] == ["leave", "enter", "update", "delete"]
    assert {e.id for e in evs} == {ids["web"]}


def test_types_select_among_enter_and_leave(big_store: Store) -> None:
    store = big_store
    ids = _leave_and_return(store)
    with store.watch(since=ids["created"], labels="app=web", types=["leave", "enter"]) as w:
        assert [e.type for e in drain(w)] == ["leave", "enter"]
    with store.watch(since=ids["created"], labels="app=web", types=["create", "update", "delete"]) as w:
        assert [e.type for e in drain(w)] == ["update", "delete"]


def test_a_watch_without_selectors_gets_no_new_types(big_store: Store) -> None:
    store = big_store
    _leave_and_return(store)
    store.containers.rename("db", "database")
    with store.watch(since="0-0") as w:
        evs = drain(w)
    with store.watch(since="0-0", kinds=["container"], ids=[evs[0].id]) as w:  # kinds and ids never change
        by_id = drain(w)
    assert len(evs) == 9
    assert {e.type for e in evs} == {"create", "update", "delete"}
    assert [e.revision for e in by_id] == [e.revision for e in evs if e.id == evs[0].id]


def test_a_name_selector_matches_like_docker_container_filter_and_sees_renames(big_store: Store) -> None:
    store = big_store
    web = store.containers.create(Container.new("nginx", name="web"))
    store.containers.create(Container.new("nginx", name="db"))
    store.containers.update("web", lambda c: c.state.set_running(pid=3))
    x = store.execs.create(ExecConfig.new("web", ["sh"]))         # an exec event goes by its container
    store.containers.rename("web", "front")                       # out of container=web
    store.execs.update(x.id, lambda e: e.set_running(7))           # front's exec: not web's any more
    store.containers.rename("front", "webby")                     # a name prefix: back in
    with store.watch(since=web.revision, names=["web"]) as w:
        evs = drain(w)
    assert [(e.kind, e.type, e.name) for e in evs] == [
        ("container", "update", "web"), ("exec", "create", ""), ("container", "update", "web"),
        ("container", "leave", "front"),
        ("container", "enter", "webby")]
    with store.watch(since="0-0", names=[web.id[:10]]) as w:      # an ID prefix: renames change nothing
        assert [e.type for e in drain(w)] == ["create", "update", "create", "update", "update", "update", "update"]
    with store.watch(since="0-0", names="/db") as w:              # docker's leading slash is accepted
        assert [(e.name, e.type) for e in drain(w)] == [("db", "create")]


def test_entries_without_prev_fall_back_to_what_the_watch_saw(
        client: redis.Redis, big_store: Store, namespace: str) -> None:
    """A statestore from before ``prev`` wrote entries without it: copy a log without that field."""
    _leave_and_return(big_store)
    old = Store(client, namespace + "-old", changelog_maxlen=BIG)
    for _, f in client.xrange(big_store.keys.log):
        fields = {k: v for k, v in f.items() if k != b"prev"}
        client.xadd(old.keys.log, fields)  # type: ignore[arg-type]
    with old.watch(since="0-0", labels="app=web") as w:
        evs = drain(w)
    # saw it match, so its leave is known; its way back in is reported as a plain update
    assert [e.type for e in evs] == ["create", "leave", "update", "update", "delete"]
    with old.watch(since=evs[0].revision, labels="app=web") as w:
        # never saw it match: the leave cannot be told (the documented limit)
        assert [e.type for e in drain(w)] == ["update", "update", "delete"]


@pytest.mark.parametrize("seed", range(4))
def test_random_streams_resumed_anywhere_agree_with_the_full_history(big_store: Store, seed: int) -> None:
    """For random commits and selectors, a watch resumed at any point yields exactly what a model
    that knows the whole history expects: create/update/delete inside, enter and leave at the edge."""
    store = big_store
    rnd = random.Random(seed)
    names = ["web", "web2", "db", "front"]
    for i in range(3):
        store.containers.create(Container.new("img", name=f"c{i}", labels={"app": rnd.choice(["web", "db"])}))
    for _ in range(40):
        live = [c.name for c in store.containers.list({}, all=True)]
        op = rnd.random()
        if not live or op < 0.1:
            free = [n for n in names + [f"n{rnd.randrange(100)}"] if n not in live]
            store.containers.create(Container.new("img", name=rnd.choice(free), labels={"app": "web"}))
        elif op < 0.4:
            store.containers.update(rnd.choice(live), relabel(app=rnd.choice(["web", "db", None])))
        elif op < 0.55:
            store.containers.update(rnd.choice(live), relabel(tier=rnd.choice(["front", None])))
        elif op < 0.75:
            target = rnd.choice([n for n in names + [f"n{rnd.randrange(100)}"] if n not in live])
            store.containers.rename(rnd.choice(live), target)
        elif op < 0.9:
            store.containers.update(rnd.choice(live), lambda c: c.state.set_running(pid=9)
                                    if c.status == "created" else None)
        else:
            store.containers.delete(rnd.choice(live))
    with store.watch(since="0-0") as w:
        history = drain(w)
    selectors: list[dict[str, Any]] = [
        {"labels": ["app=web"]}, {"labels": ["app"]}, {"labels": ["app=web", "tier=front"]},
        {"names": ["web"]}, {"names": ["web"], "labels": ["app=db"]}, {"names": ["c", "front"]},
    ]
    crossings: set[str] = set()
    for sel in selectors:
        def matches(rid: str, name: str, labels: dict[str, str], sel: dict[str, Any] = sel) -> bool:
            for s in sel.get("labels", ()):
                k, eq, v = s.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
            return "names" not in sel or any(name.startswith(n) or rid.startswith(n) for n in sel["names"])

        state: dict[str, tuple[str, dict[str, str]]] = {}
        expected: list[tuple[str, str]] = []
        for e in history:
            now = matches(e.id, e.name, e.labels)
            before = matches(e.id, *state[e.id]) if e.type == "update" else now
            state[e.id] = (e.name, e.labels)
            t = {(True, True): e.type, (False, True): "enter", (True, False): "leave"}.get((before, now))
            if t is not None:
                expected.append((e.revision, t))
        for start in sorted({0, *rnd.sample(range(len(history)), 5)}):
            since = "0-0" if start == 0 else history[start - 1].revision
            with store.watch(since=since, **sel) as w:
                got = [(e.revision, e.type) for e in drain(w)]
            assert got == [x for x in expected if _after(x[0], since)], (sel, since)
        crossings |= {t for _, t in expected}
    assert {"leave", "enter"} <= crossings  # the stream did move records across selectors


def _relabel_worker(url: str, namespace: str, cid: str, seed: int, n: int) -> None:
    """Relabel and rename one container ``n`` times, racing the other workers."""
    rnd = random.Random(seed)
    with Store.from_url(url, namespace=namespace) as store:
        for i in range(n):
            if rnd.random() < 0.3:
                store.containers.rename(cid, f"w{seed}-{i}")
            else:
                store.containers.update(cid, relabel(app=rnd.choice(["web", "db", None]), by=str(seed)))


def test_prev_is_the_state_before_each_update_when_processes_race(
        redis_proc: RedisProcess, big_store: Store, namespace: str) -> None:
    """prev is planned from the record read under WATCH, so a retried commit logs the state it
    really replaced: every prev equals the previous entry's name and labels, whatever the races."""
    c = big_store.containers.create(Container.new("img", name="raced", labels={"app": "web"}))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_relabel_worker, args=(redis_proc.url, namespace, c.id, seed, 40))
             for seed in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with big_store.watch(since="0-0") as w:
        history = drain(w)
    assert len(history) == 1 + 3 * 40
    for before, after in zip(history, history[1:], strict=False):
        changed = (before.name, before.labels) != (after.name, after.labels)
        assert after.previous == ((before.name, before.labels) if changed else None), after.revision
    with big_store.watch(since=c.revision, labels="app=web") as w:
        got = [e.type for e in drain(w)]
    expected = []
    for before, after in zip(history, history[1:], strict=False):
        t = {(True, True): "update", (False, True): "enter", (True, False): "leave"}.get(
            (before.labels.get("app") == "web", after.labels.get("app") == "web"))
        if t:
            expected.append(t)
    assert got == expected and "leave" in got and "enter" in got


def _after(rev: str, since: str) -> bool:
    a, b = rev.split("-"), since.split("-")
    return (int(a[0]), int(a[1])) > (int(b[0]), int(b[1]))


# --- progress marks ---------------------------------------------------------------------------------

def test_a_quiet_filtered_watch_resumes_from_its_progress_mark_after_trimming(
        client: redis.Redis, big_store: Store) -> None:
    store = big_store
    quiet = store.containers.create(Container.new("img", name="quiet", labels={"app": "quiet"}))
    noisy = store.containers.create(Container.new("img", name="noisy"))
    w = store.watch(since="0-0", labels="app=quiet", progress=0.05, block=0.2)
    (created,) = [e for e in drain(w, want=1) if e.type != "progress"]
    assert created.id == quiet.id
    for i in range(50):
        store.containers.update(noisy.id, relabel(n=str(i)))
    newest = client.xrevrange(store.keys.log, count=1)[0][0].decode()
    mark: Event | None = None
    deadline = time.monotonic() + 10
    while (mark is None or mark.revision != newest) and time.monotonic() < deadline:
        got = w.poll(0.3)
        assert all(e.type == "progress" for e in got)  # nothing of the noisy container
        mark = got[-1] if got else mark
    w.close()
    assert mark is not None and mark.revision == newest
    assert (mark.kind, mark.id, mark.record, mark.seq) == ("", "", None, 52)
    client.xtrim(store.keys.log, maxlen=1, approximate=False)  # an hour of trimming, in one go
    with pytest.raises(HistoryTrimmedError):
        store.watch(since=created.revision, labels="app=quiet").poll(0)  # the last event is gone
    with store.watch(since=mark.revision, labels="app=quiet", progress=0.05) as again:
        assert again.poll(0) == []
        store.containers.update(quiet.id, relabel(n="1"))
        (ev,) = drain(again, want=1)
        assert (ev.type, ev.id, ev.seq) == ("update", quiet.id, 53)


def test_progress_marks_only_when_asked_and_only_when_nothing_was_yielded(big_store: Store) -> None:
    store = big_store
    noisy = store.containers.create(Container.new("img", name="noisy"))
    plain = store.watch(since="0-0", labels="app=quiet", block=0.2)
    hourly = store.watch(since="0-0", labels="app=quiet", progress=3600, block=0.2)
    everything = store.watch(since="0-0", progress=0, block=0.2)
    store.containers.update(noisy.id, relabel(n="1"))
    assert drain(plain, timeout=1) == [] and plain.revision is not None
    assert drain(hourly, timeout=1) == []  # the interval has not passed
    assert [e.type for e in drain(everything)] == ["create", "update"]  # yielded: no mark needed
    for w in (plain, hourly, everything):
        w.close()


def test_a_mark_follows_entries_filtered_out_after_the_last_event_of_a_read(big_store: Store) -> None:
    """Entries dropped after the last yielded event of one read are marked on a later, empty read."""
    store = big_store
    web = store.containers.create(Container.new("img", name="web"))
    db = store.containers.create(Container.new("img", name="db"))
    with store.watch(since="0-0", names="web", progress=0) as w:
        first = w.poll(0)
        assert [(e.type, e.id) for e in first] == [("create", web.id)]
        (mark,) = w.poll(0)
        assert (mark.type, mark.revision, mark.seq) == ("progress", db.revision, 2)
        assert w.poll(0) == []  # given once


@pytest.mark.parametrize("kwargs", [
    {"progress": -1}, {"progress": "1"}, {"progress": True}, {"progress": float("nan")},
    {"names": [""]}, {"names": 3}, {"names": [None]}, {"types": ["progress"]},
])
def test_bad_selector_and_progress_arguments_are_invalid_argument_errors(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        store.watch(**kwargs)
