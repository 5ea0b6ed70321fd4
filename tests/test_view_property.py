"""Property test: the View answers ``list``/``get`` exactly as the store does.

Random commit streams (create, label changes, status and health changes,
renames, deletes, exec create/delete) run against a store while a View
follows it; after each batch the View waits for the batch's last revision and
then every random ``docker ps`` query (label, name, id, status, ancestor,
health, exited, all/limit, before/since) and every reference (IDs, prefixes,
names, misses) must give the same records, in the same order, or the same
error class, as the store.  Label changes and renames move records out of
and into the filters between batches, so leaving and entering are covered.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statestore import Container, ExecConfig, StateStoreError, Store
from tests.redisproc import RedisProcess

_ns = itertools.count()

NAMES = ["web", "db", "ab", "web-2", "cache", "c0ffee"]
IMAGES = ["busybox", "busybox:latest", "nginx:1.25", "redis"]
LABEL_KEYS = ["app", "tier"]
LABEL_VALUES = ["web", "db", ""]
ID_HEADS = ["ab", "a0", "c0", "ff"]

OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMES), st.sampled_from(IMAGES), st.sampled_from(ID_HEADS),
              st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2)),
    st.tuples(st.just("label"), st.integers(0, 9), st.sampled_from(LABEL_KEYS), st.sampled_from([*LABEL_VALUES, None])),
    st.tuples(st.just("state"), st.integers(0, 9), st.sampled_from(["start", "stop", "pause", "unpause", "die"])),
    st.tuples(st.just("health"), st.integers(0, 9), st.sampled_from(["starting", "healthy", "unhealthy"])),
    st.tuples(st.just("rename"), st.integers(0, 9), st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), st.integers(0, 9)),
    st.tuples(st.just("exec"), st.integers(0, 9)),
    st.tuples(st.just("exec-delete"), st.integers(0, 9)),
)

FILTERS = st.fixed_dictionaries({}, optional={
    "label": st.lists(st.sampled_from(["app", "tier", "app=web", "tier=db", "app=", "nope"]), min_size=1, max_size=2),
    "name": st.lists(st.sampled_from([*NAMES, "^we", "b$", "/db", "["]), min_size=1, max_size=2),
    "id": st.lists(st.sampled_from(ID_HEADS + ["a", "f"]), min_size=1, max_size=2),
    "status": st.lists(st.sampled_from(["created", "running", "paused", "exited", "dead"]), min_size=1, max_size=2),
    "ancestor": st.lists(st.sampled_from(["busybox", "busybox:latest", "nginx", "nginx:1.25", "redis"]),
                         min_size=1, max_size=2),
    "health": st.lists(st.sampled_from(["starting", "healthy", "unhealthy", "none"]), min_size=1, max_size=2),
    "exited": st.lists(st.sampled_from(["0", "137"]), min_size=1, max_size=1),
    "before": st.sampled_from([*NAMES, "nosuch"]).map(lambda x: [x]),
    "since": st.sampled_from([*NAMES, "nosuch"]).map(lambda x: [x]),
})
QUERIES = st.tuples(FILTERS, st.booleans(), st.sampled_from([None, 0, 1, 3]))


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        out = fn()
    except StateStoreError as exc:
        return ("error", type(exc).__name__)
    if isinstance(out, list | tuple):
        return ("ok", [r.to_dict() for r in out])
    return ("ok", out.to_dict())


def run_op(store: Store, op: tuple[Any, ...], ids: list[str], execs: list[str]) -> str | None:
    """Perform one operation; an operation the store refuses (typed error) changes nothing."""
    kind = op[0]
    try:
        if kind == "create":
            _, name, image, head, labels = op
            rec = store.containers.create(Container.new(
                image, name=name, labels=labels, id=head + os.urandom(31).hex()[:62],
                image_id="sha256:" + ("1" if "busybox" in image else "2") * 64))
            ids.append(rec.id)
            return rec.revision
        if not ids:
            return None
        cid = ids[op[1] % len(ids)]
        if kind == "label":
            _, _, key, value = op

            def change(c: Container) -> None:
                if value is None:
                    c.labels.pop(key, None)
                else:
                    c.labels[key] = value
            rec = store.containers.update(cid, change)
        elif kind == "state":
            act: dict[str, Callable[[Container], None]] = {
                "start": lambda c: c.state.set_running(pid=7),
                "stop": lambda c: c.state.set_stopped(137),
                "pause": lambda c: c.state.set_paused(),
                "unpause": lambda c: c.state.set_unpaused(),
                "die": lambda c: c.state.set_stopped(0),
            }
            rec = store.containers.update(cid, act[op[2]])
        elif kind == "health":
            rec = store.containers.update(cid, lambda c: c.state.set_health(op[2]))
        elif kind == "rename":
            rec = store.containers.rename(cid, op[2])
        elif kind == "delete":
            rec = store.containers.delete(cid)
            ids.remove(cid)
        elif kind == "exec":
            x = store.execs.create(ExecConfig.new(cid, ["sh"]))
            execs.append(x.id)
            return x.revision
        else:
            if not execs:
                return None
            x = store.execs.delete(execs.pop(op[1] % len(execs)))
            return x.revision
    except StateStoreError:
        return None
    return rec.revision


def compare(store: Store, view: Any, queries: list[tuple[dict[str, list[str]], bool, int | None]],
            ids: list[str], execs: list[str]) -> None:
    for filters, all_, limit in queries:
        got = outcome(lambda f=filters, a=all_, n=limit: view.list(filters=f, all=a, limit=n))
        want = outcome(lambda f=filters, a=all_, n=limit: store.containers.list(filters=f, all=a, limit=n))
        assert got == want, (filters, all_, limit)
    refs = ["", "bad ref", "nosuch", "a", "f", "/web", *NAMES, *ID_HEADS]
    for cid in ids:
        refs += [cid, cid[:3], cid[:12]]
    for ref in refs:
        assert outcome(lambda r=ref: view.get(r)) == outcome(lambda r=ref: store.containers.get(r)), ref
    for xid in execs:
        assert outcome(lambda x=xid: view.get_exec(x[:12])) == outcome(lambda x=xid: store.execs.get(x[:12]))
    for cid in ids[:3]:
        got_x = sorted(x.id for x in view.execs(cid))
        assert got_x == sorted(x.id for x in store.execs.list(cid))


@pytest.fixture(scope="module")
def prop_client(redis_proc: RedisProcess) -> Any:
    c = redis_proc.client()
    yield c
    c.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(batches=st.lists(st.lists(OPS, min_size=1, max_size=10), min_size=1, max_size=4),
       queries=st.lists(QUERIES, min_size=4, max_size=8))
def test_the_view_answers_list_and_get_as_the_store_does(
    prop_client: redis.Redis, batches: list[list[tuple[Any, ...]]],
    queries: list[tuple[dict[str, list[str]], bool, int | None]],
) -> None:
    store = Store(prop_client, f"vp{os.getpid()}-{next(_ns)}")
    ids: list[str] = []
    execs: list[str] = []
    with store.view() as view:
        for batch in batches:
            last = None
            for op in batch:
                last = run_op(store, op, ids, execs) or last
            if last is not None:
                assert view.wait_for(last, timeout=10)
            compare(store, view, queries, ids, execs)
