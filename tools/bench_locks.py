"""Lock benchmarks (issue: per-container action locks).

Runs against its own private redis-server (or --redis-url) and prints, in one run:

1. uncontended acquire+release throughput: ``store.lock(id)`` + release versus
   redis-py's ``Lock`` (no fencing, no renewal) doing the same on the same Redis;
   (interleaved in chunks of 100; the ratio is the median of the per-repetition ratios);
2. hand-off latency: one process releases, another that is already waiting
   acquires; p50/p99 of release-start -> acquire-return (CLOCK_MONOTONIC is
   system-wide on Linux, so the two processes' timestamps compare);
3. read latency of a container whose lock is held by a hung action, beside an
   unlocked container's, interleaved: p50/p99 and the p99 ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statestore import Container, Store  # noqa: E402
from tests.redisproc import RedisProcess  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench_uncontended(store: Store, client: redis.Redis, cid: str, n: int,
                      reps: int = 7, chunk: int = 100) -> tuple[float, float, list[float]]:
    """Best ops/s of each side and the per-repetition ratios (sides interleaved in chunks)."""
    lock = client.lock("bench-raw-lock", timeout=10)
    best_ss = best_raw = 0.0
    ratios: list[float] = []
    for _ in range(reps):
        t_ss = t_raw = 0.0
        for _ in range(n // chunk):
            t0 = time.perf_counter()
            for _ in range(chunk):
                with store.lock(cid, ttl=10.0):
                    pass
            t1 = time.perf_counter()
            for _ in range(chunk):
                lock.acquire()
                lock.release()
            t2 = time.perf_counter()
            t_ss += t1 - t0
            t_raw += t2 - t1
        ss, raw = n / t_ss, n / t_raw
        best_ss, best_raw = max(best_ss, ss), max(best_raw, raw)
        ratios.append(ss / raw)
    return best_ss, best_raw, ratios


def _handoff_peer(url: str, ns: str, cid: str, rounds: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    store = Store(redis.Redis.from_url(url), namespace=ns)
    lat: list[float] = []
    for _ in range(rounds):
        lease = store.lock(cid, ttl=10.0, timeout=10.0)
        t_acq = time.monotonic_ns()
        t_rel = int(store.client.get("bench:released-at") or 0)
        lat.append((t_acq - t_rel) / 1e6)
        store.client.set("bench:released-at", time.monotonic_ns())
        lease.release()
    q.put(lat)
    store.close()


def bench_handoff(url: str, ns: str, cid: str, rounds: int) -> list[float]:
    """Two processes ping-pong the lock; each records release->acquire latency."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    client = redis.Redis.from_url(url)
    client.set("bench:released-at", time.monotonic_ns())
    store = Store(client, namespace=ns)
    first = store.lock(cid, ttl=10.0)
    peers = [ctx.Process(target=_handoff_peer, args=(url, ns, cid, rounds, q)) for _ in range(2)]
    for p in peers:
        p.start()
    time.sleep(1.0)  # both peers are waiting now
    client.set("bench:released-at", time.monotonic_ns())
    first.release()
    lat: list[float] = []
    for _ in peers:
        lat.extend(q.get(timeout=120))
    for p in peers:
        p.join(30)
    return lat[1:]  # the first sample includes the peers' start-up wait


def _hung_holder(url: str, ns: str, cid: str, hold: float, ready: MpEvent) -> None:
    store = Store(redis.Redis.from_url(url), namespace=ns)
    with store.lock(cid, ttl=5.0):
        ready.set()
        time.sleep(hold)  # the "hung netlink call"
    store.close()


def bench_reads_while_locked(url: str, ns: str, locked: str, free: str, n: int) -> tuple[list[float], list[float]]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hung_holder, args=(url, ns, locked, 60.0, ready))
    holder.start()
    ready.wait(30)
    store = Store(redis.Redis.from_url(url), namespace=ns)
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        store.containers.get(locked)
        t1 = time.perf_counter()
        store.containers.get(free)
        t2 = time.perf_counter()
        a.append((t1 - t0) * 1e6)
        b.append((t2 - t1) * 1e6)
    holder.kill()
    holder.join()
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis-url")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    proc = None
    url = args.redis_url
    if url is None:
        proc = RedisProcess().start()
        url = proc.url
    client = redis.Redis.from_url(url)
    ns = f"bench-locks-{int(time.time())}"
    store = Store(client, namespace=ns)
    try:
        c1 = store.containers.create(Container.new(image="nginx", name="locked"))
        c2 = store.containers.create(Container.new(image="nginx", name="free"))
        n = 500 if args.quick else 3000
        ss, raw, ratios = bench_uncontended(store, client, c1.id, n, reps=3 if args.quick else 7)
        hand = bench_handoff(url, ns, c1.id, 50 if args.quick else 300)
        a, b = bench_reads_while_locked(url, ns, c1.id, c2.id, 1000 if args.quick else 5000)
        ratio = statistics.median(ratios)
        print("statestore lock benchmarks (loopback, single client)")
        print(f"{'measure':<48}{'statestore':>14}{'baseline':>14}{'ratio':>8}  target")
        print(f"{'uncontended acquire+release (ops/s)':<48}{ss:>14.0f}{raw:>14.0f}{ratio:>8.2f}  >= 1.00 "
              f"{'PASS' if ratio >= 1.0 else 'MISS'}  (per-rep {min(ratios):.2f}-{max(ratios):.2f})")
        p50, p99 = statistics.median(hand), pct(hand, 0.99)
        print(f"{'hand-off latency p50 / p99 (ms)':<48}{p50:>14.3f}{p99:>14.3f}{'':>8}  p50 < 2 ms "
              f"{'PASS' if p50 < 2.0 else 'MISS'}")
        r99 = pct(a, 0.99) / pct(b, 0.99)
        print(f"{'get p50 locked / unlocked (us)':<48}{statistics.median(a):>14.1f}{statistics.median(b):>14.1f}")
        print(f"{'get p99 locked / unlocked (us)':<48}{pct(a, 0.99):>14.1f}{pct(b, 0.99):>14.1f}{r99:>8.2f}"
              f"  <= 1.20 {'PASS' if r99 <= 1.2 else 'MISS'}")
    finally:
        try:  # what it wrote: its namespace and the hand-off's timestamp key
            client.delete(*client.scan_iter(match=f"ss:{{{ns}}}:*"), "bench:released-at")
        finally:
            store.close()
            client.close()
            if proc is not None:
                proc.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
