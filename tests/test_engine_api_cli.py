"""The Engine API, proven with the real docker CLI against two replicas that share one namespace.

Each ``docker`` call is a subprocess of the installed CLI (28.x); replica 0
listens on TCP and a unix socket (its ``docker`` calls go through the
socket), replica 1 on TCP.  What one replica does, the other must show.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_api import ROOT, ApiReplicas, free_port, get_json
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(redis_proc: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiReplicas]:
    tmp = tmp_path_factory.mktemp("engine-api")
    r = ApiReplicas(redis_proc.url, f"api-cli-{os.getpid()}", tmp)
    try:
        r.bases = [r.start("--hang-stop=stuck", unix=True), r.start("--hang-stop=stuck")]  # type: ignore[attr-defined]
        yield r
    finally:
        r.close()


def lines(res: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in res.stdout.splitlines() if ln]


def test_a_container_created_through_one_replica_is_seen_through_the_other(api: ApiReplicas) -> None:
    cid = api.docker(0, "create", "--name", "web", "--label", "tier=front", "busybox", "sleep", "60").stdout.strip()
    assert len(cid) == 64
    doc = json.loads(api.docker(1, "inspect", "web").stdout)
    assert len(doc) == 1 and doc[0]["Id"] == cid and doc[0]["Name"] == "/web"
    assert doc[0]["Config"]["Image"] == "busybox" and doc[0]["Config"]["Labels"] == {"tier": "front"}
    assert doc[0]["Path"] == "sleep" and doc[0]["Args"] == ["60"] and doc[0]["State"]["Status"] == "created"
    assert doc[0]["Image"].startswith("sha256:")
    assert "StateStore" not in doc[0]  # no statestore-internal keys
    # by ID prefix, through the unix socket of replica 0
    assert json.loads(api.docker(0, "inspect", cid[:8]).stdout)[0]["Id"] == cid
    ps = api.docker(1, "ps", "-a", "--filter", "label=tier=front", "--format", "{{.Names}} {{.Image}} {{.Status}}")
    assert lines(ps) == ["web busybox Created"]
    assert lines(api.docker(1, "ps", "--format", "{{.Names}}")) == []  # not running: only with -a
    assert api.docker(0, "ps", "-aq", "--filter", "name=^web$").stdout.strip() == cid[:12]


def test_the_lifecycle_through_alternating_replicas(api: ApiReplicas) -> None:
    api.docker(0, "create", "--name", "life", "busybox")
    assert api.docker(1, "start", "life").stdout.strip() == "life"
    assert lines(api.docker(0, "ps", "--filter", "name=life", "--format", "{{.State}}")) == ["running"]
    api.docker(0, "pause", "life")
    assert lines(api.docker(1, "ps", "--filter", "status=paused", "--format", "{{.Names}}")) == ["life"]
    res = api.docker(1, "start", "life", check=False)
    assert res.returncode == 1 and "cannot start a paused container, try unpause instead" in res.stderr
    api.docker(1, "unpause", "life")
    api.docker(0, "rename", "life", "life2")
    assert json.loads(api.docker(1, "inspect", "life2").stdout)[0]["Name"] == "/life2"
    assert api.docker(1, "inspect", "life", check=False).returncode == 1
    api.docker(1, "exec", "-d", "life2", "sh", "-c", "echo hi")
    inspected = json.loads(api.docker(0, "inspect", "life2").stdout)[0]
    assert len(inspected["ExecIDs"]) == 1
    api.docker(0, "stop", "-t", "2", "life2")
    assert json.loads(api.docker(1, "inspect", "life2").stdout)[0]["State"]["Status"] == "exited"
    again = api.docker(1, "stop", "life2")  # 304: the CLI prints the name and succeeds
    assert again.stdout.strip() == "life2"
    res = api.docker(0, "kill", "life2", check=False)
    assert res.returncode == 1 and "is not running" in res.stderr
    api.docker(1, "restart", "life2")
    assert json.loads(api.docker(0, "inspect", "life2").stdout)[0]["State"]["Running"] is True
    api.docker(0, "kill", "-s", "HUP", "life2")
    assert api.docker(1, "wait", "life2").stdout.strip() == str(128 + 1)
    out = api.docker(0, "logs", "life2")
    assert "started" in out.stdout and "restarted" in out.stdout and "received signal 1" in out.stderr
    api.docker(1, "rm", "life2")
    assert api.docker(0, "inspect", "life2", check=False).returncode == 1


def test_wait_answers_when_another_replica_stops_the_container(api: ApiReplicas) -> None:
    api.docker(0, "run", "-d", "--name", "waited", "busybox")
    waiter = subprocess.Popen([api.docker_bin, "--config", str(api.config), "-H", api.hosts[1], "wait", "waited"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting: the container runs
        api.docker(0, "kill", "waited")
        out, err = waiter.communicate(timeout=15)
        assert waiter.returncode == 0 and out.strip() == "137", err
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate(timeout=10)
    api.docker(0, "rm", "waited")


def test_events_replay_and_filter_what_both_replicas_did(api: ApiReplicas) -> None:
    t0 = time.time() - 0.01
    api.docker(0, "create", "--name", "ev", "--label", "team=blue", "busybox")
    api.docker(1, "start", "ev")
    api.docker(0, "exec", "-d", "ev", "true")
    api.docker(1, "stop", "ev")
    api.docker(0, "rename", "ev", "ev2")
    api.docker(1, "rm", "ev2")
    t1 = time.time() + 0.01
    fmt = "{{.Action}} {{.Actor.Attributes.name}}"
    res = api.docker(1, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter", "label=team=blue",
                     "--format", fmt)
    assert lines(res) == ["create ev", "start ev", "exec_create: true ev", "exec_start: true ev", "kill ev",
                          "die ev", "stop ev", "rename ev2", "destroy ev2"] or lines(res) == [
        "create ev", "start ev", "exec_create: true ev", "exec_start: true ev", "exec_die ev", "kill ev",
        "die ev", "stop ev", "rename ev2", "destroy ev2"], res.stdout
    only = api.docker(0, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter", "container=ev",
                      "--filter", "event=die", "--format", "{{json .}}")
    (msg,) = [json.loads(ln) for ln in lines(only)]
    assert msg["Type"] == "container" and msg["Action"] == "die" and msg["status"] == "die"
    assert msg["Actor"]["Attributes"]["exitCode"] == "0" and msg["Actor"]["Attributes"]["team"] == "blue"
    assert msg["from"] == "busybox" and msg["scope"] == "local" and msg["timeNano"] // 10**9 == msg["time"]
    renamed = api.docker(0, "events", "--since", f"{t0:.3f}", "--until", f"{t1:.3f}", "--filter", "event=rename",
                         "--format", "{{.Actor.Attributes.oldName}}")
    assert lines(renamed) == ["/ev"]


def test_events_follow_what_another_replica_does_now(api: ApiReplicas) -> None:
    follower = subprocess.Popen([api.docker_bin, "--config", str(api.config), "-H", api.hosts[0], "events",
                                 "--filter", "container=live", "--format", "{{.Action}}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(ln.strip() for ln in follower.stdout or ()), daemon=True)
    reader.start()
    try:
        time.sleep(1.0)  # the stream is open before anything happens
        api.docker(1, "create", "--name", "live", "busybox")
        api.docker(1, "start", "live")
        api.docker(1, "rm", "-f", "live")
        deadline = time.monotonic() + 10
        while "destroy" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        follower.terminate()
        follower.communicate(timeout=10)
        reader.join(5)
    assert got[:6] == ["create", "start", "kill", "die", "destroy"][:len(got[:6])] and "destroy" in got, got


def test_errors_are_mobys_words_and_exit_codes(api: ApiReplicas) -> None:
    api.docker(0, "create", "--name", "taken", "busybox")
    res = api.docker(1, "create", "--name", "taken", "busybox", check=False)
    assert res.returncode == 1 and 'Conflict. The container name "/taken" is already in use by container' \
        in res.stderr
    res = api.docker(1, "create", "--name", "bad name!", "busybox", check=False)
    assert res.returncode == 1 and "Invalid container name (bad name!)" in res.stderr
    res = api.docker(0, "inspect", "nosuch", check=False)
    assert res.returncode == 1 and res.stdout.strip() == "[]" and "No such object: nosuch" in res.stderr
    res = api.docker(0, "start", "nosuch", check=False)
    assert res.returncode == 1 and "No such container: nosuch" in res.stderr
    res = api.docker(0, "pause", "taken", check=False)
    assert res.returncode == 1 and "is not running" in res.stderr
    res = api.docker(0, "unpause", "taken", check=False)
    assert res.returncode == 1 and "is not paused" in res.stderr
    res = api.docker(0, "rename", "taken", "taken", check=False)
    assert res.returncode == 1 and "Renaming a container with the same name as its current name" in res.stderr
    api.docker(0, "start", "taken")
    res = api.docker(1, "rm", "taken", check=False)
    assert res.returncode == 1 and 'cannot remove container "taken": container is running' in res.stderr
    assert api.docker(1, "rm", "-f", "taken").stdout.strip() == "taken"
    assert api.docker(1, "rm", "-f", "taken").returncode == 0  # a missing container: rm -f succeeds


def test_prune_removes_stopped_containers_only(api: ApiReplicas) -> None:
    api.docker(0, "create", "--name", "p-created", "--label", "prune=me", "busybox")
    api.docker(0, "run", "-d", "--name", "p-running", "--label", "prune=me", "busybox")
    res = api.docker(1, "container", "prune", "-f", "--filter", "label=prune=me")
    assert "Deleted Containers:" in res.stdout
    names = lines(api.docker(0, "ps", "-a", "--filter", "label=prune=me", "--format", "{{.Names}}"))
    assert names == ["p-running"]
    api.docker(0, "rm", "-f", "p-running")


def test_a_hung_stop_never_blocks_ps_or_inspect_and_a_second_action_fails_clearly(api: ApiReplicas) -> None:
    api.docker(0, "run", "-d", "--name", "stuck", "busybox")
    stopper = subprocess.Popen([api.docker_bin, "--config", str(api.config), "-H", api.hosts[0], "stop", "stuck"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert stopper.poll() is None  # the runtime hangs inside the stop, holding the container's lock
        for i in (0, 1):
            for _ in range(3):
                ps = api.docker(i, "ps", "--filter", "name=stuck", "--format", "{{.Names}} {{.State}}", timeout=10)
                assert lines(ps) == ["stuck running"]
                doc = json.loads(api.docker(i, "inspect", "stuck", timeout=10).stdout)
                assert doc[0]["State"]["Running"] is True
            info = get_json(api.bases[i], "/info")  # type: ignore[attr-defined]
            assert info["ContainersRunning"] >= 1
        res = api.docker(1, "pause", "stuck", check=False, timeout=20)
        assert res.returncode == 1 and "is busy" in res.stderr and "timed out after 1s" in res.stderr, res.stderr
        assert stopper.poll() is None
    finally:
        stopper.kill()
        stopper.communicate(timeout=10)


def test_ping_version_and_unknown_routes(api: ApiReplicas) -> None:
    base = api.bases[0]  # type: ignore[attr-defined]
    req = urllib.request.Request(base + "/_ping", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.headers["Api-Version"] == "1.50" and r.headers["Ostype"] == "linux"
        assert r.headers["Swarm"] == "inactive" and r.headers["Docker-Experimental"] == "false"
    v = get_json(base, "/version")
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert get_json(base, "/v1.24/version")["ApiVersion"] == "1.50"
    for path, status, message in [
        ("/v1.12/version", 400, "client version 1.12 is too old. Minimum supported API version is 1.24, please "
                                "upgrade your client to a newer version"),
        ("/v1.50/nothing/here", 404, "page not found"),
        ("/containers/json?filters=%7Bbad", 400, None),
        ("/containers/json?limit=x", 400, None),
    ]:
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(base + path, timeout=5)  # noqa: S310
        assert ei.value.code == status
        body = json.loads(ei.value.read())
        assert message is None or body == {"message": message}
    out = api.docker(1, "version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}")
    assert out.stdout.strip() == "1.50 1.24"


def test_the_unix_socket_is_0660_and_plain_tcp_off_loopback_is_refused(api: ApiReplicas, tmp_path: Path) -> None:
    sock = api.hosts[0].removeprefix("unix://")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    env = {k: v for k, v in os.environ.items() if k != "STATESTORE_REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", api.url, "--namespace", api.namespace,
                          "daemon", "--replica-id=open", f"--listen=tcp://0.0.0.0:{free_port()}"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 125 and "without TLS" in res.stderr
    res = subprocess.run([sys.executable, "-m", "statestore", "--redis-url", api.url, "--namespace", api.namespace,
                          "daemon", "--replica-id=x", "--listen=http://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 125 and "expected tcp://HOST:PORT or unix:///PATH" in res.stderr


def test_a_create_through_one_replica_is_at_once_visible_through_the_other(api: ApiReplicas) -> None:
    """Consistent reads: an inspect that starts after a create returned finds it, on any replica."""
    a, b = api.bases  # type: ignore[attr-defined]
    for i in range(40):
        req = urllib.request.Request(f"{a}/v1.50/containers/create?name=cr{i}", method="POST",
                                     data=b'{"Image":"busybox"}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            cid = json.loads(r.read())["Id"]
        assert get_json(b, f"/containers/cr{i}/json")["Id"] == cid  # never a 404
        listed = get_json(b, '/containers/json?all=1&filters={"name":["^cr' + str(i) + '$"]}')
        assert [c["Id"] for c in listed] == [cid]
    res = api.docker(0, "container", "prune", "-f", "--filter", "until=1h")  # none is an hour old
    assert res.returncode == 0
    api.docker(1, "rm", *[f"cr{i}" for i in range(40)])


def test_logs_follow_what_another_replica_does_and_end_with_the_container(api: ApiReplicas) -> None:
    api.docker(0, "run", "-d", "--name", "chatty", "busybox")
    follower = subprocess.Popen([api.docker_bin, "--config", str(api.config), "-H", api.hosts[0], "logs", "-f",
                                 "-t", "chatty"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        api.docker(1, "restart", "chatty")
        api.docker(1, "rm", "-f", "chatty")
        out, err = follower.communicate(timeout=15)  # ends by itself once the container is gone
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=10)
    assert follower.returncode == 0, err
    texts = [ln.split(" ", 1)[1] for ln in out.splitlines()]
    assert [t.rsplit(" ", 1)[0] for t in texts] == ["chatty: started, pid", "chatty: restarted, pid"], out
    assert all(ln[:4].isdigit() and "T" in ln.split(" ", 1)[0] for ln in out.splitlines())  # -t: RFC 3339
    assert "received signal 15" in err and "received signal 9" in err


def test_sigterm_ends_streams_cleanly_and_interrupts_a_hung_action(redis_proc: RedisProcess, tmp_path: Path) -> None:
    """A replica told to stop while an API action hangs in the runtime exits (exit 0): its streams end
    as dockerd's do, and the hung action is interrupted after --drain-timeout (503, nothing committed)."""
    r = ApiReplicas(redis_proc.url, f"api-term-{os.getpid()}", tmp_path)
    try:
        r.start("--hang-stop=stuck", "--drain-timeout=1")
        r.docker(0, "run", "-d", "--name", "stuck", "busybox")
        argv = [r.docker_bin, "--config", str(r.config), "-H", r.hosts[0]]
        stopper = subprocess.Popen([*argv, "stop", "stuck"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        events = subprocess.Popen([*argv, "events", "--format", "{{.Action}}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert stopper.poll() is None and events.poll() is None
        r.procs[0].terminate()
        assert r.procs[0].wait(30) == 0, r.log(0)  # before the fix it never exited
        out, err = stopper.communicate(timeout=10)
        assert stopper.returncode == 1 and "interrupted by shutdown" in err, err
        out, err = events.communicate(timeout=10)
        assert events.returncode == 0, err  # the stream ended, it did not break
        assert "interrupting Engine API actions still running after 1s" in r.log(0)
    finally:
        r.close()


def test_events_since_before_a_trimmed_log_replay_what_is_left(redis_proc: RedisProcess, tmp_path: Path) -> None:
    """moby keeps only recent events too: a --since older than the change log's oldest entry replays the
    entries that are left instead of failing."""
    ns = f"api-trim-{os.getpid()}"
    r = ApiReplicas(redis_proc.url, ns, tmp_path)
    client = redis_proc.client()
    try:
        r.start()
        t0 = time.time() - 1
        for i in range(6):
            r.docker(0, "create", "--name", f"t{i}", "busybox")
        client.xtrim(f"ss:{{{ns}}}:log", maxlen=3)  # the three oldest creates are gone
        res = r.docker(0, "events", "--since", f"{t0:.3f}", "--until", f"{time.time() + 0.01:.3f}",
                       "--format", "{{.Action}} {{.Actor.Attributes.name}}")
        assert lines(res) == ["create t3", "create t4", "create t5"], res.stdout + res.stderr
    finally:
        client.close()
        r.close()
