#!/usr/bin/env python3
"""Change-notification benchmarks: commit-to-watcher latency and the local View.

Usage::

    .venv/bin/python tools/bench_watch.py              # full run (~3 min)
    .venv/bin/python tools/bench_watch.py --quick      # reduced run (~30 s)
    .venv/bin/python tools/bench_watch.py --markdown   # table as Markdown
    .venv/bin/python tools/bench_watch.py --redis-url redis://127.0.0.1:7000/0   # use an existing server

Without ``--redis-url`` it starts its own redis-server on a free loopback port
(never 6379) and removes it at the end.  With ``--redis-url`` it writes only
under namespaces named ``benchwatch<pid>-*`` and deletes them when it is done.

1. **commit -> watcher latency.**  The main process commits label updates at a
   steady, paced rate (default 1,000/s) for 10 s (quick: 3 s), after a short
   unmeasured warm-up, and records ``time.monotonic_ns()`` right after each
   ``containers.update`` returns, keyed by the commit's revision
   (``record.revision``).  A watcher process iterates ``store.watch(since=...)``
   and records ``monotonic_ns`` when each event is yielded; a plain redis-py
   pub/sub process (``PSUBSCRIBE ss:{ns}:ev:*``, the baseline) records it when
   each message arrives and takes the revision from its payload.  Both consumers
   run at the same time and see the same commits (``--apart`` runs them one
   after the other instead).  CLOCK_MONOTONIC is system-wide on Linux, so the
   processes' timestamps compare.  Latency = consumer time - commit return
   time; it can be slightly negative, because Redis sends the EXEC reply and
   the notifications in the same event-loop turn and the writer still has
   Python work to do before ``update`` returns.
2. **View reads.**  ``store.view()`` (a watch-fed in-memory copy) against the
   store, on 1,000 realistic containers: get by full ID (target: View at least
   20x faster), get by name and a selective label list (info).  Both sides run
   interleaved in chunks inside every repetition; the ratio is the median of
   the per-repetition ratios, as in tools/bench.py.  With a private server on
   2+ CPUs this runs twice, with this process and redis-server pinned to the
   same vCPU and to two different ones: on a small VM the Store's loopback
   round trip costs about twice as much split as shared, and an unpinned run
   lands on either at random (``--no-pin``: one unpinned run).  Also ``view.list()`` of
   all 1,000 running containers (target: at least 5x).
3. **The View at scale.**  100,000 containers (``--scale``; quick: 20,000), bulk-written
   like tools/bench.py: the View's memory (tracemalloc of ``store.view()``) against
   the JSON bytes it holds (target: at most 3x); a selective list (10 of 100,000), get
   by name and by 12-character ID prefix against the store (targets: 20x); and the
   follow rate: two writer processes commit unpaced label updates while the View
   follows, lag = applied - committed (target: p99 under 10 ms; the rate is stated).
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402  (tools/bench.py: same data, method and machine info)
    GROUP_SIZE,
    Side,
    bulk_write,
    cleanup_namespaces,
    committed_doc,
    make_container,
    measure,
    paired_ratios,
    print_header,
    server,
    spread,
)

from statestore import Container, Store, View  # noqa: E402

WARMUP_S = 0.5


# --- consumers (child processes) ----------------------------------------------------------


def _watcher(url: str, ns: str, since: str, stop_id: str, ready: Any, out: Any) -> None:
    """Iterate ``store.watch(since)`` until the stop container's event; report arrival times."""
    store = Store(redis.Redis.from_url(url), namespace=ns)
    w = store.watch(since=since)
    w.poll(0)  # looks ``since`` up and does one non-blocking read: the watch is live
    got: list[tuple[str, int]] = []
    now = time.monotonic_ns
    ready.set()
    c0 = time.process_time()
    for ev in w:
        t = now()
        if ev.id == stop_id:
            break
        got.append((ev.revision, t))
    cpu = time.process_time() - c0
    w.close()
    store.close()
    out.put(("watch", got, cpu))


def _subscriber(url: str, ns: str, stop_id: str, ready: Any, out: Any) -> None:
    """A plain redis-py pub/sub subscriber on every event channel of the namespace."""
    client = redis.Redis.from_url(url)
    p = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    p.psubscribe(f"ss:{{{ns}}}:ev:*")
    while p.get_message(timeout=1.0) is None and not p.subscribed:  # wait for the confirmation
        pass
    got: list[tuple[str, int]] = []
    now = time.monotonic_ns
    loads = orjson.loads
    ready.set()
    c0 = time.process_time()
    for msg in p.listen():
        t = now()
        if msg["type"] != "pmessage":
            continue
        d = loads(msg["data"])
        if d["id"] == stop_id:
            break
        got.append((d["revision"], t))
    cpu = time.process_time() - c0
    p.close()
    client.close()
    out.put(("pubsub", got, cpu))


# --- the writer -----------------------------------------------------------------------------


@dataclass
class WriteRun:
    done: dict[str, int]        # revision -> monotonic_ns right after update() returned (measured part)
    started: dict[str, int]     # revision -> monotonic_ns right before update() was called
    call_us: list[float]        # update() wall time per measured commit
    rate: float                 # achieved commits/s over the measured part
    late: int                   # commits that started more than 1 ms behind schedule


def write_paced(store: Store, ids: Sequence[str], rate: float, duration: float) -> WriteRun:
    """Commit label updates at ``rate``/s: WARMUP_S unmeasured, then ``duration`` measured."""
    update = store.containers.update
    now = time.monotonic_ns
    period = int(1e9 / rate)
    n_warm = int(WARMUP_S * rate)
    n = n_warm + int(duration * rate)
    done: dict[str, int] = {}
    started: dict[str, int] = {}
    call_us: list[float] = []
    late = 0
    m = len(ids)
    t0 = now()
    t_measure = t0
    for k in range(n):
        due = t0 + k * period
        ahead = due - now()
        if ahead > 0:
            time.sleep(ahead / 1e9)
        elif ahead < -1_000_000 and k >= n_warm:
            late += 1
        if k == n_warm:
            t_measure = now()

        def change(c: Container, k: int = k) -> None:
            c.config.labels["bench.counter"] = str(k)

        ts = now()
        rec = update(ids[k % m], change)
        te = now()
        if k >= n_warm:
            assert rec.revision is not None
            done[rec.revision] = te
            started[rec.revision] = ts
            call_us.append((te - ts) / 1e3)
    elapsed = (now() - t_measure) / 1e9
    return WriteRun(done, started, call_us, len(done) / elapsed, late)


# --- statistics -----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


@dataclass
class Latency:
    name: str
    ms: list[float]           # consumer time - commit return time, per measured commit received
    from_call_ms: list[float]  # consumer time - commit call time
    expected: int
    received: int
    cpu_us_per_event: float
    in_order: bool

    def p(self, q: float) -> float:
        return pct(self.ms, q)


def latencies(name: str, got: list[tuple[str, int]], run: WriteRun, cpu: float) -> Latency:
    seen = [(rev, t) for rev, t in got if rev in run.done]
    revs = [rev for rev, _ in seen]
    in_order = len(set(revs)) == len(revs) and revs == sorted(revs, key=lambda r: tuple(map(int, r.split("-"))))
    return Latency(
        name,
        [(t - run.done[rev]) / 1e6 for rev, t in seen],
        [(t - run.started[rev]) / 1e6 for rev, t in seen],
        len(run.done), len(set(revs)), cpu / max(1, len(got)) * 1e6, in_order,
    )


def run_latency(url: str, ns: str, store: Store, ids: list[str], stop_id: str, rate: float, duration: float,
                consumers: Sequence[str]) -> tuple[WriteRun, dict[str, Latency]]:
    """One paced write run with the given consumers ("watch", "pubsub") listening."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    since = store.containers.update(ids[0], lambda c: None).revision  # the position: "now"
    assert since is not None
    procs = []
    for kind in consumers:
        ready = ctx.Event()
        if kind == "watch":
            p = ctx.Process(target=_watcher, args=(url, ns, since, stop_id, ready, out), daemon=True)
        else:
            p = ctx.Process(target=_subscriber, args=(url, ns, stop_id, ready, out), daemon=True)
        p.start()
        if not ready.wait(60):
            raise RuntimeError(f"the {kind} process did not start")
        procs.append(p)
    gc.collect()
    run = write_paced(store, ids, rate, duration)
    store.containers.update(stop_id, lambda c: None)  # tells every consumer to stop and report
    results: dict[str, Latency] = {}
    for _ in procs:
        kind, got, cpu = out.get(timeout=120)
        results[kind] = latencies(kind, got, run, cpu)
    for p in procs:
        p.join(30)
    return run, results


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: str
    baseline: str
    ratio: str
    target: str
    status: str
    note: str = ""


def lat_rows(w: Latency, b: Latency | None) -> list[Row]:
    rows = []
    for label, q, limit in (("p50", 0.50, 1.0), ("p99", 0.99, 5.0), ("max", 1.0, None)):
        v = w.p(q)
        base = f"{b.p(q):.3f}" if b is not None else "-"
        if limit is None:
            rows.append(Row(f"commit -> watcher {label} (ms)", f"{v:.3f}", base, "", "-", "info"))
        else:
            rows.append(Row(f"commit -> watcher {label} (ms)", f"{v:.3f}", base, "", f"< {limit:g} ms",
                            "PASS" if v < limit else "MISS"))
    return rows


def view_row(label: str, view: Side, store: Side, n: int, target: float | None) -> Row:
    pr = paired_ratios(view, store)
    ratio = statistics.median(pr)
    if target is None:
        tgt, status = "-", "info"
    else:
        tgt, status = f">= {target:g}x", "PASS" if ratio >= target else "MISS"
    return Row(label, f"{view.best_rate(n):,.0f}", f"{store.best_rate(n):,.0f}", f"{ratio:.2f}x", tgt, status,
               f"per-rep {spread(pr)}; CPU {view.cpu_us(n):.1f} / {store.cpu_us(n):.1f} us/op")


Pin = tuple[int, int, int]  # (redis-server pid, CPU for this process, CPU for redis-server)


def cpu_placements(redis_pid: int | None) -> list[tuple[str, Pin | None]]:
    """Where to run the View/Store comparison.

    On a small VM a loopback round trip costs about twice as much when the
    client and redis-server run on different vCPUs (a cross-CPU wake-up) as
    when they share one, and the scheduler picks either from run to run, so an
    unpinned Store get is bimodal.  With a private server and 2+ CPUs both
    placements are measured, pinned; otherwise one unpinned run.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if redis_pid is None or len(cpus) < 2:
        return [("unpinned", None)]
    a, b = cpus[0], cpus[1]
    return [("same CPU", (redis_pid, a, a)), ("split CPUs", (redis_pid, a, b))]


@contextmanager
def pinned(pin: Pin | None) -> Iterator[None]:
    """Pin this thread and redis-server's main thread to CPUs for the block; restore after."""
    if pin is None:
        yield
        return
    redis_pid, mine, theirs = pin
    old_mine, old_theirs = os.sched_getaffinity(0), os.sched_getaffinity(redis_pid)
    os.sched_setaffinity(0, {mine})
    os.sched_setaffinity(redis_pid, {theirs})
    try:
        time.sleep(0.05)
        yield
    finally:
        os.sched_setaffinity(0, old_mine)
        os.sched_setaffinity(redis_pid, old_theirs)


Op = Callable[[int], object]


def paired_gets(view: View, store: Store, refs: list[str]) -> tuple[Op, Op]:
    """``view.get`` and ``store.containers.get`` of the i-th reference (cycling), as a measured pair."""
    m = len(refs)
    vget, sget = view.get, store.containers.get

    def v_get(i: int) -> object:
        return vget(refs[i % m])

    def s_get(i: int) -> object:
        return sget(refs[i % m])

    return v_get, s_get


def paired_group_lists(view: View, store: Store, groups: list[str]) -> tuple[Op, Op]:
    """``list`` of one ``bench.group`` label (GROUP_SIZE containers, checked) from the view and the store."""
    ng = len(groups)

    def of(list_fn: Callable[..., Any]) -> Op:
        def run(i: int) -> object:
            out = list_fn(filters={"label": f"bench.group={groups[i % ng]}"})
            assert len(out) == GROUP_SIZE
            return out
        return run

    return of(view.list), of(store.containers.list)


def view_rows(view: View, store: Store, base: list[Container], rng: random.Random, reps: int, get_ops: int,
              list_ops: int, where: str) -> list[Row]:
    """View against Store: get by full ID (target >= 20x), get by name and a selective list (info)."""
    order = list(range(len(base)))
    rng.shuffle(order)
    vids = [base[j].id for j in order]
    names = [base[j].name for j in order]
    groups = [f"g{g:06d}" for g in range(len(base) // GROUP_SIZE)]
    rng.shuffle(groups)
    m = len(vids)
    vlist, slist = view.list, store.containers.list
    v_id, s_id = paired_gets(view, store, vids)
    v_name, s_name = paired_gets(view, store, names)
    v_list, s_list = paired_group_lists(view, store, groups)

    def v_running(i: int) -> object:
        out = vlist()
        assert len(out) == m
        return out

    def s_running(i: int) -> object:
        out = slist()
        assert len(out) == m
        return out

    assert v_id(0) == s_id(0) and v_name(1) == s_name(1) and v_list(2) == s_list(2)
    suffix = f", {where}" if where else ""
    rows = []
    for label, vop, sop, n, chunk, target in (
        (f"View get by full ID (ops/s{suffix})", v_id, s_id, get_ops, 100, 20.0),
        (f"View get by name (ops/s{suffix})", v_name, s_name, get_ops, 100, None),
        (f"View list label, 10 of 1k (ops/s{suffix})", v_list, s_list, list_ops, 5, None),
        (f"View list running, all 1k (ops/s{suffix})", v_running, s_running, max(4, list_ops // 5), 1, 5.0),
    ):
        vs, ss = Side("view", vop), Side("store", sop)
        measure([vs, ss], n, reps, chunk)
        rows.append(view_row(label, vs, ss, n, target))
    return rows


# --- the View at scale: 100,000 containers ---------------------------------------------------------


def _fast_writer(url: str, ns: str, ids: list[str], start_at: float, duration: float, out: Any) -> None:
    """Commit label updates as fast as one process can, from ``start_at`` for ``duration`` s."""
    store = Store(redis.Redis.from_url(url), namespace=ns)
    done: list[tuple[str, int]] = []
    now = time.monotonic_ns
    while time.monotonic() < start_at:
        time.sleep(0.001)
    end, k = start_at + duration, 0
    while time.monotonic() < end:
        k += 1
        rec = store.containers.update(ids[k % len(ids)], lambda c, k=k: c.labels.__setitem__("bench.tick", str(k)))
        done.append((rec.revision or "", now()))
    store.close()
    out.put(done)


def follow_rows(url: str, ns: str, view: View, ids: list[str], duration: float) -> list[Row]:
    """Two writer processes commit unpaced; the View (this process) follows; lag = applied - committed."""
    applied: dict[str, int] = {}
    inner = view._apply
    now = time.monotonic_ns

    def timed(ev: Any) -> None:
        inner(ev)
        applied[ev.revision] = now()

    view._apply = timed  # type: ignore[method-assign]  # the bench's probe: when each event is applied
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    start_at = time.monotonic() + 2.0  # the writers' start-up (spawn, imports) is not measured
    half = len(ids) // 2
    procs = [ctx.Process(target=_fast_writer, args=(url, ns, part, start_at, duration, q))
             for part in (ids[:half], ids[half:])]
    for p in procs:
        p.start()
    done: list[tuple[str, int]] = []
    for _ in procs:
        done += q.get(timeout=duration + 120)
    for p in procs:
        p.join()
    last = max((r for r, _ in done), key=lambda r: tuple(map(int, r.split("-"))))
    caught_up = view.wait_for(last, timeout=30)
    view._apply = inner  # type: ignore[method-assign]
    lags = [(applied[r] - t) / 1e6 for r, t in done if r in applied]
    rate = len(done) / duration
    p99 = pct(lags, 0.99) if lags else float("inf")
    ok = caught_up and len(lags) == len(done) and p99 < 10.0
    return [
        Row("View follow: commits/s reached by 2 writer processes", f"{rate:,.0f}", "-", "", "-", "info",
            f"unpaced label updates for {duration:g} s into the {len(view):,}-container namespace"),
        Row("View follow: commit -> applied p50 / p99 (ms)",
            f"{pct(lags, 0.5):.3f} / {p99:.3f}" if lags else "-", "-", "", "p99 < 10 ms",
            "PASS" if ok else "MISS", f"{len(lags):,} of {len(done):,} commits applied"),
    ]


def scale_rows(url: str, client: redis.Redis, ns: str, n: int, rng: random.Random, reps: int, get_ops: int,
               list_ops: int, follow_s: float) -> list[Row]:
    """A namespace of ``n`` realistic containers (bulk-written like tools/bench.py): the View's memory
    against the JSON it holds, selective lists and lookups against the Store, and the follow rate."""
    store = Store(client, ns)
    t0 = time.perf_counter()
    # only the IDs and names are kept: 100,000 parsed records (millions of dicts the cyclic
    # garbage collector walks) in this process would charge the View's follow for collector
    # pauses that a replica holding only its View does not have (docs/performance.md)
    ids: list[str] = []
    names: list[str] = []
    for start in range(0, n, 10_000):
        chunk = [make_container(i, "x", rng) for i in range(start, min(n, start + 10_000))]
        bulk_write(client, store.keys, [committed_doc(c) for c in chunk], store.changelog_maxlen)
        ids += (c.id for c in chunk)
        names += (c.name for c in chunk)
        del chunk
    print(f"  populated {n:,} containers in {time.perf_counter() - t0:.1f}s", flush=True)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    view = store.view()
    build_s = time.perf_counter() - t0
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rows_json = sum(len(rec.raw) for rec in view._containers.rows.values())
    mem_ratio = held / rows_json
    rows = [Row(f"View memory, {n:,} containers (MB)", f"{held / 1e6:,.0f}", f"{rows_json / 1e6:,.0f}",
                f"{mem_ratio:.2f}x", "<= 3x", "PASS" if mem_ratio <= 3.0 else "MISS",
                f"baseline = the records' JSON bytes; tracemalloc of store.view() (built in {build_s:.1f}s)")]
    print(f"  View of {n:,}: built", flush=True)
    try:
        order = list(range(n))
        rng.shuffle(order)
        names = [names[j] for j in order]
        prefixes = [ids[j][:12] for j in order]
        groups = [f"g{g:06d}" for g in range(n // GROUP_SIZE)]
        rng.shuffle(groups)
        v_list, s_list = paired_group_lists(view, store, groups)
        v_name, s_name = paired_gets(view, store, names)
        v_prefix, s_prefix = paired_gets(view, store, prefixes)

        assert v_list(0) == s_list(0) and v_name(1) == s_name(1) and v_prefix(2) == s_prefix(2)
        k = f"{n // 1000:,}k"
        for label, vop, sop, ops, chunk in (
            (f"View list label, 10 of {k} (ops/s)", v_list, s_list, list_ops * 10, 10),
            (f"View get by name, {k} (ops/s)", v_name, s_name, get_ops, 100),
            (f"View get by 12-char prefix, {k} (ops/s)", v_prefix, s_prefix, get_ops, 100),
        ):
            vs, ss = Side("view", vop), Side("store", sop)
            measure([vs, ss], ops, reps, chunk)
            rows.append(view_row(label, vs, ss, ops, 20.0))
        print(f"  View vs store at {k}: done", flush=True)
        gc.collect()
        rows += follow_rows(url, ns, view, ids[:2000], follow_s)
        print("  View follow: done", flush=True)
    finally:
        view.close()
        store.close()
    return rows


def print_table(rows: list[Row], markdown: bool) -> None:
    head = ("measure", "statestore", "baseline", "ratio", "target", "result", "notes")
    body = [(r.measure, r.value, r.baseline, r.ratio or "-", r.target, r.status, r.note) for r in rows]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if k in (0, 6) else "---:" for k in range(len(head))) + "|")
        for c in body:
            print("| " + " | ".join(f"**{x}**" if x == "MISS" else x for x in c) + " |")
        return
    widths = [max(len(x[k]) for x in (head, *body)) for k in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if k in (0, 6) else f"{{:>{w}}}" for k, w in enumerate(widths))
    print(fmt.format(*head))
    print("  ".join("-" * w for w in widths))
    for c in body:
        print(fmt.format(*c).rstrip())


def run(args: argparse.Namespace) -> int:
    duration = args.duration or (3.0 if args.quick else 10.0)
    reps = 3 if args.quick else 7
    get_ops = 2000 if args.quick else 5000
    list_ops = 20 if args.quick else 50
    rng = random.Random(args.seed)
    pid = os.getpid()
    ns_lat, ns_view = f"benchwatch{pid}-w", f"benchwatch{pid}-v"
    t_start = time.perf_counter()

    with server(args.redis_url) as (url, owned):
        client = redis.Redis.from_url(url)
        try:
            print_header(client, url, owned)
            rows: list[Row] = []

            # 1. commit -> watcher latency ---------------------------------------------------
            store = Store(client, ns_lat)
            ids = [store.containers.create(make_container(i, "w", rng)).id for i in range(100)]
            stop_id = store.containers.create(make_container(999, "stop", rng)).id
            if args.apart:
                run_w, res_w = run_latency(url, ns_lat, store, ids, stop_id, args.rate, duration, ["watch"])
                run_p, res_p = run_latency(url, ns_lat, store, ids, stop_id, args.rate, duration, ["pubsub"])
                runs = [run_w, run_p]
                watch, pubsub = res_w["watch"], res_p["pubsub"]
            else:
                run_b, res = run_latency(url, ns_lat, store, ids, stop_id, args.rate, duration, ["watch", "pubsub"])
                runs = [run_b]
                watch, pubsub = res["watch"], res["pubsub"]
            print("  commit -> watcher latency: done", flush=True)
            rows += lat_rows(watch, pubsub)
            rows.append(Row("commit call -> watcher p50 / p99 (ms)",
                            f"{pct(watch.from_call_ms, 0.5):.3f} / {pct(watch.from_call_ms, 0.99):.3f}",
                            f"{pct(pubsub.from_call_ms, 0.5):.3f} / {pct(pubsub.from_call_ms, 0.99):.3f}",
                            "", "-", "info", "from the start of update() instead of its return"))
            call_us = [x for r in runs for x in r.call_us]
            rows.append(Row("update() call p50 / p99 (ms)", f"{pct(call_us, 0.5) / 1e3:.3f} / "
                            f"{pct(call_us, 0.99) / 1e3:.3f}", "-", "", "-", "info",
                            "the writer's own commit time, under the paced load"))
            rows.append(Row("events received / commits", f"{watch.received:,} / {watch.expected:,}",
                            f"{pubsub.received:,} / {pubsub.expected:,}", "", "all, in order",
                            "PASS" if watch.received == watch.expected and watch.in_order else "MISS",
                            f"paced at {args.rate:,.0f}/s, achieved "
                            + " / ".join(f"{r.rate:,.0f}/s" for r in runs)
                            + f"; {sum(r.late for r in runs)} commits started > 1 ms late"))
            rows.append(Row("consumer CPU per event (us)", f"{watch.cpu_us_per_event:.0f}",
                            f"{pubsub.cpu_us_per_event:.0f}", "", "-", "info",
                            "watcher: XREAD + decode + Event; pub/sub: parse + loads"))
            store.close()

            # 2. View vs store ---------------------------------------------------------------
            vstore = Store(client, ns_view)
            base = [vstore.containers.create(make_container(i, "v", rng)) for i in range(1000)]
            view = vstore.view()
            try:
                last = base[-1].revision
                assert last is not None and view.wait_for(last, timeout=30) and len(view) == len(base)
                placements = cpu_placements(
                    int(client.info("server")["process_id"]) if owned and not args.no_pin else None)
                for where, pin in placements:
                    with pinned(pin):
                        rows += view_rows(view, vstore, base, rng, reps, get_ops, list_ops,
                                          where if len(placements) > 1 else "")
                    print(f"  View vs store ({where}): done", flush=True)
            finally:
                view.close()
                vstore.close()

            # 3. the View at scale ----------------------------------------------------------
            rows += scale_rows(url, client, f"benchwatch{pid}-x", args.scale, rng, reps, get_ops, list_ops,
                               duration)

            print()
            print_table(rows, args.markdown)
            print("\nlatency rows: statestore = store.watch() consumer, baseline = redis-py PSUBSCRIBE consumer, "
                  f"{'measured in separate runs' if args.apart else 'both listening to the same commits'}.\n"
                  "View rows: statestore = View, baseline = Store; ops/s = each side's best repetition, "
                  "ratio = View/Store, median of\nper-repetition ratios (interleaved chunks); CPU = this "
                  "process's CPU per op, View / Store.\n"
                  + ("'same CPU' / 'split CPUs': this process and redis-server pinned to one vCPU / to two; "
                     "a loopback round trip\ncosts about twice as much split, so the Store side (not the View) "
                     "changes between the two." if len(placements) > 1 else
                     "View rows unpinned (existing server, --no-pin or 1 CPU): the Store side's round trip "
                     "depends on where the\nscheduler put this process and redis-server."))
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"\nload average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs")
            print(f"total {time.perf_counter() - t_start:.0f}s ({'quick' if args.quick else 'full'} run: "
                  f"{duration:g} s of paced commits per run, {reps} repetitions of {get_ops} gets / "
                  f"{list_ops} lists)")
            return 0 if all(r.status != "MISS" for r in rows) or not args.strict else 1
        finally:
            if not owned:
                cleanup_namespaces(client, [f"ss:{{benchwatch{pid}-*"])
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 s of commits and fewer reads (~12 s in all)")
    p.add_argument("--redis-url", help="use this Redis instead of starting a private redis-server")
    p.add_argument("--rate", type=float, default=1000.0, help="commits per second (default 1000)")
    p.add_argument("--duration", type=float, help="seconds of measured commits (default 10, quick 3)")
    p.add_argument("--apart", action="store_true",
                   help="measure the watcher and the pub/sub baseline in separate runs, not side by side")
    p.add_argument("--no-pin", action="store_true",
                   help="measure View vs Store once, unpinned, instead of pinned to the same and to split CPUs")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--scale", type=int,
                   help="containers in the View-at-scale namespace (default 100,000; quick 20,000)")
    args = p.parse_args(argv)
    if args.scale is None:
        args.scale = 20_000 if args.quick else 100_000
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
