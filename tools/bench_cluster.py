#!/usr/bin/env python3
"""statestore on Redis Cluster: commits per namespace, per shard and in total, against raw redis-py.

Usage::

    .venv/bin/python tools/bench_cluster.py              # full run (about 1.5 minutes)
    .venv/bin/python tools/bench_cluster.py --quick      # reduced run (about 30 s)
    .venv/bin/python tools/bench_cluster.py --markdown   # tables as Markdown
    .venv/bin/python tools/bench_cluster.py --configs 1x1,6x1 --duration 3 --capacity 0

The script starts its own 3-master Redis Cluster (``tests/topology.py``:
private ``redis-server`` processes on free loopback ports, never 6379) and
removes it at exit.  It never talks to any other Redis.

**Throughput.**  For each configuration ``K x P`` it picks K namespaces whose
hash slots are spread round-robin over the 3 masters and starts P OS processes
per namespace.  Each process updates its own share of the namespace's
containers (``store.containers.update``, a label change, through
``Store.from_url("redis+cluster://...")``) and, as the baseline, does the same
work with raw redis-py on the same node: ``WATCH``/``GET``/``MULTI``/``SET``/``EXEC``
of a copy of the same documents under ``benchraw:{<namespace>}:c:<id>`` (the same
hash tag, so the same slot and node).  All processes run the same side at the
same time, for ``--duration`` seconds, released together by a barrier; the sides
alternate, ``--reps`` times each, the order rotating per repetition, so drift and
load bursts hit both alike.  Rates are each side's best repetition; the ratio
(statestore / raw) is the median of the per-repetition ratios, as in
``tools/bench.py``.  Between phases the parent reads ``INFO cpu`` and ``CLUSTER
INFO`` of every node: server CPU per commit on the shards that own a namespace,
and, with one namespace, what the *other* nodes spend on the commits' pub/sub
notifications (classic ``PUBLISH`` is broadcast over the cluster bus to every
node).

**Bus traffic.**  One real notification is published 20,000 times and compared
with the same bytes sent as a command that is not broadcast; the loopback
difference is what every other node receives per statestore commit (Linux only;
other loopback traffic on the machine adds noise).

**Capacity.**  One namespace on one shard is filled with ``--capacity``
containers (10,000 by default, by ``create``), then: memory per container on
that shard (``INFO memory``; the change log's share from ``MEMORY USAGE``), and
latency (p50 / p99) of get by ID and name, a label list matching 10, ``ps -a``
of everything and ``snapshot()``.

On a machine with fewer cores than the cluster has nodes plus client processes,
the totals are bounded by CPU, not by the shards: read the per-commit server
CPU to see what a shard would sustain on cores of its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402  (tools/bench.py: same data and machine header)
    GROUP_SIZE,
    committed_doc,
    format_table,
    make_container,
    print_header,
)

from statestore import Container, Store  # noqa: E402
from statestore._model import META  # noqa: E402
from tests.redisproc import RedisProcess  # noqa: E402
from tests.topology import ClusterGroup  # noqa: E402

Address = tuple[str, int]


# --- the worker (one OS process per namespace share) --------------------------------------------------


def cluster_url(nodes: Sequence[Address]) -> str:
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in nodes)


def rotated(items: Sequence[Any], rep: int) -> list[Any]:
    """The phase order of repetition ``rep``: rotated so that no side always runs first."""
    k = rep % len(items)
    return [*items[k:], *items[:k]]


def drive(targets: list[tuple[str, str, Address]], namespace: str, ids: list[str], reps: int, duration: float,
          barrier: Any, out: Any) -> None:
    """Alternate statestore updates and the raw baseline, ``reps`` times each, phases started by ``barrier``.

    ``targets`` are (suffix, store URL, node address): the cluster (suffix ``""``) and, for
    the comparison, a standalone redis-server (``"-standalone"``); each gives the sides
    ``"ss<suffix>"`` and ``"raw<suffix>"``.  Reports ``("ok", namespace, [(rep, side, ops,
    seconds, cpu_seconds), ...])`` or ``("error", text)``.
    """
    try:
        stores: list[Store] = []
        raws: list[redis.Redis] = []
        sides: list[tuple[str, Any]] = []
        raw_keys = [f"benchraw:{{{namespace}}}:c:{cid}" for cid in ids]
        loads, dumps, m = orjson.loads, orjson.dumps, len(ids)
        for suffix, url, node in targets:
            store = Store.from_url(url, namespace=namespace)
            raw = redis.Redis(host=node[0], port=node[1])
            stores.append(store)
            raws.append(raw)

            def ss_op(i: int, update: Any = store.containers.update) -> None:
                def change(c: Container) -> None:
                    c.config.labels["bench.counter"] = str(i)
                update(ids[i % m], change)

            def raw_op(i: int, raw: redis.Redis = raw) -> None:
                key = raw_keys[i % m]
                with raw.pipeline() as p:
                    p.watch(key)
                    doc = loads(p.get(key))  # type: ignore[arg-type]
                    doc["Config"]["Labels"]["bench.counter"] = str(i)
                    doc[META]["Version"] += 1
                    p.multi()
                    p.set(key, dumps(doc))
                    p.execute()

            sides += [(f"ss{suffix}", ss_op), (f"raw{suffix}", raw_op)]

        for i in range(20):  # warm up connections, script cache, slot routing
            for _, op in sides:
                op(i)
        results: list[tuple[int, str, int, float, float]] = []
        for rep in range(reps):
            for name, op in rotated(sides, rep):
                barrier.wait(timeout=120)
                n = 0
                c0, t0 = time.process_time(), time.perf_counter()
                end = t0 + duration
                while True:
                    for _ in range(20):
                        op(n)
                        n += 1
                    if time.perf_counter() >= end:
                        break
                results.append((rep, name, n, time.perf_counter() - t0, time.process_time() - c0))
        barrier.wait(timeout=120)  # the end of the last phase, for the parent's CPU reading
        out.put(("ok", namespace, results))
        for st in stores:
            st.close()
        for r in raws:
            r.close()
    except BaseException as exc:  # the parent reports it
        out.put(("error", f"{type(exc).__name__}: {exc}"))
        try:
            barrier.abort()
        except Exception:
            pass


# --- the parent ------------------------------------------------------------------------------------------


def node_cpu(cluster: ClusterGroup) -> dict[int, float]:
    """Each node's CPU seconds so far (user + sys), by port."""
    out: dict[int, float] = {}
    for n in cluster.nodes:
        c = n.client()
        try:
            info = c.info("cpu")
        finally:
            c.close()
        out[n.port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


def publish_received(cluster: ClusterGroup) -> int:
    """PUBLISH messages received over the cluster bus, summed over every node."""
    total = 0
    for n in cluster.nodes:
        c = n.client(decode_responses=True)
        try:
            text = c.execute_command("CLUSTER", "INFO")
        finally:
            c.close()
        info = text if isinstance(text, dict) else dict(
            line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        total += int(info.get("cluster_stats_messages_publish_received", 0))
    return total


def pick_namespaces(cluster: ClusterGroup, k: int, tag: str) -> list[tuple[str, int]]:
    """k namespaces, spread round-robin over the masters: (name, owner port)."""
    masters = cluster.masters()
    slot_map: dict[int, int] = {}
    c = masters[0].client()
    try:
        reply = c.execute_command("CLUSTER", "SLOTS")
    finally:
        c.close()
    if isinstance(reply, dict):  # parsed by redis-py: {(start, end): {"primary": (host, port), ...}}
        ranges = [(int(a), int(b), int(v["primary"][1])) for (a, b), v in reply.items()]
    else:
        ranges = [(int(e[0]), int(e[1]), int(e[2][1])) for e in reply]
    for start, end, port in ranges:
        for slot in range(start, end + 1):
            slot_map[slot] = port
    out: list[tuple[str, int]] = []
    i = 0
    for j in range(k):
        want = masters[j % len(masters)].port
        while True:
            ns = f"{tag}-{i}"
            i += 1
            port = slot_map[key_slot(f"ss:{{{ns}}}:log".encode())]
            if port == want:
                out.append((ns, port))
                break
    return out


@dataclass
class Phase:
    rep: int
    side: str
    cpu: dict[int, float] = field(default_factory=dict)   # server CPU seconds in the phase, by port
    published: int = 0                                     # cluster-bus PUBLISH messages received, all nodes


@dataclass
class RunResult:
    k: int
    p: int
    namespaces: list[tuple[str, int]]
    # per namespace: per (rep, side): (ops, seconds, cpu) summed over its processes (seconds: the max)
    per_ns: dict[str, dict[tuple[int, str], tuple[int, float, float]]]
    phases: list[Phase]


def run_config(cluster: ClusterGroup, k: int, p: int, per_process: int, reps: int, duration: float,
               rng: random.Random, standalone: RedisProcess | None = None) -> RunResult:
    """One K x P configuration.  With ``standalone``, the same work also runs against that
    single redis-server, interleaved (sides ``ss-standalone``/``raw-standalone``)."""
    seeds = [n.address for n in cluster.nodes]
    tag = f"bc{os.getpid()}k{k}p{p}"
    namespaces = pick_namespaces(cluster, k, tag)
    servers: list[tuple[str, Any]] = [("", None)] + ([("-standalone", standalone)] if standalone else [])
    shares: list[tuple[str, list[tuple[str, str, Address]], list[str]]] = []
    for ns, port in namespaces:
        made = [make_container(i, ns, rng) for i in range(p * per_process)]
        targets: list[tuple[str, str, Address]] = []
        for suffix, server in servers:
            url = cluster_url(seeds) if server is None else server.url
            node = ("127.0.0.1", port) if server is None else server.address
            targets.append((suffix, url, node))
            with Store.from_url(url, namespace=ns) as store:
                raw = redis.Redis(host=node[0], port=node[1])
                pipe = raw.pipeline(transaction=False)
                for c in made:
                    done = store.containers.create(c.copy())
                    pipe.set(f"benchraw:{{{ns}}}:c:{c.id}", orjson.dumps(committed_doc(done)))
                pipe.execute()
                raw.close()
        ids = [c.id for c in made]
        for j in range(p):
            shares.append((ns, targets, ids[j * per_process:(j + 1) * per_process]))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(len(shares) + 1)
    procs = [ctx.Process(target=drive, args=(targets, ns, ids, reps, duration, barrier, out), daemon=True)
             for ns, targets, ids in shares]
    for proc in procs:
        proc.start()
    phases: list[Phase] = []
    try:
        order = [f"{side}{suffix}" for suffix, _ in servers for side in ("ss", "raw")]
        cpu_before = pub_before = None
        for rep in range(reps):
            for side in rotated(order, rep):
                barrier.wait(timeout=180)
                cpu_now, pub_now = node_cpu(cluster), publish_received(cluster)
                if phases:
                    _close_phase(phases[-1], cpu_before, cpu_now, pub_before, pub_now)
                cpu_before, pub_before = cpu_now, pub_now
                phases.append(Phase(rep, side))
        barrier.wait(timeout=180)
        _close_phase(phases[-1], cpu_before, node_cpu(cluster), pub_before, publish_received(cluster))
        reports = [out.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        out.close()
    errors = [r for r in reports if r[0] == "error"]
    if errors:
        raise RuntimeError(f"a worker failed: {errors}")
    per_ns: dict[str, dict[tuple[int, str], tuple[int, float, float]]] = {ns: {} for ns, _ in namespaces}
    for _, ns, rep_list in reports:
        acc = per_ns[ns]
        for rep, side, n, secs, cpu in rep_list:
            o = acc.get((rep, side), (0, 0.0, 0.0))
            acc[(rep, side)] = (o[0] + n, max(o[1], secs), o[2] + cpu)
    return RunResult(k, p, namespaces, per_ns, phases)


def _close_phase(ph: Phase, before: dict[int, float] | None, after: dict[int, float], pub_before: int | None,
                 pub_after: int) -> None:
    assert before is not None and pub_before is not None
    ph.cpu = {port: after[port] - before[port] for port in after}
    ph.published = pub_after - pub_before


def rate(entry: tuple[int, float, float]) -> float:
    return entry[0] / entry[1]


# --- the pub/sub broadcast on the wire ------------------------------------------------------------------


def loopback_bytes() -> int | None:
    """Bytes received on the loopback interface so far (Linux), or None."""
    try:
        for line in Path("/proc/net/dev").read_text().splitlines():
            if line.strip().startswith("lo:"):
                return int(line.split(":", 1)[1].split()[0])
    except OSError:
        pass
    return None


def bus_bytes(cluster: ClusterGroup, rng: random.Random, n: int = 20_000, trials: int = 3) -> str:
    """Cluster-bus bytes one statestore notification costs each node that does not own the namespace.

    Takes a real notification (subscribe, commit, read it back), then PUBLISHes it ``n`` times
    and, as the control, ``EXISTS`` of a key made of the same bytes (the same client traffic
    and reply, nothing broadcast); the loopback difference, per message and per other node, is
    the bus traffic.
    Other traffic on the machine's loopback adds noise: the median of ``trials`` is shown.
    """
    if loopback_bytes() is None:
        return "not measured (no /proc/net/dev)"
    seeds = [x.address for x in cluster.nodes]
    ns, port = pick_namespaces(cluster, 1, f"bbus{os.getpid()}")[0]
    node = next(x for x in cluster.nodes if x.port == port)
    sub = node.client()
    ps = sub.pubsub()
    try:
        with Store.from_url(cluster_url(seeds), namespace=ns) as store:
            ps.psubscribe(store.keys.channel_pattern())
            c = store.containers.create(make_container(0, ns, rng))
            store.containers.update(c.id, lambda x: x.config.labels.update({"bench.counter": "1"}))
            got = None
            deadline = time.monotonic() + 5
            while got is None and time.monotonic() < deadline:
                m = ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if m is not None and m["type"] == "pmessage":
                    got = (m["channel"], m["data"])
        if got is None:
            return "not measured (no notification arrived)"
        channel, data = got
        pub = node.client()
        try:
            diffs = []
            for _ in range(trials):
                per_side = []
                for cmd in ("PUBLISH", "EXISTS"):
                    pipe = pub.pipeline(transaction=False)
                    b0 = loopback_bytes() or 0
                    for i in range(n):
                        if cmd == "PUBLISH":
                            pipe.execute_command("PUBLISH", channel, data)
                        else:  # the same bytes in, the same ":0" out, nothing broadcast
                            pipe.execute_command("EXISTS", channel + data)
                        if i % 1000 == 999:
                            pipe.execute()
                    pipe.execute()
                    time.sleep(0.3)  # let the bus messages land
                    per_side.append((loopback_bytes() or 0) - b0)
                diffs.append((per_side[0] - per_side[1]) / n / (len(cluster.nodes) - 1))
        finally:
            pub.close()
        return (f"{statistics.median(diffs):,.0f} bytes per notification per other node (channel {len(channel)} "
                f"+ message {len(data)} bytes; trials {', '.join(f'{d:,.0f}' for d in diffs)})")
    finally:
        ps.close()
        sub.close()


# --- capacity ----------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def capacity(cluster: ClusterGroup, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Fill one namespace with ``n`` containers (by ``create``), then memory and read latency."""
    seeds = [n_.address for n_ in cluster.nodes]
    master = cluster.masters()[0]
    ns = next(name for name, port in pick_namespaces(cluster, 3, f"bcap{os.getpid()}") if port == master.port)
    raw = redis.Redis(port=master.port)
    rows: list[tuple[str, str]] = []
    try:
        store = Store.from_url(cluster_url(seeds), namespace=ns)
        raw.execute_command("MEMORY", "PURGE")
        mem0 = int(raw.info("memory")["used_memory"])
        t0 = time.perf_counter()
        create = store.containers.create
        made = [create(make_container(i, "cap", rng)) for i in range(n)]
        fill_s = time.perf_counter() - t0
        sample = made[::max(1, n // 200)]
        del made
        raw.execute_command("MEMORY", "PURGE")
        mem1 = int(raw.info("memory")["used_memory"])
        log_bytes = int(raw.execute_command("MEMORY", "USAGE", store.keys.log, "SAMPLES", "0") or 0)
        log_len = int(raw.xlen(store.keys.log))
        rec_bytes = statistics.mean(len(raw.get(store.keys.container(c.id)) or b"") for c in sample[:100])
        per = (mem1 - mem0) / n
        rows.append(("containers in the namespace", f"{n:,} (by create, {n / fill_s:,.0f}/s from one process)"))
        rows.append(("record size (JSON, mean)", f"{rec_bytes:,.0f} bytes"))
        rows.append(("shard memory, all of it", f"+{(mem1 - mem0) / 2**20:,.1f} MiB ({per:,.0f} bytes per container)"))
        rows.append(("  records, names and indexes", f"{(mem1 - mem0 - log_bytes) / n:,.0f} bytes per container"))
        per_entry = log_bytes / max(1, log_len)
        rows.append(("  change log", f"{log_bytes / 2**20:,.1f} MiB: {log_len:,} entries of ~{per_entry:,.0f} bytes "
                                     f"(each holds the whole record), bounded by changelog_maxlen "
                                     f"{store.changelog_maxlen:,}, not by the containers"))
        ids = [c.id for c in sample]
        names = [c.name for c in sample]
        groups = [f"g{int(nm.rsplit('-', 1)[1]) // GROUP_SIZE:06d}" for nm in names]

        def timed(label: str, calls: int, fn: Any) -> None:
            lat: list[float] = []
            for i in range(calls):
                t = time.perf_counter()
                fn(i)
                lat.append((time.perf_counter() - t) * 1000)
            rows.append((f"{label} p50 / p99",
                         f"{statistics.median(lat):.2f} / {pct(lat, 0.99):.2f} ms ({calls} calls)"))

        timed("get by full ID", 1000, lambda i: store.containers.get(ids[i % len(ids)]))
        timed("get by name", 1000, lambda i: store.containers.get(names[i % len(names)]))
        timed("list label (10 matches)", 500,
              lambda i: store.containers.list({"label": f"bench.group={groups[i % len(groups)]}"}))
        timed(f"ps -a (all {n:,})", 10 if n >= 5000 else 30, lambda i: store.containers.list(all=True))
        timed(f"snapshot() ({n:,})", 10 if n >= 5000 else 30, lambda i: store.snapshot())
        rows += move_slot(cluster, store, ids, batch=1000)
        store.close()
    finally:
        raw.close()
    return rows


def move_slot(cluster: ClusterGroup, store: Store, ids: list[str], batch: int) -> list[tuple[str, str]]:
    """Migrate the namespace's slot to another master (MIGRATE in batches of ``batch`` keys, as
    ``redis-cli --cluster reshard --cluster-pipeline`` does) while a thread keeps reading it:
    how long the move takes and how long the namespace's calls wait."""
    import threading

    slot = key_slot(store.keys.log.encode())
    source = cluster.slot_owner(slot)
    target = next(m for m in cluster.masters() if m is not source)
    stop = threading.Event()
    lat: list[float] = []
    failures: list[str] = []

    def reader() -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            try:
                store.containers.get(ids[i % len(ids)])
            except Exception as exc:  # reported below
                failures.append(type(exc).__name__)
            lat.append(time.perf_counter() - t)
            i += 1

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    try:
        moved = cluster.migrate_slot(slot, target, batch=batch, timeout=120)
    finally:
        took = time.perf_counter() - t0
        time.sleep(0.2)
        stop.set()
        th.join(30)
    router = store.client.connection_pool.router  # type: ignore[attr-defined]
    return [
        ("move the namespace's slot to another master",
         f"{moved:,} keys in {took:.2f} s (MIGRATE batches of {batch}); store followed: "
         f"{'yes' if router.current == target.address else 'NO'}"),
        ("  a reader meanwhile (get by ID)",
         f"longest call {max(lat):.2f} s, {len(failures)} of {len(lat):,} failed"
         + (f" ({', '.join(sorted(set(failures)))})" if failures else "")),
    ]


# --- output ------------------------------------------------------------------------------------------------


def table(head: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> None:
    format_table(head, body, markdown)


def report(res: RunResult, reps: int, markdown: bool) -> dict[str, float]:
    """Print one configuration; return its headline figures."""
    owners = {ns: port for ns, port in res.namespaces}
    print(f"\n{res.k} namespace{'s' if res.k > 1 else ''} x {res.p} process{'es' if res.p > 1 else ''}"
          f" ({len(set(owners.values()))} shard{'s' if len(set(owners.values())) > 1 else ''})")
    body: list[list[str]] = []

    def row(label: str, shard: str, entries: dict[tuple[int, str], tuple[int, float, float]]) -> tuple[float, float]:
        ss = [rate(entries[(r, "ss")]) for r in range(reps)]
        raw = [rate(entries[(r, "raw")]) for r in range(reps)]
        ratios = [a / b for a, b in zip(ss, raw, strict=True)]
        ops_ss = sum(entries[(r, "ss")][0] for r in range(reps))
        ops_raw = sum(entries[(r, "raw")][0] for r in range(reps))
        cpu_ss = sum(entries[(r, "ss")][2] for r in range(reps)) / ops_ss * 1e6
        cpu_raw = sum(entries[(r, "raw")][2] for r in range(reps)) / ops_raw * 1e6
        body.append([label, shard, f"{max(ss):,.0f}", f"{max(raw):,.0f}", f"{statistics.median(ratios):.2f}x",
                     f"{min(ratios):.2f}-{max(ratios):.2f}", f"{cpu_ss:.0f} / {cpu_raw:.0f}"])
        return max(ss), statistics.median(ratios)

    def summed(nss: list[str]) -> dict[tuple[int, str], tuple[int, float, float]]:
        acc: dict[tuple[int, str], tuple[int, float, float]] = {}
        for ns in nss:
            for key, (n, secs, cpu) in res.per_ns[ns].items():
                o = acc.get(key, (0, 0.0, 0.0))
                # rates add up: keep ops/second by summing ops and using the longest phase
                acc[key] = (o[0] + n, max(o[1], secs), o[2] + cpu)
        return acc

    if res.k > 1:
        for ns, port in res.namespaces:
            row(ns, str(port), res.per_ns[ns])
    shards = sorted(set(owners.values()))
    if len(shards) > 1:
        for port in shards:
            nss = [ns for ns, p in res.namespaces if p == port]
            row(f"shard {port} ({len(nss)} ns)", str(port), summed(nss))
    best, ratio = row("total" if res.k > 1 else res.namespaces[0][0], ",".join(map(str, shards)),
                      summed(list(res.per_ns)))
    table(("namespace", "shard", "statestore commits/s", "raw commits/s", "ratio", "per-rep range",
           "client CPU us/op ss / raw"), body, markdown)

    # server CPU per commit on the owning shards, and on the others (the pub/sub broadcast)
    owners_set = set(shards)
    figures = {"total": best, "ratio": ratio}
    for side in ("ss", "raw"):
        phs = [ph for ph in res.phases if ph.side == side]
        ops = sum(sum(res.per_ns[ns][(ph.rep, side)][0] for ns in res.per_ns) for ph in phs)
        own = sum(sum(v for port, v in ph.cpu.items() if port in owners_set) for ph in phs)
        figures[f"server_us_{side}"] = own / ops * 1e6
    line = (f"server CPU per commit on the owning shard(s): statestore {figures['server_us_ss']:.1f} us, "
            f"raw {figures['server_us_raw']:.1f} us")
    others = [port for port in res.phases[0].cpu if port not in owners_set]
    if others:
        ss_ph = [ph for ph in res.phases if ph.side == "ss"]
        raw_ph = [ph for ph in res.phases if ph.side == "raw"]
        ops = sum(sum(res.per_ns[ns][(ph.rep, "ss")][0] for ns in res.per_ns) for ph in ss_ph)
        secs_ss = sum(max(res.per_ns[ns][(ph.rep, "ss")][1] for ns in res.per_ns) for ph in ss_ph)
        secs_raw = sum(max(res.per_ns[ns][(ph.rep, "raw")][1] for ns in res.per_ns) for ph in raw_ph)
        extra = []
        for port in others:
            busy = sum(ph.cpu[port] for ph in ss_ph)
            idle = sum(ph.cpu[port] for ph in raw_ph) / secs_raw * secs_ss  # same node, no notifications
            extra.append((busy - idle) / ops * 1e6)
        msgs = sum(ph.published for ph in ss_ph) / ops
        raw_msgs = sum(ph.published for ph in raw_ph)
        figures["broadcast_us"] = statistics.mean(extra)
        figures["bus_msgs"] = msgs
        line += (f"\npub/sub broadcast: each node that owns none of these namespaces spent "
                 f"{', '.join(f'{e:.1f}' for e in extra)} us CPU per statestore commit (above its CPU in the raw "
                 f"phases, which publish nothing); {msgs:.2f} cluster-bus PUBLISH messages received per commit "
                 f"(raw phases: {raw_msgs})")
    print(line)
    ns0 = res.namespaces[0][0]
    if (0, "ss-standalone") in res.per_ns[ns0]:
        e = res.per_ns[ns0]
        body = []
        for side in ("ss", "raw"):
            on_cluster = [rate(e[(r, side)]) for r in range(reps)]
            alone = [rate(e[(r, f"{side}-standalone")]) for r in range(reps)]
            ratios = [a / b for a, b in zip(on_cluster, alone, strict=True)]
            figures[f"cluster_vs_standalone_{side}"] = statistics.median(ratios)
            body.append(["statestore update" if side == "ss" else "raw WATCH/GET/MULTI/SET/EXEC",
                         f"{max(on_cluster):,.0f}", f"{max(alone):,.0f}", f"{statistics.median(ratios):.2f}x",
                         f"{min(ratios):.2f}-{max(ratios):.2f}"])
        print("the same process, interleaved: the cluster against a standalone redis-server (cluster-enabled no)")
        table(("work", "cluster commits/s", "standalone commits/s", "ratio", "per-rep range"), body, markdown)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter phases, fewer configurations, 2,000 containers")
    ap.add_argument("--configs", help="K x P configurations, e.g. '1x1,3x1,6x1,1x3' (the default)")
    ap.add_argument("--duration", type=float, help="seconds per side per repetition (default 2, quick 1)")
    ap.add_argument("--reps", type=int, help="repetitions per side (default 3, quick 2)")
    ap.add_argument("--containers", type=int, default=50, help="containers each process updates (default 50)")
    ap.add_argument("--capacity", type=int,
                    help="containers in the capacity namespace (default 10000, quick 2000; 0: skip)")
    ap.add_argument("--bus-messages", type=int, default=20_000,
                    help="notifications published per trial of the bus-traffic measurement (default 20000)")
    ap.add_argument("--no-standalone", action="store_true",
                    help="skip the comparison with a standalone redis-server (in the 1x1 configuration)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--seed", type=int, default=20260101)
    args = ap.parse_args(argv)
    configs_s = args.configs or ("1x1,3x1" if args.quick else "1x1,3x1,6x1,1x3")
    configs = [tuple(int(x) for x in c.split("x")) for c in configs_s.split(",")]
    duration = args.duration or (1.0 if args.quick else 2.0)
    reps = args.reps or (2 if args.quick else 3)
    cap = args.capacity if args.capacity is not None else (2000 if args.quick else 10_000)
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    with ClusterGroup(masters=3, replicas_per_master=0) as cluster:
        first = cluster.nodes[0].client()
        try:
            print_header(first, cluster_url(cluster.addresses), True)
        finally:
            first.close()
        print(f"cluster: 3 masters, no replicas, ports {', '.join(str(n.port) for n in cluster.nodes)}; "
              f"{duration:g} s per side per repetition, {reps} repetitions, {args.containers} containers per "
              f"process, record ~2 KB")
        figures: dict[str, dict[str, float]] = {}
        standalone = None if args.no_standalone else RedisProcess().start()
        try:
            for k, p in configs:
                alone = standalone if (k, p) == (1, 1) else None
                res = run_config(cluster, k, p, args.containers, reps, duration, rng, alone)
                figures[f"{k}x{p}"] = report(res, reps, args.markdown)
        finally:
            if standalone is not None:
                standalone.cleanup()
        print(f"\ncluster bus (loopback): {bus_bytes(cluster, rng, n=args.bus_messages)}")
        if cap:
            print(f"\nwhat one namespace holds (one shard, {cap:,} containers)")
            table(("measure", "value"), capacity(cluster, cap, rng), args.markdown)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nops/s: each side's best repetition (a total sums the namespaces' rates within a repetition). "
          f"ratio: statestore/raw, median of the per-repetition ratios.\nload average at the end (1/5/15 min): "
          f"{load} on {os.cpu_count()} CPUs; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
