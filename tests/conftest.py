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


#: test modules whose ``store`` tests run on both faces: the sync ``statestore.Store`` and the async
#: ``statestore.aio.Store`` behind a blocking adapter (tests/faces.py)
BOTH_FACES = {
    "test_store_commits", "test_store_lookups", "test_store_list", "test_store_corrupt_and_bad_input",
    "test_store_namespace_ops", "test_locks", "test_view", "test_fsck", "test_watch_selectors",
    "test_watch", "test_indeterminate", "test_index_fallback", "test_view_indexes", "test_view_property",
    "test_store_concurrency",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in BOTH_FACES:
        metafunc.parametrize("face", ["sync", "async"], indirect=True)


@pytest.fixture
def face(request: pytest.FixtureRequest) -> str:
    """Which face the ``store`` fixture is: "sync" unless the module runs on both (``BOTH_FACES``)."""
    return str(getattr(request, "param", "sync"))


@pytest.fixture
def store(client: redis.Redis, namespace: str, face: str, redis_proc: RedisProcess) -> Iterator[Store]:
    # closed at teardown: the store's own pool would otherwise be closed by the garbage collector, with a
    # ResourceWarning (an error here) in whichever later test happens to collect it
    if face == "async":
        from tests.faces import async_store

        with async_store(redis_proc.port, namespace) as a:
            yield a  # type: ignore[misc]
        return
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
