from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from statestore import Store
from tests.redisproc import RedisProcess

_ns_counter = itertools.count()


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProcess]:
    """The suite's private redis-server (never the machine's shared one)."""
    with RedisProcess().start() as proc:
        yield proc


@pytest.fixture
def aof_server() -> Iterator[RedisProcess]:
    """A private redis-server of its own with AOF and ``appendfsync always`` (for kill/restart tests)."""
    server = RedisProcess("--appendfsync", "always", appendonly=True).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def client(redis_proc: RedisProcess) -> Iterator[redis.Redis]:
    c = redis_proc.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"t{os.getpid()}-{next(_ns_counter)}"


@pytest.fixture
def store(client: redis.Redis, namespace: str) -> Iterator[Store]:
    # closed at teardown: the store's own pool would otherwise be closed by the garbage collector, with a
    # ResourceWarning (an error here) in whichever later test happens to collect it
    with Store(client, namespace=namespace) as s:
        yield s


def dump_namespace(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of a namespace with its type and full value, for 'nothing changed' checks."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"ss:{{{namespace}}}:*", count=1000):
        t = client.type(key)
        if t == b"string":
            out[key] = ("string", client.get(key))
        elif t == b"zset":
            out[key] = ("zset", tuple(client.zrange(key, 0, -1, withscores=True)))
        elif t == b"stream":
            out[key] = ("stream", tuple((i, tuple(sorted(f.items()))) for i, f in client.xrange(key)))
        elif t == b"hash":
            out[key] = ("hash", tuple(sorted(client.hgetall(key).items())))
        else:
            out[key] = (t.decode(), None)
    return out
