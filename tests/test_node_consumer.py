"""docs/examples/node/consumer.mjs, the change-log consumer in Node.js, against a private redis-server.

The consumer is installed with ``npm ci --ignore-scripts`` from its committed package-lock.json into a
temporary copy of its folder, then run as a subprocess while the Python ``Store`` commits.  What it
prints must be exactly the change log after its starting revision: every entry once, in order, across a
killed client connection and a redis-server restart.  Without ``node`` or ``npm`` the tests fail (the
consumer is part of what the docs promise); ``.ci/run`` installs both.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from statestore import Container, ExecConfig, Store
from tests.redisproc import RedisProcess

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "node"
CLIENT_NAME = "statestore-node-consumer"  # what consumer.mjs names its connection
EXIT_RELIST = 3
WAIT = 30.0  # upper bound for anything the consumer should do; never a speed assertion


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: tests/test_node_consumer.py runs docs/examples/node/consumer.mjs "
                    "with Node.js (apt-get install nodejs npm, or run .ci/run, which installs them)")
    return path


@pytest.fixture(scope="module")
def consumer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of docs/examples/node with its locked dependencies installed (npm ci)."""
    node, npm = _tool("node"), _tool("npm")
    target = tmp_path_factory.mktemp("node-consumer")
    for name in ("consumer.mjs", "package.json", "package-lock.json"):
        shutil.copy2(EXAMPLE / name, target / name)
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
                          cwd=target, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in a copy of {EXAMPLE} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < 20:
        pytest.fail(f"node {version} is too old for the consumer (package.json asks for >=20)")
    return target


class Consumer:
    """consumer.mjs as a subprocess; its stdout lines (one JSON event each) are collected by a thread."""

    def __init__(self, directory: Path, url: str, namespace: str, since: str | None) -> None:
        args = [_tool("node"), str(directory / "consumer.mjs"), url, namespace]
        if since is not None:
            args.append(since)
        self.proc = subprocess.Popen(args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, encoding="utf-8")
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._eof = False  # its stdout ended
        self._pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True),
                       threading.Thread(target=self._pump, args=(self.proc.stderr, None), daemon=True)]
        for t in self._pumps:
            t.start()

    def _pump(self, stream: Any, sink: queue.Queue[str | None] | None) -> None:
        for line in stream:
            if sink is None:
                self.stderr.append(line.rstrip("\n"))
            else:
                sink.put(line)
        if sink is not None:
            sink.put(None)

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self._eof:
                self.proc.wait(10)
                pytest.fail(f"consumer exited ({self.proc.returncode}) before {what}; stderr:\n"
                            + "\n".join(self.stderr))
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                pytest.fail(f"consumer: {what} did not happen within {timeout:g}s; it printed "
                            f"{len(self.events)} event(s); stderr:\n" + "\n".join(self.stderr))
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if line is None:
                self._eof = True
            else:
                self.events.append(json.loads(line))

    def wait_for_seq(self, seq: int) -> None:
        self.wait_for(f"the event with seq {seq}", lambda: bool(self.events) and self.events[-1]["seq"] >= seq)

    def exit_code(self, timeout: float = WAIT) -> int:
        """Wait for the consumer to end on its own (collecting what it printed) and return its status."""
        self.wait_for("its exit", lambda: self._eof, timeout)
        return self.proc.wait(10)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The consumer process frozen (SIGSTOP) for the block, so what happens meanwhile cannot race it."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        """SIGTERM (the consumer's normal way to end), then its exit status; its pipes are closed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.send_signal(signal.SIGCONT)  # in case it is frozen
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        for t in self._pumps:
            t.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture
def run_consumer(consumer_dir: Path) -> Iterator[Callable[..., Consumer]]:
    started: list[Consumer] = []

    def start(url: str, namespace: str, since: str | None = None) -> Consumer:
        c = Consumer(consumer_dir, url, namespace, since)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def log_after(client: redis.Redis, namespace: str, since: str) -> list[tuple[str, int, str, str, str, int]]:
    """The change log after ``since`` as (revision, seq, type, kind, id, version), read directly."""
    out = []
    entries: Any = client.xrange(f"ss:{{{namespace}}}:log", f"({since}", "+")
    for rid, f in entries:
        out.append((rid.decode(), int(f[b"seq"]), f[b"type"].decode(), f[b"kind"].decode(), f[b"id"].decode(),
                    int(f[b"version"])))
    return out


def printed(events: list[dict[str, Any]]) -> list[tuple[str, int, str, str, str, int]]:
    return [(e["revision"], e["seq"], e["type"], e["kind"], e["id"], e["version"]) for e in events]


def consumer_connections(client: redis.Redis, blocked: bool = False) -> list[dict[str, Any]]:
    return [c for c in client.client_list()
            if c.get("name") == CLIENT_NAME and (not blocked or (c.get("cmd") == "xread" and "b" in c["flags"]))]


def wait_until(what: str, cond: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.02)


def test_every_commit_once_in_order_across_client_kill_and_restart(
        aof_server: RedisProcess, run_consumer: Callable[..., Consumer]) -> None:
    ns = "nodeshop"
    admin = aof_server.client()
    store = Store(aof_server.client(), namespace=ns)
    try:
        web = store.containers.create(Container.new("nginx:1.27", name="web", labels={"app": "shop"}))
        start = web.revision
        assert start is not None
        # committed before the consumer starts: it must catch up on these from the log
        store.containers.update("web", lambda c: c.state.set_running(pid=100))
        store.containers.create(Container.new("redis:7", name="db"))
        consumer = run_consumer(aof_server.url, ns, start)
        consumer.wait_for_seq(3)

        # live: a commit with two events (an exec and its container's ExecIDs)
        store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"]))
        consumer.wait_for_seq(5)

        # the consumer's connection is killed while it waits in XREAD, and commits land before it can
        # read again (it is stopped meanwhile, so they cannot race its reconnect)
        wait_until("the consumer blocking in XREAD", lambda: bool(consumer_connections(admin, blocked=True)))
        with consumer.stopped():
            killed = sum(admin.client_kill_filter(_id=c["id"]) for c in consumer_connections(admin))
            assert killed == 1
            store.containers.rename("db", "cache")
            store.containers.delete("cache")
        consumer.wait_for_seq(7)
        assert any("XREAD failed" in line for line in consumer.stderr), consumer.stderr

        # redis-server stops and starts again (AOF, appendfsync always): the log and its counter survive
        wait_until("the consumer blocking in XREAD again", lambda: bool(consumer_connections(admin, blocked=True)))
        failed_reads = sum("XREAD failed" in line for line in consumer.stderr)
        with consumer.stopped():
            aof_server.restart()
            store.containers.update("web", lambda c: c.state.set_paused())
            store.containers.delete("web")  # with its exec: two events
        consumer.wait_for_seq(10)
        assert consumer.stop() == 0
        assert sum("XREAD failed" in line for line in consumer.stderr) > failed_reads, consumer.stderr

        expected = log_after(admin, ns, start)
        assert [e[1] for e in expected] == list(range(2, 11))  # the log itself has no gap
        assert printed(consumer.events) == expected
    finally:
        store.close()
        admin.close()


def test_resumes_from_a_saved_revision(
        redis_proc: RedisProcess, store: Store, namespace: str, run_consumer: Callable[..., Consumer]) -> None:
    # started with no revision: it follows from the newest entry, so the first commit is not printed
    store.containers.create(Container.new("busybox", name="first"))
    first = run_consumer(redis_proc.url, namespace)
    wait_until("the consumer blocking in XREAD", lambda: bool(consumer_connections(store.client, blocked=True)))
    store.containers.create(Container.new("busybox", name="second"))
    store.containers.update("second", lambda c: c.state.set_running(pid=7))
    first.wait_for_seq(3)
    assert first.stop() == 0
    assert [(e["seq"], e["name"], e["type"]) for e in first.events] == [(2, "second", "create"),
                                                                        (3, "second", "update")]

    # committed while no consumer runs; the next one resumes from the last revision printed, alone
    saved = first.events[-1]["revision"]
    store.containers.rename("first", "renamed")
    store.containers.delete("second")
    second = run_consumer(redis_proc.url, namespace, saved)
    second.wait_for_seq(5)
    assert second.stop() == 0
    assert printed(second.events) == log_after(store.client, namespace, saved)
    assert [e["seq"] for e in second.events] == [4, 5]


def test_a_trimmed_position_asks_for_a_relist(
        redis_proc: RedisProcess, store: Store, namespace: str, run_consumer: Callable[..., Consumer]) -> None:
    revisions = [store.containers.create(Container.new("busybox", name=f"c{i}")).revision for i in range(4)]
    log = store.keys.log
    # trim exactly what MAXLEN ~ would drop from an old log: every entry before the third
    store.client.xtrim(log, minid=revisions[2], approximate=False)

    # a saved revision that is no longer in the log: nothing to resume from
    gone = run_consumer(redis_proc.url, namespace, revisions[0])
    assert gone.exit_code() == EXIT_RELIST
    assert gone.events == []
    assert any("relist needed" in line and "was trimmed" in line for line in gone.stderr), gone.stderr

    # from the very beginning: XREAD answers with the oldest entry left, whose seq shows the gap
    beginning = run_consumer(redis_proc.url, namespace, "0-0")
    assert beginning.exit_code() == EXIT_RELIST
    assert beginning.events == []
    assert any("2 event(s) after 0-0 were trimmed" in line for line in beginning.stderr), beginning.stderr

    # a revision still in the log resumes normally
    ok = run_consumer(redis_proc.url, namespace, revisions[2])
    ok.wait_for_seq(4)
    assert ok.stop() == 0
    assert [e["revision"] for e in ok.events] == [revisions[3]]

