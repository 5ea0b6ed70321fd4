"""The demo's child processes (the querier and the watcher), seen from the driver."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

# --- child processes ----------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("STATESTORE_REDIS_URL", None)
    return env


class Helper:
    """A querier or watcher process: JSON lines on stdout, commands on stdin."""

    def __init__(self, role: str, argv: list[str], log: IO[bytes]) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "statestore.demo", role, *argv], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, env=_child_env(), text=True, bufsize=1)
        self.latest: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self.ready = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"{role}-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ready"):
                self.latest = msg
                self.ready.set()
            elif msg.get("final"):
                self.final = msg
            else:
                self.latest = msg
        self.done.set()
        self.ready.set()

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(self, line: str, timeout: float) -> dict[str, Any] | None:
        self.send(line)
        self.done.wait(timeout)
        self.stop()
        return self.final

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if f is not None:
                    f.close()
