"""A Redis of one's own, for the demo and for trying statestore on a bare machine.

``start_embedded()`` starts, in this order of preference:

* ``redis-server``: a private server on a free port of 127.0.0.1, in a
  temporary directory, without persistence; ``close()`` stops it and removes
  the directory.
* ``fakeredis``: an in-process fakeredis server (``fakeredis.TcpFakeServer``,
  with Lua through ``lupa``) listening on a free port of 127.0.0.1, so other
  processes connect to it exactly as to a real Redis.  It lives in threads of
  the process that started it and disappears with it.

Everything statestore uses works on fakeredis over TCP (WATCH/MULTI/EXEC with
EVALSHA, XREAD BLOCK, BLPOP, PUBLISH from scripts, consumer groups).  One
thing the server class gets wrong for a Redis server is fixed here: it does
not set ``TCP_NODELAY`` on its sockets, so every pipelined round trip (a
statestore commit is one) waits for the peer's delayed ACK, about 40 ms.

``redis_answers(url)`` tells whether a Redis answers at ``url``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

BACKENDS = ("auto", "redis-server", "fakeredis")


class EmbeddedError(RuntimeError):
    """The requested embedded Redis cannot be started."""


@dataclass
class Embedded:
    """A running embedded Redis: ``url`` to connect to, ``kind`` (redis-server or fakeredis)."""

    url: str
    kind: str
    port: int
    detail: str = ""
    _close: Callable[[], None] = field(default=lambda: None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Stop the server (idempotent)."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Embedded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(url: str, timeout: float = 0.3) -> bool:
    """True if a Redis answers PING at ``url`` within ``timeout`` seconds.

    Sentinel and Cluster URLs (``redis+sentinel://``, ``redis+cluster://``) are
    asked through a store, which knows how to reach their primary.
    """
    if "+" in url.split("://", 1)[0]:
        from . import StateStoreError, Store

        try:
            with Store.from_url(url, namespace="ping", unavailable_timeout=timeout) as store:
                store.ping()
                return True
        except StateStoreError:
            return False
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def fakeredis_available() -> bool:
    """fakeredis and lupa (its Lua) are importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("fakeredis", "lupa"))


def start_embedded(backend: str = "auto") -> Embedded:
    """Start a private Redis: ``redis-server`` if installed (or asked for), else fakeredis.

    Raises EmbeddedError if the backend asked for cannot be started.
    """
    if backend not in BACKENDS:
        raise EmbeddedError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    if backend == "redis-server" or (backend == "auto" and shutil.which("redis-server")):
        return _start_redis_server()
    return _start_fakeredis()


# --- redis-server -----------------------------------------------------------------------------


def _start_redis_server() -> Embedded:
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedError("redis-server is not installed (apt-get install redis-server), "
                            "or use the fakeredis backend")
    workdir = Path(tempfile.mkdtemp(prefix="statestore-embedded-"))
    last_error = ""
    for _ in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
             "--appendonly", "no", "--logfile", str(workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if redis_answers(url, 0.5):
                version = _server_version(url)

                def close(proc: subprocess.Popen[bytes] = proc) -> None:
                    if proc.poll() is None:
                        proc.terminate()
                        try:
                            proc.wait(10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait(5)
                    shutil.rmtree(workdir, ignore_errors=True)

                return Embedded(url=url, kind="redis-server", port=port,
                                detail=f"private redis-server {version} on port {port}", _close=close)
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            last_error = (workdir / "redis.log").read_text()[-500:]
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    shutil.rmtree(workdir, ignore_errors=True)
    raise EmbeddedError(f"redis-server did not start: {last_error.strip() or 'no answer within 10 s'}")


def _server_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    try:
        info: dict[str, Any] = client.info("server")
        return str(info.get("redis_version", "?"))
    except redis.RedisError:
        return "?"
    finally:
        client.close()


# --- fakeredis ----------------------------------------------------------------------------------


def _start_fakeredis() -> Embedded:
    if not fakeredis_available():
        raise EmbeddedError("neither redis-server nor fakeredis is installed: install redis-server, or "
                            "pip install 'statestore[embedded]' (fakeredis with lupa)")
    from fakeredis import TcpFakeServer

    class Server(TcpFakeServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            sock, addr = super().get_request()
            # what redis-server does; without it a pipelined round trip costs ~40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, addr

    server = Server(("127.0.0.1", 0))
    # handler threads must neither keep the process alive nor be joined at close:
    # one may sit in a blocking command (XREAD BLOCK) until its timeout
    server.daemon_threads = True
    server.block_on_close = False
    port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="statestore-fakeredis", daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url, 0.5):
        if time.monotonic() > deadline:
            server.shutdown()
            server.server_close()
            raise EmbeddedError("the fakeredis server did not answer")
        time.sleep(0.02)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    import fakeredis

    return Embedded(url=url, kind="fakeredis", port=port,
                    detail=f"in-process fakeredis {fakeredis.__version__} on port {port}", _close=close)


__all__ = ["BACKENDS", "Embedded", "EmbeddedError", "fakeredis_available", "free_port", "redis_answers",
           "start_embedded"]
