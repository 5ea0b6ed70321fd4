"""Private redis-server processes for tests (and fault injection).

The suite never uses a Redis it did not start: each server gets a free port
and its own directory.  If ``redis-server`` is not installed the suite fails
with a clear message instead of skipping.

A server can be given the text of a config file (``config=``), run as a
Sentinel (``sentinel=True``: ``redis-server <dir>/sentinel.conf --sentinel``),
and be restarted on the same port and directory (``restart()``), so what it
persisted (AOF, RDB, a Sentinel's rewritten config, a cluster node's
nodes.conf) is loaded again.  Multi-process topologies built on it (Sentinel,
Cluster) are in ``tests/topology.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not installed: the statestore test suite needs a real Redis "
            "(apt-get install redis-server, or run .ci/run which installs it)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open until every one is chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class RedisProcess:
    """One redis-server on 127.0.0.1:<free port>, started in its own directory.

    ``extra`` are command-line options (``"--appendfsync", "always"``).
    ``config`` is the text of a config file, written to ``<dir>/redis.conf``
    (``sentinel.conf`` for a Sentinel) on the first start only, so a file the
    server rewrote (Sentinel state, ``CONFIG REWRITE``) survives ``restart()``.
    Command-line options override the file.  ``sentinel=True`` runs
    ``redis-server <dir>/sentinel.conf --sentinel``.
    """

    def __init__(self, *extra: str, port: int | None = None, appendonly: bool = False,
                 config: str | None = None, sentinel: bool = False) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="statestore-sentinel-" if sentinel else "statestore-redis-"))
        self.extra = list(extra)
        self.appendonly = appendonly
        self.config = config
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None
        #: how many times the server was started (1 after start(), 2 after one restart, ...)
        self.starts = 0

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def config_path(self) -> Path:
        return self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log file (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start the server (again, if it ran before) and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self._close_pipes()
        args = [redis_server_binary()]
        if self.config is not None or self.sentinel:
            if not self.config_path.exists():
                self.config_path.write_text(self.config or "")
            args.append(str(self.config_path))
            if self.sentinel:
                args.append("--sentinel")
        args += ["--port", str(self.port), "--bind", HOST, "--dir", str(self.dir),
                 "--logfile", str(self.log_path)]
        if not self.sentinel:
            args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.starts += 1
        deadline = time.monotonic() + timeout
        # no client-side retries: redis-py's default backoff would turn each refused probe into seconds
        probe = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                            retry=Retry(NoBackoff(), 0))
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {err}{self.log_tail()}")
                try:
                    probe.ping()  # LOADING (BusyLoadingError) is a ConnectionError: keep waiting
                    return self
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            probe.close()
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout:g}s\n{self.log_tail()}")

    def restart(self, *, kill: bool = False, down_for: float = 0.0, timeout: float = 10.0) -> RedisProcess:
        """Stop the server (SIGKILL with ``kill``, else SIGTERM), wait ``down_for`` seconds
        and start it again on the same port and directory, so it reloads its AOF/RDB."""
        if kill:
            self.kill()
        else:
            self.stop()
        if down_for > 0:
            time.sleep(down_for)
        return self.start(timeout)

    def client(self, **kw: object) -> redis.Redis:
        kw.setdefault("host", HOST)
        return redis.Redis(port=self.port, **kw)  # type: ignore[arg-type]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed that was not already) and reap."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipes()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc and self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
