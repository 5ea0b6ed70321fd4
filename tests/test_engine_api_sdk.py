"""The Engine API, driven by the Docker SDK for Python against two replicas of one namespace.

Both replicas listen on TCP and on a unix socket; each test runs once per
transport.  Client ``a`` talks to replica 0, client ``b`` to replica 1: what
one does, the other must show.  The SDK's own habits are exercised on
purpose: ``run(detach=True)`` is create + inspect + start, ``containers.list()``
is one list call and then one inspect per container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from tests.engine_api import ApiReplicas
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(redis_proc: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiReplicas]:
    tmp = tmp_path_factory.mktemp("engine-api-sdk")
    r = ApiReplicas(redis_proc.url, f"api-sdk-{os.getpid()}", tmp)
    try:
        r.bases = [r.start(unix=True), r.start(unix=True)]  # type: ignore[attr-defined]
        yield r
    finally:
        r.close()


@dataclass
class Pair:
    """Two SDK clients: ``a`` on replica 0, ``b`` on replica 1, over one transport; ``p`` prefixes names."""

    a: docker.DockerClient
    b: docker.DockerClient
    p: str


@pytest.fixture(params=["tcp", "unix"])
def sdk(api: ApiReplicas, request: pytest.FixtureRequest) -> Iterator[Pair]:
    if request.param == "tcp":
        urls = [b.replace("http://", "tcp://") for b in api.bases]  # type: ignore[attr-defined]
    else:
        urls = list(api.hosts)
    assert all(u.startswith(f"{request.param}://") for u in urls), urls
    a = docker.DockerClient(base_url=urls[0], version="auto", timeout=30)
    try:
        b = docker.DockerClient(base_url=urls[1], timeout=30)  # the default (None): SDK 7 negotiates too
        try:
            yield Pair(a, b, f"{request.param}-")
        finally:
            b.close()
    finally:
        a.close()


def names(containers: list[Any]) -> set[str]:
    return {c.name for c in containers}


def test_run_through_one_replica_get_through_the_other(sdk: Pair) -> None:
    name = sdk.p + "web"
    c = sdk.a.containers.run("busybox", ["sleep", "60"], detach=True, name=name, labels={"tier": "front", "a": "b"})
    assert len(c.id) == 64 and c.name == name
    got = sdk.b.containers.get(name)
    assert got.id == c.id and got.name == name and got.status == "running"
    assert got.labels == {"tier": "front", "a": "b"}
    assert got.attrs["Config"]["Image"] == "busybox" and got.attrs["Name"] == "/" + name
    assert got.attrs["Path"] == "sleep" and got.attrs["Args"] == ["60"]
    assert got.attrs["State"]["Running"] is True and got.attrs["State"]["Status"] == "running"
    assert got.attrs["Image"].startswith("sha256:")
    assert "StateStore" not in got.attrs
    # by ID prefix, through replica 0
    assert sdk.a.containers.get(c.id[:10]).id == c.id
    c.remove(force=True)


def test_list_and_filters_through_the_other_replica(sdk: Pair) -> None:
    p = sdk.p + "ls-"
    grp = {"group": sdk.p + "ls"}
    sdk.a.containers.run("busybox", detach=True, name=p + "run-ab", labels={**grp, "a": "b"})
    sdk.a.containers.run("busybox", detach=True, name=p + "run", labels=grp)
    sdk.a.containers.create("busybox", name=p + "created-ab", labels={**grp, "a": "b"})
    stopped = sdk.a.containers.run("busybox", detach=True, name=p + "stopped", labels=grp)
    stopped.stop(timeout=1)
    mine = {"label": f"group={grp['group']}"}
    try:
        assert names(sdk.b.containers.list(filters=mine)) == {p + "run-ab", p + "run"}
        assert names(sdk.b.containers.list(all=True, filters=mine)) == {p + "run-ab", p + "run", p + "created-ab",
                                                                         p + "stopped"}
        # the module's tests clean up after themselves: unfiltered lists are exact too
        assert names(sdk.b.containers.list()) == {p + "run-ab", p + "run"}
        assert names(sdk.b.containers.list(all=True)) == {p + "run-ab", p + "run", p + "created-ab", p + "stopped"}
        assert names(sdk.b.containers.list(filters={"label": "a=b"})) == {p + "run-ab"}
        assert names(sdk.b.containers.list(all=True, filters={"label": "a=b"})) == {p + "run-ab", p + "created-ab"}
        assert names(sdk.b.containers.list(all=True, filters={"label": ["a=b", mine["label"]]})) == {
            p + "run-ab", p + "created-ab"}
        assert names(sdk.b.containers.list(all=True, filters={"status": "exited"})) == {p + "stopped"}
        assert names(sdk.b.containers.list(all=True, filters={"status": "created"})) == {p + "created-ab"}
        exited = names(sdk.b.containers.list(all=True, filters={"status": "exited", **mine}))
        assert exited == {p + "stopped"}
        summaries = sdk.b.api.containers(all=True, filters=mine)
        assert {s["Names"][0] for s in summaries} == {"/" + n for n in (p + "run-ab", p + "run", p + "created-ab",
                                                                           p + "stopped")}
        assert {s["Names"][0]: s["State"] for s in summaries}["/" + p + "stopped"] == "exited"
    finally:
        for c in sdk.a.containers.list(all=True, filters=mine):
            c.remove(force=True)
    assert sdk.b.containers.list(all=True, filters=mine) == []


def test_stop_reload_remove_and_errors(sdk: Pair) -> None:
    name = sdk.p + "life"
    c = sdk.a.containers.run("busybox", detach=True, name=name)
    on_b = sdk.b.containers.get(name)
    assert on_b.status == "running"
    on_b.stop(timeout=2)  # through replica 1
    c.reload()  # through replica 0
    assert c.status == "exited" and c.attrs["State"]["Running"] is False
    assert c.attrs["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
    with pytest.raises(docker.errors.APIError) as ei:
        sdk.b.containers.create("busybox", name=name)
    assert ei.value.status_code == 409 and ei.value.is_client_error()
    assert ei.value.explanation is not None and "Conflict" in ei.value.explanation
    assert f'The container name "/{name}" is already in use by container "{c.id}"' in ei.value.explanation
    c.remove()
    with pytest.raises(docker.errors.NotFound) as nf:
        sdk.b.containers.get(name)
    assert nf.value.status_code == 404 and f"No such container: {name}" in str(nf.value.explanation)
    with pytest.raises(docker.errors.NotFound):
        c.reload()
    # the name is free again
    again = sdk.b.containers.create("busybox", name=name)
    assert again.id != c.id and sdk.a.containers.get(name).id == again.id
    # removing a running container is a 409 with moby's words
    again.start()
    with pytest.raises(docker.errors.APIError) as ei:
        sdk.a.containers.get(name).remove()
    assert ei.value.status_code == 409 and "container is running" in str(ei.value.explanation)
    again.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        sdk.a.containers.get(name)


def _exact_events(client: docker.DockerClient, since: float, until: float, **filters: Any) -> list[dict[str, Any]]:
    stream = client.events(decode=True, since=since, until=until, filters=filters)
    try:
        return list(stream)  # an ``until`` in the past: the stream ends after the replay
    finally:
        stream.close()


def test_events_replay_what_both_replicas_did(sdk: Pair) -> None:
    name = sdk.p + "ev"
    t0 = time.time() - 0.01
    c = sdk.a.containers.run("busybox", detach=True, name=name, labels={"team": "blue"})
    sdk.b.containers.get(name).stop(timeout=1)
    sdk.a.containers.get(name).remove()
    t1 = time.time() + 0.01
    for client in (sdk.a, sdk.b):
        msgs = _exact_events(client, t0, t1, container=name)
        assert [m["Action"] for m in msgs] == ["create", "start", "kill", "die", "stop", "destroy"], msgs
        for m in msgs:
            assert m["Type"] == "container" and m["status"] == m["Action"]
            assert m["id"] == c.id and m["Actor"]["ID"] == c.id and m["from"] == "busybox"
            assert m["Actor"]["Attributes"]["name"] == name and m["Actor"]["Attributes"]["team"] == "blue"
            assert m["Actor"]["Attributes"]["image"] == "busybox"
            assert isinstance(m["time"], int) and isinstance(m["timeNano"], int)
            assert m["timeNano"] // 10**9 == m["time"] and t0 <= m["timeNano"] / 1e9 <= t1
        assert [m["timeNano"] for m in msgs] == sorted(m["timeNano"] for m in msgs)
        die = [m for m in msgs if m["Action"] == "die"][0]
        assert die["Actor"]["Attributes"]["exitCode"] == "0"
    only = _exact_events(sdk.b, t0, t1, container=name, event=["die", "destroy"])
    assert [m["Action"] for m in only] == ["die", "destroy"]
    by_label = _exact_events(sdk.b, t0, t1, label="team=blue", type="container")
    assert [m["Action"] for m in by_label if m["id"] == c.id] == ["create", "start", "kill", "die", "stop",
                                                                    "destroy"]


def test_a_live_event_stream_sees_a_create_through_the_other_replica(sdk: Pair) -> None:
    name = sdk.p + "live"
    stream = sdk.a.events(decode=True, filters={"container": name})
    got: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    seen = threading.Event()

    def read() -> None:
        try:
            for m in stream:
                got.append(m)
                if m["Action"] == "destroy":
                    seen.set()
        except Exception as exc:  # CancellableStream turns the closed socket into StopIteration: none expected
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(0.5)  # the stream is open before anything happens
        c = sdk.b.containers.create("busybox", name=name)
        sdk.b.containers.get(name).start()
        sdk.b.containers.get(name).remove(force=True)
        assert seen.wait(10), got
    finally:
        stream.close()
        reader.join(10)
    assert not reader.is_alive() and errors == []
    assert [m["Action"] for m in got] == ["create", "start", "kill", "die", "destroy"], got
    assert all(m["id"] == c.id and m["Actor"]["Attributes"]["name"] == name for m in got)


def test_ping_version_and_info(sdk: Pair) -> None:
    assert sdk.a.ping() is True and sdk.b.ping() is True
    for client in (sdk.a, sdk.b):
        v = client.version()
        assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    assert sdk.a.api.api_version == "1.50"  # version="auto" negotiated the server's
    before = sdk.b.info()
    c = sdk.a.containers.run("busybox", detach=True, name=sdk.p + "info")
    after = sdk.b.info()
    assert after["ContainersRunning"] == before["ContainersRunning"] + 1
    assert after["Containers"] == before["Containers"] + 1
    c.stop(timeout=1)
    stopped = sdk.b.info()
    assert stopped["ContainersRunning"] == before["ContainersRunning"]
    assert stopped["ContainersStopped"] == before["ContainersStopped"] + 1
    c.remove()
    assert sdk.a.info()["Containers"] == before["Containers"]


def test_listing_many_containers_inspects_each(sdk: Pair) -> None:
    n = 200
    label = {"bulk": sdk.p + "many"}
    created: set[str] = set()
    for i in range(n):
        created.add(sdk.a.api.create_container("busybox", name=f"{sdk.p}bulk-{i}", labels=label)["Id"])
    try:
        listed = sdk.b.containers.list(all=True, filters={"label": f"bulk={label['bulk']}"})
        assert {c.id for c in listed} == created and len(listed) == n
        assert names(listed) == {f"{sdk.p}bulk-{i}" for i in range(n)}
        assert all(c.status == "created" and c.labels == label for c in listed)
        everything = sdk.b.containers.list(all=True)  # no filter: the SDK inspects every one
        assert created <= {c.id for c in everything}
    finally:
        for cid in created:
            sdk.a.api.remove_container(cid, force=True)
    assert sdk.b.containers.list(all=True, filters={"label": f"bulk={label['bulk']}"}) == []


def test_sigterm_ends_a_replica_whose_api_stop_hangs(redis_proc: RedisProcess, tmp_path: Path) -> None:
    r = ApiReplicas(redis_proc.url, f"api-sdk-hang-{os.getpid()}", tmp_path)
    try:
        base = r.start("--hang-stop=stuck", "--drain-timeout=1")
        client = docker.DockerClient(base_url=base.replace("http://", "tcp://"), timeout=2)
        try:
            client.containers.run("busybox", detach=True, name="stuck")
            with pytest.raises(requests.exceptions.ReadTimeout):  # the runtime hangs: no answer
                client.api.stop("stuck", timeout=0)  # the read timeout: 2 s + t
        finally:
            client.close()
        assert "stop of stuck" in r.log(0) and "hangs until shutdown" in r.log(0)
        proc = r.procs[0]
        proc.send_signal(signal.SIGTERM)
        try:
            # drain (1 s), interrupt, wait for the interrupted calls (lock timeout 1 s + 5 s): 10 s is ample
            assert proc.wait(10) == 0, r.log(0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            pytest.fail("the replica still runs 10 s after SIGTERM:\n" + r.log(0))
    finally:
        r.close()
