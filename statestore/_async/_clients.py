"""Clients derived from the caller's: same server and credentials, the store's own settings.

(Written in ``statestore/_async``; ``statestore/_sync`` has the generated sync face.)

The store, its lock renewer and each watcher need connections that behave
differently from the caller's (raw bytes, no client-side retries, bounded
socket timeouts), to the same server.  :func:`derive_client` clones the
caller's connection pool with overrides, for every pool type statestore
supports: plain and blocking pools, Sentinel-managed pools (they keep
following the master through the same Sentinel manager) and the Cluster slot
pool of ``_cluster``.
"""

from __future__ import annotations

import shlex
import ssl
from typing import Any, cast

import redis.asyncio as redis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from .._edge import translate
from .._errors import InvalidArgumentError, StoreUnavailableError
from .._urls import MultiHostURL, is_multi_host, parse_multi_host
from ._cluster import SlotConnectionPool, slot_client, untyped

#: the client type the store and its parts hold (a name, so they need not import redis)
Client = redis.Redis
#: what a caller hands the store: a client of one server (or a Sentinel-managed one), or a cluster
UserClient = redis.Redis | redis.RedisCluster


def client_for_url(url: str) -> UserClient:
    """A new client for ``url``: redis-py's ``redis://``, ``rediss://`` and ``unix://`` URLs,
    and statestore's ``redis+sentinel://`` and ``redis+cluster://`` (docs/operations.md)."""
    if is_multi_host(url):
        spec = parse_multi_host(url)
        try:
            return _multi_host_client(spec)
        except rex.RedisClusterException as exc:  # not a RedisError: no node answered
            raise StoreUnavailableError(f"Redis Cluster is unavailable: {exc}") from None
        except rex.RedisError as exc:
            raise translate(exc) from None
    try:
        return redis.Redis.from_url(url)
    except (ValueError, rex.RedisError) as exc:
        raise InvalidArgumentError(f"invalid Redis URL {url!r}: {exc}") from None


def _multi_host_client(spec: MultiHostURL) -> UserClient:
    """The redis-py client a Sentinel or Cluster URL names."""
    if spec.kind == "sentinel":
        # no client-side retries on the Sentinels either (redis-py's default retries each one
        # for seconds): the store's unavailable_timeout bounds a call, and the next Sentinel is tried
        sentinel = untyped(Sentinel)(
            list(spec.hosts), sentinel_kwargs={"retry": Retry(NoBackoff(), 0), **spec.sentinel_options},
            **spec.options)
        return cast(redis.Redis, sentinel.master_for(
            spec.service, db=spec.db, username=spec.username, password=spec.password))
    nodes = [untyped(ClusterNode)(h, p) for h, p in spec.hosts]
    return redis.RedisCluster(startup_nodes=nodes, username=spec.username, password=spec.password,
                              **spec.options)


def namespace_client(client: UserClient, hash_key: str) -> redis.Redis:
    """The client of one server that a namespace lives on: ``client`` itself, or for a cluster
    the primary of ``hash_key``'s slot (followed as it moves).  InvalidArgumentError for
    anything that is not a redis-py client of this face."""
    if isinstance(client, redis.RedisCluster):
        try:
            return slot_client(client, hash_key)
        except rex.RedisError as exc:
            raise translate(exc) from None
    if not isinstance(client, redis.Redis):
        raise InvalidArgumentError(
            f"the store needs a redis.asyncio.Redis or redis.asyncio.RedisCluster client, not {type(client)!r}")
    return client


def is_cluster(client: UserClient) -> bool:
    return isinstance(client, redis.RedisCluster)


async def close_client(client: UserClient) -> None:
    """Close a client ``client_for_url`` made, with the Sentinel connections it opened."""
    await client.aclose()
    pool = client.connection_pool if isinstance(client, redis.Redis) else None
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def no_retries() -> Retry:
    """redis-py's retry setting for "never retry": the store's own policy decides (``_engine.Backoff``)."""
    return Retry(NoBackoff(), 0)


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
        new_pool = untyped(redis.BlockingConnectionPool)(
            connection_class=pool.connection_class, max_connections=limit, timeout=pool.timeout, **kwargs)
    elif type(pool) is SentinelConnectionPool:
        kwargs.pop("connection_class", None)
        new_pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name, pool.sentinel_manager, is_master=pool.is_master,
            check_connection=pool.check_connection, connection_class=pool.connection_class,
            max_connections=limit, **kwargs)
    elif type(pool) is SlotConnectionPool:
        kwargs.pop("router", None)
        new_pool = SlotConnectionPool(pool.router, connection_class=untyped(pool).connection_class,
                                      max_connections=limit, **kwargs)
    else:
        return None
    # the pool is this client's alone: aclose() must disconnect it (redis-py leaves a pool
    # it was given open, and its sockets would linger until garbage collection)
    return redis.Redis.from_pool(new_pool)


async def redis_cli(client: Client) -> str:
    """``redis-cli`` with the options that reach the server ``client`` talks to.

    The host and port (or socket), database, user and TLS files of the client's
    connections; never the password (``--askpass`` asks for it).  For a Sentinel
    or Cluster client, the primary it uses now (``-c`` for a cluster node).
    """
    pool = client.connection_pool
    kw = dict(getattr(pool, "connection_kwargs", {}) or {})
    cls = getattr(pool, "connection_class", None)
    args = ["redis-cli"]
    host: Any = kw.get("host")
    port: Any = kw.get("port")
    router = getattr(pool, "router", None)
    if router is not None:  # a cluster slot's primary (_cluster.SlotConnectionPool)
        args.append("-c")
        host, port = getattr(router, "current", None) or (None, None)
    elif isinstance(pool, SentinelConnectionPool):
        try:
            host, port = await untyped(pool).get_master_address()
        except (rex.RedisError, OSError, ValueError, TypeError):
            host = port = None
    if kw.get("path"):
        args += ["-s", str(kw["path"])]
    else:
        if host:
            args += ["-h", str(host)]
        if port:
            args += ["-p", str(port)]
    if kw.get("db"):
        args += ["-n", str(kw["db"])]
    if kw.get("username"):
        args += ["--user", str(kw["username"])]
    if kw.get("password") or kw.get("credential_provider"):
        args.append("--askpass")
    if isinstance(cls, type) and issubclass(cls, redis.SSLConnection):
        args.append("--tls")
        for opt, name in (("--cacert", "ssl_ca_certs"), ("--cert", "ssl_certfile"), ("--key", "ssl_keyfile")):
            if kw.get(name):
                args += [opt, str(kw[name])]
        reqs = kw.get("ssl_cert_reqs")
        if reqs in ("none", ssl.CERT_NONE):
            args.append("--insecure")
    return " ".join(shlex.quote(a) for a in args)


__all__ = ["Client", "UserClient", "client_for_url", "close_client", "derive_client", "is_cluster",
           "namespace_client", "no_retries", "redis_cli"]
