#!/usr/bin/env python3
"""The Docker Engine API of daemon replicas against the Store and raw redis-py, in one run.

Usage::

    .venv/bin/python tools/bench_api.py              # full run (about 1 minute)
    .venv/bin/python tools/bench_api.py --quick      # reduced run (about 10 s)
    .venv/bin/python tools/bench_api.py --markdown   # the tables as Markdown (docs/performance.md)
    .venv/bin/python tools/bench_api.py --containers 500

It starts its own redis-server (unless ``--redis-url``) and ``statestore daemon
--listen tcp://127.0.0.1:<free port>`` replica subprocesses (``--health-interval 0``),
fills their namespace through ``statestore.Store`` and waits until the API lists
every container, then measures, in the same run:

1. ``docker ps -a``: ``GET /containers/json?all=1`` of N containers (100 by
   default) from one replica over one keep-alive connection, against
   ``store.containers.list(all=True)`` in this process and raw redis-py doing
   the equivalent (``ZRANGE`` of the ID index, ``MGET`` of the records,
   ``orjson.loads``), interleaved in chunks as tools/bench.py does; then the
   same three from 8 client threads (8 connections for the API);
2. ``docker inspect``: ``GET /containers/{id}/json`` against
   ``store.containers.get(id)`` and raw ``GET`` + ``orjson.loads``;
3. the Docker SDK's ``containers.list(all=True)`` of 1,000 containers (one list,
   then one inspect per container) on a namespace of its own, against the
   SDK's ``sparse=True`` (the list alone), ``store.containers.list(all=True)``
   and raw redis-py;
4. the headline: on two replicas started with ``--hang-stop stuck
   --lock-timeout 2``, a container ``stuck`` is started, then stopped in a
   background thread (the simulated runtime hangs inside the stop, holding the
   container's lock); meanwhile ``GET /containers/json?all=1`` and ``GET
   /containers/stuck/json`` go through every replica (p50/p99/max, target p99 <
   100 ms), then ``POST /containers/stuck/pause`` must come back 409 ("is
   busy") after about the lock timeout.

API replies are decoded with ``orjson.loads`` in this process, as the raw side
decodes its records. "replica CPU" is the replica process's CPU time
(``/proc/<pid>/stat``) per request. With ``--redis-url`` it writes only under the
namespaces ``benchapi<pid>-*`` and deletes them at the end.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import orjson
import redis

from statestore import Container, Store
from statestore._keys import KIND_CONTAINER

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import (  # noqa: E402  (tools/bench.py: data, server and table helpers shared by the benchmarks)
    ROOT,
    Side,
    cleanup_namespaces,
    format_table,
    make_container,
    measure,
    paired_ratios,
    print_header,
    server,
    spread,
)

Op = Callable[[int], object]
TARGET_P99_MS = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- replicas and HTTP -----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One ``statestore daemon --listen tcp://127.0.0.1:<port>`` subprocess; its log kept in memory."""

    def __init__(self, url: str, namespace: str, replica_id: str, *extra: str) -> None:
        self.id = replica_id
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "statestore", "--redis-url", url, "--namespace", namespace, "daemon",
             f"--replica-id={replica_id}", "--health-interval=0", "--latency-ms=1:3",
             f"--listen=tcp://127.0.0.1:{self.port}", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.exit_note = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.decode(errors="replace").rstrip())

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any("Engine API listening" in ln for ln in self.log):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.id} did not start:\n" + "\n".join(self.log))
            time.sleep(0.02)

    def cpu(self) -> float:
        """The process's CPU seconds so far (user + system)."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def close(self, grace: float) -> None:
        """SIGTERM; SIGKILL if it has not exited after ``grace`` seconds (noted in ``exit_note``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            t0 = time.perf_counter()
            try:
                self.proc.wait(grace)
                self.exit_note = f"exited {self.proc.returncode} {time.perf_counter() - t0:.1f}s after SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.exit_note = f"still running {grace:g}s after SIGTERM: killed"
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Http:
    """One keep-alive HTTP/1.1 connection to a replica."""

    def __init__(self, port: int, timeout: float | None = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def get_json(self, path: str) -> Any:
        status, body = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return orjson.loads(body)

    def close(self) -> None:
        self.conn.close()


def wait_listed(port: int, n: int, timeout: float = 60.0) -> float:
    """Seconds until the replica's ``GET /containers/json?all=1`` lists ``n`` containers."""
    t0 = time.perf_counter()
    h = Http(port)
    try:
        while len(h.get_json("/containers/json?all=1")) != n:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the API on port {port} does not list {n} containers after {timeout:g}s")
            time.sleep(0.05)
    finally:
        h.close()
    return time.perf_counter() - t0


# --- configuration ---------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    containers: int = 100
    sdk_containers: int = 1000
    ops: int = 300          # requests per side per repetition (ps)
    inspect_ops: int = 1000  # per side per repetition (inspect)
    reps: int = 5
    chunk: int = 50
    threads: int = 8
    conc_ops: int = 800      # requests per side per concurrent repetition, over all threads
    sdk_reps: int = 3
    hang_reads: int = 300    # per replica and per query during the hang
    lock_timeout: float = 2.0

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, sdk_containers=200, ops=40, inspect_ops=100, reps=2, chunk=20, conc_ops=80,
                       sdk_reps=1, hang_reads=30)
        return cls(quick=False)


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class CpuSide(Side):
    """A side whose replica CPU is also counted (the API sides)."""

    replica: Replica | None = None
    replica_cpu: list[float] = field(default_factory=list)


def measure_with_replica(sides: Sequence[CpuSide], n: int, reps: int, chunk: int) -> None:
    """tools/bench.py's ``measure``, with each API side's replica CPU per repetition: the replica
    is idle while the other sides run, so its CPU over the repetition is its side's."""
    for s in sides:
        if s.replica is not None:
            s.replica_cpu.append(s.replica.cpu())
    measure(sides, n, reps, chunk)
    for s in sides:
        if s.replica is not None:
            start = s.replica_cpu.pop()
            s.replica_cpu.append(s.replica.cpu() - start)


def replica_us(s: CpuSide, total_ops: int) -> str:
    if s.replica is None or not s.replica_cpu:
        return "-"
    return f"{sum(s.replica_cpu) / total_ops * 1e6:,.0f}"


def seq_rows(sides: Sequence[CpuSide], n: int, reps: int, chunk: int, store_at: int, raw_at: int,
             labels: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows: ops/s (best repetition), ratio to the Store and to raw (median of per-repetition ratios)."""
    rows: list[tuple[str, ...]] = []
    total = n * reps + min(n, chunk)  # the replica's CPU was counted over the warm-up chunk too
    for s, label in zip(sides, labels, strict=True):
        vs_store = paired_ratios(s, sides[store_at])
        vs_raw = paired_ratios(s, sides[raw_at])
        rows.append((label, f"{s.best_rate(n):,.0f}", f"{statistics.median(vs_store):.2f}x ({spread(vs_store)})",
                     f"{statistics.median(vs_raw):.2f}x", f"{s.cpu_us(n):,.0f}", replica_us(s, total)))
    return rows


@dataclass
class ConcSide:
    name: str
    make_op: Callable[[int], Op]  # thread number -> that thread's op
    replica: Replica | None = None
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    replica_cpu: list[float] = field(default_factory=list)


def measure_concurrent(sides: Sequence[ConcSide], threads: int, total: int, reps: int) -> None:
    """Each repetition runs every side once (order rotated): ``threads`` threads, ``total // threads``
    ops each, started together; the wall time is until the last one ends."""
    per = total // threads
    ops = [[s.make_op(t) for t in range(threads)] for s in sides]

    def run(at: int, n: int) -> tuple[float, float, float]:
        barrier = threading.Barrier(threads + 1)

        def work(t: int) -> None:
            op = ops[at][t]
            barrier.wait()
            for i in range(n):
                op(t * n + i)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in ts:
            th.start()
        rep = sides[at].replica
        r0 = rep.cpu() if rep is not None else 0.0
        c0 = time.process_time()
        t0 = time.perf_counter()
        barrier.wait()
        for th in ts:
            th.join()
        wall = time.perf_counter() - t0
        return wall, time.process_time() - c0, (rep.cpu() - r0) if rep is not None else 0.0

    for at in range(len(sides)):  # warm-up: connections opened, caches filled
        run(at, max(1, per // 10))
    for rep in range(reps):
        gc.collect()
        for j in range(len(sides)):
            at = (j + rep) % len(sides)
            wall, cpu, rcpu = run(at, per)
            sides[at].walls.append(wall)
            sides[at].cpu.append(cpu)
            sides[at].replica_cpu.append(rcpu)


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


# --- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    cfg = Config.make(args.quick)
    if args.containers:
        cfg.containers = args.containers
    if args.reps:
        cfg.reps = args.reps
    rng = random.Random(args.seed)
    pid = os.getpid()
    ns, ns_sdk = f"benchapi{pid}-ps", f"benchapi{pid}-sdk"
    t_start = time.perf_counter()
    grace = 3.0 if cfg.quick else 5.0
    replicas: list[Replica] = []
    with server(args.redis_url) as (url, owned):
        client = redis.Redis.from_url(url)
        store, sdk_store = Store(client, ns), Store(client, ns_sdk)
        try:
            print_header(client, url, owned)
            print(f"cpus: {os.cpu_count()}; load average at the start "
                  + " / ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
            t0 = time.perf_counter()
            base = [make_container(i, "a", rng) for i in range(cfg.containers)]
            for c in base:
                store.containers.create(c.copy())
            sdk_base = [make_container(i, "k", rng) for i in range(cfg.sdk_containers)]
            for c in sdk_base:
                sdk_store.containers.create(c.copy())
            fill = time.perf_counter() - t0
            t0 = time.perf_counter()
            # --drain-timeout 1: at the end, r0's hung stop is interrupted after 1 s of draining
            hang = ("--hang-stop=stuck", f"--lock-timeout={cfg.lock_timeout:g}", "--drain-timeout=1")
            replicas = [Replica(url, ns, "r0", *hang), Replica(url, ns, "r1", *hang), Replica(url, ns_sdk, "k0")]
            for r in replicas:
                r.wait_listening()
            up = time.perf_counter() - t0
            listed = max(wait_listed(replicas[0].port, cfg.containers), wait_listed(replicas[1].port, cfg.containers),
                         wait_listed(replicas[2].port, cfg.sdk_containers))
            print(f"populated {cfg.containers} + {cfg.sdk_containers} containers with containers.create in "
                  f"{fill:.1f}s; 3 replicas listening after {up:.1f}s, listing every container "
                  f"{listed:.2f}s later", flush=True)
            section_ps(cfg, args.markdown, client, store, replicas[0])
            section_inspect(cfg, args.markdown, client, store, replicas[0], base, rng)
            section_sdk(cfg, args.markdown, client, sdk_store, replicas[2])
            all_pass = section_headline(cfg, args.markdown, store, replicas[:2])
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            for r in replicas:
                r.close(grace)
            print("\nreplicas at the end: " + "; ".join(f"{r.id} {r.exit_note}" for r in replicas))
            print(f"load average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs; "
                  f"total {time.perf_counter() - t_start:.0f}s ({'quick' if cfg.quick else 'full'} run: "
                  f"{cfg.reps} repetitions of {cfg.ops} ps and {cfg.inspect_ops} inspect requests per side)")
            return 0 if all_pass or not args.strict else 1
        finally:
            for r in replicas:
                r.close(grace)
            for s in (store, sdk_store):
                if not owned:
                    s.delete_namespace()
                s.close()
            if not owned:
                cleanup_namespaces(client, [f"ss:{{benchapi{pid}-*"])
            client.close()


def raw_list_op(client: redis.Redis, store: Store) -> Callable[[], list[Any]]:
    """Raw redis-py's ``ps -a``: the ID index, one MGET of the records, orjson.loads of each."""
    ikey = store.keys.index(KIND_CONTAINER, "id")
    prefix = store.keys.record_prefix(KIND_CONTAINER)
    zrange, mget, loads = client.zrange, client.mget, orjson.loads

    def op() -> list[Any]:
        ids: Any = zrange(ikey, 0, -1)
        raws: Any = mget([prefix + x.decode() for x in ids])
        return [loads(r) for r in raws if r is not None]
    return op


def section_ps(cfg: Config, markdown: bool, client: redis.Redis, store: Store, rep: Replica) -> None:
    n = cfg.containers
    h = Http(rep.port)
    path = "/containers/json?all=1"
    get_json = h.get_json
    lst = store.containers.list
    raw = raw_list_op(client, store)
    assert len(get_json(path)) == n and len(lst(all=True)) == n and len(raw()) == n

    def api(i: int) -> object:
        return get_json(path)

    def ss(i: int) -> object:
        return lst(all=True)

    def rw(i: int) -> object:
        return raw()

    sides = [CpuSide("api", api, replica=rep), CpuSide("store", ss), CpuSide("raw", rw)]
    measure_with_replica(sides, cfg.ops, cfg.reps, cfg.chunk)
    h.close()
    labels = ["GET /containers/json?all=1, 1 connection", "store.containers.list(all=True)",
              "raw ZRANGE + MGET + loads"]
    rows = seq_rows(sides, cfg.ops, cfg.reps, cfg.chunk, 1, 2, labels)
    print("  ps, sequential: done", flush=True)

    k = cfg.threads
    conns = [Http(rep.port) for _ in range(k)]

    def api_op(t: int) -> Op:
        g = conns[t].get_json
        return lambda i: g(path)

    conc = [ConcSide("api", api_op, replica=rep), ConcSide("store", lambda t: ss), ConcSide("raw", lambda t: rw)]
    measure_concurrent(conc, k, cfg.conc_ops, cfg.reps)
    for c in conns:
        c.close()
    total = cfg.conc_ops // k * k
    st, rw_side = conc[1], conc[2]
    for s, label in zip(conc, [f"GET /containers/json?all=1, {k} threads", f"store list, {k} threads",
                               f"raw, {k} threads"], strict=True):
        vs_store = [b / a for a, b in zip(s.walls, st.walls, strict=True)]
        vs_raw = [b / a for a, b in zip(s.walls, rw_side.walls, strict=True)]
        rcpu = f"{statistics.median(s.replica_cpu) / total * 1e6:,.0f}" if s.replica is not None else "-"
        rows.append((label, f"{total / min(s.walls):,.0f}", f"{statistics.median(vs_store):.2f}x ({spread(vs_store)})",
                     f"{statistics.median(vs_raw):.2f}x", f"{statistics.median(s.cpu) / total * 1e6:,.0f}", rcpu))
    print(f"  ps, {k} threads: done", flush=True)
    print()
    print(f"1. docker ps -a: every container of {n} (about 1.7 KB of JSON each), one replica")
    format_table(("reader", "req/s", "vs Store", "vs raw", "client CPU us/req", "replica CPU us/req"), rows, markdown)
    print(f"req/s: best repetition ({cfg.reps} repetitions of {cfg.ops} requests per side, interleaved in chunks of "
          f"{cfg.chunk}; {cfg.conc_ops // k * k} per side over {k} threads);\nratios: median of the per-repetition "
          "ratios (range in brackets).  client CPU: this process's; replica CPU: the replica process's.")


def section_inspect(cfg: Config, markdown: bool, client: redis.Redis, store: Store, rep: Replica,
                    base: list[Container], rng: random.Random) -> None:
    ids = [c.id for c in base]
    rng.shuffle(ids)
    m = len(ids)
    paths = [f"/containers/{x}/json" for x in ids]
    keys = [store.keys.container(x) for x in ids]
    h = Http(rep.port)
    get_json, sget, rget, loads = h.get_json, store.containers.get, client.get, orjson.loads
    doc = get_json(paths[0])
    assert doc["Id"] == ids[0] and "StateStore" not in doc

    def api(i: int) -> object:
        return get_json(paths[i % m])

    def ss(i: int) -> object:
        return sget(ids[i % m])

    def rw(i: int) -> object:
        return loads(rget(keys[i % m]))  # type: ignore[arg-type]

    sides = [CpuSide("api", api, replica=rep), CpuSide("store", ss), CpuSide("raw", rw)]
    measure_with_replica(sides, cfg.inspect_ops, cfg.reps, cfg.chunk)
    h.close()
    rows = seq_rows(sides, cfg.inspect_ops, cfg.reps, cfg.chunk, 1, 2,
                    ["GET /containers/{id}/json, 1 connection", "store.containers.get(id)", "raw GET + loads"])
    print("  inspect: done", flush=True)
    print()
    print("2. docker inspect by full ID, one replica")
    format_table(("reader", "req/s", "vs Store", "vs raw", "client CPU us/req", "replica CPU us/req"), rows, markdown)


def section_sdk(cfg: Config, markdown: bool, client: redis.Redis, store: Store, rep: Replica) -> None:
    n = cfg.sdk_containers
    sdk = docker.DockerClient(base_url=f"tcp://127.0.0.1:{rep.port}", timeout=120)
    raw = raw_list_op(client, store)
    try:
        runs: list[tuple[str, Callable[[], int]]] = [
            ("SDK containers.list(all=True)", lambda: len(sdk.containers.list(all=True))),
            ("SDK containers.list(all=True, sparse=True)", lambda: len(sdk.containers.list(all=True, sparse=True))),
            ("store.containers.list(all=True)", lambda: len(store.containers.list(all=True))),
            ("raw ZRANGE + MGET + loads", lambda: len(raw())),
        ]
        for _, fn in runs:  # warm-up, and every reader sees all n
            got = fn()
            assert got == n, got
        walls: dict[str, list[float]] = {name: [] for name, _ in runs}
        rcpu: dict[str, list[float]] = {name: [] for name, _ in runs}
        ccpu: dict[str, list[float]] = {name: [] for name, _ in runs}
        for rep_i in range(cfg.sdk_reps):
            for j in range(len(runs)):
                name, fn = runs[(j + rep_i) % len(runs)]
                gc.collect()
                r0, c0 = rep.cpu(), time.process_time()
                t0 = time.perf_counter()
                fn()
                walls[name].append(time.perf_counter() - t0)
                ccpu[name].append(time.process_time() - c0)
                rcpu[name].append(rep.cpu() - r0)
    finally:
        sdk.close()
    store_w = statistics.median(walls["store.containers.list(all=True)"])
    rows = []
    for name, _ in runs:
        w = statistics.median(walls[name])
        requests = {"SDK containers.list(all=True)": f"1 + {n}",
                    "SDK containers.list(all=True, sparse=True)": "1"}.get(name, "-")
        rc = f"{statistics.median(rcpu[name]) * 1e3:,.0f}" if name.startswith("SDK") else "-"
        rows.append((name, requests, f"{w * 1e3:,.1f}", f"{w / n * 1e6:,.0f}", f"{w / store_w:.1f}x",
                     f"{statistics.median(ccpu[name]) * 1e3:,.0f}", rc))
    print("  sdk: done", flush=True)
    print()
    print(f"3. the Docker SDK (docker {docker.__version__}) listing {n:,} containers, one replica "
          f"(median of {cfg.sdk_reps} interleaved runs)")
    format_table(("reader", "HTTP requests", "wall ms", "us per container", "vs Store", "client CPU ms",
                  "replica CPU ms"), rows, markdown)


def section_headline(cfg: Config, markdown: bool, store: Store, reps: list[Replica]) -> bool:
    main = Http(reps[0].port)
    status, body = main.call("POST", "/containers/create?name=stuck", {"Image": "busybox", "Cmd": ["sleep", "1d"]})
    assert status == 201, (status, body)
    stuck_id = orjson.loads(body)["Id"]
    status, body = main.call("POST", "/containers/stuck/start")
    assert status == 204, (status, body)
    main.close()
    result: dict[str, Any] = {}

    def stopper() -> None:
        h = Http(reps[0].port, timeout=None)
        t0 = time.perf_counter()
        try:
            result["reply"] = h.call("POST", "/containers/stuck/stop")
        except (OSError, http.client.HTTPException) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["after"] = time.perf_counter() - t0
        h.close()

    t_stop = time.perf_counter()
    th = threading.Thread(target=stopper, daemon=True)
    th.start()
    deadline = time.monotonic() + 10
    while not any(lk.container_id == stuck_id for lk in store.locks()):
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError(f"the stop of 'stuck' does not hold its lock: {result}")
        time.sleep(0.01)
    while not any("hangs until shutdown" in ln for ln in reps[0].log):
        if time.monotonic() > deadline:
            raise RuntimeError("replica r0 does not report the hung stop")
        time.sleep(0.01)

    queries = [("ps -a", "/containers/json?all=1"), ("inspect stuck", "/containers/stuck/json")]
    conns = {r.id: Http(r.port) for r in reps}
    lat: dict[tuple[str, str], list[float]] = {(r.id, q): [] for r in reps for q, _ in queries}
    wrong = 0
    for i in range(cfg.hang_reads):
        for r in reps:
            for q, path in queries:
                t0 = time.perf_counter()
                doc = conns[r.id].get_json(path)
                lat[(r.id, q)].append(time.perf_counter() - t0)
                if i == 0 or i == cfg.hang_reads - 1:  # the answers say running, lock or no lock
                    if q == "ps -a":
                        mine = [c for c in doc if c["Id"] == stuck_id]
                        wrong += not (len(mine) == 1 and mine[0]["State"] == "running")
                    else:
                        wrong += not (doc["Id"] == stuck_id and doc["State"]["Running"])
    for c in conns.values():
        c.close()
    still_held = th.is_alive() and any(lk.container_id == stuck_id for lk in store.locks())
    held_for = time.perf_counter() - t_stop

    other = reps[1]
    h = Http(other.port)
    t0 = time.perf_counter()
    p_status, p_body = h.call("POST", "/containers/stuck/pause")
    p_after = time.perf_counter() - t0
    h.close()
    try:
        p_msg = str(orjson.loads(p_body).get("message", ""))
    except orjson.JSONDecodeError:
        p_msg = p_body.decode(errors="replace")

    rows = []
    ok = True
    every: list[float] = []
    for (rid, q), xs in lat.items():
        every.extend(xs)
        p99 = percentile(xs, 99) * 1e3
        ok = ok and p99 < TARGET_P99_MS
        rows.append((f"{q} via {rid}", f"{len(xs)}", f"{percentile(xs, 50) * 1e3:.2f}", f"{p99:.2f}",
                     f"{max(xs) * 1e3:.2f}", "PASS" if p99 < TARGET_P99_MS else "MISS"))
    p99_all = percentile(every, 99) * 1e3
    rows.append(("all reads", f"{len(every)}", f"{percentile(every, 50) * 1e3:.2f}", f"{p99_all:.2f}",
                 f"{max(every) * 1e3:.2f}", "PASS" if p99_all < TARGET_P99_MS else "MISS"))
    print("  headline: done", flush=True)
    print()
    print(f"4. the headline: 'stuck' hung in stop on r0, holding its lock; reads meanwhile through every replica "
          f"({len(store.containers.list(all=True))} containers)")
    format_table(("query while the lock is held", "n", "p50 ms", "p99 ms", "max ms",
                  f"p99 < {TARGET_P99_MS:.0f} ms"), rows, markdown)
    print(f"answers: {'every checked answer showed stuck running' if not wrong else f'{wrong} wrong answers'}; "
          f"the stop still hung and held the lock after {held_for:.1f}s: {'yes' if still_held else 'NO'}")
    busy = p_status == 409 and "is busy" in p_msg
    print(f"second action: POST /containers/stuck/pause via {other.id}: {p_status} after {p_after:.2f}s "
          f"(lock timeout {cfg.lock_timeout:g}s): {p_msg}")
    verdict = "PASS" if ok and busy and not wrong and still_held else "MISS"
    print(f"headline: reads p99 {p99_all:.1f} ms (target < {TARGET_P99_MS:.0f} ms on every replica), "
          f"busy container answered 409: {'yes' if busy else 'NO'}: {verdict}")
    return verdict == "PASS"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced run, about 10 s")
    p.add_argument("--containers", type=int, help="containers for ps, inspect and the headline (default 100)")
    p.add_argument("--redis-url", help="use this Redis instead of starting a private redis-server")
    p.add_argument("--reps", type=int, help="repetitions per measurement (default 5, quick 2)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--strict", action="store_true", help="exit 1 if the headline misses its target")
    p.add_argument("--seed", type=int, default=20260101)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
