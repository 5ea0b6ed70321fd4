"""A TCP proxy in front of a private redis-server that can lose a transaction's EXEC or its reply.

``FaultProxy(redis_port).start()`` listens on a free loopback port and relays
bytes both ways.  ``arm(mode, hook)`` makes the *next* client write that
contains ``EXEC`` fail once:

* ``"drop_reply"``: the write is delivered to Redis (the transaction runs),
  then -- after ``hook()`` if given -- both sockets are closed before the
  reply is relayed: the client sees a connection lost after EXEC was sent,
  although the commit was applied.
* ``"drop_exec"``: the write is never delivered and both sockets are closed:
  the same symptom for the client, but nothing was applied.

The fault fires once; new connections are relayed normally.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

_EXEC = b"\r\nEXEC\r\n"


class FaultProxy:
    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._hook: Callable[[], None] | None = None
        self.fired = 0
        self._closed = False
        self._socks: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def arm(self, mode: str, hook: Callable[[], None] | None = None) -> None:
        assert mode in ("drop_reply", "drop_exec")
        with self._lock:
            self._mode, self._hook = mode, hook

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for s in list(self._socks):
            _close(s)

    def _take(self, chunk: bytes) -> tuple[str | None, Callable[[], None] | None]:
        if _EXEC not in chunk:
            return None, None
        with self._lock:
            mode, hook = self._mode, self._hook
            self._mode = self._hook = None
            if mode is not None:
                self.fired += 1
            return mode, hook

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.redis_port))
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, server]
            muted = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, muted), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, muted), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, muted: threading.Event) -> None:
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                mode, hook = self._take(chunk)
                if mode == "drop_exec":
                    break
                if mode == "drop_reply":
                    # the reply must not reach the client: stop relaying replies first
                    muted.set()
                    server.sendall(chunk)
                    time.sleep(0.05)  # let Redis run the transaction
                    if hook is not None:
                        hook()
                    break
                server.sendall(chunk)
        except OSError:
            pass
        _close(client)
        _close(server)

    def _downstream(self, server: socket.socket, client: socket.socket, muted: threading.Event) -> None:
        try:
            while True:
                chunk = server.recv(65536)
                if not chunk:
                    break
                if not muted.is_set():
                    client.sendall(chunk)
        except OSError:
            pass
        _close(client)
        _close(server)


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass
