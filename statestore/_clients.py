"""Clients derived from the caller's: same server and credentials, the store's own settings.

The store, its lock renewer and each watcher need connections that behave
differently from the caller's (raw bytes, no client-side retries, bounded
socket timeouts), to the same server.  :func:`derive_client` clones the
caller's connection pool with overrides, for every pool type statestore
supports: plain and blocking pools, Sentinel-managed pools (they keep
following the master through the same Sentinel manager) and the Cluster slot
pool of ``_cluster``.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

from ._cluster import SlotConnectionPool


def derive_client(client: redis.Redis, max_connections: int | None = None,
                  **overrides: Any) -> redis.Redis | None:
    """A new client on a new pool like ``client``'s, with ``overrides`` applied to
    every connection; None when the pool type cannot be cloned."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.pop("connection_pool", None)
    kwargs.update(overrides)
    limit = max_connections or pool.max_connections
    new_pool: Any
    if type(pool) is redis.ConnectionPool:
        new_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=limit, **kwargs)
    elif type(pool) is redis.BlockingConnectionPool:
        new_pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            connection_class=pool.connection_class, max_connections=limit, timeout=pool.timeout, **kwargs)
    elif type(pool) is SentinelConnectionPool:
        kwargs.pop("connection_class", None)
        new_pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name, pool.sentinel_manager, is_master=pool.is_master,
            check_connection=pool.check_connection, connection_class=pool.connection_class,
            max_connections=limit, **kwargs)
    elif type(pool) is SlotConnectionPool:
        kwargs.pop("router", None)
        new_pool = SlotConnectionPool(pool.router, connection_class=pool.connection_class,
                                      max_connections=limit, **kwargs)
    else:
        return None
    derived = redis.Redis(connection_pool=new_pool)
    # the pool is this client's alone: close() must disconnect it (redis-py leaves a pool
    # it was given open, and its sockets would linger until garbage collection)
    derived.auto_close_connection_pool = True
    return derived


__all__ = ["derive_client"]
