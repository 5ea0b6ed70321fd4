"""One replica: reads the work queue, performs actions under container locks, probes health (see the package doc)."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import (
    Container,
    ExecConfig,
    InvalidStateError,
    Lease,
    NotFoundError,
    StateStoreError,
    Store,
)
from .._edge import RECONNECT_BACKOFF
from ..workqueue import ACTIONS, WorkQueue
from .runtime import ActionError, Interrupted, Runtime, RuntimeFailure

log = logging.getLogger("statestore.daemon")

COUNTER_LABEL = "statestore.actions"


def counter(c: Container) -> int:
    """The container's ``statestore.actions`` label as a number (0 if missing or garbled)."""
    try:
        return int(c.labels.get(COUNTER_LABEL, "0"))
    except ValueError:
        return 0


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
                count: bool = True, action: str | None = None) -> Container:
        """A fenced update; ``action``: the Docker event actions it stands for (docker events)."""
        def change(c: Container) -> None:
            fn(c)
            if count:
                c.labels[COUNTER_LABEL] = str(counter(c) + 1)

        return self.store.containers.update(cid, tally.wrap(change), lease=lease, action=action)

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
            return self._done(self._commit(c.id, lease, lambda x: x.state.set_running(pid=pid), tally,
                                           action="start"))
        except BaseException:
            self.runtime.forget(c.id)
            raise

    def _stop(self, item: WorkItem, lease: Lease, tally: Tally, sig: str) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_stopped(0))
        code = self.runtime.stop(c, item.args, sig)
        words = "kill=9,die" if sig == "SIGKILL" else "kill=15,die,stop"
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally, action=words))

    def _do_stop(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        return self._stop(item, lease, tally, "SIGTERM")

    def _do_kill(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        return self._stop(item, lease, tally, "SIGKILL")

    def _do_restart(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        status = c.status
        if status == "running":
            code = self.runtime.stop(c, item.args)
            self._commit(c.id, lease, lambda x: x.state.set_restarting(code), tally, count=False,
                         action="kill=15,die,stop")
        elif status == "paused":
            code = self.runtime.stop(c, item.args)
            self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally, count=False,
                         action="kill=15,die,stop")
        else:  # created, exited, restarting start directly; anything else is refused here
            self._check(c, lambda x: x.state.set_running(pid=1))
        pid = self.runtime.start(c, {})  # the restart timer fired
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_running(pid=pid), tally,
                                       action="start,restart"))

    def _do_pause(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_paused())
        self.runtime.pause(c, item.args, True)
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_paused(), tally, action="pause"))

    def _do_unpause(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        self._check(c, lambda x: x.state.set_unpaused())
        self.runtime.pause(c, item.args, False)
        return self._done(self._commit(c.id, lease, lambda x: x.state.set_unpaused(), tally, action="unpause"))

    def _do_rename(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        new = str(item.args.get("name") or "")
        c = self.store.containers.get(item.container)
        if c.name == new.lstrip("/"):
            raise ActionError(f"container {c.name} already has that name")
        self._check(c, lambda x: setattr(x, "name", new))  # InvalidArgumentError for a bad name
        self.runtime.rename(c, item.args)
        return self._done(self._commit(c.id, lease, lambda x: setattr(x, "name", new), tally, action="rename"))

    def _do_remove(self, item: WorkItem, lease: Lease, tally: Tally) -> tuple[str, int]:
        c = self.store.containers.get(item.container)
        if c.state.running and not c.state.removal_in_progress:
            if not item.args.get("force"):
                raise ActionError(f"cannot remove container /{c.name}: container is {c.status}: stop the "
                                  "container before removing or force remove")
            code = self.runtime.stop(c, item.args, "SIGKILL")
            self._commit(c.id, lease, lambda x: x.state.set_stopped(code), tally, count=False,
                         action="kill=9,die")

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
        self.store.execs.update(x.id, tally.wrap(lambda e: e.set_running(pid)), lease=lease, action="exec_start")
        code = self.runtime.wait_exec(c)
        self.store.execs.update(x.id, tally.wrap(lambda e: e.set_exited(code)), lease=lease, action="exec_die")
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
