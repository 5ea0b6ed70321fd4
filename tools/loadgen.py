"""Load generator for a statestore namespace in an existing Redis.

    python tools/loadgen.py --redis-url redis://127.0.0.1:6379/0 --namespace loadtest \\
        --containers 1000 --rate 2000 --duration 30 --processes 4

It creates ``--containers`` containers (named ``lg<run>-<i>``, labelled ``loadgen=<run>`` and
``group=g<i % 16>``, every other one running), then ``--processes`` worker processes together issue
``--rate`` operations per second for ``--duration`` seconds, open loop: each worker has a schedule of
start times at ``rate / processes`` per second and never waits for a slow operation to catch up (when
it falls behind, the next operations start at once, and the summary reports how far behind it fell).
The operation mix (``--mix``, weights) is:

* ``get``: a lookup by name, by 12-character ID prefix or by full ID, in turn;
* ``list``: ``docker ps``-style selective list (``label=group=gN`` and ``status=running``);
* ``update``: a read-modify-write (``containers.update``) that bumps a label;
* ``lock``: ``store.lock`` + a fenced ``update`` + release, the pattern of a replica's action;
* ``snapshot``: ``store.snapshot()`` of the whole namespace (weight 0 by default: it is O(namespace)).

At the end it prints the achieved rate and, per operation type, the count, rate, latency
percentiles (p50, p90, p99, max, in milliseconds) and errors; ``--json`` prints the same as one JSON
object.  Lock timeouts (two workers picking the same container) are counted but are not errors.
The containers are deleted at the end unless ``--keep``.  Exit status 1 if any operation failed.
Use a namespace of its own: the load goes to real records.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statestore import Container, LockTimeoutError, StateStoreError, Store  # noqa: E402

OPS = ("get", "list", "update", "lock", "snapshot")
DEFAULT_MIX = "get=40,list=15,update=30,lock=15,snapshot=0"
GROUPS = 16


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in OPS:
            raise argparse.ArgumentTypeError(f"bad mix entry {part!r}: expected OP=WEIGHT with OP in {', '.join(OPS)}")
        try:
            w = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {part!r}") from None
        if w < 0:
            raise argparse.ArgumentTypeError(f"negative weight in {part!r}")
        mix[name] = w
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the mix needs at least one positive weight")
    return mix


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- set-up ---------------------------------------------------------------------------------------
def create_containers(store: Store, run: str, n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        c = store.containers.create(Container.new(
            "busybox:latest", name=f"lg{run}-{i}", cmd=["sleep", "infinity"],
            labels={"loadgen": run, "group": f"g{i % GROUPS}", "counter": "0"}))
        if i % 2 == 0:
            c = store.containers.update(c.id, lambda x, pid=10_000 + i: x.state.set_running(pid=pid))
        out.append((c.id, c.name))
    return out


def delete_containers(store: Store, run: str) -> int:
    n = 0
    for c in store.containers.list({"label": f"loadgen={run}"}, all=True):
        try:
            store.containers.delete(c.id)
            n += 1
        except StateStoreError:
            pass
    return n


# --- a worker process -----------------------------------------------------------------------------
def _bump(c: Container) -> None:
    c.labels["counter"] = str(int(c.labels.get("counter", "0") or 0) + 1)


def worker(url: str, namespace: str, run: str, targets: list[tuple[str, str]], mix: dict[str, float],
           rate: float, duration: float, seed: int, ready: Any, go: MpEvent, results: Any) -> None:
    rng = random.Random(seed)
    names = [op for op in OPS if mix.get(op, 0) > 0]
    weights = [mix[op] for op in names]
    lat: dict[str, list[float]] = {op: [] for op in names}
    errors: dict[str, dict[str, int]] = {op: {} for op in names}
    timeouts = 0
    max_lag = 0.0
    with Store.from_url(url, namespace=namespace, replica_id=f"loadgen-{run}-{os.getpid()}") as store:
        store.ping()
        ready.put(os.getpid())
        go.wait()
        start = time.monotonic()
        interval = 1.0 / rate
        k = 0
        ref_turn = 0
        while True:
            due = start + k * interval
            if due - start >= duration:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                max_lag = max(max_lag, now - due)
            k += 1
            op = rng.choices(names, weights)[0]
            cid, name = targets[rng.randrange(len(targets))]
            t0 = time.perf_counter()
            try:
                if op == "get":
                    ref_turn += 1
                    store.containers.get((name, cid[:12], cid)[ref_turn % 3])
                elif op == "list":
                    store.containers.list({"label": f"group=g{rng.randrange(GROUPS)}", "status": "running"})
                elif op == "update":
                    store.containers.update(cid, _bump)
                elif op == "lock":
                    with store.lock(cid, ttl=5.0, timeout=2.0) as lease:
                        store.containers.update(cid, _bump, lease=lease)
                else:
                    store.snapshot()
            except LockTimeoutError:
                timeouts += 1
                continue
            except Exception as exc:  # counted and reported, never fatal for the run
                kind = type(exc).__name__
                errors[op][kind] = errors[op].get(kind, 0) + 1
                continue
            lat[op].append(time.perf_counter() - t0)
        elapsed = time.monotonic() - start
    results.put({"pid": os.getpid(), "lat": lat, "errors": errors, "timeouts": timeouts,
                 "elapsed": elapsed, "max_lag": max_lag})


# --- the run ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    ctx = mp.get_context("spawn")
    with Store.from_url(args.redis_url, namespace=args.namespace) as store:
        t0 = time.monotonic()
        targets = create_containers(store, run_id, args.containers)
        setup = time.monotonic() - t0
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        per_proc = args.rate / args.processes
        procs = [ctx.Process(target=worker, daemon=True, args=(
            args.redis_url, args.namespace, run_id, targets, args.mix, per_proc, args.duration,
            args.seed + i, ready, go, results)) for i in range(args.processes)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                ready.get(timeout=60)
            go.set()
            reports = [results.get(timeout=args.duration + 120) for _ in procs]
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
        deleted = 0 if args.keep else delete_containers(store, run_id)
    return summarize(args, run_id, setup, reports, deleted)


def summarize(args: argparse.Namespace, run_id: str, setup: float, reports: list[dict[str, Any]],
              deleted: int) -> dict[str, Any]:
    elapsed = max(r["elapsed"] for r in reports)
    ops: dict[str, Any] = {}
    total = 0
    n_errors = 0
    for op in OPS:
        values = sorted(v for r in reports for v in r["lat"].get(op, []))
        errs: dict[str, int] = {}
        for r in reports:
            for kind, n in r["errors"].get(op, {}).items():
                errs[kind] = errs.get(kind, 0) + n
        if not values and not errs:
            continue
        total += len(values)
        n_errors += sum(errs.values())
        ops[op] = {
            "count": len(values), "ops_per_s": round(len(values) / elapsed, 1),
            "p50_ms": ms(percentile(values, 0.50)), "p90_ms": ms(percentile(values, 0.90)),
            "p99_ms": ms(percentile(values, 0.99)), "max_ms": ms(values[-1] if values else 0.0),
            "errors": errs,
        }
    return {
        "run": run_id, "namespace": args.namespace, "containers": args.containers, "processes": args.processes,
        "target_ops_per_s": args.rate, "duration_s": round(elapsed, 3), "setup_s": round(setup, 3),
        "ops": total, "ops_per_s": round(total / elapsed, 1) if elapsed else 0.0, "errors": n_errors,
        "lock_timeouts": sum(r["timeouts"] for r in reports),
        "max_lag_ms": round(max(r["max_lag"] for r in reports) * 1000, 1), "deleted": deleted, "per_op": ops,
    }


def print_table(s: dict[str, Any]) -> None:
    print(f"loadgen run {s['run']}: namespace {s['namespace']!r}, {s['containers']} containers "
          f"(created in {s['setup_s']:.1f}s), {s['processes']} processes, {s['duration_s']:.1f}s")
    print(f"target {s['target_ops_per_s']:g} ops/s, achieved {s['ops_per_s']:.1f} ops/s "
          f"({s['ops']} ops, {s['errors']} errors, {s['lock_timeouts']} lock timeouts, "
          f"worst schedule lag {s['max_lag_ms']:.1f} ms)")
    rows = [["OP", "COUNT", "OPS/S", "P50 MS", "P90 MS", "P99 MS", "MAX MS", "ERRORS"]]
    for op, o in s["per_op"].items():
        errs = ", ".join(f"{k}={v}" for k, v in sorted(o["errors"].items())) or "0"
        rows.append([op, str(o["count"]), f"{o['ops_per_s']:.1f}", f"{o['p50_ms']:.3f}", f"{o['p90_ms']:.3f}",
                     f"{o['p99_ms']:.3f}", f"{o['max_ms']:.3f}", errs])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if s["deleted"]:
        print(f"deleted the run's {s['deleted']} containers")


def positive(kind: type) -> Any:
    def conv(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return v

    return conv


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loadgen", description="Paced random load on a statestore namespace.")
    p.add_argument("--redis-url", default=os.environ.get("STATESTORE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--namespace", default=os.environ.get("STATESTORE_NAMESPACE", "loadgen"))
    p.add_argument("--containers", type=positive(int), default=100, help="containers to create (default 100)")
    p.add_argument("--rate", type=positive(float), default=500.0, help="target ops/s, all processes (default 500)")
    p.add_argument("--duration", type=positive(float), default=10.0, help="seconds of load (default 10)")
    p.add_argument("--processes", type=positive(int), default=2, help="worker processes (default 2)")
    p.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                   help=f"operation weights (default {DEFAULT_MIX})")
    p.add_argument("--seed", type=int, default=1, help="random seed of the first worker (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the containers after the run")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except StateStoreError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        print_table(summary)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
