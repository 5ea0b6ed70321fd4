#!/usr/bin/env python3
"""Both faces against raw redis-py, and asyncio concurrency, on the same Redis, in one run.

Usage::

    .venv/bin/python tools/bench_aio.py              # full run (about 2 minutes)
    .venv/bin/python tools/bench_aio.py --quick      # reduced run (about 20 s)
    .venv/bin/python tools/bench_aio.py --profile    # also cProfile the 64-coroutine updates
    .venv/bin/python tools/bench_aio.py --redis-url redis://127.0.0.1:7000/0

Two tables:

1. one call at a time: get by ID, by name and by prefix, create, update and lock
   acquire+release, on four sides interleaved in chunks (the sync face, raw
   redis-py, the async face ``statestore.aio``, raw ``redis.asyncio``), each
   face's ratio against its own raw client (median of the per-repetition
   ratios, as tools/bench.py computes them);
2. commits per second updating distinct containers: the sync face from one
   thread, the async face from 1 and from 64 coroutines of one process, and raw
   ``redis.asyncio`` from 64 coroutines (the client's ceiling), with this
   process's CPU per commit and the server's, which show where the time goes.

Without ``--redis-url`` it starts its own redis-server on a free loopback port
and removes it at the end; with it, it writes only under ``bench<pid>-*`` and
``benchraw<pid>:*`` and deletes them when it is done.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

from statestore import Container, Store, aio
from statestore._model import META

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import (  # noqa: E402  (tools/bench.py: data, server and table helpers shared by the benchmarks)
    ROOT,
    cleanup_namespaces,
    committed_doc,
    format_table,
    make_container,
    print_header,
    server,
    spread,
)

AnyOp = Callable[[int], Any]  # a plain call or a coroutine function of the op number


@dataclass
class Side:
    name: str
    op: AnyOp
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def best_rate(self, n: int) -> float:
        return n / min(self.times)

    def cpu_us(self, n: int) -> float:
        return statistics.median(self.cpu) / n * 1e6


async def measure(sides: Sequence[Side], n: int, reps: int, chunk: int,
                  setup: Callable[[int], Awaitable[None]] | None = None) -> None:
    """tools/bench.py's interleaving, for sides that may be coroutine functions: ``n`` ops of
    every side per repetition, ``chunk`` at a time, the order rotated every chunk, one untimed
    chunk of each side first."""
    is_async = [inspect.iscoroutinefunction(s.op) for s in sides]

    async def run(at: int, start: int, stop: int) -> None:
        op = sides[at].op
        if is_async[at]:
            for i in range(start, stop):
                await op(i)
        else:
            for i in range(start, stop):
                op(i)

    if setup is not None:
        await setup(-1)
    for at in range(len(sides)):
        await run(at, 0, min(n, chunk))
    for rep in range(reps):
        if setup is not None:
            await setup(rep)
        gc.collect()
        acc, cpu = [0.0] * len(sides), [0.0] * len(sides)
        for k, start in enumerate(range(0, n, chunk)):
            stop = min(n, start + chunk)
            for j in range(len(sides)):
                at = (j + k + rep) % len(sides)
                c0, t0 = time.process_time(), time.perf_counter()
                await run(at, start, stop)
                acc[at] += time.perf_counter() - t0
                cpu[at] += time.process_time() - c0
        for s, t, c in zip(sides, acc, cpu, strict=True):
            s.times.append(t)
            s.cpu.append(c)


def four(sync: AnyOp, raw: AnyOp, aio_: AnyOp, raw_aio: AnyOp) -> list[Side]:
    """The four sides of one operation, in the order ``add_row`` takes them."""
    return [Side("sync", sync), Side("raw", raw), Side("aio", aio_), Side("raw aio", raw_aio)]


def ratio(a: Side, b: Side) -> list[float]:
    """Per-repetition ratios of a's rate to b's."""
    return [tb / ta for ta, tb in zip(a.times, b.times, strict=True)]


def verdict(ratios: list[float], target: float | None) -> tuple[str, str]:
    """(target, result) cells for a median ratio."""
    if target is None:
        return "-", "info"
    return f">= {target:.1f}x", "PASS" if statistics.median(ratios) >= target else "MISS"


@dataclass
class Config:
    quick: bool
    containers: int = 1000
    ops: int = 2000
    reps: int = 7
    chunk: int = 100
    commits: int = 6400
    conc_reps: int = 5
    coroutines: int = 64

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, containers=300, ops=300, reps=2, commits=640, conc_reps=2)
        return cls(quick=False)


# --- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    cfg = Config.make(args.quick)
    if args.reps:
        cfg.reps = cfg.conc_reps = args.reps
    rng = random.Random(args.seed)
    pid = os.getpid()
    ns, ns_create_s, ns_create_a = f"bench{pid}-f", f"bench{pid}-cs", f"bench{pid}-ca"
    raw_prefix = f"benchraw{pid}:"
    t_start = time.perf_counter()
    with server(args.redis_url) as (url, owned):
        sclient = redis.Redis.from_url(url)
        aclient = aredis.Redis.from_url(url)
        sstore, astore = Store(sclient, ns), aio.Store(aclient, ns)
        screates, acreates = Store(sclient, ns_create_s), aio.Store(aclient, ns_create_a)
        try:
            print_header(sclient, url, owned)
            base = [make_container(i, "f", rng) for i in range(cfg.containers)]
            for c in base:
                sstore.containers.create(c.copy())
            raw_keys = [f"{raw_prefix}c:{c.id}" for c in base]
            pipe = sclient.pipeline(transaction=False)
            for c, k in zip(base, raw_keys, strict=True):
                pipe.set(k, orjson.dumps(committed_doc(c)))
            pipe.execute()
            order = list(range(cfg.containers))
            rng.shuffle(order)
            ids = [base[j].id for j in order]
            names = [base[j].name for j in order]
            prefixes = [x[:12] for x in ids]
            rec_keys = [sstore.keys.container(x) for x in ids]
            rmw_keys = [raw_keys[j] for j in order]
            m = len(ids)
            loads, dumps = orjson.loads, orjson.dumps
            print(f"populated {m} containers; running", flush=True)

            rows: list[tuple[str, ...]] = []
            all_pass = True

            def add_row(label: str, s_ss: Side, s_raw: Side, a_ss: Side, a_raw: Side, target: float | None) -> None:
                nonlocal all_pass
                rs, ra, rf = ratio(s_ss, s_raw), ratio(a_ss, a_raw), ratio(a_ss, s_ss)
                tgt, res = verdict(ra, target)
                all_pass = all_pass and res != "MISS"
                n = cfg.ops
                rows.append((label, f"{s_ss.best_rate(n):,.0f}", f"{s_raw.best_rate(n):,.0f}",
                             f"{statistics.median(rs):.2f}x ({spread(rs)})", f"{a_ss.best_rate(n):,.0f}",
                             f"{a_raw.best_rate(n):,.0f}", f"{statistics.median(ra):.2f}x ({spread(ra)})", tgt, res,
                             f"{statistics.median(rf):.2f}x",
                             f"{s_ss.cpu_us(n):.0f} / {s_raw.cpu_us(n):.0f} / {a_ss.cpu_us(n):.0f} / "
                             f"{a_raw.cpu_us(n):.0f}"))
                print(f"  {label}: done", flush=True)

            # --- gets --------------------------------------------------------------------------------
            sget, aget, rget, arget = sstore.containers.get, astore.containers.get, sclient.get, aclient.get

            def raw_get(i: int) -> object:
                return loads(rget(rec_keys[i % m]))  # type: ignore[arg-type]

            async def araw_get(i: int) -> object:
                return loads(await arget(rec_keys[i % m]))

            # the raw side knows the record's key: for a name or a prefix it does less than the
            # lookup, so those rows are information (tools/bench.py's targets for the sync face are
            # 0.8x there), and the get by ID, update and lock rows carry the target
            for label, refs, target in (("get by full ID", ids, 0.9), ("get by name", names, None),
                                        (f"get by ID prefix ({len(prefixes[0])} chars)", prefixes, None)):
                def s_get(i: int, refs: list[str] = refs) -> object:
                    return sget(refs[i % m])

                async def a_get(i: int, refs: list[str] = refs) -> object:
                    return await aget(refs[i % m])

                sides = four(s_get, raw_get, a_get, araw_get)
                await measure(sides, cfg.ops, cfg.reps, cfg.chunk)
                add_row(label, *sides, target)

            # --- create --------------------------------------------------------------------------------
            pending: dict[str, list[Any]] = {}
            made = [0]

            async def create_setup(rep: int) -> None:
                for side in ("s", "a"):
                    cs = [make_container(made[0] + i, "c" + side, rng) for i in range(cfg.ops)]
                    made[0] += cfg.ops
                    pending[side] = cs
                    pending["r" + side] = [(f"{raw_prefix}new:{c.id}", dumps(committed_doc(c))) for c in cs]

            def s_create(i: int) -> object:
                return screates.containers.create(pending["s"][i])

            def raw_create(i: int) -> object:
                k, d = pending["rs"][i]
                return sclient.set(k, d, nx=True)

            async def a_create(i: int) -> object:
                return await acreates.containers.create(pending["a"][i])

            async def araw_create(i: int) -> object:
                k, d = pending["ra"][i]
                return await aclient.set(k, d, nx=True)

            sides = four(s_create, raw_create, a_create, araw_create)
            await measure(sides, cfg.ops, cfg.reps, cfg.chunk, setup=create_setup)
            add_row("create", *sides, None)

            # --- update --------------------------------------------------------------------------------
            supdate, aupdate = sstore.containers.update, astore.containers.update

            def s_update(i: int) -> object:
                def change(c: Container) -> None:
                    c.config.labels["bench.counter"] = str(i)
                return supdate(ids[i % m], change)

            async def a_update(i: int) -> object:
                def change(c: Container) -> None:
                    c.config.labels["bench.counter"] = str(i)
                return await aupdate(ids[i % m], change)

            def raw_update(i: int) -> object:
                key = rmw_keys[i % m]
                with sclient.pipeline() as p:
                    p.watch(key)  # type: ignore[no-untyped-call]
                    doc = loads(p.get(key))  # type: ignore[arg-type]
                    doc["Config"]["Labels"]["bench.counter"] = str(i)
                    doc[META]["Version"] += 1
                    p.multi()
                    p.set(key, dumps(doc))
                    return p.execute()

            async def araw_update(i: int) -> object:
                key = rmw_keys[i % m]
                async with aclient.pipeline() as p:
                    await p.watch(key)
                    doc = loads(await p.get(key))  # type: ignore[misc]
                    doc["Config"]["Labels"]["bench.counter"] = str(i)
                    doc[META]["Version"] += 1
                    p.multi()
                    p.set(key, dumps(doc))
                    return await p.execute()

            sides = four(s_update, raw_update, a_update, araw_update)
            await measure(sides, cfg.ops, cfg.reps, cfg.chunk)
            add_row("update by full ID (label)", *sides, 0.9)

            # --- lock acquire + release ------------------------------------------------------------------
            lock_id = ids[0]
            slock, alock = sclient.lock(f"{raw_prefix}lock", timeout=10), aclient.lock(f"{raw_prefix}alock", timeout=10)

            def s_lock(i: int) -> None:
                with sstore.lock(lock_id, ttl=10):
                    pass

            def raw_lock(i: int) -> None:
                with slock:
                    pass

            async def a_lock(i: int) -> None:
                async with astore.lock(lock_id, ttl=10):
                    pass

            async def araw_lock(i: int) -> None:
                async with alock:
                    pass

            sides = four(s_lock, raw_lock, a_lock, araw_lock)
            await measure(sides, cfg.ops, cfg.reps, cfg.chunk)
            add_row("lock acquire+release", *sides, 0.9)

            print()
            print("one call at a time: each face against its own raw client, interleaved in the same run")
            format_table(("operation", "sync ops/s", "redis-py ops/s", "sync ratio", "aio ops/s",
                          "redis.asyncio ops/s", "aio ratio", "aio target", "result", "aio/sync",
                          "client CPU us/op sync / redis-py / aio / redis.asyncio"), rows, args.markdown)
            print()
            print("ratios: each face against its own raw client, median of the per-repetition ratios (range in "
                  "brackets);\naio/sync: the async face's rate over the sync face's.  client CPU: this process's "
                  "CPU time per op.")

            # --- concurrency: commits/s over distinct containers --------------------------------------------
            conc = await concurrency(cfg, sstore, astore, aclient, sclient, ids, rmw_keys, args.markdown)
            all_pass = all_pass and conc
            if args.profile:
                print()
                print(await profile_fanout(astore, ids, cfg))
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"\nload average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs; "
                  f"total {time.perf_counter() - t_start:.0f}s ({'quick' if cfg.quick else 'full'} run: "
                  f"{cfg.reps} repetitions of {cfg.ops} ops; {cfg.conc_reps} of {cfg.commits} commits)")
            return 0 if all_pass or not args.strict else 1
        finally:
            for s in (astore, acreates):
                await s.aclose()
            for s2 in (sstore, screates):
                s2.close()
            if not owned:
                cleanup_namespaces(sclient, [f"ss:{{bench{pid}-*", f"{raw_prefix}*"])
            await aclient.aclose()
            sclient.close()


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def concurrency(cfg: Config, sstore: Store, astore: aio.Store, aclient: aredis.Redis,
                      sclient: redis.Redis, ids: list[str], rmw_keys: list[str], markdown: bool) -> bool:
    """Commits/s updating distinct containers: the sync face from one thread, the async face from
    1 and ``cfg.coroutines`` coroutines, raw redis.asyncio from as many; repetitions interleaved."""
    k = cfg.coroutines
    per = cfg.commits // k
    total = per * k
    loads, dumps = orjson.loads, orjson.dumps

    def label(i: int) -> Callable[[Container], None]:
        def change(c: Container) -> None:
            c.config.labels["bench.counter"] = str(i)
        return change

    async def sync_one() -> None:
        update = sstore.containers.update
        for i in range(total):
            update(ids[i % k], label(i))

    async def aio_one() -> None:
        update = astore.containers.update
        for i in range(total):
            await update(ids[i % k], label(i))

    async def aio_many() -> None:
        update = astore.containers.update

        async def worker(w: int) -> None:
            for i in range(per):
                await update(ids[w], label(i))
        await asyncio.gather(*(worker(w) for w in range(k)))

    async def raw_many() -> None:
        async def worker(w: int) -> None:
            key = rmw_keys[w]
            for i in range(per):
                async with aclient.pipeline() as p:
                    await p.watch(key)
                    doc = loads(await p.get(key))  # type: ignore[misc]
                    doc["Config"]["Labels"]["bench.counter"] = str(i)
                    doc[META]["Version"] += 1
                    p.multi()
                    p.set(key, dumps(doc))
                    await p.execute()
        await asyncio.gather(*(worker(w) for w in range(k)))

    runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("sync face, 1 thread", sync_one), ("aio face, 1 coroutine", aio_one),
        (f"aio face, {k} coroutines", aio_many), (f"raw redis.asyncio, {k} coroutines", raw_many)]
    wall: dict[str, list[float]] = {n: [] for n, _ in runs}
    cpu: dict[str, list[float]] = {n: [] for n, _ in runs}
    srv: dict[str, list[float]] = {n: [] for n, _ in runs}
    await aio_many()  # warm: one connection per coroutine in the store's pool
    await raw_many()
    for rep in range(cfg.conc_reps):
        for j in range(len(runs)):
            name, fn = runs[(j + rep) % len(runs)]
            gc.collect()
            s0, c0, t0 = server_cpu(sclient), time.process_time(), time.perf_counter()
            await fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            srv[name].append(server_cpu(sclient) - s0)
    base = runs[0][0]
    many = runs[2][0]
    body = []
    for name, _ in runs:
        per_rep = [wb / w for w, wb in zip(wall[name], wall[base], strict=True)]
        rate = total / statistics.median(wall[name])
        body.append((name, f"{rate:,.0f}", f"{statistics.median(per_rep):.2f}x ({spread(per_rep)})",
                     f"{statistics.median(cpu[name]) / total * 1e6:.0f}",
                     f"{statistics.median(cpu[name]) / statistics.median(wall[name]) * 100:.0f}%",
                     f"{statistics.median(srv[name]) / total * 1e6:.0f}"))
    r = statistics.median([wb / w for w, wb in zip(wall[many], wall[base], strict=True)])
    print()
    print(f"commits/s updating distinct containers ({total} commits per run, median of {cfg.conc_reps} "
          f"interleaved runs); against the sync face from one thread:")
    format_table(("run", "commits/s", "vs sync 1 thread", "client CPU us/commit", "client CPU busy",
                  "server CPU us/commit"), body, markdown)
    print()
    print(f"{many} vs sync face, 1 thread: {r:.2f}x (target >= 2.0x: {'PASS' if r >= 2.0 else 'MISS'})")
    return r >= 2.0


async def profile_fanout(astore: aio.Store, ids: list[str], cfg: Config, top: int = 16) -> str:
    """cProfile the 64-coroutine updates: where the client's time goes."""
    k, per = cfg.coroutines, cfg.commits // cfg.coroutines
    update = astore.containers.update

    def change(c: Container) -> None:
        c.config.labels["bench.counter"] = "p"

    async def worker(w: int) -> None:
        for _ in range(per):
            await update(ids[w], change)
    prof = cProfile.Profile()
    prof.enable()
    await asyncio.gather(*(worker(w) for w in range(k)))
    prof.disable()
    stats = pstats.Stats(prof)
    # own time by where the code lives: where the client's CPU goes per commit
    areas: dict[str, float] = {}
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (path, _line, func), (_cc, _nc, tottime, _ct, _callers) in raw_stats.items():
        if "/statestore/" in path:
            area = "statestore (records, indexes, events, commit protocol)"
        elif "/redis/" in path:
            area = "redis-py (redis.asyncio connections, parser glue)"
        elif "/asyncio/" in path or path.endswith("selectors.py"):
            area = "asyncio (event loop, tasks, timeouts, streams)"
        elif path == "~":
            io_call = "socket" in func or "poll" in func
            area = "C: socket I/O and epoll" if io_call else "C: orjson, hiredis, builtins"
        else:
            area = "other Python (stdlib, tenacity)"
        areas[area] = areas.get(area, 0.0) + tottime
    total = sum(areas.values())
    n = per * k
    lines = [f"--- where the client's time goes: {k} coroutines, {n} updates, cProfile own time "
             f"({total / n * 1e6:.0f} us per commit under the profiler) ---"]
    for area, t in sorted(areas.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {area:<58} {t / total * 100:5.1f}%  {t / n * 1e6:6.1f} us/commit")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    text = [ln.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "")
            for ln in out.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(text) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join([*lines, "", f"top {top} functions by own time:", *text[start:]])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced run, about 20 s")
    p.add_argument("--redis-url", help="use this Redis instead of starting a private redis-server")
    p.add_argument("--reps", type=int, help="repetitions per measurement (default 7, and 5 for concurrency)")
    p.add_argument("--profile", action="store_true", help="cProfile the 64-coroutine updates")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--seed", type=int, default=20260101)
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
