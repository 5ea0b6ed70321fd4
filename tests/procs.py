"""Running test workers in several OS processes (spawned), released together by one barrier."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

SPAWN = mp.get_context("spawn")


def run_processes(target: Callable[..., None], arg_sets: Sequence[tuple[Any, ...]],
                  timeout: float = 60.0, while_waiting: Callable[[], None] | None = None) -> list[tuple[Any, ...]]:
    """Start one spawned process per argument tuple, all released by one barrier; collect reports.

    Each worker is called as ``target(*args, barrier, out)`` and puts one report tuple on ``out``
    (``("error", ...)`` fails the test).  ``while_waiting`` runs over and over in this process
    until every worker has reported.
    """
    out = SPAWN.Queue()
    barrier = SPAWN.Barrier(len(arg_sets))
    procs = [SPAWN.Process(target=target, args=(*args, barrier, out), daemon=True) for args in arg_sets]
    for p in procs:
        p.start()
    reports: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(reports) < len(procs):
            if while_waiting is not None:
                while_waiting()
            try:
                reports.append(out.get(timeout=0.001 if while_waiting else max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {len(procs)} workers reported within {timeout}s: {reports}")
    finally:
        reap(procs)
        out.close()
    errors = [r for r in reports if r[0] == "error"]
    assert not errors, "worker failed:\n" + "\n".join(str(e) for e in errors)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def reap(procs: Sequence[Any]) -> None:
    """Join the processes; terminate any that do not end."""
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.terminate()
            p.join(5)
