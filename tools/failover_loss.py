#!/usr/bin/env python3
"""Acknowledged commits lost in a Sentinel failover, with and without ``durability="replicated"``.

Each run starts a private topology on loopback (a master, two replicas, three Sentinels with
``down-after-milliseconds 1000``; ``tests/topology.py``), runs writer processes
(``tests/failover_writer.py``) against the Sentinel URL, and after about ``--before`` seconds
injects a fault into the master:

* ``kill``: SIGKILL (a crash);
* ``pause``: SIGSTOP until every Sentinel reports a new master, then SIGCONT (a master that
  stalled, e.g. a paused VM, and came back; the Sentinels turn it into a replica a few seconds
  later, and meanwhile clients still connected to it keep using it).

It then lets the writers commit for about ``--after`` seconds more and compares every commit a
writer saw acknowledged with what the new master holds (``tests/failover_scenario.py``).

    .venv/bin/python tools/failover_loss.py                 # 3 runs of each mode and fault
    .venv/bin/python tools/failover_loss.py --runs 5 --faults kill --writers 2 --markdown

Columns: ``commits/s`` acknowledged commits per second before the fault (all writers; the mean on
``all`` lines); ``acked`` commits acknowledged to a writer (``after`` of them after the failover settled);
``unknown`` commits that raised DurabilityError or CommitIndeterminateError; ``lost`` acknowledged
commits that are not in the new master's history of their record (per record: acknowledged commits
minus its final version); ``older`` acknowledged commits whose record is missing on the new master
or holds a lower version; ``failover`` seconds from the fault until every Sentinel reported the new
master; ``recovery`` (kill) seconds from the SIGKILL to the first commit acknowledged by the new
master; ``zombie`` (pause) seconds the resumed old master went on answering as a master.  Exit
status 1 if a run failed or a ``replicated`` run lost an acknowledged commit.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.failover_scenario import FailoverRun, run_failover  # noqa: E402


def _redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.split("v=")[1].split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs of each mode (default 3)")
    ap.add_argument("--modes", default="fast,replicated", help="comma-separated: fast, replicated")
    ap.add_argument("--faults", default="kill,pause", help="comma-separated: kill, pause")
    ap.add_argument("--writers", type=int, default=1, help="writer processes per run (default 1)")
    ap.add_argument("--before", type=float, default=2.0, help="seconds of writing before the kill")
    ap.add_argument("--after", type=float, default=2.0, help="seconds of writing after the failover")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if args.runs < 1 or args.writers < 1 or any(m not in ("fast", "replicated") for m in modes) \
            or any(f not in ("kill", "pause") for f in faults):
        ap.error("--runs and --writers must be positive; --modes takes fast and replicated, --faults kill and pause")

    print(f"# failover_loss: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, redis-server {_redis_version()}, redis-py {redis.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"# {args.runs} run(s) per mode and fault, {args.writers} writer process(es), fault after "
          f"~{args.before:g}s, {args.after:g}s of writes after the failover", flush=True)
    results: list[tuple[int, FailoverRun]] = []
    failed = 0
    for i in range(1, args.runs + 1):
        # alternate modes and faults, so that a slow stretch of the machine hits all of them
        for fault, mode in [(f, m) for f in faults for m in modes]:
            started = time.monotonic()
            try:
                run = run_failover(mode, fault=fault, namespace=f"loss{i}", before_seconds=args.before,
                                   before_acks=50, after_seconds=args.after, after_acks=50,
                                   writers=args.writers, log=print if args.verbose else None)
            except Exception as exc:  # one failed run must not hide the others' figures
                failed += 1
                print(f"run {i} {mode}/{fault}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            results.append((i, run))
            print(f"run {i} ({time.monotonic() - started:.0f}s) {run.summary()}", flush=True)
            for ex in run.lost_examples[:3]:
                print(f"    lost: {ex}")
            if run.writer_rc:
                failed += 1
                print(f"    writer exited {run.writer_rc}: {run.writer_stderr[-1000:]}")

    def span(values: list[float]) -> str:
        values = sorted(values)
        return "-" if not values else f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}-{values[-1]:.2f}"

    head = ["run", "fault", "mode", "commits/s", "acked", "after", "unknown", "lost", "older", "failover s",
            "recovery s", "zombie s", "fsck"]
    rows = [[str(i), r.fault, r.durability, f"{r.rate_before:.0f}", str(r.acked), str(r.acked_after_failover),
             str(r.unknown),
             str(r.lost), str(r.older), f"{r.failover:.2f}", "-" if r.recovery is None else f"{r.recovery:.2f}",
             "-" if r.zombie is None else f"{r.zombie:.1f}", "clean" if r.fsck_clean else "NOT clean"]
            for i, r in results]
    for fault in faults:
        for mode in modes:
            rs = [r for _, r in results if r.durability == mode and r.fault == fault]
            if not rs:
                continue
            rows.append(["all", fault, mode, f"{sum(r.rate_before for r in rs) / len(rs):.0f}",
                         str(sum(r.acked for r in rs)),
                         str(sum(r.acked_after_failover for r in rs)), str(sum(r.unknown for r in rs)),
                         str(sum(r.lost for r in rs)), str(sum(r.older for r in rs)),
                         span([r.failover for r in rs]), span([r.recovery for r in rs if r.recovery is not None]),
                         span([r.zombie for r in rs if r.zombie is not None]),
                         f"{sum(r.fsck_clean for r in rs)}/{len(rs)} clean"])
    print()
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    replicated_lost = sum(r.lost for _, r in results if r.durability == "replicated")
    if replicated_lost:
        print(f"\n{replicated_lost} acknowledged replicated commit(s) lost")
    return 1 if failed or replicated_lost else 0


if __name__ == "__main__":
    sys.exit(main())
