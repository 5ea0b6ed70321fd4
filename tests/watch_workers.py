"""Entry points for the multi-process watch and view tests (``tests/test_watch.py``, ``tests/test_view.py``).

They live at module level in an importable module so the ``spawn`` start
method can find them.  Each child builds its own client and Store from the
port and namespace it is given (nothing is inherited from the parent) and
reports through a queue as plain tuples: a child never raises, it reports the
error's class name and text so the parent can assert on it.

Watchers persist every event they receive as one JSON line (flushed before
the next event is taken), so a watcher that is SIGKILLed can be restarted
with ``since=`` the revision of the last line it wrote.
"""

from __future__ import annotations

import json
import os
import random
import traceback
from collections import Counter
from typing import Any

import redis

from statestore import (
    AlreadyExistsError,
    ConflictError,
    Container,
    Event,
    ExecConfig,
    InvalidArgumentError,
    InvalidStateError,
    NameInUseError,
    NotFoundError,
    Store,
    parse_revision,
)

#: the name of the container whose ``create`` event tells watchers that the writers are done
END_NAME = "watch-end"

IMAGES = ("alpine:3.20", "busybox:1.36", "nginx:1.27")

# op -> weight.  Container creates stop at ``max_containers``; the refresh from a snapshot
# makes every writer work on every writer's containers (contention, stale references).
OPS = {
    "create": 8, "update": 30, "rename": 6, "start": 10, "stop": 8, "delete": 5,
    "exec": 8, "exec_start": 4, "exec_delete": 5,
}

_EXPECTED = (ConflictError, NotFoundError, NameInUseError, InvalidStateError, AlreadyExistsError)


def _error(exc: BaseException) -> tuple[str, str, str]:
    return ("error", type(exc).__name__, "".join(traceback.format_exception(exc))[-3000:])


def event_row(ev: Event) -> list[Any]:
    """What a watcher records of an event (the same shape as ``test_watch.log_rows``)."""
    return [ev.kind, ev.id, ev.version, ev.type, ev.revision, ev.seq, ev.name, ev.container_id]


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if parse_revision(a) >= parse_revision(b) else b


def run_workload(store: Store, rng: random.Random, ops: int, tag: str, *, max_containers: int = 50,
                 shared_names: int = 30, refresh_every: int = 20,
                 weights: dict[str, int] | None = None) -> tuple[Counter[str], str | None]:
    """``ops`` random operations; returns (what happened, the newest revision this writer committed).

    Failures a concurrent workload must expect (conflicts that outlived the retries, records
    another writer deleted, names another writer took, illegal transitions) are counted, not raised.
    """
    known: list[str] = []
    execs: list[str] = []
    stats: Counter[str] = Counter()
    last: str | None = None
    names = list(OPS)
    chances = [(weights or OPS)[n] for n in names]
    for i in range(ops):
        if i % refresh_every == 0:
            snap = store.snapshot()
            known = sorted(snap.containers)
            execs = sorted(snap.execs)
        op = rng.choices(names, chances)[0]
        if op == "create" and len(known) >= max_containers:
            op = "update"
        if not known:
            op = "create"
        if op.startswith("exec_") and not execs:
            op = "exec"
        cid = rng.choice(known) if known else ""
        xid = ""
        rec: Any = None
        try:
            if op == "create":
                name = f"{tag}-{i}" if rng.random() < 0.7 else f"shared-{rng.randrange(shared_names)}"
                labels = {"grp": rng.choice("abc"), "w": tag}
                rec = store.containers.create(Container.new(rng.choice(IMAGES), name=name, labels=labels))
                known.append(rec.id)
            elif op == "update":
                value, drop = str(i), rng.random() < 0.2

                def change(c: Container, value: str = value, drop: bool = drop) -> None:
                    c.labels["n"] = value
                    if drop:
                        c.labels.pop("grp", None)
                    else:
                        c.labels.setdefault("grp", "a")

                rec = store.containers.update(cid, change)
            elif op == "rename":
                rec = store.containers.rename(cid, f"shared-{rng.randrange(shared_names)}")
            elif op == "start":
                pid = rng.randrange(1, 1 << 20)
                rec = store.containers.update(cid, lambda c, pid=pid: c.state.set_running(pid=pid))
            elif op == "stop":
                code = rng.randrange(0, 3)
                rec = store.containers.update(cid, lambda c, code=code: c.state.set_stopped(code))
            elif op == "delete":
                rec = store.containers.delete(cid)
                known.remove(cid)
            elif op == "exec":
                rec = store.execs.create(ExecConfig.new(cid, ["sh", "-c", f"echo {i}"]))
                execs.append(rec.id)
            elif op == "exec_start":
                xid = rng.choice(execs)
                pid = rng.randrange(1, 1 << 20)
                rec = store.execs.update(xid, lambda x, pid=pid: x.set_running(pid))
            elif op == "exec_delete":
                xid = rng.choice(execs)
                rec = store.execs.delete(xid)
                execs.remove(xid)
        except _EXPECTED as exc:
            stats["error:" + type(exc).__name__] += 1
            if isinstance(exc, NotFoundError):
                # someone else deleted it: forget it until the next refresh
                if xid in execs:
                    execs.remove(xid)
                elif cid in known:
                    known.remove(cid)
            continue
        except InvalidArgumentError as exc:
            if op != "rename":
                raise
            stats["error:same-name"] += 1  # renamed to the name it already has
            assert "same name" in str(exc)
            continue
        stats[op] += 1
        last = _later(last, rec.revision)
    return stats, last


def writer_worker(port: int, namespace: str, seed: int, phases: list[int], maxlen: int,
                  go: Any, phase_done: Any, resume: Any, out: Any) -> None:
    """One writer in phases: ``phases[k]`` random operations each.

    Waits for ``go`` before the first phase; after every phase but the last it sets
    ``phase_done`` and waits for ``resume`` (the parent injects faults in between).
    Reports ``("written", stats, last revision)``.
    """
    try:
        store = Store(redis.Redis(port=port), namespace, changelog_maxlen=maxlen)
        rng = random.Random(seed)
        stats: Counter[str] = Counter()
        last: str | None = None
        if not go.wait(60):
            raise TimeoutError("no go signal")
        for k, ops in enumerate(phases):
            s, rev = run_workload(store, rng, ops, f"p{k}")
            stats.update(s)
            last = _later(last, rev)
            if k < len(phases) - 1:
                phase_done.set()
                if not resume.wait(60):
                    raise TimeoutError("no resume signal")
        out.put(("written", dict(stats), last))
    except BaseException as exc:
        out.put(_error(exc))


def random_writer(port: int, namespace: str, worker: int, seed: int, ops: int, barrier: Any, out: Any) -> None:
    """A seeded random workload racing the other writers; reports ``("written", worker, stats, last revision)``."""
    try:
        store = Store(redis.Redis(port=port), namespace)
        rng = random.Random(seed)
        barrier.wait(timeout=60)
        # fewer deletes than the default mix, so that containers and execs are left at the end
        weights = {**OPS, "delete": 3, "exec_delete": 2, "start": 14}
        stats, last = run_workload(store, rng, ops, f"w{worker}", max_containers=40, refresh_every=10,
                                   weights=weights)
        out.put(("written", worker, dict(stats), last))
    except BaseException as exc:
        out.put(_error(exc))


def record_watch_worker(port: int, namespace: str, tag: str, since: str | None, path: str,
                        client_name: str, ready: Any, out: Any) -> None:
    """Watch from ``since`` and append every event to ``path`` (one JSON line, flushed) until END_NAME.

    The watcher is positioned (its first read done) before ``ready`` is set, so
    ``since=None`` means "after everything committed before ready".  Reports
    ``("watched", tag, events written by this process)``.
    """
    try:
        store = Store(redis.Redis(port=port, client_name=client_name), namespace)
        n = 0
        with store.watch(since=since, block=0.25) as w, open(path, "a", encoding="utf-8") as f:

            def record(ev: Event) -> bool:
                nonlocal n
                f.write(json.dumps(event_row(ev)) + "\n")
                f.flush()
                n += 1
                return ev.kind == "container" and ev.type == "create" and ev.name == END_NAME

            done = any([record(ev) for ev in w.poll(0)])
            ready.set()
            if not done:
                for ev in w:
                    if record(ev):
                        break
        out.put(("watched", tag, n))
    except BaseException as exc:
        out.put(_error(exc))


def view_worker(port: int, namespace: str, commands: Any, out: Any) -> None:
    """Hold a View; report ``("ready", pid, revision)``, then for every target revision sent on
    ``commands`` wait for it and report the view's contents; ``None`` ends the worker."""
    try:
        store = Store(redis.Redis(port=port), namespace)
        with store.view() as view:
            out.put(("ready", os.getpid(), view.revision))
            while True:
                target = commands.get(timeout=120)
                if target is None:
                    break
                caught_up = view.wait_for(target, timeout=60)
                containers = {c.id: c.to_dict() for c in view.list(all=True)}
                execs = {x.id: x.to_dict() for x in view.execs()}
                by_name = {c["Name"][1:]: view.get(c["Name"][1:]).id for c in containers.values()}
                out.put(("view", caught_up, view.relists, view.revision, containers, execs, by_name))
        out.put(("closed",))
    except BaseException as exc:
        out.put(_error(exc))
