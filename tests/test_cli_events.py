"""``statestore events``: a lost and regained Redis, ``container=`` matched on each event,
``--since``/``--until`` as docker accepts them, and the Watch features behind them
(``on_connection``/``connected``, ``start``, ``until``).  Every CLI test runs the real command as
a subprocess against a private redis-server.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from statestore import Container, ExecConfig, InvalidArgumentError, Store, Watch
from tests.redisproc import RedisProcess
from tests.test_cli import ROOT, cli_env, one_line_error, run_cli


class Proc:
    """``statestore ... events ...`` in the background; stdout and stderr lines collected by threads."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "statestore", *argv], cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        self.errors: list[str] = []
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, q), daemon=True).start()

    @staticmethod
    def _read(stream: Any, q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _wait(self, q: queue.Queue[str | None], into: list[str], pred: Callable[[list[str]], bool],
              timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while not pred(into):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; stdout {self.lines}, stderr {self.errors}")
            try:
                line = q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended (exit {self.proc.poll()}); stdout {self.lines}, "
                                     f"stderr {self.errors}")
            into.append(line)
        return into

    def wait_lines(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        self._wait(self.out, self.lines, lambda xs: len(xs) >= n, timeout)
        return [orjson.loads(x) for x in self.lines]

    def wait_stderr(self, text: str, timeout: float = 20) -> None:
        self._wait(self.err, self.errors, lambda xs: any(text in x for x in xs), timeout)

    def drain(self) -> None:
        for q, into in ((self.out, self.lines), (self.err, self.errors)):
            while True:
                try:
                    line = q.get_nowait()
                except queue.Empty:
                    break
                if line is not None:
                    into.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(15)
        time.sleep(0.1)
        self.drain()
        return rc

    def wait_exit(self, timeout: float = 20) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.1)
        self.drain()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def events(redis_proc: RedisProcess, namespace: str) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(*argv: str, url: str | None = None) -> Proc:
        p = Proc(["--redis-url", url or redis_proc.url, "--namespace", namespace, "events", *argv])
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def wait_following(store: Store, timeout: float = 20) -> None:
    """Wait until some connection is blocked in XREAD on the store's server (the CLI follows the log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "xread" for c in store.client.client_list()):
            return
        time.sleep(0.05)
    raise AssertionError("the events command never started reading the change log")


# --- a lost and regained Redis ----------------------------------------------------------------------
def test_events_reports_a_lost_redis_once_and_its_return_and_misses_nothing(
        aof_server: RedisProcess, namespace: str, events: Callable[..., Proc]) -> None:
    client = aof_server.client()
    store = Store(client, namespace=namespace)
    a = store.containers.create(Container.new("alpine", name="aa"))
    p = events("--since", "0-0", "--format", "json", url=aof_server.url)
    assert [e["id"] for e in p.wait_lines(1)] == [a.id]
    aof_server.stop()
    p.wait_stderr("lost Redis")
    time.sleep(1.0)  # it keeps retrying while the server is down: still one message
    aof_server.start()
    p.wait_stderr("is back")
    b = store.containers.create(Container.new("alpine", name="bb"))
    store.containers.update("bb", lambda c: c.state.set_running(pid=7))
    got = p.wait_lines(3)
    assert [(e["id"], e["type"]) for e in got] == [(a.id, "create"), (b.id, "create"), (b.id, "update")]
    assert p.stop() == 0
    lost = [line for line in p.errors if "lost Redis" in line]
    back = [line for line in p.errors if "is back" in line]
    assert len(lost) == 1 and len(back) == 1, p.errors
    assert lost[0].startswith("Warning: lost Redis at " + aof_server.url)
    assert p.errors.index(lost[0]) < p.errors.index(back[0])
    assert "Traceback" not in "\n".join(p.errors)
    client.close()


def test_watch_reports_connection_changes(aof_server: RedisProcess, namespace: str) -> None:
    client = aof_server.client()
    store = Store(client, namespace=namespace)
    seen: list[tuple[bool, str]] = []
    store.containers.create(Container.new("alpine", name="aa"))
    with store.watch(since="0-0", block=0.1, on_connection=lambda ok, why: seen.append((ok, why))) as w:
        assert len(w.poll(0)) == 1 and w.connected
        aof_server.stop()
        # poll() keeps reconnecting while the server is down: restart it from another thread
        restarter = threading.Timer(1.0, aof_server.start)
        restarter.start()
        assert w.poll(0.1) == []
        restarter.join()
        assert [ok for ok, _ in seen] == [False, True]
        b = store.containers.create(Container.new("alpine", name="bb"))
        deadline = time.monotonic() + 20
        got: list[Any] = []
        while not got and time.monotonic() < deadline:
            got = w.poll(0.5)
        assert [e.id for e in got] == [b.id] and w.connected
    assert [ok for ok, _ in seen] == [False, True]
    assert seen[0][1] and seen[1][1] == ""
    client.close()


def test_watch_on_connection_must_be_callable(store: Store) -> None:
    with pytest.raises(InvalidArgumentError):
        store.watch(on_connection="print")  # type: ignore[arg-type]


# --- container= matched on each event ---------------------------------------------------------------
def test_events_container_filter_matches_names_on_each_event(store: Store, events: Callable[..., Proc]) -> None:
    p = events("--format", "json", "--filter", "container=web")  # no "web" yet: accepted
    wait_following(store)
    first = store.containers.create(Container.new("alpine", name="web"))
    store.containers.create(Container.new("alpine", name="db"))
    store.containers.delete("web")
    second = store.containers.create(Container.new("alpine", name="web"))  # re-created: a new ID
    store.containers.update("web", lambda c: c.state.set_running(pid=3))
    store.execs.create(ExecConfig.new("web", ["date"]))  # an exec event matches its container's name
    with store.watch(since="0-0") as w:
        expected = [e for e in w.poll(0) if e.container_id in (first.id, second.id)]
    got = p.wait_lines(len(expected))
    time.sleep(0.3)
    assert p.stop() == 0
    assert [e["revision"] for e in got] == [e.revision for e in expected]
    assert [orjson.loads(x)["revision"] for x in p.lines] == [e.revision for e in expected]  # nothing more
    kinds = [(e["kind"], e["type"], e["container"]) for e in got]
    for step in [("container", "create", first.id), ("container", "delete", first.id),
                 ("container", "create", second.id), ("exec", "create", second.id)]:
        assert step in kinds


def test_events_container_filter_takes_ids_and_prefixes(store: Store, events: Callable[..., Proc]) -> None:
    web = store.containers.create(Container.new("alpine", name="web"))
    db = store.containers.create(Container.new("alpine", name="db"))
    p = events("--since", "0-0", "--format", "json", "--filter", f"container={web.id[:5]}",
               "--filter", "container=d")  # an ID prefix, and a name prefix (moby matches prefixes)
    got = p.wait_lines(2)
    assert p.stop() == 0
    assert [e["id"] for e in got] == [web.id, db.id]


def test_events_container_filter_matches_nothing_else(store: Store, events: Callable[..., Proc]) -> None:
    store.containers.create(Container.new("alpine", name="db"))
    web = store.containers.create(Container.new("alpine", name="web"))
    store.containers.create(Container.new("alpine", name="webby"))  # after --until
    p = events("--since", "0-0", "--until", web.revision or "", "--format", "json",
               "--filter", "container=web")
    assert p.wait_exit() == 0
    assert [orjson.loads(x)["name"] for x in p.lines] == ["web"]


# --- leave, enter and progress marks -----------------------------------------------------------------
def test_events_with_a_filter_report_leaving_and_entering(store: Store, events: Callable[..., Proc]) -> None:
    p = events("--since", "0-0", "--format", "json", "--filter", "label=app=web")
    q = events("--since", "0-0", "--filter", "container=web")  # text: a rename out of the filter, and back in
    web = store.containers.create(Container.new("alpine", name="web", labels={"app": "web"}))
    store.containers.update("web", lambda c: c.labels.update(app="other"))
    store.containers.rename("web", "front")
    store.containers.update("front", lambda c: c.labels.update(app="web"))
    store.containers.rename("front", "web")
    got = p.wait_lines(4)
    assert [(e["type"], e["id"], e["labels"]) for e in got] == [
        ("create", web.id, {"app": "web"}), ("leave", web.id, {"app": "other"}), ("enter", web.id, {"app": "web"}),
        ("update", web.id, {"app": "web"})]
    q._wait(q.out, q.lines, lambda xs: len(xs) >= 4, 20)
    assert [line.split()[1:3] for line in q.lines] == [["container", "create"], ["container", "update"],
                                                       ["container", "leave"], ["container", "enter"]]
    assert "name=front" in q.lines[2] and "name=web" in q.lines[3]
    assert p.stop() == 0 and q.stop() == 0


def test_events_progress_marks_let_an_operator_resume_after_trimming(
        store: Store, events: Callable[..., Proc]) -> None:
    quiet = store.containers.create(Container.new("alpine", name="quiet"))
    noisy = store.containers.create(Container.new("alpine", name="noisy"))
    p = events("--since", "0-0", "--format", "json", "--filter", "container=quiet", "--progress", "0.1")
    assert p.wait_lines(1)[0]["id"] == quiet.id
    for i in range(20):
        store.containers.update(noisy.id, lambda c, i=i: c.labels.update(n=str(i)))
    newest = store.client.xrevrange(store.keys.log, count=1)[0][0].decode()
    p._wait(p.out, p.lines, lambda xs: newest in xs[-1], 20)
    assert p.stop() == 0
    marks = [orjson.loads(x) for x in p.lines[1:]]
    assert marks and all(set(m) == {"namespace", "type", "seq", "revision"} for m in marks)
    assert {m["type"] for m in marks} == {"progress"} and marks[-1]["seq"] == 22
    store.client.xtrim(store.keys.log, maxlen=1, approximate=False)
    # resuming from the last event printed is no longer possible; from the last mark it is
    r = events("--since", orjson.loads(p.lines[0])["revision"], "--filter", "container=quiet")
    assert r.wait_exit() == 1 and any("trimmed past" in e for e in r.errors), r.errors
    again = events("--since", marks[-1]["revision"], "--format", "json", "--filter", "container=quiet")
    wait_following(store)
    store.containers.update("quiet", lambda c: c.labels.update(n="1"))
    (ev,) = again.wait_lines(1)
    assert (ev["type"], ev["id"], ev["seq"]) == ("update", quiet.id, 23)
    assert again.stop() == 0


def test_events_progress_in_text_ends_a_replay_with_the_position(store: Store, events: Callable[..., Proc]) -> None:
    store.containers.create(Container.new("alpine", name="quiet"))
    last = store.containers.create(Container.new("alpine", name="noisy"))
    p = events("--since", "0-0", "--until", last.revision or "", "--filter", "container=quiet", "--progress", "0")
    assert p.wait_exit() == 0
    assert len(p.lines) == 2 and " container create " in p.lines[0]
    assert p.lines[1].endswith(f" progress (revision={last.revision}, seq=2)")
    plain = events("--since", "0-0", "--until", last.revision or "", "--filter", "container=quiet")
    assert plain.wait_exit() == 0 and len(plain.lines) == 1  # no marks unless asked


@pytest.mark.parametrize("value", ["x", "-1", "nan"])
def test_events_progress_must_be_seconds(cli_run: Callable[..., Any], value: str) -> None:
    res = cli_run("events", f"--progress={value}")
    assert res.returncode == 125 and "--progress" in res.stderr and "Traceback" not in res.stderr


# --- --since / --until ------------------------------------------------------------------------------
def test_events_until_a_past_revision_replays_and_ends(store: Store, events: Callable[..., Proc]) -> None:
    a = store.containers.create(Container.new("alpine", name="aa"))
    b = store.containers.create(Container.new("alpine", name="bb"))
    store.containers.create(Container.new("alpine", name="cc"))
    p = events("--since", a.revision or "", "--until", b.revision or "", "--format", "json")
    assert p.wait_exit() == 0
    assert [orjson.loads(x)["id"] for x in p.lines] == [b.id]


def test_events_until_a_past_time_ends_after_the_replay(store: Store, events: Callable[..., Proc]) -> None:
    a = store.containers.create(Container.new("alpine", name="aa"))
    p = events("--since", "1h", "--until", str(time.time() + 0.001), "--format", "json")
    assert p.wait_exit() == 0
    assert [orjson.loads(x)["id"] for x in p.lines] == [a.id]


def test_events_until_reached_while_following_ends_the_stream(store: Store, events: Callable[..., Proc]) -> None:
    p = events("--until", "2s", "--format", "json")  # 2s ago: already past, nothing to replay
    assert p.wait_exit() == 0 and p.lines == []
    p = events("--until=-3s", "--format", "json")  # a negative duration: 3 s from now
    wait_following(store)
    a = store.containers.create(Container.new("alpine", name="aa"))
    assert p.wait_exit(20) == 0
    assert [orjson.loads(x)["id"] for x in p.lines] == [a.id]


@pytest.mark.parametrize("form", ["unix", "unix-fraction", "rfc3339", "duration"])
def test_events_since_a_time(store: Store, events: Callable[..., Proc], form: str) -> None:
    store.containers.create(Container.new("alpine", name="old"))
    # a duration counts back from when the CLI starts, in whole seconds as docker: "2s" lands
    # after "old" (3.2 s before "new") and at or before "new" however slowly the process starts, up to 2 s
    time.sleep(3.2 if form == "duration" else 1.1)
    t = time.time()
    new = store.containers.create(Container.new("alpine", name="new"))
    value = {
        "unix": str(int(t)), "unix-fraction": f"{t - 0.05:.3f}",
        "rfc3339": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t))),
        "duration": "2s",
    }[form]
    p = events("--since", value, "--until", f"{time.time() + 0.01:.3f}", "--format", "json")
    assert p.wait_exit() == 0
    assert [orjson.loads(x)["id"] for x in p.lines] == [new.id]


def test_events_since_after_until_is_an_error(cli_run: Callable[..., Any]) -> None:
    line = one_line_error(cli_run("events", "--since", "2024-12-05", "--until", "2024-12-04"))
    assert "cannot be after" in line
    line = one_line_error(cli_run("events", "--since", "yesterday"))
    assert line == 'Error: failed to parse value as time or duration: "yesterday"'


@pytest.fixture
def cli_run(redis_proc: RedisProcess, namespace: str) -> Callable[..., Any]:
    def run(*argv: str) -> Any:
        return run_cli("--redis-url", redis_proc.url, "--namespace", namespace, *argv, timeout=30)

    return run


def test_watch_start_and_until(store: Store) -> None:
    a = store.containers.create(Container.new("alpine", name="aa"))
    time.sleep(0.01)  # b in a later millisecond than a
    b = store.containers.create(Container.new("alpine", name="bb"))
    c = store.containers.create(Container.new("alpine", name="cc"))
    store.containers.create(Container.new("alpine", name="dd"))
    ms = int((b.revision or "").split("-")[0])
    with Watch(store, start=f"{ms}-0", until=c.revision, block=0.1) as w:
        got = [e.id for e in w]  # from b's millisecond on, and it ends by itself after c
        assert w.ended
    assert got == [b.id, c.id]
    with store.watch(start="0-0", until=a.revision) as w:
        assert [e.id for e in w] == [a.id]
    with pytest.raises(InvalidArgumentError):
        Watch(store, since=b.revision, until=a.revision)
    with pytest.raises(InvalidArgumentError):
        Watch(store, since=a.revision, start=a.revision)


def test_watch_start_before_what_the_log_still_holds_is_history_trimmed(client: Any, namespace: str) -> None:
    from statestore import HistoryTrimmedError

    store = Store(client, namespace=namespace, changelog_maxlen=2)
    made = [store.containers.create(Container.new("alpine", name=f"c{i}")) for i in range(6)]
    first_left = client.xrange(store.keys.log, count=1)[0][0].decode()
    with pytest.raises(HistoryTrimmedError), store.watch(start="1-0") as w:
        w.poll(0)
    # from the first entry the log holds on, nothing is missing
    with store.watch(start=first_left, until=made[-1].revision) as w:
        assert [e.id for e in w][-1] == made[-1].id
