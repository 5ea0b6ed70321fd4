"""Redis Cluster: a namespace lives in one hash slot; the store talks to that slot's primary.

Every key of a namespace carries the hash tag ``{<namespace>}`` (see
``_keys``), so all of them -- records, names, indexes, the change log, the
lock keys -- live in one slot, on one shard.  A WATCH/MULTI commit or a
script never crosses slots, and a store needs exactly one connection target:
the primary that serves its slot.

:class:`SlotConnectionPool` is a plain ``redis.ConnectionPool`` whose
connections resolve their address from a shared :class:`SlotRouter` each
time they connect.  The rest of statestore (commit engine, locks, watchers,
fsck, CLI) therefore uses an ordinary ``redis.Redis`` on top of it and needs
no cluster-specific code, only the error handling every store already has:

* ``MOVED`` (the slot now lives elsewhere: a resharding finished or a replica
  was promoted) updates the router from the reply itself and is retried like a
  lost connection.  Connections still pointing at the old owner are closed
  when they go back to the pool.
* ``ASK``/``TRYAGAIN`` (the slot is being migrated right now) are retried
  with backoff until the migration has finished: statestore does not follow
  ``ASK`` into the importing node, because a transaction must see all of a
  namespace's keys in one place.  Calls of that one namespace wait (bounded
  by ``unavailable_timeout``) while its slot moves; other namespaces are not
  affected.
* A connection that cannot be established (the primary died) makes the
  router ask the other known nodes for the slot map (``CLUSTER SLOTS``)
  before the next attempt, so a failover inside the cluster is followed.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as redis
import redis.exceptions as rex
from redis.crc import key_slot

from .._synchronization import AsyncLock


def untyped(obj: object) -> Any:
    """``obj`` as ``Any``, for the redis-py calls that some supported versions annotate and
    others do not: a ``type: ignore[no-untyped-call]`` would be an unused ignore (an error
    under ``mypy --strict``) on the versions that do."""
    return obj


class SlotRouter:
    """Which cluster node serves one hash slot, learned from ``CLUSTER SLOTS`` and ``MOVED``."""

    def __init__(self, slot: int, seeds: Iterable[tuple[str, int]], connect_kwargs: dict[str, Any],
                 connection_class: type[redis.Connection]) -> None:
        self.slot = slot
        self._known: list[tuple[str, int]] = list(dict.fromkeys(seeds))
        if not self._known:
            raise ValueError("a cluster needs at least one startup node")
        self._kwargs = connect_kwargs
        self._connection_class = connection_class
        self._lock = AsyncLock()
        self.current: tuple[str, int] | None = None
        # the owner before ``invalidate``: a refresh that finds another node is a move too
        self._last: tuple[str, int] | None = None
        #: how many times the owner changed (MOVED or a refresh that found another node)
        self.moves = 0

    async def address(self) -> tuple[str, int]:
        current = self.current
        if current is not None:
            return current
        async with self._lock:
            if self.current is None:
                self._set(await self._lookup())
            assert self.current is not None
            return self.current

    async def moved(self, host: str, port: int) -> None:
        """A ``MOVED`` reply named the slot's new owner."""
        async with self._lock:
            addr = (host, int(port))
            if addr not in self._known:
                self._known.append(addr)
            self._set(addr)

    async def invalidate(self, address: tuple[str, int]) -> None:
        """``address`` could not be reached: ask the cluster again before the next connection."""
        async with self._lock:
            if self.current == address:
                self._last, self.current = address, None

    def _set(self, addr: tuple[str, int]) -> None:
        last = self.current if self.current is not None else self._last
        if last is not None and last != addr:
            self.moves += 1
        self.current, self._last = addr, None

    async def _lookup(self) -> tuple[str, int]:
        errors: list[str] = []
        # any node can answer CLUSTER SLOTS; the owner that just could not be reached
        # is asked last, so a dead primary does not cost a connect timeout first
        for host, port in sorted(self._known, key=lambda a: a == self._last):
            conn = self._connection_class(host=host, port=port, **self._kwargs)
            try:
                await untyped(conn).connect()
                await untyped(conn).send_command("CLUSTER", "SLOTS")
                reply = await conn.read_response()
            except (rex.ConnectionError, rex.TimeoutError, rex.ResponseError, OSError) as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            finally:
                await untyped(conn).disconnect()
            owner = self._parse(reply, host)
            if owner is not None:
                return owner
            errors.append(f"{host}:{port}: slot {self.slot} is not served by any node")
        # a ConnectionError: the store retries it within its unavailable_timeout
        raise rex.ConnectionError(f"no Redis Cluster node could name the owner of slot {self.slot}: "
                                  + "; ".join(errors))

    def _parse(self, reply: Any, asked_host: str) -> tuple[str, int] | None:
        owner: tuple[str, int] | None = None
        for entry in reply or ():
            start, end = int(entry[0]), int(entry[1])
            for i, node in enumerate(entry[2:]):
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                if host in ("", "?"):  # "the node you asked" (cluster-announce without an IP)
                    host = asked_host
                addr = (host, int(node[1]))
                if addr not in self._known:
                    self._known.append(addr)
                if i == 0 and start <= self.slot <= end:
                    owner = addr
        return owner


class SlotConnection(redis.Connection):
    """A connection to whichever node the router names when it connects."""

    def __init__(self, *, router: SlotRouter, **kwargs: Any) -> None:
        self.router = router
        untyped(super()).__init__(**kwargs)

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        # every connect goes through here (redis-py 6.x); its parameters differ by version
        # (``retry_socket_connect`` appeared in 6.3), so they are passed on as given
        if self.is_connected:  # unasync: sync: if self._sock:
            return
        self.host, self.port = await self.router.address()
        try:
            await untyped(super()).connect_check_health(*args, **kwargs)
        except (rex.ConnectionError, rex.TimeoutError, OSError):
            await self.router.invalidate((self.host, self.port))
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except rex.AskError as exc:
            if type(exc) is rex.MovedError:
                await self.router.moved(exc.host, exc.port)
            raise
        except rex.ResponseError as exc:
            # a script that reads keys by name (not declared) while its slot is
            # being migrated, or during a cluster outage: retry like TRYAGAIN
            msg = str(exc)
            if "non local key" in msg or "cluster is down" in msg:
                raise rex.TryAgainError(msg) from None
            raise


class SlotSSLConnection(SlotConnection, redis.SSLConnection):
    """:class:`SlotConnection` over TLS."""


class SlotConnectionPool(redis.ConnectionPool):
    """A pool whose connections all go to the primary of one hash slot (see the module doc)."""

    def __init__(self, router: SlotRouter, connection_class: type[redis.Connection] = SlotConnection,
                 max_connections: int | None = None, **connection_kwargs: Any) -> None:
        connection_kwargs.pop("host", None)
        connection_kwargs.pop("port", None)
        super().__init__(connection_class=connection_class, max_connections=max_connections,
                         router=router, **connection_kwargs)
        self.router = router

    async def release(self, connection: Any) -> None:
        if (connection.host, connection.port) != self.router.current:
            # it points at a node that no longer serves the slot (or was never connected)
            await connection.disconnect()
        await super().release(connection)

    def __repr__(self) -> str:
        return f"<SlotConnectionPool(slot={self.router.slot}, node={self.router.current})>"


def slot_client(cluster: redis.RedisCluster, hash_key: str) -> redis.Redis:
    """A ``redis.Redis`` on the primary that serves ``hash_key``'s slot, following it as it moves.

    Connection settings (credentials, TLS, timeouts) are the cluster client's own.
    """
    # an async client learns the cluster's nodes on first use: its startup nodes will do
    nodes: list[Any] = untyped(cluster).get_nodes() or list(untyped(cluster).nodes_manager.startup_nodes.values())
    if not nodes:
        raise rex.ConnectionError("the RedisCluster client knows no nodes")
    pool = nodes[0]  # unasync: sync: pool = nodes[0].redis_connection.connection_pool
    kwargs = dict(pool.connection_kwargs)
    for k in ("host", "port", "connection_pool"):
        kwargs.pop(k, None)
    ssl = issubclass(pool.connection_class, redis.SSLConnection)
    conn_class: type[redis.Connection] = SlotSSLConnection if ssl else SlotConnection
    seeds = [(n.host, int(n.port)) for n in nodes]
    # the router's own probes: the same settings, a short timeout, no retries
    probe = {k: v for k, v in kwargs.items() if k not in ("retry", "retry_on_error", "retry_on_timeout")}
    probe.update(socket_timeout=min(2.0, probe.get("socket_timeout") or 2.0),
                 socket_connect_timeout=min(2.0, probe.get("socket_connect_timeout") or 2.0),
                 decode_responses=False)
    probe_class = redis.SSLConnection if ssl else redis.Connection
    router = SlotRouter(key_slot(hash_key.encode()), seeds, probe, probe_class)
    return redis.Redis(connection_pool=SlotConnectionPool(router, connection_class=conn_class,
                                                          max_connections=pool.max_connections, **kwargs))


__all__ = ["SlotConnection", "SlotConnectionPool", "SlotRouter", "SlotSSLConnection", "slot_client"]
