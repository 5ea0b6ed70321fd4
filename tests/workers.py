"""Entry points for the multi-process tests (``tests/test_store_concurrency.py``).

They live at module level in an importable module so the ``spawn`` start
method can find them.  Each child builds its own client and Store from the
port and namespace it is given (nothing is inherited from the parent), waits
on a barrier so the contenders really start together, and reports what
happened through a queue as plain tuples: a child never raises, it reports
the error's class name and text so the parent can assert on it.
"""

from __future__ import annotations

import traceback
from typing import Any

import redis

from statestore import (
    ConflictError,
    Container,
    NameInUseError,
    Store,
)

COUNTER_LABEL = "counter"


def _store(port: int, namespace: str) -> Store:
    return Store(redis.Redis(port=port), namespace)


def _error(exc: BaseException) -> tuple[str, str, str]:
    return ("error", type(exc).__name__, "".join(traceback.format_exception(exc))[-2000:])


def increment_worker(port: int, namespace: str, ref: str, times: int, barrier: Any, out: Any) -> None:
    """``times`` read-modify-write increments of one label through ``update()``.

    Reports ``("done", increments, conflict_errors)``: ``conflict_errors``
    counts ConflictErrors that escaped ``update()`` (its own retries ran out);
    each such increment is retried here so the total stays exact, and the
    parent decides whether escapes are acceptable.
    """
    try:
        store = _store(port, namespace)

        def bump(c: Container) -> None:
            c.labels[COUNTER_LABEL] = str(int(c.labels.get(COUNTER_LABEL, "0")) + 1)

        barrier.wait(timeout=60)
        escaped = 0
        done = 0
        while done < times:
            try:
                store.containers.update(ref, bump)
            except ConflictError:
                escaped += 1
                continue
            done += 1
        out.put(("done", done, escaped))
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
