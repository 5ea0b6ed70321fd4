"""Entry points for the Redis restart tests (``tests/test_restart.py``).

They live at module level in an importable module so the ``spawn`` start
method can find them.  Each child builds its own store with
``Store.from_url(url, namespace=..., unavailable_timeout=...)`` (nothing is
inherited from the parent) and reports through a queue as plain tuples: a
child never raises, it reports the error's class name and text.

The committer appends one JSON line per outcome to its own file, flushed at
once, so the parent can follow its progress and, at the end, check every
acknowledged commit against what Redis holds:

* ``{"op": "create"|"inc", "id", "version", "t0", "t"}``: an acknowledged commit
  (``t0`` and ``t`` are ``time.time()`` just before the call and just after its
  acknowledgement; every row has them);
* ``{"op": "create?"|"inc?", "id", "t"}``: the call raised
  CommitIndeterminateError (the commit may or may not have been applied);
* ``{"op": "unavailable", "id", "t", "error"}``: the call raised
  StoreUnavailableError (the retry budget ran out; nothing was applied).
"""

from __future__ import annotations

import json
import random
import time
import traceback
from collections import Counter
from typing import Any

from statestore import (
    CommitIndeterminateError,
    ConflictError,
    Container,
    Store,
    StoreUnavailableError,
)

COUNTER_LABEL = "counter"
BIG = 1_000_000  # a changelog_maxlen that trims nothing in these tests


def _error(exc: BaseException) -> tuple[str, str, str]:
    return ("error", type(exc).__name__, "".join(traceback.format_exception(exc))[-3000:])


def increment(c: Container) -> None:
    c.labels[COUNTER_LABEL] = str(int(c.labels.get(COUNTER_LABEL, "0")) + 1)


def commit_worker(url: str, namespace: str, worker: int, shared: list[str], budget: float,
                  path: str, stop: Any, out: Any) -> None:
    """Commit until ``stop`` is set: creates of its own containers (about 1 in 8) and
    counter increments (``update``) of the shared containers and its own ones."""
    try:
        rng = random.Random(worker)
        counts: Counter[str] = Counter()
        own: list[str] = []
        with Store.from_url(url, namespace=namespace, unavailable_timeout=budget,
                            changelog_maxlen=BIG) as store, open(path, "a", buffering=1) as f:

            def record(**row: Any) -> None:
                f.write(json.dumps({**row, "t0": t0, "t": time.time()}) + "\n")
                counts[row["op"]] += 1

            n = 0
            while not stop.is_set():
                t0 = time.time()
                if not own or rng.random() < 0.125:
                    c = Container.new("busybox:1.36", name=f"w{worker}-{n}", labels={COUNTER_LABEL: "0"})
                    n += 1
                    try:
                        made = store.containers.create(c)
                    except CommitIndeterminateError:
                        record(op="create?", id=c.id)
                        continue
                    except StoreUnavailableError as exc:
                        record(op="unavailable", id=c.id, error=str(exc))
                        continue
                    record(op="create", id=made.id, version=made.version)
                    own.append(made.id)
                else:
                    target = rng.choice(shared + own)
                    try:
                        made = store.containers.update(target, increment)
                    except CommitIndeterminateError:
                        record(op="inc?", id=target)
                        continue
                    except ConflictError:
                        counts["conflict"] += 1  # nothing was written; not counted anywhere
                        continue
                    except StoreUnavailableError as exc:
                        record(op="unavailable", id=target, error=str(exc))
                        continue
                    record(op="inc", id=made.id, version=made.version)
        out.put(("done", worker, dict(counts)))
    except BaseException as exc:  # report everything; the parent asserts
        out.put(_error(exc))


def watch_worker(url: str, namespace: str, since: str, path: str, end_name: str, out: Any) -> None:
    """Follow the change log from ``since`` (reconnecting across Redis restarts) and write
    each event as one JSON line; stop after the create of container ``end_name``."""
    try:
        with Store.from_url(url, namespace=namespace, unavailable_timeout=10.0, changelog_maxlen=BIG) as store, \
                open(path, "a", buffering=1) as f:
            n = 0
            with store.watch(since=since, block=0.5, reconnect_timeout=60.0) as w:
                for ev in w:
                    f.write(json.dumps([ev.kind, ev.id, ev.version, ev.type, ev.revision, ev.seq, ev.name,
                                        ev.container_id, time.time()]) + "\n")
                    n += 1
                    if ev.type == "create" and ev.name == end_name:
                        break
        out.put(("watched", n))
    except BaseException as exc:
        out.put(_error(exc))
