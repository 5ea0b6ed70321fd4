"""The demo itself: replicas and helpers started, the workload driven, the invariants checked, the report."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import (
    Container,
    NotFoundError,
    StateStoreError,
    Store,
)
from .. import daemon as _daemon
from ..workqueue import WorkQueue
from .apiprobe import ApiProbe
from .processes import Helper, _child_env
from .settings import IMAGES, STUCK_NAME, Settings

# --- the driver's model of the containers --------------------------------------------------------------


@dataclass
class Tracked:
    id: str
    name: str
    status: str = "new"       # new (create pending), created, running, paused, exited, ..., removed, failed
    outstanding: int = 0
    ok: int = 0               # successful actions (results)
    final_counter: int | None = None  # from the remove result, once removed


# What the driver asks for, by the status it last saw: mostly legal actions, some illegal ones on
# purpose (they must come back as failed actions, not break anything).
WORKLOAD: dict[str, list[tuple[str, int]]] = {
    "created": [("start", 80), ("rename", 6), ("remove", 6), ("exec", 4), ("unpause", 4)],
    "running": [("exec", 30), ("stop", 14), ("restart", 14), ("pause", 14), ("kill", 6), ("rename", 6),
                ("remove", 6), ("start", 4)],
    "paused": [("unpause", 70), ("stop", 12), ("kill", 6), ("exec", 6), ("pause", 6)],
    "exited": [("start", 65), ("remove", 20), ("rename", 10), ("stop", 5)],
    "restarting": [("start", 100)],
    "removing": [("remove", 100)],
    "dead": [("remove", 100)],
}


def _pick(rng: random.Random, table: list[tuple[str, int]]) -> str:
    total = sum(w for _, w in table)
    x = rng.uniform(0, total)
    for action, w in table:
        x -= w
        if x <= 0:
            return action
    return table[-1][0]


# --- the demo ----------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class RunState:
    results: int = 0
    ok: int = 0
    failed: int = 0
    conflicts: int = 0
    per_replica: dict[str, Counter[str]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    items: set[str] = field(default_factory=set)
    duplicate_results: int = 0
    submitted: int = 0
    hang_result: _daemon.Result | None = None
    stuck_blocked: list[_daemon.Result] = field(default_factory=list)


class Demo:
    def __init__(self, url: str, settings: Settings, out: IO[str], backend_desc: str = "") -> None:
        self.url = url
        self.s = settings
        self.out = out
        self.namespace = f"demo-{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
        self.store = Store.from_url(url, namespace=self.namespace, replica_id="demo-driver")
        self.rng = random.Random()
        self.tracked: dict[str, Tracked] = {}
        self.state = RunState()
        self._serial = 0
        self.workload_end = time.monotonic() + settings.duration
        self.stuck: Tracked | None = None
        self.hang_item: str | None = None
        self.blocked_items: set[str] = set()
        self.after_hang_item: str | None = None
        self.logdir = Path(tempfile.mkdtemp(prefix="statestore-demo-"))
        self.replicas: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.helpers: list[Helper] = []
        self._logs: list[IO[bytes]] = []
        self.tty = out.isatty()
        self.early_exits: list[str] = []
        self.t0 = time.monotonic()
        self.api_ports: list[int] = []
        self.probe: ApiProbe | None = None
        self.hang_window = (0.0, 0.0)  # monotonic times: the hung stop was sent, its result came

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # --- processes ----------------------------------------------------------------------------------
    def _log(self, name: str) -> IO[bytes]:
        f = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in cleanup()
        self._logs.append(f)
        return f

    def start_processes(self, stuck: Tracked) -> None:
        base = [sys.executable, "-m", "statestore", "--redis-url", self.url, "--namespace", self.namespace]
        s = self.s
        watcher = Helper("watcher", ["--url", self.url, "--namespace", self.namespace,
                                     "--parent-pid", str(os.getpid())], self._log("watcher"))
        self.helpers.append(watcher)
        if s.api:
            self.api_ports = [s.api_port + i for i in range(s.replicas)] if s.api_port else _ports(s.replicas)
        for i in range(1, s.replicas + 1):
            rid = f"r{i}"
            cmd = [*base, "daemon", "--replica-id", rid, "--lock-ttl", str(s.lock_ttl),
                   "--lock-timeout", str(s.lock_timeout), "--max-inflight", str(s.max_inflight),
                   "--latency-ms", s.latency, "--health-interval", str(s.health_interval),
                   "--drain-timeout", str(max(5.0, s.hang_for + 2)), "--parent-pid", str(os.getpid())]
            if self.api_ports:
                cmd.append(f"--listen=tcp://127.0.0.1:{self.api_ports[i - 1]}")
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=self._log(rid), env=_child_env())
            self.replicas.append((rid, proc))
        querier = Helper("querier", ["--url", self.url, "--namespace", self.namespace, "--stuck-id", stuck.id,
                                     "--stuck-name", stuck.name, "--parent-pid", str(os.getpid())],
                         self._log("querier"))
        self.helpers.append(querier)
        self.watcher, self.querier = watcher, querier
        deadline = time.monotonic() + 30
        for h in self.helpers:
            if not h.ready.wait(max(0.1, deadline - time.monotonic())) or h.done.is_set():
                raise RuntimeError(f"the {h.role} process did not start; see {self.logdir / (h.role + '.log')}")
        want = {rid for rid, _ in self.replicas}
        while True:
            if want <= set(WorkQueue(self.store).consumers()):
                break
            for rid, proc in self.replicas:
                if proc.poll() is not None:
                    raise RuntimeError(f"replica {rid} exited at start: {self._tail(rid)}")
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not start within 30 s")
            time.sleep(0.05)
        if self.api_ports:
            self.probe = ApiProbe(self.api_ports, stuck.id)  # started once the container exists
            hosts = [f"tcp://127.0.0.1:{p}" for p in self.api_ports]
            self.say("each replica serves the Docker Engine API; while the demo runs, try:")
            self.say(f"  docker -H {hosts[0]} ps")
            self.say(f"  docker -H {hosts[-1]} inspect {STUCK_NAME}")
            self.say(f"  docker -H {hosts[len(hosts) // 2]} events --filter container={STUCK_NAME}")

    def _tail(self, name: str, n: int = 5) -> str:
        try:
            lines = (self.logdir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop_replicas(self) -> list[tuple[str, int | None]]:
        for _, proc in self.replicas:
            if proc.poll() is None:
                proc.terminate()
        codes: list[tuple[str, int | None]] = []
        deadline = time.monotonic() + max(15.0, self.s.hang_for + 10)
        for rid, proc in self.replicas:
            try:
                codes.append((rid, proc.wait(max(0.1, deadline - time.monotonic()))))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                codes.append((rid, None))
        return codes

    def cleanup(self, keep_logs: bool) -> None:
        for h in self.helpers:
            h.stop()
        for _, proc in self.replicas:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        with contextlib.suppress(StateStoreError, OSError):
            self.store.delete_namespace()
        self.store.close()
        for f in self._logs:
            f.close()
        if not keep_logs:
            shutil.rmtree(self.logdir, ignore_errors=True)

    # --- the workload ---------------------------------------------------------------------------------
    def _name(self) -> str:
        self._serial += 1
        return f"{self.rng.choice(('web', 'api', 'db', 'cache', 'worker', 'job'))}-{self._serial:03d}"

    def _new_container(self, name: str | None = None) -> Tracked:
        c = Container.new("busybox")  # only for a well-formed random ID
        t = Tracked(c.id, name or self._name())
        self.tracked[t.id] = t
        return t

    def _submit(self, t: Tracked, action: str, **args: Any) -> str:
        if action == "create":
            args.setdefault("name", t.name)
            args.setdefault("image", self.rng.choice(IMAGES))
            args.setdefault("labels", {"demo": "yes", "tier": self.rng.choice(("front", "back", "batch"))})
        elif action == "rename":
            args["name"] = self._name()
        elif action == "exec":
            args["cmd"] = self.rng.choice((["sh", "-c", "date"], ["cat", "/etc/hostname"], ["ps", "aux"]))
        elif action == "remove":
            args["force"] = self.rng.random() < 0.7
        if action != "create" and t is not self.stuck and self.rng.random() < 0.01:
            args["fail"] = True  # the runtime fails now and then
        t.outstanding += 1
        self.state.submitted += 1
        return _daemon.submit(self.store, action, t.id, **args)

    def _choose(self) -> tuple[Tracked, str] | None:
        pool = [t for t in self.tracked.values() if t is not self.stuck and t.status not in ("new", "removed",
                                                                                            "failed")]
        if not pool:
            return None
        if self.rng.random() < 0.05:  # a second action on a busy container: they contend for its lock
            busy = [t for t in pool if t.outstanding > 0]
            if busy:
                t = self.rng.choice(busy)
                return t, _pick(self.rng, WORKLOAD.get(t.status, WORKLOAD["running"]))
        idle = [t for t in pool if t.outstanding == 0]
        if not idle:
            return None
        t = self.rng.choice(idle)
        if self.rng.random() < 0.03:
            return t, self.rng.choice(_daemon.ACTIONS[1:])  # anything at all: often illegal
        return t, _pick(self.rng, WORKLOAD.get(t.status, [("start", 1)]))

    def _on_result(self, r: _daemon.Result) -> None:
        st = self.state
        if r.item in st.items:
            st.duplicate_results += 1
        st.items.add(r.item)
        st.results += 1
        per = st.per_replica.setdefault(r.replica, Counter())
        per["done"] += 1
        per["ok" if r.ok else "failed"] += 1
        per["conflicts"] += r.conflicts
        per["taken over"] += r.deliveries > 1
        st.conflicts += r.conflicts
        t = self.tracked.get(r.container)
        if r.item == self.hang_item:
            st.hang_result = r
            self.hang_window = (self.hang_window[0], time.monotonic())
        if r.item in self.blocked_items:
            st.stuck_blocked.append(r)
        if r.ok:
            st.ok += 1
        else:
            st.failed += 1
            st.errors[r.error.split(":", 1)[0] or "?"] += 1
        if t is None:
            return
        t.outstanding = max(0, t.outstanding - 1)
        if r.ok:
            t.ok += 1
            t.status = r.status
            if r.status == "removed":
                t.final_counter = r.actions
                if t is not self.stuck and time.monotonic() < self.workload_end:
                    self._submit(self._new_container(), "create")  # keep the population
        elif r.action == "create" and t.status == "new":
            t.status = "failed"
        else:
            with contextlib.suppress(StateStoreError):
                try:
                    t.status = self.store.containers.get(t.id).status
                except NotFoundError:
                    t.status = "removed"

    def drive(self) -> None:
        s = self.s
        self.t0 = time.monotonic()
        self.workload_end = self.t0 + s.duration
        stuck = self.stuck
        assert stuck is not None
        self._submit(stuck, "create", name=stuck.name, image="nginx:1.27", labels={"demo": "stuck"})
        for _ in range(s.containers):
            self._submit(self._new_container(), "create")
        backlog = s.replicas * s.max_inflight * 2
        last_result = "0-0"
        next_progress = self.t0 + 1.0
        phase = "start-stuck"
        hang_sent_at = 0.0
        drain_deadline: float | None = None
        while True:
            now = time.monotonic()
            for r in _daemon.read_results(self.store, last_result, count=500, block=0.02):
                last_result = r.entry
                self._on_result(r)
            # the hung container's script
            if phase == "start-stuck" and stuck.status == "created":
                if self.probe is not None:
                    self.probe.start()
                self._submit(stuck, "start")
                phase = "wait-hang"
            elif phase == "wait-hang" and stuck.status == "running" and now >= self.t0 + s.hang_at:
                self.hang_item = self._submit(stuck, "stop", hang=s.hang_for)
                hang_sent_at = now
                self.hang_window = (now, float("inf"))
                phase = "hanging"
            elif phase == "hanging" and now >= hang_sent_at + min(0.3, s.hang_for / 4):
                for action in ("exec", "pause"):  # these wait for its lock, and give up
                    self.blocked_items.add(self._submit(stuck, action))
                phase = "blocked"
            elif phase == "blocked" and self.state.hang_result is not None and stuck.outstanding == 0:
                self.after_hang_item = self._submit(stuck, "start")  # it recovers
                phase = "done"
            # the rest of the workload
            if now < self.workload_end:
                outstanding = sum(t.outstanding for t in self.tracked.values())
                while outstanding < backlog:
                    choice = self._choose()
                    if choice is None:
                        break
                    self._submit(*choice)
                    outstanding += 1
            elif drain_deadline is None:
                drain_deadline = now + s.hang_for + s.lock_timeout + 15
            if now >= next_progress:
                self.progress(now)
                next_progress += 1.0
                gone = [rid for rid, proc in self.replicas if proc.poll() is not None]
                if gone and not self.early_exits:
                    self.early_exits = gone
                    self.say(f"replica(s) {', '.join(gone)} exited early: {self._tail(gone[0], 2)}")
                if len(gone) == len(self.replicas):
                    break  # nobody left to do the work
            if drain_deadline is not None:
                answered = self.state.results >= self.state.submitted
                if (answered and phase not in ("hanging", "blocked")) or now > drain_deadline:
                    break
        if self.tty:
            self.out.write("\n")

    def progress(self, now: float) -> None:
        st = self.state
        w = self.watcher.latest
        q = self.querier.latest
        per = " ".join(f"{rid} {st.per_replica.get(rid, Counter())['done']}" for rid, _ in self.replicas)
        p99 = q.get("stuck_p99_ms")
        stuck = f"{STUCK_NAME} read p99 {'-' if p99 is None else f'{p99:.1f} ms'}"
        if q.get("stuck_locked_by"):
            stuck += f", LOCKED by {q['stuck_locked_by']} for {q.get('stuck_locked_for', 0):.1f}s"
        order = "in order" if not w.get("violations") else f"ORDER VIOLATIONS {w['violations']}"
        head = f"[{now - self.t0:4.1f}s] {st.results} actions"
        tail = (f"{st.failed} failed, {st.submitted - st.results} queued | {w.get('events', 0)} events {order} | "
                f"{q.get('queries', 0)} queries, {stuck}")
        line = f"{head} ({per}), {tail}"
        if self.tty:
            width = max(40, shutil.get_terminal_size().columns - 1)
            if len(line) > width:
                line = f"{head}, {tail}"  # without the per-replica counts
            if len(line) > width:
                locked = (f" LOCKED {q['stuck_locked_by']} {q.get('stuck_locked_for', 0):.1f}s,"
                          if q.get("stuck_locked_by") else "")
                line = (f"{head}, {w.get('events', 0)} events | {STUCK_NAME}{locked} p99 "
                        f"{'-' if p99 is None else f'{p99:.1f}ms'}")
            self.out.write("\r" + line[:width].ljust(width))
            self.out.flush()
        else:
            self.say(line)

    # --- the end ----------------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.s
        self.stuck = self._new_container(STUCK_NAME)
        _daemon.ensure_group(self.store)
        seq0 = self.store.log_sequence()
        self.say(f"namespace {self.namespace}: {s.replicas} replicas, {s.containers} containers, "
                 f"{s.duration:g} s of workload; {STUCK_NAME}'s runtime will hang {s.hang_for:g} s in 'stop' "
                 f"at ~{s.hang_at:g} s")
        self.start_processes(self.stuck)
        self.say(f"started: watcher, {', '.join(r for r, _ in self.replicas)} "
                 f"(python -m statestore daemon), querier")
        self.drive()
        if self.probe is not None:
            self.probe.stop()
        codes = self.stop_replicas()
        final_rev = self.store.snapshot().revision
        seq1 = self.store.log_sequence()
        q = self.querier.finish("stop", 10) or {}
        w = self.watcher.finish(f"stop {final_rev}", 20) or {}
        checks = self.verify(codes, q, w, seq1 - seq0)
        self.report(checks, q, w)
        failed = [c for c in checks if not c.ok]
        if failed:
            self.say(f"\nFAILED: {', '.join(c.name for c in failed)}")
            return 1
        self.say("\nall invariants hold")
        return 0

    def verify(self, codes: list[tuple[str, int | None]], q: dict[str, Any], w: dict[str, Any],
               logged: int) -> list[Check]:
        st, s = self.state, self.s
        checks: list[Check] = []
        # lost updates: the counters against the successful results
        snap = self.store.snapshot()
        expected = actual = lost = phantom = 0
        for t in self.tracked.values():
            if t.ok == 0:
                continue
            if t.id in snap.containers:
                have = _daemon.counter(snap.containers[t.id])
            else:
                have = t.final_counter if t.final_counter is not None else 0
            expected += t.ok
            actual += have
            lost += max(0, t.ok - have)
            phantom += max(0, have - t.ok)
        checks.append(Check("lost updates", lost == 0 and phantom == 0,
                            f"{lost} ({st.ok} successful actions, counters sum to {actual}"
                            + (f"; {phantom} counted without a result" if phantom else "") + ")"))
        # every work item answered exactly once, nothing left in the queue
        queue = WorkQueue(self.store)
        left = queue.length()
        n_pending = queue.pending().total
        ok_items = st.results == st.submitted and st.duplicate_results == 0 and left == 0 and n_pending == 0
        checks.append(Check("work items answered", ok_items,
                            f"{len(st.items)} of {st.submitted} once each; queue {left}, pending {n_pending}"
                            + (f", {st.duplicate_results} answered twice" if st.duplicate_results else "")))
        # the watcher
        events, violations = int(w.get("events", -1)), int(w.get("violations", -1))
        checks.append(Check(
            "events in order", bool(w) and violations == 0 and events == logged,
            f"{events} of {logged} delivered to the watcher, seq and per-record versions consecutive"
            if w and violations == 0 else
            f"{events} of {logged} delivered, {violations} violations: {'; '.join(w.get('examples', []))}"
            if w else "the watcher did not report"))
        # locks and replicas
        locks = self.store.locks()
        checks.append(Check("locks left behind", not locks, f"{len(locks)}"))
        clean = sum(code == 0 and rid not in self.early_exits for rid, code in codes)
        checks.append(Check("replicas exited cleanly", clean == len(codes),
                            f"{clean} of {len(codes)} drained and exited 0 when told to"
                            + "".join(f"; {rid}: {code}" for rid, code in codes if code != 0)
                            + (f"; {', '.join(self.early_exits)} exited early" if self.early_exits else "")))
        # fsck (the work queue is the daemons', not the store's: drop it first)
        queue.delete()
        fsck = getattr(self.store, "fsck", None)
        if fsck is None:
            checks.append(Check("fsck", True, "not available"))
        else:
            report = fsck()
            probs = list(getattr(report, "problems", []))
            checked = getattr(report, "checked", {}) or {}
            scope = f"{checked.get('containers', len(snap.containers))} containers, " \
                    f"{checked.get('execs', len(snap.execs))} execs"
            text = "; ".join(str(getattr(p, "line", lambda p=p: str(p))()) for p in probs[:3])
            checks.append(Check("fsck", bool(report.clean), f"clean ({scope})" if report.clean else
                                f"{len(probs)} problem(s): {text}"))
        # the hung container
        hr = st.hang_result
        series = q.get("series", {})
        locked = series.get("stuck_locked", {})
        if hr is None or not hr.ok:
            checks.append(Check("hung container", False, "the hang did not happen: "
                                + ("no result" if hr is None else hr.error)))
        elif not locked.get("n"):
            checks.append(Check("hung container", False, "no query ran while its lock was held"))
        else:
            limit = s.hang_for / 2
            errors = int(q.get("stuck_errors", 0))
            good = locked["max"] < limit * 1000 and not errors
            timed_out = sum(not r.ok and "LockTimeout" in r.error for r in st.stuck_blocked)
            checks.append(Check(
                "hung container", good,
                f"'stop' held its lock {hr.duration_ms / 1000:.1f} s on {hr.replica}; {locked['n']} queries "
                f"meanwhile, max {locked['max']:.1f} ms (limit {limit * 1000:.0f} ms)"
                + (f", {errors} failed" if errors else "")
                + f"; {timed_out} of {len(st.stuck_blocked)} actions behind it timed out after {s.lock_timeout:g} s"))
        if self.probe is not None:
            checks.append(self._api_check())
        return checks

    def _api_check(self) -> Check:
        """Every Engine API read answered, and none waited for the hung stop (as the store's reads)."""
        assert self.probe is not None
        every = self.probe.stats()
        during = self.probe.stats(*self.hang_window)
        limit = self.s.hang_for / 2 * 1000
        if not every["n"] or every["failed"]:
            why = "; ".join(self.probe.errors) or "no request was answered"
            return Check("Engine API", False, f"{every['failed']} of {every['n']} reads failed: {why}")
        if not during["n"]:
            return Check("Engine API", False, "no API read ran during the hang")
        ok = during["max"] < limit
        return Check("Engine API", ok,
                     f"{during['n']} ps/inspect reads through {len(self.api_ports)} replicas during the hang, "
                     f"p99 {during['p99']:.1f} ms (target < 100 ms), max {during['max']:.1f} ms "
                     f"(limit {limit:.0f} ms)")

    def report(self, checks: list[Check], q: dict[str, Any], w: dict[str, Any]) -> None:
        st = self.state
        elapsed = max(0.001, self.s.duration)
        self.say("")
        rows = [["replica", "actions", "ok", "failed", "conflicts retried", "taken over"]]
        total: Counter[str] = Counter()
        for rid, _ in self.replicas:
            per = st.per_replica.get(rid, Counter())
            total.update(per)
            rows.append([rid, str(per["done"]), str(per["ok"]), str(per["failed"]), str(per["conflicts"]),
                         str(per["taken over"])])
        rows.append(["total", str(total["done"]), str(total["ok"]), str(total["failed"]), str(total["conflicts"]),
                     str(total["taken over"])])
        _table(rows, self.out, right=range(1, 6))
        if st.errors:
            why = ", ".join(f"{k} {v}" for k, v in st.errors.most_common())
            self.say(f"failed actions are expected (illegal transitions on purpose, a busy container, simulated "
                     f"runtime failures): {why}")
        self.say(f"throughput: {total['done'] / elapsed:.0f} actions/s")
        series = q.get("series", {})
        self.say("\nquery latency, from another process (reads never wait for a lock):")
        rows = [["query", "n", "p50", "p99", "max"]]
        labels = [("ps", "ps (running containers)"),
                  ("stuck", f"{STUCK_NAME}: inspect by ID, name, prefix"),
                  ("stuck_locked", "  ... while its lock was held"),
                  ("others", "other containers: ID, name, prefix")]
        for key, label in labels:
            d = series.get(key) or {}
            if d.get("n"):
                rows.append([label, str(d["n"]), f"{d['p50']:.2f} ms", f"{d['p99']:.2f} ms", f"{d['max']:.1f} ms"])
            else:
                rows.append([label, "0", "-", "-", "-"])
        if self.probe is not None:
            for label, window in (("Engine API: docker ps / inspect, every replica", (0.0, float("inf"))),
                                  ("  ... while the hung stop held its lock", self.hang_window)):
                d = self.probe.stats(*window)
                rows.append([label, str(d["n"]), f"{d['p50']:.2f} ms" if "p50" in d else "-",
                             f"{d['p99']:.2f} ms" if "p99" in d else "-", f"{d['max']:.1f} ms" if "max" in d else "-"])
        _table(rows, self.out, right=range(1, 5))
        self.say("\nchecks:")
        width = max(len(c.name) for c in checks)
        for c in checks:
            self.say(f"  {'OK  ' if c.ok else 'FAIL'} {c.name.ljust(width)}  {c.detail}")
        notable = self._notable_log_lines()
        if notable:
            self.say("\nfrom the replicas' logs:")
            for line in notable:
                self.say(f"  {line}")

    def _notable_log_lines(self) -> list[str]:
        out: list[str] = []
        for rid, _ in self.replicas:
            try:
                lines = (self.logdir / f"{rid}.log").read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if "hangs" in line or "returned after" in line or "took over" in line or "error" in line.lower():
                    out.append(line)
        return out[:8]


def _ports(n: int, first: int = 2375) -> list[int]:
    """Ports for ``n`` Engine APIs: dockerd's 2375 and the next ones when all are free (easy to type),
    else any free ports."""
    def free(port: int) -> int | None:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return None
            return int(sock.getsockname()[1])

    wanted = [free(first + i) for i in range(n)]
    if all(p is not None for p in wanted):
        return [p for p in wanted if p is not None]
    return [p for p in (free(0) for _ in range(n)) if p is not None]


def _table(rows: Sequence[Sequence[str]], out: IO[str], right: Sequence[int] | range = ()) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths,
                                                                                                   strict=True))]
        out.write("  " + "   ".join(cells).rstrip() + "\n")
    out.flush()
