#!/usr/bin/env python3
"""statestore against raw redis-py, on the same Redis, in one run.

Usage::

    .venv/bin/python tools/bench.py              # full run (~1.5 minutes)
    .venv/bin/python tools/bench.py --quick      # reduced run (~10 s)
    .venv/bin/python tools/bench.py --profile    # also cProfile the statestore side of get, update, list
    .venv/bin/python tools/bench.py --redis-url redis://127.0.0.1:7000/0   # use an existing server

Without ``--redis-url`` the benchmark starts its own redis-server on a free
loopback port (never 6379) and removes it at the end.  With ``--redis-url`` it
writes only under namespaces named ``bench<pid>-*`` and ``benchraw<pid>:*``
and deletes them when it is done.

Every line compares statestore with raw redis-py doing the least work that
gets the same answer (see docs/performance.md).  Absolute figures drift a lot
on shared machines, so the two sides are interleaved in small chunks inside
every repetition.  The ops/s shown are each side's best repetition; the
*ratio* (statestore / raw), which the targets are about, is the median of the
per-repetition ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import redis

from statestore import Container, Store, _codec, _indexes
from statestore._keys import KIND_CONTAINER, KeySchema
from statestore._model import META, generate_id
from statestore._state import derive_status

ROOT = Path(__file__).resolve().parent.parent

Op = Callable[[int], object]
VERBOSE = False


# --- data -----------------------------------------------------------------------------------


GROUP_SIZE = 10  # containers per "bench.group" label value: the selective list matches 10


def make_container(i: int, tag: str, rng: random.Random) -> Container:
    """A realistic, running container (about 2 KB of JSON), deterministic for (i, tag, seed)."""
    cid = generate_id(rng.randbytes)
    c = Container.new(
        "registry.example.com/team/webapp:1.27.3",
        id=cid,
        name=f"bench-{tag}-{i:06d}",
        labels={
            "com.example.app": "webapp",
            "com.example.tier": "frontend",
            "bench.group": f"g{i // GROUP_SIZE:06d}",
            "bench.index": str(i),
        },
        cmd=["/usr/local/bin/webapp", "--port", "8080", "--workers", "4"],
        env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG=C.UTF-8", f"INSTANCE={i}", "LOG_LEVEL=info"],
        working_dir="/srv/app",
        exposed_ports=["8080/tcp"],
        port_bindings={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(20000 + i % 40000)}]},
        networks={"bridge": {"NetworkID": "7b3f" + "a" * 60, "IPAddress": f"172.17.{i // 250 % 250}.{i % 250 + 2}"}},
        binds=["/srv/data:/data:rw"],
        image_id="sha256:" + "c0ffee" * 10 + "abcd",
    )
    c.state.set_running(pid=1000 + i, at="2026-01-01T00:00:00.000000000Z")
    return c


def committed_doc(c: Container) -> dict[str, Any]:
    """The document a successful ``create`` stores: the container at version 1, with a commit id of the
    store's shape (``<12 hex>-<hex counter>``; ``bulk_write`` gives each record its own)."""
    doc = c.to_dict()
    doc[META]["Version"] = 1
    doc[META]["Commit"] = "000000000000-1"
    return doc


def bulk_write(client: redis.Redis, keys: KeySchema, docs: Sequence[dict[str, Any]], maxlen: int,
               batch: int = 500) -> None:
    """Write exactly what ``containers.create`` writes, pipelined without WATCH/MULTI.

    Name reservation, record, every index member, the change-log entry with its
    sequence number, and the sequence counter (numbers are assigned here: the
    benchmark is the only writer while it populates), each record with a commit
    id of its own, made like the store's.  ``verify_bulk_write`` checks this
    against a real create before it is used.
    """
    seq = int(client.get(keys.log_seq) or 0)
    commit_prefix = os.urandom(6).hex()
    pipe = client.pipeline(transaction=False)
    for n, doc in enumerate(docs, 1):
        seq += 1
        cid = doc["Id"]
        doc = {**doc, META: {**doc[META], "Commit": f"{commit_prefix}-{seq:x}"}}
        data = _codec.encode(Container(doc))
        pipe.set(keys.name(doc["Name"][1:]), cid)
        pipe.set(keys.container(cid), data)
        for fld, members in _indexes.container_entries(doc).items():
            if members:
                pipe.zadd(keys.index(KIND_CONTAINER, fld), dict.fromkeys(members, 0))
        pipe.xadd(keys.log, {
            "seq": seq, "type": "create", "kind": KIND_CONTAINER, "id": cid, "name": doc["Name"][1:],
            "container": cid, "version": doc[META]["Version"], "status": derive_status(doc["State"]),
            "record": data,
        }, maxlen=maxlen, approximate=True)
        if n % batch == 0:
            pipe.set(keys.log_seq, seq)
            pipe.execute()
    pipe.set(keys.log_seq, seq)
    pipe.execute()


def dump_namespace(client: redis.Redis, keys: KeySchema) -> dict[str, Any]:
    """Every key of a namespace (relative to its base) with its type and value; stream IDs dropped."""
    out: dict[str, Any] = {}
    base = keys.base.encode()
    for key in client.scan_iter(match=keys.match_all, count=1000):
        rel = key[len(base):].decode()
        t: Any = client.type(key)
        if t == b"string":
            out[rel] = ("string", client.get(key))
        elif t == b"zset":
            out[rel] = ("zset", tuple(client.zrange(key, 0, -1, withscores=True)))
        elif t == b"stream":
            entries: Any = client.xrange(key)
            out[rel] = ("stream", tuple(tuple(sorted(f.items())) for _, f in entries))
        else:
            out[rel] = (t.decode(), None)
    return out


_COMMIT_ID = re.compile(rb'"Commit":"[0-9a-f]{12}-[0-9a-f]+"')


def verify_bulk_write(client: redis.Redis, store_a: Store, store_b: Store, rng: random.Random) -> bool:
    """True if ``bulk_write`` leaves exactly what ``create`` leaves (same keys, values, log fields; the
    commit ids, unique per commit, only need the same place and shape)."""
    c = make_container(7, "verify", rng)
    store_a.containers.create(c.copy())
    bulk_write(client, store_b.keys, [committed_doc(c)], store_b.changelog_maxlen)

    def scrub(value: Any) -> Any:
        if isinstance(value, bytes):
            return _COMMIT_ID.sub(b'"Commit":"-"', value)
        if isinstance(value, tuple):
            return tuple(scrub(v) for v in value)
        return value

    def normalized(keys: KeySchema) -> dict[str, Any]:
        return {k: scrub(v) for k, v in dump_namespace(client, keys).items()}

    return normalized(store_a.keys) == normalized(store_b.keys)


def populate_with_create(store: Store, containers: Sequence[Container]) -> None:
    for c in containers:
        store.containers.create(c)


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    op: Op
    times: list[float] = field(default_factory=list)  # wall seconds per repetition
    cpu: list[float] = field(default_factory=list)    # this process's CPU seconds per repetition

    def best_rate(self, n: int) -> float:
        return n / min(self.times)

    def cpu_us(self, n: int) -> float:
        """Client-side CPU per op (median over repetitions): what Python spends, without the waits."""
        return statistics.median(self.cpu) / n * 1e6


def measure(sides: Sequence[Side], n: int, reps: int, chunk: int,
            setup: Callable[[int], None] | None = None) -> None:
    """Run ``n`` ops of every side per repetition, interleaved ``chunk`` ops at a time.

    The order of the sides is rotated every chunk so that neither side always
    runs first (right after a GC or a context switch).  One untimed chunk of
    every side warms caches, the connection pool and the server first.
    """
    if setup is not None:
        setup(-1)
    for s in sides:
        for i in range(min(n, chunk)):
            s.op(i)
    for rep in range(reps):
        if setup is not None:
            setup(rep)
        gc.collect()
        acc = [0.0] * len(sides)
        cpu = [0.0] * len(sides)
        k = 0
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            for j in range(len(sides)):
                at = (j + k + rep) % len(sides)
                op = sides[at].op
                c0 = time.process_time()
                t0 = time.perf_counter()
                for i in range(start, stop):
                    op(i)
                acc[at] += time.perf_counter() - t0
                cpu[at] += time.process_time() - c0
            k += 1
        for s, t, c in zip(sides, acc, cpu, strict=True):
            s.times.append(t)
            s.cpu.append(c)
    if VERBOSE:
        for s in sides:
            print(f"    {s.name:<32} " + " ".join(f"{n / t:>8,.0f}" for t in s.times) + "  ops/s per repetition")


def paired_ratios(a: Side, b: Side) -> list[float]:
    """Per-repetition ratios of a's rate to b's (b.time / a.time): a noise gauge."""
    return [tb / ta for ta, tb in zip(a.times, b.times, strict=True)]


@dataclass
class Row:
    operation: str
    ss: float            # ops/s, or for a scale row the time ratio
    raw: float | None
    ratio: float | None
    target: str
    status: str
    spread: str = ""
    cpu: str = ""


def ratio_row(operation: str, ss: Side, raw: Side, n: int, target: float | None) -> Row:
    """Rates are each side's best repetition; the ratio is the median of the per-repetition
    ratios, each taken between chunks that ran interleaved (so drift and load bursts hit
    both sides alike).  The ratio of the two best rates can pair a lucky quiet repetition of
    one side with an ordinary one of the other; the paired median does not."""
    ss_rate, raw_rate = ss.best_rate(n), raw.best_rate(n)
    pr = paired_ratios(ss, raw)
    ratio = statistics.median(pr)
    if target is None:
        tgt, status = "-", "info"
    else:
        tgt, status = f">= {target:.1f}x", "PASS" if ratio >= target else "MISS"
    return Row(operation, ss_rate, raw_rate, ratio, tgt, status, spread(pr),
               f"{ss.cpu_us(n):.0f} / {raw.cpu_us(n):.0f}")


def spread(ratios: Sequence[float]) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


# --- the benchmarks -------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    big: int
    small: int = 1000
    get_ops: int = 3000
    write_ops: int = 1500
    list_ops: int = 1500
    reps: int = 7
    chunk: int = 100

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, big=10_000, get_ops=1000, write_ops=500, list_ops=500, reps=3, chunk=100)
        return cls(quick=False, big=100_000)


@contextmanager
def server(url: str | None) -> Iterator[tuple[str, bool]]:
    """(url, owned): a private redis-server unless ``url`` is given."""
    if url is not None:
        yield url, False
        return
    sys.path.insert(0, str(ROOT))
    from tests.redisproc import RedisProcess, free_port

    port = free_port()
    while port == 6379:
        port = free_port()
    proc = RedisProcess(port=port).start()
    try:
        yield proc.url, True
    finally:
        proc.cleanup()


def machine_info(client: redis.Redis) -> dict[str, str]:
    info = client.info("server")

    def ver(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "-"

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "statestore"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if commit and dirty:
            commit += " + uncommitted statestore/ changes"
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "-",
        "nproc": str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "-",
        "python": platform.python_version(),
        "redis-server": str(info.get("redis_version")),
        "redis-py": ver("redis"),
        "hiredis": ver("hiredis"),
        "orjson": ver("orjson"),
    }


def print_header(client: redis.Redis, url: str, owned: bool) -> None:
    """The machine and Redis a benchmark ran on (shared by the tools/bench*.py scripts)."""
    info = machine_info(client)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"redis: {'private redis-server' if owned else 'existing server'} at {url}; load average "
          + " / ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)


def cleanup_namespaces(client: redis.Redis, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=2000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def profile_side(title: str, op: Op, n: int, top: int = 14) -> str:
    """cProfile ``n`` ops: the top functions by own time, then statestore's by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        op(i)
    prof.disable()
    parts = [f"--- cProfile: {title} ({n} ops) ---"]
    for heading, key, restrict in (("by own time (tottime), all code", "tottime", ()),
                                   ("statestore functions by cumulative time", "cumulative", ("statestore/",))):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(key).print_stats(*restrict, top)
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
        start = next((k for k, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        total = next((ln.strip() for ln in lines if "function calls" in ln), "")
        if len(parts) == 1:
            parts.append(total)
        parts.append(f"{heading}:")
        parts.extend(ln.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "")
                     for ln in lines[start:])
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    global VERBOSE
    VERBOSE = args.verbose
    cfg = Config.make(args.quick)
    if args.reps:
        cfg.reps = args.reps
    if args.big:
        cfg.big = args.big
    rng = random.Random(args.seed)
    pid = os.getpid()
    ns_small, ns_big, ns_create = f"bench{pid}-s", f"bench{pid}-l", f"bench{pid}-c"
    ns_chk_a, ns_chk_b = f"bench{pid}-va", f"bench{pid}-vb"
    raw_prefix = f"benchraw{pid}:"
    t_start = time.perf_counter()

    with server(args.redis_url) as (url, owned):
        client = redis.Redis.from_url(url)
        try:
            print_header(client, url, owned)
            small = Store(client, ns_small)
            big = Store(client, ns_big)
            creates = Store(client, ns_create)

            # --- populate ------------------------------------------------------------------
            t0 = time.perf_counter()
            base = [make_container(i, "s", rng) for i in range(cfg.small)]
            populate_with_create(small, [c.copy() for c in base])
            big_first = [make_container(i, "l", rng) for i in range(cfg.small)]
            populate_with_create(big, big_first)
            mirror_ok = verify_bulk_write(client, Store(client, ns_chk_a), Store(client, ns_chk_b), rng)
            how = "raw pipeline mirroring create (verified)" if mirror_ok else "create (bulk mirror check FAILED)"
            for start in range(cfg.small, cfg.big, 10_000):
                chunk = [make_container(i, "l", rng) for i in range(start, min(cfg.big, start + 10_000))]
                if mirror_ok:
                    bulk_write(client, big.keys, [committed_doc(c) for c in chunk], big.changelog_maxlen)
                else:
                    populate_with_create(big, chunk)
            n_big = client.zcard(big.keys.index(KIND_CONTAINER, "id"))
            n_small = client.zcard(small.keys.index(KIND_CONTAINER, "id"))
            assert n_big == cfg.big and n_small == cfg.small, (n_small, n_big)
            sizes = [len(client.get(small.keys.container(c.id)) or b"") for c in base[:100]]
            print(f"populated {n_small} + {n_big} containers ({cfg.small} + {cfg.small} by create, "
                  f"{cfg.big - cfg.small} by {how}) in {time.perf_counter() - t0:.1f}s; "
                  f"record ~{statistics.mean(sizes):.0f} bytes")
            del big_first
            gc.collect()

            # raw copies of the small set, for the raw read-modify-write (never mixed with statestore's keys)
            raw_keys = [f"{raw_prefix}c:{c.id}" for c in base]
            pipe = client.pipeline(transaction=False)
            for c, k in zip(base, raw_keys, strict=True):
                pipe.set(k, orjson.dumps(committed_doc(c)))
            pipe.execute()

            order = list(range(cfg.small))
            rng.shuffle(order)
            ids = [base[j].id for j in order]
            names = [base[j].name for j in order]
            prefixes = [x[:12] for x in ids]
            rec_keys = [small.keys.container(x) for x in ids]
            raw_rmw_keys = [raw_keys[j] for j in order]
            m = len(ids)
            get = small.containers.get
            rget = client.get
            loads = orjson.loads

            def raw_get(i: int) -> object:
                return loads(rget(rec_keys[i % m]))  # type: ignore[arg-type]

            rows: list[Row] = []
            sides_by_name: dict[str, Side] = {}

            # 1-3: gets ---------------------------------------------------------------------
            for label, refs, target in (("get by full ID", ids, 0.9), ("get by name", names, 0.8),
                                        (f"get by ID prefix ({len(prefixes[0])} chars)", prefixes, 0.8)):
                def ss_get(i: int, refs: list[str] = refs) -> object:
                    return get(refs[i % m])

                ss, raw = Side(label, ss_get), Side("raw GET+loads", raw_get)
                measure([ss, raw], cfg.get_ops, cfg.reps, cfg.chunk)
                rows.append(ratio_row(label, ss, raw, cfg.get_ops, target))
                sides_by_name[label] = ss
                print(f"  {label}: done", flush=True)

            # 4: create ---------------------------------------------------------------------
            pending: dict[str, list[Any]] = {"ss": [], "raw": []}
            create_counter = [0]

            def create_setup(rep: int) -> None:
                base_i = create_counter[0]
                create_counter[0] += cfg.write_ops
                cs = [make_container(base_i + i, "c", rng) for i in range(cfg.write_ops)]
                pending["ss"] = cs
                # the raw side writes the same documents under keys of its own
                pending["raw"] = [(f"{raw_prefix}new:{c.id}", committed_doc(c)) for c in cs]

            ccreate = creates.containers.create
            rset = client.set
            dumps = orjson.dumps

            def ss_create(i: int) -> object:
                return ccreate(pending["ss"][i])

            def raw_create(i: int) -> object:
                k, d = pending["raw"][i]
                return rset(k, dumps(d), nx=True)

            ss, raw = Side("create", ss_create), Side("raw SET NX", raw_create)
            measure([ss, raw], cfg.write_ops, cfg.reps, cfg.chunk, setup=create_setup)
            rows.append(ratio_row("create", ss, raw, cfg.write_ops, None))
            print("  create: done", flush=True)

            # 5: update ---------------------------------------------------------------------
            update = small.containers.update

            def ss_update(i: int) -> object:
                def change(c: Container) -> None:
                    c.config.labels["bench.counter"] = str(i)
                return update(ids[i % m], change)

            def raw_update(i: int) -> object:
                key = raw_rmw_keys[i % m]
                with client.pipeline() as p:
                    p.watch(key)  # type: ignore[no-untyped-call]
                    doc = loads(p.get(key))  # type: ignore[arg-type]
                    doc["Config"]["Labels"]["bench.counter"] = str(i)
                    doc[META]["Version"] += 1
                    p.multi()
                    p.set(key, dumps(doc))
                    return p.execute()

            ss, raw = Side("update", ss_update), Side("raw WATCH/GET/MULTI/SET/EXEC", raw_update)
            measure([ss, raw], cfg.write_ops, cfg.reps, cfg.chunk)
            rows.append(ratio_row("update by full ID (label)", ss, raw, cfg.write_ops, 1.0))
            sides_by_name["update"] = ss
            print("  update: done", flush=True)

            # 6: selective list at small and big ---------------------------------------------
            groups_small = [f"g{g:06d}" for g in range(cfg.small // GROUP_SIZE)]
            groups_big = [f"g{g:06d}" for g in rng.sample(range(cfg.big // GROUP_SIZE), 100)]
            rng.shuffle(groups_small)

            def ss_list(store: Store, groups: list[str]) -> Op:
                lst = store.containers.list
                ng = len(groups)

                def op(i: int) -> object:
                    out = lst(filters={"label": f"bench.group={groups[i % ng]}"})
                    assert len(out) == GROUP_SIZE
                    return out
                return op

            def raw_list(store: Store, groups: list[str]) -> Op:
                ikey = store.keys.index(KIND_CONTAINER, "label")
                prefix = store.keys.record_prefix(KIND_CONTAINER)
                rngs = [(b"[bench.group\x00" + g.encode() + b"\x00", b"[bench.group\x00" + g.encode() + b"\x00\xff")
                        for g in groups]
                ng = len(groups)
                zrangebylex, mget = client.zrangebylex, client.mget

                def op(i: int) -> object:
                    lo, hi = rngs[i % ng]
                    members = zrangebylex(ikey, lo, hi)
                    raws = mget([prefix + mb[-64:].decode() for mb in members])  # type: ignore[union-attr]
                    out = [loads(r) for r in raws if r is not None]
                    assert len(out) == GROUP_SIZE
                    return out
                return op

            s_small = Side("list small", ss_list(small, groups_small))
            s_big = Side("list big", ss_list(big, groups_big))
            r_small = Side("raw list small", raw_list(small, groups_small))
            r_big = Side("raw list big", raw_list(big, groups_big))
            measure([s_small, s_big, r_small, r_big], cfg.list_ops, cfg.reps, cfg.chunk)
            k_small, k_big = f"{cfg.small // 1000}k", f"{cfg.big // 1000}k"
            rows.append(ratio_row(f"list label (10 of {k_small})", s_small, r_small, cfg.list_ops, None))
            rows.append(ratio_row(f"list label (10 of {k_big})", s_big, r_big, cfg.list_ops, None))
            pr = [b / a for a, b in zip(s_small.times, s_big.times, strict=True)]
            ss_scale = statistics.median(pr)
            raw_scale = statistics.median([b / a for a, b in zip(r_small.times, r_big.times, strict=True)])
            rows.append(Row(f"list time {k_big}/{k_small} (x)", ss_scale, raw_scale, None, "<= 1.5x",
                            "PASS" if ss_scale <= 1.5 else "MISS", spread(pr),
                            f"{s_big.cpu_us(cfg.list_ops):.0f} / {s_small.cpu_us(cfg.list_ops):.0f}"))
            print("  list: done", flush=True)

            print()
            print_table(rows, cfg, markdown=args.markdown)
            print("ops/s: each side's best repetition.  ratio: statestore/raw, median of the per-repetition ratios "
                  "(sides interleaved in chunks of\n"
                  f"{cfg.chunk} ops); per-rep range: lowest and highest of those.  The last row compares times "
                  f"({k_big} over {k_small}; statestore, then raw).\n"
                  "client CPU: this process's CPU time per op (median repetition), i.e. Python + redis-py "
                  "work without the waits.")
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"\nload average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs")
            print(f"total {time.perf_counter() - t_start:.0f}s "
                  f"({'quick' if cfg.quick else 'full'} run: {cfg.reps} repetitions; "
                  f"{cfg.get_ops} gets, {cfg.write_ops} creates/updates, {cfg.list_ops} lists per repetition)")

            if args.profile:
                n = cfg.get_ops
                print()
                print(profile_side("get by full ID", sides_by_name["get by full ID"].op, n))
                print()
                print(profile_side("get by name", sides_by_name["get by name"].op, n))
                print()
                print(profile_side("update by full ID", sides_by_name["update"].op, cfg.write_ops))
                print()
                print(profile_side(f"list label (10 of {k_big})", s_big.op, cfg.list_ops))
            return 0 if all(r.status != "MISS" for r in rows) or not args.strict else 1
        finally:
            if not owned:
                cleanup_namespaces(client, [f"ss:{{bench{pid}-*", f"{raw_prefix}*"])
            client.close()


def print_table(rows: list[Row], cfg: Config, markdown: bool) -> None:
    head = ("operation", "statestore ops/s", "raw ops/s", "ratio", "target", "result",
            "per-rep range", "client CPU us/op ss / raw")

    def cells(r: Row) -> tuple[str, ...]:
        if r.ratio is None:  # a scale row: time ratios, not rates
            return (r.operation, f"{r.ss:.2f}x", f"{r.raw:.2f}x" if r.raw is not None else "-", f"{r.ss:.2f}x",
                    r.target, r.status, r.spread, r.cpu)
        return (r.operation, f"{r.ss:,.0f}", f"{r.raw:,.0f}" if r.raw is not None else "-", f"{r.ratio:.2f}x",
                r.target, r.status, r.spread, r.cpu)

    format_table(head, [cells(r) for r in rows], markdown)


def format_table(head: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> None:
    """A table: markdown, or aligned text (first column left, the others right)."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if k == 0 else "---:" for k in range(len(head))) + "|")
        for row in body:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(x[k]) for x in (head, *body)) for k in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
    print(fmt.format(*head))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print(fmt.format(*row))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced run (10k containers, fewer ops), < 30 s")
    p.add_argument("--redis-url", help="use this Redis instead of starting a private redis-server")
    p.add_argument("--big", type=int, help="containers for the big selective-list namespace (default 100k)")
    p.add_argument("--profile", action="store_true", help="cProfile the statestore side of get, update and list")
    p.add_argument("--reps", type=int, help="repetitions per measurement (default 7, quick 3)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every repetition's rates")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--seed", type=int, default=20260101)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
