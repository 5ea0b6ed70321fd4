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

import argparse
import itertools
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import orjson

from . import (
    Container,
    ExecConfig,
    InvalidStateError,
    Lease,
    NotFoundError,
    StateStoreError,
    Store,
)
from ._engine import RECONNECT_BACKOFF
from .workqueue import ACTIONS, GROUP, Result, WorkQueue

log = logging.getLogger("statestore.daemon")

COUNTER_LABEL = "statestore.actions"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
EXIT_USAGE = 125  # a bad option, as the rest of the CLI (and docker)
_REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


# --- the work queue, for producers and consumers (statestore.workqueue) -------------------------


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


def counter(c: Container) -> int:
    """The container's ``statestore.actions`` label as a number (0 if missing or garbled)."""
    try:
        return int(c.labels.get(COUNTER_LABEL, "0"))
    except ValueError:
        return 0


# --- the simulated runtime ------------------------------------------------------------------------


class RuntimeFailure(Exception):
    """The (simulated) runtime refused or failed an operation."""


class Interrupted(Exception):
    """A runtime call was abandoned because the replica is shutting down."""


class ActionError(Exception):
    """The daemon refuses an action (as Docker's daemon would), e.g. removing a running container."""


@dataclass
class Process:
    """A fake container process: lives only in the replica that started it."""

    pid: int
    started: float
    paused: bool = False


class Runtime:
    """A simulated container runtime.  Its live state is in memory, never in the record.

    Every call sleeps a random latency.  A call for a container named in
    ``hang`` blocks until the replica shuts down; one named in ``fail`` fails.
    A work item's ``hang``/``fail`` arguments do the same for that one call.
    """

    def __init__(self, latency_ms: tuple[float, float] = (5.0, 50.0), hang: Iterable[str] = (),
                 fail: Iterable[str] = (), rng: random.Random | None = None) -> None:
        self.latency_ms = latency_ms
        self.hang_refs = tuple(hang)
        self.fail_refs = tuple(fail)
        self.processes: dict[str, Process] = {}
        self.hanging: dict[str, tuple[str, float]] = {}
        self.interrupt = threading.Event()
        self._rng = rng or random.Random()
        self._pids = itertools.count(self._rng.randint(1000, 30000))
        self._mutex = threading.Lock()

    @staticmethod
    def matches(refs: Sequence[str], c: Container) -> bool:
        for ref in refs:
            bare = ref[1:] if ref.startswith("/") else ref
            if bare in (c.id, c.name) or (re.fullmatch(r"[0-9a-f]{4,64}", bare) and c.id.startswith(bare)):
                return True
        return False

    def _call(self, op: str, c: Container, args: dict[str, Any]) -> None:
        if args.get("fail") or self.matches(self.fail_refs, c):
            raise RuntimeFailure(f"runtime: {op} of {c.name} failed (simulated)")
        hang = args.get("hang")
        forever = self.matches(self.hang_refs, c)
        if forever or (isinstance(hang, int | float) and hang > 0):
            seconds = None if forever else float(hang)  # type: ignore[arg-type]
            log.warning("runtime: %s of %s (%s) hangs %s, holding its lock", op, c.name, c.id[:12],
                        "until shutdown" if seconds is None else f"for {seconds:g}s")
            started = time.monotonic()
            with self._mutex:
                self.hanging[c.id] = (op, started)
            try:
                if self.interrupt.wait(seconds):
                    raise Interrupted(f"runtime: {op} of {c.name} interrupted by shutdown")
            finally:
                with self._mutex:
                    self.hanging.pop(c.id, None)
            log.info("runtime: %s of %s returned after %.1fs", op, c.name, time.monotonic() - started)
        lo, hi = self.latency_ms
        if self.interrupt.wait(self._rng.uniform(lo, hi) / 1000.0):
            raise Interrupted(f"runtime: {op} of {c.name} interrupted by shutdown")

    # the operations ------------------------------------------------------------------------------
    def create(self, c: Container, args: dict[str, Any]) -> None:
        self._call("create", c, args)

    def start(self, c: Container, args: dict[str, Any]) -> int:
        self._call("start", c, args)
        pid = next(self._pids)
        with self._mutex:
            self.processes[c.id] = Process(pid, time.monotonic())
        return pid

    def stop(self, c: Container, args: dict[str, Any], sig: str = "SIGTERM") -> int:
        self._call("kill" if sig == "SIGKILL" else "stop", c, args)
        with self._mutex:
            self.processes.pop(c.id, None)
        return 137 if sig == "SIGKILL" else 0

    def pause(self, c: Container, args: dict[str, Any], paused: bool) -> None:
        self._call("pause" if paused else "unpause", c, args)
        with self._mutex:
            proc = self.processes.get(c.id)
            if proc is not None:
                proc.paused = paused

    def rename(self, c: Container, args: dict[str, Any]) -> None:
        self._call("rename", c, args)

    def exec(self, c: Container, args: dict[str, Any]) -> int:
        self._call("exec", c, args)
        return next(self._pids)

    def wait_exec(self, c: Container) -> int:
        self._call("exec-wait", c, {})
        return 0

    def delete(self, c: Container, args: dict[str, Any]) -> None:
        self._call("delete", c, args)
        self.forget(c.id)

    def forget(self, cid: str) -> None:
        with self._mutex:
            self.processes.pop(cid, None)

    def running(self) -> list[str]:
        with self._mutex:
            return list(self.processes)


# --- the replica ------------------------------------------------------------------------------------


@dataclass
class WorkItem:
    id: str
    action: str
    container: str
    args: dict[str, Any]
    deliveries: int = 1


@dataclass
class Tally:
    """Commit attempts of one action: conflicts retried = attempts - commits."""

    attempts: int = 0
    commits: int = 0

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        self.commits += 1

        def apply(rec: Any) -> None:
            self.attempts += 1
            fn(rec)

        return apply

    @property
    def conflicts(self) -> int:
        return max(0, self.attempts - self.commits)


@dataclass
class Options:
    replica_id: str
    lock_ttl: float = 5.0
    lock_timeout: float = 5.0
    claim_idle: float | None = None
    max_inflight: int = 8
    exit_after: int | None = None
    drain_timeout: float = 10.0
    health_interval: float = 2.0
    parent_pid: int | None = None

    @property
    def claim_idle_s(self) -> float:
        return self.claim_idle if self.claim_idle is not None else 2 * self.lock_ttl + 1.0


@dataclass
class Stats:
    done: int = 0
    ok: int = 0
    failed: int = 0
    conflicts: int = 0
    claimed: int = 0
    interrupted: int = 0
    probes: int = 0
    probe_conflicts: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


class Replica:
    """Reads the work queue and performs actions; see the module doc."""

    def __init__(self, store: Store, opts: Options, runtime: Runtime) -> None:
        self.store = store
        self.opts = opts
        self.runtime = runtime
        self.queue = WorkQueue(store)
        self.stats = Stats()
        self._stopping = threading.Event()
        self._stop_reason = ""
        self._cond = threading.Condition()
        self._inflight: dict[str, WorkItem] = {}
        self._pool = ThreadPoolExecutor(max_workers=opts.max_inflight, thread_name_prefix="action")
        self._touch_every = max(0.05, opts.claim_idle_s / 4)

    # --- control ------------------------------------------------------------------------------
    def stop(self, reason: str = "") -> None:
        """Stop taking work (safe from a signal handler); ``serve`` then drains and returns."""
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def serve(self) -> int:
        o = self.opts
        self.queue.ensure_group()
        # visible in XINFO CONSUMERS at once (XREADGROUP creates a consumer only when it gets an item)
        self.queue.register(o.replica_id)
        log.info("replica %s up: namespace %s, lock TTL %gs, claims items idle > %gs, %d action slots",
                 o.replica_id, self.store.namespace, o.lock_ttl, o.claim_idle_s, o.max_inflight)
        prober: threading.Thread | None = None
        if o.health_interval > 0:
            prober = threading.Thread(target=self._probe_loop, name="health", daemon=True)
            prober.start()
        try:
            self._loop()
        finally:
            self._drain()
            if prober is not None:
                prober.join(5)
        s = self.stats
        log.info("replica %s stopped%s: %d actions (%d ok, %d failed), %d conflicts retried, %d taken over, "
                 "%d interrupted, %d health probes", o.replica_id,
                 f" ({self._stop_reason})" if self._stop_reason else "", s.done, s.ok, s.failed, s.conflicts,
                 s.claimed, s.interrupted, s.probes)
        return 0

    def _loop(self) -> None:
        next_touch = 0.0
        failures = 0
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now >= next_touch:
                    if self.opts.parent_pid is not None and os.getppid() != self.opts.parent_pid:
                        self.stop("the process that started it is gone")
                        break
                    self._touch()
                    self._claim()
                    next_touch = now + self._touch_every
                free = self.opts.max_inflight - len(self._inflight)
                if free <= 0:
                    with self._cond:
                        self._cond.wait(0.1)
                    continue
                block = min(0.5, self._touch_every / 2)
                for eid, fields in self.queue.read(self.opts.replica_id, free, block):
                    self._dispatch(eid, fields, 1)
                failures = 0
            except StateStoreError as exc:
                failures = self._wait_backoff(failures, exc)

    def _wait_backoff(self, failures: int, exc: BaseException) -> int:
        """Wait before reading again after ``failures`` failed reads (plus this one); their count."""
        if failures == 0:
            log.warning("Redis error, retrying: %s", exc)
        self._stopping.wait(RECONNECT_BACKOFF.delay(failures + 1))
        return failures + 1

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except StateStoreError as exc:
            log.warning("Redis error: %s", exc)

    # --- queue housekeeping -----------------------------------------------------------------------
    def _touch(self) -> None:
        """Reset the idle time of our in-flight items, so no replica takes them over."""
        with self._cond:
            ids = list(self._inflight)
        self.queue.touch(self.opts.replica_id, ids)

    def _claim(self) -> None:
        """Take over items idle longer than claim_idle (their replica died)."""
        free = self.opts.max_inflight - len(self._inflight)
        if free <= 0 or self._stopping.is_set():
            return
        for c in self.queue.take_over(self.opts.replica_id, self.opts.claim_idle_s, free):
            if c.id in self._inflight:
                continue
            log.warning("took over item %s (%s %s) from replica %s, idle for %.1fs", c.id, c.fields.get("action"),
                        c.fields.get("container", "")[:12], c.owner, c.idle_ms / 1000)
            self.stats.claimed += 1
            self._dispatch(c.id, c.fields, c.deliveries)

    # --- one item ---------------------------------------------------------------------------------
    def _dispatch(self, eid: str, fields: dict[str, str], deliveries: int) -> None:
        try:
            args = orjson.loads(fields.get("args") or "{}")
            if not isinstance(args, dict):
                raise ValueError("args is not an object")
            item = WorkItem(eid, fields.get("action", ""), fields.get("container", ""), args, deliveries)
            if item.action not in ACTIONS or not item.container:
                raise ValueError(f"unknown action {item.action!r} or no container")
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("malformed work item %s: %s", eid, exc)
            bad = WorkItem(eid, fields.get("action", "?"), fields.get("container", ""), {}, deliveries)
            self._finish(bad, False, f"malformed work item: {exc}", Tally(), "", -1, 0.0)
            return
        with self._cond:
            self._inflight[eid] = item
        self._pool.submit(self._work, item)

    def _work(self, item: WorkItem) -> None:
        started = time.monotonic()
        tally = Tally()
        status, actions = "", -1
        try:
            try:
                status, actions = self._perform(item, tally)
                ok, error = True, ""
            except Interrupted as exc:
                self.stats.interrupted += 1
                log.warning("%s; item %s left for another replica", exc, item.id)
                return
            except (StateStoreError, RuntimeFailure, ActionError) as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must fail the action, not the replica
                log.exception("action %s on %s failed unexpectedly", item.action, item.container[:12])
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self._finish(item, ok, error, tally, status, actions, time.monotonic() - started)
        finally:
            with self._cond:
                self._inflight.pop(item.id, None)
                self._cond.notify_all()

    def _finish(self, item: WorkItem, ok: bool, error: str, tally: Tally, status: str, actions: int,
                seconds: float) -> None:
        """Acknowledge the item, drop it from the queue and append its result: one MULTI/EXEC."""
        result: dict[Any, Any] = {"item": item.id, "replica": self.opts.replica_id, "action": item.action,
                  "container": item.container, "ok": "1" if ok else "0", "error": error[:500],
                  "conflicts": tally.conflicts, "duration_ms": round(seconds * 1000, 3), "status": status,
                  "actions": actions, "deliveries": item.deliveries}
        deadline = time.monotonic() + max(10.0, self.opts.lock_ttl)
        failures = 0
        while True:
            try:
                self.queue.finish(item.id, result)
                break
            except StateStoreError as exc:
                if time.monotonic() >= deadline:
                    log.error("could not record the result of item %s (%s); it stays pending: %s",
                              item.id, item.action, exc)
                    return
                failures += 1
                time.sleep(RECONNECT_BACKOFF.delay(failures))
        s = self.stats
        with self._cond:
            s.done += 1
            s.ok += ok
            s.failed += not ok
            s.conflicts += tally.conflicts
            s.by_action[item.action] = s.by_action.get(item.action, 0) + 1
            done = s.done
        if ok:
            log.debug("%s %s: ok (%s) in %.0f ms", item.action, item.container[:12], status, seconds * 1000)
        else:
            log.debug("%s %s: %s", item.action, item.container[:12], error)
        if self.opts.exit_after is not None and done >= self.opts.exit_after:
            self.stop(f"--exit-after {self.opts.exit_after}")

    # --- the actions ------------------------------------------------------------------------------
    def _perform(self, item: WorkItem, tally: Tally) -> tuple[str, int]:
        if item.action == "create":
            return self._create(item, tally)
        with self.store.lock(item.container, ttl=self.opts.lock_ttl, timeout=self.opts.lock_timeout) as lease:
            handler: Callable[[WorkItem, Lease, Tally], tuple[str, int]] = getattr(self, f"_do_{item.action}")
            return handler(item, lease, tally)

    def _commit(self, cid: str, lease: Lease, fn: Callable[[Container], Any], tally: Tally,
                count: bool = True) -> Container:
        def change(c: Container) -> None:
            fn(c)
            if count:
                c.labels[COUNTER_LABEL] = str(counter(c) + 1)

        return self.store.containers.update(cid, tally.wrap(change), lease=lease)

    @staticmethod
    def _check(c: Container, fn: Callable[[Container], Any]) -> None:
        """Raise InvalidStateError now if ``fn`` is illegal for ``c`` (before the runtime is asked)."""
        fn(c.copy())

    @staticmethod
    def _done(c: Container) -> tuple[str, int]:
        return c.status, counter(c)

    def _create(self, item: WorkItem, tally: Tally) -> tuple[str, int]:
        a = item.args
        labels = dict(a.get("labels") or {})
        labels[COUNTER_LABEL] = "1"
        c = Container.new(str(a.get("image") or "busybox:latest"), name=a.get("name") or None, id=item.container,
                          labels=labels, cmd=a.get("cmd") or None)
        self.runtime.create(c, a)
        tally.commits += 1
        tally.attempts += 1
        return self._done(self.store.containers.create(c))

    def _do_start(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_running(pid=1))
        pid = self.runtime.start(c, item.args)
        try:
            return self._done(self._commit(c.id, lease, lambda x: x.state.set_running(pid=pid), tally))
        except BaseException:
            self.runtime.forget(c.id)
            raise

    def _stop(self, item: WorkItem, lease: Lease, tally: Tally, sig: str) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_stopped(0))
        code = self.runtime.stop(c, item.args, sig)
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally))

    def _do_stop(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        return self._stop(item, lease, tally, "SIGTERM")

    def _do_kill(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        return self._stop(item, lease, tally, "SIGKILL")

    def _do_restart(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        status = c.status
        if status == "running":
            code = self.runtime.stop(c, item.args)
            self._commit(c.id, lease, lambda x: x.state.set_restarting(code), tally, count=False)
        elif status == "paused":
            code = self.runtime.stop(c, item.args)
            self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally, count=False)
        else:  # created, exited, restarting start directly; anything else is refused here
            self._check(c, lambda x: x.state.set_running(pid=1))
        pid = self.runtime.start(c, {})  # the restart timer fired
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_running(pid=pid), tally))

    def _do_pause(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_paused())
        self.runtime.pause(c, item.args, True)
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_paused(), tally))

    def _do_unpause(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_unpaused())
        self.runtime.pause(c, item.args, False)
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_unpaused(), tally))

    def _do_rename(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        new = str(item.args.get("name") or "")
        c = self.store.containers.get(item.container)
        if c.name == new.lstrip("/"):
            raise ActionError(f"container {c.name} already has that name")
        self._check(c, lambda x: setattr(x, "name", new))  # InvalidArgumentError for a bad name
        self.runtime.rename(c, item.args)
        return self._done(self._commit(c.id, lease, lambda x: setattr(x, "name", new), tally))

    def _do_remove(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        if c.state.running and not c.state.removal_in_progress:
            if not item.args.get("force"):
                raise ActionError(f"cannot remove container /{c.name}: container is {c.status}: stop the "
                                  "container before removing or force remove")
            code = self.runtime.stop(c, item.args, "SIGKILL")
            self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally, count=False)

        def mark(x: Container) -> None:
            if not x.state.removal_in_progress:
                x.state.set_removal_in_progress()

        self._check(c, mark)
        self.runtime.delete(c, item.args)  # before the commits: a runtime failure leaves the record as it was
        self._commit(c.id, lease, mark, tally)
        last = self.store.containers.delete(c.id, lease=lease)
        return "removed", counter(last)

    def _do_exec(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        cmd = item.args.get("cmd") or ["sh", "-c", "true"]
        c = self.store.containers.get(item.container)
        x = self.store.execs.create(ExecConfig.new(c.id, [str(a) for a in cmd]), lease=lease)
        pid = self.runtime.exec(c, item.args)
        self.store.execs.update(x.id, tally.wrap(lambda e: e.set_running(pid)), lease=lease)
        code = self.runtime.wait_exec(c)
        self.store.execs.update(x.id, tally.wrap(lambda e: e.set_exited(code)), lease=lease)
        return self._done(self._commit(c.id, lease, lambda _: None, tally))

    # --- health probes ------------------------------------------------------------------------------
    def _probe_loop(self) -> None:
        interval = self.opts.health_interval
        rng = random.Random()
        while not self._stopping.wait(interval * rng.uniform(0.8, 1.2)):
            for cid in self.runtime.running():
                if self._stopping.is_set():
                    return
                self._probe(cid)

    def _probe(self, cid: str) -> None:
        tally = Tally()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def healthy(c: Container) -> None:
            c.state.set_health("healthy", probe={"Start": now, "End": now, "ExitCode": 0, "Output": "ok"})

        try:
            self.store.containers.update(cid, tally.wrap(healthy))
            self.stats.probes += 1
        except (InvalidStateError, NotFoundError):
            self.runtime.forget(cid)  # stopped or removed by another replica: the handle is stale
        except StateStoreError as exc:
            log.debug("health probe of %s failed: %s", cid[:12], exc)
        self.stats.probe_conflicts += tally.conflicts

    # --- shutdown ---------------------------------------------------------------------------------
    def _drain(self) -> None:
        if self._inflight:
            log.info("draining %d action(s) in flight", len(self._inflight))
        self._wait_inflight(self.opts.drain_timeout)
        if self._inflight:
            log.warning("interrupting %d action(s) still running after %gs (hung runtime calls)",
                        len(self._inflight), self.opts.drain_timeout)
            self.runtime.interrupt.set()
            self._wait_inflight(self.opts.lock_timeout + 5.0)
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _wait_inflight(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        next_touch = time.monotonic() + self._touch_every
        while self._inflight and time.monotonic() < deadline:
            with self._cond:
                self._cond.wait(0.05)
            if time.monotonic() >= next_touch:
                self._safe(self._touch)
                next_touch = time.monotonic() + self._touch_every


# --- the command ------------------------------------------------------------------------------------


def parse_latency(text: str) -> tuple[float, float]:
    """``MIN:MAX`` (or one number) in milliseconds."""
    lo_s, sep, hi_s = text.partition(":")
    try:
        lo = float(lo_s)
        hi = float(hi_s) if sep else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX in milliseconds, not {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, not {text!r}")
    return lo, hi


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return v


def _non_negative(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _positive(text)


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (shared with the demo)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run one replica: take work items from the namespace's queue and perform them on a "
                     "simulated runtime, each under the container's lock with fenced commits.")
    p.add_argument("--replica-id", required=True, help="this replica's name (consumer name, lock holder)")
    p.add_argument("--lock-ttl", type=_positive, default=5.0, metavar="S",
                   help="TTL of the container locks this replica takes (default: %(default)s)")
    p.add_argument("--lock-timeout", type=_positive, default=5.0, metavar="S",
                   help="how long an action waits for a busy container's lock (default: %(default)s)")
    p.add_argument("--claim-idle", type=_positive, default=None, metavar="S",
                   help="take over items another replica left idle this long (default: 2 x lock TTL + 1)")
    p.add_argument("--max-inflight", type=positive_int, default=8, metavar="N",
                   help="actions performed at once (default: %(default)s)")
    p.add_argument("--hang", action="append", default=[], metavar="REF",
                   help="the runtime hangs (until shutdown) for this container: name, ID or ID prefix")
    p.add_argument("--fail", action="append", default=[], metavar="REF",
                   help="the runtime fails every call for this container")
    p.add_argument("--latency-ms", type=parse_latency, default=(5.0, 50.0), metavar="MIN:MAX",
                   help="runtime latency per call, uniform in [MIN, MAX] ms (default: 5:50)")
    p.add_argument("--health-interval", type=_non_negative, default=2.0, metavar="S",
                   help="record a health probe of each container this replica runs every S seconds (0: off)")
    p.add_argument("--drain-timeout", type=_positive, default=10.0, metavar="S",
                   help="on SIGTERM, wait this long for actions in flight before interrupting them")
    p.add_argument("--exit-after", type=positive_int, default=None, metavar="N",
                   help="stop (drain and exit 0) after N work items (for tests)")
    p.add_argument("--durability", choices=("fast", "replicated"), default="fast",
                   help="'replicated': every commit and lock acquisition waits for --replicas replica "
                        "acknowledgements (WAIT); see docs/operations.md")
    p.add_argument("--replicas", type=positive_int, default=1, metavar="N",
                   help="replicas that must acknowledge a commit with --durability replicated (default 1)")
    p.add_argument("--durability-timeout", type=_positive, default=1.0, metavar="S",
                   help="how long a replicated commit waits for acknowledgements (default 1 s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every action")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # the demo's: exit with it


class _Formatter(logging.Formatter):
    def __init__(self, replica_id: str) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S")
        self.replica_id = replica_id

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        stamp, _, msg = text.partition(" ")
        level = "" if record.levelno == logging.INFO or record.levelno == logging.DEBUG else \
            f"{record.levelname.lower()}: "
        return f"{stamp} [{self.replica_id}] {level}{msg}"


def _setup_logging(replica_id: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(replica_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("statestore").setLevel(logging.DEBUG if verbose else logging.INFO)


def run(args: argparse.Namespace) -> int:
    replica_id = str(args.replica_id)
    if not _REPLICA_ID_RE.fullmatch(replica_id):
        sys.stderr.write(f"Error: invalid replica id {replica_id!r}: letters, digits and _ . : @ - only\n")
        return EXIT_USAGE
    _setup_logging(replica_id, bool(getattr(args, "verbose", False)))
    opts = Options(replica_id=replica_id, lock_ttl=args.lock_ttl, lock_timeout=args.lock_timeout,
                   claim_idle=args.claim_idle, max_inflight=args.max_inflight, exit_after=args.exit_after,
                   drain_timeout=args.drain_timeout, health_interval=args.health_interval,
                   parent_pid=getattr(args, "parent_pid", None))
    if opts.claim_idle_s <= opts.lock_ttl:
        sys.stderr.write("Error: --claim-idle must be longer than --lock-ttl (a dead replica's lock must have "
                         "expired before its work is taken over)\n")
        return EXIT_USAGE
    url = getattr(args, "redis_url", None) or os.environ.get("STATESTORE_REDIS_URL") or DEFAULT_URL
    runtime = Runtime(args.latency_ms, args.hang, args.fail)
    try:
        store = Store.from_url(url, namespace=args.namespace, replica_id=replica_id,
                               durability=args.durability, replicas=args.replicas,
                               durability_timeout=args.durability_timeout)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    try:
        store.ping()
        replica = Replica(store, opts, runtime)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            replica.stop(signal.Signals(signum).name)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return replica.serve()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"Error: Redis is unavailable: {exc}\n")
        return 1
    finally:
        store.close()


__all__ = [
    "ACTIONS", "COUNTER_LABEL", "GROUP", "Options", "Replica", "Result", "Runtime", "RuntimeFailure",
    "add_arguments", "counter", "ensure_group", "read_results", "run", "submit",
]
