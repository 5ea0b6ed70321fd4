"""Entry points for the multi-process Redis Cluster tests (``tests/test_cluster.py``).

Module-level functions in an importable module, so the ``spawn`` start method
finds them.  Each child builds its own cluster client and Store from what it
is given (nothing is inherited from the parent) and reports through a queue
as plain tuples; a child never raises, it reports ``("error", class, text)``.

``kind`` picks how the child connects, the two ways the library accepts a
cluster: ``"url"`` is ``Store.from_url("redis+cluster://h:p,h:p")`` and
``"cluster"`` is ``Store(redis.RedisCluster(startup_nodes=...))``.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.cluster import ClusterNode

from statestore import CommitIndeterminateError, StateStoreError, Store
from tests.workers import _error, bump, increments

Address = tuple[str, int]


def cluster_url(nodes: list[Address]) -> str:
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in nodes)


def open_store(kind: str, nodes: list[Address], namespace: str, **kwargs: Any) -> Store:
    """A Store on the cluster, by URL or on a RedisCluster client the store does not own."""
    if kind == "url":
        return Store.from_url(cluster_url(nodes), namespace=namespace, **kwargs)
    if kind == "cluster":
        rc = redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], decode_responses=True)
        return Store(rc, namespace=namespace, **kwargs)
    raise ValueError(kind)


def close_store(store: Store) -> None:
    store.close()
    if isinstance(store.user_client, redis.RedisCluster) and not store._owns_client:
        store.user_client.close()


def router_of(store: Store) -> Any:
    """The SlotRouter behind the store's own connection pool."""
    return store.client.connection_pool.router  # type: ignore[attr-defined]


def increment_worker(kind: str, nodes: list[Address], namespace: str, ref: str, times: int,
                     barrier: Any, out: Any) -> None:
    """``times`` read-modify-write increments of one label through ``update()``.

    Reports ``("done", increments, conflict_errors_escaped)``; an escaped
    ConflictError is retried here so the count stays exact.
    """
    try:
        store = open_store(kind, nodes, namespace)
        try:
            out.put(increments(store, ref, times, barrier))
        finally:
            close_store(store)
    except BaseException as exc:
        out.put(_error(exc))


def commit_loop_worker(kind: str, nodes: list[Address], namespace: str, ref: str, stop: Any,
                       acked: Any, barrier: Any, out: Any) -> None:
    """Increment ``ref``'s counter label until ``stop`` is set; ``acked.value`` counts acknowledged commits.

    Every call is timed.  Reports ``("done", acked, indeterminate, errors, max_call_s,
    ack_times, router_moves, router_address)``: ``errors`` maps an error class to
    (count, first text); ``ack_times`` are the monotonic clock readings of each
    acknowledgement (the clock is system-wide, so the parent can line them up with
    the migration); ``indeterminate`` counts CommitIndeterminateErrors (the commit
    may or may not have been applied).
    """
    try:
        store = open_store(kind, nodes, namespace)
        try:
            barrier.wait(timeout=60)
            n = indeterminate = 0
            errors: dict[str, list[Any]] = {}
            slowest = 0.0
            ack_times: list[float] = []
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    store.containers.update(ref, bump)
                except CommitIndeterminateError:
                    indeterminate += 1
                    continue
                except StateStoreError as exc:
                    e = errors.setdefault(type(exc).__name__, [0, str(exc)])
                    e[0] += 1
                    continue
                finally:
                    slowest = max(slowest, time.monotonic() - t0)
                n += 1
                ack_times.append(time.monotonic())
                with acked.get_lock():
                    acked.value = n
            router = router_of(store)
            out.put(("done", n, indeterminate, {k: tuple(v) for k, v in errors.items()}, slowest, ack_times,
                     router.moves, router.current))
        finally:
            close_store(store)
    except BaseException as exc:
        out.put(_error(exc))


def read_loop_worker(kind: str, nodes: list[Address], namespaces: list[str], name: str, stop: Any,
                     reads: Any, barrier: Any, out: Any) -> None:
    """Read in every namespace of ``namespaces`` until ``stop`` is set.

    Each round, per namespace: ``get(name)``, ``get(<12-char ID prefix>)``,
    ``list(all=True)`` with a label filter and ``snapshot()``.  ``reads.value``
    counts rounds.  Reports ``("done", {namespace: (ok, failures, max_call_s)},
    {error class: (count, first text)}, router_moves_per_namespace)``.
    """
    try:
        stores = {ns: open_store(kind, nodes, ns) for ns in namespaces}
        try:
            barrier.wait(timeout=60)
            stats = {ns: [0, 0, 0.0] for ns in namespaces}
            errors: dict[str, list[Any]] = {}
            prefixes = {ns: s.containers.get(name).id[:12] for ns, s in stores.items()}
            rounds = 0
            while not stop.is_set():
                for ns, s in stores.items():
                    for call, arg in ((s.containers.get, name), (s.containers.get, prefixes[ns]),
                                      (s.containers.list, {"label": "group=g1"}), (s.snapshot, None)):
                        t0 = time.monotonic()
                        try:
                            call() if arg is None else call(arg)  # type: ignore[operator]
                            stats[ns][0] += 1
                        except StateStoreError as exc:
                            stats[ns][1] += 1
                            e = errors.setdefault(type(exc).__name__, [0, str(exc)])
                            e[0] += 1
                        stats[ns][2] = max(stats[ns][2], time.monotonic() - t0)
                rounds += 1
                with reads.get_lock():
                    reads.value = rounds
            out.put(("done", {ns: tuple(v) for ns, v in stats.items()},
                     {k: tuple(v) for k, v in errors.items()},
                     {ns: router_of(s).moves for ns, s in stores.items()}))
        finally:
            for s in stores.values():
                close_store(s)
    except BaseException as exc:
        out.put(_error(exc))
