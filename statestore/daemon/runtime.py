"""The simulated runtime: fake processes with random latency, hangs and failures (see the package doc)."""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import (
    Container,
)

log = logging.getLogger("statestore.daemon")


# --- the simulated runtime ------------------------------------------------------------------------


class RuntimeFailure(Exception):
    """The (simulated) runtime refused or failed an operation."""


class Interrupted(Exception):
    """A runtime call was abandoned because the replica is shutting down."""


class ActionError(Exception):
    """The daemon refuses an action (as Docker's daemon would), e.g. removing a running container."""


@dataclass
class Process:
    """A fake container process: lives only in the replica that started it."""

    pid: int
    started: float
    paused: bool = False


class Runtime:
    """A simulated container runtime.  Its live state is in memory, never in the record.

    Every call sleeps a random latency.  A call for a container named in
    ``hang`` blocks until the replica shuts down (one in ``hang_stop`` only when it is
    stopped or killed); one named in ``fail`` fails.
    A work item's ``hang``/``fail`` arguments do the same for that one call.
    """

    def __init__(self, latency_ms: tuple[float, float] = (5.0, 50.0), hang: Iterable[str] = (),
                 fail: Iterable[str] = (), rng: random.Random | None = None, hang_stop: Iterable[str] = ()) -> None:
        self.latency_ms = latency_ms
        self.hang_refs = tuple(hang)
        self.hang_stop_refs = tuple(hang_stop)
        self.fail_refs = tuple(fail)
        self.processes: dict[str, Process] = {}
        self.hanging: dict[str, tuple[str, float]] = {}
        self.interrupt = threading.Event()
        self._rng = rng or random.Random()
        self._pids = itertools.count(self._rng.randint(1000, 30000))
        self._mutex = threading.Lock()

    @staticmethod
    def matches(refs: Sequence[str], c: Container) -> bool:
        for ref in refs:
            bare = ref[1:] if ref.startswith("/") else ref
            if bare in (c.id, c.name) or (re.fullmatch(r"[0-9a-f]{4,64}", bare) and c.id.startswith(bare)):
                return True
        return False

    def _call(self, op: str, c: Container, args: dict[str, Any]) -> None:
        if args.get("fail") or self.matches(self.fail_refs, c):
            raise RuntimeFailure(f"runtime: {op} of {c.name} failed (simulated)")
        hang = args.get("hang")
        forever = self.matches(self.hang_refs, c) or (op in ("stop", "kill") and self.matches(self.hang_stop_refs, c))
        if forever or (isinstance(hang, int | float) and hang > 0):
            seconds = None if forever else float(hang)  # type: ignore[arg-type]
            log.warning("runtime: %s of %s (%s) hangs %s, holding its lock", op, c.name, c.id[:12],
                        "until shutdown" if seconds is None else f"for {seconds:g}s")
            started = time.monotonic()
            with self._mutex:
                self.hanging[c.id] = (op, started)
            try:
                if self.interrupt.wait(seconds):
                    raise Interrupted(f"runtime: {op} of {c.name} interrupted by shutdown")
            finally:
                with self._mutex:
                    self.hanging.pop(c.id, None)
            log.info("runtime: %s of %s returned after %.1fs", op, c.name, time.monotonic() - started)
        lo, hi = self.latency_ms
        if self.interrupt.wait(self._rng.uniform(lo, hi) / 1000.0):
            raise Interrupted(f"runtime: {op} of {c.name} interrupted by shutdown")

    # the operations ------------------------------------------------------------------------------
    def create(self, c: Container, args: dict[str, Any]) -> None:
        self._call("create", c, args)

    def start(self, c: Container, args: dict[str, Any]) -> int:
        self._call("start", c, args)
        pid = next(self._pids)
        with self._mutex:
            self.processes[c.id] = Process(pid, time.monotonic())
        return pid

    def stop(self, c: Container, args: dict[str, Any], sig: str = "SIGTERM") -> int:
        self._call("kill" if sig == "SIGKILL" else "stop", c, args)
        with self._mutex:
            self.processes.pop(c.id, None)
        return 137 if sig == "SIGKILL" else 0

    def pause(self, c: Container, args: dict[str, Any], paused: bool) -> None:
        self._call("pause" if paused else "unpause", c, args)
        with self._mutex:
            proc = self.processes.get(c.id)
            if proc is not None:
                proc.paused = paused

    def rename(self, c: Container, args: dict[str, Any]) -> None:
        self._call("rename", c, args)

    def exec(self, c: Container, args: dict[str, Any]) -> int:
        self._call("exec", c, args)
        return next(self._pids)

    def wait_exec(self, c: Container) -> int:
        self._call("exec-wait", c, {})
        return 0

    def delete(self, c: Container, args: dict[str, Any]) -> None:
        self._call("delete", c, args)
        self.forget(c.id)

    def forget(self, cid: str) -> None:
        with self._mutex:
            self.processes.pop(cid, None)

    def running(self) -> list[str]:
        with self._mutex:
            return list(self.processes)
