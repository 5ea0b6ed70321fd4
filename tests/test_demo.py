"""``statestore demo`` in its short mode on both embedded backends, and ``statestore.embedded``."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from statestore import Container, Store, demo, embedded
from statestore.embedded import EmbeddedError, redis_answers, start_embedded
from tests.redisproc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STATESTORE_REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("backend, says", [
    ("redis-server", "Redis: private redis-server"),
    ("fakeredis", "Redis: in-process fakeredis"),
])
def test_the_short_demo_holds_its_invariants(backend: str, says: str) -> None:
    out = subprocess.run([sys.executable, "-m", "statestore", "demo", "--short", "--backend", backend],
                         capture_output=True, text=True, timeout=90, env=_env())
    text = out.stdout
    assert out.returncode == 0, text + out.stderr
    assert says in text
    assert "all invariants hold" in text
    for check in ("lost updates", "work items answered", "events in order", "locks left behind",
                  "replicas exited cleanly", "fsck", "hung container", "Engine API"):
        assert any(line.strip().startswith(f"OK   {check}") for line in text.splitlines()), check
    assert "OK   lost updates             0 (" in text
    for replica in ("r1", "r2", "r3"):
        assert any(line.split()[:1] == [replica] for line in text.splitlines()), replica
    assert "... while its lock was held" in text
    assert "... while the hung stop held its lock" in text
    # the commands it suggests are typed against replicas that answered the Engine API during the run
    hosts = re.findall(r"docker -H (tcp://127\.0\.0\.1:\d+) ", text)
    assert len(hosts) == 3 and len(set(hosts)) == 3, text
    assert "Traceback" not in out.stderr


def test_redis_url_and_backend_do_not_mix() -> None:
    out = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", "redis://127.0.0.1:1/0", "demo",
                          "--backend", "fakeredis"], capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 1
    assert "--backend chooses an embedded Redis" in out.stderr and "Traceback" not in out.stderr


def test_a_given_redis_that_does_not_answer_is_a_one_line_error() -> None:
    out = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", "redis://127.0.0.1:1/0", "demo",
                          "--short"], capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 1
    assert out.stderr.strip() == "Error: no Redis answers at redis://127.0.0.1:1/0"


@pytest.mark.parametrize("backend", ["redis-server", "fakeredis"])
def test_embedded_servers_serve_other_clients_and_close(backend: str) -> None:
    emb = start_embedded(backend)
    try:
        assert emb.kind == backend
        assert redis_answers(emb.url)
        with Store.from_url(emb.url, namespace="emb") as store:
            web = store.containers.create(Container.new("nginx:1.27", name="web"))
            with store.lock("web", ttl=1, timeout=1) as lease:
                store.containers.update("web", lambda c: c.state.set_running(pid=7), lease=lease)
            watch = store.watch(since="0-0", block=0.1)
            assert [(e.type, e.version) for e in watch.poll(1)] == [("create", 1), ("update", 2)]
            watch.close()
            assert store.containers.get(web.id[:6]).status == "running"
    finally:
        emb.close()
    emb.close()  # idempotent
    assert not redis_answers(emb.url)


def test_unknown_backend() -> None:
    with pytest.raises(EmbeddedError):
        start_embedded("memcached")


def _demo_args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"redis_url": None, "demo_redis_url": None, "backend": "auto", **kw})


def test_auto_uses_a_redis_answering_on_localhost(monkeypatch: pytest.MonkeyPatch, redis_proc: RedisProcess) -> None:
    monkeypatch.delenv("STATESTORE_REDIS_URL", raising=False)
    monkeypatch.setattr(demo.backend, "DEFAULT_URL", redis_proc.url)
    said: list[str] = []
    url, emb = demo.choose_redis(_demo_args(), said.append)
    assert (url, emb) == (redis_proc.url, None)
    assert said == ["Redis: the one answering on 127.0.0.1:6379 (no --redis-url given)"]


def test_auto_falls_back_to_fakeredis_without_a_redis_server_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATESTORE_REDIS_URL", raising=False)
    monkeypatch.setattr(demo.backend, "DEFAULT_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    said: list[str] = []
    url, emb = demo.choose_redis(_demo_args(), said.append)
    try:
        assert emb is not None and emb.kind == "fakeredis" and url == emb.url
        assert said[0].startswith("Redis: in-process fakeredis")
        assert said[0].endswith("(embedded: no Redis configured and none on 127.0.0.1:6379; no redis-server binary)")
    finally:
        assert emb is not None
        emb.close()
    with pytest.raises(EmbeddedError, match="redis-server is not installed"):
        start_embedded("redis-server")


def test_the_environment_variable_counts_as_a_given_redis(monkeypatch: pytest.MonkeyPatch,
                                                          redis_proc: RedisProcess) -> None:
    monkeypatch.setenv("STATESTORE_REDIS_URL", redis_proc.url)
    said: list[str] = []
    assert demo.choose_redis(_demo_args(), said.append) == (redis_proc.url, None)
    assert said == [f"Redis: {redis_proc.url} (given)"]
