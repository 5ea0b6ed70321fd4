"""The helper processes' side: the querier (timed ps/inspect) and the watcher (every event in order)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import (
    Container,
    HistoryTrimmedError,
    LogRegressionError,
    NotFoundError,
    StateStoreError,
    Store,
    parse_revision,
)

# --- the helper processes ------------------------------------------------------------------------------


def _stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    xs = sorted(samples)
    n = len(xs)
    return {"n": n, "p50": xs[n // 2] * 1000, "p99": xs[min(n - 1, int(n * 0.99))] * 1000, "max": xs[-1] * 1000}


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _stdin_commands(on_line: Callable[[str], None]) -> None:
    def read() -> None:
        for line in sys.stdin:
            on_line(line.strip())
        on_line("eof")

    threading.Thread(target=read, name="stdin", daemon=True).start()


def _parent_gone(parent: int | None) -> bool:
    return parent is not None and os.getppid() != parent


def querier_main(url: str, namespace: str, stuck_id: str, stuck_name: str, parent: int | None) -> int:
    """Query as fast as possible: ps, the hung container by ID/name/prefix, others likewise."""
    store = Store.from_url(url, namespace=namespace)
    series: dict[str, list[float]] = {"ps": [], "stuck": [], "stuck_locked": [], "others": []}
    stop = threading.Event()
    _stdin_commands(lambda line: stop.set() if line in ("stop", "eof") else None)
    errors = stuck_errors = not_found = 0
    others: list[Container] = []
    rng = random.Random()
    locked_by: str | None = None
    locked_for = 0.0
    next_lock_check = next_report = 0.0
    _emit({"ready": True})

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        t = time.perf_counter()
        value = fn()
        return time.perf_counter() - t, value

    while not stop.is_set() and not _parent_gone(parent):
        now = time.monotonic()
        try:
            if now >= next_lock_check:  # an operator's view (statestore locks); it does not wait either
                holder = next((li for li in store.locks() if li.container_id == stuck_id), None)
                locked_by = holder.replica if holder else None
                locked_for = holder.age if holder else 0.0
                next_lock_check = now + 0.2
            dt, listed = timed(store.containers.list)
            series["ps"].append(dt)
            others = [c for c in listed if c.id != stuck_id] or others
        except StateStoreError:
            errors += 1
        lookups = [("stuck", ref) for ref in (stuck_id, stuck_name, stuck_id[:10])]
        if others:
            c = rng.choice(others)
            lookups += [("others", ref) for ref in (c.id, c.name, c.id[:10])]
        rng.shuffle(lookups)  # neither kind always goes first (right after the heavier ps)
        for kind, ref in lookups:
            try:
                dt, _ = timed(functools.partial(store.containers.get, ref))
                series[kind].append(dt)
                if kind == "stuck" and locked_by:
                    series["stuck_locked"].append(dt)
            except NotFoundError:
                if kind == "others":
                    not_found += 1  # renamed or removed meanwhile: an answer all the same
                elif series["stuck"]:  # not created yet is fine; gone later is not
                    stuck_errors += 1
            except StateStoreError:
                if kind == "stuck":
                    stuck_errors += 1
                else:
                    errors += 1
        if now >= next_report:
            recent = series["stuck"][-300:]
            _emit({"queries": sum(len(v) for k, v in series.items() if k != "stuck_locked"),
                   "stuck_p99_ms": _stats(recent).get("p99"), "stuck_locked_by": locked_by,
                   "stuck_locked_for": locked_for})
            next_report = now + 0.5
        time.sleep(0.001)
    _emit({"final": True, "series": {k: _stats(v) for k, v in series.items()}, "errors": errors,
           "stuck_errors": stuck_errors, "not_found": not_found})
    store.close()
    return 0


def watcher_main(url: str, namespace: str, parent: int | None) -> int:
    """Follow the change log from now; check seq and per-record versions; report."""
    store = Store.from_url(url, namespace=namespace)
    watch = store.watch(block=0.2)
    watch.poll(0)  # fixes the starting position before the demo starts writing
    target: list[str] = []
    stop = threading.Event()

    def on_line(line: str) -> None:
        if line.startswith("stop "):
            target.append(line.split(" ", 1)[1])
        stop.set()

    _stdin_commands(on_line)
    versions: dict[tuple[str, str], int] = {}
    deleted: set[tuple[str, str]] = set()
    events = violations = 0
    examples: list[str] = []
    last_seq: int | None = None
    next_report = 0.0

    def bad(text: str) -> None:
        nonlocal violations
        violations += 1
        if len(examples) < 5:
            examples.append(text)

    _emit({"ready": True, "revision": watch.revision})
    stop_at: float | None = None
    while not _parent_gone(parent):
        try:
            batch = watch.poll(0.2)
        except (HistoryTrimmedError, LogRegressionError) as exc:
            bad(f"{type(exc).__name__}: {exc}")
            break
        except StateStoreError as exc:
            bad(f"watch failed: {exc}")
            break
        for ev in batch:
            events += 1
            if last_seq is not None and ev.seq != last_seq + 1:
                bad(f"seq {ev.seq} after {last_seq}")
            last_seq = ev.seq
            key = (ev.kind, ev.id)
            prev = versions.get(key)
            if key in deleted:
                bad(f"{ev.kind} {ev.id[:12]}: {ev.type} after its delete")
            elif ev.type == "create":
                if prev is not None or ev.version != 1:
                    bad(f"{ev.kind} {ev.id[:12]}: create at version {ev.version} (seen {prev})")
            elif ev.type == "update":
                if prev is not None and ev.version != prev + 1:
                    bad(f"{ev.kind} {ev.id[:12]}: version {ev.version} after {prev}")
            elif ev.type == "delete":
                if prev is not None and ev.version != prev:
                    bad(f"{ev.kind} {ev.id[:12]}: deleted at version {ev.version}, last seen {prev}")
                deleted.add(key)
            versions[key] = ev.version
        now = time.monotonic()
        if now >= next_report:
            _emit({"events": events, "violations": violations})
            next_report = now + 0.5
        if stop.is_set():
            stop_at = stop_at or now + 15
            if not target or now > stop_at:
                break
            if watch.revision is not None and parse_revision(watch.revision) >= parse_revision(target[0]):
                break
    caught_up = bool(target) and watch.revision is not None and \
        parse_revision(watch.revision) >= parse_revision(target[0])
    if target and not caught_up:
        bad(f"did not reach revision {target[0]} (stopped at {watch.revision})")
    _emit({"final": True, "events": events, "violations": violations, "examples": examples,
           "revision": watch.revision})
    watch.close()
    store.close()
    return 0


def _role_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m statestore.demo")
    p.add_argument("role", choices=("querier", "watcher"))
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--stuck-id", default="")
    p.add_argument("--stuck-name", default="")
    p.add_argument("--parent-pid", type=int, default=None)
    a = p.parse_args(argv)
    try:
        if a.role == "querier":
            return querier_main(a.url, a.namespace, a.stuck_id, a.stuck_name, a.parent_pid)
        return watcher_main(a.url, a.namespace, a.parent_pid)
    except KeyboardInterrupt:
        return 130
