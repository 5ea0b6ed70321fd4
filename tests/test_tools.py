"""tools/nsdump.py (export/import of a namespace as JSON lines) and tools/loadgen.py, run as subprocesses
against the suite's private redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from statestore import Container, ExecConfig, Store
from tests.conftest import dump_namespace
from tests.redisproc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
NSDUMP = ROOT / "tools" / "nsdump.py"
LOADGEN = ROOT / "tools" / "loadgen.py"


def run_tool(script: Path, *argv: str, input: bytes | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE_")}
    return subprocess.run([sys.executable, str(script), *argv], cwd=ROOT, env=env, input=input,
                          capture_output=True, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)


def stderr_of(res: subprocess.CompletedProcess[bytes]) -> str:
    return res.stderr.decode()


def without_version(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what every commit sets (its version and commit id)."""
    doc = dict(doc)
    doc["StateStore"] = {k: v for k, v in doc["StateStore"].items() if k not in ("Version", "Commit")}
    return doc


def rich_namespace(store: Store) -> None:
    """Containers in every status (health, ports, labels, a rename) and execs in every state, also on
    containers that no longer run: 10 containers, 5 execs."""
    c = store.containers

    def new(name: str, **kw: Any) -> None:
        c.create(Container.new(kw.pop("image", "alpine"), name=name, **kw))

    new("web", image="nginx:1.27", labels={"app": "shop", "tier": "front"}, cmd=["nginx", "-g", "daemon off;"],
        port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})
    c.update("web", lambda x: x.state.set_running(pid=101))
    store.execs.create(ExecConfig.new("web", ["sh", "-c", "date"]))
    new("db", image="postgres:16", labels={"app": "shop", "tier": "data"})
    c.update("db", lambda x: x.state.set_running(pid=102))
    c.update("db", lambda x: x.state.set_paused())
    new("cache", image="redis:7", exposed_ports=["6379/tcp"])
    c.update("cache", lambda x: x.state.set_running(pid=103))
    c.update("cache", lambda x: x.state.set_health("healthy"))
    new("job", cmd=["sh", "-c", "echo a rather long command line"])
    new("old")
    c.update("old", lambda x: x.state.set_running(pid=104))
    c.update("old", lambda x: x.state.set_stopped(0))
    new("flappy")
    c.update("flappy", lambda x: x.state.set_running(pid=105))
    c.update("flappy", lambda x: x.state.set_restarting(1))
    new("gone")
    c.update("gone", lambda x: x.state.set_dead())
    new("bye")
    c.update("bye", lambda x: x.state.set_removal_in_progress())
    new("worker", labels={"expr": "a=b=c", "empty": ""}, env=["A=1"])
    c.update("worker", lambda x: x.state.set_running(pid=500))
    done = store.execs.create(ExecConfig.new("worker", ["true"]))
    store.execs.update(done.id, lambda x: x.set_running(600))
    store.execs.update(done.id, lambda x: x.set_exited(3))
    live = store.execs.create(ExecConfig.new("worker", ["sleep", "1d"], tty=True, user="nobody"))
    store.execs.update(live.id, lambda x: x.set_running(601))
    store.execs.create(ExecConfig.new("worker", ["ls"]))
    c.update("worker", lambda x: x.state.set_stopped(137, oom_killed=True))      # exited, with 3 execs
    new("sleepy")
    c.update("sleepy", lambda x: x.state.set_running(pid=700))
    store.execs.create(ExecConfig.new("sleepy", ["top"]))
    c.update("sleepy", lambda x: x.state.set_paused())                          # paused, with an exec
    c.rename("job", "batch-job")


def test_export_then_import_reproduces_every_record(redis_proc: RedisProcess, store: Store, client: redis.Redis,
                                                    namespace: str, tmp_path: Path) -> None:
    rich_namespace(store)
    src = store.snapshot()
    dump = tmp_path / "ns.jsonl"
    res = run_tool(NSDUMP, "export", "--redis-url", redis_proc.url, "--namespace", namespace, str(dump))
    assert res.returncode == 0, stderr_of(res)
    assert stderr_of(res).startswith(f"exported 10 containers and 5 execs of namespace {namespace!r} at revision ")

    lines = [orjson.loads(line) for line in dump.read_bytes().splitlines()]
    assert lines[0]["kind"] == "header" and lines[0]["revision"] == src.revision
    assert (lines[0]["containers"], lines[0]["execs"]) == (10, 5)
    assert [x["kind"] for x in lines[1:]] == ["container"] * 10 + ["exec"] * 5

    target = namespace + "-copy"
    res = run_tool(NSDUMP, "import", "--redis-url", redis_proc.url, "--namespace", target, str(dump))
    assert res.returncode == 0, stderr_of(res)
    assert "imported 10 containers and 5 execs" in stderr_of(res)

    with Store(client, namespace=target) as copy:
        dst = copy.snapshot()
        assert set(dst.containers) == set(src.containers)
        assert set(dst.execs) == set(src.execs)
        for cid, a in src.containers.items():
            b = dst.containers[cid]
            # the whole document is the same: name, state, labels, config, ExecIDs (in order), times...
            assert without_version(b.to_dict()) == without_version(a.to_dict()), a.name
            # ...but versions restart: 1 for the create, +1 per exec, +1 to restore a state that is not running
            restored = bool(a.exec_ids) and a.status != "running"
            assert b.version == 1 + len(a.exec_ids) + restored, a.name
        for xid, a in src.execs.items():
            b = dst.execs[xid]
            assert without_version(b.to_dict()) == without_version(a.to_dict())
            assert b.version == 1
        # the names and indexes work in the copy as in the source
        for ref in ("web", "batch-job", "worker", "sleepy"):
            assert copy.containers.get(ref).id == store.containers.get(ref).id
        assert copy.containers.list({"label": "app=shop"}, all=True).__len__() == 2
        assert ([c.id for c in copy.containers.list(all=True)] == [c.id for c in store.containers.list(all=True)])
        assert ([c.id for c in copy.containers.list({"status": "exited"})]
                == [c.id for c in store.containers.list({"status": "exited"})])
        assert [x.id for x in copy.execs.list("worker")] == [x.id for x in store.execs.list("worker")]
        assert copy.containers.get("worker").status == "exited"
        assert copy.containers.get("sleepy").status == "paused"
        assert copy.fsck().clean


def test_export_to_stdout_import_from_stdin(redis_proc: RedisProcess, store: Store, client: redis.Redis,
                                            namespace: str) -> None:
    web = store.containers.create(Container.new("nginx", name="web", labels={"app": "shop"}))
    store.containers.update("web", lambda c: c.state.set_running(pid=1))
    x = store.execs.create(ExecConfig.new("web", ["date"]))
    out = run_tool(NSDUMP, "export", "--redis-url", redis_proc.url, "--namespace", namespace, "-")
    assert out.returncode == 0, stderr_of(out)
    assert len(out.stdout.splitlines()) == 3
    res = run_tool(NSDUMP, "import", "--redis-url", redis_proc.url, "--namespace", namespace + "-pipe", "-",
                   input=out.stdout)
    assert res.returncode == 0, stderr_of(res)
    with Store(client, namespace=namespace + "-pipe") as copy:
        assert copy.containers.get("web").exec_ids == [x.id]
        assert copy.containers.get(web.id[:12]).labels == {"app": "shop"}


def test_environment_variables_select_redis_and_namespace(redis_proc: RedisProcess, store: Store,
                                                          namespace: str, tmp_path: Path) -> None:
    store.containers.create(Container.new("alpine", name="envy"))
    env = {**os.environ, "STATESTORE_REDIS_URL": redis_proc.url, "STATESTORE_NAMESPACE": namespace}
    res = subprocess.run([sys.executable, str(NSDUMP), "export", str(tmp_path / "e.jsonl")], cwd=ROOT, env=env,
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert b'"Name":"/envy"' in (tmp_path / "e.jsonl").read_bytes()


def test_import_refuses_a_namespace_that_holds_records(redis_proc: RedisProcess, store: Store, client: redis.Redis,
                                                       namespace: str, tmp_path: Path) -> None:
    store.containers.create(Container.new("alpine", name="one"))
    dump = tmp_path / "ns.jsonl"
    assert run_tool(NSDUMP, "export", "--redis-url", redis_proc.url, "--namespace", namespace,
                    str(dump)).returncode == 0
    before = dump_namespace(client, namespace)
    res = run_tool(NSDUMP, "import", "--redis-url", redis_proc.url, "--namespace", namespace, str(dump))
    assert res.returncode == 1
    assert stderr_of(res) == (f"Error: namespace {namespace!r} is not empty (1 containers, 0 execs): "
                              "import only into an empty namespace\n")
    assert dump_namespace(client, namespace) == before


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda lines: lines[:-1], "the header announces 2 containers and 1 execs, the file holds 2 and 0 (truncated?)"),
    (lambda lines: lines[1:], "line 1: the first line must be the header, not 'container'"),
    (lambda lines: [*lines, b"{oops"], "line 5: not JSON"),
    (lambda lines: [*lines[:2], lines[1], *lines[2:]], "line 3: container "),
    (lambda lines: [lines[0], lines[3], *lines[1:3]], "line 3: containers must come before execs"),
    (lambda lines: [lines[0].replace(b'"format":1', b'"format":9'), *lines[1:]], "line 1: unsupported format 9"),
    (lambda lines: [lines[0], lines[1].replace(b'"Name":"/aa"', b'"Name":"/a a"'), *lines[2:]],
     "line 2: invalid container record"),
    (lambda lines: [], "empty file: no header"),
])
def test_import_checks_the_whole_file_before_writing(redis_proc: RedisProcess, store: Store, client: redis.Redis,
                                                     namespace: str, tmp_path: Path, mangle: Any,
                                                     message: str) -> None:
    store.containers.create(Container.new("alpine", name="aa"))
    store.containers.create(Container.new("alpine", name="bb"))
    store.containers.update("bb", lambda c: c.state.set_running(pid=1))
    store.execs.create(ExecConfig.new("bb", ["ls"]))
    dump = tmp_path / "ns.jsonl"
    assert run_tool(NSDUMP, "export", "--redis-url", redis_proc.url, "--namespace", namespace,
                    str(dump)).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(line + b"\n" for line in mangle(dump.read_bytes().splitlines())))
    target = namespace + "-bad"
    res = run_tool(NSDUMP, "import", "--redis-url", redis_proc.url, "--namespace", target, str(bad))
    assert res.returncode == 1
    err = stderr_of(res)
    assert err.startswith("Error: " + message) and err.count("\n") == 1, err
    assert dump_namespace(client, target) == {}


def test_export_skips_and_names_a_corrupt_record(redis_proc: RedisProcess, store: Store, client: redis.Redis,
                                                 namespace: str, tmp_path: Path) -> None:
    good = store.containers.create(Container.new("alpine", name="good"))
    bad = store.containers.create(Container.new("alpine", name="bad"))
    client.set(store.keys.container(bad.id), b"[]")
    dump = tmp_path / "ns.jsonl"
    res = run_tool(NSDUMP, "export", "--redis-url", redis_proc.url, "--namespace", namespace, str(dump))
    assert res.returncode == 1
    assert f"Warning: not exported: corrupt record at {store.keys.container(bad.id)}" in stderr_of(res)
    records = [orjson.loads(line) for line in dump.read_bytes().splitlines()[1:]]
    assert [r["record"]["Id"] for r in records] == [good.id]


def test_nsdump_errors_are_one_line(tmp_path: Path) -> None:
    res = run_tool(NSDUMP, "export", "--redis-url", "redis://127.0.0.1:1/0", str(tmp_path / "x"), timeout=60)
    assert res.returncode == 1 and stderr_of(res).startswith("Error: ") and stderr_of(res).count("\n") == 1
    res = run_tool(NSDUMP, "import", "--redis-url", "redis://127.0.0.1:1/0", str(tmp_path / "missing"))
    assert res.returncode == 1 and stderr_of(res).startswith("Error: ") and stderr_of(res).count("\n") == 1
    assert run_tool(NSDUMP, "copy", "x").returncode == 2


# --- loadgen -------------------------------------------------------------------------------------------
def test_loadgen_runs_briefly_without_errors_or_lost_updates(redis_proc: RedisProcess, client: redis.Redis,
                                                              namespace: str) -> None:
    res = run_tool(LOADGEN, "--redis-url", redis_proc.url, "--namespace", namespace, "--containers", "20",
                   "--rate", "300", "--duration", "1", "--processes", "2", "--keep", "--json",
                   "--mix", "get=4,list=2,update=3,lock=2,snapshot=1")
    assert res.returncode == 0, stderr_of(res)
    s = orjson.loads(res.stdout)
    assert s["errors"] == 0
    assert set(s["per_op"]) == {"get", "list", "update", "lock", "snapshot"}
    for op, o in s["per_op"].items():
        assert o["count"] > 0 and o["errors"] == {}, op
        assert 0 < o["p50_ms"] <= o["p90_ms"] <= o["p99_ms"] <= o["max_ms"], op
    assert s["ops"] == sum(o["count"] for o in s["per_op"].values())
    assert s["ops"] + s["lock_timeouts"] >= 200  # about 300 scheduled; the schedule never drops any
    assert s["ops_per_s"] > 100
    with Store(client, namespace=namespace) as store:
        mine = store.containers.list({"label": f"loadgen={s['run']}"}, all=True)
        assert len(mine) == 20
        assert len([c for c in mine if c.status == "running"]) == 10
        # every successful update and locked update bumped one counter: none was lost
        counters = sum(int(c.labels["counter"]) for c in mine)
        assert counters == s["per_op"]["update"]["count"] + s["per_op"]["lock"]["count"]
        assert store.locks() == []


def test_loadgen_table_output_and_cleanup(redis_proc: RedisProcess, client: redis.Redis, namespace: str) -> None:
    res = run_tool(LOADGEN, "--redis-url", redis_proc.url, "--namespace", namespace, "--containers", "5",
                   "--rate", "100", "--duration", "0.5", "--processes", "1")
    assert res.returncode == 0, stderr_of(res)
    out = res.stdout.decode().splitlines()
    assert out[0].startswith("loadgen run ") and "achieved" in out[1]
    assert out[2].split() == ["OP", "COUNT", "OPS/S", "P50", "MS", "P90", "MS", "P99", "MS", "MAX", "MS", "ERRORS"]
    assert {line.split()[0] for line in out[3:-1]} == {"get", "list", "update", "lock"}
    assert out[-1] == "deleted the run's 5 containers"
    with Store(client, namespace=namespace) as store:
        assert store.containers.list(all=True) == []


@pytest.mark.parametrize("argv", [["--mix", "frob=1"], ["--mix", "get=0"], ["--rate", "0"], ["--processes", "x"]])
def test_loadgen_bad_arguments(argv: list[str]) -> None:
    res = run_tool(LOADGEN, *argv)
    assert res.returncode == 2 and b"usage: loadgen" in res.stderr


def test_loadgen_unreachable_redis() -> None:
    res = run_tool(LOADGEN, "--redis-url", "redis://127.0.0.1:1/0", "--duration", "1", timeout=60)
    assert res.returncode == 1 and stderr_of(res).startswith("Error: ") and stderr_of(res).count("\n") == 1
