"""Smoke tests of the programs in tools/, so none of them can rot: each runs as a subprocess with its
smallest options, against the suite's private redis-server (or servers the tool starts itself), exits 0,
prints output of the expected shape, and leaves nothing behind where it promises to clean up (keys on
the server; processes it started). Nothing here looks at how fast anything was: the benchmarks' figures
only have to be there.

nsdump.py and loadgen.py are exercised in depth by tests/test_tools.py, bench_cluster.py by
tests/test_cluster.py; ``test_every_tool_has_a_smoke_test`` keeps that list complete.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
import redis

from statestore import Container, ExecConfig, Store
from tests.redisproc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
TAG_VAR = "SMOKE_TEST_TAG"  # in the environment of a tool's process and of everything it starts

# where each program in tools/ is run by the suite
SMOKE_TESTS = {
    "bench.py": "tests/test_tools_smoke.py::test_bench",
    "bench_aio.py": "tests/test_tools_smoke.py::test_bench_aio",
    "bench_api.py": "tests/test_tools_smoke.py::test_bench_api",
    "bench_cluster.py": "tests/test_cluster.py::test_bench_cluster_tool_runs_and_cleans_up",
    "bench_locks.py": "tests/test_tools_smoke.py::test_bench_locks",
    "bench_watch.py": "tests/test_tools_smoke.py::test_bench_watch",
    "failover_loss.py": "tests/test_tools_smoke.py::test_failover_loss",
    "loadgen.py": "tests/test_tools.py::test_loadgen_table_output_and_cleanup",
    "nsdump.py": "tests/test_tools.py::test_export_then_import_reproduces_every_record",
    "quickstart.py": "tests/test_tools_smoke.py::test_quickstart_on_a_given_redis",
    "unasync.py": "tests/test_unasync.py::test_the_committed_sync_modules_are_up_to_date",
}


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (a tool and whatever it started)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def run_tool(script: str, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run tools/``script``; fail if it leaves a process of its own running."""
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
    env[TAG_VAR] = tag
    res = subprocess.run([sys.executable, str(TOOLS / script), *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    left = tagged_processes(tag)
    assert left == [], f"{script} left processes running: {left}"
    return res


def all_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def table(out: str, head: str) -> list[list[str]]:
    """The rows of the aligned text table whose header line starts with ``head``: cells split on runs of
    two or more spaces, up to the first blank line; the ``---`` rule under the header is skipped."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        if not set(line.replace(" ", "")) <= {"-"}:
            rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


NUMBER = r"-?[\d,]+(\.\d+)?x?"


def test_every_tool_has_a_smoke_test() -> None:
    assert sorted(p.name for p in TOOLS.glob("*.py")) == sorted(SMOKE_TESTS)
    for where in SMOKE_TESTS.values():
        path, name = where.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), where


@pytest.mark.parametrize("script", sorted(SMOKE_TESTS))
def test_help(script: str) -> None:
    """Every tool imports and parses its options (the cheapest check that none has rotted)."""
    res = run_tool(script, "--help", timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: ") and res.stderr == ""


# --- quickstart.py -------------------------------------------------------------------------------------
def test_quickstart_on_a_given_redis(redis_proc: RedisProcess, client: redis.Redis) -> None:
    before = all_keys(client)
    res = run_tool("quickstart.py", "--redis-url", redis_proc.url, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == ""
    sections = re.findall(r"^== (\d+)\. ", res.stdout, re.M)
    assert sections == [str(i) for i in range(1, 11)]
    assert re.search(r"^   ps --filter publish=80 +web ", res.stdout, re.M)
    assert res.stdout.rstrip().splitlines()[-1].startswith("ok: every step behaved as documented")
    assert all_keys(client) == before  # not even the change log or its sequence counter


def test_quickstart_on_its_own_redis_server() -> None:
    res = run_tool("quickstart.py", timeout=120)  # run_tool: its redis-server is gone afterwards
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("using a private redis-server at redis://127.0.0.1:")
    assert "ok: every step behaved as documented" in res.stdout


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_cleanup_after_a_failed_step(client: redis.Redis, namespace: str) -> None:
    """What a tour that stopped half-way left (records, names, indexes, an exec, a lock, the change
    log and its counter) is all deleted."""
    quickstart = load_tool("quickstart")
    with Store(client, namespace=namespace) as store:
        store.containers.create(Container.new("nginx", name="web", labels={"app": "shop"}))
        store.containers.update("web", lambda c: c.state.set_running(pid=1))
        store.execs.create(ExecConfig.new("web", ["date"]))
        store.containers.create(Container.new("busybox"))
        store.lock("web", ttl=30)
        assert list(client.scan_iter(match=store.keys.match_all))
        quickstart.remove_namespace(store)
        assert list(client.scan_iter(match=store.keys.match_all)) == []


# --- the benchmarks ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench(redis_proc: RedisProcess, client: redis.Redis) -> None:
    before = all_keys(client)
    res = run_tool("bench.py", "--quick", "--reps", "1", "--big", "2000", "--redis-url", redis_proc.url)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("machine: ") and f"redis: existing server at {redis_proc.url}" in out
    # the big namespace was filled by the raw pipeline after it was checked against a real create
    assert re.search(r"^populated 1000 \+ 2000 containers \(1000 \+ 1000 by create, 1000 by raw pipeline "
                     r"mirroring create \(verified\)\)", out, re.M), out
    rows = [r for r in table(out, "operation ") if len(r) == 8]  # the notes under it have fewer cells
    assert rows[0] == ["operation", "statestore ops/s", "raw ops/s", "ratio", "target", "result", "per-rep range",
                       "client CPU us/op ss / raw"]
    assert [r[0] for r in rows[1:]] == ["get by full ID", "get by name", "get by ID prefix (12 chars)", "create",
                                        "update by full ID (label)", "list label (10 of 1k)",
                                        "list label (10 of 2k)", "list time 2k/1k (x)"]
    for r in rows[1:]:
        assert len(r) == 8 and all(re.fullmatch(NUMBER, c) for c in r[1:4]), r
        assert r[5] in ("PASS", "MISS", "info"), r
    assert re.search(r"^total \d+s \(quick run: 1 repetitions;", out, re.M)
    assert all_keys(client) == before


@pytest.mark.slow
def test_bench_aio(redis_proc: RedisProcess, client: redis.Redis) -> None:
    before = all_keys(client)
    res = run_tool("bench_aio.py", "--quick", "--reps", "1", "--profile", "--redis-url", redis_proc.url)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("machine: ") and f"redis: existing server at {redis_proc.url}" in out
    rows = table(out, "operation ")
    assert rows[0][:9] == ["operation", "sync ops/s", "redis-py ops/s", "sync ratio", "aio ops/s",
                           "redis.asyncio ops/s", "aio ratio", "aio target", "result"]
    assert [r[0] for r in rows[1:]] == ["get by full ID", "get by name", "get by ID prefix (12 chars)", "create",
                                        "update by full ID (label)", "lock acquire+release"]
    for r in rows[1:]:
        assert len(r) == 11, r
        assert all(re.fullmatch(NUMBER + r"( \([\d.]+-[\d.]+\))?", c) for c in (*r[1:7], r[9])), r
        assert r[8] in ("PASS", "MISS", "info"), r
    runs = table(out, "run ")
    assert [r[0] for r in runs[1:]] == ["sync face, 1 thread", "aio face, 1 coroutine", "aio face, 64 coroutines",
                                        "raw redis.asyncio, 64 coroutines"]
    for r in runs[1:]:
        assert len(r) == 6 and re.fullmatch(NUMBER, r[1]) and r[4].endswith("%"), r
    assert re.search(r"^aio face, 64 coroutines vs sync face, 1 thread: [\d.]+x \(target >= 2.0x: (PASS|MISS)\)$",
                     out, re.M)
    assert re.search(r"^  statestore \(records, indexes, events, commit protocol\) +[\d.]+%", out, re.M)
    assert all_keys(client) == before


@pytest.mark.slow
def test_bench_api(redis_proc: RedisProcess, client: redis.Redis) -> None:
    """Its replicas are gone afterwards (run_tool), its namespaces too, and the headline's second action on
    the hung container was refused as busy; the latencies are only printed."""
    before = all_keys(client)
    res = run_tool("bench_api.py", "--quick", "--redis-url", redis_proc.url)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("machine: ") and f"redis: existing server at {redis_proc.url}" in out
    assert re.search(r"^cpus: \d+; load average at the start ", out, re.M)
    assert re.search(r"^populated 100 \+ 200 containers ", out, re.M), out
    sections = re.findall(r"^(\d)\. ", out, re.M)
    assert sections == ["1", "2", "3", "4"], out
    ps = [r for r in table(out, "reader ") if len(r) == 6]  # the notes under it have fewer cells
    assert ps[0] == ["reader", "req/s", "vs Store", "vs raw", "client CPU us/req", "replica CPU us/req"]
    assert [r[0] for r in ps[1:]] == ["GET /containers/json?all=1, 1 connection", "store.containers.list(all=True)",
                                      "raw ZRANGE + MGET + loads", "GET /containers/json?all=1, 8 threads",
                                      "store list, 8 threads", "raw, 8 threads"]
    for r in ps[1:]:
        assert len(r) == 6 and re.fullmatch(NUMBER, r[1]) and re.fullmatch(NUMBER + r" \([\d.]+-[\d.]+\)", r[2]), r
    sdk = [r for r in table(out[out.index("\n3. "):], "reader ") if len(r) == 7]
    assert [r[0] for r in sdk[1:]] == ["SDK containers.list(all=True)", "SDK containers.list(all=True, sparse=True)",
                                       "store.containers.list(all=True)", "raw ZRANGE + MGET + loads"]
    assert sdk[1][1] == "1 + 200" and all(re.fullmatch(NUMBER, r[2]) for r in sdk[1:]), sdk
    head = [r for r in table(out, "query while the lock is held") if len(r) == 6]
    assert [r[0] for r in head[1:]] == ["ps -a via r0", "inspect stuck via r0", "ps -a via r1",
                                        "inspect stuck via r1", "all reads"]
    for r in head[1:]:
        assert r[1].isdigit() and all(re.fullmatch(NUMBER, c) for c in r[2:5]) and r[5] in ("PASS", "MISS"), r
    assert "answers: every checked answer showed stuck running; the stop still hung and held the lock" in out
    assert re.search(r"^second action: POST /containers/stuck/pause via r1: 409 after [\d.]+s \(lock timeout 2s\): "
                     r"container [0-9a-f]{12} is busy: ", out, re.M), out
    assert re.search(r"^headline: reads p99 [\d.]+ ms .*busy container answered 409: yes: (PASS|MISS)$", out, re.M)
    # every replica, the one whose stop hung included, exits 0 on SIGTERM (its hung call is interrupted)
    assert re.search(r"^replicas at the end: r0 exited 0 [\d.]+s after SIGTERM; r1 exited 0 ", out, re.M), out
    assert re.search(r"^load average at the end \(1/5/15 min\): .*; total \d+s \(quick run: ", out, re.M)
    assert all_keys(client) == before


def test_bench_locks(redis_proc: RedisProcess, client: redis.Redis) -> None:
    before = all_keys(client)
    res = run_tool("bench_locks.py", "--quick", "--redis-url", redis_proc.url)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "statestore lock benchmarks (loopback, single client)"
    assert lines[1].split() == ["measure", "statestore", "baseline", "ratio", "target"]
    labels = ["uncontended acquire+release (ops/s)", "hand-off latency p50 / p99 (ms)",
              "get p50 locked / unlocked (us)", "get p99 locked / unlocked (us)"]
    assert [line[:48].strip() for line in lines[2:]] == labels
    for line in lines[2:]:
        figures = line[48:].split()
        assert len(figures) >= 2 and all(re.fullmatch(NUMBER, f) for f in figures[:2]), line
    assert all_keys(client) == before  # its namespace and the hand-off's timestamp key are gone


@pytest.mark.slow
def test_bench_watch(redis_proc: RedisProcess, client: redis.Redis) -> None:
    before = all_keys(client)
    res = run_tool("bench_watch.py", "--quick", "--duration", "1", "--rate", "300", "--no-pin", "--scale", "2000",
                   "--redis-url", redis_proc.url)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r[0]: r for r in table(res.stdout, "measure ")}
    assert rows.pop("measure")[:6] == ["measure", "statestore", "baseline", "ratio", "target", "result"]
    assert set(rows) == {"commit -> watcher p50 (ms)", "commit -> watcher p99 (ms)", "commit -> watcher max (ms)",
                         "commit call -> watcher p50 / p99 (ms)", "update() call p50 / p99 (ms)",
                         "events received / commits", "consumer CPU per event (us)", "View get by full ID (ops/s)",
                         "View get by name (ops/s)", "View list label, 10 of 1k (ops/s)",
                         "View list running, all 1k (ops/s)", "View memory, 2,000 containers (MB)",
                         "View list label, 10 of 2k (ops/s)", "View get by name, 2k (ops/s)",
                         "View get by 12-char prefix, 2k (ops/s)",
                         "View follow: commits/s reached by 2 writer processes",
                         "View follow: commit -> applied p50 / p99 (ms)"}
    for name in ("commit -> watcher p50 (ms)", "consumer CPU per event (us)", "View get by full ID (ops/s)"):
        assert re.fullmatch(NUMBER, rows[name][1]) and re.fullmatch(NUMBER, rows[name][2]), rows[name]
    # every commit reached the watcher, in order (a count, not a speed)
    # the follow run applied every commit the two writers made (a count, not a speed)
    applied, made = rows["View follow: commit -> applied p50 / p99 (ms)"][6].split(" commits")[0].split(" of ")
    assert applied == made and int(made.replace(",", "")) > 0
    received = rows["events received / commits"]
    assert received[4:6] == ["all, in order", "PASS"], received
    got, sent = received[1].split(" / ")
    assert got == sent and int(sent.replace(",", "")) > 0
    assert all_keys(client) == before


# --- failover_loss.py --------------------------------------------------------------------------------
@pytest.mark.slow
def test_failover_loss() -> None:
    """One kill of the master of its own Sentinel topology; the topology is gone afterwards."""
    res = run_tool("failover_loss.py", "--runs", "1", "--modes", "replicated", "--faults", "kill",
                   "--before", "0.5", "--after", "0.5", timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith("# failover_loss: ")
    assert re.search(r"^run 1 \(\d+s\) replicated/kill: acknowledged \d+ ", out, re.M), out
    rows = [line.split() for line in out.splitlines()[out.splitlines().index("") + 1:] if line.strip()]
    assert rows[0] == ["run", "fault", "mode", "commits/s", "acked", "after", "unknown", "lost", "older",
                       "failover", "s", "recovery", "s", "zombie", "s", "fsck"]
    assert [r[:3] for r in rows[1:]] == [["1", "kill", "replicated"], ["all", "kill", "replicated"]]
    run = dict(zip(["run", "fault", "mode", "commits/s", "acked", "after", "unknown", "lost", "older", "failover",
                    "recovery", "zombie", "fsck"], rows[1], strict=True))
    assert int(run["acked"]) > 0 and run["lost"] == "0" and run["fsck"] == "clean", run
