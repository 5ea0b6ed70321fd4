"""One replica of a container engine's state manager (``statestore daemon``), with a simulated runtime.

Several replicas share one namespace.  They keep no container state of their
own: the records in Redis are the state, and every replica can serve every
container.  What a replica does keep in memory is its runtime's *live* state
(fake process handles and pids, timers, operations in progress), which a real
engine would get from its runtime and never stores in the record.

Theory of operation
-------------------
**Work distribution.**  Work items (``create``, ``start``, ``stop``,
``restart``, ``pause``, ``unpause``, ``kill``, ``rename``, ``remove``,
``exec``) go on the namespace's work queue, a Redis Stream
(``store.keys.work_queue``, ``ss:{ns}:work``; :func:`submit` adds one).  Every
replica reads it through one consumer group, ``replicas``, with ``XREADGROUP``
(consumer name = replica id), so each item is delivered to exactly one
replica, and stays in that replica's pending entries until it is acknowledged.
A replica reads only as many items as it has free action slots
(``--max-inflight``), so a busy replica leaves work to the others.  When an
action is finished, one ``MULTI``/``EXEC`` acknowledges the item, deletes it
from the queue and appends a result entry to ``store.keys.work_results``
(``ss:{ns}:results``: replica, action, container, ok or error, commit
conflicts retried, duration, resulting status).

**Actions.**  Every action on an existing container runs under
``store.lock(container, ttl=--lock-ttl, timeout=--lock-timeout)``: the
replica reads the record, checks that the transition is legal (an illegal one
is an ``InvalidStateError``, reported as a failed action), asks the runtime to
do it (random latency; it may hang or fail), then commits with the State
lifecycle methods through ``update(..., lease=lease)``, a fenced commit: if
the lease was lost meanwhile, nothing is written (``LockLostError``).  Each
successful action also increments the container's ``statestore.actions``
label in its final commit, so the count of successful results and the
counters can be compared (the demo's "lost updates" check).  A container that
is being acted on for longer than ``--lock-timeout`` (a hung runtime call)
makes further actions on *it* fail with ``LockTimeoutError``; nothing else
waits, and reads never look at locks.

**A replica that dies.**  While an item is in flight, its replica resets the
item's idle time every ``claim_idle / 4`` seconds (``XCLAIM`` to itself,
``JUSTID``).  The items of a replica that died are no longer touched; once one
has been idle for ``--claim-idle`` seconds (by default twice the lock TTL plus
one second: longer than the lock TTL, so the dead replica's lock has expired
by then), the next replica with a free slot takes it over with ``XAUTOCLAIM``
and performs it.  Delivery is therefore at least once: a replica that died
after its commit but before its acknowledgement had its action applied, and
the second attempt sees the new state (a repeated transition is then usually
refused as illegal).

**Stopping.**  SIGTERM or SIGINT: stop reading work, finish the actions in
flight (``--drain-timeout``), then interrupt runtime calls that still hang:
those actions are abandoned without a commit, their locks released and their
items left pending for another replica.  Exit status 0.

**Health probes.**  Every ``--health-interval`` seconds the replica records a
health result for each container whose process it started, with a plain
optimistic ``update`` (no lock: a field update needs none).  A probe that
commits between an action's read and its commit makes that commit retry,
which is what the results' conflict counts show.  A probe that finds the
record no longer running drops the stale process handle.
"""

from __future__ import annotations

from typing import Any

from .. import Store
from ..workqueue import ACTIONS, GROUP, Result, WorkQueue
from .main import DEFAULT_URL, EXIT_USAGE, add_arguments, parse_latency, positive_int, run
from .replica import COUNTER_LABEL, Options, Replica, Stats, counter
from .runtime import Runtime, RuntimeFailure

# --- the work queue's shortcuts (statestore.workqueue) --------------------------------------------


def ensure_group(store: Store) -> None:
    """Create the work queue and its consumer group unless they exist (``WorkQueue.ensure_group``)."""
    WorkQueue(store).ensure_group()


def submit(store: Store, action: str, container: str, **args: Any) -> str:
    """Put one work item on the namespace's queue; its ID (``WorkQueue.submit``)."""
    return WorkQueue(store).submit(action, container, **args)


def read_results(store: Store, after: str = "0-0", count: int = 1000,
                 block: float | None = None) -> list[Result]:
    """Results appended after the result entry ``after`` (``WorkQueue.results``)."""
    return WorkQueue(store).results(after, count, block)


__all__ = [
    "ACTIONS", "COUNTER_LABEL", "DEFAULT_URL", "EXIT_USAGE", "GROUP", "Options", "Replica", "Result", "Runtime",
    "RuntimeFailure", "Stats", "WorkQueue", "add_arguments", "counter", "ensure_group", "parse_latency",
    "positive_int", "read_results", "run", "submit",
]
