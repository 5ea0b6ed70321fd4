"""Entry points for the multi-process tests (``tests/test_store_concurrency.py``).

They live at module level in an importable module so the ``spawn`` start
method can find them.  Each child builds its own client and Store from the
port and namespace it is given (nothing is inherited from the parent), waits
on a barrier so the contenders really start together, and reports what
happened through a queue as plain tuples: a child never raises, it reports
the error's class name and text so the parent can assert on it.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import redis

from statestore import (
    ConflictError,
    Container,
    ExecConfig,
    NameInUseError,
    NotFoundError,
    Store,
)

COUNTER_LABEL = "counter"


def _store(port: int, namespace: str) -> Store:
    return Store(redis.Redis(port=port), namespace)


def _error(exc: BaseException) -> tuple[str, str, str]:
    return ("error", type(exc).__name__, "".join(traceback.format_exception(exc))[-2000:])


def bump(c: Container) -> None:
    """Add one to the record's counter label."""
    c.labels[COUNTER_LABEL] = str(int(c.labels.get(COUNTER_LABEL, "0")) + 1)


def increments(store: Store, ref: str, times: int, barrier: Any) -> tuple[str, int, int]:
    """Wait on ``barrier``, then ``times`` increments of ``ref`` through ``update()``.

    Returns ``("done", increments, conflict_errors)``: ``conflict_errors``
    counts ConflictErrors that escaped ``update()`` (its own retries ran out);
    each such increment is retried here so the total stays exact, and the
    parent decides whether escapes are acceptable.
    """
    barrier.wait(timeout=60)
    escaped = done = 0
    while done < times:
        try:
            store.containers.update(ref, bump)
        except ConflictError:
            escaped += 1
            continue
        done += 1
    return ("done", done, escaped)


def increment_worker(port: int, namespace: str, ref: str, times: int, barrier: Any, out: Any) -> None:
    """:func:`increments` in a process of its own; reports its result (or the error) on ``out``."""
    try:
        out.put(increments(_store(port, namespace), ref, times, barrier))
    except BaseException as exc:  # report everything; the parent asserts
        out.put(_error(exc))


def name_race_worker(port: int, namespace: str, name: str, container_id: str, barrier: Any, out: Any) -> None:
    """Create a container with a contested name.

    Reports ``("won", id)``, ``("in_use", name, holder_id, id)`` or an error.
    """
    try:
        store = _store(port, namespace)
        c = Container.new("busybox:1.36", name=name, id=container_id, labels={"race": "1"})
        barrier.wait(timeout=60)
        try:
            made = store.containers.create(c)
        except NameInUseError as exc:
            out.put(("in_use", exc.name, exc.holder_id, container_id))
            return
        out.put(("won", made.id, made.version))
    except BaseException as exc:
        out.put(_error(exc))


def bulk_create_worker(port: int, namespace: str, worker: int, count: int, barrier: Any, out: Any) -> None:
    """Create ``count`` distinct containers (names ``w<worker>-<n>``); report their IDs."""
    try:
        store = _store(port, namespace)
        todo = [Container.new("alpine:3.20", name=f"w{worker}-{n}", labels={"worker": str(worker)})
                for n in range(count)]
        barrier.wait(timeout=60)
        ids = []
        for c in todo:
            made = store.containers.create(c)
            if made.version != 1:
                out.put(("error", "VersionError", f"{made.id} created with version {made.version}"))
                return
            ids.append(made.id)
        out.put(("created", worker, ids))
    except BaseException as exc:
        out.put(_error(exc))


def claim_name_worker(port: int, namespace: str, mode: str, ref: str, name: str, barrier: Any, out: Any) -> None:
    """Claim ``name`` either by renaming the existing container ``ref`` or by creating container ``ref``.

    Reports ``("won", id)``, ``("in_use", name, holder_id, id)`` or an error.
    """
    try:
        store = _store(port, namespace)
        fresh = Container.new("busybox:1.36", name=name, id=ref) if mode == "create" else None
        barrier.wait(timeout=60)
        try:
            if fresh is not None:
                made = store.containers.create(fresh)
            else:
                made = store.containers.rename(ref, name)
        except NameInUseError as exc:
            out.put(("in_use", exc.name, exc.holder_id, ref))
            return
        out.put(("won", made.id, made.version))
    except BaseException as exc:
        out.put(_error(exc))


def churn_worker(port: int, namespace: str, worker: int, rounds: int, barrier: Any, out: Any) -> None:
    """Create, start, exec into, and delete containers; each round leaves a known footprint.

    Per round: create ``ch<worker>-<round>``, start it, create two execs, delete the first;
    on even rounds delete the container too (with its remaining exec).  Reports
    ``("churned", worker, surviving container IDs, surviving exec IDs)``.
    """
    try:
        store = _store(port, namespace)
        barrier.wait(timeout=60)
        alive: list[str] = []
        alive_execs: list[str] = []
        for r in range(rounds):
            c = store.containers.create(Container.new("alpine:3.20", name=f"ch{worker}-{r}"))
            store.containers.update(c.id, lambda x, pid=10 + r: x.state.set_running(pid=pid))
            x1 = store.execs.create(ExecConfig.new(c.id, ["sh"]))
            x2 = store.execs.create(ExecConfig.new(c.id, ["top"]))
            store.execs.delete(x1.id)
            if r % 2 == 0:
                store.containers.delete(c.id)
            else:
                alive.append(c.id)
                alive_execs.append(x2.id)
        out.put(("churned", worker, alive, alive_execs))
    except BaseException as exc:
        out.put(_error(exc))


def exec_or_delete_worker(port: int, namespace: str, role: str, container_id: str, barrier: Any, out: Any) -> None:
    """Race exec creates against the container's delete.

    ``role == "exec"``: create up to 40 execs, stopping when the container is gone; report
    ``("execs", ids, conflict escapes)``.  ``role == "delete"``: wait until 10 execs exist, then
    delete the container; report ``("deleted", exec IDs the deleted record listed, conflict escapes)``.
    A ConflictError that escapes (retries ran out) is counted and the operation retried.
    """
    try:
        store = _store(port, namespace)
        barrier.wait(timeout=60)
        escaped = 0
        if role == "delete":
            while len(store.containers.get(container_id).exec_ids) < 10:
                time.sleep(0.001)
            while True:
                try:
                    gone = store.containers.delete(container_id)
                    break
                except ConflictError:
                    escaped += 1
            out.put(("deleted", gone.exec_ids, escaped))
            return
        made: list[str] = []
        while len(made) < 40:
            try:
                made.append(store.execs.create(ExecConfig.new(container_id, ["true"])).id)
            except ConflictError:
                escaped += 1
            except NotFoundError:
                break
            # pace the creates: back to back, they starve the (heavier) delete until they stop
            time.sleep(0.002)
        out.put(("execs", made, escaped))
    except BaseException as exc:
        out.put(_error(exc))


def cas_worker(port: int, namespace: str, mode: str, container_id: str, tag: str, barrier: Any, out: Any) -> None:
    """Contend on one record without update()'s retries.

    ``mode == "commit"``: read the record, wait for the others, commit a label ``winner=<tag>``;
    report ``("won", tag, version)`` or ``("conflict", tag, expected, actual)``.
    ``mode == "delete"``: wait, delete; report ``("deleted", tag)`` or ``("not_found", tag)``.
    """
    try:
        store = _store(port, namespace)
        if mode == "commit":
            mine = store.containers.get(container_id)
            mine.labels["winner"] = tag
            barrier.wait(timeout=60)
            try:
                done = store.containers.commit(mine)
            except ConflictError as exc:
                out.put(("conflict", tag, exc.expected, exc.actual))
                return
            out.put(("won", tag, done.version))
            return
        barrier.wait(timeout=60)
        try:
            store.containers.delete(container_id)
        except NotFoundError:
            out.put(("not_found", tag))
            return
        out.put(("deleted", tag))
    except BaseException as exc:
        out.put(_error(exc))
